// Package orchestrator is the llorch brain: an HTTP daemon that registers
// workers, admits tasks, journals them in bbolt, queues them by priority,
// schedules them onto workers (filter → score → tie-break, with an
// explanation) and relays the workers' event streams to clients, resumably.
//
//	client ─POST /v2/tasks─► admit ─► journal ─► queue ─► dispatch ─► worker /execute
//	   ▲                                                      │
//	   └──── SSE (id: per event, replay from Last-Event-ID) ◄─┘ relay
//
// One mutex guards the registry, the queue and every task; the dispatcher,
// the health monitor, the journal and the janitor are goroutines started by
// Serve. The daemon is embeddable: New, Handler, Serve.
package orchestrator
