package llamacpp_test

import (
	"slices"
	"testing"
	"time"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/synth"
	"github.com/llorch/llorch/core/testkit"
)

func loadTiny(t *testing.T) *llamacpp.Model {
	t.Helper()
	m := testkit.LoadModel(t, synth.Tiny())
	return m
}

// greedy evaluates prompt on sequence 0 and generates n tokens greedily,
// letting the context idle halfway.
func greedy(t *testing.T, c *llamacpp.Context, prompt []backends.Token, n int) []backends.Token {
	t.Helper()
	if err := c.TrimSeq(0, 0); err != nil {
		t.Fatal(err)
	}
	smp, err := c.NewSampler(backends.SamplerParams{IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer smp.Close()
	var b backends.Batch
	for i, tok := range prompt {
		b.Add(tok, int32(i), 0, i == len(prompt)-1)
	}
	var out []backends.Token
	for len(out) < n {
		if err := c.Decode(&b); err != nil {
			t.Fatal(err)
		}
		tok, err := c.Sample(smp, b.Len()-1, nil)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok)
		if len(out) == n/2 {
			c.Idle()
		}
		b.Reset()
		b.Add(tok, int32(len(prompt)+len(out)-1), 0, true)
	}
	return out
}

// A context with a threadpool (two threads) generates what a one-thread
// context does, driven call by call or from inside Own, across an Idle.
func TestThreadpoolAndOwn(t *testing.T) {
	m := loadTiny(t)
	prompt := tokens(t, m, "Once upon a time there was a")[0]
	newCtx := func(threads int) *llamacpp.Context {
		bc, err := m.NewContext(backends.ContextParams{SeqCtx: 256, Seqs: 1, Batch: 64, Threads: threads})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { bc.Close() })
		return bc.(*llamacpp.Context)
	}
	one, two := newCtx(1), newCtx(2)
	want := greedy(t, one, prompt, 24)
	if got := greedy(t, two, prompt, 24); !slices.Equal(got, want) {
		t.Fatalf("two threads generated %v, one thread %v", got, want)
	}
	var owned []backends.Token
	done := make(chan struct{})
	go func() {
		defer close(done)
		two.Own(func() { owned = greedy(t, two, prompt, 24) })
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("calls from inside Own did not run (a hand-off to the busy thread?)")
	}
	if !slices.Equal(owned, want) {
		t.Fatalf("inside Own: %v, want %v", owned, want)
	}
}

// A call from another goroutine while Own runs waits for it: the context is
// never used from two threads at once.
func TestOwnExcludesOtherCallers(t *testing.T) {
	m := loadTiny(t)
	bc, err := m.NewContext(backends.ContextParams{SeqCtx: 64, Seqs: 1, Batch: 8, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer bc.Close()
	c := bc.(*llamacpp.Context)
	inside, release := make(chan struct{}), make(chan struct{})
	go c.Own(func() {
		close(inside)
		<-release
	})
	<-inside
	trimmed := make(chan struct{})
	go func() {
		_ = c.TrimSeq(0, 0)
		close(trimmed)
	}()
	select {
	case <-trimmed:
		t.Fatal("a call from another goroutine ran while Own held the thread")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-trimmed:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting call did not run after Own returned")
	}
}
