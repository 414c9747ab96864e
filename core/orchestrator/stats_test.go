package orchestrator

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/routing"
	"github.com/llorch/llorch/core/sse"
	"github.com/llorch/llorch/core/store"
)

// fakeOrch is an orchestrator serving HTTP on loopback over a fake fleet
// (fake_test.go): real HTTP and parts, workers that answer as a test says.
type fakeOrch struct {
	*orch
	fleet *fakeFleet
	stop  func() // stops Serve and waits for it
	done  <-chan struct{}
}

// startFakeOrch serves an orchestrator over a fake fleet. With manual
// stats its loop takes no sample: the test calls stats.take.
func startFakeOrch(tb testing.TB, cfg Config, manual bool, edit ...func(*Deps)) *fakeOrch {
	tb.Helper()
	st, err := store.OpenOrchestrator(filepath.Join(tb.TempDir(), "orchestrator.db"), time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	fleet := newFakeFleet()
	deps := Deps{Store: st, connect: fleet.connect, Log: testLogger(tb), manualStats: manual}
	if _, ok := tb.(*testing.B); ok {
		deps.Log = nil
	}
	for _, e := range edit {
		e(&deps)
	}
	srv, err := New(cfg, deps)
	if err != nil {
		st.Close()
		tb.Fatal(err)
	}
	o, stop, done := serve(tb, srv, st)
	return &fakeOrch{orch: o, fleet: fleet, stop: stop, done: done}
}

// addWorker registers a fake worker serving model.
func (f *fakeOrch) addWorker(id, model string, slots int) *fakeWorker {
	w := f.fleet.add("http://" + id + ".test:1")
	f.reg.register(api.WorkerRegistration{WorkerID: id, URL: w.url, Model: api.ModelInfo{ID: model, Ctx: 4096}, Slots: slots})
	return w
}

// submit posts a task (async) and returns its id.
func (f *fakeOrch) submit(t *testing.T, req *api.TaskRequest) string {
	t.Helper()
	return f.submitAsync(t, req).TaskID
}

// pinnedTo is a task for model with n tokens that only worker may run.
func pinnedTo(model, worker string, n int) *api.TaskRequest {
	return &api.TaskRequest{Model: model, Placement: &api.Placement{PinWorker: worker},
		ExecuteRequest: api.ExecuteRequest{Prompt: "p", MaxTokens: &n}}
}

// failWith streams started, then a final (not retriable) error.
func failWith(code string) func(context.Context, *api.ExecuteRequest) (eventStream, error) {
	return func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		return &fakeStream{ctx: ctx, evs: []api.Event{{Name: api.EventStarted, Started: &api.Started{JobID: req.JobID}},
			{Name: api.EventError, Error: &api.Error{Code: code, Message: "fake " + code}}}}, nil
	}
}

// getStats is GET /v2/stats with a query.
func (f *fakeOrch) getStats(t *testing.T, query string) api.Stats {
	t.Helper()
	return decode[api.Stats](t, f.do(t, http.MethodGet, "/v2/stats"+query, nil), http.StatusOK)
}

func isNaN(s api.Series) []bool {
	out := make([]bool, len(s))
	for i, v := range s {
		out[i] = math.IsNaN(v)
	}
	return out
}

