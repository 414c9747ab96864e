package orchestrator

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// decodeTask parses and validates a POST /v2/tasks body.
func decodeTask(body []byte) (*api.TaskRequest, *api.Error) {
	var req api.TaskRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, api.Errorf(api.CodeInvalidRequest, "body is not a valid task: %s", err.Error())
	}
	if e := req.Validate(); e != nil {
		return nil, e
	}
	if e := checkSchemas(&req.ExecuteRequest); e != nil {
		return nil, e
	}
	return &req, nil
}

func wantsStream(c echo.Context) bool {
	return strings.Contains(c.Request().Header.Get("Accept"), "text/event-stream")
}

func (s *Server) handleSubmit(c echo.Context) error {
	body, e := readBody(c)
	if e != nil {
		return s.reject(c, e)
	}
	req, e := decodeTask(body)
	if e != nil {
		return s.reject(c, e)
	}
	stream := wantsStream(c)
	ctx := c.Request().Context()
	acc, e := s.submit(ctx, req, !stream)
	if e != nil {
		return s.reject(c, e)
	}
	s.budgetHeaders(c, acc.TaskID) // what its session had left at admission (http_sessions.go)
	if !stream {
		return c.JSON(http.StatusAccepted, acc)
	}
	t := s.tasks.get(acc.TaskID, principalOf(ctx))
	if t == nil { // ended and expired already: cannot happen within a TTL
		return writeError(c, api.Errorf(api.CodeTaskNotFound, "task %s is gone", acc.TaskID))
	}
	// The client learns the task id (X-Task-Id) only once a restart would
	// find the task again.
	if err := s.tasks.waitRecorded(ctx, t); err != nil {
		s.cancel(t.id, "the client disconnected", principalOf(ctx))
		return nil
	}
	if err := s.stream(c, t, 0); err != nil {
		// The client went away: a streamed submission is cancelled with it.
		s.cancel(t.id, "the client disconnected", principalOf(ctx))
	}
	return nil
}

// lookup finds the task named in the path that the caller may see; another
// key's task is as absent as an unknown one.
func (s *Server) lookup(c echo.Context) (*task, error) {
	id := c.Param("id")
	t := s.tasks.get(id, principalOf(c.Request().Context()))
	if t == nil {
		return nil, writeError(c, api.Errorf(api.CodeTaskNotFound, "no task %s (finished tasks are kept for the result TTL)", truncate(id, 64)))
	}
	return t, nil
}

func (s *Server) handleGetTask(c echo.Context) error {
	t, err := s.lookup(c)
	if t == nil {
		return err
	}
	st := s.tasks.status(t)
	setBudgetHeaders(c.Response().Header(), t.sess.budget()) // what its session has left now (sessions.go)
	switch {
	case st.End != nil:
		setServerTiming(c.Response().Header(), st.End.Timing)
	case st.Error != nil:
		setServerTiming(c.Response().Header(), st.Error.Timing)
	}
	return c.JSON(http.StatusOK, st)
}

// maxListedTasks is the most tasks GET /v2/tasks answers with (and its
// default limit).
const maxListedTasks = 1000

func (s *Server) handleListTasks(c echo.Context) error {
	f := taskFilter{status: c.QueryParam("status"), model: c.QueryParam("model"), worker: c.QueryParam("worker"), limit: maxListedTasks}
	switch f.status {
	case "", api.TaskQueued, api.TaskRunning, api.TaskSucceeded, api.TaskFailed, api.TaskCancelled:
	default:
		return writeError(c, api.Errorf(api.CodeInvalidRequest, "status must be queued, running, succeeded, failed or cancelled"))
	}
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListedTasks {
			return writeError(c, &api.Error{Code: api.CodeInvalidRequest, Message: "invalid request", Fields: []api.FieldError{{
				Field: "limit", Constraint: "1..1000", Message: "must be a number from 1 to 1000"}}})
		}
		f.limit = n
	}
	return c.JSON(http.StatusOK, map[string]any{"tasks": s.tasks.list(principalOf(c.Request().Context()), f)})
}

func (s *Server) handleEvents(c echo.Context) error {
	t, err := s.lookup(c)
	if t == nil {
		return err
	}
	last := c.Request().Header.Get("Last-Event-ID")
	if last == "" {
		last = c.QueryParam("last_event_id")
	}
	n, lerr := s.tasks.lastEvent(t)
	if lerr != nil {
		s.log.Error("reading a task's events", "task_id", t.id, "err", lerr)
		return writeError(c, api.Errorf(api.CodeInternal, "cannot read the task's events"))
	}
	after, e := parseLastEventID(last, n)
	if e != nil {
		return writeError(c, e)
	}
	_ = s.stream(c, t, after)
	return nil
}

// stream answers with t's event stream from after (an event id) to its end;
// the error is the one that stopped it early (the client went away).
func (s *Server) stream(c echo.Context, t *task, after uint64) error {
	h := c.Response().Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Task-Id", t.id)
	c.Response().WriteHeader(http.StatusOK)
	return s.tasks.follow(c.Request().Context(), sse.NewWriter(c.Response()), t, after)
}

func (s *Server) handleCancel(c echo.Context) error {
	id := c.Param("id")
	if !s.cancel(id, "cancelled by the client", principalOf(c.Request().Context())) {
		return writeError(c, api.Errorf(api.CodeTaskNotFound, "no task %s", truncate(id, 64)))
	}
	return c.JSON(http.StatusAccepted, map[string]string{"task_id": id, "status": api.TaskCancelled})
}
