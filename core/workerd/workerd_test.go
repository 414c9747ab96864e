package workerd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

// worker is an in-process worker on the tiny model.
type worker struct {
	srv    *workerd.Server
	url    string
	client *workerclient.Client
	done   chan error
	cancel context.CancelFunc
}

// startWorker serves a worker on 127.0.0.1:0 and waits until it is ready.
func startWorker(t *testing.T, tweak func(*workerd.Config)) *worker {
	t.Helper()
	// One thread: test binaries of several packages run at once on small
	// machines, and ggml's spinning threads would fight over the cores.
	cfg := workerd.Config{ModelPath: tinyPath, Slots: 1, Ctx: 4096, Threads: 1, Batch: 256, DrainGrace: 60 * time.Second}
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := workerd.New(cfg, workerd.Deps{Load: load})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{srv: srv, url: "http://" + ln.Addr().String(), done: make(chan error, 1), cancel: cancel}
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
	waitReady(t, w.client)
	return w
}

func waitReady(t *testing.T, c *workerclient.Client) {
	t.Helper()
	for range 500 {
		h, err := c.Health(context.Background())
		if err == nil && h.Status == api.StatusReady {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("worker not ready")
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
	var tokens []api.Token
	var end *api.End
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("stream broke after %v: %v", names, err)
		}
		names = append(names, ev.Name)
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
		b, _ := json.Marshal(res.Tokens)
		return string(b)
	}
	a, b := sampled(42), sampled(42)
	if a != b {
		t.Errorf("same seed gave different tokens:\n%s\n%s", a, b)
	}
	if c := sampled(43); c == a {
		t.Errorf("different seeds gave identical tokens")
	}
	// No seed: one is generated and reported.
	r := &api.ExecuteRequest{Prompt: "hi", MaxTokens: ptr(2)}
	res := collect(t, w.client, r)
	if res.End == nil {
		t.Fatal("no end")
	}
	t.Logf("generated seed %d", res.Started.Seed)
}

func postRaw(t *testing.T, url, body string) (int, api.ErrorBody, http.Header) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var eb api.ErrorBody
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &eb)
	return resp.StatusCode, eb, resp.Header
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

// streamUntil reads n token events, then returns the open stream.
func streamUntil(t *testing.T, c *workerclient.Client, r *api.ExecuteRequest, n int) (*workerclient.Stream, string) {
	t.Helper()
	st, err := c.Execute(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	var jobID string
	seen := 0
	for seen < n {
		ev, err := st.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Started != nil {
			jobID = ev.Started.JobID
		}
		if ev.Token != nil {
			seen++
		}
		if ev.Terminal() {
			t.Fatalf("stream ended early: %+v %+v", ev.End, ev.Error)
		}
	}
	return st, jobID
}

func TestCancel(t *testing.T) {
	w := startWorker(t, nil)
	st, jobID := streamUntil(t, w.client, req("Tell me a long story", 4000, 3), 5)
	defer st.Close()
	t0 := time.Now()
	resp, err := w.client.Cancel(context.Background(), jobID)
	if err != nil || !resp.Found {
		t.Fatalf("cancel: %+v %v", resp, err)
	}
	var cancelled bool
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("stream broke: %v", err)
		}
		if cancelled && ev.Token != nil {
			t.Fatal("token after CANCELLED")
		}
		if ev.Error != nil {
			if ev.Error.Code != api.CodeCancelled {
				t.Fatalf("error %v, want CANCELLED", ev.Error)
			}
			cancelled = true
			break
		}
		if ev.End != nil {
			t.Fatalf("job ended normally despite cancel: %+v", ev.End)
		}
	}
	t.Logf("cancel to CANCELLED event: %v", time.Since(t0))
	if _, err := st.Next(); err == nil {
		t.Error("event after CANCELLED")
	}
	// Idempotent.
	if resp, err := w.client.Cancel(context.Background(), jobID); err != nil || resp.JobID != jobID {
		t.Errorf("second cancel: %+v %v", resp, err)
	}
	// The slot is free for the next job.
	if res := collect(t, w.client, req("next", 4, 1)); res.End == nil {
		t.Fatalf("next job: %v", res.Error)
	}
}

