package orchestrator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerclient"
)

func TestSubmitStreamAndStatus(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 2)

	evs := o.submitStream(t, taskReq("tiny", "Hello there", 12, 7), "X-Correlation-Id", "corr-123")
	text, last := checkStream(t, evs, 0)
	if last.Name != api.EventEnd {
		t.Fatalf("last event %s %s", last.Name, last.Data)
	}
	var end api.End
	_ = json.Unmarshal(last.Data, &end)
	if end.TokensOut != 12 {
		t.Fatalf("tokens_out %d, want 12", end.TokensOut)
	}
	if relayed(evs)[0].Name != api.EventStarted {
		t.Fatalf("first relayed event is %s", relayed(evs)[0].Name)
	}

	// The task is listed with its text and explanation.
	resp := o.do(t, http.MethodGet, "/v2/tasks", nil)
	list := decode[struct{ Tasks []api.TaskStatus }](t, resp, http.StatusOK)
	if len(list.Tasks) != 1 {
		t.Fatalf("%d tasks listed", len(list.Tasks))
	}
	st := o.taskStatus(t, list.Tasks[0].TaskID)
	if st.Status != api.TaskSucceeded || st.Text != text || st.TokensOut != 12 || st.WorkerID != "w1" {
		t.Fatalf("status %+v, want succeeded on w1 with text %q", st, text)
	}
	if st.Explanation == nil || st.Explanation.Chosen != "w1" || !strings.Contains(st.Explanation.Summary, "w1") {
		t.Fatalf("explanation %+v", st.Explanation)
	}
}

func TestCorrelationIDEchoed(t *testing.T) {
	o := startOrch(t, testConfig())
	resp := o.do(t, http.MethodGet, "/v2/workers", nil, "X-Correlation-Id", "abc-1")
	resp.Body.Close()
	if got := resp.Header.Get("X-Correlation-Id"); got != "abc-1" {
		t.Fatalf("correlation id %q", got)
	}
	resp = o.do(t, http.MethodGet, "/healthz", nil)
	resp.Body.Close()
	if got := resp.Header.Get("X-Correlation-Id"); got == "" {
		t.Fatal("no generated correlation id")
	}
}

// The orchestrator relays exactly what the worker generates.
func TestRelayFidelity(t *testing.T) {
	o := startOrch(t, testConfig())
	w := startWorker(t, o, "w1", 1)

	req := taskReq("tiny", "The quick brown fox", 24, 42)
	req.Temperature = ptr(0.9)
	req.CachePrompt = ptr(false)
	via, _ := checkStream(t, o.submitStream(t, req), 0)

	direct, err := workerclient.New(w.URL, "", nil).Collect(t.Context(), &req.ExecuteRequest)
	if err != nil {
		t.Fatal(err)
	}
	if direct.Text() != via {
		t.Fatalf("through the orchestrator %q, direct %q", via, direct.Text())
	}
}

func TestAsyncEventsReplayAndResume(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)

	acc := o.submitAsync(t, taskReq("tiny", "async please", 16, 3))
	if acc.Status != api.TaskQueued || acc.EventsURL != "/v2/tasks/"+acc.TaskID+"/events" {
		t.Fatalf("accepted %+v", acc)
	}
	st := o.waitTask(t, acc.TaskID, 60*time.Second)
	if st.Status != api.TaskSucceeded {
		t.Fatalf("status %+v", st)
	}
	all := relayed(readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil)))
	text, _ := checkStream(t, all, 0)
	if text != st.Text {
		t.Fatalf("replayed text %q, status text %q", text, st.Text)
	}
	// Resume after event 5: exactly the rest, no duplicates.
	rest := relayed(readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil, "Last-Event-ID", "5")))
	if len(rest) != len(all)-5 || rest[0].ID != "6" {
		t.Fatalf("resumed %d events from id %s, want %d from 6", len(rest), rest[0].ID, len(all)-5)
	}
	checkStream(t, rest, 5)
	resp := o.do(t, http.MethodGet, acc.EventsURL, nil, "Last-Event-ID", "x")
	apiErr(t, resp, http.StatusBadRequest, api.CodeInvalidRequest)
}

