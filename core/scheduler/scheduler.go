package scheduler

import (
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/llorch/llorch/core/api"
)

// Worker is the orchestrator's snapshot of one worker.
type Worker struct {
	ID, Pool, Model string
	// State is api.WorkerHealthy, WorkerUnhealthy, WorkerDead or
	// WorkerDraining. Only healthy workers are scheduled.
	State string
	// SlotsBusy is what the orchestrator counts as occupied, including
	// tasks it has assigned but the worker has not reported yet.
	SlotsTotal, SlotsBusy int
	// Load is the recent busy fraction, 0..1 (an EWMA kept by the
	// orchestrator).
	Load float64
	// TokensPerSecond is informational: it is not scored.
	TokensPerSecond float64
	Labels          map[string]string
	// Ctx is the context of one slot in tokens (0: unknown).
	Ctx int
	// Digest identifies the model file ("" when the worker did not say).
	Digest string
}

// Task is what the scheduler needs to know about a task.
type Task struct {
	Model     string
	PinWorker string // "" = any worker
	PinPool   string // "" = any pool
	SessionID string // "" = no session
	// Digest, when set, admits only workers with this model file: a task
	// continued from its tokens needs the same vocabulary.
	Digest string
	// PromptTokens estimates the prompt's length, for the cache term (0:
	// unknown).
	PromptTokens int
}

// Weights scale the score terms. The zero value means the defaults: FreeSlots
// 1, Load 0.5, Affinity 1, Cache 1, Room 0.25. A Weights with any field set
// is used as given.
type Weights struct {
	FreeSlots float64 // times the free-slot fraction
	Load      float64 // times the recent load, subtracted
	Affinity  float64 // added to the worker that last served the session
	Cache     float64 // times the fraction of the prompt expected cached
	Room      float64 // times the fraction of slots holding no cached prompt
}

// DefaultWeights are the weights of the zero Weights.
var DefaultWeights = Weights{FreeSlots: 1, Load: 0.5, Affinity: 1, Cache: 1, Room: 0.25}

// OrDefault returns w, or the default weights when w is the zero value.
func (w Weights) OrDefault() Weights {
	if w == (Weights{}) {
		return DefaultWeights
	}
	return w
}

// CacheFloor is the prompt length below which the cache term does not grow
// with the fraction cached: 200 of 250 tokens cached saves little, and
// must not outweigh load.
const CacheFloor = 256

// Options tune one scheduling call.
type Options struct {
	// SessionWorker returns the worker that last served session s, "" if
	// none; nil means no session affinity.
	SessionWorker func(s string) string
	// Bias is added to a candidate's score, by worker ID (routing scripts'
	// "score" decisions); nil means none.
	Bias map[string]float64
	// Weights of the score terms; the zero value means the defaults.
	Weights Weights
	// Cached, when not nil, holds by worker index the prompt tokens each
	// worker is expected to hold in its KV cache (the prefix index).
	Cached []int
	// Room, when not nil, holds by worker index the fraction of its slots
	// that hold no cached prompt (0..1): a task placed there evicts no
	// other conversation's cache.
	Room []float64
}

// Reason is why a worker was filtered out.
type Reason uint8

// Reasons, in the order Filter checks them.
const (
	NotPinnedWorker Reason = iota + 1
	NotInPinnedPool
	WrongModel
	WrongDigest
	NotHealthy
	Draining
	NoFreeSlot
	// FailedBefore is not a filter of the scheduler's: the caller reports
	// it for a worker that already failed the task while another one may
	// take it.
	FailedBefore
)

var reasonText = [...]string{
	NotPinnedWorker: "not the pinned worker",
	NotInPinnedPool: "not in the pinned pool",
	WrongModel:      "wrong model",
	WrongDigest:     "another file of the model",
	NotHealthy:      "not healthy",
	Draining:        "draining",
	NoFreeSlot:      "no free slot",
	FailedBefore:    "failed this task before",
}

