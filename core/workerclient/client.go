// Package workerclient is the Go client of a worker's HTTP API, used by the
// orchestrator, ctl and tests.
package workerclient

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// Client talks to one worker.
type Client struct {
	base  string
	token string
	http  *http.Client
	// maxAnswer replaces MaxEmbedAnswer when set (tests).
	maxAnswer int
}

// New returns a client for the worker at base ("http://host:port").
func New(base, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	if u, err := api.BaseURL(base); err == nil {
		base = u
	}
	return &Client{base: base, token: token, http: hc}
}

// Stream reads the events of one /execute response.
type Stream struct {
	body io.ReadCloser
	r    *sse.Reader
	// cause, when set, explains why the stream was abandoned (ErrIdle).
	cause func() error
	stop  func()
}

// Next returns the next event, io.EOF after the terminal one, or an error if the
// stream broke before a terminal event.
func (s *Stream) Next() (api.Event, error) {
	ev, err := s.r.Next()
	if err != nil {
		if s.cause != nil {
			if c := s.cause(); c != nil {
				return api.Event{}, c
			}
		}
		if errors.Is(err, io.EOF) {
			return api.Event{}, io.ErrUnexpectedEOF
		}
		return api.Event{}, err
	}
	return api.DecodeEvent(ev.Event, ev.Data)
}

// Close releases the connection (and, if the stream was not finished, makes
// the worker cancel the job).
func (s *Stream) Close() error {
	if s.stop != nil {
		s.stop()
	}
	return s.body.Close()
}

// ErrIdle is why ExecuteWatched abandons a request: the worker sent nothing
// at all — no status, no event, no keep-alive comment — for the idle time
// (a frozen or partitioned worker).
var ErrIdle = errors.New("workerclient: the worker sent nothing")

// ExecuteWatched is Execute with a watchdog: when the worker sends no byte
// for idle (workers send keep-alive comments on quiet streams), the request
// is abandoned and Execute or Next return an error wrapping ErrIdle. idle <= 0
// means Execute.
func (c *Client) ExecuteWatched(ctx context.Context, req *api.ExecuteRequest, idle time.Duration) (*Stream, error) {
	if idle <= 0 {
		return c.Execute(ctx, req)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(done) }) }
	go func() {
		t := time.NewTicker(max(idle/8, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				cancel(nil)
				return
			case now := <-t.C:
				if now.UnixNano()-last.Load() > int64(idle) {
					cancel(fmt.Errorf("%w for %s", ErrIdle, idle))
					return
				}
			}
		}
	}()
	cause := func() error {
		if c := context.Cause(ctx); errors.Is(c, ErrIdle) {
			return c
		}
		return nil
	}
	st, err := c.execute(ctx, req, func(r io.ReadCloser) io.ReadCloser { return &activity{r, &last} })
	if err != nil {
		stop()
		if c := cause(); c != nil {
			return nil, &StatusError{Status: 0, Err: &api.Error{Code: api.CodeWorkerUnreachable, Retriable: true, Message: c.Error()}, cause: c}
		}
		return nil, err
	}
	st.cause, st.stop = cause, stop
	return st, nil
}

// activity records when bytes last arrived.
type activity struct {
	io.ReadCloser
	last *atomic.Int64
}

func (a *activity) Read(p []byte) (int, error) {
	n, err := a.ReadCloser.Read(p)
	if n > 0 {
		a.last.Store(time.Now().UnixNano())
	}
	return n, err
}

// Execute starts a job. A request the worker refuses before streaming returns
// an *api.Error with its HTTP status in StatusError.
func (c *Client) Execute(ctx context.Context, req *api.ExecuteRequest) (*Stream, error) {
	return c.execute(ctx, req, nil)
}

