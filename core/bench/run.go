package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/buildinfo"
	"github.com/llorch/llorch/core/orchclient"
)

// Progress is what Run reports after every finished request.
type Progress struct {
	// Step is the step running (1-based) of Steps; Name says its load
	// ("K=4", "2.0/s", "trace").
	Step, Steps int
	Name        string
	// Warmup is set while the step's warm-up requests run.
	Warmup bool
	// Done and Errors count the phase's finished and failed requests; Total
	// is how many it will send (0 when only a duration bounds it).
	Done, Errors, Total int
}

// Run sends the configured load and measures it. progress, when not nil, is
// called after every finished request (from one goroutine at a time). Run
// returns an error only for an invalid Config: failed requests are counted
// in the report, step by step, and a run cut by its timeout or ctx returns
// the steps measured so far.
func Run(ctx context.Context, cfg Config, progress func(Progress)) (Report, error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, fmt.Errorf("bench: %w", err)
	}
	base, _ := api.BaseURL(cfg.URL)
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = 0
		tr.MaxIdleConnsPerHost = max(slices.Max(append([]int{64}, cfg.Concurrency...)), 64)
		tr.DisableCompression = true
		defer tr.CloseIdleConnections()
		hc = &http.Client{Transport: tr}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	if cfg.Model == "" {
		cfg.Model = firstModel(ctx, hc, base, cfg.APIKey)
	}
	rep := Report{Label: cfg.Label, Command: cfg.Command, Client: buildinfo.String(), URL: base, Model: cfg.Model,
		Started: time.Now(), Warmup: cfg.Warmup, SLO: cfg.SLO, Steps: []Step{},
		Workload: Workload{PromptTokens: cfg.PromptTokens.String(), GenTokens: cfg.GenTokens.String(),
			SharedPrefix: cfg.SharedPrefix, Sessions: cfg.Sessions, Turns: cfg.Turns, Trace: cfg.TraceName,
			IgnoreEOS: cfg.IgnoreEOS, Seed: cfg.Seed}}
	if cfg.Trace != nil {
		rep.Workload.TraceSpeed = cfg.TraceSpeed
	}
	if rep.Label == "" {
		rep.Label = hostOf(base)
		if cfg.Model != "" {
			rep.Label += " " + cfg.Model
		}
	}
	r := &runner{cfg: cfg, progress: progress}
	// The seed goes to the server as a sampling seed: keep it in int64.
	seed := int64(cfg.Seed & math.MaxInt64)
	switch {
	case cfg.API == APILlorch:
		c, err := orchclient.New(base, cfg.APIKey, hc)
		if err != nil {
			return Report{}, fmt.Errorf("bench: %w", err)
		}
		r.s, rep.API, rep.Workload.Endpoint = &native{c: c, model: cfg.Model, ignoreEOS: cfg.IgnoreEOS, seed: seed}, APILlorch, "/v2/tasks"
		r.chat = cfg.Sessions > 0
	default:
		path := "/v1/completions"
		r.chat = cfg.Endpoint == EndpointChat
		if r.chat {
			path = "/v1/chat/completions"
		}
		r.s = &openAI{hc: hc, url: base + path, key: cfg.APIKey, model: cfg.Model, chat: r.chat, ignoreEOS: cfg.IgnoreEOS, seed: seed}
		rep.API, rep.Workload.Endpoint = APIOpenAI+"-"+cfg.Endpoint, path
	}
	rep.Server = serverVersion(ctx, hc, base, cfg.APIKey)
	r.calibrate(ctx)
	rep.Workload.TokensPerWord = math.Round(r.size.mean()*1000) / 1000
	rep.Workload.PromptOverhead = math.Round(r.overhead*10) / 10
	rep.Workload.Calibrated = r.calibrated

	var steps []Step
	for _, k := range cfg.Concurrency {
		steps = append(steps, Step{Concurrency: k})
	}
	for _, rate := range cfg.Rates {
		steps = append(steps, Step{Rate: rate})
	}
	if cfg.Trace != nil {
		steps = []Step{{}}
	}
	for i, st := range steps {
		if ctx.Err() != nil {
			break
		}
		p := &tracker{r: r, p: Progress{Step: i + 1, Steps: len(steps), Name: stepName(st)}}
		if cfg.Warmup > 0 {
			p.start(true, cfg.Warmup)
			k := st.Concurrency
			if k == 0 {
				k = min(cfg.Warmup, 8)
			}
			for _, s := range r.closed(ctx, k, cfg.Warmup, time.Time{}, p) {
				if s.errKey != "" {
					st.WarmupErrors++
				}
			}
		}
		var samples []*sample
		switch {
		case cfg.Trace != nil:
			samples = r.replay(ctx, p)
		case cfg.Sessions > 0:
			samples = r.sessions(ctx, st.Concurrency, p)
		case st.Rate > 0:
			samples = r.open(ctx, st.Rate, i, p)
		default:
			limit := cfg.Requests
			if limit == 0 && cfg.Duration == 0 {
				limit = max(8, 4*st.Concurrency)
			}
			p.start(false, limit)
			samples = r.closed(ctx, st.Concurrency, limit, r.deadline(), p)
		}
		rep.Steps = append(rep.Steps, summarize(st, samples, cfg.SLO))
	}
	return rep, nil
}