// TestStatsFigures drives known traffic through the orchestrator and reads
// each figure of the samples back, from the ring and from GET /v2/stats.
func TestStatsFigures(t *testing.T) {
	cfg := testConfig()
	f := startFakeOrch(t, cfg, true)
	w1 := f.addWorker("w1", "m", 1)
	f.addWorker("w2", "m", 1)
	f.addWorker("e1", "other", 1)
	t0 := time.Now()
	s0 := f.stats.take(t0) // what came before: the registrations
	if s0.WorkersSeq == 0 || s0.TokensPerSecond != 0 || s0.TTFTP50Ms != nil {
		t.Fatalf("first sample: %+v", s0)
	}

	// Interval 1: 5 tokens on w1, 3 on w2 (both succeed), one cancelled
	// before its first token, one failed, one rejected at the door.
	a := f.submit(t, pinnedTo("m", "w1", 5))
	b := f.submit(t, pinnedTo("m", "w2", 3))
	f.waitTask(t, a, 10*time.Second)
	f.waitTask(t, b, 10*time.Second)
	w1.set(hang)
	c := f.submit(t, pinnedTo("m", "w1", 5))
	waitFor(t, 10*time.Second, "task c running", func() bool { return f.taskStatus(t, c).Status == api.TaskRunning })
	f.cancelTask(c)
	f.waitTask(t, c, 10*time.Second)
	w1.set(failWith(api.CodeInternal))
	d := f.submit(t, pinnedTo("m", "w1", 5))
	if st := f.waitTask(t, d, 10*time.Second); st.Status != api.TaskFailed {
		t.Fatalf("task d: %+v", st)
	}
	apiErr(t, f.do(t, http.MethodPost, "/v2/tasks", taskReq("no-such-model", "p", 1, 1)), http.StatusNotFound, api.CodeModelNotFound)
	s1 := f.stats.take(t0.Add(time.Second))
	if s1.TokensPerSecond != 8 || s1.Workers["w1"] != 5 || s1.Workers["w2"] != 3 || len(s1.Workers) != 2 {
		t.Errorf("tokens: %v/s, workers %v; want 8/s, w1 5, w2 3", s1.TokensPerSecond, s1.Workers)
	}
	if s1.OK != 2 || s1.Cancelled != 1 || s1.Failed != 1 || s1.Rejected != 1 {
		t.Errorf("outcomes ok %d cancelled %d failed %d rejected %d; want 2 1 1 1", s1.OK, s1.Cancelled, s1.Failed, s1.Rejected)
	}
	if s1.TTFTP50Ms == nil || s1.TTFTP95Ms == nil || *s1.TTFTP50Ms <= 0 || *s1.TTFTP95Ms < *s1.TTFTP50Ms {
		t.Errorf("ttft p50 %v p95 %v: two first tokens came", s1.TTFTP50Ms, s1.TTFTP95Ms)
	}
	if s1.TasksSeq <= s0.TasksSeq || s1.WorkersSeq != s0.WorkersSeq || s1.Running != 0 || s1.QueuedInteractive+s1.QueuedBatch != 0 {
		t.Errorf("seqs %d→%d, %d→%d; running %d queued %d+%d", s0.TasksSeq, s1.TasksSeq, s0.WorkersSeq, s1.WorkersSeq,
			s1.Running, s1.QueuedInteractive, s1.QueuedBatch)
	}

	// Interval 2: one task runs on w1 (no token), one interactive and one
	// batch task wait for it; w2 is drained.
	w1.set(hang)
	e := f.submit(t, pinnedTo("m", "w1", 5))
	waitFor(t, 10*time.Second, "task e running", func() bool { return f.taskStatus(t, e).Status == api.TaskRunning })
	g := f.submit(t, pinnedTo("m", "w1", 5))
	batch := pinnedTo("m", "w1", 5)
	batch.Priority = api.PriorityBatch
	h := f.submit(t, batch)
	f.waitExplained(t, h, "")
	decode[api.WorkerView](t, f.do(t, http.MethodPost, "/v2/workers/w2/drain", nil), http.StatusAccepted)
	s2 := f.stats.take(t0.Add(2 * time.Second))
	if s2.TokensPerSecond != 0 || s2.Workers != nil || s2.TTFTP50Ms != nil || s2.OK+s2.Cancelled+s2.Failed+s2.Rejected != 0 {
		t.Errorf("an interval without tokens or ends: %+v", s2)
	}
	if s2.Running != 1 || s2.QueuedInteractive != 1 || s2.QueuedBatch != 1 || s2.WorkersSeq == s1.WorkersSeq || s2.TasksSeq == s1.TasksSeq {
		t.Errorf("running %d, queued %d+%d, seqs %d %d", s2.Running, s2.QueuedInteractive, s2.QueuedBatch, s2.TasksSeq, s2.WorkersSeq)
	}
	want := []api.ModelLoad{{Model: "m", QueuedInteractive: 1, QueuedBatch: 1, Running: 1, Workers: 2}, {Model: "other", Workers: 1}}
	if fmt.Sprint(s2.Models) != fmt.Sprint(want) {
		t.Errorf("models %+v, want %+v", s2.Models, want)
	}

	// Interval 3: w2 goes.
	apiResp := f.do(t, http.MethodDelete, "/v2/workers/w2", nil)
	apiResp.Body.Close()
	s3 := f.stats.take(t0.Add(3 * time.Second))
	if s3.WorkersSeq == s2.WorkersSeq || s3.Models[0].Workers != 1 {
		t.Errorf("after w2 went: workers seq %d→%d, models %+v", s2.WorkersSeq, s3.WorkersSeq, s3.Models)
	}

	// The same through GET /v2/stats, oldest first.
	all := f.getStats(t, "?window=15m&workers=10")
	if all.IntervalMs != 1000 || all.WindowMs != 15*60*1000 || len(all.T) != 4 || all.T[0] != t0.UnixMilli() || all.T[3] != s3.T {
		t.Fatalf("interval %d window %d times %v", all.IntervalMs, all.WindowMs, all.T)
	}
	if fmt.Sprint(all.TokensPerSecond) != "[0 8 0 0]" || fmt.Sprint(all.OK) != "[0 2 0 0]" || fmt.Sprint(all.Rejected) != "[0 1 0 0]" ||
		fmt.Sprint(all.Cancelled) != "[0 1 0 0]" || fmt.Sprint(all.Failed) != "[0 1 0 0]" || fmt.Sprint(all.Running) != "[0 0 1 1]" ||
		fmt.Sprint(all.QueuedInteractive) != "[0 0 1 1]" || fmt.Sprint(all.QueuedBatch) != "[0 0 1 1]" {
		t.Errorf("columns: %+v", all)
	}
	if fmt.Sprint(isNaN(all.TTFTP50Ms)) != "[true false true true]" || fmt.Sprint(isNaN(all.TTFTP95Ms)) != "[true false true true]" {
		t.Errorf("ttft columns %v %v: a value only where first tokens came", all.TTFTP50Ms, all.TTFTP95Ms)
	}
	if len(all.Workers) != 2 || all.Workers[0].WorkerID != "w1" || fmt.Sprint(all.Workers[0].TokensPerSecond) != "[0 5 0 0]" ||
		all.Workers[1].WorkerID != "w2" || fmt.Sprint(all.Workers[1].TokensPerSecond) != "[0 3 0 0]" {
		t.Errorf("worker series %+v", all.Workers)
	}
	if all.Last == nil || all.Last.T != s3.T || all.Last.WorkersSeq != s3.WorkersSeq || len(all.Last.Models) != 2 {
		t.Errorf("last %+v, want the newest sample", all.Last)
	}
	if one := f.getStats(t, "?window=1s&workers=1"); len(one.T) != 1 || one.T[0] != s3.T || len(one.Workers) != 0 {
		t.Errorf("1s window: %+v", one)
	}
	if top := f.getStats(t, "?workers=1"); len(top.T) != 4 || len(top.Workers) != 1 || top.Workers[0].WorkerID != "w1" {
		t.Errorf("top worker: %+v", top.Workers)
	}
	for _, id := range []string{e, g, h} {
		f.cancelTask(id)
	}
}

