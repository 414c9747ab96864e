package orchestrator

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// A spawn's stderr: progress lines (NDJSON) are heard, in whatever pieces
// they arrive; the other lines are kept, the last 20, for the error.
func TestProgressLines(t *testing.T) {
	var heard []float64
	p := &poolLines{event: func(ev poolEvent) { heard = append(heard, ev.Progress) }}
	var in strings.Builder
	in.WriteString(`{"event":"progress","step":"loading","worker":"w","progress":0.25}` + "\n")
	for i := range 25 {
		fmt.Fprintf(&in, "log line %d\n", i)
	}
	in.WriteString(`{"event":"progress","progress":0.5}` + "\n")
	in.WriteString(`{"event":"progress","progress":7}` + "\n") // out of range: ignored
	in.WriteString(`{"event":"other"}` + "\n")
	in.WriteString("pool: worker w failed to load the model: truncated") // no newline
	s := in.String()
	for len(s) > 0 { // in pieces of 7 bytes
		n := min(7, len(s))
		if _, err := p.Write([]byte(s[:n])); err != nil {
			t.Fatal(err)
		}
		s = s[n:]
	}
	p.flush()
	if !slices.Equal(heard, []float64{0.25, 0.5}) {
		t.Fatalf("heard %v", heard)
	}
	if len(p.tail) != 20 || p.tail[19] != "pool: worker w failed to load the model: truncated" || p.tail[18] != `{"event":"other"}` || p.tail[0] != "log line 7" {
		t.Fatalf("tail %q", p.tail)
	}
	// A line without end cannot grow without bound.
	q := &poolLines{}
	_, _ = q.Write([]byte(strings.Repeat("x", 1<<20)))
	q.flush()
	if len(q.tail) != 1 || len(q.tail[0]) != 4096 {
		t.Fatalf("long line kept as %d bytes", len(q.tail[0]))
	}
}