// StepName says a step's load the way tables and progress lines write it.
func StepName(st Step) string { return stepName(st) }

func stepName(st Step) string {
	switch {
	case st.Concurrency > 0:
		return fmt.Sprintf("K=%d", st.Concurrency)
	case st.Rate > 0:
		return fmt.Sprintf("%.4g/s", st.Rate)
	}
	return "trace"
}

func hostOf(base string) string {
	if u, err := url.Parse(base); err == nil && u.Host != "" {
		return u.Host
	}
	return base
}

// runner holds a run's state between its steps.
type runner struct {
	cfg      Config
	s        sender
	chat     bool // requests carry messages
	progress func(Progress)
	// The calibration: a prompt's tokens ≈ overhead + the costs of its
	// words (sizer).
	size       sizer
	overhead   float64
	calibrated bool
	// shared is the shared prefix, sharedCost its words' cost.
	shared     string
	sharedCost float64
	// next is the index of the next request: a request's lengths and text
	// are made from (seed, index) alone, so the i-th request of a run is
	// the same whatever server it goes to.
	next atomic.Uint64
}

// deadline is when a step bounded by Duration stops starting requests
// (zero: none).
func (r *runner) deadline() time.Time {
	if r.cfg.Duration == 0 {
		return time.Time{}
	}
	return time.Now().Add(r.cfg.Duration)
}

// Calibration probes: how many run at once, and the unique parts' sizes
// (in tokens) of the probes of a request's shape.
const (
	probeConcurrency = 4
	probeTries       = 6
	shortProbe       = 40
	longProbe        = 400
)