func (c *Client) execute(ctx context.Context, req *api.ExecuteRequest, wrap func(io.ReadCloser) io.ReadCloser) (*Stream, error) {
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
	rc := resp.Body
	if wrap != nil {
		rc = wrap(rc)
	}
	return &Stream{body: rc, r: sse.NewReader(rc)}, nil
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

// MaxEmbedAnswer bounds a worker's answer to POST /v1/embeddings (2048
// inputs of 4096 floats in base64 are about 45 MB).
const MaxEmbedAnswer = 128 << 20

// Errors of Embeddings (besides a *StatusError with Status 0: no answer).
var (
	// ErrBrokenAnswer: the worker answered but broke off its body.
	ErrBrokenAnswer = errors.New("workerclient: the worker broke off its answer")
	// ErrAnswerTooLarge: the body was larger than MaxEmbedAnswer.
	ErrAnswerTooLarge = errors.New("workerclient: the worker's answer is too large")
)

// Answer is a worker's answer as it came: status, headers and body.
type Answer struct {
	Status int
	Header http.Header
	Body   []byte
}

// Embeddings sends body, an OpenAI POST /v1/embeddings request, to the
// worker and returns its answer whatever its status: the body is the
// vectors on 200, else an error in OpenAI's shape, which a caller passes on
// unchanged (core/openai decodes both). The error is a *StatusError with
// Status 0 (WORKER_UNREACHABLE) when no answer came, or wraps
// ErrBrokenAnswer or ErrAnswerTooLarge.
func (c *Client) Embeddings(ctx context.Context, body []byte) (*Answer, error) {
	resp, err := c.do(ctx, http.MethodPost, "/v1/embeddings", body)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	limit := cmp.Or(c.maxAnswer, MaxEmbedAnswer)
	raw, err := io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrBrokenAnswer, err)
	case len(raw) > limit:
		return nil, fmt.Errorf("%w: more than %d bytes", ErrAnswerTooLarge, limit)
	}
	return &Answer{Status: resp.StatusCode, Header: resp.Header, Body: raw}, nil
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

// StatusError is an error response from the worker (Status 0: no response).
type StatusError struct {
	Status int
	Err    *api.Error
	cause  error
}

func (e *StatusError) Error() string {
	if e.Status == 0 {
		return "worker unreachable: " + e.Err.Message
	}
	return fmt.Sprintf("worker answered %d: %v", e.Status, e.Err)
}

// Unwrap exposes the API error (and ErrIdle when the watchdog gave up).
func (e *StatusError) Unwrap() []error {
	if e.cause != nil {
		return []error{e.Err, e.cause}
	}
	return []error{e.Err}
}

func decodeError(resp *http.Response) error {
	var body api.ErrorBody
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err := json.Unmarshal(data, &body); err != nil || body.Error == nil || body.Error.Code == "" {
		// Not a llorch error: whatever answered is not a worker (or a proxy
		// in front of it failed). Its body is never passed on: a registered
		// URL must not turn the orchestrator into a reader of other services.
		return &StatusError{Status: resp.StatusCode, Err: &api.Error{Code: api.CodeUnexpectedResponse, Retriable: true,
			Message: fmt.Sprintf("the worker answered %d %s without a llorch error body", resp.StatusCode, http.StatusText(resp.StatusCode))}}
	}
	e := body.Error
	e.Code = Sanitize(e.Code, maxCodeLen)
	e.Message = Sanitize(e.Message, maxMessageLen)
	if len(e.Fields) > maxFields {
		e.Fields = e.Fields[:maxFields]
	}
	for i := range e.Fields {
		f := &e.Fields[i]
		f.Field, f.Constraint, f.Message = Sanitize(f.Field, maxCodeLen), Sanitize(f.Constraint, maxCodeLen), Sanitize(f.Message, maxMessageLen)
	}
	e.RetryAfterMs = min(max(e.RetryAfterMs, 0), 10*60*1000)
	e.Status = 0
	return &StatusError{Status: resp.StatusCode, Err: e}
}

// Limits on what a worker's error response may carry on to clients.
const (
	maxErrorBody  = 64 << 10
	maxCodeLen    = 64
	maxMessageLen = 300
	maxFields     = 16
)

// Sanitize makes text from a peer safe to show: control characters become
// spaces, invalid UTF-8 is dropped, and it is cut to at most limit bytes.
func Sanitize(s string, limit int) string {
	s = strings.ToValidUTF8(s, "")
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	if len(s) > limit {
		cut := limit - len("…")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
