package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/scheduler"
	"github.com/llorch/llorch/core/workerclient"
)

// maxExplained bounds the rejections kept on a task's explanation.
const maxExplained = 32

// stateFailedBefore marks, in a task's private copy of the worker list, a
// worker whose attempt at this task failed; the scheduler rejects it like
// any worker that is not healthy.
const stateFailedBefore = "failed this task before"

func (s *Server) dispatchLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		s.dispatch(ctx)
	}
}

type placement struct {
	t *task
	w *worker
}

// dispatch places as many queued tasks as there are free slots, in queue
// order. Tasks that cannot be placed now stay queued; once one task of a
// model (and pin) finds no worker, later ones with the same constraints are
// skipped in this pass.
func (s *Server) dispatch(ctx context.Context) {
	if s.routing.Script() != nil {
		s.dispatchScripted(ctx)
		return
	}
	begin := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.q.Len() == 0 {
		return
	}
	ws, index, free := s.snapshotLocked()
	if free == 0 {
		return
	}
	opts := scheduler.Options{SessionWorker: func(sid string) string { return s.sessions[sid] }}
	blocked := map[string]*api.Explanation{}
	var starts []placement
	var d scheduler.Decision
	now := time.Now()
	s.q.Each(now, func(_ int, _ string, t *task) bool {
		if t.notBefore.After(now) {
			return true
		}
		st := schedulerTask(t)
		key := st.Model + "\x00" + st.PinWorker + "\x00" + st.PinPool
		if e, ok := blocked[key]; ok && len(t.failedOn) == 0 {
			t.expl = e
			return true
		}
		s.scheduleTask(st, t, ws, opts, &d)
		if d.WorkerID == "" {
			e := explain(&d, st, ws, now)
			t.expl = e
			if len(t.failedOn) == 0 {
				blocked[key] = e
			}
			return true
		}
		t.expl = explain(&d, st, ws, now)
		ws[index[d.WorkerID]].SlotsBusy++
		free--
		starts = append(starts, placement{t: t, w: s.workers[d.WorkerID]})
		return free > 0
	})
	for _, p := range starts {
		s.startQueuedLocked(ctx, p.t, p.w)
	}
	if n := len(starts); n > 0 {
		per := time.Since(begin) / time.Duration(n)
		for range n {
			s.metrics.schedule.Observe(per.Seconds())
		}
	}
}

// snapshotLocked is the scheduler's view of the registry, in id order, with
// the index of each worker and the free slots of healthy workers. Called
// with s.mu held.
func (s *Server) snapshotLocked() ([]scheduler.Worker, map[string]int, int) {
	ids := make([]string, 0, len(s.workers))
	for id := range s.workers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	ws := make([]scheduler.Worker, len(ids))
	index := make(map[string]int, len(ids))
	free := 0
	for i, id := range ids {
		w := s.workers[id]
		ws[i] = w.schedulable()
		index[id] = i
		if w.rec.State == api.WorkerHealthy {
			free += max(0, w.rec.Slots-w.assigned)
		}
	}
	return ws, index, free
}

// startQueuedLocked takes t out of the queue and starts it on w. Called with
// s.mu held.
func (s *Server) startQueuedLocked(ctx context.Context, t *task, w *worker) {
	s.q.Remove(t.id)
	s.countQueued(t, -1)
	s.startLocked(ctx, t, w)
}

// scheduleTask runs the scheduler for t, steering it away from workers that
// already failed it when another worker could take it.
func (s *Server) scheduleTask(st scheduler.Task, t *task, ws []scheduler.Worker, opts scheduler.Options, d *scheduler.Decision) {
	if len(t.failedOn) > 0 {
		alt := slices.Clone(ws)
		for i := range alt {
			if slices.Contains(t.failedOn, alt[i].ID) && alt[i].State == api.WorkerHealthy {
				alt[i].State = stateFailedBefore
			}
		}
		scheduler.ScheduleInto(st, alt, opts, d)
		if d.WorkerID != "" {
			return
		}
	}
	scheduler.ScheduleInto(st, ws, opts, d)
}

func explain(d *scheduler.Decision, st scheduler.Task, ws []scheduler.Worker, now time.Time) *api.Explanation {
	e := d.Explanation(st, now)
	if len(e.Rejected) > maxExplained {
		e.Rejected = e.Rejected[:maxExplained]
	}
	if len(ws) == 0 {
		e.Summary = "no workers are registered"
	}
	return &e
}

// startLocked starts an attempt of t on w. Called with s.mu held.
func (s *Server) startLocked(ctx context.Context, t *task, w *worker) {
	now := time.Now()
	t.status = api.TaskRunning
	t.workerID = w.rec.WorkerID
	t.attempts++
	t.attemptTokens = 0
	if t.started.IsZero() {
		t.started = now
	}
	t.jobID = fmt.Sprintf("%s-%d", t.id, t.attempts)
	w.assigned++
	actx, cancel := context.WithCancel(ctx)
	t.cancelAttempt = cancel
	if sid := t.req.SessionID; sid != "" {
		if len(s.sessions) > 100_000 {
			clear(s.sessions)
		}
		s.sessions[sid] = w.rec.WorkerID
	}
	exec := t.req.ExecuteRequest
	exec.JobID = t.jobID
	if len(t.resumeText) > 0 {
		// The rerun must reproduce the tokens already sent: evaluate the
		// prompt afresh, as the first run did, not from whatever the
		// worker has cached since.
		off := false
		exec.CachePrompt = &off
	}
	s.markDirty(t)
	t.notify()
	go s.runAttempt(workerclient.WithCorrelationID(actx, t.correlation), t, w, w.client, &exec)
}

