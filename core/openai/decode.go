package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/llorch/llorch/core/api"
)

// kind tells the two generation endpoints apart.
type kind int

const (
	kindChat       kind = iota // POST /chat/completions
	kindCompletion             // POST /completions
)

// defaultCompletionTokens is OpenAI's max_tokens default for /completions.
// Chat requests without a limit get the backend's default (api.DefaultMaxTokens,
// capped by the context).
const defaultCompletionTokens = 16

// PriorityHeader chooses the priority of a request: interactive (default) or batch.
const PriorityHeader = "X-Llorch-Priority"

// sampling are the fields both endpoints share.
type sampling struct {
	Model            string             `json:"model"`
	MaxTokens        *int               `json:"max_tokens"`
	Temperature      *float64           `json:"temperature"`
	TopP             *float64           `json:"top_p"`
	Stop             json.RawMessage    `json:"stop"`
	Seed             *int64             `json:"seed"`
	Stream           *bool              `json:"stream"`
	StreamOptions    *streamOptions     `json:"stream_options"`
	N                *int               `json:"n"`
	User             string             `json:"user"`
	LogitBias        map[string]float64 `json:"logit_bias"`
	FrequencyPenalty *float64           `json:"frequency_penalty"`
	PresencePenalty  *float64           `json:"presence_penalty"`
	// Extensions llama-server (and vLLM, for ignore_eos) also takes.
	IgnoreEOS     bool     `json:"ignore_eos"`
	RepeatPenalty *float64 `json:"repeat_penalty"`
	TopK          *int     `json:"top_k"`
	MinP          *float64 `json:"min_p"`
	// SessionID is llorch's: the session (POST /v2/sessions) the request
	// belongs to, as the X-Session-Id header says it too.
	SessionID string `json:"session_id"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatBody is the body of POST /chat/completions. Fields not listed are ignored.
type chatBody struct {
	sampling
	Messages            []chatMessage       `json:"messages"`
	MaxCompletionTokens *int                `json:"max_completion_tokens"`
	Logprobs            *bool               `json:"logprobs"`
	TopLogprobs         *int                `json:"top_logprobs"`
	ResponseFormat      *api.ResponseFormat `json:"response_format"`
	Tools               []api.Tool          `json:"tools"`
	ToolChoice          json.RawMessage     `json:"tool_choice"`
	ParallelToolCalls   *bool               `json:"parallel_tool_calls"`
	Functions           []json.RawMessage   `json:"functions"`
	FunctionCall        json.RawMessage     `json:"function_call"`
	Audio               json.RawMessage     `json:"audio"`
	Modalities          []string            `json:"modalities"`
	Prediction          json.RawMessage     `json:"prediction"`
	WebSearchOptions    json.RawMessage     `json:"web_search_options"`
	ReasoningEffort     *string             `json:"reasoning_effort"`
}

type chatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  []api.ToolCall  `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

type contentPart struct {
	Type string  `json:"type"`
	Text *string `json:"text"`
}

// completionBody is the body of POST /completions. Fields not listed are ignored.
type completionBody struct {
	sampling
	Prompt   json.RawMessage `json:"prompt"`
	Echo     *bool           `json:"echo"`
	Suffix   *string         `json:"suffix"`
	Logprobs *int            `json:"logprobs"`
	BestOf   *int            `json:"best_of"`
}

// Limits of this API.
const (
	// MaxChoices bounds n; a worker serves at most its slots at once.
	MaxChoices = 16
	// maxCompletionLogprobs is /completions' limit on logprobs.
	maxCompletionLogprobs = 5
)

// parsed is a validated request and how to answer it.
type parsed struct {
	kind         kind
	req          Request
	stream       bool
	includeUsage bool
	// maxField is the parameter that set the token limit, for error messages.
	maxField string
	// n is the number of choices.
	n int
	// logprobs: the choices carry logprobs.
	logprobs bool
}

// rename maps a field of api.ExecuteRequest to this request's parameter,
// written the way OpenAI writes params ("messages.[0].role").
func (p *parsed) rename(field string) string {
	switch {
	case field == "max_tokens":
		return p.maxField
	case field == "repetition_penalty":
		return "repeat_penalty"
	case field == "prompt" && p.kind == kindChat:
		return "messages"
	case field == "messages" && p.kind == kindCompletion:
		return "prompt"
	case strings.HasPrefix(field, "messages["):
		return "messages." + strings.TrimPrefix(field, "messages")
	case strings.HasPrefix(field, "stop["):
		return "stop"
	case strings.HasPrefix(field, "tools["):
		return "tools." + strings.TrimPrefix(field, "tools")
	}
	return field
}

// parse decodes and validates a body of the endpoint k. The first bad
// parameter decides the error, as OpenAI reports one at a time.
func parse(k kind, body []byte) (*parsed, *failure) {
	p := &parsed{kind: k, maxField: "max_tokens"}
	var s *sampling
	var chat chatBody
	var comp completionBody
	if k == kindChat {
		s = &chat.sampling
	} else {
		s = &comp.sampling
	}
	if f := decodeJSON(body, k, &chat, &comp); f != nil {
		return nil, f
	}
	if s.Model == "" {
		return nil, invalid("model", "", "you must provide a model parameter")
	}
	if len(s.Model) > api.MaxModelLength {
		return nil, invalid("model", "", "model must be at most %d characters", api.MaxModelLength)
	}
	ex := &p.req.Exec
	var f *failure
	if k == kindChat {
		f = chatFields(p, &chat, ex)
	} else {
		f = completionFields(p, &comp, ex)
	}
	if f != nil {
		return nil, f
	}
	if f := commonFields(p, s, ex); f != nil {
		return nil, f
	}
	if e := ex.Validate(); e != nil {
		return nil, fromAPI(e, p.rename)
	}
	p.req.Model, p.req.User, p.req.SessionID = s.Model, s.User, s.SessionID
	return p, nil
}

// decodeJSON decodes body into the endpoint's struct: broken JSON and values of
// the wrong type are 400s, unknown fields are ignored.
func decodeJSON(body []byte, k kind, chat *chatBody, comp *completionBody) *failure {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return invalid("", "", "We could not parse the JSON body of your request: it must be a JSON object.")
	}
	var target any = chat
	if k == kindCompletion {
		target = comp
	}
	err := json.Unmarshal(body, target)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te) && te.Field != "":
		field := strings.TrimPrefix(te.Field, "sampling.") // the embedded struct's name
		return invalid(field, "invalid_type", "Invalid type for '%s': expected %s, but got %s instead.", field, typeName(te.Type.Kind().String()), te.Value)
	default:
		return invalid("", "", "We could not parse the JSON body of your request: %v.", err)
	}
}