func TestStatsParameters(t *testing.T) {
	f := startFakeOrch(t, testConfig(), true)
	for _, q := range []string{"?window=0s", "?window=999ms", "?window=16m", "?window=15", "?window=-1m", "?window=abc",
		"?workers=-1", "?workers=1001", "?workers=x", "?workers=1.5"} {
		e := apiErr(t, f.do(t, http.MethodGet, "/v2/stats"+q, nil), http.StatusBadRequest, api.CodeInvalidRequest)
		if len(e.Fields) != 1 || !strings.Contains(q, e.Fields[0].Field) || e.Fields[0].Message == "" {
			t.Errorf("%s: %+v", q, e)
		}
	}
	apiErr(t, f.do(t, http.MethodGet, "/v2/stats/stream?workers=1001", nil), http.StatusBadRequest, api.CodeInvalidRequest)
	apiErr(t, f.do(t, http.MethodGet, "/v2/stats/stream", nil, "Last-Event-ID", "x"), http.StatusBadRequest, api.CodeInvalidRequest)
	// Before the first sample: empty columns, no last.
	resp := f.do(t, http.MethodGet, "/v2/stats?window=1s&workers=0", nil)
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), `"t":[]`) || !strings.Contains(string(data), `"workers":[]`) ||
		strings.Contains(string(data), `"last"`) {
		t.Errorf("empty ring: %d %s", resp.StatusCode, data)
	}
	if _, err := New(Config{StatsInterval: 2 * time.Minute}, Deps{Store: f.store}); err == nil || !strings.Contains(err.Error(), "stats interval") {
		t.Errorf("a 2m interval: %v", err)
	}
	if _, err := New(Config{StatsInterval: -time.Second}, Deps{Store: f.store}); err == nil {
		t.Error("a negative interval was accepted")
	}
}

