package workerd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerclient"
	"github.com/llorch/llorch/core/workerd"
)

func fourSlots(c *workerd.Config) { c.Slots = 4; c.Ctx = 2048 }

func tokensJSON(t *testing.T, r *workerclient.Result) string {
	t.Helper()
	b, err := json.Marshal(r.Tokens)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stepsAbove is how many decode steps carried more than n sequences (n a
// bucket bound of llorch_worker_batch_sequences: 1, 2, 4, ...).
func stepsAbove(t *testing.T, url string, n int) float64 {
	t.Helper()
	m := scrape(t, url)
	return metric(t, m, "llorch_worker_batch_sequences_count") - metric(t, m, fmt.Sprintf(`llorch_worker_batch_sequences_bucket{le="%d"}`, n))
}

// sampledReq is a request whose output depends on its seed.
func sampledReq(prompt string, n int, seed int64) *api.ExecuteRequest {
	r := req(prompt, n, seed)
	r.Temperature = ptr(0.9)
	r.IgnoreEOS = true
	return r
}

func TestConcurrentStreamsMatchSolo(t *testing.T) {
	w := startWorker(t, fourSlots)
	prompts := []string{"Alpha streams first", "Beta is second here", "Gamma, the third one", "Delta closes the set"}
	// Each prompt alone, one after another.
	solo := make([]string, len(prompts))
	for i, p := range prompts {
		res := collect(t, w.client, sampledReq(p, 40, int64(i+1)))
		if res.End == nil {
			t.Fatalf("solo %d: %v", i, res.Error)
		}
		solo[i] = tokensJSON(t, res)
	}
	// One stream at a time never shares a decode step.
	if n := stepsAbove(t, w.url, 1); n != 0 {
		t.Fatalf("%v decode steps of sequential streams carried several sequences", n)
	}
	// Fresh worker, so no slot has a cached prefix: all four at once. The
	// loop is held until all four have a slot, so they share decode steps.
	w2 := startWorker(t, fourSlots)
	w2.pace.hold()
	together := make([]*workerclient.Result, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Go(func() {
			res, err := w2.client.Collect(context.Background(), sampledReq(p, 40, int64(i+1)))
			if err != nil {
				t.Errorf("stream %d: %v", i, err)
				return
			}
			together[i] = res
		})
	}
	waitBusy(t, w2, 4)
	w2.pace.release()
	wg.Wait()
	slots := map[int]bool{}
	for i, res := range together {
		if res == nil || res.End == nil {
			t.Fatalf("stream %d incomplete: %+v", i, res)
		}
		if res.End.TokensOut != 40 || len(res.Tokens) != 40 || res.End.StopReason != api.StopMaxTokens {
			t.Errorf("stream %d: %d tokens, end %+v", i, len(res.Tokens), res.End)
		}
		for k, tk := range res.Tokens {
			if tk.I != k || !utf8.ValidString(tk.T) {
				t.Errorf("stream %d token %d = %+v", i, k, tk)
			}
		}
		slots[res.Started.Slot] = true
		if got := tokensJSON(t, res); got != solo[i] {
			t.Errorf("stream %d beside others differs from alone:\nalone:    %s\ntogether: %s", i, solo[i], got)
		}
	}
	if len(slots) != 4 {
		t.Errorf("4 concurrent streams used slots %v", slots)
	}
	// Batching happened: decode steps carried more than one sequence (all
	// four for about 39 steps).
	if n := stepsAbove(t, w2.url, 1); n < 39 {
		t.Errorf("only %v decode steps carried several sequences", n)
	}
}

func TestBeyondSlotCount(t *testing.T) {
	w := startWorker(t, fourSlots)
	var streams []*workerclient.Stream
	defer func() {
		for _, st := range streams {
			st.Close()
		}
	}()
	// Held, none of the four can finish.
	w.pace.hold()
	for i := range 4 {
		st, err := w.client.Execute(context.Background(), req(fmt.Sprintf("busy %d", i), 1500, 1))
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	status, eb, hdr := postRaw(t, w.url+"/execute", `{"prompt":"fifth","max_tokens":2}`)
	if status != http.StatusServiceUnavailable || eb.Error.Code != api.CodeAllSlotsBusy || hdr.Get("Retry-After") == "" || !eb.Error.Retriable {
		t.Errorf("fifth request: %d %+v Retry-After=%q", status, eb.Error, hdr.Get("Retry-After"))
	}
	h, err := w.client.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.SlotsBusy != 4 || h.SlotsTotal != 4 || len(h.Slots) != 4 || h.SlotCtx != 2048 {
		t.Errorf("health = busy %d total %d slots %d ctx %d", h.SlotsBusy, h.SlotsTotal, len(h.Slots), h.SlotCtx)
	}
}

func TestCancelOneOfFour(t *testing.T) {
	w := startWorker(t, fourSlots)
	type out struct {
		res *workerclient.Result
		err error
	}
	results := make([]out, 4)
	started := make(chan string, 4)
	var wg sync.WaitGroup
	// Held from the start: no stream can finish before the cancel.
	w.pace.hold()
	for i := range 4 {
		wg.Go(func() {
			st, err := w.client.Execute(context.Background(), sampledReq(fmt.Sprintf("stream %d of four", i), 300, int64(i)))
			if err != nil {
				results[i].err = err
				started <- ""
				return
			}
			defer st.Close()
			res := &workerclient.Result{}
			for {
				ev, err := st.Next()
				if err != nil {
					results[i] = out{res, err}
					return
				}
				switch {
				case ev.Started != nil:
					res.Started = *ev.Started
				case ev.Token != nil:
					if len(res.Tokens) == 0 {
						started <- res.Started.JobID
					}
					if res.Error != nil {
						results[i] = out{res, fmt.Errorf("token after error")}
						return
					}
					res.Tokens = append(res.Tokens, *ev.Token)
				case ev.End != nil:
					res.End = ev.End
					results[i] = out{res, nil}
					return
				case ev.Error != nil:
					res.Error = ev.Error
					results[i] = out{res, nil}
					return
				}
			}
		})
	}
	waitBusy(t, w, 4)
	w.pace.parked(t)
	// Two steps give each a first token: the first may hold one prompt only.
	w.pace.step(t)
	w.pace.step(t)
	var victim string
	for range 4 {
		select {
		case id := <-started:
			if victim == "" {
				victim = id
			}
		case <-time.After(10 * time.Second):
			t.Fatal("not every stream got a token")
		}
	}
	if resp, err := w.client.Cancel(context.Background(), victim); err != nil || !resp.Found {
		t.Fatalf("cancel: %+v %v", resp, err)
	}
	w.pace.release()
	wg.Wait()
	cancelled := 0
	for i, o := range results {
		if o.err != nil {
			t.Fatalf("stream %d: %v", i, o.err)
		}
		if o.res.Started.JobID == victim {
			cancelled++
			if o.res.Error == nil || o.res.Error.Code != api.CodeCancelled {
				t.Errorf("victim ended with %+v %+v", o.res.End, o.res.Error)
			}
			continue
		}
		if o.res.End == nil || o.res.End.TokensOut != 300 || len(o.res.Tokens) != 300 {
			t.Errorf("stream %d not intact: %d tokens, end %+v, err %+v", i, len(o.res.Tokens), o.res.End, o.res.Error)
		}
	}
	if cancelled != 1 {
		t.Errorf("%d streams cancelled", cancelled)
	}
}

func TestPromptCacheReuse(t *testing.T) {
	w := startWorker(t, fourSlots)
	system := strings.Repeat("You are a careful assistant who answers briefly. ", 6)
	chat := func(user string) *api.ExecuteRequest {
		return &api.ExecuteRequest{Messages: []api.Message{{Role: "system", Content: system}, {Role: "user", Content: user}},
			MaxTokens: ptr(16), Seed: ptr(int64(5)), Temperature: ptr(0.7)}
	}
	cold := collect(t, w.client, chat("What is a river?"))
	if cold.End == nil || cold.End.CachedTokens != 0 {
		t.Fatalf("cold run: %+v %v", cold.End, cold.Error)
	}
	warm := collect(t, w.client, chat("What is a river?"))
	if warm.End == nil || warm.End.CachedTokens == 0 || warm.Started.CachedTokens != warm.End.CachedTokens {
		t.Fatalf("repeat run reused nothing: %+v", warm.End)
	}
	if warm.End.CachedTokens != warm.End.PromptTokens-1 {
		t.Errorf("repeat run cached %d of %d prompt tokens, want all but the last", warm.End.CachedTokens, warm.End.PromptTokens)
	}
	if tokensJSON(t, warm) != tokensJSON(t, cold) {
		t.Errorf("cached run differs from cold run:\ncold: %s\nwarm: %s", tokensJSON(t, cold), tokensJSON(t, warm))
	}
	// A different question with the same system prompt reuses the shared prefix.
	other := collect(t, w.client, chat("Name a mountain."))
	if other.End == nil || other.End.CachedTokens < 40 || other.End.CachedTokens >= other.End.PromptTokens {
		t.Errorf("shared system prompt: cached %d of %d", other.End.CachedTokens, other.End.PromptTokens)
	}
	// And it matches what a cold worker produces.
	w2 := startWorker(t, fourSlots)
	if fresh := collect(t, w2.client, chat("Name a mountain.")); tokensJSON(t, fresh) != tokensJSON(t, other) {
		t.Errorf("partially cached run differs from cold run")
	}
	// Counted: two requests hit the cache (one slot held the prefix, so
	// nothing was copied), and every prompt token was counted once.
	m := scrape(t, w.url)
	for series, want := range map[string]float64{
		"llorch_worker_prompt_cache_hits_total":    2,
		"llorch_worker_prompt_tokens_cached_total": float64(warm.End.CachedTokens + other.End.CachedTokens),
		"llorch_worker_prompt_cache_copies_total":  0,
		"llorch_worker_prompt_tokens_total":        float64(cold.End.PromptTokens + warm.End.PromptTokens + other.End.PromptTokens),
	} {
		if got := metric(t, m, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

// TestLongPromptDoesNotStallStreams: while one slot prefills a long prompt in
// chunks, the other slot's stream gets its next token at every step.
func TestLongPromptDoesNotStallStreams(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Slots = 2; c.Ctx = 4096; c.Batch = 64 })
	ctx := context.Background()
	// The loop goes one step at a time, from stream A's first.
	w.pace.hold()
	a, err := w.client.Execute(ctx, req("decoding stream", 3000, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	aTok := make(chan int, 4096)
	go func() {
		defer close(aTok)
		for {
			ev, err := a.Next()
			if err != nil || ev.Terminal() {
				return
			}
			if ev.Token != nil {
				aTok <- ev.Token.I
			}
		}
	}()
	nextA := func(want int) {
		t.Helper()
		select {
		case i, ok := <-aTok:
			if !ok || i != want {
				t.Fatalf("stream A: token %d (open %v), want %d", i, ok, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("stream A: no token %d", want)
		}
	}
	w.pace.parked(t)
	w.pace.step(t) // A's prompt and first token
	nextA(0)

	long := strings.Repeat("long prompt words fill the context ", 70)
	rb := req(long, 2, 1)
	rb.JobID = "long-prompt"
	b, err := w.client.Execute(ctx, rb) // returns once B has its slot
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	steps := 0
	for {
		w.pace.step(t)
		steps++
		nextA(steps) // every step carried A's next token
		h, err := w.client.Health(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(h.Slots, func(s api.SlotState) bool { return s.JobID == rb.JobID && s.State == "decode" }) {
			break
		}
		if steps > 200 {
			t.Fatalf("B still prefilling after %d steps: %+v", steps, h.Slots)
		}
	}
	w.pace.release()
	res := readStream(t, b)
	if res.End == nil || res.End.TokensOut != 2 {
		t.Fatalf("B: %+v %v", res.End, res.Error)
	}
	// B joined after the step that was waiting when it arrived, then took
	// chunks of at most 63 tokens (the batch of 64 less A's token).
	prompt := res.End.PromptTokens
	t.Logf("prompt of %d tokens in chunks of 63: prefilled in %d steps, each with a token of the other stream", prompt, steps-1)
	if prompt < 640 {
		t.Fatalf("prompt only %d tokens", prompt)
	}
	if want := (prompt + 62) / 63; steps-1 < want {
		t.Errorf("B's %d-token prompt took %d steps, want at least %d chunks", prompt, steps-1, want)
	}
}

// readStream reads a stream to its terminal event.
func readStream(t *testing.T, st *workerclient.Stream) *workerclient.Result {
	t.Helper()
	res := &workerclient.Result{}
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("stream broke: %v", err)
		}
		switch {
		case ev.Started != nil:
			res.Started = *ev.Started
		case ev.Token != nil:
			res.Tokens = append(res.Tokens, *ev.Token)
		case ev.End != nil:
			res.End = ev.End
			return res
		case ev.Error != nil:
			res.Error = ev.Error
			return res
		}
	}
}

// TestPrefixCopiedFromAnotherSlot: a request whose free slot has nothing
// cached starts from the prefix a busy slot holds (KV copied across slots),
// and generates exactly what a cold worker generates.
func TestPrefixCopiedFromAnotherSlot(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Slots = 2; c.Ctx = 4096 })
	system := strings.Repeat("Answer in one short sentence, politely. ", 8)
	chat := func(user string, n int) *api.ExecuteRequest {
		return &api.ExecuteRequest{Messages: []api.Message{{Role: "system", Content: system}, {Role: "user", Content: user}},
			MaxTokens: ptr(n), Seed: ptr(int64(9)), Temperature: ptr(0.8), IgnoreEOS: true}
	}
	// Slot A learns the system prompt, then stays busy with a long job that shares it.
	if first := collect(t, w.client, chat("first question", 2)); first.End == nil {
		t.Fatalf("first: %v", first.Error)
	}
	busy, _ := heldStream(t, w, chat("a long answer please", 3700), 1)
	defer busy.Close()
	// The other slot has nothing cached: the prefix must come from slot A,
	// which is held busy until the request has its slot.
	st, err := w.client.Execute(context.Background(), chat("What is a lake?", 12))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w.pace.release()
	res := readStream(t, st)
	if res.End == nil || res.End.CachedTokens < 60 || res.Started.CachedTokens != res.End.CachedTokens {
		t.Fatalf("copied prefix: started %+v end %+v", res.Started, res.End)
	}
	cold := collect(t, startWorker(t, func(c *workerd.Config) { c.Slots = 2; c.Ctx = 4096 }).client, chat("What is a lake?", 12))
	if tokensJSON(t, res) != tokensJSON(t, cold) {
		t.Errorf("copied-prefix run differs from a cold run:\ncold:   %s\ncopied: %s", tokensJSON(t, cold), tokensJSON(t, res))
	}
	if got := metric(t, scrape(t, w.url), "llorch_worker_prompt_cache_copies_total"); got != 1 {
		t.Errorf("copies counted: %v, want 1", got)
	}
}

// With --queue, requests beyond the slots wait their turn, first come first
// served; the queue's bound answers ALL_SLOTS_BUSY, and a client that leaves
// the queue frees its place.
func TestQueueWaitsForASlot(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Slots = 1; c.Queue = 2 })
	queued := func() float64 { return metric(t, scrape(t, w.url), "llorch_worker_queued_requests") }
	w.pace.hold()
	first, err := w.client.Execute(context.Background(), req("first", 1500, 1))
	if err != nil {
		t.Fatal(err)
	}
	// Second and third wait in that order; Execute returns once a job has its slot.
	var order atomic.Int32
	got := make(chan [2]int32, 2)
	var streams sync.WaitGroup // until both have read their stream to its end
	// The second is long: while the pace is held it cannot end before the
	// test has seen it get the slot, so the third cannot overtake it in the
	// client's view however late that client's goroutine runs.
	for i, prompt := range []string{"second", "third"} {
		tokens := []int{1500, 3}[i]
		streams.Add(1)
		go func() {
			defer streams.Done()
			st, err := w.client.Execute(context.Background(), req(prompt, tokens, 1))
			if err != nil {
				t.Error(err)
				got <- [2]int32{int32(i), -1}
				return
			}
			got <- [2]int32{int32(i), order.Add(1)}
			for {
				ev, err := st.Next()
				if err != nil || ev.Terminal() {
					st.Close()
					return
				}
			}
		}()
		waitFor(t, 10*time.Second, "a queued request", func() bool { return queued() == float64(i+1) })
	}
	status, eb, _ := postRaw(t, w.url+"/execute", `{"prompt":"fourth","max_tokens":2}`)
	if status != http.StatusServiceUnavailable || eb.Error.Code != api.CodeAllSlotsBusy {
		t.Errorf("beyond the queue: %d %+v, want 503 ALL_SLOTS_BUSY", status, eb.Error)
	}
	check := func(r [2]int32) {
		t.Helper()
		if r[1] != r[0]+1 {
			t.Errorf("request %d got the slot as number %d: not first come first served", r[0]+1, r[1])
		}
	}
	first.Close() // cancels the first job: the queue moves, a held step at a time
	deadline := time.Now().Add(10 * time.Second)
	for seen := false; !seen; {
		select {
		case r := <-got:
			check(r)
			seen = true
		default:
			if time.Now().After(deadline) {
				t.Fatal("no queued request got the slot")
			}
			w.pace.tryStep(5 * time.Millisecond)
		}
	}
	w.pace.release() // the second runs out; then the third has the slot
	check(<-got)
	waitFor(t, 10*time.Second, "an empty queue", func() bool { return queued() == 0 })
	streams.Wait() // the slot is free again before the pace is held

	// A client that gives up leaves the queue.
	w.pace.hold()
	busy, err := w.client.Execute(context.Background(), req("busy", 1500, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan error, 1)
	go func() {
		_, err := w.client.Execute(ctx, req("impatient", 3, 1))
		left <- err
	}()
	waitFor(t, 10*time.Second, "a queued request", func() bool { return queued() == 1 })
	cancel()
	if err := <-left; err == nil {
		t.Error("a request whose client left got a stream")
	}
	waitFor(t, 10*time.Second, "an empty queue", func() bool { return queued() == 0 })
	w.pace.release()
}