func typeName(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "a boolean"
	case kind == "slice":
		return "an array"
	case kind == "map", kind == "struct", kind == "ptr":
		return "an object"
	}
	return "another type"
}

func chatFields(p *parsed, b *chatBody, ex *api.ExecuteRequest) *failure {
	if len(b.Messages) == 0 {
		return invalid("messages", "", "messages must be a non-empty array")
	}
	ex.Messages = make([]api.Message, len(b.Messages))
	for i, m := range b.Messages {
		role := m.Role
		switch role {
		case "system", "user", "assistant":
		case "developer": // OpenAI's newer name for system
			role = "system"
		case "tool":
			if m.ToolCallID == "" {
				return invalid(fmt.Sprintf("messages.[%d].tool_call_id", i), "", "Missing required parameter: 'messages.[%d].tool_call_id'.", i)
			}
		default:
			return invalid(fmt.Sprintf("messages.[%d].role", i), "unsupported_value",
				"Invalid value for 'messages.[%d].role': %q is not supported; use system, developer, user, assistant or tool.", i, m.Role)
		}
		if len(m.ToolCalls) > 0 && role != "assistant" {
			return invalid(fmt.Sprintf("messages.[%d].tool_calls", i), "", "Only assistant messages can have tool_calls.")
		}
		text, f := content(m.Content, i)
		if f != nil {
			return f
		}
		ex.Messages[i] = api.Message{Role: role, Content: text, ToolCalls: m.ToolCalls, ToolCallID: m.ToolCallID, Name: m.Name}
	}
	if b.MaxCompletionTokens != nil { // the newer name wins over max_tokens
		ex.MaxTokens, p.maxField = b.MaxCompletionTokens, "max_completion_tokens"
	}
	if b.Logprobs != nil && *b.Logprobs {
		ex.Logprobs, p.logprobs = true, true
	}
	if b.TopLogprobs != nil {
		if *b.TopLogprobs < 0 || *b.TopLogprobs > api.MaxTopLogprobs {
			return invalid("top_logprobs", "integer_above_max_value", "Invalid 'top_logprobs': must be between 0 and %d, got %d.", api.MaxTopLogprobs, *b.TopLogprobs)
		}
		if *b.TopLogprobs > 0 && !ex.Logprobs {
			return invalid("top_logprobs", "", "Invalid value for 'top_logprobs': 'logprobs' must be true when 'top_logprobs' is set.")
		}
		ex.TopLogprobs = *b.TopLogprobs
	}
	if f := b.ResponseFormat; f != nil && f.Type != "" && f.Type != api.FormatText {
		ex.ResponseFormat = f
	}
	if len(b.Tools) > 0 {
		ex.Tools = b.Tools
	}
	if !isNull(b.ToolChoice) {
		c, f := toolChoice(b.ToolChoice)
		if f != nil {
			return f
		}
		if len(b.Tools) == 0 && c.Mode != api.ToolNone {
			return invalid("tool_choice", "", "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.")
		}
		ex.ToolChoice = c
	}
	ex.ParallelToolCalls = b.ParallelToolCalls
	switch {
	case len(b.Functions) > 0:
		return unsupported("functions", "functions are deprecated and not supported; use tools")
	case !isNull(b.FunctionCall):
		return unsupported("function_call", "function_call is deprecated and not supported; use tool_choice")
	case !isNull(b.Audio):
		return unsupported("audio", "audio output is not supported")
	case len(b.Modalities) > 0 && (len(b.Modalities) != 1 || b.Modalities[0] != "text"):
		return unsupported("modalities", "only text output is supported")
	case !isNull(b.Prediction):
		return unsupported("prediction", "predicted outputs are not supported")
	case !isNull(b.WebSearchOptions):
		return unsupported("web_search_options", "web search is not supported")
	case b.ReasoningEffort != nil:
		return unsupported("reasoning_effort", "reasoning_effort is not supported")
	}
	return nil
}

