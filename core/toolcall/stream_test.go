package toolcall

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// hermesCalls, llamaCall and mistralCalls write calls as the grammar lets
// each family write them; a call is {"name": ..., "arguments": ...}.
func hermesCalls(calls ...string) string {
	var parts []string
	for _, c := range calls {
		parts = append(parts, "<tool_call>\n"+c+"\n</tool_call>")
	}
	return strings.Join(parts, "\n")
}

func mistralCalls(calls ...string) string {
	return "[TOOL_CALLS] [" + strings.Join(calls, ", ") + "]"
}

func TestStreamParse(t *testing.T) {
	w := `{"name": "get_weather", "arguments": {"city": "Paris", "unit": "c"}}`
	weather := call{"get_weather", `{"city":"Paris","unit":"c"}`}
	a := `{"name": "add", "arguments": {"a": 1, "b": -2}}`
	add := call{"add", `{"a":1,"b":-2}`}
	cases := []struct {
		name    string
		f       Format
		text    string
		content string
		calls   []call
	}{
		// Hermes.
		{"hermes/one", Hermes, hermesCalls(w), "", []call{weather}},
		{"hermes/parallel", Hermes, hermesCalls(w, a, w), "", []call{weather, add, weather}},
		{"hermes/compact", Hermes, hermesCalls(`{"name":"add","arguments":{"a":1,"b":-2}}`), "", []call{add}},
		{"hermes/nested", Hermes, hermesCalls(`{"name": "add", "arguments": {"a": {"x": [1, 2, {"y": " a\tb \"}{ "}]}, "b":  [ ]}}`), "",
			[]call{{"add", `{"a":{"x":[1,2,{"y":" a\tb \"}{ "}]},"b":[]}`}}},
		{"hermes/close-tag-in-string", Hermes, hermesCalls(`{"name": "get_weather", "arguments": {"city": "</tool_call>\n<tool_call>"}}`), "",
			[]call{{"get_weather", `{"city":"</tool_call>\n<tool_call>"}`}}},
		{"hermes/unicode", Hermes, hermesCalls(`{"name": "get_weather", "arguments": {"city": "Zürich \u00e9 ü"}}`), "",
			[]call{{"get_weather", `{"city":"Zürich \u00e9 ü"}`}}},
		{"hermes/no-arguments", Hermes, hermesCalls(`{"name": "now"}`), "", []call{{"now", "{}"}}},
		{"hermes/arguments-as-string", Hermes, hermesCalls(`{"name": "add", "arguments": "{\"a\": 1, \"b\": -2}"}`), "", []call{add}},
		{"hermes/parameters-key", Hermes, hermesCalls(`{"name": "add", "parameters": {"a": 1, "b": -2}}`), "", []call{add}},
		{"hermes/more-members", Hermes, hermesCalls(`{"name": "add", "id": "x]}", "arguments": {"a": 1, "b": -2}, "n": -1.5e3, "t": true, "o": {"a": [1]}}`), "", []call{add}},
		{"hermes/escaped-key", Hermes, hermesCalls(`{"n\u0061me": "add", "arguments": {"a": 1, "b": -2}}`), "", []call{add}},
		{"hermes/unclosed", Hermes, "<tool_call>\n" + a + "\n", "", []call{add}},
		{"hermes/close-cut-off", Hermes, "<tool_call>\n" + a + "\n</tool_", "", []call{add}},
		{"hermes/close-missing-next-call", Hermes, "<tool_call>\n" + a + "\n<tool_call>\n" + w + "\n</tool_call>", "", []call{add, weather}},
		// A generation cut off: the call is out once its name is.
		{"hermes/cut-in-arguments", Hermes, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1, \"b", "", []call{{"add", `{"a":1,"b`}}},
		{"hermes/cut-before-arguments", Hermes, "<tool_call>\n{\"name\": \"add\", \"argu", "", []call{{"add", ""}}},
		{"hermes/cut-in-name", Hermes, "<tool_call>\n{\"name\": \"ad", "<tool_call>\n{\"name\": \"ad", nil},
		// Not in the grammar's shape: read whole, as NewParser reads it.
		{"hermes/unknown-function", Hermes, "x <tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call> y",
			"x <tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call> y", nil},
		{"hermes/type-first", Hermes, `<tool_call>{"type": "function", "name": "add", "arguments": {"a": 1, "b": -2}}</tool_call>`, "", []call{add}},
		{"hermes/arguments-first", Hermes, `<tool_call>{"arguments": {"a": 1, "b": -2}, "name": "add"}</tool_call>`, "", []call{add}},
		{"hermes/not-json", Hermes, "hi <tool_call>nope</tool_call>", "hi <tool_call>nope</tool_call>", nil},
		{"hermes/content-before", Hermes, "Let me see.\n" + hermesCalls(w), "Let me see.", []call{weather}},
		// Broken after the header (the grammar rules it out): the call
		// stands, the rest is content.
		{"hermes/broken-after-arguments", Hermes, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1}} tail</tool_call>", "tail</tool_call>",
			[]call{{"add", `{"a":1}`}}},
		{"hermes/broken-member", Hermes, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1} x}</tool_call>", "x}</tool_call>",
			[]call{{"add", `{"a":1}`}}},
		// Llama 3.
		{"llama3/one", Llama3, `{"name": "add", "parameters": {"a": 1, "b": -2}}`, "", []call{add}},
		{"llama3/leading-space", Llama3, "\n {\"name\": \"add\", \"parameters\": {\"a\": 1, \"b\": -2}} \n", "", []call{add}},
		{"llama3/two", Llama3, `{"name": "add", "parameters": {"a": 1, "b": -2}} {"name": "now", "parameters": {}}`, "", []call{add, {"now", "{}"}}},
		{"llama3/python-tag", Llama3, `Sure.<|python_tag|>{"name": "add", "parameters": {"a": 1, "b": -2}}`, "Sure.", []call{add}},
		{"llama3/json-not-a-call", Llama3, `{"answer": 42} and more`, `{"answer": 42} and more`, nil},
		{"llama3/cut-in-arguments", Llama3, `{"name": "get_weather", "parameters": {"city": "Par`, "", []call{{"get_weather", `{"city":"Par`}}},
		// Mistral.
		{"mistral/one", Mistral, mistralCalls(w), "", []call{weather}},
		{"mistral/parallel", Mistral, mistralCalls(w, a, `{"name": "now", "arguments": {}}`), "", []call{weather, add, {"now", "{}"}}},
		{"mistral/no-space", Mistral, "[TOOL_CALLS][" + a + "," + w + "]", "", []call{add, weather}},
		{"mistral/bare-array", Mistral, "[" + a + "]", "", []call{add}},
		{"mistral/object-not-list", Mistral, "[TOOL_CALLS] " + a, "", []call{add}},
		{"mistral/id-after", Mistral, `[TOOL_CALLS][{"name": "add", "arguments": {"a": 1, "b": -2}, "id": "abcDEF123"}]`, "", []call{add}},
		{"mistral/v11", Mistral, `[TOOL_CALLS]get_weather[ARGS]{"city": "Paris", "unit": "c"}[TOOL_CALLS]add[ARGS]{"a":1,"b":-2}`, "", []call{weather, add}},
		{"mistral/v11-call-id", Mistral, `[TOOL_CALLS]add[CALL_ID]a1b2c3d4e[ARGS]{"a": 1, "b": -2}`, "", []call{add}},
		{"mistral/v11-unknown", Mistral, `[TOOL_CALLS]nope[ARGS]{"a":1}`, `[TOOL_CALLS]nope[ARGS]{"a":1}`, nil},
		{"mistral/v11-not-json", Mistral, `[TOOL_CALLS]add[ARGS] {"a":1}`, `[TOOL_CALLS]add[ARGS] {"a":1}`, nil},
		{"mistral/v11-cut", Mistral, `[TOOL_CALLS]add[ARGS]{"a": 1,`, "", []call{{"add", `{"a":1,`}}},
		{"mistral/empty-list", Mistral, `[TOOL_CALLS] []`, `[TOOL_CALLS] []`, nil},
		{"mistral/first-bad", Mistral, mistralCalls(`{"name": "x", "arguments": {}}`, a), mistralCalls(`{"name": "x", "arguments": {}}`, a), nil},
		// Later calls of a list whose first call is out: a bad one ends
		// the list, a cut-off one is content up to its name.
		{"mistral/second-bad", Mistral, mistralCalls(a, `{"name": "x", "arguments": {}}`), `{"name": "x", "arguments": {}}]`, []call{add}},
		{"mistral/second-cut-in-name", Mistral, "[TOOL_CALLS] [" + a + ", {\"name\": \"ge", `{"name": "ge`, []call{add}},
		{"mistral/second-cut-in-arguments", Mistral, "[TOOL_CALLS] [" + a + ", {\"name\": \"get_weather\", \"arguments\": {\"ci", "",
			[]call{add, {"get_weather", `{"ci`}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := splitsWith(t, NewStreamingParser, c.f, testTools, c.text)
			if got.content != c.content || !sameCalls(got.calls, c.calls) {
				t.Errorf("got content %q calls %v\nwant content %q calls %v", got.content, got.calls, c.content, c.calls)
			}
		})
	}
}

