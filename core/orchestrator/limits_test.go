package orchestrator

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai/openaitest"
	"github.com/llorch/llorch/core/store"
)

// limitedKey names the key whose limits each test sets.
const limitedKey = "limited"

// limOrch is an orchestrator over a fake fleet with a managed key
// "limited" (POST /v2/keys) and a file admin key without limits.
type limOrch struct {
	*fakeOrch
	secret string
	as     []string // the header of requests made with the limited key
}

// limitedOrch serves an orchestrator over a fake fleet with a worker of
// model m (slots given) and one of model other; the key "limited" has lim.
func limitedOrch(t *testing.T, lim api.KeyLimits, slots int) (*limOrch, *fakeWorker) {
	t.Helper()
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: "sk-admin-0001", Role: RoleAdmin, Name: "admin"}}
	cfg.WorkerToken = "worker-token-1"
	o := startFakeOrch(t, cfg, true)
	created := decode[api.KeyCreated](t, o.do(t, http.MethodPost, "/v2/keys",
		api.KeySpec{Name: limitedKey, Limits: lim}), http.StatusCreated)
	w := o.addWorker("w1", "m", slots)
	o.addWorker("w2", "other", 1)
	return &limOrch{fakeOrch: o, secret: created.Key, as: []string{"Authorization", "Bearer " + created.Key}}, w
}

// submitAs posts an async task for the limited key.
func (o *limOrch) submitAs(t *testing.T, req *api.TaskRequest) *http.Response {
	t.Helper()
	return o.do(t, http.MethodPost, "/v2/tasks", req, o.as...)
}

// refused checks a refusal: status, code, the limit named, a Retry-After
// that agrees with retry_after_ms (none for a 403), and a message.
func refused(t *testing.T, resp *http.Response, status int, code, limit string) *api.Error {
	t.Helper()
	ra := resp.Header.Get("Retry-After")
	e := apiErr(t, resp, status, code)
	if e.Limit != limit || e.Message == "" {
		t.Fatalf("error %+v, want limit %s", e, limit)
	}
	if status == http.StatusForbidden {
		if ra != "" || e.RetryAfterMs != 0 {
			t.Fatalf("403 with Retry-After %q, %d ms", ra, e.RetryAfterMs)
		}
		return e
	}
	if e.RetryAfterMs <= 0 || ra != strconv.FormatInt((e.RetryAfterMs+999)/1000, 10) || !e.Retriable {
		t.Fatalf("Retry-After %q, retry_after_ms %d, retriable %v", ra, e.RetryAfterMs, e.Retriable)
	}
	return e
}

// honour waits what the refusal said.
func honour(e *api.Error) { time.Sleep(time.Duration(e.RetryAfterMs) * time.Millisecond) }

func rejected(o *limOrch, reason string) float64 {
	return value(o.m.rejections.WithLabelValues(reason))
}

// streamWith streams started (with prompt tokens), n tokens, then blocks
// until the attempt ends (release: closed, then it ends well).
func streamWith(prompt, n int, release <-chan struct{}) func(context.Context, *api.ExecuteRequest) (eventStream, error) {
	return func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		evs := []api.Event{{Name: api.EventStarted, Started: &api.Started{JobID: req.JobID, Model: "fake", PromptTokens: prompt}}}
		for i := range n {
			evs = append(evs, api.Event{Name: api.EventToken, Token: &api.Token{T: "x", I: i, ID: int32(100 + i)}})
		}
		if release == nil {
			evs = append(evs, api.Event{Name: api.EventEnd, End: &api.End{TokensOut: n, StopReason: api.StopMaxTokens}})
			return &fakeStream{ctx: ctx, evs: evs}, nil
		}
		rctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-release:
			case <-ctx.Done():
			}
			cancel()
		}()
		return &fakeStream{ctx: rctx, evs: evs, block: true}, nil
	}
}