func TestAdmissionErrors(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)

	t.Run("unknown model", func(t *testing.T) {
		e := apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", taskReq("nope", "hi", 4, 1)), http.StatusNotFound, api.CodeModelNotFound)
		if !strings.Contains(e.Message, "nope") {
			t.Fatalf("message %q", e.Message)
		}
	})
	t.Run("bad priority and fields", func(t *testing.T) {
		req := taskReq("tiny", "hi", 0, 1)
		req.Priority = "urgent"
		e := apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", req), http.StatusBadRequest, api.CodeInvalidRequest)
		fields := map[string]bool{}
		for _, f := range e.Fields {
			fields[f.Field] = true
		}
		if !fields["priority"] || !fields["max_tokens"] {
			t.Fatalf("fields %+v, want priority and max_tokens", e.Fields)
		}
	})
	t.Run("bad json", func(t *testing.T) {
		apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", "{"), http.StatusBadRequest, api.CodeInvalidRequest)
	})
	t.Run("body too large", func(t *testing.T) {
		big := `{"model":"tiny","prompt":"` + strings.Repeat("a", api.MaxRequestBytes) + `"}`
		apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", big), http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge)
	})
	t.Run("pin to unknown worker", func(t *testing.T) {
		req := taskReq("tiny", "hi", 4, 1)
		req.Placement = &api.Placement{PinWorker: "ghost"}
		apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", req), http.StatusNotFound, api.CodeWorkerNotFound)
	})
	t.Run("unmeetable deadline", func(t *testing.T) {
		// Occupy the only slot, then ask for a start within 1 ms behind a queue.
		long := o.submitAsync(t, taskReq("tiny", "long", 2000, 1))
		defer o.cancelTask(long.TaskID)
		o.submitAsync(t, taskReq("tiny", "queued", 4, 1))
		o.disp.mu.Lock()
		o.disp.meter.Observe("tiny", 2*time.Second, time.Now())
		o.disp.mu.Unlock()
		req := taskReq("tiny", "hi", 4, 1)
		req.DeadlineMs = 1
		apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", req), http.StatusBadRequest, api.CodeDeadlineUnmet)
	})
	t.Run("unknown task", func(t *testing.T) {
		apiErr(t, o.do(t, http.MethodGet, "/v2/tasks/t-nope", nil), http.StatusNotFound, api.CodeTaskNotFound)
	})
}

func TestPoolUnavailablePolicy(t *testing.T) {
	cfg := testConfig()
	cfg.Unavailable = "reject"
	o := startOrch(t, cfg)
	// A known model whose only worker is dead.
	reg := api.WorkerRegistration{WorkerID: "gone", URL: "http://127.0.0.1:1", Model: api.ModelInfo{ID: "tiny"}, Slots: 1}
	decode[api.WorkerView](t, o.do(t, http.MethodPost, "/v2/workers/register", reg), http.StatusOK)
	o.reg.mu.Lock()
	o.reg.workers["gone"].rec.State = api.WorkerDead
	o.reg.mu.Unlock()
	resp := o.do(t, http.MethodPost, "/v2/tasks", taskReq("tiny", "hi", 4, 1))
	apiErr(t, resp, http.StatusServiceUnavailable, api.CodePoolUnavailable)
}

