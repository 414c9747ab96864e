package orchestrator

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
)

// Replica phases (store.Replica.Phase).
const (
	phaseStarting = "starting"
	phaseReady    = "ready"
)

// Start steps, as waiting tasks see them.
const (
	stepInventory   = "inventory"
	stepDownloading = "downloading"
	stepLoading     = "loading"
	stepRegistering = "registering"
)

// loop runs reconcile passes and pool refreshes until ctx ends. Starts and
// stops run in their own goroutines, which end with ctx.
func (f *fleet) loop(ctx context.Context) {
	f.wg.Go(func() { tick(ctx, f.cfg.InventoryInterval, nil, func() { f.refreshAll(ctx) }) })
	tick(ctx, f.cfg.ReconcileInterval, f.wake, func() { f.reconcile(ctx, time.Now()) })
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	close(f.quit)
	f.wg.Wait() // pool commands in flight end with ctx
}

// opCtx is a context for a pool command that is not part of a pass: it
// ends after d, or when the fleet stops.
func (f *fleet) opCtx(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-f.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// refreshAll refreshes every pool not being refreshed now, in parallel.
func (f *fleet) refreshAll(ctx context.Context) {
	f.mu.Lock()
	var names []string
	for name, p := range f.pools {
		if !p.refreshing {
			names = append(names, name)
		}
	}
	f.mu.Unlock()
	for _, n := range names {
		f.wg.Go(func() { f.refresh(ctx, n) })
	}
}

// refresh reads a pool's inventory (installing llorch there first when the
// pool asks for it and the host lacks this version), stores it, and reports
// a change of state as an event.
func (f *fleet) refresh(ctx context.Context, name string) (api.PoolView, bool) {
	f.mu.Lock()
	p, ok := f.pools[name]
	if !ok || p.refreshing {
		f.mu.Unlock()
		return api.PoolView{}, ok
	}
	p.refreshing = true
	spec, before := p.spec, p.state
	f.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, f.cfg.PoolTimeout)
	defer cancel()
	h := f.host(spec)
	st, err := h.Status(ctx)
	if spec.Install && (errors.Is(err, errNoLlorch) || err == nil && st.Version != f.cfg.Version) {
		why := "llorch is missing"
		if err == nil {
			why = fmt.Sprintf("the host has llorch %s, this is %s", st.Version, f.cfg.Version)
		}
		if ierr := h.Install(ctx); ierr != nil {
			err = fmt.Errorf("install (%s): %w", why, ierr)
		} else {
			f.emit(api.FleetEvent{Kind: api.EventInstall, Pool: name, Reason: why})
			st, err = h.Status(ctx)
		}
	}
	next := store.PoolState{State: api.PoolOK, RefreshedAt: time.Now().UTC(), Inventory: before.Inventory}
	if err != nil {
		next.State, next.LastError = api.PoolError, err.Error()
		if errors.Is(err, errUnreachable) {
			next.State = api.PoolUnreachable
		}
	} else {
		next.Inventory = &st
	}
	up := 0.0
	if err == nil {
		up = 1
	}
	f.m.poolUp.WithLabelValues(name).Set(up)
	if perr := f.st.PutPoolState(name, next); perr != nil {
		f.log.Error("storing a pool's inventory", "pool", name, "err", perr)
	}
	f.mu.Lock()
	p, ok = f.pools[name]
	if ok {
		p.refreshing = false
		if reflect.DeepEqual(p.spec, spec) {
			p.state = next
		}
	}
	var v api.PoolView
	if ok {
		v = p.viewLocked()
	}
	f.mu.Unlock()
	switch {
	case err != nil && (before.State != next.State || before.LastError != next.LastError):
		f.emit(api.FleetEvent{Kind: api.EventInventoryError, Pool: name, Reason: next.LastError})
	case err == nil && before.State != api.PoolOK:
		f.emit(api.FleetEvent{Kind: api.EventInventory, Pool: name, Reason: fmt.Sprintf("%s: %s/%s, llorch %s, %d models, %d workers",
			next.State, st.OS, st.Arch, st.Version, len(st.Models), len(st.Workers))})
	}
	if ok && (before.State != next.State || err == nil) {
		f.kick()
	}
	return v, ok
}

// action is what a reconcile pass decided, done after the lock is released.
type action func(ctx context.Context)

