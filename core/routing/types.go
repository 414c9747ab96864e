package routing

import (
	"errors"
	"time"
)

// Stages: the value of the script's global `stage`.
const (
	StageAdmit = "admit"
	StagePlace = "place"
)

// Task is what a script sees of a task (the global `task`).
type Task struct {
	ID           string `json:"id"`
	Model        string `json:"model"`
	Priority     string `json:"priority"`
	MaxTokens    int    `json:"max_tokens"`
	PromptTokens int    `json:"prompt_tokens"`
	SessionID    string `json:"session_id,omitempty"`
	// Key is the API key's fingerprint, never the key.
	Key    string            `json:"key,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Headers holds the request headers the operator whitelisted. Scripts
	// see the names in lower case (task.headers["x-tenant"]).
	Headers map[string]string `json:"headers,omitempty"`
}

// Candidate is a worker that passed the built-in filters (an element of the
// global `candidates`).
type Candidate struct {
	ID              string  `json:"id"`
	Pool            string  `json:"pool"`
	Model           string  `json:"model"`
	SlotsFree       int     `json:"slots_free"`
	SlotsTotal      int     `json:"slots_total"`
	Load            float64 `json:"load"`
	TokensPerSecond float64 `json:"tokens_per_second"`
	// CachedPrefix is the prompt tokens the orchestrator's prefix index
	// expects the worker to hold in its KV cache (at least 1 when it served
	// the task's session last).
	CachedPrefix int               `json:"cached_prefix"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// AdmitInput is the input of the admit stage. Queue holds the queue depth per
// model and priority: Queue[model][priority]. A zero Now means time.Now().
type AdmitInput struct {
	Task  Task
	Queue map[string]map[string]int
	Now   time.Time
}

// PlaceInput is the input of the place stage. A zero Now means time.Now().
type PlaceInput struct {
	Task       Task
	Candidates []Candidate
	Now        time.Time
}

// Admit actions. The empty action means the built-in policy decides.
const (
	ActionAdmit  = "admit"
	ActionReject = "reject"
)

// Place actions. The empty action means the built-in policy decides.
const (
	ActionDispatch = "dispatch"
	ActionWait     = "wait"
	ActionScore    = "score"
)

// AdmitDecision is a validated admit decision. Action "" leaves the decision
// to the built-in policy. For "admit", Priority is "batch", "interactive" or
// "" (keep the task's priority). For "reject", Code is non-empty and Status is
// 400, 403 or 429.
type AdmitDecision struct {
	Action   string
	Priority string
	Code     string
	Message  string
	Status   int
}

// PlaceDecision is a validated place decision. Action "" leaves the decision
// to the built-in policy. For "dispatch", Worker is one of the candidates. For
// "wait", RetryAfterMs is 1..600000. For "score", every key of Scores is a
// candidate and every value is finite; the scheduler adds them to its own
// scores (higher is better).
type PlaceDecision struct {
	Action       string
	Worker       string
	RetryAfterMs int64
	Scores       map[string]float64
}

// Outcome says how a script call ended; it is the `outcome` label of
// llorch_routing_calls_total.
type Outcome string

// Outcomes. Everything but OutcomeOK means the built-in policy decides.
const (
	OutcomeOK       Outcome = "ok"        // the script decided
	OutcomeDefault  Outcome = "default"   // no decision set (or no script)
	OutcomeError    Outcome = "error"     // runtime error (or the script is busy)
	OutcomeTimeout  Outcome = "timeout"   // ran past its time budget
	OutcomeAllocCap Outcome = "alloc_cap" // allocation cap or size limit
	OutcomeInvalid  Outcome = "invalid"   // the decision failed validation
)

// Fallback reports whether the outcome means the script failed and the
// built-in policy decided instead (error, timeout, alloc_cap, invalid).
func (o Outcome) Fallback() bool {
	switch o {
	case OutcomeError, OutcomeTimeout, OutcomeAllocCap, OutcomeInvalid:
		return true
	}
	return false
}

// Result describes one script call. Note is one line for the task
// explanation, e.g. "script: dispatch w2" or "script ignored: timeout after
// 50ms"; it is empty when no script is loaded. Err is set when Outcome is a
// fallback.
type Result struct {
	Outcome  Outcome
	Err      error
	Note     string
	Duration time.Duration
}

// Config sets the limits of every script call. The zero value is usable.
type Config struct {
	// Timeout is the time budget of one call (default 50ms). The caller gets
	// its answer within the budget even if the script does not stop.
	Timeout time.Duration
	// MaxAllocs caps the objects one call may allocate (default 100000).
	MaxAllocs int64
	// Observe, when set, is called after every script call (not when no
	// script is loaded) with the stage, the outcome and the call's duration:
	// the orchestrator feeds llorch_routing_calls_total{stage,outcome} and
	// llorch_routing_seconds from it. It must be fast and safe for
	// concurrent use.
	Observe func(stage string, o Outcome, d time.Duration)
}

// Defaults of Config.
const (
	DefaultTimeout   = 50 * time.Millisecond
	DefaultMaxAllocs = 100000
)

func (c Config) withDefaults() (Config, error) {
	if c.Timeout < 0 {
		return c, errors.New("routing: negative timeout")
	}
	if c.MaxAllocs < 0 {
		return c, errors.New("routing: negative MaxAllocs")
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAllocs == 0 {
		c.MaxAllocs = DefaultMaxAllocs
	}
	return c, nil
}

// Snapshot is what GET /v2/routing/snapshot returns and what `llorch
// orchestrate routing replay --snapshot` reads: the queue, the tasks waiting
// in it and the workers, at one moment.
type Snapshot struct {
	Now        time.Time                 `json:"now"`
	Queue      map[string]map[string]int `json:"queue"`
	Tasks      []Task                    `json:"tasks"`
	Candidates []Candidate               `json:"candidates"`
}

// Errors wrapped by Result.Err and returned by Compile.
var (
	ErrCompile  = errors.New("routing: compile error")
	ErrRuntime  = errors.New("routing: runtime error")
	ErrTimeout  = errors.New("routing: timeout")
	ErrAllocCap = errors.New("routing: allocation cap")
	ErrInvalid  = errors.New("routing: invalid decision")
	// ErrBusy: too many earlier calls of this script are still running past
	// their budget, so it is not started again until they finish. Every step
	// a script takes is bounded, so this takes a defect; it is the backstop.
	ErrBusy = errors.New("routing: script busy")
)
