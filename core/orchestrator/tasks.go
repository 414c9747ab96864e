package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/admission"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/queue"
	"github.com/llorch/llorch/core/routing"
	"github.com/llorch/llorch/core/scheduler"
	"github.com/llorch/llorch/core/sse"
	"github.com/llorch/llorch/core/store"
)

// task is one admitted task. Guarded by Server.mu.
type task struct {
	id          string
	req         *api.TaskRequest // nil once the task ended (the prompt is not kept)
	model       string
	priority    string
	class       queue.Class
	async       bool
	seed        uint32
	status      string
	correlation string

	created, started, finished, firstToken time.Time

	workerID string
	attempts int
	failedOn []string // workers whose attempt failed before the first token
	expl     *api.Explanation

	// The event log: ids are 1-based positions. Subscribers see log[:visible].
	log       []store.Event
	visible   int
	persisted int
	changed   chan struct{} // closed and replaced whenever subscribers have news

	text      strings.Builder
	tokensOut int
	end       *api.End
	err       *api.Error

	// The running attempt.
	cancelAttempt context.CancelFunc
	jobID         string
	attemptTokens int

	// Resuming after a restart: the first len(resumeText) tokens were already
	// streamed; the rerun (same seed) must reproduce them and is not relayed
	// until it passes them.
	evicted    bool // finished, and its events are only in the store
	resumed    bool
	resumeText []string

	queuedPos       int
	queuedPredicted int64

	// For routing scripts.
	keyFP       string
	headers     map[string]string
	routingNote string    // what the admit stage decided
	notBefore   time.Time // a place decision said "wait" until then
}

func (t *task) terminal() bool {
	return t.status == api.TaskSucceeded || t.status == api.TaskFailed || t.status == api.TaskCancelled
}

func (t *task) notify() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// appendEvent adds an event to the task's log; publish makes it visible to
// subscribers at once. Called with s.mu held.
func (s *Server) appendEvent(t *task, name string, data []byte, publish bool) {
	t.log = append(t.log, store.Event{Seq: uint64(len(t.log) + 1), Name: name, Data: data})
	if publish {
		t.visible = len(t.log)
		t.notify()
	}
	s.markDirty(t)
}

func (s *Server) markDirty(t *task) { s.dirty[t.id] = t }

// countQueued adds delta to the queue depth of t's model and priority and
// its gauge. Called with s.mu held.
func (s *Server) countQueued(t *task, delta int) {
	k := depthKey{t.model, t.priority}
	s.depth[k] += delta
	s.metrics.queueDepth.WithLabelValues(k.model, k.priority).Set(float64(s.depth[k]))
}

func (s *Server) record(t *task) store.TaskRecord {
	r := store.TaskRecord{
		ID: t.id, Request: t.req, Model: t.model, Priority: t.priority, Status: t.status, Async: t.async,
		Seed: t.seed, CreatedAt: t.created, StartedAt: t.started, FinishedAt: t.finished, WorkerID: t.workerID,
		Attempts: t.attempts, TokensOut: t.tokensOut, End: t.end, Error: t.err, Explanation: t.expl,
	}
	if t.terminal() {
		r.Text = t.text.String()
	}
	return r
}

func (s *Server) status(t *task) api.TaskStatus {
	st := api.TaskStatus{
		TaskID: t.id, Model: t.model, Priority: t.priority, Status: t.status, WorkerID: t.workerID,
		Attempts: t.attempts, CreatedAt: t.created, Explanation: t.expl, TokensOut: t.tokensOut, End: t.end, Error: t.err,
	}
	if t.status == api.TaskQueued {
		st.QueuePosition = t.queuedPos
	}
	if !t.started.IsZero() {
		st.StartedAt = &t.started
	}
	if !t.finished.IsZero() {
		st.FinishedAt = &t.finished
	}
	if t.terminal() {
		st.Text = t.text.String()
	}
	return st
}

// decodeTask parses and validates a POST /v2/tasks body.
func decodeTask(body []byte) (*api.TaskRequest, *api.Error) {
	var req api.TaskRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &api.Error{Code: api.CodeInvalidRequest, Message: "body is not a valid task: " + err.Error()}
	}
	if e := req.Validate(); e != nil {
		return nil, e
	}
	return &req, nil
}

