package orchestrator

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

// Cache-aware placement with real workers: the prefix index sends a
// conversation's next turn to the worker that holds its prefix, learns when
// a worker does not hold what it predicted, and a hot prefix still spreads.

// systemPrompt is a long system prompt of its own for each seed (about 1,200
// bytes): what a conversation's turns share.
func systemPrompt(seed string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "You are assistant %s. ", seed)
	for i := 0; b.Len() < 1200; i++ {
		fmt.Fprintf(&b, "Rule %d of %s: answer briefly and kindly. ", i, seed)
	}
	return b.String()
}

// chatTask is a greedy chat task of the tiny model generating n tokens.
func chatTask(n int, msgs ...api.Message) *api.TaskRequest {
	return &api.TaskRequest{Model: "tiny", ExecuteRequest: api.ExecuteRequest{
		Messages: msgs, MaxTokens: &n, Seed: ptr(int64(1)), IgnoreEOS: true, Temperature: ptr(0.0)}}
}

func pinned(r *api.TaskRequest, worker string) *api.TaskRequest {
	r.Placement = &api.Placement{PinWorker: worker}
	return r
}

// run submits a task and waits for it to succeed.
func (o *orch) run(t *testing.T, r *api.TaskRequest) api.TaskStatus {
	t.Helper()
	acc := o.submitAsync(t, r)
	st := o.waitTask(t, acc.TaskID, 2*time.Minute)
	if st.Status != api.TaskSucceeded || st.End == nil {
		t.Fatalf("task %s: %+v", acc.TaskID, st)
	}
	return st
}

// expected returns what the task's explanation says worker was expected to
// hold, and whether it was a candidate.
func expected(st api.TaskStatus, worker string) (int, bool) {
	if st.Explanation == nil {
		return 0, false
	}
	for _, c := range st.Explanation.Candidates {
		if c.WorkerID == worker {
			return c.ExpectedCachedTokens, true
		}
	}
	return 0, false
}

// conversation is the two turns of a chat: the first, and the second that
// carries the first's answer.
func conversation(sys, answer string) (first, second []api.Message) {
	first = []api.Message{{Role: "system", Content: sys}, {Role: "user", Content: "Tell me about the sea."}}
	second = append(append([]api.Message{}, first...), api.Message{Role: "assistant", Content: answer},
		api.Message{Role: "user", Content: "And about the mountains?"})
	return first, second
}

// The second turn of a conversation goes back to the worker that served the
// first, with no session id, and reuses its KV cache there; least-loaded
// would have sent it to the idle worker with the lower id.
func TestCacheAwareReturnsTheConversation(t *testing.T) {
	t.Run("cache-aware", testReturnsTheConversation)
	// The same conversation under least-loaded: the second turn goes to the
	// idle worker with the lower id and prefills everything again.
	t.Run("least-loaded", func(t *testing.T) {
		_, _, t2 := twoTurns(t, PolicyLeastLoaded, "lake")
		if e, _ := expected(t2, "w2"); t2.WorkerID != "w1" || t2.End.CachedTokens != 0 || e == 0 {
			t.Fatalf("least-loaded: second turn on %s reused %d tokens (w2 expected to hold %d): want w1, nothing reused, and the prediction still shown",
				t2.WorkerID, t2.End.CachedTokens, e)
		}
	})
}

// twoTurns runs a conversation's first turn pinned to w2 (of two one-slot
// workers) and its second turn unpinned, under policy.
func twoTurns(t *testing.T, policy, seed string) (o *orch, t1, t2 api.TaskStatus) {
	cfg := testConfig()
	cfg.RoutingPolicy = policy
	o = startOrch(t, cfg)
	startWorker(t, o, "w1", 1)
	startWorker(t, o, "w2", 1)
	first, _ := conversation(systemPrompt(seed), "")
	t1 = o.run(t, pinned(chatTask(24, first...), "w2"))
	_, second := conversation(systemPrompt(seed), t1.Text)
	return o, t1, o.run(t, chatTask(24, second...))
}