// Keys have roles: an admin manages the fleet, a user runs tasks and sees
// only its own, and only the worker token registers and heartbeats.
func TestAuthRoles(t *testing.T) {
	const admin, user1, user2, token = "admin-key-0001", "user-key-00001", "user-key-00002", "worker-secret-1"
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: admin, Role: RoleAdmin, Name: "ops"}, {Secret: user1, Role: RoleUser}, {Secret: user2, Role: RoleUser}}
	cfg.WorkerToken = token
	o := startOrch(t, cfg)
	startWorker(t, o, "w1", 1, "--token", token)

	call := func(method, path, auth string, body any) *http.Response {
		t.Helper()
		saved := o.key
		defer func() { o.key = saved }()
		o.key = ""
		var hdr []string
		if auth != "" {
			hdr = []string{"Authorization", auth}
		}
		return o.do(t, method, path, body, hdr...)
	}
	status := func(method, path, auth string, body any) int {
		t.Helper()
		resp := call(method, path, auth, body)
		resp.Body.Close()
		return resp.StatusCode
	}
	reg := api.WorkerRegistration{WorkerID: "evil", URL: "http://127.0.0.1:1", Model: api.ModelInfo{ID: "tiny"}, Slots: 1}
	for _, tc := range []struct {
		name, method, path, auth string
		body                     any
		want                     int
	}{
		{"no key", "GET", "/v2/workers", "", nil, http.StatusUnauthorized},
		{"wrong key", "GET", "/v2/workers", "Bearer nope-nope-nope", nil, http.StatusUnauthorized},
		{"not a bearer", "GET", "/v2/workers", "Basic " + admin, nil, http.StatusUnauthorized},
		{"worker token is not a client key", "GET", "/v2/tasks", "Bearer " + token, nil, http.StatusUnauthorized},
		{"user lists workers", "GET", "/v2/workers", "Bearer " + user1, nil, http.StatusForbidden},
		{"user drains", "POST", "/v2/workers/w1/drain", "Bearer " + user1, nil, http.StatusForbidden},
		{"user deletes a worker", "DELETE", "/v2/workers/w1", "Bearer " + user1, nil, http.StatusForbidden},
		{"user sets a script", "PUT", "/v2/routing/script", "Bearer " + user1, "decision = undefined", http.StatusForbidden},
		{"user adds a pool", "POST", "/v2/pools", "Bearer " + user1, api.Pool{Name: "p", Host: "h"}, http.StatusForbidden},
		{"admin lists workers", "GET", "/v2/workers", "Bearer " + admin, nil, http.StatusOK},
		{"the scheme is case-insensitive", "GET", "/v2/workers", "bearer " + admin, nil, http.StatusOK},
		{"user lists models", "GET", "/v1/models", "Bearer " + user1, nil, http.StatusOK},
		{"user key registers", "POST", "/v2/workers/register", "Bearer " + user1, reg, http.StatusUnauthorized},
		{"admin key registers", "POST", "/v2/workers/register", "Bearer " + admin, reg, http.StatusUnauthorized},
		{"no token registers", "POST", "/v2/workers/register", "", reg, http.StatusUnauthorized},
		{"wrong token registers", "POST", "/v2/workers/register", "Bearer worker-secret-2", reg, http.StatusUnauthorized},
		{"user key heartbeats", "POST", "/v2/workers/w1/heartbeat", "Bearer " + user1, api.Heartbeat{Status: "ready"}, http.StatusUnauthorized},
		{"metrics are open", "GET", "/metrics", "", nil, http.StatusOK},
		{"healthz is open", "GET", "/healthz", "", nil, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status(tc.method, tc.path, tc.auth, tc.body); got != tc.want {
				t.Fatalf("%s %s: %d, want %d", tc.method, tc.path, got, tc.want)
			}
		})
	}
	if o.workerState("evil") != "" {
		t.Fatal("a client key registered a worker")
	}

	// A user's task is its own: another user cannot see, follow or cancel it.
	acc := decode[api.TaskAccepted](t, call("POST", "/v2/tasks", "Bearer "+user1, taskReq("tiny", "mine", 3000, 1)), http.StatusAccepted)
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v2/tasks/" + acc.TaskID}, {"GET", acc.EventsURL}, {"DELETE", "/v2/tasks/" + acc.TaskID},
	} {
		apiErr(t, call(tc.method, tc.path, "Bearer "+user2, nil), http.StatusNotFound, api.CodeTaskNotFound)
	}
	list := func(key string) []api.TaskStatus {
		return decode[struct{ Tasks []api.TaskStatus }](t, call("GET", "/v2/tasks", "Bearer "+key, nil), http.StatusOK).Tasks
	}
	if n := len(list(user2)); n != 0 {
		t.Fatalf("user2 lists %d tasks of others", n)
	}
	if n := len(list(user1)); n != 1 {
		t.Fatalf("user1 lists %d tasks, want 1", n)
	}
	if n := len(list(admin)); n != 1 {
		t.Fatalf("admin lists %d tasks, want 1", n)
	}
	if st := o.taskStatus(t, acc.TaskID); st.Status == api.TaskCancelled {
		t.Fatal("user2's cancel reached user1's task")
	}
	// The owner cancels it; the admin could too.
	if got := status("DELETE", "/v2/tasks/"+acc.TaskID, "Bearer "+user1, nil); got != http.StatusAccepted {
		t.Fatalf("owner's cancel: %d", got)
	}

	// A task runs end to end: the orchestrator passes the worker token on.
	_, last := checkStream(t, o.submitStream(t, taskReq("tiny", "secure", 4, 1)), 0)
	if last.Name != api.EventEnd {
		t.Fatalf("last %s %s", last.Name, last.Data)
	}
	if got := Fingerprint(admin); len(got) != 6 {
		t.Fatalf("fingerprint %q", got)
	}
}

