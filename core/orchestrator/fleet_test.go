package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/buildinfo"
	"github.com/llorch/llorch/core/sse"
	"github.com/llorch/llorch/core/store"
)

// fakePools stands in for the pools' commands in the fleet's unit tests: a
// spawn registers a fake worker with the registry, as a real worker does
// once loaded. The end-to-end tests (tests/fleet) drive real pools.
type fakePools struct {
	p *parts

	mu        sync.Mutex
	down      map[string]bool // pools that do not answer
	inv       map[string]*api.PoolStatus
	estimate  uint64
	rss       uint64
	gate      chan struct{} // when set, a spawn waits for it
	spawnErr  map[string]error
	spawns    []spawnRequest
	stops     []string
	downloads int
	installs  int
}

func newFakePools(pools ...string) *fakePools {
	fp := &fakePools{inv: map[string]*api.PoolStatus{}, estimate: 100 << 20, spawnErr: map[string]error{}}
	for _, name := range pools {
		fp.inv[name] = &api.PoolStatus{Hostname: name, OS: "linux", Arch: "amd64", Version: "dev",
			RAMTotalBytes: 64 << 30, RAMFreeBytes: 32 << 30, Backends: []api.PoolBackend{{Name: "cpu", Available: true}}}
	}
	return fp
}

func (fp *fakePools) host(p api.Pool) poolHost { return &fakeHost{fp: fp, pool: p.Name} }

func (fp *fakePools) spawned() []spawnRequest {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return slices.Clone(fp.spawns)
}

func (fp *fakePools) stopped() []string {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return slices.Clone(fp.stops)
}

// alive lists the workers alive on a pool.
func (fp *fakePools) alive(pool string) []string {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	var out []string
	for _, w := range fp.inv[pool].Workers {
		if w.Alive {
			out = append(out, w.ID)
		}
	}
	return out
}

// kill makes a worker's process vanish from its pool and the registry.
func (fp *fakePools) kill(id string) {
	fp.mu.Lock()
	for _, inv := range fp.inv {
		inv.Workers = slices.DeleteFunc(inv.Workers, func(w api.PoolWorker) bool { return w.ID == id })
	}
	fp.mu.Unlock()
	fp.p.reg.remove(id)
}

type fakeHost struct {
	fp   *fakePools
	pool string
}

func (h *fakeHost) Status(context.Context) (api.PoolStatus, error) {
	h.fp.mu.Lock()
	defer h.fp.mu.Unlock()
	inv, ok := h.fp.inv[h.pool]
	if !ok || h.fp.down[h.pool] {
		return api.PoolStatus{}, fmt.Errorf("%w: connection refused", errUnreachable)
	}
	st := *inv
	st.Workers = slices.Clone(inv.Workers)
	st.Models = slices.Clone(inv.Models)
	return st, nil
}

func (h *fakeHost) Estimate(context.Context, api.ModelSpec) (uint64, error) {
	h.fp.mu.Lock()
	defer h.fp.mu.Unlock()
	return h.fp.estimate, nil
}

func (h *fakeHost) Download(_ context.Context, s api.ModelSpec, progress func(done, total int64)) error {
	progress(1, 2)
	h.fp.mu.Lock()
	defer h.fp.mu.Unlock()
	h.fp.downloads++
	inv := h.fp.inv[h.pool]
	inv.Models = append(slices.DeleteFunc(inv.Models, func(m api.PoolModel) bool { return m.ID == s.ID }),
		api.PoolModel{ID: s.ID, Ref: s.Source, SHA256: s.SHA256})
	return nil
}

func (h *fakeHost) Spawn(ctx context.Context, r spawnRequest) (api.PoolWorker, error) {
	h.fp.mu.Lock()
	h.fp.spawns = append(h.fp.spawns, r)
	gate, err := h.fp.gate, h.fp.spawnErr[r.Spec.Source]
	inv := h.fp.inv[h.pool]
	for _, w := range inv.Workers {
		if w.ID == r.WorkerID && w.Alive { // idempotent by id, as `pool worker spawn --id` is
			h.fp.mu.Unlock()
			return w, nil
		}
	}
	h.fp.mu.Unlock()
	if r.Progress != nil {
		r.Progress(0.5)
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return api.PoolWorker{}, ctx.Err()
		}
	}
	if err != nil {
		return api.PoolWorker{}, &spawnError{msg: err.Error(), log: []string{"loading " + r.Spec.Source, err.Error()}}
	}
	w := api.PoolWorker{ID: r.WorkerID, URL: "http://" + r.WorkerID + ".test:1", Model: r.Spec.ID, Backend: r.Spec.Backend, Slots: r.Spec.Slots, Alive: true, Status: "ready"}
	h.fp.mu.Lock()
	inv.Workers = append(inv.Workers, w)
	rss := h.fp.rss
	h.fp.mu.Unlock()
	p := h.fp.p
	p.fleet.add(w.URL)
	p.reg.register(api.WorkerRegistration{WorkerID: w.ID, URL: w.URL, Model: api.ModelInfo{ID: r.Spec.ID, Ctx: 4096, Digest: "digest-" + r.Spec.Source, Embedding: r.Spec.Embedding},
		Backend: r.Spec.Backend, Slots: r.Spec.Slots, Pool: r.Pool})
	if rss > 0 {
		_ = p.reg.heartbeat(w.ID, api.Heartbeat{Status: api.StatusReady, SlotsTotal: r.Spec.Slots, RSSBytes: rss})
	}
	return w, nil
}

