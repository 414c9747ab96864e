package toolcall

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llorch/llorch/core/api"
)

func tool(name, params string) api.Tool {
	t := api.Tool{Type: "function", Function: api.ToolFunction{Name: name, Description: "Does " + name + "."}}
	if params != "" {
		t.Function.Parameters = json.RawMessage(params)
	}
	return t
}

var testTools = []api.Tool{
	tool("get_weather", `{"type":"object","properties":{"city":{"type":"string"},"unit":{"type":"string","enum":["c","f"]}},"required":["city"]}`),
	tool("add", `{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"required":["a","b"]}`),
	tool("now", ""),
}

// call is a parsed call without its random id.
type call struct{ name, args string }

// result is what a parser made of a text: the content and the calls, checked
// for consistency between deltas and Calls.
type result struct {
	content string
	calls   []call
}

// newParser is NewParser or NewStreamingParser.
type newParser func(Format, []api.Tool) *Parser

// feed pushes the pieces to a NewParser, see feedWith.
func feed(t *testing.T, f Format, tools []api.Tool, pieces []string) result {
	t.Helper()
	return feedWith(t, NewParser, f, tools, pieces)
}

// feedWith pushes the pieces, flushes, and checks the deltas against Calls:
// each call's first delta has its id and name, the later ones (not empty)
// concatenate to its arguments, indexes count up.
func feedWith(t *testing.T, newP newParser, f Format, tools []api.Tool, pieces []string) result {
	t.Helper()
	p := newP(f, tools)
	var ds []Delta
	for _, s := range pieces {
		ds = append(ds, p.Push(s)...)
	}
	ds = append(ds, p.Flush()...)
	var r result
	calls := p.Calls()
	args := make([]string, len(calls))
	next := 0
	for _, d := range ds {
		if d.Call == nil {
			if d.Content == "" {
				t.Fatalf("empty content delta")
			}
			r.content += d.Content
			continue
		}
		c := d.Call
		switch {
		case c.ID != "":
			if c.Index != next || c.Index >= len(calls) {
				t.Fatalf("call header index %d, want %d (of %d calls)", c.Index, next, len(calls))
			}
			if c.ID != calls[c.Index].ID || c.Name != calls[c.Index].Function.Name || c.Arguments != "" {
				t.Fatalf("call header %+v does not match call %+v", *c, calls[c.Index])
			}
			if !strings.HasPrefix(c.ID, "call_") {
				t.Fatalf("id %q", c.ID)
			}
			next++
		case c.Index < next && c.Name == "" && c.Arguments != "":
			args[c.Index] += c.Arguments
		default:
			t.Fatalf("bad call delta %+v", *c)
		}
	}
	if next != len(calls) {
		t.Fatalf("%d call headers for %d calls", next, len(calls))
	}
	for i, c := range calls {
		if args[i] != c.Function.Arguments {
			t.Fatalf("call %d: fragments %q, arguments %q", i, args[i], c.Function.Arguments)
		}
		if c.Type != "function" {
			t.Fatalf("call %d type %q", i, c.Type)
		}
		r.calls = append(r.calls, call{c.Function.Name, c.Function.Arguments})
	}
	return r
}

// splits checks, for a NewParser, that every way of cutting text in two, and
// byte by byte, gives the same result as the whole text, and returns it.
func splits(t *testing.T, f Format, tools []api.Tool, text string) result {
	t.Helper()
	return splitsWith(t, NewParser, f, tools, text)
}

