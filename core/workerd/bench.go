package workerd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/llorch/llorch/backends"
)

// BenchConfig follows llama-bench: a prompt-processing test of Prompt random
// tokens and a generation test of Gen single-token decodes, each repeated Reps
// times after a warm-up, with the KV cache cleared before every repetition.
type BenchConfig struct {
	Prompt    int
	Gen       int
	Reps      int
	Threads   int
	Batch     int
	FlashAttn string
	// Depth tokens are evaluated (untimed) before each repetition, to measure
	// at a KV cache depth like a served request's (llama-bench -d).
	Depth int
	// Baseline also times each test with the backend's native loop (llama.cpp
	// driven from C, as llama-bench does), interleaved rep by rep, when the
	// backend has one.
	Baseline bool
}

// NativeLooper is the optional ability of a backend context to run a bench
// test without Go in the loop.
type NativeLooper interface {
	NativeLoop(depth, prompt, gen int, seed uint32) (seconds float64, err error)
}

// BenchStat is tokens per second over the repetitions.
type BenchStat struct {
	Test    string    `json:"test"`
	Tokens  int       `json:"tokens"`
	Mean    float64   `json:"tokens_per_second"`
	StdDev  float64   `json:"stddev"`
	Samples []float64 `json:"samples"`
	// Baseline is the same test through the native loop, when measured.
	Baseline *BenchStat `json:"baseline,omitempty"`
}

func (s BenchStat) String() string {
	out := fmt.Sprintf("%-10s %9.2f ± %.2f tok/s", s.Test, s.Mean, s.StdDev)
	if b := s.Baseline; b != nil {
		out += fmt.Sprintf("   native loop %9.2f ± %.2f tok/s   ratio %.3f", b.Mean, b.StdDev, s.Mean/b.Mean)
	}
	return out
}

// Bench measures m on the calling goroutine.
func Bench(ctx context.Context, m backends.Model, cfg BenchConfig) ([]BenchStat, error) {
	if cfg.Reps < 1 || cfg.Prompt < 0 || cfg.Gen < 0 || cfg.Prompt+cfg.Gen == 0 {
		return nil, errors.New("workerd: bench needs reps >= 1 and a prompt or generation length")
	}
	if cfg.Batch == 0 {
		cfg.Batch = 512
	}
	bctx, err := m.NewContext(backends.ContextParams{SeqCtx: max(cfg.Depth+cfg.Prompt+cfg.Gen, 64), Seqs: 1,
		Batch: cfg.Batch, Threads: cfg.Threads, ThreadsBatch: cfg.Threads, FlashAttn: cfg.FlashAttn})
	if err != nil {
		return nil, err
	}
	defer bctx.Close()
	vocab := m.Info().VocabSize
	rng := rand.New(rand.NewPCG(1, 2))
	var b backends.Batch

	fill := func(from, n int) error {
		for done := 0; done < n; {
			k := min(cfg.Batch, n-done)
			b.Reset()
			for i := range k {
				b.Add(backends.Token(rng.IntN(vocab)), int32(from+done+i), 0, done+i == n-1)
			}
			if err := bctx.Decode(&b); err != nil {
				return err
			}
			done += k
		}
		return nil
	}
	prompt := func(n int) error { return fill(cfg.Depth, n) }
	gen := func(n int) error {
		tok := backends.Token(rng.IntN(vocab))
		for i := range n {
			b.Reset()
			b.Add(tok, int32(cfg.Depth+i), 0, true)
			if err := bctx.Decode(&b); err != nil {
				return err
			}
			tok = backends.Token(rng.IntN(vocab))
		}
		return nil
	}
	native, hasNative := bctx.(NativeLooper)
	if cfg.Baseline && !hasNative {
		return nil, errors.New("workerd: this backend has no native loop for --baseline")
	}
	run := func(name string, n int, f func(int) error, isGen bool) (BenchStat, error) {
		st := BenchStat{Test: name, Tokens: n}
		var base *BenchStat
		if cfg.Baseline {
			base = &BenchStat{Test: name, Tokens: n}
		}
		if err := bctx.TrimSeq(0, 0); err != nil { // warm-up
			return st, err
		}
		if err := fill(0, cfg.Depth); err != nil {
			return st, err
		}
		if err := f(min(n, 16)); err != nil {
			return st, err
		}
		for range cfg.Reps {
			if err := ctx.Err(); err != nil {
				return st, err
			}
			if err := bctx.TrimSeq(0, 0); err != nil {
				return st, err
			}
			if err := fill(0, cfg.Depth); err != nil {
				return st, err
			}
			t0 := time.Now()
			if err := f(n); err != nil {
				return st, err
			}
			st.Samples = append(st.Samples, float64(n)/time.Since(t0).Seconds())
			if base != nil {
				p, g := n, 0
				if isGen {
					p, g = 0, n
				}
				secs, err := native.NativeLoop(cfg.Depth, p, g, uint32(len(st.Samples)))
				if err != nil {
					return st, err
				}
				base.Samples = append(base.Samples, float64(n)/secs)
			}
		}
		st.Mean, st.StdDev = meanStd(st.Samples)
		if base != nil {
			base.Mean, base.StdDev = meanStd(base.Samples)
			st.Baseline = base
		}
		return st, nil
	}
	var out []BenchStat
	if cfg.Prompt > 0 {
		name := fmt.Sprintf("pp%d", cfg.Prompt)
		if cfg.Depth > 0 {
			name += fmt.Sprintf("@d%d", cfg.Depth)
		}
		st, err := run(name, cfg.Prompt, prompt, false)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	if cfg.Gen > 0 {
		name := fmt.Sprintf("tg%d", cfg.Gen)
		if cfg.Depth > 0 {
			name += fmt.Sprintf("@d%d", cfg.Depth)
		}
		st, err := run(name, cfg.Gen, gen, true)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func meanStd(xs []float64) (float64, float64) {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	if len(xs) < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(xs)-1))
}
