package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/queue"
	"github.com/llorch/llorch/core/store"
)

// journalLoop writes task progress to the store in batches: on a timer and
// when a task ends. Never once per token.
func (s *Server) journalLoop(ctx context.Context) {
	tick(ctx, s.cfg.JournalInterval, s.journalKick, func() {
		if err := s.flushJournal(); err != nil {
			s.log.Error("journal write failed", "err", err)
		}
	})
}

// flushJournal writes every task with unjournaled changes in one transaction.
func (s *Server) flushJournal() error {
	s.journalMu.Lock()
	defer s.journalMu.Unlock()
	type mark struct {
		t *task
		n int
	}
	s.mu.Lock()
	if len(s.dirty) == 0 {
		s.mu.Unlock()
		return nil
	}
	batch := make([]store.TaskWrite, 0, len(s.dirty))
	marks := make([]mark, 0, len(s.dirty))
	for _, t := range s.dirty {
		w := store.TaskWrite{Task: s.record(t)}
		if t.persisted < len(t.log) {
			w.Events = append([]store.Event(nil), t.log[t.persisted:]...)
		}
		batch = append(batch, w)
		marks = append(marks, mark{t, len(t.log)})
	}
	clear(s.dirty)
	s.mu.Unlock()

	err := s.st.Journal(batch)

	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range marks {
		if err != nil {
			s.dirty[m.t.id] = m.t
			continue
		}
		m.t.persisted = max(m.t.persisted, m.n)
	}
	return err
}

// loadTasks restores the journal: finished tasks are kept for their TTL;
// unfinished ones are queued again. A task that had started streaming is
// rerun with its seed and the tokens already sent are checked and skipped,
// so a client resuming with Last-Event-ID sees neither a gap nor a repeat.
func (s *Server) loadTasks() error {
	recs, err := s.st.Tasks()
	if err != nil {
		return err
	}
	now := time.Now()
	requeued := 0
	for _, r := range recs {
		evs, err := s.st.Events(r.ID)
		if err != nil {
			return err
		}
		class, _ := queue.ParseClass(r.Priority)
		t := &task{
			id: r.ID, req: r.Request, model: r.Model, priority: r.Priority, class: class, async: r.Async,
			seed: r.Seed, status: r.Status, created: r.CreatedAt, started: r.StartedAt, finished: r.FinishedAt,
			workerID: r.WorkerID, attempts: r.Attempts, expl: r.Explanation, end: r.End, err: r.Error,
			log: evs, visible: len(evs), persisted: len(evs), changed: make(chan struct{}),
		}
		s.tasks[t.id] = t
		if t.terminal() {
			t.text.WriteString(r.Text)
			t.tokensOut = r.TokensOut
			continue
		}
		for _, ev := range evs {
			switch ev.Name {
			case api.EventStarted:
				t.resumed = true
			case api.EventToken:
				var tok api.Token
				if err := json.Unmarshal(ev.Data, &tok); err != nil {
					return fmt.Errorf("orchestrator: task %s: bad token event: %w", t.id, err)
				}
				t.resumeText = append(t.resumeText, tok.T)
				t.text.WriteString(tok.T)
			}
		}
		t.tokensOut = len(t.resumeText)
		if t.req == nil {
			s.finishLocked(t, api.TaskFailed, nil, &api.Error{Code: api.CodeInternal, Message: "the journal has no request for this task"})
			continue
		}
		t.status = api.TaskQueued
		if _, _, _, err := s.q.Push(t.id, t.class, now, t); err != nil {
			s.finishLocked(t, api.TaskFailed, nil, &api.Error{Code: api.CodeQueueFull, Retriable: true, Message: "the queue was full when the task was restored"})
			continue
		}
		s.countQueued(t, +1)
		s.markDirty(t)
		requeued++
	}
	if requeued > 0 {
		s.log.Info("restored unfinished tasks from the journal", "requeued", requeued)
	}
	return nil
}

// janitorLoop forgets finished tasks after the result TTL.
func (s *Server) janitorLoop(ctx context.Context) {
	every := min(max(s.cfg.ResultTTL/4, time.Second), time.Minute)
	tick(ctx, every, nil, func() { s.expire(time.Now()) })
}

// evictAfter is how long a finished task's events stay in memory; later
// replays read them from the store.
const evictAfter = time.Minute

// expire deletes tasks that finished more than the result TTL before now.
func (s *Server) expire(now time.Time) {
	if err := s.flushJournal(); err != nil {
		s.log.Error("journal write failed", "err", err)
		return
	}
	s.mu.Lock()
	var ids []string
	for id, t := range s.tasks {
		switch {
		case !t.terminal():
		case now.Sub(t.finished) > s.cfg.ResultTTL:
			ids = append(ids, id)
			delete(s.tasks, id)
			delete(s.dirty, id)
		case t.log != nil && t.persisted == len(t.log) && now.Sub(t.finished) > evictAfter:
			// The events are in the store; replays read them from there.
			t.log, t.visible, t.evicted = nil, 0, true
		}
	}
	s.mu.Unlock()
	if err := s.st.DeleteTasks(ids); err != nil {
		s.log.Error("deleting expired tasks", "err", err)
	}
}
