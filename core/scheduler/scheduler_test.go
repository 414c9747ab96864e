package scheduler

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

// worker returns a healthy, idle worker of model llama in pool p1 with four
// slots; tests tweak it with options.
func worker(id string, opts ...func(*Worker)) Worker {
	w := Worker{ID: id, Pool: "p1", Model: "llama", State: api.WorkerHealthy, SlotsTotal: 4, Ctx: 4096}
	for _, o := range opts {
		o(&w)
	}
	return w
}

func busy(n int) func(*Worker)        { return func(w *Worker) { w.SlotsBusy = n } }
func ctx(n int) func(*Worker)         { return func(w *Worker) { w.Ctx = n } }
func slots(n int) func(*Worker)       { return func(w *Worker) { w.SlotsTotal = n } }
func load(x float64) func(*Worker)    { return func(w *Worker) { w.Load = x } }
func state(s string) func(*Worker)    { return func(w *Worker) { w.State = s } }
func model(m string) func(*Worker)    { return func(w *Worker) { w.Model = m } }
func pool(p string) func(*Worker)     { return func(w *Worker) { w.Pool = p } }
func pinWorker(id string) func(*Task) { return func(t *Task) { t.PinWorker = id } }
func pinPool(p string) func(*Task)    { return func(t *Task) { t.PinPool = p } }
func session(s string) func(*Task)    { return func(t *Task) { t.SessionID = s } }

// llama returns a task for model llama; tests tweak it with options.
func llama(opts ...func(*Task)) Task {
	t := Task{Model: "llama"}
	for _, o := range opts {
		o(&t)
	}
	return t
}

// schedule is ScheduleInto with a fresh Decision.
func schedule(t Task, ws []Worker, o Options) Decision {
	var d Decision
	ScheduleInto(t, ws, o, &d)
	return d
}

func TestFilterReasons(t *testing.T) {
	cases := []struct {
		name   string
		task   Task
		w      Worker
		reason Reason // 0: passes
		detail string
		text   string
	}{
		{"fits", llama(), worker("w1"), 0, "", ""},
		{"wrong model", llama(), worker("w1", model("qwen")), WrongModel, "serves qwen", "wrong model (serves qwen)"},
		{"no model", llama(), worker("w1", model("")), WrongModel, "serves no model", "wrong model (serves no model)"},
		{"unhealthy", llama(), worker("w1", state(api.WorkerUnhealthy)), NotHealthy, "state unhealthy", "not healthy (state unhealthy)"},
		{"dead", llama(), worker("w1", state(api.WorkerDead)), NotHealthy, "state dead", "not healthy (state dead)"},
		{"unknown state", llama(), worker("w1", state("starting")), NotHealthy, "state starting", "not healthy (state starting)"},
		{"no state", llama(), worker("w1", state("")), NotHealthy, "no state", "not healthy (no state)"},
		{"draining", llama(), worker("w1", state(api.WorkerDraining)), Draining, "", "draining"},
		{"all slots busy", llama(), worker("w1", busy(4)), NoFreeSlot, "4/4 busy", "no free slot (4/4 busy)"},
		{"over-assigned", llama(), worker("w1", busy(5)), NoFreeSlot, "5/4 busy", "no free slot (5/4 busy)"},
		{"no slots", llama(), worker("w1", slots(0)), NoFreeSlot, "no slots", "no free slot (no slots)"},
		{"one slot free", llama(), worker("w1", busy(3)), 0, "", ""},
		{"pinned elsewhere", llama(pinWorker("w9")), worker("w1"), NotPinnedWorker, "task pinned to w9", "not the pinned worker (task pinned to w9)"},
		{"pinned here", llama(pinWorker("w1")), worker("w1"), 0, "", ""},
		{"other pool", llama(pinPool("p2")), worker("w1"), NotInPinnedPool, "in pool p1", "not in the pinned pool (in pool p1)"},
		{"no pool", llama(pinPool("p2")), worker("w1", pool("")), NotInPinnedPool, "in no pool", "not in the pinned pool (in no pool)"},
		{"pinned pool", llama(pinPool("p1")), worker("w1"), 0, "", ""},
		// When several filters fail, the first checked gives the reason.
		{"pin before model", llama(pinWorker("w9")), worker("w1", model("qwen")), NotPinnedWorker, "task pinned to w9", ""},
		{"model before state", llama(), worker("w1", model("qwen"), state(api.WorkerDead)), WrongModel, "serves qwen", ""},
		{"draining before slots", llama(), worker("w1", state(api.WorkerDraining), busy(4)), Draining, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var d Decision
			Filter(tc.task, []Worker{tc.w}, &d)
			if tc.reason == 0 {
				if !slices.Equal(d.Candidates, []int{0}) || len(d.Rejected) != 0 {
					t.Fatalf("candidates %v, rejected %v; want it to pass", d.Candidates, d.Rejected)
				}
				return
			}
			if len(d.Candidates) != 0 || len(d.Rejected) != 1 {
				t.Fatalf("candidates %v, rejected %v; want one rejection", d.Candidates, d.Rejected)
			}
			r := d.Rejected[0]
			if r.WorkerID != "w1" || r.Reason != tc.reason || r.Detail != tc.detail {
				t.Errorf("rejection %+v, want w1 %v %q", r, tc.reason, tc.detail)
			}
			if tc.text != "" && r.String() != tc.text {
				t.Errorf("String() = %q, want %q", r.String(), tc.text)
			}
		})
	}
}

