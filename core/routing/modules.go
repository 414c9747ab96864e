package routing

import (
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/d5/tengo/v2"
	"github.com/d5/tengo/v2/stdlib"
)

// Modules a script may import: math and enum as tengo has them (math works
// on numbers only; enum is tengo code, which runs guarded like the
// script's), text, json, fmt and times through guards (see module).
// Everything else (os, rand, base64, hex, file imports) fails at compile
// time with "module 'os' not found".
var sandboxModules = func() *tengo.ModuleMap {
	mods := tengo.NewModuleMap()
	mods.AddBuiltinModule("math", stdlib.BuiltinModules["math"])
	mods.AddSourceModule("enum", []byte(stdlib.SourceModules["enum"]))
	return mods
}()

// removed lists module members a script does not get: times.sleep blocks
// the goroutine where no budget can stop it, and fmt's print functions write
// to the daemon's stdout.
var removed = map[string][]string{
	"times": {"sleep"},
	"fmt":   {"print", "printf", "println"},
}

var moduleNames = map[int]string{fText: "text", fJSON: "json", fFmt: "fmt", fTimes: "times"}

// module builds the guarded module that import(name) gives a script: every
// function checks that a composite argument prints within
// tengo.MaxStringLen (tengo prints such arguments with String()), checks
// what else would make it work or allocate without bound, and charges what
// it returns.
func (g *guards) module(i int) tengo.Object {
	name := moduleNames[i]
	special := map[string]func([]tengo.Object) error{}
	own := map[string]tengo.CallableFunc{}
	switch name {
	case "text":
		special = map[string]func([]tengo.Object) error{
			"repeat":         repeatCheck,
			"replace":        replaceCheck,
			"split":          splitCheck(false),
			"split_after":    splitCheck(false),
			"split_n":        splitCheck(true),
			"split_after_n":  splitCheck(true),
			"fields":         fieldsCheck,
			"contains_any":   cutsetCheck,
			"index_any":      cutsetCheck,
			"last_index_any": cutsetCheck,
			"trim":           cutsetCheck,
			"trim_left":      cutsetCheck,
			"trim_right":     cutsetCheck,
			"format_float":   formatFloatCheck,
		}
		own = map[string]tengo.CallableFunc{
			"re_match":   g.checked(g.reMatch),
			"re_find":    g.checked(g.reFind),
			"re_replace": g.checked(g.reReplace),
			"re_split":   g.checked(g.reSplit),
			"re_compile": g.checked(g.reCompile),
			"join":       g.join(stdlib.BuiltinModules["text"]["join"].(*tengo.UserFunction).Value),
		}
	case "json":
		special = map[string]func([]tengo.Object) error{
			"decode": jsonDecodeCheck,
			"indent": jsonIndentCheck,
		}
	}
	attrs := map[string]tengo.Object{}
	for k, v := range stdlib.BuiltinModules[name] {
		if slices.Contains(removed[name], k) {
			continue
		}
		uf, ok := v.(*tengo.UserFunction)
		switch {
		case !ok:
			attrs[k] = v // constants, such as times.second
		case own[k] != nil:
			attrs[k] = &tengo.UserFunction{Name: uf.Name, Value: own[k]}
		case name == "fmt":
			attrs[k] = &tengo.UserFunction{Name: uf.Name, Value: g.formatFn(uf.Value)}
		default:
			attrs[k] = g.userFunc(uf.Name, uf.Value, special[k])
		}
	}
	return &tengo.ImmutableMap{Value: attrs}
}

// userFunc wraps a module function: composite arguments must print within
// tengo.MaxStringLen, check (when not nil) vets the arguments, and the
// result is charged.
func (g *guards) userFunc(name string, fn tengo.CallableFunc, check func([]tengo.Object) error) *tengo.UserFunction {
	return &tengo.UserFunction{Name: name, Value: func(args ...tengo.Object) (tengo.Object, error) {
		for _, a := range args {
			if _, err := g.m.checkText(a, tengo.MaxStringLen); err != nil {
				return nil, err
			}
		}
		if check != nil {
			if err := check(args); err != nil {
				return nil, err
			}
		}
		ret, err := fn(args...)
		return g.result(ret, err, args)
	}}
}