func TestLimitRequestsPerMinute(t *testing.T) {
	o, _ := limitedOrch(t, api.KeyLimits{RequestsPerMinute: 60}, 8)
	before := rejected(o, "rate_limited")
	var e *api.Error
	admitted := 0
	for range 200 { // a burst of 60, then one a second
		resp := o.submitAs(t, fakeReq(1))
		if resp.StatusCode == http.StatusAccepted {
			resp.Body.Close()
			admitted++
			continue
		}
		e = refused(t, resp, http.StatusTooManyRequests, api.CodeRateLimited, api.LimitRequestsPerMinute)
		break
	}
	if e == nil || admitted < 60 {
		t.Fatalf("%d admitted, refusal %+v", admitted, e)
	}
	if e.RetryAfterMs > 1001 || !strings.Contains(e.Message, "key limited: 60 requests per minute; retry in ") {
		t.Fatalf("refusal %+v", e)
	}
	if got := rejected(o, "rate_limited") - before; got != 1 {
		t.Fatalf("llorch_rejections_total{reason=rate_limited} rose by %v", got)
	}
	honour(e)
	decode[api.TaskAccepted](t, o.submitAs(t, fakeReq(1)), http.StatusAccepted)

	// The admin key has no limits.
	for range 100 {
		decode[api.TaskAccepted](t, o.do(t, http.MethodPost, "/v2/tasks", fakeReq(1)), http.StatusAccepted)
	}
}

// TestLimitTokensPerMinute: prompt and generated tokens are spent as they
// stream: a stream still running drives the bucket below zero and the next
// request is refused until the bucket refills.
func TestLimitTokensPerMinute(t *testing.T) {
	o, w := limitedOrch(t, api.KeyLimits{TokensPerMinute: 600}, 8) // 10 a second
	release := make(chan struct{})
	w.set(streamWith(20, 600, release))
	id := decode[api.TaskAccepted](t, o.submitAs(t, fakeReq(1000)), http.StatusAccepted).TaskID
	waitFor(t, 10*time.Second, "600 tokens streamed", func() bool { return o.taskStatus(t, id).TokensOut == 600 })

	// 620 spent of 600 while the task still runs: refused.
	e := refused(t, o.submitAs(t, fakeReq(1)), http.StatusTooManyRequests, api.CodeRateLimited, api.LimitTokensPerMinute)
	if e.RetryAfterMs < 500 || e.RetryAfterMs > 2200 || !strings.Contains(e.Message, "key limited: 600 tokens per minute; retry in ") {
		t.Fatalf("refusal %+v", e)
	}
	if st := o.taskStatus(t, id); st.Status != api.TaskRunning {
		t.Fatalf("the stream's task is %s", st.Status)
	}
	close(release)
	o.waitTask(t, id, 10*time.Second)
	honour(e)
	w.set(streamWith(5, 5, nil))
	id = decode[api.TaskAccepted](t, o.submitAs(t, fakeReq(5)), http.StatusAccepted).TaskID
	if st := o.waitTask(t, id, 10*time.Second); st.Status != api.TaskSucceeded {
		t.Fatalf("after the refill: %+v", st)
	}
}

// TestLimitMaxQueued: the key's waiting tasks are bounded; running ones do
// not count.
func TestLimitMaxQueued(t *testing.T) {
	o, w := limitedOrch(t, api.KeyLimits{MaxQueued: 2}, 1)
	w.set(hang)
	running := decode[api.TaskAccepted](t, o.submitAs(t, fakeReq(5)), http.StatusAccepted).TaskID
	waitFor(t, 10*time.Second, "the first task to run", func() bool { return o.taskStatus(t, running).Status == api.TaskRunning })
	var waiting []string
	for range 2 {
		waiting = append(waiting, decode[api.TaskAccepted](t, o.submitAs(t, fakeReq(5)), http.StatusAccepted).TaskID)
	}
	e := refused(t, o.submitAs(t, fakeReq(5)), http.StatusTooManyRequests, api.CodeRateLimited, api.LimitMaxQueued)
	if !strings.Contains(e.Message, "at most 2 tasks queued") {
		t.Fatalf("refusal %+v", e)
	}
	// Another key is not held by this one's queue (its task goes to the
	// other worker, not to w1's one slot).
	other := fakeReq(1)
	other.Model = "other"
	decode[api.TaskAccepted](t, o.do(t, http.MethodPost, "/v2/tasks", other), http.StatusAccepted)

	o.cancelTask(running)
	waitFor(t, 10*time.Second, "a waiting task to start", func() bool {
		return o.taskStatus(t, waiting[0]).Status == api.TaskRunning || o.taskStatus(t, waiting[1]).Status == api.TaskRunning
	})
	honour(e)
	decode[api.TaskAccepted](t, o.submitAs(t, fakeReq(5)), http.StatusAccepted)
	refused(t, o.submitAs(t, fakeReq(5)), http.StatusTooManyRequests, api.CodeRateLimited, api.LimitMaxQueued)

	// A cancelled waiting task makes room too.
	o.cancelTask(waiting[1])
	o.cancelTask(waiting[0])
	waitFor(t, 10*time.Second, "room in the key's queue", func() bool {
		resp := o.submitAs(t, fakeReq(5))
		resp.Body.Close()
		return resp.StatusCode == http.StatusAccepted
	})
}

