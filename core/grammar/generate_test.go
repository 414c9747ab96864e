package grammar

// End-to-end: llama.cpp's grammar sampler drives the tiny synthetic model
// through the grammars FromSchema writes, and every output is checked three
// ways: by the JSON Schema validator, by this package's GBNF interpreter
// (gbnf_test.go), and, for an output cut at the token cap, as a prefix the
// grammar allows.
//
// llama.cpp's grammar sees code points, decoded leniently from the bytes of
// tokens: an overlong encoding (C0 xx, E0 80-9F xx, F0 80-8F xx xx) decodes
// to the character it spells and passes, though it is no UTF-8. No grammar
// can refuse it; backends/llamacpp adds a UTF-8 sampler after every grammar,
// and these tests require every output to be UTF-8.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/backends/llamacpp"
	"github.com/llorch/llorch/core/synth"
	"github.com/llorch/llorch/core/testkit"
)

// genCap is the most tokens one generation may take before it is cut.
const genCap = 1500

// tinyGen is the tiny synthetic model with one context of one sequence.
type tinyGen struct {
	m      *llamacpp.Model
	c      backends.Context
	prompt []backends.Token
	eog    []backends.Token
	batch  backends.Batch
	byByte map[byte]backends.Token // the single-byte tokens
}

func newTinyGen(t testing.TB) *tinyGen {
	t.Helper()
	m := testkit.LoadModel(t, synth.Tiny())
	c, err := m.NewContext(backends.ContextParams{SeqCtx: 4096, Seqs: 1, Batch: 512, Threads: 1, ThreadsBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	prompt, err := m.Tokenize("Answer with one JSON value:", true, false)
	if err != nil {
		t.Fatal(err)
	}
	g := &tinyGen{m: m, c: c, prompt: prompt, byByte: map[byte]backends.Token{}}
	for i := range m.Info().VocabSize {
		tok := backends.Token(i)
		if m.IsEOG(tok) {
			g.eog = append(g.eog, tok)
		}
		if p := m.Piece(tok); len(p) == 1 {
			g.byByte[p[0]] = tok
		}
	}
	if len(g.eog) == 0 {
		t.Fatal("the tiny model has no end-of-generation token")
	}
	return g
}

// genOut is one generation.
type genOut struct {
	text   string
	eog    bool // ended with an end-of-generation token (else cut at the cap)
	tokens int
	ends   []int // len(text) after each token
}

// run generates under p from the prompt until an end-of-generation token or
// maxTokens tokens.
func (g *tinyGen) run(p backends.SamplerParams, maxTokens int) (genOut, error) {
	if err := g.c.TrimSeq(0, 0); err != nil {
		return genOut{}, err
	}
	s, err := g.c.NewSampler(p)
	if err != nil {
		return genOut{}, err
	}
	defer s.Close()
	g.batch.Reset()
	for i, tok := range g.prompt {
		g.batch.Add(tok, int32(i), 0, i == len(g.prompt)-1)
	}
	if err := g.c.Decode(&g.batch); err != nil {
		return genOut{}, err
	}
	idx, pos := len(g.prompt)-1, len(g.prompt)
	var text []byte
	var ends []int
	for n := 0; ; n++ {
		tok, err := g.c.Sample(s, idx, nil)
		if err != nil {
			return genOut{text: string(text), tokens: n}, err
		}
		if g.m.IsEOG(tok) {
			return genOut{text: string(text), eog: true, tokens: n, ends: ends}, nil
		}
		text = append(text, g.m.Piece(tok)...)
		ends = append(ends, len(text))
		if n+1 >= maxTokens {
			return genOut{text: string(text), tokens: n + 1, ends: ends}, nil
		}
		g.batch.Reset()
		g.batch.Add(tok, int32(pos), 0, true)
		if err := g.c.Decode(&g.batch); err != nil {
			return genOut{}, err
		}
		idx, pos = 0, pos+1
	}
}

// genStats counts generations for the report.
type genStats struct {
	schemas, schemasEOG int // schemasEOG: schemas with a run that reached EOG
	runs, eog, cut      int
	tokens              int
	maxTokens           int // the cap
	undecided           int // interpreter checks that ran out of budget
}

func (s genStats) String() string {
	return fmt.Sprintf("%d schemas, %d of them with a run that reached EOG; %d runs: %d reached EOG (each validated), %d cut at %d tokens (each a prefix the grammar allows); %d tokens; %d interpreter checks undecided",
		s.schemas, s.schemasEOG, s.runs, s.eog, s.cut, s.maxTokens, s.tokens, s.undecided)
}

// enough fails t unless at least 80% of the schemas had a run that reached
// EOG and 80% of the runs did.
func (s genStats) enough(t *testing.T) {
	t.Helper()
	if s.schemasEOG*10 < s.schemas*8 || s.eog*10 < s.runs*8 {
		t.Errorf("too few generations reached EOG: %v", s)
	}
}

// checkGenerations generates from gr, the grammar of schema, once per sampler
// setting and checks every output: UTF-8;
// when it reached EOG, JSON the schema allows, a string of the grammar for
// the interpreter and, when firstEnd, complete at no earlier token (outputs
// of up to 300 tokens); when cut, a prefix the grammar allows. It counts
// into st.
func checkGenerations(t *testing.T, g *tinyGen, name, schema, gr string, runs []backends.SamplerParams, firstEnd bool, st *genStats) {
	checkGenerationsCap(t, g, name, schema, gr, runs, firstEnd, genCap, st)
}

// checkGenerationsCap is checkGenerations with its own token cap.
func checkGenerationsCap(t *testing.T, g *tinyGen, name, schema, gr string, runs []backends.SamplerParams, firstEnd bool, maxTokens int, st *genStats) {
	t.Helper()
	interp, err := parseGBNF(gr)
	if err != nil {
		t.Fatalf("%s: grammar does not parse: %v", name, err)
	}
	v := compileSchema(t, schema)
	st.schemas++
	ended := false
	for _, p := range runs {
		p.Grammar = gr
		out, err := g.run(p, maxTokens)
		what := fmt.Sprintf("%s (temperature %v, seed %d)", name, p.Temperature, p.Seed)
		if err != nil {
			t.Errorf("%s: %v after %d tokens %q\ngrammar:\n%s", what, err, out.tokens, out.text, gr)
			continue
		}
		st.runs++
		st.tokens += out.tokens
		st.maxTokens = maxTokens
		text := out.text
		if !out.eog {
			text = trimPartialRune(text) // the cap may cut a character
		}
		if !utf8.ValidString(text) {
			t.Errorf("%s: output is no UTF-8: %q\ngrammar:\n%s", what, out.text, gr)
			continue
		}
		if !out.eog {
			st.cut++
			ok, decided := interp.isPrefix(out.text)
			if !decided {
				st.undecided++
			}
			if decided && !ok {
				t.Errorf("%s: output cut at %d tokens is no prefix of the grammar: %q\ngrammar:\n%s", what, out.tokens, out.text, gr)
			}
			continue
		}
		st.eog++
		ended = true
		if err := validate(v, out.text); err != nil {
			t.Errorf("%s: output %q does not validate: %v\nschema: %s\ngrammar:\n%s", what, out.text, err, schema, gr)
			continue
		}
		ok, decided := interp.isComplete(out.text)
		if !decided {
			st.undecided++
		}
		if decided && !ok {
			t.Errorf("%s: the interpreter does not match the output %q\ngrammar:\n%s", what, out.text, gr)
		}
		if !firstEnd || len(out.ends) > 300 {
			continue // (a long output would take quadratic time)
		}
		for _, end := range out.ends[:max(len(out.ends)-1, 0)] {
			if ok, _ := interp.isComplete(out.text[:end]); ok {
				t.Errorf("%s: the sampler went on after %q, a complete value, to %q", what, out.text[:end], out.text)
				break
			}
		}
	}
	if ended {
		st.schemasEOG++
	}
}

// TestGenerateTable generates with llama.cpp's grammar sampler from every
// table schema and the json_object grammar, greedy and seeded.
func TestGenerateTable(t *testing.T) {
	g := newTinyGen(t)
	runs := []backends.SamplerParams{{Temperature: 0}, {Temperature: 1, Seed: 1000}, {Temperature: 1, Seed: 1001}}
	if testing.Short() {
		runs = runs[:2]
	}
	var st genStats
	for _, tc := range tableCases {
		gr, err := FromSchema([]byte(tc.schema))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		checkGenerations(t, g, tc.name, tc.schema, gr, runs, false, &st)
	}
	checkGenerations(t, g, "json_object", `{"type":"object"}`, JSONObject(), runs, false, &st)
	t.Log(st)
	st.enough(t)
}

// TestGenerateFuzzSchemas does the same for schemas from FuzzSchema's
// generator (deterministic seeds; schemas FromSchema refuses are skipped),
// one run each, greedy and seeded in turn.
func TestGenerateFuzzSchemas(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 60
	}
	g := newTinyGen(t)
	rng := rand.New(rand.NewPCG(16, 1))
	var st genStats
	refused := 0
	for i := range n {
		data := make([]byte, 48)
		for j := range data {
			data[j] = byte(rng.IntN(256))
		}
		schema := (&schemaGen{data: data}).build()
		gr, err := FromSchema(schema)
		if err != nil {
			if !errors.Is(err, ErrUnsupported) {
				t.Errorf("schema %s: %v (want ErrUnsupported)", schema, err)
			}
			refused++
			continue
		}
		p := backends.SamplerParams{Temperature: float64(i % 2), Seed: uint32(i)}
		// cap 1000: runs cut at the cap are most of the time spent
		checkGenerationsCap(t, g, fmt.Sprintf("generated schema %d %s", i, schema), string(schema), gr, []backends.SamplerParams{p}, false, 1000, &st)
	}
	t.Logf("%d generated schemas, %d refused; %v", n, refused, st)
	st.enough(t)
}

// TestGenerateEndsOnlyWhenComplete biases the end-of-generation tokens far
// above every other token: the grammar holds them back until the value is
// complete, and lets them through as soon as it is, so every output that
// ends validates and was complete at no earlier token.
func TestGenerateEndsOnlyWhenComplete(t *testing.T) {
	g := newTinyGen(t)
	bias := map[backends.Token]float64{}
	for _, tok := range g.eog {
		bias[tok] = 1000
	}
	runs := []backends.SamplerParams{{LogitBias: bias}, {Temperature: 1, Seed: 7, LogitBias: bias}}
	var st genStats
	for _, tc := range tableCases {
		gr, err := FromSchema([]byte(tc.schema))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// a run that has not ended after 500 tokens is one the model keeps
		// inside a string or an ever deeper nesting
		checkGenerationsCap(t, g, tc.name, tc.schema, gr, runs, true, 500, &st)
	}
	t.Logf("end of generation biased up: %v", st)
	st.enough(t)

	// A grammar with no choice: the bias cannot end it before its last token.
	out, err := g.run(backends.SamplerParams{LogitBias: bias, Grammar: "root ::= \"ab\" [0-9]{3} \"cd\"\n"}, 100)
	if err != nil || !out.eog || len(out.text) != 7 || !strings.HasPrefix(out.text, "ab") || !strings.HasSuffix(out.text, "cd") {
		t.Errorf("fixed-shape grammar gave %q (eog %v): %v", out.text, out.eog, err)
	}
}

// banChildEnv makes the test binary, run again by
// TestGenerateAllAllowedBanned, do the seeded half of the test: a crash in
// llama.cpp then fails that test instead of ending the whole binary.
const banChildEnv = "LLORCH_GRAMMAR_BAN_CHILD"

// TestGenerateAllAllowedBanned: when the logit bias bans every token the
// grammar allows, Sample returns an error (greedy and seeded), at the first
// token or a later one, and the context goes on working.
func TestGenerateAllAllowedBanned(t *testing.T) {
	if os.Getenv(banChildEnv) != "" {
		checkAllBanned(t, 1)
		return
	}
	checkAllBanned(t, 0)
	t.Run("seeded in a child process", func(t *testing.T) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestGenerateAllAllowedBanned$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), banChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("seeded sampling with every allowed token banned: %v\n%s", err, out[:min(len(out), 3000)])
		}
		if !strings.Contains(string(out), "--- PASS: TestGenerateAllAllowedBanned") {
			t.Fatalf("the child ran no test:\n%s", out)
		}
	})
}

