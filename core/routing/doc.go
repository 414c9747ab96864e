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
// goroutine. Idle VMs are kept with their input objects, which the next call
// updates in place rather than rebuilds.
//
// No script may crash the process, exhaust its memory or outlive its budget.
// tengo bounds neither the work of comparing or printing a value (a value
// that contains itself recurses until the Go stack overflows, which no
// recover catches; one built of shared parts takes exponential time) nor the
// bytes a call allocates (its cap counts objects). So Compile rewrites the
// script (rewrite.go): every `+`, `+=`, `++`, `==` and `!=` whose operands are
// not literals, every index, slice, for-in loop, array and map literal,
// variadic function and import of text, json, fmt or times becomes a call of
// a hidden guard, placed at the operation's file:line:col. The guards, the
// builtins that walk or build values (string, copy, format, append, splice,
// bytes, range) and every function of the guarded modules:
//
//   - walk a value through at most 65536 parts and 64 levels (a value that
//     contains itself fails at once), and print one only when its text fits
//     in 256 KiB, before tengo does either;
//   - check what else would make a call work or allocate without bound
//     (repeat and replace sizes, split counts, JSON nesting, regular
//     expression program × text, cut sets, precisions);
//   - charge every value they build to the call: past MaxCallBytes (32 MiB)
//     the call fails with OutcomeAllocCap. What is not charged is small and
//     counted by the allocation cap, so one call holds tens of MB at most.
//
// Strings and bytes are at most 256 KiB (tengo.MaxStringLen and MaxBytesLen,
// process-wide, set by this package); range() makes at most 65536 elements.
// Before parsing, a scan of the tokens refuses nesting that would make the
// parser recurse deeply; the rewrite refuses a syntax tree more than 500
// levels deep. Each hidden guard called counts as one object against the
// allocation cap.
//
// Every step a script takes is thus bounded (milliseconds), and tengo stops a
// VM between two steps: when the budget or the context runs out, the call
// aborts the VM and waits up to 25ms for it to stop, so nothing of the call
// keeps running. A run that still does not stop (a defect) is abandoned;
// while 8 abandoned runs of a script are still going, the script is not
// started again (ErrBusy).
//
// As defence in depth against what an audit missed, Trial runs a script in a
// child process before it is loaded: `llorch orchestrate routing check
// --sandboxed -` (TrialCommand), which limits its own address space, CPU time
// and stack before it compiles the script, runs both stages over
// SampleSnapshot and reports as JSON. Trial fails when the script does not
// compile, when a call runs out of its budget or allocation cap, and when the
// child crashes or is killed (past TrialTimeout or 1 GiB of resident
// memory). The orchestrator tries a script set through the API before it
// accepts it, and a stored script before it loads it at startup.
//
// # Reloading
//
// Manager holds the current script (none: the built-in policy decides, at no
// cost). Manager.Load compiles and swaps atomically; a script that does not
// compile leaves the previous one in place and returns a *CompileError,
// "routing: FILE:LINE:COL: message". Manager.WatchFile polls a file and
// reloads it when it changes; the orchestrator also calls Load on SIGHUP and
// from the API. RunCheck, CheckSource and RunReplay are the `llorch
// orchestrate routing check|replay` commands: they run a script against
// SampleSnapshot or a recorded Snapshot and print one line per decision;
// RunSandboxed is `check --sandboxed`, the child of a Trial.
package routing
