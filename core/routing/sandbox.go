package routing

import (
	"errors"
	"fmt"
	"maps"

	"github.com/d5/tengo/v2"
	"github.com/d5/tengo/v2/stdlib"
)

// Sandbox limits. tengo's string and bytes limits are process-wide; this is
// the only package that imports tengo, so it owns them.
const (
	// MaxSourceBytes is the largest script Compile accepts.
	MaxSourceBytes = 1 << 20
	// maxValueLen bounds every string and bytes value a script makes
	// (tengo.MaxStringLen, tengo.MaxBytesLen).
	maxValueLen = 256 << 10
	// maxRangeLen bounds range(): tengo builds the whole array in one step,
	// which neither the allocation cap nor the time budget could stop.
	maxRangeLen = 1 << 16
	// maxWalk bounds how many values a builtin that walks its arguments
	// (string, copy, format, module functions) may be handed. A value that
	// contains itself has no end; tengo would recurse until the Go stack
	// overflows, which no recover can catch.
	maxWalk = 1 << 16
	// maxLingering is how many abandoned calls of one script may still be
	// running before the script is not started again (ErrBusy).
	maxLingering = 8
)

func init() {
	tengo.MaxStringLen = maxValueLen
	tengo.MaxBytesLen = maxValueLen
}

var (
	errRangeTooLong = fmt.Errorf("range longer than %d elements", maxRangeLen)
	errValueTooBig  = fmt.Errorf("value has more than %d elements or contains itself", maxWalk)
)

// Modules a script may import. Everything else (os, rand, base64, hex, file
// imports) fails at compile time with "module 'os' not found".
var allowedModules = []string{"enum", "fmt", "json", "math", "text", "times"}

// removed lists module members a script does not get: times.sleep blocks
// the goroutine where no budget can stop it, and fmt's print functions write
// to the daemon's stdout.
var removed = map[string][]string{
	"times": {"sleep"},
	"fmt":   {"print", "printf", "println"},
}

// sandboxModules is built once: the compiler copies module attributes into
// the bytecode's constants, so scripts share them read-only.
var sandboxModules = func() *tengo.ModuleMap {
	mods := tengo.NewModuleMap()
	for _, name := range allowedModules {
		if src, ok := stdlib.SourceModules[name]; ok {
			mods.AddSourceModule(name, []byte(src))
			continue
		}
		attrs := maps.Clone(stdlib.BuiltinModules[name])
		for _, fn := range removed[name] {
			delete(attrs, fn)
		}
		for k, v := range attrs {
			attrs[k] = guardCallable(v)
		}
		mods.AddBuiltinModule(name, attrs)
	}
	return mods
}()

// Globals that replace tengo builtins of the same name, in the order Compile
// defines them after the script's inputs.
var overrides = func() []tengo.Object {
	orig := map[string]tengo.CallableFunc{}
	for _, fn := range tengo.GetAllBuiltinFunctions() {
		orig[fn.Name] = fn.Value
	}
	rangeFn := orig["range"]
	out := []tengo.Object{
		&tengo.BuiltinFunction{Name: "range", Value: func(args ...tengo.Object) (tengo.Object, error) {
			if rangeLen(args) > maxRangeLen {
				return nil, errRangeTooLong
			}
			return rangeFn(args...)
		}},
	}
	for _, name := range []string{"string", "copy", "format"} {
		out = append(out, &tengo.BuiltinFunction{Name: name, Value: guard(orig[name])})
	}
	return out
}()

func overrideName(o tengo.Object) string { return o.(*tengo.BuiltinFunction).Name }

// rangeLen is how many elements range(args...) would make; 0 when the
// arguments are not ints or the step is not positive (range itself reports
// those errors).
func rangeLen(args []tengo.Object) uint64 {
	if len(args) < 2 || len(args) > 3 {
		return 0
	}
	var v [3]int64
	v[2] = 1
	for i, a := range args {
		n, ok := a.(*tengo.Int)
		if !ok {
			return 0
		}
		v[i] = n.Value
	}
	start, stop, step := v[0], v[1], v[2]
	if step <= 0 {
		return 0
	}
	var d uint64
	if start <= stop {
		d = uint64(stop) - uint64(start)
	} else {
		d = uint64(start) - uint64(stop)
	}
	n := d / uint64(step)
	if d%uint64(step) != 0 {
		n++
	}
	return n
}

// guardCallable wraps a module function so that it checks its arguments with
// checkValue first; other module members are returned as they are.
func guardCallable(o tengo.Object) tengo.Object {
	switch f := o.(type) {
	case *tengo.UserFunction:
		return &tengo.UserFunction{Name: f.Name, Value: guard(f.Value)}
	case *tengo.BuiltinFunction:
		return &tengo.BuiltinFunction{Name: f.Name, Value: guard(f.Value)}
	}
	return o
}

// guard checks the arguments of fn and wraps the functions in what it
// returns (text.re_compile returns a map of functions).
func guard(fn tengo.CallableFunc) tengo.CallableFunc {
	return func(args ...tengo.Object) (tengo.Object, error) {
		for _, a := range args {
			if err := checkValue(a); err != nil {
				return nil, err
			}
		}
		ret, err := fn(args...)
		if m, ok := ret.(*tengo.ImmutableMap); ok && err == nil {
			g := make(map[string]tengo.Object, len(m.Value))
			for k, v := range m.Value {
				g[k] = guardCallable(v)
			}
			ret = &tengo.ImmutableMap{Value: g}
		}
		return ret, err
	}
}

// checkValue walks o through its containers and fails when it meets more
// than maxWalk values: that bounds the work of a builtin that recurses
// through its argument, and stops one that would never end (a value that
// contains itself).
func checkValue(o tengo.Object) error {
	switch o.(type) {
	case *tengo.Array, *tengo.ImmutableArray, *tengo.Map, *tengo.ImmutableMap, *tengo.Error:
	default:
		return nil // scalars: the common case
	}
	budget := maxWalk
	stack := []tengo.Object{o}
	for len(stack) > 0 {
		o := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if budget--; budget < 0 {
			return errValueTooBig
		}
		switch v := o.(type) {
		case *tengo.Array:
			stack = append(stack, v.Value...)
		case *tengo.ImmutableArray:
			stack = append(stack, v.Value...)
		case *tengo.Map:
			for _, e := range v.Value {
				stack = append(stack, e)
			}
		case *tengo.ImmutableMap:
			for _, e := range v.Value {
				stack = append(stack, e)
			}
		case *tengo.Error:
			stack = append(stack, v.Value)
		}
		if len(stack) > budget {
			return errValueTooBig
		}
	}
	return nil
}

// allocCapError reports whether err is a breach of the allocation cap or of
// a size limit.
func allocCapError(err error) bool {
	return errors.Is(err, tengo.ErrObjectAllocLimit) ||
		errors.Is(err, tengo.ErrStringLimit) ||
		errors.Is(err, tengo.ErrBytesLimit) ||
		errors.Is(err, errRangeTooLong) ||
		errors.Is(err, errValueTooBig)
}