func wantsStream(c echo.Context) bool {
	return strings.Contains(c.Request().Header.Get("Accept"), "text/event-stream")
}

func (s *Server) handleSubmit(c echo.Context) error {
	reject := func(e *api.Error) error {
		s.metrics.rejections.WithLabelValues(strings.ToLower(e.Code)).Inc()
		return writeError(c, e)
	}
	body, e := readBody(c)
	if e != nil {
		return reject(e)
	}
	req, e := decodeTask(body)
	if e != nil {
		return reject(e)
	}
	stream := wantsStream(c)
	t, acc, e := s.Submit(c.Request().Context(), req, !stream)
	if e != nil {
		return reject(e)
	}
	if !stream {
		return c.JSON(http.StatusAccepted, acc)
	}
	return s.stream(c, t, 0, true)
}

// Submit admits a task: checks that some worker can serve it, asks the
// routing script (if any), predicts its start, queues it and journals it
// (synchronously when async, since the caller answers 202 next). ctx carries
// the request's metadata (correlation id, API key fingerprint, headers).
func (s *Server) Submit(ctx context.Context, req *api.TaskRequest, async bool) (*task, api.TaskAccepted, *api.Error) {
	meta := metaOf(ctx)
	id := newID("t-")
	s.mu.Lock()
	if e := s.admitLocked(req); e != nil {
		s.mu.Unlock()
		return nil, api.TaskAccepted{}, e
	}
	var in routing.AdmitInput
	scripted := s.routing.Script() != nil
	if scripted {
		in = routing.AdmitInput{Task: s.routingTask(id, req, req.PriorityOrDefault(), meta.keyFP, s.whitelisted(meta.header)), Queue: s.queueDepths(), Now: time.Now()}
	}
	s.mu.Unlock()
	var note string
	if scripted {
		d, res := s.routing.Admit(ctx, in)
		note = res.Note
		switch d.Action {
		case routing.ActionReject:
			return nil, api.TaskAccepted{}, &api.Error{Code: d.Code, Message: d.Message, Status: d.Status, Retriable: d.Status == http.StatusTooManyRequests}
		case routing.ActionAdmit:
			if d.Priority != "" {
				req.Priority = d.Priority
			}
		}
	}

	now := time.Now()
	prio := req.PriorityOrDefault()
	class, _ := queue.ParseClass(prio)
	t := &task{
		id: id, req: req, model: req.Model, priority: prio, class: class, async: async,
		status: api.TaskQueued, created: now, changed: make(chan struct{}), correlation: meta.correlation,
		keyFP: meta.keyFP, headers: s.whitelisted(meta.header), routingNote: note,
	}
	if req.Seed != nil {
		t.seed = uint32(*req.Seed)
	} else {
		t.seed = rand.Uint32()
		seed := int64(t.seed)
		req.Seed = &seed // retries and resumes reproduce the same tokens
	}

	s.mu.Lock()
	if scripted { // the registry may have changed while the script ran
		if e := s.admitLocked(req); e != nil {
			s.mu.Unlock()
			return nil, api.TaskAccepted{}, e
		}
	}
	ahead := s.depth[depthKey{t.model, api.PriorityInteractive}]
	if class == queue.Batch {
		ahead += s.depth[depthKey{t.model, api.PriorityBatch}]
	}
	predicted := s.predictLocked(t.model, ahead)
	if req.DeadlineMs > 0 && !admission.DeadlineMet(req.DeadlineMs, predicted) {
		s.mu.Unlock()
		return nil, api.TaskAccepted{}, &api.Error{Code: api.CodeDeadlineUnmet,
			Message: fmt.Sprintf("deadline %d ms cannot be met: predicted start in %d ms", req.DeadlineMs, predicted)}
	}
	droppedID, dropped, didDrop, err := s.q.Push(t.id, class, now, t)
	if err != nil {
		retry := admission.RetryAfter(s.q.Len(), s.meter.DrainRate(now))
		s.mu.Unlock()
		return nil, api.TaskAccepted{}, &api.Error{Code: api.CodeQueueFull, Retriable: true, RetryAfterMs: retry.Milliseconds(),
			Message: fmt.Sprintf("the %s queue is full (%d tasks); retry later", prio, s.cfg.QueueCapacity)}
	}
	s.countQueued(t, +1)
	if didDrop {
		s.countQueued(dropped, -1)
		s.log.Warn("queue full: dropped the oldest batch task", "task_id", droppedID, "for", t.id)
		s.finishLocked(dropped, api.TaskFailed, nil, &api.Error{Code: api.CodeQueueFullDropped, Retriable: true,
			Message: "dropped from a full queue to admit a newer task"})
	}
	s.tasks[t.id] = t
	t.queuedPos, _ = s.q.Position(t.id, now)
	t.queuedPredicted = predicted
	if note != "" {
		t.expl = &api.Explanation{At: now, Summary: "queued", Routing: note}
	}
	s.markDirty(t)
	acc := api.TaskAccepted{TaskID: t.id, Status: api.TaskQueued, QueuePosition: t.queuedPos,
		PredictedStartMs: predicted, EventsURL: "/v2/tasks/" + t.id + "/events"}
	s.mu.Unlock()

	if async {
		// The journal holds the task before the client hears 202.
		if err := s.flushJournal(); err != nil {
			s.mu.Lock()
			if _, ok := s.q.Remove(t.id); ok {
				s.countQueued(t, -1)
			}
			delete(s.tasks, t.id)
			delete(s.dirty, t.id)
			s.mu.Unlock()
			s.log.Error("journal write failed", "task_id", t.id, "err", err)
			return nil, api.TaskAccepted{}, &api.Error{Code: api.CodeInternal, Message: "cannot journal the task", Retriable: true}
		}
	}
	s.log.Debug("task admitted", "task_id", t.id, "model", t.model, "priority", prio, "async", async, "correlation_id", t.correlation)
	s.signal()
	return t, acc, nil
}

