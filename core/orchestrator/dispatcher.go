package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/llorch/llorch/core/admission"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/prefix"
	"github.com/llorch/llorch/core/queue"
	"github.com/llorch/llorch/core/routing"
	"github.com/llorch/llorch/core/scheduler"
	"github.com/llorch/llorch/core/workerclient"
)

// dispatcher is the part that owns the queue and the attempts: one loop
// takes queued tasks in order, asks the routing script (when one is loaded)
// and the scheduler where each goes, starts an attempt there (attempt.go),
// and decides what a failed attempt means: wait and try again (the worker
// was busy), try another worker (it failed before the first token), continue
// elsewhere from the tokens already sent (it was lost mid-stream), or give up.
//
// Lock order: the dispatcher may call the registry and the tasks while it
// holds its lock; they never call back while holding theirs.
type dispatcher struct {
	cfg     *Config
	log     *slog.Logger
	m       *metrics
	reg     *registry
	tasks   *tasks
	routing *routing.Manager
	wake    chan struct{}

	mu       sync.Mutex
	q        *queue.Queue[*entry]
	depth    map[depthKey]int    // queued tasks per model and priority
	meter    *admission.Meter    // service times and drain rate
	sessions map[string]string   // session id → worker that served it last
	running  map[string]*attempt // by task id
	// runs is the running attempts per key (fair queueing's max_running).
	runs   map[string]int
	closed bool
	ws     []scheduler.Worker // snapshot buffer, reused under mu
	dec    scheduler.Decision
	// prefix is the prefix index (prefix.go); ids and cached are buffers
	// of its lookups, reused under mu.
	prefix *prefix.Index
	ids    []string
	at     []int
	held   []int
	cached []int
	room   []float64
	// onStarved is called (without the lock) when a task is queued for a
	// model no healthy worker serves: the fleet starts one at once.
	onStarved func()
	// starting is what the fleet reports of the starts it runs, by model:
	// waiting tasks of that model are told (queued{reason: starting}).
	starting map[string]startNote
	// coldStart is each declared model's last measured start (the fleet's):
	// the predicted start of a task that waits for one not begun yet.
	coldStart map[string]time.Duration
}

// startNote is a start in progress as waiting tasks see it.
type startNote struct {
	pool, step string
	progress   float64
	eta        time.Time // when the start should be ready (measured cold starts)
}

type depthKey struct{ model, priority string }

// entry is a task as the dispatcher sees it, from admission to its end.
type entry struct {
	id       string
	model    string
	priority string
	class    queue.Class
	st       scheduler.Task
	req      *api.TaskRequest // read-only: for routing script inputs
	created  time.Time
	// correlation is the X-Correlation-Id workers get.
	correlation string

	// Fair queueing: the key the task is queued for ("" without keys: one
	// FIFO), its weight, and its max_running (0: none), as admitted.
	key        string
	weight     int
	maxRunning int

	// For routing scripts.
	keyFP       string
	headers     map[string]string
	routingNote string

	// spent is the time deciding where the task goes, all passes (timing.go).
	spent spent

	held      bool      // admitted but not yet journaled: not dispatched
	notBefore time.Time // a routing script said "wait" until then
	ticket    queue.Ticket
	expl      *api.Explanation // the last explanation given to the task
	pos       int              // the last queue position given to the task
	predicted int64
	note      startNote // the last start note given to the task

	// hashes are the prompt's block hashes (nil until first placed) and
	// streamBytes the length of what they hash (prefix.go).
	hashes      []uint64
	streamBytes int

	failedOn   []string // workers whose attempt failed before the first token
	failures   int      // such failures
	busy       int      // ALL_SLOTS_BUSY answers in a row
	migrations int      // continuations after a worker was lost mid-stream
}

// attempt is one try of a task on a worker. Its fields after job are
// guarded by dispatcher.mu.
type attempt struct {
	e        *entry
	workerID string
	job      string
	start    time.Time
	resumed  int // tokens the task had when the attempt began
	// predicted is the prompt tokens the prefix index expected the worker
	// to hold; slots the worker's slot count; slot the slot its started
	// event named (-1 until then).
	predicted, slots, slot int

	cancel  context.CancelCauseFunc // set once run has made the attempt's context
	stopped error                   // why it was stopped before that
}

