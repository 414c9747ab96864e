package grammar

import "slices"

// A shape is what a oneOf check knows about the values a schema allows: their
// kinds, the exact values when it lists them, and for objects the values a
// required property is held to (a discriminator).
type shape struct {
	kinds int
	lits  map[string]bool            // nil: not a finite list
	disc  map[string]map[string]bool // object discriminators: property -> allowed values
}

// disjoint reports whether no value can match both shapes.
func (a shape) disjoint(b shape) bool {
	if a.kinds&b.kinds == 0 {
		return true
	}
	if a.lits != nil && b.lits != nil {
		for l := range a.lits {
			if b.lits[l] {
				return false
			}
		}
		return true
	}
	if a.kinds == kindObject && b.kinds == kindObject {
		for p, av := range a.disc {
			bv, ok := b.disc[p]
			if !ok {
				continue
			}
			common := false
			for l := range av {
				if bv[l] {
					common = true
				}
			}
			if !common {
				return true
			}
		}
	}
	return false
}

func kindOf(e *value) int {
	switch e.kind {
	case kNull:
		return kindNull
	case kBool:
		return kindBool
	case kNumber:
		return kindNumber
	case kString:
		return kindString
	case kArray:
		return kindArray
	}
	return kindObject
}

// maxShapeLits bounds the literals the shapes of one translation collect
// (past it, shapes know kinds only: oneOf then needs kinds to tell its
// alternatives apart).
const maxShapeLits = 1 << 16

// shapeOf over-approximates the values schema v allows: a shape never says
// two schemas are disjoint when they are not. Each schema's shape is worked
// out once per translation (a schema met again while its own shape is being
// worked out, through $ref, counts as any value).
func (t *translator) shapeOf(v *value) shape {
	if t.shapes == nil {
		t.shapes = map[*value]*shape{}
		t.litsLeft = maxShapeLits
	}
	if sh, ok := t.shapes[v]; ok {
		if sh == nil {
			return shape{kinds: kindAll}
		}
		return *sh
	}
	t.shapes[v] = nil
	sh := t.shapeOfOnce(v)
	if sh.lits != nil {
		if t.litsLeft -= len(sh.lits); t.litsLeft < 0 {
			sh.lits = nil
		}
	}
	t.shapes[v] = &sh
	return sh
}

func (t *translator) shapeOfOnce(v *value) shape {
	all := shape{kinds: kindAll}
	if v.kind == kBool {
		if v.b {
			return all
		}
		return shape{lits: map[string]bool{}}
	}
	if v.kind != kObject {
		return all
	}
	if r := v.get("$ref"); r != nil {
		target := t.resolve(r)
		if target == nil {
			return all
		}
		return t.shapeOf(target)
	}
	if a := v.get("allOf"); a != nil && a.kind == kArray && len(a.arr) == 1 {
		return t.shapeOf(a.arr[0])
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if a := v.get(kw); a != nil && a.kind == kArray {
			out := shape{lits: map[string]bool{}}
			for _, s := range a.arr {
				sh := t.shapeOf(s)
				out.kinds |= sh.kinds
				if sh.lits == nil || t.litsLeft < len(sh.lits) {
					out.lits = nil
				} else if out.lits != nil {
					t.litsLeft -= len(sh.lits)
					for l := range sh.lits {
						out.lits[l] = true
					}
				}
			}
			return out
		}
	}
	var vals []*value
	if e := v.get("enum"); e != nil && e.kind == kArray {
		vals = e.arr
	} else if c := v.get("const"); c != nil {
		vals = []*value{c}
	}
	if vals != nil {
		if len(vals) > t.litsLeft {
			out := shape{}
			for _, e := range vals {
				out.kinds |= kindOf(e)
			}
			return out
		}
		out := shape{lits: map[string]bool{}}
		for _, e := range vals {
			out.kinds |= kindOf(e)
			out.lits[e.canonical()] = true
		}
		return out
	}
	out := shape{}
	types, err := typeSet(v, "")
	if err != nil || types == nil {
		out.kinds = kindAll
		// what typed() emits without "type": only the kinds the keywords name
		if err == nil && (hasAny(v, objectWords) || hasAny(v, arrayWords) || hasAny(v, stringWords) || hasAny(v, numericWords)) {
			out.kinds = 0
			types = map[string]bool{"object": hasAny(v, objectWords), "array": hasAny(v, arrayWords), "string": hasAny(v, stringWords), "number": hasAny(v, numericWords)}
		}
	}
	for ty, on := range types {
		if !on {
			continue
		}
		switch ty {
		case "object":
			out.kinds |= kindObject
		case "array":
			out.kinds |= kindArray
		case "string":
			out.kinds |= kindString
		case "integer", "number":
			out.kinds |= kindNumber
		case "boolean":
			out.kinds |= kindBool
		case "null":
			out.kinds |= kindNull
		}
	}
	if out.kinds == kindObject {
		props := v.get("properties")
		if rq := v.get("required"); rq != nil && rq.kind == kArray && props != nil {
			for _, n := range rq.arr {
				if n.kind != kString {
					continue
				}
				ps := props.get(n.str)
				if ps == nil {
					continue
				}
				if sh := t.shapeOf(ps); sh.lits != nil {
					if out.disc == nil {
						out.disc = map[string]map[string]bool{}
					}
					out.disc[n.str] = sh.lits
				}
			}
		}
	}
	return out
}