// sample is a sample at second i with the given per-worker rates.
func sample(t0 time.Time, i int, workers map[string]float64) *api.StatsSample {
	s := &api.StatsSample{T: t0.Add(time.Duration(i) * time.Second).UnixMilli(), OK: i, Workers: workers}
	for _, v := range workers {
		s.TokensPerSecond += v
	}
	return s
}

// TestStatsRingWraps: the ring keeps the last 15 minutes, windows slice its
// newest samples, and a worker's series goes once its last value is out.
func TestStatsRingWraps(t *testing.T) {
	st := newRing(time.Second)
	if st.size != 900 {
		t.Fatalf("size %d, want 900", st.size)
	}
	t0 := time.Unix(1_700_000_000, 0)
	st.push(sample(t0, 0, map[string]float64{"gone": 7, "b": 1}))
	for i := 1; i < 1000; i++ {
		w := map[string]float64{"a": 2}
		if i == 950 {
			w["b"] = 1
		}
		st.push(sample(t0, i, w))
	}
	all := st.window(15*time.Minute, 10)
	if len(all.T) != 900 || all.T[0] != sample(t0, 100, nil).T || all.T[899] != sample(t0, 999, nil).T || all.OK[0] != 100 || all.OK[899] != 999 {
		t.Fatalf("15m: %d samples from %d to %d", len(all.T), all.T[0], all.T[len(all.T)-1])
	}
	if len(all.Workers) != 2 || all.Workers[0].WorkerID != "a" || all.Workers[1].WorkerID != "b" || all.Workers[1].TokensPerSecond[850] != 1 {
		t.Errorf("workers %v", all.Workers)
	}
	if _, ok := st.workers["gone"]; ok {
		t.Error("a worker with no value left in the ring is still kept")
	}
	last := st.window(10*time.Second, 10)
	if len(last.T) != 10 || last.T[0] != sample(t0, 990, nil).T || len(last.Workers) != 1 || last.Workers[0].WorkerID != "a" {
		t.Errorf("10s: %d samples from %d, workers %v", len(last.T), last.T[0], last.Workers)
	}
	if last.Last == nil || last.Last.OK != 999 || last.Last.Workers["a"] != 2 {
		t.Errorf("last: %+v", last.Last)
	}
	for i := 1000; i < 1900; i++ { // b's last value goes out too
		st.push(sample(t0, i, nil))
	}
	if len(st.workers) != 0 || len(st.free) != 3 {
		t.Errorf("after 15 quiet minutes: %d worker rings kept, %d free", len(st.workers), len(st.free))
	}
	st.push(sample(t0, 1900, map[string]float64{"c": 3}))
	if len(st.free) != 2 || st.window(time.Second, 1).Workers[0].TokensPerSecond[0] != 3 {
		t.Error("a new worker does not reuse a released ring")
	}
}

func TestBusiest(t *testing.T) {
	s := &api.StatsSample{T: 1, Workers: map[string]float64{"a": 1, "b": 3, "c": 3, "d": 2}}
	if got := busiest(s, 2).Workers; len(got) != 2 || got["b"] != 3 || got["c"] != 3 {
		t.Errorf("top 2: %v", got)
	}
	if got := busiest(s, 0); got.Workers != nil || got.T != 1 {
		t.Errorf("top 0: %+v", got)
	}
	if got := busiest(s, 10).Workers; len(got) != 4 || len(s.Workers) != 4 {
		t.Errorf("top 10: %v (sample %v)", got, s.Workers)
	}
	if p := percentile([]float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.95); p != 10 {
		t.Errorf("p95 of 1..10: %v", p)
	}
	if p := percentile([]float64{1, 2, 3, 4}, 0.5); p != 2 {
		t.Errorf("p50 of 1..4: %v", p)
	}
}

// TestStatsTTFTBounded: an interval with more first tokens than it keeps
// still has percentiles over a sample of them.
func TestStatsTTFTBounded(t *testing.T) {
	ts := newTasks(&Config{}, testLogger(t), nil, newMetrics())
	ts.mu.Lock()
	for i := range 3 * maxTTFTPerSample {
		ts.countFirstLocked(time.Duration(i%100) * time.Millisecond)
	}
	a := ts.acc
	ts.mu.Unlock()
	if len(a.ttft) != maxTTFTPerSample || a.firsts != 3*maxTTFTPerSample {
		t.Errorf("%d kept of %d", len(a.ttft), a.firsts)
	}
}