// checked is userFunc's checks and charge around fn.
func (g *guards) checked(fn tengo.CallableFunc) tengo.CallableFunc {
	return g.userFunc("", fn, nil).Value
}

// join guards text.join(array, sep): tengo prints every element with
// ToString before it checks the length of the result; the elements must
// print within tengo.MaxStringLen together.
func (g *guards) join(fn tengo.CallableFunc) tengo.CallableFunc {
	return func(args ...tengo.Object) (tengo.Object, error) {
		var elems []tengo.Object
		if len(args) == 2 {
			switch a := args[0].(type) {
			case *tengo.Array:
				elems = a.Value
			case *tengo.ImmutableArray:
				elems = a.Value
			}
			if _, err := g.m.checkText(args[1], tengo.MaxStringLen); err != nil {
				return nil, err
			}
		}
		if len(elems) > maxWalk {
			return nil, errValueTooBig
		}
		sep, _ := strArg(args, 1)
		left := tengo.MaxStringLen - len(sep)*max(len(elems)-1, 0)
		for _, e := range elems {
			if left < 0 {
				return nil, tengo.ErrStringLimit
			}
			n, err := g.m.checkText(e, left)
			if err != nil {
				return nil, err
			}
			if !isComposite(e) {
				s, _ := tengo.ToString(e)
				n = len(s)
			}
			left -= n
		}
		if left < 0 {
			return nil, tengo.ErrStringLimit
		}
		ret, err := fn(args...)
		return g.result(ret, err, args)
	}
}

// strArg and intArg read argument i as tengo's text functions do; ok is
// false when it is missing or of the wrong type (the function itself then
// reports the error).
func strArg(args []tengo.Object, i int) (string, bool) {
	if i >= len(args) {
		return "", false
	}
	return tengo.ToString(args[i])
}

func intArg(args []tengo.Object, i int) (int, bool) {
	if i >= len(args) {
		return 0, false
	}
	return tengo.ToInt(args[i])
}

// repeatCheck: tengo checks len(s)*n, which overflows.
func repeatCheck(args []tengo.Object) error {
	s, ok1 := strArg(args, 0)
	n, ok2 := intArg(args, 1)
	if ok1 && ok2 && n > 0 && len(s) > tengo.MaxStringLen/n {
		return tengo.ErrStringLimit
	}
	return nil
}

// replaceCheck: tengo allocates the whole result before it checks the
// length.
func replaceCheck(args []tengo.Object) error {
	s, ok1 := strArg(args, 0)
	old, ok2 := strArg(args, 1)
	repl, ok3 := strArg(args, 2)
	n, ok4 := intArg(args, 3)
	if !ok1 || !ok2 || !ok3 || !ok4 || old == repl || n == 0 {
		return nil
	}
	k := strings.Count(s, old)
	if n > 0 && n < k {
		k = n
	}
	if int64(len(s))+int64(k)*(int64(len(repl))-int64(len(old))) > int64(tengo.MaxStringLen) {
		return tengo.ErrStringLimit
	}
	return nil
}

// splitCheck bounds the pieces of split(s, sep) and split_n(s, sep, n).
func splitCheck(withN bool) func([]tengo.Object) error {
	return func(args []tengo.Object) error {
		s, ok1 := strArg(args, 0)
		sep, ok2 := strArg(args, 1)
		if !ok1 || !ok2 {
			return nil
		}
		pieces := 0
		if sep == "" {
			pieces = utf8.RuneCountInString(s)
		} else {
			pieces = strings.Count(s, sep) + 1
		}
		if withN {
			if n, ok := intArg(args, 2); ok && n >= 0 {
				pieces = min(pieces, n)
			}
		}
		if pieces > maxElems {
			return errTooMany
		}
		return nil
	}
}

func fieldsCheck(args []tengo.Object) error {
	s, ok := strArg(args, 0)
	if !ok || len(s) <= maxElems {
		return nil
	}
	n, in := 0, false
	for _, r := range s {
		space := unicode.IsSpace(r)
		if !space && !in {
			n++
		}
		in = !space
	}
	if n > maxElems {
		return errTooMany
	}
	return nil
}

