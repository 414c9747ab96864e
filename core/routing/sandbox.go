package routing

import (
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"unicode/utf8"

	"github.com/d5/tengo/v2"
)

// Sandbox limits. tengo's string and bytes limits are process-wide; this is
// the only package that imports tengo, so it owns them.
const (
	// MaxSourceBytes is the largest script Compile accepts.
	MaxSourceBytes = 1 << 20
	// MaxCallBytes bounds the memory one script call may allocate: every
	// value a guarded operation or builtin builds is charged to the call
	// (see the package doc).
	MaxCallBytes = 32 << 20
	// maxValueLen bounds every string and bytes value a script makes
	// (tengo.MaxStringLen, tengo.MaxBytesLen).
	maxValueLen = 256 << 10
	// maxRangeLen bounds range(): tengo builds the whole array in one step.
	maxRangeLen = 1 << 16
	// maxWalk and maxDepth bound every walk through a value (comparison,
	// conversion to a string, copy, JSON): at most maxWalk parts, at most
	// maxDepth levels. A value that contains itself has no end; tengo would
	// recurse until the Go stack overflows, which no recover can catch.
	maxWalk  = 1 << 16
	maxDepth = 64
	// maxElems bounds the elements one builtin call may make (text.split,
	// text.fields, text.re_split).
	maxElems = 1 << 16
	// maxRegexWork bounds program instructions × text bytes of one regular
	// expression call (Go's regexp is linear in both, but their product
	// can take minutes); maxRegexMatches bounds matches × groups of a
	// find; maxRegexSource and maxRegexInsts bound a pattern and its
	// program.
	maxRegexWork    = 1 << 20
	maxRegexMatches = 1 << 16
	maxRegexSource  = 4 << 10
	maxRegexInsts   = 1 << 16
	// maxCutsetWork bounds len(s) × len(chars) of text functions that test
	// every character of s against a set (trim, index_any, contains_any).
	maxCutsetWork = 1 << 24
	// maxLingering is how many abandoned calls of one script may still be
	// running before the script is not started again (ErrBusy). Every step a
	// script takes is bounded, so an abandoned call ends within abortGrace;
	// this is the backstop for what an audit missed.
	maxLingering = 8
)

func init() {
	tengo.MaxStringLen = maxValueLen
	tengo.MaxBytesLen = maxValueLen
}

// Errors of the guards. allocCapError maps them to OutcomeAllocCap.
var (
	errRangeTooLong = fmt.Errorf("range longer than %d elements", maxRangeLen)
	errValueTooBig  = fmt.Errorf("value has more than %d parts or %d levels, or contains itself", maxWalk, maxDepth)
	errMemory       = fmt.Errorf("call allocated more than %d MiB", MaxCallBytes>>20)
	errTooMany      = fmt.Errorf("result would have more than %d elements", maxElems)
	errWork         = errors.New("arguments too large for this function")
	errAborted      = errors.New("call aborted")
)

