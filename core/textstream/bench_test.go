package textstream

import (
	"strings"
	"testing"
)

// BenchmarkPush feeds typical 1–6 byte pieces through a Streamer with the
// maximum allowed stops (4 × 100 characters), and with none.
func BenchmarkPush(b *testing.B) {
	pieces := [][]byte{[]byte(" The"), []byte(" quick"), []byte(" brown"), []byte(" \xe4\xb8"), []byte("\x96"), []byte("<")}
	long := strings.Repeat("<|im_end|>", 10)
	for _, bc := range []struct {
		name  string
		stops []string
	}{
		{"no-stops", nil},
		{"4x100", []string{long, strings.Repeat("x", 99) + "y", "\n\nUser:" + strings.Repeat("!", 94), strings.Repeat("世界", 50)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := New(bc.stops)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, stopped, _ := s.Push(pieces[i%len(pieces)]); stopped {
					b.Fatal("stopped")
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
