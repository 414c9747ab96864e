package api

import (
	"fmt"
	"net/http"
	"time"
)

// Tenants: API keys managed in the orchestrator's store (POST /v2/keys), each
// with limits, a fair-queueing weight and usage accounting; sessions with
// budgets (POST /v2/sessions); usage by key and model (GET /v2/usage).

// Error codes of limits, budgets and revoked keys.
const (
	// CodeRateLimited: a per-minute rate or a concurrency limit of the key
	// is reached; Error.Limit names it, RetryAfterMs comes from its refill.
	CodeRateLimited = "RATE_LIMITED"
	// CodeQuotaExceeded: a per-day or per-month token budget of the key is
	// spent; RetryAfterMs runs to the start of the next period (UTC).
	CodeQuotaExceeded = "QUOTA_EXCEEDED"
	// CodeBudgetExceeded: the session's token or time budget is spent.
	CodeBudgetExceeded = "BUDGET_EXCEEDED"
	// CodeKeyRevoked: the task's key was revoked while the task waited.
	CodeKeyRevoked = "KEY_REVOKED"
	// CodeSessionNotFound: no such session for this key (or it expired).
	CodeSessionNotFound = "SESSION_NOT_FOUND"
)

func init() {
	codes[CodeRateLimited] = codeInfo{http.StatusTooManyRequests, true}
	codes[CodeQuotaExceeded] = codeInfo{http.StatusTooManyRequests, true}
	codes[CodeBudgetExceeded] = codeInfo{http.StatusTooManyRequests, false}
	codes[CodeKeyRevoked] = codeInfo{http.StatusUnauthorized, false}
	codes[CodeSessionNotFound] = codeInfo{http.StatusNotFound, false}
}

// Names of the limits, as Error.Limit gives them.
const (
	LimitRequestsPerMinute = "requests_per_minute"
	LimitTokensPerMinute   = "tokens_per_minute"
	LimitMaxQueued         = "max_queued"
	LimitMaxRunning        = "max_running"
	LimitMaxPriority       = "max_priority"
	LimitModels            = "models"
	LimitTokensPerDay      = "tokens_per_day"
	LimitTokensPerMonth    = "tokens_per_month"
	LimitSessionTokens     = "session_token_budget"
	LimitSessionTime       = "session_time_budget"
)

// KeyLimits are one key's limits; a zero field is no limit.
type KeyLimits struct {
	// RequestsPerMinute and TokensPerMinute are token buckets refilled
	// continuously (a minute's worth is also the burst). Tokens are prompt
	// plus generated tokens, counted as they happen: a stream in flight
	// spends the bucket as it goes, and a request is admitted while the
	// bucket is above zero.
	RequestsPerMinute int `json:"requests_per_minute,omitempty"`
	TokensPerMinute   int `json:"tokens_per_minute,omitempty"`
	// MaxQueued refuses a new task (429 RATE_LIMITED) while the key has
	// this many tasks waiting; MaxRunning holds the key's queued tasks in
	// the queue while it has this many running (they wait, not refused).
	MaxQueued  int `json:"max_queued,omitempty"`
	MaxRunning int `json:"max_running,omitempty"`
	// MaxPriority "batch" refuses interactive tasks (403 FORBIDDEN naming
	// the limit); "" or "interactive" allows both.
	MaxPriority string `json:"max_priority,omitempty"`
	// Models the key may use; empty allows every model (403 FORBIDDEN).
	Models []string `json:"models,omitempty"`
	// TokensPerDay and TokensPerMonth are budgets over UTC calendar days
	// and months, from the usage store (429 QUOTA_EXCEEDED).
	TokensPerDay   int64 `json:"tokens_per_day,omitempty"`
	TokensPerMonth int64 `json:"tokens_per_month,omitempty"`
}

// Bounds of key settings.
const (
	MaxKeyWeight  = 1000
	MaxKeyModels  = 64
	maxLimitValue = 1 << 40
)

