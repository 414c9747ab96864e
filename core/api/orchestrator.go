package api

import (
	"fmt"
	"time"
)

// Orchestrator error codes (in addition to the worker's).
const (
	CodeModelNotFound     = "MODEL_NOT_FOUND"
	CodePoolUnavailable   = "POOL_UNAVAILABLE"
	CodeQueueFull         = "QUEUE_FULL"
	CodeQueueFullDropped  = "QUEUE_FULL_DROPPED"
	CodeDeadlineUnmet     = "DEADLINE_UNMET"
	CodeWorkerLost        = "WORKER_LOST"
	CodeTaskNotFound      = "TASK_NOT_FOUND"
	CodeWorkerNotFound    = "WORKER_NOT_FOUND"
	CodeForbidden         = "FORBIDDEN"
	CodeNoWorkerAvailable = "NO_WORKER_AVAILABLE"
	// CodeNoCapacity: a declared model fits on no pool (its memory need is
	// more than the largest free memory of the pools it may use).
	CodeNoCapacity = "NO_CAPACITY"
)

// Task priorities.
const (
	PriorityInteractive = "interactive"
	PriorityBatch       = "batch"
)

// Task statuses.
const (
	TaskQueued    = "queued"
	TaskRunning   = "running"
	TaskSucceeded = "succeeded"
	TaskFailed    = "failed"
	TaskCancelled = "cancelled"
)

// Placement constrains where a task may run. Pins never fall back: a task
// pinned to a worker or pool waits for it (or fails) rather than running
// elsewhere.
type Placement struct {
	PinWorker string `json:"pin_worker,omitempty"`
	PinPool   string `json:"pin_pool,omitempty"`
}

// TaskRequest is the body of POST /v2/tasks: the worker's execute fields plus
// the model and the orchestrator's scheduling fields.
type TaskRequest struct {
	Model      string     `json:"model"`
	Priority   string     `json:"priority,omitempty"`
	SessionID  string     `json:"session_id,omitempty"`
	DeadlineMs int64      `json:"deadline_ms,omitempty"`
	Placement  *Placement `json:"placement,omitempty"`
	// Labels are free-form key/values that routing scripts can read.
	Labels map[string]string `json:"labels,omitempty"`
	ExecuteRequest
}

// Limits on a task request.
const (
	MaxModelLength     = 256
	MaxSessionIDLength = 256
	MaxLabels          = 32
)

// Validate checks every field and returns an INVALID_REQUEST error listing all
// bad fields, or nil. An empty priority means interactive.
func (r *TaskRequest) Validate() *Error {
	var fe []FieldError
	add := func(field, constraint, format string, args ...any) {
		fe = append(fe, FieldError{Field: field, Constraint: constraint, Message: fmt.Sprintf(format, args...)})
	}
	switch {
	case r.Model == "":
		add("model", "required", "is required")
	case len(r.Model) > MaxModelLength || !printableASCII(r.Model):
		add("model", "printable_ascii<=256", "must be at most %d printable ASCII characters", MaxModelLength)
	}
	switch r.Priority {
	case "", PriorityInteractive, PriorityBatch:
	default:
		add("priority", "enum", "must be interactive or batch, got %q", r.Priority)
	}
	if len(r.SessionID) > MaxSessionIDLength || !printableASCII(r.SessionID) {
		add("session_id", "printable_ascii<=256", "must be at most %d printable ASCII characters", MaxSessionIDLength)
	}
	if r.DeadlineMs < 0 {
		add("deadline_ms", ">=0", "must not be negative, got %d", r.DeadlineMs)
	}
	if p := r.Placement; p != nil {
		if p.PinWorker != "" && p.PinPool != "" {
			add("placement", "exclusive", "give pin_worker or pin_pool, not both")
		}
		if why := CheckID(p.PinWorker); p.PinWorker != "" && why != "" {
			add("placement.pin_worker", "id", "must be a worker id: %s", why)
		}
		if why := CheckID(p.PinPool); p.PinPool != "" && why != "" {
			add("placement.pin_pool", "id", "must be a pool name: %s", why)
		}
	}
	if msg := checkLabels(r.Labels); msg != "" {
		add("labels", "labels", "%s", msg)
	}
	if r.JobID != "" {
		add("job_id", "forbidden", "is set by the orchestrator")
	}
	if len(r.ResumeTokens) > 0 {
		add("resume_tokens", "forbidden", "is set by the orchestrator")
	}
	if e := r.ExecuteRequest.Validate(); e != nil {
		fe = append(fe, e.Fields...)
	}
	if len(fe) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalidRequest, Message: "invalid request", Fields: fe}
}