// stopLocked ends the attempt from outside (a cancel, a lost worker).
func (a *attempt) stopLocked(cause error) {
	if a.cancel != nil {
		a.cancel(cause)
	} else if a.stopped == nil {
		a.stopped = cause
	}
}

// errCancelledByClient ends the attempt of a cancelled task.
var errCancelledByClient = errors.New("cancelled")

// lostError is the cause of an attempt abandoned because its worker was
// lost (or drained with migrate). kind is the migration reason.
type lostError struct{ kind, reason string }

func (e *lostError) Error() string { return e.reason }

// Why a task moved to another worker mid-stream: the reason of its migrated
// event and the label of llorch_migrations_total.
const (
	lostDied    = "died"    // the stream broke, or the worker came back as a new process
	lostHung    = "hung"    // heartbeats stopped and /health failed, or the stream went silent
	lostDrain   = "drain"   // drained with migrate
	lostFailed  = "error"   // the worker ended the stream with a retriable error
	lostRemoved = "removed" // deleted from the registry
)

func newDispatcher(cfg *Config, log *slog.Logger, m *metrics, reg *registry, ts *tasks, rm *routing.Manager) *dispatcher {
	pol, _ := queue.ParsePolicy(cfg.QueuePolicy)
	return &dispatcher{
		cfg: cfg, log: log.With("part", "dispatcher"), m: m, reg: reg, tasks: ts, routing: rm,
		wake:     make(chan struct{}, 1),
		q:        queue.New[*entry](queue.Config{Capacity: cfg.QueueCapacity, StarvationLimit: cfg.StarvationLimit, Policy: pol}),
		depth:    map[depthKey]int{},
		meter:    admission.NewMeter(0.2),
		sessions: map[string]string{},
		running:  map[string]*attempt{},
		runs:     map[string]int{},
		prefix:   prefix.New(prefix.Config{}),
	}
}

// kick wakes the loop.
func (d *dispatcher) kick() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// loop places tasks whenever something changed (and once a second, so no
// lost wake-up can strand a task), until ctx ends.
func (d *dispatcher) loop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		d.pass(ctx)
		select {
		case <-ctx.Done():
			d.mu.Lock()
			d.closed = true
			d.mu.Unlock()
			return
		case <-d.wake:
		case <-t.C:
		}
	}
}

// countLocked adds delta to the queue depth of e's model and priority.
func (d *dispatcher) countLocked(e *entry, delta int) {
	k := depthKey{e.model, e.priority}
	d.depth[k] += delta
	d.m.queueDepth.WithLabelValues(k.model, k.priority).Set(float64(d.depth[k]))
}

// capacity is what predictions need to know of one model's workers.
type capacity struct {
	free, total int
	mean        time.Duration
}

func (c capacity) predict(ahead int) int64 {
	return admission.PredictStart(ahead, c.free, c.total, c.mean)
}

// capacityLocked sums the slots of the healthy workers in ws serving model.
func (d *dispatcher) capacityLocked(model string, ws []scheduler.Worker) capacity {
	var c capacity
	for i := range ws {
		w := &ws[i]
		if w.Model != model || w.State != api.WorkerHealthy {
			continue
		}
		c.total += w.SlotsTotal
		c.free += max(0, w.SlotsTotal-w.SlotsBusy)
	}
	c.mean, _ = d.meter.MeanService(model)
	return c
}

