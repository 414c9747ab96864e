package orchestrator

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// Readers of a task's event log: the SSE relay (follow) and the OpenAI
// layer's stream (taskStream). Both replay what the log holds and then wait
// for more, until the terminal event.

// lastEvent is how many events a task's stream holds so far (or in all, once
// finished): the largest Last-Event-ID a client can have seen.
func (ts *tasks) lastEvent(t *task) (uint64, error) {
	ts.mu.Lock()
	evicted, n := t.evicted, t.visible
	ts.mu.Unlock()
	if !evicted {
		return uint64(n), nil
	}
	evs, err := ts.st.Events(t.id)
	return uint64(len(evs)), err
}

// parseLastEventID reads a Last-Event-ID (or ?last_event_id=): a decimal
// event id of this task's stream, at most last. Anything else is an error
// the client sees.
func parseLastEventID(s string, last uint64) (uint64, *api.Error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || len(s) > 20 {
		return 0, api.Errorf(api.CodeInvalidRequest, "Last-Event-ID must be a decimal event id from this task's stream")
	}
	if n > last {
		return 0, api.Errorf(api.CodeInvalidRequest, "Last-Event-ID %d is beyond this task's last event (%d)", n, last)
	}
	return n, nil
}

// follow writes t's events after the given id, then follows the task live
// until its terminal event. While the task waits, queued events (no id) say
// where it stands; quiet streams get keep-alive comments. It returns nil once
// the terminal event was written, or the error that stopped it (the client
// went away).
func (ts *tasks) follow(ctx context.Context, w *sse.Writer, t *task, after uint64) error {
	ts.mu.Lock()
	evicted := t.evicted
	ts.mu.Unlock()
	var idbuf []byte
	if evicted {
		evs, err := ts.st.Events(t.id)
		if err != nil {
			ts.log.Error("reading a finished task's events", "task_id", t.id, "err", err)
			return nil
		}
		return w.Batch(func() error {
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
		})
	}
	keep := time.NewTimer(ts.cfg.KeepAlive)
	defer keep.Stop()
	next := int(after)
	last := api.Queued{Position: -1}
	var evs []logEvent
	for {
		var q *api.Queued
		var ch chan struct{}
		var done bool
		func() {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			if t.evicted { // cannot happen while a reader is attached for less than a minute
				done = true
				return
			}
			evs = append(evs[:0], t.log[min(next, t.visible):t.visible]...)
			ch = t.changed
			done = t.terminal() && t.visible == len(t.log)
			if t.status == api.TaskQueued && t.queued != last {
				q = new(t.queued)
				last = t.queued
			}
		}()
		err := w.Batch(func() error { // what is at hand goes in one write
			if q != nil {
				if err := w.JSON(api.EventQueued, "", q); err != nil {
					return err
				}
			}
			for _, ev := range evs {
				idbuf = strconv.AppendUint(idbuf[:0], ev.seq, 10)
				if err := w.Event(sse.Event{ID: string(idbuf), Event: ev.ev.Name, Data: ev.data}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
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
			keep.Reset(ts.cfg.KeepAlive)
		}
	}
}

// taskStream follows a task's log as openai.Stream events. The client going
// away (its context) closes gone.
type taskStream struct {
	s    *Server
	t    *task
	gone chan struct{}
	stop func() bool
	next int
	done bool
}

func (s *Server) newTaskStream(ctx context.Context, t *task) *taskStream {
	st := &taskStream{s: s, t: t, gone: make(chan struct{})}
	st.stop = context.AfterFunc(ctx, func() {
		close(st.gone)
		s.cancel(t.id, "the client disconnected", principal{role: RoleAdmin})
	})
	return st
}

func (st *taskStream) Next() (api.Event, error) {
	ts := st.s.tasks
	for {
		if st.done {
			return api.Event{}, io.EOF
		}
		var ev *api.Event
		var ch chan struct{}
		var evicted bool
		func() {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			evicted = st.t.evicted
			if !evicted && st.next < st.t.visible {
				ev = &st.t.log[st.next].ev
				st.next++
			}
			ch = st.t.changed
		}()
		if evicted {
			return api.Event{}, fmt.Errorf("orchestrator: task %s: %w", st.t.id, io.ErrUnexpectedEOF) // a reader more than a minute late
		}
		if ev != nil {
			if ev.Terminal() {
				st.done = true
			}
			if ev.Started != nil || ev.Token != nil || ev.Terminal() {
				return *ev, nil
			}
			continue
		}
		select {
		case <-ch:
		case <-st.gone:
			return api.Event{}, context.Canceled
		}
	}
}

func (st *taskStream) Close() error {
	st.stop()
	if !st.done {
		st.s.cancel(st.t.id, "the client closed the stream", principal{role: RoleAdmin})
	}
	return nil
}
