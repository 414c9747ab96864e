package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
)

// Error is an error in OpenAI's shape, the value of {"error": …} in a response
// body or in a stream chunk.
type Error struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// OpenAI's error types.
const (
	typeInvalidRequest = "invalid_request_error"
	typeAuthentication = "authentication_error"
	typePermission     = "permission_error"
	typeRateLimit      = "rate_limit_error"
	typeServer         = "server_error"
)

// outcome is how an api error code is shown to an OpenAI client.
type outcome struct {
	status int
	typ    string
	code   string // OpenAI's "code"; "" is null
}

// openAICodes are OpenAI's names for the llorch codes whose lower-case form
// is not what OpenAI's clients know.
var openAICodes = map[string]string{
	api.CodeInvalidRequest: "invalid_value",
	api.CodeUnauthorized:   "invalid_api_key",
	api.CodeInternal:       "internal_error",
	api.CodeRateLimited:    "rate_limit_exceeded",
	api.CodeQuotaExceeded:  "insufficient_quota", // OpenAI's code for a spent quota
}

// outcomeOf shows code as OpenAI does: the status from api's one table, the
// type that status has in OpenAI's API, and the code in lower case.
func outcomeOf(code string) outcome {
	status := api.Status(code)
	c, ok := openAICodes[code]
	if !ok {
		c = strings.ToLower(code)
	}
	return outcome{status, typeOfStatus(status), c}
}

// typeOfStatus is OpenAI's error type for a status that came without an api code.
func typeOfStatus(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return typeAuthentication
	case status == http.StatusForbidden:
		return typePermission
	case status == http.StatusTooManyRequests:
		return typeRateLimit
	case status >= 500:
		return typeServer
	}
	return typeInvalidRequest
}

// failure is an error response: status, OpenAI body and retry hints.
type failure struct {
	status       int
	err          Error
	retryAfterMs int64
	// retriable, when set, becomes the x-should-retry header that OpenAI's SDKs
	// obey over their own status-based guess.
	retriable *bool
}

func strp(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// invalid is a 400 invalid_request_error about param.
func invalid(param, code, format string, args ...any) *failure {
	return &failure{status: http.StatusBadRequest, err: Error{Message: fmt.Sprintf(format, args...),
		Type: typeInvalidRequest, Param: strp(param), Code: strp(code)}}
}

// fromAPI shows an api error to an OpenAI client. rename maps a field of the
// api.ExecuteRequest (the first of e.Fields) to the request's own parameter
// name; nil keeps it.
func fromAPI(e *api.Error, rename func(string) string) *failure {
	o := outcomeOf(e.Code)
	if e.Status != 0 {
		o.status, o.typ, o.code = e.Status, typeOfStatus(e.Status), strings.ToLower(e.Code)
	}
	f := &failure{status: o.status, err: Error{Message: e.Message, Type: o.typ, Code: strp(o.code)},
		retryAfterMs: e.RetryAfterMs, retriable: &e.Retriable}
	if len(e.Fields) > 0 {
		fe := e.Fields[0]
		param := fe.Field
		if rename != nil {
			param = rename(param)
		}
		f.err.Param = strp(param)
		f.err.Message = fmt.Sprintf("Invalid '%s': %s.", param, fe.Message)
		if e.Code == api.CodeContextOverflow {
			f.err.Message = e.Message + "."
		}
	}
	if f.err.Message == "" {
		f.err.Message = http.StatusText(o.status)
	}
	// A key's limit: OpenAI's own 429s say which rate as the type; a model
	// the key may not use is about the model parameter.
	switch e.Limit {
	case api.LimitRequestsPerMinute:
		f.err.Type = "requests"
	case api.LimitTokensPerMinute:
		f.err.Type = "tokens"
	case api.LimitModels:
		f.err.Param = strp("model")
	}
	return f
}

// fromError shows any error a Backend returned. Errors that are not *api.Error
// are internal: their text goes to the log, not to the client.
func fromError(err error, rename func(string) string) (*failure, bool) {
	var ae *api.Error
	if errors.As(err, &ae) {
		return fromAPI(ae, rename), true
	}
	return &failure{status: http.StatusInternalServerError,
		err: Error{Message: "internal error", Type: typeServer, Code: strp("internal_error")}}, false
}

// write sends f as the response.
func (f *failure) write(w http.ResponseWriter) {
	h := w.Header()
	if f.retryAfterMs > 0 {
		h.Set("Retry-After", strconv.FormatInt(max(1, (f.retryAfterMs+999)/1000), 10))
		h.Set("Retry-After-Ms", strconv.FormatInt(f.retryAfterMs, 10))
	}
	if f.retriable != nil {
		h.Set("X-Should-Retry", strconv.FormatBool(*f.retriable))
	}
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	w.WriteHeader(f.status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Error: &f.err})
}

