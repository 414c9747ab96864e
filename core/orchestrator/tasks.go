package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/queue"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/workerclient"
)

// tasks is the part that owns every task: the table, each task's event log
// and its subscribers, and the journal (journal.go). Its lock is a leaf: no
// method calls another part while holding it.
//
// An event reaches clients in three steps: it is appended to the task's log
// (under the lock), written to the tail log by the tail writer (one write
// for whatever accumulated, no lock held), then made visible and the task's
// subscribers woken. So every event a client has seen survives a crash of
// the process, and a client resuming with Last-Event-ID after a restart
// sees neither a gap nor a repeat.
type tasks struct {
	cfg *Config
	log *slog.Logger
	st  *store.Orchestrator
	m   *metrics

	mu    sync.Mutex
	table map[string]*task
	dirty map[string]*task // tasks with unjournaled changes

	tailMu      sync.Mutex
	tailPending []tailItem
	tailKick    chan struct{}
	tailIdle    *sync.Cond // tailBusy went false (guarded by tailMu)
	tailBusy    bool

	journalMu sync.Mutex // one journal batch at a time

	// acc counts what happens over the stats interval and seq moves when a
	// task is created or changes status (stats.go). Guarded by mu.
	acc *statsAcc
	seq uint64

	// trace, when set, gets a record of every task that ends (trace.go).
	trace *tracer
	// usage, when set, counts each task once it has ended (usage.go).
	usage *usage
}

// task is one admitted task. Guarded by tasks.mu.
type task struct {
	id          string
	owner       string
	model       string
	priority    string
	class       queue.Class
	async       bool
	seed        uint32
	correlation string
	req         *api.TaskRequest // nil once the task ended (the prompt is not kept)
	status      string

	created, started, finished, firstToken time.Time

	// Where the task's time went (timing.go). arrived is when its request
	// reached submit (before the routing script's admit stage); door the
	// API it came by (trace.go); spent its time in the scheduler and the
	// routing script; sent when the current attempt's request went to its
	// worker; workerTTFT from then to that worker's first token
	// (workerFirst: it came).
	arrived     time.Time
	door        string
	spent       spent
	sent        time.Time
	workerTTFT  time.Duration
	workerFirst bool
	// promptTokens and cachedTokens are what the last started event said.
	promptTokens, cachedTokens int

	workerID string
	jobID    string // the running attempt; events of other jobs are dropped
	attempts int
	expl     *api.Explanation

	// The event log: ids are 1-based positions. Subscribers see
	// log[:visible]; the tail writer moves visible forward.
	log       []logEvent
	visible   int
	persisted int
	changed   chan struct{} // closed and replaced whenever subscribers have news
	evicted   bool          // finished, and its events are only in the store
	recorded  bool          // the tail log (or the journal) has the task itself

	text      strings.Builder
	tokensOut int
	tokenIDs  []int32 // the id of every token sent, to resume from
	// maxTokens is the request's max_tokens as the worker resolved it (0
	// until known): a task continued at that count has ended.
	maxTokens int
	// noResume is why the task cannot be continued from its tokens (a
	// journal written before token ids were recorded), "" when it can.
	noResume string
	// moving is the migration under way (from, reason): the next attempt's
	// started event becomes the client's migrated event.
	moving *api.Migrated
	end    *api.End
	err    *api.Error

	queued api.Queued

	limit *keyUse // its key's limits (limits.go); nil: none
	// sess is the session it counts against (sessions.go), nil when none;
	// admitBudget what that session had left when the task was admitted.
	sess        *session
	admitBudget *api.Budget

	// key is its key's name, for usage (usage.go); inflight that key's
	// tokens in flight, nil once the journal has counted the task
	// (usageCounted).
	key          string
	inflight     *atomic.Int64
	usageCounted bool
}

// spend counts n of t's tokens (prompt or generated) as they happen, under
// the tasks lock: its key's token bucket (limits.go), its session's budget
// (sessions.go) and its key's tokens in flight for the period budgets
// (usage.go). Each is an atomic add on the part's own state.
func (t *task) spend(n int) {
	t.limit.spend(n)
	t.sess.spend(n)
	t.spendInFlight(n)
}

// logEvent is one event of a task's log, decoded once and encoded once.
type logEvent struct {
	seq  uint64
	ev   api.Event
	data []byte
}

// tailItem is an event waiting for the tail writer.
type tailItem struct {
	t    *task
	rec  store.TailRecord
	seq  uint64
	show bool // make it visible once written
}

