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
	"github.com/llorch/llorch/core/testkit"
	"github.com/llorch/llorch/core/workerclient"
)

func TestSubmitStreamAndStatus(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 2)

	evs := o.submitStream(t, newTask("tiny", "Hello there", 12, 7), "X-Correlation-Id", "corr-123")
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

	req := newTask("tiny", "The quick brown fox", 24, 42)
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

	acc := o.submitAsync(t, newTask("tiny", "async please", 16, 3))
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
		e := apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", newTask("nope", "hi", 4, 1)), http.StatusNotFound, api.CodeModelNotFound)
		if !strings.Contains(e.Message, "nope") {
			t.Fatalf("message %q", e.Message)
		}
	})
	t.Run("bad priority and fields", func(t *testing.T) {
		req := newTask("tiny", "hi", 0, 1)
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
		req := newTask("tiny", "hi", 4, 1)
		req.Placement = &api.Placement{PinWorker: "ghost"}
		apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", req), http.StatusNotFound, api.CodeWorkerNotFound)
	})
	t.Run("unmeetable deadline", func(t *testing.T) {
		// Occupy the only slot, then ask for a start within 1 ms behind a queue.
		long := o.submitAsync(t, newTask("tiny", "long", 2000, 1))
		defer o.Cancel(long.TaskID, "test over")
		o.submitAsync(t, newTask("tiny", "queued", 4, 1))
		o.mu.Lock()
		o.meter.Observe("tiny", 2*time.Second, time.Now())
		o.mu.Unlock()
		req := newTask("tiny", "hi", 4, 1)
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
	reg := api.WorkerRegistration{WorkerID: "gone", URL: fmt.Sprintf("http://127.0.0.1:%d", testkit.FreePort(t)), Model: api.ModelInfo{ID: "tiny"}, Slots: 1}
	decode[api.WorkerView](t, o.do(t, http.MethodPost, "/v2/workers/register", reg), http.StatusOK)
	o.mu.Lock()
	o.workers["gone"].rec.State = api.WorkerDead
	o.mu.Unlock()
	resp := o.do(t, http.MethodPost, "/v2/tasks", newTask("tiny", "hi", 4, 1))
	apiErr(t, resp, http.StatusServiceUnavailable, api.CodePoolUnavailable)
}

func TestAuth(t *testing.T) {
	cfg := testConfig()
	cfg.APIKeys = []string{"key-one", "key-two"}
	cfg.WorkerToken = "worker-secret"
	o := startOrch(t, cfg)
	startWorker(t, o, "w1", 1, "--token", "worker-secret")

	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"missing", "", http.StatusUnauthorized},
		{"wrong", "Bearer nope", http.StatusUnauthorized},
		{"worker token is not an api key", "Bearer worker-secret", http.StatusUnauthorized},
		{"second key", "Bearer key-two", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, o.URL+"/v2/workers", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	// Metrics and healthz stay open.
	for _, p := range []string{"/metrics", "/healthz"} {
		resp, err := http.Get(o.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", p, resp.StatusCode)
		}
	}
	// A task runs end to end: the orchestrator passes the worker token on.
	_, last := checkStream(t, o.submitStream(t, newTask("tiny", "secure", 4, 1)), 0)
	if last.Name != api.EventEnd {
		t.Fatalf("last %s %s", last.Name, last.Data)
	}
	if got := Fingerprint("key-one"); len(got) != 6 {
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
	blocker := o.submitAsync(t, newTask("tiny", "blocker", 3000, 1))
	waitFor(t, 30*time.Second, "blocker running", func() bool { return o.taskStatus(t, blocker.TaskID).Status == api.TaskRunning })

	var batch, inter []string
	for i := range 2 {
		r := newTask("tiny", fmt.Sprintf("batch %d", i), 2, 1)
		r.Priority = api.PriorityBatch
		batch = append(batch, o.submitAsync(t, r).TaskID)
	}
	for i := range 2 {
		acc := o.submitAsync(t, newTask("tiny", fmt.Sprintf("interactive %d", i), 2, 1))
		if acc.QueuePosition != i {
			t.Fatalf("interactive %d at position %d", i, acc.QueuePosition)
		}
		inter = append(inter, acc.TaskID)
	}
	o.Cancel(blocker.TaskID, "make room")
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
			blocker := o.submitAsync(t, newTask("tiny", "blocker", 3000, 1))
			defer o.Cancel(blocker.TaskID, "test over")
			waitFor(t, 30*time.Second, "blocker running", func() bool { return o.taskStatus(t, blocker.TaskID).Status == api.TaskRunning })
			first := newTask("tiny", "first", 2, 1)
			first.Priority = api.PriorityBatch
			firstAcc := o.submitAsync(t, first)
			second := newTask("tiny", "second", 2, 1)
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
	running := o.submitAsync(t, newTask("tiny", "run long", 3000, 1))
	queued := o.submitAsync(t, newTask("tiny", "wait", 4, 1))
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
	_, last := checkStream(t, o.submitStream(t, newTask("tiny", "after", 3, 1)), 0)
	if last.Name != api.EventEnd {
		t.Fatalf("after cancel: %s", last.Data)
	}
}

// A streaming client that goes away cancels its task.
func TestDisconnectCancels(t *testing.T) {
	o := startOrch(t, testConfig())
	startWorker(t, o, "w1", 1)
	resp := o.do(t, http.MethodPost, "/v2/tasks", newTask("tiny", "bye", 3000, 1), "Accept", "text/event-stream")
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
	busy := newTask("tiny", "busy", 3000, 1)
	busy.Placement = &api.Placement{PinWorker: "w1"}
	b := o.submitAsync(t, busy)
	pinned := newTask("tiny", "pinned", 2, 1)
	pinned.Placement = &api.Placement{PinWorker: "w1"}
	p := o.submitAsync(t, pinned)
	time.Sleep(300 * time.Millisecond)
	st := o.taskStatus(t, p.TaskID)
	if st.Status != api.TaskQueued || st.Explanation == nil || !strings.Contains(st.Explanation.Summary+fmt.Sprint(st.Explanation.Rejected), "w2") {
		t.Fatalf("pinned task %+v (explanation %+v)", st, st.Explanation)
	}
	o.Cancel(b.TaskID, "free w1")
	st = o.waitTask(t, p.TaskID, 30*time.Second)
	if st.Status != api.TaskSucceeded || st.WorkerID != "w1" {
		t.Fatalf("pinned task ran as %+v", st)
	}
	// A pool pin with no such pool for the model is refused.
	bad := newTask("tiny", "x", 2, 1)
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
	w0.kill()

	evs := o.submitStream(t, newTask("tiny", "retry me", 6, 1))
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

// A worker killed mid-stream: one retriable WORKER_LOST, nothing after it.
func TestWorkerLostMidStream(t *testing.T) {
	o := startOrch(t, testConfig())
	w := startWorker(t, o, "w1", 1)
	acc := o.submitAsync(t, newTask("tiny", "doomed", 3000, 1))
	waitFor(t, 30*time.Second, "tokens", func() bool { return o.taskStatus(t, acc.TaskID).TokensOut > 3 })
	w.kill()
	st := o.waitTask(t, acc.TaskID, 10*time.Second)
	if st.Status != api.TaskFailed || st.Error == nil || st.Error.Code != api.CodeWorkerLost || !st.Error.Retriable {
		t.Fatalf("status %+v", st)
	}
	_, last := checkStream(t, readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil)), 0)
	if last.apiError().Code != api.CodeWorkerLost {
		t.Fatalf("stream ended with %s", last.Data)
	}
}

// A worker that stops answering becomes unhealthy and gets no work; it comes
// back when its heartbeats resume.
func TestHeartbeatLoss(t *testing.T) {
	o := startOrch(t, testConfig())
	w := startWorker(t, o, "w1", 1)
	if err := w.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "w1 unhealthy", func() bool { return o.workerState("w1") == api.WorkerUnhealthy })
	acc := o.submitAsync(t, newTask("tiny", "later", 3, 1))
	time.Sleep(300 * time.Millisecond)
	if st := o.taskStatus(t, acc.TaskID); st.Status != api.TaskQueued {
		t.Fatalf("task on an unhealthy worker: %+v", st)
	}
	if err := w.cmd.Process.Signal(syscall.SIGCONT); err != nil {
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
	acc := o.submitAsync(t, newTask("tiny", "not on a draining worker", 2, 1))
	time.Sleep(300 * time.Millisecond)
	if st := o.taskStatus(t, acc.TaskID); st.Status != api.TaskQueued {
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
	decode[api.Pool](t, o.do(t, http.MethodPost, "/v2/pools", pool), http.StatusOK)
	apiErr(t, o.do(t, http.MethodPost, "/v2/pools", api.Pool{Name: "x"}), http.StatusBadRequest, api.CodeInvalidRequest)
	pools := decode[struct{ Pools []api.Pool }](t, o.do(t, http.MethodGet, "/v2/pools", nil), http.StatusOK)
	if len(pools.Pools) != 1 || pools.Pools[0].LlorchPath != "llorch" {
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
	acc := o.submitAsync(t, newTask("tiny", "evict me", 8, 1))
	o.waitTask(t, acc.TaskID, 30*time.Second)
	before := relayed(readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil)))
	o.expire(time.Now().Add(evictAfter + time.Second))
	o.mu.Lock()
	evicted := o.tasks[acc.TaskID].evicted
	o.mu.Unlock()
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