// enqueue admits e to the queue, held until release. It returns e's place
// and predicted start, and the id of a task the queue dropped to make room
// (drop-lru), which the caller must end.
func (d *dispatcher) enqueue(e *entry) (pos int, predicted int64, dropped string, apiErr *api.Error) {
	starved := false
	defer func() {
		if starved && apiErr == nil && d.onStarved != nil {
			d.onStarved()
		}
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.ws = d.reg.snapshot(d.ws[:0], now)
	ahead := d.depth[depthKey{e.model, api.PriorityInteractive}]
	if e.class == queue.Batch {
		ahead += d.depth[depthKey{e.model, api.PriorityBatch}]
	}
	c := d.capacityLocked(e.model, d.ws)
	starved = c.total == 0
	predicted = c.predict(ahead)
	if note, ok := d.starting[e.model]; ok && starved {
		predicted = max(predicted, time.Until(note.eta).Milliseconds())
	} else if cs, ok := d.coldStart[e.model]; ok && starved {
		predicted = max(predicted, cs.Milliseconds())
	}
	if dl := e.req.DeadlineMs; dl > 0 && !admission.DeadlineMet(dl, predicted) {
		return 0, 0, "", api.Errorf(api.CodeDeadlineUnmet, "deadline %d ms cannot be met: predicted start in %d ms", dl, predicted)
	}
	e.held = true
	drop, didDrop, err := d.q.Push(e.id, e.class, e.qkey(), now, e)
	if err != nil {
		qe := api.Errorf(api.CodeQueueFull, "the %s queue is full (%d tasks); retry later", e.priority, d.cfg.QueueCapacity)
		qe.RetryAfterMs = admission.RetryAfter(d.q.Len(), d.meter.DrainRate(now)).Milliseconds()
		return 0, 0, "", qe
	}
	d.countLocked(e, +1)
	if didDrop {
		d.countLocked(drop.V, -1)
		d.log.Warn("queue full: dropped the oldest batch task of the key with the most", "task_id", drop.ID, "key", drop.Key, "for", e.id)
	}
	pos, _ = d.q.Position(e.id, now)
	e.pos, e.predicted = pos, predicted
	return pos, predicted, drop.ID, nil
}

// readmit queues a task restored after a restart, in its old order and
// whatever the capacity: it was admitted before.
func (d *dispatcher) readmit(e *entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.q.Readmit(e.id, e.class, e.qkey(), e.created, e); err == nil {
		d.countLocked(e, +1)
	}
}

// release lets a held entry be dispatched (its task is journaled).
func (d *dispatcher) release(id string) {
	func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if e, ok := d.q.Get(id); ok {
			e.held = false
		}
	}()
	d.kick()
}

// remove takes an entry that was never accepted out of the queue.
func (d *dispatcher) remove(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.q.Remove(id); ok {
		d.countLocked(e, -1)
	}
}

// forget stops a task that ended (cancelled): out of the queue, or its
// attempt stopped and the worker told to cancel the job.
func (d *dispatcher) forget(id, workerID, job string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.q.Remove(id); ok {
		d.countLocked(e, -1)
	}
	if a := d.running[id]; a != nil {
		a.stopLocked(errCancelledByClient)
	}
	if job == "" {
		return
	}
	if c := d.reg.client(workerID); c != nil {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if _, err := c.Cancel(ctx, job); err != nil {
				d.log.Debug("cancel on worker", "task_id", id, "worker_id", workerID, "err", err)
			}
		}()
	}
}

// workerLost abandons the attempts running on a worker that stopped
// answering (or was removed): each fails over as its policy says.
func (d *dispatcher) workerLost(workerID, kind, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range d.running {
		if a.workerID == workerID {
			a.stopLocked(&lostError{kind, reason})
		}
	}
}

// migrateOff moves the tasks running on a drained worker to other workers:
// each attempt whose task another worker could take (healthy, not
// draining, same model file, within its pins) is stopped and continues
// elsewhere from the tokens it sent (or starts there, before its first
// token); the others finish where they are. It returns how many it moved.
func (d *dispatcher) migrateOff(workerID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	d.ws = d.reg.snapshot(d.ws[:0], now)
	digest := d.reg.digest(workerID)
	n := 0
	for _, a := range d.running {
		if a.workerID != workerID {
			continue
		}
		st := a.e.st
		if st.Digest == "" {
			st.Digest = digest
		}
		if d.elsewhereLocked(st, workerID) {
			a.stopLocked(&lostError{lostDrain, "the worker was drained with migrate"})
			n++
		}
	}
	return n
}

// elsewhereLocked reports whether a worker other than not, in d.ws, could
// take a task of st now: healthy, of its model and file (a worker that has
// not reported its file yet counts: it registers before it has hashed the
// file, and the task waits in the queue until it has), within its pins.
func (d *dispatcher) elsewhereLocked(st scheduler.Task, not string) bool {
	for i := range d.ws {
		w := &d.ws[i]
		if w.ID != not && w.Model == st.Model && w.State == api.WorkerHealthy &&
			(st.Digest == "" || w.Digest == st.Digest || w.Digest == "") &&
			(st.PinWorker == "" || st.PinWorker == w.ID) && (st.PinPool == "" || st.PinPool == w.Pool) {
			return true
		}
	}
	return false
}

