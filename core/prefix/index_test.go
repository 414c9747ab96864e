package prefix

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/llorch/llorch/core/api"
)

const model = "qwen"

// sysPrompt is long enough to fill several blocks.
var sysPrompt = strings.Repeat("You are a helpful assistant. Answer briefly and precisely. ", 8)

func hashesOf(req *api.ExecuteRequest) []uint64 {
	return Hashes(nil, model, AppendRequest(nil, req), DefaultBlockBytes)
}

func generated(req *api.ExecuteRequest, text string) []uint64 {
	return Hashes(nil, model, AppendGenerated(nil, req, text), DefaultBlockBytes)
}

// conversation is a chat's first turn: a system prompt and a user message.
func conversation(topic string) *api.ExecuteRequest {
	return chat(system(sysPrompt), user(topic+": tell me everything you know about it, in detail, with examples, and then some more."))
}

func lookup(x *Index, hashes []uint64, workers ...string) []int {
	out := make([]int, len(workers))
	x.Lookup(hashes, workers, out)
	return out
}

// checkInvariants recounts what x holds from its sequences.
func checkInvariants(t *testing.T, x *Index) {
	t.Helper()
	x.mu.RLock()
	defer x.mu.RUnlock()
	blocks, seqs := 0, 0
	for id, w := range x.workers {
		if w.id != id || len(w.seqs) == 0 || len(w.seqs) > MaxSlots {
			t.Fatalf("worker %q: id %q, %d sequences", id, w.id, len(w.seqs))
		}
		held := map[uint64]int32{}
		slots := map[int]bool{}
		for _, s := range w.seqs {
			if s.slot >= 0 && slots[s.slot] {
				t.Fatalf("worker %q: slot %d tracked twice", id, s.slot)
			}
			slots[s.slot] = s.slot >= 0
			if s.w != w || len(s.h) == 0 || len(s.h) > x.cfg.MaxSeqBlocks {
				t.Fatalf("worker %q: a sequence of %d blocks", id, len(s.h))
			}
			for _, h := range s.h {
				held[h]++
			}
			blocks += len(s.h)
			seqs++
		}
		if len(held) != len(w.held) {
			t.Fatalf("worker %q: %d hashes held, counted %d", id, len(w.held), len(held))
		}
		for h, c := range held {
			if w.held[h] != c {
				t.Fatalf("worker %q: hash %x counted %d, recount %d", id, h, w.held[h], c)
			}
		}
	}
	anyone := map[uint64]int32{}
	for _, w := range x.workers {
		for h := range w.held {
			anyone[h]++
		}
	}
	if len(anyone) != len(x.anyone) {
		t.Fatalf("%d hashes held by anyone, counted %d", len(x.anyone), len(anyone))
	}
	for h, c := range anyone {
		if x.anyone[h] != c {
			t.Fatalf("hash %x: %d holders, recount %d", h, x.anyone[h], c)
		}
	}
	listed := 0
	for s := x.lru.next; s != &x.lru; s = s.next {
		if s.next.prev != s {
			t.Fatal("recency list broken")
		}
		listed++
	}
	if blocks != x.blocks || seqs != x.seqs || listed != seqs || blocks > x.cfg.MaxBlocks {
		t.Fatalf("blocks %d (counted %d, max %d), sequences %d (counted %d, listed %d)", x.blocks, blocks, x.cfg.MaxBlocks, x.seqs, seqs, listed)
	}
}

func TestIndexConversation(t *testing.T) {
	x := New(Config{})
	turn1 := conversation("the sea")
	reply := strings.Repeat("The sea is large and deep. ", 10)
	x.Record("w1", 4, generated(turn1, reply))
	x.Record("w2", 4, hashesOf(conversation("mountains")))
	turn2 := chat(append(append([]api.Message(nil), turn1.Messages...), assistant(reply), user(strings.Repeat("And the ocean floor? ", 8)))...)
	h := hashesOf(turn2)
	got := lookup(x, h, "w1", "w2", "w3")
	held := len(generated(turn1, reply))
	if got[0] != held || got[0] >= len(h) {
		t.Fatalf("turn 2 on w1: %d of %d blocks, want the %d recorded", got[0], len(h), held)
	}
	if got[1] == 0 || got[1] >= got[0] {
		t.Fatalf("turn 2 on w2 (same system prompt): %d blocks, want some but fewer than w1's %d", got[1], got[0])
	}
	if got[2] != 0 {
		t.Fatalf("unknown worker holds %d blocks", got[2])
	}
	checkInvariants(t, x)
}

