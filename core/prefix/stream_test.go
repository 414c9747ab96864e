package prefix

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/api"
)

func chat(msgs ...api.Message) *api.ExecuteRequest {
	return &api.ExecuteRequest{Messages: msgs}
}

func user(s string) api.Message      { return api.Message{Role: "user", Content: s} }
func system(s string) api.Message    { return api.Message{Role: "system", Content: s} }
func assistant(s string) api.Message { return api.Message{Role: "assistant", Content: s} }

func stream(req *api.ExecuteRequest) string { return string(AppendRequest(nil, req)) }

func TestAppendRequestDistinct(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b *api.ExecuteRequest
	}{
		{"content boundary", chat(user("ab"), user("c")), chat(user("a"), user("bc"))},
		{"role vs content", chat(api.Message{Role: "user\x00", Content: "x"}), chat(api.Message{Role: "user", Content: "\x00x"})},
		{"escape byte in content", chat(user("a\x01")), chat(user("a\x00"))},
		{"escaped terminator vs escape", chat(user("\x01" + "0")), chat(user("\x00"))},
		{"content mimics next message", chat(user("a\x00E" + "Muser\x00\x00\x00b")), chat(user("a"), user("b"))},
		{"name vs content", chat(api.Message{Role: "user", Name: "bob"}), chat(api.Message{Role: "user", Content: "bob"})},
		{"tool_call_id vs name", chat(api.Message{Role: "tool", ToolCallID: "c1"}), chat(api.Message{Role: "tool", Name: "c1"})},
		{"one message vs two", chat(user("a")), chat(user("a"), user(""))},
		{"tool call vs content", chat(api.Message{Role: "assistant", ToolCalls: []api.ToolCall{{ID: "1", Type: "function", Function: api.ToolCallFunction{Name: "f", Arguments: "{}"}}}}),
			chat(api.Message{Role: "assistant", Content: "K1\x00function\x00f\x00{}"})},
		{"call arguments boundary", chat(api.Message{Role: "assistant", ToolCalls: []api.ToolCall{{Function: api.ToolCallFunction{Name: "fa", Arguments: "b"}}}}),
			chat(api.Message{Role: "assistant", ToolCalls: []api.ToolCall{{Function: api.ToolCallFunction{Name: "f", Arguments: "ab"}}}})},
		{"raw vs chat", &api.ExecuteRequest{Prompt: stream(chat(user("a")))[1:]}, chat(user("a"))},
		{"raw prompts", &api.ExecuteRequest{Prompt: "a"}, &api.ExecuteRequest{Prompt: "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a, b := stream(tc.a), stream(tc.b); a == b {
				t.Fatalf("both serialize to %q", a)
			}
		})
	}
}

// TestAppendRequestInjective serializes every list of up to two messages over
// a small alphabet of tricky roles and contents and checks that different
// lists never give the same stream.
func TestAppendRequestInjective(t *testing.T) {
	parts := []string{"", "a", "\x00", "\x01", "\x010", "\x011", "a\x00", "E", "M", "\x00E", "ab"}
	var msgs []api.Message
	for _, role := range []string{"user", "us", "er", "\x00"} {
		for _, c := range parts {
			msgs = append(msgs, api.Message{Role: role, Content: c})
		}
	}
	msgs = append(msgs, api.Message{Role: "tool", ToolCallID: "a"}, api.Message{Role: "a", Name: "\x00"})
	seen := map[string]string{}
	check := func(req *api.ExecuteRequest) {
		key, _ := json.Marshal(req.Messages)
		s := stream(req)
		if prev, ok := seen[s]; ok && prev != string(key) {
			t.Fatalf("%s and %s both serialize to %q", prev, key, s)
		}
		seen[s] = string(key)
	}
	for _, a := range msgs {
		check(chat(a))
		for _, b := range msgs {
			check(chat(a, b))
		}
	}
	if want := len(msgs) + len(msgs)*len(msgs); len(seen) != want {
		t.Fatalf("%d distinct streams, want %d", len(seen), want)
	}
}

var weatherTool = api.Tool{Type: "function", Function: api.ToolFunction{Name: "weather", Description: "the weather",
	Parameters: json.RawMessage(`{"type": "object", "properties": {"city": {"type": "string"}}}`)}}

