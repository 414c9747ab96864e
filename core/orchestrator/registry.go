package orchestrator

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
	"github.com/llorch/llorch/core/scheduler"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/workerclient"
)

// registry is the part that owns the workers and pools: registration,
// heartbeats and the health monitor (silent → probed → unhealthy → dead).
//
// Its lock is a leaf: no method calls another part while holding it. What
// the others must hear goes through hooks called after the lock is released:
// onReady when a worker can take work, onLost when one stops answering or is
// removed (its attempts are abandoned).
type registry struct {
	cfg *Config
	log *slog.Logger
	st  *store.Orchestrator
	m   *metrics

	// connect makes the client of a worker at a URL.
	connect func(url string) workerAPI
	onReady func()
	onLost  func(workerID, kind, reason string) // kind: a migration reason (lostHung, ...)
	// onGone is called when a worker's KV caches are gone: it came back as
	// a new process, died or was removed.
	onGone func(workerID string)

	wake chan struct{} // a monitor round now

	mu      sync.Mutex
	workers map[string]*worker
	dirty   map[string]bool // records to persist
	seq     uint64          // moves when a worker registers, changes state or goes (stats)
	saveMu  sync.Mutex      // one save at a time, so records land in order
}

// worker is a registered worker. Guarded by registry.mu.
type worker struct {
	rec            store.WorkerRecord
	client         workerAPI
	assigned       int       // attempts running here
	slotsBusy      int       // as last reported
	tps            float64   // tokens/s as last reported
	rss, vram      uint64    // memory in use as last reported
	load           float64   // EWMA of the busy fraction
	fullUntil      time.Time // answered ALL_SLOTS_BUSY: no free slot until then
	probing        bool
	suspect        bool // an attempt on it failed: probe at the next round
	unhealthySince time.Time
}

func newRegistry(cfg *Config, log *slog.Logger, st *store.Orchestrator, connect func(url string) workerAPI, m *metrics) *registry {
	return &registry{
		cfg: cfg, log: log.With("part", "registry"), st: st, connect: connect, m: m,
		onReady: func() {}, onLost: func(string, string, string) {}, onGone: func(string) {},
		workers: map[string]*worker{}, dirty: map[string]bool{}, wake: make(chan struct{}, 1),
	}
}

func (r *registry) newWorker(rec store.WorkerRecord) *worker {
	return &worker{rec: rec, client: r.connect(rec.URL)}
}

// load reads the registry from the store.
func (r *registry) load() error {
	recs, err := r.st.Workers()
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	for _, rec := range recs {
		w := r.newWorker(rec)
		// A restarted orchestrator has heard nothing yet: give every worker
		// a full heartbeat timeout before probing it.
		if w.rec.State != api.WorkerDead {
			w.rec.LastSeen = now
		}
		r.workers[rec.WorkerID] = w
	}
	r.gaugeLocked()
	return nil
}

// gaugeLocked recounts workers by state (a worker registered, changed
// state or went: the stats' workers_seq moves).
func (r *registry) gaugeLocked() {
	r.seq++
	counts := map[string]int{api.WorkerHealthy: 0, api.WorkerUnhealthy: 0, api.WorkerDead: 0, api.WorkerDraining: 0}
	for _, w := range r.workers {
		counts[w.rec.State]++
	}
	for st, n := range counts {
		r.m.workers.WithLabelValues(st).Set(float64(n))
	}
}

// save persists the records changed since the last save, in one transaction.
func (r *registry) save() error {
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	r.mu.Lock()
	var recs []store.WorkerRecord
	var gone []string
	for id := range r.dirty {
		if w, ok := r.workers[id]; ok {
			recs = append(recs, w.rec)
		} else {
			gone = append(gone, id)
		}
	}
	clear(r.dirty)
	r.mu.Unlock()
	var errs []error
	for _, rec := range recs {
		errs = append(errs, r.st.PutWorker(rec))
	}
	for _, id := range gone {
		errs = append(errs, r.st.DeleteWorker(id))
	}
	return errors.Join(errs...)
}

