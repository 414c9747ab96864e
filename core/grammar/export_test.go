package grammar

import "math/rand/v2"

// TableSchemas exposes the table's schemas (by case name) to package
// grammar_test.
func TableSchemas() map[string]string {
	out := map[string]string{}
	for _, tc := range tableCases {
		out[tc.name] = tc.schema
	}
	return out
}

// GeneratedSchemas returns n schemas built by FuzzSchema's generator from
// seeded random bytes.
func GeneratedSchemas(n int, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, 3))
	var out [][]byte
	for range n {
		b := make([]byte, 48)
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		out = append(out, (&schemaGen{data: b}).build())
	}
	return out
}
