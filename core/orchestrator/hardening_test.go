package orchestrator

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
	"github.com/llorch/llorch/core/testkit"
)

// Regression tests for what adversarial testing found, through the HTTP API
// with real workers where it matters.

// An out-of-range Last-Event-ID is a 400, and the server keeps serving: no
// panic left a lock held.
func TestLastEventIDOutOfRange(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	acc := o.submitAsync(t, taskReq("tiny", "resume me", 4, 1))
	o.waitTask(t, acc.TaskID, 30*time.Second)
	for _, hdr := range [][]string{
		{"Last-Event-ID", "18446744073709551615"},
		{"Last-Event-ID", "99"},
		{"Last-Event-ID", "-1"},
	} {
		apiErr(t, o.do(t, http.MethodGet, acc.EventsURL, nil, hdr...), http.StatusBadRequest, api.CodeInvalidRequest)
	}
	apiErr(t, o.do(t, http.MethodGet, acc.EventsURL+"?last_event_id=18446744073709551615", nil), http.StatusBadRequest, api.CodeInvalidRequest)
	// The query parameter works like the header.
	rest := relayed(readAll(t, o.do(t, http.MethodGet, acc.EventsURL+"?last_event_id=2", nil)))
	checkStream(t, rest, 2)
	// Everything else still answers at once.
	for _, path := range []string{"/healthz", "/v2/workers", "/v2/tasks/" + acc.TaskID} {
		resp := o.do(t, http.MethodGet, path, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", path, resp.StatusCode)
		}
	}
	if _, last := checkStream(t, o.submitStream(t, taskReq("tiny", "still alive", 3, 1)), 0); last.Name != api.EventEnd {
		t.Fatalf("a later task ended with %s", last.Data)
	}
}

// /healthz fails while a part's lock stays taken (what a panic inside a
// critical section used to cause), and recovers when it is released.
func TestHealthzFailsWhenAPartIsStuck(t *testing.T) {
	o := startOrch(t, testConfig())
	o.tasks.mu.Lock()
	resp := o.do(t, http.MethodGet, "/healthz", nil)
	o.tasks.mu.Unlock()
	body := decode[struct {
		Status   string
		Problems []string
	}](t, resp, http.StatusServiceUnavailable)
	if body.Status != "unavailable" || len(body.Problems) != 1 || !strings.Contains(body.Problems[0], "tasks") {
		t.Fatalf("healthz body %+v", body)
	}
	if got := get(t, o.URL+"/healthz"); !strings.Contains(got, `"ok"`) {
		t.Fatalf("after the release: %s", got)
	}
}

// Ids follow one rule ([A-Za-z0-9._-]{1,128}) and are refused at the door.
func TestIDsAtTheDoor(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	for _, id := range []string{"a/b", "x/y?z", "..", "", "a b", strings.Repeat("w", 129), "w\x00"} {
		reg := api.WorkerRegistration{WorkerID: id, URL: "http://127.0.0.1:1", Model: api.ModelInfo{ID: "tiny"}, Slots: 1}
		e := apiErr(t, o.do(t, http.MethodPost, "/v2/workers/register", reg), http.StatusBadRequest, api.CodeInvalidRequest)
		if len(e.Fields) == 0 || e.Fields[0].Field != "worker_id" {
			t.Fatalf("%q: fields %+v", id, e.Fields)
		}
		req := taskReq("tiny", "x", 2, 1)
		req.Placement = &api.Placement{PinWorker: id}
		if id != "" {
			apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", req), http.StatusBadRequest, api.CodeInvalidRequest)
		}
		if id != "" {
			apiErr(t, o.do(t, http.MethodPost, "/v2/pools", api.Pool{Name: id, Host: "h"}), http.StatusBadRequest, api.CodeInvalidRequest)
		}
	}
	for _, u := range []string{"ftp://h:1", "http://user:pw@h:1", "http://h:1/?q=1", "http://", "http://h:x"} {
		reg := api.WorkerRegistration{WorkerID: "w9", URL: u, Model: api.ModelInfo{ID: "tiny"}, Slots: 1}
		apiErr(t, o.do(t, http.MethodPost, "/v2/workers/register", reg), http.StatusBadRequest, api.CodeInvalidRequest)
	}
	apiErr(t, o.do(t, http.MethodPost, "/v2/workers/a%2Fb/heartbeat", api.Heartbeat{Status: "ready"}), http.StatusBadRequest, api.CodeInvalidRequest)
	if n := len(o.reg.list()); n != 1 {
		t.Fatalf("%d workers registered", n)
	}
}

