package api

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidateFeatures(t *testing.T) {
	tool := func(name, params string) Tool {
		return Tool{Type: "function", Function: ToolFunction{Name: name, Parameters: json.RawMessage(params)}}
	}
	chat := []Message{{Role: "user", Content: "hi"}}
	big := `{"type":"object","description":"` + strings.Repeat("x", 40<<10) + `"}`
	for _, tc := range []struct {
		name  string
		req   ExecuteRequest
		field string // "" = valid
	}{
		{"plain", ExecuteRequest{Messages: chat}, ""},
		{"json_object", ExecuteRequest{Messages: chat, ResponseFormat: &ResponseFormat{Type: FormatJSONObject}}, ""},
		{"json_schema", ExecuteRequest{Messages: chat, ResponseFormat: &ResponseFormat{Type: FormatJSONSchema,
			JSONSchema: &JSONSchemaSpec{Name: "a_b-1", Schema: json.RawMessage(`{"type":"object"}`)}}}, ""},
		{"json_schema without spec", ExecuteRequest{Messages: chat, ResponseFormat: &ResponseFormat{Type: FormatJSONSchema}}, "response_format.json_schema"},
		{"json_schema name", ExecuteRequest{Messages: chat, ResponseFormat: &ResponseFormat{Type: FormatJSONSchema,
			JSONSchema: &JSONSchemaSpec{Name: "a/b", Schema: json.RawMessage(`{}`)}}}, "response_format.json_schema.name"},
		{"json_schema array", ExecuteRequest{Messages: chat, ResponseFormat: &ResponseFormat{Type: FormatJSONSchema,
			JSONSchema: &JSONSchemaSpec{Name: "a", Schema: json.RawMessage(`[]`)}}}, "response_format.json_schema.schema"},
		{"format type", ExecuteRequest{Messages: chat, ResponseFormat: &ResponseFormat{Type: "xml"}}, "response_format.type"},
		{"grammar and format", ExecuteRequest{Messages: chat, Grammar: `root ::= "a"`, ResponseFormat: &ResponseFormat{Type: FormatJSONObject}}, "grammar"},
		{"grammar too big", ExecuteRequest{Prompt: "x", Grammar: strings.Repeat("a", MaxGrammarBytes+1)}, "grammar"},
		{"tools", ExecuteRequest{Messages: chat, Tools: []Tool{tool("f", `{"type":"object"}`), tool("g", `null`)}}, ""},
		{"tool name", ExecuteRequest{Messages: chat, Tools: []Tool{tool("f g", `{}`)}}, "tools[0].function.name"},
		{"tool twice", ExecuteRequest{Messages: chat, Tools: []Tool{tool("f", `{}`), tool("f", `{}`)}}, "tools[1].function.name"},
		{"tool type", ExecuteRequest{Messages: chat, Tools: []Tool{{Type: "retrieval", Function: ToolFunction{Name: "f"}}}}, "tools[0].type"},
		{"tool params not an object", ExecuteRequest{Messages: chat, Tools: []Tool{tool("f", `"x"`)}}, "tools[0].function.parameters"},
		{"too many tools", ExecuteRequest{Messages: chat, Tools: func() []Tool {
			ts := make([]Tool, MaxTools+1)
			for i := range ts {
				ts[i] = tool("f"+strings.Repeat("x", i%60)+string(rune('a'+i%26))+string(rune('a'+i/26)), `{}`)
			}
			return ts
		}()}, "tools"},
		{"tools' schemas too big together", ExecuteRequest{Messages: chat, Tools: func() []Tool {
			ts := make([]Tool, 7)
			for i := range ts {
				ts[i] = tool(string(rune('a'+i)), big)
			}
			return ts
		}()}, "tools"},
		{"tools with a prompt", ExecuteRequest{Prompt: "x", Tools: []Tool{tool("f", `{}`)}}, "tools"},
		{"required without tools", ExecuteRequest{Messages: chat, ToolChoice: &ToolChoice{Mode: ToolRequired}}, "tool_choice"},
		{"unknown function", ExecuteRequest{Messages: chat, Tools: []Tool{tool("f", `{}`)}, ToolChoice: &ToolChoice{Mode: ToolForced, Function: "g"}}, "tool_choice.function"},
		{"choice mode", ExecuteRequest{Messages: chat, Tools: []Tool{tool("f", `{}`)}, ToolChoice: &ToolChoice{Mode: "always"}}, "tool_choice.mode"},
		{"required and grammar", ExecuteRequest{Messages: chat, Grammar: `root ::= "a"`, Tools: []Tool{tool("f", `{}`)}, ToolChoice: &ToolChoice{Mode: ToolRequired}}, "grammar"},
		{"ignore_eos constrained", ExecuteRequest{Messages: chat, IgnoreEOS: true, ResponseFormat: &ResponseFormat{Type: FormatJSONObject}}, "ignore_eos"},
		{"ignore_eos with auto tools", ExecuteRequest{Messages: chat, IgnoreEOS: true, Tools: []Tool{tool("f", `{}`)}}, ""},
		{"tool message without id", ExecuteRequest{Messages: []Message{{Role: "tool", Content: "x"}}}, "messages[0].tool_call_id"},
		{"user tool_calls", ExecuteRequest{Messages: []Message{{Role: "user", ToolCalls: []ToolCall{{ID: "a"}}}}}, "messages[0].tool_calls"},
		{"top_logprobs without logprobs", ExecuteRequest{Prompt: "x", TopLogprobs: 2}, "top_logprobs"},
		{"top_logprobs 21", ExecuteRequest{Prompt: "x", Logprobs: true, TopLogprobs: 21}, "top_logprobs"},
		{"top_logprobs -1", ExecuteRequest{Prompt: "x", Logprobs: true, TopLogprobs: -1}, "top_logprobs"},
		{"frequency_penalty", ExecuteRequest{Prompt: "x", FrequencyPenalty: ptrTo(2.5)}, "frequency_penalty"},
		{"presence_penalty NaN", ExecuteRequest{Prompt: "x", PresencePenalty: ptrTo(nan())}, "presence_penalty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.req.Validate()
			switch {
			case tc.field == "" && e != nil:
				t.Fatalf("refused: %+v", e.Fields)
			case tc.field == "":
			case e == nil:
				t.Fatal("accepted")
			default:
				for _, f := range e.Fields {
					if f.Field == tc.field {
						return
					}
				}
				t.Fatalf("field %q not named: %+v", tc.field, e.Fields)
			}
		})
	}
}

func TestTokenText(t *testing.T) {
	if tt := NewTokenText([]byte("héllo")); tt.Token != "héllo" || tt.Bytes != nil || len(tt.UTF8Bytes()) != 6 {
		t.Errorf("%+v", tt)
	}
	tt := NewTokenText([]byte{0xe2, 0x82})
	if tt.Token != "\uFFFD" || len(tt.Bytes) != 2 || tt.UTF8Bytes()[0] != 0xe2 {
		t.Errorf("%+v", tt)
	}
	b, _ := json.Marshal(tt)
	if string(b) != `{"token":"�","bytes":[226,130]}` {
		t.Errorf("%s", b)
	}
}

func ptrTo[T any](v T) *T { return &v }

func nan() float64 {
	var zero float64
	return zero / zero
}
