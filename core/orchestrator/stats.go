package orchestrator

import (
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/llorch/llorch/core/api"
)

// The stats part: the sample ring behind GET /v2/stats and its stream
// (http_stats.go). Every StatsInterval its loop takes one api.StatsSample
// and keeps the last 15 minutes of them (api.StatsSpanMs).
//
// What happened over an interval (tokens relayed, first tokens, tasks
// ended) is counted where it happens: the tasks part keeps a statsAcc under
// the lock it holds anyway, and the sampler swaps it for an empty one.
// Gauges (the queue, running attempts, workers) are read from their parts
// at the sample, one lock at a time; rejections are the growth of
// llorch_rejections_total. The ring's own lock is a leaf.
//
// Memory is fixed by the interval: the columns hold StatsSpanMs/interval
// samples, allocated once; each worker that relayed tokens in the last 15
// minutes has a float32 ring of the same length, dropped once its last
// nonzero value is overwritten; the newest few samples are kept whole (with
// their models and every worker's rate) for the stream.

// Limits of the stats part.
const (
	minStatsInterval = 10 * time.Millisecond
	maxStatsInterval = time.Minute
	// maxTTFTPerSample bounds the first-token times one interval keeps for
	// its percentiles: beyond it they are a uniform sample (reservoir).
	maxTTFTPerSample = 4096
	// recentSamples is how many of the newest samples are kept whole: a
	// stream subscriber further behind skips to them.
	recentSamples = 8
	// maxStatsSubscribers bounds the open GET /v2/stats/stream streams.
	maxStatsSubscribers = 64
	// freeWorkerRings bounds the released per-worker rings kept for reuse.
	freeWorkerRings = 16
)

// statsAcc is what happened over one interval. The tasks part fills it,
// guarded by tasks.mu.
type statsAcc struct {
	byWorker map[string]int // tokens relayed, by the attempt's worker
	ttft     []float64      // ms of the first tokens relayed (at most maxTTFTPerSample)
	firsts   int            // first tokens relayed (the reservoir's count)
	ok       int
	cancel   int
	failed   int
}

func newStatsAcc() *statsAcc { return &statsAcc{byWorker: map[string]int{}} }

func (a *statsAcc) reset() {
	clear(a.byWorker)
	a.ttft = a.ttft[:0]
	a.firsts, a.ok, a.cancel, a.failed = 0, 0, 0, 0
}

// countTokenLocked counts a token relayed for t (the hot path: one map
// increment under the lock the relay holds).
func (ts *tasks) countTokenLocked(t *task) { ts.acc.byWorker[t.workerID]++ }

// countFirstLocked counts a task's first token relayed, ttft after its
// admission.
func (ts *tasks) countFirstLocked(ttft time.Duration) {
	a := ts.acc
	a.firsts++
	ms := float64(ttft.Nanoseconds()) / 1e6
	if len(a.ttft) < maxTTFTPerSample {
		a.ttft = append(a.ttft, ms)
	} else if i := rand.IntN(a.firsts); i < maxTTFTPerSample {
		a.ttft[i] = ms
	}
}

// countEndLocked counts a task that ended with status, and moves the
// tasks' sequence number.
func (ts *tasks) countEndLocked(status string) {
	switch status {
	case api.TaskSucceeded:
		ts.acc.ok++
	case api.TaskCancelled:
		ts.acc.cancel++
	default:
		ts.acc.failed++
	}
	ts.seq++
}

// swapStats hands the interval's counts to the sampler for an empty acc,
// with the tasks' sequence number.
func (ts *tasks) swapStats(empty *statsAcc) (*statsAcc, uint64) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	a := ts.acc
	ts.acc = empty
	return a, ts.seq
}

