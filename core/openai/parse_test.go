package openai

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/llorch/llorch/core/api"
)

// chatBodyWith builds a valid chat body with extra JSON members appended.
func chatBodyWith(extra string) string {
	b := `{"model":"m","messages":[{"role":"user","content":"hi"}]`
	if extra != "" {
		b += "," + extra
	}
	return b + "}"
}

func TestParseChat(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		check func(t *testing.T, p *parsed)
	}{
		{"content string", chatBodyWith(""), func(t *testing.T, p *parsed) {
			want := []api.Message{{Role: "user", Content: "hi"}}
			if !reflect.DeepEqual(p.req.Exec.Messages, want) {
				t.Errorf("messages = %+v", p.req.Exec.Messages)
			}
		}},
		{"content text parts", `{"model":"m","messages":[{"role":"system","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"user","content":[{"type":"text","text":"q"}]}]}`,
			func(t *testing.T, p *parsed) {
				want := []api.Message{{Role: "system", Content: "a\nb"}, {Role: "user", Content: "q"}}
				if !reflect.DeepEqual(p.req.Exec.Messages, want) {
					t.Errorf("messages = %+v", p.req.Exec.Messages)
				}
			}},
		{"assistant null content and developer role", `{"model":"m","messages":[{"role":"developer","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":null},{"role":"user","content":"again"}]}`,
			func(t *testing.T, p *parsed) {
				got := p.req.Exec.Messages
				if got[0].Role != "system" || got[2].Role != "assistant" || got[2].Content != "" {
					t.Errorf("messages = %+v", got)
				}
			}},
		{"stop string", chatBodyWith(`"stop":"END"`), func(t *testing.T, p *parsed) {
			if !reflect.DeepEqual(p.req.Exec.Stop, []string{"END"}) {
				t.Errorf("stop = %q", p.req.Exec.Stop)
			}
		}},
		{"stop array", chatBodyWith(`"stop":["a","b"]`), func(t *testing.T, p *parsed) {
			if !reflect.DeepEqual(p.req.Exec.Stop, []string{"a", "b"}) {
				t.Errorf("stop = %q", p.req.Exec.Stop)
			}
		}},
		{"stop null", chatBodyWith(`"stop":null`), func(t *testing.T, p *parsed) {
			if p.req.Exec.Stop != nil {
				t.Errorf("stop = %q", p.req.Exec.Stop)
			}
		}},
		{"max_tokens", chatBodyWith(`"max_tokens":7`), func(t *testing.T, p *parsed) {
			if *p.req.Exec.MaxTokens != 7 || p.maxField != "max_tokens" {
				t.Errorf("max = %d via %s", *p.req.Exec.MaxTokens, p.maxField)
			}
		}},
		{"max_completion_tokens wins", chatBodyWith(`"max_tokens":7,"max_completion_tokens":9`), func(t *testing.T, p *parsed) {
			if *p.req.Exec.MaxTokens != 9 || p.maxField != "max_completion_tokens" {
				t.Errorf("max = %d via %s", *p.req.Exec.MaxTokens, p.maxField)
			}
		}},
		{"no limit: the backend's default", chatBodyWith(""), func(t *testing.T, p *parsed) {
			if p.req.Exec.MaxTokens != nil {
				t.Errorf("max = %d", *p.req.Exec.MaxTokens)
			}
		}},
		{"sampling", chatBodyWith(`"temperature":0.5,"top_p":0.9,"seed":42,"user":"u-1","logit_bias":{"12":-100}`), func(t *testing.T, p *parsed) {
			ex := p.req.Exec
			if *ex.Temperature != 0.5 || *ex.TopP != 0.9 || *ex.Seed != 42 || p.req.User != "u-1" || ex.LogitBias["12"] != -100 {
				t.Errorf("exec = %+v user %q", ex, p.req.User)
			}
		}},
		{"n=1 and stream with usage", chatBodyWith(`"n":1,"stream":true,"stream_options":{"include_usage":true}`), func(t *testing.T, p *parsed) {
			if !p.stream || !p.includeUsage {
				t.Errorf("stream %v usage %v", p.stream, p.includeUsage)
			}
		}},
		{"known fields ignored", chatBodyWith(`"frequency_penalty":0.5,"presence_penalty":-1,"logprobs":false,"top_logprobs":0,"response_format":{"type":"text"},"tool_choice":"none","parallel_tool_calls":true,"store":false,"metadata":{"a":"b"},"service_tier":"auto","stream":false`), nil},
		{"unknown fields ignored", chatBodyWith(`"x_future":{"deep":[1,2,3]},"another":null`), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, f := parse(kindChat, []byte(tc.body))
			if f != nil {
				t.Fatalf("rejected: %+v", f.err)
			}
			if p.req.Model != "m" {
				t.Errorf("model = %q", p.req.Model)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
		})
	}
}

