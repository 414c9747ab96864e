package admission

import (
	"math"
	"time"
)

// PredictStart estimates the milliseconds until a queued task starts.
//
// pos is the task's 0-based position among queued tasks for the same model,
// freeSlots the model's free slots now, totalSlots its slots across healthy
// workers, and meanService the model's mean service time. A task that a free
// slot awaits (pos < freeSlots) starts now: 0. Otherwise it waits for
// pos-freeSlots+1 slots to be released; with all slots busy they are released
// at totalSlots/meanService per unit time, so the estimate is
// (pos-freeSlots+1) * meanService / totalSlots — the expected wait when
// service times are exponentially distributed (an M/M/c queue). With no slots,
// or no measured service time while a wait is needed, it returns -1
// (unknown).
func PredictStart(pos, freeSlots, totalSlots int, meanService time.Duration) int64 {
	if totalSlots <= 0 {
		return -1
	}
	pos, freeSlots = max(pos, 0), max(freeSlots, 0)
	if pos < freeSlots {
		return 0
	}
	if meanService <= 0 {
		return -1
	}
	releases := float64(pos-min(freeSlots, totalSlots)) + 1
	ms := releases * float64(meanService) / float64(totalSlots) / float64(time.Millisecond)
	if ms >= math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(math.Ceil(ms))
}

// Bounds of RetryAfter.
const (
	MinRetryAfter = time.Second
	MaxRetryAfter = time.Minute
)

// RetryAfter suggests when a client refused for a full queue should retry: the
// time to drain depth tasks at drainRate tasks per second, rounded up to a
// millisecond and clamped to [MinRetryAfter, MaxRetryAfter]. An unknown rate
// (0, negative or NaN) gives MinRetryAfter.
func RetryAfter(depth int, drainRate float64) time.Duration {
	if !(drainRate > 0) || depth <= 0 {
		return MinRetryAfter
	}
	s := float64(depth) / drainRate
	if s >= MaxRetryAfter.Seconds() {
		return MaxRetryAfter
	}
	d := time.Duration(math.Ceil(s*1000)) * time.Millisecond
	return max(d, MinRetryAfter)
}

// DeadlineMet reports whether a task with a deadline of deadlineMs from now
// can start in time, given its predicted start in ms. No deadline
// (deadlineMs <= 0) or an unknown prediction (negative) is met.
func DeadlineMet(deadlineMs, predictedStartMs int64) bool {
	if deadlineMs <= 0 || predictedStartMs < 0 {
		return true
	}
	return predictedStartMs <= deadlineMs
}