func TestLimitModels(t *testing.T) {
	o, _ := limitedOrch(t, api.KeyLimits{Models: []string{"m"}}, 4)
	before := rejected(o, "forbidden")
	req := fakeReq(1)
	req.Model = "other"
	e := refused(t, o.submitAs(t, req), http.StatusForbidden, api.CodeForbidden, api.LimitModels)
	if !strings.Contains(e.Message, `model "other"`) || !strings.Contains(e.Message, "key limited") {
		t.Fatalf("message %q", e.Message)
	}
	if rejected(o, "forbidden")-before != 1 {
		t.Fatal("the refusal was not counted")
	}
	id := decode[api.TaskAccepted](t, o.submitAs(t, fakeReq(1)), http.StatusAccepted).TaskID
	if st := o.waitTask(t, id, 10*time.Second); st.Status != api.TaskSucceeded {
		t.Fatalf("allowed model: %+v", st)
	}
	// The admin key may use any model.
	decode[api.TaskAccepted](t, o.do(t, http.MethodPost, "/v2/tasks", req), http.StatusAccepted)
}

func TestLimitMaxPriority(t *testing.T) {
	o, _ := limitedOrch(t, api.KeyLimits{MaxPriority: api.PriorityBatch}, 4)
	req := fakeReq(1)
	req.Priority = api.PriorityInteractive
	refused(t, o.submitAs(t, req), http.StatusForbidden, api.CodeForbidden, api.LimitMaxPriority)
	for _, prio := range []string{"", api.PriorityBatch} {
		req := fakeReq(1)
		req.Priority = prio
		id := decode[api.TaskAccepted](t, o.submitAs(t, req), http.StatusAccepted).TaskID
		if st := o.waitTask(t, id, 10*time.Second); st.Status != api.TaskSucceeded || st.Priority != api.PriorityBatch {
			t.Fatalf("priority %q: %+v", prio, st)
		}
	}
}

// TestLimitOpenAI: /v1 refusals are OpenAI error objects with Retry-After.
func TestLimitOpenAI(t *testing.T) {
	o, _ := limitedOrch(t, api.KeyLimits{RequestsPerMinute: 1, Models: []string{"m"}}, 4)
	body := map[string]any{"model": "m", "max_tokens": 2, "messages": []map[string]string{{"role": "user", "content": "hi"}}}
	resp := o.do(t, http.MethodPost, "/v1/chat/completions", body, o.as...)
	decode[chatCompletion](t, resp, http.StatusOK)
	before := rejected(o, "rate_limited")
	resp = o.do(t, http.MethodPost, "/v1/chat/completions", body, o.as...)
	ra, ms := resp.Header.Get("Retry-After"), resp.Header.Get("Retry-After-Ms")
	e := decode[struct {
		Error struct{ Message, Type, Code string }
	}](t, resp, http.StatusTooManyRequests)
	if e.Error.Code != "rate_limit_exceeded" || e.Error.Type != "requests" || !strings.Contains(e.Error.Message, "1 requests per minute") {
		t.Fatalf("error %+v", e)
	}
	if n, err := strconv.Atoi(ra); err != nil || n < 50 || n > 60 || ms == "" {
		t.Fatalf("Retry-After %q, Retry-After-Ms %q", ra, ms)
	}
	if rejected(o, "rate_limited")-before != 1 {
		t.Fatal("the refusal was not counted")
	}
	body["model"] = "other"
	resp = o.do(t, http.MethodPost, "/v1/chat/completions", body, o.as...)
	f := decode[struct {
		Error struct {
			Type, Code string
			Param      *string
		}
	}](t, resp, http.StatusForbidden)
	if f.Error.Type != "permission_error" || f.Error.Param == nil || *f.Error.Param != "model" {
		t.Fatalf("error %+v", f)
	}
}

