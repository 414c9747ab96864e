package orchestrator

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
)

// The usage part: what each key used, for GET /v2/usage, the per-key
// Prometheus series and the period budgets (tokens_per_day/month).
//
// A task is counted once, when it has ended, by the journal batch that
// records its end (store.Orchestrator.Journal: same bbolt transaction, a
// flag on the record), so a restart never counts it twice and a task
// resumed or migrated counts once, with its totals: the prompt tokens of
// its first started event and every token it streamed. Until then its
// tokens are "in flight": a counter per key that the relay moves with
// atomics (no lock of this part is taken there). A period budget compares
// the key's tokens counted this UTC day (month) plus its tokens in flight
// with the budget.
//
// Requests refused at admission have no task: each is counted as a request
// with its error code and no tokens, kept in memory and written with the
// next journal batch (so a flood of refusals is not one fsync each; a crash
// loses at most one journal interval of them).

// usage is the usage part. Its lock is a leaf.
type usage struct {
	st       *store.Orchestrator
	log      *slog.Logger
	now      func() time.Time
	requests *prometheus.CounterVec
	tokens   *prometheus.CounterVec

	inflight sync.Map // key name → *atomic.Int64: tokens of its tasks not yet counted

	mu      sync.Mutex
	periods map[string]*keyPeriods
	refused map[refusal]int64
}

// keyPeriods are a key's tokens counted in the store this UTC day and
// month.
type keyPeriods struct {
	day, month             time.Time
	dayTokens, monthTokens int64
}

// refusal is a bucket of refused requests.
type refusal struct {
	key, model, code string
	hour             time.Time
}

func newUsage(st *store.Orchestrator, reg *prometheus.Registry, log *slog.Logger) *usage {
	u := &usage{st: st, log: log.With("part", "usage"), now: time.Now, periods: map[string]*keyPeriods{}, refused: map[refusal]int64{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_key_requests_total", Help: "Requests by API key name and outcome (succeeded, failed, cancelled: tasks counted when they end; refused: at admission).",
		}, []string{"key", "outcome"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "llorch_key_tokens_total", Help: "Tokens of ended tasks by API key name and kind (prompt, cached: prompt tokens the worker reused, generated).",
		}, []string{"key", "kind"}),
	}
	reg.MustRegister(u.requests, u.tokens)
	return u
}

