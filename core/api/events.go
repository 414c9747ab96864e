package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// SSE event names, in the order a stream carries them: queued (orchestrator
// only), started, token*, metrics*, then exactly one of end or error.
const (
	EventQueued  = "queued"
	EventStarted = "started"
	EventToken   = "token"
	EventMetrics = "metrics"
	EventEnd     = "end"
	EventError   = "error"
	// EventMigrated (orchestrator only) says the task moved to another
	// worker mid-stream: the next token event continues the same count.
	EventMigrated = "migrated"
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
	// Reason is "starting" while the fleet starts a worker for the task's
	// model, on Pool; Step is downloading or loading, Progress 0..1.
	Reason   string  `json:"reason,omitempty"`
	Pool     string  `json:"pool,omitempty"`
	Step     string  `json:"step,omitempty"`
	Progress float64 `json:"progress,omitempty"`
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
	// ResumedTokens is how many tokens of the request's resume_tokens the
	// job continues from; its first token event has index ResumedTokens.
	ResumedTokens int `json:"resumed_tokens,omitempty"`
	// MaxTokens is the request's max_tokens as resolved (the default when it
	// had none); it counts resumed tokens too.
	MaxTokens int `json:"max_tokens,omitempty"`
	// ToolFormat names how the model writes tool calls (hermes, llama3,
	// mistral) when the request offered tools: the reader parses the
	// generated text with it (core/toolcall).
	ToolFormat string `json:"tool_format,omitempty"`
}

// Token is the data of a "token" event: the text that generated token number I
// (0-based) made safe to emit. T may be empty while text is held back (an
// incomplete UTF-8 character, or a possible start of a stop sequence). ID is
// the token's vocabulary id (on the end-of-generation flush, the EOG
// token's): the ids of a stream's token events, in order, are what a worker
// takes as resume_tokens to continue it.
type Token struct {
	T  string `json:"t"`
	I  int    `json:"i"`
	ID int32  `json:"id"`
	// LP is the token's log-probability, when the request asked for logprobs.
	LP *Logprob `json:"lp,omitempty"`
}

// Migrated is the data of a "migrated" event (orchestrator streams only): the
// task's worker From was lost, hung or drained after AtToken tokens, and
// worker To continues it from them. The token event after it has index
// AtToken; none is repeated or skipped. Reason is why it moved: died (the
// stream broke), hung (heartbeats and probes failed), drain (an operator or
// the fleet drained the worker with migrate), error (the worker ended the
// stream with a retriable error).
type Migrated struct {
	From    string `json:"from"`
	To      string `json:"to"`
	AtToken int    `json:"at_token"`
	Reason  string `json:"reason"`
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
	// Timing is set by the orchestrator on its streams' terminal event: where
	// the task's time went. Workers leave it out.
	Timing *Timing `json:"timing,omitempty"`
	// Budget is what the task's session has left (orchestrator, tasks with
	// a session_id that names a session created by POST /v2/sessions).
	Budget *Budget `json:"budget,omitempty"`
}

// Timing says where an orchestrator task's time went, in milliseconds from
// admission. The same figures go into the Server-Timing header of
// non-streamed responses (queue, schedule, routing, worker_ttft, total).
type Timing struct {
	// QueueMs is the time from admission until the task's last attempt was
	// sent to a worker, less the time spent deciding (schedule, routing).
	QueueMs float64 `json:"queue_ms"`
	// ScheduleMs is the time spent in the built-in scheduler, all passes.
	ScheduleMs float64 `json:"schedule_ms"`
	// RoutingMs is the time spent in the routing script, all runs.
	RoutingMs float64 `json:"routing_ms"`
	// WorkerTTFTMs is the time from sending the last attempt to its worker
	// until that worker's first token (0 when none came).
	WorkerTTFTMs float64 `json:"worker_ttft_ms"`
	// TTFTMs is the time from admission until the first token was relayed.
	TTFTMs float64 `json:"ttft_ms"`
	// TotalMs is the time from admission until the terminal event.
	TotalMs float64 `json:"total_ms"`
	// Attempts counts the workers the task was sent to (migrations included).
	Attempts int `json:"attempts"`
}

// ServerTiming is t as the value of a Server-Timing header: queue,
// schedule, routing, worker_ttft, ttft and total, each "name;dur=MS".
func (t *Timing) ServerTiming() string {
	b := make([]byte, 0, 128)
	for i, m := range [...]struct {
		name string
		ms   float64
	}{{"queue", t.QueueMs}, {"schedule", t.ScheduleMs}, {"routing", t.RoutingMs}, {"worker_ttft", t.WorkerTTFTMs},
		{"ttft", t.TTFTMs}, {"total", t.TotalMs}} {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, m.name...)
		b = append(b, ";dur="...)
		b = strconv.AppendFloat(b, m.ms, 'f', 3, 64)
	}
	return string(b)
}

