package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
)

// The http part: routes, middleware, and handlers that decode a request,
// call one part, and encode the answer. Nothing here holds a lock.

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.httpError
	e.Use(correlation)
	e.GET("/healthz", s.handleHealthz)
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.m.reg, promhttp.HandlerOpts{})))
	s.uiRoutes(e)

	user, admin, worker := s.require(RoleUser), s.require(RoleAdmin), s.requireWorker
	v2 := e.Group("/v2")
	v2.POST("/tasks", s.handleSubmit, user)
	v2.GET("/tasks", s.handleListTasks, user)
	v2.GET("/tasks/:id", s.handleGetTask, user)
	v2.GET("/tasks/:id/events", s.handleEvents, user)
	v2.DELETE("/tasks/:id", s.handleCancel, user)
	v2.POST("/workers/register", s.handleRegister, worker)
	v2.POST("/workers/:id/heartbeat", s.handleHeartbeat, worker)
	v2.GET("/workers", s.handleListWorkers, admin)
	v2.POST("/workers/:id/drain", s.handleDrain, admin)
	v2.DELETE("/workers/:id", s.handleDeleteWorker, admin)
	v2.GET("/pools", s.handleListPools, admin)
	v2.POST("/pools", s.handlePutPool, admin)
	v2.GET("/pools/:name", s.handleGetPool, admin)
	v2.POST("/pools/:name/refresh", s.handleRefreshPool, admin)
	v2.DELETE("/pools/:name", s.handleDeletePool, admin)
	v2.GET("/models", s.handleListModels, admin)
	v2.GET("/models/:id", s.handleGetModel, admin)
	v2.PUT("/models/:id", s.handlePutModel, admin)
	v2.DELETE("/models/:id", s.handleDeleteModel, admin)
	v2.GET("/events", s.handleFleetEvents, admin)
	v2.POST("/keys", s.handleCreateKey, admin)
	v2.GET("/keys", s.handleListKeys, admin)
	v2.GET("/keys/:name", s.handleGetKey, admin)
	v2.PATCH("/keys/:name", s.handleUpdateKey, admin)
	v2.DELETE("/keys/:name", s.handleRevokeKey, admin)
	v2.POST("/sessions", s.handleCreateSession, user)
	v2.GET("/sessions/:id", s.handleGetSession, user)
	v2.DELETE("/sessions/:id", s.handleDeleteSession, user)
	v2.GET("/meta/capabilities", s.handleCapabilities, user)
	v2.GET("/meta/auth", s.handleAuthInfo) // open: whether a key is needed
	v2.GET("/usage", s.handleUsage, user)  // a user key sees its own (http_usage.go)
	v2.GET("/stats", s.handleStats, admin)
	v2.GET("/stats/stream", s.handleStatsStream, admin)
	v2.GET("/routing", s.handleRoutingStatus, admin)
	v2.GET("/routing/script", s.handleGetScript, admin)
	v2.PUT("/routing/script", s.handlePutScript, admin)
	v2.DELETE("/routing/script", s.handleDeleteScript, admin)
	v2.POST("/routing/check", s.handleCheckScript, admin)
	v2.GET("/routing/snapshot", s.handleSnapshot, admin)

	v1 := e.Group("/v1", openai.ShapeErrors, user, v1BudgetHeaders)
	openai.Register(v1, openAIBackend{s}, s.log)
	openai.RegisterEmbeddings(v1, embedBackend{s}, s.log)
	return e
}

func (s *Server) handleHealthz(c echo.Context) error {
	if bad := s.health(); len(bad) > 0 {
		s.log.Error("health check failed", "problems", bad)
		return c.JSON(http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "problems": bad})
	}
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

func writeError(c echo.Context, e *api.Error) error {
	if e.RetryAfterMs > 0 {
		h := c.Response().Header()
		h.Set("Retry-After", fmt.Sprint(max(1, (e.RetryAfterMs+999)/1000)))
		h.Set("X-Backoff-Ms", fmt.Sprint(e.RetryAfterMs))
	}
	return c.JSON(e.HTTPStatus(), api.ErrorBody{Error: e})
}

