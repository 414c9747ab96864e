package routing

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/scheduler"

	llembed "github.com/llorch/llorch/embed"
)

// The embedded default script and every example, against the inputs that
// make each of their branches decide.

func TestDefaultScript(t *testing.T) {
	s := compile(t, string(llembed.DefaultRoutingScript))
	for _, prio := range []string{"interactive", "batch"} {
		in := newAdmit()
		in.Task.Priority = prio
		if d, r := s.Admit(t.Context(), in); d != (AdmitDecision{Action: "admit"}) || r.Outcome != OutcomeOK {
			t.Errorf("admit %s: %+v %v", prio, d, r.Err)
		}
	}
	task := newTask()
	task.SessionID = ""
	c := func(id string, free, total int, load float64) Candidate {
		return Candidate{ID: id, Pool: "p", Model: "llama", SlotsFree: free, SlotsTotal: total, Load: load}
	}
	tests := []struct {
		name  string
		cands []Candidate
		want  string
	}{
		{"free fraction", []Candidate{c("w1", 1, 4, 0), c("w2", 3, 4, 0), c("w3", 2, 4, 0)}, "w2"},
		{"minus half the load", []Candidate{c("w1", 3, 4, 0.9), c("w2", 3, 4, 0)}, "w2"},
		{"the busy fraction counts as load", []Candidate{c("w1", 1, 4, 0), c("w2", 2, 4, 0.4)}, "w2"},
		{"plus the fraction cached", []Candidate{{ID: "w1", Model: "llama", SlotsFree: 2, SlotsTotal: 4, Load: 0.5, CachedPrefix: 1 << 20},
			c("w2", 4, 4, 0)}, "w1"},
		{"load clamped", []Candidate{c("w1", 4, 4, 7), c("w2", 1, 4, 0.1)}, "w1"},
		{"then fewer busy", []Candidate{c("w1", 2, 4, 0), c("w2", 1, 2, 0)}, "w2"},
		{"then lower id", []Candidate{c("w3", 2, 4, 0.5), c("w1", 2, 4, 0.5), c("w2", 2, 4, 0.5)}, "w1"},
		{"one", []Candidate{c("w9", 1, 1, 1)}, "w9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, r := s.Place(t.Context(), PlaceInput{Task: task, Candidates: tt.cands})
			if d.Action != "dispatch" || d.Worker != tt.want {
				t.Errorf("%+v %s %v, want dispatch %s", d, r.Outcome, r.Err, tt.want)
			}
		})
	}
	if d, r := s.Place(t.Context(), PlaceInput{Task: task}); r.Outcome != OutcomeDefault {
		t.Errorf("no candidates: %+v %s", d, r.Outcome)
	}
	// With a session the built-in policy decides: it weighs session
	// affinity, which the script cannot see.
	if d, r := s.Place(t.Context(), PlaceInput{Task: newTask(), Candidates: tests[0].cands}); r.Outcome != OutcomeDefault {
		t.Errorf("session: %+v %s", d, r.Outcome)
	}
}

// TestDefaultScriptMatchesScheduler: default.tengo picks the worker
// core/scheduler picks, over random fleets.
func TestDefaultScriptMatchesScheduler(t *testing.T) {
	s := compile(t, string(llembed.DefaultRoutingScript))
	rng := rand.New(rand.NewPCG(1, 2))
	task := newTask()
	task.SessionID = ""
	for i := range 300 {
		n := 1 + rng.IntN(8)
		cands := make([]Candidate, n)
		workers := make([]scheduler.Worker, n)
		for j := range cands {
			total := 1 + rng.IntN(4)
			free := 1 + rng.IntN(total)
			load := float64(rng.IntN(6)) / 4 // ties, and loads over 1
			id := fmt.Sprintf("w%d", rng.IntN(20))
			cands[j] = Candidate{ID: id, Model: "llama", SlotsFree: free, SlotsTotal: total, Load: load}
			workers[j] = scheduler.Worker{ID: id, Model: "llama", State: api.WorkerHealthy,
				SlotsTotal: total, SlotsBusy: total - free, Load: load}
		}
		var want scheduler.Decision
		scheduler.ScheduleInto(scheduler.Task{Model: "llama"}, workers, scheduler.Options{}, &want)
		d, r := s.Place(t.Context(), PlaceInput{Task: task, Candidates: cands})
		if d.Worker != want.WorkerID {
			t.Fatalf("fleet %d: script %+v (%v), scheduler %s\n%+v", i, d, r.Err, want.WorkerID, cands)
		}
	}
}

