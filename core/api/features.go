package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Limits on the OpenAI-style features of a request.
const (
	MaxTools       = 128
	MaxTopLogprobs = 20
	// MaxGrammarBytes bounds a raw grammar or a JSON schema.
	MaxGrammarBytes = 64 << 10
	// MaxToolSchemaBytes bounds the parameters schemas of all tools
	// together: a forced call's grammar is built from all of them.
	MaxToolSchemaBytes = 256 << 10
)

// Response formats (ResponseFormat.Type).
const (
	FormatText       = "text"
	FormatJSONObject = "json_object"
	FormatJSONSchema = "json_schema"
)

// Tool choice modes (ToolChoice.Mode).
const (
	ToolAuto     = "auto"
	ToolNone     = "none"
	ToolRequired = "required"
	// ToolForced forces the one function ToolChoice.Function names.
	ToolForced = "function"
)

// ResponseFormat constrains the output's shape, as OpenAI's response_format:
// text (no constraint), json_object (any JSON object) or json_schema (an
// object that validates against JSONSchema.Schema).
type ResponseFormat struct {
	Type       string          `json:"type"`
	JSONSchema *JSONSchemaSpec `json:"json_schema,omitempty"`
}

// JSONSchemaSpec is response_format.json_schema.
type JSONSchemaSpec struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// Tool is a function the model may call, as in OpenAI's tools.
type Tool struct {
	Type     string       `json:"type"` // "function"
	Function ToolFunction `json:"function"`
}

// ToolFunction describes a callable function; Parameters is a JSON schema
// of its arguments object.
type ToolFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolCall is one call an assistant turn made: Arguments is JSON text.
type ToolCall struct {
	ID       string           `json:"id"`
	Type     string           `json:"type"` // "function"
	Function ToolCallFunction `json:"function"`
}

// ToolCallFunction names the function of a ToolCall and holds its arguments.
type ToolCallFunction struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// ToolChoice says whether the model may, must or must not call a tool:
// Mode auto (default with tools), none, required, or function (then Function
// names the one function it must call).
type ToolChoice struct {
	Mode     string `json:"mode"`
	Function string `json:"function,omitempty"`
}

// Logprob is the log-probability of one generated token and, when asked,
// its most likely alternatives, from the distribution the sampler drew from
// (after the chain's filters: logit bias, penalties, grammar, top-k/top-p/
// min-p, temperature).
type Logprob struct {
	TokenText
	Logprob float64      `json:"logprob"`
	Top     []TopLogprob `json:"top,omitempty"`
}

// TopLogprob is one alternative of a Logprob.
type TopLogprob struct {
	ID int32 `json:"id"`
	TokenText
	Logprob float64 `json:"logprob"`
}

// TokenText is a token's text. A token that is part of a UTF-8 character
// is not valid text on its own: Token then holds it with invalid bytes
// replaced and Bytes holds its bytes.
type TokenText struct {
	Token string `json:"token"`
	Bytes []int  `json:"bytes,omitempty"`
}

// NewTokenText makes the TokenText of a token's bytes.
func NewTokenText(piece []byte) TokenText {
	if utf8.Valid(piece) {
		return TokenText{Token: string(piece)}
	}
	b := make([]int, len(piece))
	for i, c := range piece {
		b[i] = int(c)
	}
	return TokenText{Token: strings.ToValidUTF8(string(piece), "\uFFFD"), Bytes: b}
}

// UTF8Bytes are the token's bytes, as OpenAI's logprobs list them.
func (t TokenText) UTF8Bytes() []int {
	if t.Bytes != nil {
		return t.Bytes
	}
	b := make([]int, len(t.Token))
	for i := range len(t.Token) {
		b[i] = int(t.Token[i])
	}
	return b
}

var functionName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// ValidFunctionName reports whether name is a function or schema name
// OpenAI accepts: 1 to 64 of a-z, A-Z, 0-9, _ and -.
func ValidFunctionName(name string) bool { return functionName.MatchString(name) }

// Constrained reports whether the request's output is constrained by a
// grammar: a raw grammar, a JSON response format, or a tool call it must make.
func (r *ExecuteRequest) Constrained() bool {
	if r.Grammar != "" {
		return true
	}
	if f := r.ResponseFormat; f != nil && f.Type != "" && f.Type != FormatText {
		return true
	}
	return len(r.Tools) > 0 && r.ToolChoice != nil && (r.ToolChoice.Mode == ToolRequired || r.ToolChoice.Mode == ToolForced)
}