func TestCheckBind(t *testing.T) {
	for _, tc := range []struct {
		addr           string
		keys, insecure bool
		ok             bool
	}{
		{"127.0.0.1:8080", false, false, true},
		{"localhost:8080", false, false, true},
		{"[::1]:8080", false, false, true},
		{"0.0.0.0:8080", false, false, false},
		{"0.0.0.0:8080", true, false, true},
		{"0.0.0.0:8080", false, true, true},
		{"10.1.2.3:80", false, false, false},
	} {
		err := CheckBind(tc.addr, tc.keys, tc.insecure)
		if (err == nil) != tc.ok {
			t.Errorf("CheckBind(%q, keys=%v, insecure=%v) = %v", tc.addr, tc.keys, tc.insecure, err)
		}
	}
}

// startTime returns when a finished task started.
func startTime(t *testing.T, o *orch, id string) time.Time {
	st := o.waitTask(t, id, 90*time.Second)
	if st.StartedAt == nil {
		t.Fatalf("task %s never started: %+v", id, st)
	}
	return *st.StartedAt
}

func TestPriorityOrder(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	blocker := o.submitAsync(t, taskReq("tiny", "blocker", 3000, 1))
	waitFor(t, 30*time.Second, "blocker running", func() bool { return o.taskStatus(t, blocker.TaskID).Status == api.TaskRunning })

	var batch, inter []string
	for i := range 2 {
		r := taskReq("tiny", fmt.Sprintf("batch %d", i), 2, 1)
		r.Priority = api.PriorityBatch
		batch = append(batch, o.submitAsync(t, r).TaskID)
	}
	for i := range 2 {
		acc := o.submitAsync(t, taskReq("tiny", fmt.Sprintf("interactive %d", i), 2, 1))
		if acc.QueuePosition != i {
			t.Fatalf("interactive %d at position %d", i, acc.QueuePosition)
		}
		inter = append(inter, acc.TaskID)
	}
	o.cancelTask(blocker.TaskID)
	order := append(inter, batch...)
	for i := 1; i < len(order); i++ {
		if a, b := startTime(t, o, order[i-1]), startTime(t, o, order[i]); !a.Before(b) {
			t.Fatalf("task %d started at %v, not before task %d at %v", i-1, a, i, b)
		}
	}
}