func (h *fakeHost) Stop(_ context.Context, id string) error {
	h.fp.mu.Lock()
	defer h.fp.mu.Unlock()
	h.fp.stops = append(h.fp.stops, id)
	inv := h.fp.inv[h.pool]
	inv.Workers = slices.DeleteFunc(inv.Workers, func(w api.PoolWorker) bool { return w.ID == id })
	return nil
}

// Install "copies this build": the pool then reports this version.
func (h *fakeHost) Install(context.Context) error {
	h.fp.mu.Lock()
	defer h.fp.mu.Unlock()
	h.fp.installs++
	h.fp.inv[h.pool].Version = buildinfo.Version
	return nil
}

func (h *fakeHost) Logs(_ context.Context, id string, n int) ([]string, error) {
	return []string{"worker " + id + " log", "the last line"}, nil
}

func fleetConfig() Config {
	return Config{ReconcileInterval: 20 * time.Millisecond, InventoryInterval: 50 * time.Millisecond, QueuedInterval: 20 * time.Millisecond,
		HeartbeatTimeout: time.Minute, StopGrace: 5 * time.Second, RegisterTimeout: 5 * time.Second}
}

// startFleet starts the parts with fake pools and declares them.
func startFleet(t *testing.T, cfg Config, fp *fakePools, dir string, pools ...api.Pool) *parts {
	t.Helper()
	p := startPartsWith(t, cfg, newFakeFleet(), dir, fp.host)
	fp.p = p
	for _, pool := range pools {
		if _, e := p.Server.fleet.putPool(pool); e != nil {
			t.Fatal(e)
		}
	}
	return p
}

// waitPools waits until the pools' inventories are in.
func (p *parts) waitPools(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		waitFor(t, 5*time.Second, "pool "+n+" refreshed", func() bool {
			v, ok := p.Server.fleet.poolView(n)
			return ok && v.State == api.PoolOK
		})
	}
}

func declare(t *testing.T, p *parts, m api.ModelSpec) {
	t.Helper()
	if _, e := p.Server.fleet.putModel(m); e != nil {
		t.Fatal(e)
	}
}

func (p *parts) model(t *testing.T, id string) api.ModelView {
	t.Helper()
	v, ok := p.Server.fleet.modelView(id)
	if !ok {
		t.Fatalf("model %s not declared", id)
	}
	return v
}

func (p *parts) eventKinds() []string {
	evs, _ := p.Server.fleet.eventsAfter(0, memEventsKept)
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

// A task for a declared model with no worker waits while a worker starts,
// is told so (queued{reason: starting}), then runs on it.
func TestFleetOnDemandStart(t *testing.T) {
	fp := newFakePools("a")
	fp.gate = make(chan struct{})
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 0})
	if got := p.model(t, "m"); got.State != api.ModelIdle || got.Replicas.Ready != 0 {
		t.Fatalf("before any task: %+v", got)
	}
	id := p.submit(t, fakeReq(3))
	waitFor(t, 5*time.Second, "the queued task to hear of the start", func() bool {
		p.tasks.mu.Lock()
		defer p.tasks.mu.Unlock()
		q := p.tasks.table[id].queued
		return q.Reason == "starting" && q.Pool == "a" && q.Step == stepLoading && q.Progress == 0.5
	})
	if st := p.state(id); st.Status != api.TaskQueued {
		t.Fatalf("task ran before its worker started: %+v", st)
	}
	close(fp.gate)
	if st := p.wait(t, id); st.Status != api.TaskSucceeded {
		t.Fatalf("task: %+v", st)
	}
	// The fleet sees the start in its own pass, which a loaded machine may
	// run after the task has ended.
	var v api.ModelView
	waitFor(t, 10*time.Second, "the model's ready replica", func() bool {
		v = p.model(t, "m")
		return v.Replicas.Ready == 1 && slices.Contains(p.eventKinds(), api.EventReady)
	})
	if len(v.Workers) != 1 || v.Workers[0].Pool != "a" || v.ColdStartMs <= 0 {
		t.Fatalf("model after the start: %+v", v)
	}
	kinds := p.eventKinds()
	for _, k := range []string{api.EventDownload, api.EventDownloaded, api.EventSpawn, api.EventReady} {
		if !slices.Contains(kinds, k) {
			t.Fatalf("events %v lack %s", kinds, k)
		}
	}
	waitFor(t, 5*time.Second, "the replica gauge", func() bool { return value(p.m.fleetReplicas.WithLabelValues("m", "ready")) == 1 })
	if n := value(p.m.fleetEvents.WithLabelValues(api.EventSpawn)); n != 1 {
		t.Fatalf("llorch_fleet_events_total{kind=spawn} = %v", n)
	}
	if n := value(p.m.poolUp.WithLabelValues("a")); n != 1 {
		t.Fatalf("llorch_pool_up{pool=a} = %v", n)
	}
	var hist dto.Metric
	if err := p.m.fleetColdStart.Write(&hist); err != nil || hist.GetHistogram().GetSampleCount() != 1 {
		t.Fatalf("llorch_fleet_cold_start_seconds: %v %v", hist.GetHistogram(), err)
	}
	// The next task that waits for a start is told the measured one.
	if e := p.Server.fleet.deleteModel("m"); e != nil {
		t.Fatal(e)
	}
	waitFor(t, 5*time.Second, "the replica stopped", func() bool { return len(fp.stopped()) == 1 })
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 0})
	fp.mu.Lock()
	fp.gate = make(chan struct{})
	fp.mu.Unlock()
	acc, e := p.Server.submit(context.Background(), fakeReq(1), true)
	if e != nil || acc.PredictedStartMs != v.ColdStartMs {
		t.Fatalf("second task: %+v %v, want predicted %d ms", acc, e, v.ColdStartMs)
	}
	close(fp.gate)
	p.wait(t, acc.TaskID)
	// An undeclared model is still unknown.
	if _, e := p.Server.submit(context.Background(), &api.TaskRequest{Model: "other", ExecuteRequest: api.ExecuteRequest{Prompt: "p"}}, true); e == nil || e.Code != api.CodeModelNotFound {
		t.Fatalf("undeclared model: %v", e)
	}
}