func TestPinsNeverFallBack(t *testing.T) {
	idle := []Worker{worker("w1"), worker("w2", pool("p2"))}
	cases := []struct {
		name    string
		task    Task
		ws      []Worker
		want    string
		reasons map[string]Reason
	}{
		{"pinned worker busy", llama(pinWorker("w3")),
			append(slices.Clone(idle), worker("w3", busy(4))), "",
			map[string]Reason{"w1": NotPinnedWorker, "w2": NotPinnedWorker, "w3": NoFreeSlot}},
		{"pinned worker draining", llama(pinWorker("w3")),
			append(slices.Clone(idle), worker("w3", state(api.WorkerDraining))), "",
			map[string]Reason{"w1": NotPinnedWorker, "w2": NotPinnedWorker, "w3": Draining}},
		{"pinned worker absent", llama(pinWorker("w3")), idle, "",
			map[string]Reason{"w1": NotPinnedWorker, "w2": NotPinnedWorker}},
		{"pinned pool busy", llama(pinPool("p3")),
			append(slices.Clone(idle), worker("w3", pool("p3"), busy(4)), worker("w4", pool("p3"), busy(4))), "",
			map[string]Reason{"w1": NotInPinnedPool, "w2": NotInPinnedPool, "w3": NoFreeSlot, "w4": NoFreeSlot}},
		{"pinned worker free", llama(pinWorker("w3")),
			append(slices.Clone(idle), worker("w3", busy(3), load(1))), "w3",
			map[string]Reason{"w1": NotPinnedWorker, "w2": NotPinnedWorker}},
		{"pinned pool takes its best", llama(pinPool("p3")),
			append(slices.Clone(idle), worker("w3", pool("p3"), busy(3)), worker("w4", pool("p3"), busy(1))), "w4",
			map[string]Reason{"w1": NotInPinnedPool, "w2": NotInPinnedPool, "w3": 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := schedule(tc.task, tc.ws, Options{})
			if d.WorkerID != tc.want {
				t.Fatalf("chose %q, want %q; %s", d.WorkerID, tc.want, d.Summary(tc.task))
			}
			got := map[string]Reason{}
			for _, r := range d.Rejected {
				got[r.WorkerID] = r.Reason
			}
			for id, want := range tc.reasons {
				if got[id] != want {
					t.Errorf("%s rejected for %v, want %v", id, got[id], want)
				}
			}
			if len(d.Rejected)+len(d.Candidates) != len(tc.ws) {
				t.Errorf("%d rejected + %d candidates for %d workers", len(d.Rejected), len(d.Candidates), len(tc.ws))
			}
		})
	}
}