func newTasks(cfg *Config, log *slog.Logger, st *store.Orchestrator, m *metrics) *tasks {
	ts := &tasks{cfg: cfg, log: log.With("part", "tasks"), st: st, m: m,
		table: map[string]*task{}, dirty: map[string]*task{},
		tailKick: make(chan struct{}, 1), acc: newStatsAcc()}
	ts.tailIdle = sync.NewCond(&ts.tailMu)
	return ts
}

func (t *task) terminal() bool {
	return t.status == api.TaskSucceeded || t.status == api.TaskFailed || t.status == api.TaskCancelled
}

func (t *task) notify() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// newTask builds a queued task from an admitted request.
func newTask(id string, req *api.TaskRequest, async bool, p principal, correlation string, now time.Time) *task {
	prio := req.PriorityOrDefault()
	class, _ := queue.ParseClass(prio)
	t := &task{
		id: id, owner: p.owner, key: p.key, model: req.Model, priority: prio, class: class, async: async, seed: uint32(*req.Seed),
		correlation: correlation, req: req, status: api.TaskQueued, created: now, changed: make(chan struct{}),
		arrived: now, door: doorTasks,
	}
	if req.MaxTokens != nil {
		t.maxTokens = *req.MaxTokens
	}
	return t
}

// add puts a new task in the table and its creation record in the tail log.
//
// The task record is written to the tail log at once, before the task is in
// the table (so before any of its events can be): its id can be given to a
// client as soon as add returns.
func (ts *tasks) add(t *task) {
	rec := ts.record(t) // t is not shared yet
	if err := ts.st.Tail().Append([]store.TailRecord{{Task: &rec}}); err != nil {
		ts.m.journalErrors.WithLabelValues("tail").Inc()
		ts.log.Error("tail log write failed", "task_id", t.id, "err", err)
	}
	t.recorded = true
	t.limit.kept()
	if ts.usage != nil {
		t.inflight = ts.usage.counter(t.key)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.table[t.id] = t
	ts.dirty[t.id] = t
	ts.seq++
}

// discard forgets a task that was never accepted (its journal write failed).
func (ts *tasks) discard(id string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.table[id]; t != nil {
		t.limit.done()
	}
	delete(ts.table, id)
	delete(ts.dirty, id)
	ts.seq++
}

// get returns a task p may see, nil when there is none (or it is another
// key's: the two are not told apart).
func (ts *tasks) get(id string, p principal) *task {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.table[id]
	if t == nil || !p.canSee(t.owner) {
		return nil
	}
	return t
}

// status is a task's status as GET /v2/tasks/{id} shows it.
func (ts *tasks) status(t *task) api.TaskStatus {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.statusLocked(t, true)
}

func (ts *tasks) statusLocked(t *task, withText bool) api.TaskStatus {
	st := api.TaskStatus{
		TaskID: t.id, Model: t.model, Priority: t.priority, Status: t.status, WorkerID: t.workerID,
		Attempts: t.attempts, CreatedAt: t.created, Explanation: t.expl, TokensOut: t.tokensOut, End: t.end, Error: t.err,
	}
	if t.status == api.TaskQueued {
		st.QueuePosition = t.queued.Position
	}
	if !t.started.IsZero() {
		st.StartedAt = &t.started
	}
	if !t.finished.IsZero() {
		st.FinishedAt = &t.finished
	}
	if withText && t.terminal() {
		st.Text = t.text.String()
	}
	return st
}

// taskFilter is what GET /v2/tasks asks for: the newest limit tasks with
// the status, model and worker given ("" matches any).
type taskFilter struct {
	status, model, worker string
	limit                 int
}

// list returns the newest tasks p may see that pass f, oldest first.
func (ts *tasks) list(p principal, f taskFilter) []api.TaskStatus {
	type hit struct {
		t       *task
		created time.Time
	}
	var hits []hit
	ts.mu.Lock()
	for _, t := range ts.table {
		if (f.status == "" || t.status == f.status) && (f.model == "" || t.model == f.model) &&
			(f.worker == "" || t.workerID == f.worker) && p.canSee(t.owner) {
			hits = append(hits, hit{t, t.created})
		}
	}
	// Only the newest limit are rendered (under the lock: a status reads
	// the task).
	slices.SortFunc(hits, func(a, b hit) int { return a.created.Compare(b.created) })
	hits = hits[max(0, len(hits)-f.limit):]
	out := make([]api.TaskStatus, len(hits))
	for i, h := range hits {
		out[i] = ts.statusLocked(h.t, false)
	}
	ts.mu.Unlock()
	return out
}

// record is a task as the journal keeps it.
func (ts *tasks) record(t *task) store.TaskRecord {
	r := store.TaskRecord{
		ID: t.id, Request: t.req, Model: t.model, Priority: t.priority, Status: t.status, Owner: t.owner,
		Correlation: t.correlation, Async: t.async, Seed: t.seed, CreatedAt: t.created, StartedAt: t.started,
		FinishedAt: t.finished, WorkerID: t.workerID, Attempts: t.attempts, TokensOut: t.tokensOut, End: t.end,
		Error: t.err, Explanation: t.expl, Key: t.key, PromptTokens: t.promptTokens, CachedTokens: t.cachedTokens,
		UsageCounted: t.usageCounted,
	}
	if t.terminal() {
		r.Text = t.text.String()
	}
	return r
}

// appendLocked adds an event to t's log; the tail writer makes it visible.
func (ts *tasks) appendLocked(t *task, ev api.Event) {
	var data []byte
	if ev.Token != nil { // the hot path: no reflection for a plain token
		data = api.AppendToken(make([]byte, 0, 32+len(ev.Token.T)), ev.Token)
	} else {
		var err error
		if data, err = json.Marshal(ev.Payload()); err != nil { // cannot happen for the api types
			data = []byte("{}")
		}
	}
	seq := uint64(len(t.log) + 1)
	t.log = append(t.log, logEvent{seq: seq, ev: ev, data: data})
	ts.dirty[t.id] = t
	ts.tailLocked(tailItem{t: t, seq: seq, show: true, rec: store.TailRecord{TaskID: t.id, Event: store.Event{Seq: seq, Name: ev.Name, Data: data}}})
}

// tailLocked queues an item for the tail writer.
func (ts *tasks) tailLocked(it tailItem) {
	ts.tailMu.Lock()
	ts.tailPending = append(ts.tailPending, it)
	ts.tailMu.Unlock()
	select {
	case ts.tailKick <- struct{}{}:
	default:
	}
}

// writeTail writes what is pending to the tail log and makes the events
// visible. A failed write is logged and counted; the events are shown all
// the same (the journal's next batch still has them).
func (ts *tasks) writeTail() {
	ts.tailMu.Lock()
	for ts.tailBusy {
		ts.tailIdle.Wait()
	}
	items := ts.tailPending
	ts.tailPending = nil
	ts.tailBusy = len(items) > 0
	ts.tailMu.Unlock()
	if len(items) == 0 {
		return
	}
	defer func() {
		ts.tailMu.Lock()
		ts.tailBusy = false
		ts.tailIdle.Broadcast()
		ts.tailMu.Unlock()
	}()
	recs := make([]store.TailRecord, len(items))
	for i := range items {
		recs[i] = items[i].rec
	}
	if err := ts.st.Tail().Append(recs); err != nil {
		ts.m.journalErrors.WithLabelValues("tail").Inc()
		ts.log.Error("tail log write failed", "err", err)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var woken []*task
	for _, it := range items {
		t := it.t
		if !it.show || it.seq <= uint64(t.visible) || it.seq > uint64(len(t.log)) {
			continue
		}
		t.visible = int(it.seq)
		if len(woken) == 0 || woken[len(woken)-1] != t {
			woken = append(woken, t)
		}
	}
	for _, t := range woken {
		t.notify()
	}
}

// waitRecorded waits until the tail log holds a new task, so that its id can
// be given to a client: after a crash it is found again.
func (ts *tasks) waitRecorded(ctx context.Context, t *task) error {
	for {
		ts.mu.Lock()
		ok, ch := t.recorded, t.changed
		ts.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// finishLocked ends a task with exactly one terminal event.
func (ts *tasks) finishLocked(t *task, status string, end *api.End, apiErr *api.Error) {
	if t.terminal() {
		return
	}
	now := time.Now()
	tm := t.timingLocked(now)
	if end != nil {
		end.Timing = tm
	} else {
		e := *apiErr // the caller's may be shared
		e.Timing = tm
		apiErr = &e
	}
	t.sess.endLocked(t, now, end, apiErr) // the session counts the turn; the terminal event gets its budget (sessions.go)
	t.status, t.finished, t.end, t.err = status, now, end, apiErr
	if ts.trace != nil {
		ts.trace.add(ts.trace.recordOf(t))
	}
	if end != nil {
		ts.appendLocked(t, api.Event{Name: api.EventEnd, End: end})
	} else {
		ts.appendLocked(t, api.Event{Name: api.EventError, Error: apiErr})
	}
	t.req = nil
	t.jobID = ""
	t.limit.done()
	outcome := status
	if apiErr != nil && apiErr.Code == api.CodeQueueFullDropped {
		outcome = "dropped"
	}
	ts.m.tasks.WithLabelValues(outcome, t.priority).Inc()
	ts.countEndLocked(status)
	code := ""
	if apiErr != nil {
		code = apiErr.Code
	}
	ts.log.Debug("task finished", "task_id", t.id, "status", status, "code", code, "tokens_out", t.tokensOut, "correlation_id", t.correlation)
	// The journal's next batch (within JournalInterval) takes the end; the
	// tail log already holds it. No batch (one fsync) per finished task.
}

// fail ends a task with an error unless it has ended already.
func (ts *tasks) fail(id string, e *api.Error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.table[id]; t != nil {
		ts.finishLocked(t, api.TaskFailed, nil, e)
	}
}

// cancel ends a task as cancelled. It reports whether the task exists (for
// p), and the worker and job of its running attempt, if any.
func (ts *tasks) cancel(id, why string, p principal) (found bool, workerID, job string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.table[id]
	if t == nil || !p.canSee(t.owner) {
		return false, "", ""
	}
	if t.terminal() {
		return true, "", ""
	}
	workerID, job = t.workerID, t.jobID
	ts.finishLocked(t, api.TaskCancelled, nil, &api.Error{Code: api.CodeCancelled, Message: why})
	return true, workerID, job
}

// output returns the text of a task that ended well, and whether it did.
func (ts *tasks) output(id string) (string, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.table[id]
	if t == nil || t.status != api.TaskSucceeded {
		return "", false
	}
	return t.text.String(), true
}

// active reports whether a task exists and has not ended.
func (ts *tasks) active(id string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.table[id]
	return t != nil && !t.terminal()
}

// explain records a scheduling explanation on a queued task.
func (ts *tasks) explain(id string, e *api.Explanation) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.table[id]; t != nil && !t.terminal() {
		t.expl = e
	}
}

// queued records a waiting task's position and predicted start; its streams
// get a fresh queued event.
func (ts *tasks) queued(id string, q api.Queued) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.table[id]; t != nil && !t.terminal() && t.queued != q {
		t.queued = q
		t.notify()
	}
}

// begin starts an attempt of a task on a worker. It returns the request to
// send (with the tokens already sent, to continue from) and the attempt's
// job id, or false when the task ended meanwhile or cannot be continued.
//
// spent is the task's time so far in the scheduler and the routing script.
func (ts *tasks) begin(id, workerID string, expl *api.Explanation, spent spent) (*api.ExecuteRequest, string, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.table[id]
	if t == nil || t.terminal() || t.req == nil {
		return nil, "", false
	}
	if t.tokensOut > 0 && t.maxTokens > 0 && t.tokensOut >= t.maxTokens {
		// The worker was lost after the last token but before its end event.
		ts.finishLocked(t, api.TaskSucceeded, &api.End{TokensOut: t.tokensOut, StopReason: api.StopMaxTokens}, nil)
		return nil, "", false
	}
	if t.tokensOut > 0 && t.noResume != "" {
		ts.finishLocked(t, api.TaskFailed, nil, api.Errorf(api.CodeWorkerLost, "the task cannot be continued: %s", t.noResume))
		return nil, "", false
	}
	now := time.Now()
	t.attempts++
	job := fmt.Sprintf("%s-%d", t.id, t.attempts)
	t.status, t.workerID, t.jobID = api.TaskRunning, workerID, job
	t.limit.running()
	t.spent, t.sent, t.workerTTFT, t.workerFirst = spent, now, 0, false
	if t.started.IsZero() {
		t.started = now
	}
	if expl != nil {
		t.expl = expl
	}
	ts.dirty[t.id] = t
	ts.seq++
	t.notify()
	exec := t.req.ExecuteRequest
	exec.JobID = job
	exec.SessionID = t.sess.workerKey() // the worker remembers the session's slot (sessions.go)
	if t.tokensOut > 0 {
		exec.ResumeTokens = slices.Clone(t.tokenIDs)
	}
	return &exec, job, true
}

// sending records that the attempt job's request goes to its worker now.
func (ts *tasks) sending(id, job string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.table[id]; t != nil && t.jobID == job {
		t.sent = time.Now()
	}
}

// requeued marks a task whose attempt failed as queued again.
func (ts *tasks) requeued(id string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.table[id]; t != nil && !t.terminal() {
		t.status, t.jobID = api.TaskQueued, ""
		t.limit.waiting()
		ts.dirty[t.id] = t
		ts.seq++
		t.notify()
	}
}

// migrating records that a task lost its worker mid-stream and will
// continue elsewhere, for its migrated event.
func (ts *tasks) migrating(id, from, reason string) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t := ts.table[id]; t != nil && !t.terminal() {
		t.moving = &api.Migrated{From: from, Reason: reason}
	}
}

// errBadStream is a worker's stream that breaks the contract.
type errBadStream struct{ msg string }

func (e *errBadStream) Error() string { return "the worker's stream is invalid: " + e.msg }

// relay moves one event of an attempt into its task's log. It reports
// whether the attempt is over for the task (it ended, or the attempt is no
// longer the task's); an error is a stream that breaks the contract, which
// fails the attempt. A retriable error event from the worker is returned as
// retry, for the dispatcher to try again.
func (ts *tasks) relay(id, job string, ev api.Event) (done bool, retry *api.Error, err error) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.table[id]
	if t == nil || t.terminal() || t.jobID != job {
		return true, nil, nil
	}
	switch {
	case ev.Started != nil:
		if t.moving != nil {
			// The client has this task's started event: it hears of the move.
			m := *t.moving
			m.To, m.AtToken, t.moving = t.workerID, t.tokensOut, nil
			ts.appendLocked(t, api.Event{Name: api.EventMigrated, Migrated: &m})
			return false, nil, nil
		}
		for _, le := range t.log {
			if le.ev.Started != nil {
				return false, nil, nil // resumed after a restart: the client has this task's started event
			}
		}
		s := *ev.Started
		t.promptTokens, t.cachedTokens = s.PromptTokens, s.CachedTokens
		t.spend(s.PromptTokens)
		if s.MaxTokens > 0 {
			t.maxTokens = s.MaxTokens
		}
		s.WorkerID = workerclient.Sanitize(s.WorkerID, api.MaxIDLength)
		s.Model = workerclient.Sanitize(s.Model, api.MaxModelLength)
		s.JobID = job
		ts.appendLocked(t, api.Event{Name: api.EventStarted, Started: &s})
	case ev.Token != nil:
		if ev.Token.I != t.tokensOut {
			return true, nil, &errBadStream{fmt.Sprintf("token %d where %d was due", ev.Token.I, t.tokensOut)}
		}
		if !t.workerFirst {
			now := time.Now()
			t.workerFirst, t.workerTTFT = true, now.Sub(t.sent)
			if t.firstToken.IsZero() {
				t.firstToken = now
				ts.m.ttft.Observe(now.Sub(t.created).Seconds())
				ts.countFirstLocked(now.Sub(t.created))
			}
		}
		tok := *ev.Token
		t.tokensOut++
		t.tokenIDs = append(t.tokenIDs, tok.ID)
		t.text.WriteString(tok.T)
		ts.m.tokensOut.Inc()
		ts.countTokenLocked(t)
		t.spend(1)
		ts.appendLocked(t, api.Event{Name: api.EventToken, Token: &tok})
	case ev.End != nil:
		end := *ev.End
		end.TokensOut = t.tokensOut
		if !slices.Contains(t.req.Stop, end.StopSequenceMatched) {
			end.StopSequenceMatched = ""
		}
		end.StopReason = workerclient.Sanitize(end.StopReason, 32)
		ts.finishLocked(t, api.TaskSucceeded, &end, nil)
	case ev.Error != nil:
		e := api.Error{Code: workerclient.Sanitize(ev.Error.Code, 64), Message: workerclient.Sanitize(ev.Error.Message, 300),
			Retriable: ev.Error.Retriable}
		if e.Retriable && e.Code != api.CodeCancelled {
			return true, &e, nil
		}
		ts.finishLocked(t, api.TaskFailed, nil, &e)
	default:
		return false, nil, nil // metrics and unknown events are not relayed
	}
	return t.terminal(), nil, nil
}

// progress is what the dispatcher needs to decide about a failed attempt.
func (ts *tasks) progress(id, job string) (current bool, tokens int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.table[id]
	if t == nil || t.terminal() || t.jobID != job {
		return false, 0
	}
	return true, t.tokensOut
}
