package routing

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/d5/tengo/v2"
	llembed "github.com/llorch/llorch/embed"
)

// candidatesN builds n workers across three pools, every one with a gpu and
// a cost label.
func candidatesN(n int) []Candidate {
	pools := []string{"gpu-a", "gpu-b", "cpu"}
	costs := []string{"3.20", "0.80", "0.10"}
	cs := make([]Candidate, n)
	for i := range cs {
		cs[i] = Candidate{
			ID: fmt.Sprintf("w%03d", i), Pool: pools[i%3], Model: "llama",
			SlotsFree: i % 5, SlotsTotal: 4, Load: float64(i%7) / 7, TokensPerSecond: 50 + float64(i%11),
			CachedPrefix: i % 3 * 64,
			Labels:       map[string]string{"gpu": "a100", "cost_per_hour": costs[i%3]},
		}
	}
	return cs
}

func benchPlace(b *testing.B, src []byte, n int) {
	s, err := Compile("bench.tengo", src, Config{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	task := newTask()
	task.SessionID = "" // default.tengo leaves tasks with a session to the built-in policy
	in := PlaceInput{Task: task, Candidates: candidatesN(n), Now: time.Unix(1700000000, 0)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, r := s.Place(ctx, in); r.Outcome != OutcomeOK {
			b.Fatalf("outcome %s: %v", r.Outcome, r.Err)
		}
	}
}

// BenchmarkPlace100 is a realistic placement script (prefer_cheapest_gpu:
// two passes, label lookups, float parsing, a score map) over 100
// candidates.
func BenchmarkPlace100(b *testing.B) {
	benchPlace(b, example(b, "prefer_cheapest_gpu.tengo"), 100)
}

// BenchmarkPlace100Default runs default.tengo (pick the best worker and
// dispatch) over 100 candidates.
func BenchmarkPlace100Default(b *testing.B) {
	benchPlace(b, llembed.DefaultRoutingScript, 100)
}

// BenchmarkPlace100Empty is the fixed cost of a call: building the inputs
// for 100 candidates and running a script that does nothing with them.
func BenchmarkPlace100Empty(b *testing.B) {
	benchPlace(b, []byte(`decision = {action: "wait"}`), 100)
}

func BenchmarkAdmit(b *testing.B) {
	s, err := Compile("bench.tengo", example(b, "reject_big_batch.tengo"), Config{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	in := AdmitInput{Task: newTask(), Queue: map[string]map[string]int{"llama": {"batch": 3, "interactive": 1}}}
	in.Task.Priority, in.Task.MaxTokens = "batch", 2000
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, r := s.Admit(ctx, in); r.Outcome != OutcomeOK {
			b.Fatalf("outcome %s: %v", r.Outcome, r.Err)
		}
	}
}

// BenchmarkPlace100Parallel is BenchmarkPlace100 from GOMAXPROCS goroutines.
func BenchmarkPlace100Parallel(b *testing.B) {
	s, err := Compile("bench.tengo", example(b, "prefer_cheapest_gpu.tengo"), Config{Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	in := PlaceInput{Task: newTask(), Candidates: candidatesN(100)}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, r := s.Place(context.Background(), in); r.Outcome != OutcomeOK {
				b.Errorf("outcome %s: %v", r.Outcome, r.Err)
				return
			}
		}
	})
}

// BenchmarkInputs100 builds the place inputs for 100 candidates on a warm
// runner (what every call after a runner's first pays) and on a new one.
func BenchmarkInputs100(b *testing.B) {
	in := PlaceInput{Task: newTask(), Candidates: candidatesN(100)}
	g := make([]tengo.Object, numInputs)
	b.Run("warm", func(b *testing.B) {
		var x inputs
		b.ReportAllocs()
		for b.Loop() {
			x.setPlace(g, &in)
		}
	})
	b.Run("cold", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var x inputs
			x.setPlace(g, &in)
		}
	})
}

// BenchmarkManagerNoScript is the built-in path: no script loaded.
func BenchmarkManagerNoScript(b *testing.B) {
	m := NewManager(Config{})
	in := PlaceInput{Task: newTask(), Candidates: candidatesN(100)}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, r := m.Place(ctx, in); r.Outcome != OutcomeDefault {
			b.Fatal(r.Outcome)
		}
	}
}
