package workerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/textstream"
)

// Engine errors.
var (
	errBusy     = errors.New("workerd: all slots busy")
	errDraining = errors.New("workerd: draining")
)

// slot states, as shown in /health.
const (
	slotIdle    = "idle"
	slotPrefill = "prefill"
	slotDecode  = "decode"
)

// slot is one sequence of the llama context. Fields marked (mu) are guarded by
// engine.mu; the rest belong to the decode loop.
type slot struct {
	id int
	// (mu) job is the job assigned to the slot, nil when free.
	job *job
	// (mu) cache holds the tokens whose KV the sequence holds. The loop appends
	// while the slot is busy; reservations read it only while the slot is free.
	cache    []backends.Token
	lastUsed uint64 // (mu)
	state    atomic.Value
	// (mu) session is the session of the job that last ran here (see
	// sessions.go); dropKV asks to forget the cache when the job ends.
	session string
	dropKV  bool

	// decode-loop state of the current job
	started  bool
	prefill  []backends.Token // prompt tokens still to evaluate
	pending  backends.Token   // sampled, not yet in the KV cache
	hasPend  bool
	sampler  backends.Sampler
	stream   *textstream.Streamer
	produced int // tokens counted in the stream: resumed + generated here
	batchIdx int // index of the slot's logits in the current batch, -1 if none
	chunk    int // prompt tokens of the slot in the current batch
	probs    backends.Probs
}

// job is one /execute request from reservation to its terminal event.
type job struct {
	id      string
	model   string
	session string // api.ExecuteRequest.SessionID
	prompt  []backends.Token
	// resume are the tokens the request already generated (resume_tokens);
	// seq is prompt + resume, the sequence the slot evaluates.
	resume []backends.Token
	seq    []backends.Token
	params api.Params
	// toolFormat is how the model writes tool calls, when tools were offered.
	toolFormat string
	// stream has been fed the resumed tokens' text (nothing of it is emitted
	// again); ended is set when that text, or an end-of-generation token among
	// them, already ended the generation: the job then ends at once.
	stream   *textstream.Streamer
	ended    *api.End
	cached   int // tokens of seq whose KV is reused
	slot     *slot
	admitted time.Time

	cancelled  atomic.Bool
	cancelOnce sync.Once
	cancelCh   chan struct{} // closed by cancel
	box        mailbox

	// set by the loop
	firstTok time.Time
	prefDone time.Time
}

// newJob builds a job; stream must have been fed resume's text (see resumeStream).
func newJob(id, model string, prompt, resume []backends.Token, p api.Params, stream *textstream.Streamer, ended *api.End) *job {
	seq := prompt
	if len(resume) > 0 {
		seq = append(append(make([]backends.Token, 0, len(prompt)+len(resume)), prompt...), resume...)
	}
	return &job{id: id, model: model, prompt: prompt, resume: resume, seq: seq, params: p, stream: stream, ended: ended,
		admitted: time.Now(), cancelCh: make(chan struct{}), box: newMailbox()}
}

// cachedPrompt is what the job reports as cached_tokens: the reused tokens of
// the prompt (resumed tokens reused beyond it are not prompt tokens).
func (j *job) cachedPrompt() int { return min(j.cached, len(j.prompt)) }

// cancel marks the job cancelled; the handler ends its stream at once and the
// decode loop drops the slot before its next step.
func (j *job) cancel() {
	j.cancelOnce.Do(func() {
		j.cancelled.Store(true)
		close(j.cancelCh)
	})
}

// event is one item of a job's stream.
type event struct {
	name string
	data any
}

// mailbox is an unbounded queue from the decode loop to one HTTP handler: the
// loop never blocks on a slow client.
type mailbox struct {
	mu     sync.Mutex
	items  []event
	closed bool
	notify chan struct{}
}

func newMailbox() mailbox { return mailbox{notify: make(chan struct{}, 1)} }

func (m *mailbox) put(ev event, last bool) {
	m.mu.Lock()
	if !m.closed {
		m.items = append(m.items, ev)
		m.closed = last
	}
	m.mu.Unlock()
	select {
	case m.notify <- struct{}{}:
	default:
	}
}

// take returns queued events and whether the stream is complete.
func (m *mailbox) take(buf []event) ([]event, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	buf = append(buf[:0], m.items...)
	clear(m.items)
	m.items = m.items[:0]
	return buf, m.closed
}