// admitLocked checks that the task can ever run. Called with s.mu held.
func (s *Server) admitLocked(req *api.TaskRequest) *api.Error {
	var pinW, pinP string
	if p := req.Placement; p != nil {
		pinW, pinP = p.PinWorker, p.PinPool
	}
	if pinW != "" {
		w, ok := s.workers[pinW]
		if !ok {
			return &api.Error{Code: api.CodeWorkerNotFound, Message: fmt.Sprintf("placement.pin_worker: no worker %q is registered", pinW)}
		}
		if w.rec.Model.ID != req.Model {
			return &api.Error{Code: api.CodeInvalidRequest, Message: "invalid request", Fields: []api.FieldError{{
				Field: "placement.pin_worker", Constraint: "serves_model", Message: fmt.Sprintf("worker %q serves %q, not %q", pinW, w.rec.Model.ID, req.Model)}}}
		}
	}
	known, servable := false, false
	for _, w := range s.workers {
		if w.rec.Model.ID != req.Model || (pinP != "" && w.rec.Pool != pinP) || (pinW != "" && w.rec.WorkerID != pinW) {
			continue
		}
		known = true
		if w.rec.State == api.WorkerHealthy {
			servable = true
		}
	}
	if !known {
		msg := fmt.Sprintf("no registered worker serves model %q", req.Model)
		if pinP != "" {
			msg += fmt.Sprintf(" in pool %q", pinP)
		}
		return &api.Error{Code: api.CodeModelNotFound, Message: msg}
	}
	if !servable && s.cfg.Unavailable == "reject" {
		return &api.Error{Code: api.CodePoolUnavailable, Retriable: true, RetryAfterMs: 1000,
			Message: fmt.Sprintf("no healthy worker serves model %q now", req.Model)}
	}
	return nil
}

// predictLocked estimates when a task with ahead tasks before it starts.
func (s *Server) predictLocked(model string, ahead int) int64 {
	return s.capacityLocked(model).predict(ahead)
}

// capacity is what predictions need to know of one model's workers.
type capacity struct {
	free, total int
	mean        time.Duration
}

func (c capacity) predict(ahead int) int64 {
	return admission.PredictStart(ahead, c.free, c.total, c.mean)
}

// capacityLocked sums the slots of the healthy workers serving model.
// Called with s.mu held.
func (s *Server) capacityLocked(model string) capacity {
	var c capacity
	for _, w := range s.workers {
		if w.rec.Model.ID != model || w.rec.State != api.WorkerHealthy {
			continue
		}
		c.total += w.rec.Slots
		c.free += max(0, w.rec.Slots-w.assigned)
	}
	c.mean, _ = s.meter.MeanService(model)
	return c
}

