package poolrun_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/buildinfo"
	"github.com/llorch/llorch/core/poolrun"
	"github.com/llorch/llorch/core/remote"
	"github.com/llorch/llorch/core/remote/sshtest"
	"github.com/llorch/llorch/core/testkit"
)

var kit *testkit.Kit

func TestMain(m *testing.M) { testkit.Main(m, func(k *testkit.Kit) { kit = k }) }

// sshTarget is a Target for srv given as user@host:port, with ssh settings
// that never read the real ~/.ssh.
func sshTarget(t *testing.T, srv *sshtest.Server) poolrun.Target {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	return poolrun.Target{
		Transport: api.TransportSSH,
		Host:      srv.User + "@" + srv.Addr(),
		SSH: remote.Config{
			IdentityFiles:  []string{srv.ClientKey},
			SSHConfigPath:  filepath.Join(t.TempDir(), "no_ssh_config"),
			KnownHostsPath: srv.KnownHosts(t),
			Timeout:        5 * time.Second,
		},
	}
}

// transports returns a local target and one over a fresh sshd, named.
func transports(t *testing.T) map[string]poolrun.Target {
	return map[string]poolrun.Target{
		"local": {Transport: api.TransportLocal},
		"ssh":   sshTarget(t, sshtest.Start(t)),
	}
}

func dial(t *testing.T, tg poolrun.Target) *poolrun.Conn {
	t.Helper()
	c, err := poolrun.Dial(t.Context(), tg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// echoLlorch writes a stand-in for llorch that prints each argument on a
// line, then "--", then its stdin.
func echoLlorch(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "llorch")
	if err := os.WriteFile(p, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\"\necho --\ncat\necho bye >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPoolArgumentsAndStdin(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "pwned")
	hostile := []string{
		"x; touch " + marker, "$(touch " + marker + ")", "`touch " + marker + "`", "&& touch " + marker, ">" + marker,
		`a'b"c`, "*", "~", "$HOME", "a  b", "", "--flag=$(id)", "line1\nline2", "|",
	}
	stdin := "first line\n'$(touch " + marker + ")'\n\x00\xff binary\n"
	for name, tg := range transports(t) {
		t.Run(name, func(t *testing.T) {
			tg.LlorchPath = echoLlorch(t)
			tg.PoolDir = "/pools/it's here"
			c := dial(t, tg)
			var stdout, stderr bytes.Buffer
			code, err := c.Pool(t.Context(), append([]string{"models", "info"}, hostile...), strings.NewReader(stdin), &stdout, &stderr)
			if err != nil || code != 3 {
				t.Fatalf("Pool = %d, %v; want 3, nil (stderr %q)", code, err, stderr.String())
			}
			want := strings.Join(append([]string{"pool", "--pool-dir", tg.PoolDir, "models", "info"}, hostile...), "\n") + "\n--\n" + stdin
			if stdout.String() != want || stderr.String() != "bye\n" {
				t.Fatalf("the command got\n%q\nwant\n%q\n(stderr %q)", stdout.String(), want, stderr.String())
			}
			// No stdin: the command reads EOF at once.
			stdout.Reset()
			if code, err := c.Pool(t.Context(), []string{"x"}, nil, &stdout, nil); err != nil || code != 3 ||
				stdout.String() != "pool\n--pool-dir\n"+tg.PoolDir+"\nx\n--\n" {
				t.Fatalf("Pool without stdin = %d, %v, %q", code, err, stdout.String())
			}
			if _, err := os.Stat(marker); err == nil {
				t.Fatal("an argument or stdin was run by a shell")
			}
		})
	}
}

func TestPoolRealLlorch(t *testing.T) {
	for name, tg := range transports(t) {
		t.Run(name, func(t *testing.T) {
			tg.LlorchPath, tg.PoolDir = kit.Bin, t.TempDir()
			c := dial(t, tg)
			var rep struct{ Backends []struct{ Name string } }
			if err := c.PoolJSON(t.Context(), []string{"backends", "detect"}, nil, &rep); err != nil {
				t.Fatalf("PoolJSON: %v", err)
			}
			if len(rep.Backends) == 0 || rep.Backends[0].Name != "cpu" {
				t.Fatalf("backends = %+v", rep)
			}
			// A failing command: *ExitError with its code and stderr.
			err := c.PoolJSON(t.Context(), []string{"models", "info", "nope"}, nil, &rep)
			var ee *poolrun.ExitError
			if !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(ee.Stderr, "not in the catalog") || !strings.Contains(err.Error(), "models info nope") {
				t.Fatalf("PoolJSON(models info nope) = %v", err)
			}
			b, err := c.Build(t.Context())
			if err != nil || b.Version != buildinfo.Version || b.Backend != buildinfo.Backend || !strings.HasPrefix(b.Line, "llorch ") {
				t.Fatalf("Build = %+v, %v", b, err)
			}
			if v, err := c.Version(t.Context()); err != nil || v != buildinfo.Version {
				t.Fatalf("Version = %q, %v", v, err)
			}
		})
	}
}

func TestNoLlorch(t *testing.T) {
	for name, tg := range transports(t) {
		t.Run(name, func(t *testing.T) {
			for _, missing := range []string{filepath.Join(t.TempDir(), "nope", "llorch"), "llorch-not-on-path-" + name, "~/.llorch-test-missing/llorch"} {
				tg.LlorchPath = missing
				c := dial(t, tg)
				var stderr bytes.Buffer
				code, err := c.Pool(t.Context(), []string{"status"}, nil, nil, &stderr)
				if !errors.Is(err, poolrun.ErrNoLlorch) || !strings.Contains(err.Error(), missing) {
					t.Errorf("%s: Pool = %d, %v; want ErrNoLlorch naming it", missing, code, err)
				}
				if _, err := c.Version(t.Context()); !errors.Is(err, poolrun.ErrNoLlorch) {
					t.Errorf("%s: Version = %v, want ErrNoLlorch", missing, err)
				}
				if stderr.Len() != 0 {
					t.Errorf("%s: stderr %q", missing, stderr.String())
				}
			}
		})
	}
}

func TestCancelKills(t *testing.T) {
	for name, tg := range transports(t) {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "llorch")
			if err := os.WriteFile(p, []byte("#!/bin/sh\necho started\nexec sleep 30\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			tg.LlorchPath = p
			c := dial(t, tg)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			started := make(chan struct{})
			var once sync.Once
			done := make(chan error, 1)
			go func() {
				_, err := c.Pool(ctx, nil, nil, writerFunc(func(b []byte) { once.Do(func() { close(started) }) }), nil)
				done <- err
			}()
			select {
			case <-started:
			case <-time.After(10 * time.Second):
				t.Fatal("the command did not start")
			}
			cancel()
			select {
			case err := <-done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Pool after cancel = %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Pool did not return after cancel")
			}
		})
	}
}

// writerFunc calls f on every write.
type writerFunc func([]byte)

func (f writerFunc) Write(b []byte) (int, error) {
	f(b)
	return len(b), nil
}

func TestUnknownHostKeyRunsNothing(t *testing.T) {
	srv := sshtest.Start(t)
	tg := sshTarget(t, srv)
	tg.SSH.KnownHostsPath = filepath.Join(t.TempDir(), "known_hosts")
	marker := filepath.Join(t.TempDir(), "ran")
	tg.LlorchPath = filepath.Join(t.TempDir(), "llorch")
	if err := os.WriteFile(tg.LlorchPath, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := poolrun.Dial(t.Context(), tg)
	if c != nil || !errors.Is(err, remote.ErrUnknownHostKey) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(srv.HostPub)) {
		t.Fatalf("Dial = %v, %v; want ErrUnknownHostKey naming %s", c, err, ssh.FingerprintSHA256(srv.HostPub))
	}
	t.Log(err)
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a command ran on a host with an unknown key")
	}
	if data, _ := os.ReadFile(tg.SSH.KnownHostsPath); len(data) != 0 {
		t.Fatalf("known_hosts was written: %q", data)
	}
	// A changed key is refused too, with the new key's fingerprint.
	tg.SSH.KnownHostsPath = srv.KnownHosts(t)
	srv.RotateHostKey(t)
	if _, err := poolrun.Dial(t.Context(), tg); !errors.Is(err, remote.ErrHostKeyChanged) || !strings.Contains(err.Error(), ssh.FingerprintSHA256(srv.HostPub)) {
		t.Fatalf("Dial after key change = %v", err)
	}
}