// TestStreamParseAsNewParser: what the grammar lets through, and whatever is
// no call, the streaming parser reads as NewParser does.
func TestStreamParseAsNewParser(t *testing.T) {
	w := `{"name": "get_weather", "arguments": {"city": "Paris"}}`
	a := `{"name": "add", "arguments": {"a": 1, "b": 2}}`
	for _, c := range []struct {
		f    Format
		text string
	}{
		{Hermes, hermesCalls(w, a)},
		{Hermes, "plain text, <tool_cal and {\"name\": \"add\"}"},
		{Hermes, "<tool_call>\n{\"name\": \"ad"},
		{Hermes, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1,}}\n</tool_call>"[:20]},
		{Llama3, `{"name": "add", "parameters": {"a": 1, "b": 2}}`},
		{Llama3, "The answer is {x}."},
		{Mistral, mistralCalls(w, a)},
		{Mistral, `[INST] is not [TOOL_CALL`},
		{Mistral, `[1, 2] and [{"name": "add", "arguments": {}}]`},
	} {
		want := feed(t, c.f, testTools, []string{c.text})
		got := splitsWith(t, NewStreamingParser, c.f, testTools, c.text)
		if got.content != want.content || !sameCalls(got.calls, want.calls) {
			t.Errorf("%s %q: streaming %+v, NewParser %+v", c.f, c.text, got, want)
		}
	}
}

