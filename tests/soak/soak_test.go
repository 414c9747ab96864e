// Package soak is a chaos test of llorch's orchestrator and workers as real
// processes: a bounded load of tasks runs through `llorch orchestrate` while
// `llorch worker` processes are killed -9, frozen with SIGSTOP and resumed,
// and the orchestrator itself is killed -9 and restarted on the same address
// and data dir. At the end every accepted task must have ended exactly once,
// with contiguous event ids and every token once, as its client saw it and as
// a fresh replay shows it; the last orchestrator's goroutines and resident
// memory must be back near their value after warm-up.
//
//	go test ./tests/soak                                 # 60 seconds (what `make test` runs)
//	SOAK_DURATION=10m go test -v -timeout 30m ./tests/soak   # `make soak`
//	SOAK_SEED=42 ...                                     # the same fault schedule and tasks again
//	SOAK_KEEP_LOGS=1 ...                                 # keep every process's log and faults.txt, the schedule (kept anyway on failure)
package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
	"github.com/llorch/llorch/core/testkit"
)

var kit *testkit.Kit

func TestMain(m *testing.M) { testkit.Main(m, func(k *testkit.Kit) { kit = k }) }

// The shape of the soak.
const (
	defaultDuration = 60 * time.Second
	numClients      = 6
	numWorkers      = 3
	// drainLimit bounds the wait for the tasks in flight when the load
	// stops, once every process is back.
	drainLimit = 2 * time.Minute
	// A worker fault every 1.5–4.5s; an orchestrator kill every 6–14s, only
	// from 10% to 60% of the run, so the last orchestrator lives through
	// the final 40% (its warm-up value is sampled from 75% on).
	workerFaultMin, workerFaultMax = 1500 * time.Millisecond, 4500 * time.Millisecond
	orchFaultMin, orchFaultMax     = 6 * time.Second, 14 * time.Second
	// The warm-up value of the last orchestrator is the largest of
	// warmSamples samples taken a second apart under load, from 75% of the
	// run on (one instant is noisy: the clients may all be between tasks).
	// Tolerances, settled (idle, every task forgotten) against warm-up:
	// goroutines: the warm-up count includes the client streams and
	// attempts in flight and the settled count none, so a leak of even one
	// goroutine per hundred tasks shows; the slack covers keep-alive
	// connections that are idle at the end and were not at the sample
	// (orchestrator to workers: two goroutines each). Resident memory: Go
	// lets the heap grow to twice its live size between collections and
	// returns freed pages lazily, so the settled value follows the peak
	// rather than the sample; a quarter plus 32 MiB covers that (the live
	// heap is 10–60 MiB), while a leak per task, stream or fault over the
	// last 40% of a run (hundreds to thousands of each) grows past it.
	warmSamples    = 10
	goroutineSlack = 12
	rssFactor      = 1.25
	rssSlack       = 32 << 20
	// A task may fail with a retriable WORKER_LOST when its workers die
	// under it more often than --max-migrations allows; that must stay
	// rare: at most this share of the tasks (or maxLostFloor).
	maxLostPercent, maxLostFloor = 5, 3
	// resultTTL is the orchestrator's --result-ttl: finished tasks (and
	// their events) are kept this long, so its memory levels off after
	// resultTTL of load and a leak stands out against that level. Each
	// client replays its task right after the end, well within it.
	resultTTL = 30 * time.Second
)

// sample is what the last orchestrator's /metrics says of its process.
type sample struct {
	goroutines, rss, heap float64
	at                    time.Time
}

func (s sample) String() string {
	return fmt.Sprintf("%.0f goroutines, RSS %.1f MiB, heap in use %.1f MiB", s.goroutines, s.rss/(1<<20), s.heap/(1<<20))
}

