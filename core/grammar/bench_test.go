package grammar

import "testing"

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
