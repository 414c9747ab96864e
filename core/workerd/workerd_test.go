package workerd_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/synth"
	"github.com/llorch/llorch/core/workerclient"
	"github.com/llorch/llorch/core/workerd"
)

// tinyPath is the synthetic tiny model, written once per test binary.
var tinyPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "workerd-test-")
	if err != nil {
		panic(err)
	}
	tinyPath = filepath.Join(dir, "tiny.gguf")
	if err := synth.Write(tinyPath, synth.Tiny()); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func load(path string, o workerd.LoadOptions) (backends.Model, error) {
	return llamacpp.Load(path, llamacpp.LoadParams{Progress: o.Progress})
}

// worker is an in-process worker on the tiny model, its decode loop under a
// pace the test may hold.
type worker struct {
	srv    *workerd.Server
	url    string
	client *workerclient.Client
	pace   *pace
	done   chan error
	cancel context.CancelFunc
}

// startWorker serves a worker on 127.0.0.1:0 and waits until it is ready.
func startWorker(t testing.TB, tweak func(*workerd.Config)) *worker {
	t.Helper()
	// One thread: test binaries of several packages run at once on small
	// machines, and ggml's spinning threads would fight over the cores.
	cfg := workerd.Config{ModelPath: tinyPath, Slots: 1, Ctx: 4096, Threads: 1, Batch: 256, DrainGrace: 60 * time.Second}
	if tweak != nil {
		tweak(&cfg)
	}
	p := newPace()
	paced := func(path string, o workerd.LoadOptions) (backends.Model, error) {
		m, err := load(path, o)
		if err != nil {
			return nil, err
		}
		return pacedModel{Model: m, p: p}, nil
	}
	srv, err := workerd.New(cfg, workerd.Deps{Load: paced})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{srv: srv, url: "http://" + ln.Addr().String(), pace: p, done: make(chan error, 1), cancel: cancel}
	w.client = workerclient.New(w.url, cfg.Token, nil)
	go func() { w.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-w.done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("worker did not stop")
		}
	})
	t.Cleanup(p.release) // runs first: a held loop would never stop
	waitReady(t, w.client)
	return w
}

func waitReady(t testing.TB, c *workerclient.Client) {
	t.Helper()
	waitFor(t, 10*time.Second, "the worker to be ready", func() bool {
		h, err := c.Health(context.Background())
		return err == nil && h.Status == api.StatusReady
	})
}

func ptr[T any](v T) *T { return &v }

// req builds a valid request that tests tweak. EOS is ignored: random weights
// pick it now and then, and which seed does depends on the CPU's SIMD flags,
// so a test that needs N tokens must not rely on the seed avoiding it.
func req(prompt string, maxTokens int, seed int64) *api.ExecuteRequest {
	return &api.ExecuteRequest{Prompt: prompt, MaxTokens: ptr(maxTokens), Seed: ptr(seed), IgnoreEOS: true}
}

func collect(t *testing.T, c *workerclient.Client, r *api.ExecuteRequest) *workerclient.Result {
	t.Helper()
	res, err := c.Collect(context.Background(), r)
	if err != nil {
		t.Fatalf("collect: %v", err)
	}
	return res
}

func tokenIDs(t *testing.T, text string) []backends.Token {
	t.Helper()
	m, err := llamacpp.Load(tinyPath, llamacpp.LoadParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	toks, err := m.Tokenize(text, false, true)
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func TestStreamEventOrder(t *testing.T) {
	w := startWorker(t, nil)
	st, err := w.client.Execute(context.Background(), req("Hello world", 16, 7))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var names []string
	var started api.Started
	var tokens []api.Token
	var end *api.End
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("stream broke after %v: %v", names, err)
		}
		names = append(names, ev.Name)
		if ev.Started != nil {
			started = *ev.Started
		}
		if ev.Token != nil {
			tokens = append(tokens, *ev.Token)
		}
		if ev.Terminal() {
			if ev.Error != nil {
				t.Fatalf("error event: %v", ev.Error)
			}
			end = ev.End
			break
		}
	}
	if names[0] != api.EventStarted {
		t.Errorf("first event = %s, want started", names[0])
	}
	if started.MaxTokens != 16 || started.ResumedTokens != 0 {
		t.Errorf("started = %+v, want max_tokens 16", started)
	}
	for i, tk := range tokens {
		if tk.I != i {
			t.Errorf("token %d has index %d", i, tk.I)
		}
	}
	if end.TokensOut != len(tokens) || end.TokensOut > 16 {
		t.Errorf("tokens_out = %d, received %d tokens, max 16", end.TokensOut, len(tokens))
	}
	if end.StopReason != api.StopMaxTokens || end.TokensOut != 16 {
		t.Errorf("end = %+v, want MAX_TOKENS after 16", end)
	}
	if end.PromptTokens == 0 {
		t.Errorf("prompt_tokens = 0")
	}
	if _, err := st.Next(); err == nil {
		t.Error("event after the terminal event")
	}
}