// openStream opens GET /v2/stats/stream (as the admin key, when there is
// one).
func (f *fakeOrch) openStream(t *testing.T, query string, hdr ...string) *http.Response {
	t.Helper()
	return f.do(t, http.MethodGet, "/v2/stats/stream"+query, nil, hdr...)
}

// nextSample reads the next sample event of a stream.
func nextSample(t *testing.T, r *sse.Reader) (string, api.StatsSample) {
	t.Helper()
	ev, err := r.Next()
	if err != nil {
		t.Fatalf("reading the stats stream: %v", err)
	}
	var s api.StatsSample
	if ev.Event != "sample" || json.Unmarshal(ev.Data, &s) != nil {
		t.Fatalf("event %q: %s", ev.Event, ev.Data)
	}
	return ev.ID, s
}

func TestStatsStream(t *testing.T) {
	cfg := testConfig()
	cfg.KeepAlive = 50 * time.Millisecond
	f := startFakeOrch(t, cfg, true)
	resp := f.openStream(t, "?workers=1")
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" ||
		resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	t0 := time.Now()
	f.stats.tasks.mu.Lock()
	f.stats.tasks.acc.byWorker["w1"], f.stats.tasks.acc.byWorker["w2"] = 4, 2
	f.stats.tasks.mu.Unlock()
	s1 := f.stats.take(t0)
	r := sse.NewReader(resp.Body)
	id, got := nextSample(t, r)
	if id != strconv.FormatInt(s1.T, 10) || got.T != s1.T || got.TokensPerSecond != 6 || len(got.Workers) != 1 || got.Workers["w1"] != 4 {
		t.Errorf("first event id %s: %+v, want %+v cut to the busiest worker", id, got, s1)
	}
	s2 := f.stats.take(t0.Add(time.Second))
	if id, got := nextSample(t, r); id != strconv.FormatInt(s2.T, 10) || got.Workers != nil {
		t.Errorf("second event id %s: %+v", id, got)
	}
	if len(s1.Workers) != 2 {
		t.Errorf("the ring's sample was changed by a subscriber's cut: %v", s1.Workers)
	}
	// A client resuming after s1 gets s2 at once.
	again := f.openStream(t, "", "Last-Event-ID", strconv.FormatInt(s1.T, 10))
	defer again.Body.Close()
	if id, _ := nextSample(t, sse.NewReader(again.Body)); id != strconv.FormatInt(s2.T, 10) {
		t.Errorf("resumed after %d: got %s, want %d", s1.T, id, s2.T)
	}
	// Quiet: a ping comment, no event.
	quiet := f.openStream(t, "")
	defer quiet.Body.Close()
	line, err := bufio.NewReader(quiet.Body).ReadString('\n')
	if err != nil || line != ": ping\n" {
		t.Errorf("quiet stream: %q %v", line, err)
	}
}

// TestStatsStreamSubscribers: the streams are bounded; a slow reader does
// not hold the sampler; an open stream does not hold up the server's stop.
func TestStatsStreamSubscribers(t *testing.T) {
	f := startFakeOrch(t, testConfig(), true)
	var open []*http.Response
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	for range maxStatsSubscribers {
		resp := f.openStream(t, "?workers=1000")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: %d", len(open)+1, resp.StatusCode)
		}
		open = append(open, resp)
	}
	e := apiErr(t, f.openStream(t, ""), http.StatusServiceUnavailable, api.CodeUnavailable)
	if !strings.Contains(e.Message, "too many open stats streams") {
		t.Errorf("message %q", e.Message)
	}
	// Nobody reads: samples (of 500 workers each) are taken all the same,
	// more than the connections' buffers hold.
	t0 := time.Now()
	for i := range 300 {
		f.stats.tasks.mu.Lock()
		for k := range 500 {
			f.stats.tasks.acc.byWorker[fmt.Sprintf("worker-%03d", k)] = k + 1
		}
		f.stats.tasks.mu.Unlock()
		f.stats.take(t0.Add(time.Duration(i) * time.Second))
	}
	open[0].Body.Close()
	open = open[1:]
	waitFor(t, 5*time.Second, "a stream to close", func() bool { return f.stats.subs.Load() < maxStatsSubscribers })
	resp := f.openStream(t, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after one closed: %d", resp.StatusCode)
	}
	open = append(open, resp)
	stopped := make(chan struct{})
	go func() { f.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(4 * time.Second): // Serve's shutdown gives streams 5s before it closes them
		t.Fatal("Serve did not stop promptly with stats streams open")
	}
	if n := f.stats.subs.Load(); n != 0 {
		t.Errorf("%d streams still subscribed after the stop", n)
	}
}