// finishLocked ends a task with exactly one terminal event. Called with s.mu held.
func (s *Server) finishLocked(t *task, status string, end *api.End, apiErr *api.Error) {
	if t.terminal() {
		return
	}
	now := time.Now()
	t.status, t.finished, t.end, t.err = status, now, end, apiErr
	if end != nil {
		data, _ := json.Marshal(end)
		s.appendEvent(t, api.EventEnd, data, true)
	} else {
		data, _ := json.Marshal(apiErr)
		s.appendEvent(t, api.EventError, data, true)
	}
	t.req = nil
	if t.cancelAttempt != nil {
		t.cancelAttempt()
	}
	outcome := status
	if apiErr != nil && apiErr.Code == api.CodeQueueFullDropped {
		outcome = "dropped"
	}
	s.metrics.tasks.WithLabelValues(outcome, t.priority).Inc()
	if status == api.TaskSucceeded && !t.started.IsZero() {
		s.meter.Observe(t.model, now.Sub(t.started), now)
	}
	code := ""
	if apiErr != nil {
		code = apiErr.Code
	}
	s.log.Debug("task finished", "task_id", t.id, "status", status, "code", code, "tokens_out", t.tokensOut, "correlation_id", t.correlation)
	select {
	case s.journalKick <- struct{}{}:
	default:
	}
}

func (s *Server) lookup(c echo.Context) (*task, error) {
	id := c.Param("id")
	s.mu.Lock()
	t, ok := s.tasks[id]
	s.mu.Unlock()
	if !ok {
		return nil, writeError(c, &api.Error{Code: api.CodeTaskNotFound, Message: "no task " + id + " (finished tasks are kept for the result TTL)"})
	}
	return t, nil
}

func (s *Server) handleGetTask(c echo.Context) error {
	t, err := s.lookup(c)
	if t == nil {
		return err
	}
	s.mu.Lock()
	st := s.status(t)
	s.mu.Unlock()
	return c.JSON(http.StatusOK, st)
}

func (s *Server) handleListTasks(c echo.Context) error {
	want := c.QueryParam("status")
	s.mu.Lock()
	out := make([]api.TaskStatus, 0, len(s.tasks))
	for _, t := range s.tasks {
		if want == "" || t.status == want {
			st := s.status(t)
			st.Text = ""
			out = append(out, st)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b api.TaskStatus) int { return a.CreatedAt.Compare(b.CreatedAt) })
	if len(out) > 1000 {
		out = out[len(out)-1000:]
	}
	return c.JSON(http.StatusOK, map[string]any{"tasks": out})
}

func (s *Server) handleEvents(c echo.Context) error {
	t, err := s.lookup(c)
	if t == nil {
		return err
	}
	last := c.Request().Header.Get("Last-Event-ID")
	if last == "" {
		last = c.QueryParam("last_event_id")
	}
	var after uint64
	if last != "" {
		n, err := strconv.ParseUint(last, 10, 64)
		if err != nil {
			return writeError(c, &api.Error{Code: api.CodeInvalidRequest, Message: "Last-Event-ID must be an event id from this task's stream"})
		}
		after = n
	}
	return s.stream(c, t, after, false)
}

// Cancel cancels a task; it is idempotent. Queued tasks leave the queue;
// running ones end now (the worker is told to stop, and nothing it sends
// later is relayed).
func (s *Server) Cancel(id, why string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok {
		return false
	}
	if t.terminal() {
		return true
	}
	if _, inQueue := s.q.Remove(id); inQueue {
		s.countQueued(t, -1)
	}
	if t.status == api.TaskRunning && t.jobID != "" {
		if w := s.workers[t.workerID]; w != nil {
			job := t.jobID
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				if _, err := w.client.Cancel(ctx, job); err != nil {
					s.log.Debug("cancel on worker", "task_id", id, "err", err)
				}
			}()
		}
	}
	s.finishLocked(t, api.TaskCancelled, nil, &api.Error{Code: api.CodeCancelled, Message: why})
	return true
}