// statsLoad is the dispatcher's part of a sample: the queue and the
// running attempts, by model.
func (d *dispatcher) statsLoad(models map[string]*api.ModelLoad) (queuedInteractive, queuedBatch, running int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for k, n := range d.depth {
		if n == 0 {
			continue
		}
		ml := modelLoad(models, k.model)
		if k.priority == api.PriorityBatch {
			ml.QueuedBatch += n
			queuedBatch += n
		} else {
			ml.QueuedInteractive += n
			queuedInteractive += n
		}
	}
	for _, a := range d.running {
		modelLoad(models, a.e.model).Running++
	}
	return queuedInteractive, queuedBatch, len(d.running)
}

// statsLoad is the registry's part of a sample: every model with a worker
// that is not dead, counting the healthy and draining ones; and the
// workers' sequence number.
func (r *registry) statsLoad(models map[string]*api.ModelLoad) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.workers {
		switch w.rec.State {
		case api.WorkerDead:
		case api.WorkerHealthy, api.WorkerDraining:
			modelLoad(models, w.rec.Model.ID).Workers++
		default:
			modelLoad(models, w.rec.Model.ID)
		}
	}
	return r.seq
}

func modelLoad(models map[string]*api.ModelLoad, id string) *api.ModelLoad {
	ml := models[id]
	if ml == nil {
		ml = &api.ModelLoad{Model: id}
		models[id] = ml
	}
	return ml
}

// statPoint is one sample's columns in the ring.
type statPoint struct {
	t                 int64
	tps               float64
	p50, p95          float32 // NaN: no first token in the interval
	queuedInteractive int32
	queuedBatch       int32
	running           int32
	ok, rejected      int32
	cancelled, failed int32
}

// workerRing is one worker's tokens per second, a value per ring slot.
type workerRing struct {
	vals []float32
	last int64 // the number of the last sample with a nonzero value
}

// stats is the sample ring.
type stats struct {
	interval time.Duration
	size     int  // samples the ring holds
	manual   bool // no loop: samples are taken by calling take (tests)
	tasks    *tasks
	disp     *dispatcher
	reg      *registry
	// rejections gathers llorch_rejections_total alone.
	rejections prometheus.Gatherer

	takeMu   sync.Mutex // one sample at a time; guards what follows
	empty    *statsAcc  // the acc the tasks get at the next swap
	prev     time.Time  // the last sample's time
	rejected float64    // llorch_rejections_total at the last sample

	mu      sync.Mutex
	pts     []statPoint
	n       int64 // samples taken; the newest is n-1, in slot (n-1)%size
	workers map[string]*workerRing
	free    [][]float32 // released worker rings, zeroed
	recent  [recentSamples]*api.StatsSample
	changed chan struct{} // closed and replaced at every sample

	subs atomic.Int32 // open streams
}

func newStats(cfg *Config, m *metrics, ts *tasks, d *dispatcher, r *registry) *stats {
	st := newRing(cfg.StatsInterval)
	rej := prometheus.NewRegistry()
	rej.MustRegister(m.rejections)
	st.tasks, st.disp, st.reg, st.rejections = ts, d, r, rej
	return st
}

// newRing allocates the ring for samples every interval.
func newRing(interval time.Duration) *stats {
	size := max(int(int64(api.StatsSpanMs)*int64(time.Millisecond)/int64(interval)), 1)
	return &stats{interval: interval, size: size, pts: make([]statPoint, size), empty: newStatsAcc(),
		workers: map[string]*workerRing{}, changed: make(chan struct{})}
}

// loop takes a sample every interval until ctx ends.
func (st *stats) loop(ctx context.Context) {
	if st.manual {
		return
	}
	tick(ctx, st.interval, nil, func() { st.take(time.Now()) })
}

