package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/workerclient"
)

// A fake fleet for the parts' tests: workers are Go values that answer as a
// test tells them, reached through the same workerAPI the HTTP client
// implements. No HTTP server is involved.

// fakeFleet maps URLs to fake workers.
type fakeFleet struct {
	mu      sync.Mutex
	workers map[string]*fakeWorker
}

func newFakeFleet() *fakeFleet { return &fakeFleet{workers: map[string]*fakeWorker{}} }

// add makes a fake worker at url that streams n tokens per job unless told
// otherwise.
func (f *fakeFleet) add(url string) *fakeWorker {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := &fakeWorker{url: url, healthy: true}
	f.workers[url] = w
	return w
}

func (f *fakeFleet) connect(url string) workerAPI {
	f.mu.Lock()
	defer f.mu.Unlock()
	if w, ok := f.workers[url]; ok {
		return w
	}
	return &fakeWorker{url: url} // nobody there: every call fails
}

// fakeWorker answers jobs with what answer returns (default: stream the
// job's max_tokens tokens, each "t<i>" with id 100+i, then end).
type fakeWorker struct {
	url string

	mu      sync.Mutex
	healthy bool
	answer  func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error)
	jobs    []api.ExecuteRequest
	cancels []string
	embeds  int // POST /v1/embeddings answered
}

func (w *fakeWorker) set(answer func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.answer = answer
}

func (w *fakeWorker) setHealthy(ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.healthy = ok
}

func (w *fakeWorker) received() []api.ExecuteRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]api.ExecuteRequest(nil), w.jobs...)
}

func (w *fakeWorker) ExecuteWatched(ctx context.Context, req *api.ExecuteRequest, idle time.Duration) (eventStream, error) {
	w.mu.Lock()
	w.jobs = append(w.jobs, *req)
	answer := w.answer
	w.mu.Unlock()
	if answer == nil {
		answer = streamTokens(-1)
	}
	return answer(ctx, req)
}

func (w *fakeWorker) Cancel(_ context.Context, job string) (*api.CancelResponse, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cancels = append(w.cancels, job)
	return &api.CancelResponse{JobID: job, Found: true}, nil
}

func (w *fakeWorker) Health(ctx context.Context) (*api.Health, error) {
	w.mu.Lock()
	ok := w.healthy
	w.mu.Unlock()
	if !ok {
		<-ctx.Done() // a hung worker
		return nil, ctx.Err()
	}
	return &api.Health{Status: api.StatusReady}, nil
}

var _ embedAPI = (*fakeWorker)(nil)

// Embeddings answers as an embedding worker does: one unit vector per
// input, in OpenAI's shape.
func (w *fakeWorker) Embeddings(_ context.Context, body []byte) (*workerclient.Answer, error) {
	var req struct {
		Model string            `json:"model"`
		Input []json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	w.mu.Lock()
	w.embeds++
	w.mu.Unlock()
	data := make([]map[string]any, len(req.Input))
	for i := range data {
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": []float32{0, 1}}
	}
	out, _ := json.Marshal(map[string]any{"object": "list", "model": req.Model, "data": data,
		"usage": map[string]int{"prompt_tokens": len(req.Input), "total_tokens": len(req.Input)}})
	return &workerclient.Answer{Status: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}}, Body: out}, nil
}

func (w *fakeWorker) embedded() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.embeds
}

// refuse answers every job with an HTTP status and error code.
func refuse(status int, code string) func(context.Context, *api.ExecuteRequest) (eventStream, error) {
	return func(context.Context, *api.ExecuteRequest) (eventStream, error) {
		return nil, &workerclient.StatusError{Status: status, Err: &api.Error{Code: code, Message: "fake " + code, Retriable: status >= 500}}
	}
}

// streamTokens streams a job's remaining tokens (from len(resume_tokens) to
// max_tokens, or to stopAfter when it is not -1: then the stream breaks).
func streamTokens(stopAfter int) func(context.Context, *api.ExecuteRequest) (eventStream, error) {
	return func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		n := api.DefaultMaxTokens
		if req.MaxTokens != nil {
			n = *req.MaxTokens
		}
		var evs []api.Event
		evs = append(evs, api.Event{Name: api.EventStarted, Started: &api.Started{JobID: req.JobID, Model: "fake", ResumedTokens: len(req.ResumeTokens), MaxTokens: n}})
		for i := len(req.ResumeTokens); i < n; i++ {
			if stopAfter >= 0 && i >= stopAfter {
				return &fakeStream{ctx: ctx, evs: evs, err: io.ErrUnexpectedEOF}, nil
			}
			evs = append(evs, api.Event{Name: api.EventToken, Token: &api.Token{T: fmt.Sprintf("t%d ", i), I: i, ID: int32(100 + i)}})
		}
		evs = append(evs, api.Event{Name: api.EventEnd, End: &api.End{TokensOut: n, StopReason: api.StopMaxTokens}})
		return &fakeStream{ctx: ctx, evs: evs}, nil
	}
}

// hang streams started and then nothing until the attempt is abandoned.
func hang(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
	return &fakeStream{ctx: ctx, evs: []api.Event{{Name: api.EventStarted, Started: &api.Started{JobID: req.JobID}}}, block: true}, nil
}

// fakeStream returns its events, then err (io.EOF after a terminal event),
// or blocks until ctx ends.
type fakeStream struct {
	ctx   context.Context
	evs   []api.Event
	err   error
	block bool
}

