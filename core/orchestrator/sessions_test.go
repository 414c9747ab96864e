package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/workerclient"
)

// The fake workers' session caches: a session is warm on a worker when a
// job of it came after its last drop.
var fakeDrops = struct {
	mu sync.Mutex
	at map[*fakeWorker]map[string]int // session → jobs received at its last drop
}{at: map[*fakeWorker]map[string]int{}}

var _ sessionCacher = (*fakeWorker)(nil)

func (w *fakeWorker) SessionCache(_ context.Context, id string) (*api.SessionCache, error) {
	jobs := w.received()
	fakeDrops.mu.Lock()
	from := fakeDrops.at[w][id]
	fakeDrops.mu.Unlock()
	out := &api.SessionCache{SessionID: id, Slots: []int{}}
	for _, j := range jobs[from:] {
		if j.SessionID == id {
			out.Warm, out.Slots, out.CachedTokens = true, []int{0}, 1
		}
	}
	return out, nil
}

func (w *fakeWorker) DropSession(ctx context.Context, id string) (*api.SessionCache, error) {
	out, _ := w.SessionCache(ctx, id)
	n := len(w.received())
	fakeDrops.mu.Lock()
	defer fakeDrops.mu.Unlock()
	if fakeDrops.at[w] == nil {
		fakeDrops.at[w] = map[string]int{}
	}
	fakeDrops.at[w][id] = n
	return out, nil
}

// dropped reports whether the worker was told to drop session id.
func (w *fakeWorker) dropped(id string) bool {
	fakeDrops.mu.Lock()
	defer fakeDrops.mu.Unlock()
	_, ok := fakeDrops.at[w][id]
	return ok
}

// Keys of the sessions tests.
const (
	aliceSecret = "sk-alice-00001"
	bobSecret   = "sk-bob-0000001"
)

var (
	asAlice = []string{"Authorization", "Bearer " + aliceSecret}
	asBob   = []string{"Authorization", "Bearer " + bobSecret}
)

func sessionsConfig() Config {
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: "sk-admin-00001", Role: RoleAdmin, Name: "admin"},
		{Secret: aliceSecret, Role: RoleUser, Name: "alice"}, {Secret: bobSecret, Role: RoleUser, Name: "bob"}}
	cfg.WorkerToken = "worker-token-1"
	return cfg
}

// withPromptTokens streams like streamTokens, its started event saying the
// prompt had n tokens; after delay (service time).
func withPromptTokens(n int, delay time.Duration) func(context.Context, *api.ExecuteRequest) (eventStream, error) {
	inner := streamTokens(-1)
	return func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		s, err := inner(ctx, req)
		if err != nil {
			return nil, err
		}
		fs := s.(*fakeStream)
		st := *fs.evs[0].Started
		st.PromptTokens = n
		fs.evs[0].Started = &st
		return fs, nil
	}
}

// stallAfterTokens streams started (prompt tokens) and k tokens, then
// nothing until the attempt ends.
func stallAfterTokens(prompt, k int) func(context.Context, *api.ExecuteRequest) (eventStream, error) {
	return func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		evs := []api.Event{{Name: api.EventStarted, Started: &api.Started{JobID: req.JobID, PromptTokens: prompt}}}
		for i := range k {
			evs = append(evs, api.Event{Name: api.EventToken, Token: &api.Token{T: fmt.Sprintf("t%d ", i), I: i, ID: int32(100 + i)}})
		}
		return &fakeStream{ctx: ctx, evs: evs, block: true}, nil
	}
}

func (f *fakeOrch) createSession(t *testing.T, req api.SessionRequest, hdr ...string) api.SessionView {
	t.Helper()
	return decode[api.SessionView](t, f.do(t, http.MethodPost, "/v2/sessions", req, hdr...), http.StatusCreated)
}

func sessionTask(session string, n int) *api.TaskRequest {
	r := taskReq("m", "hello", n, 1)
	r.SessionID = session
	return r
}

// terminalBudget is the budget on a stream's terminal event.
func terminalBudget(t *testing.T, evs []ev) *api.Budget {
	t.Helper()
	last := evs[len(evs)-1]
	var v struct {
		Budget *api.Budget `json:"budget"`
	}
	if err := json.Unmarshal(last.Data, &v); err != nil {
		t.Fatal(err)
	}
	return v.Budget
}

