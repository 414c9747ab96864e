package orchestrator

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/scheduler"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/workerclient"
)

// worker is a registered worker. Guarded by Server.mu.
type worker struct {
	rec            store.WorkerRecord
	client         *workerclient.Client
	assigned       int     // tasks dispatched here and not finished
	slotsBusy      int     // as last reported
	tps            float64 // tokens/s as last reported
	load           float64 // EWMA of the busy fraction
	probing        bool
	suspect        bool // an attempt on it failed: probe at the next round
	unhealthySince time.Time
}

func (w *worker) view() api.WorkerView {
	return api.WorkerView{
		WorkerRegistration: w.rec.WorkerRegistration,
		State:              w.rec.State,
		SlotsBusy:          w.slotsBusy,
		Assigned:           w.assigned,
		TokensPerSecond:    w.tps,
		LastSeen:           w.rec.LastSeen,
		RegisteredAt:       w.rec.RegisteredAt,
	}
}

func (w *worker) schedulable() scheduler.Worker {
	return scheduler.Worker{
		ID: w.rec.WorkerID, Pool: w.rec.Pool, Model: w.rec.Model.ID, State: w.rec.State,
		SlotsTotal: w.rec.Slots, SlotsBusy: w.assigned, Load: w.load, TokensPerSecond: w.tps, Labels: w.rec.Labels,
	}
}

func (s *Server) newWorker(rec store.WorkerRecord) *worker {
	return &worker{rec: rec, client: workerclient.New(rec.URL, s.cfg.WorkerToken, s.hc)}
}

func (s *Server) loadRegistry() error {
	recs, err := s.st.Workers()
	if err != nil {
		return err
	}
	now := time.Now()
	for _, r := range recs {
		w := s.newWorker(r)
		// A restarted orchestrator has heard nothing yet: give every worker
		// a full heartbeat timeout before probing it.
		if w.rec.State != api.WorkerDead {
			w.rec.LastSeen = now
		}
		s.workers[r.WorkerID] = w
	}
	s.updateWorkerGauge()
	return nil
}

// updateWorkerGauge recounts workers by state. Called with s.mu held.
func (s *Server) updateWorkerGauge() {
	counts := map[string]int{api.WorkerHealthy: 0, api.WorkerUnhealthy: 0, api.WorkerDead: 0, api.WorkerDraining: 0}
	for _, w := range s.workers {
		counts[w.rec.State]++
	}
	for st, n := range counts {
		s.metrics.workers.WithLabelValues(st).Set(float64(n))
	}
}

func (s *Server) handleRegister(c echo.Context) error {
	body, apiErr := readBody(c)
	if apiErr != nil {
		return writeError(c, apiErr)
	}
	var reg api.WorkerRegistration
	if err := json.Unmarshal(body, &reg); err != nil {
		return writeError(c, &api.Error{Code: api.CodeInvalidRequest, Message: "body is not a worker registration: " + err.Error()})
	}
	if e := reg.Validate(); e != nil {
		return writeError(c, e)
	}
	if !strings.HasPrefix(reg.URL, "http://") && !strings.HasPrefix(reg.URL, "https://") {
		reg.URL = "http://" + reg.URL
	}
	now := time.Now()
	s.mu.Lock()
	w, ok := s.workers[reg.WorkerID]
	rec := store.WorkerRecord{WorkerRegistration: reg, State: api.WorkerHealthy, RegisteredAt: now, LastSeen: now}
	if ok {
		// Update in place: running attempts hold this worker and give
		// their slots back to it.
		rec.RegisteredAt = w.rec.RegisteredAt
		if w.rec.State == api.WorkerDraining {
			rec.State = api.WorkerDraining
		}
		if rec.URL != w.rec.URL {
			w.client = workerclient.New(rec.URL, s.cfg.WorkerToken, s.hc)
		}
		w.rec = rec
	} else {
		w = s.newWorker(rec)
		s.workers[reg.WorkerID] = w
	}
	s.updateWorkerGauge()
	v := w.view()
	s.mu.Unlock()
	if err := s.st.PutWorker(rec); err != nil {
		return err
	}
	s.log.Info("worker registered", "worker_id", reg.WorkerID, "url", reg.URL, "model", reg.Model.ID, "slots", reg.Slots, "pool", reg.Pool)
	s.signal()
	return c.JSON(http.StatusOK, v)
}

func (s *Server) handleHeartbeat(c echo.Context) error {
	body, apiErr := readBody(c)
	if apiErr != nil {
		return writeError(c, apiErr)
	}
	var hb api.Heartbeat
	if err := json.Unmarshal(body, &hb); err != nil {
		return writeError(c, &api.Error{Code: api.CodeInvalidRequest, Message: "body is not a heartbeat: " + err.Error()})
	}
	if e := s.heartbeat(c.Param("id"), hb); e != nil {
		return writeError(c, e)
	}
	return c.NoContent(http.StatusNoContent)
}

// heartbeat records a worker's heartbeat; a worker that was unhealthy or
// dead is healthy again.
func (s *Server) heartbeat(id string, hb api.Heartbeat) *api.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.workers[id]
	if !ok {
		return &api.Error{Code: api.CodeWorkerNotFound, Message: "unknown worker " + id + ": register first"}
	}
	w.rec.LastSeen = time.Now()
	w.slotsBusy, w.tps = hb.SlotsBusy, hb.TokensPerSecond
	if hb.SlotsTotal > 0 {
		w.rec.Slots = hb.SlotsTotal
	}
	if w.rec.Slots > 0 {
		frac := float64(max(w.slotsBusy, w.assigned)) / float64(w.rec.Slots)
		w.load = 0.7*w.load + 0.3*min(frac, 1)
	}
	switch {
	case hb.Status == api.StatusDraining:
		s.setState(w, api.WorkerDraining, "the worker is draining")
	case w.rec.State == api.WorkerUnhealthy || w.rec.State == api.WorkerDead:
		s.setState(w, api.WorkerHealthy, "heartbeats resumed")
	}
	return nil
}