// pass places as many queued tasks as there are free slots, in queue order.
func (d *dispatcher) pass(ctx context.Context) {
	var starts []start
	if d.routing.Script() != nil {
		starts = d.placeScripted(ctx)
	} else {
		starts = d.place(ctx)
	}
	for _, s := range starts {
		go d.run(ctx, s)
	}
}

// placement is one task the scheduler placed in this pass.
type placement struct {
	e    *entry
	w    string
	expl *api.Explanation
	// predicted is the prompt tokens w is expected to hold; slots its slot
	// count.
	predicted, slots int
}

// placedLocked is the placement of e on the worker d.dec chose among ws.
func (d *dispatcher) placedLocked(e *entry, ws []scheduler.Worker, i int, cached []int, ex *api.Explanation) placement {
	p := placement{e: e, w: ws[i].ID, expl: ex, slots: ws[i].SlotsTotal}
	if i < len(cached) {
		p.predicted = cached[i]
	}
	return p
}

// place runs the built-in policy over the queue: tasks that cannot be
// placed now stay queued; once a task of a model (and pins) finds no
// worker, later ones with the same constraints are skipped in this pass.
func (d *dispatcher) place(ctx context.Context) []start {
	begin := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.q.Len() == 0 || d.closed {
		return nil
	}
	now := time.Now()
	ws, index, free := d.snapshotLocked(now)
	opts := d.optionsLocked()
	blocked := map[string]*api.Explanation{}
	var places []placement
	var placedBy map[string]int // this pass's placements per key with max_running
	d.q.Each(now, func(_ int, _ string, e *entry) bool {
		if e.held || e.notBefore.After(now) {
			return true
		}
		if free == 0 && e.expl != nil && now.Sub(e.expl.At) < explainEvery {
			return true // nothing can start; its explanation is recent
		}
		if d.holdLocked(e, placedBy[e.key], now) {
			return true // its turn passes to the keys behind it
		}
		key := e.st.Model + "\x00" + e.st.PinWorker + "\x00" + e.st.PinPool + "\x00" + e.st.Digest
		if ex, ok := blocked[key]; ok && len(e.failedOn) == 0 {
			d.explainLocked(e, ex)
			return true
		}
		t0 := time.Now()
		opts.Cached = d.cachedLocked(e, ws)
		opts.Room = d.room
		d.scheduleLocked(e, ws, opts)
		ex := explain(&d.dec, e.st, ws, opts.Cached, now)
		e.spent.schedule += time.Since(t0)
		if d.dec.WorkerID == "" {
			d.explainLocked(e, ex)
			if len(e.failedOn) == 0 {
				blocked[key] = ex
			}
			return true
		}
		i := index[d.dec.WorkerID]
		d.fairNoteLocked(e, ex)
		places = append(places, d.placedLocked(e, ws, i, opts.Cached, ex))
		ws[i].SlotsBusy++
		free--
		if e.maxRunning > 0 {
			if placedBy == nil {
				placedBy = map[string]int{}
			}
			placedBy[e.key]++
		}
		return free > 0
	})
	starts := d.startAllLocked(places)
	if n := len(starts); n > 0 {
		per := time.Since(begin) / time.Duration(n)
		for range n {
			d.m.schedule.Observe(per.Seconds())
		}
	}
	return starts
}

// snapshotLocked is the registry as the scheduler sees it, with the index of
// each worker and the free slots of healthy workers.
func (d *dispatcher) snapshotLocked(now time.Time) ([]scheduler.Worker, map[string]int, int) {
	d.ws = d.reg.snapshot(d.ws[:0], now)
	index := make(map[string]int, len(d.ws))
	free := 0
	for i := range d.ws {
		w := &d.ws[i]
		index[w.ID] = i
		if w.State == api.WorkerHealthy {
			free += max(0, w.SlotsTotal-w.SlotsBusy)
		}
	}
	return d.ws, index, free
}

func (d *dispatcher) optionsLocked() scheduler.Options {
	return scheduler.Options{SessionWorker: func(sid string) string { return d.sessions[sid] }, Weights: d.weights()}
}