// TestLimitOpenAISDK: the official SDK sees RateLimitError (limits.mjs).
func TestLimitOpenAISDK(t *testing.T) {
	sdk := openaitest.NeedSDK(t)
	o, _ := limitedOrch(t, api.KeyLimits{RequestsPerMinute: 1}, 4)
	sdk.RunScript(t, "limits.mjs", o.URL, o.secret, "m")
}

// TestLimitConcurrent: many clients of one key at once get exactly the
// bucket's worth (plus what refills meanwhile), and the key's state is
// released when its tasks are over.
func TestLimitConcurrent(t *testing.T) {
	o, _ := limitedOrch(t, api.KeyLimits{RequestsPerMinute: 30, TokensPerMinute: 1 << 30, MaxQueued: 1000}, 16)
	start := time.Now()
	var admitted, limited atomic.Int64
	var ids sync.Map
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 8 {
				resp := o.submitAs(t, fakeReq(3))
				switch resp.StatusCode {
				case http.StatusAccepted:
					acc := decode[api.TaskAccepted](t, resp, http.StatusAccepted)
					ids.Store(acc.TaskID, true)
					admitted.Add(1)
				case http.StatusTooManyRequests:
					resp.Body.Close()
					limited.Add(1)
				default:
					resp.Body.Close()
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	refill := int64(time.Since(start).Seconds()*30/60) + 1
	if a := admitted.Load(); a < 30 || a > 30+refill || a+limited.Load() != 128 {
		t.Fatalf("%d admitted, %d limited (refill %d)", a, limited.Load(), refill)
	}
	ids.Range(func(id, _ any) bool {
		o.waitTask(t, id.(string), 10*time.Second)
		return true
	})
	o.limits.mu.Lock()
	k := o.limits.keys[limitedKey]
	o.limits.mu.Unlock()
	waitFor(t, 5*time.Second, "the key's tasks to let go", func() bool { return k.users.Load() == 0 && k.queued.Load() == 0 })
}

// TestLimiterUnit drives the limiter without HTTP: concurrent admissions
// and task lifecycles balance, refusals give back what they took, and idle
// states are dropped.
func TestLimiterUnit(t *testing.T) {
	var l limiter
	lim := &api.KeyLimits{RequestsPerMinute: 1 << 20, TokensPerMinute: 1 << 20, MaxQueued: 8}
	p := principal{role: RoleUser, key: "k", limits: lim}
	var wg sync.WaitGroup
	var refusedQueued atomic.Int64
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				req := &api.TaskRequest{Model: "m"}
				u, e := l.admit(p, req)
				if e != nil {
					if e.Limit != api.LimitMaxQueued {
						t.Errorf("refused by %s", e.Limit)
					}
					refusedQueued.Add(1)
					continue
				}
				if (g+i)%5 == 0 { // refused later on (queue full, a budget)
					u.unlessKept()
					continue
				}
				u.kept()
				u.unlessKept() // a no-op once kept
				if i%3 == 0 {
					u.running()
					u.spend(7)
					u.waiting()
					u.running()
					u.spend(1)
				}
				u.done()
				u.done()
			}
		}()
	}
	wg.Wait()
	k := l.keys["k"]
	if k.users.Load() != 0 || k.queued.Load() != 0 {
		t.Fatalf("users %d, queued %d after all tasks ended", k.users.Load(), k.queued.Load())
	}
	t.Logf("%d refused by max_queued", refusedQueued.Load())

	// max_queued is exact under concurrency.
	var q limiter
	lq := &api.KeyLimits{MaxQueued: 7}
	var got atomic.Int64
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if u, e := q.admit(principal{key: "q", limits: lq}, &api.TaskRequest{Model: "m"}); e == nil {
				u.kept()
				got.Add(1)
			}
		}()
	}
	wg.Wait()
	if got.Load() != 7 {
		t.Fatalf("%d admitted under max_queued 7", got.Load())
	}

	// A refused request gives its request back.
	var r limiter
	lr := &api.KeyLimits{RequestsPerMinute: 1}
	pr := principal{key: "r", limits: lr}
	u, e := r.admit(pr, &api.TaskRequest{Model: "m"})
	if e != nil {
		t.Fatal(e)
	}
	u.unlessKept()
	if u, e = r.admit(pr, &api.TaskRequest{Model: "m"}); e != nil {
		t.Fatalf("after a give-back: %v", e)
	}
	u.kept()
	if _, e = r.admit(pr, &api.TaskRequest{Model: "m"}); e == nil || e.Limit != api.LimitRequestsPerMinute || e.RetryAfterMs < 59000 {
		t.Fatalf("second request: %v", e)
	}
	u.done()

	// Idle states are dropped: key "k" (all ended, buckets full again)
	// goes at a sweep; "r" (a bucket still empty) stays.
	l.mu.Lock()
	l.keys["r"] = r.keys["r"]
	l.mu.Unlock()
	waitFor(t, 5*time.Second, "the sweep to drop key k", func() bool {
		l.mu.Lock()
		l.swept = time.Time{}
		l.mu.Unlock()
		u, e := l.admit(principal{key: "new", limits: lim}, &api.TaskRequest{Model: "m"})
		if e != nil {
			t.Fatal(e)
		}
		u.kept()
		u.done()
		l.mu.Lock()
		defer l.mu.Unlock()
		_, kLeft := l.keys["k"]
		return !kLeft
	})
	l.mu.Lock()
	_, rLeft := l.keys["r"]
	l.mu.Unlock()
	if !rLeft || l.size() != 2 {
		t.Fatalf("after the sweep: r kept %v, %d states", rLeft, l.size())
	}

	// Keys without limits, or with only models and max_priority, keep no state.
	var n limiter
	for i := range 100 {
		p := principal{key: fmt.Sprint("free-", i), limits: &api.KeyLimits{Models: []string{"m"}}}
		if u, e := n.admit(p, &api.TaskRequest{Model: "m"}); u != nil || e != nil {
			t.Fatalf("%v %v", u, e)
		}
		if u, e := n.admit(principal{key: p.key}, &api.TaskRequest{Model: "m"}); u != nil || e != nil {
			t.Fatalf("%v %v", u, e)
		}
	}
	if n.size() != 0 {
		t.Fatalf("%d states for keys without rates", n.size())
	}
}

