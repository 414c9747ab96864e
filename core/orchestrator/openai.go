package orchestrator

import (
	"context"
	"slices"
	"strings"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
)

// openAIBackend serves the OpenAI-compatible API through the same admission,
// queue, scheduler and relay as /v2/tasks.
type openAIBackend struct{ s *Server }

var _ openai.Backend = openAIBackend{}

// Submit admits the request as a streamed task; the client leaving cancels it.
func (b openAIBackend) Submit(ctx context.Context, req *openai.Request) (openai.Stream, error) {
	treq := &api.TaskRequest{Model: req.Model, Priority: req.Priority, ExecuteRequest: req.Exec}
	// A session of /v2/sessions, or affinity (sessions.go): the X-Session-Id
	// header, else the body's session_id.
	treq.SessionID = metaOf(ctx).header.Get(headerSessionID)
	if treq.SessionID == "" {
		treq.SessionID = req.SessionID
	}
	if req.User != "" && len(req.User) <= api.MaxSessionIDLength && printable(req.User) {
		treq.Labels = map[string]string{"user": req.User}
	}
	if e := treq.Validate(); e != nil {
		return nil, e
	}
	if e := checkSchemas(&treq.ExecuteRequest); e != nil {
		return nil, e
	}
	door := doorCompletions
	if req.Exec.Messages != nil {
		door = doorChat
	}
	acc, e := b.s.submitBy(ctx, door, treq, false)
	if e != nil {
		b.s.m.rejections.WithLabelValues(rejectionLabel(e.Code)).Inc()
		return nil, e
	}
	t := b.s.tasks.get(acc.TaskID, principalOf(ctx))
	if t == nil {
		return nil, api.Errorf(api.CodeTaskNotFound, "task %s is gone", acc.TaskID)
	}
	noteV1Budget(ctx, t.sess, t.admitBudget) // the budget headers (http_sessions.go)
	return b.s.newTaskStream(ctx, t), nil
}

// Models lists the models registered workers serve, with worker counts, and
// the models the fleet declares (a request for one starts its worker).
func (b openAIBackend) Models(context.Context) ([]openai.Model, error) {
	ms := b.s.reg.models()
	for _, d := range b.s.fleet.declaredModels() {
		i, found := slices.BinarySearchFunc(ms, d.ID, func(m openai.Model, id string) int { return strings.Compare(m.ID, id) })
		if !found {
			ms = slices.Insert(ms, i, d)
		}
	}
	return ms, nil
}
