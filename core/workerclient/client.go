// Package workerclient is the Go client of a worker's HTTP API, used by the
// orchestrator, ctl and tests.
package workerclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// Client talks to one worker.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for the worker at base ("http://host:port").
func New(base, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: hc}
}

// Event is one decoded stream event; exactly one of its pointers is set.
type Event struct {
	Name    string
	Started *api.Started
	Token   *api.Token
	End     *api.End
	Error   *api.Error
	Raw     json.RawMessage
}

// Terminal reports whether the event ends the stream.
func (e Event) Terminal() bool { return e.End != nil || e.Error != nil }

// Stream reads the events of one /execute response.
type Stream struct {
	body io.ReadCloser
	r    *sse.Reader
}

// Next returns the next event, io.EOF after the terminal one, or an error if the
// stream broke before a terminal event.
func (s *Stream) Next() (Event, error) {
	ev, err := s.r.Next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Event{}, io.ErrUnexpectedEOF
		}
		return Event{}, err
	}
	return DecodeEvent(ev.Event, ev.Data)
}

// DecodeEvent decodes one stream event by name; events with other names come
// back with only Name and Raw set.
func DecodeEvent(name string, data []byte) (Event, error) {
	out := Event{Name: name, Raw: data}
	var target any
	switch name {
	case api.EventStarted:
		out.Started = &api.Started{}
		target = out.Started
	case api.EventToken:
		out.Token = &api.Token{}
		target = out.Token
	case api.EventEnd:
		out.End = &api.End{}
		target = out.End
	case api.EventError:
		out.Error = &api.Error{}
		target = out.Error
	default:
		return out, nil
	}
	if err := json.Unmarshal(data, target); err != nil {
		return out, fmt.Errorf("workerclient: bad %s event: %w", name, err)
	}
	return out, nil
}

// Close releases the connection (and, if the stream was not finished, makes
// the worker cancel the job).
func (s *Stream) Close() error { return s.body.Close() }

// Execute starts a job. A request the worker refuses before streaming returns
// an *api.Error with its HTTP status in StatusError.
func (c *Client) Execute(ctx context.Context, req *api.ExecuteRequest) (*Stream, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, http.MethodPost, "/execute", body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return &Stream{body: resp.Body, r: sse.NewReader(resp.Body)}, nil
}

// Result is a whole generation, collected from a stream.
type Result struct {
	Started api.Started
	Tokens  []api.Token
	End     *api.End
	Error   *api.Error
}

// Text joins the streamed text.
func (r *Result) Text() string {
	var b strings.Builder
	for _, t := range r.Tokens {
		b.WriteString(t.T)
	}
	return b.String()
}

// Collect runs a job to its end.
func (c *Client) Collect(ctx context.Context, req *api.ExecuteRequest) (*Result, error) {
	st, err := c.Execute(ctx, req)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	res := &Result{}
	for {
		ev, err := st.Next()
		if err != nil {
			return res, err
		}
		switch {
		case ev.Started != nil:
			res.Started = *ev.Started
		case ev.Token != nil:
			res.Tokens = append(res.Tokens, *ev.Token)
		case ev.End != nil:
			res.End = ev.End
			return res, nil
		case ev.Error != nil:
			res.Error = ev.Error
			return res, nil
		}
	}
}

// Cancel asks the worker to cancel a job; it is idempotent.
func (c *Client) Cancel(ctx context.Context, jobID string) (*api.CancelResponse, error) {
	body, _ := json.Marshal(api.CancelRequest{JobID: jobID})
	resp, err := c.do(ctx, http.MethodPost, "/cancel", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil, decodeError(resp)
	}
	var out api.CancelResponse
	return &out, json.NewDecoder(resp.Body).Decode(&out)
}

// Health fetches GET /health.
func (c *Client) Health(ctx context.Context) (*api.Health, error) {
	resp, err := c.do(ctx, http.MethodGet, "/health", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp)
	}
	var h api.Health
	return &h, json.NewDecoder(resp.Body).Decode(&h)
}

// Shutdown asks the worker to drain and exit.
func (c *Client) Shutdown(ctx context.Context) error {
	resp, err := c.do(ctx, http.MethodPost, "/shutdown", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return decodeError(resp)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "text/event-stream, application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if id, ok := ctx.Value(correlationKey{}).(string); ok && id != "" {
		req.Header.Set("X-Correlation-Id", id)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &StatusError{Status: 0, Err: &api.Error{Code: api.CodeWorkerUnreachable, Message: err.Error(), Retriable: true}}
	}
	return resp, nil
}

type correlationKey struct{}

// WithCorrelationID returns a context whose requests carry the id in the
// X-Correlation-Id header.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationKey{}, id)
}

// StatusError is an error response from the worker.
type StatusError struct {
	Status int
	Err    *api.Error
}

func (e *StatusError) Error() string {
	if e.Status == 0 {
		return "worker unreachable: " + e.Err.Message
	}
	return fmt.Sprintf("worker answered %d: %v", e.Status, e.Err)
}

// Unwrap exposes the API error.
func (e *StatusError) Unwrap() error { return e.Err }

func decodeError(resp *http.Response) error {
	var body api.ErrorBody
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err := json.Unmarshal(data, &body); err != nil || body.Error == nil {
		body.Error = &api.Error{Code: api.CodeUnexpectedResponse, Message: strings.TrimSpace(string(data))}
	}
	return &StatusError{Status: resp.StatusCode, Err: body.Error}
}
