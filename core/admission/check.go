package admission

import (
	"fmt"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/scheduler"
)

// Declared is what the fleet knows of a task's model.
type Declared struct {
	// Declared: the fleet starts workers for the model on demand.
	Declared bool
	// Ctx is the declared context per slot (0: unknown).
	Ctx int
	// Refusal, when set, is why no worker can be started (NO_CAPACITY).
	Refusal *api.Error
}

// Check decides whether a task may enter the queue, given the registry as the
// scheduler sees it (the same pin and model rules, scheduler.Eligible). It
// returns nil, or the error the client gets, checked in this order:
//
//   - placement.pin_worker names no registered worker: WORKER_NOT_FOUND (404);
//   - the pinned worker serves another model: INVALID_REQUEST (400);
//   - no worker inside the pins serves the model and the fleet does not
//     declare it: MODEL_NOT_FOUND (404); a declared model that fits on no
//     pool: the fleet's refusal (NO_CAPACITY, 503);
//   - maxTokens leaves no room for a prompt in the largest slot context of
//     those workers: CONTEXT_LENGTH_EXCEEDED (400);
//   - with rejectUnavailable, none of them is healthy now and the model is
//     not declared: POOL_UNAVAILABLE (503, retriable). Otherwise such a task
//     waits in the queue (for a declared model, while the fleet starts a
//     worker).
func Check(t scheduler.Task, maxTokens int, ws []scheduler.Worker, rejectUnavailable bool, fleet Declared) *api.Error {
	e := scheduler.Eligible(t, ws)
	if t.PinWorker != "" {
		switch {
		case e.Pinned == nil:
			return api.Errorf(api.CodeWorkerNotFound, "placement.pin_worker: no worker %q is registered", t.PinWorker)
		case e.Pinned.Model != t.Model:
			return &api.Error{Code: api.CodeInvalidRequest, Message: "invalid request", Fields: []api.FieldError{{
				Field: "placement.pin_worker", Constraint: "serves_model",
				Message: fmt.Sprintf("worker %q serves %q, not %q", t.PinWorker, e.Pinned.Model, t.Model)}}}
		}
	}
	if e.Known == 0 && fleet.Declared && t.PinWorker == "" {
		if fleet.Refusal != nil {
			return fleet.Refusal
		}
		e.MaxCtx = fleet.Ctx
	} else if e.Known == 0 {
		msg := fmt.Sprintf("no registered worker serves model %q", t.Model)
		if t.PinPool != "" {
			msg += fmt.Sprintf(" in pool %q", t.PinPool)
		}
		return api.Errorf(api.CodeModelNotFound, "%s", msg)
	}
	if e.MaxCtx > 0 && maxTokens >= e.MaxCtx {
		return &api.Error{Code: api.CodeContextOverflow, Message: "max_tokens too large", Fields: []api.FieldError{{
			Field: "max_tokens", Constraint: "<ctx",
			Message: fmt.Sprintf("%d tokens leave no room for the prompt: the largest context of a worker serving %q is %d tokens", maxTokens, t.Model, e.MaxCtx)}}}
	}
	if e.Ready == 0 && rejectUnavailable && !fleet.Declared {
		err := api.Errorf(api.CodePoolUnavailable, "no healthy worker serves model %q now", t.Model)
		err.RetryAfterMs = 1000
		return err
	}
	return nil
}
