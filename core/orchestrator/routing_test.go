package orchestrator

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/routing"
	"github.com/llorch/llorch/embed"
)

func putScript(t *testing.T, o *orch, src string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, o.URL+"/v2/routing/script", strings.NewReader(src))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// Routing scripts decide admission and placement; what they cannot decide
// (errors, timeouts, decisions naming a non-candidate) falls back to the
// built-in policy, and the task explanation says so.
func TestRoutingScripts(t *testing.T) {
	cfg := testConfig()
	cfg.RoutingHeaders = []string{"X-Tenant-Plan"}
	cfg.RoutingTimeout = 50 * time.Millisecond
	o := startOrch(t, cfg)
	startWorker(t, o, "w1", 2)
	startWorker(t, o, "w2", 2)

	t.Run("reject big batch (embedded example)", func(t *testing.T) {
		src, err := fs.ReadFile(embed.RoutingExamples, "reject_big_batch.tengo")
		if err != nil {
			t.Fatal(err)
		}
		if resp := putScript(t, o, string(src)); resp.StatusCode != http.StatusOK {
			t.Fatalf("put: %d", resp.StatusCode)
		}
		big := taskReq("tiny", "x", 1001, 1)
		big.Priority = api.PriorityBatch
		e := apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", big), http.StatusBadRequest, "BATCH_TOO_BIG")
		if !strings.Contains(e.Message, "1001") {
			t.Fatalf("message %q", e.Message)
		}
		small := taskReq("tiny", "x", 4, 1)
		small.Priority = api.PriorityBatch
		apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", small, "X-Tenant-Plan", "trial"), http.StatusForbidden, "BATCH_NOT_ALLOWED")
		if st := o.waitTask(t, o.submitAsync(t, small).TaskID, 30*time.Second); st.Status != api.TaskSucceeded {
			t.Fatalf("small batch: %+v", st)
		}
	})

	t.Run("dispatch to a chosen worker", func(t *testing.T) {
		putScript(t, o, `if stage == "place" { decision = {action: "dispatch", worker: "w2"} }`).Body.Close()
		for range 3 {
			acc := o.submitAsync(t, taskReq("tiny", "pick w2", 3, 1))
			st := o.waitTask(t, acc.TaskID, 30*time.Second)
			if st.WorkerID != "w2" || st.Explanation == nil || !strings.Contains(st.Explanation.Routing, "dispatch w2") {
				t.Fatalf("status %+v, explanation %+v", st, st.Explanation)
			}
		}
	})

	t.Run("non-candidate is ignored", func(t *testing.T) {
		putScript(t, o, `if stage == "place" { decision = {action: "dispatch", worker: "ghost"} }`).Body.Close()
		st := o.waitTask(t, o.submitAsync(t, taskReq("tiny", "ghost", 3, 1)).TaskID, 30*time.Second)
		if st.Status != api.TaskSucceeded || !strings.Contains(st.Explanation.Routing, "ignored") {
			t.Fatalf("status %+v, routing %q", st, st.Explanation.Routing)
		}
	})

	t.Run("infinite loop falls back within budget", func(t *testing.T) {
		putScript(t, o, `for { x := 1 }`).Body.Close()
		start := time.Now()
		acc := o.submitAsync(t, taskReq("tiny", "loop", 3, 1))
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("admission took %v with a looping script", d)
		}
		st := o.waitTask(t, acc.TaskID, 30*time.Second)
		if st.Status != api.TaskSucceeded || !strings.Contains(st.Explanation.Routing, "timeout") {
			t.Fatalf("status %+v, routing %q", st, st.Explanation.Routing)
		}
		if m := get(t, o.URL+"/metrics"); !strings.Contains(m, `llorch_routing_calls_total{outcome="timeout",stage="admit"}`) {
			t.Fatal("no timeout outcome in metrics")
		}
	})

	t.Run("wait then run", func(t *testing.T) {
		putScript(t, o, `if stage == "place" { decision = {action: "wait", retry_after_ms: 200} }`).Body.Close()
		acc := o.submitAsync(t, taskReq("tiny", "wait", 3, 1))
		if st := o.waitExplained(t, acc.TaskID, "waiting"); st.Status != api.TaskQueued {
			t.Fatalf("status %+v, explanation %+v", st, st.Explanation)
		}
		putScript(t, o, `decision = undefined`).Body.Close()
		if st := o.waitTask(t, acc.TaskID, 30*time.Second); st.Status != api.TaskSucceeded {
			t.Fatalf("after the wait: %+v", st)
		}
	})

	t.Run("syntax error keeps the old script", func(t *testing.T) {
		good := `if stage == "place" { decision = {action: "score", scores: {w1: 10}} }`
		putScript(t, o, good).Body.Close()
		resp := putScript(t, o, "if stage == {\n")
		e := apiErr(t, resp, http.StatusBadRequest, api.CodeInvalidRequest)
		if !strings.Contains(e.Message, ":2:") && !strings.Contains(e.Message, ":1:") {
			t.Fatalf("no line:col in %q", e.Message)
		}
		got := get(t, o.URL+"/v2/routing/script")
		if got != good {
			t.Fatalf("script now %q", got)
		}
		if rs := decode[api.RoutingStatus](t, o.do(t, http.MethodGet, "/v2/routing", nil), http.StatusOK); !rs.Loaded || rs.Source != good || rs.Name != "api.tengo" {
			t.Fatalf("GET /v2/routing: %+v", rs)
		}
		st := o.waitTask(t, o.submitAsync(t, taskReq("tiny", "score", 3, 1)).TaskID, 30*time.Second)
		if st.WorkerID != "w1" {
			t.Fatalf("scored task ran on %s", st.WorkerID)
		}
	})

	t.Run("snapshot and delete", func(t *testing.T) {
		var snap routing.Snapshot
		if err := json.Unmarshal([]byte(get(t, o.URL+"/v2/routing/snapshot")), &snap); err != nil || len(snap.Candidates) != 2 {
			t.Fatalf("snapshot %+v, %v", snap, err)
		}
		req, _ := http.NewRequest(http.MethodDelete, o.URL+"/v2/routing/script", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		apiErr(t, o.do(t, http.MethodGet, "/v2/routing/script", nil), http.StatusNotFound, api.CodeNotFound)
		// The status says so without an error.
		if rs := decode[api.RoutingStatus](t, o.do(t, http.MethodGet, "/v2/routing", nil), http.StatusOK); rs.Loaded || rs.Source != "" {
			t.Fatalf("GET /v2/routing with no script: %+v", rs)
		}
	})
}

