package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/routing"
	"github.com/llorch/llorch/core/scheduler"
)

// Routing scripts take part in admission (Server.submit) and placement
// (dispatcher.placeScripted). This file is the glue: loading and reloading
// the script, and what a script sees of tasks, queues and workers.

// settingRouting is the store setting that holds a script set through the API.
const settingRouting = "routing_script"

// initRouting loads the script: the file when one is configured, else the
// one stored through the API. A file that does not compile at startup is an
// error; a stored script that does not compile, or fails its trial, is not
// loaded (the built-in policy decides) and the log says why.
func (s *Server) initRouting() error {
	if s.cfg.RoutingFile != "" {
		return s.ReloadRouting()
	}
	src, err := s.st.Setting(settingRouting)
	if err != nil || src == nil {
		return err
	}
	if err := s.loadScript(context.Background(), "api.tengo", src); err != nil {
		s.log.Error("the stored routing script is not loaded: the built-in policy decides until a script is stored again", "err", err)
		s.m.routingReloads.WithLabelValues("error").Inc()
		return nil
	}
	s.log.Info("routing script loaded", "from", "store")
	return nil
}

// loadScript tries a script in a sandboxed child process (when a trial is
// configured), then compiles and installs it. On error the current script
// stays.
func (s *Server) loadScript(ctx context.Context, name string, src []byte) error {
	if err := s.trialScript(ctx, name, src); err != nil {
		return err
	}
	return s.routing.Load(name, src)
}

// trialScript runs a script once in a sandboxed child process, when a
// trial is configured (Deps.TrialScript).
func (s *Server) trialScript(ctx context.Context, name string, src []byte) error {
	if s.deps.TrialScript == nil {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.deps.TrialScript(tctx, name, src); err != nil {
		return fmt.Errorf("routing: %s failed its trial in a sandboxed process: %w", name, err)
	}
	return nil
}

// ReloadRouting reads the configured script file again (SIGHUP). On error the
// previous script stays.
func (s *Server) ReloadRouting() error {
	if s.cfg.RoutingFile == "" {
		return errors.New("orchestrator: no --routing-script file to reload")
	}
	src, err := os.ReadFile(s.cfg.RoutingFile)
	if err != nil {
		return fmt.Errorf("orchestrator: routing script: %w", err)
	}
	if err := s.loadScript(context.Background(), s.cfg.RoutingFile, src); err != nil {
		s.m.routingReloads.WithLabelValues("error").Inc()
		return err
	}
	s.m.routingReloads.WithLabelValues("ok").Inc()
	s.log.Info("routing script loaded", "file", s.cfg.RoutingFile)
	return nil
}

// watchRouting reloads the script file when it changes.
func (s *Server) watchRouting(ctx context.Context) {
	if s.cfg.RoutingFile == "" {
		return
	}
	load := func(name string, src []byte) error { return s.loadScript(ctx, name, src) }
	s.routing.WatchFileWith(ctx, s.cfg.RoutingFile, time.Second, load, func(err error) {
		if err != nil {
			s.m.routingReloads.WithLabelValues("error").Inc()
			s.log.Error("routing script not reloaded; keeping the previous one", "err", err)
			return
		}
		s.m.routingReloads.WithLabelValues("ok").Inc()
		s.log.Info("routing script reloaded", "file", s.cfg.RoutingFile)
	})
}

func (m *metrics) observeRouting(stage string, o routing.Outcome, d time.Duration) {
	m.routingCalls.WithLabelValues(stage, string(o)).Inc()
	m.routingSeconds.WithLabelValues(stage).Observe(d.Seconds())
}

// routingTask is what a script sees of a task.
func routingTask(id string, req *api.TaskRequest, prio, keyFP string, headers map[string]string) routing.Task {
	rt := routing.Task{ID: id, Model: req.Model, Priority: prio, SessionID: req.SessionID, Key: keyFP, Labels: req.Labels, Headers: headers}
	rt.MaxTokens = api.DefaultMaxTokens
	if req.MaxTokens != nil {
		rt.MaxTokens = *req.MaxTokens
	}
	rt.PromptTokens = estimateTokens(req)
	return rt
}

// estimateTokens guesses a prompt's token count (about 4 characters a token);
// the orchestrator does not tokenize.
func estimateTokens(req *api.TaskRequest) int {
	n := utf8.RuneCountInString(req.Prompt)
	for _, m := range req.Messages {
		n += utf8.RuneCountInString(m.Content) + 4
	}
	return (n + 3) / 4
}

// whitelisted keeps the request headers the operator lets scripts read.
func whitelisted(names []string, h http.Header) map[string]string {
	if len(names) == 0 || h == nil {
		return nil
	}
	out := map[string]string{}
	for _, name := range names {
		if v := h.Get(name); v != "" {
			out[strings.ToLower(name)] = v
		}
	}
	return out
}

// depths is the queue depth per model and priority, as scripts see it.
func (d *dispatcher) depths() map[string]map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.depthsLocked()
}

func (d *dispatcher) depthsLocked() map[string]map[string]int {
	out := map[string]map[string]int{}
	for k, n := range d.depth {
		if n == 0 {
			continue
		}
		if out[k.model] == nil {
			out[k.model] = map[string]int{}
		}
		out[k.model][k.priority] = n
	}
	return out
}

