package ctl_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

// ctl usage shows a real orchestrator's usage: the tokens its tasks
// streamed, by key and model, a refused request's code; as a table, JSON
// and CSV; a user key sees its own usage only.
func TestUsage(t *testing.T) {
	const aliceKey = "sk-alice-usage-key"
	keys := t.TempDir() + "/keys"
	if err := os.WriteFile(keys, []byte(ctlKey+" admin ctl\n"+aliceKey+" user alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	orch := startOrchestrator(t, "--api-key-file", keys, "--worker-token", "wt-ctl-usage")
	kit.StartWorker(t, nil, "--model", kit.Tiny, "--model-id", "tiny", "--slots", "2", "--threads", "1",
		"--worker-id", "w-usage", "--orchestrator", orch, "--token", "wt-ctl-usage", "--heartbeat", "200ms")

	submit := func(model string, maxTokens int) (*http.Response, api.TaskAccepted) {
		body, _ := json.Marshal(api.TaskRequest{Model: model, ExecuteRequest: api.ExecuteRequest{Prompt: "count to ten",
			MaxTokens: &maxTokens, IgnoreEOS: true}})
		req, _ := http.NewRequest(http.MethodPost, orch+"/v2/tasks", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+aliceKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var acc api.TaskAccepted
		_ = json.NewDecoder(resp.Body).Decode(&acc)
		return resp, acc
	}
	// Wait for the worker first: a task refused while it registers would
	// count as a request of its own (MODEL_NOT_FOUND).
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodGet, orch+"/v2/workers", nil)
		req.Header.Set("Authorization", "Bearer "+ctlKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(resp.Body)
		resp.Body.Close()
		if strings.Contains(body.String(), `"state":"healthy"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker never became healthy: %s", body.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var ids []string
	for _, n := range []int{3, 5} {
		resp, acc := submit("tiny", n)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("submit: %d", resp.StatusCode)
		}
		ids = append(ids, acc.TaskID)
	}
	if resp, _ := submit("no-such-model", 1); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("an unknown model: %d", resp.StatusCode)
	}
	var tokens int64
	for _, id := range ids {
		for {
			req, _ := http.NewRequest(http.MethodGet, orch+"/v2/tasks/"+id, nil)
			req.Header.Set("Authorization", "Bearer "+aliceKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var st api.TaskStatus
			_ = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
			if st.Status == api.TaskSucceeded {
				tokens += int64(st.TokensOut)
				break
			}
			if st.Status == api.TaskFailed || st.Status == api.TaskCancelled || time.Now().After(deadline) {
				t.Fatalf("task %s: %+v", id, st)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The journal counts ended tasks in its next batch.
	var u api.Usage
	for {
		out, err := ctl("usage", "--orchestrator", orch, "--api-key", ctlKey, "--json").Output()
		if err != nil {
			t.Fatalf("ctl usage --json: %v", err)
		}
		u = api.Usage{}
		if err := json.Unmarshal(out, &u); err != nil {
			t.Fatalf("ctl usage --json: %v\n%s", err, out)
		}
		if u.Totals.Requests == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage never showed 3 requests:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if u.Totals.GeneratedTokens != tokens || tokens != 8 || u.Totals.PromptTokens <= 0 || u.Totals.Errors[api.CodeModelNotFound] != 1 {
		t.Fatalf("totals %+v, want %d generated tokens and a MODEL_NOT_FOUND", u.Totals, tokens)
	}
	// Per key and model: alice's tiny row and her refusal (no model).
	if len(u.Rows) != 2 || u.Rows[0].Key != "alice" || u.Rows[0].Model != "" || u.Rows[1].Model != "tiny" || u.Rows[1].GeneratedTokens != 8 {
		t.Fatalf("rows %+v", u.Rows)
	}

	out, err := ctl("usage", "--orchestrator", orch, "--api-key", ctlKey, "--since", "1h").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "KEY") || !strings.Contains(lines[2], "tiny") ||
		!strings.HasPrefix(lines[3], "total") || !strings.Contains(lines[1], "MODEL_NOT_FOUND=1") {
		t.Fatalf("ctl usage:\n%s", out)
	}

	out, err = ctl("usage", "--orchestrator", orch, "--api-key", ctlKey, "--csv", "--by", "hour").Output()
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(recs) < 3 || recs[0][0] != "hour" || recs[0][2] != "model" || recs[0][6] != "generated" {
		t.Fatalf("ctl usage --csv: %v\n%s", err, out)
	}
	generated := 0
	for _, r := range recs[1:] { // the tasks may straddle an hour
		if r[2] == "tiny" {
			n, _ := strconv.Atoi(r[6])
			generated += n
		}
	}
	if generated != 8 {
		t.Fatalf("ctl usage --csv: %d generated tokens of tiny, want 8\n%s", generated, out)
	}

	out, err = ctl("usage", "--orchestrator", orch, "--api-key", aliceKey, "--by", "key", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	u = api.Usage{}
	if err := json.Unmarshal(out, &u); err != nil || len(u.Rows) != 1 || u.Rows[0].Key != "alice" || u.Rows[0].Requests != 3 {
		t.Fatalf("alice, by key: %v\n%s", err, out)
	}
	var stderr bytes.Buffer
	cmd := ctl("usage", "--orchestrator", orch, "--api-key", aliceKey, "--key", "ctl")
	cmd.Stderr = &stderr
	if err := cmd.Run(); exitCode(err) != 1 || !strings.Contains(stderr.String(), "403") {
		t.Fatalf("alice asking for another key: %v, %s", err, stderr.String())
	}
	if err := ctl("usage", "--orchestrator", orch, "--api-key", ctlKey, "--by", "day").Run(); exitCode(err) != 2 {
		t.Fatalf("--by day: %v, want exit 2", err)
	}
}
