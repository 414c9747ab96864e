package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

// ReadyTimeout bounds how long StartWorker waits for a worker's port and then
// for /health to say ready (a -race build on a busy 2-core machine is slow).
const ReadyTimeout = 2 * time.Minute

// AddrFile returns a path in a new temporary directory of t for `llorch
// worker --port 0 --addr-file PATH`: the worker binds a port the OS chooses
// and writes its URL there (see WaitAddr). Nothing is at the path yet.
func AddrFile(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "worker.addr")
}

// WaitAddr waits until a worker started with `--port 0 --addr-file path` has
// bound its port and returns its URL (http://127.0.0.1:PORT). It fails the
// test when exited is closed first (the process ended; nil: not watched) or
// after limit. It never picks a port itself, so no other process can take the
// port between a choice and the bind. Use it with your own exec.Cmd:
//
//	addr := testkit.AddrFile(t)
//	cmd := exec.Command(kit.Bin, "worker", "--model", kit.Tiny, "--port", "0", "--addr-file", addr)
//	// start cmd, close exited when cmd.Wait returns
//	url := testkit.WaitAddr(t, addr, exited, testkit.ReadyTimeout)
func WaitAddr(t testing.TB, path string, exited <-chan struct{}, limit time.Duration) string {
	t.Helper()
	url, err := waitAddr(context.Background(), path, exited, time.Now().Add(limit))
	switch {
	case errors.Is(err, errExited):
		t.Fatalf("testkit: the process exited before writing %s", path)
	case errors.Is(err, errNoAddr):
		t.Fatalf("testkit: no address in %s after %s", path, limit)
	case err != nil:
		t.Fatalf("testkit: %v", err)
	}
	return url
}

// Worker is a `llorch worker` child process started by StartWorker.
type Worker struct {
	URL string    // http://127.0.0.1:PORT, as the worker wrote it
	Cmd *exec.Cmd // the started process

	log  syncBuffer
	done chan struct{}
	err  error
}

// StartWorker starts `llorch worker --port 0 --addr-file F ARGS` from the
// kit's binary with env added to this process's environment, and returns once
// its /health says ready (within ReadyTimeout). ARGS name the model and the
// rest (`"--model", kit.Tiny, "--threads", "1"`); the port is always the OS's
// choice, read from the address file. The process is killed when the test
// ends, and its output (stdout and stderr, see Log) is printed if the test
// failed.
func (k *Kit) StartWorker(t testing.TB, env []string, args ...string) *Worker {
	t.Helper()
	addr := AddrFile(t)
	w := &Worker{done: make(chan struct{})}
	w.Cmd = exec.Command(k.Bin, append([]string{"worker", "--port", "0", "--addr-file", addr}, args...)...)
	w.Cmd.Env = append(os.Environ(), env...)
	w.Cmd.Stdout, w.Cmd.Stderr = &w.log, &w.log
	if err := w.Cmd.Start(); err != nil {
		t.Fatalf("testkit: start worker: %v", err)
	}
	go func() { w.err = w.Cmd.Wait(); close(w.done) }()
	t.Cleanup(func() {
		_ = w.Cmd.Process.Kill()
		<-w.done
		if t.Failed() {
			t.Logf("worker %v output:\n%s", args, w.Log())
		}
	})
	w.URL = WaitAddr(t, addr, w.done, ReadyTimeout)
	w.WaitReady(t, ReadyTimeout)
	return w
}

// WaitReady polls /health until it says ready, failing the test when the
// worker reports failed, exits, or is not ready within limit.
func (w *Worker) WaitReady(t testing.TB, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	hc := &http.Client{Timeout: 5 * time.Second}
	for {
		var h api.Health
		if resp, err := hc.Get(w.URL + "/health"); err == nil {
			err = json.NewDecoder(resp.Body).Decode(&h)
			resp.Body.Close()
			if err == nil && h.Status == api.StatusReady {
				return
			}
			if err == nil && h.Status == api.StatusFailed {
				t.Fatalf("testkit: worker failed to load: %s\n%s", h.Error, w.Log())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("testkit: worker at %s not ready after %s\n%s", w.URL, limit, w.Log())
		}
		select {
		case <-w.done:
			t.Fatalf("testkit: worker exited (%v) before it was ready\n%s", w.err, w.Log())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Done is closed once the process has exited and been reaped.
func (w *Worker) Done() <-chan struct{} { return w.done }

// Err is the process's exit error (nil for status 0); valid once Done is closed.
func (w *Worker) Err() error {
	<-w.done
	return w.err
}

// Log returns what the worker wrote to stdout and stderr so far.
func (w *Worker) Log() string { return w.log.String() }

// syncBuffer is a bytes.Buffer that the process's output copier and the test
// may use at once.
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
