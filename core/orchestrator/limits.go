package orchestrator

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
)

// The limits part: each key's limits (api.KeyLimits, from its principal),
// checked at admission (submit.go) before the task takes a place in the
// queue, and its token buckets, spent as the task's tokens happen (tasks.go).
//
//   - models and max_priority refuse with 403 FORBIDDEN naming the limit; a
//     request of a batch-only key that names no priority is batch.
//   - requests_per_minute and tokens_per_minute are token buckets refilled
//     continuously, a minute's worth being the burst. A request takes one
//     request; prompt tokens (the worker's started event) and each generated
//     token, as it is relayed, spend the token bucket, which may go negative;
//     a request is admitted while it is above zero. Over a rate: 429
//     RATE_LIMITED with the time until the bucket holds one again.
//   - max_queued refuses (429 RATE_LIMITED) while the key has that many
//     tasks admitted and not started.
//
// State is per key name, and only for keys with limits: a key's state is
// dropped once it holds nothing (no task of the key alive, both buckets
// full again), so the map is bounded by the keys in use, and a key that is
// gone leaves nothing behind. The admission path takes the limiter's lock
// and the key's; the token path (under the tasks lock) only adds to an
// atomic counter of the task's key.

// limitSweepEvery is how often admission looks for key states to drop.
const limitSweepEvery = time.Minute

// maxQueuedRetryMs is the retry hint of a max_queued refusal: the key's
// waiting tasks may start at any moment, and no refill says when.
const maxQueuedRetryMs = 1000

func init() { knownCodes[api.CodeRateLimited] = true } // llorch_rejections_total{reason="rate_limited"}

// limiter holds the state of the keys with limits. Its zero value is ready.
type limiter struct {
	mu    sync.Mutex
	keys  map[string]*keyState
	swept time.Time
}

// keyState is one key's limit state.
type keyState struct {
	name string
	// users are the key's admitted tasks that have not ended plus the
	// admissions under way; it rises only under limiter.mu, so the sweep
	// never drops a state someone is about to use.
	users atomic.Int64
	// queued are the key's tasks admitted and not yet started.
	queued atomic.Int64
	// spent are the tokens spent since the token bucket last took them in.
	spent atomic.Int64

	mu         sync.Mutex // a leaf: guards the buckets
	reqs, toks bucket
}

// bucket is a token bucket refilled continuously at perMinute a minute up
// to perMinute (the burst). Guarded by keyState.mu.
type bucket struct {
	level     float64
	at        time.Time // of the last refill; zero: never used (full)
	perMinute int       // as last seen (the sweep refills with it)
}

// refill brings b up to now at perMinute.
func (b *bucket) refill(now time.Time, perMinute int) {
	b.perMinute = perMinute
	burst := float64(perMinute)
	if b.at.IsZero() {
		b.level = burst
	} else if d := now.Sub(b.at); d > 0 {
		b.level = math.Min(burst, b.level+burst*d.Minutes())
	} else {
		b.level = math.Min(burst, b.level)
	}
	b.at = now
}

// wait is how long until b holds one again (after refill).
func (b *bucket) wait() time.Duration {
	if b.level >= 1 || b.perMinute <= 0 {
		return 0
	}
	return time.Duration((1 - b.level) / float64(b.perMinute) * float64(time.Minute))
}

// full reports whether b would be full at now (nothing to remember).
func (b *bucket) full(now time.Time) bool {
	if b.at.IsZero() {
		return true
	}
	return b.level+float64(b.perMinute)*now.Sub(b.at).Minutes() >= float64(b.perMinute)
}

// admit checks p's limits for req, before the task is queued; a request of
// a batch-only key that names no priority becomes batch. The keyUse it
// returns (nil for a key without limits) belongs to the task: the task
// keeps it when it is added (tasks.add), and the caller defers
// keyUse.unlessKept, which gives back what admission took when the request
// is refused later on.
func (l *limiter) admit(p principal, req *api.TaskRequest) (*keyUse, *api.Error) {
	return l.check(p, req.Model, &req.Priority)
}