func TestTargetOf(t *testing.T) {
	base := remote.Config{KnownHostsPath: "/kh", Port: 2200}
	tg := poolrun.TargetOf(api.Pool{Name: "a", Host: "box", LlorchPath: "/opt/llorch", PoolDir: "/p"}, base)
	if tg.Transport != api.TransportSSH || tg.Host != "box" || tg.LlorchPath != "/opt/llorch" || tg.PoolDir != "/p" || tg.SSH.KnownHostsPath != "/kh" {
		t.Errorf("TargetOf = %+v", tg)
	}
	if tg := poolrun.TargetOf(api.Pool{Name: "b"}, base); tg.Transport != api.TransportLocal {
		t.Errorf("no host: transport %q, want local", tg.Transport)
	}
	if _, err := poolrun.Dial(t.Context(), poolrun.Target{Transport: "carrier-pigeon"}); err == nil {
		t.Error("unknown transport accepted")
	}
}

func TestParseVersion(t *testing.T) {
	b, err := poolrun.ParseVersion(buildinfo.String() + "\n")
	if err != nil || b.Version != buildinfo.Version || b.Commit != buildinfo.Commit || b.Backend != buildinfo.Backend || b.OS == "" || b.Arch == "" {
		t.Fatalf("ParseVersion(%q) = %+v, %v", buildinfo.String(), b, err)
	}
	b, err = poolrun.ParseVersion("llorch v1.2.3 (commit abc123, backend cuda, linux/amd64, go1.25.1)")
	if err != nil || b.Version != "v1.2.3" || b.Commit != "abc123" || b.Backend != "cuda" || b.OS != "linux" || b.Arch != "amd64" {
		t.Fatalf("ParseVersion = %+v, %v", b, err)
	}
	for _, bad := range []string{"", "llorch", "llorch v1", "sh: llorch: not found", "llorch v1 (x)\nmore"} {
		if _, err := poolrun.ParseVersion(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func ExampleTargetOf() {
	tg := poolrun.TargetOf(api.Pool{Name: "gpu1", Host: "me@gpu1:2222"}, remote.Config{})
	fmt.Println(tg.Transport, tg.Host)
	// Output: ssh me@gpu1:2222
}

// A pool host that prints without end cannot fill this process's memory:
// PoolJSON keeps MaxJSONOutput bytes and says the output was too long.
func TestPoolJSONBoundsOutput(t *testing.T) {
	p := filepath.Join(t.TempDir(), "llorch")
	script := fmt.Sprintf("#!/bin/sh\nhead -c %d /dev/zero | tr '\\000' 'x'\n", poolrun.MaxJSONOutput+(4<<20))
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c := dial(t, poolrun.Target{Transport: api.TransportLocal, LlorchPath: p})
	var out any
	err := c.PoolJSON(t.Context(), []string{"status"}, nil, &out)
	if err == nil || !strings.Contains(err.Error(), "output is over") {
		t.Fatalf("PoolJSON = %v", err)
	}
}
