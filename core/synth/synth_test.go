package synth

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	parser "github.com/gpustack/gguf-parser-go"

	"github.com/llorch/llorch/core/gguf"
)

// readGGUF reads the file at path with gguf-parser-go, the project's GGUF
// reader (core/catalog's), all metadata included: an independent check of
// what Write wrote.
func readGGUF(t *testing.T, path string) *parser.GGUFFile {
	t.Helper()
	gf, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("gguf-parser-go refuses %s: %v", path, err)
	}
	return gf
}

// kv is the metadata value under key, or nil.
func kv(gf *parser.GGUFFile, key string) any {
	v, ok := gf.Header.MetadataKV.Get(key)
	if !ok {
		return nil
	}
	return v.Value
}

func TestPresetByName(t *testing.T) {
	for _, name := range PresetNames() {
		p, err := PresetByName(name)
		if err != nil {
			t.Fatalf("PresetByName(%q): %v", name, err)
		}
		if p.Name != name {
			t.Errorf("PresetByName(%q).Name = %q", name, p.Name)
		}
		if err := p.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := PresetByName("huge"); err == nil {
		t.Error("PresetByName(huge) succeeded")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*Preset)
	}{
		{"no name", func(p *Preset) { p.Name = "" }},
		{"heads do not divide", func(p *Preset) { p.HeadCount = 3 }},
		{"kv heads do not divide", func(p *Preset) { p.HeadCountKV = 3 }},
		{"zero layers", func(p *Preset) { p.BlockCount = 0 }},
		{"vocab too small", func(p *Preset) { p.VocabSize = 300 }},
		{"zero epsilon", func(p *Preset) { p.RMSEpsilon = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Tiny()
			tt.tweak(&p)
			if err := p.Validate(); err == nil {
				t.Error("Validate succeeded")
			}
			if err := Encode(&bytes.Buffer{}, p); err == nil {
				t.Error("Encode succeeded")
			}
		})
	}
}

func TestQwen05Shape(t *testing.T) {
	p := Qwen05()
	if got := p.NumParams(); got < 490e6 || got > 500e6 {
		t.Errorf("NumParams = %d, want about 494M", got)
	}
	if p.HeadDim() != 64 {
		t.Errorf("HeadDim = %d", p.HeadDim())
	}
}

func TestDeterministic(t *testing.T) {
	sum := func(p Preset) [32]byte {
		var buf bytes.Buffer
		if err := Encode(&buf, p); err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(buf.Bytes())
	}
	a, b := sum(Tiny()), sum(Tiny())
	if a != b {
		t.Fatalf("two encodings of Tiny differ: %x vs %x", a, b)
	}
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := Write(path, Tiny()); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(raw) != a {
		t.Error("Write and Encode produce different bytes")
	}
	other := Tiny()
	other.Name = "tiny2"
	if sum(other) == a {
		t.Error("a different preset name gives the same weights")
	}
}

