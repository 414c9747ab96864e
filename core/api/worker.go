package api

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Limits on an execute request that do not depend on the loaded model.
const (
	MaxStopSequences = 4
	MaxStopLength    = 100
	MaxMessages      = 1024
	MaxJobIDLength   = 128
	MaxLogitBias     = 1024
	// MaxResumeTokens bounds resume_tokens (a worker's slot context bounds
	// it further).
	MaxResumeTokens = 1 << 18
	// MaxRequestBytes bounds a request body; larger bodies get 413.
	MaxRequestBytes = 4 << 20
)

// Sampling defaults, as in llama.cpp.
const (
	DefaultMaxTokens         = 512
	DefaultTemperature       = 0.8
	DefaultTopK              = 40
	DefaultTopP              = 0.95
	DefaultMinP              = 0.05
	DefaultRepetitionPenalty = 1.0
)

// Message is one chat message.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
	// ToolCalls are the calls an assistant turn made.
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
	// ToolCallID is the call a "tool" message answers; Name, optionally, its
	// function.
	ToolCallID string `json:"tool_call_id,omitempty"`
	Name       string `json:"name,omitempty"`
}

// ExecuteRequest is the body of a worker's POST /execute. Pointer fields are
// optional; Normalize fills them with defaults.
type ExecuteRequest struct {
	JobID             string    `json:"job_id,omitempty"`
	Prompt            string    `json:"prompt,omitempty"`
	Messages          []Message `json:"messages,omitempty"`
	MaxTokens         *int      `json:"max_tokens,omitempty"`
	Temperature       *float64  `json:"temperature,omitempty"`
	TopK              *int      `json:"top_k,omitempty"`
	TopP              *float64  `json:"top_p,omitempty"`
	MinP              *float64  `json:"min_p,omitempty"`
	RepetitionPenalty *float64  `json:"repetition_penalty,omitempty"`
	Seed              *int64    `json:"seed,omitempty"`
	Stop              []string  `json:"stop,omitempty"`
	// LogitBias maps token ids (as decimal strings, like OpenAI's API) to a bias
	// added to their logits; -100 effectively bans a token, +100 forces it.
	LogitBias map[string]float64 `json:"logit_bias,omitempty"`
	// IgnoreEOS keeps generating past end-of-generation tokens (benchmarks), as
	// llama-server's ignore_eos.
	IgnoreEOS bool `json:"ignore_eos,omitempty"`
	// CachePrompt, as llama-server's cache_prompt (default true), lets the
	// worker reuse a cached prefix of the prompt. false evaluates the whole
	// prompt afresh, which makes the output independent of what ran before.
	CachePrompt *bool `json:"cache_prompt,omitempty"`
	// ResumeTokens continues a generation: the vocabulary ids of the tokens
	// this request already generated and streamed, in order (the id of each
	// token event). The worker evaluates prompt + these tokens, feeds them to
	// the sampler and the text streamer without emitting them, and streams
	// the rest with indexes from len(ResumeTokens). max_tokens counts them.
	ResumeTokens []int32 `json:"resume_tokens,omitempty"`

	// FrequencyPenalty and PresencePenalty are OpenAI's (-2..2), applied by
	// llama.cpp's penalty sampler over the last 64 tokens.
	FrequencyPenalty *float64 `json:"frequency_penalty,omitempty"`
	PresencePenalty  *float64 `json:"presence_penalty,omitempty"`
	// Grammar constrains the output with a GBNF grammar (llama.cpp's format,
	// root rule "root").
	Grammar string `json:"grammar,omitempty"`
	// ResponseFormat constrains the output to JSON (an object, or one that
	// validates against a schema).
	ResponseFormat *ResponseFormat `json:"response_format,omitempty"`
	// Tools the model may call (messages only), ToolChoice whether it must,
	// and ParallelToolCalls whether one turn may make several calls (default
	// true).
	Tools             []Tool      `json:"tools,omitempty"`
	ToolChoice        *ToolChoice `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool       `json:"parallel_tool_calls,omitempty"`
	// Logprobs adds each generated token's log-probability to its token
	// event, with the TopLogprobs (0..20) most likely alternatives.
	Logprobs    bool `json:"logprobs,omitempty"`
	TopLogprobs int  `json:"top_logprobs,omitempty"`
	// SessionID is set by the orchestrator for a task of a session created
	// by POST /v2/sessions: the worker remembers which slot's cache the
	// session left, so DELETE /v1/sessions/{id} can forget it. (In a
	// TaskRequest the outer session_id shadows it: clients cannot set it.)
	SessionID string `json:"session_id,omitempty"`
}

// Validate checks every field that can be checked without the model and returns
// an INVALID_REQUEST error listing all bad fields, or nil.
func (r *ExecuteRequest) Validate() *Error {
	var fe []FieldError
	add := func(field, constraint, format string, args ...any) {
		fe = append(fe, FieldError{Field: field, Constraint: constraint, Message: fmt.Sprintf(format, args...)})
	}
	if len(r.SessionID) > MaxSessionIDLength || !printableASCII(r.SessionID) {
		add("session_id", "printable_ascii<=256", "must be at most %d printable ASCII characters", MaxSessionIDLength)
	}
	if len(r.JobID) > MaxJobIDLength || !printableASCII(r.JobID) {
		add("job_id", "printable_ascii<=128", "must be at most %d printable ASCII characters", MaxJobIDLength)
	}
	switch {
	case r.Prompt == "" && len(r.Messages) == 0:
		add("prompt", "required", "one of prompt or messages is required")
	case r.Prompt != "" && len(r.Messages) > 0:
		add("messages", "exclusive", "give either prompt or messages, not both")
	}
	if r.Prompt != "" && !utf8.ValidString(r.Prompt) {
		add("prompt", "utf8", "must be valid UTF-8")
	}
	if len(r.Messages) > MaxMessages {
		add("messages", "max_items", "at most %d messages", MaxMessages)
	}
	for i, m := range r.Messages {
		switch m.Role {
		case "system", "user", "assistant":
		case "tool":
			if m.ToolCallID == "" {
				add(fmt.Sprintf("messages[%d].tool_call_id", i), "required", "a tool message must name the call it answers")
			}
		default:
			add(fmt.Sprintf("messages[%d].role", i), "enum", "must be system, user, assistant or tool, got %q", m.Role)
		}
		if len(m.ToolCalls) > 0 && m.Role != "assistant" {
			add(fmt.Sprintf("messages[%d].tool_calls", i), "assistant_only", "only an assistant message makes tool calls")
		}
		if !utf8.ValidString(m.Content) {
			add(fmt.Sprintf("messages[%d].content", i), "utf8", "must be valid UTF-8")
		}
	}
	if r.MaxTokens != nil && *r.MaxTokens < 1 {
		add("max_tokens", ">=1", "must be at least 1, got %d", *r.MaxTokens)
	}
	if v := r.Temperature; v != nil && (isBad(*v) || *v < 0 || *v > 2) {
		add("temperature", "0..2", "must be between 0 and 2, got %v", *v)
	}
	if v := r.TopK; v != nil && *v < 0 {
		add("top_k", ">=0", "must be 0 (disabled) or more, got %d", *v)
	}
	if v := r.TopP; v != nil && (isBad(*v) || *v < 0 || *v > 1) {
		add("top_p", "0..1", "must be between 0 and 1, got %v", *v)
	}
	if v := r.MinP; v != nil && (isBad(*v) || *v < 0 || *v > 1) {
		add("min_p", "0..1", "must be between 0 and 1, got %v", *v)
	}
	if v := r.RepetitionPenalty; v != nil && (isBad(*v) || *v <= 0 || *v > 10) {
		add("repetition_penalty", "(0,10]", "must be above 0 and at most 10, got %v", *v)
	}
	if v := r.Seed; v != nil && (*v < 0 || *v > math.MaxUint32) {
		add("seed", "0..4294967295", "must be between 0 and 4294967295, got %d", *v)
	}
	if len(r.Stop) > MaxStopSequences {
		add("stop", "max_items", "at most %d stop sequences, got %d", MaxStopSequences, len(r.Stop))
	}
	for i, s := range r.Stop {
		if s == "" || utf8.RuneCountInString(s) > MaxStopLength || !utf8.ValidString(s) {
			add(fmt.Sprintf("stop[%d]", i), "1..100_chars", "must be 1 to %d characters of valid UTF-8", MaxStopLength)
		}
	}
	if len(r.LogitBias) > MaxLogitBias {
		add("logit_bias", "max_items", "at most %d entries", MaxLogitBias)
	}
	for _, k := range slices.Sorted(maps.Keys(r.LogitBias)) {
		v := r.LogitBias[k]
		if id, err := strconv.ParseInt(k, 10, 32); err != nil || id < 0 {
			add("logit_bias", "token_id", "key %q is not a token id", k)
		}
		if isBad(v) || v < -100 || v > 100 {
			add("logit_bias", "-100..100", "bias for %s must be between -100 and 100", k)
		}
	}
	if n := len(r.ResumeTokens); n > MaxResumeTokens {
		add("resume_tokens", "max_items", "at most %d tokens, got %d", MaxResumeTokens, n)
	} else if r.MaxTokens != nil && *r.MaxTokens >= 1 && n >= *r.MaxTokens {
		add("resume_tokens", "<max_tokens", "must be fewer than max_tokens (%d), which counts the resumed tokens; got %d", *r.MaxTokens, n)
	}
	for i, t := range r.ResumeTokens {
		if t < 0 {
			add("resume_tokens", "token_id", "resume_tokens[%d] = %d is not a token id", i, t)
			break
		}
	}
	if r.Prompt != "" && (len(r.Tools) > 0 || r.ToolChoice != nil) {
		add("tools", "needs_messages", "tools need messages (a chat), not a prompt")
	}
	r.validateFeatures(add)
	if len(fe) == 0 {
		return nil
	}
	return &Error{Code: CodeInvalidRequest, Message: "invalid request", Fields: fe}
}

// Params are the resolved sampling parameters of a request.
type Params struct {
	MaxTokens         int
	Temperature       float64
	TopK              int
	TopP              float64
	MinP              float64
	RepetitionPenalty float64
	Seed              uint32
	// SeedGiven tells whether the client chose the seed.
	SeedGiven bool
	Stop      []string
	LogitBias map[int32]float64
	IgnoreEOS bool
	// NoCache disables prompt-cache reuse for this request.
	NoCache bool
	// FrequencyPenalty and PresencePenalty: 0 = off.
	FrequencyPenalty float64
	PresencePenalty  float64
	// Grammar is the GBNF grammar the output must follow ("" = none): the
	// request's own, or one the worker built from its response format or tools.
	Grammar string
	// Logprobs and TopLogprobs as in the request.
	Logprobs    bool
	TopLogprobs int
}

// Resolve returns the sampling parameters with defaults applied. seed is used
// when the request has none. Call it only after Validate returned nil.
func (r *ExecuteRequest) Resolve(seed uint32) Params {
	p := Params{
		MaxTokens:         DefaultMaxTokens,
		Temperature:       DefaultTemperature,
		TopK:              DefaultTopK,
		TopP:              DefaultTopP,
		MinP:              DefaultMinP,
		RepetitionPenalty: DefaultRepetitionPenalty,
		Seed:              seed,
		Stop:              r.Stop,
		IgnoreEOS:         r.IgnoreEOS,
		NoCache:           r.CachePrompt != nil && !*r.CachePrompt,
		Grammar:           r.Grammar,
		Logprobs:          r.Logprobs,
		TopLogprobs:       r.TopLogprobs,
	}
	if r.FrequencyPenalty != nil {
		p.FrequencyPenalty = *r.FrequencyPenalty
	}
	if r.PresencePenalty != nil {
		p.PresencePenalty = *r.PresencePenalty
	}
	if r.MaxTokens != nil {
		p.MaxTokens = *r.MaxTokens
	}
	if r.Temperature != nil {
		p.Temperature = *r.Temperature
	}
	if r.TopK != nil {
		p.TopK = *r.TopK
	}
	if r.TopP != nil {
		p.TopP = *r.TopP
	}
	if r.MinP != nil {
		p.MinP = *r.MinP
	}
	if r.RepetitionPenalty != nil {
		p.RepetitionPenalty = *r.RepetitionPenalty
	}
	if r.Seed != nil {
		p.Seed, p.SeedGiven = uint32(*r.Seed), true
	}
	if len(r.LogitBias) > 0 {
		p.LogitBias = make(map[int32]float64, len(r.LogitBias))
		for k, v := range r.LogitBias {
			id, _ := strconv.ParseInt(k, 10, 32)
			p.LogitBias[int32(id)] = v
		}
	}
	return p
}

// CancelRequest is the body of a worker's POST /cancel.
type CancelRequest struct {
	JobID string `json:"job_id"`
}

// CancelResponse answers POST /cancel.
type CancelResponse struct {
	JobID string `json:"job_id"`
	// Found tells whether the job was running (or queued) when the cancel arrived.
	Found bool `json:"found"`
}

// ModelInfo describes the model a worker serves.
type ModelInfo struct {
	ID       string `json:"id"`
	Path     string `json:"path,omitempty"`
	Arch     string `json:"arch,omitempty"`
	Ctx      int    `json:"ctx"`
	CtxTrain int    `json:"ctx_train,omitempty"`
	Digest   string `json:"digest,omitempty"`
	Params   uint64 `json:"params,omitempty"`
	Size     uint64 `json:"size_bytes,omitempty"`
	ChatTmpl bool   `json:"chat_template"`
	Desc     string `json:"desc,omitempty"`
	// Embedding is set by a worker started with --embedding: it serves
	// POST /v1/embeddings and no text generation.
	Embedding bool `json:"embedding,omitempty"`
}

// Worker statuses reported by GET /health.
const (
	StatusLoading  = "loading"
	StatusReady    = "ready"
	StatusDraining = "draining"
	StatusFailed   = "failed"
)

// SlotState is one slot as seen in GET /health.
type SlotState struct {
	ID           int    `json:"id"`
	State        string `json:"state"` // idle | prefill | decode
	JobID        string `json:"job_id,omitempty"`
	CachedTokens int    `json:"cached_tokens"`
}

// Health is the body of a worker's GET /health.
type Health struct {
	Status          string      `json:"status"`
	WorkerID        string      `json:"worker_id"`
	Version         string      `json:"version"`
	Model           ModelInfo   `json:"model"`
	Backend         string      `json:"backend"`
	Device          string      `json:"device,omitempty"`
	SlotsTotal      int         `json:"slots_total"`
	SlotsBusy       int         `json:"slots_busy"`
	SlotCtx         int         `json:"slot_ctx"`
	Slots           []SlotState `json:"slots,omitempty"`
	TokensPerSecond float64     `json:"tokens_per_second"`
	VRAMBytes       uint64      `json:"vram_bytes"`
	RSSBytes        uint64      `json:"rss_bytes"` // the worker process's resident memory (0 where unknown)
	UptimeS         float64     `json:"uptime_s"`
	Progress        float64     `json:"progress"`
	Error           string      `json:"error,omitempty"`
}

func isBad(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