// scheduleLocked runs the scheduler for e into d.dec, steering it away from
// workers that already failed it when another worker could take it.
// scheduleLocked runs the scheduler for e into d.dec, steering it away from
// workers that already failed it: one of those is chosen again only when no
// other worker could take the task even later (all the others are of
// another model, pinned away, unhealthy or draining — not merely busy).
func (d *dispatcher) scheduleLocked(e *entry, ws []scheduler.Worker, opts scheduler.Options) {
	if len(e.failedOn) > 0 {
		var alt []scheduler.Worker
		altOpts := opts
		altOpts.Cached, altOpts.Room = nil, nil
		for i := range ws {
			if !slices.Contains(e.failedOn, ws[i].ID) {
				alt = append(alt, ws[i])
				if i < len(opts.Cached) {
					altOpts.Cached = append(altOpts.Cached, opts.Cached[i])
				}
				if i < len(opts.Room) {
					altOpts.Room = append(altOpts.Room, opts.Room[i])
				}
			}
		}
		scheduler.ScheduleInto(e.st, alt, altOpts, &d.dec)
		if d.dec.WorkerID != "" {
			d.reindexLocked(alt, ws)
			return
		}
		for _, r := range d.dec.Rejected {
			if r.Reason == scheduler.NoFreeSlot {
				// Another worker will free up: wait for it. The explanation
				// lists the ones this task failed on as rejected.
				for i := range ws {
					if slices.Contains(e.failedOn, ws[i].ID) {
						d.dec.Rejected = append(d.dec.Rejected, scheduler.Rejection{WorkerID: ws[i].ID, Reason: scheduler.FailedBefore})
					}
				}
				return
			}
		}
	}
	scheduler.ScheduleInto(e.st, ws, opts, &d.dec)
}

// maxExplained bounds the rejections kept on a task's explanation.
const maxExplained = 32

// explainEvery is how often a task that cannot start is explained again
// while no worker has a free slot.
const explainEvery = time.Second

// reindexLocked makes d.dec's candidate indexes, made over sub (a subset of
// ws in ws's order), index ws.
func (d *dispatcher) reindexLocked(sub, ws []scheduler.Worker) {
	j := 0
	for k, i := range d.dec.Candidates {
		for ws[j].ID != sub[i].ID {
			j++
		}
		d.dec.Candidates[k] = j
	}
}

func explain(d *scheduler.Decision, st scheduler.Task, ws []scheduler.Worker, cached []int, now time.Time) *api.Explanation {
	e := d.Explanation(st, now)
	e.Candidates = candidates(d, ws, cached)
	if len(e.Rejected) > maxExplained {
		e.Rejected = e.Rejected[:maxExplained]
	}
	if len(ws) == 0 {
		e.Summary = "no workers are registered"
	}
	return &e
}

// explainLocked gives a queued task its latest explanation (once per change).
func (d *dispatcher) explainLocked(e *entry, ex *api.Explanation) {
	if e.expl == ex {
		return
	}
	e.expl = ex
	d.tasks.explain(e.id, ex)
}

// qkey is the task's key in the queue.
func (e *entry) qkey() queue.Key { return queue.Key{Name: e.key, Weight: e.weight} }

// setKey makes e fair-queued for p's key, with its weight and max_running.
func (e *entry) setKey(p principal) {
	e.key, e.weight = p.key, max(p.weight, 1)
	if p.limits != nil {
		e.maxRunning = p.limits.MaxRunning
	}
}

// restoredKey is the key a task restored after a restart is queued for:
// its owner's, looked up again (it may have a new weight or limits now); a
// key that is gone or revoked queues it under the owner hash, weight 1.
func (s *Server) restoredKey(owner string) principal {
	if p, ok := s.auth.byOwner(owner); ok {
		return p
	}
	if owner == "" {
		return principal{}
	}
	return principal{key: "owner-" + owner, weight: 1}
}

// unrunLocked forgets a's running attempt (it ended or failed).
func (d *dispatcher) unrunLocked(a *attempt) {
	if d.running[a.e.id] != a {
		return
	}
	delete(d.running, a.e.id)
	if d.runs[a.e.key]--; d.runs[a.e.key] <= 0 {
		delete(d.runs, a.e.key)
	}
}

