package grammar

// A small GBNF interpreter for the tests: it parses a grammar with the syntax
// llama.cpp's parser accepts (src/llama-grammar.cpp), generates random strings
// from it, and matches strings against it. It is written apart from the
// translator so that the two check each other.

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

type gNode struct {
	kind   byte // 'l' literal, 'c' class, 'r' rule reference, 's' sequence, 'a' alternatives
	runes  []rune
	neg    bool
	ranges [][2]rune
	ref    string
	kids   []*gNode
	min    int
	max    int // -1: no bound
}

type gGrammar struct {
	rules  map[string]*gNode
	minLen map[string]int
}

type gParser struct {
	src []rune
	i   int
	g   *gGrammar
}

func (p *gParser) errf(format string, args ...any) error {
	end := min(p.i+30, len(p.src))
	return fmt.Errorf("at %d (%q): %s", p.i, string(p.src[p.i:end]), fmt.Sprintf(format, args...))
}

func (p *gParser) peek() rune {
	if p.i < len(p.src) {
		return p.src[p.i]
	}
	return 0
}

func (p *gParser) space(newlines bool) {
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == ' ' || c == '\t':
			p.i++
		case newlines && (c == '\n' || c == '\r'):
			p.i++
		case c == '#':
			for p.i < len(p.src) && p.src[p.i] != '\n' && p.src[p.i] != '\r' {
				p.i++
			}
		default:
			return
		}
	}
}

func isWord(c rune) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