func TestScore(t *testing.T) {
	lastServer := func(id string) func(string) string {
		return func(s string) string {
			if s == "s1" {
				return id
			}
			return ""
		}
	}
	cases := []struct {
		name  string
		task  Task
		ws    []Worker
		opts  Options
		want  string
		score float64
	}{
		{"more free slots", llama(),
			[]Worker{worker("w1", busy(2)), worker("w2", busy(1))}, Options{}, "w2", 0.625},
		{"free fraction, not free count", llama(),
			[]Worker{worker("w1", slots(8), busy(4)), worker("w2", slots(2))}, Options{}, "w2", 1},
		{"load counts against", llama(),
			[]Worker{worker("w1", load(0.8)), worker("w2", busy(1), load(0))}, Options{}, "w2", 0.625},
		{"load is clamped to 1", llama(),
			[]Worker{worker("w1", load(5)), worker("w2", busy(3), load(0))}, Options{}, "w1", 0.5},
		{"NaN load counts as none", llama(),
			[]Worker{worker("w1", load(math.NaN())), worker("w2", load(0.1))}, Options{}, "w1", 1},
		{"session affinity", llama(session("s1")),
			[]Worker{worker("w1"), worker("w2", busy(2), load(0.5))},
			Options{SessionWorker: lastServer("w2")}, "w2", 1.25},
		{"affinity yields to a much freer worker", llama(session("s1")),
			[]Worker{worker("w1"), worker("w2", busy(3), load(1))},
			Options{SessionWorker: lastServer("w2")}, "w1", 1},
		{"other session has no affinity", llama(session("s2")),
			[]Worker{worker("w1"), worker("w2", busy(2))},
			Options{SessionWorker: lastServer("w2")}, "w1", 1},
		{"affinity to a rejected worker", llama(session("s1")),
			[]Worker{worker("w1", busy(1)), worker("w2", busy(4))},
			Options{SessionWorker: lastServer("w2")}, "w1", 0.625},
		{"bias", llama(),
			[]Worker{worker("w1"), worker("w2", busy(3))},
			Options{Bias: map[string]float64{"w2": 2, "w9": 5}}, "w2", 1.875},
		{"negative bias", llama(),
			[]Worker{worker("w1"), worker("w2", busy(2))},
			Options{Bias: map[string]float64{"w1": -1}}, "w2", 0.25},
		{"NaN bias counts as none", llama(),
			[]Worker{worker("w1", busy(1)), worker("w2")},
			Options{Bias: map[string]float64{"w2": math.NaN()}}, "w2", 1},
		{"custom weights: load only", llama(),
			[]Worker{worker("w1", load(0.5)), worker("w2", busy(1), load(0.25))},
			Options{Weights: Weights{Load: 2}}, "w2", -0.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := schedule(tc.task, tc.ws, tc.opts)
			if d.WorkerID != tc.want || d.Score != tc.score {
				t.Errorf("chose %q score %v, want %q score %v", d.WorkerID, d.Score, tc.want, tc.score)
			}
			if sum := d.Terms.FreeSlots - d.Terms.Load + d.Terms.Affinity + d.Terms.Cache + d.Terms.Room + d.Terms.Bias; sum != d.Score {
				t.Errorf("terms %+v add up to %v, not %v", d.Terms, sum, d.Score)
			}
		})
	}
}

func TestTieBreak(t *testing.T) {
	cases := []struct {
		name string
		ws   []Worker
		want string
	}{
		{"fewer busy slots", []Worker{worker("w1", slots(4), busy(2)), worker("w2", slots(2), busy(1))}, "w2"},
		{"lowest ID", []Worker{worker("w3"), worker("w10"), worker("w2")}, "w10"},
		{"busy before ID", []Worker{worker("a", slots(8), busy(4)), worker("b", slots(2), busy(1))}, "b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, 7))
			ws := slices.Clone(tc.ws)
			for range 20 {
				r.Shuffle(len(ws), func(i, j int) { ws[i], ws[j] = ws[j], ws[i] })
				if d := schedule(llama(), ws, Options{}); d.WorkerID != tc.want {
					t.Fatalf("order %v chose %q, want %q", ids(ws), d.WorkerID, tc.want)
				}
			}
		})
	}
}

func ids(ws []Worker) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = w.ID
	}
	return out
}

// TestDeterministic schedules a large, varied snapshot in many input orders
// and expects the same decision and the same verdict on every worker.
func TestDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	ws := randomWorkers(r, 200)
	task := llama(session("s1"))
	opts := Options{
		SessionWorker: func(string) string { return "w17" },
		Bias:          map[string]float64{"w3": 0.25, "w4": 0.25},
	}
	want := schedule(task, ws, opts)
	wantVerdicts := verdicts(ws, want)
	if want.WorkerID == "" || len(want.Rejected) == 0 {
		t.Fatalf("snapshot too easy: %s", want.Summary(task))
	}
	var reuse Decision
	for i := range 50 {
		r.Shuffle(len(ws), func(i, j int) { ws[i], ws[j] = ws[j], ws[i] })
		ScheduleInto(task, ws, opts, &reuse)
		if reuse.WorkerID != want.WorkerID || reuse.Score != want.Score {
			t.Fatalf("shuffle %d chose %s (%v), first order chose %s (%v)", i, reuse.WorkerID, reuse.Score, want.WorkerID, want.Score)
		}
		for id, v := range verdicts(ws, reuse) {
			if wantVerdicts[id] != v {
				t.Fatalf("shuffle %d: %s got %q, first order %q", i, id, v, wantVerdicts[id])
			}
		}
		if !slices.IsSorted(reuse.Candidates) {
			t.Fatalf("candidates not in input order: %v", reuse.Candidates)
		}
	}
}

