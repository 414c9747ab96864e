package ctl_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/bench"
)

// benchRun runs `llorch ctl bench ARGS --json` and returns the report, the
// exit code and stderr.
func benchRun(t *testing.T, args ...string) (bench.Report, int, string) {
	t.Helper()
	cmd := ctl(append([]string{"bench", "--json"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := exitCode(cmd.Run())
	var rep bench.Report
	if code != 2 {
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatalf("ctl bench %v: exit %d, stdout not a report (%v):\n%s\n%s", args, code, err, out.String(), errb.String())
		}
	}
	return rep, code, errb.String()
}

// checkCounts asserts that every request of every step succeeded and that
// the tokens counted from the streams are the server's usage figures.
func checkCounts(t *testing.T, rep bench.Report, steps, requests int) {
	t.Helper()
	if len(rep.Steps) != steps {
		t.Fatalf("%d steps, want %d: %+v", len(rep.Steps), steps, rep.Steps)
	}
	for _, st := range rep.Steps {
		if st.Requests != requests || st.OK != requests || st.UsageMismatches != 0 || st.UsageMissing != 0 ||
			st.StreamTokens == 0 || st.StreamTokens != st.UsageOutputTokens || st.OutputTokens != st.StreamTokens ||
			st.TTFT.N != requests || st.OutputTokPerS <= 0 || st.PromptTokens == 0 {
			t.Errorf("step %s: %+v", bench.StepName(st), st)
		}
	}
}

// Against a real worker on the tiny model over the OpenAI API: every token
// streamed is one the worker counted; the report, the saved copy and the
// chart are written.
func TestBenchWorker(t *testing.T) {
	w := kit.StartWorker(t, nil, "--model", kit.Tiny, "--model-id", "tiny", "--slots", "2", "--threads", "1")
	dir := t.TempDir()
	out, chart := filepath.Join(dir, "w.json"), filepath.Join(dir, "w.svg")
	rep, code, stderr := benchRun(t, "--url", w.URL, "--concurrency", "1,2", "--requests", "4", "--warmup", "1",
		"--prompt-tokens", "40", "--gen-tokens", "12", "--out", out, "--plot", chart, "--label", "tiny worker")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	checkCounts(t, rep, 2, 4)
	if rep.Label != "tiny worker" || rep.Model != "tiny" || !strings.HasPrefix(rep.Server, "llorch worker ") ||
		rep.API != "openai-completions" || !rep.Workload.Calibrated || rep.Warmup != 1 || !strings.Contains(strings.Join(rep.Command, " "), "--concurrency 1,2") {
		t.Errorf("report %+v", rep)
	}
	if st := rep.Steps[1]; st.Concurrency != 2 || st.PromptTokens < 30 || st.PromptTokens > 50 {
		t.Errorf("step K=2: concurrency %d, prompt tokens %.1f (asked 40)", st.Concurrency, st.PromptTokens)
	}
	saved, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := bench.ReadReport(bytes.NewReader(saved)); err != nil || again.Steps[0].OK != 4 {
		t.Errorf("--out: %v %+v", err, again)
	}
	if svg, err := os.ReadFile(chart); err != nil || !bytes.Contains(svg, []byte("<svg")) {
		t.Errorf("--plot: %v, %d bytes", err, len(svg))
	}
	// Two saved reports on one chart.
	png := filepath.Join(dir, "two.png")
	if b, err := ctl("bench", "plot", "--plot", png, out, out).CombinedOutput(); err != nil {
		t.Fatalf("bench plot: %v\n%s", err, b)
	}
	if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
		t.Errorf("bench plot png: %v, %d bytes", err, len(b))
	}
}

// Against a real orchestrator with that worker: native /v2/tasks (token
// events counted equal end.tokens_out) and OpenAI chat sessions.
func TestBenchOrchestrator(t *testing.T) {
	tracePath := filepath.Join(t.TempDir(), "trace.jsonl")
	orch := startOrchestrator(t, "--api-key-file", writeKeys(t), "--worker-token", "wt-bench", "--trace-file", tracePath)
	kit.StartWorker(t, nil, "--model", kit.Tiny, "--model-id", "tiny", "--slots", "2", "--threads", "1",
		"--orchestrator", orch, "--token", "wt-bench", "--heartbeat", "200ms")
	// The worker is registered once a task runs: a bench of one request
	// until it succeeds.
	deadline := time.Now().Add(time.Minute)
	for {
		rep, code, _ := benchRun(t, "--url", orch, "--api", "llorch", "--model", "tiny", "--api-key", ctlKey, "--requests", "1",
			"--gen-tokens", "2", "--prompt-tokens", "8")
		if code == 0 && rep.Steps[0].OK == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the orchestrator never ran a task: %+v", rep)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep, code, stderr := benchRun(t, "--url", orch, "--api", "llorch", "--model", "tiny", "--api-key", ctlKey,
		"--concurrency", "2", "--requests", "4", "--prompt-tokens", "uniform:20:60", "--gen-tokens", "uniform:4:16")
	if code != 0 {
		t.Fatalf("llorch API: exit %d: %s", code, stderr)
	}
	checkCounts(t, rep, 1, 4)
	if rep.API != "llorch" || !strings.HasPrefix(rep.Server, "llorch orchestrator ") {
		t.Errorf("report %+v", rep)
	}
	rep, code, stderr = benchRun(t, "--url", orch, "--endpoint", "chat", "--api-key", ctlKey,
		"--sessions", "2", "--turns", "2", "--concurrency", "2", "--prompt-tokens", "20", "--gen-tokens", "6", "--shared-prefix", "10")
	if code != 0 {
		t.Fatalf("chat sessions: exit %d: %s", code, stderr)
	}
	checkCounts(t, rep, 1, 4)
	if rep.Model != "tiny" || rep.Workload.Sessions != 2 {
		t.Errorf("report %+v", rep)
	}

	// The orchestrator's trace of these runs, replayed: as many requests,
	// each generating what its task generated.
	var recs []api.TraceRecord
	deadline = time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(tracePath)
		if err == nil {
			recs, err = bench.ReadTrace(bytes.NewReader(data))
		}
		if err == nil && len(recs) >= 12 { // 4 + 4 measured, 2 + 2 probes
			if err := os.WriteFile(tracePath+".copy", data, 0o600); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace: %d records (%v)", len(recs), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := 0
	for _, r := range recs {
		switch {
		case r.OutputTokens > 0:
			want += r.OutputTokens
		case r.MaxTokens > 0: // a task that failed before its first token
			want += r.MaxTokens
		default:
			want += 128 // --gen-tokens
		}
	}
	rep, code, stderr = benchRun(t, "--url", orch, "--api", "llorch", "--model", "tiny", "--api-key", ctlKey,
		"--trace", tracePath+".copy", "--trace-speed", "20")
	if code != 0 {
		t.Fatalf("trace replay: exit %d: %s", code, stderr)
	}
	checkCounts(t, rep, 1, len(recs))
	if st := rep.Steps[0]; st.OutputTokens != want || st.Short != 0 {
		t.Errorf("replay generated %d tokens (%d short), the trace %d", st.OutputTokens, st.Short, want)
	}
}

// Bad flags exit 2 before any request; a run whose every request failed
// prints its report and exits 1; errors are reported by status and code.
func TestBenchErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--url", "ftp://127.0.0.1:1"},
		{"--url", "127.0.0.1:1", "--prompt-tokens", "uniform:9:3"},
		{"--url", "127.0.0.1:1", "--requests", "-1"},
		{"--url", "127.0.0.1:1", "--concurrency", "1,99999"},
		{"--url", "127.0.0.1:1", "--rate", "fast"},
		{"--url", "127.0.0.1:1", "--warmup", "x"},
		{"--url", "127.0.0.1:1", "--plot", "chart.gif"},
		{"--url", "127.0.0.1:1", "--trace", "/nonexistent/trace.jsonl"},
		{"--prompt-tokens", "8"},
	} {
		if _, code, stderr := benchRun(t, args...); code != 2 || !strings.Contains(stderr, "ctl bench") {
			t.Errorf("%v: exit %d, %s", args, code, stderr)
		}
	}
	// Nothing answers on port 1.
	rep, code, _ := benchRun(t, "--url", "127.0.0.1:1", "--requests", "2", "--model", "m")
	if code != 1 || rep.Steps[0].Errors["0 connect"] != 2 {
		t.Errorf("unreachable: exit %d, %+v", code, rep.Steps)
	}
	// 401 on every request; 429 on every other one.
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer good":
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`)
		case r.URL.Path != "/v1/completions":
			http.NotFound(w, r)
		default:
			if n.Add(1)%2 == 0 {
				w.WriteHeader(http.StatusTooManyRequests)
				fmt.Fprint(w, `{"error":{"message":"slow down","type":"rate_limit_error","code":"rate_limit_exceeded"}}`)
				return
			}
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\n"+
				"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n")
		}
	}))
	defer srv.Close()
	cmd := ctl("bench", "--url", srv.URL, "--model", "m", "--requests", "3", "--api-key", "bad")
	var out bytes.Buffer
	cmd.Stdout = &out
	if code := exitCode(cmd.Run()); code != 1 || !strings.Contains(out.String(), `error "401 invalid_api_key" ×3`) {
		t.Errorf("401: exit %d\n%s", code, out.String())
	}
	// The calibration probes take the first two answers (one 429).
	rep, code, stderr := benchRun(t, "--url", srv.URL, "--model", "m", "--requests", "4", "--api-key", "good")
	if st := rep.Steps[0]; code != 0 || st.OK != 2 || st.Errors["429 rate_limit_exceeded"] != 2 || st.OutputTokens != 4 {
		t.Errorf("429: exit %d %+v %s", code, st, stderr)
	}
}
