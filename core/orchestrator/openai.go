package orchestrator

import (
	"context"
	"io"
	"slices"
	"strings"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
	"github.com/llorch/llorch/core/store"
)

// openAIBackend serves the OpenAI-compatible API through the same admission,
// queue, scheduler and relay as /v2/tasks.
type openAIBackend struct{ s *Server }

var _ openai.Backend = openAIBackend{}

// Submit admits the request as a streamed task; the client leaving cancels it.
func (b openAIBackend) Submit(ctx context.Context, req *openai.Request) (openai.Stream, error) {
	treq := &api.TaskRequest{Model: req.Model, Priority: req.Priority, ExecuteRequest: req.Exec}
	if req.User != "" && len(req.User) <= api.MaxSessionIDLength && printable(req.User) {
		treq.Labels = map[string]string{"user": req.User}
	}
	if e := treq.Validate(); e != nil {
		return nil, e
	}
	t, _, e := b.s.Submit(ctx, treq, false)
	if e != nil {
		b.s.metrics.rejections.WithLabelValues(strings.ToLower(e.Code)).Inc()
		return nil, e
	}
	st := &taskStream{s: b.s, t: t, ctx: ctx}
	st.stop = context.AfterFunc(ctx, func() { b.s.Cancel(t.id, "the client disconnected") })
	return st, nil
}

// Models lists the models registered workers serve, with worker counts.
func (b openAIBackend) Models(context.Context) ([]openai.Model, error) {
	s := b.s
	s.mu.Lock()
	byID := map[string]*openai.Model{}
	for _, w := range s.workers {
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
	s.mu.Unlock()
	out := make([]openai.Model, 0, len(byID))
	for _, m := range byID {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b openai.Model) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// taskStream follows a task's event log as openai.Stream events.
type taskStream struct {
	s    *Server
	t    *task
	ctx  context.Context
	stop func() bool
	next int
	done bool
}

func (st *taskStream) Next() (api.Event, error) {
	for {
		if st.done {
			return api.Event{}, io.EOF
		}
		s, t := st.s, st.t
		s.mu.Lock()
		if t.evicted {
			s.mu.Unlock()
			return api.Event{}, io.ErrUnexpectedEOF // a reader more than a minute late
		}
		var ev *store.Event
		if st.next < t.visible {
			ev = &t.log[st.next]
			st.next++
		}
		ch := t.changed
		s.mu.Unlock()
		if ev != nil {
			out, err := api.DecodeEvent(ev.Name, ev.Data)
			if out.Terminal() {
				st.done = true
			}
			if err != nil || out.Name == api.EventStarted || out.Token != nil || out.Terminal() {
				return out, err
			}
			continue
		}
		select {
		case <-ch:
		case <-st.ctx.Done():
			return api.Event{}, st.ctx.Err()
		}
	}
}

func (st *taskStream) Close() error {
	st.stop()
	if !st.done {
		st.s.Cancel(st.t.id, "the client closed the stream")
	}
	return nil
}