// toolChoice reads tool_choice: "none", "auto", "required", or
// {"type": "function", "function": {"name": …}}.
func toolChoice(raw json.RawMessage) (*api.ToolChoice, *failure) {
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case api.ToolNone, api.ToolAuto, api.ToolRequired:
			return &api.ToolChoice{Mode: mode}, nil
		}
		return nil, invalid("tool_choice", "invalid_value", "Invalid value for 'tool_choice': expected none, auto, required or a named function, got %q.", mode)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
		return nil, invalid("tool_choice", "invalid_value", `Invalid value for 'tool_choice': expected none, auto, required or {"type": "function", "function": {"name": …}}.`)
	}
	return &api.ToolChoice{Mode: api.ToolForced, Function: named.Function.Name}, nil
}

// content reads a message's content: a string, null (an assistant turn
// without text), or an array of text parts, joined with newlines.
func content(raw json.RawMessage, i int) (string, *failure) {
	param := fmt.Sprintf("messages.[%d].content", i)
	if isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []contentPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", invalid(param, "invalid_type", "Invalid type for '%s': expected a string or an array of text parts.", param)
	}
	texts := make([]string, 0, len(parts))
	for k, part := range parts {
		if part.Type != "text" {
			return "", invalid(fmt.Sprintf("%s.[%d].type", param, k), "unsupported_value",
				"Invalid value for '%s.[%d].type': only text parts are supported, got %q.", param, k, part.Type)
		}
		if part.Text == nil {
			return "", invalid(fmt.Sprintf("%s.[%d].text", param, k), "", "Missing required parameter: '%s.[%d].text'.", param, k)
		}
		texts = append(texts, *part.Text)
	}
	return strings.Join(texts, "\n"), nil
}

