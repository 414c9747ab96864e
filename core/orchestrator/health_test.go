package orchestrator

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/workerclient"
)

// Heartbeat time logic on a fake clock: silent → probed → unhealthy → dead,
// back to healthy when heartbeats resume; a silent worker that answers its
// probe stays healthy.
func TestHealthStateMachine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st, err := store.OpenOrchestrator(filepath.Join(t.TempDir(), "o.db"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		s, err := New(Config{HeartbeatTimeout: 10 * time.Second, DeadAfter: time.Minute, MonitorInterval: time.Second, ProbeTimeout: 2 * time.Second}, Deps{Store: st})
		if err != nil {
			t.Fatal(err)
		}
		var answers atomic.Bool
		probes := atomic.Int32{}
		s.reg.health = func(ctx context.Context, _ *workerclient.Client) (*api.Health, error) {
			probes.Add(1)
			if answers.Load() {
				return &api.Health{Status: api.StatusReady}, nil
			}
			<-ctx.Done() // a hung worker
			return nil, ctx.Err()
		}
		s.reg.mu.Lock()
		s.reg.workers["w1"] = s.reg.newWorker(store.WorkerRecord{WorkerRegistration: api.WorkerRegistration{WorkerID: "w1", URL: "http://127.0.0.1:1", Slots: 1},
			State: api.WorkerHealthy, LastSeen: time.Now()})
		s.reg.mu.Unlock()
		state := func() string {
			synctest.Wait()
			s.reg.mu.Lock()
			defer s.reg.mu.Unlock()
			return s.reg.workers["w1"].rec.State
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go s.reg.monitorLoop(ctx, func() {})

		// Heartbeats every 5s: never probed.
		for range 4 {
			time.Sleep(5 * time.Second)
			if e := s.reg.heartbeat("w1", api.Heartbeat{Status: api.StatusReady}); e != nil {
				t.Fatal(e)
			}
		}
		if got := state(); got != api.WorkerHealthy || probes.Load() != 0 {
			t.Fatalf("with heartbeats: %s after %d probes", got, probes.Load())
		}
		// Silent for the timeout, then a probe that times out.
		time.Sleep(10*time.Second + time.Second + 2*time.Second + time.Millisecond)
		if got := state(); got != api.WorkerUnhealthy {
			t.Fatalf("silent and hung: %s", got)
		}
		time.Sleep(time.Minute + time.Second)
		if got := state(); got != api.WorkerDead {
			t.Fatalf("a minute unhealthy: %s", got)
		}
		if e := s.reg.heartbeat("w1", api.Heartbeat{Status: api.StatusReady}); e != nil {
			t.Fatal(e)
		}
		if got := state(); got != api.WorkerHealthy {
			t.Fatalf("heartbeat resumed: %s", got)
		}
		// Silent but answering /health: stays healthy.
		answers.Store(true)
		time.Sleep(30 * time.Second)
		if got := state(); got != api.WorkerHealthy || probes.Load() < 2 {
			t.Fatalf("silent but answering: %s after %d probes", got, probes.Load())
		}
		if e := s.reg.heartbeat("w1", api.Heartbeat{Status: api.StatusDraining}); e != nil || state() != api.WorkerDraining {
			t.Fatalf("draining heartbeat: %v %s", e, state())
		}
		if e := s.reg.heartbeat("nope", api.Heartbeat{}); e == nil || e.Code != api.CodeWorkerNotFound {
			t.Fatalf("unknown worker heartbeat: %v", e)
		}
		cancel()
	})
}
