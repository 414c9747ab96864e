package toolcall

import (
	"errors"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/prompt"
)

const callID = "call_abcdefghijklmnopqrstuvwx" // Mistral's templates use its last 9 characters

var (
	weatherTool = tool("get_weather", `{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}`)
	auto        = api.ToolChoice{Mode: api.ToolAuto}

	// weatherChat is a turn with one call and its result, waiting for the
	// assistant's answer.
	weatherChat = []api.Message{
		{Role: "system", Content: "You are helpful."},
		{Role: "user", Content: "Weather in Paris?"},
		{Role: "assistant", ToolCalls: []api.ToolCall{tc(callID, "get_weather", `{"city":"Paris"}`)}},
		{Role: "tool", ToolCallID: callID, Content: `{"temp": 21}`},
	}
)

func tc(id, name, args string) api.ToolCall {
	return api.ToolCall{ID: id, Type: "function", Function: api.ToolCallFunction{Name: name, Arguments: args}}
}

// Tool definitions as the templates' tojson writes them.
const (
	weatherJSON = `{"type": "function", "function": {"name": "get_weather", "description": "Does get_weather.", ` +
		`"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}`
	weatherJSON4 = "{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n" +
		"        \"description\": \"Does get_weather.\",\n        \"parameters\": {\n            \"type\": \"object\",\n" +
		"            \"properties\": {\n                \"city\": {\n                    \"type\": \"string\"\n                }\n" +
		"            },\n            \"required\": [\n                \"city\"\n            ]\n        }\n    }\n}"
	qwenTools = "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
		"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" + weatherJSON +
		"\n</tools>\n\nFor each function call, return a json object with function name and arguments within " +
		"<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
	llamaHint = `Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.` + "\n\n"
)

