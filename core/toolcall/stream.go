package toolcall

import (
	"encoding/json"
	"strings"

	"github.com/llorch/llorch/core/api"
)

// NewStreamingParser parses text in format f as NewParser does, for output
// that Grammar constrains to tool calls (tool_choice required or a named
// function). It streams each call while it is generated, as OpenAI does: the
// header delta (ID and Name) as soon as the name's closing quote arrives and
// names one of the tools, then the arguments object in fragments as its
// bytes arrive, compacted on the way (white space outside strings dropped),
// so that the fragments of call i concatenate to Calls()[i].Function.Arguments,
// the same compact JSON NewParser gives.
//
// Once a call's header is out the call stands: text that breaks it later
// (which the grammar rules out) ends it with the arguments streamed so far,
// and the rest is content; a generation cut off inside the arguments (a
// length stop) leaves them cut off, as OpenAI does. Until the header is out
// nothing is decided, and text that is not a call in the grammar's shape
// (an unknown name, "name" not the first key) is read as NewParser reads it.
func NewStreamingParser(f Format, tools []api.Tool) *Parser {
	p := NewParser(f, tools)
	p.stream = true
	return p
}

type lvState uint8

const (
	lvStart    lvState = iota // before the call's JSON value
	lvElem                    // before a call object ({)
	lvMember                  // in a call object, before a key or }
	lvKey                     // in a key
	lvColon                   // after a key
	lvValue                   // before a member's value
	lvName                    // in the name string
	lvArgs                    // in the arguments object: streamed
	lvArgStr                  // in arguments encoded as a string
	lvSkip                    // in another member's value: skipped
	lvNext                    // after a member: , or }
	lvListNext                // in a Mistral list, after a call object: , or ]
)

// live reads a call's JSON value as it streams in, for a streaming Parser.
// Its offsets index p.buf, which holds the text from the value's start (a
// Hermes call: from right after <tool_call>) until the calls in it end.
type live struct {
	back   state // the state that reads the text the usual way (while no call is out)
	st     lvState
	pos    int  // p.buf[:pos] is read
	v11    bool // the value is a v11 Mistral call's arguments (p.name holds the name)
	list   bool // a Mistral list of calls
	out    bool // a call of this value is out: no way back
	elem   int  // start of the current call object
	header bool // the current object's call is out
	args   bool // its arguments are out (or being streamed)
	start  int  // start of the string being read
	key    string
	depth  int
	inStr  bool
	esc    strEscape
	frag   []byte // argument text read and not yet emitted
}

// enter starts reading a call in state st (stCall: a Hermes call's body,
// stJSON: a JSON value); a streaming parser reads it live.
func (p *Parser) enter(st state) {
	p.scan = jsonScan{}
	p.st = st
	if p.stream {
		p.lv = live{back: st, v11: p.name != ""}
		p.st = stLive
	}
}

// stepLive reads what has arrived of a live call; like step, false when it
// needs more text.
func (p *Parser) stepLive(o *out, final bool) bool {
	lv := &p.lv
	s := p.buf
	for lv.pos < len(s) {
		c := s[lv.pos]
		switch lv.st {
		case lvStart:
			switch {
			case jsonSpace(c) && !lv.v11:
				lv.pos++
			case c == '{' && lv.v11:
				if !p.tools[p.name] {
					return p.liveFail(o)
				}
				lv.elem = lv.pos
				p.header(o, p.name)
				p.name = ""
				lv.args, lv.depth, lv.inStr, lv.st = true, 0, false, lvArgs
			case c == '{':
				lv.st = lvElem
			case c == '[' && p.f == Mistral && !lv.v11:
				lv.list = true
				lv.pos++
				lv.elem = lv.pos
				lv.st = lvElem
			default:
				return p.liveFail(o)
			}
		case lvElem:
			switch {
			case jsonSpace(c):
				lv.pos++
			case c == '{':
				lv.elem = lv.pos
				lv.header, lv.args = false, false
				lv.pos++
				lv.st = lvMember
			default:
				return p.liveFail(o)
			}
		case lvMember, lvNext:
			switch {
			case jsonSpace(c):
				lv.pos++
			case c == '"' && lv.st == lvMember:
				lv.start = lv.pos
				lv.pos++
				lv.esc = false
				lv.st = lvKey
			case c == ',' && lv.st == lvNext:
				lv.pos++
				lv.st = lvMember
			case c == '}':
				if !lv.header {
					return p.liveFail(o)
				}
				lv.pos++
				if !lv.args {
					p.arguments1(o, "{}")
				}
				if !lv.list {
					return p.liveDone(o)
				}
				lv.st = lvListNext
			default:
				return p.liveFail(o)
			}
		case lvKey:
			if !lv.endString(s) {
				continue
			}
			lv.key = ""
			if json.Unmarshal([]byte(s[lv.start:lv.pos]), &lv.key) != nil {
				return p.liveFail(o)
			}
			lv.st = lvColon
		case lvColon:
			switch {
			case jsonSpace(c):
				lv.pos++
			case c == ':':
				lv.pos++
				lv.st = lvValue
			default:
				return p.liveFail(o)
			}
		case lvValue:
			if jsonSpace(c) {
				lv.pos++
				continue
			}
			lv.start = lv.pos
			lv.depth, lv.inStr, lv.esc = 0, false, false
			isArgs := lv.key == "arguments" || lv.key == "parameters"
			switch {
			case lv.key == "name" && !lv.header:
				if c != '"' {
					return p.liveFail(o)
				}
				lv.pos++
				lv.st = lvName
			case !lv.header:
				// "name" must come first; else the call is read whole.
				return p.liveFail(o)
			case isArgs && !lv.args && c == '{':
				lv.args = true
				lv.st = lvArgs
			case isArgs && !lv.args && c == '"':
				lv.pos++
				lv.st = lvArgStr
			default:
				lv.st = lvSkip
			}
		case lvName:
			if !lv.endString(s) {
				continue
			}
			var name string
			if json.Unmarshal([]byte(s[lv.start:lv.pos]), &name) != nil || !p.tools[name] {
				return p.liveFail(o)
			}
			p.header(o, name)
			lv.st = lvNext
		case lvArgs:
			if lv.compact(s) {
				p.flushArgs(o)
				if lv.v11 {
					return p.liveDone(o)
				}
				lv.st = lvNext
			}
		case lvArgStr:
			if !lv.endString(s) {
				continue
			}
			if a, ok := p.arguments([]byte(s[lv.start:lv.pos])); ok {
				lv.args = true
				p.arguments1(o, a)
			}
			lv.st = lvNext
		case lvSkip:
			if lv.skip(s) {
				lv.st = lvNext
			}
		case lvListNext:
			switch {
			case jsonSpace(c):
				lv.pos++
			case c == ',':
				lv.pos++
				lv.elem, lv.header, lv.args = lv.pos, false, false
				lv.st = lvElem
			case c == ']':
				lv.pos++
				return p.liveDone(o)
			default:
				return p.liveFail(o)
			}
		}
	}
	p.flushArgs(o)
	if final {
		return p.liveFail(o)
	}
	return false
}