func TestRejectBigBatch(t *testing.T) {
	s := compile(t, string(example(t, "reject_big_batch.tengo")))
	tests := []struct {
		name      string
		priority  string
		maxTokens int
		plan      string
		want      AdmitDecision
	}{
		{"big batch", "batch", 1001, "", AdmitDecision{Action: "reject", Status: 400, Code: "BATCH_TOO_BIG",
			Message: "batch tasks may ask for at most 1000 tokens, not 1001"}},
		{"batch at the limit", "batch", 1000, "pro", AdmitDecision{}},
		{"big interactive", "interactive", 5000, "", AdmitDecision{}},
		{"trial batch", "batch", 10, "trial", AdmitDecision{Action: "reject", Status: 403, Code: "BATCH_NOT_ALLOWED",
			Message: "trial tenants cannot submit batch tasks"}},
		{"trial interactive", "interactive", 10, "trial", AdmitDecision{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newAdmit()
			in.Task.Priority, in.Task.MaxTokens = tt.priority, tt.maxTokens
			if tt.plan != "" {
				in.Task.Headers = map[string]string{"X-Tenant-Plan": tt.plan}
			}
			d, r := s.Admit(t.Context(), in)
			if d != tt.want || r.Outcome.Fallback() {
				t.Errorf("%+v %s %v\nwant %+v", d, r.Outcome, r.Err, tt.want)
			}
		})
	}
	if _, r := s.Place(t.Context(), newPlace()); r.Outcome != OutcomeDefault {
		t.Errorf("place: %s", r.Outcome)
	}
}

func TestPinModelToPool(t *testing.T) {
	s := compile(t, string(example(t, "pin_model_to_pool.tengo")))
	q := func(id, pool string, free int) Candidate {
		return Candidate{ID: id, Pool: pool, Model: "qwen", SlotsFree: free, SlotsTotal: 4}
	}
	qwen := newTask()
	qwen.Model = "qwen"
	tests := []struct {
		name  string
		task  Task
		cands []Candidate
		want  PlaceDecision
		note  string
	}{
		{"pinned pool", qwen, []Candidate{q("b1", "gpu-b", 4), q("a2", "gpu-a", 1), q("a1", "gpu-a", 3)},
			PlaceDecision{Action: "dispatch", Worker: "a1"}, "script: dispatch a1 (qwen pinned to gpu-a)"},
		{"tie on free slots", qwen, []Candidate{q("a2", "gpu-a", 2), q("a1", "gpu-a", 2)},
			PlaceDecision{Action: "dispatch", Worker: "a1"}, "script: dispatch a1 (qwen pinned to gpu-a)"},
		{"pinned pool busy", qwen, []Candidate{q("b1", "gpu-b", 4), q("c1", "cpu", 1)},
			PlaceDecision{Action: "wait", RetryAfterMs: 500}, "script: wait 500ms (qwen runs only on gpu-a)"},
		{"not pinned", newTask(), []Candidate{q("b1", "gpu-b", 4)}, PlaceDecision{}, "script: no decision"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, r := s.Place(t.Context(), PlaceInput{Task: tt.task, Candidates: tt.cands})
			if !equalPlace(d, tt.want) || r.Note != tt.note {
				t.Errorf("%+v %q %v\nwant %+v %q", d, r.Note, r.Err, tt.want, tt.note)
			}
		})
	}
}

func TestPreferCheapestGPU(t *testing.T) {
	s := compile(t, string(example(t, "prefer_cheapest_gpu.tengo")))
	w := func(id string, labels map[string]string) Candidate {
		return Candidate{ID: id, Pool: "p", Model: "llama", SlotsFree: 1, SlotsTotal: 1, Labels: labels}
	}
	cands := []Candidate{
		w("a100", map[string]string{"gpu": "a100", "cost_per_hour": "3.20"}),
		w("l4", map[string]string{"gpu": "l4", "cost_per_hour": "0.80"}),
		w("l4b", map[string]string{"gpu": "l4", "cost_per_hour": "1.60"}),
		w("cpu", map[string]string{"cost_per_hour": "0.10"}),
		w("free", map[string]string{"gpu": "t4", "cost_per_hour": "0"}),
		w("nocost", map[string]string{"gpu": "t4"}),
		w("garbled", map[string]string{"gpu": "t4", "cost_per_hour": "cheap"}),
		w("bare", nil),
	}
	d, r := s.Place(t.Context(), PlaceInput{Task: newTask(), Candidates: cands})
	want := PlaceDecision{Action: "score", Scores: map[string]float64{"a100": 0.25, "l4": 1, "l4b": 0.5}}
	if !equalPlace(d, want) {
		t.Errorf("%+v %s %v\nwant %+v", d, r.Outcome, r.Err, want)
	}
	if r.Note != "script: score l4=1 l4b=0.5 a100=0.25" {
		t.Errorf("note %q", r.Note)
	}
	d, r = s.Place(t.Context(), PlaceInput{Task: newTask(), Candidates: cands[3:4]})
	if r.Outcome != OutcomeDefault {
		t.Errorf("no gpu: %+v %s", d, r.Outcome)
	}
	if _, r := s.Admit(t.Context(), newAdmit()); r.Outcome != OutcomeDefault {
		t.Errorf("admit: %s", r.Outcome)
	}
}