// resolve returns the schema a local $ref points at, or nil.
func (t *translator) resolve(r *value) *value {
	if r.kind != kString {
		return nil
	}
	_, target, err := t.lookup(r.str)
	if err != nil {
		return nil
	}
	return target
}

// maxDiscWork bounds the comparisons overlap makes between object
// alternatives that no one property tells apart.
const maxDiscWork = 1 << 16

// overlap finds two shapes that are not disjoint (a.disjoint(b) false), in
// time about linear in their size: it reports the same pairs as comparing
// every two shapes would, but the first one it finds is not always the
// first in index order. Object alternatives told apart by several different
// properties are compared pair by pair, up to maxDiscWork comparisons; past
// that they count as overlapping.
func overlap(shapes []shape) (int, int, bool) {
	// Listed values (lits) against listed values: disjoint unless they
	// share one (a shared value shares its kind too).
	owner := map[string]int{}
	for i, sh := range shapes {
		if sh.lits == nil {
			continue
		}
		for l := range sh.lits {
			if j, ok := owner[l]; ok && j != i {
				return min(i, j), max(i, j), true
			}
			owner[l] = i
		}
	}
	// Anything else: disjoint from a list by kind only; from another
	// unlisted shape by kind, or when both are objects only, by a
	// discriminator.
	const kinds = 6
	var litOf, otherOf [kinds]int // first index+1 with the kind, by list or not
	var objects []int             // unlisted shapes that are objects only
	for i, sh := range shapes {
		for k := range kinds {
			if sh.kinds&(1<<k) == 0 {
				continue
			}
			if sh.lits != nil {
				if litOf[k] == 0 {
					litOf[k] = i + 1
				}
				continue
			}
			if litOf[k] != 0 {
				return litOf[k] - 1, i, true
			}
			if j := otherOf[k]; j != 0 && !(sh.kinds == kindObject && shapes[j-1].kinds == kindObject) {
				return j - 1, i, true
			}
			if otherOf[k] == 0 {
				otherOf[k] = i + 1
			}
		}
		if sh.lits == nil && sh.kinds == kindObject {
			objects = append(objects, i)
		}
	}
	// a list after an unlisted shape of its kind
	for i, sh := range shapes {
		if sh.lits == nil {
			continue
		}
		for k := range kinds {
			if sh.kinds&(1<<k) != 0 && otherOf[k] != 0 {
				return min(i, otherOf[k]-1), max(i, otherOf[k]-1), true
			}
		}
	}
	if len(objects) < 2 || oneDiscriminator(shapes, objects) {
		return 0, 0, false
	}
	work := 0
	for x, i := range objects {
		for _, j := range objects[x+1:] {
			work += len(shapes[i].disc) + 1
			if work > maxDiscWork || !shapes[i].disjoint(shapes[j]) {
				return i, j, true
			}
		}
	}
	return 0, 0, false
}

// oneDiscriminator reports whether one property is held, in every shape of
// objects, to values no other of them allows.
func oneDiscriminator(shapes []shape, objects []int) bool {
	first := shapes[objects[0]].disc
	props := make([]string, 0, len(first))
	for p := range first {
		props = append(props, p)
	}
	slices.Sort(props)
	work := 0
next:
	for _, p := range props {
		owner := map[string]int{}
		for _, i := range objects {
			vals, ok := shapes[i].disc[p]
			if work += len(vals) + 1; work > maxDiscWork {
				return false
			}
			if !ok {
				continue next
			}
			for l := range vals {
				if _, taken := owner[l]; taken {
					continue next
				}
				owner[l] = i
			}
		}
		return true
	}
	return false
}
