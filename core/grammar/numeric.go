package grammar

import (
	"math/big"
	"strconv"
	"strings"
)

// maxInt is the largest magnitude an integer in a grammar may have: 15 digits
// (every such integer is exact in a float64).
const maxInt = 999_999_999_999_999

// digitRange returns GBNF for the decimal numerals (no leading zeros) of the
// integers in [lo, hi], 0 <= lo <= hi.
func digitRange(lo, hi int64) string {
	var alts []string
	for d := len(strconv.FormatInt(lo, 10)); d <= len(strconv.FormatInt(hi, 10)); d++ {
		a, z := pow10(d-1), pow10(d)-1
		if d == 1 {
			a = 0
		}
		a, z = max(a, lo), min(z, hi)
		if a > z {
			continue
		}
		alts = append(alts, fixedRange(strconv.FormatInt(a, 10), strconv.FormatInt(z, 10)))
	}
	return alt(alts)
}

func pow10(n int) int64 {
	p := int64(1)
	for range n {
		p *= 10
	}
	return p
}

// fixedRange returns GBNF for the numerals of one length between x and y
// (equal lengths, x <= y).
func fixedRange(x, y string) string {
	n := len(x)
	if n == 0 {
		return ""
	}
	if x == y {
		return Literal(x)
	}
	if x[0] == y[0] {
		return join(Literal(x[:1]), fixedRange(x[1:], y[1:]))
	}
	rest := func(lo, hi byte) string {
		return join(digitClass(lo, hi), anyDigits(n-1))
	}
	zeros, nines := strings.Repeat("0", n-1), strings.Repeat("9", n-1)
	var alts []string
	lo, hi := x[0], y[0]
	if x[1:] != zeros {
		alts = append(alts, join(Literal(x[:1]), group(fixedRange(x[1:], nines))))
		lo++
	}
	last := ""
	if y[1:] != nines {
		last = join(Literal(y[:1]), group(fixedRange(zeros, y[1:])))
		hi--
	}
	if lo <= hi {
		alts = append(alts, rest(lo, hi))
	}
	if last != "" {
		alts = append(alts, last)
	}
	return alt(alts)
}

func digitClass(lo, hi byte) string {
	if lo == hi {
		return Literal(string(lo))
	}
	return "[" + string(lo) + "-" + string(hi) + "]"
}

func anyDigits(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return "[0-9]"
	}
	return "[0-9]{" + strconv.Itoa(n) + "}"
}

// alt joins alternatives into one item: a group when there are several.
func alt(alts []string) string {
	if len(alts) == 1 {
		return alts[0]
	}
	return "(" + strings.Join(alts, " | ") + ")"
}

// group makes a sequence one item.
func group(s string) string {
	if !strings.Contains(s, " ") || strings.HasPrefix(s, "(") && matchingParen(s) == len(s)-1 {
		return s
	}
	return "(" + s + ")"
}

// matchingParen returns the index of the parenthesis closing s[0], ignoring
// literals and classes.
func matchingParen(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '[':
			end := byte('"')
			if s[i] == '[' {
				end = ']'
			}
			for i++; i < len(s) && s[i] != end; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// intRange returns GBNF for the integers in [lo, hi] (|lo|, |hi| <= maxInt).
func intRange(lo, hi int64) string {
	var alts []string
	if lo < 0 {
		alts = append(alts, join(`"-"`, digitRange(max(-hi, 1), -lo)))
	}
	if hi >= 0 {
		alts = append(alts, digitRange(max(lo, 0), hi))
	}
	return alt(alts)
}

// A bound is a minimum or maximum: absent, or a value that is exclusive or not.
type bound struct {
	set  bool
	val  *big.Rat
	excl bool
}

var bigMax = big.NewInt(maxInt)

// clampInt converts i to an int64 within [-maxInt-1, maxInt+1].
func clampInt(i *big.Int) int64 {
	if i.Cmp(bigMax) > 0 {
		return maxInt + 1
	}
	if new(big.Int).Neg(i).Cmp(bigMax) > 0 {
		return -maxInt - 1
	}
	return i.Int64()
}

func floorRat(r *big.Rat) *big.Int {
	q, m := new(big.Int).DivMod(r.Num(), r.Denom(), new(big.Int)) // Euclidean: m >= 0
	_ = m
	return q
}

func ceilRat(r *big.Rat) *big.Int {
	q := floorRat(r)
	if !r.IsInt() {
		q.Add(q, big.NewInt(1))
	}
	return q
}

// lowInt is the least integer the lower bound admits; highInt the greatest the
// upper bound admits (clamped to the grammar's integer range).
func (b bound) lowInt() int64 {
	if !b.set {
		return -maxInt
	}
	if b.excl {
		return clampInt(new(big.Int).Add(floorRat(b.val), big.NewInt(1)))
	}
	return clampInt(ceilRat(b.val))
}

func (b bound) highInt() int64 {
	if !b.set {
		return maxInt
	}
	if b.excl {
		return clampInt(new(big.Int).Sub(ceilRat(b.val), big.NewInt(1)))
	}
	return clampInt(floorRat(b.val))
}

func (b bound) neg() bound {
	if !b.set {
		return b
	}
	return bound{set: true, val: new(big.Rat).Neg(b.val), excl: b.excl}
}

// integerBetween returns GBNF for the integers within lo and hi, or "" when
// the grammar's integers hold none.
func integerBetween(lo, hi bound) string {
	l, h := max(lo.lowInt(), -maxInt), min(hi.highInt(), maxInt)
	if l > h {
		return ""
	}
	return intRange(l, h)
}

// numberBetween returns GBNF for numbers within lo and hi (at least one
// set), or "" when it finds none. It writes plain decimals (no exponent):
// n, or n.ddd where every value of [n, n+1) lies within the bounds, and the
// negatives alike.
func numberBetween(lo, hi bound) string {
	frac := `("." [0-9]{1,15})`
	var alts []string
	add := func(prefix string, a, z int64, f string) {
		a, z = max(a, 0), min(z, maxInt)
		if a <= z {
			alts = append(alts, join(prefix, digitRange(a, z), f))
		}
	}
	// n >= 0 without a fraction: the integers within the bounds.
	add("", lo.lowInt(), hi.highInt(), "")
	// n.ddd in [n, n+1): n within lo and n+1 <= hi.
	upFrac := int64(maxInt)
	if hi.set {
		upFrac = clampInt(floorRat(hi.val)) - 1
	}
	add("", lo.lowInt(), upFrac, frac)
	// -n for n >= 1 within the bounds.
	add(`"-"`, max(-hi.highInt(), 1), -lo.lowInt(), "")
	// -n.ddd in (-(n+1), -n]: -(n+1) >= lo and -n within hi.
	downFrac := int64(maxInt)
	if lo.set {
		downFrac = clampInt(floorRat(new(big.Rat).Neg(lo.val))) - 1
	}
	add(`"-"`, hi.neg().lowInt(), downFrac, frac)
	if len(alts) == 0 {
		return ""
	}
	return alt(alts)
}