func checkAllBanned(t *testing.T, temp float64) {
	g := newTinyGen(t)
	ban := map[backends.Token]float64{}
	for tok := range g.m.Info().VocabSize {
		if strings.Contains(string(g.m.Piece(backends.Token(tok))), "a") {
			ban[backends.Token(tok)] = math.Inf(-1)
		}
	}
	for _, tc := range []struct {
		name, grammar string
		before        int // tokens sampled before the error
	}{
		{"first token", "root ::= \"a\"+\n", 0},
		{"later token", "root ::= \"x\" \"a\"\n", 1},
	} {
		out, err := g.run(backends.SamplerParams{Temperature: temp, Seed: 3, LogitBias: ban, Grammar: tc.grammar}, 10)
		if err == nil {
			t.Errorf("%s, temperature %v: no error, output %q (eog %v)", tc.name, temp, out.text, out.eog)
			continue
		}
		if !errors.Is(err, llamacpp.ErrSample) {
			t.Errorf("%s, temperature %v: err = %v, want llamacpp.ErrSample", tc.name, temp, err)
		}
		if out.tokens != tc.before {
			t.Errorf("%s, temperature %v: error after %d tokens (%q), want %d", tc.name, temp, out.tokens, out.text, tc.before)
		}
	}
	out, err := g.run(backends.SamplerParams{Temperature: temp, Seed: 3, Grammar: "root ::= \"ok\"\n"}, 10)
	if err != nil || !out.eog || out.text != "ok" {
		t.Errorf("after the errors: %q (eog %v), %v", out.text, out.eog, err)
	}
}

