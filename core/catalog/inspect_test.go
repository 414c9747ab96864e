package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	parser "github.com/gpustack/gguf-parser-go"
	"github.com/llorch/llorch/core/gguf"
	"github.com/llorch/llorch/core/synth"
)

func writeTiny(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := os.WriteFile(p, tinyGGUF(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspect(t *testing.T) {
	p := writeTiny(t)
	preset := synth.Tiny()
	info, err := Inspect(p, 256)
	if err != nil {
		t.Fatal(err)
	}
	if info.Arch != "llama" || info.Type != "model" || info.FileType != "F16" || !info.ChatTemplate {
		t.Errorf("info %+v: want llama model, F16, with a chat template", info)
	}
	if info.Params != uint64(preset.NumParams()) {
		t.Errorf("Params = %d, want %d", info.Params, preset.NumParams())
	}
	if info.ContextLength != preset.ContextLength || info.Layers != preset.BlockCount || info.EmbeddingLength != preset.EmbeddingLength {
		t.Errorf("ctx %d layers %d embd %d, want %d %d %d", info.ContextLength, info.Layers, info.EmbeddingLength,
			preset.ContextLength, preset.BlockCount, preset.EmbeddingLength)
	}
	if info.SizeBytes != int64(len(tinyGGUF())) {
		t.Errorf("SizeBytes = %d, want %d", info.SizeBytes, len(tinyGGUF()))
	}
	if info.Ctx != 256 || info.Estimate != EstimateParser {
		t.Errorf("Ctx %d, Estimate %q; want 256, %q", info.Ctx, info.Estimate, EstimateParser)
	}
	weights := uint64(info.Params) * 2 // F16
	if info.EstRAMBytes < weights || info.EstVRAMBytes < weights {
		t.Errorf("estimates RAM %d VRAM %d are below the F16 weights (%d)", info.EstRAMBytes, info.EstVRAMBytes, weights)
	}

	// The KV cache grows with the context.
	big, err := Inspect(p, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if big.EstRAMBytes <= info.EstRAMBytes || big.EstVRAMBytes <= info.EstVRAMBytes {
		t.Errorf("estimates at ctx 4096 (%d, %d) not above ctx 256 (%d, %d)", big.EstRAMBytes, big.EstVRAMBytes, info.EstRAMBytes, info.EstVRAMBytes)
	}

	// ctx <= 0: the trained context.
	def, err := Inspect(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if def.Ctx != preset.ContextLength {
		t.Errorf("Ctx for 0 = %d, want the trained %d", def.Ctx, preset.ContextLength)
	}

	// JSON keys are snake_case.
	b, err := json.Marshal(info)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"arch":`, `"params":`, `"file_type":`, `"context_length":`, `"chat_template":`, `"size_bytes":`, `"est_ram_bytes":`, `"est_vram_bytes":`, `"ctx":`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("JSON %s lacks %s", b, key)
		}
	}
}

func TestInspectNoChatTemplate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "plain.gguf")
	kvs := []gguf.KV{
		{Key: gguf.KeyArchitecture, Value: "llama"},
		{Key: "llama.context_length", Value: uint32(128)},
	}
	tensors := []gguf.TensorInfo{{Name: "token_embd.weight", Dims: []int64{4, 4}, Type: gguf.GGMLTypeF32}}
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	w, err := gguf.NewWriter(f, kvs, tensors)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.ChatTemplate || info.Arch != "llama" || info.ContextLength != 128 || info.Ctx != 128 {
		t.Errorf("info %+v: want llama, no chat template, ctx 128", info)
	}
	if info.EstRAMBytes == 0 || info.EstVRAMBytes == 0 {
		t.Errorf("no estimate: %+v", info)
	}
}

func TestInspectRejects(t *testing.T) {
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "a.gguf")
	truncated := filepath.Join(dir, "b.gguf")
	if err := os.WriteFile(notGGUF, []byte("PK\x03\x04 a zip file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(truncated, tinyGGUF()[:40], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		is   error
	}{
		{notGGUF, ErrNotGGUF},
		{truncated, ErrTruncated},
		{filepath.Join(dir, "missing.gguf"), ErrNotFound},
	} {
		if _, err := Inspect(tc.path, 0); !errors.Is(err, tc.is) {
			t.Errorf("Inspect(%s) err = %v, want %v", filepath.Base(tc.path), err, tc.is)
		}
	}
}

// A model cut short (here to 100 KB of its 260 KB) is called truncated, with
// the size its header describes and the size it has; not blamed on its
// tensor types.
func TestInspectTruncated(t *testing.T) {
	full := tinyGGUF()
	const cut = 100_000
	path := filepath.Join(t.TempDir(), "cut.gguf")
	if err := os.WriteFile(path, full[:cut], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Inspect(path, 0)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
	for _, want := range []string{"truncated", fmt.Sprintf("has %d bytes", cut), fmt.Sprintf("describes %d", len(full))} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "layout") {
		t.Errorf("error %q blames the block layout", err)
	}
	// One byte short is truncated too; the whole file is not.
	if err := os.WriteFile(path, full[:len(full)-1], 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CheckComplete(path); !errors.Is(err, ErrTruncated) {
		t.Errorf("one byte short: %v", err)
	}
	if err := CheckComplete(writeTiny(t)); err != nil {
		t.Errorf("whole file: %v", err)
	}
}

func TestFormulaEstimate(t *testing.T) {
	// A 7B-like llama: 32 layers, 8 KV heads of 128 at ctx 4096:
	// 2 × 32 × 4096 × 1024 × 2 bytes = 512 MiB of KV cache.
	a := parser.GGUFArchitecture{BlockCount: 32, EmbeddingLength: 4096, AttentionHeadCount: 32, AttentionHeadCountKV: 8}
	const weights = 4 << 30
	got := formulaEstimate(weights, a, 4096)
	if want := uint64(weights + 512<<20 + FormulaComputeBytes); got != want {
		t.Errorf("formulaEstimate = %d, want %d", got, want)
	}
	if got := formulaEstimate(1<<62, parser.GGUFArchitecture{BlockCount: 1 << 40, EmbeddingLength: 1 << 40}, 1<<40); got != ^uint64(0) {
		t.Errorf("overflow not saturated: %d", got)
	}
}

func TestVerify(t *testing.T) {
	p := writeTiny(t)
	sum := sha256Hex(tinyGGUF())
	ctx := t.Context()
	if err := Verify(ctx, p, sum); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, p, strings.ToUpper(sum)); err != nil {
		t.Fatalf("upper-case sha256: %v", err)
	}
	other := sha256Hex([]byte("x"))
	err := Verify(ctx, p, other)
	if !errors.Is(err, ErrChecksumMismatch) || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), sum) {
		t.Errorf("err = %v, want a mismatch naming both sums", err)
	}
	if err := Verify(ctx, p, "abc"); err == nil {
		t.Error("accepted a malformed sha256")
	}
	if err := Verify(ctx, p+".missing", sum); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: err = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := Verify(cctx, p, sum); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

func TestProgressPlain(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(0, 0)
	p := newProgress(&out, "m.gguf")
	p.now = func() time.Time { return now }
	p.begin("download", 1000, 0)
	for range 20 {
		now = now.Add(time.Second)
		p.add(50)
	}
	p.end(true)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 10 {
		t.Fatalf("%d lines, want one per 10%%:\n%s", len(lines), out.String())
	}
	if want := "m.gguf: download 100% 1000 B / 1000 B, 50 B/s"; lines[9] != want {
		t.Errorf("last line %q, want %q", lines[9], want)
	}
	if want := "m.gguf: download  10% 100 B / 1000 B, 50 B/s, ETA 18s"; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}

	// Unknown size: a line every 10 seconds.
	out.Reset()
	p.begin("download", -1, 0)
	for range 25 {
		now = now.Add(time.Second)
		p.add(1 << 20)
	}
	p.end(true)
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Errorf("%d lines for 25 s of unknown size, want 2:\n%s", n, out.String())
	}
}

func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, "m.gguf")
	p.term = true // as if out were a terminal
	p.begin("download", 1<<20, 1<<19)
	p.add(1 << 19)
	p.end(true)
	p.begin("download", -1, 0) // unknown size
	p.add(10)
	p.end(false)
	if !strings.Contains(out.String(), "download m.gguf") {
		t.Errorf("bar output lacks its description: %q", out.String())
	}
	var nilP *progress
	nilP.begin("x", 1, 0)
	nilP.add(1)
	nilP.printf("x")
	nilP.end(true)
}

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {5 << 30, "5.0 GiB"}, {1 << 62, "4.0 EiB"},
	} {
		if got := formatBytes(tc.n); got != tc.want {
			t.Errorf("formatBytes(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// FuzzInspect: Inspect never panics on a damaged header; it returns Info or
// an error wrapping ErrNotGGUF or ErrTruncated.
func FuzzInspect(f *testing.F) {
	head := tinyGGUF()[:4096] // header and metadata, cut short
	f.Add(head)
	f.Add(tinyGGUF()[:64])
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "f.gguf")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Inspect(p, 512); err != nil && !errors.Is(err, ErrNotGGUF) && !errors.Is(err, ErrTruncated) {
			t.Fatalf("error %v wraps neither ErrNotGGUF nor ErrTruncated", err)
		}
	})
}