func splitsWith(t *testing.T, newP newParser, f Format, tools []api.Tool, text string) result {
	t.Helper()
	feed := func(t *testing.T, f Format, tools []api.Tool, pieces []string) result {
		t.Helper()
		return feedWith(t, newP, f, tools, pieces)
	}
	want := feed(t, f, tools, []string{text})
	check := func(how string, got result) {
		t.Helper()
		if got.content != want.content || !sameCalls(got.calls, want.calls) {
			t.Fatalf("%s: got %+v, whole text gave %+v", how, got, want)
		}
	}
	for i := 0; i <= len(text); i++ {
		check("split at "+strconv.Itoa(i), feed(t, f, tools, []string{text[:i], text[i:]}))
	}
	for i := 0; i < len(text); i++ {
		for j := i + 1; j < len(text); j += 7 {
			check("split at "+strconv.Itoa(i)+","+strconv.Itoa(j), feed(t, f, tools, []string{text[:i], text[i:j], text[j:]}))
		}
	}
	var bytes []string
	for i := 0; i < len(text); i++ {
		bytes = append(bytes, text[i:i+1])
	}
	check("byte by byte", feed(t, f, tools, bytes))
	return want
}

func sameCalls(a, b []call) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParse(t *testing.T) {
	weather := call{"get_weather", `{"city":"Paris"}`}
	add := call{"add", `{"a":1,"b":2}`}
	cases := []struct {
		name    string
		f       Format
		text    string
		content string
		calls   []call
	}{
		// Hermes.
		{"hermes/plain", Hermes, "Hello there.", "Hello there.", nil},
		{"hermes/plain-with-lookalikes", Hermes, "a < b and <tool_cal and <tool_call", "a < b and <tool_cal and <tool_call", nil},
		{"hermes/one", Hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "", []call{weather}},
		{"hermes/content-before-after", Hermes, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\nDone.",
			"Let me check.Done.", []call{weather}},
		{"hermes/parallel", Hermes, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>",
			"", []call{weather, add}},
		{"hermes/no-arguments", Hermes, `<tool_call>{"name": "now"}</tool_call>`, "", []call{{"now", "{}"}}},
		{"hermes/arguments-as-string", Hermes, `<tool_call>{"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}</tool_call>`, "", []call{add}},
		{"hermes/parameters-key", Hermes, `<tool_call>{"name": "add", "parameters": {"a":1,"b":2}}</tool_call>`, "", []call{add}},
		{"hermes/unclosed-but-whole", Hermes, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n", "", []call{add}},
		{"hermes/unknown-function", Hermes, "x <tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call> y",
			"x <tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call> y", nil},
		{"hermes/bad-json", Hermes, "<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 1,}}</tool_call>",
			"<tool_call>{\"name\": \"add\", \"arguments\": {\"a\": 1,}}</tool_call>", nil},
		{"hermes/cut-off", Hermes, "ok <tool_call>\n{\"name\": \"add\", \"argu", "ok <tool_call>\n{\"name\": \"add\", \"argu", nil},
		{"hermes/bad-then-good", Hermes, "<tool_call>nope</tool_call><tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}</tool_call>",
			"<tool_call>nope</tool_call>", []call{weather}},
		{"hermes/arguments-not-object", Hermes, `<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>`, `<tool_call>{"name": "add", "arguments": [1, 2]}</tool_call>`, nil},
		{"hermes/leading-space-kept", Hermes, "  hi  ", "  hi  ", nil},
		{"hermes/unicode-args", Hermes, "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich \\u00e9 <&>\"}}</tool_call>", "",
			[]call{{"get_weather", `{"city":"Zürich \u00e9 <&>"}`}}},
		// Llama 3.
		{"llama3/one", Llama3, `{"name": "get_weather", "parameters": {"city": "Paris"}}`, "", []call{weather}},
		{"llama3/leading-space", Llama3, "\n  {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}  \n", "", []call{weather}},
		{"llama3/arguments-key", Llama3, `{"name": "add", "arguments": {"a": 1, "b": 2}}`, "", []call{add}},
		{"llama3/type-function", Llama3, `{"type": "function", "name": "add", "parameters": {"a": 1, "b": 2}}`, "", []call{add}},
		{"llama3/python-tag", Llama3, `Sure.<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": 2}}`, "Sure.", []call{add}},
		{"llama3/two", Llama3, `{"name": "add", "parameters": {"a": 1, "b": 2}} {"name": "get_weather", "parameters": {"city": "Paris"}}`, "", []call{add, weather}},
		{"llama3/content-after", Llama3, `{"name": "add", "parameters": {"a": 1, "b": 2}} That is all.`, "That is all.", []call{add}},
		{"llama3/plain", Llama3, "The answer is {x}.", "The answer is {x}.", nil},
		{"llama3/json-not-a-call", Llama3, `{"answer": 42} and more`, `{"answer": 42} and more`, nil},
		{"llama3/unknown", Llama3, `{"name": "nope", "parameters": {}}`, `{"name": "nope", "parameters": {}}`, nil},
		{"llama3/cut-off", Llama3, `{"name": "add", "parameters": {"a": 1`, `{"name": "add", "parameters": {"a": 1`, nil},
		{"llama3/braces-in-strings", Llama3, `{"name": "get_weather", "parameters": {"city": "}{\"]["}}`, "", []call{{"get_weather", `{"city":"}{\"]["}`}}},
		{"llama3/python-tag-builtin", Llama3, `<|python_tag|>brave_search.call(query="x")`, `<|python_tag|>brave_search.call(query="x")`, nil},
		// Mistral.
		{"mistral/one", Mistral, `[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}]`, "", []call{weather}},
		{"mistral/tekken-with-id", Mistral, `[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}, "id": "abcDEF123"}]`, "", []call{weather}},
		{"mistral/parallel", Mistral, `[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "add", "arguments": {"a": 1, "b": 2}}]`, "", []call{weather, add}},
		{"mistral/content-before-after", Mistral, `I will call. [TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": 2}}] ok`, "I will call.ok", []call{add}},
		{"mistral/v11", Mistral, `[TOOL_CALLS]get_weather[ARGS]{"city": "Paris"}[TOOL_CALLS]add[ARGS]{"a": 1, "b": 2}`, "", []call{weather, add}},
		{"mistral/v11-call-id", Mistral, `[TOOL_CALLS]add[CALL_ID]a1b2c3d4e[ARGS]{"a":1,"b":2}`, "", []call{add}},
		{"mistral/v11-unknown", Mistral, `[TOOL_CALLS]nope[ARGS]{"a":1}`, `[TOOL_CALLS]nope[ARGS]{"a":1}`, nil},
		{"mistral/v11-bad-name", Mistral, `[TOOL_CALLS]no pe[ARGS]{}`, `[TOOL_CALLS]no pe[ARGS]{}`, nil},
		{"mistral/one-bad-in-list", Mistral, `[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "x", "arguments": {}}]`,
			`[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1, "b": 2}}, {"name": "x", "arguments": {}}]`, nil},
		{"mistral/object-not-list", Mistral, `[TOOL_CALLS] {"name": "add", "arguments": {"a": 1, "b": 2}}`, "", []call{add}},
		{"mistral/empty-list", Mistral, `[TOOL_CALLS] []`, `[TOOL_CALLS] []`, nil},
		{"mistral/cut-off", Mistral, `[TOOL_CALLS] [{"name": "add"`, `[TOOL_CALLS] [{"name": "add"`, nil},
		{"mistral/not-json", Mistral, `[TOOL_CALLS] !!`, `[TOOL_CALLS] !!`, nil},
		{"mistral/bare-array", Mistral, `[{"name": "add", "arguments": {"a": 1, "b": 2}}]`, "", []call{add}},
		{"mistral/bare-array-not-calls", Mistral, `[1, 2] and [{"name": "add", "arguments": {}}]`, `[1, 2] and [{"name": "add", "arguments": {}}]`, nil},
		{"mistral/plain", Mistral, `[INST] is not [TOOL_CALL`, `[INST] is not [TOOL_CALL`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := splits(t, c.f, testTools, c.text)
			if got.content != c.content || !sameCalls(got.calls, c.calls) {
				t.Errorf("got content %q calls %v\nwant content %q calls %v", got.content, got.calls, c.content, c.calls)
			}
		})
	}
}