// calibrate sizes words in tokens from the server's usage.prompt_tokens of
// one-token requests. Tokenizers that split text at spaces (most) give a
// word the same tokens wherever it stands after a space, so "A W" less
// "A" is word W's cost, one probe a word; a text of random words then
// costs what its words cost, not the mean of a probe's words times its
// length. Probes shaped like the run's requests (the shared prefix, then
// unique text of a short and a long budget, four short ones with
// different first words) give the overhead (template, BOS, a first
// word's extra tokens) and a scale that absorbs what does not add up (1
// where words add). Without usage (or with nonsense) the defaults stand:
// DefaultTokensPerWord a word, no overhead. The shared prefix is sized
// here, with whichever sizes stand.
func (r *runner) calibrate(ctx context.Context) {
	r.size = uniformSizer(DefaultTokensPerWord)
	defer func() {
		if r.cfg.SharedPrefix > 0 {
			r.shared, r.sharedCost = r.size.shared(r.cfg.Seed^0x5ba7ed, float64(r.cfg.SharedPrefix))
		}
	}()
	// probe sends a one-token request, again after a pause when the server
	// was busy (a worker answers 503 when its slots are taken).
	probe := func(q *request) (int, bool) {
		q.maxTokens = 1
		for try := range probeTries {
			s := r.s.send(ctx, q)
			if s.errKey == "" {
				return s.prompt, s.hasPrompt && s.prompt > 0
			}
			if try == probeTries-1 || !strings.HasPrefix(s.errKey, "503") && !strings.HasPrefix(s.errKey, "429") {
				break
			}
			tm := time.NewTimer(time.Duration(25<<try) * time.Millisecond)
			select {
			case <-tm.C:
			case <-ctx.Done():
				tm.Stop()
				return 0, false
			}
		}
		return 0, false
	}
	// probeAll sends the probes at once (a few at a time) and returns
	// their prompt tokens, -1 for those that failed.
	probeAll := func(qs []*request) []int {
		out := make([]int, len(qs))
		sem := make(chan struct{}, probeConcurrency)
		var wg sync.WaitGroup
		for i, q := range qs {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if p, ok := probe(q); ok {
					out[i] = p
				} else {
					out[i] = -1
				}
			})
		}
		wg.Wait()
		return out
	}

	anchor := words[0]
	base, ok := probe(r.build("", anchor, 1))
	if !ok {
		return
	}
	qs := make([]*request, len(words))
	for i, w := range words {
		qs[i] = r.build("", anchor+" "+w, 1)
	}
	cost := make([]float64, len(words))
	sum, n := 0.0, 0
	for i, p := range probeAll(qs) {
		if c := p - base; p > 0 && c >= 1 && c <= 64 {
			cost[i] = float64(c)
			sum += cost[i]
			n++
		}
	}
	if n < len(words)/2 {
		return
	}
	for i := range cost {
		if cost[i] == 0 { // its probe failed: the mean of the others
			cost[i] = sum / float64(n)
		}
	}
	size := sizer{cost}

	// The request's shape: the shared prefix, then unique text.
	shared := ""
	sharedCost := 0.0
	if r.cfg.SharedPrefix > 0 {
		shared, sharedCost = size.shared(r.cfg.Seed^0x5ba7ed, float64(r.cfg.SharedPrefix))
	}
	budgets := []float64{shortProbe, shortProbe, shortProbe, shortProbe, longProbe}
	qs, costs := qs[:0], make([]float64, len(budgets))
	for i, b := range budgets {
		u := size.unique(r.cfg.Seed^0xca11b, uint64(i)*7, b)
		qs = append(qs, r.build(shared, u, 1))
		costs[i] = sharedCost + size.textCost(u)
	}
	ps := probeAll(qs)
	var shortP, shortC float64
	for i := range 4 {
		if ps[i] <= 0 {
			return
		}
		shortP, shortC = shortP+float64(ps[i])/4, shortC+costs[i]/4
	}
	if ps[4] <= 0 {
		return
	}
	scale := (float64(ps[4]) - shortP) / (costs[4] - shortC)
	if !(scale > 0.5 && scale < 2) {
		return
	}
	for i := range size.cost {
		size.cost[i] *= scale
	}
	r.size, r.overhead, r.calibrated = size, max(0, shortP-scale*shortC), true
}

// build makes a request of the shared prefix (if any), then unique, asking
// for gen tokens.
func (r *runner) build(shared, unique string, gen int) *request {
	q := &request{maxTokens: gen}
	switch {
	case r.chat && shared != "":
		q.messages = []api.Message{{Role: "system", Content: shared}, {Role: "user", Content: unique}}
	case r.chat:
		q.messages = []api.Message{{Role: "user", Content: unique}}
	case shared != "":
		q.prompt = shared + " " + unique
	default:
		q.prompt = unique
	}
	return q
}

// lengths draws request n's prompt and generation lengths.
func (r *runner) lengths(n uint64) (prompt, gen int) {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, n))
	return r.cfg.PromptTokens.Draw(rng), r.cfg.GenTokens.Draw(rng)
}

// unique is request n's unique text for a prompt of p tokens: what the
// shared prefix and the overhead leave.
func (r *runner) unique(n uint64, p int) string {
	return r.size.unique(r.cfg.Seed, n, float64(p)-r.sharedCost-r.overhead)
}

// single is generated request n.
func (r *runner) single(n uint64) *request {
	p, g := r.lengths(n)
	return r.build(r.shared, r.unique(n, p), g)
}

// tracker counts a phase's requests and reports progress.
type tracker struct {
	r  *runner
	mu sync.Mutex
	p  Progress
}

func (t *tracker) start(warmup bool, total int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Warmup, t.p.Total, t.p.Done, t.p.Errors = warmup, total, 0, 0
}

