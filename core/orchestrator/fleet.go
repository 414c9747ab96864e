package orchestrator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/llorch/llorch/core/admission"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/catalog"
	"github.com/llorch/llorch/core/openai"
	"github.com/llorch/llorch/core/store"
)

// fleet is the part that runs models on pools: the pools it drives (with
// their inventory), the models declared as desired state, the workers it
// started (replicas), the memory fit it learned, and the fleet event log.
// Its reconcile loop (fleet_reconcile.go) starts and stops workers through
// the pools' own commands (fleet_host.go).
//
// Lock order: the fleet calls the dispatcher and the registry, never while
// holding its own lock; nobody calls the fleet while holding theirs, except
// through declared, which takes only the fleet's lock.
type fleet struct {
	cfg  *Config
	log  *slog.Logger
	m    *metrics
	st   *store.Orchestrator
	reg  *registry
	disp *dispatcher
	// host opens a pool host's commands (poolrun; a fake in unit tests).
	host func(api.Pool) poolHost

	wake chan struct{}  // a reconcile pass now
	quit chan struct{}  // closed when the loop ends
	wg   sync.WaitGroup // the goroutines of starts, stops and refreshes

	mu       sync.Mutex
	pools    map[string]*fleetPool
	models   map[string]*fleetModel
	replicas map[string]*replica // by worker id
	fits     map[string]store.Fit
	ests     map[string]estimate // by estimateKey
	estBusy  map[string]bool     // estimates being fetched
	events   []api.FleetEvent    // the newest, in memory (persisted ones too)
	seq      uint64
	changed  chan struct{} // closed and replaced when an event is added
	// embedWait counts the /v1/embeddings requests waiting for a worker of
	// each declared embedding model (awaitEmbedder): its demand, as queued
	// tasks are a generation model's.
	embedWait map[string]int
	started   time.Time
	stopped   bool // the loop ended: async runs nothing more
}

// async runs fn in a goroutine the loop's end waits for; from a request
// handler, which may outlive the loop. (Its Add happens under the lock, and
// never after the loop said it stopped, so it cannot race the final Wait.)
func (f *fleet) async(fn func()) {
	f.mu.Lock()
	stopped := f.stopped
	if !stopped {
		f.wg.Add(1)
	}
	f.mu.Unlock()
	if stopped {
		return
	}
	go func() {
		defer f.wg.Done()
		fn()
	}()
}

// fleetPool is a pool and the fleet's last view of it.
type fleetPool struct {
	spec       api.Pool
	state      store.PoolState
	refreshing bool
}

// fleetModel is a declared model.
type fleetModel struct {
	rec       store.FleetModel
	state     string
	lastErr   string
	lastLog   []string
	crashes   []time.Time // within the crash-loop window
	backoff   time.Time   // no new start before this
	coldStart time.Duration
	digest    string // learned from its workers' registrations
	refusal   *api.Error
}

// replica is a worker the fleet started or is starting.
type replica struct {
	rec       store.Replica
	step      string // downloading, loading, registering (while starting)
	progress  float64
	began     time.Time
	readyAt   time.Time
	idleSince time.Time
	seen      bool // registered
	restored  bool // loaded from the store at startup: adopted when seen
	stopping  bool
	cancel    context.CancelFunc
}

// estimate is a model's memory need from its GGUF header.
type estimate struct {
	bytes uint64
	err   error
	at    time.Time
}

// Fleet defaults.
const (
	crashWindow   = 5 * time.Minute
	crashLoop     = 3 // crashes in the window that make a model failing
	maxBackoff    = time.Minute
	memEventsKept = 1000
)

func newFleet(cfg *Config, log *slog.Logger, m *metrics, st *store.Orchestrator, reg *registry, disp *dispatcher, host func(api.Pool) poolHost) *fleet {
	return &fleet{cfg: cfg, log: log.With("component", "fleet"), m: m, st: st, reg: reg, disp: disp, host: host,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), pools: map[string]*fleetPool{}, models: map[string]*fleetModel{},
		replicas: map[string]*replica{}, fits: map[string]store.Fit{}, ests: map[string]estimate{}, estBusy: map[string]bool{},
		embedWait: map[string]int{}, changed: make(chan struct{}), started: time.Now()}
}

