package orchestrator

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
)

// probeCounter is a worker whose /health hangs or answers, counting probes.
type probeCounter struct {
	fakeWorker
	answers atomic.Bool
	probes  atomic.Int32
}

func (p *probeCounter) Health(ctx context.Context) (*api.Health, error) {
	p.probes.Add(1)
	if p.answers.Load() {
		return &api.Health{Status: api.StatusReady}, nil
	}
	<-ctx.Done() // a hung worker
	return nil, ctx.Err()
}

func newTestRegistry(t *testing.T, cfg Config, connect func(string) workerAPI) *registry {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := store.OpenOrchestrator(filepath.Join(t.TempDir(), "o.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newRegistry(&cfg, slog.New(slog.DiscardHandler), st, connect, newMetrics())
}

// Heartbeat time logic on a fake clock: silent → probed → unhealthy → dead,
// back to healthy when heartbeats resume; a silent worker that answers its
// probe stays healthy. The registry is tested alone, without HTTP.
func TestHealthStateMachine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pc := &probeCounter{}
		r := newTestRegistry(t, Config{HeartbeatTimeout: 10 * time.Second, DeadAfter: time.Minute, MonitorInterval: time.Second,
			ProbeTimeout: 2 * time.Second}, func(string) workerAPI { return pc })
		var lost []string
		var mu sync.Mutex
		r.onLost = func(id, _, why string) { mu.Lock(); lost = append(lost, id+": "+why); mu.Unlock() }
		r.register(api.WorkerRegistration{WorkerID: "w1", URL: "http://127.0.0.1:1", Model: api.ModelInfo{ID: "m"}, Slots: 1})
		if _, ok := r.acquire("w1"); !ok {
			t.Fatal("no slot on a new worker")
		}
		state := func() string {
			synctest.Wait()
			r.mu.Lock()
			defer r.mu.Unlock()
			return r.workers["w1"].rec.State
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go r.monitorLoop(ctx, func() {})

		// Heartbeats every 5s: never probed.
		for range 4 {
			time.Sleep(5 * time.Second)
			if e := r.heartbeat("w1", api.Heartbeat{Status: api.StatusReady}); e != nil {
				t.Fatal(e)
			}
		}
		if got := state(); got != api.WorkerHealthy || pc.probes.Load() != 0 {
			t.Fatalf("with heartbeats: %s after %d probes", got, pc.probes.Load())
		}
		// Silent for the timeout, then a probe that times out: unhealthy, and
		// the attempt running there is reported lost.
		time.Sleep(10*time.Second + time.Second + 2*time.Second + time.Millisecond)
		if got := state(); got != api.WorkerUnhealthy {
			t.Fatalf("silent and hung: %s", got)
		}
		mu.Lock()
		if len(lost) != 1 {
			t.Fatalf("lost reports %q, want one", lost)
		}
		mu.Unlock()
		r.release("w1")
		time.Sleep(time.Minute + time.Second)
		if got := state(); got != api.WorkerDead {
			t.Fatalf("a minute unhealthy: %s", got)
		}
		if e := r.heartbeat("w1", api.Heartbeat{Status: api.StatusReady}); e != nil {
			t.Fatal(e)
		}
		if got := state(); got != api.WorkerHealthy {
			t.Fatalf("heartbeat resumed: %s", got)
		}
		// Silent but answering /health: stays healthy.
		pc.answers.Store(true)
		time.Sleep(30 * time.Second)
		if got := state(); got != api.WorkerHealthy || pc.probes.Load() < 2 {
			t.Fatalf("silent but answering: %s after %d probes", got, pc.probes.Load())
		}
		if e := r.heartbeat("w1", api.Heartbeat{Status: api.StatusDraining}); e != nil || state() != api.WorkerDraining {
			t.Fatalf("draining heartbeat: %v %s", e, state())
		}
		if e := r.heartbeat("nope", api.Heartbeat{}); e == nil || e.Code != api.CodeWorkerNotFound {
			t.Fatalf("unknown worker heartbeat: %v", e)
		}
		cancel()
	})
}

// Slots: acquire takes one of a healthy worker's, release gives it back; a
// worker that answered ALL_SLOTS_BUSY shows no free slot until the time it
// was given; a worker that registers again at another URL (a new process)
// loses the attempts at the old one.
func TestRegistrySlots(t *testing.T) {
	fleet := newFakeFleet()
	r := newTestRegistry(t, Config{}, fleet.connect)
	var lost []string
	r.onLost = func(id, _, _ string) { lost = append(lost, id) }
	reg := api.WorkerRegistration{WorkerID: "w1", URL: "http://a:1", Model: api.ModelInfo{ID: "m", Ctx: 2048, Digest: "d1"}, Slots: 2}
	r.register(reg)
	for i := range 2 {
		if _, ok := r.acquire("w1"); !ok {
			t.Fatalf("acquire %d failed", i)
		}
	}
	if _, ok := r.acquire("w1"); ok {
		t.Fatal("acquired a third slot of two")
	}
	r.release("w1")
	now := time.Now()
	r.busy("w1", now.Add(time.Hour))
	ws := r.snapshot(nil, now)
	if len(ws) != 1 || ws[0].SlotsBusy != 2 || ws[0].Ctx != 2048 || ws[0].Digest != "d1" {
		t.Fatalf("snapshot while busy %+v", ws)
	}
	if ws := r.snapshot(nil, now.Add(2*time.Hour)); ws[0].SlotsBusy != 1 {
		t.Fatalf("snapshot after busy %+v", ws)
	}
	reg.URL = "http://b:1"
	r.register(reg)
	if len(lost) != 1 || lost[0] != "w1" {
		t.Fatalf("lost %v after a new URL with an attempt running", lost)
	}
	if _, e := r.drain("w1"); e != nil {
		t.Fatal(e)
	}
	r.register(reg) // a drained worker that restarts stays drained
	if v := r.list(); v[0].State != api.WorkerDraining {
		t.Fatalf("state %s after registering again while drained", v[0].State)
	}
	if e := r.remove("w1"); e != nil || len(r.list()) != 0 {
		t.Fatalf("remove: %v, %d left", e, len(r.list()))
	}
	if e := r.remove("w1"); e == nil || e.Code != api.CodeWorkerNotFound {
		t.Fatalf("second remove: %v", e)
	}
	// The store follows.
	recs, err := r.st.Workers()
	if err != nil || len(recs) != 0 {
		t.Fatalf("store has %d workers, %v", len(recs), err)
	}
}