func (s *Server) handleListWorkers(c echo.Context) error {
	s.mu.Lock()
	out := make([]api.WorkerView, 0, len(s.workers))
	for _, w := range s.workers {
		out = append(out, w.view())
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b api.WorkerView) int { return strings.Compare(a.WorkerID, b.WorkerID) })
	return c.JSON(http.StatusOK, map[string]any{"workers": out})
}

func (s *Server) handleDrain(c echo.Context) error {
	id := c.Param("id")
	s.mu.Lock()
	w, ok := s.workers[id]
	if !ok {
		s.mu.Unlock()
		return writeError(c, &api.Error{Code: api.CodeWorkerNotFound, Message: "no worker " + id})
	}
	w.rec.State = api.WorkerDraining
	rec, v := w.rec, w.view()
	s.updateWorkerGauge()
	s.mu.Unlock()
	if err := s.st.PutWorker(rec); err != nil {
		return err
	}
	s.log.Info("worker draining", "worker_id", id)
	return c.JSON(http.StatusAccepted, v)
}

func (s *Server) handleDeleteWorker(c echo.Context) error {
	id := c.Param("id")
	s.mu.Lock()
	_, ok := s.workers[id]
	delete(s.workers, id)
	s.updateWorkerGauge()
	s.mu.Unlock()
	if !ok {
		return writeError(c, &api.Error{Code: api.CodeWorkerNotFound, Message: "no worker " + id})
	}
	if err := s.st.DeleteWorker(id); err != nil {
		return err
	}
	s.log.Info("worker removed", "worker_id", id)
	return c.NoContent(http.StatusNoContent)
}

// monitorLoop probes silent workers and ages unhealthy ones to dead.
func (s *Server) monitorLoop(ctx context.Context) {
	tick(ctx, s.cfg.MonitorInterval, nil, func() { s.monitor(ctx, time.Now()) })
}

// monitor runs one round of health checks at now.
func (s *Server) monitor(ctx context.Context, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.workers {
		switch w.rec.State {
		case api.WorkerHealthy, api.WorkerDraining:
			if (w.suspect || now.Sub(w.rec.LastSeen) > s.cfg.HeartbeatTimeout) && !w.probing {
				w.suspect = false
				w.probing = true
				go s.probe(ctx, w, w.client)
			}
		case api.WorkerUnhealthy:
			if now.Sub(w.unhealthySince) > s.cfg.DeadAfter {
				s.setState(w, api.WorkerDead, "no heartbeat and no answer to /health")
			} else if !w.probing {
				w.probing = true
				go s.probe(ctx, w, w.client)
			}
		}
	}
}

// probe asks a silent worker for /health.
func (s *Server) probe(ctx context.Context, w *worker, client *workerclient.Client) {
	pctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeTimeout)
	h, err := s.health(pctx, client)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	w.probing = false
	if s.workers[w.rec.WorkerID] != w {
		return // removed or re-registered meanwhile
	}
	if err == nil && h.Status != api.StatusFailed {
		w.rec.LastSeen = time.Now()
		w.slotsBusy = h.SlotsBusy
		if w.rec.State == api.WorkerUnhealthy {
			s.setState(w, api.WorkerHealthy, "answered /health")
		}
		return
	}
	if w.rec.State == api.WorkerHealthy || w.rec.State == api.WorkerDraining {
		reason := "no heartbeat for " + s.cfg.HeartbeatTimeout.String()
		if err != nil {
			reason += " and /health failed: " + err.Error()
		}
		w.unhealthySince = time.Now()
		s.setState(w, api.WorkerUnhealthy, reason)
	}
}

// setState changes a worker's state, logs and persists it. Called with s.mu held.
func (s *Server) setState(w *worker, state, why string) {
	if w.rec.State == state {
		return
	}
	s.log.Warn("worker state", "worker_id", w.rec.WorkerID, "from", w.rec.State, "to", state, "why", why)
	w.rec.State = state
	s.updateWorkerGauge()
	rec := w.rec
	go func() {
		if err := s.st.PutWorker(rec); err != nil {
			s.log.Error("saving worker", "worker_id", rec.WorkerID, "err", err)
		}
	}()
	if state == api.WorkerHealthy {
		s.signal()
	}
}

func (s *Server) handleListPools(c echo.Context) error {
	pools, err := s.st.Pools()
	if err != nil {
		return err
	}
	if pools == nil {
		pools = []api.Pool{}
	}
	return c.JSON(http.StatusOK, map[string]any{"pools": pools})
}

func (s *Server) handlePutPool(c echo.Context) error {
	body, apiErr := readBody(c)
	if apiErr != nil {
		return writeError(c, apiErr)
	}
	var p api.Pool
	if err := json.Unmarshal(body, &p); err != nil {
		return writeError(c, &api.Error{Code: api.CodeInvalidRequest, Message: "body is not a pool: " + err.Error()})
	}
	if e := p.Validate(); e != nil {
		return writeError(c, e)
	}
	if p.LlorchPath == "" {
		p.LlorchPath = "llorch"
	}
	if err := s.st.PutPool(p); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, p)
}

func (s *Server) handleDeletePool(c echo.Context) error {
	err := s.st.DeletePool(c.Param("name"))
	if errors.Is(err, store.ErrNotFound) {
		return writeError(c, &api.Error{Code: api.CodeNotFound, Message: "no pool " + c.Param("name")})
	}
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