func TestSessionLifecycle(t *testing.T) {
	o := startFakeOrch(t, sessionsConfig(), true)
	w := o.addWorker("w1", "m", 2)
	w.set(withPromptTokens(3, 0))
	v := o.createSession(t, api.SessionRequest{TokenBudget: 100, TTLMs: 60_000}, asAlice...)
	if !strings.HasPrefix(v.SessionID, "s-") || v.TTLMs != 60_000 || v.TTLLeftMs <= 0 || v.TTLLeftMs > 60_000 ||
		v.TokenBudget != 100 || v.TokensRemaining == nil || *v.TokensRemaining != 100 || v.TimeRemainingMs != nil ||
		v.Turns != 0 || v.KVWarm || v.WorkerID != "" || !v.ExpiresAt.After(v.CreatedAt) {
		t.Fatalf("new session %+v", v)
	}

	// A streamed task: the headers show what was left at admission, the
	// end event what is left after it (3 prompt + 5 generated tokens).
	resp := o.do(t, http.MethodPost, "/v2/tasks", sessionTask(v.SessionID, 5), append(asAlice, "Accept", "text/event-stream")...)
	if got := resp.Header.Get(headerBudgetTokens); got != "100" || resp.Header.Get(headerBudgetTime) != "" {
		t.Errorf("stream headers: tokens %q time %q", got, resp.Header.Get(headerBudgetTime))
	}
	evs := readAll(t, resp)
	if evs[len(evs)-1].Name != api.EventEnd {
		t.Fatalf("stream ended with %s", evs[len(evs)-1].Name)
	}
	if b := terminalBudget(t, evs); b == nil || b.TokensRemaining == nil || *b.TokensRemaining != 92 || b.TimeRemainingMs != nil {
		t.Fatalf("end budget %+v", b)
	}
	if jobs := w.received(); len(jobs) != 1 || jobs[0].SessionID != v.SessionID {
		t.Fatalf("the worker got %+v", jobs)
	}
	// A task of no session sends none.
	readAll(t, o.do(t, http.MethodPost, "/v2/tasks", taskReq("m", "x", 1, 1), append(asAlice, "Accept", "text/event-stream")...))

	got := decode[api.SessionView](t, o.do(t, http.MethodGet, "/v2/sessions/"+v.SessionID, nil, asAlice...), http.StatusOK)
	if got.Turns != 1 || got.TokensUsed != 8 || *got.TokensRemaining != 92 || got.WorkerID != "w1" || !got.KVWarm || got.TimeUsedMs < 0 {
		t.Fatalf("after a turn %+v", got)
	}
	if jobs := w.received(); len(jobs) != 2 || jobs[1].SessionID != "" {
		t.Fatalf("jobs %+v: a task without a session sent one", jobs)
	}

	// An async task: 202 with the headers; GET of the task has them too.
	resp = o.do(t, http.MethodPost, "/v2/tasks", sessionTask(v.SessionID, 2), asAlice...)
	if resp.Header.Get(headerBudgetTokens) != "92" {
		t.Errorf("202 header %q", resp.Header.Get(headerBudgetTokens))
	}
	acc := decode[api.TaskAccepted](t, resp, http.StatusAccepted)
	waitFor(t, 10*time.Second, "the async task", func() bool {
		r := o.do(t, http.MethodGet, "/v2/tasks/"+acc.TaskID, nil, asAlice...)
		st := decode[api.TaskStatus](t, r, http.StatusOK)
		return st.Status == api.TaskSucceeded && r.Header.Get(headerBudgetTokens) == "87"
	})

	// Another key: as absent as an unknown session; an admin sees it.
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		apiErr(t, o.do(t, m, "/v2/sessions/"+v.SessionID, nil, asBob...), http.StatusNotFound, api.CodeSessionNotFound)
		apiErr(t, o.do(t, m, "/v2/sessions/s-unknown", nil, asAlice...), http.StatusNotFound, api.CodeSessionNotFound)
	}
	if a := decode[api.SessionView](t, o.do(t, http.MethodGet, "/v2/sessions/"+v.SessionID, nil), http.StatusOK); a.Turns != 2 {
		t.Errorf("admin view %+v", a)
	}
	// Bob naming Alice's session: affinity only, no budget.
	resp = o.do(t, http.MethodPost, "/v2/tasks", sessionTask(v.SessionID, 1), asBob...)
	if resp.Header.Get(headerBudgetTokens) != "" {
		t.Errorf("bob's task got alice's budget")
	}
	decode[api.TaskAccepted](t, resp, http.StatusAccepted)

	// DELETE: 204, the worker drops the session's cache, then it is gone.
	resp = o.do(t, http.MethodDelete, "/v2/sessions/"+v.SessionID, nil, asAlice...)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if !w.dropped(v.SessionID) {
		t.Error("the worker was not told to drop the session")
	}
	apiErr(t, o.do(t, http.MethodGet, "/v2/sessions/"+v.SessionID, nil, asAlice...), http.StatusNotFound, api.CodeSessionNotFound)
	apiErr(t, o.do(t, http.MethodDelete, "/v2/sessions/"+v.SessionID, nil, asAlice...), http.StatusNotFound, api.CodeSessionNotFound)
	if recs, err := o.store.Sessions(); err != nil || len(recs) != 0 {
		t.Errorf("stored after the delete: %+v %v", recs, err)
	}
	// Its id names no session now: affinity only.
	resp = o.do(t, http.MethodPost, "/v2/tasks", sessionTask(v.SessionID, 1), asAlice...)
	if resp.Header.Get(headerBudgetTokens) != "" {
		t.Errorf("deleted session still budgets")
	}
	decode[api.TaskAccepted](t, resp, http.StatusAccepted)
}

