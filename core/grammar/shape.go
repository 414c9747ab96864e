package grammar

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

// shapeOf over-approximates the values schema v allows: a shape never says
// two schemas are disjoint when they are not.
func (t *translator) shapeOf(v *value, depth int) shape {
	all := shape{kinds: kindAll}
	if depth > 32 {
		return all
	}
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
		return t.shapeOf(target, depth+1)
	}
	if a := v.get("allOf"); a != nil && a.kind == kArray && len(a.arr) == 1 {
		return t.shapeOf(a.arr[0], depth+1)
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		if a := v.get(kw); a != nil && a.kind == kArray {
			out := shape{lits: map[string]bool{}}
			for _, s := range a.arr {
				sh := t.shapeOf(s, depth+1)
				out.kinds |= sh.kinds
				if sh.lits == nil {
					out.lits = nil
				} else if out.lits != nil {
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
				if sh := t.shapeOf(ps, depth+1); sh.lits != nil {
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
