package toolcall

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/llorch/llorch/core/api"
)

// Delta is one piece of parsed output: plain assistant text or a piece of a
// tool call.
type Delta struct {
	Content string
	Call    *CallDelta
}

// CallDelta is a piece of tool call i, as OpenAI streams them: the first
// carries the call's ID and Name (Arguments ""), the next ones argument
// text.
type CallDelta struct {
	Index     int
	ID        string
	Name      string
	Arguments string
}

// asciiSpace is the white space dropped around calls.
const asciiSpace = " \t\n\v\f\r"

// Markers that open calls.
const (
	hermesOpen  = "<tool_call>"
	hermesClose = "</tool_call>"
	pythonTag   = "<|python_tag|>"
	mistralOpen = "[TOOL_CALLS]"
	mistralArgs = "[ARGS]"
	mistralID9  = "[CALL_ID]"
	// maxNameLen bounds the name of a v11 Mistral call ([TOOL_CALLS]name[ARGS]).
	maxNameLen = 64
	// maxMistralHead bounds what may stand between [TOOL_CALLS] and [ARGS].
	maxMistralHead = maxNameLen + len(mistralID9) + 64
)

type state uint8

const (
	stStart   state = iota // nothing but white space seen (llama3: a call may start here)
	stText                 // plain text
	stAfter                // right after a call: white space is dropped
	stCall                 // after an opening marker: the call's text
	stJSON                 // inside a JSON value of a call
	stMistral              // [TOOL_CALLS]name..., before [ARGS]
	stLive                 // a streaming parser's call, read as it arrives (stream.go)
	stClose                // after a streamed Hermes call's JSON, before </tool_call>
)

// Parser splits generated text into content and tool calls while it
// streams. Text that may be the start of a call is held back until it is
// known. It is not safe for concurrent use.
type Parser struct {
	f     Format
	tools map[string]bool
	open  string // the marker that opens a call in text
	calls []api.ToolCall

	st  state
	buf string // text not yet decided
	// lead is text already consumed before the current call (white space
	// before it, its marker): content again if the call turns out invalid.
	lead string
	scan jsonScan
	name string // a v11 Mistral call's name

	stream bool // NewStreamingParser
	lv     live
}

// NewParser parses text in format f; only calls to the named tools count.
func NewParser(f Format, tools []api.Tool) *Parser {
	p := &Parser{f: f, tools: make(map[string]bool, len(tools))}
	for _, t := range tools {
		p.tools[t.Function.Name] = true
	}
	switch f {
	case Llama3:
		p.open = pythonTag
	case Mistral:
		p.open = mistralOpen
	default:
		p.open = hermesOpen
	}
	return p
}

// Push feeds generated text and returns what can be emitted now.
func (p *Parser) Push(text string) []Delta {
	p.buf += text
	return p.run(false)
}

// Flush ends the generation: everything still held back is emitted (an
// unfinished call as content).
func (p *Parser) Flush() []Delta {
	return p.run(true)
}

// Calls are the complete calls so far, arguments as compact JSON text. A
// streaming parser's calls are those whose header is out, the last one with
// the arguments streamed so far.
func (p *Parser) Calls() []api.ToolCall {
	return append([]api.ToolCall(nil), p.calls...)
}

// out collects the deltas of one run, merging adjacent content.
type out []Delta

func (o *out) text(s string) {
	if s == "" {
		return
	}
	if n := len(*o); n > 0 && (*o)[n-1].Call == nil {
		(*o)[n-1].Content += s
		return
	}
	*o = append(*o, Delta{Content: s})
}

func (p *Parser) run(final bool) []Delta {
	var o out
	for p.step(&o, final) {
	}
	if final {
		o.text(p.lead + p.buf)
		p.lead, p.buf = "", ""
	}
	return o
}

