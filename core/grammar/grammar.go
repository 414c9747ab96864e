package grammar

import (
	"errors"
	"fmt"
	"maps"
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

// A Builder composes a GBNF grammar from schemas and raw rules. Rule names are
// unique within a Builder; identical rule bodies made from schemas share one
// rule. The zero value is not usable: call NewBuilder. A Builder is not safe
// for concurrent use.
type Builder struct {
	names  map[string]bool   // every name taken, "root" included
	order  []string          // rules in the order they were added
	bodies map[string]string // name -> body
	byBody map[string]string // body -> name, for deduplicated rules
	prims  map[string]string // primitive key -> rule name
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{
		names:  map[string]bool{"root": true},
		bodies: map[string]string{},
		byBody: map[string]string{},
		prims:  map[string]string{},
	}
}

// snapshot and restore let a failed Schema call leave the Builder unchanged.
type snapshot struct {
	names  map[string]bool
	order  []string
	bodies map[string]string
	byBody map[string]string
	prims  map[string]string
}

func (b *Builder) snapshot() snapshot {
	return snapshot{maps.Clone(b.names), slices.Clone(b.order), maps.Clone(b.bodies), maps.Clone(b.byBody), maps.Clone(b.prims)}
}

func (b *Builder) restore(s snapshot) {
	b.names, b.order, b.bodies, b.byBody, b.prims = s.names, s.order, s.bodies, s.byBody, s.prims
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
	for i := 2; b.names[n]; i++ {
		n = base + "-" + strconv.Itoa(i)
	}
	b.names[n] = true
	return n
}

// define sets the body of a taken name.
func (b *Builder) define(name, body string) {
	if _, ok := b.bodies[name]; !ok {
		b.order = append(b.order, name)
	}
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
		b.prims[key] = n
		b.define(n, b.prim("object")+" | "+b.prim("array")+" | "+b.prim("string")+" | "+b.prim("number")+" | "+b.prim("boolean")+" | "+b.prim("null"))
		return n
	case "object":
		n := b.unique("object")
		b.prims[key] = n
		m := b.prim("member")
		b.define(n, `"{" (`+m+` ("," `+b.prim("sp")+` `+m+`)*)? "}"`)
		return n
	case "member":
		n := b.unique("member")
		b.prims[key] = n
		b.define(n, b.prim("string")+` ":" `+b.prim("sp")+` `+b.prim("value"))
		return n
	case "array":
		n := b.unique("array")
		b.prims[key] = n
		v := b.prim("value")
		b.define(n, `"[" (`+v+` ("," `+b.prim("sp")+` `+v+`)*)? "]"`)
		return n
	default:
		panic("grammar: unknown primitive " + key)
	}
	n := b.unique(key)
	b.prims[key] = n
	b.define(n, body)
	return n
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
