package llamacpp_test

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/synth"
)

func loadEmbedder(t *testing.T, pooling uint32, p backends.EmbedParams) (*llamacpp.Model, backends.Embedder) {
	t.Helper()
	preset := synth.Tiny()
	preset.PoolingType = pooling
	path := filepath.Join(t.TempDir(), "tiny.gguf")
	if err := synth.Write(path, preset); err != nil {
		t.Fatal(err)
	}
	m, err := llamacpp.Load(path, llamacpp.LoadParams{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	e, err := m.NewEmbedder(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return m, e
}

func tokens(t *testing.T, m *llamacpp.Model, texts ...string) [][]backends.Token {
	t.Helper()
	var out [][]backends.Token
	for _, s := range texts {
		toks, err := m.Tokenize(s, true, false)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, toks)
	}
	return out
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// Inputs packed into one decode (and split across decodes by the sequence
// and token limits) get the vectors they get one by one.
func TestEmbedBatchedEqualsOneByOne(t *testing.T) {
	m, e := loadEmbedder(t, 0, backends.EmbedParams{Tokens: 60, Seqs: 3, Threads: 1})
	info := e.Info()
	if info.Size != 64 || info.Pooling != "mean" || !info.PoolingDefaulted || info.MaxTokens != 60 {
		t.Fatalf("info %+v: want size 64, mean pooling defaulted, 60 tokens", info)
	}
	in := tokens(t, m, "the cat sat", "on the mat", "a much longer sentence about nothing at all, and more",
		"x", "the cat sat", "the quick brown fox jumps over the lazy dog again and again")
	batched, err := e.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(batched) != len(in) {
		t.Fatalf("%d vectors for %d inputs", len(batched), len(in))
	}
	for i := range in {
		one, err := e.Embed(in[i : i+1])
		if err != nil {
			t.Fatal(err)
		}
		if len(one[0]) != info.Size {
			t.Fatalf("vector %d has %d values", i, len(one[0]))
		}
		if d := maxDiff(one[0], batched[i]); d > 1e-5 {
			t.Errorf("input %d: batched differs from alone by %g", i, d)
		}
	}
	if maxDiff(batched[0], batched[4]) != 0 {
		t.Error("identical inputs in one batch got different vectors")
	}
	if maxDiff(batched[0], batched[1]) < 1e-4 {
		t.Error("different inputs got the same vector")
	}
}

// The pooling named in the GGUF is used: last pooling of a sequence is the
// vector of its last token, which mean pooling is not.
func TestEmbedPoolingFromModel(t *testing.T) {
	m, last := loadEmbedder(t, 3, backends.EmbedParams{Tokens: 64, Seqs: 4, Threads: 1})
	if info := last.Info(); info.Pooling != "last" || info.PoolingDefaulted {
		t.Fatalf("info %+v: want last pooling from the model", info)
	}
	_, mean := loadEmbedder(t, 1, backends.EmbedParams{Tokens: 64, Seqs: 4, Threads: 1})
	if info := mean.Info(); info.Pooling != "mean" || info.PoolingDefaulted {
		t.Fatalf("info %+v: want mean pooling from the model", info)
	}
	in := tokens(t, m, "one two three four")
	a, err := last.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	b, err := mean.Embed(in)
	if err != nil {
		t.Fatal(err)
	}
	if maxDiff(a[0], b[0]) < 1e-4 {
		t.Error("last and mean pooling gave the same vector")
	}
}

func TestEmbedRefusesBadInputs(t *testing.T) {
	_, e := loadEmbedder(t, 0, backends.EmbedParams{Tokens: 16, Seqs: 2, Threads: 1})
	long := make([]backends.Token, 17)
	for name, in := range map[string][][]backends.Token{
		"empty":     {{}},
		"too long":  {long},
		"not vocab": {{1, 100000}},
	} {
		if _, err := e.Embed(in); !errors.Is(err, llamacpp.ErrEmbed) {
			t.Errorf("%s: err %v, want ErrEmbed", name, err)
		}
	}
}

// BenchmarkEmbed32 embeds 32 short inputs in one decode and one decode each,
// on the tiny model, without HTTP.
func BenchmarkEmbed32(b *testing.B) {
	preset := synth.Tiny()
	path := filepath.Join(b.TempDir(), "tiny.gguf")
	if err := synth.Write(path, preset); err != nil {
		b.Fatal(err)
	}
	m, err := llamacpp.Load(path, llamacpp.LoadParams{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	e, err := m.NewEmbedder(backends.EmbedParams{Tokens: 512, Seqs: 64, Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	in := make([][]backends.Token, 32)
	for i := range in {
		if in[i], err = m.Tokenize(fmt.Sprintf("short input %d about the sea", i), true, false); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("batched", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.Embed(in); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(in))/b.Elapsed().Seconds(), "embeddings/s")
	})
	b.Run("one-by-one", func(b *testing.B) {
		for b.Loop() {
			for i := range in {
				if _, err := e.Embed(in[i : i+1]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*len(in))/b.Elapsed().Seconds(), "embeddings/s")
	})
}
