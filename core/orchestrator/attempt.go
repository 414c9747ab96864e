package orchestrator

import (
	"context"
	"errors"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerclient"
)

// run runs one attempt: the worker's /execute stream, event by event, into
// the task's log. It ends when the task ends (ended) or when the attempt
// fails (failed: the dispatcher decides what then). No event for
// AttemptIdleTimeout — not even a keep-alive — abandons it, like a worker
// the monitor found unhealthy.
func (d *dispatcher) run(serveCtx context.Context, s start) {
	a := s.a
	actx, cancel := context.WithCancelCause(serveCtx)
	d.mu.Lock()
	a.cancel = cancel
	if a.stopped != nil {
		cancel(a.stopped)
	}
	d.mu.Unlock()
	defer func() {
		cancel(nil)
		d.reg.release(a.workerID)
		d.kick()
	}()
	fail := func(err error, retry *api.Error) {
		if c := context.Cause(actx); c != nil && !errors.Is(c, context.Canceled) {
			err = c // lost or cancelled: say why
		}
		d.failed(serveCtx, a, err, retry)
	}
	ctx := workerclient.WithCorrelationID(actx, a.e.correlation)
	d.tasks.sending(a.e.id, a.job)
	st, err := s.client.ExecuteWatched(ctx, s.exec, d.cfg.AttemptIdleTimeout)
	if err != nil {
		fail(err, nil)
		return
	}
	defer st.Close()
	for {
		ev, err := st.Next()
		if err != nil {
			fail(err, nil)
			return
		}
		done, retry, err := d.tasks.relay(a.e.id, a.job, ev)
		if ev.Started != nil && err == nil && !done {
			d.observe(a, ev.Started)
		}
		switch {
		case err != nil:
			fail(err, nil)
			return
		case retry != nil:
			fail(errors.New(retry.Message), retry)
			return
		case done:
			text, ok := d.tasks.output(a.e.id)
			if ok {
				d.served(a, text)
			}
			d.ended(a, ok)
			return
		}
	}
}