// allocCapError reports whether err is a breach of the allocation cap or of
// a size limit.
func allocCapError(err error) bool {
	for _, e := range []error{tengo.ErrObjectAllocLimit, tengo.ErrStringLimit, tengo.ErrBytesLimit,
		errRangeTooLong, errValueTooBig, errMemory, errTooMany, errWork} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// meter counts the bytes one call has allocated through guarded operations
// and builtins, and says when the call was abandoned. A runner owns one; its
// VM goroutine charges it, the caller only sets stop.
type meter struct {
	left int64
	stop atomic.Bool
}

func (m *meter) reset() {
	m.left = MaxCallBytes
	m.stop.Store(false)
}

// charge takes n bytes from the call's budget.
func (m *meter) charge(n int) error {
	if m.stop.Load() {
		return errAborted
	}
	m.left -= int64(n)
	if m.left < 0 {
		return errMemory
	}
	return nil
}

// Costs charged for what a call builds, close to what Go allocates. A
// string is charged five times its length: tengo caches a string's runes
// (four bytes each) the first time a script indexes or iterates it.
const (
	objCost   = 48
	elemCost  = 16
	entryCost = 64
)

func strCost(n int) int { return objCost + 5*n }

// walk goes through a value and its parts, counting parts and, when text is
// set, the length of the value's String() (what tengo prints for it).
type walk struct {
	stop      *atomic.Bool // the call's abort flag, checked now and then
	text      bool
	textLimit int
	nodes     int
	textLen   int
	strBytes  int // bytes of strings, bytes values and map keys
}

// measure walks o. With textLimit >= 0 it computes the length of o.String()
// and fails with tengo.ErrStringLimit past textLimit.
func (m *meter) measure(o tengo.Object, textLimit int) (walk, error) {
	w := walk{stop: &m.stop, text: textLimit >= 0, textLimit: textLimit}
	return w, w.visit(o, 0)
}

func (w *walk) visit(o tengo.Object, depth int) error {
	w.nodes++
	if w.nodes > maxWalk || depth > maxDepth {
		return errValueTooBig
	}
	if w.nodes&1023 == 0 && w.stop != nil && w.stop.Load() {
		return errAborted
	}
	switch v := o.(type) {
	case *tengo.Array:
		return w.list(v.Value, depth)
	case *tengo.ImmutableArray:
		return w.list(v.Value, depth)
	case *tengo.Map:
		return w.dict(v.Value, depth)
	case *tengo.ImmutableMap:
		return w.dict(v.Value, depth)
	case *tengo.Error:
		if v.Value == nil {
			return w.add(len("error"))
		}
		if err := w.add(len("error: ")); err != nil {
			return err
		}
		return w.visit(v.Value, depth+1)
	case *tengo.String:
		w.strBytes += len(v.Value)
		if w.text {
			return w.add(quotedLen(v.Value))
		}
	case *tengo.Bytes:
		w.strBytes += len(v.Value)
		return w.add(len(v.Value))
	case *tengo.Int:
		if w.text {
			return w.add(intLen(v.Value))
		}
	case nil:
	default:
		if w.text {
			return w.add(len(o.String()))
		}
	}
	return nil
}

// list and dict mirror tengo's "[a, b]" and "{k: v, k: v}".
func (w *walk) list(elems []tengo.Object, depth int) error {
	if err := w.add(2 + 2*max(len(elems)-1, 0)); err != nil {
		return err
	}
	for _, e := range elems {
		if err := w.visit(e, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (w *walk) dict(m map[string]tengo.Object, depth int) error {
	if err := w.add(2 + 2*max(len(m)-1, 0)); err != nil {
		return err
	}
	for k, v := range m {
		w.strBytes += len(k)
		if err := w.add(len(k) + len(": ")); err != nil {
			return err
		}
		if err := w.visit(v, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (w *walk) add(n int) error {
	if !w.text {
		return nil
	}
	w.textLen += n
	if w.textLen > w.textLimit {
		return tengo.ErrStringLimit
	}
	return nil
}

// isComposite reports whether o is a value whose String() or Equals walks
// other values.
func isComposite(o tengo.Object) bool {
	switch o.(type) {
	case *tengo.Array, *tengo.ImmutableArray, *tengo.Map, *tengo.ImmutableMap, *tengo.Error:
		return true
	}
	return false
}

// checkText fails when o.String() would be longer than limit or o is too
// big or deep to walk; scalars pass at once.
func (m *meter) checkText(o tengo.Object, limit int) (int, error) {
	if !isComposite(o) {
		return 0, nil
	}
	w, err := m.measure(o, limit)
	return w.textLen, err
}

// cost is what a value built by a builtin is charged: every part of it is
// new. It fails for a value too big or deep to walk.
func cost(o tengo.Object) (int, error) {
	n := 0
	c, err := costOf(o, 0, &n)
	return c, err
}

func costOf(o tengo.Object, depth int, nodes *int) (int, error) {
	*nodes++
	if *nodes > maxWalk || depth > maxDepth {
		return 0, errValueTooBig
	}
	sum := func(elems []tengo.Object, each int) (int, error) {
		c := objCost + each*len(elems)
		for _, e := range elems {
			n, err := costOf(e, depth+1, nodes)
			if err != nil {
				return 0, err
			}
			c += n
		}
		return c, nil
	}
	dict := func(m map[string]tengo.Object) (int, error) {
		c := objCost + entryCost*len(m)
		for k, e := range m {
			n, err := costOf(e, depth+1, nodes)
			if err != nil {
				return 0, err
			}
			c += len(k) + n
		}
		return c, nil
	}
	switch v := o.(type) {
	case *tengo.String:
		return strCost(len(v.Value)), nil
	case *tengo.Bytes:
		return objCost + len(v.Value), nil
	case *tengo.Array:
		return sum(v.Value, elemCost)
	case *tengo.ImmutableArray:
		return sum(v.Value, elemCost)
	case *tengo.Map:
		return dict(v.Value)
	case *tengo.ImmutableMap:
		return dict(v.Value)
	case *tengo.Error:
		if v.Value == nil {
			return objCost, nil
		}
		n, err := costOf(v.Value, depth+1, nodes)
		return objCost + n, err
	}
	return objCost, nil
}

// quotedLen is len(strconv.Quote(s)), without building it.
func quotedLen(s string) int {
	n := 2
	for len(s) > 0 {
		r, width := rune(s[0]), 1
		if r >= utf8.RuneSelf {
			r, width = utf8.DecodeRuneInString(s)
		}
		s = s[width:]
		switch {
		case width == 1 && r == utf8.RuneError:
			n += 4 // \xNN
		case r == '"' || r == '\\':
			n += 2
		case strconv.IsPrint(r):
			n += width
		case r == '\a' || r == '\b' || r == '\f' || r == '\n' || r == '\r' || r == '\t' || r == '\v':
			n += 2
		case r < ' ' || r == 0x7f:
			n += 4 // \xNN
		case r < 0x10000:
			n += 6 // \uNNNN
		default:
			n += 10 // \UNNNNNNNN
		}
	}
	return n
}

// intLen is len(strconv.FormatInt(v, 10)).
func intLen(v int64) int {
	n := 1
	if v < 0 {
		n++
		if v == -1<<63 {
			return 20
		}
		v = -v
	}
	for v >= 10 {
		v /= 10
		n++
	}
	return n
}
