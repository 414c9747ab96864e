package poolrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/remote"
)

// Errors.
var (
	// ErrNoLlorch: the llorch binary is not on the host (or cannot be run).
	ErrNoLlorch = errors.New("poolrun: llorch not found on the host")
	// ErrLocal: the operation needs a remote host (Install without a
	// destination on a local target).
	ErrLocal = errors.New("poolrun: nothing to do for a local pool")
)

// Target is a pool host as api.Pool describes it.
type Target struct {
	Transport string // api.TransportLocal or api.TransportSSH
	// Host (ssh): an ~/.ssh/config alias, host, user@host, user@host:port
	// or user@[v6addr]:port. The user and port given here win over SSH's.
	Host string
	// LlorchPath is the llorch binary on the host: "" = found (ssh: PATH,
	// then ~/.local/bin/llorch; local: this executable).
	LlorchPath string
	// PoolDir is passed to every pool command as --pool-dir when set.
	PoolDir string
	// SSH is the base SSH configuration (known_hosts, identity files,
	// ssh_config, timeout, AcceptNewHostKey); Host, User and Port come from
	// Host.
	SSH remote.Config
}

// TargetOf returns the Target for pool p, with base as its SSH settings. The
// transport defaults as api.Pool.Validate does: ssh when a host is set.
func TargetOf(p api.Pool, base remote.Config) Target {
	tr := p.Transport
	if tr == "" {
		tr = api.TransportLocal
		if p.Host != "" {
			tr = api.TransportSSH
		}
	}
	return Target{Transport: tr, Host: p.Host, LlorchPath: p.LlorchPath, PoolDir: p.PoolDir, SSH: base}
}

// sshConfig fills base's Host, User and Port from host.
func sshConfig(host string, base remote.Config) (remote.Config, error) {
	cfg := base
	h := strings.TrimSpace(host)
	if i := strings.LastIndexByte(h, '@'); i >= 0 {
		cfg.User, h = h[:i], h[i+1:]
		if cfg.User == "" {
			return cfg, fmt.Errorf("poolrun: host %q: empty user before @", host)
		}
	}
	if hp, port, err := net.SplitHostPort(h); err == nil {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return cfg, fmt.Errorf("poolrun: host %q: port must be 1..65535", host)
		}
		h, cfg.Port = hp, p
	} else if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		h = h[1 : len(h)-1]
	}
	if h == "" {
		return cfg, fmt.Errorf("poolrun: no host given")
	}
	cfg.Host = h
	return cfg, nil
}

// Conn is an open connection to a pool host: an SSH client, or nothing for
// a local pool. It is safe for concurrent use; each call runs its own SSH
// session or child process.
type Conn struct {
	t    Target
	host host
}