// max_tokens is checked against the context of the workers that serve the
// model: 10^18 is a 400, not a task that can never run.
func TestMaxTokensBeyondEveryContext(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	for _, n := range []int{1e18, 4096} {
		e := apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", taskReq("tiny", "x", n, 1)), http.StatusBadRequest, api.CodeContextOverflow)
		if len(e.Fields) != 1 || e.Fields[0].Field != "max_tokens" || !strings.Contains(e.Fields[0].Message, "4096") {
			t.Fatalf("%d: %+v", n, e)
		}
	}
}

// fakeExecute is an HTTP worker whose /execute does what handle does, and
// whose /health says ready. It records the correlation ids it was sent.
type fakeExecute struct {
	*httptest.Server
	mu    sync.Mutex
	corrs []string
}

func newFakeExecute(t *testing.T, handle func(w http.ResponseWriter, r *http.Request)) *fakeExecute {
	f := &fakeExecute{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/execute" {
			_, _ = io.WriteString(w, `{"status":"ready"}`)
			return
		}
		f.mu.Lock()
		f.corrs = append(f.corrs, r.Header.Get("X-Correlation-Id"))
		f.mu.Unlock()
		handle(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// streamN streams started, n tokens and end.
func streamN(n int) func(w http.ResponseWriter, r *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		var req api.ExecuteRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		w.Header().Set("Content-Type", "text/event-stream")
		bw := bufio.NewWriter(w)
		sw := sse.NewWriter(bw)
		_ = sw.JSON(api.EventStarted, "", &api.Started{JobID: req.JobID})
		for i := len(req.ResumeTokens); i < n; i++ {
			_ = sw.JSON(api.EventToken, "", &api.Token{T: "x", I: i, ID: int32(i)})
		}
		_ = sw.JSON(api.EventEnd, "", &api.End{TokensOut: n, StopReason: api.StopMaxTokens})
		_ = bw.Flush()
	}
}

func registerFake(t *testing.T, o *orch, id, url string) {
	t.Helper()
	reg := api.WorkerRegistration{WorkerID: id, URL: url, Model: api.ModelInfo{ID: "fake"}, Slots: 1}
	decode[api.WorkerView](t, o.do(t, http.MethodPost, "/v2/workers/register", reg), http.StatusOK)
}

// What a registered URL answers is never passed on: a non-llorch body (an
// internal service behind that URL) becomes a short message, and a llorch
// error is cut to a bounded, printable one.
func TestWorkerErrorBodiesAreNotEchoed(t *testing.T) {
	cfg := testConfig()
	cfg.MaxAttempts = 2
	o := startOrch(t, cfg)
	html := newFakeExecute(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html>SECRET-INTERNAL-DATA "+strings.Repeat("x", 100000)+"</html>")
	})
	registerFake(t, o, "w-html", html.URL)
	st := o.waitTask(t, o.submitAsync(t, taskReq("fake", "x", 2, 1)).TaskID, 20*time.Second)
	if st.Error == nil || strings.Contains(st.Error.Message, "SECRET") || len(st.Error.Message) > 400 {
		t.Fatalf("error %+v", st.Error)
	}
	if e := o.do(t, http.MethodDelete, "/v2/workers/w-html", nil); e.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", e.StatusCode)
	}
	loud := newFakeExecute(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: &api.Error{Code: "BAD\x1b[31m", Message: strings.Repeat("SECRET ", 50000)}})
	})
	registerFake(t, o, "w-loud", loud.URL)
	st = o.waitTask(t, o.submitAsync(t, taskReq("fake", "x", 2, 1)).TaskID, 20*time.Second)
	if st.Error == nil || len(st.Error.Message) > 400 || strings.ContainsRune(st.Error.Code, 0x1b) {
		t.Fatalf("error %q %d bytes", st.Error.Code, len(st.Error.Message))
	}
}

// X-Correlation-Id reaches the worker.
func TestCorrelationIDReachesWorkers(t *testing.T) {
	o := startOrch(t, testConfig())
	f := newFakeExecute(t, streamN(3))
	registerFake(t, o, "w1", f.URL)
	req := taskReq("fake", "x", 3, 1)
	checkStream(t, o.submitStream(t, req, "X-Correlation-Id", "corr-4711"), 0)
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.corrs) != 1 || f.corrs[0] != "corr-4711" {
		t.Fatalf("worker saw correlation ids %q", f.corrs)
	}
}

