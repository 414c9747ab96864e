package scheduler

import (
	"strconv"

	"github.com/llorch/llorch/core/api"
)

// Detail strings are built once and reused: a Decision caches the last few,
// keyed by the facts they state, so that rejecting a thousand workers of a
// handful of models does not build a thousand strings.

// maxCachedDetails bounds a Decision's detail cache; a full cache starts over.
const maxCachedDetails = 16

type detailKey struct {
	reason Reason
	s      string
	a, b   int
}

type cachedDetail struct {
	key  detailKey
	text string
}

// detail returns the Detail text for reason about s (a model, state, pool or
// pinned worker) or a/b (busy/total slots).
func (d *Decision) detail(reason Reason, s string, a, b int) string {
	switch reason { // texts that need no building
	case WrongModel:
		if s == "" {
			return "serves no model"
		}
	case NotHealthy:
		switch s {
		case api.WorkerUnhealthy:
			return "state unhealthy"
		case api.WorkerDead:
			return "state dead"
		case "":
			return "no state"
		}
	case NotInPinnedPool:
		if s == "" {
			return "in no pool"
		}
	case NoFreeSlot:
		if b <= 0 {
			return "no slots"
		}
	}
	for i := range d.details {
		k := &d.details[i].key
		if k.reason == reason && k.a == a && k.b == b && k.s == s {
			return d.details[i].text
		}
	}
	var text string
	switch reason {
	case NotPinnedWorker:
		text = "task pinned to " + s
	case NotInPinnedPool:
		text = "in pool " + s
	case WrongModel:
		text = "serves " + s
	case NotHealthy:
		text = "state " + s
	case NoFreeSlot:
		text = strconv.Itoa(a) + "/" + strconv.Itoa(b) + " busy"
	}
	if len(d.details) == maxCachedDetails {
		d.details = d.details[:0]
	}
	d.details = append(d.details, cachedDetail{detailKey{reason, s, a, b}, text})
	return text
}
