package testkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/llorch/llorch/core/bind"
)

// Proc is a child process in its own process group, its stdout and stderr in
// a log file, reaped by one goroutine. On Linux the kernel kills it when the
// starting process dies, however it dies (a go test timeout runs no cleanup).
// Name, LogPath, Cmd and Started are set by StartProc and not changed after.
type Proc struct {
	Name    string    // for messages: w1#3, orchestrator
	LogPath string    // stdout and stderr
	Cmd     *exec.Cmd // the started process
	Started time.Time // when Start returned

	done chan struct{} // closed once the process is reaped
	err  error         // its exit status, once done is closed
}

// StartProc starts bin with args in a process group of its own, stdout and
// stderr in logPath (created or truncated).
func StartProc(name, bin, logPath string, args ...string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	p := &Proc{Name: name, LogPath: logPath, done: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Stdout, p.Cmd.Stderr = logf, logf
	p.Cmd.SysProcAttr = procAttr()
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p.Started = time.Now()
	go func() { p.err = p.Cmd.Wait(); close(p.done) }()
	return p, nil
}

// Done is closed once the process has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error (nil for status 0); it waits for Done.
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Exited reports whether the process has ended and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process's group; after the process exited it does
// nothing (its pid may belong to someone else by now).
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	return syscall.Kill(-p.Cmd.Process.Pid, sig)
}

// Tail returns the last n lines of the process's log.
func (p *Proc) Tail(n int) string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitAddr waits for the address file at path that the process writes once
// it listens (`--addr-file path`, read with bind.ReadAddrFile) and returns
// the URL in it. It fails when the process exits first, or at deadline.
func (p *Proc) WaitAddr(ctx context.Context, path string, deadline time.Time) (string, error) {
	url, err := waitAddr(ctx, path, p.done, deadline)
	switch {
	case errors.Is(err, errExited):
		return "", fmt.Errorf("%s exited (%v) before writing %s", p.Name, p.err, path)
	case errors.Is(err, errNoAddr):
		return "", fmt.Errorf("%s: no address in %s in time", p.Name, path)
	}
	return url, err
}

var (
	errExited = errors.New("testkit: the process exited")
	errNoAddr = errors.New("testkit: no address in time")
)

// waitAddr polls an address file until it holds a URL, the deadline
// passes (errNoAddr), exited is closed (errExited; nil: not watched) or ctx
// ends.
func waitAddr(ctx context.Context, path string, exited <-chan struct{}, deadline time.Time) (string, error) {
	for {
		url, err := bind.ReadAddrFile(path)
		if err == nil {
			return url, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if time.Now().After(deadline) {
			return "", errNoAddr
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-exited:
			return "", errExited
		case <-time.After(10 * time.Millisecond):
		}
	}
}