func (t *tracker) done(s *sample) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Done++
	if s.errKey != "" {
		t.p.Errors++
	}
	if f := t.r.cfg.OnRequest; f != nil && !t.p.Warmup {
		f(Result{Step: t.p.Step - 1, Session: s.session, Turn: s.turn, TTFT: s.ttft, E2E: s.e2e(),
			OutputTokens: s.outputTokens(), PromptTokens: s.prompt, CachedTokens: s.cached, HasPrompt: s.hasPrompt,
			Text: s.text.String(), Err: s.errKey, ErrMessage: s.errMsg})
	}
	if t.r.progress != nil {
		t.r.progress(t.p)
	}
}

// closed runs a closed loop: k clients send generated requests back to
// back until limit requests were started (0: no limit) or the deadline
// passed (zero: none).
func (r *runner) closed(ctx context.Context, k, limit int, deadline time.Time, t *tracker) []*sample {
	var (
		mu      sync.Mutex
		out     []*sample
		started int
		wg      sync.WaitGroup
	)
	for range k {
		wg.Go(func() {
			for {
				mu.Lock()
				if limit > 0 && started >= limit || !deadline.IsZero() && !time.Now().Before(deadline) || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				started++
				n := r.next.Add(1) - 1
				mu.Unlock()
				s := r.s.send(ctx, r.single(n))
				mu.Lock()
				out = append(out, s)
				mu.Unlock()
				t.done(s)
			}
		})
	}
	wg.Wait()
	return out
}

// arrivals returns the open loop's arrival times, as offsets from the
// step's start: Poisson at rate requests/s (exponential gaps) from a
// generator of (seed, step) alone.
func arrivals(seed uint64, step int, rate float64) func() time.Duration {
	rng := rand.New(rand.NewPCG(seed^0xa441, uint64(step)))
	at := 0.0
	return func() time.Duration {
		at += rng.ExpFloat64() / rate
		return time.Duration(at * float64(time.Second))
	}
}

// dispatcher sends requests at given times with at most MaxInFlight in
// flight; an arrival beyond that is recorded as the client-side error
// "0 inflight-limit" and not sent.
type dispatcher struct {
	r     *runner
	t     *tracker
	sem   chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	out   []*sample
	start time.Time
}

func (r *runner) dispatcher(t *tracker) *dispatcher {
	return &dispatcher{r: r, t: t, sem: make(chan struct{}, r.cfg.MaxInFlight), start: time.Now()}
}