// TestAppendGeneratedPrefix: a conversation's turn k+1 stream has turn k's
// generated stream as a byte prefix.
func TestAppendGeneratedPrefix(t *testing.T) {
	call := api.Message{Role: "assistant", ToolCalls: []api.ToolCall{{ID: "c1", Type: "function",
		Function: api.ToolCallFunction{Name: "weather", Arguments: `{"city":"Paris"}`}}}}
	for _, tc := range []struct {
		name    string
		turns   []api.Message // user turns, and other turns the client adds
		replies []string
		tools   []api.Tool
	}{
		{"plain", []api.Message{system("be brief"), user("hi")}, []string{"hello!", "sure: \x00\x01 done"}, nil},
		{"no system", []api.Message{user("hi")}, []string{"a reply with\nnewlines", ""}, nil},
		{"tools", []api.Message{system("s"), user("weather?"), call, {Role: "tool", ToolCallID: "c1", Content: "sunny"}},
			[]string{"It is sunny.", "You are welcome."}, []api.Tool{weatherTool}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &api.ExecuteRequest{Messages: tc.turns, Tools: tc.tools, Temperature: new(0.5)}
			for k, reply := range tc.replies {
				gen := AppendGenerated(nil, req, reply)
				next := &api.ExecuteRequest{Tools: tc.tools,
					Messages: append(append(append([]api.Message(nil), req.Messages...), assistant(reply)), user(fmt.Sprintf("turn %d", k+2)))}
				if s := AppendRequest(nil, next); !bytes.HasPrefix(s, gen) {
					t.Fatalf("turn %d: next stream\n%q\ndoes not start with the generated stream\n%q", k+1, s, gen)
				}
				if s := AppendRequest(nil, req); !bytes.HasPrefix(gen, s) || len(gen) <= len(s) && reply != "" {
					t.Fatalf("turn %d: generated stream does not extend the request's", k+1)
				}
				req = next
			}
		})
	}
	t.Run("raw", func(t *testing.T) {
		req := &api.ExecuteRequest{Prompt: "Once upon a time"}
		gen := AppendGenerated(nil, req, ", a cat")
		next := &api.ExecuteRequest{Prompt: "Once upon a time, a cat sat."}
		if s := AppendRequest(nil, next); !bytes.HasPrefix(s, gen) {
			t.Fatalf("%q does not start with %q", s, gen)
		}
	})
}

func TestAppendRequestHeader(t *testing.T) {
	base := func() *api.ExecuteRequest { return chat(system("s"), user("u")) }
	ref := stream(base())
	other := weatherTool
	other.Function.Description = "another"
	for _, tc := range []struct {
		name    string
		tweak   func(r *api.ExecuteRequest)
		changes bool
	}{
		{"tools", func(r *api.ExecuteRequest) { r.Tools = []api.Tool{weatherTool} }, true},
		{"tool order", func(r *api.ExecuteRequest) { r.Tools = []api.Tool{other, weatherTool} }, true},
		{"tools with choice none", func(r *api.ExecuteRequest) {
			r.Tools = []api.Tool{weatherTool}
			r.ToolChoice = &api.ToolChoice{Mode: api.ToolNone}
		}, false},
		{"invalid parameters", func(r *api.ExecuteRequest) {
			tl := weatherTool
			tl.Function.Parameters = json.RawMessage(`{not json`)
			r.Tools = []api.Tool{tl}
		}, true},
		{"sampling", func(r *api.ExecuteRequest) {
			r.Temperature, r.TopP, r.TopK, r.MinP = new(0.1), new(0.5), new(3), new(0.2)
			r.RepetitionPenalty, r.FrequencyPenalty, r.PresencePenalty = new(1.1), new(0.5), new(0.5)
			r.LogitBias = map[string]float64{"5": -100}
		}, false},
		{"max_tokens stop seed", func(r *api.ExecuteRequest) {
			r.MaxTokens, r.Stop, r.Seed, r.IgnoreEOS = new(7), []string{"x"}, new(int64(3)), true
		}, false},
		{"response format and grammar", func(r *api.ExecuteRequest) {
			r.ResponseFormat = &api.ResponseFormat{Type: api.FormatJSONObject}
			r.Grammar = `root ::= "a"`
		}, false},
		{"job id, cache, resume, logprobs", func(r *api.ExecuteRequest) {
			r.JobID, r.CachePrompt, r.ResumeTokens, r.Logprobs, r.TopLogprobs = "j", new(false), []int32{1, 2}, true, 2
			r.ParallelToolCalls = new(false)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := base()
			tc.tweak(r)
			if got := stream(r) != ref; got != tc.changes {
				t.Fatalf("stream changed: %v, want %v\n%q\n%q", got, tc.changes, stream(r), ref)
			}
		})
	}
	t.Run("whitespace of parameters", func(t *testing.T) {
		a, b := weatherTool, weatherTool
		b.Function.Parameters = json.RawMessage("{ \"type\":\"object\",\n \"properties\": {\"city\": {\"type\": \"string\"}} }")
		if stream(&api.ExecuteRequest{Tools: []api.Tool{a}, Messages: []api.Message{user("u")}}) !=
			stream(&api.ExecuteRequest{Tools: []api.Tool{b}, Messages: []api.Message{user("u")}}) {
			t.Fatal("the tools' JSON is not canonical")
		}
	})
	if AppendRequest(nil, nil) != nil {
		t.Fatal("a nil request has a stream")
	}
}