// TestStatsLoop: the loop samples on its own, and stops with Serve.
func TestStatsLoop(t *testing.T) {
	cfg := testConfig()
	cfg.StatsInterval = 10 * time.Millisecond
	before := runtime.NumGoroutine()
	f := startFakeOrch(t, cfg, false)
	resp := f.openStream(t, "")
	r := sse.NewReader(resp.Body)
	_, a := nextSample(t, r)
	_, b := nextSample(t, r)
	if b.T <= a.T {
		t.Errorf("samples at %d then %d", a.T, b.T)
	}
	resp.Body.Close()
	f.stop()
	if n := f.stats.subs.Load(); n != 0 {
		t.Errorf("%d subscribers after the stop", n)
	}
	// The server's goroutines are gone (idle client connections aside).
	http.DefaultClient.CloseIdleConnections()
	waitFor(t, 5*time.Second, "the server's goroutines to end", func() bool { return runtime.NumGoroutine() <= before+2 })
}

func TestMetaAuth(t *testing.T) {
	for _, keys := range []bool{false, true} {
		t.Run(fmt.Sprint("keys=", keys), func(t *testing.T) {
			cfg := testConfig()
			if keys {
				cfg.Keys = []Key{{Secret: "admin-key-0001", Role: RoleAdmin}, {Secret: "user-key-00001", Role: RoleUser}}
			}
			f := startFakeOrch(t, cfg, true)
			f.key = "" // no key at all
			if got := decode[api.AuthInfo](t, f.do(t, http.MethodGet, "/v2/meta/auth", nil), http.StatusOK); got.KeysRequired != keys {
				t.Errorf("keys_required %v, want %v", got.KeysRequired, keys)
			}
			if !keys {
				return
			}
			apiErr(t, f.do(t, http.MethodGet, "/v2/stats", nil), http.StatusUnauthorized, api.CodeUnauthorized)
			apiErr(t, f.do(t, http.MethodGet, "/v2/stats/stream", nil), http.StatusUnauthorized, api.CodeUnauthorized)
			apiErr(t, f.do(t, http.MethodPost, "/v2/routing/check", "decision = undefined"), http.StatusUnauthorized, api.CodeUnauthorized)
			f.key = "user-key-00001"
			apiErr(t, f.do(t, http.MethodGet, "/v2/stats", nil), http.StatusForbidden, api.CodeForbidden)
			apiErr(t, f.do(t, http.MethodPost, "/v2/routing/check", "decision = undefined"), http.StatusForbidden, api.CodeForbidden)
			f.key = "admin-key-0001"
			decode[api.Stats](t, f.do(t, http.MethodGet, "/v2/stats", nil), http.StatusOK)
		})
	}
}

func TestListTasksFilters(t *testing.T) {
	f := startFakeOrch(t, testConfig(), true)
	f.addWorker("w1", "m", 2)
	f.addWorker("w2", "m2", 2)
	var ids []string
	for _, tc := range []struct{ model, worker string }{{"m", "w1"}, {"m2", "w2"}, {"m", "w1"}, {"m2", "w2"}, {"m", "w1"}} {
		id := f.submit(t, pinnedTo(tc.model, tc.worker, 2))
		f.waitTask(t, id, 10*time.Second)
		ids = append(ids, id)
	}
	list := func(q string) []string {
		t.Helper()
		got := decode[struct{ Tasks []api.TaskStatus }](t, f.do(t, http.MethodGet, "/v2/tasks"+q, nil), http.StatusOK)
		var out []string
		for _, st := range got.Tasks {
			out = append(out, st.TaskID)
		}
		return out
	}
	for _, tc := range []struct {
		q    string
		want []string
	}{
		{"", ids},
		{"?model=m2", []string{ids[1], ids[3]}},
		{"?worker=w1", []string{ids[0], ids[2], ids[4]}},
		{"?worker=w1&limit=2", []string{ids[2], ids[4]}},
		{"?limit=1", []string{ids[4]}},
		{"?model=m&worker=w2", nil},
		{"?status=succeeded&model=m2&limit=1000", []string{ids[1], ids[3]}},
		{"?status=running", nil},
	} {
		if got := list(tc.q); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: %v, want %v", tc.q, got, tc.want)
		}
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=x", "?limit=-1", "?status=done"} {
		apiErr(t, f.do(t, http.MethodGet, "/v2/tasks"+q, nil), http.StatusBadRequest, api.CodeInvalidRequest)
	}
}

