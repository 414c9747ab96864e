package orchestrator

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

// readTrace reads a trace file's records.
func readTrace(t *testing.T, path string) []api.TraceRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []api.TraceRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec api.TraceRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, rec)
	}
	return out
}

// traceRun sends one task by each door (the native one with a session id)
// and one that fails, and returns the trace file's records and text.
func traceRun(t *testing.T, prompts bool) ([]api.TraceRecord, string) {
	t.Helper()
	fw := instantWorker(3)
	defer fw.Close()
	cfg := testConfig()
	cfg.TraceFile, cfg.TracePrompts = filepath.Join(t.TempDir(), "trace.jsonl"), prompts
	cfg.MaxAttempts = 1
	o := startOrch(t, cfg)
	for _, w := range []api.WorkerRegistration{
		{WorkerID: "fake", URL: fw.URL, Model: api.ModelInfo{ID: "fake"}, Slots: 2},
		{WorkerID: "nobody", URL: "http://127.0.0.1:1", Model: api.ModelInfo{ID: "gone"}, Slots: 1},
	} {
		o.do(t, http.MethodPost, "/v2/workers/register", w).Body.Close()
	}
	req := taskReq("fake", "native-prompt-text", 3, 1)
	req.SessionID = "secret-session-42"
	o.submitStream(t, req)
	for _, door := range []struct{ path, body string }{
		{"/v1/completions", `{"model":"fake","prompt":"completion-prompt-text","max_tokens":3}`},
		{"/v1/chat/completions", `{"model":"fake","messages":[{"role":"user","content":"chat-message-text"}],"max_tokens":3}`},
	} {
		resp := o.do(t, http.MethodPost, door.path, door.body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", door.path, resp.StatusCode)
		}
	}
	failed := o.submitAsync(t, taskReq("gone", "failing-prompt-text", 3, 1))
	if st := o.waitTask(t, failed.TaskID, 20*time.Second); st.Status != api.TaskFailed {
		t.Fatalf("the task for a dead worker: %+v", st)
	}
	var recs []api.TraceRecord
	waitFor(t, 10*time.Second, "4 trace records", func() bool { recs = readTrace(t, cfg.TraceFile); return len(recs) == 4 })
	fi, err := os.Stat(cfg.TraceFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("trace file mode %v, want 0600", fi.Mode().Perm())
	}
	text, _ := os.ReadFile(cfg.TraceFile)
	return recs, string(text)
}

// --trace-file: one record per finished task, by every door; lengths and
// timings; the session as a fingerprint; no prompt text unless asked.
func TestTraceFile(t *testing.T) {
	recs, text := traceRun(t, false)
	byAPI := map[string]api.TraceRecord{}
	for _, r := range recs {
		if r.Status == api.TaskFailed {
			byAPI["failed"] = r
			continue
		}
		byAPI[r.API] = r
	}
	for _, door := range []string{doorTasks, doorCompletions, doorChat} {
		r, ok := byAPI[door]
		if !ok {
			t.Fatalf("no record for %s: %+v", door, recs)
		}
		if r.Model != "fake" || r.Status != api.TaskSucceeded || r.OutputTokens != 3 || r.MaxTokens != 3 ||
			r.TTFTMs <= 0 || r.TotalMs < r.TTFTMs || r.ArrivalMs <= 0 || r.Priority != api.PriorityInteractive {
			t.Fatalf("%s: %+v", door, r)
		}
		if r.Prompt != "" || r.Messages != nil {
			t.Fatalf("%s: prompt recorded without --trace-prompts: %+v", door, r)
		}
	}
	if f := byAPI["failed"]; f.Code != api.CodeWorkerLost || f.Model != "gone" || f.OutputTokens != 0 || f.API != doorTasks {
		t.Fatalf("failed task: %+v", f)
	}
	if s := byAPI[doorTasks].Session; s == "" || strings.Contains(s, "secret") || byAPI[doorCompletions].Session != "" {
		t.Fatalf("sessions %q, %q", s, byAPI[doorCompletions].Session)
	}
	for _, secret := range []string{"secret-session-42", "prompt-text", "chat-message-text"} {
		if strings.Contains(text, secret) {
			t.Fatalf("the trace holds %q:\n%s", secret, text)
		}
	}
}

// --trace-prompts: the prompt or messages too.
func TestTracePrompts(t *testing.T) {
	recs, text := traceRun(t, true)
	for _, want := range []string{"native-prompt-text", "completion-prompt-text", "chat-message-text", "failing-prompt-text"} {
		if !strings.Contains(text, want) {
			t.Fatalf("the trace lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "secret-session-42") {
		t.Fatalf("the trace holds the session id:\n%s", text)
	}
	for _, r := range recs {
		if r.API == doorChat && (len(r.Messages) != 1 || r.Messages[0].Content != "chat-message-text") {
			t.Fatalf("chat record: %+v", r)
		}
	}
}

// The writer never blocks: past its queue records are dropped and counted;
// at shutdown it writes what is queued and closes the file; a failed write
// is counted, not fatal.
func TestTraceWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trace.jsonl")
	m := newMetrics()
	tr, err := openTrace(path, false, m, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for i := range traceQueue + 5 {
		tr.add(api.TraceRecord{ArrivalMs: int64(i + 1), Model: "m", API: doorTasks, Status: api.TaskSucceeded})
	}
	if got := value(m.traceDropped); got != 5 {
		t.Fatalf("dropped %v, want 5", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // shut down at once: what is queued is still written
	tr.loop(ctx)
	recs := readTrace(t, path)
	if len(recs) != traceQueue || recs[0].ArrivalMs != 1 || recs[len(recs)-1].ArrivalMs != traceQueue {
		t.Fatalf("%d records after shutdown, want %d in order", len(recs), traceQueue)
	}
	if err := tr.f.Close(); err == nil {
		t.Fatal("the file was left open")
	}

	// A file that cannot be written: counted, logged once, the loop goes on.
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	tr.f = ro
	tr.add(api.TraceRecord{Model: "m"})
	tr.loop(ctx)
	if got := value(m.traceErrors); got < 1 {
		t.Fatalf("write errors %v", got)
	}
	if n := len(readTrace(t, path)); n != traceQueue {
		t.Fatalf("%d records, want %d", n, traceQueue)
	}
}

func TestTraceConfig(t *testing.T) {
	cfg := Config{TracePrompts: true}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "trace file") {
		t.Fatalf("prompts without a file: %v", err)
	}
}