func TestParseCompletion(t *testing.T) {
	p, f := parse(kindCompletion, []byte(`{"model":"m","prompt":"Once","stop":"x","seed":3}`))
	if f != nil {
		t.Fatal(f.err)
	}
	if p.req.Exec.Prompt != "Once" || *p.req.Exec.MaxTokens != defaultCompletionTokens || p.req.Exec.Stop[0] != "x" {
		t.Errorf("exec = %+v", p.req.Exec)
	}
	p, f = parse(kindCompletion, []byte(`{"model":"m","prompt":["Once"],"max_tokens":5,"echo":false,"best_of":1,"logprobs":null,"suffix":""}`))
	if f != nil {
		t.Fatal(f.err)
	}
	if p.req.Exec.Prompt != "Once" || *p.req.Exec.MaxTokens != 5 {
		t.Errorf("exec = %+v", p.req.Exec)
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name  string
		kind  kind
		body  string
		param string // "" means null
		code  string
	}{
		{"bad json", kindChat, `{"model":`, "", ""},
		{"not an object", kindChat, `[1,2]`, "", ""},
		{"empty body", kindChat, ``, "", ""},
		{"trailing garbage", kindChat, chatBodyWith("") + "x", "", ""},
		{"missing model", kindChat, `{"messages":[{"role":"user","content":"hi"}]}`, "model", ""},
		{"missing messages", kindChat, `{"model":"m"}`, "messages", ""},
		{"empty messages", kindChat, `{"model":"m","messages":[]}`, "messages", ""},
		{"tool role without call id", kindChat, `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"tool","content":"y"}]}`, "messages.[1].tool_call_id", ""},
		{"function role", kindChat, `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"function","content":"y"}]}`, "messages.[1].role", "unsupported_value"},
		{"user tool_calls", kindChat, `{"model":"m","messages":[{"role":"user","content":"x","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, "messages.[0].tool_calls", ""},
		{"empty role", kindChat, `{"model":"m","messages":[{"content":"y"}]}`, "messages.[0].role", "unsupported_value"},
		{"image part", kindChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, "messages.[0].content.[0].type", "unsupported_value"},
		{"part without text", kindChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"text"}]}]}`, "messages.[0].content.[0].text", ""},
		{"content number", kindChat, `{"model":"m","messages":[{"role":"user","content":5}]}`, "messages.[0].content", "invalid_type"},
		{"n=17", kindChat, chatBodyWith(`"n":17`), "n", "invalid_value"},
		{"n=0", kindChat, chatBodyWith(`"n":0`), "n", "invalid_value"},
		{"n string", kindChat, chatBodyWith(`"n":"2"`), "n", "invalid_type"},
		{"temperature string", kindChat, chatBodyWith(`"temperature":"hot"`), "temperature", "invalid_type"},
		{"temperature range", kindChat, chatBodyWith(`"temperature":3`), "temperature", "invalid_value"},
		{"top_p range", kindChat, chatBodyWith(`"top_p":1.5`), "top_p", "invalid_value"},
		{"max_tokens 0", kindChat, chatBodyWith(`"max_tokens":0`), "max_tokens", "invalid_value"},
		{"max_completion_tokens 0", kindChat, chatBodyWith(`"max_tokens":5,"max_completion_tokens":0`), "max_completion_tokens", "invalid_value"},
		{"seed negative", kindChat, chatBodyWith(`"seed":-1`), "seed", "invalid_value"},
		{"too many stops", kindChat, chatBodyWith(`"stop":["a","b","c","d","e"]`), "stop", "invalid_value"},
		{"empty stop", kindChat, chatBodyWith(`"stop":["a",""]`), "stop", "invalid_value"},
		{"stop number", kindChat, chatBodyWith(`"stop":5`), "stop", "invalid_type"},
		{"stream_options without stream", kindChat, chatBodyWith(`"stream_options":{"include_usage":true}`), "stream_options", ""},
		{"top_logprobs without logprobs", kindChat, chatBodyWith(`"top_logprobs":3`), "top_logprobs", ""},
		{"top_logprobs 21", kindChat, chatBodyWith(`"logprobs":true,"top_logprobs":21`), "top_logprobs", "integer_above_max_value"},
		{"response_format type", kindChat, chatBodyWith(`"response_format":{"type":"yaml"}`), "response_format.type", "invalid_value"},
		{"json_schema missing", kindChat, chatBodyWith(`"response_format":{"type":"json_schema"}`), "response_format.json_schema", "invalid_value"},
		{"json_schema bad name", kindChat, chatBodyWith(`"response_format":{"type":"json_schema","json_schema":{"name":"a b","schema":{}}}`), "response_format.json_schema.name", "invalid_value"},
		{"json_schema not an object", kindChat, chatBodyWith(`"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":[1]}}`), "response_format.json_schema.schema", "invalid_value"},
		{"tool bad name", kindChat, chatBodyWith(`"tools":[{"type":"function","function":{"name":"a/b"}}]`), "tools.[0].function.name", "invalid_value"},
		{"tool twice", kindChat, chatBodyWith(`"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]`), "tools.[1].function.name", "invalid_value"},
		{"tool type", kindChat, chatBodyWith(`"tools":[{"type":"code_interpreter","function":{"name":"f"}}]`), "tools.[0].type", "invalid_value"},
		{"tool_choice without tools", kindChat, chatBodyWith(`"tool_choice":"required"`), "tool_choice", ""},
		{"tool_choice unknown function", kindChat, chatBodyWith(`"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}`), "tool_choice.function", "invalid_value"},
		{"tool_choice bad", kindChat, chatBodyWith(`"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"always"`), "tool_choice", "invalid_value"},
		{"functions", kindChat, chatBodyWith(`"functions":[{"name":"f"}]`), "functions", "unsupported_parameter"},
		{"audio modality", kindChat, chatBodyWith(`"modalities":["text","audio"]`), "modalities", "unsupported_parameter"},
		{"presence_penalty range, with a response format", kindChat, chatBodyWith(`"response_format":{"type":"json_object"},"presence_penalty":-2.5`), "presence_penalty", "invalid_value"},
		{"frequency_penalty range", kindChat, chatBodyWith(`"frequency_penalty":3`), "frequency_penalty", "invalid_value"},
		{"logit_bias range", kindChat, chatBodyWith(`"logit_bias":{"5":200}`), "logit_bias", "invalid_value"},
		{"prompt in chat is ignored, messages missing", kindChat, `{"model":"m","prompt":"x"}`, "messages", ""},
		{"completion without prompt", kindCompletion, `{"model":"m"}`, "prompt", ""},
		{"completion empty prompt", kindCompletion, `{"model":"m","prompt":""}`, "prompt", ""},
		{"completion token prompt", kindCompletion, `{"model":"m","prompt":[1,2,3]}`, "prompt", "unsupported_value"},
		{"completion several prompts", kindCompletion, `{"model":"m","prompt":["a","b"]}`, "prompt", "unsupported_value"},
		{"completion echo", kindCompletion, `{"model":"m","prompt":"a","echo":true}`, "echo", "unsupported_parameter"},
		{"completion best_of", kindCompletion, `{"model":"m","prompt":"a","best_of":2}`, "best_of", "unsupported_parameter"},
		{"completion n", kindCompletion, `{"model":"m","prompt":"a","n":30}`, "n", "invalid_value"},
		{"completion logprobs 6", kindCompletion, `{"model":"m","prompt":"a","logprobs":6}`, "logprobs", "invalid_value"},
		{"completion max_tokens", kindCompletion, `{"model":"m","prompt":"a","max_tokens":-4}`, "max_tokens", "invalid_value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, f := parse(tc.kind, []byte(tc.body))
			if f == nil {
				t.Fatalf("accepted: %+v", p.req)
			}
			if f.status != http.StatusBadRequest || f.err.Type != "invalid_request_error" || f.err.Message == "" {
				t.Errorf("failure = %d %+v", f.status, f.err)
			}
			if got := deref(f.err.Param); got != tc.param {
				t.Errorf("param = %q, want %q (%s)", got, tc.param, f.err.Message)
			}
			if got := deref(f.err.Code); got != tc.code {
				t.Errorf("code = %q, want %q", got, tc.code)
			}
		})
	}
}