// load reads pools, models, replicas, fits and the newest events from the store.
func (f *fleet) load() error {
	pools, err := f.st.Pools()
	if err != nil {
		return err
	}
	states, err := f.st.PoolStates()
	if err != nil {
		return err
	}
	models, err := f.st.Models()
	if err != nil {
		return err
	}
	reps, err := f.st.Replicas()
	if err != nil {
		return err
	}
	fits, err := f.st.Fits()
	if err != nil {
		return err
	}
	evs, err := f.st.FleetEvents(memEventsKept)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range pools {
		if p.Transport == "" { // stored before pools had transports: SSH targets
			p.Transport = api.TransportSSH
		}
		st, ok := states[p.Name]
		if !ok {
			st.State = api.PoolUnknown
		}
		f.pools[p.Name] = &fleetPool{spec: p, state: st}
	}
	for _, m := range models {
		f.models[m.Spec.ID] = &fleetModel{rec: m, state: api.ModelIdle}
	}
	now := time.Now()
	for _, r := range reps {
		// A ready one is judged from now on: the inventory stored before
		// the restart may predate it.
		f.replicas[r.WorkerID] = &replica{rec: r, began: now, idleSince: now, readyAt: now, restored: true}
	}
	f.fits = fits
	f.events = evs
	if len(evs) > 0 {
		f.seq = evs[len(evs)-1].Seq
	}
	return nil
}

// apply puts a fleet file's pools and models (at startup: --fleet). Entries
// not in the file are kept; `ctl fleet apply --prune` removes them.
func (f *fleet) apply(ff *api.FleetFile) error {
	if ff == nil {
		return nil
	}
	if err := ff.Validate(); err != nil {
		return fmt.Errorf("orchestrator: fleet file: %w", err)
	}
	for _, p := range ff.Pools {
		if _, e := f.putPool(p); e != nil {
			return fmt.Errorf("orchestrator: fleet file: pool %s: %w", p.Name, e)
		}
	}
	for _, m := range ff.Models {
		if _, e := f.putModel(m); e != nil {
			return fmt.Errorf("orchestrator: fleet file: model %s: %w", m.ID, e)
		}
	}
	return nil
}

func (f *fleet) kick() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// emit journals a fleet event and wakes its followers.
func (f *fleet) emit(ev api.FleetEvent) {
	f.mu.Lock()
	ev = f.addEventLocked(ev)
	f.mu.Unlock()
	f.journal(ev)
}

// addEventLocked puts ev in the in-memory log, where followers and GET
// /v2/events see it at once; journal then writes it. A state change and its
// event made in one critical section are seen together.
func (f *fleet) addEventLocked(ev api.FleetEvent) api.FleetEvent {
	ev.Time = time.Now().UTC()
	f.seq++
	ev.Seq = f.seq
	f.events = append(f.events, ev)
	if len(f.events) > memEventsKept {
		f.events = slices.Delete(f.events, 0, len(f.events)-memEventsKept)
	}
	close(f.changed)
	f.changed = make(chan struct{})
	return ev
}

// journal logs, counts and stores an event added by addEventLocked.
func (f *fleet) journal(ev api.FleetEvent) {
	f.m.fleetEvents.WithLabelValues(ev.Kind).Inc()
	f.log.Info("fleet "+ev.Kind, "pool", ev.Pool, "model", ev.Model, "worker_id", ev.Worker, "reason", ev.Reason)
	if err := f.st.AppendFleetEvents([]api.FleetEvent{ev}); err != nil {
		f.log.Error("journaling a fleet event", "err", err)
	}
}

// eventsAfter returns the kept events after seq, at most limit, and a
// channel closed when the next one comes.
func (f *fleet) eventsAfter(after uint64, limit int) ([]api.FleetEvent, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, _ := slices.BinarySearchFunc(f.events, after+1, func(e api.FleetEvent, seq uint64) int { return cmp.Compare(e.Seq, seq) })
	out := slices.Clone(f.events[i:])
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, f.changed
}

// lastSeq is the newest event's seq.
func (f *fleet) lastSeq() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq
}

// --- pools ---