// min_replicas 2 over two pools places one replica on each (both hold the
// file: a pool that has it wins over one with fewer replicas, and the
// first download would otherwise decide the second placement whenever a's
// inventory is refreshed in between).
func TestFleetSpreadsReplicas(t *testing.T) {
	fp := newFakePools("a", "b")
	for _, inv := range fp.inv {
		inv.Models = []api.PoolModel{{ID: "m", Ref: "hf:org/repo/m.gguf@main"}}
	}
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"}, api.Pool{Name: "b"})
	p.waitPools(t, "a", "b")
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 2})
	waitFor(t, 5*time.Second, "two ready replicas", func() bool { return p.model(t, "m").Replicas.Ready == 2 })
	if a, b := fp.alive("a"), fp.alive("b"); len(a) != 1 || len(b) != 1 {
		t.Fatalf("replicas: a=%v b=%v", a, b)
	}
}

// A model that fits nowhere is refused with the reason; a task already
// waiting for it ends with the same error.
func TestFleetNoCapacity(t *testing.T) {
	fp := newFakePools("a")
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a", MemoryLimitBytes: 50 << 20})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main"})
	id := p.submit(t, fakeReq(3))
	st := p.wait(t, id)
	if st.Status != api.TaskFailed || st.Error == nil || st.Error.Code != api.CodeNoCapacity {
		t.Fatalf("waiting task: %+v", st)
	}
	_, e := p.Server.submit(context.Background(), fakeReq(3), true)
	if e == nil || e.Code != api.CodeNoCapacity || e.HTTPStatus() != 503 || !strings.Contains(e.Message, "needs 100.0 MiB") || !strings.Contains(e.Message, "50.0 MiB on pool a") {
		t.Fatalf("new task: %v", e)
	}
	if v := p.model(t, "m"); v.State != api.ModelUnplaceable || len(fp.spawned()) != 0 {
		t.Fatalf("model %+v, spawns %v", v, fp.spawned())
	}
	// Room appears (the pool's limit is raised): the model starts.
	if _, e := p.Server.fleet.putPool(api.Pool{Name: "a", MemoryLimitBytes: 1 << 30}); e != nil {
		t.Fatal(e)
	}
	waitFor(t, 5*time.Second, "the model to fit", func() bool { return p.model(t, "m").State == api.ModelIdle })
	id = p.submit(t, fakeReq(3))
	if st := p.wait(t, id); st.Status != api.TaskSucceeded {
		t.Fatalf("after the limit was raised: %+v", st)
	}
}

// The memory a ready replica reports corrects the estimate, and the next
// placement uses the corrected need.
func TestFleetLearnedCorrection(t *testing.T) {
	fp := newFakePools("a", "b")
	fp.rss = 200 << 20 // twice the estimate
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a", MemoryLimitBytes: 150 << 20}, api.Pool{Name: "b", MemoryLimitBytes: 1 << 30})
	p.waitPools(t, "a", "b")
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1, MaxReplicas: 2})
	waitFor(t, 5*time.Second, "the first replica", func() bool { return p.model(t, "m").Replicas.Ready == 1 })
	if a := fp.alive("a"); len(a) != 0 {
		t.Fatalf("the first replica went to a (%v): b has more room", a)
	}
	waitFor(t, 5*time.Second, "the learned correction", func() bool {
		f := p.model(t, "m").Fit
		return f != nil && f.Correction > 1.9 && f.ActualBytes == 200<<20
	})
	if f := p.model(t, "m").Fit; f.NeedBytes != 200<<20 || f.EstimateBytes != 100<<20 {
		t.Fatalf("fit %+v", f)
	}
	// Without the correction the second replica would go to a (fewer
	// replicas there, and 100 MiB < 150 MiB); with it, only b has room.
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 2, MaxReplicas: 2})
	waitFor(t, 5*time.Second, "the second replica", func() bool { return p.model(t, "m").Replicas.Ready == 2 })
	if a, b := fp.alive("a"), fp.alive("b"); len(a) != 0 || len(b) != 2 {
		t.Fatalf("placement ignored the correction: a=%v b=%v", a, b)
	}
	fits, err := p.st.Fits()
	if err != nil || len(fits) != 1 {
		t.Fatalf("stored fits %v %v", fits, err)
	}
}