// host is what Conn needs from a transport.
type host interface {
	// run runs argv (argv[0] a program on the host's PATH or a path).
	run(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
	// llorch runs the target's llorch binary with args; exit 127 and no
	// error when it is missing.
	llorch(ctx context.Context, bin string, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error)
	// upload copies a local file to path on the host atomically (temp
	// name + rename) with mode; "~/" and relative paths are under home.
	upload(ctx context.Context, local, path string, mode uint32) error
	name() string
	close() error
}

// Dial opens a connection to t. SSH errors keep core/remote's kinds
// (errors.Is remote.ErrUnknownHostKey, ErrHostKeyChanged, ErrUnreachable,
// ErrAuth, ErrTimeout) and their messages, which name the host key's
// fingerprint when it is unknown or changed; nothing is run then.
func Dial(ctx context.Context, t Target) (*Conn, error) {
	switch t.Transport {
	case api.TransportLocal:
		return &Conn{t: t, host: localHost{}}, nil
	case api.TransportSSH, "":
		cfg, err := sshConfig(t.Host, t.SSH)
		if err != nil {
			return nil, err
		}
		c, err := remote.Dial(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return &Conn{t: t, host: sshHost{c: c}}, nil
	}
	return nil, fmt.Errorf("poolrun: unknown transport %q (want %s or %s)", t.Transport, api.TransportLocal, api.TransportSSH)
}

// Close closes the connection; commands still running on it end.
func (c *Conn) Close() error { return c.host.close() }

// Addr names the host in messages: "user@host:port", or "local".
func (c *Conn) Addr() string { return c.host.name() }

// Run runs `<llorch> args…` on the host with stdin (nil: empty), stdout
// and stderr streamed to the writers (nil discards), and returns its exit
// code. err is non-nil only when the command could not be run: a transport
// failure, ctx cancelled (the command is killed), or no llorch binary (an
// error matching ErrNoLlorch).
func (c *Conn) Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	code, err := c.host.llorch(ctx, c.t.LlorchPath, args, stdin, stdout, stderr)
	if err != nil {
		return code, err
	}
	if code == exitNotFound {
		return code, c.noLlorch()
	}
	return code, nil
}

// Pool runs `<llorch> pool [--pool-dir D] args…` like Run.
func (c *Conn) Pool(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return c.Run(ctx, c.poolArgs(args, false), stdin, stdout, stderr)
}

// PoolJSON runs `<llorch> pool [--pool-dir D] --json args…` and decodes its
// stdout into out (nil: not decoded). A non-zero exit is an *ExitError with
// the tail of stderr.
func (c *Conn) PoolJSON(ctx context.Context, args []string, stdin io.Reader, out any) error {
	return c.PoolJSONStderr(ctx, args, stdin, nil, out)
}

// PoolJSONStderr is PoolJSON with the command's stderr also written to
// stderr as it arrives (progress a command reports while it runs).
func (c *Conn) PoolJSONStderr(ctx context.Context, args []string, stdin io.Reader, stderrTee io.Writer, out any) error {
	stdout := &capBuffer{max: MaxJSONOutput}
	stderr := &tailBuffer{max: stderrTail}
	var errw io.Writer = stderr
	if stderrTee != nil {
		errw = io.MultiWriter(stderr, stderrTee)
	}
	full := c.poolArgs(args, true)
	code, err := c.Run(ctx, full, stdin, stdout, errw)
	if err != nil {
		return err
	}
	if stdout.over {
		return fmt.Errorf("poolrun: llorch pool %s on %s: its output is over %d bytes", strings.Join(args, " "), c.Addr(), MaxJSONOutput)
	}
	if code != 0 {
		return &ExitError{Host: c.Addr(), Args: full, Code: code, Stderr: strings.TrimSpace(stderr.String())}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(stdout.buf.Bytes(), out); err != nil {
		return fmt.Errorf("poolrun: llorch pool %s on %s: decoding its JSON: %w (stdout began %q)",
			strings.Join(args, " "), c.Addr(), err, head(stdout.buf.Bytes(), 200))
	}
	return nil
}

func (c *Conn) poolArgs(args []string, asJSON bool) []string {
	a := []string{"pool"}
	if c.t.PoolDir != "" {
		a = append(a, "--pool-dir", c.t.PoolDir)
	}
	if asJSON {
		a = append(a, "--json")
	}
	return append(a, args...)
}

func (c *Conn) noLlorch() error {
	where := "looked on PATH and in ~/.local/bin"
	if c.t.LlorchPath != "" {
		where = "no executable " + c.t.LlorchPath
	}
	if c.t.Transport == api.TransportLocal {
		return fmt.Errorf("%w: %s", ErrNoLlorch, where)
	}
	return fmt.Errorf("%w: %s (%s); install it with: llorch ctl pool install --host %s", ErrNoLlorch, c.Addr(), where, c.t.Host)
}

// BuildInfo is what `llorch version` reports about a binary.
type BuildInfo struct {
	Version string // "v0.3.0", "dev"
	Commit  string
	Backend string // cpu, cuda, metal
	OS      string
	Arch    string
	Line    string // the whole line as printed
}

// Build runs `<llorch> version` on the host and parses its line.
func (c *Conn) Build(ctx context.Context) (BuildInfo, error) {
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: stderrTail}
	code, err := c.Run(ctx, []string{"version"}, nil, &stdout, stderr)
	if err != nil {
		return BuildInfo{}, err
	}
	if code != 0 {
		return BuildInfo{}, &ExitError{Host: c.Addr(), Args: []string{"version"}, Code: code, Stderr: strings.TrimSpace(stderr.String())}
	}
	return ParseVersion(stdout.String())
}

// Version returns the version of the host's llorch (`llorch version`).
func (c *Conn) Version(ctx context.Context) (string, error) {
	b, err := c.Build(ctx)
	return b.Version, err
}

// ParseVersion parses the line `llorch version` prints (core/buildinfo.String):
// "llorch VERSION (commit C, backend B, OS/ARCH, GOVERSION)".
func ParseVersion(s string) (BuildInfo, error) {
	line := strings.TrimSpace(s)
	bad := func() (BuildInfo, error) {
		return BuildInfo{}, fmt.Errorf("poolrun: unexpected `llorch version` output %q", head([]byte(line), 200))
	}
	rest, ok := strings.CutPrefix(line, "llorch ")
	if !ok || strings.Contains(line, "\n") {
		return bad()
	}
	ver, paren, ok := strings.Cut(rest, " (")
	if !ok || ver == "" || !strings.HasSuffix(paren, ")") {
		return bad()
	}
	b := BuildInfo{Version: ver, Line: line}
	for _, f := range strings.Split(strings.TrimSuffix(paren, ")"), ", ") {
		switch k, v, _ := strings.Cut(f, " "); {
		case k == "commit":
			b.Commit = v
		case k == "backend":
			b.Backend = v
		case strings.Count(f, "/") == 1 && !strings.Contains(f, " "):
			b.OS, b.Arch, _ = strings.Cut(f, "/")
		}
	}
	return b, nil
}

// MaxJSONOutput bounds what PoolJSON reads of a command's stdout: a pool host
// is another machine, and what it prints is read into memory here.
const MaxJSONOutput = 16 << 20

// capBuffer keeps the first max bytes and notes that more came. (No
// embedded bytes.Buffer: io.Copy would use its ReadFrom and skip the cap.)
type capBuffer struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (b *capBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := b.max - b.buf.Len(); n > room {
		b.over = true
		p = p[:max(room, 0)]
	}
	b.buf.Write(p)
	return n, nil // the rest is dropped, not refused: the command runs to its end
}

// stderrTail is how much of a failed command's stderr an ExitError keeps.
const stderrTail = 4 << 10

// ExitError is a llorch command on a pool host that exited non-zero.
type ExitError struct {
	Host   string
	Args   []string // after `llorch`
	Code   int
	Stderr string // its last 4 KiB, trimmed
}

func (e *ExitError) Error() string {
	msg := e.Stderr
	if msg == "" {
		msg = "(no stderr)"
	}
	return fmt.Sprintf("poolrun: llorch %s on %s: exit status %d: %s", strings.Join(e.Args, " "), e.Host, e.Code, msg)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

func head(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