func TestSessionTokenBudget(t *testing.T) {
	o := startFakeOrch(t, sessionsConfig(), true)
	w := o.addWorker("w1", "m", 1)
	w.set(withPromptTokens(3, 0))
	v := o.createSession(t, api.SessionRequest{SessionID: "chat-1", TokenBudget: 10}, asAlice...)
	// 3 + 8 tokens: past the budget, and not cut.
	evs := o.submitStream(t, sessionTask(v.SessionID, 8), asAlice...)
	last := evs[len(evs)-1]
	if last.Name != api.EventEnd || countTokens(evs) != 8 {
		t.Fatalf("the task ran %d tokens and ended with %s", countTokens(evs), last.Name)
	}
	if b := terminalBudget(t, evs); b == nil || *b.TokensRemaining != 0 {
		t.Fatalf("end budget %+v", b)
	}
	// The next one is refused, naming the budget.
	e := apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", sessionTask(v.SessionID, 1), asAlice...), http.StatusTooManyRequests, api.CodeBudgetExceeded)
	if e.Limit != api.LimitSessionTokens || e.Budget == nil || *e.Budget.TokensRemaining != 0 {
		t.Fatalf("refusal %+v", e)
	}
	// On /v1 too, in OpenAI's shape.
	body := `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2}`
	resp := o.do(t, http.MethodPost, "/v1/chat/completions", body, append(asAlice, headerSessionID, v.SessionID)...)
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(data), `"rate_limit_error"`) ||
		!strings.Contains(strings.ToUpper(string(data)), api.CodeBudgetExceeded) {
		t.Fatalf("/v1 over budget: %d %s", resp.StatusCode, data)
	}
	// The body's session_id (llorch's extension) names it as the header does.
	resp = o.do(t, http.MethodPost, "/v1/chat/completions",
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":2,"session_id":"chat-1"}`, asAlice...)
	data, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(strings.ToUpper(string(data)), api.CodeBudgetExceeded) {
		t.Fatalf("/v1 over budget, session_id in the body: %d %s", resp.StatusCode, data)
	}
	if n := value(o.m.rejections.WithLabelValues("budget_exceeded")); n != 3 {
		t.Errorf("llorch_rejections_total{reason=budget_exceeded} = %v, want 3", n)
	}
	if got := decode[api.SessionView](t, o.do(t, http.MethodGet, "/v2/sessions/chat-1", nil, asAlice...), http.StatusOK); got.Turns != 1 || got.TokensUsed != 11 {
		t.Fatalf("refusals counted: %+v", got)
	}
}