// A replica that dies is replaced; repeated crashes make the model failing
// with the last log lines of a failed load.
func TestFleetCrashRestart(t *testing.T) {
	fp := newFakePools("a")
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1})
	waitFor(t, 5*time.Second, "a ready replica", func() bool { return p.model(t, "m").Replicas.Ready == 1 })
	first := fp.alive("a")[0]
	fp.kill(first)
	waitFor(t, 10*time.Second, "a replacement", func() bool {
		a := fp.alive("a")
		return len(a) == 1 && a[0] != first && p.model(t, "m").Replicas.Ready == 1
	})
	if k := p.eventKinds(); !slices.Contains(k, api.EventCrash) || !slices.Contains(k, api.EventRestart) {
		t.Fatalf("no crash event: %v", p.eventKinds())
	}
	if id := p.submit(t, fakeReq(2)); p.wait(t, id).Status != api.TaskSucceeded {
		t.Fatal("task after the restart failed")
	}
}

// A new source replaces replicas one at a time; a source that fails to
// load rolls back and the old replicas keep serving.
func TestFleetRollingChangeAndRollback(t *testing.T) {
	fp := newFakePools("a")
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/v1.gguf@main", MinReplicas: 2})
	waitFor(t, 5*time.Second, "two v1 replicas", func() bool { return p.model(t, "m").Replicas.Ready == 2 })
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/v2.gguf@main", MinReplicas: 2})
	waitFor(t, 10*time.Second, "two v2 replicas", func() bool {
		v := p.model(t, "m")
		n := 0
		for _, w := range v.Workers {
			if w.Source == "hf:org/repo/v2.gguf@main" && w.State == "ready" {
				n++
			}
		}
		return n == 2 && len(v.Workers) == 2
	})
	// Never fewer than one ready replica during the change: every v1 stop
	// came after a v2 start.
	if stops := fp.stopped(); len(stops) != 2 {
		t.Fatalf("stops %v", stops)
	}
	fp.mu.Lock()
	fp.spawnErr["hf:org/repo/v3.gguf@main"] = errors.New("llama_model_load: error loading model: tensor data is not within file bounds")
	fp.mu.Unlock()
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/v3.gguf@main", MinReplicas: 2})
	waitFor(t, 10*time.Second, "the rollback", func() bool {
		v := p.model(t, "m")
		return v.Source == "hf:org/repo/v2.gguf@main" && strings.Contains(v.LastError, "rolled back")
	})
	v := p.model(t, "m")
	if v.Replicas.Ready != 2 || !strings.Contains(v.LastError, "rolled back") || len(v.LastLog) == 0 {
		t.Fatalf("after the rollback: %+v", v)
	}
	for _, w := range v.Workers {
		if w.Source != "hf:org/repo/v2.gguf@main" {
			t.Fatalf("a v3 replica is left: %+v", v.Workers)
		}
	}
}

// Replicas above min_replicas that stay idle past idle_ttl are stopped; a
// replica that serves tasks is kept, and min_replicas are kept. The clock is
// testing/synctest's: ten minutes pass at once.
func TestFleetIdleStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fp := newFakePools("a")
		cfg := fleetConfig()
		cfg.ReconcileInterval, cfg.InventoryInterval = time.Second, time.Minute
		p := startFleet(t, cfg, fp, "", api.Pool{Name: "a"})
		declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1, MaxReplicas: 2, IdleTTL: api.Duration(10 * time.Minute)})
		synctest.Wait()
		time.Sleep(5 * time.Second)
		if v := p.model(t, "m"); v.Replicas.Ready != 1 {
			t.Fatalf("min_replicas: %+v", v)
		}
		// Two tasks at once on a 1-slot worker: a second replica starts.
		declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1, MaxReplicas: 2, Slots: 1, IdleTTL: api.Duration(10 * time.Minute)})
		time.Sleep(30 * time.Second) // the rolling change to 1 slot
		if v := p.model(t, "m"); v.Replicas.Ready != 1 || v.Slots != 1 {
			t.Fatalf("after the change to 1 slot: %+v", v)
		}
		// The one replica's slot is taken by a task that does not end: the
		// next task waits, and a second replica starts for it.
		first := p.model(t, "m").Workers[0].WorkerID
		p.fleet.connect("http://" + first + ".test:1").(*fakeWorker).set(hang)
		a := p.submit(t, fakeReq(2))
		time.Sleep(5 * time.Second)
		b := p.submit(t, fakeReq(2))
		time.Sleep(30 * time.Second)
		if st := p.state(b); st.Status != api.TaskSucceeded || st.WorkerID == first {
			t.Fatalf("task b: %+v", st)
		}
		if v := p.model(t, "m"); v.Replicas.Ready != 2 {
			t.Fatalf("no second replica for the waiting task: %+v", v)
		}
		p.Server.cancel(a, "test", principal{role: RoleAdmin})
		stopsBefore := len(fp.stopped())
		time.Sleep(9 * time.Minute) // idle, but not for idle_ttl yet
		if v := p.model(t, "m"); v.Replicas.Ready != 2 || len(fp.stopped()) != stopsBefore {
			t.Fatalf("stopped before idle_ttl: %+v", v)
		}
		time.Sleep(2 * time.Minute)
		v := p.model(t, "m")
		if v.Replicas.Ready != 1 || len(fp.stopped()) != stopsBefore+1 {
			t.Fatalf("after idle_ttl: %+v, stops %v", v, fp.stopped())
		}
		time.Sleep(30 * time.Minute) // min_replicas stays
		if v := p.model(t, "m"); v.Replicas.Ready != 1 {
			t.Fatalf("min_replicas not kept: %+v", v)
		}
		if k := p.eventKinds(); !slices.Contains(k, api.EventStop) {
			t.Fatalf("events %v", k)
		}
		p.stop()
	})
}