func (f *fleet) putPool(p api.Pool) (api.PoolView, *api.Error) {
	if e := p.Validate(); e != nil {
		return api.PoolView{}, e
	}
	if err := f.st.PutPool(p); err != nil {
		f.log.Error("storing a pool", "pool", p.Name, "err", err)
		return api.PoolView{}, api.Errorf(api.CodeInternal, "cannot store the pool")
	}
	f.mu.Lock()
	fp, ok := f.pools[p.Name]
	if !ok || !reflect.DeepEqual(fp.spec, p) {
		fp = &fleetPool{spec: p, state: store.PoolState{State: api.PoolUnknown}}
		f.pools[p.Name] = fp
	}
	v := fp.viewLocked()
	f.mu.Unlock()
	f.kick()
	return v, nil
}

func (f *fleet) deletePool(name string) *api.Error {
	f.mu.Lock()
	_, ok := f.pools[name]
	var stops []*replica
	for _, r := range f.replicas {
		if r.rec.Pool == name {
			stops = append(stops, r)
		}
	}
	f.mu.Unlock()
	if !ok {
		return api.Errorf(api.CodeNotFound, "no pool %s", name)
	}
	for _, r := range stops {
		f.async(func() { f.stopReplica(r, "its pool was removed") })
	}
	if err := f.st.DeletePool(name); err != nil && !errors.Is(err, store.ErrNotFound) {
		f.log.Error("deleting a pool", "pool", name, "err", err)
		return api.Errorf(api.CodeInternal, "cannot delete the pool")
	}
	f.mu.Lock()
	delete(f.pools, name)
	f.mu.Unlock()
	f.m.poolUp.DeleteLabelValues(name)
	return nil
}

func (p *fleetPool) viewLocked() api.PoolView {
	return api.PoolView{Pool: p.spec, State: p.state.State, LastError: p.state.LastError, RefreshedAt: p.state.RefreshedAt, Inventory: p.state.Inventory}
}

