package orchestrator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
)

// POST /v2/sessions, GET and DELETE /v2/sessions/{id}, and the budget
// headers of the responses of tasks that name a session (sessions.go).

func (s *Server) handleCreateSession(c echo.Context) error {
	body, e := readBody(c)
	if e != nil {
		return writeError(c, e)
	}
	var req api.SessionRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			return writeError(c, api.Errorf(api.CodeInvalidRequest, "body is not a valid session request: %s", err.Error()))
		}
	}
	ctx := c.Request().Context()
	sess, e := s.sessions.create(principalOf(ctx), req)
	if e != nil {
		return writeError(c, e)
	}
	return c.JSON(http.StatusCreated, s.sessions.view(ctx, sess))
}

// sessionNotFound is the answer for a session that is absent, expired or
// another key's: the three are not told apart.
func sessionNotFound(id string) *api.Error {
	return api.Errorf(api.CodeSessionNotFound, "no session %s (sessions expire after their TTL)", truncate(id, 64))
}

func (s *Server) handleGetSession(c echo.Context) error {
	ctx := c.Request().Context()
	sess := s.sessions.lookup(principalOf(ctx), c.Param("id"))
	if sess == nil {
		return writeError(c, sessionNotFound(c.Param("id")))
	}
	return c.JSON(http.StatusOK, s.sessions.view(ctx, sess))
}

func (s *Server) handleDeleteSession(c echo.Context) error {
	ctx := c.Request().Context()
	if !s.sessions.remove(ctx, principalOf(ctx), c.Param("id")) {
		return writeError(c, sessionNotFound(c.Param("id")))
	}
	return c.NoContent(http.StatusNoContent)
}

// budgetHeaders sets the budget headers of a task just admitted: what its
// session had left at admission.
func (s *Server) budgetHeaders(c echo.Context, taskID string) {
	if _, b := s.tasks.sessionOf(taskID, principalOf(c.Request().Context())); b != nil {
		setBudgetHeaders(c.Response().Header(), b)
	}
}

// v1Budget is what the /v1 middleware learns of the session a request's
// task names (openAIBackend.Submit fills it).
type v1Budget struct {
	mu       sync.Mutex
	sess     *session
	admitted *api.Budget
}

type v1BudgetKey struct{}

// noteV1Budget records the session of a /v1 request's task (the first, when
// it asked for several choices).
func noteV1Budget(ctx context.Context, sess *session, admitted *api.Budget) {
	vb, ok := ctx.Value(v1BudgetKey{}).(*v1Budget)
	if !ok || sess == nil {
		return
	}
	vb.mu.Lock()
	defer vb.mu.Unlock()
	if vb.sess == nil {
		vb.sess, vb.admitted = sess, admitted
	}
}

// v1BudgetHeaders sets the budget headers on /v1 answers: a stream's (sent
// at its first event) show what was left at admission, a whole answer's
// (sent after the task) what is left after it.
func v1BudgetHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		vb := &v1Budget{}
		r := c.Request()
		c.SetRequest(r.WithContext(context.WithValue(r.Context(), v1BudgetKey{}, vb)))
		res := c.Response()
		res.Before(func() {
			vb.mu.Lock()
			sess, admitted := vb.sess, vb.admitted
			vb.mu.Unlock()
			if sess == nil {
				return
			}
			if strings.HasPrefix(res.Header().Get("Content-Type"), "text/event-stream") {
				setBudgetHeaders(res.Header(), admitted)
			} else {
				setBudgetHeaders(res.Header(), sess.budget())
			}
		})
		return next(c)
	}
}
