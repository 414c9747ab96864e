package workerd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/llorch/llorch/core/api"
)

// registerLoop registers the worker with the orchestrator, then heartbeats
// until ctx ends. A failed registration is retried with backoff; a heartbeat
// the orchestrator does not recognise (it forgot the worker) registers again.
func (s *Server) registerLoop(ctx context.Context, listenAddr string) {
	base := strings.TrimRight(s.cfg.Orchestrator, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	self := s.cfg.AdvertiseURL
	if self == "" {
		self = "http://" + listenAddr
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	log := s.log.With("orchestrator", base)
	registered, registeredDigest := false, ""
	backoff := 250 * time.Millisecond
	for {
		h := s.Health()
		var wait time.Duration
		if !registered || (registeredDigest == "" && h.Model.Digest != "") {
			reg := api.WorkerRegistration{WorkerID: s.cfg.WorkerID, URL: self, Model: h.Model, Backend: h.Backend,
				Slots: h.SlotsTotal, VRAMBytes: h.VRAMBytes, Pool: s.cfg.Pool, Labels: s.cfg.Labels}
			status, err := s.post(ctx, hc, base+"/v2/workers/register", reg)
			if err == nil && status == http.StatusOK {
				if !registered {
					log.Info("registered with the orchestrator", "url", self)
				}
				registered, registeredDigest, backoff = true, h.Model.Digest, 250*time.Millisecond
				wait = s.cfg.HeartbeatInterval
			} else {
				log.Warn("registration failed; retrying", "status", status, "err", err, "in", backoff)
				wait, backoff = backoff, min(2*backoff, 10*time.Second)
			}
		} else {
			hb := api.Heartbeat{Status: h.Status, SlotsBusy: h.SlotsBusy, SlotsTotal: h.SlotsTotal, TokensPerSecond: h.TokensPerSecond}
			status, err := s.post(ctx, hc, base+"/v2/workers/"+s.cfg.WorkerID+"/heartbeat", hb)
			switch {
			case err == nil && status == http.StatusNotFound:
				log.Warn("the orchestrator forgot this worker; registering again")
				registered = false
			case err != nil || status >= 300:
				log.Debug("heartbeat failed", "status", status, "err", err)
			}
			wait = s.cfg.HeartbeatInterval
			if !registered {
				wait = 0
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (s *Server) post(ctx context.Context, hc *http.Client, url string, v any) (int, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	if s.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 300 && resp.StatusCode != http.StatusNotFound {
		return resp.StatusCode, fmt.Errorf("orchestrator answered %d: %s", resp.StatusCode, bytes.TrimSpace(data))
	}
	return resp.StatusCode, nil
}