// TestStreamEarly pushes calls byte by byte: the header comes with the
// name's closing quote, and every byte of the arguments but white space
// outside strings comes out as soon as it is pushed.
func TestStreamEarly(t *testing.T) {
	args := `{"city": "Saint-Remy-de-Provence-sur-Mer", "unit": "c"}` // no white space in strings
	long := call{"get_weather", strings.ReplaceAll(args, " ", "")}
	body := `{"name": "get_weather", "arguments": ` + args + `}`
	for _, c := range []struct {
		f    Format
		text string
		n    int
	}{
		{Hermes, hermesCalls(body, body), 2},
		{Llama3, strings.Replace(body, "arguments", "parameters", 1), 1},
		{Mistral, mistralCalls(body, body), 2},
		{Mistral, "[TOOL_CALLS]get_weather[ARGS]" + args + "[TOOL_CALLS]get_weather[ARGS]" + args, 2},
	} {
		t.Run(string(c.f), func(t *testing.T) {
			// Where each header and each call's arguments are due.
			nameEnd := `get_weather"`
			if strings.Contains(c.text, "[ARGS]") {
				nameEnd = "get_weather[ARGS]{"
			}
			heads := indexes(c.text, nameEnd, len(nameEnd))
			starts := indexes(c.text, args, 0)
			if len(heads) != c.n || len(starts) != c.n {
				t.Fatalf("test text %q: names end at %v, arguments start at %v", c.text, heads, starts)
			}
			p := NewStreamingParser(c.f, testTools)
			var frags []string // the arguments so far, a call
			for i := 0; i < len(c.text); i++ {
				for _, d := range p.Push(c.text[i : i+1]) {
					switch {
					case d.Call == nil:
						t.Fatalf("content %q at byte %d", d.Content, i)
					case d.Call.ID != "":
						if n := len(frags); n >= len(heads) || i+1 != heads[n] {
							t.Fatalf("call %d header after byte %d, names end at %v", n, i, heads)
						}
						frags = append(frags, "")
					default:
						frags[d.Call.Index] += d.Call.Arguments
					}
				}
				for n, a := range starts {
					if k := i - a; k >= 0 && k < len(args) {
						want := strings.ReplaceAll(args[:k+1], " ", "")
						if n >= len(frags) || frags[n] != want {
							t.Fatalf("after byte %d of call %d's arguments: fragments %q, want %q", k, n, frags, want)
						}
					}
				}
			}
			if ds := p.Flush(); len(ds) != 0 {
				t.Fatalf("flush gave %+v", ds)
			}
			calls := p.Calls()
			if len(calls) != c.n || len(frags) != c.n {
				t.Fatalf("%d calls, %d fragment lists, want %d", len(calls), len(frags), c.n)
			}
			for i, cl := range calls {
				if (call{cl.Function.Name, cl.Function.Arguments}) != long || frags[i] != long.args {
					t.Fatalf("call %d: %+v, fragments %q", i, cl, frags[i])
				}
			}
		})
	}
}

