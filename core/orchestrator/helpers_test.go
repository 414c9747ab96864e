package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/synth"
	"github.com/llorch/llorch/core/testkit"
)

var kit *testkit.Kit

func TestMain(m *testing.M) { testkit.Main(m, func(k *testkit.Kit) { kit = k }) }

// orch is an in-process orchestrator on loopback.
type orch struct {
	*Server
	URL   string
	key   string
	store *store.Orchestrator
}

func testConfig() Config {
	return Config{
		HeartbeatTimeout: 2 * time.Second, MonitorInterval: 100 * time.Millisecond, ProbeTimeout: 500 * time.Millisecond,
		DeadAfter: 3 * time.Second, RetryBackoff: 20 * time.Millisecond, QueuedInterval: 100 * time.Millisecond,
		JournalInterval: 50 * time.Millisecond,
	}
}

func startOrch(t testing.TB, cfg Config) *orch {
	t.Helper()
	st, err := store.OpenOrchestrator(filepath.Join(t.TempDir(), "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler) // benchmarks
	if _, ok := t.(*testing.B); !ok {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := New(cfg, Deps{Log: log, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	o, _, _ := serve(t, srv, st)
	return o
}

// serve runs srv on a loopback listener until the test ends or stop is
// called (stop waits for Serve to return; done is closed then), and closes
// st after it.
func serve(tb testing.TB, srv *Server, st *store.Orchestrator) (o *orch, stop func(), done <-chan struct{}) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ctx, ln) }()
	stop = func() { cancel(); <-served }
	tb.Cleanup(func() { stop(); st.Close() })
	o = &orch{Server: srv, URL: "http://" + ln.Addr().String(), store: st}
	for _, k := range srv.cfg.Keys { // requests are made as the first admin key
		if k.Role == RoleAdmin {
			o.key = k.Secret
			break
		}
	}
	return o, stop, served
}

// testLogger logs to t at debug level.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// proc is a llorch child process.
type proc struct {
	cmd  *exec.Cmd
	URL  string
	done chan struct{}
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func spawn(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(kit.Bin, args...)
	logf, err := os.Create(filepath.Join(t.TempDir(), "proc.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done); logf.Close() }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			data, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", args[0], data)
		}
	})
	return p
}

// startWorker starts a real worker process on the tiny model that registers
// with o, and waits until o lists it healthy.
func startWorker(t *testing.T, o *orch, id string, slots int, extra ...string) *testkit.Worker {
	t.Helper()
	args := append([]string{"--backend", "cpu", "--model", kit.Tiny, "--model-id", "tiny",
		"--threads", "1", "--slots", strconv.Itoa(slots), "--worker-id", id, "--orchestrator", o.URL, "--heartbeat", "200ms",
		"--ctx", "4096"}, extra...)
	w := kit.StartWorker(t, nil, args...)
	waitFor(t, 60*time.Second, "worker "+id+" registered", func() bool { return o.workerState(id) == api.WorkerHealthy })
	return w
}

// kill kills a worker process and waits until it is gone.
func kill(w *testkit.Worker) {
	_ = w.Cmd.Process.Kill()
	<-w.Done()
}

func (o *orch) workerState(id string) string {
	for _, w := range o.reg.list() {
		if w.WorkerID == id {
			return w.State
		}
	}
	return ""
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (o *orch) do(t testing.TB, method, path string, body any, hdr ...string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		case []byte:
			rd = bytes.NewReader(b)
		default:
			data, _ := json.Marshal(b)
			rd = bytes.NewReader(data)
		}
	}
	req, err := http.NewRequest(method, o.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if o.key != "" {
		req.Header.Set("Authorization", "Bearer "+o.key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func decode[T any](t *testing.T, resp *http.Response, wantStatus int) T {
	t.Helper()
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, wantStatus, data)
	}
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	return v
}

func apiErr(t *testing.T, resp *http.Response, status int, code string) *api.Error {
	t.Helper()
	body := decode[api.ErrorBody](t, resp, status)
	if body.Error == nil || body.Error.Code != code {
		t.Fatalf("error %+v, want code %s", body.Error, code)
	}
	return body.Error
}

func taskReq(model, prompt string, maxTokens int, seed int64) *api.TaskRequest {
	return &api.TaskRequest{Model: model, ExecuteRequest: api.ExecuteRequest{
		Prompt: prompt, MaxTokens: &maxTokens, Seed: &seed, IgnoreEOS: true, Temperature: ptr(0.0)}}
}

func ptr[T any](v T) *T { return &v }

// ev is one received SSE event.
type ev struct {
	ID, Name string
	Data     json.RawMessage
}

func (e ev) token() api.Token {
	var tok api.Token
	_ = json.Unmarshal(e.Data, &tok)
	return tok
}

func (e ev) apiError() api.Error {
	var a api.Error
	_ = json.Unmarshal(e.Data, &a)
	return a
}

// readAll reads an SSE response to its end.
func readAll(t *testing.T, resp *http.Response) []ev {
	t.Helper()
	return follow(t, resp, nil)
}

// follow reads the live SSE stream of resp to its end, calling each (when
// not nil) with every event (queued ones included) as it arrives.
func follow(t *testing.T, resp *http.Response, each func(ev)) []ev {
	t.Helper()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	var out []ev
	r := sse.NewReader(resp.Body)
	for {
		e, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("reading stream: %v", err)
		}
		got := ev{ID: e.ID, Name: e.Event, Data: e.Data}
		out = append(out, got)
		if each != nil {
			each(got)
		}
	}
}

// relayed drops the live-only queued events.
func relayed(evs []ev) []ev {
	var out []ev
	for _, e := range evs {
		if e.Name != api.EventQueued {
			out = append(out, e)
		}
	}
	return out
}

// checkStream asserts the stream contract: ids 1..n in order, one started
// first (unless from > 0), tokens numbered from 0 without gaps, exactly one
// terminal event, last.
func checkStream(t *testing.T, evs []ev, from int) (text string, last ev) {
	t.Helper()
	evs = relayed(evs)
	if len(evs) == 0 {
		t.Fatal("no events")
	}
	nextTok := -1
	var b strings.Builder
	for i, e := range evs {
		if want := strconv.Itoa(from + i + 1); e.ID != want {
			t.Fatalf("event %d has id %q, want %s (events %v)", i, e.ID, want, evs)
		}
		switch e.Name {
		case api.EventStarted:
		case api.EventToken:
			tok := e.token()
			if nextTok >= 0 && tok.I != nextTok {
				t.Fatalf("token index %d after %d", tok.I, nextTok-1)
			}
			nextTok = tok.I + 1
			b.WriteString(tok.T)
		case api.EventEnd, api.EventError:
			if i != len(evs)-1 {
				t.Fatalf("terminal event %s is not last", e.Name)
			}
		}
	}
	last = evs[len(evs)-1]
	if last.Name != api.EventEnd && last.Name != api.EventError {
		t.Fatalf("stream ended with %s, not a terminal event", last.Name)
	}
	return b.String(), last
}

func (o *orch) submitStream(t *testing.T, req *api.TaskRequest, hdr ...string) []ev {
	t.Helper()
	return readAll(t, o.do(t, http.MethodPost, "/v2/tasks", req, append([]string{"Accept", "text/event-stream"}, hdr...)...))
}

func (o *orch) submitAsync(t *testing.T, req *api.TaskRequest) api.TaskAccepted {
	t.Helper()
	return decode[api.TaskAccepted](t, o.do(t, http.MethodPost, "/v2/tasks", req), http.StatusAccepted)
}

func (o *orch) taskStatus(t *testing.T, id string) api.TaskStatus {
	t.Helper()
	return decode[api.TaskStatus](t, o.do(t, http.MethodGet, "/v2/tasks/"+id, nil), http.StatusOK)
}

func (o *orch) waitTask(t *testing.T, id string, limit time.Duration) api.TaskStatus {
	t.Helper()
	var st api.TaskStatus
	waitFor(t, limit, "task "+id+" to end", func() bool {
		st = o.taskStatus(t, id)
		return st.Status == api.TaskSucceeded || st.Status == api.TaskFailed || st.Status == api.TaskCancelled
	})
	return st
}

// cancelTask cancels a task as an admin would.
func (o *orch) cancelTask(id string) {
	o.cancel(id, "cancelled by the test", principal{role: RoleAdmin})
}

// waitExplained waits until the scheduler has explained why a task waits,
// naming what: the dispatcher has looked at it (no fixed sleep).
func (o *orch) waitExplained(t *testing.T, id, what string) api.TaskStatus {
	t.Helper()
	var st api.TaskStatus
	waitFor(t, 10*time.Second, "task "+id+" explained with "+what, func() bool {
		st = o.taskStatus(t, id)
		return st.Explanation != nil && strings.Contains(st.Explanation.Summary, what)
	})
	return st
}

// noEOS is a logit_bias (JSON) that bans the tiny model's end-of-generation
// tokens, so a test's length does not depend on the random weights.
func noEOS(t *testing.T) string {
	t.Helper()
	p := synth.Tiny()
	v, err := synth.NewVocab(p.VocabSize, p.Merges)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`{"%d":-100,"%d":-100}`, v.EndOfText, v.IMEnd)
}
