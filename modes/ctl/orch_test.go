package ctl_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/testkit"
)

// ctl workers and ctl tasks show a real orchestrator's view.
func TestWorkersAndTasks(t *testing.T) {
	oport := testkit.FreePort(t)
	orch := fmt.Sprintf("http://127.0.0.1:%d", oport)
	o := exec.Command(kit.Bin, "orchestrate", "--listen", fmt.Sprintf("127.0.0.1:%d", oport), "--data-dir", t.TempDir(), "--api-key-file", writeKeys(t), "--worker-token", "wt")
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Process.Kill(); o.Wait() })
	w := exec.Command(kit.Bin, "worker", "--model", kit.Tiny, "--model-id", "tiny", "--port", fmt.Sprint(testkit.FreePort(t)),
		"--slots", "1", "--threads", "1", "--worker-id", "w-ctl", "--orchestrator", orch, "--token", "wt", "--heartbeat", "200ms")
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Process.Kill(); w.Wait() })

	var out []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		var err error
		out, err = ctl("workers", "--orchestrator", orch, "--api-key", "k1").CombinedOutput()
		if err == nil && strings.Contains(string(out), "healthy") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ctl workers never showed a healthy worker: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(string(out), "w-ctl") || !strings.Contains(string(out), "tiny") {
		t.Fatalf("ctl workers:\n%s", out)
	}

	req, _ := http.NewRequest(http.MethodPost, orch+"/v2/tasks", strings.NewReader(`{"model":"tiny","prompt":"hi","max_tokens":3}`))
	req.Header.Set("Authorization", "Bearer k1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var acc api.TaskAccepted
	_ = json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()

	out, err = ctl("tasks", "--orchestrator", orch, "--api-key", "k1", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Tasks []api.TaskStatus }
	if err := json.Unmarshal(out, &list); err != nil || len(list.Tasks) != 1 || list.Tasks[0].TaskID != acc.TaskID {
		t.Fatalf("ctl tasks --json: %v\n%s", err, out)
	}
	// A wrong key is one clear line and exit 1.
	var stderr bytes.Buffer
	cmd := ctl("tasks", "--orchestrator", orch, "--api-key", "nope")
	cmd.Stderr = &stderr
	if err := cmd.Run(); exitCode(err) != 1 || !strings.Contains(stderr.String(), "401") {
		t.Fatalf("wrong key: %v, %s", err, stderr.String())
	}
}

func writeKeys(t *testing.T) string {
	t.Helper()
	path := t.TempDir() + "/keys"
	if err := os.WriteFile(path, []byte("# keys\nk1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