func completionFields(p *parsed, b *completionBody, ex *api.ExecuteRequest) *failure {
	switch prompt, ok := promptText(b.Prompt); {
	case isNull(b.Prompt):
		return invalid("prompt", "", "you must provide a prompt parameter")
	case !ok:
		return invalid("prompt", "unsupported_value", "prompt must be a string (or an array holding one string); token arrays and several prompts are not supported")
	case prompt == "":
		return invalid("prompt", "", "prompt must not be empty")
	default:
		ex.Prompt = prompt
	}
	switch {
	case b.Echo != nil && *b.Echo:
		return unsupported("echo", "echo is not supported")
	case b.Suffix != nil && *b.Suffix != "":
		return unsupported("suffix", "suffix is not supported")
	case b.Logprobs != nil && (*b.Logprobs < 0 || *b.Logprobs > maxCompletionLogprobs):
		return invalid("logprobs", "invalid_value", "Invalid 'logprobs': must be between 0 and %d, got %d.", maxCompletionLogprobs, *b.Logprobs)
	case b.BestOf != nil && *b.BestOf != 1:
		return unsupported("best_of", "best_of must be 1")
	}
	if b.Logprobs != nil {
		// logprobs: 0 asks for the chosen tokens' log-probabilities alone.
		ex.Logprobs, ex.TopLogprobs, p.logprobs = true, *b.Logprobs, true
	}
	if b.MaxTokens == nil {
		ex.MaxTokens = new(int)
		*ex.MaxTokens = defaultCompletionTokens
	}
	return nil
}

func promptText(raw json.RawMessage) (string, bool) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, true
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil && len(list) == 1 {
		return list[0], true
	}
	return "", false
}

func commonFields(p *parsed, s *sampling, ex *api.ExecuteRequest) *failure {
	p.n = 1
	if s.N != nil {
		if *s.N < 1 || *s.N > MaxChoices {
			return invalid("n", "invalid_value", "Invalid value for 'n': must be between 1 and %d, got %d.", MaxChoices, *s.N)
		}
		p.n = *s.N
	}
	if ex.MaxTokens == nil {
		ex.MaxTokens = s.MaxTokens
	}
	if s.Stream != nil {
		p.stream = *s.Stream
	}
	if s.StreamOptions != nil {
		if !p.stream {
			return invalid("stream_options", "", "The 'stream_options' parameter is only allowed when 'stream' is enabled.")
		}
		p.includeUsage = s.StreamOptions.IncludeUsage
	}
	for _, v := range []struct {
		name string
		v    *float64
	}{{"frequency_penalty", s.FrequencyPenalty}, {"presence_penalty", s.PresencePenalty}} {
		if v.v != nil && (math.IsNaN(*v.v) || *v.v < -2 || *v.v > 2) {
			return invalid(v.name, "invalid_value", "Invalid '%s': must be between -2 and 2, got %v.", v.name, *v.v)
		}
	}
	ex.FrequencyPenalty, ex.PresencePenalty = s.FrequencyPenalty, s.PresencePenalty
	ex.RepetitionPenalty, ex.TopK, ex.MinP, ex.IgnoreEOS = s.RepeatPenalty, s.TopK, s.MinP, s.IgnoreEOS
	stop, f := stopList(s.Stop)
	if f != nil {
		return f
	}
	ex.Temperature, ex.TopP, ex.Seed, ex.Stop, ex.LogitBias = s.Temperature, s.TopP, s.Seed, stop, s.LogitBias
	return nil
}

// stopList reads stop: null, a string or an array of strings.
func stopList(raw json.RawMessage) ([]string, *failure) {
	if isNull(raw) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many, nil
	}
	return nil, invalid("stop", "invalid_type", "Invalid type for 'stop': expected a string or an array of strings.")
}

func unsupported(param, format string, args ...any) *failure {
	return invalid(param, "unsupported_parameter", "Unsupported parameter '%s': %s.", param, fmt.Sprintf(format, args...))
}

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// priority reads the X-Llorch-Priority header.
func priority(v string) (string, *failure) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", api.PriorityInteractive:
		return api.PriorityInteractive, nil
	case api.PriorityBatch:
		return api.PriorityBatch, nil
	}
	return "", invalid(PriorityHeader, "invalid_value", "Invalid %s header: must be interactive or batch, got %q.", PriorityHeader, v)
}
