// Package scheduler places a task on a worker: filter, then score, then a
// deterministic tie-break, and it says why.
//
// The orchestrator hands in a snapshot (the task and a slice of workers) and
// gets back a Decision: the chosen worker, its score, the candidates that
// passed the filter, and a Rejection with a reason for every worker that did
// not. The package only decides; the orchestrator acts. It reads no clock,
// keeps no state between calls and does no locking.
//
// Filter drops, in this order of checks: workers other than a pinned worker,
// workers outside a pinned pool, workers serving another model, workers that
// are not healthy, draining workers, and workers with no free slot. Pins never
// fall back: a task pinned to a busy worker gets no decision even when other
// workers are idle.
//
// Score ranks the candidates (higher is better):
//
//	score = Weights.FreeSlots * (SlotsTotal-SlotsBusy)/SlotsTotal
//	      - Weights.Load      * max(Load, SlotsBusy/SlotsTotal)   (0..1)
//	      + Weights.Affinity  if the worker last served the task's session
//	      + Weights.Cache     * min(1, Cached[worker] / max(PromptTokens, 256))
//	      + Weights.Room      * Room[worker]         (slots with no cached prompt)
//	      + Bias[worker ID]                          (routing scripts)
//
// with default weights 1, 0.5, 1, 1 and 0.25. Cached is what the orchestrator's
// prefix index (core/prefix) expects the worker to hold of the prompt; the
// cache term is the fraction of the prompt a worker would not have to
// prefill, so it weighs as much as a whole idle worker: a worker holding the
// prefix wins until it is about three quarters busy, then an idle worker
// takes the task (a hot prefix spreads instead of piling onto one worker).
// The room term breaks near-ties for a prompt no worker holds: it goes where
// a slot holds nothing, rather than evict another conversation's cache. Equal scores go to the worker with fewer
// busy slots, then to the lowest ID, so the same snapshot gives the same
// decision in any input order.
//
// ScheduleInto reuses a Decision's slices, so a dispatch loop that keeps one
// Decision does not allocate in steady state. See README.md for a diagram.
package scheduler
