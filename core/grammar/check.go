package grammar

import (
	"fmt"
	"strconv"
)

// An expr is a rule body parsed just enough to check a grammar: which rules it
// refers to, which parts may be empty, which may repeat zero times.
type expr struct {
	kind byte // 't' terminal (literal or class), 'r' rule reference, 's' sequence, 'a' alternatives
	ref  string
	kids []*expr
	min  int  // least repetition count (1 unless *, ?, {0,..})
	zero bool // a terminal that matches the empty string ("")
}

// parseBody parses a rule body of the GBNF this package emits (and the
// subset of GBNF that raw rules may use: literals, classes, names, groups,
// alternatives, *, +, ?, {m}, {m,}, {m,n}).
func parseBody(s string) (*expr, error) {
	p := &bodyParser{s: s}
	e := p.alts()
	if p.err == nil && p.i < len(s) {
		p.fail("unexpected %q", s[p.i])
	}
	return e, p.err
}

type bodyParser struct {
	s   string
	i   int
	err error
}

func (p *bodyParser) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("at %d: "+format, append([]any{p.i}, args...)...)
	}
}

func (p *bodyParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *bodyParser) alts() *expr {
	e := &expr{kind: 'a', min: 1}
	for {
		e.kids = append(e.kids, p.seq())
		if p.err != nil || p.i >= len(p.s) || p.s[p.i] != '|' {
			return e
		}
		p.i++
	}
}

func (p *bodyParser) seq() *expr {
	e := &expr{kind: 's', min: 1}
	for p.space(); p.err == nil && p.i < len(p.s); p.space() {
		c := p.s[p.i]
		var item *expr
		switch {
		case c == '"' || c == '[':
			start := p.i
			end := byte('"')
			if c == '[' {
				end = ']'
			}
			for p.i++; p.i < len(p.s) && p.s[p.i] != end; p.i++ {
				if p.s[p.i] == '\\' {
					p.i++
				}
			}
			if p.i >= len(p.s) {
				p.fail("unterminated %c", c)
				return e
			}
			p.i++
			item = &expr{kind: 't', min: 1, zero: p.s[start:p.i] == `""`}
		case c == '(':
			p.i++
			item = p.alts()
			if p.i >= len(p.s) || p.s[p.i] != ')' {
				p.fail("expecting )")
				return e
			}
			p.i++
		case isNameChar(c):
			start := p.i
			for p.i < len(p.s) && isNameChar(p.s[p.i]) {
				p.i++
			}
			item = &expr{kind: 'r', ref: p.s[start:p.i], min: 1}
		case c == '*' || c == '+' || c == '?' || c == '{':
			if len(e.kids) == 0 {
				p.fail("repetition without an item")
				return e
			}
			last := e.kids[len(e.kids)-1]
			p.i++
			switch c {
			case '*', '?':
				last.min = 0
			case '{':
				start := p.i
				for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
					p.i++
				}
				m, err := strconv.Atoi(p.s[start:p.i])
				if err != nil {
					p.fail("expecting a count")
					return e
				}
				for p.i < len(p.s) && p.s[p.i] != '}' {
					p.i++
				}
				if p.i >= len(p.s) {
					p.fail("expecting }")
					return e
				}
				p.i++
				last.min *= m
			}
			continue
		default:
			return e
		}
		e.kids = append(e.kids, item)
	}
	return e
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// check verifies the rules reachable from start: every one is defined, can
// produce a finite string (else a sampler that enters it never finishes), and
// none refers to itself before consuming a character (llama.cpp refuses left
// recursion).
func (b *Builder) check(start string) error {
	parsed := map[string]*expr{}
	var order []string
	var visit func(e *expr) error
	visit = func(e *expr) error {
		if e.kind == 'r' {
			if _, ok := parsed[e.ref]; ok {
				return nil
			}
			body, ok := b.bodies[e.ref]
			if !ok {
				return fmt.Errorf("rule %q is not defined", e.ref)
			}
			pe, err := parseBody(body)
			if err != nil {
				return fmt.Errorf("rule %q: %v", e.ref, err)
			}
			parsed[e.ref] = pe
			order = append(order, e.ref)
			return visit(pe)
		}
		for _, k := range e.kids {
			if err := visit(k); err != nil {
				return err
			}
		}
		return nil
	}
	if err := visit(&expr{kind: 'r', ref: start}); err != nil {
		return err
	}

	// productive: derives some finite string; nullable: derives "".
	prod, null := map[string]bool{}, map[string]bool{}
	var eval func(e *expr, m map[string]bool, wantNull bool) bool
	eval = func(e *expr, m map[string]bool, wantNull bool) bool {
		if e.min == 0 {
			return true
		}
		switch e.kind {
		case 't':
			return !wantNull || e.zero
		case 'r':
			return m[e.ref]
		case 's':
			for _, k := range e.kids {
				if !eval(k, m, wantNull) {
					return false
				}
			}
			return true
		}
		for _, k := range e.kids {
			if eval(k, m, wantNull) {
				return true
			}
		}
		return false
	}
	for changed := true; changed; {
		changed = false
		for _, n := range order {
			if !prod[n] && eval(parsed[n], prod, false) {
				prod[n], changed = true, true
			}
			if !null[n] && eval(parsed[n], null, true) {
				null[n], changed = true, true
			}
		}
	}
	for _, n := range order {
		if !prod[n] {
			return fmt.Errorf("rule %q produces no finite string", n)
		}
	}

	// left recursion: a cycle through references at the left edge.
	left := map[string][]string{}
	var leftRefs func(e *expr, out *[]string)
	leftRefs = func(e *expr, out *[]string) {
		switch e.kind {
		case 'r':
			*out = append(*out, e.ref)
		case 'a':
			for _, k := range e.kids {
				leftRefs(k, out)
			}
		case 's':
			for _, k := range e.kids {
				leftRefs(k, out)
				if k.min > 0 && !eval(k, null, true) {
					break
				}
			}
		}
	}
	for _, n := range order {
		var out []string
		leftRefs(parsed[n], &out)
		left[n] = out
	}
	state := map[string]int{} // 1 on the path, 2 done
	var dfs func(n string) error
	dfs = func(n string) error {
		state[n] = 1
		for _, m := range left[n] {
			switch state[m] {
			case 1:
				return fmt.Errorf("rule %q refers to itself before any character", m)
			case 0:
				if err := dfs(m); err != nil {
					return err
				}
			}
		}
		state[n] = 2
		return nil
	}
	for _, n := range order {
		if state[n] == 0 {
			if err := dfs(n); err != nil {
				return err
			}
		}
	}
	return nil
}