// verdicts maps each worker ID to "candidate" or its rejection text.
func verdicts(ws []Worker, d Decision) map[string]string {
	v := map[string]string{}
	for _, i := range d.Candidates {
		v[ws[i].ID] = "candidate"
	}
	for _, r := range d.Rejected {
		v[r.WorkerID] = r.String()
	}
	return v
}

// randomWorkers returns n workers w0..w(n-1) over four models with mixed
// states, slots and loads. Scores repeat, so ties are common.
func randomWorkers(r *rand.Rand, n int) []Worker {
	models := []string{"llama", "qwen", "mistral", "phi"}
	states := []string{api.WorkerHealthy, api.WorkerHealthy, api.WorkerHealthy, api.WorkerHealthy,
		api.WorkerUnhealthy, api.WorkerDead, api.WorkerDraining}
	ws := make([]Worker, n)
	for i := range ws {
		total := 1 << r.IntN(4)
		ws[i] = Worker{
			ID:         "w" + strconv.Itoa(i),
			Pool:       "p" + strconv.Itoa(r.IntN(3)),
			Model:      models[r.IntN(len(models))],
			State:      states[r.IntN(len(states))],
			SlotsTotal: total,
			SlotsBusy:  r.IntN(total + 1),
			Load:       float64(r.IntN(5)) / 4,
		}
	}
	return ws
}