func TestStopReasons(t *testing.T) {
	w := startWorker(t, nil)
	greedy := func(r *api.ExecuteRequest) *api.ExecuteRequest { r.Temperature = ptr(0.0); return r }

	t.Run("eos", func(t *testing.T) {
		eos := tokenIDs(t, "<|endoftext|>")
		r := greedy(req("Once upon a time", 50, 1))
		r.IgnoreEOS = false
		r.LogitBias = map[string]float64{fmt.Sprint(eos[0]): 100}
		res := collect(t, w.client, r)
		if res.End == nil || res.End.StopReason != api.StopEOS {
			t.Fatalf("end = %+v err = %v, want EOS", res.End, res.Error)
		}
		if res.End.TokensOut != len(res.Tokens) {
			t.Errorf("tokens_out %d != received %d", res.End.TokensOut, len(res.Tokens))
		}
	})

	t.Run("stop sequence across tokens", func(t *testing.T) {
		sampled := func() *api.ExecuteRequest {
			r := req("The quick brown fox", 64, 5)
			r.Temperature = ptr(1.0)
			return r
		}
		base := collect(t, w.client, sampled())
		text := base.Text()
		// A stop string spanning several tokens, first seen at a token boundary
		// in the middle of the output.
		var stop, before string
		pos := 0
		for i, tk := range base.Tokens {
			if i >= 3 && pos+8 <= len(text) && utf8.ValidString(text[pos:pos+8]) && strings.Index(text, text[pos:pos+8]) == pos {
				stop, before = text[pos:pos+8], text[:pos]
				break
			}
			pos += len(tk.T)
		}
		if stop == "" {
			t.Fatalf("output %q has no usable stop string", text)
		}
		r := sampled()
		r.Stop = []string{stop}
		res := collect(t, w.client, r)
		if res.End == nil || res.End.StopReason != api.StopSequence || res.End.StopSequenceMatched != stop {
			t.Fatalf("end = %+v, want STOP_SEQUENCE %q", res.End, stop)
		}
		if got := res.Text(); got != before {
			t.Errorf("text = %q, want %q (no stop text leaked)", got, before)
		}
		if res.End.TokensOut != len(res.Tokens) {
			t.Errorf("tokens_out %d != received %d", res.End.TokensOut, len(res.Tokens))
		}
	})
}

func TestSeedDeterminism(t *testing.T) {
	w := startWorker(t, nil)
	sampled := func(seed int64) string {
		r := req("In a village", 32, seed)
		r.Temperature = ptr(1.0)
		res := collect(t, w.client, r)
		if res.End == nil {
			t.Fatalf("no end: %v", res.Error)
		}
		if res.Started.Seed != uint32(seed) {
			t.Errorf("started.seed = %d, want %d", res.Started.Seed, seed)
		}
		return tokensJSON(t, res)
	}
	a, b := sampled(42), sampled(42)
	if a != b {
		t.Errorf("same seed gave different tokens:\n%s\n%s", a, b)
	}
	if c := sampled(43); c == a {
		t.Errorf("different seeds gave identical tokens")
	}
	// No seed: one is generated and reported, a new one each time, and it
	// reproduces the run.
	unseeded := func() *workerclient.Result {
		r := req("In a village", 32, 0)
		r.Seed, r.Temperature = nil, ptr(1.0)
		res := collect(t, w.client, r)
		if res.End == nil {
			t.Fatalf("no end: %v", res.Error)
		}
		return res
	}
	x, y := unseeded(), unseeded()
	if x.Started.Seed == y.Started.Seed {
		t.Errorf("two requests without a seed both got seed %d", x.Started.Seed)
	}
	if got := sampled(int64(x.Started.Seed)); got != tokensJSON(t, x) {
		t.Errorf("the reported seed %d does not reproduce the run:\n%s\n%s", x.Started.Seed, tokensJSON(t, x), got)
	}
}