// at waits until offset after the start; false when ctx ended first.
func (d *dispatcher) at(ctx context.Context, offset time.Duration) bool {
	wait := time.Until(d.start.Add(offset))
	if wait <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(wait)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (d *dispatcher) send(ctx context.Context, q *request) {
	select {
	case d.sem <- struct{}{}:
	default:
		now := time.Now()
		s := &sample{sent: now, ended: now, errKey: "0 inflight-limit",
			errMsg: fmt.Sprintf("%d requests in flight already", d.r.cfg.MaxInFlight)}
		d.record(s)
		return
	}
	d.wg.Go(func() {
		defer func() { <-d.sem }()
		d.record(d.r.s.send(ctx, q))
	})
}

func (d *dispatcher) record(s *sample) {
	d.mu.Lock()
	d.out = append(d.out, s)
	d.mu.Unlock()
	d.t.done(s)
}

func (d *dispatcher) wait() []*sample {
	d.wg.Wait()
	return d.out
}

// open runs an open loop at rate requests/s until Requests were sent or
// Duration passed (32 requests when neither is set).
func (r *runner) open(ctx context.Context, rate float64, step int, t *tracker) []*sample {
	limit := r.cfg.Requests
	if limit == 0 && r.cfg.Duration == 0 {
		limit = 32
	}
	t.start(false, limit)
	next := arrivals(r.cfg.Seed, step, rate)
	d := r.dispatcher(t)
	for i := 0; limit == 0 || i < limit; i++ {
		off := next()
		if r.cfg.Duration > 0 && off >= r.cfg.Duration || !d.at(ctx, off) {
			break
		}
		d.send(ctx, r.single(r.next.Add(1)-1))
	}
	return d.wait()
}

// replay sends the trace's records at their arrival gaps (divided by
// TraceSpeed), the first at once, until Requests records were sent or
// Duration passed.
func (r *runner) replay(ctx context.Context, t *tracker) []*sample {
	recs := r.cfg.Trace
	if r.cfg.Requests > 0 && len(recs) > r.cfg.Requests {
		recs = recs[:r.cfg.Requests]
	}
	t.start(false, len(recs))
	d := r.dispatcher(t)
	for _, rec := range recs {
		off := time.Duration(float64(rec.ArrivalMs-recs[0].ArrivalMs) * float64(time.Millisecond) / r.cfg.TraceSpeed)
		if r.cfg.Duration > 0 && off >= r.cfg.Duration || !d.at(ctx, off) {
			break
		}
		d.send(ctx, r.fromTrace(rec, r.next.Add(1)-1))
	}
	return d.wait()
}

// fromTrace is the request of a trace record: its text when it has some,
// else generated text of its prompt_tokens; output_tokens to generate
// (max_tokens when 0; the generation lengths when both are).
func (r *runner) fromTrace(rec api.TraceRecord, n uint64) *request {
	p, g := r.lengths(n)
	if rec.PromptTokens > 0 {
		p = rec.PromptTokens
	}
	switch {
	case rec.OutputTokens > 0:
		g = rec.OutputTokens
	case rec.MaxTokens > 0:
		g = rec.MaxTokens
	}
	var q *request
	switch {
	case len(rec.Messages) > 0:
		q = &request{messages: rec.Messages, maxTokens: g}
	case rec.Prompt != "":
		q = &request{prompt: rec.Prompt, maxTokens: g}
		if r.chat {
			q = r.build("", rec.Prompt, g)
		}
	default:
		q = r.build(r.shared, r.unique(n, p), g)
	}
	if r.cfg.API == APILlorch && len(rec.Session) <= api.MaxSessionIDLength {
		q.session = rec.Session
	}
	return q
}

// sessions runs Sessions conversations of Turns turns, k at a time (a
// closed loop of conversations): turn t sends the conversation so far (the
// shared prefix as its system prompt, or the session's own with
// PrefixPerSession, every earlier user message and answer) and a new user message sized like a single request's unique
// part. A failed turn ends its conversation; no turn starts after the
// step's Duration.
func (r *runner) sessions(ctx context.Context, k int, t *tracker) []*sample {
	ns, turns := r.cfg.Sessions, r.cfg.Turns
	t.start(false, ns*turns)
	base := r.next.Add(uint64(ns*turns)) - uint64(ns*turns)
	deadline := r.deadline()
	var (
		mu   sync.Mutex
		out  []*sample
		next int
		wg   sync.WaitGroup
	)
	for range min(k, ns) {
		wg.Go(func() {
			for {
				mu.Lock()
				c := next
				next++
				mu.Unlock()
				if c >= ns {
					return
				}
				var msgs []api.Message
				switch {
				case r.cfg.PrefixPerSession:
					sys := r.size.unique(r.cfg.Seed^0x5e55, base+uint64(c), r.sharedCost)
					msgs = append(msgs, api.Message{Role: "system", Content: sys})
				case r.shared != "":
					msgs = append(msgs, api.Message{Role: "system", Content: r.shared})
				}
				id := fmt.Sprintf("bench-%d-%d", r.cfg.Seed, base+uint64(c*turns))
				for turn := range turns {
					if ctx.Err() != nil || !deadline.IsZero() && !time.Now().Before(deadline) {
						break
					}
					n := base + uint64(c*turns+turn)
					p, g := r.lengths(n)
					msgs = append(msgs, api.Message{Role: "user", Content: r.unique(n, p)})
					q := &request{messages: slices.Clone(msgs), maxTokens: g}
					if r.cfg.API == APILlorch {
						q.session = id
					}
					s := r.s.send(ctx, q)
					s.session, s.turn = c, turn
					mu.Lock()
					out = append(out, s)
					mu.Unlock()
					t.done(s)
					if s.errKey != "" {
						break
					}
					msgs = append(msgs, api.Message{Role: "assistant", Content: s.text.String()})
				}
			}
		})
	}
	wg.Wait()
	return out
}
