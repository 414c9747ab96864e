package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
)

// Run runs argv on the remote host, every element shell-quoted, with stdout
// and stderr streamed to the writers as the output arrives (nil discards).
// It returns the remote exit code; err is non-nil only when the command could
// not be run or its status is unknown (exitCode -1). Cancelling ctx sends
// SIGKILL to the remote command, closes the session and returns ctx's error.
// The command's stdin is empty (it reads EOF at once).
func (c *Client) Run(ctx context.Context, argv []string, stdout, stderr io.Writer) (exitCode int, err error) {
	return c.RunInput(ctx, argv, nil, stdout, stderr)
}

// RunInput is Run with stdin copied to the remote command's standard input;
// the remote side reads EOF when stdin does (nil: at once). RunInput returns
// when the command exits, without waiting for stdin to reach its end, so a
// reader that blocks (a terminal) does not hold it up.
func (c *Client) RunInput(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) (exitCode int, err error) {
	if len(argv) == 0 {
		return -1, errors.New("remote: run: empty command")
	}
	if err := ctx.Err(); err != nil {
		return -1, fmt.Errorf("remote: run on %s: %w", c.addr, err)
	}
	cmd := quoteArgv(argv)
	s, err := c.ssh.NewSession()
	if err != nil {
		return -1, fmt.Errorf("remote: run on %s: new session: %w", c.addr, err)
	}
	defer s.Close()
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	// After a cancel Run returns at once, while the session may still be
	// draining; the gate makes sure no byte reaches the caller's writers then.
	g := &gate{}
	s.Stdout, s.Stderr = g.wrap(stdout), g.wrap(stderr)
	s.Stdin = stdin
	if err := s.Start(cmd); err != nil {
		return -1, fmt.Errorf("remote: run on %s: %w", c.addr, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		g.close()
		// Not every sshd honours signals (it needs privilege separation);
		// closing the channel ends the command's output either way.
		_ = s.Signal(ssh.SIGKILL)
		_ = s.Close()
		return -1, fmt.Errorf("remote: run on %s: %w", c.addr, ctx.Err())
	}
	if err == nil {
		return 0, nil
	}
	var exitErr *ssh.ExitError
	if errors.As(err, &exitErr) {
		return exitErr.ExitStatus(), nil
	}
	return -1, fmt.Errorf("remote: run on %s: %w", c.addr, err)
}

// Output runs argv like Run and returns its stdout. A non-zero exit is an
// error wrapping ErrExitStatus, with the command's stderr in the message.
func (c *Client) Output(ctx context.Context, argv []string) (string, error) {
	var stdout, stderr bytes.Buffer
	code, err := c.Run(ctx, argv, &stdout, &stderr)
	if err != nil {
		return stdout.String(), err
	}
	if code != 0 {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = "(no stderr)"
		}
		return stdout.String(), errorf(ErrExitStatus, "%s on %s: exit status %d: %s", quoteArgv(argv), c.addr, code, msg)
	}
	return stdout.String(), nil
}

// gate passes writes through until shut, then drops them.
type gate struct {
	mu   sync.Mutex
	shut bool
}

func (g *gate) wrap(w io.Writer) io.Writer { return &gatedWriter{g: g, w: w} }

func (g *gate) close() {
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
}

type gatedWriter struct {
	g *gate
	w io.Writer
}

func (w *gatedWriter) Write(p []byte) (int, error) {
	w.g.mu.Lock()
	defer w.g.mu.Unlock()
	if w.g.shut {
		return len(p), nil
	}
	return w.w.Write(p)
}
