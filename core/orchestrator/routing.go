package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/routing"
	"github.com/llorch/llorch/core/scheduler"
)

// settingRouting is the store setting that holds a script set through the API.
const settingRouting = "routing_script"

// maxScriptBytes bounds a routing script.
const maxScriptBytes = 1 << 20

// initRouting loads the script: the file when one is configured, else the
// one stored through the API. A script that does not compile at startup is
// an error (there is no previous script to keep).
func (s *Server) initRouting() error {
	if s.cfg.RoutingFile != "" {
		return s.ReloadRouting()
	}
	src, err := s.st.Setting(settingRouting)
	if err != nil || src == nil {
		return err
	}
	if err := s.routing.Load("api.tengo", src); err != nil {
		return fmt.Errorf("orchestrator: stored routing script: %w", err)
	}
	s.log.Info("routing script loaded", "from", "store")
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
	if err := s.routing.Load(s.cfg.RoutingFile, src); err != nil {
		s.metrics.routingReloads.WithLabelValues("error").Inc()
		return err
	}
	s.metrics.routingReloads.WithLabelValues("ok").Inc()
	s.log.Info("routing script loaded", "file", s.cfg.RoutingFile)
	return nil
}

// watchRouting reloads the script file when it changes.
func (s *Server) watchRouting(ctx context.Context) {
	if s.cfg.RoutingFile == "" {
		return
	}
	s.routing.WatchFile(ctx, s.cfg.RoutingFile, time.Second, func(err error) {
		if err != nil {
			s.metrics.routingReloads.WithLabelValues("error").Inc()
			s.log.Error("routing script not reloaded; keeping the previous one", "err", err)
			return
		}
		s.metrics.routingReloads.WithLabelValues("ok").Inc()
		s.log.Info("routing script reloaded", "file", s.cfg.RoutingFile)
	})
}

func (s *Server) observeRouting(stage string, o routing.Outcome, d time.Duration) {
	s.metrics.routingCalls.WithLabelValues(stage, string(o)).Inc()
	s.metrics.routingSeconds.WithLabelValues(stage).Observe(d.Seconds())
}