func (p *gParser) name() (string, error) {
	start := p.i
	for p.i < len(p.src) && isWord(p.src[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", p.errf("expecting name")
	}
	return string(p.src[start:p.i]), nil
}

func (p *gParser) char() (rune, error) {
	if p.i >= len(p.src) {
		return 0, p.errf("unexpected end")
	}
	c := p.src[p.i]
	if c != '\\' {
		p.i++
		return c, nil
	}
	if p.i+1 >= len(p.src) {
		return 0, p.errf("unexpected end")
	}
	e := p.src[p.i+1]
	p.i += 2
	hex := 0
	switch e {
	case 'x':
		hex = 2
	case 'u':
		hex = 4
	case 'U':
		hex = 8
	case 't':
		return '\t', nil
	case 'r':
		return '\r', nil
	case 'n':
		return '\n', nil
	case '\\', '"', '[', ']':
		return e, nil
	default:
		return 0, p.errf("unknown escape %q", e)
	}
	if p.i+hex > len(p.src) {
		return 0, p.errf("short hex escape")
	}
	v, err := strconv.ParseUint(string(p.src[p.i:p.i+hex]), 16, 32)
	if err != nil {
		return 0, p.errf("bad hex escape")
	}
	p.i += hex
	return rune(v), nil
}

func (p *gParser) alternates(nested bool) (*gNode, error) {
	a := &gNode{kind: 'a', min: 1, max: 1}
	for {
		s, err := p.sequence(nested)
		if err != nil {
			return nil, err
		}
		a.kids = append(a.kids, s)
		if p.peek() != '|' {
			return a, nil
		}
		p.i++
		p.space(true)
	}
}

func (p *gParser) int() (int, error) {
	start := p.i
	for p.i < len(p.src) && p.src[p.i] >= '0' && p.src[p.i] <= '9' {
		p.i++
	}
	if start == p.i {
		return 0, p.errf("expecting an int")
	}
	return strconv.Atoi(string(p.src[start:p.i]))
}

func (p *gParser) sequence(nested bool) (*gNode, error) {
	s := &gNode{kind: 's', min: 1, max: 1}
	var last *gNode
	rep := func(lo, hi int) error {
		if last == nil {
			return p.errf("expecting preceding item to */+/?/{")
		}
		if lo > 2000 || hi > 2000 {
			return p.errf("repetition over 2000")
		}
		// wrap, so that x{2}{3} nests as llama.cpp does
		w := &gNode{kind: 's', kids: []*gNode{last}, min: lo, max: hi}
		s.kids[len(s.kids)-1] = w
		last = w
		return nil
	}
	for p.i < len(p.src) {
		c := p.src[p.i]
		switch {
		case c == '"':
			p.i++
			n := &gNode{kind: 'l', min: 1, max: 1}
			for p.peek() != '"' {
				if p.i >= len(p.src) {
					return nil, p.errf("unterminated literal")
				}
				r, err := p.char()
				if err != nil {
					return nil, err
				}
				n.runes = append(n.runes, r)
			}
			p.i++
			s.kids, last = append(s.kids, n), n
			p.space(nested)
		case c == '[':
			p.i++
			n := &gNode{kind: 'c', min: 1, max: 1}
			if p.peek() == '^' {
				n.neg = true
				p.i++
			}
			for p.peek() != ']' {
				if p.i >= len(p.src) {
					return nil, p.errf("unterminated class")
				}
				lo, err := p.char()
				if err != nil {
					return nil, err
				}
				hi := lo
				if p.peek() == '-' && p.i+1 < len(p.src) && p.src[p.i+1] != ']' {
					p.i++
					if hi, err = p.char(); err != nil {
						return nil, err
					}
				}
				n.ranges = append(n.ranges, [2]rune{lo, hi})
			}
			p.i++
			s.kids, last = append(s.kids, n), n
			p.space(nested)
		case isWord(c):
			name, _ := p.name()
			n := &gNode{kind: 'r', ref: name, min: 1, max: 1}
			s.kids, last = append(s.kids, n), n
			p.space(nested)
		case c == '(':
			p.i++
			p.space(true)
			n, err := p.alternates(true)
			if err != nil {
				return nil, err
			}
			if p.peek() != ')' {
				return nil, p.errf("expecting )")
			}
			p.i++
			s.kids, last = append(s.kids, n), n
			p.space(nested)
		case c == '*' || c == '+' || c == '?':
			p.i++
			p.space(nested)
			lo, hi := map[rune]int{'*': 0, '+': 1, '?': 0}[c], map[rune]int{'*': -1, '+': -1, '?': 1}[c]
			if err := rep(lo, hi); err != nil {
				return nil, err
			}
		case c == '{':
			p.i++
			p.space(nested)
			lo, err := p.int()
			if err != nil {
				return nil, err
			}
			p.space(nested)
			hi := lo
			if p.peek() == ',' {
				p.i++
				p.space(nested)
				hi = -1
				if d := p.peek(); d >= '0' && d <= '9' {
					if hi, err = p.int(); err != nil {
						return nil, err
					}
					p.space(nested)
				}
			}
			if p.peek() != '}' {
				return nil, p.errf("expecting }")
			}
			p.i++
			p.space(nested)
			if err := rep(lo, hi); err != nil {
				return nil, err
			}
		default:
			return s, nil
		}
	}
	return s, nil
}

// parseGBNF parses a grammar and checks that every rule it refers to exists.
func parseGBNF(text string) (*gGrammar, error) {
	g := &gGrammar{rules: map[string]*gNode{}}
	p := &gParser{src: []rune(text), g: g}
	p.space(true)
	for p.i < len(p.src) {
		name, err := p.name()
		if err != nil {
			return nil, err
		}
		p.space(false)
		if !strings.HasPrefix(string(p.src[p.i:min(p.i+3, len(p.src))]), "::=") {
			return nil, p.errf("expecting ::=")
		}
		p.i += 3
		p.space(true)
		body, err := p.alternates(false)
		if err != nil {
			return nil, err
		}
		if _, dup := g.rules[name]; dup {
			return nil, fmt.Errorf("rule %q defined twice", name)
		}
		g.rules[name] = body
		switch p.peek() {
		case '\r', '\n':
			p.i++
		case 0:
		default:
			return nil, p.errf("expecting newline or end")
		}
		p.space(true)
	}
	if g.rules["root"] == nil {
		return nil, fmt.Errorf("no root rule")
	}
	var undefined error
	var walk func(n *gNode)
	walk = func(n *gNode) {
		if n.kind == 'r' && g.rules[n.ref] == nil && undefined == nil {
			undefined = fmt.Errorf("undefined rule %q", n.ref)
		}
		for _, k := range n.kids {
			walk(k)
		}
	}
	for _, r := range g.rules {
		walk(r)
	}
	if undefined != nil {
		return nil, undefined
	}
	g.computeMinLen()
	return g, nil
}

const inf = 1 << 30

func (g *gGrammar) computeMinLen() {
	g.minLen = map[string]int{}
	for n := range g.rules {
		g.minLen[n] = inf
	}
	for changed := true; changed; {
		changed = false
		for n, r := range g.rules {
			if l := g.nodeMin(r); l < g.minLen[n] {
				g.minLen[n], changed = l, true
			}
		}
	}
}

// nodeMin is the least length n can produce (given the current rule minima).
func (g *gGrammar) nodeMin(n *gNode) int {
	if n.kind == 's' && len(n.kids) == 1 && (n.min != 1 || n.max != 1) {
		return min(n.min*g.nodeMin(n.kids[0]), inf)
	}
	switch n.kind {
	case 'l':
		return len(n.runes)
	case 'c':
		return 1
	case 'r':
		return g.minLen[n.ref]
	case 's':
		sum := 0
		for _, k := range n.kids {
			sum = min(sum+g.nodeMin(k), inf)
		}
		return sum
	}
	best := inf
	for _, k := range n.kids {
		best = min(best, g.nodeMin(k))
	}
	return best
}

// palette holds the characters a negated class may produce.
var palette = []rune("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 _-.,:;!?/\\\"'{}[]()é日本😀\u00a0\u2028\x01\x1f\x7f\t\n")

type gen struct {
	g        *gGrammar
	rng      *rand.Rand
	out      []rune
	maxDepth int
	maxLen   int
}

// generate returns one random string of the grammar: a random walk that
// takes the shortest ways out once it is deep or long.
func (g *gGrammar) generate(rng *rand.Rand) (string, error) {
	gn := &gen{g: g, rng: rng, maxDepth: 12, maxLen: 3000}
	if err := gn.walk(g.rules["root"], 0); err != nil {
		return "", err
	}
	return string(gn.out), nil
}

func (gn *gen) short(depth int) bool { return depth > gn.maxDepth || len(gn.out) > gn.maxLen }

func (gn *gen) walk(n *gNode, depth int) error {
	if depth > 10000 {
		return fmt.Errorf("no way out of the grammar")
	}
	if n.kind == 's' && len(n.kids) == 1 && (n.min != 1 || n.max != 1) {
		lo, hi := n.min, n.max
		count := lo
		if !gn.short(depth) {
			if hi >= 0 && hi <= lo+40 && gn.rng.IntN(6) == 0 {
				count = hi
			} else {
				for (hi < 0 || count < hi) && count < lo+30 && gn.rng.Float64() < 0.65 {
					count++
				}
			}
		}
		for range count {
			if err := gn.walk(n.kids[0], depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	switch n.kind {
	case 'l':
		gn.out = append(gn.out, n.runes...)
	case 'c':
		gn.out = append(gn.out, gn.pick(n))
	case 'r':
		return gn.walk(gn.g.rules[n.ref], depth+1)
	case 's':
		for _, k := range n.kids {
			if err := gn.walk(k, depth); err != nil {
				return err
			}
		}
	case 'a':
		var k *gNode
		if gn.short(depth) {
			best := inf + 1
			for _, c := range n.kids {
				if l := gn.g.nodeMin(c); l < best {
					best, k = l, c
				}
			}
		} else {
			k = n.kids[gn.rng.IntN(len(n.kids))]
		}
		return gn.walk(k, depth+1)
	}
	return nil
}

func (n *gNode) matches(r rune) bool {
	in := false
	for _, rg := range n.ranges {
		if r >= rg[0] && r <= rg[1] {
			in = true
			break
		}
	}
	return in != n.neg
}

func (gn *gen) pick(n *gNode) rune {
	if !n.neg {
		rg := n.ranges[gn.rng.IntN(len(n.ranges))]
		return rg[0] + rune(gn.rng.IntN(int(rg[1]-rg[0])+1))
	}
	for range 1000 {
		if r := palette[gn.rng.IntN(len(palette))]; n.matches(r) {
			return r
		}
	}
	panic("class excludes the whole palette")
}

// match reports whether s is in the grammar's language (backtracking).
func (g *gGrammar) match(s string) bool {
	in := []rune(s)
	return g.m(g.rules["root"], in, 0, func(p int) bool { return p == len(in) })
}

func (g *gGrammar) m(n *gNode, in []rune, pos int, k func(int) bool) bool {
	if n.kind == 's' && len(n.kids) == 1 && (n.min != 1 || n.max != 1) {
		return g.rep(n.kids[0], n.min, n.max, 0, in, pos, k)
	}
	switch n.kind {
	case 'l':
		if pos+len(n.runes) > len(in) {
			return false
		}
		for i, r := range n.runes {
			if in[pos+i] != r {
				return false
			}
		}
		return k(pos + len(n.runes))
	case 'c':
		return pos < len(in) && n.matches(in[pos]) && k(pos+1)
	case 'r':
		return g.m(g.rules[n.ref], in, pos, k)
	case 's':
		return g.seq(n.kids, in, pos, k)
	case 'a':
		for _, c := range n.kids {
			if g.m(c, in, pos, k) {
				return true
			}
		}
	}
	return false
}

func (g *gGrammar) seq(kids []*gNode, in []rune, pos int, k func(int) bool) bool {
	if len(kids) == 0 {
		return k(pos)
	}
	return g.m(kids[0], in, pos, func(p int) bool { return g.seq(kids[1:], in, p, k) })
}

func (g *gGrammar) rep(n *gNode, lo, hi, count int, in []rune, pos int, k func(int) bool) bool {
	if count >= lo && k(pos) {
		return true
	}
	if hi >= 0 && count >= hi {
		return false
	}
	return g.m(n, in, pos, func(p int) bool {
		if p == pos && count >= lo {
			return false // an empty round changes nothing
		}
		return g.rep(n, lo, hi, count+1, in, p, k)
	})
}
