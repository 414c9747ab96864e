package routing

import (
	"fmt"
	"slices"

	"github.com/d5/tengo/v2"
	"github.com/d5/tengo/v2/token"
)

// Fixed globals: Compile defines them right after the inputs, in this order,
// and every call sets them to its runner's guarded functions. The first ones
// take the names of tengo builtins and replace them; the "$" ones are the
// hidden operators the rewrite calls (no script can name them: "$" is not a
// letter in tengo); the last ones are the guarded modules an import becomes.
const (
	fRange = iota
	fString
	fCopy
	fFormat
	fAppend
	fSplice
	fBytes
	fAdd
	fEq
	fNe
	fKey
	fIndex
	fSlice
	fIter
	fLit
	fVarArgs
	fText
	fJSON
	fFmt
	fTimes
	numFixed
)

var fixedNames = [numFixed]string{
	"range", "string", "copy", "format", "append", "splice", "bytes",
	"$add", "$eq", "$ne", "$key", "$index", "$slice", "$iter", "$lit", "$va",
	"$text", "$json", "$fmt", "$times",
}

// guardedModules maps a module name to the fixed global its import becomes.
var guardedModules = map[string]int{"text": fText, "json": fJSON, "fmt": fFmt, "times": fTimes}

// builtin is tengo's implementation of a builtin function.
var builtin = func() map[string]tengo.CallableFunc {
	m := map[string]tengo.CallableFunc{}
	for _, fn := range tengo.GetAllBuiltinFunctions() {
		m[fn.Name] = fn.Value
	}
	return m
}()

// guards is one runner's set of guarded functions: closures over its meter.
type guards struct {
	m     meter
	fixed [numFixed]tengo.Object
}

// newGuards builds the guarded functions, and the guarded modules in mods.
func newGuards(mods []int) *guards {
	g := &guards{}
	fn := func(i int, f tengo.CallableFunc) {
		g.fixed[i] = &tengo.BuiltinFunction{Name: fixedNames[i], Value: f}
	}
	fn(fRange, g.rangeFn)
	fn(fString, g.stringFn)
	fn(fCopy, g.copyFn)
	fn(fFormat, g.formatFn(builtin["format"]))
	fn(fAppend, g.appendFn)
	fn(fSplice, g.spliceFn)
	fn(fBytes, g.bytesFn)
	fn(fAdd, g.add)
	fn(fEq, func(args ...tengo.Object) (tengo.Object, error) { return g.equal(args, true) })
	fn(fNe, func(args ...tengo.Object) (tengo.Object, error) { return g.equal(args, false) })
	fn(fKey, g.key)
	fn(fIndex, g.index)
	fn(fSlice, g.slice)
	fn(fIter, g.iter)
	fn(fLit, g.lit)
	fn(fVarArgs, g.varArgs)
	for _, i := range mods {
		g.fixed[i] = g.module(i)
	}
	return g
}

// result charges what a builtin returned, unless it is one of its
// arguments.
func (g *guards) result(ret tengo.Object, err error, args []tengo.Object) (tengo.Object, error) {
	if err != nil || ret == nil || slices.Contains(args, ret) {
		return ret, err
	}
	c, err := cost(ret)
	if err == nil {
		err = g.m.charge(c)
	}
	if err != nil {
		return nil, err
	}
	return ret, nil
}

// rangeFn: range builds its whole array in one step.
func (g *guards) rangeFn(args ...tengo.Object) (tengo.Object, error) {
	n := rangeLen(args)
	if n > maxRangeLen {
		return nil, errRangeTooLong
	}
	if err := g.m.charge(objCost + int(n)*(elemCost+objCost/2)); err != nil {
		return nil, err
	}
	return builtin["range"](args...)
}

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

func (g *guards) stringFn(args ...tengo.Object) (tengo.Object, error) {
	if len(args) > 0 {
		if _, err := g.m.checkText(args[0], tengo.MaxStringLen); err != nil {
			return nil, err
		}
	}
	ret, err := builtin["string"](args...)
	return g.result(ret, err, args)
}

func (g *guards) bytesFn(args ...tengo.Object) (tengo.Object, error) {
	ret, err := builtin["bytes"](args...)
	return g.result(ret, err, args)
}

// copyFn: copy is charged what its argument would cost new.
func (g *guards) copyFn(args ...tengo.Object) (tengo.Object, error) {
	if len(args) == 1 {
		c, err := cost(args[0])
		if err == nil {
			err = g.m.charge(c)
		}
		if err != nil {
			return nil, err
		}
	}
	return builtin["copy"](args...)
}

// formatFn guards format and fmt.sprintf: tengo bounds what it writes, but
// prints a composite argument with String() first, in full.
func (g *guards) formatFn(fn tengo.CallableFunc) tengo.CallableFunc {
	return func(args ...tengo.Object) (tengo.Object, error) {
		left := tengo.MaxStringLen
		for _, a := range args[min(1, len(args)):] {
			n, err := g.m.checkText(a, left)
			if err != nil {
				return nil, err
			}
			left -= n
		}
		ret, err := fn(args...)
		return g.result(ret, err, args)
	}
}

