package workerd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
)

// openAIBackend serves the OpenAI-compatible API (core/openai) from this
// worker's engine: a request takes a slot at once or gets 503 ALL_SLOTS_BUSY,
// as on /execute.
type openAIBackend struct{ s *Server }

var _ openai.Backend = openAIBackend{}

// openAI returns the worker's openai.Backend.
func (s *Server) openAI() openai.Backend { return openAIBackend{s} }

// Submit prepares the request and reserves a slot (waiting in the worker's
// queue, when it has one). Priority is ignored.
func (b openAIBackend) Submit(ctx context.Context, req *openai.Request) (openai.Stream, error) {
	s := b.s
	eng, apiErr := s.ready()
	if apiErr != nil {
		s.metrics.requests.WithLabelValues(outcome(apiErr.Code)).Inc()
		return nil, apiErr
	}
	if apiErr := s.modelErr(req.Model); apiErr != nil {
		s.metrics.requests.WithLabelValues("invalid").Inc()
		return nil, apiErr
	}
	if apiErr := req.Exec.Validate(); apiErr != nil {
		s.metrics.requests.WithLabelValues("invalid").Inc()
		return nil, apiErr
	}
	j, apiErr := s.prepare(&req.Exec)
	if apiErr != nil {
		s.metrics.requests.WithLabelValues("invalid").Inc()
		return nil, apiErr
	}
	if err := eng.reserve(ctx, j); err != nil {
		switch {
		case errors.Is(err, errBusy):
			s.metrics.requests.WithLabelValues("busy").Inc()
			return nil, &api.Error{Code: api.CodeAllSlotsBusy, Message: fmt.Sprintf("all %d slots are busy", s.cfg.Slots), Retriable: true, RetryAfterMs: 1000}
		case errors.Is(err, errDraining):
			s.metrics.requests.WithLabelValues("draining").Inc()
			return nil, &api.Error{Code: api.CodeDraining, Message: "worker is draining", Retriable: true}
		default:
			return nil, &api.Error{Code: api.CodeConflict, Message: err.Error()}
		}
	}
	// The client leaving cancels the job, even while nobody reads the stream.
	stop := context.AfterFunc(ctx, j.cancel)
	return &jobStream{gone: ctx.Done(), j: j, stop: stop}, nil
}

// MaxChoices implements openai.ChoiceLimiter: a request's choices run at
// once, one slot each.
func (b openAIBackend) MaxChoices() int { return b.s.cfg.Slots }

// Models lists the worker's one model; it is ready while the worker is.
func (b openAIBackend) Models(context.Context) ([]openai.Model, error) {
	s := b.s
	ready := 0
	if s.status.Load().(string) == api.StatusReady {
		ready = 1
	}
	return []openai.Model{{ID: s.cfg.ModelID, Created: s.start.Unix(), Workers: 1, Ready: ready}}, nil
}

// jobStream reads a job's mailbox as openai.Stream events.
type jobStream struct {
	gone <-chan struct{} // the client's request ended
	j    *job
	stop func() bool

	buf       []event
	pos       int
	last      bool // the mailbox holds no more events
	cancelled bool // the job's cancel was seen
	done      bool // the terminal event was returned
}

func (st *jobStream) Next() (api.Event, error) {
	for {
		if st.pos < len(st.buf) {
			ev := toEvent(st.buf[st.pos])
			st.pos++
			if ev.Terminal() {
				st.done = true
			}
			return ev, nil
		}
		if st.done || st.last {
			return api.Event{}, io.EOF
		}
		select {
		case <-st.j.box.notify:
			st.take()
		case <-st.j.cancelCh:
			st.take()
			if !st.last && !st.cancelled {
				// As /execute does: a cancelled stream ends at once, and the
				// decode loop's own terminal event is not waited for.
				st.buf = append(st.buf, event{api.EventError, &api.Error{Code: api.CodeCancelled, Message: "job cancelled"}})
				st.last = true
			}
			st.cancelled = true
		case <-st.gone:
			st.j.cancel()
			return api.Event{}, context.Canceled
		}
	}
}

func (st *jobStream) take() {
	st.buf, st.last = st.j.box.take(st.buf[:0])
	st.pos = 0
}

// Close cancels the job unless it has ended.
func (st *jobStream) Close() error {
	st.stop()
	if !st.done {
		st.j.cancel()
	}
	return nil
}

// toEvent converts a mailbox event into the client's event type.
func toEvent(ev event) api.Event {
	out := api.Event{Name: ev.name}
	switch d := ev.data.(type) {
	case api.Started:
		out.Started = &d
	case *api.Started:
		out.Started = d
	case api.Token:
		out.Token = &d
	case *api.Token:
		out.Token = d
	case api.End:
		out.End = &d
	case *api.End:
		out.End = d
	case api.Error:
		out.Error = &d
	case *api.Error:
		out.Error = d
	}
	return out
}
