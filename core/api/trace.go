package api

// TraceRecord is one line of a traffic trace (JSON Lines): what `llorch
// orchestrate --trace-file` appends for every finished task, and what `llorch
// ctl bench --trace` replays. It holds lengths and timings only; the prompt
// (Prompt or Messages) only when the orchestrator was told to record it.
type TraceRecord struct {
	// ArrivalMs is when the task was admitted, in Unix milliseconds. A replay
	// keeps the gaps between records.
	ArrivalMs int64  `json:"arrival_ms"`
	Model     string `json:"model"`
	// API is the door the task came in by: "tasks" (/v2/tasks), "chat"
	// (/v1/chat/completions) or "completions" (/v1/completions).
	API string `json:"api"`
	// Session is a fingerprint of the task's session id (never the id
	// itself): tasks of one conversation share it.
	Session      string `json:"session,omitempty"`
	Priority     string `json:"priority,omitempty"`
	PromptTokens int    `json:"prompt_tokens"`
	CachedTokens int    `json:"cached_tokens"`
	// MaxTokens is what the client asked for; OutputTokens what it got.
	MaxTokens    int     `json:"max_tokens"`
	OutputTokens int     `json:"output_tokens"`
	QueueMs      float64 `json:"queue_ms"`
	TTFTMs       float64 `json:"ttft_ms"`
	TotalMs      float64 `json:"total_ms"`
	// Status is the task's final state (succeeded, failed, cancelled); Code the
	// error code when it failed.
	Status string `json:"status"`
	Code   string `json:"code,omitempty"`
	// Prompt or Messages: the request's text, with --trace-prompts only.
	Prompt   string    `json:"prompt,omitempty"`
	Messages []Message `json:"messages,omitempty"`
}