func postRaw(t *testing.T, url, body string) (int, api.ErrorBody, http.Header) {
	t.Helper()
	status, hdr, data := post(t, url, "", body)
	var eb api.ErrorBody
	if err := json.Unmarshal(data, &eb); err != nil || eb.Error == nil {
		t.Fatalf("status %d: not an error body (%v): %.200s", status, err, data)
	}
	return status, eb, hdr
}

func TestValidation(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Ctx = 256 })
	cases := []struct {
		name   string
		body   string
		status int
		code   string
		fields []string
	}{
		{"all bad fields listed", `{"prompt":"x","max_tokens":0,"temperature":3,"top_p":1.5,"min_p":-1,"stop":["a","b","c","d","e"],"seed":-4}`,
			400, api.CodeInvalidRequest, []string{"max_tokens", "temperature", "top_p", "min_p", "stop", "seed"}},
		{"no prompt", `{}`, 400, api.CodeInvalidRequest, []string{"prompt"}},
		{"prompt and messages", `{"prompt":"x","messages":[{"role":"user","content":"y"}]}`, 400, api.CodeInvalidRequest, []string{"messages"}},
		{"bad role", `{"messages":[{"role":"wizard","content":"y"}]}`, 400, api.CodeInvalidRequest, []string{"messages[0].role"}},
		{"long stop", `{"prompt":"x","stop":["` + strings.Repeat("s", 101) + `"]}`, 400, api.CodeInvalidRequest, []string{"stop[0]"}},
		{"not json", `{"prompt":`, 400, api.CodeInvalidRequest, nil},
		{"wrong type", `{"prompt":42}`, 400, api.CodeInvalidRequest, nil},
		{"context overflow", `{"prompt":"hello","max_tokens":300}`, 400, api.CodeContextOverflow, []string{"max_tokens"}},
		{"prompt beyond context", `{"prompt":"` + strings.Repeat("zq ", 400) + `","max_tokens":1}`, 400, api.CodeContextOverflow, []string{"max_tokens"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, eb, _ := postRaw(t, w.url+"/execute", tc.body)
			if status != tc.status || eb.Error == nil || eb.Error.Code != tc.code {
				t.Fatalf("status %d body %+v, want %d %s", status, eb.Error, tc.status, tc.code)
			}
			var got []string
			for _, f := range eb.Error.Fields {
				got = append(got, f.Field)
			}
			for _, want := range tc.fields {
				found := false
				for _, g := range got {
					found = found || g == want
				}
				if !found {
					t.Errorf("field %q not reported; got %v", want, got)
				}
			}
		})
	}
	t.Run("body too large", func(t *testing.T) {
		big := `{"prompt":"` + strings.Repeat("a", api.MaxRequestBytes+10) + `"}`
		status, eb, _ := postRaw(t, w.url+"/execute", big)
		if status != http.StatusRequestEntityTooLarge || eb.Error == nil || eb.Error.Code != api.CodeBodyTooLarge {
			t.Fatalf("status %d %+v, want 413", status, eb.Error)
		}
	})
	t.Run("worker still serves", func(t *testing.T) {
		if res := collect(t, w.client, req("ok", 2, 1)); res.End == nil {
			t.Fatal("no end after bad requests")
		}
	})
}