func testReturnsTheConversation(t *testing.T) {
	o, t1, t2 := twoTurns(t, PolicyCacheAware, "sea")
	if t2.WorkerID != "w2" {
		t.Fatalf("second turn ran on %s, want w2 (explanation %+v)", t2.WorkerID, t2.Explanation)
	}
	// The worker reused at least the whole first prompt.
	if t2.End.CachedTokens < t1.End.PromptTokens {
		t.Errorf("second turn reused %d tokens; the first turn's prompt alone was %d", t2.End.CachedTokens, t1.End.PromptTokens)
	}
	e2, ok2 := expected(t2, "w2")
	e1, ok1 := expected(t2, "w1")
	if !ok1 || !ok2 || e2 < t1.End.PromptTokens/2 || e1 != 0 {
		t.Errorf("explanation candidates %+v: want w2 expected to hold most of the first prompt (%d tokens), w1 nothing",
			t2.Explanation.Candidates, t1.End.PromptTokens)
	}
	if got := o.metric(t, `llorch_prefix_cache_predictions_total{outcome="confirmed"}`); got < 1 {
		t.Errorf("confirmed predictions = %v, want at least 1", got)
	}
	if got := o.metric(t, "llorch_prefix_cache_hit_tokens_total"); got < float64(t2.End.CachedTokens) {
		t.Errorf("llorch_prefix_cache_hit_tokens_total = %v, want at least %d", got, t2.End.CachedTokens)
	}
}

// A worker whose cache changed behind the orchestrator's back (a request
// sent to it directly) does not confirm the prediction: the miss is
// counted, and the index drops what it believed so the next similar
// prompt is not drawn there by a cache that is gone.
func TestPrefixPredictionCorrected(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	w2 := startWorker(t, o, "w2", 1)
	first, _ := conversation(systemPrompt("hills"), "")
	t1 := o.run(t, pinned(chatTask(8, first...), "w2"))
	// Evict w2's only slot directly: a long unrelated prompt.
	resp, err := http.Post(w2.URL+"/execute", "application/json",
		strings.NewReader(fmt.Sprintf(`{"prompt": %q, "max_tokens": 1, "temperature": 0}`, strings.Repeat("unrelated words ", 80))))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	_, second := conversation(systemPrompt("hills"), t1.Text)
	t2 := o.run(t, chatTask(8, second...))
	if e, _ := expected(t2, "w2"); t2.WorkerID != "w2" || e == 0 {
		t.Fatalf("second turn on %s, w2 expected to hold %d tokens: want w2 predicted to hold the prefix", t2.WorkerID, e)
	}
	if t2.End.CachedTokens >= t1.End.PromptTokens/2 {
		t.Fatalf("the worker reused %d tokens after its slot was evicted", t2.End.CachedTokens)
	}
	if got := o.metric(t, `llorch_prefix_cache_predictions_total{outcome="short"}`); got != 1 {
		t.Errorf("short predictions = %v, want 1", got)
	}
	// Corrected: the prediction was dropped when started said otherwise, and
	// what w2 is believed to hold now is the prompt it just prefilled.
	if got := o.metric(t, "llorch_prefix_cache_hit_tokens_total"); got != float64(t2.End.CachedTokens) {
		t.Errorf("llorch_prefix_cache_hit_tokens_total = %v, want %d (the first turn was cold)", got, t2.End.CachedTokens)
	}
}

// A hot prefix shared by every request does not pile them all onto the one
// worker that holds it: that worker takes requests until it is about three
// quarters busy, then the idle worker takes the next.
func TestHotPrefixSpreads(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 4)
	startWorker(t, o, "w2", 4)
	sys := systemPrompt("hot")
	o.run(t, pinned(chatTask(4, api.Message{Role: "system", Content: sys}, api.Message{Role: "user", Content: "warm up"}), "w1"))
	var ids []string
	for i := range 4 {
		r := chatTask(3000, api.Message{Role: "system", Content: sys}, api.Message{Role: "user", Content: fmt.Sprintf("question %d", i)})
		ids = append(ids, o.submitAsync(t, r).TaskID)
	}
	on := map[string]int{}
	waitFor(t, time.Minute, "all four running", func() bool {
		clear(on)
		for _, id := range ids {
			st := o.taskStatus(t, id)
			if st.Status != api.TaskRunning && st.Status != api.TaskSucceeded {
				return false
			}
			on[st.WorkerID]++
		}
		return true
	})
	for _, id := range ids {
		o.cancelTask(id)
	}
	if on["w1"] < 2 || on["w2"] < 1 {
		t.Fatalf("tasks per worker %v: want most on w1, which holds the prefix, and at least one on idle w2", on)
	}
}
