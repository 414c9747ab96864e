package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Error codes. They are stable strings that clients match on; messages are for people.
const (
	CodeInvalidRequest     = "INVALID_REQUEST"
	CodeContextOverflow    = "CONTEXT_LENGTH_EXCEEDED"
	CodeBodyTooLarge       = "BODY_TOO_LARGE"
	CodeNotFound           = "NOT_FOUND"
	CodeUnauthorized       = "UNAUTHORIZED"
	CodeAllSlotsBusy       = "ALL_SLOTS_BUSY"
	CodeConflict           = "CONFLICT"
	CodeLoading            = "MODEL_LOADING"
	CodeDraining           = "DRAINING"
	CodeCancelled          = "CANCELLED"
	CodeInternal           = "INTERNAL"
	CodeDecodeFailed       = "DECODE_FAILED"
	CodeMethodNotAllowed   = "METHOD_NOT_ALLOWED"
	CodeWorkerUnreachable  = "WORKER_UNREACHABLE"
	CodeUnexpectedResponse = "UNEXPECTED_RESPONSE"
	// CodeUnavailable: the daemon cannot serve at all right now (its health
	// check failed).
	CodeUnavailable = "UNAVAILABLE"
)

// codeInfo is what the table knows of one error code.
type codeInfo struct {
	status    int
	retriable bool
}

// codes is the one table from error codes to HTTP statuses and whether a
// client may retry. Every daemon (worker, orchestrator) and the OpenAI layer
// reads it through Status and Retriable; a code missing here is a 500 that is
// not retried.
var codes = map[string]codeInfo{
	CodeInvalidRequest:     {http.StatusBadRequest, false},
	CodeContextOverflow:    {http.StatusBadRequest, false},
	CodeDeadlineUnmet:      {http.StatusBadRequest, false},
	CodeUnauthorized:       {http.StatusUnauthorized, false},
	CodeForbidden:          {http.StatusForbidden, false},
	CodeNotFound:           {http.StatusNotFound, false},
	CodeModelNotFound:      {http.StatusNotFound, false},
	CodeTaskNotFound:       {http.StatusNotFound, false},
	CodeWorkerNotFound:     {http.StatusNotFound, false},
	CodeMethodNotAllowed:   {http.StatusMethodNotAllowed, false},
	CodeConflict:           {http.StatusConflict, false},
	CodeBodyTooLarge:       {http.StatusRequestEntityTooLarge, false},
	CodeQueueFull:          {http.StatusTooManyRequests, true},
	CodeQueueFullDropped:   {http.StatusTooManyRequests, true},
	CodeAllSlotsBusy:       {http.StatusServiceUnavailable, true},
	CodeLoading:            {http.StatusServiceUnavailable, true},
	CodeDraining:           {http.StatusServiceUnavailable, true},
	CodePoolUnavailable:    {http.StatusServiceUnavailable, true},
	CodeNoWorkerAvailable:  {http.StatusServiceUnavailable, true},
	CodeNoCapacity:         {http.StatusServiceUnavailable, true},
	CodeUnavailable:        {http.StatusServiceUnavailable, true},
	CodeWorkerLost:         {http.StatusBadGateway, true},
	CodeWorkerUnreachable:  {http.StatusBadGateway, true},
	CodeUnexpectedResponse: {http.StatusBadGateway, true},
	CodeCancelled:          {http.StatusInternalServerError, false},
	CodeDecodeFailed:       {http.StatusInternalServerError, true},
	CodeInternal:           {http.StatusInternalServerError, false},
}

// Status is the HTTP status that answers an error with code.
func Status(code string) int {
	if c, ok := codes[code]; ok {
		return c.status
	}
	return http.StatusInternalServerError
}

// Retriable reports whether a request that failed with code may succeed when
// tried again later, unchanged.
func Retriable(code string) bool { return codes[code].retriable }

// Errorf returns an error with code, a message and Retriable from the table.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Retriable: Retriable(code)}
}

// HTTPStatus is the status e is answered with: its own override (a routing
// script's rejection), else the table's.
func (e *Error) HTTPStatus() int {
	if e.Status != 0 {
		return e.Status
	}
	return Status(e.Code)
}

// FieldError explains why one request field is invalid.
type FieldError struct {
	Field      string `json:"field"`
	Constraint string `json:"constraint"`
	Message    string `json:"message"`
}

// Error is what a client sees when a request fails, both as the body of an HTTP
// error ({"error": Error}) and as the data of an SSE "error" event.
type Error struct {
	Code      string       `json:"code"`
	Message   string       `json:"message"`
	Retriable bool         `json:"retriable"`
	Fields    []FieldError `json:"fields,omitempty"`
	// RetryAfterMs is set on errors that a client should retry later.
	RetryAfterMs int64 `json:"retry_after_ms,omitempty"`
	// Limit names the key limit or session budget that refused the request
	// (RATE_LIMITED, QUOTA_EXCEEDED, BUDGET_EXCEEDED, FORBIDDEN; Limit*).
	Limit string `json:"limit,omitempty"`
	// Budget is what the task's session has left, on a terminal error.
	Budget *Budget `json:"budget,omitempty"`
	// Timing is set by the orchestrator on a stream's terminal error event
	// (see End.Timing).
	Timing *Timing `json:"timing,omitempty"`
	// Status, when set, overrides the daemon's status table (a routing
	// script's rejection chooses its own status and code).
	Status int `json:"-"`
}

func (e *Error) Error() string {
	if len(e.Fields) == 0 {
		return fmt.Sprintf("%s: %s", e.Code, e.Message)
	}
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Message
	}
	return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, strings.Join(parts, "; "))
}

// ErrorBody is the JSON body of every HTTP error response.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// BodyTimeout bounds how long ReadBody waits for a request body.
const BodyTimeout = time.Minute

// ReadBody reads a request body of at most MaxRequestBytes: a larger one is a
// BODY_TOO_LARGE error (413), an unreadable one INVALID_REQUEST.
func ReadBody(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
	// A body must arrive within BodyTimeout: a client cannot hold a
	// connection by trickling one. The deadline is lifted afterwards, so a
	// streamed answer has none.
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(BodyTimeout)) == nil {
		defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &Error{Code: CodeBodyTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", MaxRequestBytes)}
		}
		return nil, &Error{Code: CodeInvalidRequest, Message: "cannot read request body: " + err.Error()}
	}
	return body, nil
}

// ForStatus is the API error for an HTTP status a router produced itself
// (no such endpoint, method not allowed, ...).
func ForStatus(status int, message string) *Error {
	switch status {
	case http.StatusNotFound:
		return &Error{Code: CodeNotFound, Message: "no such endpoint"}
	case http.StatusMethodNotAllowed:
		return &Error{Code: CodeMethodNotAllowed, Message: "method not allowed"}
	}
	return &Error{Code: CodeInternal, Message: message}
}