// reconcile compares the declared models with what runs and acts: starts
// on demand and up to min_replicas, restarts after crashes (with backoff),
// replaces replicas of an older revision one at a time, and drains and
// stops idle replicas above min_replicas.
func (f *fleet) reconcile(ctx context.Context, now time.Time) {
	workers := f.reg.list()
	demand := f.disp.demand()
	byID := make(map[string]*api.WorkerView, len(workers))
	for i := range workers {
		byID[workers[i].WorkerID] = &workers[i]
	}
	var acts []action
	f.mu.Lock()
	for name, p := range f.pools {
		if p.state.State == api.PoolUnknown && !p.refreshing { // new, or changed: look at once
			acts = append(acts, func(ctx context.Context) { f.wg.Go(func() { f.refresh(ctx, name) }) })
		}
	}
	acts = append(acts, f.replicasLocked(now, byID)...)
	for _, m := range f.models {
		queued := demand[m.rec.Spec.ID]
		if m.rec.Spec.Embedding { // its demand is requests waiting in awaitEmbedder, not tasks
			queued = f.embedWait[m.rec.Spec.ID]
		}
		acts = append(acts, f.modelLocked(now, m, workers, queued)...)
	}
	f.mu.Unlock()
	for _, a := range acts {
		a(ctx)
	}
}

// replicasLocked follows the fleet's workers: seen, crashed, idle; and
// learns the memory fit from the first report of a ready one.
func (f *fleet) replicasLocked(now time.Time, byID map[string]*api.WorkerView) []action {
	keys := map[*fleetModel][2]string{}
	var acts []action
	for _, r := range f.replicas {
		if r.stopping {
			continue
		}
		if r.rec.Phase == phaseStarting {
			if r.cancel == nil { // left by a restart: resume it (the pool's spawn is idempotent by worker id)
				acts = append(acts, f.startAction(r))
			}
			continue
		}
		w := byID[r.rec.WorkerID]
		pool := f.pools[r.rec.Pool]
		if !r.readyAt.IsZero() && !r.readyAt.Before(now) {
			continue // ready after the registry was read: judged at the next pass
		}
		var why string
		switch {
		case w == nil:
			why = "the worker is no longer registered"
		case w.State == api.WorkerDead:
			why = "the worker stopped answering (dead)"
		case pool != nil && pool.state.State == api.PoolOK && pool.state.RefreshedAt.After(r.readyAt.Add(time.Second)) && !aliveIn(pool.state.Inventory, r.rec.WorkerID):
			why = "the worker process is gone from its pool"
		}
		if why != "" {
			acts = append(acts, f.crashLocked(now, r, why))
			continue
		}
		if w.State == api.WorkerHealthy && !r.seen {
			r.seen = true
			if r.restored && r.rec.Phase == phaseReady {
				acts = append(acts, func(context.Context) {
					f.emit(api.FleetEvent{Kind: api.EventAdopt, Pool: r.rec.Pool, Model: r.rec.Model, Worker: r.rec.WorkerID, Reason: "running after a restart of the orchestrator"})
				})
			}
		}
		if w.State == api.WorkerUnhealthy && pool != nil && !pool.refreshing {
			name := pool.spec.Name
			acts = append(acts, func(ctx context.Context) { f.wg.Go(func() { f.refresh(ctx, name) }) })
		}
		if w.SlotsBusy > 0 || w.Assigned > 0 {
			r.idleSince = now
		}
		if m := f.models[r.rec.Model]; m != nil {
			if w.Model.Digest != "" && r.rec.Revision == m.rec.Revision {
				m.digest = w.Model.Digest
			}
			if r.rec.Revision == m.rec.Revision && (w.RSSBytes > 0 || w.VRAMUsedBytes > 0) {
				k, ok := keys[m]
				if !ok { // once per model and pass, not per replica
					k = [2]string{estimateKey(m.rec.Spec), fitKey(m.rec.Spec, m.digest)}
					keys[m] = k
				}
				if a := f.learnLocked(now, m, r, w, k[0], k[1]); a != nil {
					acts = append(acts, a)
				}
			}
		}
	}
	return acts
}

func aliveIn(inv *api.PoolStatus, id string) bool {
	if inv == nil {
		return true // nothing known: do not judge
	}
	for _, w := range inv.Workers {
		if w.ID == id {
			return w.Alive
		}
	}
	return false
}

// learnLocked keeps, per model digest × backend × ctx × slots, the most
// memory a replica was seen using (RSS on CPU, VRAM on GPU backends) and its
// ratio to the estimate. The most, not the last: a replica that just loaded
// has touched less than one that served long prompts, and placement must
// hold the peak. It writes only when the peak grew by more than 1%.
func (f *fleet) learnLocked(now time.Time, m *fleetModel, r *replica, w *api.WorkerView, estKey, key string) action {
	actual := w.RSSBytes
	if m.rec.Spec.Backend != "cpu" && w.VRAMUsedBytes > 0 {
		actual = w.VRAMUsedBytes
	}
	est, ok := f.ests[estKey]
	if actual == 0 || !ok || est.err != nil || est.bytes == 0 || now.Sub(r.readyAt) < time.Second {
		return nil
	}
	fit := f.fits[key]
	if fit.Samples > 0 && fit.EstimateBytes == est.bytes && float64(actual) <= float64(fit.ActualBytes)*1.01 {
		return nil
	}
	if fit.EstimateBytes == est.bytes {
		actual = max(actual, fit.ActualBytes)
	}
	fit = store.Fit{EstimateBytes: est.bytes, ActualBytes: actual, Ratio: float64(actual) / float64(est.bytes), Samples: fit.Samples + 1, UpdatedAt: now.UTC()}
	f.fits[key] = fit
	return func(context.Context) {
		if err := f.st.PutFit(key, fit); err != nil {
			f.log.Error("storing a learned fit", "err", err)
		}
	}
}

