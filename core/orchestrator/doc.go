// Package orchestrator is the llorch brain: an HTTP daemon that registers
// workers, admits tasks, journals them, queues them by priority, places them
// on workers (filter → score → tie-break, with an explanation) and relays the
// workers' event streams to clients, resumably; and runs declared models on
// pools (the fleet), starting workers on demand.
//
// It is a small composition of parts, each owning its state and its lock,
// each testable without HTTP. A task travels in one direction, file by file:
//
//	http.go, http_tasks.go   POST /v2/tasks: decode, authenticate (auth.go), validate
//	   │
//	submit.go                admission.Check over the registry's workers
//	   │                     → routing script, admit stage (routing.go)
//	   │                     → dispatcher.enqueue (a place in the queue, held)
//	   │                     → tasks.add (the table; the tail log; before a 202, the journal)
//	   ▼
//	dispatcher.go            the one loop: queue → routing script, place stage
//	   │                     (optional: filter, bias, wait) → prefix index (prefix.go:
//	   │                     expected cached tokens) → scheduler → registry.acquire
//	   │                     (a slot) → tasks.begin (running; the tokens to continue from)
//	   ▼
//	attempt.go               workerclient: POST /execute on the worker, an idle watchdog;
//	   │                     every event → tasks.relay (the task's log); started → the
//	   │                     prefix index checks its prediction; end → it records the slot
//	   ▼                     a failed attempt → dispatcher.failed: busy → wait; before the
//	worker                   first token → another worker; after it → migrate: continue
//	                         elsewhere from the tokens sent (resume_tokens; the client
//	                         sees one migrated event); or give up
//
//	follow.go                the way back: a task's log → SSE (ids 1..n, Last-Event-ID)
//	                         and the OpenAI layer's stream (openai.go)
//	timing.go, trace.go      where the task's time went (the terminal event's timing,
//	                         Server-Timing), and its line in the --trace-file
//
// The parts:
//
//   - registry (registry.go): workers, heartbeats, the health
//     monitor (silent → probed → unhealthy → dead); tells the dispatcher
//     when a worker can take work (onReady) and when one is lost (onLost:
//     its attempts are abandoned and fail over).
//   - tasks (tasks.go, journal.go, follow.go): the task table, each task's
//     event log and subscribers, and the journal: bbolt batches every
//     JournalInterval plus a tail log written before any event is shown, so
//     a crash loses nothing a client saw; restore at startup.
//   - dispatcher (dispatcher.go, attempt.go, routing.go, prefix.go): the
//     queue, the placement loop with its prefix index (core/prefix: which
//     worker probably holds which prompt prefix, checked against every
//     started event's cached_tokens), attempts and what their failures mean,
//     including migration (a drain with migrate stops attempts on purpose:
//     dispatcher.migrateOff).
//   - fleet (fleet.go, fleet_reconcile.go, fleet_host.go): pools and their
//     inventory, models as desired state, the workers it started
//     (replicas), the learned memory fit and the fleet event log. Its
//     reconcile loop starts workers on demand and up to min_replicas,
//     restarts crashed ones with backoff, rolls a changed spec one replica
//     at a time (rolling back when the new one fails to load), and drains
//     and stops idle ones; it drives pools with their own commands
//     (`llorch pool … --json`) through core/poolrun. A task for a declared
//     model that no worker serves is admitted (admission.Declared) and wakes
//     it (dispatcher.onStarved); the start's progress reaches waiting tasks
//     as queued{reason: starting} (dispatcher.setStarting). A model
//     declared with embedding: true has embedding workers as replicas
//     (only they count); a POST /v1/embeddings for it with no ready worker
//     waits in fleet.awaitEmbedder, which counts as the model's demand,
//     for at most EmbedStartWait (embeddings.go).
//   - stats (stats.go): the sample ring behind GET /v2/stats and its SSE
//     stream (http_stats.go), for the dashboard. The tasks part counts an
//     interval's tokens (by worker), first tokens and endings under the
//     lock it holds anyway; every StatsInterval the sampler swaps those
//     counts out, reads the queue, the running attempts and the workers
//     (one part's lock at a time) and keeps 15 minutes of samples in fixed
//     rings.
//   - usage (usage.go, http_usage.go): what each key used, by model and
//     hour. The journal batch that records a task's end counts it in the
//     store, once; until then its tokens are in flight in a per-key atomic
//     counter the relay adds to (no lock). Period budgets (tokens per UTC
//     day and month) compare both with the key's budget at admission.
//   - keys (auth.go, keys.go, http_keys.go): the key file's keys and the
//     keys kept in the store, looked up by the SHA-256 of the bearer token
//     in an immutable set that a change (create, update, revoke: written to
//     the store first, serialized) replaces whole, so requests take no
//     lock. Revoking ends the key's queued tasks under the dispatcher's
//     lock (dispatcher.endQueued); its running tasks finish.
//   - sessions (sessions.go, http_sessions.go): sessions with budgets,
//     metadata only, owned by a key, persisted in the store. Admission
//     refuses a spent one; a task holds its session and counts tokens and
//     its end with atomics (no lock of the part under the tasks lock); the
//     part's loop writes what changed and removes expired sessions. DELETE
//     makes the session's worker forget its KV (DELETE /v1/sessions/{id}).
//   - limits (limits.go): each key's limits at admission (models,
//     max_priority, max_queued, requests and tokens per minute as token
//     buckets with Retry-After from their refill). A task holds its key's
//     state (a keyUse): the relay spends tokens into an atomic counter (no
//     lock under the tasks lock) that admission folds into the bucket; a
//     key's state is dropped once it holds nothing.
//   - http (http*.go, openai.go): handlers that decode, call a part, encode.
//
// Locks: the fleet calls the dispatcher and the registry, never while
// holding its own lock (a pass decides under it, then acts); the dispatcher
// may call the registry and the tasks while holding its own lock; the
// registry and the tasks never call another part while holding theirs
// (their hooks run after unlocking; onStarved only wakes the fleet's loop). Every critical section
// unlocks with defer, so a panic never leaves a lock held; /healthz fails
// when a lock stays taken or a loop stops.
//
// The daemon is embeddable: New, Handler, Serve.
package orchestrator
