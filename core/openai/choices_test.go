package openai_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/api"
)

// Translation of the choice-level features over the scripted backend: the
// shapes OpenAI's clients read. The real generation is tested in
// core/workerd and by tests/openai-sdk/features.mjs.

func lpTok(text string, i int, lp float64, alts ...string) api.Event {
	ev := tok(text, i)
	l := &api.Logprob{TokenText: api.NewTokenText([]byte(text)), Logprob: lp}
	for k, a := range alts {
		l.Top = append(l.Top, api.TopLogprob{ID: int32(k), TokenText: api.NewTokenText([]byte(a)), Logprob: lp - float64(k)})
	}
	ev.Token.LP = l
	return ev
}

func TestChatLogprobsShape(t *testing.T) {
	b := &backend{script: script{events: []api.Event{started("m"), lpTok("Hi", 0, -0.5, "Hi", "Yo"), lpTok("\xe2\x82", 1, -1.5, "a", "b"), end(api.StopMaxTokens, 3, 2, 0)}}}
	ts := server(t, b)
	r := post(t, ts, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":2}`)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var out struct {
		Choices []struct {
			Logprobs struct {
				Content []struct {
					Token       string
					Logprob     float64
					Bytes       []int
					TopLogprobs []struct {
						Token   string
						Logprob float64
						Bytes   []int
					} `json:"top_logprobs"`
				}
			}
		}
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	c := out.Choices[0].Logprobs.Content
	if len(c) != 2 || c[0].Token != "Hi" || c[0].Logprob != -0.5 || len(c[0].TopLogprobs) != 2 || c[0].TopLogprobs[1].Token != "Yo" {
		t.Fatalf("content %+v", c)
	}
	if len(c[1].Bytes) != 2 || c[1].Bytes[0] != 0xe2 || c[1].Bytes[1] != 0x82 {
		t.Errorf("a partial character's bytes: %+v", c[1])
	}
	if want := b.last(t).Exec; !want.Logprobs || want.TopLogprobs != 2 {
		t.Errorf("exec %+v", want)
	}
	// Without logprobs the field is null.
	b.script.events = hello(api.StopEOS)
	r = post(t, ts, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"x"}]}`)
	if !strings.Contains(string(r.body), `"logprobs":null`) {
		t.Errorf("%s", r.body)
	}
}

func TestCompletionLogprobsShape(t *testing.T) {
	b := &backend{script: script{events: []api.Event{started("m"), lpTok("ab", 0, -0.25, "ab", "cd"), lpTok("c", 1, -2, "c", "ab"), end(api.StopMaxTokens, 3, 2, 0)}}}
	ts := server(t, b)
	r := post(t, ts, "/v1/completions", `{"model":"m","prompt":"x","logprobs":2}`)
	var out struct {
		Choices []struct {
			Logprobs struct {
				Tokens        []string
				TokenLogprobs []float64            `json:"token_logprobs"`
				TopLogprobs   []map[string]float64 `json:"top_logprobs"`
				TextOffset    []int                `json:"text_offset"`
			}
		}
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	lp := out.Choices[0].Logprobs
	if strings.Join(lp.Tokens, "|") != "ab|c" || lp.TokenLogprobs[1] != -2 || lp.TextOffset[0] != 0 || lp.TextOffset[1] != 2 ||
		lp.TopLogprobs[0]["cd"] != -1.25 || len(lp.TopLogprobs[1]) != 2 {
		t.Fatalf("logprobs %+v", lp)
	}
}

// TestChoicesN: n choices are n requests, seeds seed+i, the prompt counted
// once in usage; the streamed chunks carry each choice's index.
func TestChoicesN(t *testing.T) {
	b := &backend{script: script{events: hello(api.StopEOS)}}
	ts := server(t, b)
	r := post(t, ts, "/v1/chat/completions", `{"model":"m","n":3,"seed":7,"messages":[{"role":"user","content":"x"}]}`)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var out struct {
		Choices []struct {
			Index   int
			Message struct{ Content string }
		}
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
		}
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Choices) != 3 || out.Choices[2].Index != 2 || out.Choices[1].Message.Content != "Hello" {
		t.Fatalf("%s", r.body)
	}
	if out.Usage.PromptTokens != 5 || out.Usage.CompletionTokens != 9 {
		t.Errorf("usage %+v", out.Usage)
	}
	b.mu.Lock()
	seeds := []int64{}
	for _, g := range b.got {
		seeds = append(seeds, *g.Exec.Seed)
	}
	b.mu.Unlock()
	if len(seeds) != 3 || seeds[0] != 7 || seeds[1] != 8 || seeds[2] != 9 {
		t.Errorf("seeds %v", seeds)
	}

	r = post(t, ts, "/v1/chat/completions", `{"model":"m","n":2,"stream":true,"messages":[{"role":"user","content":"x"}]}`)
	finished := map[float64]bool{}
	text := map[float64]string{}
	for _, c := range chunks(t, r) {
		if c == "[DONE]" {
			continue
		}
		m := object(t, []byte(c))
		for _, ch := range m["choices"].([]any) {
			ch := ch.(map[string]any)
			i := ch["index"].(float64)
			if d, ok := ch["delta"].(map[string]any)["content"].(string); ok {
				text[i] += d
			}
			if ch["finish_reason"] != nil {
				finished[i] = true
			}
		}
	}
	if !finished[0] || !finished[1] || text[0] != "Hello" || text[1] != "Hello" {
		t.Errorf("finished %v text %v", finished, text)
	}
}

// TestChoicesFirstFails: when the first choice fails before its first token
// the others are not started, and the request fails with its error.
func TestChoicesFirstFails(t *testing.T) {
	b := &backend{script: script{events: []api.Event{started("m"), errEvent(api.CodeDecodeFailed)}}}
	ts := server(t, b)
	r := post(t, ts, "/v1/chat/completions", `{"model":"m","n":4,"messages":[{"role":"user","content":"x"}]}`)
	if r.status < 500 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	b.mu.Lock()
	n := len(b.got)
	b.mu.Unlock()
	if n != 1 {
		t.Errorf("%d requests reached the backend, want 1", n)
	}
}

func toolStarted() api.Event {
	ev := started("m")
	ev.Started.ToolFormat = "hermes"
	return ev
}

const weatherTools = `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]`

func TestToolCallsParsed(t *testing.T) {
	call := "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
	var evs []api.Event
	evs = append(evs, toolStarted())
	for i := 0; i < len(call); i += 7 {
		evs = append(evs, tok(call[i:min(i+7, len(call))], i/7))
	}
	evs = append(evs, end(api.StopEOS, 10, len(evs)-1, 0))
	b := &backend{script: script{events: evs}}
	ts := server(t, b)
	body := `{"model":"m","messages":[{"role":"user","content":"weather?"}],` + weatherTools
	r := post(t, ts, "/v1/chat/completions", body+`}`)
	var out struct {
		Choices []struct {
			Message struct {
				Content   *string
				ToolCalls []api.ToolCall `json:"tool_calls"`
			}
			FinishReason string `json:"finish_reason"`
		}
	}
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatal(err)
	}
	ch := out.Choices[0]
	if ch.FinishReason != "tool_calls" || ch.Message.Content != nil || len(ch.Message.ToolCalls) != 1 {
		t.Fatalf("%s", r.body)
	}
	tc := ch.Message.ToolCalls[0]
	if tc.Type != "function" || !strings.HasPrefix(tc.ID, "call_") || tc.Function.Name != "get_weather" || tc.Function.Arguments != `{"city":"Paris"}` {
		t.Errorf("call %+v", tc)
	}

	// Streamed, forced: the first delta names the call, the next ones carry
	// its arguments, which join to the same text.
	r = post(t, ts, "/v1/chat/completions", body+`,"tool_choice":"required","stream":true}`)
	var args strings.Builder
	var first map[string]any
	deltas := 0
	finish := ""
	for _, c := range chunks(t, r) {
		if c == "[DONE]" {
			continue
		}
		ch := object(t, []byte(c))["choices"].([]any)[0].(map[string]any)
		if f, ok := ch["finish_reason"].(string); ok {
			finish = f
		}
		tcs, ok := ch["delta"].(map[string]any)["tool_calls"].([]any)
		if !ok {
			continue
		}
		d := tcs[0].(map[string]any)
		if first == nil {
			first = d
		} else if _, hasID := d["id"]; hasID {
			t.Errorf("a later delta repeats the id: %v", d)
		}
		deltas++
		args.WriteString(d["function"].(map[string]any)["arguments"].(string))
	}
	if first == nil || first["id"] == nil || first["type"] != "function" || first["function"].(map[string]any)["name"] != "get_weather" {
		t.Fatalf("first delta %v", first)
	}
	if args.String() != `{"city":"Paris"}` || deltas < 3 || finish != "tool_calls" {
		t.Errorf("arguments %q in %d deltas, finish %q", args.String(), deltas, finish)
	}

	// Text that is no call stays content.
	b.script.events = []api.Event{toolStarted(), tok("<tool_call>not json</tool_call> done", 0), end(api.StopEOS, 10, 1, 0)}
	r = post(t, ts, "/v1/chat/completions", body+`}`)
	if !strings.Contains(string(r.body), `"content":"\u003ctool_call\u003enot json\u003c/tool_call\u003e done"`) && !strings.Contains(string(r.body), `not json`) {
		t.Errorf("%s", r.body)
	}
	if strings.Contains(string(r.body), `"tool_calls"`) {
		t.Errorf("a malformed call became a call: %s", r.body)
	}
}
