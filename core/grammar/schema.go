package grammar

import (
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// ignored keywords describe a schema and constrain nothing.
var ignored = map[string]bool{
	"title": true, "description": true, "default": true, "examples": true,
	"$schema": true, "$comment": true, "deprecated": true, "readOnly": true,
	"writeOnly": true, "$defs": true, "definitions": true,
}

// handled keywords are translated (or refused for some values).
var handled = map[string]bool{
	"type": true, "enum": true, "const": true, "anyOf": true, "oneOf": true,
	"allOf": true, "$ref": true, "$id": true,
	"properties": true, "required": true, "additionalProperties": true,
	"items": true, "prefixItems": true, "minItems": true, "maxItems": true, "uniqueItems": true,
	"minLength": true, "maxLength": true, "format": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true,
}

// keywords by the type they apply to, for schemas without "type".
var (
	objectWords  = []string{"properties", "required", "additionalProperties"}
	arrayWords   = []string{"items", "prefixItems", "minItems", "maxItems", "uniqueItems"}
	stringWords  = []string{"minLength", "maxLength", "format"}
	numericWords = []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
)

// Schema adds the rules for a JSON Schema and returns the name of the rule
// for its values. Several schemas may go into one Builder (tool calls); each
// has its own $defs. On error the Builder is unchanged.
func (b *Builder) Schema(schema []byte) (string, error) {
	v, err := parseJSON(schema)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	snap := b.snapshot()
	t := &translator{b: b, root: v, refs: map[string]string{}}
	name, err := t.schema(v, "")
	if err == nil {
		err = t.full("")
	}
	if err == nil {
		if cerr := b.check(name); cerr != nil {
			err = fmt.Errorf("%w: %s: recursion through \"$ref\" that never ends or that passes through no object or array (%v)", ErrUnsupported, "(root)", cerr)
		}
	}
	if err != nil {
		b.restore(snap)
		return "", err
	}
	return name, nil
}

type translator struct {
	b    *Builder
	root *value
	refs map[string]string // JSON pointer of a $ref target -> its rule

	shapes   map[*value]*shape // shapeOf's results; nil while one is worked out
	litsLeft int               // literals shapeOf may still collect (maxShapeLits)
}

// full returns an error when the Builder has grown past its limits.
func (t *translator) full(ptr string) error {
	if why := t.b.over(); why != "" {
		return unsupported(ptr, "%s", why)
	}
	return nil
}

func where(ptr string) string {
	if ptr == "" {
		return "(root)"
	}
	return ptr
}

func unsupported(ptr, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrUnsupported, where(ptr), fmt.Sprintf(format, args...))
}

func invalid(ptr, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, where(ptr), fmt.Sprintf(format, args...))
}