func (s *fakeStream) Next() (api.Event, error) {
	if err := s.ctx.Err(); err != nil {
		return api.Event{}, err
	}
	if len(s.evs) > 0 {
		ev := s.evs[0]
		s.evs = s.evs[1:]
		return ev, nil
	}
	if s.block {
		<-s.ctx.Done()
		return api.Event{}, s.ctx.Err()
	}
	if s.err != nil {
		return api.Event{}, s.err
	}
	return api.Event{}, io.EOF
}

func (s *fakeStream) Close() error { return nil }

// parts is a Server built without HTTP: its parts and loops run, and tests
// call them directly.
type parts struct {
	*Server
	fleet     *fakeFleet
	st        *store.Orchestrator
	path      string
	stopLoops context.CancelFunc
	done      chan struct{}
}

// startParts builds a server over a fake fleet on a bbolt file in dir ("" = a
// new one) and runs its loops (no HTTP).
func startParts(t *testing.T, cfg Config, fleet *fakeFleet, dir string) *parts {
	t.Helper()
	return startPartsWith(t, cfg, fleet, dir, nil)
}

// startPartsWith is startParts with the pools' commands replaced by hosts.
func startPartsWith(t *testing.T, cfg Config, fleet *fakeFleet, dir string, hosts func(api.Pool) poolHost) *parts {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "orchestrator.db")
	st, err := store.OpenOrchestrator(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Deps{Store: st, connect: fleet.connect, poolHost: hosts, Log: testLogger(t)})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &parts{Server: s, fleet: fleet, st: st, path: dir, stopLoops: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	tailCtx, stopTail := context.WithCancel(context.Background())
	wg.Add(1)
	go func() { defer wg.Done(); s.tasks.tailLoop(tailCtx) }()
	for _, loop := range []func(context.Context){s.disp.loop, func(ctx context.Context) { s.reg.monitorLoop(ctx, func() {}) },
		func(ctx context.Context) { s.tasks.journalLoop(ctx, func() {}) }, s.disp.queuedLoop, s.fleet.loop} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	go func() {
		<-ctx.Done()
		stopTail()
		wg.Wait()
		close(p.done)
	}()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { p.stop() }) })
	return p
}

// stop ends the loops, writes the journal and closes the store, as a clean
// shutdown does.
func (p *parts) stop() {
	p.stopLoops()
	<-p.done
	_ = p.tasks.flush()
	p.st.Close()
}

// crash stops the loops without the final journal batch: what the tail log
// holds is all that is left of the last moments.
func (p *parts) crash() {
	p.stopLoops()
	<-p.done
	p.st.Close()
}

// addWorker registers a fake worker with slots.
func (p *parts) addWorker(t *testing.T, id string, slots int) *fakeWorker {
	t.Helper()
	w := p.fleet.add("http://" + id + ".test:1")
	p.reg.register(api.WorkerRegistration{WorkerID: id, URL: w.url, Model: api.ModelInfo{ID: "m", Ctx: 4096}, Slots: slots})
	return w
}

// submit admits a task as an admin; async tasks are journaled first.
func (p *parts) submit(t *testing.T, req *api.TaskRequest) string {
	t.Helper()
	acc, e := p.Server.submit(context.Background(), req, true)
	if e != nil {
		t.Fatalf("submit: %v", e)
	}
	return acc.TaskID
}

// state returns a task's status as the API shows it.
func (p *parts) state(id string) api.TaskStatus {
	t := p.tasks.get(id, principal{role: RoleAdmin})
	if t == nil {
		return api.TaskStatus{}
	}
	return p.tasks.status(t)
}

// wait waits until a task ends and all its events are visible (the tail
// writer shows them a moment after the status changed).
func (p *parts) wait(t *testing.T, id string) api.TaskStatus {
	t.Helper()
	var st api.TaskStatus
	waitFor(t, 20*time.Second, "task "+id+" to end", func() bool {
		st = p.state(id)
		if st.Status != api.TaskSucceeded && st.Status != api.TaskFailed && st.Status != api.TaskCancelled {
			return false
		}
		p.tasks.mu.Lock()
		defer p.tasks.mu.Unlock()
		tk := p.tasks.table[id]
		return tk == nil || tk.visible == len(tk.log)
	})
	return st
}

// events returns a task's visible events.
func (p *parts) events(id string) []api.Event {
	p.tasks.mu.Lock()
	defer p.tasks.mu.Unlock()
	t := p.tasks.table[id]
	var out []api.Event
	for _, le := range t.log[:t.visible] {
		out = append(out, le.ev)
	}
	return out
}

// fakeReq is a task for model m with n tokens.
func fakeReq(n int) *api.TaskRequest {
	return &api.TaskRequest{Model: "m", ExecuteRequest: api.ExecuteRequest{Prompt: "p", MaxTokens: &n}}
}

// checkTokens asserts a task's log holds started, tokens 0..n-1 each once
// in order, and one terminal event, last.
func checkTokens(t *testing.T, evs []api.Event, n int) {
	t.Helper()
	next, started := 0, 0
	for i, ev := range evs {
		switch {
		case ev.Started != nil:
			started++
		case ev.Token != nil:
			if ev.Token.I != next || ev.Token.ID != int32(100+next) {
				t.Fatalf("event %d: token %d (id %d), want %d", i, ev.Token.I, ev.Token.ID, next)
			}
			next++
		case ev.Terminal():
			if i != len(evs)-1 {
				t.Fatalf("terminal event %d of %d", i, len(evs))
			}
		}
	}
	if started != 1 || next != n || len(evs) == 0 || !evs[len(evs)-1].Terminal() {
		t.Fatalf("%d started, %d tokens (want %d), %d events", started, next, n, len(evs))
	}
}

// value reads a counter or gauge.
func value(m interface{ Write(*dto.Metric) error }) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		return -1
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}