func TestHashes(t *testing.T) {
	long := []byte(strings.Repeat("0123456789abcdef", 20)) // 320 bytes
	for _, tc := range []struct {
		name       string
		stream     []byte
		blockBytes int
		want       int
	}{
		{"empty", nil, 64, 0},
		{"partial block", long[:63], 64, 0},
		{"exact", long[:128], 64, 2},
		{"partial tail", long, 64, 5},
		{"default size", long, 0, 5},
		{"small blocks", long, 16, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Hashes(nil, "m", tc.stream, tc.blockBytes)
			if len(h) != tc.want {
				t.Fatalf("%d hashes, want %d", len(h), tc.want)
			}
		})
	}
	t.Run("chained", func(t *testing.T) {
		full := Hashes(nil, "m", long, 16)
		part := Hashes(nil, "m", long[:100], 16)
		if len(part) != 6 || !slices.Equal(full[:6], part) {
			t.Fatal("a prefix's hashes are not a prefix of the stream's")
		}
		// Equal blocks at different depths hash differently.
		if full[0] == full[1] {
			t.Fatal("the hash of a block does not depend on what precedes it")
		}
		changed := append([]byte(nil), long...)
		changed[5] = 'x'
		if h := Hashes(nil, "m", changed, 16); h[0] == full[0] || h[19] == full[19] {
			t.Fatal("a changed first block does not change every hash")
		}
	})
	t.Run("model seeds", func(t *testing.T) {
		if Hashes(nil, "a", long, 64)[0] == Hashes(nil, "b", long, 64)[0] {
			t.Fatal("two models give the same hash")
		}
	})
	t.Run("stable across processes", func(t *testing.T) {
		// Pinned: a change of the hash function must be deliberate.
		const want = uint64(0x86a05162dab09e93)
		if got := Hashes(nil, "qwen", long, 64)[0]; got != want {
			t.Fatalf("hash %#x, want %#x", got, want)
		}
	})
	t.Run("appends", func(t *testing.T) {
		h := Hashes([]uint64{7}, "m", long, 64)
		if len(h) != 6 || h[0] != 7 {
			t.Fatalf("got %v", h)
		}
	})
}

func FuzzAppendRequest(f *testing.F) {
	f.Add("", "user", "hello", "reply", "", false, 64)
	f.Add("a prompt", "user", "\x00\x01", "\x01", "f", true, 3)
	f.Fuzz(func(t *testing.T, prompt, role, content, reply, tool string, withTool bool, blockBytes int) {
		req := &api.ExecuteRequest{Prompt: prompt}
		if role != "" || content != "" {
			req.Messages = []api.Message{{Role: role, Content: content, Name: tool}}
		}
		if withTool {
			req.Tools = []api.Tool{{Type: "function", Function: api.ToolFunction{Name: tool, Parameters: json.RawMessage(content)}}}
		}
		a, b := AppendRequest(nil, req), AppendRequest([]byte("x"), req)
		if !bytes.Equal(a, b[1:]) {
			t.Fatal("not deterministic")
		}
		gen := AppendGenerated(nil, req, reply)
		if !bytes.HasPrefix(gen, a) {
			t.Fatal("the generated stream does not extend the request's")
		}
		if len(req.Messages) > 0 {
			next := *req
			next.Messages = append(append([]api.Message(nil), req.Messages...), assistant(reply))
			if !bytes.HasPrefix(AppendRequest(nil, &next), gen) {
				t.Fatal("next turn does not extend the generated stream")
			}
		}
		blockBytes = blockBytes%300 + 1
		if blockBytes <= 0 {
			blockBytes += 300
		}
		h1, h2 := Hashes(nil, role, gen, blockBytes), Hashes(nil, role, gen, blockBytes)
		if !slices.Equal(h1, h2) || len(h1) != len(gen)/blockBytes {
			t.Fatalf("hashes: %d and %d for %d bytes in blocks of %d", len(h1), len(h2), len(gen), blockBytes)
		}
	})
}
