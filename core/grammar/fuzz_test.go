package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
)

// obj is a JSON object that keeps its members in order.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(m.k)
		v, err := json.Marshal(m.v)
		if err != nil {
			return nil, err
		}
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(v)
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// schemaGen builds a schema from fuzz bytes (zeros once they run out).
type schemaGen struct {
	data []byte
	defs []string
}

func (g *schemaGen) byte() int {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return int(b)
}

func (g *schemaGen) n(k int) int { return g.byte() % k }

var fuzzNames = []string{"a", "ab", "b", "name", "names", "", "x y", `q"uote`, "日本", "a/b", "~0"}

func (g *schemaGen) literal(depth int) any {
	switch g.n(7) {
	case 0:
		return nil
	case 1:
		return g.n(2) == 0
	case 2:
		return g.n(200) - 100
	case 3:
		return float64(g.n(100)) / 8
	case 4:
		return fuzzNames[g.n(len(fuzzNames))]
	case 5:
		if depth < 2 {
			return []any{g.literal(depth + 1), g.literal(depth + 1)}
		}
		return "z"
	}
	if depth < 2 {
		return obj{{"k", g.literal(depth + 1)}}
	}
	return 0
}

func (g *schemaGen) bound(frac bool) any {
	v := g.n(60) - 20
	if frac && g.n(2) == 0 {
		return float64(v) + 0.5
	}
	return v
}

func (g *schemaGen) schema(depth int) any {
	if depth > 4 {
		return obj{{"type", "integer"}}
	}
	switch g.n(18) {
	case 0:
		s := obj{{"type", "string"}}
		if g.n(2) == 0 {
			s = append(s, kv{"minLength", g.n(4)})
		}
		if g.n(2) == 0 {
			s = append(s, kv{"maxLength", g.n(6)})
		}
		if g.n(3) == 0 {
			s = append(s, kv{"format", []string{"date", "time", "date-time", "uuid", "email"}[g.n(5)]})
		}
		return s
	case 1, 2:
		ty := []string{"integer", "number"}[g.n(2)]
		s := obj{{"type", ty}}
		for _, kw := range []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} {
			if g.n(3) == 0 {
				s = append(s, kv{kw, g.bound(true)})
			}
		}
		return s
	case 3:
		return obj{{"type", "boolean"}}
	case 4:
		return obj{{"type", "null"}}
	case 5, 6:
		s := obj{{"type", "object"}}
		var props obj
		var req []string
		for range g.n(5) {
			name := fuzzNames[g.n(len(fuzzNames))]
			dup := false
			for _, p := range props {
				dup = dup || p.k == name
			}
			if dup {
				continue
			}
			props = append(props, kv{name, g.schema(depth + 1)})
			if g.n(2) == 0 {
				req = append(req, name)
			}
		}
		if props != nil || g.n(2) == 0 {
			s = append(s, kv{"properties", props})
		}
		if len(req) > 0 {
			s = append(s, kv{"required", req})
		}
		switch g.n(4) {
		case 0:
			s = append(s, kv{"additionalProperties", false})
		case 1:
			s = append(s, kv{"additionalProperties", true})
		case 2:
			s = append(s, kv{"additionalProperties", g.schema(depth + 1)})
		}
		return s
	case 7, 8:
		s := obj{{"type", "array"}}
		if g.n(3) == 0 {
			var pre []any
			for range 1 + g.n(3) {
				pre = append(pre, g.schema(depth+1))
			}
			s = append(s, kv{"prefixItems", pre})
		}
		switch g.n(3) {
		case 0:
			s = append(s, kv{"items", g.schema(depth + 1)})
		case 1:
			s = append(s, kv{"items", false})
		}
		if g.n(2) == 0 {
			s = append(s, kv{"minItems", g.n(4)})
		}
		if g.n(2) == 0 {
			s = append(s, kv{"maxItems", g.n(5)})
		}
		return s
	case 9:
		var vals []any
		for range 1 + g.n(4) {
			vals = append(vals, g.literal(0))
		}
		s := obj{{"enum", vals}}
		if g.n(2) == 0 {
			s = append(obj{{"type", []string{"string", "integer", "number", "object"}[g.n(4)]}}, s...)
		}
		return s
	case 10:
		return obj{{"const", g.literal(0)}}
	case 11, 12:
		kw := []string{"anyOf", "oneOf"}[g.n(2)]
		var alts []any
		for range 1 + g.n(3) {
			alts = append(alts, g.schema(depth+1))
		}
		return obj{{kw, alts}}
	case 13:
		var ts []string
		for _, ty := range []string{"string", "integer", "number", "boolean", "null", "object", "array"} {
			if g.n(3) == 0 {
				ts = append(ts, ty)
			}
		}
		if len(ts) == 0 {
			return obj{}
		}
		return obj{{"type", ts}, {"description", "d"}}
	case 14:
		if len(g.defs) > 0 {
			return obj{{"$ref", "#/$defs/" + g.defs[g.n(len(g.defs))]}}
		}
		return true
	case 15:
		i := g.n(4)
		return obj{{"type", "string"}, {[]string{"pattern", "multipleOf", "minProperties", "contains"}[i], []any{"x", 2, 1, obj{}}[i]}}
	case 16:
		return obj{{"allOf", []any{g.schema(depth + 1)}}}
	}
	return obj{}
}

// build returns a root schema, with $defs that may refer to each other.
func (g *schemaGen) build() []byte {
	var defs obj
	for i := range g.n(3) {
		g.defs = append(g.defs, fmt.Sprintf("d%d", i))
	}
	for _, d := range g.defs {
		defs = append(defs, kv{d, g.schema(1)})
	}
	root := g.schema(0)
	if o, ok := root.(obj); ok && len(defs) > 0 {
		root = append(obj{{"$defs", defs}}, o...)
	}
	b, err := json.Marshal(root)
	if err != nil {
		panic(err)
	}
	return b
}

func FuzzSchema(f *testing.F) {
	for _, seed := range [][]byte{
		{}, {5, 3, 0, 1, 0, 2, 1}, {7, 0, 1, 2, 3, 4}, {2, 14, 1, 5, 5, 2, 0, 1}, {11, 2, 5, 1, 0, 1, 3},
		{6, 4, 1, 0, 0, 2, 1, 3, 9, 2, 4}, {13, 200, 100, 50}, {9, 3, 4, 4, 5, 2}, {12, 3, 0, 0, 1, 3},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		g := &schemaGen{data: data}
		schema := g.build()
		gr, err := FromSchema(schema)
		if err != nil {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("schema %s: %v (want ErrUnsupported)", schema, err)
			}
			return
		}
		checkSamples(t, string(schema), gr, 30, uint64(len(data)))
	})
}
