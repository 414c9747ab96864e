package orchestrator

import (
	"math"
	"net/http"
	"time"

	"github.com/llorch/llorch/core/api"
)

// Where a task's time went: the api.Timing of its terminal event, the
// Server-Timing header of answers that are not streamed.
//
//	arrived ─ queue ─┬─ schedule ─┬─ routing ─ sent ─ worker_ttft ─ first token ── … ── end
//	                 (time deciding, all passes, taken out of queue)
//	ttft = first token − arrived;  total = end − arrived
//
// queue + schedule + routing + worker_ttft = ttft for a task whose first
// attempt streamed; what is left is the relay's own cost. After a
// migration queue reaches to the last attempt's send and ttft stays the
// first token's.

// spent is a task's time in the built-in scheduler and in the routing
// script (admit and place stages), over every pass that considered it.
type spent struct {
	schedule, routing time.Duration
}

// timingLocked is where t's time went, as of now (its end).
func (t *task) timingLocked(now time.Time) *api.Timing {
	arrived := t.arrived
	if arrived.IsZero() { // restored from a journal
		arrived = t.created
	}
	sent := t.sent
	if sent.IsZero() { // never reached a worker
		sent = now
	}
	tm := &api.Timing{
		QueueMs:    ms(max(0, sent.Sub(arrived)-t.spent.schedule-t.spent.routing)),
		ScheduleMs: ms(t.spent.schedule),
		RoutingMs:  ms(t.spent.routing),
		TotalMs:    ms(now.Sub(arrived)),
		Attempts:   t.attempts,
	}
	if t.workerFirst {
		tm.WorkerTTFTMs = ms(t.workerTTFT)
	}
	if !t.firstToken.IsZero() {
		tm.TTFTMs = ms(t.firstToken.Sub(arrived))
	}
	return tm
}

// ms is d in milliseconds, to the microsecond.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// setServerTiming sends tm as the Server-Timing header (nil: none).
func setServerTiming(h http.Header, tm *api.Timing) {
	if tm != nil {
		h.Set("Server-Timing", tm.ServerTiming())
	}
}