// TestLimitEmbeddings: /v1/embeddings is held to the key's models and
// rates too; its prompt tokens spend the token bucket.
func TestLimitEmbeddings(t *testing.T) {
	o, _ := limitedOrch(t, api.KeyLimits{RequestsPerMinute: 2, TokensPerMinute: 1000, Models: []string{"e"}}, 1)
	w := o.fleet.add("http://e1.test:1")
	o.reg.register(api.WorkerRegistration{WorkerID: "e1", URL: w.url, Model: api.ModelInfo{ID: "e", Ctx: 4096, Embedding: true}, Slots: 2})
	embed := func(model string) *http.Response {
		return o.do(t, http.MethodPost, "/v1/embeddings", map[string]any{"model": model, "input": []string{"a", "b", "c"}}, o.as...)
	}
	resp := embed("m")
	if e := decode[openAIError](t, resp, http.StatusForbidden); e.Error.Type != "permission_error" {
		t.Fatalf("error %+v", e)
	}
	decode[embeddingsAnswer](t, embed("e"), http.StatusOK)
	o.limits.mu.Lock()
	k := o.limits.keys[limitedKey]
	o.limits.mu.Unlock()
	if k == nil || k.spent.Load() != 3 || k.users.Load() != 0 { // the fake worker counts one token an input
		t.Fatalf("key state %+v", k)
	}
	decode[embeddingsAnswer](t, embed("e"), http.StatusOK)
	resp = embed("e")
	if resp.Header.Get("Retry-After") == "" {
		t.Fatalf("no Retry-After: %v", resp.Header)
	}
	if e := decode[openAIError](t, resp, http.StatusTooManyRequests); e.Error.Code != "rate_limit_exceeded" || e.Error.Type != "requests" {
		t.Fatalf("error %+v", e)
	}
	if w.embedded() != 2 {
		t.Fatalf("the worker answered %d requests", w.embedded())
	}
}