// heldStream starts r with the worker's decode loop held, lets it decode
// step by step until n token events have arrived, and returns the open
// stream and its job id with the loop still held: the job keeps its slot and
// cannot advance until the test steps or releases the pace (r must ask for
// more than n tokens).
func heldStream(t *testing.T, w *worker, r *api.ExecuteRequest, n int) (*workerclient.Stream, string) {
	t.Helper()
	w.pace.hold()
	st, err := w.client.Execute(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	w.pace.parked(t)
	var jobID string
	for seen := 0; seen < n; {
		w.pace.step(t)
		for tok := false; !tok; {
			ev, err := st.Next()
			if err != nil {
				t.Fatal(err)
			}
			if ev.Started != nil {
				jobID = ev.Started.JobID
			}
			if ev.Terminal() {
				t.Fatalf("stream ended early: %+v %+v", ev.End, ev.Error)
			}
			tok = ev.Token != nil
		}
		seen++
	}
	return st, jobID
}

func TestCancel(t *testing.T) {
	w := startWorker(t, nil)
	st, jobID := heldStream(t, w, req("Tell me a long story", 4000, 3), 5)
	defer st.Close()
	// Held, the job cannot end before the cancel arrives.
	t0 := time.Now()
	resp, err := w.client.Cancel(context.Background(), jobID)
	if err != nil || !resp.Found {
		t.Fatalf("cancel: %+v %v", resp, err)
	}
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("stream broke: %v", err)
		}
		if ev.Error != nil {
			if ev.Error.Code != api.CodeCancelled {
				t.Fatalf("error %v, want CANCELLED", ev.Error)
			}
			break
		}
		if ev.End != nil {
			t.Fatalf("job ended normally despite cancel: %+v", ev.End)
		}
	}
	t.Logf("cancel to CANCELLED event: %v", time.Since(t0))
	w.pace.release()
	if ev, err := st.Next(); err == nil {
		t.Errorf("event after CANCELLED: %+v", ev)
	}
	// Idempotent.
	if resp, err := w.client.Cancel(context.Background(), jobID); err != nil || resp.JobID != jobID {
		t.Errorf("second cancel: %+v %v", resp, err)
	}
	// The slot is free for the next job.
	if res := collect(t, w.client, req("next", 4, 1)); res.End == nil {
		t.Fatalf("next job: %v", res.Error)
	}
	m := scrape(t, w.url)
	if got := metric(t, m, `llorch_worker_requests_total{outcome="cancelled"}`); got != 1 {
		t.Errorf("cancelled requests = %v, want 1", got)
	}
}

func TestDisconnectFreesSlot(t *testing.T) {
	w := startWorker(t, nil)
	// The loop goes one step at a time, so the job (3997 tokens to go after
	// these) cannot end before the server notices the closed connection.
	st, _ := heldStream(t, w, req("Tell me a long story", 4000, 3), 3)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// The server notices asynchronously; the slot must be freed soon after,
	// without any cancel call.
	waitFor(t, 10*time.Second, "the slot to be freed", func() bool {
		h, err := w.client.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if h.SlotsBusy == 0 {
			return true
		}
		w.pace.tryStep(5 * time.Millisecond)
		return false
	})
	m := scrape(t, w.url)
	if c, ok := metric(t, m, `llorch_worker_requests_total{outcome="cancelled"}`), metric(t, m, `llorch_worker_requests_total{outcome="ok"}`); c != 1 || ok != 0 {
		t.Fatalf("outcomes: cancelled %v ok %v, want the job cancelled", c, ok)
	}
	w.pace.release()
	res := collect(t, w.client, req("after disconnect", 4, 1))
	if res.End == nil {
		t.Fatalf("slot not freed: %v", res.Error)
	}
}

func TestBusyAndHealthWhileGenerating(t *testing.T) {
	w := startWorker(t, nil)
	st, jobID := heldStream(t, w, req("Tell me a long story", 4000, 3), 2)
	defer st.Close()

	h, err := w.client.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != api.StatusReady || h.SlotsBusy != 1 || h.SlotsTotal != 1 || h.Slots[0].JobID != jobID || h.Slots[0].State != "decode" {
		t.Errorf("health while generating = %+v", h)
	}
	status, eb, hdr := postRaw(t, w.url+"/execute", `{"prompt":"second","max_tokens":2}`)
	if status != http.StatusServiceUnavailable || eb.Error.Code != api.CodeAllSlotsBusy || hdr.Get("Retry-After") == "" {
		t.Errorf("second request: %d %+v Retry-After=%q, want 503 ALL_SLOTS_BUSY", status, eb.Error, hdr.Get("Retry-After"))
	}
}