// cutsetCheck: Go tests every character of s against every character of a
// non-ASCII set.
func cutsetCheck(args []tengo.Object) error {
	s, ok1 := strArg(args, 0)
	chars, ok2 := strArg(args, 1)
	if ok1 && ok2 && int64(len(s))*int64(len(chars)) > maxCutsetWork {
		return errWork
	}
	return nil
}

// formatFloatCheck: a huge precision makes a huge string.
func formatFloatCheck(args []tengo.Object) error {
	if prec, ok := intArg(args, 2); ok && prec > tengo.MaxStringLen-400 {
		return tengo.ErrStringLimit
	}
	return nil
}

// jsonArg is the JSON text json.decode and json.indent read.
func jsonArg(args []tengo.Object) ([]byte, bool) {
	if len(args) == 0 {
		return nil, false
	}
	switch o := args[0].(type) {
	case *tengo.Bytes:
		return o.Value, true
	case *tengo.String:
		return []byte(o.Value), true
	}
	return nil, false
}

// jsonShape scans JSON text for its deepest nesting and an upper bound of
// the values and separators in it.
func jsonShape(b []byte) (depth, items int) {
	inStr, esc, d := false, false, 0
	items = 1
	for _, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '[', '{':
			d++
			depth = max(depth, d)
			items++
		case ']', '}':
			d--
		case ',', ':':
			items++
		}
	}
	return depth, items
}

// jsonDecodeCheck: tengo's decoder recurses once per level.
func jsonDecodeCheck(args []tengo.Object) error {
	b, ok := jsonArg(args)
	if !ok {
		return nil
	}
	if len(b) > tengo.MaxBytesLen {
		return tengo.ErrBytesLimit
	}
	if depth, items := jsonShape(b); depth > maxDepth || items > maxWalk {
		return errValueTooBig
	}
	return nil
}

// jsonIndentCheck: every line gets the prefix and an indent per level.
func jsonIndentCheck(args []tengo.Object) error {
	b, ok := jsonArg(args)
	prefix, ok1 := strArg(args, 1)
	indent, ok2 := strArg(args, 2)
	if !ok || !ok1 || !ok2 {
		return nil
	}
	if len(b) > tengo.MaxBytesLen {
		return tengo.ErrBytesLimit
	}
	depth, items := jsonShape(b)
	n := int64(len(b)) + int64(len(prefix)) + int64(items)*(1+int64(len(prefix))+int64(depth)*int64(len(indent)))
	if n > int64(tengo.MaxBytesLen) {
		return tengo.ErrBytesLimit
	}
	return nil
}

// Regular expressions. tengo's re_ functions compile the pattern on every
// call and its replace builds the result by repeated concatenation; these
// do what they do, with the work bounded (see maxRegexWork).

// regexBytesPerInst is what compiling a pattern is charged per instruction.
const regexBytesPerInst = 256

type regex struct {
	re    *regexp.Regexp
	insts int
}

// compileRegex compiles a pattern, charged to the call by the size of its
// program. A pattern that does not compile is a runtime error, as in tengo.
func (g *guards) compileRegex(p string) (*regex, error) {
	if len(p) > maxRegexSource {
		return nil, errWork
	}
	// regexp.Compile parses with syntax.Perl and fails with the parser's
	// error; its program is syntax.Compile of the simplified expression.
	sre, err := syntax.Parse(p, syntax.Perl)
	if err != nil {
		return nil, err
	}
	prog, err := syntax.Compile(sre.Simplify())
	if err != nil {
		return nil, err
	}
	insts := max(len(prog.Inst), len(p))
	if insts > maxRegexInsts {
		return nil, errWork
	}
	// regexp.Compile allocates about 250 bytes per instruction of the
	// program (measured on Go 1.26) and keeps about 50: the call is charged
	// what compiling allocates, so that a script that compiles big patterns
	// in a loop reaches the cap after a few, not after seconds of work.
	if err := g.m.charge(objCost + regexBytesPerInst*insts); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, err
	}
	return &regex{re: re, insts: insts}, nil
}