func TestDisconnectFreesSlot(t *testing.T) {
	w := startWorker(t, nil)
	st, _ := streamUntil(t, w.client, req("Tell me a long story", 4000, 3), 3)
	st.Close()
	// The server notices the closed connection asynchronously; the slot must
	// be free soon after, without any cancel call.
	for i := 0; ; i++ {
		h, err := w.client.Health(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if h.SlotsBusy == 0 {
			break
		}
		if i == 500 {
			t.Fatal("slot still busy 5s after the client disconnected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := collect(t, w.client, req("after disconnect", 4, 1))
	if res.End == nil {
		t.Fatalf("slot not freed: %v", res.Error)
	}
}

func TestBusyAndHealthWhileGenerating(t *testing.T) {
	w := startWorker(t, nil)
	st, jobID := streamUntil(t, w.client, req("Tell me a long story", 4000, 3), 2)
	defer st.Close()

	h, err := w.client.Health(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if h.Status != api.StatusReady || h.SlotsBusy != 1 || h.SlotsTotal != 1 || h.Slots[0].JobID != jobID {
		t.Errorf("health while generating = %+v", h)
	}
	status, eb, hdr := postRaw(t, w.url+"/execute", `{"prompt":"second","max_tokens":2}`)
	if status != http.StatusServiceUnavailable || eb.Error == nil || eb.Error.Code != api.CodeAllSlotsBusy || hdr.Get("Retry-After") == "" {
		t.Errorf("second request: %d %+v Retry-After=%q, want 503 ALL_SLOTS_BUSY", status, eb.Error, hdr.Get("Retry-After"))
	}
}

func TestMetrics(t *testing.T) {
	w := startWorker(t, nil)
	collect(t, w.client, req("metrics", 4, 1))
	resp, err := http.Get(w.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`llorch_worker_requests_total{outcome="ok"} 1`,
		`llorch_worker_tokens_generated_total 4`,
		"llorch_worker_prompt_tokens_total",
		"llorch_worker_ttft_seconds_bucket",
		"llorch_worker_decode_seconds_bucket",
		"llorch_worker_batch_tokens_bucket",
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("metrics lack %q", want)
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
	if res.End.PromptTokens <= plain.End.PromptTokens+4 {
		t.Errorf("chat prompt has %d tokens, plain %d: template not applied?", res.End.PromptTokens, plain.End.PromptTokens)
	}
}

func TestAuthToken(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Token = "s3cret" })
	status, eb, _ := postRaw(t, w.url+"/execute", `{"prompt":"x","max_tokens":1}`)
	if status != http.StatusUnauthorized || eb.Error.Code != api.CodeUnauthorized {
		t.Errorf("no token: %d %+v", status, eb.Error)
	}
	if res := collect(t, w.client, req("x", 1, 1)); res.End == nil {
		t.Errorf("with token: %v", res.Error)
	}
	if _, err := http.Get(w.url + "/health"); err != nil {
		t.Errorf("health must stay open: %v", err)
	}
}

func TestShutdownDrains(t *testing.T) {
	w := startWorker(t, nil)
	st, _ := streamUntil(t, w.client, req("Tell me a story", 600, 3), 1)
	defer st.Close()
	if err := w.client.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	// New work is refused while the running job finishes.
	status, eb, _ := postRaw(t, w.url+"/execute", `{"prompt":"late","max_tokens":1}`)
	if status != http.StatusServiceUnavailable || eb.Error.Code != api.CodeDraining {
		t.Errorf("during drain: %d %+v", status, eb.Error)
	}
	for {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("running job broken by drain: %v", err)
		}
		if ev.Terminal() {
			if ev.End == nil || ev.End.StopReason != api.StopMaxTokens {
				t.Fatalf("running job did not finish: %+v %+v", ev.End, ev.Error)
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
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	c := workerclient.New(ln.Addr().String(), "", nil)
	var h *api.Health
	for range 200 {
		if h, err = c.Health(ctx); err == nil && h.Progress == 0.5 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h == nil || h.Status != api.StatusLoading || h.Progress != 0.5 {
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
	os.WriteFile(bad, []byte("GGUF not really"), 0o644)
	srv, err := workerd.New(workerd.Config{ModelPath: bad}, workerd.Deps{Load: load})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	err = srv.Serve(context.Background(), ln)
	if err == nil || !errors.Is(err, llamacpp.ErrLoad) {
		t.Fatalf("Serve = %v, want a load error", err)
	}
}

// sseLines is a raw view of a stream, for checks the client hides.
func sseLines(t *testing.T, url, body string) []string {
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
	return lines
}

func TestRawSSE(t *testing.T) {
	w := startWorker(t, nil)
	lines := sseLines(t, w.url+"/execute", `{"prompt":"raw","max_tokens":3,"seed":1}`)
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
