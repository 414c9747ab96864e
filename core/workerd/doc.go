// Package workerd is the worker daemon: an HTTP/SSE server over one
// backends.Model, with N slots (parallel sequences) driven by one decode loop
// that batches every active slot into each step (continuous batching), reuses
// each slot's cached prompt prefix, and cancels between steps.
//
//	handler ──reserve──► engine.slots ◄──collect── decode loop ──► backends.Context
//	   ▲                                                 │
//	   └──────────── job mailbox (unbounded) ◄───────────┘ token/end/error events
//
// The daemon is embeddable: New, Handler, Serve(ctx, listener).
package workerd