func (r *regex) check(text string) error {
	if int64(r.insts)*int64(len(text)+1) > maxRegexWork {
		return errWork
	}
	return nil
}

func badArg(name, want string, o tengo.Object) error {
	return tengo.ErrInvalidArgumentType{Name: name, Expected: want, Found: o.TypeName()}
}

const strCompat, intCompat = "string(compatible)", "int(compatible)"

// strArgs reads args[i] for each name as strings, in order.
func strArgs(args []tengo.Object, names ...string) ([]string, error) {
	out := make([]string, len(names))
	for i, name := range names {
		s, ok := tengo.ToString(args[i])
		if !ok {
			return nil, badArg(name, strCompat, args[i])
		}
		out[i] = s
	}
	return out, nil
}

func (g *guards) reMatch(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 2 {
		return nil, tengo.ErrWrongNumArguments
	}
	s, err := strArgs(args, "first", "second")
	if err != nil {
		return nil, err
	}
	r, err := g.compileRegex(s[0])
	if err != nil {
		return nil, err
	}
	return r.match(s[1])
}

func (g *guards) reFind(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 2 && len(args) != 3 {
		return nil, tengo.ErrWrongNumArguments
	}
	s, err := strArgs(args, "first")
	if err != nil {
		return nil, err
	}
	r, err := g.compileRegex(s[0])
	if err != nil {
		return nil, err
	}
	return r.find(args[1:], "second", "third")
}

func (g *guards) reReplace(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 3 {
		return nil, tengo.ErrWrongNumArguments
	}
	s, err := strArgs(args, "first", "second", "third")
	if err != nil {
		return nil, err
	}
	r, err := g.compileRegex(s[0])
	if err != nil {
		return nil, err
	}
	return r.replace(s[1], s[2])
}

func (g *guards) reSplit(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 2 && len(args) != 3 {
		return nil, tengo.ErrWrongNumArguments
	}
	s, err := strArgs(args, "first", "second")
	if err != nil {
		return nil, err
	}
	n := -1
	if len(args) > 2 {
		var ok bool
		if n, ok = tengo.ToInt(args[2]); !ok {
			return nil, badArg("third", intCompat, args[2])
		}
	}
	r, err := g.compileRegex(s[0])
	if err != nil {
		return nil, err
	}
	return r.split(s[1], n)
}

// reCompile returns the compiled expression's methods: match(text),
// find(text[, count]), replace(src, repl), split(text[, count]).
func (g *guards) reCompile(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 1 {
		return nil, tengo.ErrWrongNumArguments
	}
	s, err := strArgs(args, "first")
	if err != nil {
		return nil, err
	}
	r, err := g.compileRegex(s[0])
	if err != nil {
		return nil, err
	}
	method := func(fn tengo.CallableFunc) tengo.Object { return g.userFunc("", fn, nil) }
	return &tengo.ImmutableMap{Value: map[string]tengo.Object{
		"match": method(func(args ...tengo.Object) (tengo.Object, error) {
			if len(args) != 1 {
				return nil, tengo.ErrWrongNumArguments
			}
			s, err := strArgs(args, "first")
			if err != nil {
				return nil, err
			}
			return r.match(s[0])
		}),
		"find": method(func(args ...tengo.Object) (tengo.Object, error) {
			if len(args) != 1 && len(args) != 2 {
				return nil, tengo.ErrWrongNumArguments
			}
			return r.find(args, "first", "second")
		}),
		"replace": method(func(args ...tengo.Object) (tengo.Object, error) {
			if len(args) != 2 {
				return nil, tengo.ErrWrongNumArguments
			}
			s, err := strArgs(args, "first", "second")
			if err != nil {
				return nil, err
			}
			return r.replace(s[0], s[1])
		}),
		"split": method(func(args ...tengo.Object) (tengo.Object, error) {
			if len(args) != 1 && len(args) != 2 {
				return nil, tengo.ErrWrongNumArguments
			}
			s, err := strArgs(args, "first")
			if err != nil {
				return nil, err
			}
			n := -1
			if len(args) > 1 {
				var ok bool
				if n, ok = tengo.ToInt(args[1]); !ok {
					return nil, badArg("second", intCompat, args[1])
				}
			}
			return r.split(s[0], n)
		}),
	}}, nil
}

