package workerd_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/synth"
	"github.com/llorch/llorch/core/workerd"
)

// The tools of the tool-format tests: small schemas (an enum, bounded
// integers, strings of at most 8 characters) that a random model fills in a
// few dozen tokens under the tool grammar.
const tfTools = `[
 {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
  "parameters": {"type": "object", "properties": {
   "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
   "days": {"type": "integer", "minimum": 1, "maximum": 7},
   "city": {"type": "string", "maxLength": 8}},
   "required": ["unit", "days", "city"], "additionalProperties": false}}},
 {"type": "function", "function": {"name": "set_alarm", "description": "Set an alarm",
  "parameters": {"type": "object", "properties": {
   "hour": {"type": "integer", "minimum": 0, "maximum": 23},
   "label": {"type": "string", "maxLength": 8}},
   "required": ["hour"], "additionalProperties": false}}}]`

// checkToolArgs checks a call's arguments against its tool's schema.
func checkToolArgs(t *testing.T, name, args string) {
	t.Helper()
	var obj map[string]any
	dec := json.NewDecoder(strings.NewReader(args))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil {
		t.Errorf("%s arguments %q are not a JSON object: %v", name, args, err)
		return
	}
	integer := func(key string, lo, hi int64) {
		n, ok := obj[key].(json.Number)
		if !ok {
			t.Errorf("%s(%s): %s is not a number", name, args, key)
			return
		}
		if i, err := strconv.ParseInt(n.String(), 10, 64); err != nil || i < lo || i > hi {
			t.Errorf("%s(%s): %s = %s, want an integer in [%d, %d]", name, args, key, n, lo, hi)
		}
	}
	short := func(key string) {
		s, ok := obj[key].(string)
		if !ok || utf8.RuneCountInString(s) > 8 {
			t.Errorf("%s(%s): %s is not a string of at most 8 characters", name, args, key)
		}
	}
	var keys []string
	switch name {
	case "get_weather":
		keys = []string{"unit", "days", "city"}
		if u := obj["unit"]; u != "celsius" && u != "fahrenheit" {
			t.Errorf("%s(%s): unit %v is not in the enum", name, args, u)
		}
		integer("days", 1, 7)
		short("city")
	case "set_alarm":
		keys = []string{"hour", "label"}
		integer("hour", 0, 23)
		if _, ok := obj["label"]; ok {
			short("label")
		}
	default:
		t.Errorf("call to %q, not one of the tools", name)
		return
	}
	for k := range obj {
		if !slices.Contains(keys, k) {
			t.Errorf("%s(%s): unknown argument %q", name, args, k)
		}
	}
}