// An orchestrator that dies in the middle of a start resumes it after the
// restart: the pool's spawn is idempotent by worker id, so exactly one
// worker runs.
func TestFleetRestartMidStart(t *testing.T) {
	fp := newFakePools("a")
	fp.gate = make(chan struct{})
	dir := t.TempDir()
	p := startFleet(t, fleetConfig(), fp, dir, api.Pool{Name: "a"})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1})
	waitFor(t, 5*time.Second, "the spawn", func() bool { return len(fp.spawned()) == 1 })
	p.crash()
	first := fp.spawned()[0].WorkerID
	close(fp.gate) // the pool finishes the spawn the dead orchestrator asked for
	fp.mu.Lock()
	fp.gate = nil
	fp.mu.Unlock()
	q := startFleet(t, fleetConfig(), fp, dir)
	waitFor(t, 10*time.Second, "the model ready after the restart", func() bool { return q.model(t, "m").Replicas.Ready == 1 })
	if a := fp.alive("a"); len(a) != 1 || a[0] != first {
		t.Fatalf("workers after the restart: %v (first start %s)", a, first)
	}
}

// GET /v2/meta/capabilities lists declared and served models with their
// states; GET /v2/events streams fleet events from Last-Event-ID on.
func TestFleetCapabilitiesAndEvents(t *testing.T) {
	fp := newFakePools("a")
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", Ctx: 2048})
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	var caps api.Capabilities
	getJSON(t, srv.URL+"/v2/meta/capabilities", &caps)
	if caps.APIVersion != "v2" || len(caps.Models) != 1 || caps.Models[0].ID != "m" || caps.Models[0].Ctx != 2048 ||
		!caps.Models[0].Declared || caps.Models[0].State != api.ModelIdle || caps.Limits.QueueCapacity != 1024 || !slices.Contains(caps.Features, "fleet.on_demand") {
		t.Fatalf("capabilities %+v", caps)
	}
	waitFor(t, 5*time.Second, "the pool's inventory event", func() bool { return len(p.eventKinds()) > 0 })
	first := p.Server.fleet.lastSeq()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Last-Event-ID", fmt.Sprint(first))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	id := p.submit(t, fakeReq(2)) // starts a worker: download … ready events
	r := sse.NewReader(resp.Body)
	var kinds []string
	for !slices.Contains(kinds, api.EventReady) {
		ev, err := r.Next()
		if err != nil {
			t.Fatalf("after %v: %v", kinds, err)
		}
		var fe api.FleetEvent
		if err := json.Unmarshal(ev.Data, &fe); err != nil || ev.ID != fmt.Sprint(fe.Seq) || fe.Seq <= first {
			t.Fatalf("event %+v %v", ev, err)
		}
		kinds = append(kinds, fe.Kind)
	}
	if kinds[0] != api.EventDownload {
		t.Fatalf("events after %d: %v", first, kinds)
	}
	p.wait(t, id)
	resp2, err := http.Get(srv.URL + "/v2/events?after=99999999999999999999")
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusBadRequest {
		t.Fatalf("after out of range: %d", resp2.StatusCode)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkReconcile is one reconcile pass over 100 pools × 10 ready
// workers (10 models, 100 replicas each) that report their memory, with
// nothing to change.
func BenchmarkReconcile(b *testing.B) {
	fp := newFakePools()
	cfg := fleetConfig()
	cfg.ReconcileInterval, cfg.InventoryInterval = time.Hour, time.Hour
	st, err := store.OpenOrchestrator(filepath.Join(b.TempDir(), "o.db"), time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ff := newFakeFleet()
	s, err := New(cfg, Deps{Store: st, connect: ff.connect, poolHost: fp.host})
	if err != nil {
		b.Fatal(err)
	}
	f := s.fleet
	now := time.Now()
	for m := range 10 {
		id := fmt.Sprintf("m%d", m)
		spec := api.ModelSpec{ID: id, Source: "hf:o/r/" + id + ".gguf@main", MinReplicas: 100, MaxReplicas: 100, Slots: 4, Backend: "cpu", IdleTTL: api.Duration(time.Hour)}
		f.models[id] = &fleetModel{rec: store.FleetModel{Spec: spec, Revision: 1}}
		f.ests[estimateKey(spec)] = estimate{bytes: 1 << 30, at: now}
	}
	for p := range 100 {
		name := fmt.Sprintf("pool%03d", p)
		inv := &api.PoolStatus{RAMFreeBytes: 1 << 40, Backends: []api.PoolBackend{{Name: "cpu", Available: true}}}
		for w := range 10 {
			id := fmt.Sprintf("%s-w%d", name, w)
			model := fmt.Sprintf("m%d", w)
			inv.Workers = append(inv.Workers, api.PoolWorker{ID: id, Alive: true, Model: model})
			url := "http://" + id + ".test:1"
			ff.add(url)
			s.reg.register(api.WorkerRegistration{WorkerID: id, URL: url, Model: api.ModelInfo{ID: model, Ctx: 4096}, Slots: 4, Pool: name})
			if e := s.reg.heartbeat(id, api.Heartbeat{Status: api.StatusReady, SlotsTotal: 4, RSSBytes: 600 << 20}); e != nil {
				b.Fatal(e)
			}
			f.replicas[id] = &replica{rec: store.Replica{WorkerID: id, Model: model, Pool: name, Revision: 1, Phase: phaseReady}, readyAt: now.Add(-time.Minute), seen: true, idleSince: now}
		}
		f.pools[name] = &fleetPool{spec: api.Pool{Name: name, Transport: api.TransportLocal}, state: store.PoolState{State: api.PoolOK, RefreshedAt: now, Inventory: inv}}
	}
	ctx := context.Background()
	f.reconcile(ctx, time.Now()) // learns the fit once
	if len(f.fits) != 10 {
		b.Fatalf("%d fits learned", len(f.fits))
	}
	b.ReportAllocs()
	for b.Loop() {
		f.reconcile(ctx, time.Now())
	}
	if n := len(f.replicas); n != 1000 {
		b.Fatalf("%d replicas after the passes", n)
	}
}

// Three crashes within five minutes make a model failing, with the crashed
// worker's last log lines; restarts back off 1s, 2s, 4s; a replica that
// then stays up makes it ready again.
func TestFleetCrashLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fp := newFakePools("a")
		cfg := fleetConfig()
		cfg.ReconcileInterval, cfg.InventoryInterval = 100*time.Millisecond, time.Minute
		p := startFleet(t, cfg, fp, "", api.Pool{Name: "a"})
		declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1})
		time.Sleep(time.Second)
		var gaps []time.Duration
		for i := range 3 {
			alive := fp.alive("a")
			if len(alive) != 1 {
				t.Fatalf("crash %d: alive %v", i, alive)
			}
			fp.kill(alive[0])
			killed := time.Now()
			for len(fp.alive("a")) != 1 || fp.alive("a")[0] == alive[0] {
				time.Sleep(50 * time.Millisecond)
				if time.Since(killed) > time.Minute {
					t.Fatalf("no restart after crash %d", i)
				}
			}
			gaps = append(gaps, time.Since(killed))
			if i == 2 {
				break
			}
		}
		for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
			if gaps[i] < want || gaps[i] > want+time.Second {
				t.Fatalf("restart %d after %s, want about %s (gaps %v)", i+1, gaps[i], want, gaps)
			}
		}
		// The third crash made it failing, with the crashed worker's last
		// log lines; it stays failing while the window holds three crashes,
		// though a replica serves again.
		v := p.model(t, "m")
		if v.State != api.ModelFailing || v.Replicas.Ready != 1 || !strings.Contains(v.LastError, "crash loop") ||
			len(v.LastLog) == 0 || v.LastLog[len(v.LastLog)-1] != "the last line" {
			t.Fatalf("model %+v", v)
		}
		time.Sleep(crashWindow)
		if v := p.model(t, "m"); v.State != api.ModelReady {
			t.Fatalf("five quiet minutes later: %+v", v)
		}
		var loop bool
		evs, _ := p.Server.fleet.eventsAfter(0, memEventsKept)
		for _, e := range evs {
			loop = loop || e.Kind == api.EventCrash && strings.Contains(e.Reason, "crash loop: 3 crashes")
		}
		if !loop {
			t.Fatalf("no crash-loop event in %+v", evs)
		}
		p.stop()
	})
}