// engineConfig sizes the decode loop.
type engineConfig struct {
	ModelID  string
	WorkerID string
	Batch    int
	// Queue is how many jobs may wait for a slot (see Config.Queue).
	Queue int
}

// engine owns the llama context: one goroutine (run) builds a batch from every
// active slot each step, decodes it and samples; HTTP handlers reserve slots
// and read their job's mailbox.
type engine struct {
	cfg     engineConfig
	model   backends.Model
	ctx     backends.Context
	log     *slog.Logger
	metrics *metrics

	mu       sync.Mutex
	slots    []*slot
	jobs     map[string]*job
	draining bool
	clock    uint64
	wake     chan struct{}
	idle     chan struct{} // closed and replaced when the last job finishes; guarded by mu
	released chan struct{} // closed and replaced whenever a slot is released or the wait queue moves; guarded by mu
	waitq    []*job        // jobs waiting for a slot, first come first served; guarded by mu

	rate rateMeter
}

func newEngine(cfg engineConfig, model backends.Model, bctx backends.Context, n int, log *slog.Logger, m *metrics) *engine {
	e := &engine{cfg: cfg, model: model, ctx: bctx, log: log, metrics: m,
		jobs: make(map[string]*job), wake: make(chan struct{}, 1), idle: make(chan struct{}),
		released: make(chan struct{})}
	for i := range n {
		s := &slot{id: i}
		s.state.Store(slotIdle)
		e.slots = append(e.slots, s)
	}
	close(e.idle) // no jobs yet
	return e
}

// reserve assigns a free slot to a job, preferring the slot whose cached tokens
// share the longest prefix with the prompt, then the least recently used one.
// When every slot is busy but some hold a cancelled job, it waits (briefly) for
// the decode loop to release them: a client that cancels and resubmits must
// not see ALL_SLOTS_BUSY. When every slot is busy and the wait queue has room
// (engineConfig.Queue), the job waits its turn, first come first served,
// until a slot is free, ctx ends (the client left) or the worker drains.
func (e *engine) reserve(ctx context.Context, j *job) error {
	deadline := time.NewTimer(2 * time.Second)
	defer deadline.Stop()
	queued := false
	defer func() {
		if queued {
			e.unqueue(j)
		}
	}()
	for {
		wait, inQueue, err := e.tryReserve(j, queued)
		queued = inQueue
		if !errors.Is(err, errBusy) || wait == nil {
			return err
		}
		if queued {
			select {
			case <-wait:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		select {
		case <-wait:
		case <-deadline.C:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// tryReserve reserves a slot for j, or says what to wait for: the channel
// closed at the next release, and whether j is (now) in the wait queue.
func (e *engine) tryReserve(j *job, queued bool) (<-chan struct{}, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var err error
	switch {
	case e.draining:
		return nil, queued, errDraining
	case queued && e.waitq[0] != j, !queued && len(e.waitq) > 0: // others came first
		err = errBusy
	default:
		err = e.reserveLocked(j)
	}
	if err == nil {
		if queued { // the queue moved: the next one may find a slot too
			e.waitq = e.waitq[1:]
			e.metrics.queued.Set(float64(len(e.waitq)))
			e.broadcastLocked()
		}
		return nil, false, nil
	}
	if !errors.Is(err, errBusy) {
		return nil, queued, err
	}
	if queued {
		return e.released, true, err
	}
	if len(e.waitq) < e.cfg.Queue {
		e.waitq = append(e.waitq, j)
		e.metrics.queued.Set(float64(len(e.waitq)))
		return e.released, true, err
	}
	for _, o := range e.jobs {
		if o.cancelled.Load() {
			return e.released, false, err
		}
	}
	return nil, false, err
}

// unqueue removes j from the wait queue (it got a slot, or gave up).
func (e *engine) unqueue(j *job) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i, o := range e.waitq {
		if o == j {
			e.waitq = append(e.waitq[:i], e.waitq[i+1:]...)
			e.broadcastLocked() // it may have been the head
			break
		}
	}
	e.metrics.queued.Set(float64(len(e.waitq)))
}

// broadcastLocked wakes every job waiting for a slot.
func (e *engine) broadcastLocked() {
	close(e.released)
	e.released = make(chan struct{})
}

func (e *engine) reserveLocked(j *job) error {
	if e.draining {
		return errDraining
	}
	if _, dup := e.jobs[j.id]; dup {
		return fmt.Errorf("workerd: job %q is already running", j.id)
	}
	// The free slot sharing the longest prefix with the prompt, when the
	// prompt keeps at least half of what that slot holds (a conversation's
	// next turn); else the least recently used free slot, so a new prompt
	// does not overwrite another conversation's cache for a shared template
	// header (a shared system prompt is copied over from the slot that
	// holds it, see start).
	var best, lru *slot
	bestLCP := -1
	for _, s := range e.slots {
		if s.job != nil {
			continue
		}
		if lru == nil || s.lastUsed < lru.lastUsed {
			lru = s
		}
		n := 0
		if !j.params.NoCache {
			n = commonPrefix(s.cache, j.seq)
		}
		if n > bestLCP || (n == bestLCP && s.lastUsed < best.lastUsed) {
			best, bestLCP = s, n
		}
	}
	if best == nil {
		return errBusy
	}
	if 2*bestLCP < len(best.cache) {
		best, bestLCP = lru, 0
		if !j.params.NoCache {
			bestLCP = commonPrefix(lru.cache, j.seq)
		}
	}
	// The last token of the sequence is always evaluated: its logits give the
	// next token.
	j.cached = min(bestLCP, len(j.seq)-1)
	j.slot = best
	best.job = j
	best.session, best.dropKV = j.session, false
	best.state.Store(slotPrefill)
	e.clock++
	best.lastUsed = e.clock
	if len(e.jobs) == 0 {
		e.idle = make(chan struct{})
	}
	e.jobs[j.id] = j
	e.metrics.slotsBusy.Set(float64(len(e.jobs)))
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return nil
}

// lookup finds a running job.
func (e *engine) lookup(id string) *job {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.jobs[id]
}

// busy returns the number of busy slots.
func (e *engine) busy() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.jobs)
}

// drain refuses new jobs and returns a channel closed when none is left.
func (e *engine) drain() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.draining = true
	e.broadcastLocked() // queued jobs leave at once
	return e.idle
}

// cancelAll cancels every running job (end of a drain grace period).
func (e *engine) cancelAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, j := range e.jobs {
		j.cancel()
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// slotStates reports every slot for /health.
func (e *engine) slotStates() []api.SlotState {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]api.SlotState, len(e.slots))
	for i, s := range e.slots {
		out[i] = api.SlotState{ID: s.id, State: s.state.Load().(string)}
		if s.job != nil {
			out[i].JobID = s.job.id
		} else {
			out[i].CachedTokens = len(s.cache)
		}
	}
	return out
}