// holdLocked reports whether e must wait because its key has max_running
// attempts running (counting placed, the key's placements in this pass),
// and tells the task so (once a second at most).
func (d *dispatcher) holdLocked(e *entry, placed int, now time.Time) bool {
	if e.maxRunning <= 0 {
		return false
	}
	n := d.runs[e.key] + placed
	if n < e.maxRunning {
		return false
	}
	summary := fmt.Sprintf("held: key %s has %d running (max_running %d)", e.key, n, e.maxRunning)
	if e.expl == nil || e.expl.Summary != summary || now.Sub(e.expl.At) >= explainEvery {
		d.explainLocked(e, &api.Explanation{At: now, Summary: summary})
	}
	return true
}

// fairNoteLocked adds the fairness decision to the explanation of e, placed
// now: when a task of another key, of the same model, has waited longer,
// fair queueing served e first.
func (d *dispatcher) fairNoteLocked(e *entry, ex *api.Explanation) {
	w, ok := d.q.Bypassed(e.id)
	if !ok || w.V.model != e.model || (w.V.maxRunning > 0 && d.runs[w.Key] >= w.V.maxRunning) {
		return
	}
	ex.Summary += fmt.Sprintf("; fair share: key %s (weight %d) served before key %s (weight %d), which has %d queued",
		keyName(e.key), max(e.weight, 1), keyName(w.Key), w.Weight, w.Queued)
}

// keyName is a key as explanations show it.
func keyName(k string) string {
	if k == "" {
		return `""`
	}
	return k
}

// start is an attempt ready to run.
type start struct {
	a      *attempt
	client workerAPI
	exec   *api.ExecuteRequest
}

// startAllLocked takes the placed tasks out of the queue and starts their
// attempts: each takes a slot of its worker and moves its task to running.
// A task that ended meanwhile is dropped; a worker that is gone sends its
// task back to its place.
func (d *dispatcher) startAllLocked(places []placement) []start {
	var out []start
	for _, p := range places {
		e := p.e
		if e.maxRunning > 0 && d.runs[e.key] >= e.maxRunning {
			continue // its key reached max_running in this pass (a routing script placed more)
		}
		_, tk, ok := d.q.Take(e.id)
		if !ok {
			continue
		}
		d.countLocked(e, -1)
		client, ok := d.reg.acquire(p.w)
		if !ok {
			if err := d.q.Restore(e.id, tk, e); err == nil {
				d.countLocked(e, +1)
			}
			continue
		}
		exec, job, ok := d.tasks.begin(e.id, p.w, p.expl, e.spent)
		if !ok {
			d.reg.release(p.w)
			continue
		}
		e.ticket, e.expl = tk, p.expl
		if sid := e.st.SessionID; sid != "" {
			if len(d.sessions) > 100_000 {
				clear(d.sessions)
			}
			d.sessions[sid] = p.w
		}
		a := &attempt{e: e, workerID: p.w, job: job, start: time.Now(), resumed: len(exec.ResumeTokens), predicted: p.predicted, slots: p.slots, slot: -1}
		d.running[e.id] = a
		d.runs[e.key]++
		if len(exec.ResumeTokens) > 0 {
			d.log.Info("continuing a task from the tokens already sent", "task_id", e.id, "worker_id", p.w, "tokens", len(exec.ResumeTokens))
		}
		out = append(out, start{a: a, client: client, exec: exec})
	}
	return out
}

// ended records an attempt that ended its task.
func (d *dispatcher) ended(a *attempt, succeeded bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unrunLocked(a)
	if succeeded {
		now := time.Now()
		d.meter.Observe(a.e.model, now.Sub(a.start), now)
	}
}