// take takes the sample of the interval that ends at now and puts it in
// the ring.
func (st *stats) take(now time.Time) *api.StatsSample {
	st.takeMu.Lock()
	defer st.takeMu.Unlock()
	acc, tasksSeq := st.tasks.swapStats(st.empty)
	models := map[string]*api.ModelLoad{}
	qi, qb, running := st.disp.statsLoad(models)
	workersSeq := st.reg.statsLoad(models)
	rejected := st.rejectionsTotal()

	elapsed := now.Sub(st.prev)
	if st.prev.IsZero() || elapsed <= 0 {
		elapsed = st.interval
	}
	st.prev = now
	secs := elapsed.Seconds()
	s := &api.StatsSample{T: now.UnixMilli(), QueuedInteractive: qi, QueuedBatch: qb, Running: running,
		OK: acc.ok, Cancelled: acc.cancel, Failed: acc.failed, Rejected: int(max(0, rejected-st.rejected)),
		TasksSeq: tasksSeq, WorkersSeq: workersSeq}
	st.rejected = rejected
	tokens := 0
	if len(acc.byWorker) > 0 {
		s.Workers = make(map[string]float64, len(acc.byWorker))
		for id, n := range acc.byWorker {
			tokens += n
			s.Workers[id] = float64(n) / secs
		}
	}
	s.TokensPerSecond = float64(tokens) / secs
	if len(acc.ttft) > 0 {
		slices.Sort(acc.ttft)
		s.TTFTP50Ms, s.TTFTP95Ms = new(percentile(acc.ttft, 0.50)), new(percentile(acc.ttft, 0.95))
	}
	if len(models) > 0 {
		s.Models = make([]api.ModelLoad, 0, len(models))
		for _, ml := range models {
			s.Models = append(s.Models, *ml)
		}
		slices.SortFunc(s.Models, func(a, b api.ModelLoad) int { return strings.Compare(a.Model, b.Model) })
	}
	acc.reset()
	st.empty = acc
	st.push(s)
	return s
}

// rejectionsTotal sums llorch_rejections_total over its labels.
func (st *stats) rejectionsTotal() float64 {
	mfs, err := st.rejections.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// push adds a sample to the ring and wakes the streams.
func (st *stats) push(s *api.StatsSample) {
	st.mu.Lock()
	defer st.mu.Unlock()
	slot := int(st.n % int64(st.size))
	p := statPoint{t: s.T, tps: s.TokensPerSecond, p50: float32(math.NaN()), p95: float32(math.NaN()),
		queuedInteractive: int32(s.QueuedInteractive), queuedBatch: int32(s.QueuedBatch), running: int32(s.Running),
		ok: int32(s.OK), rejected: int32(s.Rejected), cancelled: int32(s.Cancelled), failed: int32(s.Failed)}
	if s.TTFTP50Ms != nil {
		p.p50, p.p95 = float32(*s.TTFTP50Ms), float32(*s.TTFTP95Ms)
	}
	st.pts[slot] = p
	for id, w := range st.workers {
		v := s.Workers[id]
		w.vals[slot] = float32(v)
		switch {
		case v != 0:
			w.last = st.n
		case st.n-w.last >= int64(st.size): // its last nonzero value was just overwritten
			delete(st.workers, id)
			if len(st.free) < freeWorkerRings {
				clear(w.vals)
				st.free = append(st.free, w.vals)
			}
		}
	}
	for id, v := range s.Workers {
		if v == 0 || st.workers[id] != nil {
			continue
		}
		var vals []float32
		if k := len(st.free); k > 0 {
			vals, st.free = st.free[k-1], st.free[:k-1]
		} else {
			vals = make([]float32, st.size)
		}
		vals[slot] = float32(v)
		st.workers[id] = &workerRing{vals: vals, last: st.n}
	}
	st.recent[st.n%recentSamples] = s
	st.n++
	close(st.changed)
	st.changed = make(chan struct{})
}

// window is GET /v2/stats: the samples of the last window (at most the
// ring), oldest first, with the topN workers by tokens in it.
func (st *stats) window(window time.Duration, topN int) *api.Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	k := min(max(int64(window/st.interval), 1), st.n, int64(st.size))
	n := int(k)
	out := &api.Stats{IntervalMs: st.interval.Milliseconds(), WindowMs: window.Milliseconds(),
		T: make([]int64, n), TokensPerSecond: make(api.Series, n), QueuedInteractive: make([]int, n),
		QueuedBatch: make([]int, n), Running: make([]int, n), TTFTP50Ms: make(api.Series, n),
		TTFTP95Ms: make(api.Series, n), OK: make([]int, n), Rejected: make([]int, n), Cancelled: make([]int, n),
		Failed: make([]int, n), Workers: []api.WorkerSeries{}}
	first := st.n - k
	slot := func(i int) int { return int((first + int64(i)) % int64(st.size)) }
	for i := range n {
		p := &st.pts[slot(i)]
		out.T[i], out.TokensPerSecond[i] = p.t, p.tps
		out.QueuedInteractive[i], out.QueuedBatch[i], out.Running[i] = int(p.queuedInteractive), int(p.queuedBatch), int(p.running)
		out.TTFTP50Ms[i], out.TTFTP95Ms[i] = float64(p.p50), float64(p.p95)
		out.OK[i], out.Rejected[i], out.Cancelled[i], out.Failed[i] = int(p.ok), int(p.rejected), int(p.cancelled), int(p.failed)
	}
	if topN > 0 && n > 0 {
		type busy struct {
			id  string
			sum float64
			w   *workerRing
		}
		var ranked []busy
		for id, w := range st.workers {
			if w.last < first {
				continue // nothing in the window
			}
			sum := 0.0
			head, tail := st.span(w.vals, first, n)
			for _, v := range head {
				sum += float64(v)
			}
			for _, v := range tail {
				sum += float64(v)
			}
			if sum > 0 {
				ranked = append(ranked, busy{id, sum, w})
			}
		}
		slices.SortFunc(ranked, func(a, b busy) int {
			if c := cmp.Compare(b.sum, a.sum); c != 0 {
				return c
			}
			return strings.Compare(a.id, b.id)
		})
		for _, b := range ranked[:min(len(ranked), topN)] {
			ser := make(api.Series, 0, n)
			head, tail := st.span(b.w.vals, first, n)
			for _, v := range head {
				ser = append(ser, float64(v))
			}
			for _, v := range tail {
				ser = append(ser, float64(v))
			}
			out.Workers = append(out.Workers, api.WorkerSeries{WorkerID: b.id, TokensPerSecond: ser})
		}
	}
	if st.n > 0 {
		out.Last = busiest(st.recent[(st.n-1)%recentSamples], topN)
	}
	return out
}

