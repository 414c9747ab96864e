package scheduler

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/llorch/llorch/core/api"
)

// benchSnapshot is 1,000 workers over four models with mixed states and
// loads, a session and a few routing biases: a quarter serve the task's model.
func benchSnapshot() (Task, []Worker, Options) {
	ws := randomWorkers(rand.New(rand.NewPCG(3, 4)), 1000)
	return llama(session("s1")), ws, Options{
		SessionWorker: func(string) string { return "w17" },
		Bias:          map[string]float64{"w3": 0.25, "w400": -0.5},
	}
}

// BenchmarkSchedule1000 schedules one task over 1,000 workers. "Into" reuses
// one Decision as the dispatch loop does; "fresh" allocates a new one;
// "baseline" is the obvious implementation (fmt.Sprintf details, a candidate
// slice sorted by score), measured in the same run for a ratio.
func BenchmarkSchedule1000(b *testing.B) {
	task, ws, opts := benchSnapshot()
	b.Run("Into", func(b *testing.B) {
		var d Decision
		b.ReportAllocs()
		for b.Loop() {
			ScheduleInto(task, ws, opts, &d)
		}
		if d.WorkerID == "" {
			b.Fatal("no decision")
		}
	})
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if d := schedule(task, ws, opts); d.WorkerID == "" {
				b.Fatal("no decision")
			}
		}
	})
	b.Run("baseline", func(b *testing.B) {
		want := schedule(task, ws, opts).WorkerID
		b.ReportAllocs()
		for b.Loop() {
			if got := naiveSchedule(task, ws, opts); got != want {
				b.Fatalf("baseline chose %s, ScheduleInto %s", got, want)
			}
		}
	})
}

type naiveRejection struct{ id, reason string }

type naiveCandidate struct {
	w     *Worker
	score float64
}

func naiveSchedule(t Task, ws []Worker, o Options) string {
	var rejected []naiveRejection
	var cands []naiveCandidate
	last := o.SessionWorker(t.SessionID)
	for i := range ws {
		w := &ws[i]
		switch {
		case w.Model != t.Model:
			rejected = append(rejected, naiveRejection{w.ID, fmt.Sprintf("wrong model (serves %s)", w.Model)})
		case w.State == api.WorkerDraining:
			rejected = append(rejected, naiveRejection{w.ID, "draining"})
		case w.State != api.WorkerHealthy:
			rejected = append(rejected, naiveRejection{w.ID, fmt.Sprintf("not healthy (state %s)", w.State)})
		case w.SlotsBusy >= w.SlotsTotal:
			rejected = append(rejected, naiveRejection{w.ID, fmt.Sprintf("no free slot (%d/%d busy)", w.SlotsBusy, w.SlotsTotal)})
		default:
			s := float64(w.SlotsTotal-w.SlotsBusy)/float64(w.SlotsTotal) - 0.5*clamp01(w.Load) + o.Bias[w.ID]
			if w.ID == last {
				s++
			}
			cands = append(cands, naiveCandidate{w, s})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return better(cands[i].score, cands[i].w, cands[j].score, cands[j].w) })
	_ = rejected
	if len(cands) == 0 {
		return ""
	}
	return cands[0].w.ID
}

// BenchmarkSummary builds the one-line explanation of a 1,000-worker decision.
func BenchmarkSummary(b *testing.B) {
	task, ws, opts := benchSnapshot()
	d := schedule(task, ws, opts)
	b.ReportAllocs()
	for b.Loop() {
		_ = d.Summary(task)
	}
}

// BenchmarkEligible is the admission check over 1,000 workers when only
// the last one is eligible.
func BenchmarkEligible(b *testing.B) {
	_, ws, _ := benchSnapshot()
	ws[len(ws)-1] = worker("last", model("rare"))
	task := Task{Model: "rare"}
	b.ReportAllocs()
	for b.Loop() {
		if e := Eligible(task, ws); e.Ready != 1 {
			b.Fatal("not eligible")
		}
	}
}
