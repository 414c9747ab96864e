package ctl_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/testkit"
)

// ctl workers and ctl tasks show a real orchestrator's view.
func TestWorkersAndTasks(t *testing.T) {
	orch := startOrchestrator(t, "--api-key-file", writeKeys(t), "--worker-token", "wt-ctl-test")
	kit.StartWorker(t, nil, "--model", kit.Tiny, "--model-id", "tiny", "--slots", "1", "--threads", "1",
		"--worker-id", "w-ctl", "--orchestrator", orch, "--token", "wt-ctl-test", "--heartbeat", "200ms")

	var out []byte
	deadline := time.Now().Add(60 * time.Second)
	for {
		var err error
		out, err = ctl("workers", "--orchestrator", orch, "--api-key", ctlKey).CombinedOutput()
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

	req, err := http.NewRequest(http.MethodPost, orch+"/v2/tasks", strings.NewReader(`{"model":"tiny","prompt":"hi","max_tokens":3}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ctlKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var acc api.TaskAccepted
	err = json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusAccepted || acc.TaskID == "" {
		t.Fatalf("submit: %d %+v %v", resp.StatusCode, acc, err)
	}

	out, err = ctl("tasks", "--orchestrator", orch, "--api-key", ctlKey, "--json").Output()
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

// ctlKey is the admin key of the orchestrator the tests start.
const ctlKey = "sk-ctl-test-key"

func writeKeys(t *testing.T) string {
	t.Helper()
	path := t.TempDir() + "/keys"
	if err := os.WriteFile(path, []byte("# keys\n"+ctlKey+" admin ctl\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startOrchestrator runs `llorch orchestrate` on a port the OS chooses and
// returns its URL, read from its "orchestrator listening" log line (it has no
// address file yet). It is killed when the test ends.
func startOrchestrator(t *testing.T, args ...string) string {
	t.Helper()
	o := exec.Command(kit.Bin, append([]string{"orchestrate", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir()}, args...)...)
	stderr, err := o.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	found := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			log.WriteString(line + "\n")
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = o.Process.Kill()
		<-copied
		_ = o.Wait()
		if t.Failed() {
			t.Logf("orchestrator log:\n%s", log.String())
		}
	})
	select {
	case url := <-found:
		return url
	case <-copied:
		t.Fatal("the orchestrator exited before it listened")
	case <-time.After(testkit.ReadyTimeout):
		t.Fatal("the orchestrator did not log its address")
	}
	return ""
}

var listening = regexp.MustCompile(`msg="orchestrator listening" addr=(http://127\.0\.0\.1:[0-9]+)`)