func escapeToken(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// hint names a rule after the last property name in ptr (its first 128
// bytes: a name takes at most 40 characters of it).
func hint(ptr string) string {
	for end := len(ptr); end > 0; {
		i := strings.LastIndexByte(ptr[:end], '/')
		if i < 0 {
			break
		}
		seg := ptr[i+1 : end]
		switch ptr[strings.LastIndexByte(ptr[:i], '/')+1 : i] {
		case "properties", "$defs", "definitions":
			if len(seg) > 128 {
				seg = seg[:128]
			}
			return strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		}
		end = i
	}
	return "schema"
}

// siblings returns the keywords of v other than ignored ones and except.
func siblings(v *value, except ...string) []string {
	var out []string
	for _, k := range v.keys {
		if !ignored[k] && !slices.Contains(except, k) {
			out = append(out, k)
		}
	}
	return out
}

func (t *translator) schema(v *value, ptr string) (string, error) {
	if err := t.full(ptr); err != nil {
		return "", err
	}
	switch v.kind {
	case kBool:
		if v.b {
			return t.b.AnyJSON(), nil
		}
		return "", unsupported(ptr, "the schema false allows no value")
	case kObject:
	default:
		return "", invalid(ptr, "a schema must be an object or a boolean")
	}
	for _, k := range v.keys {
		if !ignored[k] && !handled[k] {
			return "", unsupported(ptr, "%q is not supported", k)
		}
	}
	if v.get("$id") != nil && ptr != "" {
		return "", unsupported(ptr, "%q is not supported below the root", "$id")
	}
	if r := v.get("$ref"); r != nil {
		if s := siblings(v, "$ref", "$id"); len(s) > 0 {
			return "", unsupported(ptr, "%q beside %q is not supported", s[0], "$ref")
		}
		return t.ref(r, ptr)
	}
	if a := v.get("allOf"); a != nil {
		if a.kind != kArray || len(a.arr) == 0 {
			return "", invalid(ptr, "%q must be a non-empty array", "allOf")
		}
		if len(a.arr) > 1 {
			return "", unsupported(ptr, "%q with more than one schema is not supported", "allOf")
		}
		if s := siblings(v, "allOf", "$id"); len(s) > 0 {
			return "", unsupported(ptr, "%q beside %q is not supported", s[0], "allOf")
		}
		return t.schema(a.arr[0], ptr+"/allOf/0")
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if a := v.get(kw); a != nil {
			if s := siblings(v, kw, "$id"); len(s) > 0 {
				return "", unsupported(ptr, "%q beside %q is not supported", s[0], kw)
			}
			return t.alternatives(a, kw, ptr)
		}
	}
	if v.get("enum") != nil || v.get("const") != nil {
		return t.enum(v, ptr)
	}
	return t.typed(v, ptr)
}

// ref translates a $ref to a JSON pointer within the same document.
func (t *translator) ref(r *value, ptr string) (string, error) {
	if r.kind != kString {
		return "", invalid(ptr, "%q must be a string", "$ref")
	}
	frag, target, err := t.lookup(r.str)
	if err != nil {
		return "", unsupported(ptr+"/$ref", "%v", err)
	}
	if n, ok := t.refs[frag]; ok {
		return n, nil
	}
	name := t.b.unique("def-" + hint(frag))
	t.refs[frag] = name
	body, err := t.schema(target, frag)
	if err != nil {
		return "", err
	}
	t.b.define(name, body)
	return name, nil
}

// lookup finds the schema a reference within the document points at.
func (t *translator) lookup(ref string) (frag string, target *value, err error) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return "", nil, fmt.Errorf("%q: only references within the schema (#/...) are supported", ref)
	}
	frag, err = url.PathUnescape(frag)
	if err != nil || (frag != "" && !strings.HasPrefix(frag, "/")) {
		return "", nil, fmt.Errorf("%q: only JSON pointers (#/...) are supported", ref)
	}
	target = t.root
	if frag == "" {
		return frag, target, nil
	}
	for _, tok := range strings.Split(frag[1:], "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch target.kind {
		case kObject:
			target = target.get(tok)
		case kArray:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(target.arr) {
				target = nil
			} else {
				target = target.arr[i]
			}
		default:
			target = nil
		}
		if target == nil {
			return "", nil, fmt.Errorf("%q points at nothing", ref)
		}
	}
	return frag, target, nil
}

// kinds of JSON values, as a bit set, for telling oneOf alternatives apart.
const (
	kindObject = 1 << iota
	kindArray
	kindString
	kindNumber
	kindBool
	kindNull
	kindAll = 1<<iota - 1
)