// soak is one run: its processes, the fault schedule, the load and the
// verdict. Only the test goroutine touches the processes.
type soak struct {
	t        *testing.T
	ctx      context.Context
	dir      string
	rng      *rand.Rand
	hc       *http.Client
	oc       *orchclient.Client // set once the orchestrator's address is known
	o        *orchestrator
	ws       []*worker
	faults   map[string]int
	skipped  int
	pending  []pending
	killedM  map[string]float64 // counters of the killed orchestrators, summed
	warm     sample
	warmNote string
	warmN    int // warm-up samples taken
	begin    time.Time
	faultLog strings.Builder // every fault and recovery at its scheduled time (faults.txt)
	lost     []string        // messages of the first WORKER_LOST failures

	mu         sync.Mutex
	violations []string
}

// pending is a recovery due at a time: resume a frozen worker, restart a
// killed one or the orchestrator.
type pending struct {
	at   time.Time
	what string
	do   func() error
}

func (s *soak) violation(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs for a minute; skipped with -short")
	}
	dur := defaultDuration
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 10*time.Second || d > 24*time.Hour {
			t.Fatalf("SOAK_DURATION=%q: want a Go duration from 10s to 24h", v)
		}
		dur = d
	}
	seed := uint64(time.Now().UnixNano()) % 1_000_000_000
	if v := os.Getenv("SOAK_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SOAK_SEED=%q: want an unsigned integer", v)
		}
		seed = n
	}
	t.Logf("soak: seed %d (SOAK_SEED=%d reproduces the fault schedule and the tasks), %s of load, %d clients, %d workers",
		seed, seed, dur, numClients, numWorkers)

	dir, err := os.MkdirTemp("", "llorch-soak-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 2 * numClients
	s := &soak{t: t, ctx: ctx, dir: dir, rng: rand.New(rand.NewPCG(seed, 0x50a4)), hc: &http.Client{Transport: tr},
		faults: map[string]int{}, killedM: map[string]float64{}}
	s.o = &orchestrator{bin: kit.Bin, dir: dir, dataDir: filepath.Join(dir, "data"), listen: "127.0.0.1:0"}
	t.Cleanup(func() {
		cancel()
		s.killAll()
		if t.Failed() || os.Getenv("SOAK_KEEP_LOGS") != "" {
			t.Logf("soak: logs of every process are kept in %s (seed %d)", dir, seed)
		} else {
			os.RemoveAll(dir)
		}
	})

	if err := s.o.start(ctx); err != nil {
		t.Fatal(err)
	}
	if s.oc, err = orchclient.New(s.o.url, "", s.hc); err != nil {
		t.Fatal(err)
	}
	for i := range numWorkers {
		w := &worker{id: fmt.Sprintf("w%d", i+1)}
		s.ws = append(s.ws, w)
		if err := startWorker(kit.Bin, kit.Tiny, dir, s.o.url, w); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.waitWorkers(testkit.ReadyTimeout); err != nil {
		t.Fatal(err)
	}

	stopCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	begin := time.Now()
	ld := &load{url: s.o.url, hc: s.hc, oc: s.oc, seed: seed, stop: stopCtx, hard: begin.Add(dur + drainLimit), refusals: map[string]int{}}
	var clients sync.WaitGroup
	for i := range numClients {
		clients.Add(1)
		go func() { defer clients.Done(); ld.run(i) }()
	}

	s.chaos(begin, dur)
	stopLoad()
	s.recover()
	if err := s.waitWorkers(drainLimit); err != nil {
		s.violation("after the load: %v", err)
	}
	drained := make(chan struct{})
	go func() { clients.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(time.Until(ld.hard) + 10*time.Second):
		t.Fatalf("the clients did not finish within %s after the load", drainLimit)
	}
	loadTime := time.Since(begin)

	outcomes, reconnects := s.checkTasks(ld)
	s.checkOrchestratorTasks()
	end := s.settle()
	s.checkLogs()

	// The summary.
	var b strings.Builder
	total := 0
	for _, n := range outcomes {
		total += n
	}
	fmt.Fprintf(&b, "soak summary (seed %d, %s of load, %s in all):\n", seed, dur, loadTime.Round(time.Second))
	fmt.Fprintf(&b, "  tasks: %d accepted: %s\n", total, counts(outcomes))
	fmt.Fprintf(&b, "  submissions not accepted: %s (no answer: perhaps accepted; such tasks ended too)\n", counts(ld.refusals))
	fmt.Fprintf(&b, "  faults: %s; %d skipped (never the last running worker)\n", counts(s.faults), s.skipped)
	fmt.Fprintf(&b, "  reconnects: %d (streams resumed with Last-Event-ID)\n", reconnects)
	last, _ := metrics(ctx, s.hc, s.o.url)
	fmt.Fprintf(&b, "  orchestrator (summed over %d incarnations): resumes %s; failed attempts %s; tasks %s\n",
		len(s.o.procs), s.counter(last, "llorch_resumes_total"), s.counter(last, "llorch_attempts_failed_total"), s.counter(last, "llorch_tasks_total"))
	fmt.Fprintf(&b, "  orchestrator starts until healthy: %s\n", spread(s.o.startups))
	fmt.Fprintf(&b, "  last orchestrator: after warm-up (largest of %d samples %s) %s; settled %s\n", s.warmN, s.warmNote, s.warm, end)
	for _, l := range s.lost {
		fmt.Fprintf(&b, "  WORKER_LOST: %s\n", l)
	}
	fmt.Fprintf(&b, "  violations: %d", len(s.violations))
	t.Log(b.String())
	for i, v := range s.violations {
		if i == 50 {
			t.Errorf("... and %d more violations", len(s.violations)-50)
			break
		}
		t.Errorf("violation: %s", v)
	}
}

// chaos injects faults on the seeded schedule until the load ends, in time
// order: worker faults, orchestrator kills (in their window), and the
// recoveries they scheduled.
func (s *soak) chaos(begin time.Time, dur time.Duration) {
	s.begin = begin
	defer func() {
		if err := os.WriteFile(filepath.Join(s.dir, "faults.txt"), []byte(s.faultLog.String()), 0o644); err != nil {
			s.t.Error(err)
		}
	}()
	end := begin.Add(dur)
	orchFrom, orchTo := begin.Add(dur/10), begin.Add(dur*6/10)
	warmAt := begin.Add(dur * 3 / 4)
	nextW := begin.Add(between(s.rng, workerFaultMin, workerFaultMax))
	nextO := orchFrom.Add(between(s.rng, 0, orchFaultMin))
	warmed := 0 // warm-up samples taken
	for {
		s.checkExits()
		now := time.Now()
		if warmed < warmSamples && !now.Before(warmAt) && s.o.p != nil && now.Sub(s.o.p.Started) >= 5*time.Second {
			s.takeWarm()
			if warmed++; warmed == 1 {
				s.warmNote = "from " + now.Sub(begin).Round(time.Second).String() + " of load"
			}
			warmAt = now.Add(time.Second)
		}
		// The earliest due item, if any.
		kind, at := "", end
		if len(s.pending) > 0 && s.pending[0].at.Before(at) {
			kind, at = "pending", s.pending[0].at
		}
		if nextW.Before(at) {
			kind, at = "worker", nextW
		}
		if nextO.Before(orchTo) && nextO.Before(at) {
			kind, at = "orchestrator", nextO
		}
		if wait := time.Until(at); wait > 0 {
			time.Sleep(min(wait, 50*time.Millisecond)) // and check for exits meanwhile
			continue
		}
		switch kind {
		case "":
			if warmed == 0 {
				s.takeWarm()
				s.warmNote = "at the end of the load: the last orchestrator started less than 5s before 75% of it"
			}
			return
		case "pending":
			p := s.pending[0]
			s.pending = s.pending[1:]
			s.record(p.at, p.what)
			if err := p.do(); err != nil {
				s.t.Fatalf("%s: %v", p.what, err)
			}
		case "worker":
			s.workerFault(at)
			nextW = at.Add(between(s.rng, workerFaultMin, workerFaultMax))
		case "orchestrator":
			s.orchestratorFault(at)
			nextO = at.Add(between(s.rng, orchFaultMin, orchFaultMax))
		}
	}
}

// record notes a fault or recovery at its scheduled time.
func (s *soak) record(at time.Time, what string) {
	fmt.Fprintf(&s.faultLog, "%9.3fs %s\n", at.Sub(s.begin).Seconds(), what)
}

// schedule adds a recovery due at: times come from the fault's scheduled
// time, not the clock, so a seed gives the same sequence however long the
// kills and restarts take.
func (s *soak) schedule(at time.Time, what string, do func() error) {
	s.pending = append(s.pending, pending{at: at, what: what, do: do})
	sort.SliceStable(s.pending, func(i, j int) bool { return s.pending[i].at.Before(s.pending[j].at) })
}

// workerFault kills -9 or freezes one running worker, never the last one.
func (s *soak) workerFault(at time.Time) {
	var up []*worker
	for _, w := range s.ws {
		if w.up() {
			up = append(up, w)
		}
	}
	if len(up) <= 1 {
		s.skipped++
		s.record(at, "no worker fault: one worker runs")
		return
	}
	w := up[s.rng.IntN(len(up))]
	if s.rng.Float64() < 0.55 {
		if err := w.p.kill(); err != nil {
			s.t.Fatal(err)
		}
		w.p = nil
		s.faults["worker kill -9"]++
		s.record(at, "kill -9 "+w.id)
		s.schedule(at.Add(between(s.rng, 300*time.Millisecond, 3*time.Second)), "restart "+w.id, func() error {
			return startWorker(kit.Bin, kit.Tiny, s.dir, s.o.url, w)
		})
		return
	}
	p := w.p
	if err := p.stop(); err != nil {
		s.t.Fatal(err)
	}
	s.faults["worker SIGSTOP"]++
	s.record(at, "SIGSTOP "+w.id)
	s.schedule(at.Add(between(s.rng, time.Second, 8*time.Second)), "SIGCONT "+p.Name, func() error {
		if w.p != p || !p.stopped {
			return nil
		}
		return p.cont()
	})
}

// orchestratorFault kills -9 the orchestrator (its counters read first) and
// schedules its restart on the same address and data dir.
func (s *soak) orchestratorFault(at time.Time) {
	if s.o.p == nil {
		s.skipped++
		return
	}
	if m, err := metrics(s.ctx, s.hc, s.o.url); err == nil {
		for k, v := range m {
			if strings.HasPrefix(k, "llorch_") && strings.Contains(k, "_total") {
				s.killedM[k] += v
			}
		}
	}
	if err := s.o.p.kill(); err != nil {
		s.t.Fatal(err)
	}
	s.o.p = nil
	s.faults["orchestrator kill -9"]++
	s.record(at, "kill -9 the orchestrator")
	s.schedule(at.Add(between(s.rng, 200*time.Millisecond, 2*time.Second)), "restart the orchestrator", func() error {
		return s.o.start(s.ctx)
	})
}

// checkExits makes a process that exited without being killed a violation,
// and starts it again so the soak goes on.
func (s *soak) checkExits() {
	if p := s.o.p; p != nil && p.Exited() && !p.killed {
		s.violation("%s exited on its own (%v):\n%s", p.Name, p.Err(), p.Tail(30))
		p.killed = true
		s.o.p = nil
		if err := s.o.start(s.ctx); err != nil {
			s.t.Fatal(err)
		}
	}
	for _, w := range s.ws {
		if p := w.p; p != nil && p.Exited() && !p.killed {
			s.violation("%s exited on its own (%v):\n%s", p.Name, p.Err(), p.Tail(30))
			p.killed = true
			if err := startWorker(kit.Bin, kit.Tiny, s.dir, s.o.url, w); err != nil {
				s.t.Fatal(err)
			}
		}
	}
}

// recover runs every scheduled recovery now and makes sure every process
// runs and none is frozen.
func (s *soak) recover() {
	for _, p := range s.pending {
		if err := p.do(); err != nil {
			s.t.Fatalf("%s: %v", p.what, err)
		}
	}
	s.pending = nil
	s.checkExits()
	if s.o.p == nil {
		if err := s.o.start(s.ctx); err != nil {
			s.t.Fatal(err)
		}
	}
	for _, w := range s.ws {
		if w.p == nil {
			if err := startWorker(kit.Bin, kit.Tiny, s.dir, s.o.url, w); err != nil {
				s.t.Fatal(err)
			}
		} else if w.p.stopped {
			if err := w.p.cont(); err != nil {
				s.t.Fatal(err)
			}
		}
	}
}

// waitWorkers waits until the orchestrator says every worker is healthy.
func (s *soak) waitWorkers(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		ws, err := s.oc.Workers(s.ctx)
		states := map[string]string{}
		for _, w := range ws {
			states[w.WorkerID] = w.State
		}
		ok := err == nil
		for _, w := range s.ws {
			ok = ok && states[w.id] == api.WorkerHealthy
		}
		if ok {
			return nil
		}
		s.checkExits()
		if time.Now().After(deadline) {
			return fmt.Errorf("workers not all healthy after %s: %v %v", limit, states, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *soak) killAll() {
	if s.o != nil {
		for _, p := range s.o.procs {
			_ = p.kill()
		}
	}
	for _, w := range s.ws {
		for _, p := range w.procs {
			_ = p.cont()
			_ = p.kill()
		}
	}
}

// takeWarm samples the orchestrator under load; the warm-up value is the
// largest of the samples.
func (s *soak) takeWarm() {
	m, err := metrics(s.ctx, s.hc, s.o.url)
	if err != nil {
		s.t.Fatalf("warm-up sample: %v", err)
	}
	x := sampleOf(m)
	s.warmN++
	s.warm.goroutines = max(s.warm.goroutines, x.goroutines)
	s.warm.rss = max(s.warm.rss, x.rss)
	s.warm.heap = max(s.warm.heap, x.heap)
	s.warm.at = x.at
}

func sampleOf(m map[string]float64) sample {
	return sample{goroutines: m["go_goroutines"], rss: m["process_resident_memory_bytes"], heap: m["go_memstats_heap_inuse_bytes"], at: time.Now()}
}

// settle waits until the orchestrator has forgotten every task (the
// result TTL passed) and its goroutines are back near the warm-up value,
// then checks its goroutines and resident memory against that value.
func (s *soak) settle() sample {
	deadline := time.Now().Add(resultTTL + time.Minute)
	for {
		ts, err := s.oc.Tasks(s.ctx, "")
		if err != nil {
			s.violation("listing tasks: %v", err)
			break
		}
		if len(ts) == 0 {
			break
		}
		if time.Now().After(deadline) {
			s.violation("%d tasks still kept %s after the load (result TTL %s)", len(ts), resultTTL+time.Minute, resultTTL)
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	deadline = time.Now().Add(30 * time.Second)
	var end sample
	for {
		s.hc.CloseIdleConnections()
		m, err := metrics(s.ctx, s.hc, s.o.url)
		if err != nil {
			s.violation("settled sample: %v", err)
			return end
		}
		end = sampleOf(m)
		if end.goroutines <= s.warm.goroutines+goroutineSlack || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if end.goroutines > s.warm.goroutines+goroutineSlack {
		s.violation("the last orchestrator has %.0f goroutines when idle, %.0f under load after warm-up (slack %d)",
			end.goroutines, s.warm.goroutines, goroutineSlack)
	}
	if end.rss > s.warm.rss*rssFactor+rssSlack {
		s.violation("the last orchestrator's resident memory grew from %.1f MiB after warm-up to %.1f MiB",
			s.warm.rss/(1<<20), end.rss/(1<<20))
	}
	return end
}

// checkTasks checks every accepted task and returns the count by outcome
// and the reconnects. Tasks that ended within the result TTL are replayed
// once more: the stream must still be what the client received.
func (s *soak) checkTasks(ld *load) (map[string]int, int) {
	out := map[string]int{}
	reconnects, again := 0, 0
	for _, rec := range ld.recs {
		outcome, bad := checkTask(rec)
		if outcome != outViolation && time.Since(rec.EndedAt) < resultTTL-10*time.Second {
			ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
			rp, err := replay(ctx, s.hc, s.o.url, rec.TaskID)
			cancel()
			again++
			if d := diffEvents(rp, rec.Events); err != nil || d != "" {
				bad = append(bad, fmt.Sprintf("replay at the end: %v %s", err, d))
				outcome = outViolation
			}
		}
		out[outcome]++
		reconnects += max(0, rec.Connections-1)
		if outcome == outWorkerLost && len(s.lost) < 20 {
			ev, _ := api.DecodeEvent(rec.Events[len(rec.Events)-1].Name, rec.Events[len(rec.Events)-1].Data)
			s.lost = append(s.lost, fmt.Sprintf("%s after %d events: %s", rec.TaskID, len(rec.Events), ev.Error.Message))
		}
		for _, b := range bad {
			s.violation("task %s (client %d, stream %v, %s, max_tokens %d, temperature %g, %d connections): %s",
				rec.TaskID, rec.Client, rec.Stream, rec.Priority, rec.MaxTokens, rec.Temp, rec.Connections, b)
		}
	}
	s.t.Logf("soak: %d tasks replayed again at the end (those that ended within the result TTL)", again)
	if n, all := out[outWorkerLost], len(ld.recs); n > max(maxLostFloor, all*maxLostPercent/100) {
		s.violation("%d of %d tasks failed with WORKER_LOST: more than %d%%", n, all, maxLostPercent)
	}
	return out, reconnects
}

// checkOrchestratorTasks waits (up to a minute) until the orchestrator has
// no queued or running task: those accepted while the client lost the
// answer must have ended too.
func (s *soak) checkOrchestratorTasks() {
	deadline := time.Now().Add(time.Minute)
	for {
		var left []string
		for _, st := range []string{api.TaskQueued, api.TaskRunning} {
			ts, err := s.oc.Tasks(s.ctx, st)
			if err != nil {
				s.violation("listing %s tasks: %v", st, err)
				return
			}
			for _, t := range ts {
				left = append(left, t.TaskID+" "+t.Status)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.violation("tasks still not ended a minute after the load: %v", left)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkLogs scans every process's log for data races, panics and fatal
// errors.
func (s *soak) checkLogs() {
	procs := slices.Clone(s.o.procs)
	for _, w := range s.ws {
		procs = append(procs, w.procs...)
	}
	errorLines := 0
	for _, p := range procs {
		bad, n := p.logFindings()
		for _, b := range bad {
			s.violation("%s", b)
		}
		errorLines += n
	}
	s.t.Logf("soak: %d processes started; %d log lines at level ERROR in all", len(procs), errorLines)
}

// counter sums a counter's series over the killed orchestrators and the
// last one, by their labels.
func (s *soak) counter(last map[string]float64, name string) string {
	sum := map[string]int{}
	for _, m := range []map[string]float64{s.killedM, last} {
		for k, v := range m {
			if rest, ok := strings.CutPrefix(k, name); ok && (rest == "" || rest[0] == '{') {
				sum[strings.Trim(rest, "{}")] += int(v)
			}
		}
	}
	return counts(sum)
}

// counts prints a tally in a stable order.
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if m[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// spread prints durations as min / median / max.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("%d, min %s, median %s, max %s", len(ds), r(ds[0]), r(ds[len(ds)/2]), r(ds[len(ds)-1]))
}