// admitOnce checks p's limits for a request that is not a task (an
// embedding): models, requests and tokens per minute. The keyUse it
// returns (nil for a key without limits) is running: keyUse.embedded ends
// it.
func (l *limiter) admitOnce(p principal, model string) (*keyUse, *api.Error) {
	return l.check(p, model, nil)
}

// check is admit (priority set: a task) and admitOnce (nil).
func (l *limiter) check(p principal, model string, priority *string) (*keyUse, *api.Error) {
	lim := p.limits
	if lim == nil {
		return nil, nil
	}
	if len(lim.Models) > 0 && !slices.Contains(lim.Models, model) {
		return nil, &api.Error{Code: api.CodeForbidden, Limit: api.LimitModels,
			Message: fmt.Sprintf("key %s may not use model %q (it may use %s)", p.key, truncate(model, 64), listModels(lim.Models))}
	}
	if priority != nil && lim.MaxPriority == api.PriorityBatch {
		switch *priority {
		case "":
			*priority = api.PriorityBatch
		case api.PriorityInteractive:
			return nil, &api.Error{Code: api.CodeForbidden, Limit: api.LimitMaxPriority,
				Message: fmt.Sprintf("key %s may submit batch tasks only (max_priority batch)", p.key)}
		}
	}
	task := priority != nil
	if lim.RequestsPerMinute == 0 && lim.TokensPerMinute == 0 && (lim.MaxQueued == 0 || !task) {
		return nil, nil
	}
	now := time.Now()
	k := l.hold(p.key, now)
	if e := k.take(now, lim, task); e != nil {
		k.users.Add(-1)
		return nil, e
	}
	u := &keyUse{k: k, counted: task && lim.MaxQueued > 0}
	if !task {
		u.state.Store(useRunning)
	}
	return u, nil
}

// restored is the keyUse of a task restored from the journal at startup,
// by p (its key, looked up again by owner): the task is queued, counts
// against the key's max_queued and spends its token bucket from now on,
// without being checked again.
func (l *limiter) restored(p principal) *keyUse {
	lim := p.limits
	if lim == nil || lim.RequestsPerMinute == 0 && lim.TokensPerMinute == 0 && lim.MaxQueued == 0 {
		return nil
	}
	u := &keyUse{k: l.hold(p.key, time.Now()), counted: lim.MaxQueued > 0}
	if u.counted {
		u.k.queued.Add(1)
	}
	u.state.Store(useQueued)
	return u
}

// hold returns key's state (made when missing) with one more user, and
// drops idle states once in a while.
func (l *limiter) hold(key string, now time.Time) *keyState {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*keyState{}
	}
	if now.Sub(l.swept) >= limitSweepEvery {
		l.swept = now
		l.sweepLocked(now)
	}
	k := l.keys[key]
	if k == nil {
		k = &keyState{name: key}
		l.keys[key] = k
	}
	k.users.Add(1)
	return k
}

// sweepLocked drops the states that hold nothing: no user, nothing queued,
// both buckets full (with the tokens spent since they were last seen).
func (l *limiter) sweepLocked(now time.Time) {
	for name, k := range l.keys {
		if k.users.Load() != 0 || k.queued.Load() != 0 {
			continue
		}
		k.mu.Lock()
		if !k.toks.at.IsZero() {
			k.toks.level -= float64(k.spent.Swap(0))
		}
		idle := k.reqs.full(now) && k.toks.full(now)
		k.mu.Unlock()
		if idle {
			delete(l.keys, name)
		}
	}
}

