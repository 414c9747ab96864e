package orchestrate

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/llorch/llorch/core/orchestrator"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/testkit"
)

var kit *testkit.Kit

func TestMain(m *testing.M) { testkit.Main(m, func(k *testkit.Kit) { kit = k }) }

// daemon is an `llorch orchestrate` child process.
type daemon struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *strings.Builder
}

func startDaemon(t *testing.T, dataDir string, args ...string) *daemon {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "addr")
	d := &daemon{done: make(chan struct{}), log: &strings.Builder{}}
	d.cmd = exec.Command(kit.Bin, append([]string{"orchestrate", "--listen", "127.0.0.1:0", "--addr-file", addr, "--data-dir", dataDir}, args...)...)
	logf, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		// A graceful stop: the orchestrator ends the pool commands it runs
		// (children writing in the test's directories) before it exits.
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(20 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			data, _ := os.ReadFile(logf.Name())
			t.Logf("orchestrator log:\n%s", data)
		}
	})
	d.URL = testkit.WaitAddr(t, addr, d.done, 30*time.Second)
	return d
}

func (d *daemon) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, d.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// A script that would run past its budget on every call fails its trial in
// a sandboxed child: PUT refuses it; one already stored is not loaded at
// startup (the built-in policy decides) and the orchestrator serves.
func TestScriptTrial(t *testing.T) {
	dir := t.TempDir()
	d := startDaemon(t, dir)
	const loop = "for { x := 1 }\n"
	if code, body := d.do(t, http.MethodPut, "/v2/routing/script", loop); code != http.StatusBadRequest || !strings.Contains(body, "trial") {
		t.Fatalf("PUT of a looping script: %d %s", code, body)
	}
	if code, _ := d.do(t, http.MethodGet, "/v2/routing/script", ""); code != http.StatusNotFound {
		t.Fatalf("a refused script is loaded: %d", code)
	}
	if code, body := d.do(t, http.MethodPut, "/v2/routing/script", "decision = undefined\n"); code != http.StatusOK {
		t.Fatalf("PUT of a good script: %d %s", code, body)
	}
	_ = d.cmd.Process.Kill()
	<-d.done

	// Store the looping script behind the orchestrator's back, as an older
	// llorch without trials could have.
	st, err := store.OpenOrchestrator(filepath.Join(dir, "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutSetting("routing_script", []byte(loop)); err != nil {
		t.Fatal(err)
	}
	st.Close()
	d = startDaemon(t, dir)
	waitFor(t, 30*time.Second, "healthy", func() bool { code, _ := d.do(t, http.MethodGet, "/healthz", ""); return code == 200 })
	if code, body := d.do(t, http.MethodGet, "/v2/routing/script", ""); code != http.StatusNotFound {
		t.Fatalf("the stored looping script was loaded: %d %s", code, body)
	}
}

// SIGHUP reloads the --routing-script file, even when a change keeps its
// size and modification time (which the file watcher cannot see).
func TestSIGHUPReloadsTheScript(t *testing.T) {
	path := filepath.Join(t.TempDir(), "route.tengo")
	a := `if stage == "admit" { decision = {action: "reject", code: "AAAA", status: 403} }` + "\n"
	b := `if stage == "admit" { decision = {action: "reject", code: "BBBB", status: 403} }` + "\n"
	if err := os.WriteFile(path, []byte(a), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, t.TempDir(), "--routing-script", path)
	code, body := d.do(t, http.MethodGet, "/v2/routing/script", "")
	if code != http.StatusOK || body != a {
		t.Fatalf("script %d %q", code, body)
	}
	if err := os.WriteFile(path, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond) // two rounds of the file watcher, which must not see it
	if _, body := d.do(t, http.MethodGet, "/v2/routing/script", ""); body != a {
		t.Fatalf("the watcher reloaded an unchanged stat: %q", body)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the SIGHUP reload", func() bool { _, body := d.do(t, http.MethodGet, "/v2/routing/script", ""); return body == b })
}

func TestLoadKeys(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	text := "# the operators\nsk-admin-000001 admin ops\n\n  sk-user-0000001  \nsk-user-0000002 user app # not a comment\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKeys(file, ""); err == nil || !strings.Contains(err.Error(), "line 5") || strings.Contains(err.Error(), "sk-user") {
		t.Fatalf("a line with four fields: %v", err)
	}
	text = "# the operators\nsk-admin-000001 admin ops\n\n  sk-user-0000001  \nsk-user-0000002 user app\n"
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := loadKeys(file, "sk-env-00000001,sk-env-00000002 admin ci")
	if err != nil {
		t.Fatal(err)
	}
	want := []orchestrator.Key{
		{Secret: "sk-admin-000001", Role: orchestrator.RoleAdmin, Name: "ops"},
		{Secret: "sk-user-0000001", Role: orchestrator.RoleUser},
		{Secret: "sk-user-0000002", Role: orchestrator.RoleUser, Name: "app"},
		{Secret: "sk-env-00000001", Role: orchestrator.RoleUser},
		{Secret: "sk-env-00000002", Role: orchestrator.RoleAdmin, Name: "ci"},
	}
	if len(keys) != len(want) {
		t.Fatalf("keys %+v", keys)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Errorf("key %d: %+v, want %+v", i, keys[i], want[i])
		}
	}
	if err := os.WriteFile(file, []byte("# nothing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadKeys(file, ""); err == nil {
		t.Fatal("a key file without keys is accepted")
	}
	if _, err := loadKeys("", "short"); err == nil || strings.Contains(err.Error(), "short") {
		t.Fatalf("a short env key: %v", err)
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// --fleet declares the file's pools and models at startup; a file that does
// not parse stops startup with a message naming the entry.
func TestFleetFlag(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "fleet.yaml")
	good := "pools:\n  - name: here\n    transport: local\n    pool_dir: " + filepath.Join(dir, "pool") + "\n    llorch_path: " + kit.Bin + "\n" +
		"models:\n  - id: tiny\n    source: file:" + kit.Tiny + "\n    min_replicas: 0\n    slots: 2\n"
	if err := os.WriteFile(file, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, t.TempDir(), "--fleet", file)
	if code, body := d.do(t, http.MethodGet, "/v2/models/tiny", ""); code != http.StatusOK || !strings.Contains(body, `"slots":2`) {
		t.Fatalf("model from --fleet: %d %s", code, body)
	}
	if code, body := d.do(t, http.MethodGet, "/v2/pools/here", ""); code != http.StatusOK || !strings.Contains(body, `"transport":"local"`) {
		t.Fatalf("pool from --fleet: %d %s", code, body)
	}
	// The pool is refreshed at once (a `llorch pool status` child writing in
	// dir): wait for it, so that nothing writes there when the test ends.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := d.do(t, http.MethodGet, "/v2/pools/here", "")
		if code == http.StatusOK && strings.Contains(body, `"state":"ok"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool here not refreshed: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := os.WriteFile(file, []byte(strings.Replace(good, "slots: 2", "slot: 2", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kit.Bin, "orchestrate", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
	cmd.Env = append(os.Environ(), "LLORCH_FLEET="+file)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), file) ||
		!strings.Contains(string(out), `models[0] "tiny": unknown field "slot"`) {
		t.Fatalf("a bad fleet file: %v\n%s", err, out)
	}
}

// --trace-file (or LLORCH_TRACE_FILE) is opened at startup with mode 0600;
// --trace-prompts without it, or a file that cannot be opened, is an error.
func TestTraceFlags(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "trace.jsonl")
	startDaemon(t, t.TempDir(), "--trace-file", path)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("trace file: %v %v", fi, err)
	}
	for _, c := range []struct{ env, want string }{
		{"LLORCH_TRACE_PROMPTS=true", "needs a trace file"},
		{"LLORCH_TRACE_FILE=" + filepath.Join(dir, "missing", "trace.jsonl"), filepath.Join(dir, "missing")},
	} {
		cmd := exec.Command(kit.Bin, "orchestrate", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir())
		cmd.Env = append(os.Environ(), c.env)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), c.want) {
			t.Fatalf("%s: %v\n%s", c.env, err, out)
		}
	}
}
