package grammar

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/llorch/llorch/backends/llamacpp"
)

// hostileSchemas are shapes that once made translation slow (time growing
// with the square of the schema, or worse) or the grammar huge.
func hostileSchemas() map[string][]byte {
	list := func(n int, item func(i int) string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = item(i)
		}
		return strings.Join(parts, ",")
	}
	nest := func(depth int, open, leaf, close string) string {
		return strings.Repeat(open, depth) + leaf + strings.Repeat(close, depth)
	}
	return map[string][]byte{
		"optional 100":        wideSchema(100, false),
		"optional 2500":       wideSchema(2500, false),
		"optional 20000":      wideSchema(20000, false),
		"required 300":        wideSchema(300, true),
		"required 1500":       wideSchema(1500, true),
		"enum 2000":           []byte(`{"enum":[` + list(2000, func(i int) string { return fmt.Sprintf(`"v%d"`, i) }) + `]}`),
		"enum 7000":           []byte(`{"enum":[` + list(7000, func(i int) string { return fmt.Sprintf(`"v%d"`, i) }) + `]}`),
		"enum huge exponents": []byte(`{"type":"integer","enum":[` + list(3000, func(i int) string { return fmt.Sprintf(`%de999999`, i+1) }) + `]}`),
		"bounds huge exponents": []byte(`{"type":"array","prefixItems":[` + list(200, func(i int) string {
			return fmt.Sprintf(`{"type":"number","minimum":-%de999999,"maximum":1e-999999}`, i+1)
		}) + `]}`),
		"ref chain 2000": []byte(`{"$ref":"#/$defs/d0","$defs":{` + list(2000, func(i int) string {
			return fmt.Sprintf(`"d%d":{"$ref":"#/$defs/d%d"}`, i, i+1)
		}) + `,"d2000":{"type":"integer"}}}`),
		"ref chain 2000 in objects": []byte(`{"$ref":"#/$defs/d0","$defs":{` + list(2000, func(i int) string {
			return fmt.Sprintf(`"d%d":{"type":"object","properties":{"x":{"$ref":"#/$defs/d%d"}}}`, i, i+1)
		}) + `,"d2000":{"type":"integer"}}}`),
		"refs into wide defs": []byte(`{"type":"object","properties":{` + list(1500, func(i int) string {
			return fmt.Sprintf(`"p%d":{"$ref":"#/$defs/d%d"}`, i, i)
		}) + `},"$defs":{` + list(1500, func(i int) string { return fmt.Sprintf(`"d%d":{"const":%d}`, i, i) }) + `}}`),
		"anyOf 3000": []byte(`{"anyOf":[` + list(3000, func(i int) string { return fmt.Sprintf(`{"const":%d}`, i) }) + `]}`),
		"oneOf 3000": []byte(`{"oneOf":[` + list(3000, func(i int) string { return fmt.Sprintf(`{"const":%d}`, i) }) + `]}`),
		"oneOf same": []byte(`{"oneOf":[` + list(3000, func(int) string { return `{"type":"object"}` }) + `]}`),
		"oneOf tagged": []byte(`{"oneOf":[` + list(600, func(i int) string {
			return fmt.Sprintf(`{"type":"object","properties":{"k":{"const":%d}},"required":["k"]}`, i)
		}) + `]}`),
		"oneOf shapes doubling": []byte(`{"oneOf":[{"$ref":"#/$defs/a0"},{"type":"null"}],"$defs":{` + list(60, func(i int) string {
			return fmt.Sprintf(`"a%d":{"anyOf":[{"$ref":"#/$defs/a%d"},{"$ref":"#/$defs/a%d"}]}`, i, i+1, i+1)
		}) + `,"a60":{"enum":[` + list(2000, func(i int) string { return fmt.Sprint(i) }) + `]}}}`),
		"deep objects":  []byte(nest(99, `{"type":"object","properties":{"a":`, `{"type":"string"}`, `},"required":["a"]}`)),
		"deep arrays":   []byte(nest(199, `{"items":`, `{"type":"integer"}`, `}`)),
		"deep anyOf":    []byte(nest(99, `{"anyOf":[{"type":"null"},`, `{"type":"string"}`, `]}`)),
		"counts":        []byte(`{"type":"array","minItems":1999999,"maxItems":2000000,"items":{"type":"string","minLength":1999999,"maxLength":2000000}}`),
		"prefixItems":   []byte(`{"type":"array","prefixItems":[` + list(3000, func(i int) string { return fmt.Sprintf(`{"const":%d}`, i) }) + `]}`),
		"extra keys":    []byte(`{"type":"object","additionalProperties":true,"properties":{` + list(2500, func(i int) string { return fmt.Sprintf(`"k%04d":{}`, i) }) + `}}`),
		"long key deep": []byte(nest(99, `{"type":"object","properties":{"`+strings.Repeat("k", 400)+`":`, `{}`, `}}`)),
	}
}