func TestMetrics(t *testing.T) {
	w := startWorker(t, nil)
	res := collect(t, w.client, req("metrics", 4, 1))
	if res.End == nil {
		t.Fatalf("job: %v", res.Error)
	}
	m := scrape(t, w.url)
	for series, want := range map[string]float64{
		`llorch_worker_requests_total{outcome="ok"}`: 1,
		`llorch_worker_tokens_generated_total`:       4,
		`llorch_worker_prompt_tokens_total`:          float64(res.End.PromptTokens),
		`llorch_worker_ttft_seconds_count`:           1,
		`llorch_worker_decode_seconds_count`:         1,
		`llorch_worker_slots_busy`:                   0,
		`llorch_worker_slots_total`:                  1,
		// One prefill step, then one step per sampled token but the last.
		`llorch_worker_batch_tokens_count`:    4,
		`llorch_worker_batch_tokens_sum`:      float64(res.End.PromptTokens + 3),
		`llorch_worker_batch_sequences_count`: 4,
		`llorch_worker_batch_sequences_sum`:   4,
	} {
		if got := metric(t, m, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
}

func TestChatMessages(t *testing.T) {
	w := startWorker(t, nil)
	r := &api.ExecuteRequest{Messages: []api.Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}},
		MaxTokens: ptr(4), Seed: ptr(int64(1))}
	res := collect(t, w.client, r)
	if res.End == nil {
		t.Fatalf("chat: %v", res.Error)
	}
	// ChatML wraps the two messages and the assistant prefix in control tokens.
	plain := collect(t, w.client, req("Be brief. Hi", 1, 1))
	if plain.End == nil {
		t.Fatalf("plain: %v", plain.Error)
	}
	if res.End.PromptTokens <= plain.End.PromptTokens+4 {
		t.Errorf("chat prompt has %d tokens, plain %d: template not applied?", res.End.PromptTokens, plain.End.PromptTokens)
	}
}

// TestAuthToken: --token guards /execute, /cancel and /shutdown (and /v1, see
// the OpenAI tests); /health and /metrics stay open.
func TestAuthToken(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Token = "s3cret" })
	call := func(t *testing.T, path, token, body string) (int, []byte) {
		t.Helper()
		status, _, data := post(t, w.url+path, token, body)
		return status, data
	}
	refused := func(t *testing.T, path, body string) {
		t.Helper()
		for _, token := range []string{"", "wrong", "s3cret2", "S3CRET"} {
			status, data := call(t, path, token, body)
			var eb api.ErrorBody
			if err := json.Unmarshal(data, &eb); err != nil || status != http.StatusUnauthorized || eb.Error == nil || eb.Error.Code != api.CodeUnauthorized {
				t.Errorf("%s with token %q: %d %s, want 401 UNAUTHORIZED", path, token, status, data)
			}
		}
	}
	t.Run("execute", func(t *testing.T) {
		refused(t, "/execute", `{"prompt":"x","max_tokens":1}`)
		res := collect(t, w.client, req("x", 1, 1)) // the client sends the token
		if res.End == nil || res.End.TokensOut != 1 {
			t.Errorf("with token: %+v %v", res.End, res.Error)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		st, jobID := heldStream(t, w, req("Tell me a long story", 4000, 3), 1)
		defer st.Close()
		defer w.pace.release()
		refused(t, "/cancel", `{"job_id":"`+jobID+`"}`)
		if h, err := w.client.Health(context.Background()); err != nil || h.SlotsBusy != 1 {
			t.Fatalf("a refused cancel freed the slot: %+v %v", h, err)
		}
		status, data := call(t, "/cancel", "s3cret", `{"job_id":"`+jobID+`"}`)
		var cr api.CancelResponse
		if err := json.Unmarshal(data, &cr); err != nil || status != http.StatusAccepted || !cr.Found {
			t.Fatalf("cancel with token: %d %s", status, data)
		}
		ev, err := st.Next()
		for err == nil && ev.Token != nil {
			ev, err = st.Next()
		}
		if err != nil || ev.Error == nil || ev.Error.Code != api.CodeCancelled {
			t.Fatalf("after the cancel: %+v %v, want CANCELLED", ev, err)
		}
	})
	t.Run("open endpoints", func(t *testing.T) {
		for _, path := range []string{"/health", "/metrics"} {
			resp, err := http.Get(w.url + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s without a token: %d, want 200", path, resp.StatusCode)
			}
		}
	})
	t.Run("shutdown", func(t *testing.T) {
		refused(t, "/shutdown", "")
		if h, err := w.client.Health(context.Background()); err != nil || h.Status != api.StatusReady {
			t.Fatalf("a refused shutdown drained the worker: %+v %v", h, err)
		}
		if status, data := call(t, "/shutdown", "s3cret", ""); status != http.StatusAccepted {
			t.Fatalf("shutdown with token: %d %s", status, data)
		}
		select {
		case err := <-w.done:
			if err != nil {
				t.Fatal(err)
			}
			w.done <- nil // for Cleanup
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not return after an authorised shutdown")
		}
	})
}

