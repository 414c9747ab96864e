// Package sshtest starts a real OpenSSH server on loopback for tests of
// package remote and its users: a fresh host key and client key per server,
// public-key login as the current user, and the internal SFTP subsystem.
//
// When sshd is not installed, Start skips the test, or fails it when the
// environment variable CI is set (CI installs sshd: a skip there would hide
// every SSH test, the shell-quoting ones included).
package sshtest

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDPath is the OpenSSH server binary Start runs, unless the environment
// variable LLORCH_TEST_SSHD names another.
const SSHDPath = "/usr/sbin/sshd"

func sshdPath() string {
	if p := os.Getenv("LLORCH_TEST_SSHD"); p != "" {
		return p
	}
	return SSHDPath
}

// Server is a running sshd listening on Host:Port.
type Server struct {
	Host        string        // "127.0.0.1"
	Port        int           // the port sshd listens on
	User        string        // the login user: the current user
	Dir         string        // temp dir with keys, config and logs
	ClientKey   string        // path of the client's private key (OpenSSH format)
	HostKeyLine string        // known_hosts line for [127.0.0.1]:Port
	HostPub     ssh.PublicKey // the host's public key

	cfgPath string
	hostKey string
	log     *syncBuffer
	cmd     *exec.Cmd
	exited  chan struct{}
}

// Start starts sshd and stops it when the test ends. sshd's log is printed if
// the test fails.
func Start(t testing.TB) *Server {
	t.Helper()
	sshd := sshdPath()
	if _, err := os.Stat(sshd); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("sshtest: %s not installed (CI must install openssh-server: .ci/run does)", sshd)
		}
		t.Skipf("sshtest: %s not installed (CI would fail here)", sshd)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshtest: current user: %v", err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil && os.Geteuid() == 0 {
		t.Fatalf("sshtest: %v", err)
	}
	s := &Server{Host: "127.0.0.1", User: u.Username, Dir: t.TempDir(), log: &syncBuffer{}}
	s.ClientKey = filepath.Join(s.Dir, "client_ed25519")
	s.hostKey = filepath.Join(s.Dir, "host_ed25519")
	s.cfgPath = filepath.Join(s.Dir, "sshd_config")

	clientPub := writeKey(t, s.ClientKey)
	authorized := filepath.Join(s.Dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	s.setHostKey(t)
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("sshd log (%s):\n%s", s.cfgPath, s.log.String())
		}
	})

	// A port picked by the kernel may be taken again before sshd binds it;
	// try a few.
	for attempt := 0; ; attempt++ {
		s.Port = freePort(t)
		s.writeConfig(t, authorized)
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 4 {
			t.Fatalf("sshtest: start sshd: %v\nsshd log:\n%s", err, s.log.String())
		}
	}
	s.HostKeyLine = knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, s.HostPub)
	return s
}

// Addr is "127.0.0.1:port".
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// KnownHosts writes a known_hosts file holding the server's current host key
// and returns its path.
func (s *Server) KnownHosts(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(s.HostKeyLine+"\n"), 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return p
}

// SSHConfig writes an ssh_config with "Host alias" pointing at the server
// (HostName, Port, User, IdentityFile) and returns its path.
func (s *Server) SSHConfig(t testing.TB, alias string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ssh_config")
	body := fmt.Sprintf("Host %s\n  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n",
		alias, s.Host, s.Port, s.User, s.ClientKey)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return p
}

// RotateHostKey restarts sshd on the same port with a new host key, and
// updates HostPub and HostKeyLine.
func (s *Server) RotateHostKey(t testing.TB) {
	t.Helper()
	s.stop()
	s.setHostKey(t)
	var err error
	for range 20 { // the old listener may linger for a moment
		if err = s.start(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("sshtest: restart sshd: %v", err)
	}
	s.HostKeyLine = knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, s.HostPub)
}

func (s *Server) setHostKey(t testing.TB) {
	t.Helper()
	_ = os.Remove(s.hostKey)
	s.HostPub = writeKey(t, s.hostKey)
}

func (s *Server) writeConfig(t testing.TB, authorized string) {
	t.Helper()
	cfg := strings.Join([]string{
		"ListenAddress " + s.Host,
		"Port " + strconv.Itoa(s.Port),
		"HostKey " + s.hostKey,
		"AuthorizedKeysFile " + authorized,
		"PidFile " + filepath.Join(s.Dir, "sshd.pid"),
		"StrictModes no",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin prohibit-password",
		"Subsystem sftp internal-sftp",
		"LogLevel VERBOSE",
		"",
	}, "\n")
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
}

// start runs sshd and waits until it sends its banner.
func (s *Server) start() error {
	cmd := exec.Command(sshdPath(), "-D", "-e", "-f", s.cfgPath)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("sshd exited during start-up")
		default:
		}
		if banner(s.Addr()) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return errors.New("sshd did not answer within 10s")
}

// banner reports whether an SSH server answers on addr.
func banner(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-")
}

// stop ends sshd (and the connection processes in its group) and waits.
func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}

// writeKey writes a new ed25519 private key in OpenSSH format (0600) and its
// .pub next to it, and returns the public key.
func writeKey(t testing.TB, path string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "sshtest")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return sshPub
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a bytes.Buffer safe for sshd's writer goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