// crashLocked forgets a replica that died, stops what is left of it on its
// pool, and holds the next start back: 1s, 2s, 4s … up to a minute; three
// crashes within five minutes make the model failing.
func (f *fleet) crashLocked(now time.Time, r *replica, why string) action {
	delete(f.replicas, r.rec.WorkerID)
	m := f.models[r.rec.Model]
	var failing string
	if m != nil {
		m.crashes = append(slices.DeleteFunc(m.crashes, func(t time.Time) bool { return now.Sub(t) > crashWindow }), now)
		m.backoff = now.Add(min(maxBackoff, time.Second<<min(len(m.crashes)-1, 6)))
		if len(m.crashes) >= crashLoop {
			m.state = api.ModelFailing
			m.lastErr = fmt.Sprintf("crash loop: %d crashes in %s; last: %s", len(m.crashes), crashWindow, why)
			failing = m.lastErr
		}
	}
	pool, ok := f.pools[r.rec.Pool]
	var spec api.Pool
	if ok {
		spec = pool.spec
	}
	return func(ctx context.Context) {
		f.emit(api.FleetEvent{Kind: api.EventCrash, Pool: r.rec.Pool, Model: r.rec.Model, Worker: r.rec.WorkerID, Reason: why})
		if failing != "" {
			f.emit(api.FleetEvent{Kind: api.EventCrash, Model: r.rec.Model, Reason: failing})
		}
		if err := f.st.DeleteReplica(r.rec.WorkerID); err != nil {
			f.log.Error("forgetting a replica", "err", err)
		}
		f.reg.remove(r.rec.WorkerID)
		if ok {
			f.wg.Go(func() {
				sctx, cancel := f.opCtx(f.cfg.PoolTimeout)
				defer cancel()
				h := f.host(spec)
				if lines, err := h.Logs(sctx, r.rec.WorkerID, 20); err == nil && len(lines) > 0 {
					f.mu.Lock()
					if m := f.models[r.rec.Model]; m != nil {
						m.lastLog = lines
					}
					f.mu.Unlock()
				}
				if err := h.Stop(sctx, r.rec.WorkerID); err != nil {
					f.log.Warn("cleaning up a crashed worker", "worker_id", r.rec.WorkerID, "err", err)
				}
			})
		}
		f.kick()
	}
}