// The golden prompts follow the families' official Jinja templates
// (Qwen2.5-Instruct, Llama-3.1-Instruct, Mistral-7B-Instruct-v0.3,
// Mistral-Nemo-Instruct-2407, llama.cpp's Mistral-Small-3.1) step by step;
// the comments name the template branch each piece comes from.
func TestPromptGolden(t *testing.T) {
	cases := []struct {
		name  string
		t     prompt.Template
		msgs  []api.Message
		tools []api.Tool
		want  string
	}{
		{"chatml/call-and-result", prompt.ChatML, weatherChat, []api.Tool{weatherTool},
			// system + "\n\n" + tools block
			"<|im_start|>system\nYou are helpful.\n\n" + qwenTools + "<|im_end|>\n" +
				"<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
				// assistant with tool_calls and no content
				"<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n" +
				// a run of tool messages is one user turn
				"<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n" +
				"<|im_start|>assistant\n"},
		{"chatml/parallel-multi-turn-no-system", prompt.ChatML, []api.Message{
			{Role: "user", Content: "Paris and 2+3?"},
			{Role: "assistant", Content: "Checking.", ToolCalls: []api.ToolCall{
				tc("call_1", "get_weather", `{"city": "Paris"}`), tc("call_2", "add", `{"a":2,"b":3}`)}},
			{Role: "tool", ToolCallID: "call_1", Content: "sunny"},
			{Role: "tool", ToolCallID: "call_2", Content: "5"},
			{Role: "assistant", Content: "Sunny; 5."},
			{Role: "user", Content: "Thanks"},
		}, []api.Tool{weatherTool},
			"<|im_start|>system\n" + qwenTools + "<|im_end|>\n" +
				"<|im_start|>user\nParis and 2+3?<|im_end|>\n" +
				"<|im_start|>assistant\nChecking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>" +
				"\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 2, \"b\": 3}}\n</tool_call><|im_end|>\n" +
				"<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\n5\n</tool_response><|im_end|>\n" +
				"<|im_start|>assistant\nSunny; 5.<|im_end|>\n" +
				"<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n"},
		{"llama3/call-and-result", prompt.Llama3, weatherChat, []api.Tool{weatherTool},
			// system block with Environment: ipython and the default date
			"<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\n" +
				"Today Date: 26 Jul 2024\n\nYou are helpful.<|eot_id|>" +
				// tools_in_user_message: the first user turn carries them
				"<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a " +
				"function call with its proper arguments that best answers the given prompt.\n\n" + llamaHint + weatherJSON4 + "\n\n" +
				"Weather in Paris?<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>" +
				"<|start_header_id|>ipython<|end_header_id|>\n\n{\"temp\": 21}<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama3/tools-in-system", prompt.Llama3, []api.Message{
			{Role: "assistant", Content: "  Hi!  "},
			{Role: "user", Content: " Weather? "},
		}, []api.Tool{weatherTool},
			// tools_in_user_message false: the system turn carries them
			"<|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\n" +
				"Today Date: 26 Jul 2024\n\nYou have access to the following functions. To call a function, please respond with JSON " +
				"for a function call." + llamaHint + weatherJSON4 + "\n\n<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\nHi!<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"mistral-v3/call-and-result", prompt.MistralV3, weatherChat, []api.Tool{weatherTool},
			// [AVAILABLE_TOOLS] before the last user turn, the system text in it
			"[AVAILABLE_TOOLS] [" + weatherJSON + "][/AVAILABLE_TOOLS][INST] You are helpful.\n\nWeather in Paris?[/INST]" +
				// out[:-1] + ', "id": "' + id + '"}', then "]" + eos
				`[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "pqrstuvwx"}]</s>` +
				`[TOOL_RESULTS] {"content": {"temp": 21}, "call_id": "pqrstuvwx"}[/TOOL_RESULTS]`},
		{"mistral-v3/multi-turn", prompt.MistralV3, []api.Message{
			{Role: "system", Content: "Be brief."},
			{Role: "user", Content: "Hi"},
			{Role: "assistant", Content: " Hello. "},
			{Role: "user", Content: "Weather in Paris and Rome?"},
			{Role: "assistant", ToolCalls: []api.ToolCall{tc("call_000000001", "get_weather", `{"city":"Paris"}`), tc("call_000000002", "get_weather", `{"city":"Rome"}`)}},
			{Role: "tool", ToolCallID: "call_000000001", Content: "sunny"},
			{Role: "tool", ToolCallID: "call_000000002", Content: `"rain"`},
			{Role: "assistant", Content: "Paris is sunny, Rome rainy."},
		}, []api.Tool{weatherTool},
			"[INST] Hi[/INST] Hello.</s>" +
				"[AVAILABLE_TOOLS] [" + weatherJSON + "][/AVAILABLE_TOOLS][INST] Be brief.\n\nWeather in Paris and Rome?[/INST]" +
				`[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "000000001"}, ` +
				`{"name": "get_weather", "arguments": {"city": "Rome"}, "id": "000000002"}]</s>` +
				// text that is not JSON is quoted; JSON is written as it is
				`[TOOL_RESULTS] {"content": "sunny", "call_id": "000000001"}[/TOOL_RESULTS]` +
				`[TOOL_RESULTS] {"content": "rain", "call_id": "000000002"}[/TOOL_RESULTS]` +
				" Paris is sunny, Rome rainy.</s>"},
		{"mistral-v3-tekken/call-and-result", prompt.MistralV3Tekken, weatherChat, []api.Tool{weatherTool},
			"[AVAILABLE_TOOLS][" + weatherJSON + "][/AVAILABLE_TOOLS][INST]You are helpful.\n\nWeather in Paris?[/INST]" +
				`[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "pqrstuvwx"}]</s>` +
				`[TOOL_RESULTS]{"content": {"temp": 21}, "call_id": "pqrstuvwx"}[/TOOL_RESULTS]`},
		{"mistral-v7-tekken/call-and-result", prompt.MistralV7Tekken, weatherChat, []api.Tool{weatherTool},
			"[SYSTEM_PROMPT]You are helpful.[/SYSTEM_PROMPT][AVAILABLE_TOOLS] [" + weatherJSON + "][/AVAILABLE_TOOLS][INST]Weather in Paris?[/INST]" +
				`[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "pqrstuvwx"}]</s>` +
				`[TOOL_RESULTS] {"content": {"temp": 21}, "call_id": "pqrstuvwx"}[/TOOL_RESULTS]`},
		{"gemma/hermes-fallback", prompt.Gemma, weatherChat, []api.Tool{weatherTool},
			// Gemma folds the system text into the first user turn
			"<start_of_turn>user\nYou are helpful.\n\n" + qwenTools + "\n\nWeather in Paris?<end_of_turn>\n" +
				"<start_of_turn>model\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><end_of_turn>\n" +
				"<start_of_turn>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><end_of_turn>\n<start_of_turn>model\n"},
		{"chatml/history-without-tools-offered", prompt.ChatML, weatherChat, nil,
			"<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
				"<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n" +
				"<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Prompt(c.t, FormatFor(c.t), c.msgs, c.tools, auto, true, true)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("prompt differs at byte %d\n-got  %q\n+want %q", diffAt(got, c.want), got, c.want)
			}
		})
	}
}

