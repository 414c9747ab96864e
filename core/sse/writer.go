package sse

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Writer encodes events onto an io.Writer. Each event is written with a single
// Write call and then flushed (see NewWriter). A Writer reuses one buffer, so
// writing an event allocates nothing beyond what JSON marshaling needs.
//
// A Writer is not safe for concurrent use.
type Writer struct {
	w     io.Writer
	flush func() error // nil: the destination cannot flush
	buf   appendBuffer
	enc   *json.Encoder // writes into buf; created on first JSON call
}

// NewWriter returns a Writer on w that flushes after every event and comment
// when w can flush:
//   - an http.ResponseWriter is flushed through http.ResponseController, which
//     also finds flushers behind Unwrap (middleware wrappers); if it reports
//     http.ErrNotSupported the Writer stops trying;
//   - any other w with a Flush() error method (bufio.Writer, gzip.Writer) or a
//     Flush() method (http.Flusher) has it called.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, flush: flusherOf(w)}
}

func flusherOf(w io.Writer) func() error {
	switch f := w.(type) {
	case http.ResponseWriter:
		return http.NewResponseController(f).Flush
	case interface{ Flush() error }:
		return f.Flush
	case http.Flusher:
		return func() error { f.Flush(); return nil }
	}
	return nil
}

// Event writes ev: "id", "event" and "retry" lines when set, then one "data"
// line per LF-separated line of ev.Data (at least one, so every event written
// is dispatched by the reader), then a blank line.
func (w *Writer) Event(ev Event) error {
	if err := validate(ev); err != nil {
		return err
	}
	b := appendHeader(w.buf.b[:0], ev.ID, ev.Event, ev.Retry)
	b = appendData(b, ev.Data)
	b = append(b, '\n')
	w.buf.b = b
	return w.send()
}

// JSON writes an event whose data is v marshaled by encoding/json (default
// settings, so <, > and & are escaped; the data is one line, as JSON never
// contains a raw line break). event and id may be "". Pass a pointer to avoid
// boxing v in an allocation.
func (w *Writer) JSON(event, id string, v any) error {
	if err := validate(Event{ID: id, Event: event}); err != nil {
		return err
	}
	if w.enc == nil {
		w.enc = json.NewEncoder(&w.buf)
	}
	w.buf.b = append(appendHeader(w.buf.b[:0], id, event, 0), "data: "...)
	start := len(w.buf.b)
	if err := w.enc.Encode(v); err != nil {
		return fmt.Errorf("sse: marshal %q event: %w", event, err)
	}
	b := w.buf.b
	if n := len(b); n > start && b[n-1] == '\n' { // Encode appends a newline
		b = b[:n-1]
	}
	if bytes.IndexByte(b[start:], '\n') >= 0 || bytes.IndexByte(b[start:], '\r') >= 0 {
		// Not reachable with encoding/json (it compacts output and escapes
		// control characters); kept so a Writer never emits a broken frame.
		return fmt.Errorf("%w: JSON for %q event contains a line break", ErrInvalidEvent, event)
	}
	w.buf.b = append(b, '\n', '\n')
	return w.send()
}

// Comment writes text as a comment (": text"), one comment line per
// LF-separated line; readers ignore comments. Use it for keep-alives:
// w.Comment("ping"). A comment does not end with a blank line, so it never
// dispatches or disturbs an event.
func (w *Writer) Comment(text string) error {
	if strings.IndexByte(text, '\r') >= 0 {
		return fmt.Errorf("%w: comment contains CR", ErrInvalidEvent)
	}
	b := w.buf.b[:0]
	for {
		line, rest, more := strings.Cut(text, "\n")
		b = append(b, ':')
		if line != "" {
			b = append(b, ' ')
			b = append(b, line...)
		}
		b = append(b, '\n')
		if !more {
			break
		}
		text = rest
	}
	w.buf.b = b
	return w.send()
}

// Batch runs fn, which writes events and comments, and flushes once at the
// end instead of after each: a relay that has several events at hand sends
// them in one write.
func (w *Writer) Batch(fn func() error) error {
	flush := w.flush
	w.flush = nil
	err := fn()
	if w.flush == nil { // fn did not find the destination unflushable
		w.flush = flush
	}
	if err != nil || w.flush == nil {
		return err
	}
	if err := w.flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("sse: flush: %w", err)
	}
	return nil
}

func (w *Writer) send() error {
	if _, err := w.w.Write(w.buf.b); err != nil {
		return fmt.Errorf("sse: write: %w", err)
	}
	if w.flush == nil {
		return nil
	}
	if err := w.flush(); err != nil {
		if errors.Is(err, http.ErrNotSupported) {
			w.flush = nil
			return nil
		}
		return fmt.Errorf("sse: flush: %w", err)
	}
	return nil
}

func validate(ev Event) error {
	for i := 0; i < len(ev.ID); i++ {
		if c := ev.ID[i]; c == '\n' || c == '\r' || c == 0 {
			return fmt.Errorf("%w: id contains CR, LF or NUL", ErrInvalidEvent)
		}
	}
	for i := 0; i < len(ev.Event); i++ {
		if c := ev.Event[i]; c == '\n' || c == '\r' {
			return fmt.Errorf("%w: event name contains CR or LF", ErrInvalidEvent)
		}
	}
	if bytes.IndexByte(ev.Data, '\r') >= 0 {
		return fmt.Errorf("%w: data contains CR", ErrInvalidEvent)
	}
	if ev.Retry < 0 {
		return fmt.Errorf("%w: negative retry %d", ErrInvalidEvent, ev.Retry)
	}
	return nil
}

func appendHeader(b []byte, id, event string, retry int) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = append(b, id...)
		b = append(b, '\n')
	}
	if event != "" {
		b = append(b, "event: "...)
		b = append(b, event...)
		b = append(b, '\n')
	}
	if retry > 0 {
		b = append(b, "retry: "...)
		b = strconv.AppendInt(b, int64(retry), 10)
		b = append(b, '\n')
	}
	return b
}

// appendData appends one data line per LF-separated line of data; an empty
// line is written as "data:" (not "data: ") so no trailing space is sent.
func appendData(b, data []byte) []byte {
	for {
		line, rest := data, []byte(nil)
		i := bytes.IndexByte(data, '\n')
		if i >= 0 {
			line, rest = data[:i], data[i+1:]
		}
		b = append(b, "data:"...)
		if len(line) > 0 {
			b = append(b, ' ')
			b = append(b, line...)
		}
		b = append(b, '\n')
		if i < 0 {
			return b
		}
		data = rest
	}
}

// appendBuffer is an io.Writer that appends to a reused slice, so that
// json.Encoder writes straight into the frame being built.
type appendBuffer struct{ b []byte }

func (a *appendBuffer) Write(p []byte) (int, error) {
	a.b = append(a.b, p...)
	return len(p), nil
}