// modelLocked decides one model's starts and stops.
func (f *fleet) modelLocked(now time.Time, m *fleetModel, workers []api.WorkerView, queued int) []action {
	s := m.rec.Spec
	var ready, old, starting, free int
	var oldest, idlest *replica
	fleetOwned := map[string]*replica{}
	for _, r := range f.replicas {
		if r.rec.Model != s.ID {
			continue
		}
		fleetOwned[r.rec.WorkerID] = r
		if r.rec.Phase == phaseStarting && !r.stopping {
			starting++
		}
	}
	for i := range workers {
		w := &workers[i]
		if w.Model.ID != s.ID || w.State != api.WorkerHealthy {
			continue
		}
		r := fleetOwned[w.WorkerID]
		if r != nil && (r.stopping || r.rec.Phase != phaseReady) {
			continue
		}
		// Only workers of the model's kind are its replicas (an embedding
		// worker serves no tasks, a generation worker no embeddings); a
		// replica of an older revision counts as old whatever its kind, so
		// a change of kind rolls like any other.
		if w.Model.Embedding != s.Embedding && (r == nil || r.rec.Revision == m.rec.Revision) {
			continue
		}
		if r != nil {
			if p := f.pools[r.rec.Pool]; p != nil && p.state.State == api.PoolUnreachable {
				continue // lost with its pool: replaced elsewhere if there is room
			}
		}
		if r != nil && r.rec.Revision != m.rec.Revision {
			old++
			if oldest == nil || r.rec.Revision < oldest.rec.Revision || r.rec.Revision == oldest.rec.Revision && r.rec.WorkerID < oldest.rec.WorkerID {
				oldest = r
			}
			continue
		}
		ready++
		free += max(0, w.Slots-max(w.SlotsBusy, w.Assigned))
		if r != nil && w.SlotsBusy == 0 && w.Assigned == 0 && now.Sub(r.idleSince) >= time.Duration(s.IdleTTL) &&
			(idlest == nil || r.idleSince.Before(idlest.idleSince)) {
			idlest = r
		}
	}
	want := s.MinReplicas
	if queued > 0 {
		want = max(want, 1)
		if queued > free {
			want = max(want, min(s.MaxReplicas, ready+1))
		}
	}
	want = min(want, s.MaxReplicas)
	if old > 0 {
		want = max(want, ready+old) // a rolling change keeps the count
	}
	f.m.fleetReplicas.WithLabelValues(s.ID, "desired").Set(float64(want))
	f.m.fleetReplicas.WithLabelValues(s.ID, "starting").Set(float64(starting))
	f.m.fleetReplicas.WithLabelValues(s.ID, "ready").Set(float64(ready + old))
	acts := f.estimateLocked(now, s)
	m.crashes = slices.DeleteFunc(m.crashes, func(t time.Time) bool { return now.Sub(t) > crashWindow })
	switch {
	case len(m.crashes) >= crashLoop:
		m.state = api.ModelFailing // until the window holds fewer crashes
	case starting > 0:
		m.state = api.ModelStarting
	case ready > 0 || old > 0:
		if m.state != api.ModelFailing || ready > 0 {
			m.state = api.ModelReady
		}
	case m.state != api.ModelFailing && m.state != api.ModelUnplaceable:
		m.state = api.ModelIdle
	}
	rolling := old > 0 && ready > 0 && starting == 0 && ready+old-1 >= max(s.MinReplicas, 1)
	switch {
	case rolling: // stop an old replica first; the next pass starts another new one
	case starting == 0 && ready < want && !now.Before(m.backoff):
		acts = append(acts, f.placeLocked(now, m, queued, true)...)
	case starting == 0 && m.state == api.ModelUnplaceable:
		acts = append(acts, f.placeLocked(now, m, queued, false)...) // does it fit now?
	}
	if m.state != api.ModelUnplaceable {
		m.refusal = nil
	}
	switch {
	case rolling:
		acts = append(acts, f.stopAction(oldest, fmt.Sprintf("rolling change to revision %d: a new replica is ready", m.rec.Revision)))
		oldest.stopping = true
		if m.rec.Previous != nil && old == 1 {
			m.rec.Previous = nil // the change is complete: nothing to roll back to
			rec := m.rec
			acts = append(acts, func(context.Context) {
				if err := f.st.PutModel(rec); err != nil {
					f.log.Error("storing a model", "err", err)
				}
				f.emit(api.FleetEvent{Kind: api.EventRollout, Model: rec.Spec.ID, Reason: fmt.Sprintf("revision %d: every replica replaced", rec.Revision)})
			})
		}
	case idlest != nil && old == 0 && starting == 0 && queued == 0 && ready > s.MinReplicas:
		idlest.stopping = true
		acts = append(acts, f.stopAction(idlest, fmt.Sprintf("idle for %s (idle_ttl %s) above min_replicas %d", now.Sub(idlest.idleSince).Round(time.Second), time.Duration(s.IdleTTL), s.MinReplicas)))
	}
	return acts
}