// A script file is reloaded when it changes; a broken edit keeps the old one.
func TestRoutingFileReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.tengo")
	write := func(src string) {
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`if stage == "admit" { decision = {action: "reject", code: "CLOSED", message: "closed", status: 403} }`)
	cfg := testConfig()
	cfg.RoutingFile = path
	o := startOrch(t, cfg)
	startWorker(t, o, "w1", 1)
	apiErr(t, o.do(t, http.MethodPost, "/v2/tasks", taskReq("tiny", "x", 2, 1)), http.StatusForbidden, "CLOSED")
	write(`decision = {action: "admit"}  `)
	waitFor(t, 10*time.Second, "reload", func() bool {
		resp := o.do(t, http.MethodPost, "/v2/tasks", taskReq("tiny", "x", 2, 1))
		resp.Body.Close()
		return resp.StatusCode == http.StatusAccepted
	})
	write(`this is not tengo (`)
	waitFor(t, 10*time.Second, "the broken edit tried", func() bool {
		return strings.Contains(get(t, o.URL+"/metrics"), `llorch_routing_reloads_total{result="error"} 1`)
	})
	resp := o.do(t, http.MethodPost, "/v2/tasks", taskReq("tiny", "x", 2, 1))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("broken edit replaced the script: %d", resp.StatusCode)
	}
}