// Validate checks the limits; field names are prefixed with prefix
// ("limits.").
func (l *KeyLimits) Validate(prefix string) []FieldError {
	var fe []FieldError
	add := func(field, constraint, format string, args ...any) {
		fe = append(fe, FieldError{Field: prefix + field, Constraint: constraint, Message: fmt.Sprintf(format, args...)})
	}
	for _, c := range []struct {
		name string
		v    int64
	}{{LimitRequestsPerMinute, int64(l.RequestsPerMinute)}, {LimitTokensPerMinute, int64(l.TokensPerMinute)},
		{LimitMaxQueued, int64(l.MaxQueued)}, {LimitMaxRunning, int64(l.MaxRunning)},
		{LimitTokensPerDay, l.TokensPerDay}, {LimitTokensPerMonth, l.TokensPerMonth}} {
		if c.v < 0 || c.v > maxLimitValue {
			add(c.name, "0..2^40", "must be between 0 (no limit) and %d", int64(maxLimitValue))
		}
	}
	switch l.MaxPriority {
	case "", PriorityInteractive, PriorityBatch:
	default:
		add(LimitMaxPriority, "enum", "must be interactive or batch")
	}
	if len(l.Models) > MaxKeyModels {
		add(LimitModels, "<=64", "at most %d models", MaxKeyModels)
	}
	for _, m := range l.Models {
		if why := CheckID(m); why != "" {
			add(LimitModels, "id", "%q: %s", m, why)
			break
		}
	}
	return fe
}

// KeySpec is what an operator sets on a key.
type KeySpec struct {
	// Name identifies the key (CheckID rules): in usage, metrics (label
	// "key"), logs and the ctl commands. Unique.
	Name string `json:"name"`
	// Role is "user" (default) or "admin".
	Role string `json:"role,omitempty"`
	// Weight is the key's share in fair queueing (1..1000, default 1): a
	// key of weight 2 is served twice as often as one of weight 1 when
	// both have tasks waiting in the same priority class.
	Weight int       `json:"weight,omitempty"`
	Limits KeyLimits `json:"limits"`
}

// Validate checks the spec and fills the defaults (role user, weight 1).
func (k *KeySpec) Validate() *Error {
	var fe []FieldError
	if why := CheckID(k.Name); why != "" {
		fe = append(fe, FieldError{Field: "name", Constraint: "id", Message: why})
	}
	switch k.Role {
	case "":
		k.Role = "user"
	case "user", "admin":
	default:
		fe = append(fe, FieldError{Field: "role", Constraint: "enum", Message: "must be user or admin"})
	}
	if k.Weight == 0 {
		k.Weight = 1
	}
	if k.Weight < 1 || k.Weight > MaxKeyWeight {
		fe = append(fe, FieldError{Field: "weight", Constraint: "1..1000", Message: "must be between 1 and 1000"})
	}
	fe = append(fe, k.Limits.Validate("limits.")...)
	if len(fe) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalidRequest, Message: "invalid key", Fields: fe}
}