// periodStarts are the UTC day and month that hold at.
func periodStarts(at time.Time) (day, month time.Time) {
	at = at.UTC()
	return time.Date(at.Year(), at.Month(), at.Day(), 0, 0, 0, 0, time.UTC), time.Date(at.Year(), at.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// load reads this month's usage from the store, for the period budgets.
// It runs before the journal is restored (nothing is counted meanwhile).
func (u *usage) load() error {
	day, month := periodStarts(u.now())
	rows, err := u.st.Usage(store.UsageFilter{Since: month, Until: month.AddDate(0, 1, 0)})
	if err != nil {
		return fmt.Errorf("orchestrator: reading usage: %w", err)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, r := range rows {
		kp := u.periodsLocked(r.Key, day, month)
		n := r.PromptTokens + r.GeneratedTokens
		kp.monthTokens += n
		if !r.Hour.Before(day) {
			kp.dayTokens += n
		}
	}
	return nil
}

// periodsLocked is key's periods, moved on to day and month if they are
// newer than the ones it holds.
func (u *usage) periodsLocked(key string, day, month time.Time) *keyPeriods {
	kp := u.periods[key]
	if kp == nil {
		kp = &keyPeriods{day: day, month: month}
		u.periods[key] = kp
	}
	if kp.day.Before(day) {
		kp.day, kp.dayTokens = day, 0
	}
	if kp.month.Before(month) {
		kp.month, kp.monthTokens = month, 0
	}
	return kp
}

// counter is key's tokens in flight.
func (u *usage) counter(key string) *atomic.Int64 {
	if c, ok := u.inflight.Load(key); ok {
		return c.(*atomic.Int64)
	}
	c, _ := u.inflight.LoadOrStore(key, new(atomic.Int64))
	return c.(*atomic.Int64)
}

// spendInFlight adds n tokens to the task's key's tokens in flight (nil: a
// task already counted, or built without the usage part).
func (t *task) spendInFlight(n int) {
	if t.inflight != nil {
		t.inflight.Add(int64(n))
	}
}

// counted takes the usage of a task the journal has just counted: the
// per-key series, its key's periods, and its tokens out of flight.
func (u *usage) counted(r *store.TaskRecord) {
	row := r.Usage()
	u.requests.WithLabelValues(r.Key, r.Status).Inc()
	u.tokens.WithLabelValues(r.Key, "prompt").Add(float64(row.PromptTokens))
	u.tokens.WithLabelValues(r.Key, "cached").Add(float64(row.CachedPromptTokens))
	u.tokens.WithLabelValues(r.Key, "generated").Add(float64(row.GeneratedTokens))
	n := row.PromptTokens + row.GeneratedTokens
	day, month := periodStarts(u.now())
	u.mu.Lock()
	kp := u.periodsLocked(r.Key, day, month)
	if !row.Hour.Before(kp.month) {
		kp.monthTokens += n
	}
	if !row.Hour.Before(kp.day) {
		kp.dayTokens += n
	}
	u.mu.Unlock()
	// Out of flight only now: a check in between sees the tokens twice
	// rather than not at all.
	u.counter(r.Key).Add(-n)
}

// refuse counts a request refused at admission (e nil: it was not). The
// model is kept only if the registry knows it: a client's made-up model
// name must not become a row of its own.
func (u *usage) refuse(p principal, model string, e *api.Error) {
	if e == nil {
		return
	}
	if e.Code == api.CodeModelNotFound || e.Code == api.CodeInvalidRequest {
		model = ""
	}
	u.requests.WithLabelValues(p.key, "refused").Inc()
	u.mu.Lock()
	defer u.mu.Unlock()
	u.refused[refusal{key: p.key, model: model, code: e.Code, hour: store.HourOf(u.now())}]++
}

// writeRefused writes the refusals counted since the last write; on failure
// they stay for the next one.
func (u *usage) writeRefused() error {
	u.mu.Lock()
	if len(u.refused) == 0 {
		u.mu.Unlock()
		return nil
	}
	pending := u.refused
	u.refused = map[refusal]int64{}
	u.mu.Unlock()
	rows := make([]api.UsageRow, 0, len(pending))
	for r, n := range pending {
		rows = append(rows, api.UsageRow{Key: r.key, Model: r.model, Hour: r.hour, Requests: n, Errors: map[string]int64{r.code: n}})
	}
	if err := u.st.AddUsage(rows); err != nil {
		u.mu.Lock()
		defer u.mu.Unlock()
		for r, n := range pending {
			u.refused[r] += n
		}
		return err
	}
	return nil
}

// checkQuota refuses a request of a key whose tokens this UTC month or day
// (counted, plus its tasks in flight) have reached its budget: 429
// QUOTA_EXCEEDED naming the budget, to retry when the period turns.
func (u *usage) checkQuota(p principal) *api.Error {
	l := p.limits
	if l == nil || l.TokensPerDay <= 0 && l.TokensPerMonth <= 0 {
		return nil
	}
	now := u.now()
	day, month := periodStarts(now)
	u.mu.Lock()
	kp := u.periodsLocked(p.key, day, month)
	dayTokens, monthTokens := kp.dayTokens, kp.monthTokens
	u.mu.Unlock()
	inflight := u.counter(p.key).Load()
	quota := func(limit string, budget, used int64, next time.Time) *api.Error {
		return &api.Error{Code: api.CodeQuotaExceeded, Limit: limit, Retriable: true,
			RetryAfterMs: max(1, next.Sub(now).Milliseconds()),
			Message:      fmt.Sprintf("the key's %s budget of %d tokens is spent (%d used); it renews at %s", limit, budget, used, next.Format(time.RFC3339))}
	}
	// The month first: when both are spent, a new day does not help.
	if l.TokensPerMonth > 0 && monthTokens+inflight >= l.TokensPerMonth {
		return quota(api.LimitTokensPerMonth, l.TokensPerMonth, monthTokens+inflight, month.AddDate(0, 1, 0))
	}
	if l.TokensPerDay > 0 && dayTokens+inflight >= l.TokensPerDay {
		return quota(api.LimitTokensPerDay, l.TokensPerDay, dayTokens+inflight, day.AddDate(0, 0, 1))
	}
	return nil
}