type tfCall struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type tfResponse struct {
	Choices []struct {
		Message struct {
			Content   *string  `json:"content"`
			ToolCalls []tfCall `json:"tool_calls"`
		} `json:"message"`
		Delta struct {
			Content   *string  `json:"content"`
			ToolCalls []tfCall `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *oaUsage `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// tfChat sends a non-streaming chat request and returns the one choice's
// calls, its finish reason and the prompt's token count.
func tfChat(t *testing.T, url, body string) ([]tfCall, string, int) {
	t.Helper()
	status, _, data := post(t, url+"/v1/chat/completions", "", body)
	var r tfResponse
	if err := json.Unmarshal(data, &r); err != nil || status != http.StatusOK || len(r.Choices) != 1 || r.Usage == nil {
		t.Fatalf("status %d: %s (%v)", status, data, err)
	}
	c := r.Choices[0]
	finish := ""
	if c.FinishReason != nil {
		finish = *c.FinishReason
	}
	if len(c.Message.ToolCalls) > 0 && c.Message.Content != nil && *c.Message.Content != "" {
		t.Errorf("content %q beside the tool calls", *c.Message.Content)
	}
	return c.Message.ToolCalls, finish, r.Usage.PromptTokens
}

// tfChatStream sends a streaming chat request and joins the streamed tool
// call pieces.
func tfChatStream(t *testing.T, url, body string) ([]tfCall, string) {
	t.Helper()
	var calls []tfCall
	var content strings.Builder
	finish := ""
	for _, r := range chunks[tfResponse](t, url+"/v1/chat/completions", body) {
		if r.Error != nil {
			t.Fatalf("error event: %s", r.Error.Message)
		}
		for _, c := range r.Choices {
			if c.Delta.Content != nil {
				content.WriteString(*c.Delta.Content)
			}
			for _, d := range c.Delta.ToolCalls {
				switch {
				case d.Index == len(calls) && d.ID != "":
					calls = append(calls, d)
				case d.Index == len(calls)-1 && d.ID == "" && d.Function.Name == "":
					calls[d.Index].Function.Arguments += d.Function.Arguments
				default:
					t.Fatalf("tool call delta %+v out of order (%d calls so far)", d, len(calls))
				}
			}
			if c.FinishReason != nil {
				finish = *c.FinishReason
			}
		}
	}
	if content.Len() > 0 {
		t.Errorf("streamed content %q beside the tool calls", content.String())
	}
	return calls, finish
}

func checkCalls(t *testing.T, what string, calls []tfCall, finish string) {
	t.Helper()
	if len(calls) == 0 || finish != "tool_calls" {
		t.Fatalf("%s: %d calls, finish_reason %q; want calls and tool_calls", what, len(calls), finish)
	}
	for _, c := range calls {
		t.Logf("%s: %s %s(%s)", what, c.ID, c.Function.Name, c.Function.Arguments)
		if c.ID == "" || c.Type != "function" {
			t.Errorf("%s: call %+v has no id or type", what, c)
		}
		checkToolArgs(t, c.Function.Name, c.Function.Arguments)
	}
}

// TestToolFormatsEndToEnd runs tool calls through a worker on synthetic
// models whose templates are Llama 3.1's and Mistral's, markers as control
// tokens: the worker picks the format, the tool grammar forces calls valid
// for the schemas, the parser turns the output into tool_calls (streamed and
// not), and the calls and their results go back into the next prompt.
func TestToolFormatsEndToEnd(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		chat      synth.Chat
		marker    string // the control token that marks a call
		inGrammar bool   // whether the tool grammar lets it open the reply
	}{
		{synth.ChatLlama3, "<|python_tag|>", true},
		{synth.ChatMistral, "[TOOL_CALLS]", true},
	} {
		t.Run(string(tc.chat), func(t *testing.T) {
			p := synth.TinyChat(tc.chat)
			path := filepath.Join(dir, p.Name+".gguf")
			if err := synth.Write(path, p); err != nil {
				t.Fatal(err)
			}
			w := startWorker(t, func(c *workerd.Config) { c.ModelPath = path })
			model := p.Name
			user := `{"role": "user", "content": "What is the weather in Paris?"}`
			base := `"model": "` + model + `", "max_tokens": 1024, "seed": 7, "tools": ` + tfTools

			// /execute names the format the output is parsed in.
			var tools []api.Tool
			if err := json.Unmarshal([]byte(tfTools), &tools); err != nil {
				t.Fatal(err)
			}
			exec := &api.ExecuteRequest{Messages: []api.Message{{Role: "user", Content: "What is the weather in Paris?"}},
				Tools: tools, ToolChoice: &api.ToolChoice{Mode: api.ToolRequired}, MaxTokens: ptr(1024), Seed: ptr(int64(7))}
			res := collect(t, w.client, exec)
			if res.Started.ToolFormat != string(tc.chat) {
				t.Errorf("started.tool_format = %q, want %q", res.Started.ToolFormat, tc.chat)
			}
			if res.End == nil || res.End.StopReason != api.StopEOS {
				t.Errorf("the constrained generation ended with %+v, want eos", res.End)
			}

			required := `{` + base + `, "tool_choice": "required", "messages": [` + user + `]}`
			calls, finish, promptTokens := tfChat(t, w.url, required)
			checkCalls(t, "required", calls, finish)
			streamed, finish := tfChatStream(t, w.url, strings.Replace(required, `{`, `{"stream": true, `, 1))
			checkCalls(t, "required, streamed", streamed, finish)

			for _, fn := range []string{"get_weather", "set_alarm"} {
				named := `{` + base + `, "parallel_tool_calls": false, "messages": [` + user + `],
					"tool_choice": {"type": "function", "function": {"name": "` + fn + `"}}}`
				calls, finish, _ := tfChat(t, w.url, named)
				checkCalls(t, fn, calls, finish)
				if len(calls) != 1 || calls[0].Function.Name != fn {
					t.Errorf("named %s without parallel calls: got %+v, want one call to it", fn, calls)
				}
				streamed, finish := tfChatStream(t, w.url, strings.Replace(named, `{`, `{"stream": true, `, 1))
				checkCalls(t, fn+", streamed", streamed, finish)
				if len(streamed) != 1 || streamed[0].Function.Name != fn {
					t.Errorf("named %s without parallel calls, streamed: got %+v, want one call to it", fn, streamed)
				}
			}

			// The calls and their results render into the next turn.
			history := []string{user}
			asst, err := json.Marshal(map[string]any{"role": "assistant", "content": nil, "tool_calls": calls})
			if err != nil {
				t.Fatal(err)
			}
			history = append(history, string(asst))
			for _, c := range calls {
				history = append(history, fmt.Sprintf(`{"role": "tool", "tool_call_id": %q, "content": "{\"ok\": true}"}`, c.ID))
			}
			follow := `{` + base + `, "max_tokens": 4, "ignore_eos": true, "messages": [` + strings.Join(history, ", ") + `]}`
			status, _, data := post(t, w.url+"/v1/chat/completions", "", follow)
			var r tfResponse
			if err := json.Unmarshal(data, &r); err != nil || status != http.StatusOK || r.Usage == nil {
				t.Fatalf("follow-up turn: status %d: %s (%v)", status, data, err)
			}
			if r.Usage.PromptTokens <= promptTokens {
				t.Errorf("follow-up prompt has %d tokens, the first %d", r.Usage.PromptTokens, promptTokens)
			}

			// Favour the family's marker token. Mistral's grammar opens with
			// [TOOL_CALLS], Llama 3.1's may open with <|python_tag|>: the
			// grammar sees the control token's text (llama.cpp matches a
			// token's special piece), so the model writes the marker as one
			// token, as real models do, and the parser sees its text.
			markerID := tfTokenID(t, path, tc.marker)
			exec.LogitBias = map[string]float64{strconv.Itoa(markerID): 30}
			res = collect(t, w.client, exec)
			if len(res.Tokens) == 0 {
				t.Fatalf("no tokens with the marker favoured: %+v", res.End)
			}
			first := res.Tokens[0]
			if got := first.ID == int32(markerID); got != tc.inGrammar || (got && first.T != tc.marker) {
				t.Errorf("with %s (%d) favoured the first token is %+v", tc.marker, markerID, first)
			}
			// A control token the output does not show is never sampled under
			// a grammar, however favoured: the grammar would match its text
			// inside a JSON string and the client would get the string without it.
			if tc.chat == synth.ChatMistral {
				instID := tfTokenID(t, path, "[INST]")
				exec.LogitBias = map[string]float64{strconv.Itoa(instID): 30}
				res = collect(t, w.client, exec)
				if res.End == nil || res.End.StopReason != api.StopEOS {
					t.Fatalf("with [INST] favoured: %+v %+v", res.End, res.Error)
				}
				for _, tk := range res.Tokens {
					if tk.ID == int32(instID) {
						t.Fatalf("[INST] (%d) sampled under a grammar: %+v", instID, res.Tokens)
					}
				}
			}
			bias := strings.Replace(required, `{`, `{"logit_bias": {"`+strconv.Itoa(markerID)+`": 30}, `, 1)
			calls, finish, _ = tfChat(t, w.url, bias)
			checkCalls(t, "required, marker favoured", calls, finish)
			streamed, finish = tfChatStream(t, w.url, strings.Replace(bias, `{`, `{"stream": true, `, 1))
			checkCalls(t, "required, marker favoured, streamed", streamed, finish)
		})
	}
}

// tfTokenID is the id of the control token text in the model at path.
func tfTokenID(t *testing.T, path, text string) int {
	t.Helper()
	m, err := llamacpp.Load(path, llamacpp.LoadParams{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	toks, err := m.Tokenize(text, false, true)
	if err != nil || len(toks) != 1 {
		t.Fatalf("%s tokenizes to %v (%v), want one token", text, toks, err)
	}
	return int(toks[0])
}