// runAttempt runs one attempt of t on w and relays its events into the
// task's log.
func (s *Server) runAttempt(ctx context.Context, t *task, w *worker, client *workerclient.Client, exec *api.ExecuteRequest) {
	job := exec.JobID
	defer s.release(w)
	st, err := client.Execute(ctx, exec)
	if err != nil {
		s.attemptFailed(t, w, job, err)
		return
	}
	defer st.Close()
	for {
		ev, err := st.Next()
		if err != nil {
			s.attemptFailed(t, w, job, err)
			return
		}
		if done := s.relayEvent(t, job, &ev); done {
			return
		}
	}
}

// relayEvent moves one worker event into the task's log. It reports whether
// the attempt is over.
func (s *Server) relayEvent(t *task, job string, ev *api.Event) bool {
	s.mu.Lock()
	if t.terminal() || t.jobID != job {
		s.mu.Unlock()
		return true
	}
	switch {
	case ev.Started != nil:
		if t.resumed {
			break // the client already has this task's started event
		}
		data, _ := json.Marshal(ev.Payload())
		if !t.async {
			s.appendEvent(t, ev.Name, data, true)
			break
		}
		// An async task's started event is journaled before anyone sees it,
		// so a resumed stream after a restart never repeats or renumbers it.
		s.appendEvent(t, ev.Name, data, false)
		s.mu.Unlock()
		err := s.flushJournal()
		s.mu.Lock()
		if err != nil {
			s.log.Error("journal write failed", "task_id", t.id, "err", err)
		}
		t.visible = len(t.log)
		t.notify()
	case ev.Token != nil:
		if i := ev.Token.I; i >= 0 && i < len(t.resumeText) {
			if t.resumeText[i] != ev.Token.T {
				s.finishLocked(t, api.TaskFailed, nil, &api.Error{Code: api.CodeWorkerLost, Retriable: true,
					Message: "the task could not be resumed after a restart: the rerun diverged from the tokens already sent"})
				s.mu.Unlock()
				return true
			}
			break
		}
		now := time.Now()
		if t.firstToken.IsZero() {
			t.firstToken = now
			s.metrics.ttft.Observe(now.Sub(t.created).Seconds())
		}
		t.attemptTokens++
		t.tokensOut++
		t.text.WriteString(ev.Token.T)
		s.metrics.tokensOut.Inc()
		data, _ := json.Marshal(ev.Token)
		s.appendEvent(t, ev.Name, data, true)
	case ev.End != nil:
		s.finishLocked(t, api.TaskSucceeded, ev.End, nil)
	case ev.Error != nil:
		s.finishLocked(t, api.TaskFailed, nil, ev.Error)
	}
	done := t.terminal()
	s.mu.Unlock()
	return done
}

// release returns w's slot after an attempt.
func (s *Server) release(w *worker) {
	s.mu.Lock()
	w.assigned--
	s.mu.Unlock()
	s.signal()
}

// attemptFailed handles an attempt that ended without a terminal event:
// before the first token the task is tried again (on another worker when
// there is one), after it the stream ends with one retriable WORKER_LOST.
func (s *Server) attemptFailed(t *task, w *worker, job string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.terminal() || t.jobID != job {
		return
	}
	var se *workerclient.StatusError
	workerFault := true
	if errors.As(err, &se) && se.Status != 0 {
		switch se.Status {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			// The request itself is bad for this worker (e.g. too long for its context).
			s.finishLocked(t, api.TaskFailed, nil, se.Err)
			return
		case http.StatusServiceUnavailable:
			workerFault = false // busy, loading or draining: not a failure of the worker
		}
	}
	if workerFault {
		w.suspect = true // the monitor probes it now, not after a missed heartbeat
	}
	s.log.Warn("attempt failed", "task_id", t.id, "worker_id", w.rec.WorkerID, "attempt", t.attempts, "tokens", t.attemptTokens, "err", err)
	if t.attemptTokens > 0 {
		s.finishLocked(t, api.TaskFailed, nil, &api.Error{Code: api.CodeWorkerLost, Retriable: true,
			Message: fmt.Sprintf("worker %s was lost after %d tokens: %v", w.rec.WorkerID, t.tokensOut, errText(err))})
		return
	}
	if t.attempts >= s.cfg.MaxAttempts {
		s.finishLocked(t, api.TaskFailed, nil, &api.Error{Code: api.CodeWorkerLost, Retriable: true,
			Message: fmt.Sprintf("no worker could run the task in %d attempts; last: %v", t.attempts, errText(err))})
		return
	}
	if workerFault && !slices.Contains(t.failedOn, w.rec.WorkerID) {
		t.failedOn = append(t.failedOn, w.rec.WorkerID)
	}
	t.status = api.TaskQueued
	t.jobID = ""
	if t.cancelAttempt != nil {
		t.cancelAttempt()
		t.cancelAttempt = nil
	}
	s.markDirty(t)
	backoff := s.cfg.RetryBackoff << (t.attempts - 1)
	time.AfterFunc(backoff, func() { s.requeue(t) })
}

// requeue puts a task whose attempt failed back in the queue.
func (s *Server) requeue(t *task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.terminal() {
		return
	}
	if _, _, _, err := s.q.Push(t.id, t.class, time.Now(), t); err != nil {
		s.finishLocked(t, api.TaskFailed, nil, &api.Error{Code: api.CodeQueueFull, Retriable: true, Message: "the queue was full when the task was retried"})
		return
	}
	s.countQueued(t, +1)
	t.notify()
	s.signal()
}

func errText(err error) string {
	var se *workerclient.StatusError
	if errors.As(err, &se) && se.Err != nil {
		return strings.TrimSpace(se.Err.Message)
	}
	return err.Error()
}