// ShapeErrors is the first middleware of the group that Register mounts on: it
// renders, in OpenAI's shape, the errors that the daemon's own middleware
// (such as its auth check) writes in llorch's shape ({"error":{"code",…}}) or
// returns, and echo's own (404 for an unknown /v1 path). Place it before the
// daemon's middleware:
//
//	openai.Register(e.Group("/v1", openai.ShapeErrors, auth), backend, log)
func ShapeErrors(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		resp := c.Response()
		orig := resp.Writer
		sw := &shapeWriter{ResponseWriter: orig}
		resp.Writer = sw
		c.Set(shapeKey, sw)
		err := next(c)
		if !sw.released {
			resp.Writer = orig
		}
		switch {
		case sw.held:
			reshape(sw.status, sw.buf.Bytes()).write(orig)
			return nil
		case err != nil && !resp.Committed:
			errorFor(err, c.Request()).write(resp)
			return nil
		}
		return err
	}
}

const shapeKey = "openai.shapeWriter"

// release hands the real writer back: the group's handlers write OpenAI's shape
// themselves (and stream).
func release(c echo.Context) {
	if sw, ok := c.Get(shapeKey).(*shapeWriter); ok && !sw.released {
		sw.released = true
		c.Response().Writer = sw.ResponseWriter
	}
}

// shapeWriter holds back an error response so that ShapeErrors can rewrite it.
type shapeWriter struct {
	http.ResponseWriter
	released bool
	held     bool
	status   int
	buf      bytes.Buffer
}

func (w *shapeWriter) WriteHeader(status int) {
	if status >= 400 {
		w.held, w.status = true, status
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *shapeWriter) Write(b []byte) (int, error) {
	if w.held {
		return w.buf.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *shapeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// reshape rewrites an error body written by the daemon: llorch's shape goes
// through the table (the daemon's status is kept), OpenAI's passes unchanged,
// anything else becomes a message.
func reshape(status int, body []byte) *failure {
	var probe struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &probe) == nil && len(probe.Error) > 0 {
		var oe Error
		if json.Unmarshal(probe.Error, &oe) == nil && oe.Type != "" {
			return &failure{status: status, err: oe}
		}
		var ae api.Error
		if json.Unmarshal(probe.Error, &ae) == nil && ae.Code != "" {
			f := fromAPI(&ae, nil)
			f.status = status
			return f
		}
	}
	msg := strings.TrimSpace(string(body))
	if msg == "" || len(msg) > 1024 {
		msg = http.StatusText(status)
	}
	return &failure{status: status, err: Error{Message: msg, Type: typeOfStatus(status)}}
}

// errorFor renders an error returned by middleware or by echo itself.
func errorFor(err error, r *http.Request) *failure {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		msg := fmt.Sprint(he.Message)
		code := ""
		switch he.Code {
		case http.StatusNotFound:
			msg, code = fmt.Sprintf("Invalid URL (%s %s).", r.Method, r.URL.Path), "unknown_url"
		case http.StatusMethodNotAllowed:
			msg, code = "Method not allowed.", "method_not_allowed"
		case http.StatusUnauthorized:
			code = "invalid_api_key"
		}
		return &failure{status: he.Code, err: Error{Message: msg, Type: typeOfStatus(he.Code), Code: strp(code)}}
	}
	f, _ := fromError(err, nil)
	return f
}