// An attempt whose worker sends nothing at all — not even a keep-alive — is
// abandoned after --attempt-idle-timeout and runs elsewhere.
func TestSilentAttemptIsAbandoned(t *testing.T) {
	cfg := testConfig()
	cfg.AttemptIdleTimeout = 300 * time.Millisecond
	o := startOrch(t, cfg)
	silent := newFakeExecute(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
	registerFake(t, o, "w0", silent.URL) // first in the tie-break
	registerFake(t, o, "w1", newFakeExecute(t, streamN(3)).URL)
	start := time.Now()
	st := o.waitTask(t, o.submitAsync(t, taskReq("fake", "x", 3, 1)).TaskID, 20*time.Second)
	if st.Status != api.TaskSucceeded || st.WorkerID != "w1" || st.Attempts != 2 {
		t.Fatalf("status %+v", st)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("abandoned after %v, before the idle timeout", d)
	}
	if m := get(t, o.URL+"/metrics"); !strings.Contains(m, `llorch_attempts_failed_total{reason="idle"} 1`) {
		t.Fatal("the idle attempt is not counted")
	}
}

// An async task keeps running when the client following its events leaves.
func TestAsyncTaskOutlivesItsEventsClient(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	acc := o.submitAsync(t, taskReq("tiny", "keep going", 400, 1))
	resp := o.do(t, http.MethodGet, acc.EventsURL, nil)
	r := sse.NewReader(resp.Body)
	for range 3 {
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
	}
	resp.Body.Close()
	if st := o.waitTask(t, acc.TaskID, 60*time.Second); st.Status != api.TaskSucceeded || st.TokensOut != 400 {
		t.Fatalf("status %+v", st)
	}
}

// The prompt leaves the store when a task ends; the result leaves after
// --result-ttl.
func TestPromptDeletedAndResultExpires(t *testing.T) {
	cfg := testConfig()
	cfg.ResultTTL = time.Hour
	o := startOrch(t, cfg)
	startWorker(t, o, "w1", 1)
	acc := o.submitAsync(t, taskReq("tiny", "a secret prompt", 3, 1))
	o.waitTask(t, acc.TaskID, 30*time.Second)
	if err := o.tasks.flush(); err != nil {
		t.Fatal(err)
	}
	recs, err := o.store.Tasks()
	if err != nil || len(recs) != 1 || recs[0].Request != nil || recs[0].Text == "" {
		t.Fatalf("journal %+v, %v", recs, err)
	}
	o.tasks.expire(time.Now().Add(2 * time.Hour))
	apiErr(t, o.do(t, http.MethodGet, "/v2/tasks/"+acc.TaskID, nil), http.StatusNotFound, api.CodeTaskNotFound)
	if recs, _ := o.store.Tasks(); len(recs) != 0 {
		t.Fatalf("%d tasks left in the journal after the TTL", len(recs))
	}
	if evs, _ := o.store.Events(acc.TaskID); len(evs) != 0 {
		t.Fatalf("%d events left after the TTL", len(evs))
	}
}

// A frozen worker (SIGSTOP) with a task streaming on it: it is found
// unhealthy, and the task continues on the other worker from the tokens it
// had sent: every token once, in order.
func TestFrozenWorkerTaskContinuesElsewhere(t *testing.T) {
	o := startOrch(t, testConfig())
	workers := map[string]*testkit.Worker{}
	for _, id := range []string{"w1", "w2"} {
		workers[id] = startWorker(t, o, id, 1)
	}
	const n = 1500
	acc := o.submitAsync(t, taskReq("tiny", "a long story", n, 5))
	var on string
	waitFor(t, 30*time.Second, "tokens", func() bool {
		st := o.taskStatus(t, acc.TaskID)
		on = st.WorkerID
		return st.TokensOut > 20
	})
	if err := workers[on].Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = workers[on].Cmd.Process.Signal(syscall.SIGCONT) }()
	st := o.waitTask(t, acc.TaskID, 90*time.Second)
	if st.Status != api.TaskSucceeded || st.TokensOut != n || st.WorkerID == on {
		t.Fatalf("status %+v (frozen worker %s)", st, on)
	}
	evs := relayed(readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil)))
	checkStream(t, evs, 0)
	if got := countTokens(evs); got != n {
		t.Fatalf("%d token events, want %d", got, n)
	}
	if s := o.workerState(on); s != api.WorkerUnhealthy && s != api.WorkerDead {
		t.Fatalf("frozen worker %s is %s", on, s)
	}
}

// A drain's body is {"migrate": bool} or nothing; anything else is a 400
// before the worker is looked up.
func TestDrainBodyAtTheDoor(t *testing.T) {
	o := startOrch(t, testConfig())
	for _, tc := range []struct {
		body   string
		status int
	}{
		{"", http.StatusNotFound},
		{"  \n", http.StatusNotFound},
		{`{}`, http.StatusNotFound},
		{`{"migrate": true}`, http.StatusNotFound},
		{`{"migrate": "yes"}`, http.StatusBadRequest},
		{`{"migrate": true, "force": 1}`, http.StatusBadRequest},
		{`[]`, http.StatusBadRequest},
		{`{"migrate": true}{"migrate": false}`, http.StatusBadRequest},
		{`{"migrate": true} x`, http.StatusBadRequest},
	} {
		resp := o.do(t, http.MethodPost, "/v2/workers/nope/drain", []byte(tc.body))
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("body %q: status %d, want %d", tc.body, resp.StatusCode, tc.status)
		}
	}
}
