// Package admission decides whether a task may enter the queue (Check, over
// the scheduler's view of the registry: one pin rule, in the scheduler) and
// turns measured service times into the predictions the orchestrator gives
// at admission: when a queued task should start (predicted_start_ms), whether
// a deadline can be met (DEADLINE_UNMET), and when a client refused for a
// full queue should retry (Retry-After).
//
// A Meter keeps, per model, an exponentially weighted mean of how long tasks
// ran, and across models an exponentially decaying count of completions from
// which it derives the recent drain rate. Everything takes an explicit now:
// the package reads no clock and does no locking; the orchestrator calls it
// under its own mutex.
//
//	m := admission.NewMeter(0.2)
//	m.Observe("llama", 1200*time.Millisecond, now) // a task finished
//	mean, _ := m.MeanService("llama")
//	ms := admission.PredictStart(pos, free, total, mean)
//	if !admission.DeadlineMet(req.DeadlineMs, ms) { ... DEADLINE_UNMET }
//	retry := admission.RetryAfter(q.Len(), m.DrainRate(now))
package admission