func (f *fleet) poolViews() []api.PoolView {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]api.PoolView, 0, len(f.pools))
	for _, p := range f.pools {
		out = append(out, p.viewLocked())
	}
	slices.SortFunc(out, func(a, b api.PoolView) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (f *fleet) poolView(name string) (api.PoolView, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.pools[name]
	if !ok {
		return api.PoolView{}, false
	}
	return p.viewLocked(), true
}

// --- models ---

func (f *fleet) putModel(m api.ModelSpec) (api.ModelView, *api.Error) {
	if e := m.Validate(); e != nil {
		return api.ModelView{}, e
	}
	if _, err := catalog.ParseRef(m.Source); err != nil { // the pools' own rule, at the door
		return api.ModelView{}, &api.Error{Code: api.CodeInvalidRequest, Message: "invalid model", Fields: []api.FieldError{{
			Field: "source", Constraint: "ref", Message: err.Error()}}}
	}
	f.mu.Lock()
	fm, ok := f.models[m.ID]
	var rec store.FleetModel
	switch {
	case !ok:
		rec = store.FleetModel{Spec: m, Revision: 1}
	case sameWorkers(fm.rec.Spec, m):
		rec = fm.rec
		rec.Spec = m // replica counts, idle TTL, placement: no new workers needed
	default:
		prev := fm.rec.Spec
		rec = store.FleetModel{Spec: m, Revision: fm.rec.Revision + 1, Previous: &prev}
	}
	f.mu.Unlock()
	if err := f.st.PutModel(rec); err != nil {
		f.log.Error("storing a model", "model", m.ID, "err", err)
		return api.ModelView{}, api.Errorf(api.CodeInternal, "cannot store the model")
	}
	f.mu.Lock()
	if fm, ok = f.models[m.ID]; ok {
		if rec.Revision != fm.rec.Revision {
			fm.state, fm.lastErr, fm.lastLog, fm.crashes, fm.backoff, fm.refusal = api.ModelStarting, "", nil, nil, time.Time{}, nil
			if fm.rec.Spec.Source != m.Source || fm.rec.Spec.SHA256 != m.SHA256 {
				fm.digest = ""
			}
		}
		fm.rec = rec
	} else {
		fm = &fleetModel{rec: rec, state: api.ModelIdle}
		f.models[m.ID] = fm
	}
	v := f.modelViewLocked(fm)
	f.mu.Unlock()
	if ok && rec.Previous != nil && rec.Revision > 1 {
		f.emit(api.FleetEvent{Kind: api.EventRollout, Model: m.ID, Reason: fmt.Sprintf("revision %d: replacing the running replicas one at a time", rec.Revision)})
	}
	f.kick()
	return v, nil
}

// sameWorkers: a change between a and b does not need new workers.
func sameWorkers(a, b api.ModelSpec) bool {
	return a.Source == b.Source && a.SHA256 == b.SHA256 && a.Ctx == b.Ctx && a.Slots == b.Slots && a.Backend == b.Backend &&
		a.Embedding == b.Embedding
}

func (f *fleet) deleteModel(id string) *api.Error {
	f.mu.Lock()
	_, ok := f.models[id]
	var stops []*replica
	for _, r := range f.replicas {
		if r.rec.Model == id {
			stops = append(stops, r)
		}
	}
	f.mu.Unlock()
	if !ok {
		return api.Errorf(api.CodeNotFound, "model %s is not declared", id)
	}
	if err := f.st.DeleteModel(id); err != nil {
		f.log.Error("deleting a model", "model", id, "err", err)
		return api.Errorf(api.CodeInternal, "cannot delete the model")
	}
	f.mu.Lock()
	delete(f.models, id)
	f.mu.Unlock()
	f.m.fleetReplicas.DeletePartialMatch(map[string]string{"model": id})
	f.disp.setStarting(id, startNote{})
	for _, r := range stops {
		f.async(func() { f.stopReplica(r, "the model was deleted") })
	}
	return nil
}

// declared is what admission needs to know of a model. A declared
// embedding model takes no tasks: its replicas serve /v1/embeddings only.
func (f *fleet) declared(model string) admission.Declared {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.models[model]
	if !ok {
		return admission.Declared{}
	}
	if m.rec.Spec.Embedding {
		return admission.Declared{Declared: true, Refusal: api.Errorf(api.CodeModelNotFound,
			"model %q is declared as an embedding model (embedding: true): it serves POST /v1/embeddings, not text generation", model)}
	}
	return admission.Declared{Declared: true, Ctx: m.rec.Spec.Ctx, Refusal: m.refusal}
}

// awaitEmbedder holds a POST /v1/embeddings for a declared embedding model
// that no ready worker serves while the fleet starts one: the request counts
// as the model's demand (embedWait), which the reconcile pass meets like
// queued tasks, and waits at most cfg.EmbedStartWait. ready says whether a
// worker can take the request now; the fleet calls it (the registry)
// without its lock. declared is false when the model is no declared
// embedding model (nothing to wait for); else err is nil once one is ready,
// the model's refusal (NO_CAPACITY), ctx's error, or POOL_UNAVAILABLE with a
// Retry-After when none came up in time.
func (f *fleet) awaitEmbedder(ctx context.Context, model string, ready func() bool) (declared bool, err error) {
	f.mu.Lock()
	m, ok := f.models[model]
	if !ok || !m.rec.Spec.Embedding {
		f.mu.Unlock()
		return false, nil
	}
	f.embedWait[model]++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.embedWait[model]--; f.embedWait[model] <= 0 {
			delete(f.embedWait, model)
		}
	}()
	f.kick()
	wait := f.cfg.EmbedStartWait
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(50 * time.Millisecond) // a worker may register outside the fleet too
	defer poll.Stop()
	for {
		if ready() {
			return true, nil
		}
		f.mu.Lock()
		m, ok := f.models[model]
		var refusal *api.Error
		var lastErr string
		var coldStart time.Duration
		embedding := ok && m.rec.Spec.Embedding
		if ok {
			refusal, lastErr, coldStart = m.refusal, m.lastErr, m.coldStart
		}
		changed := f.changed
		f.mu.Unlock()
		switch {
		case !embedding:
			return true, api.Errorf(api.CodeModelNotFound, "model %q is no longer declared as an embedding model", model)
		case refusal != nil:
			return true, refusal
		}
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case <-deadline.C:
			msg := fmt.Sprintf("no embedding worker of model %q came up within %s; one is being started, retry later", model, wait)
			if lastErr != "" {
				msg += " (last error: " + lastErr + ")"
			}
			e := api.Errorf(api.CodePoolUnavailable, "%s", msg)
			e.RetryAfterMs = min(max(cmp.Or(coldStart, 30*time.Second)-wait, 5*time.Second), time.Minute).Milliseconds()
			return true, e
		case <-changed:
		case <-poll.C:
		}
	}
}

