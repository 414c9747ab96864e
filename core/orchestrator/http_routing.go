package orchestrator

import (
	"io"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/routing"
)

func (s *Server) handleGetScript(c echo.Context) error {
	name, src, ok := s.routing.Source()
	if !ok {
		return writeError(c, api.Errorf(api.CodeNotFound, "no routing script is loaded: the built-in policy decides"))
	}
	c.Response().Header().Set("X-Routing-Script", name)
	return c.Blob(http.StatusOK, "text/plain; charset=utf-8", src)
}

func (s *Server) handlePutScript(c echo.Context) error {
	src, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, routing.MaxSourceBytes))
	if err != nil {
		return writeError(c, api.Errorf(api.CodeBodyTooLarge, "a routing script is at most %d bytes", routing.MaxSourceBytes))
	}
	if err := s.loadScript(c.Request().Context(), "api.tengo", src); err != nil {
		s.m.routingReloads.WithLabelValues("error").Inc()
		return writeError(c, api.Errorf(api.CodeInvalidRequest, "%s (the previous script stays)", err.Error()))
	}
	s.m.routingReloads.WithLabelValues("ok").Inc()
	if err := s.st.PutSetting(settingRouting, src); err != nil {
		return err
	}
	s.log.Info("routing script loaded", "from", "api", "key", principalOf(c.Request().Context()).fp)
	s.disp.kick()
	return c.JSON(http.StatusOK, map[string]any{"loaded": true, "bytes": len(src)})
}

// handleCheckScript is POST /v2/routing/check: the body's script is tried
// as PUT would try it (the sandboxed trial), then compiled here and run
// against the sample snapshot and over a snapshot of this orchestrator
// taken now. Nothing is loaded or stored; a script that fails is a 200
// with ok false and why.
func (s *Server) handleCheckScript(c echo.Context) error {
	src, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, routing.MaxSourceBytes))
	if err != nil {
		return writeError(c, api.Errorf(api.CodeBodyTooLarge, "a routing script is at most %d bytes", routing.MaxSourceBytes))
	}
	const name = "api.tengo"
	if err := s.trialScript(c.Request().Context(), name, src); err != nil {
		return c.JSON(http.StatusOK, api.RoutingCheck{Error: err.Error()})
	}
	check, replay, err := routing.CheckAndReplay(name, src, s.disp.snapshot(),
		routing.Config{Timeout: s.cfg.RoutingTimeout, MaxAllocs: s.cfg.RoutingMaxAllocs})
	res := api.RoutingCheck{OK: err == nil, Check: check, Replay: replay}
	if err != nil {
		res.Error = err.Error()
	}
	return c.JSON(http.StatusOK, res)
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
	return c.JSON(http.StatusOK, s.disp.snapshot())
}
