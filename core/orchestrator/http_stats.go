package orchestrator

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// GET /v2/stats, GET /v2/stats/stream and GET /v2/meta/auth: what the
// dashboard draws from (stats.go has the ring).

// statsWriteTimeout bounds one write of the stats stream: a client that
// reads nothing for this long is dropped.
const statsWriteTimeout = 30 * time.Second

// statsWorkers reads the workers query parameter: 0..MaxStatsWorkers,
// DefaultStatsWorkers when absent.
func statsWorkers(c echo.Context) (int, *api.Error) {
	v := c.QueryParam("workers")
	if v == "" {
		return api.DefaultStatsWorkers, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > api.MaxStatsWorkers {
		return 0, &api.Error{Code: api.CodeInvalidRequest, Message: "invalid request", Fields: []api.FieldError{{
			Field: "workers", Constraint: "0..1000", Message: "must be a number of workers from 0 to 1000"}}}
	}
	return n, nil
}

func (s *Server) handleStats(c echo.Context) error {
	window := time.Duration(api.StatsSpanMs) * time.Millisecond
	if v := c.QueryParam("window"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second || d > window {
			return writeError(c, &api.Error{Code: api.CodeInvalidRequest, Message: "invalid request", Fields: []api.FieldError{{
				Field: "window", Constraint: "1s..15m", Message: "must be a duration from 1s to 15m, such as 90s or 15m"}}})
		}
		window = d
	}
	n, e := statsWorkers(c)
	if e != nil {
		return writeError(c, e)
	}
	return c.JSON(http.StatusOK, s.stats.window(window, n))
}

// handleStatsStream sends every new sample as an SSE event ("sample", id
// its time) until the client leaves or the server stops. A client that
// gives Last-Event-ID (a sample's time) gets the recent samples after it
// first. A reader too slow for the interval skips samples: the sampler
// never waits for it.
func (s *Server) handleStatsStream(c echo.Context) error {
	n, e := statsWorkers(c)
	if e != nil {
		return writeError(c, e)
	}
	next := s.stats.after(math.MaxInt64) // the next sample: a client that has the headers gets it
	if v := c.Request().Header.Get("Last-Event-ID"); v != "" {
		t, err := strconv.ParseInt(v, 10, 64)
		if err != nil || t < 0 {
			return writeError(c, api.Errorf(api.CodeInvalidRequest, "Last-Event-ID must be a sample's time from this stream (Unix milliseconds)"))
		}
		next = s.stats.after(t)
	}
	if s.stats.subs.Add(1) > maxStatsSubscribers {
		s.stats.subs.Add(-1)
		return writeError(c, api.Errorf(api.CodeUnavailable, "too many open stats streams (at most %d): close one, or poll GET /v2/stats", maxStatsSubscribers))
	}
	defer s.stats.subs.Add(-1)
	h := c.Response().Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.Response().WriteHeader(http.StatusOK)
	c.Response().Flush() // the client knows it is subscribed before the first sample
	w := sse.NewWriter(c.Response())
	ctx := c.Request().Context()
	// A write blocked on a client that does not read ends when the client
	// or the server goes (or after statsWriteTimeout), not at the server's
	// shutdown timeout.
	rc := http.NewResponseController(c.Response())
	var mu sync.Mutex // the response is echo's, reused once this returns: no deadline after that
	returned := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !returned {
			_ = rc.SetWriteDeadline(time.Now())
		}
	})
	defer func() {
		stop()
		mu.Lock()
		returned = true
		mu.Unlock()
	}()
	writable := func() bool { // set before each write; false once ctx ended
		_ = rc.SetWriteDeadline(time.Now().Add(statsWriteTimeout))
		return ctx.Err() == nil
	}
	ping := time.NewTimer(s.cfg.KeepAlive)
	defer ping.Stop()
	var id []byte
	for {
		var samples []*api.StatsSample
		var changed <-chan struct{}
		samples, next, changed = s.stats.since(next)
		if len(samples) > 0 {
			if !writable() {
				return nil
			}
			err := w.Batch(func() error {
				for _, sm := range samples {
					id = strconv.AppendInt(id[:0], sm.T, 10)
					if err := w.JSON("sample", string(id), busiest(sm, n)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return nil // the client went away
			}
			ping.Reset(s.cfg.KeepAlive)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-ping.C:
			if !writable() || w.Comment("ping") != nil {
				return nil
			}
			ping.Reset(s.cfg.KeepAlive)
		}
	}
}

// handleAuthInfo tells the dashboard whether to ask for a key first. It is
// open: it says nothing a 401 would not.
func (s *Server) handleAuthInfo(c echo.Context) error {
	return c.JSON(http.StatusOK, api.AuthInfo{KeysRequired: !s.auth.open()})
}