func TestIndexSharedSystemPrompt(t *testing.T) {
	x := New(Config{})
	a, b := conversation("cats"), conversation("dogs")
	x.Record("w", 2, hashesOf(a))
	ha, hb := hashesOf(a), hashesOf(b)
	common := commonPrefix(ha, hb)
	if common < 5 {
		t.Fatalf("the two conversations share %d blocks; the test wants a long system prompt", common)
	}
	if got := lookup(x, hb, "w")[0]; got != common {
		t.Fatalf("b on w: %d blocks, want the shared %d", got, common)
	}
	if got := lookup(x, ha, "w")[0]; got != len(ha) {
		t.Fatalf("a on w: %d blocks, want %d", got, len(ha))
	}
}

func TestIndexSlots(t *testing.T) {
	convs := []*api.ExecuteRequest{
		chat(user(strings.Repeat("first conversation ", 30))),
		chat(user(strings.Repeat("second conversation ", 30))),
		chat(user(strings.Repeat("third conversation ", 30))),
	}
	for _, tc := range []struct {
		name  string
		slots int
		held  []bool // which conversations the worker holds after serving all three
	}{
		{"one slot", 1, []bool{false, false, true}},
		{"zero means one", 0, []bool{false, false, true}},
		{"negative means one", -3, []bool{false, false, true}},
		{"two slots evict the first", 2, []bool{false, true, true}},
		{"three slots", 3, []bool{true, true, true}},
		{"huge slot count", 1e9, []bool{true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := New(Config{})
			for _, c := range convs {
				x.Record("w", tc.slots, hashesOf(c))
			}
			for i, c := range convs {
				h := hashesOf(c)
				if got := lookup(x, h, "w")[0] == len(h); got != tc.held[i] {
					t.Errorf("conversation %d held: %v, want %v", i+1, got, tc.held[i])
				}
			}
			checkInvariants(t, x)
		})
	}
	t.Run("reuse keeps the other slot", func(t *testing.T) {
		// A worker with 2 slots serving conversation 1's next turn reuses
		// its slot: conversation 2 stays.
		x := New(Config{})
		x.Record("w", 2, hashesOf(convs[0]))
		x.Record("w", 2, hashesOf(convs[1]))
		next := generated(convs[0], "a reply long enough to add a block or two to the sequence, really quite long")
		x.Record("w", 2, next)
		if got := lookup(x, hashesOf(convs[1]), "w")[0]; got != len(hashesOf(convs[1])) {
			t.Fatalf("conversation 2: %d blocks", got)
		}
		if got := lookup(x, next, "w")[0]; got != len(next) {
			t.Fatalf("conversation 1's next turn: %d of %d blocks", got, len(next))
		}
		if s := x.Stats(); s.Sequences != 2 || s.Workers != 1 {
			t.Fatalf("stats %+v", s)
		}
		checkInvariants(t, x)
	})
	t.Run("reported slots", func(t *testing.T) {
		// Two conversations sharing a system prompt: Record guesses the
		// worker reused the slot holding the first (as it would when idle);
		// with the reported slots both are held.
		a, b := conversation("cats"), conversation("dogs")
		x := New(Config{})
		x.Record("guess", 2, hashesOf(a))
		x.Record("guess", 2, hashesOf(b))
		x.RecordSlot("told", 2, 0, hashesOf(a))
		x.RecordSlot("told", 2, 1, hashesOf(b))
		ha := hashesOf(a)
		if got := lookup(x, ha, "guess", "told"); got[0] == len(ha) || got[1] != len(ha) {
			t.Fatalf("conversation a: %v blocks on guess and told, want fewer than %d and %d", got, len(ha), len(ha))
		}
		// Slot 0 again: a replaces b's neighbour, not b.
		x.RecordSlot("told", 2, 0, hashesOf(convs[0]))
		if got := lookup(x, hashesOf(b), "told")[0]; got != len(hashesOf(b)) {
			t.Fatalf("conversation b: %d blocks", got)
		}
		// Out of range slots are unknown: the guess.
		x.RecordSlot("told", 2, 7, hashesOf(convs[1]))
		x.RecordSlot("told", 2, -1, hashesOf(convs[2]))
		if s := x.Stats(); s.Sequences != 3 {
			t.Fatalf("stats %+v", s)
		}
		checkInvariants(t, x)
	})
	t.Run("fewer slots later", func(t *testing.T) {
		x := New(Config{})
		for _, c := range convs {
			x.Record("w", 3, hashesOf(c))
		}
		x.Record("w", 1, hashesOf(convs[2]))
		if s := x.Stats(); s.Sequences != 1 {
			t.Fatalf("%d sequences tracked for a 1-slot worker", s.Sequences)
		}
		checkInvariants(t, x)
	})
	t.Run("empty stream takes a slot", func(t *testing.T) {
		x := New(Config{})
		x.Record("w", 1, hashesOf(convs[0]))
		x.Record("w", 1, nil)
		if s := x.Stats(); s != (Stats{}) {
			t.Fatalf("stats %+v after an empty stream replaced the only slot", s)
		}
		x.Record("w2", 1, nil)
		if s := x.Stats(); s.Workers != 0 {
			t.Fatalf("an empty stream tracked a worker: %+v", s)
		}
	})
}

