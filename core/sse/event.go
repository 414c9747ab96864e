package sse

import "errors"

// Event is one server-sent event.
type Event struct {
	// ID is the "id" field; "" means the event carries none (so a Writer
	// never sends the empty id that would reset a client's last event ID).
	ID string
	// Event is the event type ("event" field); "" means none, which
	// EventSource clients treat as "message".
	Event string
	// Data is the payload; several data lines are joined with '\n'.
	Data []byte
	// Retry is the reconnection time in milliseconds; 0 means absent.
	Retry int
}

var (
	// ErrInvalidEvent is returned (wrapped) by Writer for an event the SSE
	// format cannot carry unchanged.
	ErrInvalidEvent = errors.New("sse: invalid event")
	// ErrTooLarge is returned by Reader when a line or an event's data
	// exceeds the reader's size limit. It is sticky: the stream cannot be
	// resynchronised.
	ErrTooLarge = errors.New("sse: line or event exceeds size limit")
)