func TestSummary(t *testing.T) {
	cases := []struct {
		name string
		task Task
		ws   []Worker
		opts Options
		want string
	}{
		{"chosen with rejections", llama(),
			[]Worker{worker("w1", busy(4)), worker("w2", busy(1), load(0.3)), worker("w3", busy(2)), worker("w4", busy(3)), worker("w5", state(api.WorkerDraining))},
			Options{},
			"chose w2 (score 0.60) among 3 candidates; 2 rejected: w1 no free slot (4/4 busy), w5 draining"},
		{"one candidate, none rejected", llama(), []Worker{worker("w1")}, Options{},
			"chose w1 (score 1.00) among 1 candidate"},
		{"affinity and bias", llama(session("s")), []Worker{worker("w1")},
			Options{SessionWorker: func(string) string { return "w1" }, Bias: map[string]float64{"w1": -0.25}},
			"chose w1 (score 1.75, session affinity, bias -0.25) among 1 candidate"},
		{"nothing fits", llama(pinWorker("w2")),
			[]Worker{worker("w1"), worker("w2", busy(4))}, Options{},
			"no worker fits model llama (pinned to worker w2); 2 rejected: w2 no free slot (4/4 busy), w1 not the pinned worker (task pinned to w2)"},
		{"nothing fits a pool", llama(pinPool("gpu")),
			[]Worker{worker("w1", state(api.WorkerDead))}, Options{},
			"no worker fits model llama (pinned to pool gpu); 1 rejected: w1 not in the pinned pool (in pool p1)"},
		{"no workers", llama(), nil, Options{}, "no worker fits model llama; no workers"},
		{"many rejections, near misses first", llama(),
			[]Worker{
				worker("q1", model("qwen")), worker("q2", model("qwen")), worker("q3", model("qwen")),
				worker("d1", state(api.WorkerDead)), worker("b1", busy(4)), worker("q4", model("qwen")),
				worker("b2", busy(4)), worker("r1", state(api.WorkerDraining)), worker("q5", model("phi")),
			}, Options{},
			"no worker fits model llama; 9 rejected: b1 no free slot (4/4 busy), b2 no free slot (4/4 busy), r1 draining, d1 not healthy (state dead), q1 wrong model (serves qwen), q2 wrong model (serves qwen), and 3 more"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := schedule(tc.task, tc.ws, tc.opts)
			if got := d.Summary(tc.task); got != tc.want {
				t.Errorf("Summary:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestEligible(t *testing.T) {
	cases := []struct {
		name         string
		task         Task
		ws           []Worker
		known, ready int
		pinned       string
		maxCtx       int
	}{
		{"no workers", llama(), nil, 0, 0, "", 0},
		{"other models only", llama(), []Worker{worker("w1", model("qwen"))}, 0, 0, "", 0},
		{"dead worker still knows the model", llama(), []Worker{worker("w1", state(api.WorkerDead))}, 1, 0, "", 4096},
		{"draining only", llama(), []Worker{worker("w1", state(api.WorkerDraining))}, 1, 0, "", 4096},
		{"busy but healthy", llama(), []Worker{worker("w1", busy(4))}, 1, 1, "", 4096},
		{"pinned worker elsewhere", llama(pinWorker("w2")), []Worker{worker("w1")}, 0, 0, "", 0},
		{"pinned worker unhealthy", llama(pinWorker("w1")), []Worker{worker("w1", state(api.WorkerUnhealthy)), worker("w2")}, 1, 0, "w1", 4096},
		{"pinned worker healthy", llama(pinWorker("w1")), []Worker{worker("w2"), worker("w1", busy(4))}, 1, 1, "w1", 4096},
		{"pinned worker serves another model", llama(pinWorker("w1")), []Worker{worker("w1", model("qwen"))}, 0, 0, "w1", 0},
		{"pinned pool elsewhere", llama(pinPool("p2")), []Worker{worker("w1")}, 0, 0, "", 0},
		{"pinned pool has one", llama(pinPool("p2")), []Worker{worker("w1"), worker("w2", pool("p2"))}, 1, 1, "", 4096},
		{"pinned pool, wrong model", llama(pinPool("p2")), []Worker{worker("w1"), worker("w2", pool("p2"), model("qwen"))}, 0, 0, "", 0},
		{"largest context", llama(), []Worker{worker("w1", ctx(2048)), worker("w2", ctx(8192))}, 2, 2, "", 8192},
		{"an unknown context means no limit", llama(), []Worker{worker("w1", ctx(2048)), worker("w2", ctx(0))}, 2, 2, "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := Eligible(tc.task, tc.ws)
			pinned := ""
			if e.Pinned != nil {
				pinned = e.Pinned.ID
			}
			if e.Known != tc.known || e.Ready != tc.ready || pinned != tc.pinned || e.MaxCtx != tc.maxCtx {
				t.Errorf("Eligible = known %d ready %d pinned %q ctx %d; want %d %d %q %d", e.Known, e.Ready, pinned, e.MaxCtx,
					tc.known, tc.ready, tc.pinned, tc.maxCtx)
			}
		})
	}
}

func TestExplanation(t *testing.T) {
	task := llama()
	d := schedule(task, []Worker{worker("w1", model("qwen")), worker("w2", busy(2)), worker("w3", state(api.WorkerDraining))}, Options{})
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	e := d.Explanation(task, at)
	want := []api.Rejection{{WorkerID: "w1", Reason: "wrong model (serves qwen)"}, {WorkerID: "w3", Reason: "draining"}}
	if !e.At.Equal(at) || e.Chosen != "w2" || e.Score != 0.25 || e.Summary != d.Summary(task) || !slices.Equal(e.Rejected, want) {
		t.Errorf("Explanation = %+v", e)
	}
	if got := Explain(schedule(task, []Worker{worker("w1")}, Options{})); got != nil {
		t.Errorf("Explain with no rejections = %v, want nil", got)
	}
}

// TestScheduleIntoReuse checks that a reused Decision carries nothing over,
// including through the detail cache filling up and starting over.
func TestScheduleIntoReuse(t *testing.T) {
	var d Decision
	for i := range 3 * maxCachedDetails {
		ws := []Worker{
			worker("w1", model(fmt.Sprintf("m%d", i))),
			worker("w2", slots(i+1), busy(i+1)),
		}
		if i%2 == 0 {
			ws = append(ws, worker("w3"))
		}
		ScheduleInto(llama(), ws, Options{}, &d)
		want := []Rejection{
			{"w1", WrongModel, fmt.Sprintf("serves m%d", i)},
			{"w2", NoFreeSlot, fmt.Sprintf("%d/%d busy", i+1, i+1)},
		}
		if !slices.Equal(d.Rejected, want) {
			t.Fatalf("call %d rejected %v, want %v", i, d.Rejected, want)
		}
		wantID, wantCand := "", []int(nil)
		if i%2 == 0 {
			wantID, wantCand = "w3", []int{2}
		}
		if d.WorkerID != wantID || !slices.Equal(d.Candidates, wantCand) || (wantID == "" && d.Score != 0) {
			t.Fatalf("call %d chose %q %v among %v", i, d.WorkerID, d.Score, d.Candidates)
		}
	}
}

func TestReasonString(t *testing.T) {
	for r := NotPinnedWorker; r <= FailedBefore; r++ {
		if s := r.String(); s == "" || strings.HasPrefix(s, "reason(") {
			t.Errorf("Reason %d has no phrase: %q", r, s)
		}
	}
	for _, r := range []Reason{0, FailedBefore + 1} {
		if got, want := r.String(), fmt.Sprintf("reason(%d)", r); got != want {
			t.Errorf("Reason(%d) = %q, want %q", r, got, want)
		}
	}
}

// The cache term: a worker expected to hold most of the prompt wins over an
// idle one until it is three quarters busy; then the idle worker takes the
// task, so a hot prefix spreads.
func TestCacheTerm(t *testing.T) {
	prompt := func(n int) func(*Task) { return func(t *Task) { t.PromptTokens = n } }
	cases := []struct {
		name   string
		holder Worker // w1, expected to hold the cached tokens
		cached int
		task   Task
		want   string
	}{
		{"idle holder", worker("w1"), 800, llama(prompt(1000)), "w1"},
		{"half busy holder", worker("w1", busy(2), load(0.5)), 800, llama(prompt(1000)), "w1"},
		{"three quarters busy holder spreads", worker("w1", busy(3), load(0.75)), 1000, llama(prompt(1000)), "w2"},
		{"full holder", worker("w1", busy(4), load(1)), 1000, llama(prompt(1000)), "w2"},
		{"a short prompt's hit weighs little", worker("w1", busy(2), load(0.5)), 40, llama(prompt(50)), "w2"},
		{"no hit", worker("w1", busy(1), load(0.25)), 0, llama(prompt(1000)), "w2"},
		{"hit larger than the estimate counts once", worker("w1", busy(2), load(0.5)), 1 << 40, llama(prompt(100)), "w1"},
		{"negative is none", worker("w1"), -5, llama(prompt(100)), "w1"}, // equal scores: fewer busy, then lowest ID
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ws := []Worker{c.holder, worker("w2")}
			d := schedule(c.task, ws, Options{Cached: []int{c.cached, 0}})
			if d.WorkerID != c.want {
				t.Fatalf("chose %s (%s), want %s", d.WorkerID, d.Summary(c.task), c.want)
			}
			if len(d.Scores) != len(d.Candidates) {
				t.Fatalf("%d scores for %d candidates", len(d.Scores), len(d.Candidates))
			}
			if d.Terms.Cache < 0 || d.Terms.Cache > 1 {
				t.Fatalf("cache term %v out of 0..1", d.Terms.Cache)
			}
		})
	}
	// Room: a cold prompt goes to the worker with a slot caching nothing
	// rather than evict a conversation on an equally loaded one.
	ws0 := []Worker{worker("w1", busy(1)), worker("w2", busy(1))}
	if d := schedule(llama(prompt(1000)), ws0, Options{Room: []float64{0, 0.25}}); d.WorkerID != "w2" || d.Terms.Room != 0.0625 {
		t.Fatalf("room: chose %s with room term %v", d.WorkerID, d.Terms.Room)
	}
	// ... but it does not outweigh load.
	ws1 := []Worker{worker("w1", busy(1)), worker("w2", busy(3))}
	if d := schedule(llama(prompt(1000)), ws1, Options{Room: []float64{0, 1}}); d.WorkerID != "w1" {
		t.Fatalf("room outweighed load: chose %s", d.WorkerID)
	}
	// Least-loaded: a Cache weight of 0 ignores the index.
	ws := []Worker{worker("w1", busy(1), load(0.25)), worker("w2")}
	wt := DefaultWeights
	wt.Cache, wt.Room = 0, 0
	if d := schedule(llama(prompt(1000)), ws, Options{Cached: []int{1000, 0}, Weights: wt}); d.WorkerID != "w2" || d.Terms.Cache != 0 {
		t.Fatalf("least-loaded chose %s with cache term %v", d.WorkerID, d.Terms.Cache)
	}
}
