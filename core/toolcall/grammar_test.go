package toolcall

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/grammar"
)

func TestGrammar(t *testing.T) {
	required := api.ToolChoice{Mode: api.ToolRequired}
	forced := api.ToolChoice{Mode: api.ToolForced, Function: "add"}
	w := `{"name": "get_weather", "arguments": {"city": "Paris"}}`
	a := `{"name": "add", "arguments": {"a": 1, "b": -2}}`
	n := `{"name": "now", "arguments": {}}`
	hermes := func(calls ...string) string {
		var parts []string
		for _, c := range calls {
			parts = append(parts, "<tool_call>\n"+c+"\n</tool_call>")
		}
		return strings.Join(parts, "\n")
	}
	cases := []struct {
		name     string
		f        Format
		choice   api.ToolChoice
		parallel bool
		match    []string
		reject   []string
	}{
		{"hermes/required", Hermes, required, false,
			[]string{hermes(w), hermes(a), hermes(n), hermes(`{"name": "get_weather", "arguments": {"city":"P", "unit":"c"}}`)},
			[]string{hermes(w, a), hermes(`{"name": "rm", "arguments": {}}`), hermes(`{"name": "add", "arguments": {"a": 1}}`),
				hermes(`{"name": "add", "arguments": {"a": "1", "b": 2}}`), hermes(`{"name": "get_weather", "arguments": {"city": "P", "unit": "k"}}`),
				"hello " + hermes(w), hermes(w) + "\n", hermes(`{"name": "add", "arguments": {"a": 1,  "b": 2}}`), ""}},
		{"hermes/parallel", Hermes, required, true,
			[]string{hermes(w), hermes(w, a), hermes(a, a, n, w, w, w, w, w)},
			[]string{hermes(a, a, n, w, w, w, w, w, w), hermes(w) + "\n\n" + hermes(a)}},
		{"hermes/forced", Hermes, forced, true,
			[]string{hermes(a), hermes(a, a)},
			[]string{hermes(w), hermes(a, w)}},
		{"llama3/required", Llama3, required, true,
			[]string{`{"name": "add", "parameters": {"a": 1, "b": 2}}`, `{"name": "now", "parameters": {}}`, `<|python_tag|>{"name": "now", "parameters": {}}`},
			[]string{a, `{"name": "add", "parameters": {"a": 1, "b": 2}}{"name": "now", "parameters": {}}`, `<|python_tag|><|python_tag|>{"name": "now", "parameters": {}}`, ` <|python_tag|>{"name": "now", "parameters": {}}`}},
		{"mistral/required", Mistral, required, true,
			[]string{"[TOOL_CALLS] [" + w + "]", "[TOOL_CALLS][" + w + ", " + a + "]"},
			[]string{"[TOOL_CALLS]  [" + w + "]", "[TOOL_CALLS] []", "[TOOL_CALLS] [" + w + "," + a + "]", w}},
		{"mistral/single", Mistral, forced, false,
			[]string{"[TOOL_CALLS] [" + a + "]"},
			[]string{"[TOOL_CALLS] [" + a + ", " + a + "]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, err := Grammar(c.f, testTools, c.choice, c.parallel)
			if err != nil {
				t.Fatal(err)
			}
			for _, tl := range testTools {
				if c.choice.Mode == api.ToolRequired && !strings.Contains(g, `\"`+tl.Function.Name+`\"`) {
					t.Errorf("grammar does not name %s:\n%s", tl.Function.Name, g)
				}
			}
			m, err := parseGBNF(g)
			if err != nil {
				t.Fatalf("%v\n%s", err, g)
			}
			for _, s := range c.match {
				if !m.match(s) {
					t.Errorf("grammar rejects %q\n%s", s, g)
				}
				// What the grammar lets through, the parser reads as calls.
				got := feed(t, c.f, testTools, []string{s})
				if len(got.calls) == 0 || got.content != "" {
					t.Errorf("parser read %q as %+v", s, got)
				}
				if st := feedWith(t, NewStreamingParser, c.f, testTools, []string{s}); st.content != "" || !sameCalls(st.calls, got.calls) {
					t.Errorf("streaming parser read %q as %+v, NewParser as %+v", s, st, got)
				}
			}
			for _, s := range c.reject {
				if m.match(s) {
					t.Errorf("grammar accepts %q\n%s", s, g)
				}
			}
		})
	}
}