func TestWriteReadBack(t *testing.T) {
	p := Tiny()
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := Write(path, p); err != nil {
		t.Fatal(err)
	}
	f := readGGUF(t, path)
	if a := kv(f, "general.architecture"); a != "llama" {
		t.Errorf("architecture = %#v", a)
	}
	wantUint := map[string]int{
		"llama.context_length":          p.ContextLength,
		"llama.embedding_length":        p.EmbeddingLength,
		"llama.block_count":             p.BlockCount,
		"llama.feed_forward_length":     p.FeedForwardLength,
		"llama.attention.head_count":    p.HeadCount,
		"llama.attention.head_count_kv": p.HeadCountKV,
		"llama.rope.dimension_count":    p.HeadDim(),
		"llama.vocab_size":              p.VocabSize,
		"general.file_type":             int(FileTypeMostlyF16),
	}
	for key, want := range wantUint {
		if v := kv(f, key); v != any(uint32(want)) {
			t.Errorf("%s = %#v, want uint32(%d)", key, v, want)
		}
	}
	for key, want := range map[string]float32{
		"llama.attention.layer_norm_rms_epsilon": p.RMSEpsilon,
		"llama.rope.freq_base":                   p.RopeFreqBase,
	} {
		if v := kv(f, key); v != any(want) {
			t.Errorf("%s = %#v, want float32(%g)", key, v, want)
		}
	}
	if s, _ := kv(f, "tokenizer.chat_template").(string); !strings.Contains(s, "<|im_start|>") {
		t.Errorf("chat template = %q", s)
	}
	toks, _ := kv(f, "tokenizer.ggml.tokens").(parser.GGUFMetadataKVArrayValue)
	if toks.Type != parser.GGUFMetadataValueTypeString || len(toks.Array) != p.VocabSize {
		t.Fatalf("tokens: %v array of %d, want %d strings", toks.Type, len(toks.Array), p.VocabSize)
	}
	tokens := toks.ValuesString()
	types, _ := kv(f, "tokenizer.ggml.token_type").(parser.GGUFMetadataKVArrayValue)
	if types.Type != parser.GGUFMetadataValueTypeInt32 || len(types.Array) != p.VocabSize {
		t.Errorf("token_type: %v array of %d, want %d int32", types.Type, len(types.Array), p.VocabSize)
	}
	if b := kv(f, "tokenizer.ggml.add_bos_token"); b != false {
		t.Errorf("add_bos_token = %#v, want false", b)
	}
	bos, _ := kv(f, "tokenizer.ggml.bos_token_id").(uint32)
	eos, _ := kv(f, "tokenizer.ggml.eos_token_id").(uint32)
	if int(max(bos, eos)) >= len(tokens) || tokens[bos] != EndOfText || tokens[eos] != EndOfText {
		t.Errorf("bos %d, eos %d; want both %q", bos, eos, EndOfText)
	}

	if want := 2 + 9*p.BlockCount; len(f.TensorInfos) != want {
		t.Errorf("%d tensors, want %d", len(f.TensorInfos), want)
	}
	emb, ok := f.TensorInfos.Get("token_embd.weight")
	if !ok || !slices.Equal(emb.Dimensions, []uint64{uint64(p.EmbeddingLength), uint64(p.VocabSize)}) || emb.Type != parser.GGMLTypeF16 {
		t.Errorf("token_embd = %+v", emb)
	}
	if k, _ := f.TensorInfos.Get("blk.1.attn_k.weight"); !slices.Equal(k.Dimensions, []uint64{64, 32}) {
		t.Errorf("attn_k dims = %v, want [64 32]", k.Dimensions)
	}
	if d, _ := f.TensorInfos.Get("blk.0.ffn_down.weight"); !slices.Equal(d.Dimensions, []uint64{128, 64}) {
		t.Errorf("ffn_down dims = %v, want [128 64]", d.Dimensions)
	}
	if _, ok := f.TensorInfos.Get("output.weight"); ok {
		t.Error("output.weight present; the output should be tied to token_embd")
	}

	// Norms are ones; weights are small, varied and finite.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	norm, _ := f.TensorInfos.Get("output_norm.weight")
	off := f.TensorDataStartOffset + int64(norm.Offset)
	if got := raw[off : off+4]; !bytes.Equal(got, []byte{0, 0, 0x80, 0x3f}) {
		t.Errorf("output_norm[0] bytes = % x, want float32 1", got)
	}
	q, _ := f.TensorInfos.Get("blk.0.attn_q.weight")
	off = f.TensorDataStartOffset + int64(q.Offset)
	distinct := map[uint16]bool{}
	for i := range 64 * 64 {
		h := uint16(raw[off+int64(2*i)]) | uint16(raw[off+int64(2*i)+1])<<8
		v := gguf.F16ToF32(h)
		if lim := float32(weightScale * 1.001); !(v >= -lim && v <= lim) { // f16 rounding may step just past the scale
			t.Fatalf("attn_q[%d] = %g, outside ±%g", i, v, lim)
		}
		distinct[h] = true
	}
	if len(distinct) < 500 {
		t.Errorf("attn_q has only %d distinct values", len(distinct))
	}
}

func TestWriteFailureLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	p := Tiny()
	p.HeadCount = 3
	if err := Write(filepath.Join(dir, "bad.gguf"), p); err == nil {
		t.Fatal("Write succeeded")
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("left files behind: %v %v", entries, err)
	}
}

// Writers of one path at once never share a temporary file: each succeeds,
// the file is whole, nothing is left behind. The quantizer copies (the real
// one is llama.cpp's; `pool models synth` runs it in concurrent processes).
func TestWriteTypeConcurrent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	const n = 4
	// Every writer reaches the quantizer before any goes on: they overlap.
	var mu sync.Mutex
	entered, all := 0, make(chan struct{})
	copyQ := func(in, out, typ string) error {
		mu.Lock()
		if entered++; entered == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(30 * time.Second):
			return errors.New("the writers never overlapped")
		}
		data, err := os.ReadFile(in)
		if err != nil {
			return err
		}
		return os.WriteFile(out, data, 0o644)
	}
	errs := make(chan error, n)
	for range n {
		go func() { errs <- WriteType(path, Tiny(), "q8_0", copyQ) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("WriteType: %v", err)
		}
	}
	if a := kv(readGGUF(t, path), "general.architecture"); a != "llama" {
		t.Fatalf("result: architecture %#v", a)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("files: %v %v, want only m.gguf", entries, err)
	}
}

func BenchmarkEncodeQwen05(b *testing.B) {
	p := Qwen05()
	b.SetBytes(2 * p.NumParams())
	for b.Loop() {
		if err := Encode(discard{}, p); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
