package api

// SSE event names, in the order a stream carries them: queued (orchestrator
// only), started, token*, metrics*, then exactly one of end or error.
const (
	EventQueued  = "queued"
	EventStarted = "started"
	EventToken   = "token"
	EventMetrics = "metrics"
	EventEnd     = "end"
	EventError   = "error"
)

// Stop reasons reported in End.
const (
	StopMaxTokens    = "MAX_TOKENS"
	StopEOS          = "EOS"
	StopSequence     = "STOP_SEQUENCE"
	StopContextLimit = "CONTEXT_LIMIT"
)

// Queued is the data of a "queued" event.
type Queued struct {
	Position         int   `json:"position"`
	PredictedStartMs int64 `json:"predicted_start_ms"`
}

// Started is the data of a "started" event.
type Started struct {
	JobID        string `json:"job_id"`
	Model        string `json:"model"`
	WorkerID     string `json:"worker_id"`
	Seed         uint32 `json:"seed"`
	Slot         int    `json:"slot"`
	PromptTokens int    `json:"prompt_tokens"`
	CachedTokens int    `json:"cached_tokens"`
}

// Token is the data of a "token" event: the text that generated token number I
// (0-based) made safe to emit. T may be empty while text is held back (an
// incomplete UTF-8 character, or a possible start of a stop sequence).
type Token struct {
	T string `json:"t"`
	I int    `json:"i"`
}

// End is the data of the terminal "end" event.
type End struct {
	TokensOut           int     `json:"tokens_out"`
	PromptTokens        int     `json:"prompt_tokens"`
	CachedTokens        int     `json:"cached_tokens"`
	PrefillTimeMs       float64 `json:"prefill_time_ms"`
	DecodeTimeMs        float64 `json:"decode_time_ms"`
	TTFTMs              float64 `json:"ttft_ms"`
	StopReason          string  `json:"stop_reason"`
	StopSequenceMatched string  `json:"stop_sequence_matched,omitempty"`
}