func TestIndexObserve(t *testing.T) {
	conv := conversation("rivers")
	h := hashesOf(conv)
	for _, tc := range []struct {
		name      string
		observed  int
		wantAfter int
	}{
		{"all confirmed", len(h), len(h)},
		{"within tolerance", len(h) - 1, len(h)},
		{"tail unconfirmed", 3, 3 + Tolerance},
		{"nothing reused", 0, Tolerance},
		{"negative", -5, Tolerance},
		{"more than asked", 1 << 40, len(h)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := New(Config{})
			x.RecordSlot("w", 2, 0, h)
			x.RecordSlot("w", 2, 1, hashesOf(conversation("lakes")))
			if p := x.Observe("w", h, tc.observed); p != len(h) {
				t.Fatalf("predicted %d, want %d", p, len(h))
			}
			if got := lookup(x, h, "w")[0]; got != tc.wantAfter {
				t.Fatalf("after observing %d: %d blocks, want %d", tc.observed, got, tc.wantAfter)
			}
			// The other conversation shares the system prompt: its sequence
			// loses what it shared past the kept blocks and what it chained
			// on them, and keeps everything when it shared no more.
			other := hashesOf(conversation("lakes"))
			want := len(other)
			if commonPrefix(h, other) > tc.wantAfter {
				want = tc.wantAfter
			}
			if got := lookup(x, other, "w")[0]; got != want {
				t.Fatalf("other conversation: %d blocks, want %d", got, want)
			}
			checkInvariants(t, x)
		})
	}
	t.Run("unknown worker", func(t *testing.T) {
		x := New(Config{})
		if p := x.Observe("nobody", h, 0); p != 0 {
			t.Fatalf("predicted %d", p)
		}
	})
	t.Run("tolerance keeps the first block", func(t *testing.T) {
		x := New(Config{})
		x.Record("w", 1, h)
		x.Observe("w", h, 0)
		if s := x.Stats(); s.Blocks != Tolerance || s.Workers != 1 {
			t.Fatalf("stats %+v", s)
		}
		if p := x.Observe("w", h[:1], 0); p != 1 {
			t.Fatalf("predicted %d", p)
		}
		if got := lookup(x, h, "w")[0]; got != Tolerance {
			t.Fatalf("%d blocks held", got)
		}
		checkInvariants(t, x)
	})
}

func TestIndexForget(t *testing.T) {
	x := New(Config{})
	h := hashesOf(conversation("stars"))
	x.Record("w1", 2, h)
	x.Record("w2", 2, h)
	x.Forget("w1")
	x.Forget("never seen")
	if got := lookup(x, h, "w1", "w2"); got[0] != 0 || got[1] != len(h) {
		t.Fatalf("after Forget(w1): %v", got)
	}
	if s := x.Stats(); s.Workers != 1 || s.Sequences != 1 || s.Blocks != len(h) {
		t.Fatalf("stats %+v", s)
	}
	if a, b, c := x.Sequences("w1"), x.Sequences("w2"), x.Sequences("never seen"); a != 0 || b != 1 || c != 0 {
		t.Fatalf("Sequences: w1 %d, w2 %d, unknown %d", a, b, c)
	}
	checkInvariants(t, x)
}