func TestQueueFull(t *testing.T) {
	for _, policy := range []string{"reject", "drop-lru"} {
		t.Run(policy, func(t *testing.T) {
			cfg := testConfig()
			cfg.QueueCapacity = 1
			cfg.QueuePolicy = policy
			o := startOrch(t, cfg)
			startWorker(t, o, "w1", 1)
			blocker := o.submitAsync(t, taskReq("tiny", "blocker", 3000, 1))
			defer o.cancelTask(blocker.TaskID)
			waitFor(t, 30*time.Second, "blocker running", func() bool { return o.taskStatus(t, blocker.TaskID).Status == api.TaskRunning })
			first := taskReq("tiny", "first", 2, 1)
			first.Priority = api.PriorityBatch
			firstAcc := o.submitAsync(t, first)
			second := taskReq("tiny", "second", 2, 1)
			second.Priority = api.PriorityBatch
			resp := o.do(t, http.MethodPost, "/v2/tasks", second)
			if policy == "reject" {
				retry := resp.Header.Get("Retry-After")
				e := apiErr(t, resp, http.StatusTooManyRequests, api.CodeQueueFull)
				if retry == "" || e.RetryAfterMs <= 0 || resp.Header.Get("X-Backoff-Ms") == "" {
					t.Fatalf("Retry-After %q, body %+v", retry, e)
				}
				return
			}
			decode[api.TaskAccepted](t, resp, http.StatusAccepted)
			st := o.waitTask(t, firstAcc.TaskID, 10*time.Second)
			if st.Error == nil || st.Error.Code != api.CodeQueueFullDropped {
				t.Fatalf("dropped task status %+v", st)
			}
			_, last := checkStream(t, readAll(t, o.do(t, http.MethodGet, firstAcc.EventsURL, nil)), 0)
			if last.apiError().Code != api.CodeQueueFullDropped {
				t.Fatalf("dropped stream ended with %s", last.Data)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	running := o.submitAsync(t, taskReq("tiny", "run long", 3000, 1))
	queued := o.submitAsync(t, taskReq("tiny", "wait", 4, 1))
	waitFor(t, 30*time.Second, "first token", func() bool { return o.taskStatus(t, running.TaskID).TokensOut > 0 })

	for _, id := range []string{queued.TaskID, running.TaskID, running.TaskID} { // the second cancel is a no-op
		resp := o.do(t, http.MethodDelete, "/v2/tasks/"+id, nil)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("cancel %s: %d", id, resp.StatusCode)
		}
	}
	for _, id := range []string{queued.TaskID, running.TaskID} {
		st := o.waitTask(t, id, 5*time.Second)
		if st.Status != api.TaskCancelled {
			t.Fatalf("%s: %+v", id, st)
		}
		_, last := checkStream(t, readAll(t, o.do(t, http.MethodGet, "/v2/tasks/"+id+"/events", nil)), 0)
		if last.apiError().Code != api.CodeCancelled {
			t.Fatalf("%s ended with %s", id, last.Data)
		}
	}
	// The worker's slot comes back: a new task runs.
	_, last := checkStream(t, o.submitStream(t, taskReq("tiny", "after", 3, 1)), 0)
	if last.Name != api.EventEnd {
		t.Fatalf("after cancel: %s", last.Data)
	}
}

// A streaming client that goes away cancels its task.
func TestDisconnectCancels(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	resp := o.do(t, http.MethodPost, "/v2/tasks", taskReq("tiny", "bye", 3000, 1), "Accept", "text/event-stream")
	id := resp.Header.Get("X-Task-Id")
	buf := make([]byte, 512)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	st := o.waitTask(t, id, 10*time.Second)
	if st.Status != api.TaskCancelled {
		t.Fatalf("status %+v", st)
	}
}

func TestPinsNeverFallBack(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	startWorker(t, o, "w2", 1)
	// Occupy w1, then pin a task to it: it waits although w2 is free.
	busy := taskReq("tiny", "busy", 3000, 1)
	busy.Placement = &api.Placement{PinWorker: "w1"}
	b := o.submitAsync(t, busy)
	pinned := taskReq("tiny", "pinned", 2, 1)
	pinned.Placement = &api.Placement{PinWorker: "w1"}
	p := o.submitAsync(t, pinned)
	st := o.waitExplained(t, p.TaskID, "w2 not the pinned worker")
	if st.Status != api.TaskQueued {
		t.Fatalf("pinned task %+v (explanation %+v)", st, st.Explanation)
	}
	o.cancelTask(b.TaskID)
	st = o.waitTask(t, p.TaskID, 30*time.Second)
	if st.Status != api.TaskSucceeded || st.WorkerID != "w1" {
		t.Fatalf("pinned task ran as %+v", st)
	}
	// A pool pin with no such pool for the model is refused.
	bad := taskReq("tiny", "x", 2, 1)
	bad.Placement = &api.Placement{PinPool: "nowhere"}
	apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", bad), http.StatusNotFound, api.CodeModelNotFound)
}

// A worker killed before the first token: the task runs elsewhere.
func TestRetryBeforeFirstToken(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w2", 1)
	// "w0" sorts first and wins the tie-break, but its process is killed
	// before the task arrives (and before a missed heartbeat could tell).
	w0 := startWorker(t, o, "w0", 1)
	kill(w0)

	evs := o.submitStream(t, taskReq("tiny", "retry me", 6, 1))
	_, last := checkStream(t, evs, 0)
	if last.Name != api.EventEnd {
		t.Fatalf("ended with %s", last.Data)
	}
	list := decode[struct{ Tasks []api.TaskStatus }](t, o.do(t, http.MethodGet, "/v2/tasks", nil), http.StatusOK)
	st := list.Tasks[0]
	if st.WorkerID != "w2" || st.Attempts != 2 {
		t.Fatalf("task ran on %s after %d attempts, want w2 after 2", st.WorkerID, st.Attempts)
	}
	// The failed worker is looked at at once, not at its next missed heartbeat.
	waitFor(t, 5*time.Second, "w0 unhealthy", func() bool { return o.workerState("w0") == api.WorkerUnhealthy })
}

// A worker killed mid-stream with --max-migrations -1: one retriable
// WORKER_LOST, nothing after it.
func TestWorkerLostMidStream(t *testing.T) {
	cfg := testConfig()
	cfg.MaxMigrations = -1
	o := startOrch(t, cfg)
	w := startWorker(t, o, "w1", 1)
	acc := o.submitAsync(t, taskReq("tiny", "doomed", 3000, 1))
	waitFor(t, 30*time.Second, "tokens", func() bool { return o.taskStatus(t, acc.TaskID).TokensOut > 3 })
	kill(w)
	st := o.waitTask(t, acc.TaskID, 10*time.Second)
	if st.Status != api.TaskFailed || st.Error == nil || st.Error.Code != api.CodeWorkerLost || !st.Error.Retriable {
		t.Fatalf("status %+v", st)
	}
	_, last := checkStream(t, readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil)), 0)
	if last.apiError().Code != api.CodeWorkerLost {
		t.Fatalf("stream ended with %s", last.Data)
	}
}

// The only worker killed mid-stream: the task waits (a dead worker gets no
// attempt, and the task's budget is not spent on it), and when the worker
// comes back — a new process, another port — the task continues from the
// tokens it had sent.
func TestTaskWaitsForARestartedWorker(t *testing.T) {
	o := startOrch(t, testConfig())
	w := startWorker(t, o, "w1", 1)
	const n = 600
	acc := o.submitAsync(t, taskReq("tiny", "patience", n, 1))
	waitFor(t, 30*time.Second, "tokens", func() bool { return o.taskStatus(t, acc.TaskID).TokensOut > 20 })
	kill(w)
	waitFor(t, 10*time.Second, "the task waiting for a worker", func() bool {
		st := o.taskStatus(t, acc.TaskID)
		return st.Status == api.TaskQueued && st.Explanation != nil && strings.Contains(st.Explanation.Summary, "w1 not healthy")
	})
	startWorker(t, o, "w1", 1)
	st := o.waitTask(t, acc.TaskID, 60*time.Second)
	if st.Status != api.TaskSucceeded || st.TokensOut != n {
		t.Fatalf("status %+v (error %+v)", st, st.Error)
	}
	evs := relayed(readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil)))
	checkStream(t, evs, 0)
	if got := countTokens(evs); got != n {
		t.Fatalf("%d tokens, want %d", got, n)
	}
}

