package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// writeGGUF writes a GGUF file of the given metadata and tensors (zeroed
// data) with core/gguf's Writer and returns its bytes.
func writeGGUF(t testing.TB, path string, kvs []gguf.KV, tensors []gguf.TensorInfo) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := gguf.NewWriter(&buf, kvs, tensors)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range tensors {
		n, err := ti.Size()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestInspectNoChatTemplate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "plain.gguf")
	writeGGUF(t, p, []gguf.KV{
		{Key: gguf.KeyArchitecture, Value: "llama"},
		{Key: "llama.context_length", Value: uint32(128)},
	}, []gguf.TensorInfo{{Name: "token_embd.weight", Dims: []int64{4, 4}, Type: gguf.GGMLTypeF32}})
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

// badTypeGGUF is a GGUF file whose general.type is a number: gguf-parser-go
// parses it, and panics when asked for the model's metadata.
func badTypeGGUF(t testing.TB, path string) []byte {
	return writeGGUF(t, path, []gguf.KV{
		{Key: gguf.KeyArchitecture, Value: "llama"},
		{Key: "general.type", Value: uint32(7)},
	}, []gguf.TensorInfo{{Name: "token_embd.weight", Dims: []int64{4, 4}, Type: gguf.GGMLTypeF32}})
}

func TestInspectRejects(t *testing.T) {
	dir := t.TempDir()
	path := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	badType := filepath.Join(dir, "badtype.gguf")
	badTypeGGUF(t, badType)
	for _, tc := range []struct {
		name     string
		path     string
		is       error
		complete error // what CheckComplete says
	}{
		{"zip", path("a.gguf", []byte("PK\x03\x04 a zip file")), ErrNotGGUF, nil},
		{"version 4", path("v4.gguf", append([]byte("GGUF\x04\x00\x00\x00"), make([]byte, 16)...)), ErrNotGGUF, nil},
		{"general.type a number", badType, ErrNotGGUF, nil},
		{"truncated", path("b.gguf", tinyGGUF()[:40]), ErrTruncated, ErrTruncated},
		{"missing", filepath.Join(dir, "missing.gguf"), ErrNotFound, ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Inspect(tc.path, 0); !errors.Is(err, tc.is) {
				t.Errorf("Inspect err = %v, want %v", err, tc.is)
			}
			if err := CheckComplete(tc.path); !errors.Is(err, tc.complete) || (tc.complete == nil && err != nil) {
				t.Errorf("CheckComplete err = %v, want %v", err, tc.complete)
			}
		})
	}
}

// A model cut short anywhere is called truncated, with its size; cut in its
// tensor data, also with the size its header describes and what is missing;
// never blamed on its tensor types. Each case also pins the gguf-parser-go
// message that parserCut reads for it: if an upgrade of the parser changes
// one, this test says which.
func TestInspectTruncated(t *testing.T) {
	full := tinyGGUF()
	dir := t.TempDir()
	gf, err := parseGGUF(writeTiny(t))
	if err != nil {
		t.Fatal(err)
	}
	start := int(gf.TensorDataStartOffset) // where the tensor data begins
	if gf.Padding < 2 {
		t.Fatalf("the tiny model's header needs padding for the padding case; it has %d bytes", gf.Padding)
	}
	tokens := bytes.Index(full, []byte("tokenizer.ggml.tokens"))
	if tokens < 0 {
		t.Fatal("no tokenizer.ggml.tokens in the tiny model")
	}
	tokens += len("tokenizer.ggml.tokens") + 4 + 4 + 8 // key, value type, item type, length: the first token

	// A model whose first tensor is followed by 12 bytes of padding: cut by
	// no more than those, the sum of its tensor sizes still fits.
	padded := filepath.Join(dir, "padded.gguf")
	pfull := writeGGUF(t, padded, []gguf.KV{{Key: gguf.KeyArchitecture, Value: "llama"}}, []gguf.TensorInfo{
		{Name: "a", Dims: []int64{5}, Type: gguf.GGMLTypeF32}, // 20 bytes, padded to 32
		{Name: "b", Dims: []int64{8}, Type: gguf.GGMLTypeF32},
	})

	for _, tc := range []struct {
		name      string
		full      []byte
		cut       int
		inData    bool   // cut in the tensor data (else in the header)
		parserSay string // in gguf-parser-go's error; "" when it parses the file
	}{
		{"in the counts", full, 40, false, "tensor count too large for remaining bytes"},
		{"after the counts", full, 100, false, "tensor count too large for remaining bytes"},
		{"in the metadata", full, 4096, false, "unexpected EOF"},
		{"in an array", full, tokens + 5, false, "exceeds 5 remaining bytes"},
		{"in the padding", full, start - 1, false, ""},
		{"at the data", full, start, true, "tensor data needs"},
		{"in the data", full, 100_000, true, "tensor data needs"},
		{"one byte short", full, len(full) - 1, true, "tensor data needs"},
		{"one byte of padding short", pfull, len(pfull) - 1, true, ""},
		{"the padding short", pfull, len(pfull) - 12, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cut.gguf")
			if err := os.WriteFile(path, tc.full[:tc.cut], 0o644); err != nil {
				t.Fatal(err)
			}
			_, perr := parseGGUF(path)
			if tc.parserSay == "" && perr != nil || tc.parserSay != "" && (perr == nil || !strings.Contains(perr.Error(), tc.parserSay)) {
				t.Errorf("gguf-parser-go says %v, want %q: parserCut must learn its new message", perr, tc.parserSay)
			}
			_, err := Inspect(path, 0)
			if !errors.Is(err, ErrTruncated) {
				t.Fatalf("err = %v, want ErrTruncated", err)
			}
			want := []string{"truncated", fmt.Sprintf("has %d bytes", tc.cut), "ends inside its GGUF header"}
			if tc.inData {
				want = []string{"truncated", fmt.Sprintf("has %d bytes", tc.cut),
					fmt.Sprintf("describes %d (%d missing)", len(tc.full), len(tc.full)-tc.cut)}
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "layout") {
				t.Errorf("error %q blames the block layout", err)
			}
			if cerr := CheckComplete(path); cerr == nil || cerr.Error() != err.Error()[len("inspect: "):] {
				t.Errorf("CheckComplete = %v, want Inspect's %v", cerr, err)
			}
		})
	}
	// The whole files are complete.
	if err := CheckComplete(writeTiny(t)); err != nil {
		t.Errorf("whole file: %v", err)
	}
	if err := CheckComplete(padded); err != nil {
		t.Errorf("whole padded file: %v", err)
	}
}