func TestIndexLookupEdges(t *testing.T) {
	x := New(Config{MaxSeqBlocks: 8})
	h := hashesOf(conversation("edges"))
	x.Record("w", 1, h)
	for _, tc := range []struct {
		name    string
		hashes  []uint64
		workers []string
		out     int
		want    []int
	}{
		{"clipped to MaxSeqBlocks", h, []string{"w"}, 1, []int{8}},
		{"no hashes", nil, []string{"w"}, 1, []int{0}},
		{"unknown workers", h, []string{"", "x", "w\x00"}, 3, []int{0, 0, 0}},
		{"short out", h, []string{"w", "w"}, 1, []int{8}},
		{"first block differs", append([]uint64{1}, h[1:]...), []string{"w"}, 1, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := make([]int, tc.out)
			for i := range out {
				out[i] = -1
			}
			x.Lookup(tc.hashes, tc.workers, out)
			if !slices.Equal(out, tc.want) {
				t.Fatalf("got %v, want %v", out, tc.want)
			}
		})
	}
	if s := x.Stats(); s.Blocks != 8 {
		t.Fatalf("a stream was recorded with %d blocks, want 8", s.Blocks)
	}
}

// TestIndexBounded records many distinct streams on many workers, with
// hostile slot counts, and checks that MaxBlocks holds throughout.
func TestIndexBounded(t *testing.T) {
	cfg := Config{MaxBlocks: 2000, MaxSeqBlocks: 300}
	x := New(cfg)
	rng := rand.New(rand.NewPCG(1, 2))
	slots := []int{0, -1, 1, 4, 1e9, math.MaxInt, math.MinInt}
	var buf []byte
	for i := range 5000 {
		worker := fmt.Sprintf("w%d", rng.IntN(300))
		buf = fmt.Appendf(buf[:0], "%s conversation %d ", sysPrompt[:rng.IntN(len(sysPrompt))], i)
		for range rng.IntN(100) {
			buf = append(buf, "more text, more blocks. "...)
		}
		h := Hashes(nil, model, buf, 16)
		x.Record(worker, slots[rng.IntN(len(slots))], h)
		if i%7 == 0 {
			x.Observe(worker, h, rng.IntN(len(h)+1))
		}
		if i%500 == 0 {
			x.Forget(fmt.Sprintf("w%d", rng.IntN(300)))
			checkInvariants(t, x)
		}
		if s := x.Stats(); s.Blocks > cfg.MaxBlocks || s.Sequences > s.Blocks || s.Workers > s.Sequences {
			t.Fatalf("record %d: stats %+v", i, s)
		}
	}
	checkInvariants(t, x)
	// The most recent stream is there in full: eviction takes the oldest.
	last := Hashes(nil, model, []byte(strings.Repeat("the last stream ", 400)), 16)
	x.Record("w0", 1, last)
	if got := lookup(x, last, "w0")[0]; got != cfg.MaxSeqBlocks {
		t.Fatalf("the last stream: %d blocks held, want %d", got, cfg.MaxSeqBlocks)
	}
	checkInvariants(t, x)
	t.Run("one stream larger than the bound", func(t *testing.T) {
		x := New(Config{MaxBlocks: 10, MaxSeqBlocks: 100})
		h := Hashes(nil, model, []byte(strings.Repeat("x", 64*50)), 64)
		x.Record("w", 1, h)
		if s := x.Stats(); s.Blocks != 10 {
			t.Fatalf("stats %+v", s)
		}
		checkInvariants(t, x)
	})
	t.Run("map memory follows what is held", func(t *testing.T) {
		x := New(Config{})
		big := Hashes(nil, model, []byte(strings.Repeat("y", 64*4000)), 64)
		x.Record("w", 1, big)
		x.Record("w", 1, big[:2]) // the same slot, cut to 2 blocks
		x.mu.RLock()
		peak := x.workers["w"].peak
		x.mu.RUnlock()
		if peak > 4 {
			t.Fatalf("map peak %d after shrinking to 2 blocks: not rebuilt", peak)
		}
		checkInvariants(t, x)
	})
}