func diffAt(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// TestPromptWithoutTools: with no tools offered (none given, or choice none)
// and no tool turns, every template renders exactly as prompt's Format.
func TestPromptWithoutTools(t *testing.T) {
	chats := [][]api.Message{
		nil,
		{{Role: "user", Content: "Hi"}},
		{{Role: "system", Content: " S "}, {Role: "user", Content: "Hi"}, {Role: "assistant", Content: " Hello "}, {Role: "user", Content: "Bye"}},
	}
	for tp := prompt.ChatML; tp <= prompt.Raw; tp++ {
		for _, msgs := range chats {
			for _, gen := range []bool{true, false} {
				want, err := tp.Format(msgs, gen)
				if err != nil {
					t.Fatal(err)
				}
				for _, tools := range [][]api.Tool{nil, {weatherTool}} {
					choice := api.ToolChoice{Mode: api.ToolNone}
					if tools == nil {
						choice = auto
					}
					got, err := Prompt(tp, FormatFor(tp), msgs, tools, choice, false, gen)
					if err != nil || got != want {
						t.Fatalf("%s: got %q, %v\nwant %q", tp, got, err, want)
					}
				}
			}
		}
	}
}

func TestPromptToolsAlwaysShown(t *testing.T) {
	msgs := []api.Message{{Role: "user", Content: "Hi"}}
	for tp := prompt.ChatML; tp < prompt.Raw; tp++ {
		for _, choice := range []api.ToolChoice{auto, {Mode: api.ToolRequired}, {Mode: api.ToolForced, Function: "get_weather"}} {
			got, err := Prompt(tp, FormatFor(tp), msgs, []api.Tool{weatherTool}, choice, true, true)
			if err != nil {
				t.Fatalf("%s: %v", tp, err)
			}
			if !strings.Contains(got, `"name": "get_weather"`) || !strings.Contains(got, "Hi") {
				t.Fatalf("%s (%s): tool or message missing from %q", tp, choice.Mode, got)
			}
		}
	}
}

func TestPromptFormatMismatch(t *testing.T) {
	msgs := []api.Message{{Role: "user", Content: "Hi"}}
	for _, c := range []struct {
		t prompt.Template
		f Format
	}{{prompt.ChatML, Llama3}, {prompt.Llama3, Mistral}, {prompt.ChatML, "xml"}} {
		if _, err := Prompt(c.t, c.f, msgs, []api.Tool{weatherTool}, auto, true, true); !errors.Is(err, ErrFormat) {
			t.Errorf("%s with %s: err %v, want ErrFormat", c.f, c.t, err)
		}
	}
	if _, err := Prompt(prompt.Unknown, Hermes, msgs, []api.Tool{weatherTool}, auto, true, true); !errors.Is(err, prompt.ErrUnknownTemplate) {
		t.Errorf("unknown template: %v", err)
	}
}

func TestFormatFor(t *testing.T) {
	for tp, want := range map[prompt.Template]Format{
		prompt.ChatML: Hermes, prompt.Llama3: Llama3, prompt.MistralV3: Mistral, prompt.MistralV7Tekken: Mistral,
		prompt.MistralV1: Mistral, prompt.Gemma: Hermes, prompt.Phi3: Hermes, prompt.Llama4: Hermes,
		prompt.Detect(""): Hermes,
	} {
		if got := FormatFor(tp); got != want {
			t.Errorf("FormatFor(%s) = %s, want %s", tp, got, want)
		}
	}
}

// TestPromptRoundTrip: a call rendered into a prompt's assistant turn is
// what the parser reads back as that call.
func TestPromptRoundTrip(t *testing.T) {
	c := tc(callID, "get_weather", `{"city":"Zürich \"<&>\""}`)
	msgs := []api.Message{{Role: "user", Content: "?"}, {Role: "assistant", ToolCalls: []api.ToolCall{c}}}
	for _, tp := range []prompt.Template{prompt.ChatML, prompt.Llama3, prompt.MistralV3, prompt.MistralV3Tekken} {
		full, err := Prompt(tp, FormatFor(tp), msgs, []api.Tool{weatherTool}, auto, true, false)
		if err != nil {
			t.Fatal(err)
		}
		head, err := Prompt(tp, FormatFor(tp), msgs[:1], []api.Tool{weatherTool}, auto, true, true)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(full, head) {
			t.Fatalf("%s: %q does not extend %q", tp, full, head)
		}
		reply := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(full[len(head):], "<|im_end|>\n"), "<|eot_id|>"), "</s>")
		got := feed(t, FormatFor(tp), []api.Tool{weatherTool}, []string{reply})
		if got.content != "" || len(got.calls) != 1 || got.calls[0] != (call{"get_weather", c.Function.Arguments}) {
			t.Errorf("%s: reply %q parsed as %+v", tp, reply, got)
		}
	}
}

func TestPyJSON(t *testing.T) {
	for _, c := range []struct {
		in     string
		indent int
		want   string
	}{
		{`{"a":1,"b":[true,false,null],"c":{},"d":[],"e":"x"}`, 0, `{"a": 1, "b": [true, false, null], "c": {}, "d": [], "e": "x"}`},
		{`{"a":1,"b":[1,{"c":2}],"e":{}}`, 2, "{\n  \"a\": 1,\n  \"b\": [\n    1,\n    {\n      \"c\": 2\n    }\n  ],\n  \"e\": {}\n}"},
		{`"\u00e9\u2028<&>\"\\\n\t\u0001/"`, 0, "\"é\u2028<&>\\\"\\\\\\n\\t\\u0001/\""},
		{` { "z" : 1.50e3 , "a" : -0 } `, 0, `{"z": 1.50e3, "a": -0}`},
		{`[]`, 4, `[]`},
	} {
		got, err := pyJSON([]byte(c.in), c.indent)
		if err != nil || got != c.want {
			t.Errorf("pyJSON(%s, %d) = %q, %v; want %q", c.in, c.indent, got, err, c.want)
		}
	}
	for _, bad := range []string{`{`, `{"a":}`, `{} {}`, `[1,]`, ``} {
		if got, err := pyJSON([]byte(bad), 0); err == nil {
			t.Errorf("pyJSON(%q) = %q, want an error", bad, got)
		}
	}
}