// A model's source is checked by the pools' own rule at the door, and an hf:
// source without a revision is recorded at main, as pools' catalogs do.
func TestFleetModelAtTheDoor(t *testing.T) {
	fp := newFakePools("a")
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"})
	for _, bad := range []string{"hf:../x.gguf", "hf:o/r/x.bin", "http://10.0.0.1/x.gguf", "file:relative.gguf", "file:/a/../b.gguf",
		"https://u:p@h/x.gguf", "ftp://h/x.gguf", "hf:o/r/x.gguf;rm -rf ~"} {
		if _, e := p.Server.fleet.putModel(api.ModelSpec{ID: "m", Source: bad}); e == nil || e.Code != api.CodeInvalidRequest {
			t.Errorf("source %q: %v", bad, e)
		}
	}
	for _, bad := range []api.ModelSpec{{ID: "-m", Source: "hf:o/r/x.gguf"}, {ID: "m", Source: "hf:o/r/x.gguf", MinReplicas: -1},
		{ID: "m", Source: "hf:o/r/x.gguf", MinReplicas: 3, MaxReplicas: 2}, {ID: "m", Source: "hf:o/r/x.gguf", Slots: 1 << 20},
		{ID: "m", Source: "hf:o/r/x.gguf", Ctx: -5}, {ID: "m", Source: "hf:o/r/x.gguf", Backend: "tpu"}, {ID: "m", Source: "hf:o/r/x.gguf", IdleTTL: -1},
		{ID: "m", Source: "hf:o/r/x.gguf", Pools: []string{"../etc"}}, {ID: "m", Source: "hf:o/r/x.gguf", SHA256: "xyz"}} {
		if _, e := p.Server.fleet.putModel(bad); e == nil || e.Code != api.CodeInvalidRequest {
			t.Errorf("spec %+v: %v", bad, e)
		}
	}
	v, e := p.Server.fleet.putModel(api.ModelSpec{ID: "m", Source: "hf:o/r/x.gguf"})
	if e != nil || v.Source != "hf:o/r/x.gguf@main" || v.Slots != 4 || v.MaxReplicas != 1 || v.Backend != "cpu" {
		t.Fatalf("%+v %v", v, e)
	}
	if len(p.Server.fleet.modelViews()) != 1 {
		t.Fatal("a refused model was stored")
	}
}