// touch records that a replica served a request now (an embedding request
// is too short for a reconcile pass to see it busy): its idle_ttl starts
// again.
func (f *fleet) touch(workerID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.replicas[workerID]; ok && r.rec.Phase == phaseReady {
		r.idleSince = time.Now()
	}
}

func (f *fleet) modelViews() []api.ModelView {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]api.ModelView, 0, len(f.models))
	for _, m := range f.models {
		out = append(out, f.modelViewLocked(m))
	}
	slices.SortFunc(out, func(a, b api.ModelView) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (f *fleet) modelView(id string) (api.ModelView, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m, ok := f.models[id]
	if !ok {
		return api.ModelView{}, false
	}
	return f.modelViewLocked(m), true
}

func (f *fleet) modelViewLocked(m *fleetModel) api.ModelView {
	s := m.rec.Spec
	v := api.ModelView{ModelSpec: s, State: m.state, LastError: m.lastErr, LastLog: m.lastLog, ColdStartMs: m.coldStart.Milliseconds(),
		Workers: []api.ModelReplica{}}
	v.Replicas.Desired = s.MinReplicas
	for _, r := range f.replicas {
		if r.rec.Model != s.ID {
			continue
		}
		state := r.step
		switch {
		case r.stopping:
			state = "stopping"
		case r.rec.Phase == phaseReady:
			state = "ready"
			v.Replicas.Ready++
		default:
			v.Replicas.Starting++
		}
		v.Workers = append(v.Workers, api.ModelReplica{WorkerID: r.rec.WorkerID, Pool: r.rec.Pool, State: state, Source: r.rec.Source})
	}
	slices.SortFunc(v.Workers, func(a, b api.ModelReplica) int { return strings.Compare(a.WorkerID, b.WorkerID) })
	if est, ok := f.ests[estimateKey(s)]; ok && est.err == nil {
		fit := f.fitLocked(m)
		v.Fit = &api.ModelFit{EstimateBytes: est.bytes, Correction: fit.Ratio, NeedBytes: need(est.bytes, fit.Ratio), ActualBytes: fit.ActualBytes}
	}
	return v
}

// fitLocked is the learned fit for a model's current spec (ratio 1 when none).
func (f *fleet) fitLocked(m *fleetModel) store.Fit {
	if fit, ok := f.fits[fitKey(m.rec.Spec, m.digest)]; ok && fit.Ratio > 0 {
		return fit
	}
	return store.Fit{Ratio: 1}
}

// fitKey is digest × backend × ctx × slots; before a worker reported the
// model's digest, its source stands in.
func fitKey(s api.ModelSpec, digest string) string {
	id := digest
	if id == "" {
		id = cmp.Or(s.SHA256, s.Source)
	}
	k := fmt.Sprintf("%s|%s|%d|%d", id, s.Backend, s.Ctx, s.Slots)
	if s.Embedding { // an embedding worker of the same file uses other memory
		k += "|embedding"
	}
	return k
}

func estimateKey(s api.ModelSpec) string {
	return fmt.Sprintf("%s|%s|%s|%d|%d", s.Source, s.SHA256, s.Backend, s.Ctx, s.Slots)
}

func need(est uint64, ratio float64) uint64 {
	if ratio <= 0 {
		ratio = 1
	}
	return uint64(float64(est) * ratio)
}

// declaredModels are the declared models as /v1/models lists them, created
// when first declared (the store keeps no date: the orchestrator's start).
func (f *fleet) declaredModels() []openai.Model {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]openai.Model, 0, len(f.models))
	for id := range f.models {
		out = append(out, openai.Model{ID: id, Created: f.started.Unix()})
	}
	return out
}

// capabilities lists the declared and the served models.
// served maps the models workers serve to their largest context, which wins
// over a declared one.
func (f *fleet) capabilities(served map[string]int) []api.CapabilityModel {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]api.CapabilityModel, 0, len(f.models)+len(served))
	for id, m := range f.models {
		out = append(out, api.CapabilityModel{ID: id, Ctx: cmp.Or(served[id], m.rec.Spec.Ctx), State: m.state, Declared: true})
	}
	for id, ctx := range served {
		if _, declared := f.models[id]; !declared {
			out = append(out, api.CapabilityModel{ID: id, Ctx: ctx, State: api.ModelReady})
		}
	}
	slices.SortFunc(out, func(a, b api.CapabilityModel) int { return strings.Compare(a.ID, b.ID) })
	return out
}