// placeLocked picks a pool for a new replica of m and starts it there (with
// start), or explains why none fits. It needs the model's estimate; without
// one it fetches it first.
func (f *fleet) placeLocked(now time.Time, m *fleetModel, queued int, start bool) []action {
	s := m.rec.Spec
	cands := f.candidatesLocked(s)
	if len(cands) == 0 && start {
		// Tasks wait (as for a known model with no healthy worker); say why.
		m.lastErr = fmt.Sprintf("no pool it may use is reachable with the %s backend", s.Backend)
		return nil
	}
	est, ok := f.ests[estimateKey(s)]
	if !ok {
		return nil // being fetched (estimateLocked)
	}
	if est.err != nil {
		m.state, m.lastErr = api.ModelFailing, "cannot read the model's header: "+est.err.Error()
		return nil
	}
	fit := f.fitLocked(m)
	needBytes := need(est.bytes, fit.Ratio)
	var best *fleetPool
	var bestGPU int
	var biggest uint64
	var biggestPool string
	bestScore := [3]int64{}
	for _, p := range cands {
		free, gpu := f.freeLocked(p, s.Backend)
		if free > biggest || biggestPool == "" {
			biggest, biggestPool = free, p.spec.Name
		}
		if free < needBytes {
			continue
		}
		score := [3]int64{0, -int64(f.countLocked(p.spec.Name, s.ID)), int64(free >> 20)}
		if hasModel(p.state.Inventory, s) {
			score[0] = 1
		}
		if best == nil || slices.Compare(score[:], bestScore[:]) > 0 {
			best, bestScore, bestGPU = p, score, gpu
		}
	}
	if best == nil {
		why := fmt.Sprintf("model %s needs %s (estimate %s × learned correction %.2f)", s.ID, api.SizeText(int64(needBytes)), api.SizeText(int64(est.bytes)), fit.Ratio)
		if biggestPool != "" {
			why += fmt.Sprintf("; the most free memory is %s on pool %s", api.SizeText(int64(biggest)), biggestPool)
		} else {
			why += "; no pool it may use is reachable with the backend " + s.Backend
		}
		changed := m.lastErr != why
		if len(cands) > 0 {
			m.state, m.lastErr = api.ModelUnplaceable, why
			e := api.Errorf(api.CodeNoCapacity, "%s", why)
			e.RetryAfterMs = 30000
			m.refusal = e
		}
		var acts []action
		if changed {
			acts = append(acts, func(context.Context) { f.emit(api.FleetEvent{Kind: api.EventUnplaceable, Model: s.ID, Reason: why}) })
		}
		if queued > 0 && m.refusal != nil && !s.Embedding { // waiting embedding requests read the refusal themselves
			refusal := m.refusal
			acts = append(acts, func(context.Context) { f.disp.failQueued(s.ID, refusal) })
		}
		return acts
	}
	if m.state == api.ModelUnplaceable {
		m.state, m.lastErr, m.refusal = api.ModelIdle, "", nil
	}
	if !start {
		return nil
	}
	r := &replica{rec: store.Replica{WorkerID: replicaID(s.ID, best.spec.Name), Model: s.ID, Pool: best.spec.Name, Revision: m.rec.Revision,
		Source: s.Source, NeedBytes: needBytes, GPU: bestGPU, Phase: phaseStarting, CreatedAt: now.UTC()}, began: now, idleSince: now, step: stepInventory}
	f.replicas[r.rec.WorkerID] = r
	m.state = api.ModelStarting
	acts := []action{f.startAction(r)}
	if n := len(m.crashes); n > 0 {
		why := fmt.Sprintf("replacing a crashed replica (%d crashes in %s) on pool %s", n, crashWindow, r.rec.Pool)
		acts = append(acts, func(context.Context) {
			f.emit(api.FleetEvent{Kind: api.EventRestart, Pool: r.rec.Pool, Model: s.ID, Worker: r.rec.WorkerID, Reason: why})
		})
	}
	return acts
}

// estimateLocked fetches a model's estimate when it has none (or a failed
// one older than 30s), from the first pool it may use: at once when the
// model is declared, so the first task's start does not wait for it.
func (f *fleet) estimateLocked(now time.Time, s api.ModelSpec) []action {
	key := estimateKey(s)
	est, ok := f.ests[key]
	if ok && (est.err == nil || now.Sub(est.at) < 30*time.Second) || f.estBusy[key] {
		return nil
	}
	cands := f.candidatesLocked(s)
	if len(cands) == 0 {
		return nil
	}
	f.estBusy[key] = true
	pool := cands[0].spec
	return []action{func(ctx context.Context) { f.wg.Go(func() { f.fetchEstimate(ctx, key, s, pool) }) }}
}

// candidatesLocked are the pools s may use, reachable, with its backend.
func (f *fleet) candidatesLocked(s api.ModelSpec) []*fleetPool {
	var out []*fleetPool
	for _, p := range f.pools {
		if p.state.State != api.PoolOK || p.state.Inventory == nil {
			continue
		}
		if len(s.Pools) > 0 && !slices.Contains(s.Pools, p.spec.Name) {
			continue
		}
		match := true
		for k, v := range s.Labels {
			if p.spec.Labels[k] != v {
				match = false
			}
		}
		if !match || !hasBackend(p.state.Inventory, s.Backend) {
			continue
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *fleetPool) int { return strings.Compare(a.spec.Name, b.spec.Name) })
	return out
}

func hasBackend(inv *api.PoolStatus, name string) bool {
	for _, b := range inv.Backends {
		if b.Name == name && b.Available {
			return true
		}
	}
	return false
}

func hasModel(inv *api.PoolStatus, s api.ModelSpec) bool {
	if inv == nil {
		return false
	}
	for _, m := range inv.Models {
		if m.ID == s.ID && m.Ref == s.Source && (s.SHA256 == "" || m.SHA256 == s.SHA256) {
			return true
		}
	}
	return false
}