// span is the values of samples first..first+n-1 of a worker ring, oldest
// first, as its two contiguous parts.
func (st *stats) span(vals []float32, first int64, n int) (head, tail []float32) {
	start := int(first % int64(st.size))
	if end := start + n; end > st.size {
		return vals[start:], vals[:end-st.size]
	}
	return vals[start : start+n], nil
}

// busiest is s with its per-worker rates cut to the topN highest (ties by
// id). s itself is not changed: it is shared.
func busiest(s *api.StatsSample, topN int) *api.StatsSample {
	c := *s
	if len(s.Workers) <= topN {
		return &c
	}
	c.Workers = nil
	if topN <= 0 {
		return &c
	}
	ids := make([]string, 0, len(s.Workers))
	for id := range s.Workers {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		if c := cmp.Compare(s.Workers[b], s.Workers[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	c.Workers = make(map[string]float64, topN)
	for _, id := range ids[:topN] {
		c.Workers[id] = s.Workers[id]
	}
	return &c
}

// since returns the whole samples taken after sample number next (at most
// the recent ones: a reader further behind skips the older), the number to
// ask from next time, and a channel closed at the next sample.
func (st *stats) since(next int64) ([]*api.StatsSample, int64, <-chan struct{}) {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []*api.StatsSample
	for i := max(next, st.n-recentSamples, 0); i < st.n; i++ {
		out = append(out, st.recent[i%recentSamples])
	}
	return out, st.n, st.changed
}

// after is the number of the first recent sample taken after t (Unix ms),
// or the next sample's number when none was.
func (st *stats) after(t int64) int64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	for i := max(st.n-recentSamples, 0); i < st.n; i++ {
		if st.recent[i%recentSamples].T > t {
			return i
		}
	}
	return st.n
}