// grammarShaped writes a call to get_weather whose city is s in format f,
// with white space as the grammar allows it (sp after ':' and ',').
func grammarShaped(f Format, s string, sp string) (text, args string) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // a model writes < > & raw
	_ = enc.Encode(s)
	city := strings.TrimSuffix(b.String(), "\n")
	key := "arguments"
	if f == Llama3 {
		key = "parameters"
	}
	body := `{"name":` + sp + `"get_weather",` + sp + `"` + key + `":` + sp + `{"city":` + sp + city + `,` + sp + `"unit":` + sp + `"f"}}`
	args = `{"city":` + city + `,"unit":"f"}`
	switch f {
	case Hermes:
		return hermesCalls(body, body), args
	case Mistral:
		return mistralCalls(body, body), args
	}
	return body, args
}

// checkStream is what FuzzParser checks of a streaming parser.
func checkStream(t *testing.T, format Format, text string, i, j int) {
	t.Helper()
	whole := feedWith(t, NewStreamingParser, format, testTools, []string{text})
	got := feedWith(t, NewStreamingParser, format, testTools, []string{text[:i], text[i:j], text[j:]})
	if got.content != whole.content || !sameCalls(got.calls, whole.calls) {
		t.Fatalf("streaming, cut at %d,%d: %+v; whole: %+v", i, j, got, whole)
	}
	if len(whole.calls) == 0 && whole.content != text {
		t.Fatalf("streaming, no calls, content %q != text %q", whole.content, text)
	}
	if len(whole.calls) > 0 && len(whole.content) >= len(text) {
		t.Fatalf("streaming, calls and content %q from %q", whole.content, text)
	}
	if utf8.ValidString(text) && !utf8.ValidString(whole.content) {
		t.Fatalf("streaming, valid text gave invalid content %q", whole.content)
	}
	// A string argument in the grammar's shape: the calls come out whole,
	// arguments compact, whatever the string holds.
	for _, sp := range []string{"", " "} {
		shaped, args := grammarShaped(format, text, sp)
		n := 2
		if format == Llama3 {
			n = 1
		}
		k := len(shaped) - len(text)/2 - 20
		k = max(0, min(k, len(shaped)))
		got := feedWith(t, NewStreamingParser, format, testTools, []string{shaped[:k], shaped[k:]})
		if got.content != "" || len(got.calls) != n {
			t.Fatalf("%q: %+v", shaped, got)
		}
		for _, c := range got.calls {
			if c.name != "get_weather" || c.args != args {
				t.Fatalf("%q: call %+v, want arguments %q", shaped, c, args)
			}
		}
		if !json.Valid([]byte(got.calls[0].args)) {
			t.Fatalf("arguments %q not JSON", got.calls[0].args)
		}
	}
}

// indexes are the ends (start+off) of the occurrences of sub in s.
func indexes(s, sub string, off int) []int {
	var at []int
	for i := 0; ; {
		j := strings.Index(s[i:], sub)
		if j < 0 {
			return at
		}
		at = append(at, i+j+off)
		i += j + 1
	}
}