func TestShutdownDrains(t *testing.T) {
	w := startWorker(t, nil)
	// Held, the job is still running while the drain refuses new work.
	st, _ := heldStream(t, w, req("Tell me a story", 600, 3), 1)
	defer st.Close()
	if err := w.client.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the worker to drain", func() bool {
		h, err := w.client.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return h.Status == api.StatusDraining
	})
	status, eb, _ := postRaw(t, w.url+"/execute", `{"prompt":"late","max_tokens":1}`)
	if status != http.StatusServiceUnavailable || eb.Error.Code != api.CodeDraining {
		t.Errorf("during drain: %d %+v", status, eb.Error)
	}
	w.pace.release()
	n := 1
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("running job broken by drain: %v", err)
		}
		if ev.Token != nil {
			n++
		}
		if ev.Terminal() {
			if ev.End == nil || ev.End.StopReason != api.StopMaxTokens || ev.End.TokensOut != 600 || n != 600 {
				t.Fatalf("running job did not finish: %d tokens, %+v %+v", n, ev.End, ev.Error)
			}
			break
		}
	}
	select {
	case err := <-w.done:
		if err != nil {
			t.Fatal(err)
		}
		w.done <- nil // for Cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after drain")
	}
}

func TestLoadingState(t *testing.T) {
	gate := make(chan struct{})
	cfg := workerd.Config{ModelPath: tinyPath, Slots: 1}
	srv, err := workerd.New(cfg, workerd.Deps{Load: func(p string, o workerd.LoadOptions) (backends.Model, error) {
		o.Progress(0.5)
		<-gate
		return load(p, o)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	c := workerclient.New(ln.Addr().String(), "", nil)
	var h *api.Health
	waitFor(t, 10*time.Second, "load progress 0.5", func() bool {
		h, err = c.Health(ctx)
		return err == nil && h.Progress == 0.5
	})
	if h.Status != api.StatusLoading {
		t.Errorf("health while loading = %+v", h)
	}
	status, eb, hdr := postRaw(t, "http://"+ln.Addr().String()+"/execute", `{"prompt":"x"}`)
	if status != http.StatusServiceUnavailable || eb.Error.Code != api.CodeLoading || hdr.Get("Retry-After") == "" {
		t.Errorf("execute while loading: %d %+v", status, eb.Error)
	}
	close(gate)
	waitReady(t, c)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestUnloadableModel(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.gguf")
	if err := os.WriteFile(bad, []byte("GGUF not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := workerd.New(workerd.Config{ModelPath: bad}, workerd.Deps{Load: load})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Serve(context.Background(), ln)
	if err == nil || !errors.Is(err, llamacpp.ErrLoad) {
		t.Fatalf("Serve = %v, want a load error", err)
	}
}

// sseLines is a raw view of a stream, for checks the client hides.
func sseLines(t *testing.T, url, body string) []string {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("content type %q", ct)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestRawSSE(t *testing.T) {
	w := startWorker(t, nil)
	lines := sseLines(t, w.url+"/execute", `{"prompt":"raw","max_tokens":3,"seed":1,"ignore_eos":true}`)
	var events []string
	for _, l := range lines {
		if ev, ok := strings.CutPrefix(l, "event: "); ok {
			events = append(events, ev)
		}
	}
	want := []string{"started", "token", "token", "token", "end"}
	if strings.Join(events, ",") != strings.Join(want, ",") {
		t.Errorf("events %v, want %v", events, want)
	}
}