// step makes one decision on the buffered text; false when it needs more.
func (p *Parser) step(o *out, final bool) bool {
	switch p.st {
	case stStart, stAfter:
		rest := strings.TrimLeft(p.buf, asciiSpace)
		if rest == "" {
			switch {
			case p.st == stAfter:
				p.buf = "" // white space after a call is dropped
			case final:
				o.text(p.buf)
				p.buf = ""
			}
			return false
		}
		ws := p.buf[:len(p.buf)-len(rest)]
		if p.st == stAfter {
			ws = "" // white space after a call is dropped
		}
		// A reply may open with a bare call: Llama 3's JSON object, or
		// Mistral's array when [TOOL_CALLS] (a control token) was not
		// rendered into the text.
		bare := p.f == Llama3 && rest[0] == '{'
		if p.f == Mistral && rest[0] == '[' {
			// [{ opens an array of calls; [TOOL_CALLS] and other text do not.
			next := strings.TrimLeft(rest[1:], asciiSpace)
			if next == "" && !final {
				return false
			}
			bare = next != "" && next[0] == '{'
		}
		if bare {
			p.lead, p.buf = ws, rest
			p.enter(stJSON)
			return true
		}
		if p.st == stAfter {
			p.buf = rest // white space after a call is dropped
		}
		p.st = stText
		return true
	case stText:
		if i := strings.Index(p.buf, p.open); i >= 0 {
			before := p.buf[:i]
			text := strings.TrimRight(before, asciiSpace)
			o.text(text)
			p.lead = before[len(text):] + p.open
			p.buf = p.buf[i+len(p.open):]
			p.st = stCall
			p.scan = jsonScan{}
			if p.f == Hermes {
				p.enter(stCall)
			}
			return true
		}
		if final {
			return false
		}
		// Emit what cannot start a marker; hold trailing white space (it is
		// dropped if a call follows).
		keep := len(p.buf) - heldPrefix(p.buf, p.open)
		emit := strings.TrimRight(p.buf[:keep], asciiSpace)
		o.text(emit)
		p.buf = p.buf[len(emit):]
		return false
	case stCall:
		switch p.f {
		case Hermes:
			i := strings.Index(p.buf[p.scan.pos:], hermesClose)
			if i < 0 {
				if final {
					// A call cut off before its closing tag counts when it is whole.
					if p.emitCalls(o, strings.TrimSpace(p.buf), false) {
						p.lead, p.buf = "", ""
					}
					return false
				}
				if n := len(p.buf) - len(hermesClose) + 1; n > p.scan.pos {
					p.scan.pos = n
				}
				return false
			}
			i += p.scan.pos
			body := p.buf[:i]
			rest := p.buf[i+len(hermesClose):]
			if p.emitCalls(o, strings.TrimSpace(body), false) {
				p.lead, p.buf, p.st = "", rest, stAfter
			} else {
				o.text(p.lead + body + hermesClose)
				p.lead, p.buf, p.st = "", rest, stText
			}
			return true
		default: // Llama3 after <|python_tag|>, Mistral after [TOOL_CALLS]
			rest := strings.TrimLeft(p.buf, asciiSpace)
			if rest == "" {
				return false
			}
			p.lead += p.buf[:len(p.buf)-len(rest)]
			p.buf = rest
			switch c := rest[0]; {
			case c == '{' || c == '[' && p.f == Mistral:
				p.enter(stJSON)
			case p.f == Mistral && nameChar(c):
				p.st = stMistral
			default:
				p.invalid(o)
			}
			return true
		}
	case stMistral:
		// name[ARGS]{...} or name[CALL_ID]id[ARGS]{...}
		// The same bound whether [ARGS] came in one piece or not.
		i := strings.Index(p.buf, mistralArgs)
		if i < 0 && len(p.buf) >= maxMistralHead+len(mistralArgs) || i > maxMistralHead {
			p.invalid(o)
			return true
		}
		if i < 0 {
			return false
		}
		name := p.buf[:i]
		if j := strings.Index(name, mistralID9); j >= 0 {
			name = name[:j]
		}
		if !validName(name) {
			p.invalid(o)
			return true
		}
		p.name = name
		p.lead += p.buf[:i+len(mistralArgs)]
		p.buf = p.buf[i+len(mistralArgs):]
		p.enter(stJSON)
		return true
	case stJSON:
		if p.buf == "" {
			return false
		}
		if p.buf[0] != '{' && p.buf[0] != '[' {
			p.invalid(o) // [ARGS] not followed by JSON
			return true
		}
		end := p.scan.end(p.buf)
		if end < 0 {
			return false
		}
		val := p.buf[:end]
		ok := false
		if p.name != "" {
			ok = p.emitCall(o, p.name, []byte(val))
		} else {
			ok = p.emitCalls(o, val, true)
		}
		p.name = ""
		if ok {
			p.lead, p.buf, p.st = "", p.buf[end:], stAfter
		} else {
			o.text(p.lead + val)
			p.lead, p.buf, p.st = "", p.buf[end:], stText
		}
		return true
	case stLive:
		return p.stepLive(o, final)
	case stClose:
		return p.stepClose(final)
	}
	return false
}