func TestGrammarNoConstraint(t *testing.T) {
	for _, mode := range []string{api.ToolAuto, api.ToolNone, ""} {
		g, err := Grammar(Hermes, testTools, api.ToolChoice{Mode: mode}, true)
		if g != "" || err != nil {
			t.Errorf("%q: %q, %v", mode, g, err)
		}
	}
}

func TestGrammarErrors(t *testing.T) {
	if _, err := Grammar(Hermes, testTools, api.ToolChoice{Mode: api.ToolForced, Function: "nope"}, false); !errors.Is(err, ErrNoFunction) {
		t.Errorf("unknown function: %v", err)
	}
	if _, err := Grammar(Hermes, nil, api.ToolChoice{Mode: api.ToolRequired}, false); !errors.Is(err, ErrNoFunction) {
		t.Errorf("no tools: %v", err)
	}
	if _, err := Grammar("xml", testTools, api.ToolChoice{Mode: api.ToolRequired}, false); !errors.Is(err, ErrFormat) {
		t.Errorf("bad format: %v", err)
	}
	bad := []api.Tool{tool("f", `{"type": "object", "patternProperties": {"^x": {"type": "string"}}, "additionalProperties": false}`)}
	_, err := Grammar(Hermes, bad, api.ToolChoice{Mode: api.ToolRequired}, false)
	if !errors.Is(err, grammar.ErrUnsupported) && !errors.Is(err, grammar.ErrInvalid) {
		t.Errorf("untranslatable schema: %v", err)
	}
	if err != nil && !strings.Contains(err.Error(), `"f"`) {
		t.Errorf("error does not name the tool: %v", err)
	}
}

// --- a small GBNF matcher for the tests: literals, classes, rule names,
// groups, |, *, +, ?, {m}, {m,}, {m,n} (the subset the grammar package and
// Grammar write). ---

type gnode struct {
	kind     byte // 'l' literal, 'c' class, 'r' rule, 's' sequence, 'a' alternatives, 'x' repetition
	lit      []rune
	ranges   [][2]rune
	neg      bool
	ref      string
	kids     []*gnode
	min, max int // repetition; max -1 unbounded
}

type gbnf map[string]*gnode

func parseGBNF(text string) (gbnf, error) {
	g := gbnf{}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		name, body, ok := strings.Cut(line, " ::= ")
		if !ok {
			return nil, fmt.Errorf("bad line %q", line)
		}
		p := &gp{s: []rune(body)}
		n := p.alts()
		if p.err == nil && p.i < len(p.s) {
			p.err = fmt.Errorf("trailing %q", string(p.s[p.i:]))
		}
		if p.err != nil {
			return nil, fmt.Errorf("rule %s: %w", name, p.err)
		}
		g[name] = n
	}
	for name := range g {
		if err := g.refsOK(g[name]); err != nil {
			return nil, err
		}
	}
	if g["root"] == nil {
		return nil, errors.New("no root")
	}
	return g, nil
}

func (g gbnf) refsOK(n *gnode) error {
	if n.kind == 'r' && g[n.ref] == nil {
		return fmt.Errorf("undefined rule %s", n.ref)
	}
	for _, k := range n.kids {
		if err := g.refsOK(k); err != nil {
			return err
		}
	}
	return nil
}

type gp struct {
	s   []rune
	i   int
	err error
}

func (p *gp) ws() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *gp) alts() *gnode {
	n := &gnode{kind: 'a'}
	for {
		n.kids = append(n.kids, p.seq())
		if p.err != nil || p.i >= len(p.s) || p.s[p.i] != '|' {
			return n
		}
		p.i++
	}
}