func TestRoutingCheck(t *testing.T) {
	cfg := testConfig()
	f := startFakeOrch(t, cfg, true, func(d *Deps) {
		argv := routing.TrialCommand(kit.Bin, routing.Config{})
		d.TrialScript = func(ctx context.Context, name string, src []byte) error { return routing.Trial(ctx, argv, name, src) }
	})
	f.addWorker("w1", "m", 1).set(hang)
	running := f.submit(t, fakeReq(3))
	queued := f.submit(t, fakeReq(3))
	f.waitExplained(t, queued, "")
	defer f.cancelTask(running)
	defer f.cancelTask(queued)
	good, err := os.ReadFile("../../embed/routing/default.tengo")
	if err != nil {
		t.Fatal(err)
	}
	check := func(src string) api.RoutingCheck {
		t.Helper()
		return decode[api.RoutingCheck](t, f.do(t, http.MethodPost, "/v2/routing/check", src), http.StatusOK)
	}
	got := check(string(good))
	if !got.OK || got.Error != "" || !strings.HasPrefix(got.Check, "check api.tengo: compiled") ||
		!strings.Contains(got.Replay, "1 tasks, 1 workers") || !strings.Contains(got.Replay, queued+" place ") {
		t.Errorf("the default script: %+v", got)
	}
	got = check("decision = {\n  action: admit}")
	if got.OK || !strings.Contains(got.Error, "api.tengo:2:11: unresolved reference 'admit'") || got.Check != "" {
		t.Errorf("a syntax error: %+v", got)
	}
	got = check("for {}")
	if got.OK || !strings.Contains(got.Error, "failed its trial") || !strings.Contains(got.Error, "timeout") {
		t.Errorf("a looping script: %+v", got)
	}
	apiErr(t, f.do(t, http.MethodGet, "/v2/routing/script", nil), http.StatusNotFound, api.CodeNotFound) // nothing was loaded
	apiErr(t, f.do(t, http.MethodPost, "/v2/routing/check", strings.Repeat(" ", routing.MaxSourceBytes+1)),
		http.StatusRequestEntityTooLarge, api.CodeBodyTooLarge)
}

// BenchmarkStatsRing1000Workers fills the ring (15 minutes at 1s) with
// samples of 1,000 workers that all relayed tokens, and reports the heap it
// retains (ring_MB), the time of one sample (sample: the swap, the parts'
// gauges, the ring's columns and 1,000 worker rings) and of serving GET
// /v2/stats?window=15m&workers=10 (window: the columns, the top 10 workers
// and the JSON).
func BenchmarkStatsRing1000Workers(b *testing.B) {
	f := startFakeOrch(b, Config{}, true)
	st := f.stats
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("worker-%04d", i)
	}
	fill := func() {
		st.tasks.mu.Lock()
		for i, id := range ids {
			st.tasks.acc.byWorker[id] = i + 1
		}
		st.tasks.mu.Unlock()
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	before := heap()
	t0 := time.Now()
	n := 0
	take := func() {
		st.take(t0.Add(time.Duration(n) * time.Second))
		n++
	}
	for range st.size {
		fill()
		take()
	}
	ringMB := float64(heap()-before) / 1e6
	if len(st.workers) != len(ids) {
		b.Fatalf("%d worker rings, want %d", len(st.workers), len(ids))
	}
	b.Run("sample", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			fill()
			b.StartTimer()
			take()
		}
		b.ReportMetric(ringMB, "ring_MB")
	})
	b.Run("window", func(b *testing.B) {
		for b.Loop() {
			s := st.window(15*time.Minute, 10)
			if _, err := json.Marshal(s); err != nil || len(s.T) != st.size || len(s.Workers) != 10 {
				b.Fatal(err)
			}
		}
	})
}