// Event is one stream event, decoded: Name says which of the payloads is
// set (none for names this package does not know, such as metrics). The
// worker's stream, the orchestrator's relay and the OpenAI layer all pass
// this one type.
type Event struct {
	Name     string
	Queued   *Queued
	Started  *Started
	Token    *Token
	Migrated *Migrated
	End      *End
	Error    *Error
}

// Terminal reports whether the event ends its stream.
func (e Event) Terminal() bool { return e.End != nil || e.Error != nil }

// Payload returns the set payload (what the event's data encodes), nil for an
// event without one.
func (e Event) Payload() any {
	switch {
	case e.Queued != nil:
		return e.Queued
	case e.Started != nil:
		return e.Started
	case e.Token != nil:
		return e.Token
	case e.Migrated != nil:
		return e.Migrated
	case e.End != nil:
		return e.End
	case e.Error != nil:
		return e.Error
	}
	return nil
}

// DecodeEvent decodes the data of a stream event by its name. Events with
// other names come back with only Name set. A known event whose data does not
// decode is an error.
func DecodeEvent(name string, data []byte) (Event, error) {
	out := Event{Name: name}
	var target any
	switch name {
	case EventQueued:
		out.Queued = &Queued{}
		target = out.Queued
	case EventStarted:
		out.Started = &Started{}
		target = out.Started
	case EventToken:
		out.Token = &Token{}
		if decodeTokenFast(data, out.Token) {
			return out, nil
		}
		target = out.Token
	case EventMigrated:
		out.Migrated = &Migrated{}
		target = out.Migrated
	case EventEnd:
		out.End = &End{}
		target = out.End
	case EventError:
		out.Error = &Error{}
		target = out.Error
	default:
		return out, nil
	}
	if err := json.Unmarshal(data, target); err != nil {
		return Event{Name: name}, fmt.Errorf("api: bad %s event: %w", name, err)
	}
	return out, nil
}

// plainJSON reports whether s encodes as itself in a JSON string (as
// encoding/json writes it): printable ASCII other than '"', '\\', '<', '>'
// and '&'.
func plainJSON[S string | []byte](s S) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// AppendJSONString appends s as encoding/json writes a string (HTML
// characters escaped, invalid UTF-8 replaced), copying plain text directly:
// the per-token text of every stream goes through it.
func AppendJSONString(b []byte, s string) []byte {
	if !plainJSON(s) {
		q, _ := json.Marshal(s) // a string always encodes
		return append(b, q...)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// AppendToken appends the JSON of tok, as encoding/json writes it, without
// reflection unless it carries a logprob.
func AppendToken(b []byte, tok *Token) []byte {
	if tok.LP != nil {
		data, err := json.Marshal(tok)
		if err != nil { // cannot happen: a Token always encodes
			return append(b, "{}"...)
		}
		return append(b, data...)
	}
	b = AppendJSONString(append(b, `{"t":`...), tok.T)
	b = append(b, `,"i":`...)
	b = strconv.AppendInt(b, int64(tok.I), 10)
	b = append(b, `,"id":`...)
	b = strconv.AppendInt(b, int64(tok.ID), 10)
	return append(b, '}')
}

// decodeTokenFast decodes a token event's data when it is exactly what
// AppendToken writes for a plain token ({"t":"…","i":N,"id":N}); anything
// else is left to encoding/json (false).
func decodeTokenFast(data []byte, tok *Token) bool {
	rest, ok := bytes.CutPrefix(data, []byte(`{"t":"`))
	if !ok {
		return false
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 || !plainJSON(rest[:end]) {
		return false
	}
	text := rest[:end]
	rest, ok = bytes.CutPrefix(rest[end:], []byte(`","i":`))
	if !ok {
		return false
	}
	i, rest, ok := cutJSONInt(rest, strconv.IntSize)
	if !ok {
		return false
	}
	rest, ok = bytes.CutPrefix(rest, []byte(`,"id":`))
	if !ok {
		return false
	}
	id, rest, ok := cutJSONInt(rest, 32)
	if !ok || string(rest) != "}" {
		return false
	}
	*tok = Token{T: string(text), I: int(i), ID: int32(id)}
	return true
}

// cutJSONInt reads a JSON integer (no leading zeros, optional minus) that
// fits in bits, and returns what follows it.
func cutJSONInt(b []byte, bits int) (int64, []byte, bool) {
	n := 0
	if n < len(b) && b[n] == '-' {
		n++
	}
	start := n
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n == start || (b[start] == '0' && n > start+1) {
		return 0, nil, false
	}
	v, err := strconv.ParseInt(string(b[:n]), 10, bits)
	if err != nil {
		return 0, nil, false
	}
	return v, b[n:], true
}
