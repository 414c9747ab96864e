package grammar

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkFromSchema translates a mid-size schema (the person schema of
// the table: nested object, array, enum, bounds, format).
func BenchmarkFromSchema(b *testing.B) {
	schema := []byte(person)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := FromSchema(schema); err != nil {
			b.Fatal(err)
		}
	}
}

// wideSchema is an object of n string properties, all optional or all
// required: the shape whose translation once took quadratic time.
func wideSchema(n int, required bool) []byte {
	var sb strings.Builder
	sb.WriteString(`{"type":"object","properties":{`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"p%d":{"type":"string"}`, i)
	}
	sb.WriteByte('}')
	if required {
		sb.WriteString(`,"required":[`)
		for i := range n {
			if i > 0 {
				sb.WriteByte(',')
			}
			fmt.Fprintf(&sb, `"p%d"`, i)
		}
		sb.WriteByte(']')
	}
	sb.WriteByte('}')
	return []byte(sb.String())
}

// BenchmarkFromSchemaWide translates an object of 2,500 optional string
// properties (64 KB of schema).
func BenchmarkFromSchemaWide(b *testing.B) {
	schema := wideSchema(2500, false)
	b.SetBytes(int64(len(schema)))
	b.ReportAllocs()
	for b.Loop() {
		FromSchema(schema) // refused or not: the time to decide is measured
	}
}