// PriorityOrDefault returns the priority, interactive when unset.
func (r *TaskRequest) PriorityOrDefault() string {
	if r.Priority == "" {
		return PriorityInteractive
	}
	return r.Priority
}

// TaskAccepted is the 202 body of POST /v2/tasks.
type TaskAccepted struct {
	TaskID           string `json:"task_id"`
	Status           string `json:"status"`
	QueuePosition    int    `json:"queue_position"`
	PredictedStartMs int64  `json:"predicted_start_ms"`
	EventsURL        string `json:"events_url"`
}

// Rejection explains why one worker was not chosen for a task.
type Rejection struct {
	WorkerID string `json:"worker_id"`
	Reason   string `json:"reason"`
}

// CandidateScore is one candidate of a placement and how it scored.
type CandidateScore struct {
	WorkerID string  `json:"worker_id"`
	Score    float64 `json:"score"`
	// SlotsFree and Load are what the scheduler saw.
	SlotsFree int     `json:"slots_free"`
	Load      float64 `json:"load"`
	// ExpectedCachedTokens is how many prompt tokens the prefix index
	// expects this worker to hold in its KV cache already.
	ExpectedCachedTokens int `json:"expected_cached_tokens"`
}

// DrainRequest is the optional body of POST /v2/workers/{id}/drain. With
// Migrate the tasks running on the worker move to other workers of the same
// model at once, continuing from the tokens already sent; without it they
// finish where they are.
type DrainRequest struct {
	Migrate bool `json:"migrate,omitempty"`
}

// Explanation is the scheduler's account of a placement decision.
type Explanation struct {
	At       time.Time   `json:"at"`
	Chosen   string      `json:"chosen,omitempty"`
	Score    float64     `json:"score,omitempty"`
	Summary  string      `json:"summary"`
	Rejected []Rejection `json:"rejected,omitempty"`
	// Candidates are the workers that passed the filter with their scores,
	// best first (at most 32).
	Candidates []CandidateScore `json:"candidates,omitempty"`
	// Routing tells what a routing script decided, or why it was ignored.
	Routing string `json:"routing,omitempty"`
}

// TaskStatus is the body of GET /v2/tasks/{id}.
type TaskStatus struct {
	TaskID        string       `json:"task_id"`
	Model         string       `json:"model"`
	Priority      string       `json:"priority"`
	Status        string       `json:"status"`
	QueuePosition int          `json:"queue_position,omitempty"`
	WorkerID      string       `json:"worker_id,omitempty"`
	Attempts      int          `json:"attempts"`
	CreatedAt     time.Time    `json:"created_at"`
	StartedAt     *time.Time   `json:"started_at,omitempty"`
	FinishedAt    *time.Time   `json:"finished_at,omitempty"`
	Explanation   *Explanation `json:"explanation,omitempty"`
	Text          string       `json:"text,omitempty"`
	TokensOut     int          `json:"tokens_out"`
	End           *End         `json:"end,omitempty"`
	Error         *Error       `json:"error,omitempty"`
}