func TestIndexTokens(t *testing.T) {
	x := New(Config{})
	for _, tc := range []struct {
		name   string
		model  string
		blocks int
		tokens int
	}{
		{"default ratio", "m", 4, 64},
		{"zero", "m", 0, 0},
		{"negative", "m", -4, 0},
		{"huge", "m", math.MaxInt, math.MaxInt32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := x.Tokens(tc.model, tc.blocks); got != tc.tokens {
				t.Fatalf("Tokens(%d) = %d, want %d", tc.blocks, got, tc.tokens)
			}
		})
	}
	for _, tc := range []struct {
		name         string
		tokens, want int
	}{
		{"inverse", 64, 4},
		{"floor", 79, 4},
		{"negative", -1, 0},
		{"huge", math.MaxInt, math.MaxInt32},
	} {
		t.Run("BlocksFor "+tc.name, func(t *testing.T) {
			if got := x.BlocksFor("m", tc.tokens); got != tc.want {
				t.Fatalf("BlocksFor(%d) = %d, want %d", tc.tokens, got, tc.want)
			}
		})
	}
	t.Run("learn", func(t *testing.T) {
		x := New(Config{})
		x.Learn("m", 0, 10)
		x.Learn("m", 10, 0)
		x.Learn("m", -1, -1)
		if s := x.Stats(); s.Models != 0 {
			t.Fatalf("nonsense learned: %+v", s)
		}
		x.Learn("m", 1000, 500) // 0.5 tokens a byte
		if got := x.Tokens("m", 1); got != 32 {
			t.Fatalf("after learning 0.5: %d tokens a block", got)
		}
		for range 200 {
			x.Learn("m", 1000, 250)
		}
		if got := x.Tokens("m", 100); got < 1595 || got > 1605 {
			t.Fatalf("after learning 0.25 many times: %d tokens in 100 blocks, want about 1600", got)
		}
		if got := x.Tokens("other", 1); got != 16 {
			t.Fatalf("another model: %d tokens a block", got)
		}
		x.Learn("wild", 1, math.MaxInt)
		if got := x.Tokens("wild", 1); got != 64*maxTokensPerByte {
			t.Fatalf("clamped ratio: %d tokens a block", got)
		}
		if got := x.BlocksFor("wild", math.MaxInt); got != math.MaxInt32 {
			t.Fatalf("BlocksFor huge: %d", got)
		}
	})
}

// TestIndexConcurrent runs every method at once (for -race).
func TestIndexConcurrent(t *testing.T) {
	x := New(Config{MaxBlocks: 500})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			out := make([]int, 3)
			workers := []string{"a", "b", "c"}
			for i := range 300 {
				h := hashesOf(conversation(fmt.Sprint(g, i%20)))
				w := workers[i%3]
				x.Record(w, 2, h)
				x.Lookup(h, workers, out)
				x.Observe(w, h, out[i%3]-1)
				x.Learn(model, 100, 30)
				_ = x.BlocksFor(model, x.Tokens(model, 3))
				if i%50 == 0 {
					x.Forget(w)
				}
				_ = x.Stats()
			}
		})
	}
	wg.Wait()
	checkInvariants(t, x)
}

// benchIndex holds 1000 workers × 4 slots of 100-block streams, every one
// sharing a 20-block system prompt.
func benchIndex(b *testing.B) (*Index, [][]uint64, []string) {
	x := New(Config{})
	system := strings.Repeat("s", 20*DefaultBlockBytes)
	var streams [][]uint64
	workers := make([]string, 1000)
	for w := range workers {
		workers[w] = fmt.Sprintf("worker-%04d", w)
		for s := range 4 {
			text := fmt.Sprintf("%s conversation %d on worker %d %s", system, s, w, strings.Repeat("t", 80*DefaultBlockBytes))
			h := Hashes(nil, model, []byte(text), DefaultBlockBytes)[:100]
			x.RecordSlot(workers[w], 4, s, h)
			streams = append(streams, h)
		}
	}
	if s := x.Stats(); s.Sequences != 4000 || s.Blocks != 400000 {
		b.Fatalf("stats %+v", s)
	}
	return x, streams, workers
}

// BenchmarkLookup looks up a recorded stream (every worker holds its first
// 20 blocks, one all 100: a full binary search on each worker) and a stream
// no worker holds (one probe a worker).
func BenchmarkLookup(b *testing.B) {
	x, streams, workers := benchIndex(b)
	out := make([]int, len(workers))
	b.Run("held", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			x.Lookup(streams[i%len(streams)], workers, out)
			i++
		}
		if w := (i - 1) % len(streams) / 4; out[w] != 100 || out[(w+1)%len(out)] != 20 {
			b.Fatalf("the recording worker holds %d blocks, the next %d", out[w], out[(w+1)%len(out)])
		}
	})
	b.Run("unknown", func(b *testing.B) {
		unknown := Hashes(nil, "another model", []byte(strings.Repeat("u", 100*DefaultBlockBytes)), DefaultBlockBytes)
		b.ReportAllocs()
		for b.Loop() {
			x.Lookup(unknown, workers, out)
		}
		if out[0] != 0 {
			b.Fatalf("%d blocks of an unknown stream held", out[0])
		}
	})
}

func BenchmarkRecord(b *testing.B) {
	x, streams, workers := benchIndex(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// Another worker's stream, which shares the system prompt with the
		// slot it replaces.
		x.RecordSlot(workers[i%len(workers)], 4, i%4, streams[(i*7+1)%len(streams)])
		i++
	}
}
