package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

func (s *Server) handleListPools(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"pools": s.fleet.poolViews()})
}

func (s *Server) handleGetPool(c echo.Context) error {
	v, ok := s.fleet.poolView(c.Param("name"))
	if !ok {
		return writeError(c, api.Errorf(api.CodeNotFound, "no pool %s", c.Param("name")))
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) handlePutPool(c echo.Context) error {
	var p api.Pool
	if e := decodeBody(c, &p, "pool"); e != nil {
		return writeError(c, e)
	}
	v, e := s.fleet.putPool(p)
	if e != nil {
		return writeError(c, e)
	}
	return c.JSON(http.StatusOK, v)
}

// handleRefreshPool reads a pool's inventory now and answers with it.
func (s *Server) handleRefreshPool(c echo.Context) error {
	v, ok := s.fleet.refresh(c.Request().Context(), c.Param("name"))
	if !ok {
		return writeError(c, api.Errorf(api.CodeNotFound, "no pool %s", c.Param("name")))
	}
	if v.Name == "" { // a refresh was already running: answer with the last view
		v, _ = s.fleet.poolView(c.Param("name"))
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) handleDeletePool(c echo.Context) error {
	if e := s.fleet.deletePool(c.Param("name")); e != nil {
		return writeError(c, e)
	}
	return c.NoContent(http.StatusNoContent)
}

func (s *Server) handleListModels(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"models": s.fleet.modelViews()})
}

func (s *Server) handleGetModel(c echo.Context) error {
	v, ok := s.fleet.modelView(c.Param("id"))
	if !ok {
		return writeError(c, api.Errorf(api.CodeNotFound, "model %s is not declared", c.Param("id")))
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) handlePutModel(c echo.Context) error {
	var m api.ModelSpec
	if e := decodeBody(c, &m, "model"); e != nil {
		return writeError(c, e)
	}
	id := c.Param("id")
	if m.ID == "" {
		m.ID = id
	}
	if m.ID != id {
		return writeError(c, &api.Error{Code: api.CodeInvalidRequest, Message: "invalid model", Fields: []api.FieldError{{
			Field: "id", Constraint: "path", Message: "must be the id in the path (" + id + ")"}}})
	}
	v, e := s.fleet.putModel(m)
	if e != nil {
		return writeError(c, e)
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) handleDeleteModel(c echo.Context) error {
	if e := s.fleet.deleteModel(c.Param("id")); e != nil {
		return writeError(c, e)
	}
	return c.NoContent(http.StatusAccepted)
}

// handleFleetEvents lists fleet events after ?after= (JSON), or streams
// them (SSE, resumable with Last-Event-ID) until the client leaves.
func (s *Server) handleFleetEvents(c echo.Context) error {
	last := c.Request().Header.Get("Last-Event-ID")
	if last == "" {
		last = c.QueryParam("after")
	}
	after, e := parseLastEventID(last, s.fleet.lastSeq())
	if e != nil {
		return writeError(c, e)
	}
	limit := 100
	if l := c.QueryParam("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > memEventsKept {
			return writeError(c, &api.Error{Code: api.CodeInvalidRequest, Message: "invalid request", Fields: []api.FieldError{{
				Field: "limit", Constraint: "1..1000", Message: "must be a number from 1 to 1000"}}})
		}
		limit = n
	}
	if !strings.Contains(c.Request().Header.Get("Accept"), "text/event-stream") {
		evs, _ := s.fleet.eventsAfter(after, limit)
		return c.JSON(http.StatusOK, map[string]any{"events": evs})
	}
	h := c.Response().Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.Response().WriteHeader(http.StatusOK)
	w := sse.NewWriter(c.Response())
	ctx := c.Request().Context()
	keep := time.NewTicker(s.cfg.KeepAlive)
	defer keep.Stop()
	for {
		evs, changed := s.fleet.eventsAfter(after, memEventsKept)
		err := w.Batch(func() error {
			for _, ev := range evs {
				if err := w.JSON("fleet", strconv.FormatUint(ev.Seq, 10), ev); err != nil {
					return err
				}
				after = ev.Seq
			}
			return nil
		})
		if err != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-keep.C:
			if w.Comment("keep-alive") != nil {
				return nil
			}
		}
	}
}

// handleCapabilities tells a client what this orchestrator serves.
func (s *Server) handleCapabilities(c echo.Context) error {
	served := map[string]int{}
	for _, w := range s.reg.list() {
		served[w.Model.ID] = max(served[w.Model.ID], w.Model.Ctx)
	}
	return c.JSON(http.StatusOK, api.Capabilities{
		APIVersion: "v2",
		Version:    s.cfg.Version,
		Models:     s.fleet.capabilities(served),
		Limits: api.CapabilityLimits{QueueCapacity: s.cfg.QueueCapacity, DefaultMaxTokens: api.DefaultMaxTokens,
			MaxRequestBytes: api.MaxRequestBytes, MaxStop: api.MaxStopSequences},
		Features: []string{"tasks", "sse", "resume", "openai.chat", "openai.completions", "openai.models", "routing.tengo",
			"fleet.pools", "fleet.models", "fleet.on_demand", "fleet.events", "roles", "migration"},
	})
}

// decodeBody reads a JSON body into v; what the body is, for the message.
// strictJSON decodes one JSON object from body into v, refusing fields v
// does not have (a misspelt field must not pass as absent) and data after
// the object.
func strictJSON(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the object")
	}
	return nil
}

func decodeBody(c echo.Context, v any, what string) *api.Error {
	body, e := readBody(c)
	if e != nil {
		return e
	}
	if err := json.Unmarshal(body, v); err != nil {
		return api.Errorf(api.CodeInvalidRequest, "body is not a %s: %s", what, err.Error())
	}
	return nil
}