// failed decides what an attempt that ended without finishing its task
// means. err is why it ended; retry, when set, is a retriable error event
// the worker sent.
func (d *dispatcher) failed(serveCtx context.Context, a *attempt, err error, retry *api.Error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unrunLocked(a)
	e := a.e
	current, tokens := d.tasks.progress(e.id, a.job)
	if !current {
		return // cancelled, or superseded
	}
	if serveCtx.Err() != nil {
		return // shutting down: the journal keeps it running; a restart continues it
	}
	var se *workerclient.StatusError
	var lost *lostError
	status := 0
	if errors.As(err, &se) {
		status = se.Status
	}
	reason, why, kind := "worker_error", errText(err), lostDied
	switch {
	case retry != nil:
		why, kind = retry.Code+": "+retry.Message, lostFailed
	case errors.As(err, &lost):
		reason, why, kind = "worker_lost", lost.reason, lost.kind
	case errors.Is(err, workerclient.ErrIdle):
		reason, kind = "idle", lostHung
	case errors.As(err, new(*errBadStream)):
		reason, kind = "bad_stream", lostFailed
	}
	switch {
	case retry == nil && (status == 400 || status == 413):
		// The request itself is bad for this worker (too long for its context).
		d.m.attemptsFailed.WithLabelValues("rejected").Inc()
		d.tasks.fail(e.id, se.Err)
		return
	case retry == nil && status == 503:
		// Busy, loading or draining: not the worker's failure. Wait and try
		// again, elsewhere if another worker can take it.
		d.m.attemptsFailed.WithLabelValues("busy").Inc()
		wait := min(d.cfg.RetryBackoff<<min(e.busy, 10), 5*time.Second)
		if se.Err != nil && se.Err.RetryAfterMs > 0 {
			wait = max(wait, min(time.Duration(se.Err.RetryAfterMs)*time.Millisecond, 5*time.Second))
		}
		e.busy++
		d.reg.busy(a.workerID, time.Now().Add(wait))
		time.AfterFunc(wait, d.kick)
		d.requeueLocked(e, 0)
		return
	}
	d.m.attemptsFailed.WithLabelValues(reason).Inc()
	switch {
	case reason == "worker_lost":
	case reason == "idle" || (retry == nil && reason == "worker_error" && status == 0):
		// Refused, reset, cut off or silent: no new attempt there until it
		// answers again.
		d.reg.unreachable(a.workerID, why)
	default:
		d.reg.suspect(a.workerID)
	}
	progressed := tokens - a.resumed // tokens this attempt relayed
	d.log.Warn("attempt failed", "task_id", e.id, "worker_id", a.workerID, "reason", reason, "tokens", tokens, "this_attempt", progressed, "err", why)
	if !slices.Contains(e.failedOn, a.workerID) {
		e.failedOn = append(e.failedOn, a.workerID)
	}
	if tokens > 0 && progressed > 0 {
		// Lost mid-stream: a migration. An attempt that relayed nothing (it
		// could not even connect) counts as a failed attempt below instead.
		if e.migrations >= d.cfg.MaxMigrations {
			d.tasks.fail(e.id, api.Errorf(api.CodeWorkerLost, "worker %s was lost after %d tokens (%s); the task was moved %d times already",
				a.workerID, tokens, why, e.migrations))
			return
		}
		if e.st.Digest == "" {
			e.st.Digest = d.reg.digest(a.workerID) // token ids belong to this model file
		}
		if d.cfg.Unavailable == "reject" {
			// Fail fast, as admission does: with no other worker to continue
			// on now, the stream ends rather than wait for one.
			d.ws = d.reg.snapshot(d.ws[:0], time.Now())
			if !d.elsewhereLocked(e.st, a.workerID) {
				d.tasks.fail(e.id, api.Errorf(api.CodeWorkerLost, "worker %s was lost after %d tokens (%s), and no other worker of model %s can continue the task",
					a.workerID, tokens, why, e.model))
				return
			}
		}
		e.migrations++
		d.m.resumes.WithLabelValues("migration").Inc()
		d.m.migrations.WithLabelValues(kind).Inc()
		d.tasks.migrating(e.id, a.workerID, kind)
		d.requeueLocked(e, 0)
		return
	}
	if kind == lostDrain {
		// Drained before its first token here: not the worker's failure.
		d.requeueLocked(e, 0)
		return
	}
	e.failures++
	if e.failures >= d.cfg.MaxAttempts {
		d.tasks.fail(e.id, api.Errorf(api.CodeWorkerLost, "no worker could run the task in %d attempts; last: %s", e.failures, why))
		return
	}
	if tokens > 0 && e.st.Digest == "" {
		e.st.Digest = d.reg.digest(a.workerID) // token ids belong to this model file
	}
	d.requeueLocked(e, d.cfg.RetryBackoff<<(e.failures-1))
}