func TestPriority(t *testing.T) {
	for in, want := range map[string]string{"": "interactive", "interactive": "interactive", "batch": "batch", " Batch ": "batch"} {
		if got, f := priority(in); f != nil || got != want {
			t.Errorf("priority(%q) = %q, %v", in, got, f)
		}
	}
	if _, f := priority("urgent"); f == nil || deref(f.err.Param) != PriorityHeader {
		t.Errorf("priority(urgent) accepted or wrong param: %+v", f)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// FuzzParse: the request decoder never panics; what it accepts is a valid
// execute request with exactly one of prompt or messages; what it rejects is a
// 400 invalid_request_error with a message.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		chatBodyWith(""),
		chatBodyWith(`"stop":["a","b"],"temperature":0.5,"max_completion_tokens":3,"stream":true,"stream_options":{"include_usage":true}`),
		`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`,
		`{"model":"m","prompt":["x"],"max_tokens":2}`,
		`{"model":"m","messages":[{"role":"tool","content":null}],"n":2}`,
		`{"model":"","prompt":"\xff"}`, `[]`, `null`, `{"stop":{}}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, completion bool) {
		k := kindChat
		if completion {
			k = kindCompletion
		}
		p, fl := parse(k, body)
		if fl != nil {
			if p != nil || fl.status != http.StatusBadRequest || fl.err.Type != typeInvalidRequest || fl.err.Message == "" {
				t.Fatalf("bad rejection: %d %+v", fl.status, fl.err)
			}
			return
		}
		if e := p.req.Exec.Validate(); e != nil {
			t.Fatalf("accepted an invalid execute request: %v", e)
		}
		if (p.req.Exec.Prompt == "") == (len(p.req.Exec.Messages) == 0) {
			t.Fatal("accepted without exactly one of prompt/messages")
		}
		if (k == kindChat) != (len(p.req.Exec.Messages) > 0) {
			t.Fatal("prompt/messages do not match the endpoint")
		}
		if p.req.Model == "" || (p.includeUsage && !p.stream) {
			t.Fatalf("accepted %+v", p)
		}
	})
}
