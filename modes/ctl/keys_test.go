package ctl_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/testkit"
)

// run runs ctl and returns its stdout, stderr and exit code.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := ctl(args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), exitCode(err)
}

// startOrchAt runs `llorch orchestrate` on listen over dataDir and returns
// its URL (from --addr-file) and a func that kills it and waits.
func startOrchAt(t *testing.T, dataDir, listen string) (string, func()) {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "orch.addr")
	o := exec.Command(kit.Bin, "orchestrate", "--listen", listen, "--data-dir", dataDir, "--addr-file", addr, "--worker-token", "wt-ctl-keys-test")
	var log bytes.Buffer
	o.Stderr = &log
	if err := o.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = o.Wait(); close(exited) }()
	stop := func() { _ = o.Process.Kill(); <-exited }
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("orchestrator log:\n%s", log.String())
		}
	})
	return testkit.WaitAddr(t, addr, exited, testkit.ReadyTimeout), stop
}

// ctl keys against a real orchestrator: the first key is created on an open
// loopback orchestrator (the bootstrap), which then wants keys; limits are
// set by flags and updated one at a time; list shows no secret; a revoked
// key is refused; and stored keys let the orchestrator listen beyond
// loopback after a restart.
func TestKeys(t *testing.T) {
	// Without any key, an orchestrator on every interface refuses to start.
	out0, err := exec.Command(kit.Bin, "orchestrate", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir()).CombinedOutput()
	if exitCode(err) != 1 || !strings.Contains(string(out0), "refusing to listen") || !strings.Contains(string(out0), "llorch ctl keys create") {
		t.Fatalf("an open orchestrator on 0.0.0.0: %v\n%s", err, out0)
	}
	dir := t.TempDir()
	orch, stop := startOrchAt(t, dir, "127.0.0.1:0")
	at := []string{"--orchestrator", orch}

	out, errOut, code := run(t, append([]string{"keys", "create", "ops", "--role", "admin"}, at...)...)
	ops := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(ops, "sk-llorch-") || strings.Contains(ops, "\n") || !strings.Contains(errOut, "shown only this once") {
		t.Fatalf("create: %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	if _, errOut, code := run(t, append([]string{"keys", "list"}, at...)...); code != 1 || !strings.Contains(errOut, "401") {
		t.Fatalf("list without a key after the first one: %d %s", code, errOut)
	}
	admin := append([]string{"--api-key", ops}, at...)

	out, errOut, code = run(t, append([]string{"keys", "create", "app", "--weight", "2", "--rpm", "60", "--models", "a, b",
		"--max-priority", "batch", "--max-queued", "4", "--tokens-per-day", "1000000"}, admin...)...)
	app := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(app, "sk-llorch-") || app == ops {
		t.Fatalf("create app: %d %q %s", code, out, errOut)
	}
	if _, errOut, code := run(t, append([]string{"keys", "create", "app"}, admin...)...); code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("a second app: %d %s", code, errOut)
	}
	if _, errOut, code := run(t, append([]string{"keys", "create", "bad/name", "--rpm", "-1"}, admin...)...); code != 1 ||
		!strings.Contains(errOut, "name") || !strings.Contains(errOut, "requests_per_minute") {
		t.Fatalf("bad input: %d %s", code, errOut)
	}
	if _, errOut, code := run(t, append([]string{"keys", "create", "mine"}, append([]string{"--api-key", app}, at...)...)...); code != 1 || !strings.Contains(errOut, "403") {
		t.Fatalf("a user key creating a key: %d %s", code, errOut)
	}

	out, errOut, code = run(t, append([]string{"keys", "list"}, admin...)...)
	if code != 0 || strings.Contains(out, ops) || strings.Contains(out, app) {
		t.Fatalf("list: %d %s %s", code, out, errOut)
	}
	for _, want := range []string{"NAME", "FINGERPRINT", "app", "ops", "admin", "rpm=60", "queued=4", "max-priority=batch", "models=a,b", "day=1000000", "store"} {
		if !strings.Contains(out, want) {
			t.Fatalf("list lacks %q:\n%s", want, out)
		}
	}
	keys := listJSON(t, admin)
	if len(keys) != 2 || keys[0].Name != "app" || keys[0].Weight != 2 || keys[0].Limits.RequestsPerMinute != 60 || len(keys[0].Limits.Models) != 2 {
		t.Fatalf("list --json: %+v", keys)
	}

	// An update changes only what its flags name.
	if out, errOut, code := run(t, append([]string{"keys", "update", "app", "--tpm", "500", "--max-queued", "0"}, admin...)...); code != 0 || !strings.Contains(out, "tpm=500") {
		t.Fatalf("update: %d %s %s", code, out, errOut)
	}
	keys = listJSON(t, admin)
	if l := keys[0].Limits; l.TokensPerMinute != 500 || l.RequestsPerMinute != 60 || l.MaxQueued != 0 || l.MaxPriority != "batch" || keys[0].Weight != 2 {
		t.Fatalf("after the update: %+v", keys[0])
	}
	if _, errOut, code := run(t, append([]string{"keys", "update", "app"}, admin...)...); code != 1 || !strings.Contains(errOut, "nothing to change") {
		t.Fatalf("an empty update: %d %s", code, errOut)
	}

	if out, errOut, code := run(t, append([]string{"keys", "revoke", "app"}, admin...)...); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("revoke: %d %s %s", code, out, errOut)
	}
	if _, errOut, code := run(t, append([]string{"tasks"}, append([]string{"--api-key", app}, at...)...)...); code != 1 || !strings.Contains(errOut, "KEY_REVOKED") {
		t.Fatalf("the revoked key: %d %s", code, errOut)
	}
	if keys = listJSON(t, admin); keys[0].RevokedAt == nil || keys[1].RevokedAt != nil {
		t.Fatalf("after the revoke: %+v", keys)
	}
	if _, errOut, code := run(t, append([]string{"keys", "revoke", "nobody"}, admin...)...); code != 1 || !strings.Contains(errOut, "404") {
		t.Fatalf("revoke of an unknown key: %d %s", code, errOut)
	}

	// With its keys in the store, the orchestrator may listen on every
	// interface (no key file); the keys still work.
	stop()
	orch2, _ := startOrchAt(t, dir, "0.0.0.0:0")
	if _, errOut, code := run(t, "keys", "list", "--orchestrator", orch2, "--api-key", ops); code != 0 {
		t.Fatalf("list after the restart: %d %s", code, errOut)
	}
}

func listJSON(t *testing.T, args []string) []api.KeyView {
	t.Helper()
	out, errOut, code := run(t, append([]string{"keys", "list", "--json"}, args...)...)
	var v struct{ Keys []api.KeyView }
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("list --json: %d %v\n%s\n%s", code, err, out, errOut)
	}
	return v.Keys
}