// register adds a worker or updates one in place (running attempts keep
// their slot accounting). A worker that comes back at another URL is a new
// process: its attempts at the old address are lost.
func (r *registry) register(reg api.WorkerRegistration) api.WorkerView {
	now := time.Now()
	lost, gone := "", false
	v := func() api.WorkerView {
		r.mu.Lock()
		defer r.mu.Unlock()
		rec := store.WorkerRecord{WorkerRegistration: reg, State: api.WorkerHealthy, RegisteredAt: now, LastSeen: now}
		w, ok := r.workers[reg.WorkerID]
		if ok {
			rec.RegisteredAt = w.rec.RegisteredAt
			if w.rec.State == api.WorkerDraining {
				rec.State = api.WorkerDraining // an operator's drain outlives a restart of the worker
			}
			if rec.URL != w.rec.URL || w.rec.State == api.WorkerDead {
				gone = true
			}
			if rec.URL != w.rec.URL {
				w.client = r.connect(rec.URL)
				if w.assigned > 0 {
					lost = "registered again at " + rec.URL
				}
			}
			w.rec = rec
			w.suspect, w.fullUntil = false, time.Time{}
		} else {
			w = r.newWorker(rec)
			r.workers[reg.WorkerID] = w
		}
		r.dirty[reg.WorkerID] = true
		r.gaugeLocked()
		return w.view()
	}()
	if lost != "" {
		r.onLost(reg.WorkerID, lostDied, lost)
	}
	if gone {
		r.onGone(reg.WorkerID)
	}
	if err := r.save(); err != nil {
		r.log.Error("saving the registry", "err", err)
	}
	r.log.Info("worker registered", "worker_id", reg.WorkerID, "url", reg.URL, "model", reg.Model.ID, "slots", reg.Slots, "pool", reg.Pool)
	r.onReady()
	return v
}

// heartbeat records a worker's heartbeat; a worker that was unhealthy or
// dead is healthy again.
func (r *registry) heartbeat(id string, hb api.Heartbeat) *api.Error {
	ready, err := func() (bool, *api.Error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		w, ok := r.workers[id]
		if !ok {
			return false, api.Errorf(api.CodeWorkerNotFound, "unknown worker %s: register first", id)
		}
		w.rec.LastSeen = time.Now()
		w.slotsBusy, w.tps, w.rss, w.vram = hb.SlotsBusy, hb.TokensPerSecond, hb.RSSBytes, hb.VRAMBytes
		if hb.SlotsTotal > 0 {
			w.rec.Slots = hb.SlotsTotal
		}
		if w.rec.Slots > 0 {
			frac := float64(max(w.slotsBusy, w.assigned)) / float64(w.rec.Slots)
			w.load = 0.7*w.load + 0.3*min(frac, 1)
		}
		switch {
		case hb.Status == api.StatusDraining:
			r.setStateLocked(w, api.WorkerDraining, "the worker is draining")
		case w.rec.State == api.WorkerUnhealthy || w.rec.State == api.WorkerDead:
			r.setStateLocked(w, api.WorkerHealthy, "heartbeats resumed")
			return true, nil
		}
		return w.rec.State == api.WorkerHealthy && w.assigned < w.rec.Slots, nil
	}()
	if err != nil {
		return err
	}
	if ready {
		r.onReady()
	}
	return nil
}

func (w *worker) view() api.WorkerView {
	return api.WorkerView{
		WorkerRegistration: w.rec.WorkerRegistration,
		State:              w.rec.State,
		SlotsBusy:          w.slotsBusy,
		Assigned:           w.assigned,
		TokensPerSecond:    w.tps,
		RSSBytes:           w.rss,
		VRAMUsedBytes:      w.vram,
		LastSeen:           w.rec.LastSeen,
		RegisteredAt:       w.rec.RegisteredAt,
	}
}

// list returns every worker in id order.
func (r *registry) list() []api.WorkerView {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]api.WorkerView, 0, len(r.workers))
	for _, w := range r.workers {
		out = append(out, w.view())
	}
	slices.SortFunc(out, func(a, b api.WorkerView) int { return strings.Compare(a.WorkerID, b.WorkerID) })
	return out
}

// healthy reports whether a worker is registered and healthy.
func (r *registry) healthy(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	return ok && w.rec.State == api.WorkerHealthy
}

// holdsWork reports whether a registered worker holds work (attempts
// running here, or slots busy as last reported).
func (r *registry) holdsWork(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	return ok && (w.assigned > 0 || w.slotsBusy > 0)
}

