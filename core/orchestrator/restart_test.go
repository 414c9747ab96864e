package orchestrator

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
	"github.com/llorch/llorch/core/testkit"
)

// orchProc is an orchestrator child process on a data dir.
type orchProc struct {
	*proc
	URL string
}

// startOrchProc starts `llorch orchestrate` on a port the OS chooses and
// waits until it answers.
func startOrchProc(t *testing.T, dataDir, listen string, extra ...string) *orchProc {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "orch.addr")
	p := spawn(t, append([]string{"orchestrate", "--listen", listen, "--addr-file", addr, "--data-dir", dataDir,
		"--log-level", "debug", "--heartbeat-timeout", "2s", "--dead-after", "3s"}, extra...)...)
	url := testkit.WaitAddr(t, addr, p.done, 30*time.Second)
	waitFor(t, 30*time.Second, "orchestrator up", func() bool {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return &orchProc{proc: p, URL: url}
}

// Kill -9 the orchestrator with tasks running (beside other jobs on the same
// worker, which changes llama.cpp's batches) and queued: after a restart on
// the same data dir they run to the end, each continued from the tokens it
// had sent. A client that was streaming resumes with Last-Event-ID and sees
// neither a gap nor a repeat, and the text it assembles is the task's text.
func TestRestartDurability(t *testing.T) {
	dataDir := t.TempDir()
	first := startOrchProc(t, dataDir, "127.0.0.1:0")
	o := &orch{URL: first.URL}
	// The second orchestrator listens where the first did, so the worker
	// (and the clients) find it at the same URL.
	host := first.URL[len("http://"):]
	kit.StartWorker(t, nil, "--backend", "cpu", "--model", kit.Tiny, "--model-id", "tiny", "--threads", "1",
		"--slots", "4", "--worker-id", "w1", "--orchestrator", first.URL, "--heartbeat", "200ms", "--ctx", "4096")
	waitFor(t, 60*time.Second, "worker registered", func() bool { return workerStateAt(t, first.URL, "w1") == api.WorkerHealthy })

	const n = 1500
	var running []api.TaskAccepted
	for i := range 3 {
		running = append(running, o.submitAsync(t, taskReq("tiny", "a long story about durable queues "+strconv.Itoa(i), n, int64(11+i))))
	}
	queued := []api.TaskAccepted{
		o.submitAsync(t, taskReq("tiny", "queued one", 8, 12)),
		o.submitAsync(t, taskReq("tiny", "queued two", 8, 13)),
	}
	// A client streams the first task live.
	live, err := http.Get(first.URL + running[0].EventsURL)
	if err != nil {
		t.Fatal(err)
	}
	r := sse.NewReader(live.Body)
	var seen []ev
	for len(seen) < 40 {
		e, err := r.Next()
		if err != nil {
			t.Fatalf("live stream: %v", err)
		}
		if e.Event != api.EventQueued {
			seen = append(seen, ev{ID: e.ID, Name: e.Event, Data: e.Data})
		}
	}
	first.kill() // mid-stream, with events a batch has not journaled yet
	// Whatever else reached the client before the connection broke.
	for {
		e, err := r.Next()
		if err != nil {
			break
		}
		if e.Event != api.EventQueued {
			seen = append(seen, ev{ID: e.ID, Name: e.Event, Data: e.Data})
		}
	}
	live.Body.Close()

	second := startOrchProc(t, dataDir, host)
	if second.URL != first.URL {
		t.Fatalf("second orchestrator at %s, want %s", second.URL, first.URL)
	}
	waitFor(t, 60*time.Second, "worker back", func() bool { return workerStateAt(t, second.URL, "w1") == api.WorkerHealthy })

	// The live client resumes after the last event it saw.
	resp := o.do(t, http.MethodGet, running[0].EventsURL, nil, "Last-Event-ID", seen[len(seen)-1].ID)
	rest := relayed(readAll(t, resp))
	all := append(append([]ev(nil), seen...), rest...)
	text, last := checkStream(t, all, 0)
	if last.Name != api.EventEnd {
		t.Fatalf("resumed stream ended with %s %s", last.Name, last.Data)
	}
	for i, acc := range running {
		st := o.waitTask(t, acc.TaskID, 180*time.Second)
		if st.Status != api.TaskSucceeded || st.TokensOut != n {
			t.Fatalf("task %d after the restart: %+v", i, st)
		}
		evs := relayed(readAll(t, o.do(t, http.MethodGet, acc.EventsURL, nil)))
		got, _ := checkStream(t, evs, 0)
		if got != st.Text {
			t.Fatalf("task %d: events text differs from status text", i)
		}
		if tokens := countTokens(evs); tokens != n {
			t.Fatalf("task %d: %d token events, want %d (no repeat, no gap)", i, tokens, n)
		}
		if i == 0 && got != text {
			t.Fatalf("the live client assembled a text that differs from the task's")
		}
	}
	for _, q := range queued {
		if st := o.waitTask(t, q.TaskID, 60*time.Second); st.Status != api.TaskSucceeded || st.TokensOut != 8 {
			t.Fatalf("queued task after restart: %+v", st)
		}
	}
	if m := get(t, second.URL+"/metrics"); !regexp.MustCompile(`llorch_resumes_total\{cause="restart"\} [1-9]`).MatchString(m) {
		t.Errorf("no restart resumes counted")
	}
}

func countTokens(evs []ev) int {
	n := 0
	for _, e := range evs {
		if e.Name == api.EventToken {
			n++
		}
	}
	return n
}

func workerStateAt(t *testing.T, url, id string) string {
	resp, err := http.Get(url + "/v2/workers")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	v := struct{ Workers []api.WorkerView }{}
	if err := json.Unmarshal(data, &v); err != nil {
		return ""
	}
	for _, w := range v.Workers {
		if w.WorkerID == id {
			return w.State
		}
	}
	return ""
}