// requeueLocked puts e back at its place in the queue, after a wait.
func (d *dispatcher) requeueLocked(e *entry, after time.Duration) {
	d.tasks.requeued(e.id)
	back := func() {
		if d.closed || !d.tasks.active(e.id) {
			return
		}
		if err := d.q.Restore(e.id, e.ticket, e); err == nil {
			d.countLocked(e, +1)
		}
	}
	if after <= 0 {
		back()
		d.kick()
		return
	}
	time.AfterFunc(after, func() {
		d.mu.Lock()
		back()
		d.mu.Unlock()
		d.kick()
	})
}

// queuedLoop refreshes queue positions and predictions of waiting tasks, so
// their streams get fresh queued events.
// setStarting records (note.step != "") or clears the fleet's start for
// model; waiting tasks hear of it at the next refresh.
func (d *dispatcher) setStarting(model string, note startNote) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if note.step == "" {
		delete(d.starting, model)
		return
	}
	if d.starting == nil {
		d.starting = map[string]startNote{}
	}
	d.starting[model] = note
}

// failQueued ends the queued tasks of a model with e (a declared model that
// fits on no pool). Tasks with an attempt running are left alone.
func (d *dispatcher) failQueued(model string, e *api.Error) {
	var ids []string
	func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.q.Each(time.Now(), func(_ int, id string, en *entry) bool {
			if en.model == model && !en.held {
				ids = append(ids, id)
			}
			return true
		})
		for _, id := range ids {
			if en, ok := d.q.Remove(id); ok {
				d.countLocked(en, -1)
			}
		}
	}()
	for _, id := range ids {
		d.tasks.fail(id, e)
	}
}

// setColdStart records a model's measured start time.
func (d *dispatcher) setColdStart(model string, took time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.coldStart == nil {
		d.coldStart = map[string]time.Duration{}
	}
	d.coldStart[model] = took
}

// demand returns the queued tasks per model.
func (d *dispatcher) demand() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for k, n := range d.depth {
		if n > 0 {
			out[k.model] += n
		}
	}
	return out
}

func (d *dispatcher) queuedLoop(ctx context.Context) {
	tick(ctx, d.cfg.QueuedInterval, nil, func() { d.refresh(time.Now()) })
}

func (d *dispatcher) refresh(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.q.Len() == 0 {
		return
	}
	d.ws = d.reg.snapshot(d.ws[:0], now)
	perModel := map[string]int{}
	caps := map[string]capacity{} // once per model, not once per task
	d.q.Each(now, func(pos int, _ string, e *entry) bool {
		ahead := perModel[e.model]
		perModel[e.model]++
		c, ok := caps[e.model]
		if !ok {
			c = d.capacityLocked(e.model, d.ws)
			caps[e.model] = c
		}
		pred := c.predict(ahead)
		note, starting := d.starting[e.model]
		if starting && c.free == 0 {
			pred = max(pred, time.Until(note.eta).Milliseconds())
		} else {
			note = startNote{}
		}
		if pos != e.pos || pred != e.predicted || note != e.note {
			e.pos, e.predicted, e.note = pos, pred, note
			q := api.Queued{Position: pos, PredictedStartMs: pred}
			if note.step != "" {
				q.Reason, q.Pool, q.Step, q.Progress = "starting", note.pool, note.step, note.progress
			}
			d.tasks.queued(e.id, q)
		}
		return true
	})
}

func errText(err error) string {
	var se *workerclient.StatusError
	if errors.As(err, &se) && se.Err != nil {
		return strings.TrimSpace(se.Err.Message)
	}
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// schedulerTask is the scheduler's view of a request.
func schedulerTask(req *api.TaskRequest) scheduler.Task {
	st := scheduler.Task{Model: req.Model, SessionID: req.SessionID}
	if p := req.Placement; p != nil {
		st.PinWorker, st.PinPool = p.PinWorker, p.PinPool
	}
	return st
}

// tick calls fn every interval, and whenever kick fires (nil: never), until
// ctx ends.
func tick(ctx context.Context, every time.Duration, kick <-chan struct{}, fn func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		fn()
	}
}