// freeLocked is the memory a new replica may use on p: what the host
// reports free (RAM, or the freest GPU's VRAM), less what starts in flight
// there will take; capped by the pool's memory_limit_bytes less what the
// fleet's replicas there need.
// The GPU is the one with the most free VRAM, less what starts in flight on
// it will take (-1: no GPU, the CPU or Metal's unified memory).
func (f *fleet) freeLocked(p *fleetPool, backend string) (free uint64, gpu int) {
	inv := p.state.Inventory
	var inFlight, placed uint64
	inFlightOn := map[int]uint64{}
	for _, r := range f.replicas {
		if r.rec.Pool != p.spec.Name {
			continue
		}
		placed += r.rec.NeedBytes
		if r.rec.Phase == phaseStarting {
			inFlight += r.rec.NeedBytes
			inFlightOn[r.rec.GPU] += r.rec.NeedBytes
		}
	}
	free, gpu = sub(inv.RAMFreeBytes, inFlight), -1
	if backend != "cpu" {
		for _, b := range inv.Backends {
			if b.Name != backend || len(b.Devices) == 0 { // metal: unified memory
				continue
			}
			free = 0
			for _, d := range b.Devices {
				if f := sub(d.VRAMFreeBytes, inFlightOn[d.Index]); f > free || gpu < 0 {
					free, gpu = f, d.Index
				}
			}
		}
	}
	if lim := p.spec.MemoryLimitBytes; lim > 0 {
		free = min(free, sub(lim, placed))
	}
	return free, gpu
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}

func (f *fleet) countLocked(pool, model string) int {
	n := 0
	for _, r := range f.replicas {
		if r.rec.Pool == pool && r.rec.Model == model {
			n++
		}
	}
	return n
}

// workerHost is the address a pool's workers listen on: the pool's
// worker_host, else loopback on this host and every interface on an ssh
// host (the orchestrator reaches them from elsewhere; they need the worker
// token there).
func workerHost(p api.Pool) string {
	switch {
	case p.WorkerHost != "":
		return p.WorkerHost
	case p.Transport == api.TransportSSH:
		return "0.0.0.0"
	}
	return "127.0.0.1"
}

// replicaID names a new worker: model-pool-random, within the id rule.
func replicaID(model, pool string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%.60s-%.50s-%s", model, pool, hex.EncodeToString(b[:]))
}

// fetchEstimate asks a pool for the model's memory estimate (its header is
// read there: from the catalog, the file, or by a range request).
func (f *fleet) fetchEstimate(ctx context.Context, key string, s api.ModelSpec, pool api.Pool) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.PoolTimeout)
	defer cancel()
	n, err := f.host(pool).Estimate(ctx, s)
	f.mu.Lock()
	delete(f.estBusy, key)
	f.ests[key] = estimate{bytes: n, err: err, at: time.Now()}
	f.mu.Unlock()
	if err != nil {
		f.emit(api.FleetEvent{Kind: api.EventInventoryError, Pool: pool.Name, Model: s.ID, Reason: "estimate: " + err.Error()})
	}
	f.kick()
}

// startAction runs a start in its own goroutine.
func (f *fleet) startAction(r *replica) action {
	sctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	return func(ctx context.Context) {
		stop := context.AfterFunc(ctx, cancel)
		f.wg.Go(func() {
			defer stop()
			defer cancel()
			f.runStart(sctx, r)
		})
	}
}