// TestParseNoTools: without tools nothing is a call.
func TestParseNoTools(t *testing.T) {
	for _, f := range []Format{Hermes, Llama3, Mistral} {
		text := map[Format]string{
			Hermes:  `<tool_call>{"name": "add", "arguments": {}}</tool_call>`,
			Llama3:  `{"name": "add", "parameters": {}}`,
			Mistral: `[TOOL_CALLS] [{"name": "add", "arguments": {}}]`,
		}[f]
		got := splits(t, f, nil, text)
		if got.content != text || len(got.calls) != 0 {
			t.Errorf("%s: %+v", f, got)
		}
	}
}

// TestIDs: ids are distinct and their last nine characters are what
// Mistral's templates use.
func TestIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if len(id) != 29 || !strings.HasPrefix(id, "call_") || seen[id] {
			t.Fatalf("id %q (len %d) repeated or malformed", id, len(id))
		}
		seen[id] = true
		if m := mistralID(id); m != id[len(id)-9:] {
			t.Fatalf("mistralID(%q) = %q", id, m)
		}
	}
	if m := mistralID("x"); len(m) != 9 || m != mistralID("x") {
		t.Fatalf("mistralID of a short id %q", m)
	}
}

// FuzzParser: no panic, content and calls do not depend on how the text is
// cut, deltas agree with Calls, and no text is lost when nothing is a call;
// the same of a streaming parser, which also reads the text as a string
// argument of calls in the grammar's shape (checkStream).
func FuzzParser(f *testing.F) {
	for _, s := range []string{
		"<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b\": 2}}\n</tool_call>",
		"hi <tool_call>{\"name\": \"now\"}</tool_call> <tool_call>bad</tool_call>",
		`{"name": "add", "parameters": {"a": 1, "b": 2}} {"x"`,
		`x<|python_tag|>{"name": "now", "parameters": {}}`,
		`[TOOL_CALLS] [{"name": "add", "arguments": {"a": 1}}]`,
		`[TOOL_CALLS]add[CALL_ID]12[ARGS]{"a":1}[TOOL_CALLS]now[ARGS]{}`,
		"<tool_call>\n{\"name\": \"add\", \"id\": [\"}\"], \"arguments\": {\"a\": {\"b\": [1, \"\\\"\"]}}, \"x\": 1e3}\n</tool_",
		`[TOOL_CALLS] [{"name": "now", "arguments": "{}"}, {"name": "add", "arguments": {"a"`,
		"</tool_call>\n<tool_call>",
		"\"\\\"{[}]",
	} {
		for _, fm := range []uint8{0, 1, 2} {
			f.Add(fm, s, uint16(len(s)/2), uint16(len(s)/3))
		}
	}
	f.Fuzz(func(t *testing.T, fm uint8, text string, cut1, cut2 uint16) {
		format := []Format{Hermes, Llama3, Mistral}[int(fm)%3]
		whole := feed(t, format, testTools, []string{text})
		i, j := int(cut1)%(len(text)+1), int(cut2)%(len(text)+1)
		if i > j {
			i, j = j, i
		}
		got := feed(t, format, testTools, []string{text[:i], text[i:j], text[j:]})
		if got.content != whole.content || !sameCalls(got.calls, whole.calls) {
			t.Fatalf("cut at %d,%d: %+v; whole: %+v", i, j, got, whole)
		}
		for _, c := range whole.calls {
			if !json.Valid([]byte(c.args)) || !strings.HasPrefix(c.args, "{") {
				t.Fatalf("arguments %q", c.args)
			}
		}
		if len(whole.calls) == 0 {
			// Only white space may go missing (around calls); with no call
			// there is none to drop.
			if whole.content != text {
				t.Fatalf("no calls, content %q != text %q", whole.content, text)
			}
		}
		if utf8.ValidString(text) && !utf8.ValidString(whole.content) {
			t.Fatalf("valid text gave invalid content %q", whole.content)
		}
		if len(whole.calls) > 0 && len(whole.content) >= len(text) {
			t.Fatalf("calls and content %q from %q", whole.content, text)
		}
		checkStream(t, format, text, i, j)
	})
}