// A pool that stops answering has its replicas counted as lost: they are
// replaced on a pool that answers.
func TestFleetUnreachablePoolIsReplaced(t *testing.T) {
	fp := newFakePools("a", "b")
	fp.down = map[string]bool{"b": true}
	cfg := fleetConfig()
	p := startFleet(t, cfg, fp, "", api.Pool{Name: "a"}, api.Pool{Name: "b"})
	p.waitPools(t, "a")
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1, MaxReplicas: 2})
	waitFor(t, 5*time.Second, "a replica on a", func() bool { return len(fp.alive("a")) == 1 && p.model(t, "m").Replicas.Ready == 1 })
	fp.mu.Lock()
	fp.down = map[string]bool{"a": true}
	fp.mu.Unlock()
	waitFor(t, 10*time.Second, "a replacement on b", func() bool { return len(fp.alive("b")) == 1 })
	if v, _ := p.Server.fleet.poolView("a"); v.State != api.PoolUnreachable || !strings.Contains(v.LastError, "connection refused") {
		t.Fatalf("pool a: %+v", v)
	}
}

// Deleting a model drains its replicas: a task running on one ends normally
// before the worker is stopped.
func TestFleetBusyWorkerIsNeverStopped(t *testing.T) {
	fp := newFakePools("a")
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1})
	waitFor(t, 5*time.Second, "a ready replica", func() bool { return p.model(t, "m").Replicas.Ready == 1 })
	id := p.model(t, "m").Workers[0].WorkerID
	release := make(chan struct{})
	p.fleet.connect("http://" + id + ".test:1").(*fakeWorker).set(func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return streamTokens(-1)(ctx, req)
	})
	task := p.submit(t, fakeReq(3))
	waitFor(t, 5*time.Second, "the task running", func() bool { return p.state(task).Status == api.TaskRunning })
	if e := p.Server.fleet.deleteModel("m"); e != nil {
		t.Fatal(e)
	}
	waitFor(t, 5*time.Second, "the worker draining", func() bool {
		for _, w := range p.reg.list() {
			if w.WorkerID == id {
				return w.State == api.WorkerDraining
			}
		}
		return false
	})
	if len(fp.stopped()) != 0 {
		t.Fatalf("stopped while busy: %v", fp.stopped())
	}
	close(release)
	if st := p.wait(t, task); st.Status != api.TaskSucceeded {
		t.Fatalf("the running task: %+v", st)
	}
	waitFor(t, 5*time.Second, "the worker stopped", func() bool { return len(fp.stopped()) == 1 })
}

// After a restart, ready replicas are adopted: no new worker, and an
// inventory stored before the replica started does not count as its death.
func TestFleetRestartAdoptsReadyReplicas(t *testing.T) {
	fp := newFakePools("a")
	dir := t.TempDir()
	p := startFleet(t, fleetConfig(), fp, dir, api.Pool{Name: "a"})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1})
	waitFor(t, 5*time.Second, "a ready replica", func() bool { return p.model(t, "m").Replicas.Ready == 1 })
	id := p.model(t, "m").Workers[0].WorkerID
	p.crash()
	st, err := store.OpenOrchestrator(filepath.Join(dir, "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	stale := store.PoolState{State: api.PoolOK, RefreshedAt: time.Now().Add(-time.Hour), Inventory: &api.PoolStatus{RAMFreeBytes: 1 << 30,
		Backends: []api.PoolBackend{{Name: "cpu", Available: true}}}}
	if err := st.PutPoolState("a", stale); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cfg := fleetConfig()
	cfg.InventoryInterval = time.Hour // no refresh: the stale inventory is all the fleet knows
	q := startFleet(t, cfg, fp, dir)
	waitFor(t, 5*time.Second, "the adopt event", func() bool { return slices.Contains(q.eventKinds(), api.EventAdopt) })
	if v := q.model(t, "m"); v.Replicas.Ready != 1 || v.Workers[0].WorkerID != id {
		t.Fatalf("after the restart: %+v", v)
	}
	if n := len(fp.spawned()); n != 1 || len(fp.stopped()) != 0 {
		t.Fatalf("spawns %v stops %v", fp.spawned(), fp.stopped())
	}
}