// runStart brings one replica up: record it (before anything, so that a
// restart finds it), download the model to the pool if absent, spawn the
// worker (the pool waits until it loaded), and wait until it registers.
func (f *fleet) runStart(ctx context.Context, r *replica) {
	f.mu.Lock()
	m, okM := f.models[r.rec.Model]
	p, okP := f.pools[r.rec.Pool]
	var spec api.ModelSpec
	var pool api.Pool
	var eta time.Time
	var cached *api.PoolStatus
	if okM && okP {
		spec, pool = m.rec.Spec, p.spec
		if time.Since(p.state.RefreshedAt) < f.cfg.InventoryInterval {
			cached = p.state.Inventory // the inventory is immutable once stored
		}
		eta = r.began.Add(cmp.Or(m.coldStart, 30*time.Second))
		if r.rec.Revision != m.rec.Revision {
			okM = false // the spec changed before this (restored) start resumed
		}
	}
	f.mu.Unlock()
	if !okM || !okP {
		f.forget(r)
		return
	}
	note := func(step string, progress float64) {
		f.mu.Lock()
		r.step, r.progress = step, progress
		f.mu.Unlock()
		if !spec.Embedding { // waiting tasks hear of it; embedding requests wait without a stream
			f.disp.setStarting(spec.ID, startNote{pool: pool.Name, step: step, progress: progress, eta: eta})
		}
	}
	if !spec.Embedding {
		defer f.disp.setStarting(spec.ID, startNote{})
	}
	// A start stopped from outside (a shutdown, or stopReplica) is not a
	// failure: a shutdown leaves its record for the next run to resume, and
	// stopReplica cleans up itself.
	fail := func(err error, lines []string) {
		if ctx.Err() == nil {
			f.failStart(r, spec, err, lines)
		}
	}
	if err := f.st.PutReplica(r.rec); err != nil {
		fail(fmt.Errorf("recording the start: %w", err), nil)
		return
	}
	h := f.host(pool)
	t0 := time.Now()
	// A fresh inventory says whether the model must be downloaded; without
	// one, ask the pool (a command over SSH costs a session: ~0.35s here).
	// A stale answer costs nothing: the download is idempotent.
	var inv api.PoolStatus
	if cached != nil {
		inv = *cached
	} else {
		note(stepInventory, 0)
		var err error
		if inv, err = h.Status(ctx); err != nil {
			fail(fmt.Errorf("pool %s: %w", pool.Name, err), nil)
			return
		}
	}
	tInv := time.Since(t0)
	var tDownload time.Duration
	if !hasModel(&inv, spec) {
		t1 := time.Now()
		note(stepDownloading, 0)
		f.emit(api.FleetEvent{Kind: api.EventDownload, Pool: pool.Name, Model: spec.ID, Worker: r.rec.WorkerID, Reason: spec.Source})
		var last time.Time
		err := h.Download(ctx, spec, func(done, total int64) {
			if total <= 0 || time.Since(last) < 250*time.Millisecond {
				return
			}
			last = time.Now()
			note(stepDownloading, float64(done)/float64(total))
		})
		if err != nil {
			fail(fmt.Errorf("download on pool %s: %w", pool.Name, err), nil)
			return
		}
		tDownload = time.Since(t1)
		f.emit(api.FleetEvent{Kind: api.EventDownloaded, Pool: pool.Name, Model: spec.ID, Worker: r.rec.WorkerID, Reason: fmt.Sprintf("in %s", tDownload.Round(time.Millisecond))})
	}
	note(stepLoading, 0)
	t2 := time.Now()
	f.emit(api.FleetEvent{Kind: api.EventSpawn, Pool: pool.Name, Model: spec.ID, Worker: r.rec.WorkerID, Reason: fmt.Sprintf("revision %d, %s, %d slots", r.rec.Revision, spec.Backend, spec.Slots)})
	_, err := h.Spawn(ctx, spawnRequest{WorkerID: r.rec.WorkerID, Spec: spec, Pool: pool.Name, Orchestrator: f.cfg.AdvertiseURL, Token: f.cfg.WorkerToken,
		GPU: r.rec.GPU, Host: workerHost(pool), Progress: func(p float64) { note(stepLoading, p) }})
	if err != nil {
		var se *spawnError
		var lines []string
		if errors.As(err, &se) {
			lines = se.log
		}
		fail(fmt.Errorf("spawn on pool %s: %w", pool.Name, err), lines)
		f.wg.Go(func() { // whatever is left of it
			sctx, cancel := f.opCtx(f.cfg.PoolTimeout)
			defer cancel()
			_ = h.Stop(sctx, r.rec.WorkerID)
		})
		return
	}
	tLoad := time.Since(t2)
	note(stepRegistering, 1)
	t3 := time.Now()
	if err := f.waitRegistered(ctx, r.rec.WorkerID); err != nil {
		fail(err, nil)
		f.wg.Go(func() {
			sctx, cancel := f.opCtx(f.cfg.PoolTimeout)
			defer cancel()
			_ = h.Stop(sctx, r.rec.WorkerID)
		})
		return
	}
	tReg := time.Since(t3)
	total := time.Since(r.began)
	rec := r.rec // written only here, by this goroutine
	rec.Phase = phaseReady
	if err := f.st.PutReplica(rec); err != nil {
		f.log.Error("recording a ready replica", "err", err)
	}
	f.mu.Lock()
	r.rec.Phase = phaseReady
	r.readyAt, r.seen, r.idleSince, r.cancel = time.Now(), true, time.Now(), nil
	r.step = ""
	if m, ok := f.models[spec.ID]; ok {
		m.coldStart = total
		if len(m.crashes) < crashLoop && (m.state == api.ModelFailing || m.state == api.ModelStarting) {
			m.state, m.lastErr = api.ModelReady, ""
		}
	}
	// The ready event goes in with the phase: whoever sees the replica
	// ready sees its event.
	ev := f.addEventLocked(api.FleetEvent{Kind: api.EventReady, Pool: pool.Name, Model: spec.ID, Worker: r.rec.WorkerID,
		Reason: fmt.Sprintf("cold start %s: inventory %s, download %s, load %s, register %s", total.Round(time.Millisecond),
			tInv.Round(time.Millisecond), tDownload.Round(time.Millisecond), tLoad.Round(time.Millisecond), tReg.Round(time.Millisecond))})
	f.mu.Unlock()
	f.journal(ev)
	if !spec.Embedding {
		f.disp.setColdStart(spec.ID, total)
	}
	f.m.fleetColdStart.Observe(total.Seconds())
	f.disp.kick()
	f.kick()
}