func (t *translator) alternatives(a *value, kw, ptr string) (string, error) {
	if a.kind != kArray || len(a.arr) == 0 {
		return "", invalid(ptr, "%q must be a non-empty array", kw)
	}
	var alts []string
	seen := map[string]bool{}
	for i, s := range a.arr {
		r, err := t.schema(s, fmt.Sprintf("%s/%s/%d", ptr, kw, i))
		if err != nil {
			return "", err
		}
		if !seen[r] {
			seen[r] = true
			alts = append(alts, r)
		}
	}
	if kw == "oneOf" {
		shapes := make([]shape, len(a.arr))
		for i, s := range a.arr {
			shapes[i] = t.shapeOf(s)
		}
		if i, j, ok := overlap(shapes); ok {
			return "", unsupported(ptr, "%q whose alternatives %d and %d may both match one value is not supported (use anyOf, or tell them apart by type, by const/enum values, or by a required property with a const)", kw, i, j)
		}
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return t.b.add(hint(ptr), strings.Join(alts, " | ")), nil
}

// enum translates enum and const (with "type" beside them filtering values).
func (t *translator) enum(v *value, ptr string) (string, error) {
	if s := siblings(v, "enum", "const", "type", "$id"); len(s) > 0 {
		return "", unsupported(ptr, "%q beside \"enum\" or \"const\" is not supported", s[0])
	}
	var vals []*value
	if e := v.get("enum"); e != nil {
		if e.kind != kArray {
			return "", invalid(ptr, "%q must be an array", "enum")
		}
		vals = e.arr
	}
	if c := v.get("const"); c != nil {
		if v.get("enum") == nil {
			vals = []*value{c}
		} else {
			want := c.canonical()
			vals = slices.DeleteFunc(slices.Clone(vals), func(e *value) bool { return e.canonical() != want })
		}
	}
	types, err := typeSet(v, ptr)
	if err != nil {
		return "", err
	}
	var alts []string
	seen := map[string]bool{}
	for _, e := range vals {
		if types != nil && !types[valueType(e)] && !(valueType(e) == "integer" && types["number"]) {
			continue
		}
		lit := Literal(e.String())
		if !seen[lit] {
			seen[lit] = true
			alts = append(alts, lit)
		}
	}
	if len(alts) == 0 {
		return "", unsupported(ptr, "no value of \"enum\"/\"const\" is allowed by the schema")
	}
	return t.b.add(hint(ptr), strings.Join(alts, " | ")), nil
}

// valueType is the JSON Schema type of a value ("integer" for whole numbers).
func valueType(e *value) string {
	switch e.kind {
	case kNull:
		return "null"
	case kBool:
		return "boolean"
	case kNumber:
		if e.isInteger() {
			return "integer"
		}
		return "number"
	case kString:
		return "string"
	case kArray:
		return "array"
	}
	return "object"
}

var typeNames = []string{"object", "array", "string", "integer", "number", "boolean", "null"}

// typeSet returns the types "type" names, or nil when it is absent.
func typeSet(v *value, ptr string) (map[string]bool, error) {
	tv := v.get("type")
	if tv == nil {
		return nil, nil
	}
	var names []*value
	switch tv.kind {
	case kString:
		names = []*value{tv}
	case kArray:
		names = tv.arr
	default:
		return nil, invalid(ptr, "%q must be a string or an array", "type")
	}
	set := map[string]bool{}
	for _, n := range names {
		if n.kind != kString || !slices.Contains(typeNames, n.str) {
			return nil, invalid(ptr, "%q: %s is not a type", "type", n)
		}
		set[n.str] = true
	}
	if len(set) == 0 {
		return nil, unsupported(ptr, "an empty %q allows no value", "type")
	}
	return set, nil
}

func hasAny(v *value, words []string) bool {
	for _, w := range words {
		if v.get(w) != nil {
			return true
		}
	}
	return false
}

// typed translates a schema by its types and their keywords.
func (t *translator) typed(v *value, ptr string) (string, error) {
	types, err := typeSet(v, ptr)
	if err != nil {
		return "", err
	}
	if types == nil {
		// No "type": keep to the types the schema's keywords talk about
		// (a subset of what it allows), or any value.
		types = map[string]bool{}
		if hasAny(v, objectWords) {
			types["object"] = true
		}
		if hasAny(v, arrayWords) {
			types["array"] = true
		}
		if hasAny(v, stringWords) {
			types["string"] = true
		}
		if hasAny(v, numericWords) {
			types["number"] = true
		}
		if len(types) == 0 {
			return t.b.AnyJSON(), nil
		}
	}
	var alts []string
	for _, ty := range typeNames {
		if !types[ty] || ty == "integer" && types["number"] {
			continue
		}
		var r string
		var err error
		switch ty {
		case "object":
			r, err = t.object(v, ptr)
		case "array":
			r, err = t.array(v, ptr)
		case "string":
			r, err = t.str(v, ptr)
		case "integer", "number":
			r, err = t.number(v, ptr, ty == "integer")
		case "boolean", "null":
			r = t.b.prim(ty)
		}
		if err != nil {
			return "", err
		}
		alts = append(alts, r)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return t.b.add(hint(ptr), strings.Join(alts, " | ")), nil
}

// count reads a non-negative integer keyword; def when absent.
func count(v *value, kw, ptr string, def int) (int, error) {
	c := v.get(kw)
	if c == nil {
		return def, nil
	}
	if c.kind != kNumber || !c.isInteger() {
		return 0, invalid(ptr, "%q must be a non-negative integer", kw)
	}
	d := parseDecimal(c.num.String())
	if d.neg {
		return 0, invalid(ptr, "%q must be a non-negative integer", kw)
	}
	n := 0
	if d.digits != "" && d.magnitude() < 9 {
		n, _ = strconv.Atoi(d.digits + strings.Repeat("0", d.exp))
	}
	if d.digits != "" && (d.magnitude() >= 9 || n > maxCount) {
		return 0, unsupported(ptr, "%q above %d is not supported", kw, maxCount)
	}
	return n, nil
}

func (t *translator) object(v *value, ptr string) (string, error) {
	b := t.b
	props := v.get("properties")
	if props != nil && props.kind != kObject {
		return "", invalid(ptr, "%q must be an object", "properties")
	}
	required := map[string]bool{}
	if rq := v.get("required"); rq != nil {
		if rq.kind != kArray {
			return "", invalid(ptr, "%q must be an array", "required")
		}
		for _, n := range rq.arr {
			if n.kind != kString {
				return "", invalid(ptr, "%q must hold strings", "required")
			}
			if props.get(n.str) == nil {
				return "", unsupported(ptr, "%q names %q, which \"properties\" does not define", "required", n.str)
			}
			required[n.str] = true
		}
	}
	// Extra members: with additionalProperties absent, only when there are
	// no properties (then any object); never with false.
	var extra string
	switch ap := v.get("additionalProperties"); {
	case ap == nil && (props == nil || len(props.keys) == 0):
		extra = b.AnyJSON()
	case ap == nil:
	case ap.kind == kBool && !ap.b:
	default:
		r, err := t.schema(ap, ptr+"/additionalProperties")
		if err != nil {
			return "", err
		}
		extra = r
	}
	sp := b.prim("sp")
	type member struct {
		expr     string
		required bool
	}
	var members []member
	var names []string
	if props != nil {
		for i, k := range props.keys {
			names = append(names, k)
			ps := props.vals[i]
			pptr := ptr + "/properties/" + escapeToken(k)
			if ps.kind == kBool && !ps.b {
				if required[k] {
					return "", unsupported(pptr, "a required property whose schema is false allows no value")
				}
				continue // the property must not appear: leave it out
			}
			r, err := t.schema(ps, pptr)
			if err != nil {
				return "", err
			}
			members = append(members, member{join(Literal(jsonString(k)+":"), sp, r), required[k]})
		}
	}
	// tail(i): the members from i on, each after a comma; head(i): the same
	// with no comma before the first one written.
	tail, head := "", ""
	if extra != "" {
		key, err := t.keyNotIn(names, ptr)
		if err != nil {
			return "", err
		}
		kv := b.add(hint(ptr)+"-extra", join(key, `":"`, sp, extra))
		tail = "(" + join(`","`, sp, kv) + ")*"
		head = "(" + join(kv, tail) + ")?"
		tail = b.add(hint(ptr)+"-tail", tail)
		head = b.add(hint(ptr)+"-head", head)
	}
	for i := len(members) - 1; i >= 0; i-- {
		if err := t.full(ptr); err != nil {
			return "", err
		}
		m := members[i]
		var nt, nh string
		if m.required {
			nt = join(`","`, sp, m.expr, tail)
			nh = join(m.expr, tail)
		} else {
			nt = join("("+join(`","`, sp, m.expr)+")?", tail)
			if head == "" {
				nh = "(" + join(m.expr, tail) + ")?"
			} else {
				nh = join(m.expr, tail) + " | " + head
			}
		}
		tail = b.add(hint(ptr)+"-tail", nt)
		head = b.add(hint(ptr)+"-head", nh)
	}
	return b.add(hint(ptr), join(`"{"`, head, `"}"`)), nil
}

// keyNotIn returns GBNF for an object key (with its quotes) that is none of
// names. Its characters are plain (no escapes), so comparing the text is
// comparing the decoded key.
func (t *translator) keyNotIn(names []string, ptr string) (string, error) {
	b := t.b
	nodes := 0
	type node struct {
		kids  map[rune]*node
		order []rune
		end   bool
	}
	root := &node{kids: map[rune]*node{}}
	for _, n := range names {
		if strings.ContainsFunc(n, func(r rune) bool { return r == '"' || r == '\\' || r < 0x20 || r == 0x7F }) {
			continue // a plain key never equals it
		}
		cur := root
		for _, r := range n {
			nx := cur.kids[r]
			if nx == nil {
				nx = &node{kids: map[rune]*node{}}
				cur.kids[r] = nx
				nodes++
				cur.order = append(cur.order, r)
			}
			cur = nx
		}
		cur.end = true
	}
	// one rule for each node: refuse before making them all
	if len(b.order)+nodes > MaxRules {
		return "", unsupported(ptr, "the grammar would take more than %d rules (a smaller schema, or fewer tools, is needed)", MaxRules)
	}
	keyChar := b.add("key-char", plainClass(nil))
	var build func(n *node) string
	build = func(n *node) string {
		if len(n.order) == 0 {
			if n.end {
				return keyChar + "+" // anything longer than the name
			}
			return keyChar + "*"
		}
		var alts []string
		for _, r := range n.order {
			alts = append(alts, join(Literal(string(r)), build(n.kids[r])))
		}
		alts = append([]string{plainClass(n.order) + " " + keyChar + "*"}, alts...)
		body := strings.Join(alts, " | ")
		if !n.end {
			body = "(" + body + ")?"
		}
		return b.add("key", body)
	}
	k := build(root)
	if err := t.full(ptr); err != nil {
		return "", err
	}
	return join(`"\""`, k, `"\""`), nil
}

func (t *translator) array(v *value, ptr string) (string, error) {
	b := t.b
	minN, err := count(v, "minItems", ptr, 0)
	if err != nil {
		return "", err
	}
	maxN, err := count(v, "maxItems", ptr, -1)
	if err != nil {
		return "", err
	}
	if u := v.get("uniqueItems"); u != nil {
		if u.kind != kBool {
			return "", invalid(ptr, "%q must be a boolean", "uniqueItems")
		}
		if u.b && (maxN < 0 || maxN > 1) {
			return "", unsupported(ptr, "%q true is not supported (unless maxItems <= 1)", "uniqueItems")
		}
	}
	var prefix []string
	if p := v.get("prefixItems"); p != nil {
		if p.kind != kArray {
			return "", invalid(ptr, "%q must be an array", "prefixItems")
		}
		for i, s := range p.arr {
			if err := t.full(ptr); err != nil {
				return "", err
			}
			r, err := t.schema(s, fmt.Sprintf("%s/prefixItems/%d", ptr, i))
			if err != nil {
				return "", err
			}
			prefix = append(prefix, r)
		}
	}
	k := len(prefix)
	var item string
	if it := v.get("items"); it == nil {
		item = b.AnyJSON()
	} else {
		if it.kind == kBool && !it.b {
			item = ""
			if maxN < 0 || maxN > k {
				maxN = k
			}
		} else if item, err = t.schema(it, ptr+"/items"); err != nil {
			return "", err
		}
	}
	if maxN >= 0 && maxN < minN {
		return "", unsupported(ptr, "no array has at least %d and at most %d items (\"minItems\", \"maxItems\", \"items\")", minN, maxN)
	}
	sp := b.prim("sp")
	// rest(i): the elements from index i on, each after a comma.
	rest := ""
	if maxN < 0 || maxN > k {
		more := -1
		if maxN >= 0 {
			more = maxN - k
		}
		sepItem := b.add(hint(ptr)+"-next", join(`","`, sp, item))
		rest = b.repeat(sepItem, max(minN-k, 0), more)
	}
	for i := k - 1; i >= 0; i-- {
		if maxN >= 0 && i >= maxN {
			continue
		}
		if i == 0 {
			break
		}
		if len(rest) > 200 {
			// a rule, not deeper nesting: text and depth stay linear
			rest = b.add(hint(ptr)+"-rest", rest)
		}
		seq := join(`","`, sp, prefix[i], rest)
		if i < minN {
			rest = seq
		} else {
			rest = "(" + seq + ")?"
		}
	}
	var body string
	switch {
	case k > 0 && (maxN < 0 || maxN > 0):
		first := join(prefix[0], rest)
		if minN == 0 {
			first = "(" + first + ")?"
		}
		body = join(`"["`, first, `"]"`)
	case k == 0 && item != "" && (maxN < 0 || maxN > 0):
		// the first element has no comma before it
		sepItem := b.add(hint(ptr)+"-next", join(`","`, sp, item))
		hi := -1
		if maxN >= 0 {
			hi = maxN - 1
		}
		first := join(item, b.repeat(sepItem, max(minN-1, 0), hi))
		if minN == 0 {
			first = "(" + first + ")?"
		}
		body = join(`"["`, first, `"]"`)
	default:
		body = `"[" "]"`
	}
	return b.add(hint(ptr), body), nil
}

func (t *translator) str(v *value, ptr string) (string, error) {
	b := t.b
	minN, err := count(v, "minLength", ptr, 0)
	if err != nil {
		return "", err
	}
	maxN, err := count(v, "maxLength", ptr, -1)
	if err != nil {
		return "", err
	}
	if maxN >= 0 && maxN < minN {
		return "", unsupported(ptr, "no string has at least %d and at most %d characters", minN, maxN)
	}
	if f := v.get("format"); f != nil {
		if f.kind != kString {
			return "", invalid(ptr, "%q must be a string", "format")
		}
		r, lo, hi := t.format(f.str)
		if r == "" {
			return "", unsupported(ptr, "%q %q is not supported (date, time, date-time and uuid are)", "format", f.str)
		}
		if lo < minN || maxN >= 0 && hi > maxN {
			return "", unsupported(ptr, "%q %q with \"minLength\"/\"maxLength\" that cut into its lengths is not supported", "format", f.str)
		}
		return r, nil
	}
	if minN == 0 && maxN < 0 {
		return b.prim("string"), nil
	}
	return b.add(hint(ptr), join(`"\""`, b.repeat(b.prim("char"), minN, maxN), `"\""`)), nil
}

// format returns the rule for a string format (quotes included) and the
// least and greatest lengths of its values, or "" when it has none.
func (t *translator) format(name string) (rule string, lo, hi int) {
	b := t.b
	date := func() string {
		return b.add("date", strings.Join([]string{
			`[0-9]{4} "-" (("01" | "03" | "05" | "07" | "08" | "10" | "12") "-" ("0" [1-9] | [12] [0-9] | "3" [01])`,
			` ("04" | "06" | "09" | "11") "-" ("0" [1-9] | [12] [0-9] | "30")`,
			` "02-" ("0" [1-9] | "1" [0-9] | "2" [0-8]))`,
			// 29 February in leap years: divisible by 4, and by 400 at a century
			` ([0-9]{2} ("0" [48] | [2468] [048] | [13579] [26]) | ("00" | "0" [48] | [2468] [048] | [13579] [26]) "00") "-02-29"`,
		}, " |"))
	}
	tm := func() string {
		return b.add("time", `([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,9})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])`)
	}
	switch name {
	case "date":
		return b.add("date-string", join(`"\""`, date(), `"\""`)), 10, 10
	case "time":
		return b.add("time-string", join(`"\""`, tm(), `"\""`)), 9, 24
	case "date-time":
		return b.add("date-time-string", join(`"\""`, date(), `"T"`, tm(), `"\""`)), 20, 35
	case "uuid":
		return b.add("uuid-string", `"\"" [0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12} "\""`), 36, 36
	}
	return "", 0, 0
}

func readBound(v *value, kw, ptr string, excl bool) (bound, error) {
	x := v.get(kw)
	if x == nil {
		return bound{}, nil
	}
	if x.kind != kNumber {
		return bound{}, invalid(ptr, "%q must be a number", kw)
	}
	// Grammar numbers have at most 15 integer and 15 fraction digits: a
	// bound beyond 1e400 (or, not zero, below 1e-400 in magnitude) admits
	// what ±1e401 (±1e-401) does, and big.Rat need not spell 10^999999.
	text := x.num.String()
	d := parseDecimal(text)
	if len(d.digits) > 400 {
		return bound{}, unsupported(ptr, "%q with more than 400 significant digits is not supported", kw)
	}
	sign := map[bool]string{true: "-", false: ""}[d.neg]
	switch m := d.magnitude(); {
	case d.digits == "":
	case m > 400:
		text = sign + "1e401"
	case m < -400:
		text = sign + "1e-401"
	}
	r, ok := new(big.Rat).SetString(text)
	if !ok {
		return bound{}, invalid(ptr, "%q must be a number", kw)
	}
	return bound{set: true, val: r, excl: excl}, nil
}

// tighter returns the stricter of two lower (or, with upper, upper) bounds.
func tighter(a, b bound, upper bool) bound {
	if !a.set {
		return b
	}
	if !b.set {
		return a
	}
	c := a.val.Cmp(b.val)
	if upper {
		c = -c
	}
	switch {
	case c > 0:
		return a
	case c < 0:
		return b
	}
	if b.excl {
		return b
	}
	return a
}

func (t *translator) number(v *value, ptr string, integer bool) (string, error) {
	var bs [4]bound
	for i, kw := range numericWords {
		var err error
		if bs[i], err = readBound(v, kw, ptr, i >= 2); err != nil {
			return "", err
		}
	}
	lo, hi := tighter(bs[0], bs[2], false), tighter(bs[1], bs[3], true)
	if !lo.set && !hi.set {
		if integer {
			return t.b.prim("integer"), nil
		}
		return t.b.prim("number"), nil
	}
	var body string
	if integer {
		body = integerBetween(lo, hi)
	} else {
		body = numberBetween(lo, hi)
	}
	if body == "" {
		return "", unsupported(ptr, "no %s of at most 15 digits lies within \"minimum\"/\"maximum\"/\"exclusiveMinimum\"/\"exclusiveMaximum\"", map[bool]string{true: "integer", false: "number"}[integer])
	}
	return t.b.add(hint(ptr), body), nil
}