// WorkerRegistration is the body of POST /v2/workers/register.
type WorkerRegistration struct {
	WorkerID  string            `json:"worker_id"`
	URL       string            `json:"url"`
	Model     ModelInfo         `json:"model"`
	Backend   string            `json:"backend"`
	Slots     int               `json:"slots"`
	VRAMBytes uint64            `json:"vram_bytes"`
	Pool      string            `json:"pool,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Validate checks a registration and normalizes its URL (see BaseURL).
func (r *WorkerRegistration) Validate() *Error {
	var fe []FieldError
	add := func(field, constraint, msg string) {
		fe = append(fe, FieldError{Field: field, Constraint: constraint, Message: msg})
	}
	if why := CheckID(r.WorkerID); why != "" {
		add("worker_id", "id", why)
	}
	if u, err := BaseURL(r.URL); err != nil {
		add("url", "url", "must be http(s)://host:port: "+err.Error())
	} else {
		r.URL = u
	}
	if why := CheckID(r.Model.ID); why != "" {
		add("model.id", "id", why)
	}
	if r.Slots < 1 || r.Slots > MaxSlots {
		add("slots", "1..4096", "must be between 1 and 4096")
	}
	if why := CheckID(r.Pool); r.Pool != "" && why != "" {
		add("pool", "id", why)
	}
	if r.Model.Ctx < 0 || r.Model.Ctx > MaxContext {
		add("model.ctx", "0..16777216", "must be between 0 and 16777216")
	}
	if len(r.Backend) > 32 || !printableASCII(r.Backend) {
		add("backend", "printable_ascii<=32", "must be at most 32 printable ASCII characters")
	}
	if msg := checkLabels(r.Labels); msg != "" {
		add("labels", "labels", msg)
	}
	if len(fe) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalidRequest, Message: "invalid registration", Fields: fe}
}

// MaxContext bounds a context size anyone reports (16M tokens).
const MaxContext = 1 << 24

// MaxSlots bounds a worker's slots.
const MaxSlots = 4096

// checkLabels checks free-form labels: at most MaxLabels, keys 1..64 and
// values 0..256 printable ASCII bytes (no spaces in keys). It returns "" when
// they are valid.
func checkLabels(l map[string]string) string {
	if len(l) > MaxLabels {
		return fmt.Sprintf("at most %d labels", MaxLabels)
	}
	for k, v := range l {
		if k == "" || len(k) > 64 || !printableASCII(k) {
			return "label keys are 1 to 64 printable ASCII characters without spaces"
		}
		if len(v) > 256 || !printableOrSpace(v) {
			return fmt.Sprintf("label %s: values are at most 256 printable ASCII characters", k)
		}
	}
	return ""
}

func printableOrSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Heartbeat is the body of POST /v2/workers/{id}/heartbeat.
type Heartbeat struct {
	Status          string  `json:"status"`
	SlotsBusy       int     `json:"slots_busy"`
	SlotsTotal      int     `json:"slots_total"`
	TokensPerSecond float64 `json:"tokens_per_second"`
	// RSSBytes and VRAMBytes are the memory the worker process uses now;
	// the fleet learns placement from them.
	RSSBytes  uint64 `json:"rss_bytes,omitempty"`
	VRAMBytes uint64 `json:"vram_bytes,omitempty"`
}

// Validate checks a heartbeat's numbers and status.
func (h *Heartbeat) Validate() *Error {
	var fe []FieldError
	switch h.Status {
	case StatusLoading, StatusReady, StatusDraining, StatusFailed:
	default:
		fe = append(fe, FieldError{Field: "status", Constraint: "enum", Message: "must be loading, ready, draining or failed"})
	}
	if h.SlotsTotal < 0 || h.SlotsTotal > MaxSlots {
		fe = append(fe, FieldError{Field: "slots_total", Constraint: "0..4096", Message: "must be between 0 and 4096"})
	}
	if h.SlotsBusy < 0 || h.SlotsBusy > MaxSlots {
		fe = append(fe, FieldError{Field: "slots_busy", Constraint: "0..4096", Message: "must be between 0 and 4096"})
	}
	if v := h.TokensPerSecond; isBad(v) || v < 0 || v > 1e9 {
		fe = append(fe, FieldError{Field: "tokens_per_second", Constraint: "0..1e9", Message: "must be a finite number between 0 and 1e9"})
	}
	if len(fe) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalidRequest, Message: "invalid heartbeat", Fields: fe}
}

// Worker states in the orchestrator's registry.
const (
	WorkerHealthy   = "healthy"
	WorkerUnhealthy = "unhealthy"
	WorkerDead      = "dead"
	WorkerDraining  = "draining"
)

// WorkerView is one worker as GET /v2/workers shows it.
type WorkerView struct {
	WorkerRegistration
	State           string    `json:"state"`
	SlotsBusy       int       `json:"slots_busy"`
	Assigned        int       `json:"assigned"`
	TokensPerSecond float64   `json:"tokens_per_second"`
	RSSBytes        uint64    `json:"rss_bytes,omitempty"`
	VRAMUsedBytes   uint64    `json:"vram_used_bytes,omitempty"`
	LastSeen        time.Time `json:"last_seen"`
	RegisteredAt    time.Time `json:"registered_at"`
}
