package openai

import (
	"context"

	"github.com/llorch/llorch/core/api"
)

// Backend runs generation requests: the orchestrator (admission → queue →
// scheduler → worker) or one worker's engine.
type Backend interface {
	// Submit starts a request. Errors before streaming are *api.Error: the Code
	// decides the HTTP status (see the table in errors.go) and RetryAfterMs
	// becomes the Retry-After header. ctx is the client's request: when it is
	// done the request is cancelled.
	Submit(ctx context.Context, req *Request) (Stream, error)
	// Models lists the models served now.
	Models(ctx context.Context) ([]Model, error)
}

// ChoiceLimiter is the optional ability of a Backend to bound n: a worker
// runs a request's choices at once, one per slot.
type ChoiceLimiter interface {
	MaxChoices() int
}

// Request is one generation request, translated from OpenAI's shape.
type Request struct {
	Model string
	// Priority is api.PriorityInteractive or api.PriorityBatch.
	Priority string
	// User is OpenAI's end-user identifier, when the client sent one.
	User string
	// SessionID is the body's session_id (a llorch extension), unchecked.
	SessionID string
	// Exec holds the prompt or messages and the sampling fields; it has passed
	// api.ExecuteRequest.Validate.
	Exec api.ExecuteRequest
}

// Stream is the event stream of one request.
type Stream interface {
	// Next returns the next event: started, token, end or error (events with
	// other names, such as the orchestrator's queued, are skipped), then io.EOF
	// after the terminal event.
	Next() (api.Event, error)
	// Close releases the stream and cancels the request if it has not ended.
	Close() error
}

// Model is one model served now.
type Model struct {
	ID string
	// Created is a Unix time in seconds (OpenAI's "created").
	Created int64
	// Workers counts the workers that have the model; Ready those that can
	// take a request now.
	Workers, Ready int
}