func (r *regex) match(text string) (tengo.Object, error) {
	if err := r.check(text); err != nil {
		return nil, err
	}
	if r.re.MatchString(text) {
		return tengo.TrueValue, nil
	}
	return tengo.FalseValue, nil
}

// find is find(text) (the first match) or find(text, count) (count < 0:
// all): an array of matches, each an array of {text, begin, end}, one per
// group; undefined when nothing matches. names are the arguments' names in
// errors.
func (r *regex) find(args []tengo.Object, textName, countName string) (tengo.Object, error) {
	text, ok := tengo.ToString(args[0])
	if !ok {
		return nil, badArg(textName, strCompat, args[0])
	}
	if err := r.check(text); err != nil {
		return nil, err
	}
	groups := r.re.NumSubexp() + 1
	var matches [][]int
	if len(args) == 1 {
		if m := r.re.FindStringSubmatchIndex(text); m != nil {
			matches = [][]int{m}
		}
	} else {
		n, ok := tengo.ToInt(args[1])
		if !ok {
			return nil, badArg(countName, intCompat, args[1])
		}
		most := len(text) + 1
		if n >= 0 {
			most = min(most, n)
		}
		if int64(groups)*int64(most) > maxRegexMatches {
			return nil, errTooMany
		}
		matches = r.re.FindAllStringSubmatchIndex(text, n)
	}
	if matches == nil {
		return tengo.UndefinedValue, nil
	}
	out := make([]tengo.Object, len(matches))
	for i, m := range matches {
		sub := make([]tengo.Object, 0, len(m)/2)
		for j := 0; j+1 < len(m); j += 2 {
			var t tengo.Object = &tengo.String{}
			if m[j] >= 0 {
				t = &tengo.String{Value: text[m[j]:m[j+1]]}
			}
			sub = append(sub, &tengo.ImmutableMap{Value: map[string]tengo.Object{
				"text":  t,
				"begin": &tengo.Int{Value: int64(m[j])},
				"end":   &tengo.Int{Value: int64(m[j+1])},
			}})
		}
		out[i] = &tengo.Array{Value: sub}
	}
	return &tengo.Array{Value: out}, nil
}

// replace replaces every match in src with repl, expanded ($1, ${name}).
func (r *regex) replace(src, repl string) (tengo.Object, error) {
	if err := r.check(src); err != nil {
		return nil, err
	}
	if int64(r.re.NumSubexp()+1)*int64(len(src)+1) > maxRegexMatches {
		return nil, errTooMany
	}
	dollars := strings.Count(repl, "$")
	var out []byte
	idx := 0
	for _, m := range r.re.FindAllStringSubmatchIndex(src, -1) {
		// An expansion is at most repl with every $ replaced by the match.
		if int64(len(repl))+int64(dollars)*int64(m[1]-m[0]) > 4*int64(tengo.MaxStringLen) {
			return nil, tengo.ErrStringLimit
		}
		start := len(out)
		out = append(out, src[idx:m[0]]...)
		out = r.re.ExpandString(out, repl, src, m)
		if len(out) > tengo.MaxStringLen || start > len(out) {
			return nil, tengo.ErrStringLimit
		}
		idx = m[1]
	}
	if len(out)+len(src)-idx > tengo.MaxStringLen {
		return nil, tengo.ErrStringLimit
	}
	out = append(out, src[idx:]...)
	return &tengo.String{Value: string(out)}, nil
}

func (r *regex) split(text string, n int) (tengo.Object, error) {
	if err := r.check(text); err != nil {
		return nil, err
	}
	most := len(text) + 2
	if n >= 0 {
		most = min(most, n)
	}
	if most > maxElems {
		return nil, errTooMany
	}
	parts := r.re.Split(text, n)
	out := make([]tengo.Object, len(parts))
	for i, p := range parts {
		out[i] = &tengo.String{Value: p}
	}
	return &tengo.Array{Value: out}, nil
}
