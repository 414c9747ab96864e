package grammar

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrUnsupported is wrapped by every error about a schema that is valid JSON
// Schema but not one this package can turn into a grammar that admits exactly
// (or only) the values the schema allows. The message names the JSON pointer
// and the keyword.
var ErrUnsupported = errors.New("grammar: unsupported schema")

// ErrInvalid is wrapped by errors about input that is not a JSON Schema at
// all: not JSON, or a keyword with a value of the wrong type.
var ErrInvalid = errors.New("grammar: invalid schema")

// maxRepeat is llama.cpp's limit on a repetition count (x{m,n}).
const maxRepeat = 2000

// repChunk is the block size used to express counts above maxRepeat.
const repChunk = 1000

// maxCount is the largest minLength/maxLength/minItems/maxItems accepted.
const maxCount = repChunk * maxRepeat

// Limits on the grammar one Builder holds. A grammar costs its translation,
// llama.cpp's parse of it (once per request), and every decode step: the
// grammar sampler keeps one stack per way the output may go on, and an
// object of n optional properties alone has n of them after each member. The
// limits are checked as rules are added, so a schema past them is refused
// before the rest of it is translated. Figures behind them: the package doc.
const (
	// MaxGrammarBytes bounds the GBNF text of a Builder (rules and names).
	MaxGrammarBytes = 64 << 10
	// MaxRules bounds the number of rules of a Builder.
	MaxRules = 2048
)

// A Builder composes a GBNF grammar from schemas and raw rules. Rule names are
// unique within a Builder; identical rule bodies made from schemas share one
// rule. The zero value is not usable: call NewBuilder. A Builder is not safe
// for concurrent use.
type Builder struct {
	names  map[string]bool   // every name taken, "root" included
	next   map[string]int    // base name -> the first suffix that may be free
	order  []string          // rules in the order they were added
	bodies map[string]string // name -> body
	byBody map[string]string // body -> name, for deduplicated rules
	prims  map[string]string // primitive key -> rule name
	size   int               // bytes of GBNF the rules take
	undo   []undo            // what to take back when a Schema call fails
	work   int               // steps of name search and checking, for tests
}

// An undo takes back one change to a Builder's maps: a name taken ('n'), a
// rule body deduplicated ('b'), a primitive added ('p'), a suffix counter
// moved from old ('c').
type undo struct {
	kind byte
	key  string
	old  int
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{
		names:  map[string]bool{"root": true},
		next:   map[string]int{},
		bodies: map[string]string{},
		byBody: map[string]string{},
		prims:  map[string]string{},
	}
}

// snapshot and restore let a failed Schema call leave the Builder unchanged,
// in time proportional to what the call added.
type snapshot struct{ order, size, undo int }

func (b *Builder) snapshot() snapshot { return snapshot{len(b.order), b.size, len(b.undo)} }

func (b *Builder) restore(s snapshot) {
	for _, n := range b.order[s.order:] {
		delete(b.bodies, n)
	}
	b.order = b.order[:s.order]
	b.size = s.size
	for i := len(b.undo) - 1; i >= s.undo; i-- {
		u := b.undo[i]
		switch u.kind {
		case 'n':
			delete(b.names, u.key)
		case 'b':
			delete(b.byBody, u.key)
		case 'p':
			delete(b.prims, u.key)
		case 'c':
			if u.old == 0 {
				delete(b.next, u.key)
			} else {
				b.next[u.key] = u.old
			}
		}
	}
	b.undo = b.undo[:s.undo]
}

// over says which limit the rules added so far exceed, or "".
func (b *Builder) over() string {
	switch {
	case b.size > MaxGrammarBytes:
		return fmt.Sprintf("the grammar would take more than %d bytes (a smaller schema, or fewer tools, is needed)", MaxGrammarBytes)
	case len(b.order) > MaxRules:
		return fmt.Sprintf("the grammar would take more than %d rules (a smaller schema, or fewer tools, is needed)", MaxRules)
	}
	return ""
}

// Rule adds a raw rule and returns its name: name made a valid GBNF rule
// name ([a-zA-Z0-9-]+) and unique in this Builder. body is GBNF text on one
// line; it may refer to rule names returned by this Builder.
func (b *Builder) Rule(name, body string) string {
	n := b.unique(name)
	b.define(n, body)
	return n
}

