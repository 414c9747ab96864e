package orchestrator

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/api"
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

// The pool command of a spawn: an embedding model's replicas are started
// with --embedding, others without; the token goes on stdin only.
func TestSpawnArgs(t *testing.T) {
	r := spawnRequest{WorkerID: "e-a-1", Pool: "a", Orchestrator: "http://o:8080", Token: "tok-1", GPU: -1, Host: "127.0.0.1",
		Spec: api.ModelSpec{ID: "e", Slots: 2, Ctx: 256, Backend: "cpu", Embedding: true}}
	args, stdin := spawnArgs(r)
	want := []string{"--json", "worker", "spawn", "--id", "e-a-1", "--model", "e", "--slots", "2", "--pool-name", "a",
		"--orchestrator", "http://o:8080", "--ctx", "256", "--embedding", "--host", "127.0.0.1", "--token-file", "-", "cpu"}
	if !slices.Equal(args, want) {
		t.Fatalf("args\n got %q\nwant %q", args, want)
	}
	if b, _ := io.ReadAll(stdin); string(b) != "tok-1\n" {
		t.Fatalf("stdin %q", b)
	}
	r.Spec.Embedding, r.Token, r.GPU = false, "", 1
	args, stdin = spawnArgs(r)
	if slices.Contains(args, "--embedding") || slices.Contains(args, "--token-file") || stdin != nil ||
		!slices.Contains(args, "--gpu") || args[len(args)-1] != "cpu" {
		t.Fatalf("a generation model's spawn: %q (stdin %v)", args, stdin)
	}
}