// threadOwner is the optional ability of a Context driven from one OS
// thread to run a function on that thread, the calls it makes to the
// context then needing no hand-off each.
type threadOwner interface {
	Own(f func())
}

// idleGrace is how long the decode loop waits for work before it lets the
// context's threads sleep.
const idleGrace = 5 * time.Millisecond

// idler is the optional ability of a Context to let its threads sleep while
// the decode loop waits for work.
type idler interface {
	Idle()
}

// run is the decode loop, on the context's thread when it has one. It
// returns when ctx is done.
func (e *engine) run(ctx context.Context) {
	if o, ok := e.ctx.(threadOwner); ok {
		o.Own(func() { e.loop(ctx) })
		return
	}
	e.loop(ctx)
}

func (e *engine) loop(ctx context.Context) {
	var (
		batch  backends.Batch
		active []*slot
		grace  = time.NewTimer(idleGrace)
	)
	idle, _ := e.ctx.(idler)
	for {
		active = e.collect(active[:0])
		if len(active) == 0 {
			if idle != nil {
				// A request that follows the last one closely finds the
				// threads awake; after idleGrace they sleep.
				grace.Reset(idleGrace)
				select {
				case <-ctx.Done():
					return
				case <-e.wake:
					continue
				case <-grace.C:
					idle.Idle()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-e.wake:
				continue
			}
		}
		if ctx.Err() != nil {
			for _, s := range active {
				e.finish(s, nil, &api.Error{Code: api.CodeCancelled, Message: "worker shutting down", Retriable: true})
			}
			return
		}
		e.step(&batch, active)
	}
}

// collect starts newly reserved jobs and drops finished ones; it returns the
// slots with work.
func (e *engine) collect(active []*slot) []*slot {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.slots {
		j := s.job
		if j == nil {
			continue
		}
		if !s.started {
			if j.cancelled.Load() {
				e.releaseLocked(s)
				continue
			}
			if err := e.start(s); err != nil {
				code := api.CodeInternal
				if errors.Is(err, backends.ErrGrammar) {
					code = api.CodeInvalidRequest
				}
				j.box.put(event{api.EventError, &api.Error{Code: code, Message: err.Error()}}, true)
				e.releaseLocked(s)
				continue
			}
		}
		active = append(active, s)
	}
	return active
}

// minCopyGain is how many more cached tokens another slot must hold before
// its KV is copied instead of prefilling (a copy moves the whole sequence).
const minCopyGain = 32

// start prepares a slot for its new job: reuses the longest cached prefix —
// its own, or another slot's copied over when that is much longer — trims the
// KV cache to it and builds the sampler. A job whose resumed tokens already
// ended the generation touches nothing; step ends it. Called with mu held,
// between steps.
func (e *engine) start(s *slot) error {
	j := s.job
	s.stream = j.stream
	s.produced = len(j.resume)
	s.hasPend = false
	if j.ended != nil {
		j.cached = 0
		s.started = true
		j.box.put(event{api.EventStarted, api.Started{JobID: j.id, Model: j.model, WorkerID: e.cfg.WorkerID,
			Seed: j.params.Seed, Slot: s.id, PromptTokens: len(j.prompt), ResumedTokens: len(j.resume), MaxTokens: j.params.MaxTokens, ToolFormat: j.toolFormat}}, false)
		return nil
	}
	if cp, ok := e.ctx.(backends.SeqCopier); ok && !j.params.NoCache {
		var donor *slot
		best := j.cached
		for _, d := range e.slots {
			if d == s {
				continue
			}
			if n := min(commonPrefix(d.cache, j.seq), len(j.seq)-1); n >= best+minCopyGain {
				donor, best = d, n
			}
		}
		if donor != nil {
			if err := cp.CopySeq(donor.id, s.id); err == nil {
				s.cache = append(s.cache[:0], donor.cache...)
				j.cached = best
				e.metrics.kvCopies.Inc()
			}
		}
	}
	if err := e.ctx.TrimSeq(s.id, j.cached); err != nil {
		// Fall back to a cold start.
		j.cached = 0
		if err := e.ctx.TrimSeq(s.id, 0); err != nil {
			return err
		}
	}
	s.cache = append(s.cache[:j.cached], nil...)
	s.prefill = j.seq[j.cached:]
	p := j.params
	smp, err := e.ctx.NewSampler(backends.SamplerParams{
		Temperature: p.Temperature, TopK: p.TopK, TopP: p.TopP, MinP: p.MinP,
		RepetitionPenalty: p.RepetitionPenalty, FrequencyPenalty: p.FrequencyPenalty, PresencePenalty: p.PresencePenalty,
		Seed: p.Seed, LogitBias: p.LogitBias, IgnoreEOS: p.IgnoreEOS, Grammar: p.Grammar,
	})
	if err != nil {
		return err
	}
	smp.AcceptPrompt(j.prompt)
	// The resumed tokens were sampled: the sampler sees them as it saw them
	// then (penalties count them, the grammar follows them).
	if err := smp.Accept(j.resume); err != nil {
		smp.Close()
		return err
	}
	s.sampler = smp
	s.started = true
	s.state.Store(slotPrefill)
	if j.cached > 0 {
		e.metrics.cacheHits.Inc()
		e.metrics.cachedTokens.Add(float64(j.cachedPrompt()))
	}
	// started is sent from here, once the reused prefix is known for sure.
	j.box.put(event{api.EventStarted, api.Started{JobID: j.id, Model: j.model, WorkerID: e.cfg.WorkerID,
		Seed: p.Seed, Slot: s.id, PromptTokens: len(j.prompt), CachedTokens: j.cachedPrompt(), ResumedTokens: len(j.resume),
		MaxTokens: p.MaxTokens, ToolFormat: j.toolFormat}}, false)
	return nil
}

// step builds one batch from every active slot, decodes it and samples.
func (e *engine) step(b *backends.Batch, active []*slot) {
	b.Reset()
	// Cancelled jobs, and jobs their resumed tokens ended, leave before the
	// batch is built.
	live := active[:0]
	for _, s := range active {
		switch j := s.job; {
		case j.cancelled.Load():
			e.finish(s, nil, nil)
		case j.ended != nil:
			e.finish(s, j.ended, nil)
		default:
			live = append(live, s)
		}
	}
	if len(live) == 0 {
		return
	}
	// Decoding slots first: one token each, so streams keep flowing.
	seqs := 0
	for _, s := range live {
		s.batchIdx, s.chunk = -1, 0
		if s.hasPend {
			s.batchIdx = b.Len()
			b.Add(s.pending, int32(len(s.cache)), int32(s.id), true)
			seqs++
		}
	}
	// Then chunks of pending prompts, oldest job first, within the batch budget.
	budget := e.cfg.Batch - b.Len()
	for _, s := range byAdmission(live) {
		if s.hasPend || len(s.prefill) == 0 || budget == 0 {
			continue
		}
		n := min(len(s.prefill), budget)
		pos := len(s.cache)
		for i, t := range s.prefill[:n] {
			last := n == len(s.prefill) && i == n-1
			if last {
				s.batchIdx = b.Len()
			}
			b.Add(t, int32(pos+i), int32(s.id), last)
		}
		s.chunk = n
		budget -= n
		seqs++
	}
	if b.Len() == 0 {
		return
	}
	err := e.ctx.Decode(b)
	e.metrics.batchTokens.Observe(float64(b.Len()))
	e.metrics.batchSeqs.Observe(float64(seqs))
	if err != nil {
		e.log.Error("decode failed", "err", err, "batch", b.Len())
		for _, s := range live {
			e.finish(s, nil, &api.Error{Code: api.CodeDecodeFailed, Message: err.Error(), Retriable: true})
		}
		return
	}
	now := time.Now()
	// Commit what the batch put in the KV cache.
	for i, seq := range b.Seq {
		s := e.slots[seq]
		s.cache = append(s.cache, b.Tokens[i])
	}
	generated := 0
	for _, s := range live {
		if s.hasPend {
			s.hasPend = false
		} else {
			s.prefill = s.prefill[s.chunk:]
		}
		if s.batchIdx < 0 {
			continue
		}
		if s.job.prefDone.IsZero() {
			s.job.prefDone = now
			s.state.Store(slotDecode)
		}
		var probs *backends.Probs
		if s.job.params.Logprobs {
			probs = &s.probs
			probs.Top = s.job.params.TopLogprobs
		}
		tok, err := e.ctx.Sample(s.sampler, s.batchIdx, probs)
		if err != nil {
			// A grammar that leads nowhere (every token it allows is banned).
			e.finish(s, nil, &api.Error{Code: api.CodeInvalidRequest, Message: err.Error()})
			continue
		}
		generated++
		e.emit(s, tok, now, probs)
	}
	e.rate.add(now, generated)
}

// emit handles one sampled token of a slot: stream its text, or end the job.
func (e *engine) emit(s *slot, tok backends.Token, now time.Time, probs *backends.Probs) {
	j := s.job
	var lp *api.Logprob
	if probs != nil {
		lp = e.logprob(tok, probs)
	}
	if j.firstTok.IsZero() {
		j.firstTok = now
		e.metrics.ttft.Observe(now.Sub(j.admitted).Seconds())
	}
	if e.model.IsEOG(tok) {
		if tail := s.stream.Flush(); tail != "" {
			j.box.put(event{api.EventToken, api.Token{T: tail, I: s.produced, ID: tok, LP: lp}}, false)
			s.produced++
		}
		e.finish(s, &api.End{StopReason: api.StopEOS}, nil)
		return
	}
	text, stopped, matched := s.stream.Push(e.model.Piece(tok))
	s.produced++
	e.metrics.tokensOut.Inc()
	switch {
	case stopped:
		j.box.put(event{api.EventToken, api.Token{T: text, I: s.produced - 1, ID: tok, LP: lp}}, false)
		e.finish(s, &api.End{StopReason: api.StopSequence, StopSequenceMatched: matched}, nil)
	case s.produced >= j.params.MaxTokens:
		j.box.put(event{api.EventToken, api.Token{T: text + s.stream.Flush(), I: s.produced - 1, ID: tok, LP: lp}}, false)
		e.finish(s, &api.End{StopReason: api.StopMaxTokens}, nil)
	case len(s.cache) >= e.ctx.SeqCtx():
		j.box.put(event{api.EventToken, api.Token{T: text + s.stream.Flush(), I: s.produced - 1, ID: tok, LP: lp}}, false)
		e.finish(s, &api.End{StopReason: api.StopContextLimit}, nil)
	default:
		j.box.put(event{api.EventToken, api.Token{T: text, I: s.produced - 1, ID: tok, LP: lp}}, false)
		s.pending, s.hasPend = tok, true
	}
}

// logprob is the token event's log-probability of tok.
func (e *engine) logprob(tok backends.Token, probs *backends.Probs) *api.Logprob {
	lp := &api.Logprob{TokenText: api.NewTokenText(e.model.Piece(tok)), Logprob: probs.Logprob}
	if len(probs.Alts) > 0 {
		lp.Top = make([]api.TopLogprob, len(probs.Alts))
		for i, a := range probs.Alts {
			lp.Top[i] = api.TopLogprob{ID: a.ID, TokenText: api.NewTokenText(e.model.Piece(a.ID)), Logprob: a.Logprob}
		}
	}
	return lp
}

// finish ends a slot's job with end (success), apiErr (failure) or, when both
// are nil, as cancelled. The slot is released before the terminal event is
// queued, so a client that sends its next request on seeing it finds the slot free.
func (e *engine) finish(s *slot, end *api.End, apiErr *api.Error) {
	j := s.job
	now := time.Now()
	var last event
	switch {
	case end != nil:
		end.TokensOut = s.produced
		end.PromptTokens = len(j.prompt)
		end.CachedTokens = j.cachedPrompt()
		if !j.prefDone.IsZero() {
			end.PrefillTimeMs = ms(j.prefDone.Sub(j.admitted))
			end.DecodeTimeMs = ms(now.Sub(j.prefDone))
			end.TTFTMs = ms(j.firstTok.Sub(j.admitted))
			e.metrics.decode.Observe(now.Sub(j.prefDone).Seconds())
		}
		last = event{api.EventEnd, end}
		e.metrics.requests.WithLabelValues("ok").Inc()
	case apiErr != nil:
		last = event{api.EventError, apiErr}
		e.metrics.requests.WithLabelValues(outcome(apiErr.Code)).Inc()
	default:
		last = event{api.EventError, &api.Error{Code: api.CodeCancelled, Message: "job cancelled"}}
		e.metrics.requests.WithLabelValues("cancelled").Inc()
	}
	e.metrics.promptTokens.Add(float64(len(j.prompt)))
	if s.sampler != nil {
		s.sampler.Close()
		s.sampler = nil
	}
	// Keep the KV of everything evaluated: the next job may share its prefix.
	// Prompt tokens not yet evaluated (a cancel during prefill) are simply absent.
	e.mu.Lock()
	e.releaseLocked(s)
	e.mu.Unlock()
	j.box.put(last, true)
}

func (e *engine) releaseLocked(s *slot) {
	if s.job != nil {
		delete(e.jobs, s.job.id)
	}
	s.job = nil
	s.dropIfMarkedLocked()
	s.started = false
	s.prefill = nil
	s.hasPend = false
	s.state.Store(slotIdle)
	e.metrics.slotsBusy.Set(float64(len(e.jobs)))
	close(e.released)
	e.released = make(chan struct{})
	if len(e.jobs) == 0 {
		close(e.idle)
	}
}

// byAdmission orders slots by their job's admission time (oldest first).
func byAdmission(ss []*slot) []*slot {
	out := append([]*slot(nil), ss...)
	for i := 1; i < len(out); i++ {
		for k := i; k > 0 && out[k].job.admitted.Before(out[k-1].job.admitted); k-- {
			out[k], out[k-1] = out[k-1], out[k]
		}
	}
	return out
}

func commonPrefix(a, b []backends.Token) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// rateMeter is a running tokens/s figure over the last few seconds.
type rateMeter struct {
	mu      sync.Mutex
	buckets [10]struct {
		sec int64
		n   int
	}
}

func (r *rateMeter) add(now time.Time, n int) {
	if n == 0 {
		return
	}
	sec := now.Unix()
	r.mu.Lock()
	b := &r.buckets[sec%int64(len(r.buckets))]
	if b.sec != sec {
		b.sec, b.n = sec, 0
	}
	b.n += n
	r.mu.Unlock()
}

// perSecond averages the complete seconds of the window, plus the current one.
func (r *rateMeter) perSecond(now time.Time) float64 {
	sec := now.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	total := 0
	for _, b := range r.buckets {
		if b.sec > sec-int64(len(r.buckets)) && b.sec <= sec {
			total += b.n
		}
	}
	return float64(total) / float64(len(r.buckets))
}
