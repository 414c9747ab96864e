package workerd

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
)

// Sessions: a job may carry the session id of the orchestrator's session
// (api.ExecuteRequest.SessionID). The slot that ran it remembers it, so the
// orchestrator can ask which slots still hold the session's cached prefix
// (GET /v1/sessions/{id}) and make the worker forget it (DELETE): a slot
// keeps the tag until a job of another session (or of none) takes it. A
// prefix copied from the session's slot into another one (see start) is not
// followed: that slot belongs to its own job's session.

// sessionCache reports the slots whose cache the session's last job left.
func (e *engine) sessionCache(id string) api.SessionCache {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := api.SessionCache{SessionID: id, Slots: []int{}}
	for _, s := range e.slots {
		if s.session != id {
			continue
		}
		out.Slots = append(out.Slots, s.id)
		if s.job != nil { // running the session's job: its cache is in use (and grows)
			out.Warm = true
			continue
		}
		out.CachedTokens += len(s.cache)
		out.Warm = out.Warm || len(s.cache) > 0
	}
	return out
}

// dropSession forgets the KV cache the session left: a free slot's cached
// tokens are dropped now (its next job evaluates its prompt afresh and
// trims the sequence), a slot running the session's job is marked and
// dropped when that job ends. It is idempotent.
func (e *engine) dropSession(id string) api.SessionCache {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := api.SessionCache{SessionID: id, Slots: []int{}}
	for _, s := range e.slots {
		if s.session != id {
			continue
		}
		if s.job != nil {
			s.dropKV = true
			out.Pending = append(out.Pending, s.id)
			continue
		}
		out.Slots = append(out.Slots, s.id)
		out.CachedTokens += len(s.cache)
		s.cache, s.session = s.cache[:0], ""
	}
	return out
}

// dropIfMarkedLocked clears a released slot's cache when its session was
// deleted while the job ran.
func (s *slot) dropIfMarkedLocked() {
	if s.dropKV {
		s.cache, s.session, s.dropKV = s.cache[:0], "", false
	}
}

// sessionParam reads and checks the {id} of a sessions route.
func sessionParam(c echo.Context) (string, *api.Error) {
	id := c.Param("id")
	ok := id != "" && len(id) <= api.MaxSessionIDLength
	for i := 0; ok && i < len(id); i++ {
		ok = id[i] > 0x20 && id[i] < 0x7f
	}
	if !ok {
		return "", &api.Error{Code: api.CodeInvalidRequest, Message: "invalid session id", Fields: []api.FieldError{{
			Field: "id", Constraint: "printable_ascii<=256", Message: "must be 1 to 256 printable ASCII characters"}}}
	}
	return id, nil
}

// sessionCache runs op on the engine for the request's session id: an
// empty answer while the model loads (nothing is cached), an error for a
// bad id.
func (s *Server) sessionCache(c echo.Context, op func(*engine, string) api.SessionCache) (api.SessionCache, *api.Error) {
	id, e := sessionParam(c)
	if e != nil {
		return api.SessionCache{}, e
	}
	if eng := s.engineOrNil(); eng != nil {
		return op(eng, id), nil
	}
	return api.SessionCache{SessionID: id, Slots: []int{}}, nil
}

// engine returns the engine, nil while the model loads (nothing is cached).
func (s *Server) engineOrNil() *engine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eng
}

func (s *Server) handleGetSession(c echo.Context) error {
	out, e := s.sessionCache(c, (*engine).sessionCache)
	if e != nil {
		return writeError(c, e)
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) handleDropSession(c echo.Context) error {
	out, e := s.sessionCache(c, (*engine).dropSession)
	if e != nil {
		return writeError(c, e)
	}
	s.log.Debug("session cache dropped", "slots", out.Slots, "pending", out.Pending)
	return c.JSON(http.StatusOK, out)
}