// Grammar returns the whole grammar: `root ::= rootBody` and every rule added.
func (b *Builder) Grammar(rootBody string) string {
	var sb strings.Builder
	sb.WriteString("root ::= ")
	sb.WriteString(rootBody)
	sb.WriteByte('\n')
	for _, n := range b.order {
		sb.WriteString(n)
		sb.WriteString(" ::= ")
		sb.WriteString(b.bodies[n])
		sb.WriteByte('\n')
	}
	return sb.String()
}

// FromSchema translates a JSON Schema into a whole GBNF grammar whose root
// rule is "root".
func FromSchema(schema []byte) (string, error) {
	b := NewBuilder()
	r, err := b.Schema(schema)
	if err != nil {
		return "", err
	}
	return b.Grammar(r), nil
}

// JSONObject returns a grammar for any JSON object (response_format
// json_object).
func JSONObject() string {
	b := NewBuilder()
	return b.Grammar(b.prim("object"))
}

// AnyJSON returns the name of a rule for any JSON value.
func (b *Builder) AnyJSON() string { return b.prim("value") }

// Literal returns s as a GBNF string literal.
func Literal(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			sb.WriteString(`\"`)
		case r == '\\':
			sb.WriteString(`\\`)
		case r == '\n':
			sb.WriteString(`\n`)
		case r == '\r':
			sb.WriteString(`\r`)
		case r == '\t':
			sb.WriteString(`\t`)
		case r < 0x20 || r == 0x7F:
			fmt.Fprintf(&sb, `\x%02X`, r)
		default:
			sb.WriteRune(r)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// classChar writes r for use inside a GBNF character class.
func classChar(r rune) string {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return string(r)
	case r <= 0xFF:
		return fmt.Sprintf(`\x%02X`, r)
	case r <= 0xFFFF:
		return fmt.Sprintf(`\u%04X`, r)
	}
	return fmt.Sprintf(`\U%08X`, r)
}

// plainRanges are the characters a JSON string holds as themselves (not '"',
// '\\', a control or DEL), Unicode scalar values only.
var plainRanges = [][2]rune{{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x7E}, {0x80, 0xD7FF}, {0xE000, 0x10FFFF}}

// plainClass returns a GBNF class of the plain characters less except. It
// lists positive ranges rather than negating the others: llama.cpp decodes
// the bytes of tokens leniently (F8-FF start "4-byte" sequences of values up
// to 0x3FFFFF; encoded surrogates decode as surrogates), so a negated class
// would let the sampler write bytes that are no UTF-8.
func plainClass(except []rune) string {
	ex := slices.Clone(except)
	slices.Sort(ex)
	var sb strings.Builder
	sb.WriteByte('[')
	add := func(lo, hi rune) {
		switch {
		case lo > hi:
		case lo == hi:
			sb.WriteString(classChar(lo))
		default:
			sb.WriteString(classChar(lo) + "-" + classChar(hi))
		}
	}
	for _, rg := range plainRanges {
		lo := rg[0]
		for _, r := range ex {
			if r >= lo && r <= rg[1] {
				add(lo, r-1)
				lo = r + 1
			}
		}
		add(lo, rg[1])
	}
	sb.WriteByte(']')
	return sb.String()
}

// unique turns hint into a rule name not taken yet and takes it.
func (b *Builder) unique(hint string) string {
	var sb strings.Builder
	dash := false
	for _, r := range hint {
		if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			sb.WriteRune(r)
			dash = false
		} else if !dash && sb.Len() > 0 {
			sb.WriteByte('-')
			dash = true
		}
		if sb.Len() >= 40 {
			break
		}
	}
	base := strings.TrimRight(sb.String(), "-")
	if base == "" {
		base = "r"
	}
	n := base
	if b.names[n] {
		// the suffixes below next[base] are taken: names are only taken
		// back by restore, which moves the counter back too
		i := max(b.next[base], 2)
		for n = base + "-" + strconv.Itoa(i); b.names[n]; n = base + "-" + strconv.Itoa(i) {
			i++
			b.work++
		}
		b.undo = append(b.undo, undo{kind: 'c', key: base, old: b.next[base]})
		b.next[base] = i + 1
	}
	b.names[n] = true
	b.undo = append(b.undo, undo{kind: 'n', key: n})
	return n
}

// define sets the body of a taken name.
func (b *Builder) define(name, body string) {
	if old, ok := b.bodies[name]; ok {
		b.size -= len(old)
	} else {
		b.order = append(b.order, name)
		b.size += len(name) + len(" ::= \n")
	}
	b.size += len(body)
	b.bodies[name] = body
}