func (s *Server) handleCancel(c echo.Context) error {
	id := c.Param("id")
	if !s.Cancel(id, "cancelled by the client") {
		return writeError(c, &api.Error{Code: api.CodeTaskNotFound, Message: "no task " + id})
	}
	return c.JSON(http.StatusAccepted, map[string]string{"task_id": id, "status": api.TaskCancelled})
}

// stream relays a task's events from after (an event id) to its end.
// cancelOnGone cancels the task when the client goes away (streamed
// submissions; never async ones).
func (s *Server) stream(c echo.Context, t *task, after uint64, cancelOnGone bool) error {
	h := c.Response().Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Task-Id", t.id)
	c.Response().WriteHeader(http.StatusOK)
	w := sse.NewWriter(c.Response())
	err := s.relay(c.Request().Context(), w, t, after)
	if err != nil && cancelOnGone {
		if s.Cancel(t.id, "the client disconnected") {
			s.log.Debug("client gone: task cancelled", "task_id", t.id)
		}
	}
	return nil
}

// relay writes t's events after the given id, then follows the task live
// until its terminal event. It returns nil once the terminal event was
// written, or the error that stopped it (client gone).
func (s *Server) relay(ctx context.Context, w *sse.Writer, t *task, after uint64) error {
	s.mu.Lock()
	evicted := t.evicted
	s.mu.Unlock()
	if evicted {
		evs, err := s.st.Events(t.id)
		if err != nil {
			s.log.Error("reading a finished task's events", "task_id", t.id, "err", err)
			return nil
		}
		var idbuf []byte
		for _, ev := range evs {
			if ev.Seq <= after {
				continue
			}
			idbuf = strconv.AppendUint(idbuf[:0], ev.Seq, 10)
			if err := w.Event(sse.Event{ID: string(idbuf), Event: ev.Name, Data: ev.Data}); err != nil {
				return err
			}
		}
		return nil
	}
	keep := time.NewTimer(s.cfg.KeepAlive)
	defer keep.Stop()
	next := int(after)
	lastPos := -1
	var idbuf []byte
	for {
		s.mu.Lock()
		var evs []store.Event
		if next < t.visible {
			evs = t.log[next:t.visible]
		}
		ch := t.changed
		done := t.terminal() && t.visible == len(t.log) && next+len(evs) >= t.visible
		var q *api.Queued
		if t.status == api.TaskQueued && t.queuedPos != lastPos {
			q = &api.Queued{Position: t.queuedPos, PredictedStartMs: t.queuedPredicted}
			lastPos = t.queuedPos
		}
		s.mu.Unlock()
		if q != nil {
			if err := w.JSON(api.EventQueued, "", q); err != nil {
				return err
			}
		}
		for _, ev := range evs {
			idbuf = strconv.AppendUint(idbuf[:0], ev.Seq, 10)
			if err := w.Event(sse.Event{ID: string(idbuf), Event: ev.Name, Data: ev.Data}); err != nil {
				return err
			}
		}
		next += len(evs)
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-keep.C:
			if err := w.Comment("keep-alive"); err != nil {
				return err
			}
			keep.Reset(s.cfg.KeepAlive)
		}
	}
}

// queuedLoop refreshes queue positions and predictions of waiting tasks, so
// their streams get fresh queued events.
func (s *Server) queuedLoop(ctx context.Context) {
	tick(ctx, s.cfg.QueuedInterval, nil, func() { s.refreshPositions(time.Now()) })
}

// tick calls fn every interval, and whenever kick fires, until ctx ends.
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

func (s *Server) refreshPositions(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	perModel := map[string]int{}
	caps := map[string]capacity{} // once per model, not once per task
	s.q.Each(now, func(pos int, _ string, t *task) bool {
		ahead := perModel[t.model]
		perModel[t.model]++
		if pos != t.queuedPos {
			c, ok := caps[t.model]
			if !ok {
				c = s.capacityLocked(t.model)
				caps[t.model] = c
			}
			t.queuedPos = pos
			t.queuedPredicted = c.predict(ahead)
			t.notify()
		}
		return true
	})
}

// schedulerTask is the scheduler's view of a task.
func schedulerTask(t *task) scheduler.Task {
	st := scheduler.Task{Model: t.model}
	if t.req != nil {
		st.SessionID = t.req.SessionID
		if p := t.req.Placement; p != nil {
			st.PinWorker, st.PinPool = p.PinWorker, p.PinPool
		}
	}
	return st
}
