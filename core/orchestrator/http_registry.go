package orchestrator

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
)

func (s *Server) handleRegister(c echo.Context) error {
	body, e := readBody(c)
	if e != nil {
		return writeError(c, e)
	}
	var reg api.WorkerRegistration
	if err := json.Unmarshal(body, &reg); err != nil {
		return writeError(c, api.Errorf(api.CodeInvalidRequest, "body is not a worker registration: %s", err.Error()))
	}
	if e := reg.Validate(); e != nil {
		return writeError(c, e)
	}
	return c.JSON(http.StatusOK, s.reg.register(reg))
}

func (s *Server) handleHeartbeat(c echo.Context) error {
	id := c.Param("id")
	if why := api.CheckID(id); why != "" {
		return writeError(c, api.Errorf(api.CodeInvalidRequest, "worker id %s", why))
	}
	body, e := readBody(c)
	if e != nil {
		return writeError(c, e)
	}
	var hb api.Heartbeat
	if err := json.Unmarshal(body, &hb); err != nil {
		return writeError(c, api.Errorf(api.CodeInvalidRequest, "body is not a heartbeat: %s", err.Error()))
	}
	if e := hb.Validate(); e != nil {
		return writeError(c, e)
	}
	if e := s.reg.heartbeat(id, hb); e != nil {
		return writeError(c, e)
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) handleListWorkers(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"workers": s.reg.list()})
}

// handleDrain stops new work for a worker; with {"migrate": true} its
// running tasks move to other workers at once.
func (s *Server) handleDrain(c echo.Context) error {
	var req api.DrainRequest
	if c.Request().ContentLength != 0 {
		body, e := readBody(c)
		if e != nil {
			return writeError(c, e)
		}
		if len(bytes.TrimSpace(body)) > 0 {
			if err := strictJSON(body, &req); err != nil {
				return writeError(c, api.Errorf(api.CodeInvalidRequest, "body is not a drain request ({\"migrate\": true|false}): %s", err.Error()))
			}
		}
	}
	v, e := s.reg.drain(c.Param("id"))
	if e != nil {
		return writeError(c, e)
	}
	if req.Migrate {
		if n := s.disp.migrateOff(v.WorkerID); n > 0 {
			s.log.Info("drained with migrate: moving running tasks", "worker_id", v.WorkerID, "tasks", n)
		}
	}
	return c.JSON(http.StatusAccepted, v)
}

func (s *Server) handleDeleteWorker(c echo.Context) error {
	if e := s.reg.remove(c.Param("id")); e != nil {
		return writeError(c, e)
	}
	return c.NoContent(http.StatusNoContent)
}