// routingTask is what a script sees of a task.
func (s *Server) routingTask(id string, req *api.TaskRequest, prio, keyFP string, headers map[string]string) routing.Task {
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
func (s *Server) whitelisted(h http.Header) map[string]string {
	if len(s.cfg.RoutingHeaders) == 0 || h == nil {
		return nil
	}
	out := map[string]string{}
	for _, name := range s.cfg.RoutingHeaders {
		if v := h.Get(name); v != "" {
			out[strings.ToLower(name)] = v
		}
	}
	return out
}

// queueDepths is the queue depth per model and priority. Called with s.mu held.
func (s *Server) queueDepths() map[string]map[string]int {
	out := map[string]map[string]int{}
	for k, n := range s.depth {
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

func (s *Server) candidate(w scheduler.Worker, session string) routing.Candidate {
	c := routing.Candidate{ID: w.ID, Pool: w.Pool, Model: w.Model, SlotsFree: max(0, w.SlotsTotal-w.SlotsBusy), SlotsTotal: w.SlotsTotal,
		Load: w.Load, TokensPerSecond: w.TokensPerSecond, Labels: w.Labels}
	if session != "" && s.sessions[session] == w.ID {
		c.CachedPrefix = 1 // this worker served the session last: its prompt cache likely holds the prefix
	}
	return c
}

type planItem struct {
	t   *task
	st  scheduler.Task
	in  routing.PlaceInput
	d   routing.PlaceDecision
	res routing.Result
}

// dispatchScripted is dispatch with a routing script: the tasks to place and
// their candidates are chosen under the lock, the script runs without it,
// then its decisions are applied under the lock again, checked against what
// changed meanwhile. A decision that no longer holds falls back to the
// built-in policy.
func (s *Server) dispatchScripted(ctx context.Context) {
	s.mu.Lock()
	ws, _, free := s.snapshotLocked()
	if s.q.Len() == 0 || free == 0 {
		s.mu.Unlock()
		return
	}
	now := time.Now()
	var plan []*planItem
	blocked := map[string]bool{}
	var d scheduler.Decision
	s.q.Each(now, func(_ int, _ string, t *task) bool {
		if t.notBefore.After(now) {
			return true
		}
		st := schedulerTask(t)
		key := st.Model + "\x00" + st.PinWorker + "\x00" + st.PinPool
		if blocked[key] {
			return true
		}
		scheduler.Filter(st, ws, &d)
		if len(d.Candidates) == 0 {
			blocked[key] = true
			t.expl = explain(&d, st, ws, now)
			return true
		}
		cands := make([]routing.Candidate, 0, len(d.Candidates))
		for _, i := range d.Candidates {
			cands = append(cands, s.candidate(ws[i], st.SessionID))
		}
		plan = append(plan, &planItem{t: t, st: st, in: routing.PlaceInput{
			Task: s.routingTask(t.id, t.req, t.priority, t.keyFP, t.headers), Candidates: cands, Now: now}})
		return len(plan) < free
	})
	s.mu.Unlock()

	for _, p := range plan {
		p.d, p.res = s.routing.Place(ctx, p.in)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	ws, index, _ := s.snapshotLocked()
	opts := scheduler.Options{SessionWorker: func(sid string) string { return s.sessions[sid] }}
	now = time.Now()
	for _, p := range plan {
		t := p.t
		if _, queued := s.q.Get(t.id); !queued || t.status != api.TaskQueued {
			continue
		}
		note := joinNotes(t.routingNote, p.res.Note)
		o := opts
		chosen := ""
		switch p.d.Action {
		case routing.ActionWait:
			wait := time.Duration(p.d.RetryAfterMs) * time.Millisecond
			t.notBefore = now.Add(wait)
			scheduler.Filter(p.st, ws, &d)
			t.expl = explain(&d, p.st, ws, now)
			t.expl.Summary = fmt.Sprintf("waiting %s as the routing script asked", wait)
			t.expl.Routing = note
			time.AfterFunc(wait, s.signal)
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
			scheduler.Filter(p.st, ws, &d)
			d.WorkerID = chosen
		} else {
			s.scheduleTask(p.st, t, ws, o, &d)
		}
		t.expl = explain(&d, p.st, ws, now)
		t.expl.Routing = note
		if d.WorkerID == "" {
			continue
		}
		ws[index[d.WorkerID]].SlotsBusy++
		s.startQueuedLocked(ctx, t, s.workers[d.WorkerID])
	}
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

func (s *Server) handleGetScript(c echo.Context) error {
	name, src, ok := s.routing.Source()
	if !ok {
		return writeError(c, &api.Error{Code: api.CodeNotFound, Message: "no routing script is loaded: the built-in policy decides"})
	}
	c.Response().Header().Set("X-Routing-Script", name)
	return c.Blob(http.StatusOK, "text/plain; charset=utf-8", src)
}

func (s *Server) handlePutScript(c echo.Context) error {
	src, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, maxScriptBytes))
	if err != nil {
		return writeError(c, &api.Error{Code: api.CodeBodyTooLarge, Message: fmt.Sprintf("a routing script is at most %d bytes", maxScriptBytes)})
	}
	if err := s.routing.Load("api.tengo", src); err != nil {
		s.metrics.routingReloads.WithLabelValues("error").Inc()
		return writeError(c, &api.Error{Code: api.CodeInvalidRequest, Message: err.Error() + " (the previous script stays)"})
	}
	s.metrics.routingReloads.WithLabelValues("ok").Inc()
	if err := s.st.PutSetting(settingRouting, src); err != nil {
		return err
	}
	s.log.Info("routing script loaded", "from", "api", "key", metaOf(c.Request().Context()).keyFP)
	s.signal()
	return c.JSON(http.StatusOK, map[string]any{"loaded": true, "bytes": len(src)})
}

func (s *Server) handleDeleteScript(c echo.Context) error {
	s.routing.Clear()
	if err := s.st.PutSetting(settingRouting, nil); err != nil {
		return err
	}
	s.log.Info("routing script removed: the built-in policy decides")
	return c.NoContent(http.StatusNoContent)
}

// handleSnapshot captures the queued tasks and the workers as a routing
// snapshot, for `llorch orchestrate routing replay`.
func (s *Server) handleSnapshot(c echo.Context) error {
	s.mu.Lock()
	snap := routing.Snapshot{Now: time.Now(), Queue: s.queueDepths()}
	s.q.Each(snap.Now, func(_ int, _ string, t *task) bool {
		if t.req != nil {
			snap.Tasks = append(snap.Tasks, s.routingTask(t.id, t.req, t.priority, t.keyFP, t.headers))
		}
		return true
	})
	ws, _, _ := s.snapshotLocked()
	for _, w := range ws {
		snap.Candidates = append(snap.Candidates, s.candidate(w, ""))
	}
	s.mu.Unlock()
	return c.JSON(http.StatusOK, snap)
}