// appendFn charges a new backing array when append had to grow it.
func (g *guards) appendFn(args ...tengo.Object) (tengo.Object, error) {
	var old []tengo.Object
	if len(args) > 0 {
		switch a := args[0].(type) {
		case *tengo.Array:
			old = a.Value
		case *tengo.ImmutableArray:
			old = a.Value
		}
	}
	ret, err := builtin["append"](args...)
	if err != nil {
		return nil, err
	}
	c := objCost
	if arr, ok := ret.(*tengo.Array); ok && cap(arr.Value) != cap(old) {
		c += elemCost * cap(arr.Value)
	}
	if err := g.m.charge(c); err != nil {
		return nil, err
	}
	return ret, nil
}

func (g *guards) spliceFn(args ...tengo.Object) (tengo.Object, error) {
	oldCap := -1
	if len(args) > 0 {
		if a, ok := args[0].(*tengo.Array); ok {
			oldCap = cap(a.Value)
		}
	}
	ret, err := builtin["splice"](args...)
	if err != nil {
		return nil, err
	}
	c := objCost
	if d, ok := ret.(*tengo.Array); ok {
		c += elemCost * len(d.Value)
	}
	if a, ok := args[0].(*tengo.Array); ok {
		c += elemCost * len(a.Value)
		if cap(a.Value) != oldCap {
			c += elemCost * cap(a.Value)
		}
	}
	if err := g.m.charge(c); err != nil {
		return nil, err
	}
	return ret, nil
}

