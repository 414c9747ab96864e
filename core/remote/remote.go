package remote

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/melbahja/goph"
	"golang.org/x/crypto/ssh"
)

// Sentinel errors. Every error returned by Dial, Run, Output and Upload that
// falls in one of these classes wraps the matching sentinel.
var (
	// ErrUnknownHostKey: the server's host key is not in known_hosts.
	ErrUnknownHostKey = errors.New("remote: unknown host key")
	// ErrHostKeyChanged: known_hosts holds a different (or revoked) key.
	ErrHostKeyChanged = errors.New("remote: host key changed")
	// ErrAuth: the server accepted none of our keys.
	ErrAuth = errors.New("remote: authentication failed")
	// ErrUnreachable: connection refused, no route, or name not resolved.
	ErrUnreachable = errors.New("remote: host unreachable")
	// ErrTimeout: connect + handshake did not finish within Config.Timeout.
	ErrTimeout = errors.New("remote: timed out")
	// ErrExitStatus: Output's command exited non-zero.
	ErrExitStatus = errors.New("remote: command failed")
)

// kindError is an error of one sentinel's kind whose message reads as one
// plain line ("remote: host key for ... is not known ...") rather than a
// chain of prefixes; errors.Is finds both the sentinel and the cause.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return "remote: " + e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// errorf returns an error of kind with a formatted message; %w works as in
// fmt.Errorf.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// DefaultTimeout bounds connect + handshake when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Config says where and how to connect. Zero values mean "as ssh would":
// ssh_config first, then the usual defaults.
type Config struct {
	// Host is a Host alias from ssh_config, or a hostname or IP address;
	// "user@host" is accepted.
	Host string
	// User overrides the user ("" = user@ in Host, else ssh_config, else the
	// current user).
	User string
	// Port overrides the port (0 = ssh_config, else 22).
	Port int
	// IdentityFiles are private keys to try first, in addition to ssh_config
	// IdentityFile entries and ssh-agent. Missing files are skipped.
	IdentityFiles []string
	// SSHConfigPath is the ssh_config to read ("" = ~/.ssh/config; a missing
	// file is fine).
	SSHConfigPath string
	// KnownHostsPath is the known_hosts file ("" = ~/.ssh/known_hosts).
	KnownHostsPath string
	// AcceptNewHostKey adds an unknown host key to KnownHostsPath, like
	// StrictHostKeyChecking=accept-new. A changed key is never accepted.
	AcceptNewHostKey bool
	// Timeout bounds connect + handshake (0 = DefaultTimeout).
	Timeout time.Duration
	// Logger receives debug notes (skipped keys, accepted host keys);
	// nil discards them.
	Logger *slog.Logger
}

// Client is a connection to one host. It is safe for concurrent use: each
// Run opens its own session.
type Client struct {
	ssh  *ssh.Client
	addr string
	log  *slog.Logger
}

// Dial resolves cfg, connects, verifies the host key and authenticates.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "remote")
	t, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	hostPort := net.JoinHostPort(t.host, strconv.Itoa(t.port))
	kh, err := newHostKeyChecker(t.knownHosts, hostPort, cfg.AcceptNewHostKey, log)
	if err != nil {
		return nil, err
	}
	auth, closeAgent := authMethods(t.identities, log)
	defer closeAgent()

	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var d net.Dialer
	conn, err := d.DialContext(dctx, "tcp", hostPort)
	if err != nil {
		return nil, classifyDial(ctx, dctx, hostPort, err)
	}
	deadline, _ := dctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(dctx, func() { _ = conn.Close() })

	sshCfg := &ssh.ClientConfig{
		User:              t.user,
		Auth:              auth,
		HostKeyCallback:   kh.callback,
		HostKeyAlgorithms: kh.algorithms(),
		Timeout:           timeout,
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, hostPort, sshCfg)
	if !stop() || err != nil {
		_ = conn.Close()
		if err == nil {
			err = dctx.Err()
		}
		switch {
		case kh.err != nil:
			return nil, kh.err
		case ctx.Err() != nil:
			return nil, fmt.Errorf("remote: connect %s: %w", hostPort, ctx.Err())
		case dctx.Err() != nil || isTimeout(err):
			return nil, errorf(ErrTimeout, "ssh handshake with %s did not finish within %s", hostPort, timeout)
		case isAuthFailure(err):
			return nil, errorf(ErrAuth, "%s@%s: no key was accepted (tried ssh-agent and %d identity file(s)): %w",
				t.user, hostPort, len(t.identities), err)
		default:
			return nil, fmt.Errorf("remote: ssh handshake with %s: %w", hostPort, err)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	return &Client{
		ssh:  ssh.NewClient(c, chans, reqs),
		addr: t.user + "@" + hostPort,
		log:  log,
	}, nil
}

// Addr returns "user@host:port" as actually used.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection; running commands end.
func (c *Client) Close() error {
	if err := c.ssh.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("remote: close %s: %w", c.addr, err)
	}
	return nil
}

// goph wraps the connection for the helpers goph provides (SFTP).
func (c *Client) goph() *goph.Client { return &goph.Client{Client: c.ssh} }

func classifyDial(ctx, dctx context.Context, hostPort string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("remote: connect %s: %w", hostPort, ctx.Err())
	case dctx.Err() != nil || isTimeout(err):
		return errorf(ErrTimeout, "connect %s timed out: %w", hostPort, err)
	}
	// Refused, no route, DNS failure, reset: the host cannot be reached.
	return errorf(ErrUnreachable, "%s is unreachable: %w", hostPort, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isAuthFailure recognises x/crypto/ssh's "unable to authenticate" error,
// which has no exported type.
func isAuthFailure(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}
