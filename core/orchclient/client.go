// Package orchclient is the Go client of the orchestrator's API (/v2): what
// workers call to register and heartbeat, what ctl calls to list and manage,
// and what tests and load generators call to submit and follow tasks. It is
// the one client of that API; workerclient is the one of a worker's.
package orchclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// Client talks to one orchestrator. It is safe for concurrent use.
type Client struct {
	base string
	key  string
	http *http.Client
}

// New returns a client of the orchestrator at base ("host:port" means
// http://host:port). key is the bearer token sent with every request: an API
// key, or a worker's token for Register and Heartbeat; "" sends none. A nil hc
// is http.DefaultClient (no overall timeout: streams are long).
func New(base, key string, hc *http.Client) (*Client, error) {
	u, err := api.BaseURL(base)
	if err != nil {
		return nil, fmt.Errorf("orchclient: orchestrator address %q: %w", base, err)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, key: key, http: hc}, nil
}

// URL is the orchestrator's base URL.
func (c *Client) URL() string { return c.base }

// Error is an error answer of the orchestrator (Status 0: no answer).
type Error struct {
	Status int
	Err    *api.Error
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return "orchestrator unreachable: " + e.Err.Message
	}
	return fmt.Sprintf("orchestrator answered %d: %v", e.Status, e.Err)
}

// Unwrap exposes the API error.
func (e *Error) Unwrap() error { return e.Err }

// Code is the API error code of err, "" when it is not an orchestrator's
// error answer.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Err != nil {
		return e.Err.Code
	}
	return ""
}

// do sends a request; a non-2xx answer is an *Error (its body read and
// closed). hdr are extra header pairs.
func (c *Client) do(ctx context.Context, method, path string, body any, hdr ...string) (*http.Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Err: &api.Error{Code: api.CodeUnavailable, Message: err.Error(), Retriable: true}}
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var body api.ErrorBody
	if err := json.Unmarshal(data, &body); err != nil || body.Error == nil {
		body.Error = &api.Error{Code: api.CodeUnexpectedResponse,
			Message: fmt.Sprintf("%d %s without an API error body", resp.StatusCode, http.StatusText(resp.StatusCode))}
	}
	return &Error{Status: resp.StatusCode, Err: body.Error}
}

// call sends a request and decodes a JSON answer into out (nil: none).
func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("orchclient: %s %s: %w", method, path, err)
	}
	return nil
}

func esc(id string) string { return url.PathEscape(id) }

// Register registers (or updates) a worker; it needs the worker token.
func (c *Client) Register(ctx context.Context, reg api.WorkerRegistration) (api.WorkerView, error) {
	var v api.WorkerView
	return v, c.call(ctx, http.MethodPost, "/v2/workers/register", reg, &v)
}

// Heartbeat reports a worker's load; it needs the worker token. An unknown
// worker is an error with code WORKER_NOT_FOUND: register again.
func (c *Client) Heartbeat(ctx context.Context, id string, hb api.Heartbeat) error {
	return c.call(ctx, http.MethodPost, "/v2/workers/"+esc(id)+"/heartbeat", hb, nil)
}

// Workers lists the registry (admin).
func (c *Client) Workers(ctx context.Context) ([]api.WorkerView, error) {
	var out struct{ Workers []api.WorkerView }
	return out.Workers, c.call(ctx, http.MethodGet, "/v2/workers", nil, &out)
}

// Drain stops new work for a worker (admin); with migrate its running tasks
// move to other workers at once.
func (c *Client) Drain(ctx context.Context, id string, migrate bool) (api.WorkerView, error) {
	var v api.WorkerView
	var body any
	if migrate {
		body = api.DrainRequest{Migrate: true}
	}
	return v, c.call(ctx, http.MethodPost, "/v2/workers/"+esc(id)+"/drain", body, &v)
}

// RemoveWorker forgets a worker (admin).
func (c *Client) RemoveWorker(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v2/workers/"+esc(id), nil, nil)
}