// add returns a rule for body, reusing a rule with the same body.
func (b *Builder) add(hint, body string) string {
	if n, ok := b.byBody[body]; ok {
		return n
	}
	n := b.unique(hint)
	b.define(n, body)
	b.byBody[body] = n
	b.undo = append(b.undo, undo{kind: 'b', key: body})
	return n
}

// prim returns the rule name of a built-in rule, adding it (and the rules it
// needs) on first use.
func (b *Builder) prim(key string) string {
	if n, ok := b.prims[key]; ok {
		return n
	}
	var body string
	switch key {
	case "sp":
		// at most one space after ':' and ',': never unbounded whitespace
		body = `" "?`
	case "hex":
		body = `[0-9a-fA-F]`
	case "char":
		// one character of a JSON string: anything but '"', '\' and
		// controls, or an escape; \u escapes leave out surrogates, so a
		// character in the text is a character in the decoded string.
		h := b.prim("hex")
		body = plainClass(nil) + ` | "\\" (["\\/bfnrt] | "u" ([0-9a-cA-CefEF] ` + h + `{3} | [dD] [0-7] ` + h + `{2}))`
	case "string":
		body = `"\"" ` + b.prim("char") + `* "\""`
	case "integer":
		body = `"-"? ("0" | [1-9] [0-9]{0,14})`
	case "number":
		body = b.prim("integer") + ` ("." [0-9]{1,15})? ([eE] [+-]? [0-9]{1,2})?`
	case "boolean":
		body = `"true" | "false"`
	case "null":
		body = `"null"`
	case "value":
		// reserve the name first: value, object and array refer to each other
		n := b.unique("value")
		b.setPrim(key, n)
		b.define(n, b.prim("object")+" | "+b.prim("array")+" | "+b.prim("string")+" | "+b.prim("number")+" | "+b.prim("boolean")+" | "+b.prim("null"))
		return n
	case "object":
		n := b.unique("object")
		b.setPrim(key, n)
		m := b.prim("member")
		b.define(n, `"{" (`+m+` ("," `+b.prim("sp")+` `+m+`)*)? "}"`)
		return n
	case "member":
		n := b.unique("member")
		b.setPrim(key, n)
		b.define(n, b.prim("string")+` ":" `+b.prim("sp")+` `+b.prim("value"))
		return n
	case "array":
		n := b.unique("array")
		b.setPrim(key, n)
		v := b.prim("value")
		b.define(n, `"[" (`+v+` ("," `+b.prim("sp")+` `+v+`)*)? "]"`)
		return n
	default:
		panic("grammar: unknown primitive " + key)
	}
	n := b.unique(key)
	b.setPrim(key, n)
	b.define(n, body)
	return n
}

func (b *Builder) setPrim(key, name string) {
	b.prims[key] = name
	b.undo = append(b.undo, undo{kind: 'p', key: key})
}

// repeat returns GBNF for item (one rule name, literal, class or group)
// repeated min..max times (max < 0: no upper bound), or "" for exactly zero
// times. Counts above llama.cpp's repetition limit are built from chunks.
func (b *Builder) repeat(item string, min, max int) string {
	if max >= 0 && max == min {
		return b.exactly(item, min)
	}
	head := b.exactly(item, min)
	var tail string
	switch {
	case max < 0 && min == 0:
		return item + "*"
	case max < 0 && min == 1:
		return item + "+"
	case max < 0:
		tail = item + "*"
	default:
		tail = b.upTo(item, max-min)
	}
	return join(head, tail)
}

func (b *Builder) exactly(item string, n int) string {
	switch {
	case n == 0:
		return ""
	case n == 1:
		return item
	case n <= maxRepeat:
		return fmt.Sprintf("%s{%d}", item, n)
	}
	c := b.chunk(item)
	return join(fmt.Sprintf("%s{%d}", c, n/repChunk), b.exactly(item, n%repChunk))
}

func (b *Builder) upTo(item string, n int) string {
	switch {
	case n == 0:
		return ""
	case n == 1:
		return item + "?"
	case n <= maxRepeat:
		return fmt.Sprintf("%s{0,%d}", item, n)
	}
	// lengths q*chunk + r: q < a with any r, or q == a with r <= n%chunk
	c, a := b.chunk(item), n/repChunk
	first := join(b.upTo(c, a-1), b.upTo(item, repChunk-1))
	second := join(b.exactly(c, a), b.upTo(item, n%repChunk))
	return "(" + first + " | " + second + ")"
}

func (b *Builder) chunk(item string) string {
	return b.add("chunk", fmt.Sprintf("%s{%d}", item, repChunk))
}

// join joins non-empty GBNF sequence parts with spaces.
func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}
