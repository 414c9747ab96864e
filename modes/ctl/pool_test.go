package ctl_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/remote/sshtest"
)

// sshEnv is one sshd on loopback with an ssh_config alias and known_hosts.
type sshEnv struct {
	srv        *sshtest.Server
	config     string
	knownHosts string
	poolDir    string
}

func newSSH(t *testing.T) *sshEnv {
	srv := sshtest.Start(t)
	return &sshEnv{srv: srv, config: srv.SSHConfig(t, "mybox"), knownHosts: srv.KnownHosts(t), poolDir: t.TempDir()}
}

// ctlPool runs `llorch ctl pool ARGS --host mybox …` and returns stdout, stderr, exit code.
func (e *sshEnv) ctlPool(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	full := append([]string{"pool"}, args...)
	full = append(full, "--ssh-config", e.config, "--known-hosts", e.knownHosts)
	cmd := ctl(full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	code := exitCode(cmd.Run())
	return out.String(), errb.String(), code
}

func TestCtlPoolRunsRemotely(t *testing.T) {
	e := newSSH(t)
	out, errOut, code := e.ctlPool(t, "backends", "detect", "--json", "--pool-dir", e.poolDir, "--host", "mybox", "--llorch", kit.Bin)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep struct{ Backends []struct{ Name string } }
	if err := json.Unmarshal([]byte(out), &rep); err != nil || len(rep.Backends) == 0 || rep.Backends[0].Name != "cpu" {
		t.Fatalf("remote output %q: %v", out, err)
	}
	// The remote exit status and stderr come back.
	_, errOut, code = e.ctlPool(t, "models", "info", "nope", "--pool-dir", e.poolDir, "--host", "mybox", "--llorch", kit.Bin)
	if code != 1 || !strings.Contains(errOut, "not in the catalog") {
		t.Errorf("remote failure: exit %d, %q", code, errOut)
	}
}

func TestCtlPoolQuotesArguments(t *testing.T) {
	e := newSSH(t)
	marker := filepath.Join(t.TempDir(), "pwned")
	for _, hostile := range []string{"x; touch " + marker, "$(touch " + marker + ")", "`touch " + marker + "`", "a'b\"c", "*"} {
		_, errOut, code := e.ctlPool(t, "models", "synth", hostile, "--pool-dir", e.poolDir, "--host", "mybox", "--llorch", kit.Bin)
		if code != 1 || !strings.Contains(errOut, "invalid") {
			t.Errorf("%q: exit %d, %q", hostile, code, errOut)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a remote argument was run by the shell")
	}
}

func TestCtlPoolInstall(t *testing.T) {
	e := newSSH(t)
	target := filepath.Join(t.TempDir(), "bin", "llorch")
	out, errOut, code := e.ctlPool(t, "install", "--host", "mybox", "--path", target)
	if code != 0 || !strings.Contains(out, "mybox: llorch ") || !strings.Contains(errOut, "installed") {
		t.Fatalf("install: exit %d\n%s%s", code, out, errOut)
	}
	st, err := os.Stat(target)
	if err != nil || st.Mode().Perm()&0o100 == 0 {
		t.Fatalf("installed file: %v %v", st, err)
	}
	want, err := os.ReadFile(kit.Bin)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(target)
	if err != nil || !bytes.Equal(want, got) {
		t.Fatalf("installed binary differs (%v)", err)
	}
	entries, err := os.ReadDir(filepath.Dir(target))
	if err != nil || len(entries) != 1 {
		t.Errorf("temp files left next to the binary: %v %v", entries, err)
	}
	// Idempotent: an identical binary is not copied again.
	_, errOut, code = e.ctlPool(t, "install", "--host", "mybox", "--path", target)
	if code != 0 || !strings.Contains(errOut, "already") {
		t.Errorf("second install: exit %d, %q", code, errOut)
	}
	// The installed binary runs pool commands when found on no PATH: --llorch.
	if _, errOut, code := e.ctlPool(t, "backends", "list", "--pool-dir", e.poolDir, "--host", "mybox", "--llorch", target); code != 0 {
		t.Errorf("pool via installed binary: %d %s", code, errOut)
	}
}

func TestCtlPoolHostKeys(t *testing.T) {
	e := newSSH(t)
	empty := filepath.Join(t.TempDir(), "known_hosts")
	run := func(extra ...string) (string, int) {
		args := append([]string{"pool", "backends", "list", "--pool-dir", e.poolDir, "--host", "mybox", "--llorch", kit.Bin,
			"--ssh-config", e.config, "--known-hosts", empty}, extra...)
		out, err := ctl(args...).CombinedOutput()
		return string(out), exitCode(err)
	}
	out, code := run()
	if code != 255 || !strings.Contains(out, "SHA256:") || !strings.Contains(out, "--accept-new-host-key") {
		t.Fatalf("unknown key: exit %d\n%s", code, out)
	}
	if out, code = run("--accept-new-host-key"); code != 0 {
		t.Fatalf("accept-new: exit %d\n%s", code, out)
	}
	if out, code = run(); code != 0 {
		t.Fatalf("after accepting: exit %d\n%s", code, out)
	}
	e.srv.RotateHostKey(t)
	out, code = run("--accept-new-host-key")
	if code != 255 || !strings.Contains(strings.ToUpper(out), "CHANGED") {
		t.Fatalf("changed key: exit %d\n%s", code, out)
	}
}

func TestCtlPoolMultiHost(t *testing.T) {
	e := newSSH(t)
	cfg2 := e.srv.SSHConfig(t, "otherbox")
	both, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	more, err := os.ReadFile(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	combined := filepath.Join(t.TempDir(), "config")
	dead := "\nHost deadbox\n  HostName 127.0.0.1\n  Port 1\n"
	if err := os.WriteFile(combined, append(append(append(both, '\n'), more...), dead...), 0o600); err != nil {
		t.Fatal(err)
	}
	e.config = combined
	out, errOut, code := e.ctlPool(t, "backends", "list", "--pool-dir", e.poolDir, "--hosts", "mybox,otherbox", "--llorch", kit.Bin)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, h := range []string{"mybox: ", "otherbox: "} {
		if !strings.Contains(out, h+"BACKEND") {
			t.Errorf("no output prefixed %q:\n%s", h, out)
		}
	}
	if !strings.Contains(errOut, "2 of 2 hosts succeeded") {
		t.Errorf("summary: %q", errOut)
	}
	// Unreachable host in the set: 255 for it, summary says so.
	_, errOut, code = e.ctlPool(t, "backends", "list", "--pool-dir", e.poolDir, "--hosts", "mybox,deadbox", "--llorch", kit.Bin)
	if code != 255 || !strings.Contains(errOut, "1 of 2 hosts succeeded") || !strings.Contains(errOut, "deadbox: exit 255") ||
		!strings.Contains(errOut, "unreachable") {
		t.Errorf("one unreachable: exit %d %q", code, errOut)
	}
}

func TestCtlPoolInstallCopiesLibDir(t *testing.T) {
	e := newSSH(t)
	libs := map[string]string{"libggml-cpu-skylakex.so": "avx512 variant", "libggml-cuda.so": "cuda backend"}
	bin := kit.Release(t, libs)
	root := t.TempDir()
	target := filepath.Join(root, "bin", "llorch")
	stale := filepath.Join(root, "lib", "llorch", "libggml-cpu-old.so")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("from another build"), 0o644); err != nil {
		t.Fatal(err)
	}
	install := func() (string, string, int) {
		cmd := exec.Command(bin, "ctl", "pool", "install", "--host", "mybox", "--path", target, "--ssh-config", e.config, "--known-hosts", e.knownHosts)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		code := exitCode(cmd.Run())
		return out.String(), errb.String(), code
	}
	out, errOut, code := install()
	if code != 0 || !strings.Contains(out, "mybox: llorch ") {
		t.Fatalf("install: exit %d\n%s%s", code, out, errOut)
	}
	t.Log(errOut)
	for name, content := range libs {
		got, err := os.ReadFile(filepath.Join(root, "lib", "llorch", name))
		if err != nil || string(got) != content {
			t.Errorf("%s: %q, %v", name, got, err)
		}
		if !strings.Contains(errOut, "mybox: installed "+filepath.Join(root, "lib", "llorch", name)) {
			t.Errorf("no line for %s in\n%s", name, errOut)
		}
	}
	if _, err := os.Stat(stale); err == nil || !strings.Contains(errOut, "removed "+stale) {
		t.Errorf("a backend library of another build is still there (%v)\n%s", err, errOut)
	}
	// Nothing to do the second time.
	_, errOut, code = install()
	if code != 0 || strings.Contains(errOut, "installed") || strings.Count(errOut, "already") != 3 {
		t.Errorf("second install: exit %d\n%s", code, errOut)
	}
}

func TestCtlPoolNoLlorch(t *testing.T) {
	e := newSSH(t)
	missing := filepath.Join(t.TempDir(), "llorch")
	_, errOut, code := e.ctlPool(t, "status", "--host", "mybox", "--llorch", missing)
	if code != 127 || !strings.Contains(errOut, "llorch not found") || !strings.Contains(errOut, "ctl pool install --host mybox") {
		t.Errorf("exit %d, %q", code, errOut)
	}
}