// validateFeatures checks the OpenAI-style fields; add records a bad field.
func (r *ExecuteRequest) validateFeatures(add func(field, constraint, format string, args ...any)) {
	for _, v := range []struct {
		name string
		v    *float64
	}{{"frequency_penalty", r.FrequencyPenalty}, {"presence_penalty", r.PresencePenalty}} {
		if v.v != nil && (isBad(*v.v) || *v.v < -2 || *v.v > 2) {
			add(v.name, "-2..2", "must be between -2 and 2, got %v", *v.v)
		}
	}
	if r.TopLogprobs < 0 || r.TopLogprobs > MaxTopLogprobs {
		add("top_logprobs", "0..20", "must be between 0 and %d, got %d", MaxTopLogprobs, r.TopLogprobs)
	} else if r.TopLogprobs > 0 && !r.Logprobs {
		add("top_logprobs", "needs_logprobs", "needs logprobs: true")
	}
	if len(r.Grammar) > MaxGrammarBytes {
		add("grammar", "max_bytes", "at most %d bytes", MaxGrammarBytes)
	}
	if f := r.ResponseFormat; f != nil {
		switch f.Type {
		case "", FormatText, FormatJSONObject:
			if f.JSONSchema != nil {
				add("response_format.json_schema", "needs_json_schema_type", "is only allowed with type json_schema")
			}
		case FormatJSONSchema:
			switch s := f.JSONSchema; {
			case s == nil:
				add("response_format.json_schema", "required", "is required with type json_schema")
			case !ValidFunctionName(s.Name):
				add("response_format.json_schema.name", "name", "must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -, got %q", s.Name)
			case !isObject(s.Schema):
				add("response_format.json_schema.schema", "object", "must be a JSON schema object")
			case len(s.Schema) > MaxGrammarBytes:
				add("response_format.json_schema.schema", "max_bytes", "at most %d bytes", MaxGrammarBytes)
			}
		default:
			add("response_format.type", "enum", "must be text, json_object or json_schema, got %q", f.Type)
		}
		if f.Type != "" && f.Type != FormatText && r.Grammar != "" {
			add("grammar", "exclusive", "give either grammar or response_format, not both")
		}
	}
	if len(r.Tools) > MaxTools {
		add("tools", "max_items", "at most %d tools, got %d", MaxTools, len(r.Tools))
	}
	names := make(map[string]bool, len(r.Tools))
	total := 0
	for _, t := range r.Tools {
		total += len(t.Function.Parameters)
	}
	if total > MaxToolSchemaBytes {
		add("tools", "max_schema_bytes", "the parameters schemas of all tools together are %d bytes, more than %d", total, MaxToolSchemaBytes)
	}
	for i, t := range r.Tools {
		switch {
		case t.Type != "function":
			add(fmt.Sprintf("tools[%d].type", i), "enum", "must be function, got %q", t.Type)
		case !ValidFunctionName(t.Function.Name):
			add(fmt.Sprintf("tools[%d].function.name", i), "name", "must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -, got %q", t.Function.Name)
		case names[t.Function.Name]:
			add(fmt.Sprintf("tools[%d].function.name", i), "unique", "%q is defined twice", t.Function.Name)
		case len(t.Function.Parameters) > 0 && !isNullJSON(t.Function.Parameters) && !isObject(t.Function.Parameters):
			add(fmt.Sprintf("tools[%d].function.parameters", i), "object", "must be a JSON schema object")
		case len(t.Function.Parameters) > MaxGrammarBytes:
			add(fmt.Sprintf("tools[%d].function.parameters", i), "max_bytes", "at most %d bytes", MaxGrammarBytes)
		}
		names[t.Function.Name] = true
	}
	if c := r.ToolChoice; c != nil {
		switch c.Mode {
		case ToolAuto, ToolNone:
		case ToolRequired:
			if len(r.Tools) == 0 {
				add("tool_choice", "needs_tools", "required needs tools")
			}
		case ToolForced:
			if !names[c.Function] {
				add("tool_choice.function", "defined", "names no function among the tools: %q", c.Function)
			}
		default:
			add("tool_choice.mode", "enum", "must be auto, none, required or function, got %q", c.Mode)
		}
		if (c.Mode == ToolRequired || c.Mode == ToolForced) && r.Grammar != "" {
			add("grammar", "exclusive", "a grammar cannot be combined with a required tool call")
		}
	}
	if r.IgnoreEOS && r.Constrained() {
		add("ignore_eos", "exclusive", "cannot be combined with a grammar, a JSON response format or a required tool call: the constrained output ends at end of generation")
	}
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return false
	}
	return json.Valid(raw)
}

func isNullJSON(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}