func TestSessionTimeBudget(t *testing.T) {
	o := startFakeOrch(t, sessionsConfig(), true)
	w := o.addWorker("w1", "m", 1)
	w.set(withPromptTokens(1, 30*time.Millisecond)) // each task takes ≥30ms of service
	v := o.createSession(t, api.SessionRequest{TimeBudgetMs: 20}, asAlice...)
	resp := o.do(t, http.MethodPost, "/v2/tasks", sessionTask(v.SessionID, 2), append(asAlice, "Accept", "text/event-stream")...)
	if resp.Header.Get(headerBudgetTime) != "20" || resp.Header.Get(headerBudgetTokens) != "" {
		t.Errorf("headers: time %q tokens %q", resp.Header.Get(headerBudgetTime), resp.Header.Get(headerBudgetTokens))
	}
	evs := readAll(t, resp)
	if b := terminalBudget(t, evs); b == nil || b.TimeRemainingMs == nil || *b.TimeRemainingMs != 0 || b.TokensRemaining != nil {
		t.Fatalf("end budget %+v", b)
	}
	e := apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", sessionTask(v.SessionID, 1), asAlice...), http.StatusTooManyRequests, api.CodeBudgetExceeded)
	if e.Limit != api.LimitSessionTime {
		t.Fatalf("refusal %+v", e)
	}
	got := decode[api.SessionView](t, o.do(t, http.MethodGet, "/v2/sessions/"+v.SessionID, nil, asAlice...), http.StatusOK)
	if got.TimeUsedMs < 30 || *got.TimeRemainingMs != 0 || got.TokensUsed != 3 {
		t.Fatalf("session %+v", got)
	}
}