func (p *gp) seq() *gnode {
	n := &gnode{kind: 's'}
	for p.ws(); p.err == nil && p.i < len(p.s) && p.s[p.i] != '|' && p.s[p.i] != ')'; p.ws() {
		var item *gnode
		switch c := p.s[p.i]; {
		case c == '"':
			p.i++
			item = &gnode{kind: 'l'}
			for p.i < len(p.s) && p.s[p.i] != '"' {
				item.lit = append(item.lit, p.char())
			}
			p.i++
		case c == '[':
			p.i++
			item = &gnode{kind: 'c'}
			if p.i < len(p.s) && p.s[p.i] == '^' {
				item.neg = true
				p.i++
			}
			for p.i < len(p.s) && p.s[p.i] != ']' {
				lo := p.char()
				hi := lo
				if p.i+1 < len(p.s) && p.s[p.i] == '-' && p.s[p.i+1] != ']' {
					p.i++
					hi = p.char()
				}
				item.ranges = append(item.ranges, [2]rune{lo, hi})
			}
			p.i++
		case c == '(':
			p.i++
			item = p.alts()
			if p.i >= len(p.s) || p.s[p.i] != ')' {
				p.err = errors.New("unclosed (")
				return n
			}
			p.i++
		case c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9':
			start := p.i
			for p.i < len(p.s) && (p.s[p.i] == '-' || p.s[p.i] >= 'a' && p.s[p.i] <= 'z' || p.s[p.i] >= 'A' && p.s[p.i] <= 'Z' || p.s[p.i] >= '0' && p.s[p.i] <= '9') {
				p.i++
			}
			item = &gnode{kind: 'r', ref: string(p.s[start:p.i])}
		default:
			p.err = fmt.Errorf("unexpected %q at %d", c, p.i)
			return n
		}
		if p.i < len(p.s) {
			switch p.s[p.i] {
			case '*':
				item, p.i = &gnode{kind: 'x', kids: []*gnode{item}, min: 0, max: -1}, p.i+1
			case '+':
				item, p.i = &gnode{kind: 'x', kids: []*gnode{item}, min: 1, max: -1}, p.i+1
			case '?':
				item, p.i = &gnode{kind: 'x', kids: []*gnode{item}, min: 0, max: 1}, p.i+1
			case '{':
				end := p.i
				for end < len(p.s) && p.s[end] != '}' {
					end++
				}
				lo, hi, comma := strings.Cut(string(p.s[p.i+1:end]), ",")
				m, _ := strconv.Atoi(lo)
				x := m
				if comma {
					x = -1
					if hi != "" {
						x, _ = strconv.Atoi(hi)
					}
				}
				item, p.i = &gnode{kind: 'x', kids: []*gnode{item}, min: m, max: x}, end+1
			}
		}
		n.kids = append(n.kids, item)
	}
	return n
}

func (p *gp) char() rune {
	c := p.s[p.i]
	p.i++
	if c != '\\' {
		return c
	}
	e := p.s[p.i]
	p.i++
	hex := func(n int) rune {
		v, err := strconv.ParseUint(string(p.s[p.i:p.i+n]), 16, 32)
		if err != nil {
			p.err = err
		}
		p.i += n
		return rune(v)
	}
	switch e {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'x':
		return hex(2)
	case 'u':
		return hex(4)
	case 'U':
		return hex(8)
	}
	return e
}

func (g gbnf) match(s string) bool {
	in := []rune(s)
	return g.m(g["root"], in, 0, func(end int) bool { return end == len(in) })
}

// m matches n at pos and calls k with every end position, stopping at the
// first k that holds.
func (g gbnf) m(n *gnode, in []rune, pos int, k func(int) bool) bool {
	switch n.kind {
	case 'l':
		if pos+len(n.lit) > len(in) || string(in[pos:pos+len(n.lit)]) != string(n.lit) {
			return false
		}
		return k(pos + len(n.lit))
	case 'c':
		if pos >= len(in) {
			return false
		}
		in := func(r rune) bool {
			for _, rg := range n.ranges {
				if rg[0] <= r && r <= rg[1] {
					return true
				}
			}
			return false
		}(in[pos])
		return in != n.neg && k(pos+1)
	case 'r':
		return g.m(g[n.ref], in, pos, k)
	case 'a':
		for _, kid := range n.kids {
			if g.m(kid, in, pos, k) {
				return true
			}
		}
		return false
	case 's':
		var run func(i, pos int) bool
		run = func(i, pos int) bool {
			if i == len(n.kids) {
				return k(pos)
			}
			return g.m(n.kids[i], in, pos, func(e int) bool { return run(i+1, e) })
		}
		return run(0, pos)
	case 'x':
		var rep func(count, pos int) bool
		rep = func(count, pos int) bool {
			if (n.max < 0 || count < n.max) && g.m(n.kids[0], in, pos, func(e int) bool { return e > pos && rep(count+1, e) }) {
				return true
			}
			return count >= n.min && k(pos)
		}
		return rep(0, pos)
	}
	return false
}