// drain stops new work for a worker; running attempts finish.
func (r *registry) drain(id string) (api.WorkerView, *api.Error) {
	v, err := func() (api.WorkerView, *api.Error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		w, ok := r.workers[id]
		if !ok {
			return api.WorkerView{}, api.Errorf(api.CodeWorkerNotFound, "no worker %s", id)
		}
		r.setStateLocked(w, api.WorkerDraining, "drained by an operator")
		return w.view(), nil
	}()
	if err == nil {
		if e := r.save(); e != nil {
			r.log.Error("saving the registry", "err", e)
		}
	}
	return v, err
}

// remove forgets a worker; its running attempts are abandoned.
func (r *registry) remove(id string) *api.Error {
	ok := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		_, ok := r.workers[id]
		delete(r.workers, id)
		r.dirty[id] = true
		r.gaugeLocked()
		return ok
	}()
	if !ok {
		return api.Errorf(api.CodeWorkerNotFound, "no worker %s", id)
	}
	r.onLost(id, lostRemoved, "removed from the registry")
	r.onGone(id)
	if err := r.save(); err != nil {
		r.log.Error("saving the registry", "err", err)
	}
	r.log.Info("worker removed", "worker_id", id)
	return nil
}

// snapshot appends the scheduler's view of every generation worker to ws, in
// id order (embedding workers take no tasks).
// A worker's busy slots are the attempts running on it, or all of them for a
// while after it answered ALL_SLOTS_BUSY (clients of its own hold slots the
// orchestrator does not see).
func (r *registry) snapshot(ws []scheduler.Worker, now time.Time) []scheduler.Worker {
	r.mu.Lock()
	defer r.mu.Unlock()
	start := len(ws)
	for _, w := range r.workers {
		if w.rec.Model.Embedding {
			continue // serves embeddings only (embeddings.go)
		}
		busy := w.assigned
		if now.Before(w.fullUntil) {
			busy = max(busy, w.rec.Slots)
		}
		ws = append(ws, scheduler.Worker{
			ID: w.rec.WorkerID, Pool: w.rec.Pool, Model: w.rec.Model.ID, State: w.rec.State,
			SlotsTotal: w.rec.Slots, SlotsBusy: busy, Load: w.load, TokensPerSecond: w.tps, Labels: w.rec.Labels,
			Ctx: w.rec.Model.Ctx, Digest: w.rec.Model.Digest,
		})
	}
	slices.SortFunc(ws[start:], func(a, b scheduler.Worker) int { return strings.Compare(a.ID, b.ID) })
	return ws
}

// acquire takes a slot of a worker for an attempt: the worker must still be
// registered and healthy.
func (r *registry) acquire(id string) (workerAPI, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w, ok := r.workers[id]
	if !ok || w.rec.State != api.WorkerHealthy || w.assigned >= w.rec.Slots {
		return nil, false
	}
	w.assigned++
	return w.client, true
}

// release gives back the slot of an attempt.
func (r *registry) release(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[id]; ok && w.assigned > 0 {
		w.assigned--
	}
}

// digest is the model file digest a worker reported, "" when unknown.
func (r *registry) digest(id string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[id]; ok {
		return w.rec.Model.Digest
	}
	return ""
}

// client returns a worker's client (to cancel a job), nil when unknown.
func (r *registry) client(id string) workerAPI {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[id]; ok {
		return w.client
	}
	return nil
}

// busy records that a worker answered ALL_SLOTS_BUSY: it gets no new
// attempt until then (its slots are taken by clients the orchestrator does
// not see, or freed later than it assumed).
func (r *registry) busy(id string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[id]; ok && until.After(w.fullUntil) {
		w.fullUntil = until
	}
}

// suspect makes the monitor probe a worker at its next round: an attempt on
// it failed.
func (r *registry) suspect(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w, ok := r.workers[id]; ok {
		w.suspect = true
	}
}

// unreachable records that a worker could not be reached at all (refused,
// reset, cut off, silent): it is unhealthy — no new attempt — until it
// answers a probe or heartbeats again, and the monitor probes it at once.
// Without this a killed worker looks free until its next missed heartbeat
// and every waiting task fails on it in turn. Its other attempts run on:
// they end by themselves if the process is gone.
func (r *registry) unreachable(id, why string) {
	func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if w, ok := r.workers[id]; ok && (w.rec.State == api.WorkerHealthy || w.rec.State == api.WorkerDraining) {
			w.unhealthySince = time.Now()
			r.setStateLocked(w, api.WorkerUnhealthy, "unreachable: "+workerclient.Sanitize(why, 200))
		}
	}()
	r.probeNow()
}