// String returns a phrase a person can read, such as "no free slot".
func (r Reason) String() string {
	if int(r) < len(reasonText) && reasonText[r] != "" {
		return reasonText[r]
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// Rejection says why one worker was filtered out.
type Rejection struct {
	WorkerID string
	Reason   Reason
	// Detail is the fact behind the reason: "serves qwen", "4/4 busy",
	// "state dead", "in pool gpu-a", "task pinned to w3"; "" for Draining.
	Detail string
}

// String returns the reason and its detail: "no free slot (4/4 busy)".
func (r Rejection) String() string {
	if r.Detail == "" {
		return r.Reason.String()
	}
	return r.Reason.String() + " (" + r.Detail + ")"
}

// Terms are the parts of the chosen worker's score, for explanations.
type Terms struct {
	FreeSlots float64 // weighted free-slot fraction
	Load      float64 // weighted load, already subtracted from the score
	Affinity  float64 // session affinity bonus, 0 when none
	Cache     float64 // weighted fraction of the prompt expected cached
	Room      float64 // weighted fraction of slots with no cached prompt
	Bias      float64 // routing bias, 0 when none
}

// Decision is the outcome of scheduling one task.
type Decision struct {
	// WorkerID is the chosen worker, "" when no worker fits.
	WorkerID string
	// Score is the chosen worker's score.
	Score float64
	// Terms break Score down.
	Terms Terms
	// Candidates are the indexes of the workers that passed the filter,
	// in input order.
	Candidates []int
	// Rejected has every worker that failed the filter, in input order.
	Rejected []Rejection
	// Scores are the candidates' scores, aligned with Candidates (set by
	// ScheduleInto, not by Filter).
	Scores []float64

	details []cachedDetail // detail strings reused across calls
}

// Filter resets d and fills its Candidates and Rejected for t over ws.
// It reuses d's slices.
func Filter(t Task, ws []Worker, d *Decision) {
	*d = Decision{Candidates: d.Candidates[:0], Rejected: d.Rejected[:0], Scores: d.Scores[:0], details: d.details}
	if cap(d.Rejected) < len(ws) { // size once rather than grow by appends
		d.Candidates = make([]int, 0, len(ws))
		d.Rejected = make([]Rejection, 0, len(ws))
	}
	for i := range ws {
		w := &ws[i]
		var r Reason
		var detail string
		switch pin := t.pinned(w); {
		case pin == NotPinnedWorker:
			r, detail = NotPinnedWorker, d.detail(NotPinnedWorker, t.PinWorker, 0, 0)
		case pin == NotInPinnedPool:
			r, detail = NotInPinnedPool, d.detail(NotInPinnedPool, w.Pool, 0, 0)
		case w.Model != t.Model:
			r, detail = WrongModel, d.detail(WrongModel, w.Model, 0, 0)
		case t.Digest != "" && w.Digest != t.Digest:
			r = WrongDigest
		case w.State == api.WorkerDraining:
			r = Draining
		case w.State != api.WorkerHealthy:
			r, detail = NotHealthy, d.detail(NotHealthy, w.State, 0, 0)
		case w.SlotsBusy >= w.SlotsTotal:
			r, detail = NoFreeSlot, d.detail(NoFreeSlot, "", w.SlotsBusy, w.SlotsTotal)
		default:
			d.Candidates = append(d.Candidates, i)
			continue
		}
		d.Rejected = append(d.Rejected, Rejection{WorkerID: w.ID, Reason: r, Detail: detail})
	}
}

// ScheduleInto filters ws for t, scores the candidates and picks the best,
// writing the decision into d. Equal scores go to the worker with fewer busy
// slots, then the lowest ID (compared byte-wise). It reuses d's slices, so
// that a caller that keeps d does not allocate, and overwrites d: copy what
// must outlive the next call (Explain and Summary return copies).
func ScheduleInto(t Task, ws []Worker, o Options, d *Decision) {
	Filter(t, ws, d)
	if len(d.Candidates) == 0 {
		return
	}
	wt := o.Weights.OrDefault()
	sessionWorker := ""
	if t.SessionID != "" && o.SessionWorker != nil {
		sessionWorker = o.SessionWorker(t.SessionID)
	}
	best := -1
	var bestScore float64
	var bestTerms Terms
	for _, i := range d.Candidates {
		w := &ws[i]
		busy := max(w.SlotsBusy, 0)
		tm := Terms{
			FreeSlots: wt.FreeSlots * float64(w.SlotsTotal-busy) / float64(w.SlotsTotal),
			// The recent load, or the busy fraction now when higher: a
			// burst placed in one pass counts at once.
			Load: wt.Load * clamp01(max(w.Load, float64(busy)/float64(w.SlotsTotal))),
		}
		if sessionWorker != "" && w.ID == sessionWorker {
			tm.Affinity = wt.Affinity
		}
		if i < len(o.Cached) && o.Cached[i] > 0 {
			tm.Cache = wt.Cache * min(1, float64(o.Cached[i])/float64(max(t.PromptTokens, CacheFloor)))
		}
		if i < len(o.Room) {
			tm.Room = wt.Room * clamp01(o.Room[i])
		}
		if o.Bias != nil {
			if b := o.Bias[w.ID]; !math.IsNaN(b) {
				tm.Bias = b
			}
		}
		s := tm.FreeSlots - tm.Load + tm.Affinity + tm.Cache + tm.Room + tm.Bias
		if math.IsNaN(s) { // NaN weights, or +Inf and -Inf biases
			s = math.Inf(-1)
		}
		d.Scores = append(d.Scores, s)
		if best < 0 || better(s, w, bestScore, &ws[best]) {
			best, bestScore, bestTerms = i, s, tm
		}
	}
	d.WorkerID, d.Score, d.Terms = ws[best].ID, bestScore, bestTerms
}

// better reports whether worker a with score sa beats worker b with score sb.
func better(sa float64, a *Worker, sb float64, b *Worker) bool {
	if sa != sb {
		return sa > sb
	}
	if a.SlotsBusy != b.SlotsBusy {
		return a.SlotsBusy < b.SlotsBusy
	}
	return a.ID < b.ID
}

func clamp01(x float64) float64 {
	if !(x > 0) { // also NaN
		return 0
	}
	return min(x, 1)
}

// pinned is the one pin rule: 0 when t's pins allow w, else the reason
// they do not. Pins never fall back.
func (t Task) pinned(w *Worker) Reason {
	switch {
	case t.PinWorker != "" && w.ID != t.PinWorker:
		return NotPinnedWorker
	case t.PinPool != "" && w.Pool != t.PinPool:
		return NotInPinnedPool
	}
	return 0
}

// Eligibility is what admission needs to know about the workers that could
// ever run a task.
type Eligibility struct {
	// Pinned is the worker t.PinWorker names, nil when it is not among the
	// workers or the task pins none.
	Pinned *Worker
	// Known counts the workers inside the task's pins that serve its model,
	// in any state; Ready those of them that are healthy (slots aside).
	Known, Ready int
	// MaxCtx is the largest slot context among the Known workers; 0 when
	// some of them do not report one (no limit can be told).
	MaxCtx int
}

// Eligible answers the admission questions for t over ws with the same pin
// and model rules Filter applies: is there a worker that could ever run it
// (no: MODEL_NOT_FOUND), could one run it now or later, slots aside (no:
// POOL_UNAVAILABLE), and how long may its context be.
func Eligible(t Task, ws []Worker) Eligibility {
	var e Eligibility
	unknownCtx := false
	for i := range ws {
		w := &ws[i]
		if t.PinWorker != "" && w.ID == t.PinWorker {
			e.Pinned = w
		}
		if t.pinned(w) != 0 || w.Model != t.Model {
			continue
		}
		e.Known++
		if w.State == api.WorkerHealthy {
			e.Ready++
		}
		if w.Ctx <= 0 {
			unknownCtx = true
		}
		e.MaxCtx = max(e.MaxCtx, w.Ctx)
	}
	if unknownCtx {
		e.MaxCtx = 0
	}
	return e
}

// Explain returns d's rejections as the API shows them, nil when there are
// none.
func Explain(d Decision) []api.Rejection {
	if len(d.Rejected) == 0 {
		return nil
	}
	out := make([]api.Rejection, len(d.Rejected))
	for i, r := range d.Rejected {
		out[i] = api.Rejection{WorkerID: r.WorkerID, Reason: r.String()}
	}
	return out
}

// Explanation returns d as the API shows it in task status, stamped at.
func (d Decision) Explanation(t Task, at time.Time) api.Explanation {
	return api.Explanation{
		At:       at,
		Chosen:   d.WorkerID,
		Score:    d.Score,
		Summary:  d.Summary(t),
		Rejected: Explain(d),
	}
}

// summaryRejections is how many rejections Summary names before "and N more".
const summaryRejections = 6

// summaryOrder lists the reasons in the order Summary names them: the near
// misses (a worker that could take the task later) before the workers that
// never could.
var summaryOrder = [...]Reason{NoFreeSlot, FailedBefore, Draining, NotHealthy, WrongDigest, WrongModel, NotInPinnedPool, NotPinnedWorker}

// Summary returns one line a person can read, such as
//
//	chose w2 (score 1.72) among 3 candidates; 2 rejected: w1 no free slot (4/4 busy), w5 draining
//	no worker fits model llama (pinned to worker w1); 3 rejected: w1 no free slot (2/2 busy), ...
//
// It names at most six rejections, near misses (busy, draining, unhealthy)
// first, and counts the rest.
func (d Decision) Summary(t Task) string {
	var b strings.Builder
	if d.WorkerID != "" {
		b.WriteString("chose ")
		b.WriteString(d.WorkerID)
		b.WriteString(" (score ")
		b.WriteString(strconv.FormatFloat(d.Score, 'f', 2, 64))
		if d.Terms.Affinity != 0 {
			b.WriteString(", session affinity")
		}
		if d.Terms.Cache != 0 {
			b.WriteString(", cache ")
			b.WriteString(strconv.FormatFloat(d.Terms.Cache, 'f', 2, 64))
		}
		if d.Terms.Bias != 0 {
			b.WriteString(", bias ")
			b.WriteString(strconv.FormatFloat(d.Terms.Bias, 'f', 2, 64))
		}
		b.WriteString(") among ")
		b.WriteString(strconv.Itoa(len(d.Candidates)))
		if len(d.Candidates) == 1 {
			b.WriteString(" candidate")
		} else {
			b.WriteString(" candidates")
		}
	} else {
		b.WriteString("no worker fits model ")
		b.WriteString(t.Model)
		switch {
		case t.PinWorker != "":
			b.WriteString(" (pinned to worker ")
			b.WriteString(t.PinWorker)
			b.WriteString(")")
		case t.PinPool != "":
			b.WriteString(" (pinned to pool ")
			b.WriteString(t.PinPool)
			b.WriteString(")")
		}
		if len(d.Rejected) == 0 {
			b.WriteString("; no workers")
			return b.String()
		}
	}
	if len(d.Rejected) == 0 {
		return b.String()
	}
	b.WriteString("; ")
	b.WriteString(strconv.Itoa(len(d.Rejected)))
	b.WriteString(" rejected: ")
	named := 0
	for _, reason := range summaryOrder {
		for _, r := range d.Rejected {
			if r.Reason != reason || named == summaryRejections {
				continue
			}
			if named > 0 {
				b.WriteString(", ")
			}
			b.WriteString(r.WorkerID)
			b.WriteByte(' ')
			b.WriteString(r.String())
			named++
		}
	}
	if rest := len(d.Rejected) - named; rest > 0 {
		b.WriteString(", and ")
		b.WriteString(strconv.Itoa(rest))
		b.WriteString(" more")
	}
	return b.String()
}