// reject writes an error and counts it as a refused request.
func (s *Server) reject(c echo.Context, e *api.Error) error {
	s.m.rejections.WithLabelValues(rejectionLabel(e.Code)).Inc()
	return writeError(c, e)
}

// rejectionLabel keeps the metric's label set bounded: a routing script's
// own codes are counted together.
func rejectionLabel(code string) string {
	if knownCodes[code] {
		return strings.ToLower(code)
	}
	return "script"
}

var knownCodes = map[string]bool{}

func init() {
	for _, c := range []string{api.CodeInvalidRequest, api.CodeContextOverflow, api.CodeBodyTooLarge, api.CodeUnauthorized,
		api.CodeForbidden, api.CodeModelNotFound, api.CodeWorkerNotFound, api.CodePoolUnavailable, api.CodeQueueFull,
		api.CodeDeadlineUnmet, api.CodeNoCapacity, api.CodeInternal, api.CodeNotFound, api.CodeTaskNotFound} {
		knownCodes[c] = true
	}
}

// httpError renders echo's own errors (404, 405, ...) in the API's shape.
func (s *Server) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := api.Errorf(api.CodeInternal, "internal error")
	var he *echo.HTTPError
	if errors.As(err, &he) {
		e = api.ForStatus(he.Code, fmt.Sprint(he.Message))
	} else {
		s.log.Error("request failed", "path", c.Path(), "correlation_id", metaOf(c.Request().Context()).correlation, "err", err)
	}
	_ = writeError(c, e)
}

const headerCorrelation = "X-Correlation-Id"

// correlation echoes a client's X-Correlation-Id (printable, ≤128 bytes) or
// generates one, on every response.
func correlation(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(headerCorrelation)
		if id == "" || len(id) > 128 || !printable(id) {
			id = newID("c-")
		}
		c.Response().Header().Set(headerCorrelation, id)
		r := c.Request()
		c.SetRequest(r.WithContext(context.WithValue(r.Context(), metaKey{}, &reqMeta{correlation: id, header: r.Header})))
		return next(c)
	}
}

type metaKey struct{}

// reqMeta is what the middleware learned about a request.
type reqMeta struct {
	correlation string
	header      http.Header
}

func metaOf(ctx context.Context) *reqMeta {
	if m, ok := ctx.Value(metaKey{}).(*reqMeta); ok {
		return m
	}
	return &reqMeta{}
}

// require admits requests whose key has at least the role (admin includes
// user); without keys everyone is an admin. A missing or wrong key is 401, a
// key without the role 403.
func (s *Server) require(role Role) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, revoked := s.auth.identify(bearer(c.Request().Header))
			switch {
			case revoked:
				s.m.rejections.WithLabelValues("unauthorized").Inc()
				return writeError(c, api.Errorf(api.CodeKeyRevoked, "this API key was revoked"))
			case p.role == roleNone:
				s.m.rejections.WithLabelValues("unauthorized").Inc()
				return writeError(c, api.Errorf(api.CodeUnauthorized, "missing or wrong API key (Authorization: Bearer <key>)"))
			case p.role < role:
				s.m.rejections.WithLabelValues("forbidden").Inc()
				return writeError(c, api.Errorf(api.CodeForbidden, "this API key has the %s role; this needs %s", p.role, role))
			}
			r := c.Request()
			c.SetRequest(r.WithContext(withPrincipal(r.Context(), p)))
			return next(c)
		}
	}
}

// requireWorker admits the worker token only (register and heartbeat).
func (s *Server) requireWorker(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.auth.isWorker(bearer(c.Request().Header)) {
			return next(c)
		}
		s.m.rejections.WithLabelValues("unauthorized").Inc()
		msg := "missing or wrong worker token (the orchestrator's --worker-token, the worker's --token)"
		if len(s.auth.workerToken) == 0 {
			msg = "this orchestrator has API keys but no --worker-token: workers cannot register"
		}
		return writeError(c, api.Errorf(api.CodeUnauthorized, "%s", msg))
	}
}

// readBody reads a JSON body of at most api.MaxRequestBytes.
func readBody(c echo.Context) ([]byte, *api.Error) { return api.ReadBody(c.Response(), c.Request()) }