// A worker that stops answering becomes unhealthy and gets no work; it comes
// back when its heartbeats resume.
func TestHeartbeatLoss(t *testing.T) {
	o := startOrch(t, testConfig())
	w := startWorker(t, o, "w1", 1)
	if err := w.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "w1 unhealthy", func() bool { return o.workerState("w1") == api.WorkerUnhealthy })
	acc := o.submitAsync(t, taskReq("tiny", "later", 3, 1))
	if st := o.waitExplained(t, acc.TaskID, "w1 not healthy"); st.Status != api.TaskQueued {
		t.Fatalf("task on an unhealthy worker: %+v", st)
	}
	if err := w.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "w1 healthy", func() bool { return o.workerState("w1") == api.WorkerHealthy })
	if st := o.waitTask(t, acc.TaskID, 30*time.Second); st.Status != api.TaskSucceeded {
		t.Fatalf("status %+v", st)
	}
	metrics := get(t, o.URL+"/metrics")
	for _, want := range []string{`llorch_workers{state="healthy"} 1`, `llorch_tasks_total{outcome="succeeded",priority="interactive"} 1`, "llorch_ttft_seconds_count 1", "llorch_tokens_out_total 3"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestRegistryDrainDeleteAndPools(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	resp := o.do(t, http.MethodPost, "/v2/workers/w1/drain", nil)
	if v := decode[api.WorkerView](t, resp, http.StatusAccepted); v.State != api.WorkerDraining {
		t.Fatalf("drain: %+v", v)
	}
	acc := o.submitAsync(t, taskReq("tiny", "not on a draining worker", 2, 1))
	if st := o.waitExplained(t, acc.TaskID, "w1 draining"); st.Status != api.TaskQueued {
		t.Fatalf("scheduled on a draining worker: %+v", st)
	}
	resp = o.do(t, http.MethodDelete, "/v2/workers/w1", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	// The worker's next heartbeat is refused, so it registers again.
	waitFor(t, 10*time.Second, "w1 back", func() bool { return o.workerState("w1") != "" })

	pool := api.Pool{Name: "gpu-a", Host: "gpu-a.lan"}
	decode[api.PoolView](t, o.do(t, http.MethodPost, "/v2/pools", pool), http.StatusOK)
	apiErr(t, o.do(t, http.MethodPost, "/v2/pools", api.Pool{Name: "x", Transport: "ftp"}), http.StatusBadRequest, api.CodeInvalidRequest)
	apiErr(t, o.do(t, http.MethodPost, "/v2/pools", api.Pool{Name: "x", Host: "-oProxyCommand=sh"}), http.StatusBadRequest, api.CodeInvalidRequest)
	pools := decode[struct{ Pools []api.PoolView }](t, o.do(t, http.MethodGet, "/v2/pools", nil), http.StatusOK)
	if len(pools.Pools) != 1 || pools.Pools[0].Transport != api.TransportSSH || pools.Pools[0].State == "" {
		t.Fatalf("pools %+v", pools)
	}
	resp = o.do(t, http.MethodDelete, "/v2/pools/gpu-a", nil)
	resp.Body.Close()
	apiErr(t, o.do(t, http.MethodDelete, "/v2/pools/gpu-a", nil), http.StatusNotFound, api.CodeNotFound)
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return string(data)
}

// A finished task's events leave memory after a while; replays read them
// from the store.
func TestEvictedEventsReplayFromStore(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	acc := o.submitAsync(t, taskReq("tiny", "evict me", 8, 1))
	o.waitTask(t, acc.TaskID, 30*time.Second)
	before := relayed(readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil)))
	o.tasks.expire(time.Now().Add(evictAfter + time.Second))
	o.tasks.mu.Lock()
	evicted := o.tasks.table[acc.TaskID].evicted
	o.tasks.mu.Unlock()
	if !evicted {
		t.Fatal("events not evicted")
	}
	after := relayed(readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil)))
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("replay from the store differs:\n%v\n%v", after, before)
	}
	rest := relayed(readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil, "Last-Event-ID", "3")))
	checkStream(t, rest, 3)
	if st := o.taskStatus(t, acc.TaskID); st.TokensOut != 8 || st.Text == "" {
		t.Fatalf("status after eviction %+v", st)
	}
}
