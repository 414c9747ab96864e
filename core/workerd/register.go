package workerd

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/bind"
	"github.com/llorch/llorch/core/orchclient"
)

// registerLoop registers the worker with the orchestrator, then heartbeats
// until ctx ends. A failed registration is retried with backoff; a heartbeat
// the orchestrator does not recognise (it forgot the worker) registers again.
func (s *Server) registerLoop(ctx context.Context, ln net.Addr) {
	log := s.log.With("orchestrator", s.cfg.Orchestrator)
	oc, err := orchclient.New(s.cfg.Orchestrator, s.cfg.Token, &http.Client{Timeout: 5 * time.Second})
	if err != nil {
		log.Error("cannot register", "err", err)
		return
	}
	self := s.cfg.AdvertiseURL
	if self == "" {
		self = advertise(ln, oc.URL())
		log.Info("advertising this address to the orchestrator (set --advertise-url to change it)", "url", self)
	}
	registered, registeredDigest := false, ""
	backoff := 250 * time.Millisecond
	for {
		h := s.Health()
		var wait time.Duration
		if !registered || (registeredDigest == "" && h.Model.Digest != "") {
			reg := api.WorkerRegistration{WorkerID: s.cfg.WorkerID, URL: self, Model: h.Model, Backend: h.Backend,
				Slots: h.SlotsTotal, VRAMBytes: h.VRAMBytes, Pool: s.cfg.Pool, Labels: s.cfg.Labels}
			if _, err := oc.Register(ctx, reg); err == nil {
				if !registered {
					log.Info("registered with the orchestrator", "url", self)
				}
				registered, registeredDigest, backoff = true, h.Model.Digest, 250*time.Millisecond
				wait = s.cfg.HeartbeatInterval
			} else {
				log.Warn("registration failed; retrying", "err", err, "in", backoff)
				wait, backoff = backoff, min(2*backoff, 10*time.Second)
			}
		} else {
			hb := api.Heartbeat{Status: h.Status, SlotsBusy: h.SlotsBusy, SlotsTotal: h.SlotsTotal, TokensPerSecond: h.TokensPerSecond,
				RSSBytes: h.RSSBytes, VRAMBytes: h.VRAMBytes}
			err := oc.Heartbeat(ctx, s.cfg.WorkerID, hb)
			switch {
			case orchclient.Code(err) == api.CodeWorkerNotFound:
				log.Warn("the orchestrator forgot this worker; registering again")
				registered = false
			case err != nil:
				log.Debug("heartbeat failed", "err", err)
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

// advertise is the URL the orchestrator should use when the operator gave
// none: the listening address, unless it is every interface (0.0.0.0, ::),
// which no peer can dial: then loopback for an orchestrator on this machine,
// else this host's name.
func advertise(ln net.Addr, orchestrator string) string {
	tcp, ok := ln.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return bind.LocalURL(ln)
	}
	if u, err := url.Parse(orchestrator); err == nil && bind.Loopback(u.Hostname()) {
		return bind.LocalURL(ln)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return bind.LocalURL(ln)
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(tcp.Port))
}