// TestGrammarRefusesNonUTF8 feeds bytes one token at a time to llama.cpp's
// grammar sampler inside a string of the translator's grammar: bytes that
// decode to no Unicode scalar value (leads F5-FF, values above U+10FFFF,
// encoded surrogates) are refused, real characters are taken. A negated
// class ([^"\\...]) took the former (regression).
func TestGrammarRefusesNonUTF8(t *testing.T) {
	g := newTinyGen(t)
	gr, err := FromSchema([]byte(`{"type":"object","properties":{"s":{"type":"string"}},"required":["s"],"additionalProperties":{"type":"integer"}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		bytes string
		ok    bool
	}{
		{"e acute", "\xc3\xa9", true},
		{"CJK", "\xe6\x97\xa5", true},
		{"emoji", "\xf0\x9f\x98\x80", true},
		{"last scalar", "\xf4\x8f\xbf\xbf", true},
		{"lead FE", "\xfe\x8b\x98\xb5", false},
		{"lead F8", "\xf8\x88\x80\x80", false},
		{"lead F5", "\xf5\x80\x80\x80", false},
		{"above U+10FFFF", "\xf4\x90\x80\x80", false},
		{"surrogate", "\xed\xa0\x80", false},
		{"low surrogate", "\xed\xba\x9b", false},
	} {
		for _, where := range []struct{ prefix, suffix string }{
			{`{"s":"`, `"}`},        // a value string
			{`{"s":"","`, `":1}`},   // an extra member's key
			{`{"s":"","s`, `x":1}`}, // an extra key that shares a prefix with "s"
		} {
			s, err := g.c.NewSampler(backends.SamplerParams{Grammar: gr})
			if err != nil {
				t.Fatal(err)
			}
			var toks []backends.Token
			for _, b := range []byte(where.prefix + tc.bytes + where.suffix) {
				toks = append(toks, g.byByte[b])
			}
			err = s.Accept(toks)
			s.Close()
			if tc.ok && err != nil {
				t.Errorf("%s in %s...%s: refused: %v", tc.name, where.prefix, where.suffix, err)
			}
			if !tc.ok && !errors.Is(err, backends.ErrGrammar) {
				t.Errorf("%s in %s...%s: err = %v, want the grammar to refuse it", tc.name, where.prefix, where.suffix, err)
			}
		}
	}
}

// The interpreter's matcher (gbnf_test.go) extended to prefixes, with a step
// budget so that a pathological backtrack is reported as undecided instead of
// running for ever.

type prefixMatcher struct {
	g      *gGrammar
	in     []rune
	prefix bool // input may end anywhere inside the grammar
	steps  int
}

const matchBudget = 5_000_000

var errBudget = errors.New("match budget spent")

// isPrefix reports whether s (less a trailing incomplete UTF-8 sequence) can
// be extended to a string of the grammar. decided is false when the
// backtracking budget ran out.
func (g *gGrammar) isPrefix(s string) (ok, decided bool) {
	s = trimPartialRune(s)
	if !utf8.ValidString(s) {
		return false, true
	}
	return g.matchWith(s, true)
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of s.
func trimPartialRune(s string) string {
	for i := len(s) - 1; i >= 0 && i >= len(s)-3; i-- {
		if utf8.RuneStart(s[i]) {
			if !utf8.FullRuneInString(s[i:]) {
				return s[:i]
			}
			break
		}
	}
	return s
}

// isComplete reports whether s is a string of the grammar.
func (g *gGrammar) isComplete(s string) (ok, decided bool) {
	if !utf8.ValidString(s) {
		return false, true
	}
	return g.matchWith(s, false)
}

func (g *gGrammar) matchWith(s string, prefix bool) (ok, decided bool) {
	for name, l := range g.minLen {
		if l >= inf {
			panic("rule " + name + " produces no string")
		}
	}
	pm := &prefixMatcher{g: g, in: []rune(s), prefix: prefix}
	defer func() {
		if r := recover(); r != nil {
			if r != errBudget {
				panic(r)
			}
			ok, decided = false, false
		}
	}()
	ok = pm.m(g.rules["root"], 0, func(p int) bool { return p == len(pm.in) })
	return ok, true
}

// atEnd: in prefix mode, every rule produces some string (checked above), so
// whatever is left of the grammar once the input is used up can be completed.
func (pm *prefixMatcher) atEnd(pos int) bool { return pm.prefix && pos == len(pm.in) }

func (pm *prefixMatcher) m(n *gNode, pos int, k func(int) bool) bool {
	if pm.steps++; pm.steps > matchBudget {
		panic(errBudget)
	}
	if n.kind == 's' && len(n.kids) == 1 && (n.min != 1 || n.max != 1) {
		return pm.rep(n.kids[0], n.min, n.max, 0, pos, k)
	}
	switch n.kind {
	case 'l':
		for i, r := range n.runes {
			if pos+i == len(pm.in) {
				return pm.prefix
			}
			if pm.in[pos+i] != r {
				return false
			}
		}
		return k(pos + len(n.runes))
	case 'c':
		if pm.atEnd(pos) {
			return true
		}
		return pos < len(pm.in) && n.matches(pm.in[pos]) && k(pos+1)
	case 'r':
		if pm.atEnd(pos) {
			return true
		}
		return pm.m(pm.g.rules[n.ref], pos, k)
	case 's':
		return pm.seq(n.kids, pos, k)
	case 'a':
		for _, c := range n.kids {
			if pm.m(c, pos, k) {
				return true
			}
		}
	}
	return false
}

func (pm *prefixMatcher) seq(kids []*gNode, pos int, k func(int) bool) bool {
	if len(kids) == 0 {
		return k(pos)
	}
	return pm.m(kids[0], pos, func(p int) bool { return pm.seq(kids[1:], p, k) })
}

func (pm *prefixMatcher) rep(n *gNode, lo, hi, count, pos int, k func(int) bool) bool {
	if pm.atEnd(pos) {
		return true
	}
	if count >= lo && k(pos) {
		return true
	}
	if hi >= 0 && count >= hi {
		return false
	}
	return pm.m(n, pos, func(p int) bool {
		if p == pos && count >= lo {
			return false
		}
		return pm.rep(n, lo, hi, count+1, p, k)
	})
}

// TestPrefixMatcher checks the prefix matcher itself on a small grammar.
func TestPrefixMatcher(t *testing.T) {
	g, err := parseGBNF("root ::= \"{\" item (\",\" item)* \"}\"\nitem ::= [a-c]+ | \"\\\"\" [^\"]* \"\\\"\"\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"", "{", "{a", "{ab,", `{"x y`, `{"日`, "{a}", "{\"\xe6\x97"} {
		if ok, decided := g.isPrefix(s); !ok || !decided {
			t.Errorf("isPrefix(%q) = %v, %v", s, ok, decided)
		}
	}
	for _, s := range []string{"}", "{d", "{a}}", "{a,}", "{,", "{\xff"} {
		if ok, decided := g.isPrefix(s); ok || !decided {
			t.Errorf("isPrefix(%q) = %v, %v", s, ok, decided)
		}
	}
	for s, want := range map[string]bool{"{a}": true, `{a,"x"}`: true, "{a": false, "{}": false} {
		if ok, decided := g.isComplete(s); ok != want || !decided {
			t.Errorf("isComplete(%q) = %v, %v", s, ok, decided)
		}
	}
}