// candidateLocked is what a script sees of a worker; cached is the prompt
// tokens the prefix index expects it to hold.
func (d *dispatcher) candidateLocked(w scheduler.Worker, session string, cached int) routing.Candidate {
	c := routing.Candidate{ID: w.ID, Pool: w.Pool, Model: w.Model, SlotsFree: max(0, w.SlotsTotal-w.SlotsBusy), SlotsTotal: w.SlotsTotal,
		Load: w.Load, TokensPerSecond: w.TokensPerSecond, Labels: w.Labels, CachedPrefix: max(cached, 0)}
	if session != "" && d.sessions[session] == w.ID {
		c.CachedPrefix = max(c.CachedPrefix, 1) // this worker served the session last: its prompt cache likely holds the prefix
	}
	return c
}

// snapshot is the queued tasks and the workers, for routing replay.
func (d *dispatcher) snapshot() routing.Snapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	snap := routing.Snapshot{Now: time.Now(), Queue: d.depthsLocked()}
	d.q.Each(snap.Now, func(_ int, _ string, e *entry) bool {
		snap.Tasks = append(snap.Tasks, routingTask(e.id, e.req, e.priority, e.keyFP, e.headers))
		return true
	})
	for _, w := range d.reg.snapshot(nil, snap.Now) {
		snap.Candidates = append(snap.Candidates, d.candidateLocked(w, "", 0))
	}
	return snap
}

type planItem struct {
	e   *entry
	in  routing.PlaceInput
	d   routing.PlaceDecision
	res routing.Result
}

// placeScripted is place with a routing script: the tasks to place and their
// candidates are chosen under the lock, the script runs without it, then its
// decisions are applied under the lock again, checked against what changed
// meanwhile. A decision that no longer holds falls back to the built-in
// policy.
func (d *dispatcher) placeScripted(ctx context.Context) []start {
	plan := d.plan()
	if len(plan) == 0 {
		return nil
	}
	for _, p := range plan {
		p.d, p.res = d.routing.Place(ctx, p.in)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	now := time.Now()
	ws, index, _ := d.snapshotLocked(now)
	opts := d.optionsLocked()
	var places []placement
	for _, p := range plan {
		e := p.e
		e.spent.routing += p.res.Duration
		if cur, queued := d.q.Get(e.id); !queued || cur != e {
			continue
		}
		t0 := time.Now()
		note := joinNotes(e.routingNote, p.res.Note)
		o := opts
		o.Cached = d.cachedLocked(e, ws)
		o.Room = d.room
		chosen := ""
		switch p.d.Action {
		case routing.ActionWait:
			wait := time.Duration(p.d.RetryAfterMs) * time.Millisecond
			e.notBefore = now.Add(wait)
			scheduler.Filter(e.st, ws, &d.dec)
			ex := explain(&d.dec, e.st, ws, o.Cached, now)
			ex.Summary = fmt.Sprintf("waiting %s as the routing script asked", wait)
			ex.Routing = note
			e.spent.schedule += time.Since(t0)
			d.explainLocked(e, ex)
			time.AfterFunc(wait, d.kick)
			continue
		case routing.ActionScore:
			o.Bias = p.d.Scores
		case routing.ActionDispatch:
			if i, ok := index[p.d.Worker]; ok && ws[i].State == api.WorkerHealthy && ws[i].SlotsBusy < ws[i].SlotsTotal {
				chosen = p.d.Worker
			} else {
				note = joinNotes(note, "script's worker "+p.d.Worker+" is no longer free: built-in policy decides")
			}
		}
		if chosen != "" {
			scheduler.Filter(e.st, ws, &d.dec)
			d.dec.WorkerID = chosen
		} else {
			d.scheduleLocked(e, ws, o)
		}
		ex := explain(&d.dec, e.st, ws, o.Cached, now)
		ex.Routing = note
		e.spent.schedule += time.Since(t0)
		if d.dec.WorkerID == "" {
			d.explainLocked(e, ex)
			continue
		}
		i := index[d.dec.WorkerID]
		places = append(places, d.placedLocked(e, ws, i, o.Cached, ex))
		ws[i].SlotsBusy++
	}
	return d.startAllLocked(places)
}

// plan picks the tasks a scripted pass may place and their candidates.
func (d *dispatcher) plan() []*planItem {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if d.q.Len() == 0 || d.closed {
		return nil
	}
	ws, _, free := d.snapshotLocked(now)
	if free == 0 {
		return nil
	}
	var plan []*planItem
	blocked := map[string]bool{}
	d.q.Each(now, func(_ int, _ string, e *entry) bool {
		if e.held || e.notBefore.After(now) || d.holdLocked(e, 0, now) { // max_running (dispatcher.go)
			return true
		}
		key := e.st.Model + "\x00" + e.st.PinWorker + "\x00" + e.st.PinPool
		if blocked[key] {
			return true
		}
		t0 := time.Now()
		scheduler.Filter(e.st, ws, &d.dec)
		if len(d.dec.Candidates) == 0 {
			blocked[key] = true
			d.explainLocked(e, explain(&d.dec, e.st, ws, nil, now))
			e.spent.schedule += time.Since(t0)
			return true
		}
		cached := d.cachedLocked(e, ws)
		cands := make([]routing.Candidate, 0, len(d.dec.Candidates))
		for _, i := range d.dec.Candidates {
			cands = append(cands, d.candidateLocked(ws[i], e.st.SessionID, cached[i]))
		}
		e.spent.schedule += time.Since(t0)
		plan = append(plan, &planItem{e: e, in: routing.PlaceInput{
			Task: routingTask(e.id, e.req, e.priority, e.keyFP, e.headers), Candidates: cands, Now: now}})
		return len(plan) < free
	})
	return plan
}

func joinNotes(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}