// Submit admits a task and returns at once (202): follow it with Events.
func (c *Client) Submit(ctx context.Context, req *api.TaskRequest) (api.TaskAccepted, error) {
	var acc api.TaskAccepted
	return acc, c.call(ctx, http.MethodPost, "/v2/tasks", req, &acc)
}

// SubmitStream admits a task and streams it in the same response; closing
// the stream before its end cancels the task.
func (c *Client) SubmitStream(ctx context.Context, req *api.TaskRequest) (*Stream, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v2/tasks", req, "Accept", "text/event-stream")
	if err != nil {
		return nil, err
	}
	return newStream(resp), nil
}

// Events follows a task's events after the event id after (0: from the
// start), live until its end.
func (c *Client) Events(ctx context.Context, id string, after uint64) (*Stream, error) {
	var hdr []string
	if after > 0 {
		hdr = []string{"Last-Event-ID", fmt.Sprint(after)}
	}
	resp, err := c.do(ctx, http.MethodGet, "/v2/tasks/"+esc(id)+"/events", nil, hdr...)
	if err != nil {
		return nil, err
	}
	return newStream(resp), nil
}

// Task returns a task's status.
func (c *Client) Task(ctx context.Context, id string) (api.TaskStatus, error) {
	var st api.TaskStatus
	return st, c.call(ctx, http.MethodGet, "/v2/tasks/"+esc(id), nil, &st)
}

// Tasks lists the newest tasks the key may see, optionally with a status.
func (c *Client) Tasks(ctx context.Context, status string) ([]api.TaskStatus, error) {
	path := "/v2/tasks"
	if status != "" {
		path += "?status=" + url.QueryEscape(status)
	}
	var out struct{ Tasks []api.TaskStatus }
	return out.Tasks, c.call(ctx, http.MethodGet, path, nil, &out)
}

// Cancel cancels a task; it is idempotent.
func (c *Client) Cancel(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v2/tasks/"+esc(id), nil, nil)
}

// Script returns the routing script and its name (admin); an error with code
// NOT_FOUND when none is loaded.
func (c *Client) Script(ctx context.Context) (name string, src []byte, err error) {
	resp, err := c.do(ctx, http.MethodGet, "/v2/routing/script", nil)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	src, err = io.ReadAll(io.LimitReader(resp.Body, 2<<20))
	return resp.Header.Get("X-Routing-Script"), src, err
}

// PutScript replaces the routing script (admin); a script that does not
// compile or fails its trial is an INVALID_REQUEST error.
func (c *Client) PutScript(ctx context.Context, src []byte) error {
	return c.call(ctx, http.MethodPut, "/v2/routing/script", src, nil)
}

// DeleteScript removes the routing script (admin).
func (c *Client) DeleteScript(ctx context.Context) error {
	return c.call(ctx, http.MethodDelete, "/v2/routing/script", nil, nil)
}

// Stream reads a task's event stream.
type Stream struct {
	// TaskID is the task streamed (the X-Task-Id header).
	TaskID string
	body   io.ReadCloser
	r      *sse.Reader
	last   uint64
	ended  bool
}

func newStream(resp *http.Response) *Stream {
	return &Stream{TaskID: resp.Header.Get("X-Task-Id"), body: resp.Body, r: sse.NewReader(resp.Body)}
}

// Next returns the next event (queued events included: they carry no id),
// io.EOF after the terminal one, or the error that broke the stream: resume
// with Events(id, LastID()).
func (s *Stream) Next() (api.Event, error) {
	ev, err := s.r.Next()
	if err != nil {
		if errors.Is(err, io.EOF) && !s.ended {
			return api.Event{}, io.ErrUnexpectedEOF
		}
		return api.Event{}, err
	}
	if ev.ID != "" {
		if n, err := strconv.ParseUint(ev.ID, 10, 64); err == nil {
			s.last = n
		}
	}
	out, err := api.DecodeEvent(ev.Event, ev.Data)
	if out.Terminal() {
		s.ended = true
	}
	return out, err
}

// LastID is the id of the last event read (0 before the first).
func (s *Stream) LastID() uint64 { return s.last }

// Close releases the connection.
func (s *Stream) Close() error { return s.body.Close() }