// header emits a call's first delta.
func (p *Parser) header(o *out, name string) {
	c := api.ToolCall{ID: NewID(), Type: "function", Function: api.ToolCallFunction{Name: name}}
	p.calls = append(p.calls, c)
	*o = append(*o, Delta{Call: &CallDelta{Index: len(p.calls) - 1, ID: c.ID, Name: name}})
	p.lv.out, p.lv.header = true, true
	p.lead = "" // the markup of a call is not content
}

// arguments1 emits a fragment of the last call's arguments.
func (p *Parser) arguments1(o *out, a string) {
	i := len(p.calls) - 1
	p.calls[i].Function.Arguments += a
	*o = append(*o, Delta{Call: &CallDelta{Index: i, Arguments: a}})
}

func (p *Parser) flushArgs(o *out) {
	if len(p.lv.frag) > 0 {
		p.arguments1(o, string(p.lv.frag))
		p.lv.frag = p.lv.frag[:0]
	}
}

// liveDone ends a live value that held only calls.
func (p *Parser) liveDone(o *out) bool {
	p.flushArgs(o)
	p.buf = p.buf[p.lv.pos:]
	p.lead, p.name = "", ""
	p.st = stAfter
	if p.lv.back == stCall {
		p.st = stClose
	}
	return true
}

// liveFail ends a live value that is not (or no longer) calls. With no call
// out the text is read again the usual way; else the calls out stand (the
// current one with its arguments so far) and the rest is content: from the
// current call object when its call is not out, else from where reading
// stopped.
func (p *Parser) liveFail(o *out) bool {
	lv := &p.lv
	if !lv.out {
		p.st = lv.back
		p.scan = jsonScan{}
		return true
	}
	p.flushArgs(o)
	cut := lv.pos
	if !lv.header {
		cut = lv.elem
	}
	p.buf = p.buf[cut:]
	p.lead, p.name = "", ""
	p.st = stText
	return true
}

// stepClose reads the end of a Hermes call after its JSON: </tool_call>.
func (p *Parser) stepClose(final bool) bool {
	rest := strings.TrimLeft(p.buf, asciiSpace)
	switch {
	case strings.HasPrefix(rest, hermesClose):
		p.buf, p.st = rest[len(hermesClose):], stAfter
		return true
	case strings.HasPrefix(hermesClose, rest):
		// It may still become the tag; at the end a cut-off tag is
		// the call's markup, dropped.
		if final {
			p.buf = ""
		}
		return false
	}
	p.buf, p.st = rest, stText
	return true
}

// endString reads a string from pos (after its opening quote); true once it
// has read the closing quote.
func (lv *live) endString(s string) bool {
	for ; lv.pos < len(s); lv.pos++ {
		if lv.esc.closes(s[lv.pos]) {
			lv.pos++
			return true
		}
	}
	return false
}

// compact reads the arguments object into frag without the white space
// outside its strings (what json.Compact drops); true once it is closed.
func (lv *live) compact(s string) bool {
	for ; lv.pos < len(s); lv.pos++ {
		c := s[lv.pos]
		if lv.inStr {
			lv.frag = append(lv.frag, c)
			lv.inStr = !lv.esc.closes(c)
			continue
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"':
			lv.inStr = true
		case '{', '[':
			lv.depth++
		case '}', ']':
			lv.depth--
		}
		lv.frag = append(lv.frag, c)
		if lv.depth <= 0 {
			lv.pos++
			return true
		}
	}
	return false
}

// skip reads a member's value that is not kept; true once it has ended (a
// number or literal ends before the delimiter after it, which stays unread).
func (lv *live) skip(s string) bool {
	for ; lv.pos < len(s); lv.pos++ {
		c := s[lv.pos]
		if lv.inStr {
			if lv.esc.closes(c) {
				lv.inStr = false
				if lv.depth == 0 {
					lv.pos++
					return true
				}
			}
			continue
		}
		switch c {
		case '"':
			lv.inStr = true
		case '{', '[':
			lv.depth++
		case '}', ']':
			if lv.depth == 0 {
				return true
			}
			lv.depth--
			if lv.depth == 0 {
				lv.pos++
				return true
			}
		case ',', ' ', '\t', '\n', '\r':
			if lv.depth == 0 {
				return true
			}
		}
	}
	return false
}

func jsonSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}