// TestLimitStoredKey: a key created with POST /v2/keys carries its limits,
// and an update takes effect at the next request (the bucket refills at the
// new rate).
func TestLimitStoredKey(t *testing.T) {
	o, _ := limitedOrch(t, api.KeyLimits{}, 4)
	created := decode[api.KeyCreated](t, o.do(t, http.MethodPost, "/v2/keys",
		api.KeySpec{Name: "metered", Limits: api.KeyLimits{RequestsPerMinute: 1}}), http.StatusCreated)
	as := []string{"Authorization", "Bearer " + created.Key}
	decode[api.TaskAccepted](t, o.do(t, http.MethodPost, "/v2/tasks", fakeReq(1), as...), http.StatusAccepted)
	e := refused(t, o.do(t, http.MethodPost, "/v2/tasks", fakeReq(1), as...), http.StatusTooManyRequests, api.CodeRateLimited, api.LimitRequestsPerMinute)
	if e.RetryAfterMs < 50000 || !strings.Contains(e.Message, "key metered: 1 requests per minute") {
		t.Fatalf("refusal %+v", e)
	}
	decode[api.KeyView](t, o.do(t, http.MethodPatch, "/v2/keys/metered",
		api.KeyUpdate{Limits: &api.KeyLimits{RequestsPerMinute: 600}}), http.StatusOK)
	resp := o.do(t, http.MethodPost, "/v2/tasks", fakeReq(1), as...)
	if resp.StatusCode == http.StatusTooManyRequests { // 10 a second now
		e := refused(t, resp, http.StatusTooManyRequests, api.CodeRateLimited, api.LimitRequestsPerMinute)
		if e.RetryAfterMs > 101 {
			t.Fatalf("after the update: %+v", e)
		}
		honour(e)
		resp = o.do(t, http.MethodPost, "/v2/tasks", fakeReq(1), as...)
	}
	decode[api.TaskAccepted](t, resp, http.StatusAccepted)
}

// TestLimitRestored: tasks restored after a restart count against their
// key's max_queued again (the key is found by the tasks' owner).
func TestLimitRestored(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: "sk-admin-0001", Role: RoleAdmin, Name: "admin"}}
	cfg.WorkerToken = "worker-token-1"
	open := func() *fakeOrch {
		st, err := store.OpenOrchestrator(filepath.Join(dir, "orchestrator.db"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		fleet := newFakeFleet()
		w := fleet.add("http://w1.test:1") // before New: the registry it loads connects to it
		w.set(hang)
		srv, err := New(cfg, Deps{Store: st, connect: fleet.connect, Log: testLogger(t), manualStats: true})
		if err != nil {
			st.Close()
			t.Fatal(err)
		}
		o, stop, done := serve(t, srv, st)
		srv.reg.register(api.WorkerRegistration{WorkerID: "w1", URL: w.url, Model: api.ModelInfo{ID: "m", Ctx: 4096}, Slots: 1})
		return &fakeOrch{orch: o, fleet: fleet, stop: stop, done: done}
	}
	o := open()
	created := decode[api.KeyCreated](t, o.do(t, http.MethodPost, "/v2/keys",
		api.KeySpec{Name: "metered", Limits: api.KeyLimits{MaxQueued: 2}}), http.StatusCreated)
	as := []string{"Authorization", "Bearer " + created.Key}
	var ids []string
	for range 3 { // one runs, two wait
		ids = append(ids, decode[api.TaskAccepted](t, o.do(t, http.MethodPost, "/v2/tasks", fakeReq(5), as...), http.StatusAccepted).TaskID)
	}
	refused(t, o.do(t, http.MethodPost, "/v2/tasks", fakeReq(5), as...), http.StatusTooManyRequests, api.CodeRateLimited, api.LimitMaxQueued)
	o.stop()
	o.store.Close()

	o = open()
	waitFor(t, 10*time.Second, "a restored task to run", func() bool {
		for _, id := range ids {
			if o.taskStatus(t, id).Status == api.TaskRunning {
				return true
			}
		}
		return false
	})
	refused(t, o.do(t, http.MethodPost, "/v2/tasks", fakeReq(5), as...), http.StatusTooManyRequests, api.CodeRateLimited, api.LimitMaxQueued)
	for _, id := range ids {
		o.cancelTask(id)
	}
	decode[api.TaskAccepted](t, o.do(t, http.MethodPost, "/v2/tasks", fakeReq(5), as...), http.StatusAccepted)
}