// add is `a + b` (and `a += b`, `a++`). tengo's + prints a composite right
// operand of a string in full before it checks the length, and joins arrays
// without counting their size.
func (g *guards) add(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 2 {
		return nil, tengo.ErrWrongNumArguments
	}
	a, b := args[0], args[1]
	charged := false
	switch x := a.(type) {
	case *tengo.String:
		n := len(x.Value)
		switch y := b.(type) {
		case *tengo.String:
			n += len(y.Value)
		default:
			t, err := g.m.checkText(b, tengo.MaxStringLen-n)
			if err != nil {
				return nil, err
			}
			n += t
			if !isComposite(b) {
				n = -1 // a scalar prints short: charged below
			}
		}
		if n > tengo.MaxStringLen {
			return nil, tengo.ErrStringLimit
		}
		if n >= 0 {
			if err := g.m.charge(strCost(n)); err != nil {
				return nil, err
			}
			charged = true
		}
	case *tengo.Array:
		if y, ok := b.(*tengo.Array); ok && len(y.Value) > 0 {
			if err := g.m.charge(objCost + elemCost*(len(x.Value)+len(y.Value))); err != nil {
				return nil, err
			}
		}
		charged = true
	case *tengo.ImmutableArray:
		if y, ok := b.(*tengo.ImmutableArray); ok {
			if err := g.m.charge(objCost + elemCost*(len(x.Value)+len(y.Value))); err != nil {
				return nil, err
			}
		}
		charged = true
	case *tengo.Bytes:
		if y, ok := b.(*tengo.Bytes); ok {
			n := len(x.Value) + len(y.Value)
			if n > tengo.MaxBytesLen {
				return nil, tengo.ErrBytesLimit
			}
			if err := g.m.charge(objCost + n); err != nil {
				return nil, err
			}
		}
		charged = true
	default:
		charged = true // numbers, chars, times: small, counted by the allocation cap
	}
	res, err := a.BinaryOp(token.Add, b)
	if err == tengo.ErrInvalidOperator {
		return nil, fmt.Errorf("invalid operation: %s + %s", a.TypeName(), b.TypeName())
	}
	if err != nil || charged {
		return res, err
	}
	if s, ok := res.(*tengo.String); ok {
		if err := g.m.charge(strCost(len(s.Value))); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// equal is `==` (eq) and `!=`. tengo compares arrays and maps part by part,
// without end for a value that contains itself, and exponentially long for
// one built of shared parts; the walk of the left operand bounds both.
func (g *guards) equal(args []tengo.Object, eq bool) (tengo.Object, error) {
	if len(args) != 2 {
		return nil, tengo.ErrWrongNumArguments
	}
	switch args[0].(type) {
	case *tengo.Array, *tengo.ImmutableArray, *tengo.Map, *tengo.ImmutableMap:
		if _, err := g.m.measure(args[0], -1); err != nil {
			return nil, err
		}
	}
	if args[0].Equals(args[1]) == eq {
		return tengo.TrueValue, nil
	}
	return tengo.FalseValue, nil
}

// key guards a map index that is not a literal: tengo prints it with
// String() to look it up.
func (g *guards) key(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 1 {
		return nil, tengo.ErrWrongNumArguments
	}
	if _, err := g.m.checkText(args[0], tengo.MaxStringLen); err != nil {
		return nil, err
	}
	return args[0], nil
}

// index is x[i], as tengo's VM does it, except that it finds the i-th
// character of a string without caching the string's runes in it (tengo's
// cache takes four bytes a character, in strings a call did not pay for).
func (g *guards) index(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 2 {
		return nil, tengo.ErrWrongNumArguments
	}
	x, i := args[0], args[1]
	if _, err := g.m.checkText(i, tengo.MaxStringLen); err != nil {
		return nil, err
	}
	if s, ok := x.(*tengo.String); ok {
		if n, ok := i.(*tengo.Int); ok {
			return runeAt(s.Value, n.Value), nil
		}
	}
	v, err := x.IndexGet(i)
	switch {
	case err == tengo.ErrNotIndexable:
		return nil, fmt.Errorf("not indexable: %s", i.TypeName())
	case err == tengo.ErrInvalidIndexType:
		return nil, fmt.Errorf("invalid index type: %s", i.TypeName())
	case err != nil:
		return nil, err
	case v == nil:
		return tengo.UndefinedValue, nil
	}
	return v, nil
}

// runeAt is the i-th character of s, undefined past its end.
func runeAt(s string, i int64) tengo.Object {
	if i >= 0 {
		k := int64(0)
		for _, r := range s {
			if k == i {
				return &tengo.Char{Value: r}
			}
			k++
		}
	}
	return tengo.UndefinedValue
}

// slice is x[low:high], as tengo's VM does it, charged: a new string may
// get its own rune cache.
func (g *guards) slice(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 3 {
		return nil, tengo.ErrWrongNumArguments
	}
	var low int64
	if args[1] != tengo.UndefinedValue {
		n, ok := args[1].(*tengo.Int)
		if !ok {
			return nil, fmt.Errorf("invalid slice index type: %s", args[1].TypeName())
		}
		low = n.Value
	}
	bounds := func(n int) (int, int, error) {
		high := int64(n)
		if args[2] != tengo.UndefinedValue {
			h, ok := args[2].(*tengo.Int)
			if !ok {
				return 0, 0, fmt.Errorf("invalid slice index type: %s", args[2].TypeName())
			}
			high = h.Value
		}
		if low > high {
			return 0, 0, fmt.Errorf("invalid slice index: %d > %d", low, high)
		}
		lo, hi := min(max(low, 0), int64(n)), min(max(high, 0), int64(n))
		return int(lo), int(hi), nil
	}
	var res tengo.Object
	c := objCost
	switch x := args[0].(type) {
	case *tengo.Array:
		lo, hi, err := bounds(len(x.Value))
		if err != nil {
			return nil, err
		}
		res = &tengo.Array{Value: x.Value[lo:hi]}
	case *tengo.ImmutableArray:
		lo, hi, err := bounds(len(x.Value))
		if err != nil {
			return nil, err
		}
		res = &tengo.Array{Value: x.Value[lo:hi]}
	case *tengo.String:
		lo, hi, err := bounds(len(x.Value))
		if err != nil {
			return nil, err
		}
		res = &tengo.String{Value: x.Value[lo:hi]}
		c = strCost(hi - lo)
	case *tengo.Bytes:
		lo, hi, err := bounds(len(x.Value))
		if err != nil {
			return nil, err
		}
		res = &tengo.Bytes{Value: x.Value[lo:hi]}
	default:
		return nil, fmt.Errorf("not indexable: %s", x.TypeName())
	}
	if err := g.m.charge(c); err != nil {
		return nil, err
	}
	return res, nil
}

// iter guards the value of a for-in loop: iterating a map makes a new
// string for every key, iterating a string caches its runes.
func (g *guards) iter(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 1 {
		return nil, tengo.ErrWrongNumArguments
	}
	c := 0
	switch x := args[0].(type) {
	case *tengo.String:
		c = objCost + 4*len(x.Value)
	case *tengo.Map:
		c = keysCost(x.Value)
	case *tengo.ImmutableMap:
		c = keysCost(x.Value)
	}
	if err := g.m.charge(c); err != nil {
		return nil, err
	}
	return args[0], nil
}

func keysCost(m map[string]tengo.Object) int {
	c := 0
	for k := range m {
		c += strCost(len(k))
	}
	return c
}

// lit charges an array or map literal.
func (g *guards) lit(args ...tengo.Object) (tengo.Object, error) {
	if len(args) != 1 {
		return nil, tengo.ErrWrongNumArguments
	}
	c := 0
	switch x := args[0].(type) {
	case *tengo.Array:
		c = objCost + elemCost*cap(x.Value)
	case *tengo.Map:
		c = objCost + entryCost*len(x.Value)
	}
	if err := g.m.charge(c); err != nil {
		return nil, err
	}
	return args[0], nil
}

// varArgs charges the array a variadic function gets its extra arguments
// in.
func (g *guards) varArgs(args ...tengo.Object) (tengo.Object, error) {
	if len(args) == 1 {
		if a, ok := args[0].(*tengo.Array); ok {
			if err := g.m.charge(objCost + elemCost*len(a.Value)); err != nil {
				return nil, err
			}
		}
	}
	return tengo.UndefinedValue, nil
}