// KeyView is a key as GET /v2/keys shows it: never the key itself.
type KeyView struct {
	KeySpec
	// Fingerprint is the first 6 hex digits of the key's SHA-256, as logs
	// show it.
	Fingerprint string `json:"fingerprint"`
	// Source is "store" (POST /v2/keys) or "file" (--api-key-file and
	// LLORCH_API_KEYS: read-only here, no limits).
	Source    string     `json:"source"`
	CreatedAt time.Time  `json:"created_at,omitzero"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// KeyCreated is the answer of POST /v2/keys: the only time the key itself
// is shown.
type KeyCreated struct {
	Key string `json:"key"`
	KeyView
}

// KeyUpdate is the body of PATCH /v2/keys/{name}: the fields given replace
// the key's (limits as a whole).
type KeyUpdate struct {
	Role   *string    `json:"role,omitempty"`
	Weight *int       `json:"weight,omitempty"`
	Limits *KeyLimits `json:"limits,omitempty"`
}

// SessionRequest is the body of POST /v2/sessions.
type SessionRequest struct {
	// SessionID is generated when absent (CheckID rules when given).
	SessionID string `json:"session_id,omitempty"`
	// TokenBudget (prompt + generated tokens) and TimeBudgetMs (service
	// time: admission to the end, summed over the session's tasks) are
	// unlimited when 0.
	TokenBudget  int64 `json:"token_budget,omitempty"`
	TimeBudgetMs int64 `json:"time_budget_ms,omitempty"`
	// TTLMs is how long the session lives after its last use (default
	// DefaultSessionTTLMs, at most MaxSessionTTLMs).
	TTLMs int64 `json:"ttl_ms,omitempty"`
}

// Session limits.
const (
	DefaultSessionTTLMs = 10 * 60 * 1000
	MaxSessionTTLMs     = 7 * 24 * 60 * 60 * 1000
)

// SessionView is GET /v2/sessions/{id}: metadata only, never prompts or
// outputs.
type SessionView struct {
	SessionID    string    `json:"session_id"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	TTLMs        int64     `json:"ttl_ms"`
	TTLLeftMs    int64     `json:"ttl_left_ms"`
	Turns        int       `json:"turns"`
	TokensUsed   int64     `json:"tokens_used"`
	TokenBudget  int64     `json:"token_budget,omitempty"`
	TimeUsedMs   int64     `json:"time_used_ms"`
	TimeBudgetMs int64     `json:"time_budget_ms,omitempty"`
	// Remaining figures are absent when the budget is unlimited.
	TokensRemaining *int64 `json:"tokens_remaining,omitempty"`
	TimeRemainingMs *int64 `json:"time_remaining_ms,omitempty"`
	// WorkerID is the worker holding the session's KV cache (its last
	// task's worker); KVWarm whether that worker still holds it.
	WorkerID string `json:"worker_id,omitempty"`
	KVWarm   bool   `json:"kv_warm"`
}

// Budget is what a session has left, on the terminal event of a task that
// names it (End.Budget, Error.Budget) and in the X-Budget-Tokens-Remaining /
// X-Budget-Time-Remaining-Ms headers; nil fields are unlimited.
type Budget struct {
	TokensRemaining *int64 `json:"tokens_remaining,omitempty"`
	TimeRemainingMs *int64 `json:"time_remaining_ms,omitempty"`
}

// UsageRow is one key's use of one model over one hour (or the sum of rows).
type UsageRow struct {
	Key   string `json:"key"`
	Model string `json:"model"`
	// Hour is the UTC hour the row covers (zero in totals).
	Hour               time.Time        `json:"hour,omitzero"`
	Requests           int64            `json:"requests"`
	PromptTokens       int64            `json:"prompt_tokens"`
	CachedPromptTokens int64            `json:"cached_prompt_tokens"`
	GeneratedTokens    int64            `json:"generated_tokens"`
	Errors             map[string]int64 `json:"errors,omitempty"`
	QueueMs            float64          `json:"queue_ms"`
	ServiceMs          float64          `json:"service_ms"`
}

// Add adds b's sums to r (r's key, model and hour stay).
func (r *UsageRow) Add(b UsageRow) {
	r.Requests += b.Requests
	r.PromptTokens += b.PromptTokens
	r.CachedPromptTokens += b.CachedPromptTokens
	r.GeneratedTokens += b.GeneratedTokens
	r.QueueMs += b.QueueMs
	r.ServiceMs += b.ServiceMs
	for code, n := range b.Errors {
		if r.Errors == nil {
			r.Errors = map[string]int64{}
		}
		r.Errors[code] += n
	}
}

// Usage is GET /v2/usage?key=&model=&since=&until=: hourly rows, oldest
// first, and their totals.
type Usage struct {
	Since  time.Time  `json:"since"`
	Until  time.Time  `json:"until"`
	Rows   []UsageRow `json:"rows"`
	Totals UsageRow   `json:"totals"`
}