// parserCut reads gguf-parser-go's wording; numbers that make no cut are
// not one.
func TestParserCut(t *testing.T) {
	for _, tc := range []struct {
		err        error
		cut        int
		need, held uint64
	}{
		{fmt.Errorf("read metadata kv 15: read uint64: %w", io.ErrUnexpectedEOF), cutInHeader, 0, 0},
		{fmt.Errorf("read tensor count: read uint64: %w", io.EOF), cutInHeader, 0, 0},
		{errors.New("tensor count too large for remaining bytes: 20"), cutInHeader, 0, 0},
		{errors.New("read metadata kv 2: read string: length 90 exceeds 10 remaining bytes"), cutInHeader, 0, 0},
		{errors.New("tensor data needs 247040 bytes but only 81568 follow the header: a tensor type's block layout does not match how the file was written"), cutInData, 247040, 81568},
		{errors.New("tensor data needs 5 bytes but only 9 follow the header"), notCut, 0, 0},
		{errors.New("tensor data needs 99999999999999999999999 bytes but only 1 follow the header"), notCut, 0, 0},
		{errors.New("unsupported GGUF version: 4 (supported: 1-3)"), notCut, 0, 0},
		{errors.New("invalid n dimensions: 9 (must be 1..4)"), notCut, 0, 0},
		{errors.New("malformed header: gguf: uint64 overflow in Bytes head"), notCut, 0, 0},
	} {
		cut, need, held := parserCut(tc.err)
		if cut != tc.cut || need != tc.need || held != tc.held {
			t.Errorf("parserCut(%q) = %d, %d, %d; want %d, %d, %d", tc.err, cut, need, held, tc.cut, tc.need, tc.held)
		}
	}
}

func TestFormulaEstimate(t *testing.T) {
	// A 7B-like llama: 32 layers, 8 KV heads of 128 at ctx 4096:
	// 2 × 32 × 4096 × 1024 × 2 bytes = 512 MiB of KV cache.
	a := parser.GGUFArchitecture{BlockCount: 32, EmbeddingLength: 4096, AttentionHeadCount: 32, AttentionHeadCountKV: 8}
	const weights = 4 << 30
	got := formulaEstimate(weights, a, 4096)
	want := Estimate{WeightsBytes: weights, KVBytes: 512 << 20, OverheadBytes: FormulaComputeBytes, TotalBytes: weights + 512<<20 + FormulaComputeBytes,
		RAMBytes: weights + 512<<20 + FormulaComputeBytes, VRAMBytes: weights + 512<<20 + FormulaComputeBytes, Method: EstimateFormula}
	if got != want {
		t.Errorf("formulaEstimate = %+v, want %+v", got, want)
	}
	if got := formulaEstimate(1<<62, parser.GGUFArchitecture{BlockCount: 1 << 40, EmbeddingLength: 1 << 40}, 1<<40); got.TotalBytes != ^uint64(0) {
		t.Errorf("overflow not saturated: %d", got.TotalBytes)
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
	f.Add(badTypeGGUF(f, filepath.Join(dir, "badtype.gguf")))
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
