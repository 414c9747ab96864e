package orchestrator

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/testkit"
)

// Kill -9 the orchestrator process with tasks running and queued: after a
// restart on the same data dir they run to the end, and a client resuming
// with Last-Event-ID sees no gap and no repeat.
func TestRestartDurability(t *testing.T) {
	dataDir := t.TempDir()
	port := testkit.FreePort(t)
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := []string{"orchestrate", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", dataDir, "--log-level", "debug"}
	first := spawn(t, args...)
	o := &orch{URL: url}
	up := func() bool {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}
	waitFor(t, 30*time.Second, "orchestrator up", up)
	wport := testkit.FreePort(t)
	spawn(t, "worker", "--backend", "cpu", "--model", kit.Tiny, "--model-id", "tiny", "--port", strconv.Itoa(wport),
		"--threads", "1", "--slots", "1", "--worker-id", "w1", "--orchestrator", url, "--heartbeat", "200ms")
	waitFor(t, 60*time.Second, "worker registered", func() bool {
		resp, err := http.Get(url + "/v2/workers")
		if err != nil {
			return false
		}
		v := decode[struct{ Workers []api.WorkerView }](t, resp, http.StatusOK)
		return len(v.Workers) == 1 && v.Workers[0].State == api.WorkerHealthy
	})

	running := o.submitAsync(t, newTask("tiny", "a long story about durable queues", 3000, 11))
	queued := []api.TaskAccepted{
		o.submitAsync(t, newTask("tiny", "queued one", 8, 12)),
		o.submitAsync(t, newTask("tiny", "queued two", 8, 13)),
	}
	waitFor(t, 30*time.Second, "tokens journaled", func() bool { return o.taskStatus(t, running.TaskID).TokensOut >= 40 })
	time.Sleep(100 * time.Millisecond) // let the journal catch up with what clients saw
	first.kill()

	spawn(t, args...)
	waitFor(t, 30*time.Second, "orchestrator up again", up)
	st := o.waitTask(t, running.TaskID, 120*time.Second)
	if st.Status != api.TaskSucceeded || st.TokensOut != 3000 {
		t.Fatalf("resumed task: %+v", st)
	}
	all := relayed(readAll(t, o.do(t, http.MethodGet, running.EventsURL, nil)))
	text, _ := checkStream(t, all, 0)
	if text != st.Text {
		t.Fatalf("events text differs from status text")
	}
	tokens := 0
	for _, e := range all {
		if e.Name == api.EventToken {
			tokens++
		}
	}
	if tokens != 3000 {
		t.Fatalf("%d token events, want 3000 (no repeat, no gap)", tokens)
	}
	rest := relayed(readAll(t, o.do(t, http.MethodGet, running.EventsURL, nil, "Last-Event-ID", "30")))
	checkStream(t, rest, 30)
	for _, q := range queued {
		if st := o.waitTask(t, q.TaskID, 60*time.Second); st.Status != api.TaskSucceeded || st.TokensOut != 8 {
			t.Fatalf("queued task after restart: %+v", st)
		}
	}
}
