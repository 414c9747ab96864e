// Package routing runs operator-supplied Tengo scripts that take part in
// admission and placement: compile once, run per decision under a time
// budget and an allocation cap, and fall back to the built-in policy on any
// failure. It is the only package that imports github.com/d5/tengo/v2.
//
// # The script contract
//
// A script is one Tengo file that runs once per decision. The global `stage`
// says which:
//
//	stage "admit" (a task arrives)
//	  task        {id, model, priority, max_tokens, prompt_tokens, session_id,
//	               key, labels, headers}    key: the API key's fingerprint;
//	                                        headers: whitelisted, lower-case names
//	  queue       queue[model][priority] = tasks waiting
//	  now         Unix milliseconds (int)
//	  candidates  [] (empty)
//	  decision    {action: "admit"}                        keep the priority
//	              {action: "admit", priority: "batch"}     or "interactive"
//	              {action: "reject", code: "TOO_BIG", message: "...", status: 400}
//	                                    status 400, 403 or 429 (default 403);
//	                                    code: 1-64 of A-Z a-z 0-9 _ . -
//
//	stage "place" (a task is ready to run)
//	  task, now   as above
//	  candidates  workers that passed the built-in filters: [{id, pool, model,
//	              slots_free, slots_total, load, tokens_per_second,
//	              cached_prefix, labels}]
//	  queue       {} (empty)
//	  decision    {action: "dispatch", worker: "w2"}       must be a candidate
//	              {action: "wait", retry_after_ms: 500}    1..600000 (default 1000)
//	              {action: "score", scores: {w1: 0.5}}     keys must be candidates,
//	                                                       values finite; added to
//	                                                       the built-in scores
//
// Any decision may carry `reason: "..."` (at most 200 bytes), which goes into
// the task's explanation. Leaving `decision` undefined lets the built-in
// policy decide (Outcome "default"). Inputs are immutable maps and arrays
// built for each call; a script cannot change them or keep state between
// calls. A decision with an unknown action, an unknown field or a value out of
// range is invalid and ignored, so that a typo never decides silently.
//
// # Outcomes and fallback
//
// Script.Admit and Script.Place return a validated decision and a Result.
// Only Outcome "ok" carries a decision; everything else is the zero decision
// and the built-in policy decides:
//
//	ok         the script decided                 Note "script: dispatch w2"
//	default    decision left undefined            Note "script: no decision"
//	error      runtime error (with its position), a Go panic inside a
//	           builtin, a canceled context, or ErrBusy
//	timeout    past Config.Timeout (default 50ms) or the context's deadline
//	alloc_cap  past Config.MaxAllocs (default 100000 objects) or a size limit
//	invalid    the decision failed validation     Note "script ignored: invalid
//	                                              decision: worker "w9" is not a
//	                                              candidate"
//
// Config.Observe sees every script call (stage, outcome, duration) so that the
// orchestrator can count llorch_routing_calls_total{stage,outcome} and time
// llorch_routing_seconds; this package imports no metrics library.
//
// # Sandbox
//
// Scripts may import only math, text, times (without sleep), json, enum and
// fmt (sprintf only); os, rand, file imports and everything else fail to
// compile ("module 'os' not found"), so a script reaches no file, process or
// network. Each call runs on its own tengo VM and globals over bytecode
// shared read-only (what tengo's Compiled.Clone provides), on its own
// goroutine: the caller gets its answer within the budget even when the
// script is stuck inside one builtin call that tengo cannot abort; such a
// call finishes in the background, and while 8 of them are still running the
// script is not started again (ErrBusy). Idle VMs are kept with their input
// objects, which the next call updates in place rather than rebuilds.
//
// Limits, beyond the budget and the allocation cap: strings and bytes are at
// most 256 KiB (tengo.MaxStringLen and MaxBytesLen, which are process-wide and
// set by this package); range() makes at most 65536 elements; string(),
// copy(), format() and the module functions refuse values of more than 65536
// elements or that contain themselves, where tengo would recurse until the Go
// stack overflows. What stays open: tengo's == and string + on a value that
// contains itself, or on one built of exponentially many shared parts, still
// recurse without bound, and memory a script allocates is bounded by the time
// budget (array concatenation is not counted by the allocation cap). Scripts
// are operator configuration: guard PUT /v2/routing/script like the rest of
// the operator API.
//
// # Reloading
//
// Manager holds the current script (none: the built-in policy decides, at no
// cost). Manager.Load compiles and swaps atomically; a script that does not
// compile leaves the previous one in place and returns a *CompileError,
// "routing: FILE:LINE:COL: message". Manager.WatchFile polls a file and
// reloads it when it changes; the orchestrator also calls Load on SIGHUP and
// from the API. RunCheck and RunReplay are the `llorch orchestrate routing
// check|replay` commands: they run a script against SampleSnapshot or a
// recorded Snapshot and print one line per decision.
package routing
