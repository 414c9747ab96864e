package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
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
)

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

// ReadBody reads a request body of at most MaxRequestBytes: a larger one is a
// BODY_TOO_LARGE error (413), an unreadable one INVALID_REQUEST.
func ReadBody(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
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