// TestHostileSchemas translates each hostile shape: it is refused as
// unsupported or gives a grammar within the limits that llama.cpp parses,
// and the work counted (name searches, checked grammar nodes) stays within
// a small multiple of the schema's size.
func TestHostileSchemas(t *testing.T) {
	for name, schema := range hostileSchemas() {
		t.Run(name, func(t *testing.T) {
			b := NewBuilder()
			r, err := b.Schema(schema)
			if b.work > 4*len(schema) {
				t.Errorf("%d steps for a schema of %d bytes", b.work, len(schema))
			}
			if err != nil {
				if !errors.Is(err, ErrUnsupported) {
					t.Fatalf("not ErrUnsupported: %v", err)
				}
				if len(b.order) != 0 || b.size != 0 {
					t.Errorf("a refused schema left %d rules, %d bytes", len(b.order), b.size)
				}
				t.Logf("%d bytes: refused: %.200v", len(schema), err)
				return
			}
			g := b.Grammar(r)
			if b.size > MaxGrammarBytes || len(b.order) > MaxRules {
				t.Errorf("grammar of %d bytes, %d rules: over the limits", b.size, len(b.order))
			}
			if b.size != len(g)-len("root ::= \n")-len(r) {
				t.Errorf("counted %d bytes, the grammar has %d", b.size, len(g))
			}
			if err := llamacpp.ParseGrammar(g); err != nil {
				t.Fatalf("llama.cpp refuses the grammar: %v", err)
			}
			t.Logf("%d bytes: grammar of %d bytes, %d rules, %d steps", len(schema), len(g), len(b.order), b.work)
		})
	}
}

// TestLimitsEarly checks that a schema far past the limits is refused when
// the grammar crosses them, not after all of it is built, and that the
// limits count across the schemas of one Builder (tool calls).
func TestLimitsEarly(t *testing.T) {
	b := NewBuilder()
	_, err := b.Schema(wideSchema(20000, false))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "bytes") {
		t.Fatalf("got %v", err)
	}
	// the name search ran for about the rules that fit, not for 40,000
	if b.work > 2*MaxRules {
		t.Errorf("%d name-search steps before refusing", b.work)
	}
	n := 0
	for ; n < 1000; n++ {
		// 40 optional properties, named apart from every other schema's
		small := strings.ReplaceAll(string(wideSchema(40, false)), `"p`, fmt.Sprintf(`"s%d-`, n))
		small = strings.Replace(small, fmt.Sprintf(`"s%d-roperties"`, n), `"properties"`, 1)
		if _, err := b.Schema([]byte(small)); err != nil {
			if !errors.Is(err, ErrUnsupported) {
				t.Fatal(err)
			}
			break
		}
	}
	if n == 0 || n == 1000 || b.size > MaxGrammarBytes {
		t.Errorf("%d different schemas fit, %d bytes", n, b.size)
	}
	t.Logf("%d schemas of 40 optional properties fit in one Builder (%d bytes, %d rules)", n, b.size, len(b.order))
}

// TestDecimal checks numbers read without arithmetic: equal values have
// one canonical text, integers are told apart from fractions at any
// exponent, and counts past the limit are refused at any exponent.
func TestDecimal(t *testing.T) {
	num := func(s string) *value { v, _ := parseJSON([]byte(s)); return v }
	for _, same := range [][]string{{"100", "1e2", "100.0", "1.00E+2", "1000e-1"}, {"0", "-0", "0.000", "0e99"}, {"-1.5", "-15e-1"}} {
		for _, s := range same[1:] {
			if a, b := num(same[0]).canonical(), num(s).canonical(); a != b {
				t.Errorf("%s is %q, %s is %q", same[0], a, s, b)
			}
		}
	}
	if num("1.5").canonical() == num("15").canonical() {
		t.Error("1.5 and 15 are one value")
	}
	for s, want := range map[string]bool{"1e999999": true, "1.5e-999999": false, "1.5e1": true, "1.25e1": false, "0.0": true, "1e99999999999999999999": true} {
		if got := num(s).isInteger(); got != want {
			t.Errorf("isInteger(%s) = %v", s, got)
		}
	}
	for _, s := range []string{`{"maxLength":1e999999}`, `{"maxLength":2000001}`, `{"maxItems":1e9}`} {
		if _, err := FromSchema([]byte(s)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{`{"maxLength":2e6}`, `{"maxLength":20e-1}`, `{"minimum":-1e999999,"maximum":1e999999,"type":"integer"}`} {
		if _, err := FromSchema([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
}