// On a GPU backend the replica goes to the GPU with the most free VRAM;
// workers on an ssh host listen on every interface, on a local pool on
// loopback, unless the pool says where.
func TestFleetPicksGPUAndWorkerHost(t *testing.T) {
	fp := newFakePools("g", "l")
	fp.inv["g"].Backends = append(fp.inv["g"].Backends, api.PoolBackend{Name: "cuda", Available: true, Devices: []api.PoolDevice{
		{Index: 0, VRAMTotalBytes: 80 << 30, VRAMFreeBytes: 1 << 30}, {Index: 1, VRAMTotalBytes: 80 << 30, VRAMFreeBytes: 70 << 30}}})
	fp.estimate = 10 << 30
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "g", Host: "gpu-host"}, api.Pool{Name: "l"})
	p.waitPools(t, "g", "l")
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1, Backend: "cuda"})
	waitFor(t, 5*time.Second, "a cuda replica", func() bool { return p.model(t, "m").Replicas.Ready == 1 })
	if s := fp.spawned(); len(s) != 1 || s[0].GPU != 1 || s[0].Host != "0.0.0.0" {
		t.Fatalf("spawns %+v", s)
	}
	declare(t, p, api.ModelSpec{ID: "c", Source: "hf:org/repo/c.gguf@main", MinReplicas: 1, Pools: []string{"l"}})
	waitFor(t, 5*time.Second, "a cpu replica", func() bool { return p.model(t, "c").Replicas.Ready == 1 })
	if s := fp.spawned(); len(s) != 2 || s[1].GPU != -1 || s[1].Host != "127.0.0.1" {
		t.Fatalf("spawns %+v", s)
	}
	if _, e := p.Server.fleet.putPool(api.Pool{Name: "l", WorkerHost: "10.1.2.3"}); e != nil {
		t.Fatal(e)
	}
	p.waitPools(t, "l")
	declare(t, p, api.ModelSpec{ID: "c", Source: "hf:org/repo/c.gguf@main", MinReplicas: 2, MaxReplicas: 2, Pools: []string{"l"}})
	waitFor(t, 5*time.Second, "a second cpu replica", func() bool { return len(fp.spawned()) == 3 })
	if s := fp.spawned(); s[2].Host != "10.1.2.3" {
		t.Fatalf("spawns %+v", s)
	}
}

// A pool declared with install that runs another llorch version gets this
// build; one without install is left as it is.
func TestFleetInstallsAnotherVersion(t *testing.T) {
	fp := newFakePools("a", "b")
	fp.inv["a"].Version, fp.inv["b"].Version = "v0.0.1", "v0.0.1"
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a", Install: true}, api.Pool{Name: "b"})
	p.waitPools(t, "a", "b")
	va, _ := p.Server.fleet.poolView("a")
	vb, _ := p.Server.fleet.poolView("b")
	fp.mu.Lock()
	installs := fp.installs
	fp.mu.Unlock()
	if va.Inventory.Version != buildinfo.Version || vb.Inventory.Version != "v0.0.1" || installs != 1 {
		t.Fatalf("a %+v, b %+v, installs %d", va.Inventory, vb.Inventory, installs)
	}
	evs, _ := p.Server.fleet.eventsAfter(0, memEventsKept)
	var ok bool
	for _, e := range evs {
		ok = ok || e.Kind == api.EventInstall && e.Pool == "a" && strings.Contains(e.Reason, "v0.0.1")
	}
	if !ok {
		t.Fatalf("no install event: %+v", evs)
	}
}

// With no pool it may use reachable, a model says so and starts once one
// answers.
func TestFleetNoReachablePool(t *testing.T) {
	fp := newFakePools("a")
	fp.down = map[string]bool{"a": true}
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main", MinReplicas: 1})
	waitFor(t, 5*time.Second, "the model to say why", func() bool {
		return strings.Contains(p.model(t, "m").LastError, "no pool it may use is reachable")
	})
	fp.mu.Lock()
	fp.down = nil
	fp.mu.Unlock()
	waitFor(t, 5*time.Second, "a ready replica", func() bool { v := p.model(t, "m"); return v.Replicas.Ready == 1 && v.LastError == "" })
}

// /v1/models lists a declared model before any worker serves it, and an
// OpenAI chat completion for it starts one.
func TestFleetOpenAIModels(t *testing.T) {
	fp := newFakePools("a")
	p := startFleet(t, fleetConfig(), fp, "", api.Pool{Name: "a"})
	declare(t, p, api.ModelSpec{ID: "m", Source: "hf:org/repo/m.gguf@main"})
	srv := httptest.NewServer(p.Handler())
	defer srv.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	getJSON(t, srv.URL+"/v1/models", &list)
	if len(list.Data) != 1 || list.Data[0].ID != "m" {
		t.Fatalf("/v1/models: %+v", list)
	}
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"m","max_tokens":3,"messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Usage struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Usage.CompletionTokens != 3 {
		t.Fatalf("chat completion: %d %+v %v", resp.StatusCode, out, err)
	}
	if len(fp.spawned()) != 1 {
		t.Fatalf("spawns %v", fp.spawned())
	}
}