// size is how many key states are held.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// take admits one request of the key under lim or says which limit
// refuses; a task (queues) also counts against max_queued.
func (k *keyState) take(now time.Time, lim *api.KeyLimits, queues bool) *api.Error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if n := lim.MaxQueued; queues && n > 0 && k.queued.Load() >= int64(n) {
		return &api.Error{Code: api.CodeRateLimited, Retriable: true, Limit: api.LimitMaxQueued, RetryAfterMs: maxQueuedRetryMs,
			Message: fmt.Sprintf("key %s: at most %d tasks queued; retry when one has started", k.name, n)}
	}
	if n := lim.TokensPerMinute; n > 0 {
		k.toks.level -= float64(k.spent.Swap(0))
		k.toks.refill(now, n)
		if k.toks.level <= 0 {
			return rateLimited(k.name, api.LimitTokensPerMinute, n, "tokens", k.toks.wait())
		}
	}
	if n := lim.RequestsPerMinute; n > 0 {
		k.reqs.refill(now, n)
		if k.reqs.level < 1 {
			return rateLimited(k.name, api.LimitRequestsPerMinute, n, "requests", k.reqs.wait())
		}
		k.reqs.level--
	}
	if queues && lim.MaxQueued > 0 {
		k.queued.Add(1)
	}
	return nil
}

func rateLimited(key, limit string, perMinute int, what string, wait time.Duration) *api.Error {
	ms := max(1, wait.Milliseconds()+1) // whole ms, rounded up: the bucket has one then
	return &api.Error{Code: api.CodeRateLimited, Retriable: true, Limit: limit, RetryAfterMs: ms,
		Message: fmt.Sprintf("key %s: %d %s per minute; retry in %.1fs", key, perMinute, what, float64(ms)/1000)}
}

func listModels(ms []string) string {
	const show = 5
	s := fmt.Sprintf("%q", ms[:min(len(ms), show)])
	if len(ms) > show {
		s += fmt.Sprintf(" and %d more", len(ms)-show)
	}
	return s
}

// keyUse is an admitted task's hold on its key's limit state. Its methods
// take no lock but the bucket's (unlessKept) and are safe on nil (a key
// without limits).
type keyUse struct {
	k       *keyState
	counted bool // the task counts in k.queued while it waits
	state   atomic.Int32
}

// Phases of a keyUse.
const (
	useAdmitted int32 = iota // admitted, not yet a task
	useQueued                // a task, waiting
	useRunning               // a task, started
	useDone                  // ended (or refused after admission)
)

// spend counts n tokens of the task against its key's tokens per minute.
func (u *keyUse) spend(n int) {
	if u != nil && n > 0 {
		u.k.spent.Add(int64(n))
	}
}

// kept: the task was added to the table.
func (u *keyUse) kept() {
	if u != nil {
		u.state.CompareAndSwap(useAdmitted, useQueued)
	}
}

// unlessKept gives back what admission took (the request, the place among
// the key's queued tasks) when the request was refused after it.
func (u *keyUse) unlessKept() {
	if u == nil || !u.state.CompareAndSwap(useAdmitted, useDone) {
		return
	}
	k := u.k
	k.mu.Lock()
	if k.reqs.perMinute > 0 {
		k.reqs.level = math.Min(float64(k.reqs.perMinute), k.reqs.level+1)
	}
	k.mu.Unlock()
	u.leave()
}

// running: the task started on a worker.
func (u *keyUse) running() {
	if u != nil && u.state.CompareAndSwap(useQueued, useRunning) && u.counted {
		u.k.queued.Add(-1)
	}
}

// waiting: the task is queued again (its attempt failed).
func (u *keyUse) waiting() {
	if u != nil && u.state.CompareAndSwap(useRunning, useQueued) && u.counted {
		u.k.queued.Add(1)
	}
}

// done: the task ended.
func (u *keyUse) done() {
	if u == nil {
		return
	}
	for {
		s := u.state.Load()
		if s == useDone || s == useAdmitted { // an admitted use is given back by unlessKept
			return
		}
		if u.state.CompareAndSwap(s, useDone) {
			if s == useQueued && u.counted {
				u.k.queued.Add(-1)
			}
			u.k.users.Add(-1)
			return
		}
	}
}

// embedded ends an embedding request's use, spending its prompt tokens.
func (u *keyUse) embedded(res *openai.EmbedResult) {
	if u != nil && res != nil {
		u.spend(res.PromptTokens)
	}
	u.done()
}

// leave ends an admitted use that never became a task.
func (u *keyUse) leave() {
	if u.counted {
		u.k.queued.Add(-1)
	}
	u.k.users.Add(-1)
}
