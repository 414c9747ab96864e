package orchestrator

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
)

// Managed API keys: POST /v2/keys, GET /v2/keys, GET/PATCH/DELETE
// /v2/keys/{name}; admin only. The key itself is in the answer of POST only;
// everything else shows its fingerprint.

// maxKeyBody bounds the body of a key's spec or update (a spec is well under
// 16 KiB: 64 model ids of at most 128 bytes).
const maxKeyBody = 64 << 10

func (s *Server) handleCreateKey(c echo.Context) error {
	var spec api.KeySpec
	if e := decodeKeyBody(c, &spec); e != nil {
		return writeError(c, e)
	}
	if e := spec.Validate(); e != nil {
		return writeError(c, e)
	}
	first := !s.KeysRequired()
	kc, err := s.auth.create(spec, time.Now())
	if err != nil {
		return writeError(c, s.keyError(c, spec.Name, err))
	}
	by := principalOf(c.Request().Context())
	s.log.Info("api key created", "key", kc.Fingerprint, "name", kc.Name, "role", kc.Role, "weight", kc.Weight, "by", by.fp)
	if first {
		s.log.Warn("the first API key was created: from now on every /v2 and /v1 request needs a key", "key", kc.Fingerprint)
		if s.cfg.WorkerToken == "" {
			s.log.Warn("API keys are set but no worker token: workers cannot register or heartbeat any more (restart with --worker-token)")
		}
	}
	return c.JSON(http.StatusCreated, kc)
}

func (s *Server) handleListKeys(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]any{"keys": s.auth.keys()})
}

func (s *Server) handleGetKey(c echo.Context) error {
	v, ok := s.auth.key(c.Param("name"))
	if !ok {
		return writeError(c, api.Errorf(api.CodeNotFound, "no key named %q", c.Param("name")))
	}
	return c.JSON(http.StatusOK, v)
}

func (s *Server) handleUpdateKey(c echo.Context) error {
	var u api.KeyUpdate
	if e := decodeKeyBody(c, &u); e != nil {
		return writeError(c, e)
	}
	name := c.Param("name")
	v, err := s.auth.update(name, u, func(spec *api.KeySpec) *api.Error { return spec.Validate() })
	if err != nil {
		return writeError(c, s.keyError(c, name, err))
	}
	s.log.Info("api key updated", "key", v.Fingerprint, "name", v.Name, "role", v.Role, "weight", v.Weight, "by", principalOf(c.Request().Context()).fp)
	return c.JSON(http.StatusOK, v)
}

// handleRevokeKey revokes a stored key (idempotent: 204 again, the first
// revocation's time kept) and ends its queued tasks with KEY_REVOKED.
func (s *Server) handleRevokeKey(c echo.Context) error {
	name := c.Param("name")
	v, err := s.auth.revoke(name, time.Now())
	if err != nil {
		return writeError(c, s.keyError(c, name, err))
	}
	p, _ := s.auth.keyPrincipal(name)
	ended := s.endQueuedOf(p.owner)
	s.log.Info("api key revoked", "key", v.Fingerprint, "name", v.Name, "queued_tasks_ended", ended, "by", principalOf(c.Request().Context()).fp)
	return c.NoContent(http.StatusNoContent)
}

// keyError is the answer to a failed key change.
func (s *Server) keyError(c echo.Context, name string, err error) *api.Error {
	var ae *api.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, errKeyNotFound):
		return api.Errorf(api.CodeNotFound, "no key named %q", name)
	case errors.Is(err, errKeyExists):
		return api.Errorf(api.CodeConflict, "a key named %q exists (a revoked key keeps its name)", name)
	case errors.Is(err, errKeyFile):
		return api.Errorf(api.CodeConflict, "key %q comes from the key file (--api-key-file, LLORCH_API_KEYS): change it there", name)
	case errors.Is(err, errKeyRevoked):
		return api.Errorf(api.CodeConflict, "key %q is revoked", name)
	}
	s.log.Error("key change failed", "name", name, "correlation_id", metaOf(c.Request().Context()).correlation, "err", err)
	return api.Errorf(api.CodeInternal, "cannot change the key")
}

// decodeKeyBody reads a JSON body of at most maxKeyBody into v; a field v
// does not have is an error (a misspelt limit must not pass as no limit).
func decodeKeyBody(c echo.Context, v any) *api.Error {
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxKeyBody)
	body, e := readBody(c)
	if e != nil {
		if e.Code == api.CodeBodyTooLarge {
			e.Message = "a key's body is at most 64 KiB"
		}
		return e
	}
	if err := strictJSON(body, v); err != nil {
		return api.Errorf(api.CodeInvalidRequest, "body: %s", err.Error())
	}
	return nil
}