// invalid passes the current call attempt on as content and goes back to
// plain text (the text after the marker is scanned again).
func (p *Parser) invalid(o *out) {
	o.text(p.lead)
	p.lead, p.name = "", ""
	p.st = stText
}

// emitCalls emits the calls in val (one object, or with list a JSON array of
// them for Mistral) if every one is valid; else nothing.
func (p *Parser) emitCalls(o *out, val string, list bool) bool {
	raw := []byte(val)
	var objs []json.RawMessage
	if list && strings.HasPrefix(val, "[") {
		if json.Unmarshal(raw, &objs) != nil || len(objs) == 0 {
			return false
		}
	} else {
		objs = []json.RawMessage{raw}
	}
	calls := make([]api.ToolCall, 0, len(objs))
	for _, obj := range objs {
		c, ok := p.parseCall(obj)
		if !ok {
			return false
		}
		calls = append(calls, c)
	}
	for _, c := range calls {
		p.add(o, c)
	}
	return true
}

// emitCall emits a v11 Mistral call: the name came before [ARGS].
func (p *Parser) emitCall(o *out, name string, args []byte) bool {
	a, ok := p.arguments(args)
	if !ok || !p.tools[name] {
		return false
	}
	p.add(o, api.ToolCall{Type: "function", Function: api.ToolCallFunction{Name: name, Arguments: a}})
	return true
}

func (p *Parser) add(o *out, c api.ToolCall) {
	c.ID = NewID()
	i := len(p.calls)
	p.calls = append(p.calls, c)
	*o = append(*o,
		Delta{Call: &CallDelta{Index: i, ID: c.ID, Name: c.Function.Name}},
		Delta{Call: &CallDelta{Index: i, Arguments: c.Function.Arguments}})
}

// parseCall reads {"name": ..., "arguments"|"parameters": {...}}.
func (p *Parser) parseCall(raw []byte) (api.ToolCall, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil || obj == nil {
		return api.ToolCall{}, false
	}
	var name string
	if json.Unmarshal(obj["name"], &name) != nil || !p.tools[name] {
		return api.ToolCall{}, false
	}
	args, ok := obj["arguments"]
	if !ok {
		args, ok = obj["parameters"]
	}
	a := "{}"
	if ok {
		if a, ok = p.arguments(args); !ok {
			return api.ToolCall{}, false
		}
	}
	return api.ToolCall{Type: "function", Function: api.ToolCallFunction{Name: name, Arguments: a}}, true
}

// arguments is a call's arguments as compact JSON: an object, or a string
// holding one (some models encode it twice).
func (p *Parser) arguments(raw []byte) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		raw = bytes.TrimSpace([]byte(s))
	}
	if len(raw) == 0 || raw[0] != '{' || !json.Valid(raw) {
		return "", false
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return "", false
	}
	return b.String(), true
}

// jsonScan finds the end of a JSON object or array as it streams in.
type jsonScan struct {
	pos, depth int
	inStr      bool
	esc        strEscape
}

// strEscape follows the escapes of a JSON string one byte at a time.
type strEscape bool

// closes reports whether c, the next byte inside a JSON string, closes it.
func (e *strEscape) closes(c byte) bool {
	switch {
	case bool(*e):
		*e = false
	case c == '\\':
		*e = true
	case c == '"':
		return true
	}
	return false
}

// end scans s from where the last call stopped; the end of the value
// (exclusive) once its brackets balance, else -1.
func (j *jsonScan) end(s string) int {
	for ; j.pos < len(s); j.pos++ {
		c := s[j.pos]
		if j.inStr {
			j.inStr = !j.esc.closes(c)
			continue
		}
		switch c {
		case '"':
			j.inStr = true
		case '{', '[':
			j.depth++
		case '}', ']':
			j.depth--
			if j.depth <= 0 {
				j.pos++
				return j.pos
			}
		}
	}
	return -1
}

// heldPrefix is the length of the longest suffix of s that is a proper
// prefix of marker (it may become the marker).
func heldPrefix(s, marker string) int {
	n := min(len(s), len(marker)-1)
	for ; n > 0; n-- {
		if strings.HasSuffix(s, marker[:n]) {
			return n
		}
	}
	return 0
}

func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !nameChar(s[i]) {
			return false
		}
	}
	return true
}
