package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
	"github.com/llorch/llorch/core/testkit"
)

// fleet is one orchestrator and its workers, started fresh for one policy.
type fleet struct {
	dir     string // temporary: data dir, address files, logs
	orch    *testkit.Proc
	workers []*testkit.Proc
	url     string // the orchestrator's
	client  *orchclient.Client
}

// fleetConfig is what startFleet needs.
type fleetConfig struct {
	bin, model, policy      string
	workers, slots, threads int
	ctx                     int // per slot
	readyTimeout, stopGrace time.Duration
}

// startFleet starts the orchestrator with policy, then cfg.workers workers
// registering with it, and returns once /v2/workers lists them all healthy.
// On error everything started is stopped again.
func startFleet(ctx context.Context, cfg fleetConfig) (_ *fleet, err error) {
	dir, err := os.MkdirTemp("", "cachebench-")
	if err != nil {
		return nil, err
	}
	f := &fleet{dir: dir}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, f.logs())
			f.stop(cfg.stopGrace)
		}
	}()
	deadline := time.Now().Add(cfg.readyTimeout)
	addr := filepath.Join(dir, "orchestrator.addr")
	args := []string{"orchestrate", "--listen", "127.0.0.1:0", "--addr-file", addr,
		"--data-dir", filepath.Join(dir, "data"), "--routing-policy", cfg.policy, "--log-level", "warn"}
	if f.orch, err = testkit.StartProc("orchestrator", cfg.bin, filepath.Join(dir, "orchestrator.log"), args...); err != nil {
		return f, err
	}
	if f.url, err = f.orch.WaitAddr(ctx, addr, deadline); err != nil {
		return f, err
	}
	if f.client, err = orchclient.New(f.url, "", nil); err != nil {
		return f, err
	}
	ids := make([]string, cfg.workers)
	for i := range cfg.workers {
		ids[i] = "cb" + strconv.Itoa(i+1)
		addr := filepath.Join(dir, ids[i]+".addr")
		args := []string{"worker", "--model", cfg.model, "--port", "0", "--addr-file", addr,
			"--slots", strconv.Itoa(cfg.slots), "--threads", strconv.Itoa(cfg.threads), "--ctx", strconv.Itoa(cfg.ctx),
			"--orchestrator", f.url, "--worker-id", ids[i], "--log-level", "warn"}
		p, err := testkit.StartProc(ids[i], cfg.bin, filepath.Join(dir, ids[i]+".log"), args...)
		if err != nil {
			return f, err
		}
		f.workers = append(f.workers, p)
	}
	return f, f.waitHealthy(ctx, ids, deadline)
}

// waitHealthy polls /v2/workers until every id is listed healthy.
func (f *fleet) waitHealthy(ctx context.Context, ids []string, deadline time.Time) error {
	for {
		ws, err := f.client.Workers(ctx)
		if err == nil {
			healthy := map[string]bool{}
			for _, w := range ws {
				healthy[w.WorkerID] = w.State == api.WorkerHealthy
			}
			all := true
			for _, id := range ids {
				all = all && healthy[id]
			}
			if all {
				return nil
			}
		}
		for _, p := range append([]*testkit.Proc{f.orch}, f.workers...) {
			if p.Exited() {
				return fmt.Errorf("%s exited (%v) before all workers were healthy", p.Name, p.Err())
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("workers %v not all healthy in time (last answer: %d workers, %v)", ids, len(ws), err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// stop sends SIGTERM to every process group, waits up to grace for each
// process to exit, then kills what is left, and removes the directory.
func (f *fleet) stop(grace time.Duration) {
	procs := append(f.workers[:len(f.workers):len(f.workers)], f.orch)
	for _, p := range procs {
		if p != nil {
			_ = p.Signal(syscall.SIGTERM)
		}
	}
	limit := time.After(grace)
	for _, p := range procs {
		if p == nil {
			continue
		}
		select {
		case <-p.Done():
		case <-limit:
		}
	}
	for _, p := range procs {
		if p != nil && !p.Exited() {
			_ = p.Signal(syscall.SIGKILL)
			<-p.Done()
		}
	}
	os.RemoveAll(f.dir)
}

// logs returns the tails of the processes' logs, for an error message.
func (f *fleet) logs() string {
	var b strings.Builder
	for _, p := range append([]*testkit.Proc{f.orch}, f.workers...) {
		if p != nil {
			fmt.Fprintf(&b, "\n--- %s log:\n%s", p.Name, p.Tail(15))
		}
	}
	return b.String()
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// tasks returns the status, with its text, of every task but those in skip.
func (f *fleet) tasks(ctx context.Context, skip map[string]bool) ([]api.TaskStatus, error) {
	list, err := f.client.Tasks(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []api.TaskStatus
	for _, t := range list {
		if skip[t.TaskID] {
			continue
		}
		st, err := f.client.Task(ctx, t.TaskID) // the list leaves the text out
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}