func TestSessionBudgetHeadersOnV1(t *testing.T) {
	o := startFakeOrch(t, sessionsConfig(), true)
	w := o.addWorker("w1", "m", 1)
	w.set(withPromptTokens(2, 0))
	v := o.createSession(t, api.SessionRequest{TokenBudget: 50, TimeBudgetMs: 60_000}, asAlice...)
	hdr := append(asAlice, headerSessionID, v.SessionID)
	// Whole answer: the headers after the task (2 + 4 tokens).
	resp := o.do(t, http.MethodPost, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`, hdr...)
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(headerBudgetTokens) != "44" || resp.Header.Get(headerBudgetTime) == "" {
		t.Fatalf("non-streamed: %d tokens %q time %q: %s", resp.StatusCode, resp.Header.Get(headerBudgetTokens), resp.Header.Get(headerBudgetTime), data)
	}
	if ms, err := strconv.Atoi(resp.Header.Get(headerBudgetTime)); err != nil || ms > 60_000 || ms < 0 {
		t.Errorf("time remaining %q", resp.Header.Get(headerBudgetTime))
	}
	// Streamed: what was left at admission.
	resp = o.do(t, http.MethodPost, "/v1/completions", `{"model":"m","prompt":"hi","max_tokens":3,"stream":true}`, hdr...)
	data, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(headerBudgetTokens) != "44" || !strings.Contains(string(data), "[DONE]") {
		t.Fatalf("streamed: %d tokens %q: %s", resp.StatusCode, resp.Header.Get(headerBudgetTokens), data)
	}
	got := decode[api.SessionView](t, o.do(t, http.MethodGet, "/v2/sessions/"+v.SessionID, nil, asAlice...), http.StatusOK)
	if got.Turns != 2 || got.TokensUsed != 11 {
		t.Fatalf("session %+v", got)
	}
	if jobs := w.received(); len(jobs) != 2 || jobs[1].SessionID != v.SessionID {
		t.Fatalf("the worker did not get the session of a /v1 request")
	}
	// A /v1 request without the header has none.
	resp = o.do(t, http.MethodPost, "/v1/completions", `{"model":"m","prompt":"hi","max_tokens":1}`, asAlice...)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get(headerBudgetTokens) != "" {
		t.Errorf("no session: %d %q", resp.StatusCode, resp.Header.Get(headerBudgetTokens))
	}
}

func TestSessionExpiry(t *testing.T) {
	o := startFakeOrch(t, sessionsConfig(), true)
	o.addWorker("w1", "m", 1)
	short := o.createSession(t, api.SessionRequest{TTLMs: 50, TokenBudget: 5}, asAlice...)
	long := o.createSession(t, api.SessionRequest{}, asAlice...)
	if long.TTLMs != api.DefaultSessionTTLMs {
		t.Errorf("default TTL %d", long.TTLMs)
	}
	waitFor(t, 10*time.Second, "the session to expire", func() bool {
		r := o.do(t, http.MethodGet, "/v2/sessions/"+short.SessionID, nil, asAlice...)
		r.Body.Close()
		return r.StatusCode == http.StatusNotFound
	})
	// Expired: a task naming it has no budget; its id can be taken again.
	resp := o.do(t, http.MethodPost, "/v2/tasks", sessionTask(short.SessionID, 1), asAlice...)
	if resp.Header.Get(headerBudgetTokens) != "" {
		t.Error("an expired session still budgets")
	}
	decode[api.TaskAccepted](t, resp, http.StatusAccepted)
	// The janitor removes it from the store; the live one stays.
	if n := o.sessions.sweep(time.Now(), nil); n != 1 {
		t.Errorf("swept %d", n)
	}
	recs, err := o.store.Sessions()
	if err != nil || len(recs) != 1 || recs[0].ID != long.SessionID {
		t.Fatalf("stored: %+v %v", recs, err)
	}
	again := o.createSession(t, api.SessionRequest{SessionID: short.SessionID}, asBob...)
	if again.SessionID != short.SessionID {
		t.Fatalf("id not reused: %+v", again)
	}
	// A session an unfinished task names does not expire under it.
	o.sessions.mu.Lock()
	s := o.sessions.byID[short.SessionID]
	o.sessions.mu.Unlock()
	if s == nil {
		t.Fatal("bob's session not found")
	}
	if n := o.sessions.sweep(time.Now().Add(time.Hour), map[*session]bool{s: true}); n != 1 {
		t.Errorf("swept %d, want only alice's long session", n)
	}
}

func TestSessionHostileInput(t *testing.T) {
	o := startFakeOrch(t, sessionsConfig(), true)
	for _, c := range []struct {
		name, body, field string
	}{
		{"negative ttl", `{"ttl_ms":-1}`, "ttl_ms"},
		{"huge ttl", fmt.Sprintf(`{"ttl_ms":%d}`, int64(api.MaxSessionTTLMs)+1), "ttl_ms"},
		{"negative token budget", `{"token_budget":-5}`, "token_budget"},
		{"negative time budget", `{"time_budget_ms":-5}`, "time_budget_ms"},
		{"huge budget", `{"token_budget":9223372036854775807}`, "token_budget"},
		{"slash in id", `{"session_id":"a/b"}`, "session_id"},
		{"dash first", `{"session_id":"-rf"}`, "session_id"},
		{"long id", `{"session_id":"` + strings.Repeat("x", 300) + `"}`, "session_id"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := apiErr(t, o.do(t, http.MethodPost, "/v2/sessions", c.body, asAlice...), http.StatusBadRequest, api.CodeInvalidRequest)
			if len(e.Fields) != 1 || e.Fields[0].Field != c.field {
				t.Errorf("fields %+v", e.Fields)
			}
		})
	}
	apiErr(t, o.do(t, http.MethodPost, "/v2/sessions", `{"ttl_ms":"soon"}`, asAlice...), http.StatusBadRequest, api.CodeInvalidRequest)
	apiErr(t, o.do(t, http.MethodPost, "/v2/sessions", `[`, asAlice...), http.StatusBadRequest, api.CodeInvalidRequest)
	// Without a key: 401.
	resp := o.do(t, http.MethodPost, "/v2/sessions", `{}`, "Authorization", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no key: %d", resp.StatusCode)
	}
	// A taken id: 409 for its key and another alike, saying nothing of whose.
	o.createSession(t, api.SessionRequest{SessionID: "mine"}, asAlice...)
	for _, hdr := range [][]string{asAlice, asBob} {
		e := apiErr(t, o.do(t, http.MethodPost, "/v2/sessions", `{"session_id":"mine"}`, hdr...), http.StatusConflict, api.CodeConflict)
		if strings.Contains(e.Message, "alice") {
			t.Errorf("409 names the owner: %s", e.Message)
		}
	}
	// Bounded per key.
	o.sessions.mu.Lock()
	o.sessions.perKey = 2
	o.sessions.mu.Unlock()
	o.createSession(t, api.SessionRequest{}, asAlice...)
	e := apiErr(t, o.do(t, http.MethodPost, "/v2/sessions", `{}`, asAlice...), http.StatusTooManyRequests, api.CodeRateLimited)
	if e.Limit != limitSessions {
		t.Errorf("limit %q", e.Limit)
	}
	o.createSession(t, api.SessionRequest{}, asBob...) // another key's count
	// An empty body is a session with the defaults.
	resp = o.do(t, http.MethodPost, "/v2/sessions", nil, asBob...)
	if v := decode[api.SessionView](t, resp, http.StatusCreated); v.TTLMs != api.DefaultSessionTTLMs || v.TokensRemaining != nil {
		t.Errorf("defaults %+v", v)
	}
}

// serveOn runs a server over fleet on the store in dir; stop ends it (its
// final writes done) and closes the store.
func serveOn(t *testing.T, cfg Config, fleet *fakeFleet, dir string) (o *orch, stop func()) {
	t.Helper()
	st, err := store.OpenOrchestrator(filepath.Join(dir, "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Deps{Store: st, connect: fleet.connect, Log: testLogger(t), manualStats: true})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-served; st.Close() }) }
	t.Cleanup(stop)
	return &orch{Server: srv, URL: "http://" + ln.Addr().String(), store: st, key: cfg.Keys[0].Secret}, stop
}

func TestSessionSurvivesRestart(t *testing.T) {
	dir, fleet, cfg := t.TempDir(), newFakeFleet(), sessionsConfig()
	o, stop := serveOn(t, cfg, fleet, dir)
	w := fleet.add("http://w1.test:1")
	w.set(withPromptTokens(4, 0))
	o.reg.register(api.WorkerRegistration{WorkerID: "w1", URL: w.url, Model: api.ModelInfo{ID: "m", Ctx: 4096}, Slots: 1})
	f := &fakeOrch{orch: o, fleet: fleet}
	v := f.createSession(t, api.SessionRequest{SessionID: "long-chat", TokenBudget: 20, TTLMs: 3_600_000}, asAlice...)
	evs := o.submitStream(t, sessionTask(v.SessionID, 6), asAlice...)
	if b := terminalBudget(t, evs); b == nil || *b.TokensRemaining != 10 {
		t.Fatalf("end budget %+v", b)
	}
	stop()

	o, _ = serveOn(t, cfg, fleet, dir)
	o.reg.register(api.WorkerRegistration{WorkerID: "w1", URL: w.url, Model: api.ModelInfo{ID: "m", Ctx: 4096}, Slots: 1})
	got := decode[api.SessionView](t, o.do(t, http.MethodGet, "/v2/sessions/long-chat", nil, asAlice...), http.StatusOK)
	if got.Turns != 1 || got.TokensUsed != 10 || *got.TokensRemaining != 10 || got.WorkerID != "w1" || got.TTLMs != 3_600_000 {
		t.Fatalf("after the restart %+v", got)
	}
	apiErr(t, o.do(t, http.MethodGet, "/v2/sessions/long-chat", nil, asBob...), http.StatusNotFound, api.CodeSessionNotFound)
	// It keeps counting: 4 + 6 more spends the budget; the next is refused.
	o.submitStream(t, sessionTask(v.SessionID, 6), asAlice...)
	e := apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", sessionTask(v.SessionID, 1), asAlice...), http.StatusTooManyRequests, api.CodeBudgetExceeded)
	if e.Limit != api.LimitSessionTokens {
		t.Fatalf("refusal %+v", e)
	}
}

// A session past its TTL stays while a task of it runs, and counts it.
func TestSessionInUseDoesNotExpire(t *testing.T) {
	o := startFakeOrch(t, sessionsConfig(), true)
	w := o.addWorker("w1", "m", 1)
	w.set(stallAfterTokens(2, 3))
	v := o.createSession(t, api.SessionRequest{TTLMs: 100, TokenBudget: 1000}, asAlice...)
	acc := decode[api.TaskAccepted](t, o.do(t, http.MethodPost, "/v2/tasks", sessionTask(v.SessionID, 10), asAlice...), http.StatusAccepted)
	waitFor(t, 10*time.Second, "3 tokens", func() bool { return o.taskStatus(t, acc.TaskID).TokensOut == 3 })
	cur := decode[api.SessionView](t, o.do(t, http.MethodGet, "/v2/sessions/"+v.SessionID, nil, asAlice...), http.StatusOK)
	waitFor(t, 10*time.Second, "its TTL to pass", func() bool { return time.Now().After(cur.ExpiresAt) })
	if n := o.sessions.sweep(time.Now(), o.tasks.sessionsInUse()); n != 0 {
		t.Fatalf("swept %d sessions in use", n)
	}
	got := decode[api.SessionView](t, o.do(t, http.MethodGet, "/v2/sessions/"+v.SessionID, nil, asAlice...), http.StatusOK)
	if got.TTLLeftMs != 0 || got.TokensUsed != 5 {
		t.Fatalf("in use past its TTL: %+v", got)
	}
	o.cancelTask(acc.TaskID)
	waitFor(t, 10*time.Second, "the session to expire after its task", func() bool {
		r := o.do(t, http.MethodGet, "/v2/sessions/"+v.SessionID, nil, asAlice...)
		r.Body.Close()
		return r.StatusCode == http.StatusNotFound
	})
	if n := o.sessions.sweep(time.Now(), o.tasks.sessionsInUse()); n != 1 {
		t.Fatalf("swept %d", n)
	}
}

// On a real worker: the session's KV is warm after a turn, and DELETE makes
// the worker forget it (the same prompt is evaluated afresh).
func TestSessionKVOnRealWorker(t *testing.T) {
	o := startOrch(t, sessionsConfig())
	w := startWorker(t, o, "w1", 2, "--token", "worker-token-1")
	v := decode[api.SessionView](t, o.do(t, http.MethodPost, "/v2/sessions", api.SessionRequest{TokenBudget: 10_000}, asAlice...), http.StatusCreated)
	turn := func(session string) api.End {
		t.Helper()
		r := taskReq("tiny", strings.Repeat("a conversation about rivers and the sea ", 4), 4, 7)
		r.SessionID = session
		evs := o.submitStream(t, r, asAlice...)
		last := evs[len(evs)-1]
		var end api.End
		if last.Name != api.EventEnd || json.Unmarshal(last.Data, &end) != nil {
			t.Fatalf("turn ended with %s %s", last.Name, last.Data)
		}
		return end
	}
	first := turn(v.SessionID)
	if first.Budget == nil || *first.Budget.TokensRemaining != 10_000-int64(first.PromptTokens)-4 {
		t.Fatalf("first turn %+v budget %+v", first, first.Budget)
	}
	if second := turn(v.SessionID); second.CachedTokens == 0 {
		t.Fatalf("the second turn reused nothing: %+v", second)
	}
	got := decode[api.SessionView](t, o.do(t, http.MethodGet, "/v2/sessions/"+v.SessionID, nil, asAlice...), http.StatusOK)
	if got.WorkerID != "w1" || !got.KVWarm || got.Turns != 2 {
		t.Fatalf("session %+v", got)
	}
	resp := o.do(t, http.MethodDelete, "/v2/sessions/"+v.SessionID, nil, asAlice...)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if sc, err := workerclient.New(w.URL, "worker-token-1", nil).SessionCache(context.Background(), v.SessionID); err != nil || sc.Warm {
		t.Fatalf("the worker still holds the session: %+v %v", sc, err)
	}
	if after := turn(""); after.CachedTokens != 0 {
		t.Errorf("the same prompt after the DELETE reused %d tokens", after.CachedTokens)
	}
}
