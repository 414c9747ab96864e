package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llorch/llorch/core/remote"
	"github.com/llorch/llorch/core/remote/sshtest"
	"golang.org/x/crypto/ssh"
)

// config builds a valid Config for srv that a test then tweaks. It never
// reads the real ~/.ssh: ssh_config and known_hosts live in temp dirs.
func config(t *testing.T, srv *sshtest.Server) remote.Config {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "") // no agent keys: only the ones a test names
	return remote.Config{
		Host:           srv.Host,
		Port:           srv.Port,
		User:           srv.User,
		IdentityFiles:  []string{srv.ClientKey},
		SSHConfigPath:  filepath.Join(t.TempDir(), "no_ssh_config"),
		KnownHostsPath: srv.KnownHosts(t),
		Timeout:        5 * time.Second,
	}
}

func dial(t *testing.T, cfg remote.Config) *remote.Client {
	t.Helper()
	c, err := remote.Dial(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func randName(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func TestRunExitCodeAndStreams(t *testing.T) {
	srv := sshtest.Start(t)
	c := dial(t, config(t, srv))
	if want := srv.User + "@" + srv.Addr(); c.Addr() != want {
		t.Errorf("Addr() = %q, want %q", c.Addr(), want)
	}
	var stdout, stderr bytes.Buffer
	code, err := c.Run(t.Context(), []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if code != 3 || stdout.String() != "out\n" || stderr.String() != "err\n" {
		t.Fatalf("Run = %d, stdout %q, stderr %q; want 3, \"out\\n\", \"err\\n\"", code, stdout.String(), stderr.String())
	}

	out, err := c.Output(t.Context(), []string{"echo", "hello"})
	if err != nil || out != "hello\n" {
		t.Fatalf("Output = %q, %v", out, err)
	}
	_, err = c.Output(t.Context(), []string{"sh", "-c", "echo boom >&2; exit 2"})
	if !errors.Is(err, remote.ErrExitStatus) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Output error = %v, want ErrExitStatus with stderr", err)
	}
}

// lineWriter reports each write on a channel, to see output arrive live.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func TestRunStreamsAndCancels(t *testing.T) {
	srv := sshtest.Start(t)
	c := dial(t, config(t, srv))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w := &lineWriter{wrote: make(chan struct{}, 1)}
	done := make(chan error, 1)
	go func() {
		_, err := c.Run(ctx, []string{"sh", "-c", "echo first; exec sleep 10"}, w, nil)
		done <- err
	}()
	select {
	case <-w.wrote: // the first line arrived while the command still runs
	case <-time.After(5 * time.Second):
		t.Fatal("no output streamed within 5s")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// The connection stays usable.
	if out, err := c.Output(t.Context(), []string{"echo", "ok"}); err != nil || out != "ok\n" {
		t.Fatalf("Output after cancel = %q, %v", out, err)
	}
}

func TestRunQuotesHostileArguments(t *testing.T) {
	srv := sshtest.Start(t)
	c := dial(t, config(t, srv))
	pwned := "/tmp/pwned-" + randName(t)
	args := []string{
		"x; touch " + pwned, "$(touch " + pwned + ")", "`touch " + pwned + "`", "&& touch " + pwned,
		"$(id)", "`id`", `"double"`, "'single'", "it's", "line1\nline2", "*", "/*", "?", "~", "$HOME",
		"a  b", "", "--flag=$(id)", "|", ">" + pwned,
	}
	out, err := c.Output(t.Context(), append([]string{"printf", `%s\n`}, args...))
	if err != nil {
		t.Fatalf("Output: %v", err)
	}
	if want := strings.Join(args, "\n") + "\n"; out != want {
		t.Fatalf("printf echoed\n%q\nwant\n%q", out, want)
	}
	if _, err := os.Stat(pwned); err == nil {
		_ = os.Remove(pwned)
		t.Fatalf("%s was created: an argument reached the shell unquoted", pwned)
	}
}

func TestUnknownHostKey(t *testing.T) {
	srv := sshtest.Start(t)
	cfg := config(t, srv)
	cfg.KnownHostsPath = filepath.Join(t.TempDir(), "sub", "known_hosts") // neither file nor dir exists

	_, err := remote.Dial(t.Context(), cfg)
	if !errors.Is(err, remote.ErrUnknownHostKey) {
		t.Fatalf("Dial = %v, want ErrUnknownHostKey", err)
	}
	t.Log(err)
	fp := fingerprint(srv)
	for _, want := range []string{fp, "ED25519", "--accept-new-host-key", cfg.KnownHostsPath, srv.Addr()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	cfg.AcceptNewHostKey = true
	c := dial(t, cfg)
	if out, err := c.Output(t.Context(), []string{"echo", "ok"}); err != nil || out != "ok\n" {
		t.Fatalf("Output = %q, %v", out, err)
	}
	data, err := os.ReadFile(cfg.KnownHostsPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(data)); got != srv.HostKeyLine {
		t.Fatalf("known_hosts = %q, want %q", got, srv.HostKeyLine)
	}
	if st, err := os.Stat(cfg.KnownHostsPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts: %v, %v; want mode 0600", st, err)
	}
	if st, err := os.Stat(filepath.Dir(cfg.KnownHostsPath)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("known_hosts dir: %v, %v; want mode 0700", st, err)
	}

	cfg.AcceptNewHostKey = false
	dial(t, cfg) // now known
}

func TestChangedHostKeyRefused(t *testing.T) {
	srv := sshtest.Start(t)
	cfg := config(t, srv)
	dial(t, cfg).Close()

	srv.RotateHostKey(t)
	for _, accept := range []bool{false, true} {
		cfg.AcceptNewHostKey = accept
		_, err := remote.Dial(t.Context(), cfg)
		if !errors.Is(err, remote.ErrHostKeyChanged) {
			t.Fatalf("accept-new=%v: Dial = %v, want ErrHostKeyChanged", accept, err)
		}
		t.Log(err)
		for _, want := range []string{"REMOTE HOST KEY CHANGED", cfg.KnownHostsPath, "line 1", fingerprint(srv)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q lacks %q", err, want)
			}
		}
	}
	data, err := os.ReadFile(cfg.KnownHostsPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(data), "\n") != 1 {
		t.Fatalf("known_hosts was modified:\n%s", data)
	}
}

func TestWrongClientKey(t *testing.T) {
	srv := sshtest.Start(t)
	other := sshtest.Start(t) // its client key is not authorized on srv
	cfg := config(t, srv)
	cfg.IdentityFiles = []string{other.ClientKey, filepath.Join(t.TempDir(), "missing_key")}
	_, err := remote.Dial(t.Context(), cfg)
	if !errors.Is(err, remote.ErrAuth) {
		t.Fatalf("Dial = %v, want ErrAuth", err)
	}
	t.Log(err)
}

func TestConnectionRefused(t *testing.T) {
	srv := sshtest.Start(t)
	cfg := config(t, srv)
	cfg.Port = freeClosedPort(t)
	_, err := remote.Dial(t.Context(), cfg)
	if !errors.Is(err, remote.ErrUnreachable) {
		t.Fatalf("Dial = %v, want ErrUnreachable", err)
	}
	t.Log(err)
}

func TestSSHConfigAlias(t *testing.T) {
	srv := sshtest.Start(t)
	t.Setenv("SSH_AUTH_SOCK", "")
	c := dial(t, remote.Config{
		Host:           "mybox",
		SSHConfigPath:  srv.SSHConfig(t, "mybox"),
		KnownHostsPath: srv.KnownHosts(t),
		Timeout:        5 * time.Second,
	})
	if want := srv.User + "@" + srv.Addr(); c.Addr() != want {
		t.Fatalf("Addr() = %q, want %q", c.Addr(), want)
	}
	if out, err := c.Output(t.Context(), []string{"echo", "ok"}); err != nil || out != "ok\n" {
		t.Fatalf("Output = %q, %v", out, err)
	}
}

func TestUpload(t *testing.T) {
	srv := sshtest.Start(t)
	c := dial(t, config(t, srv))
	local := filepath.Join(t.TempDir(), "payload")
	dstDir := filepath.Join(t.TempDir(), "a", "b") // parent does not exist yet
	dst := filepath.Join(dstDir, "llorch")

	for i, content := range [][]byte{bytes.Repeat([]byte("llorch\x00\xff"), 100_000), []byte("second version\n")} {
		mode := []os.FileMode{0o755, 0o640}[i]
		if err := os.WriteFile(local, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.Upload(t.Context(), local, dst, mode); err != nil {
			t.Fatalf("Upload #%d: %v", i+1, err)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, content) {
			t.Fatalf("Upload #%d: content differs (%d bytes, want %d): %v", i+1, len(got), len(content), err)
		}
		if st, err := os.Stat(dst); err != nil || st.Mode().Perm() != mode {
			t.Errorf("Upload #%d: %v, %v; want mode %v", i+1, st, err, mode)
		}
		entries, err := os.ReadDir(dstDir)
		if err != nil || len(entries) != 1 {
			t.Fatalf("Upload #%d left %d entries in %s (%v), want only the file", i+1, len(entries), dstDir, err)
		}
	}

	// "~/" is the login user's home.
	name := ".llorch-upload-test-" + randName(t)
	if err := c.Upload(t.Context(), local, "~/"+name+"/f", 0o600); err != nil {
		t.Fatalf("Upload ~/: %v", err)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(filepath.Join(home, name))
	if _, err := os.Stat(filepath.Join(home, name, "f")); err != nil {
		t.Fatalf("Upload ~/: %v", err)
	}

	if err := c.Upload(t.Context(), filepath.Join(t.TempDir(), "nope"), dst, 0o600); err == nil {
		t.Fatal("Upload of a missing file succeeded")
	}
}

func fingerprint(srv *sshtest.Server) string { return ssh.FingerprintSHA256(srv.HostPub) }

// freeClosedPort returns a loopback port nobody listens on.
func freeClosedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func TestHandshakeTimeout(t *testing.T) {
	// A listener that accepts and never speaks SSH.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", "")
	_, err = remote.Dial(t.Context(), remote.Config{
		Host:           "127.0.0.1",
		Port:           l.Addr().(*net.TCPAddr).Port,
		SSHConfigPath:  filepath.Join(t.TempDir(), "none"),
		KnownHostsPath: filepath.Join(t.TempDir(), "known_hosts"),
		Timeout:        200 * time.Millisecond,
	})
	if !errors.Is(err, remote.ErrTimeout) {
		t.Fatalf("Dial = %v, want ErrTimeout", err)
	}
}

func TestRunInput(t *testing.T) {
	srv := sshtest.Start(t)
	c := dial(t, config(t, srv))

	// Binary data, larger than the SSH window, reaches the command intact and
	// the command sees EOF where the reader ends.
	in := bytes.Repeat([]byte("llorch\x00\xff\n'$(id)`"), 300_000)
	var stdout, stderr bytes.Buffer
	code, err := c.RunInput(t.Context(), []string{"sh", "-c", "cat; echo done >&2"}, bytes.NewReader(in), &stdout, &stderr)
	if err != nil || code != 0 {
		t.Fatalf("RunInput = %d, %v (stderr %q)", code, err, stderr.String())
	}
	if !bytes.Equal(stdout.Bytes(), in) || stderr.String() != "done\n" {
		t.Fatalf("cat echoed %d bytes (want %d, equal %v), stderr %q", stdout.Len(), len(in), bytes.Equal(stdout.Bytes(), in), stderr.String())
	}

	// nil stdin: the command reads EOF at once.
	stdout.Reset()
	if code, err := c.RunInput(t.Context(), []string{"wc", "-c"}, nil, &stdout, nil); err != nil || code != 0 || strings.TrimSpace(stdout.String()) != "0" {
		t.Fatalf("nil stdin: wc -c = %q, %d, %v", stdout.String(), code, err)
	}

	// A reader that never ends does not hold up a command that exits
	// without reading it.
	pr, pw := io.Pipe()
	defer pw.Close()
	done := make(chan error, 1)
	go func() {
		code, err := c.RunInput(t.Context(), []string{"sh", "-c", "exit 4"}, pr, nil, nil)
		if err == nil && code != 4 {
			err = fmt.Errorf("exit %d, want 4", code)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("RunInput waited for a stdin that never ends")
	}
}
