package orchestrator

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/llorch/llorch/core/admission"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/queue"
	"github.com/llorch/llorch/core/routing"
)

// submit admits a task: admission over the registry, the routing script's
// admit stage (if one is loaded), a place in the queue (held), the task in
// the table (and the journal, before an async task's 202), then the
// dispatcher may start it. ctx carries the request's principal and metadata.
func (s *Server) submit(ctx context.Context, req *api.TaskRequest, async bool) (api.TaskAccepted, *api.Error) {
	return s.submitBy(ctx, doorTasks, req, async)
}

// submitBy is submit for a task that came by door (doorTasks, doorChat,
// doorCompletions: the trace's api).
func (s *Server) submitBy(ctx context.Context, door string, req *api.TaskRequest, async bool) (_ api.TaskAccepted, refused *api.Error) {
	arrived := time.Now()
	p, meta := principalOf(ctx), metaOf(ctx)
	defer func() { s.usage.refuse(p, req.Model, refused) }() // a refusal counts in the key's usage (usage.go)
	id := newID("t-")
	maxTokens := api.DefaultMaxTokens
	if req.MaxTokens != nil {
		maxTokens = *req.MaxTokens
	}
	check := func() *api.Error {
		return admission.Check(schedulerTask(req), maxTokens, s.reg.snapshot(nil, time.Now()), s.cfg.Unavailable == "reject", s.fleet.declared(req.Model))
	}
	if e := check(); e != nil {
		return api.TaskAccepted{}, e
	}
	use, lerr := s.limits.admit(p, req) // the key's limits (limits.go)
	if lerr != nil {
		return api.TaskAccepted{}, lerr
	}
	defer use.unlessKept()
	if e := s.usage.checkQuota(p); e != nil { // the key's period budgets (usage.go)
		return api.TaskAccepted{}, e
	}
	sess, serr := s.sessions.admit(p, req.SessionID) // the session's budgets (sessions.go)
	if serr != nil {
		return api.TaskAccepted{}, serr
	}
	headers := whitelisted(s.cfg.RoutingHeaders, meta.header)
	var note string
	var routed time.Duration // in the admit stage
	if s.routing.Script() != nil {
		in := routing.AdmitInput{Task: routingTask(id, req, req.PriorityOrDefault(), p.fp, headers), Queue: s.disp.depths(), Now: time.Now()}
		d, res := s.routing.Admit(ctx, in)
		note, routed = res.Note, res.Duration
		switch d.Action {
		case routing.ActionReject:
			return api.TaskAccepted{}, &api.Error{Code: d.Code, Message: d.Message, Status: d.Status, Retriable: d.Status == http.StatusTooManyRequests}
		case routing.ActionAdmit:
			if d.Priority != "" {
				req.Priority = d.Priority
			}
		}
		if e := check(); e != nil { // the registry may have changed while the script ran
			return api.TaskAccepted{}, e
		}
	}
	if req.Seed == nil {
		seed := int64(rand.Uint32())
		req.Seed = &seed // retries and continuations use the same seed
	}
	now := time.Now()
	t := newTask(id, req, async, p, meta.correlation, now)
	t.arrived, t.door, t.spent.routing, t.limit = arrived, door, routed, use
	t.sess, t.admitBudget = sess, sess.budget()
	if note != "" {
		t.expl = &api.Explanation{At: now, Summary: "queued", Routing: note}
	}
	e := &entry{id: id, model: req.Model, priority: t.priority, class: t.class, st: schedulerTask(req), req: req, created: now,
		correlation: meta.correlation, keyFP: p.fp, headers: headers, routingNote: note, spent: spent{routing: routed}}
	e.setKey(p) // fair queueing by the key (dispatcher.go)
	pos, predicted, dropped, apiErr := s.disp.enqueue(e)
	if apiErr != nil {
		return api.TaskAccepted{}, apiErr
	}
	t.queued = api.Queued{Position: pos, PredictedStartMs: predicted}
	s.tasks.add(t)
	s.endIfRevoked(p, id) // keys.go: its key was revoked while it was admitted
	if dropped != "" {
		s.tasks.fail(dropped, &api.Error{Code: api.CodeQueueFullDropped, Retriable: true,
			Message: "dropped from a full queue to admit a newer task"})
	}
	if async {
		// The journal holds the task before the client hears 202.
		if err := s.tasks.flush(); err != nil {
			s.disp.remove(id)
			s.tasks.discard(id)
			s.log.Error("journal write failed", "task_id", id, "err", err)
			return api.TaskAccepted{}, &api.Error{Code: api.CodeInternal, Message: "cannot journal the task", Retriable: true}
		}
	}
	s.disp.release(id)
	s.log.Debug("task admitted", "task_id", id, "model", req.Model, "priority", t.priority, "async", async, "key", p.fp, "correlation_id", meta.correlation)
	return api.TaskAccepted{TaskID: id, Status: api.TaskQueued, QueuePosition: pos, PredictedStartMs: predicted,
		EventsURL: "/v2/tasks/" + id + "/events"}, nil
}

// cancel cancels a task p may see; it is idempotent. A queued task leaves the
// queue; a running one ends now (the worker is told to stop, and nothing it
// sends later is relayed).
func (s *Server) cancel(id, why string, p principal) bool {
	found, workerID, job := s.tasks.cancel(id, why, p)
	if found {
		s.disp.forget(id, workerID, job)
	}
	return found
}

// requeueRestored queues the unfinished tasks the journal held at startup.
func (s *Server) requeueRestored(rs []restored) {
	for _, r := range rs {
		t := r.t
		if t.tokensOut > 0 {
			s.m.resumes.WithLabelValues("restart").Inc()
		}
		e := &entry{id: t.id, model: t.model, priority: t.priority, class: r.class, st: schedulerTask(t.req), req: t.req,
			created: t.created, correlation: t.correlation}
		key := s.restoredKey(t.owner)
		e.setKey(key) // fair queueing by the owner's key (dispatcher.go)
		if t.tokensOut > 0 {
			e.st.Digest = s.reg.digest(t.workerID) // token ids belong to this model file
		}
		t.sess = s.sessions.find(t.owner, t.req.SessionID) // its session counts what it still uses (sessions.go)
		t.limit = s.limits.restored(key)                   // its key's limits count it (limits.go)
		if e.class != queue.Interactive && e.class != queue.Batch {
			e.class = queue.Interactive
		}
		s.disp.readmit(e)
	}
}