// waitRegistered waits until the worker registered and is healthy.
func (f *fleet) waitRegistered(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.RegisterTimeout)
	defer cancel()
	for {
		if f.reg.healthy(id) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("worker %s did not register within %s (is --advertise-url reachable from the pool?)", id, f.cfg.RegisterTimeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// failStart ends a start that failed. A failure while replacing replicas
// of an older revision rolls the model back to its previous spec (the old
// replicas keep serving); otherwise it counts as a crash.
func (f *fleet) failStart(r *replica, spec api.ModelSpec, err error, lines []string) {
	now := time.Now()
	f.mu.Lock()
	m := f.models[spec.ID]
	var rollback *store.FleetModel
	if m != nil && m.rec.Previous != nil && m.rec.Revision == r.rec.Revision {
		hasOld := false
		for _, o := range f.replicas {
			if o.rec.Model == spec.ID && o.rec.Revision < r.rec.Revision && o.rec.Phase == phaseReady {
				hasOld = true
			}
		}
		if hasOld {
			rb := store.FleetModel{Spec: *m.rec.Previous, Revision: r.rec.Revision - 1}
			for _, o := range f.replicas { // the old replicas become current again
				if o.rec.Model == spec.ID && o.rec.Phase == phaseReady {
					rb.Revision = o.rec.Revision
				}
			}
			rollback = &rb
			m.rec = rb
		}
	}
	f.mu.Unlock()
	if rollback != nil {
		if perr := f.st.PutModel(*rollback); perr != nil {
			f.log.Error("storing a rollback", "err", perr)
		}
	}
	f.mu.Lock()
	crash := f.crashLocked(now, r, err.Error())
	if m != nil {
		m.lastErr, m.lastLog = err.Error(), lines
		if rollback != nil {
			m.state = api.ModelFailing
			m.lastErr = fmt.Sprintf("rolled back to revision %d: the new spec failed: %s", rollback.Revision, err)
		}
	}
	f.mu.Unlock()
	crash(context.Background())
	if rollback != nil {
		f.emit(api.FleetEvent{Kind: api.EventRollout, Model: spec.ID, Reason: fmt.Sprintf("rolled back to revision %d (source %s): %s", rollback.Revision, rollback.Spec.Source, err)})
	}
}

// forget drops a replica record that has nothing left to do.
func (f *fleet) forget(r *replica) {
	f.mu.Lock()
	delete(f.replicas, r.rec.WorkerID)
	f.mu.Unlock()
	if err := f.st.DeleteReplica(r.rec.WorkerID); err != nil {
		f.log.Error("forgetting a replica", "err", err)
	}
}

// stopAction drains and stops a replica in its own goroutine.
func (f *fleet) stopAction(r *replica, why string) action {
	return func(context.Context) { f.wg.Go(func() { f.stopReplica(r, why) }) }
}

// stopReplica drains a replica, waits until it holds no task (a busy worker
// is never stopped), stops it on its pool and forgets it.
func (f *fleet) stopReplica(r *replica, why string) {
	f.mu.Lock()
	r.stopping = true
	if r.cancel != nil {
		r.cancel() // a start in flight
	}
	spec, okP := api.Pool{}, false
	if p, ok := f.pools[r.rec.Pool]; ok {
		spec, okP = p.spec, true
	}
	f.mu.Unlock()
	id := r.rec.WorkerID
	f.reg.drain(id)
	// Running streams move to the model's other replicas (a rolling change
	// starts the new one first); with no other replica they finish here.
	f.disp.migrateOff(id)
	grace := time.NewTimer(f.cfg.StopGrace)
	defer grace.Stop()
	for f.reg.holdsWork(id) {
		select {
		case <-f.quit: // shutting down: the next run finds it ready and decides again
			return
		case <-grace.C:
			f.log.Warn("stopping a worker that still holds work after the grace period", "worker_id", id, "grace", f.cfg.StopGrace)
		case <-time.After(100 * time.Millisecond):
			continue
		}
		break
	}
	if okP {
		ctx, cancel := f.opCtx(f.cfg.PoolTimeout)
		if err := f.host(spec).Stop(ctx, id); err != nil {
			f.log.Warn("stopping a worker", "worker_id", id, "pool", spec.Name, "err", err)
		}
		cancel()
	}
	f.reg.remove(id)
	f.forget(r)
	f.emit(api.FleetEvent{Kind: api.EventStop, Pool: r.rec.Pool, Model: r.rec.Model, Worker: id, Reason: why})
	f.kick()
}
