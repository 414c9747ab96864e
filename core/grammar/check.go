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

	// for check
	rule    string // the rule whose whole body this is, or ""
	parent  *expr
	pending int     // kids not yet marked (sequences)
	sat     [2]bool // productive, nullable
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
// recursion). It takes time linear in the size of those rules: each part of
// a body is marked productive (derives a finite string) and nullable
// (derives "") once, by propagation from its parts, never by passes over
// every rule until nothing changes.
func (b *Builder) check(start string) error {
	// parse the reachable rules, breadth first
	parsed := map[string]*expr{}
	order := []string{start}
	refsTo := map[string][]*expr{} // rule -> the references to it
	var nodes []*expr
	var collect func(e, parent *expr)
	collect = func(e, parent *expr) {
		e.parent = parent
		nodes = append(nodes, e)
		if e.kind == 'r' {
			refsTo[e.ref] = append(refsTo[e.ref], e)
		}
		for _, k := range e.kids {
			collect(k, e)
		}
	}
	parsed[start] = nil
	for i := 0; i < len(order); i++ {
		n := order[i]
		body, ok := b.bodies[n]
		if !ok {
			return fmt.Errorf("rule %q is not defined", n)
		}
		pe, err := parseBody(body)
		if err != nil {
			return fmt.Errorf("rule %q: %v", n, err)
		}
		pe.rule = n
		parsed[n] = pe
		first := len(nodes)
		collect(pe, nil)
		for _, e := range nodes[first:] {
			if e.kind == 'r' {
				if _, seen := parsed[e.ref]; !seen {
					parsed[e.ref] = nil
					order = append(order, e.ref)
				}
			}
		}
	}

	b.work += len(nodes)
	// productive (derives some finite string) as sat[0]; nullable (derives
	// "") as sat[1].
	for p := range 2 {
		var queue []*expr
		mark := func(e *expr) {
			if !e.sat[p] {
				e.sat[p] = true
				queue = append(queue, e)
			}
		}
		for _, e := range nodes {
			e.pending = len(e.kids)
			switch {
			case e.min == 0:
				mark(e)
			case e.kind == 't':
				if p == 0 || e.zero {
					mark(e)
				}
			case e.kind == 's' && len(e.kids) == 0:
				mark(e)
			}
		}
		for len(queue) > 0 {
			e := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			if e.parent == nil {
				for _, r := range refsTo[e.rule] {
					mark(r)
				}
				continue
			}
			switch up := e.parent; up.kind {
			case 's':
				if up.pending--; up.pending == 0 {
					mark(up)
				}
			case 'a':
				mark(up)
			}
		}
	}
	for _, n := range order {
		if !parsed[n].sat[0] {
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
				if !k.sat[1] {
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