// probeNow wakes the monitor for a round now.
func (r *registry) probeNow() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// monitorLoop probes silent workers and ages unhealthy ones to dead.
func (r *registry) monitorLoop(ctx context.Context, alive func()) {
	tick(ctx, r.cfg.MonitorInterval, r.wake, func() {
		r.monitor(ctx, time.Now())
		alive()
	})
}

// monitor runs one round of health checks at now.
func (r *registry) monitor(ctx context.Context, now time.Time) {
	var lost, dead []string
	func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, w := range r.workers {
			switch w.rec.State {
			case api.WorkerHealthy, api.WorkerDraining:
				if (w.suspect || now.Sub(w.rec.LastSeen) > r.cfg.HeartbeatTimeout) && !w.probing {
					w.suspect = false
					w.probing = true
					go r.probe(ctx, w, w.client)
				}
			case api.WorkerUnhealthy:
				if now.Sub(w.unhealthySince) > r.cfg.DeadAfter {
					r.setStateLocked(w, api.WorkerDead, "no heartbeat and no answer to /health")
					dead = append(dead, w.rec.WorkerID)
					if w.assigned > 0 {
						lost = append(lost, w.rec.WorkerID)
					}
				} else if !w.probing {
					w.probing = true
					go r.probe(ctx, w, w.client)
				}
			}
		}
	}()
	for _, id := range lost {
		r.onLost(id, lostHung, "the worker is dead")
	}
	for _, id := range dead {
		r.onGone(id)
	}
	if err := r.save(); err != nil {
		r.log.Error("saving the registry", "err", err)
	}
}

// probe asks a silent worker for /health.
func (r *registry) probe(ctx context.Context, w *worker, client workerAPI) {
	pctx, cancel := context.WithTimeout(ctx, r.cfg.ProbeTimeout)
	h, err := client.Health(pctx)
	cancel()
	lost, ready := "", false
	func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		w.probing = false
		if r.workers[w.rec.WorkerID] != w {
			return // removed or registered anew meanwhile
		}
		if err == nil && h.Status != api.StatusFailed {
			w.rec.LastSeen = time.Now()
			w.slotsBusy = h.SlotsBusy
			if w.rec.State == api.WorkerUnhealthy {
				r.setStateLocked(w, api.WorkerHealthy, "answered /health")
				ready = true
			}
			return
		}
		if w.rec.State == api.WorkerHealthy || w.rec.State == api.WorkerDraining {
			reason := "no heartbeat for " + r.cfg.HeartbeatTimeout.String()
			if err != nil {
				reason += " and /health failed: " + workerclient.Sanitize(err.Error(), 200)
			} else {
				reason += " and /health says failed"
			}
			w.unhealthySince = time.Now()
			r.setStateLocked(w, api.WorkerUnhealthy, reason)
			if w.assigned > 0 {
				lost = "the worker became unhealthy: " + reason
			}
		}
	}()
	if lost != "" {
		r.onLost(w.rec.WorkerID, lostHung, lost)
	}
	if ready {
		r.onReady()
	}
}

// setStateLocked changes a worker's state and marks it to be saved.
func (r *registry) setStateLocked(w *worker, state, why string) {
	if w.rec.State == state {
		return
	}
	r.log.Warn("worker state", "worker_id", w.rec.WorkerID, "from", w.rec.State, "to", state, "why", why)
	w.rec.State = state
	r.dirty[w.rec.WorkerID] = true
	r.gaugeLocked()
}

// models lists the models registered workers serve, with worker counts.
func (r *registry) models() []openai.Model {
	r.mu.Lock()
	byID := map[string]*openai.Model{}
	for _, w := range r.workers {
		if w.rec.State == api.WorkerDead {
			continue
		}
		m := byID[w.rec.Model.ID]
		if m == nil {
			m = &openai.Model{ID: w.rec.Model.ID, Created: w.rec.RegisteredAt.Unix()}
			byID[m.ID] = m
		}
		m.Workers++
		if w.rec.State == api.WorkerHealthy {
			m.Ready++
		}
		m.Created = min(m.Created, w.rec.RegisteredAt.Unix())
	}
	r.mu.Unlock()
	out := make([]openai.Model, 0, len(byID))
	for _, m := range byID {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b openai.Model) int { return strings.Compare(a.ID, b.ID) })
	return out
}
