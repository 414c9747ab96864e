package sse

import (
	"bytes"
	"io"
	"math"
)

// DefaultMaxSize is the default limit on one line and on one event's data.
const DefaultMaxSize = 1 << 20

const initialBufSize = 4096

var bom = []byte{0xEF, 0xBB, 0xBF}

// Reader decodes an event stream per the WHATWG EventSource parsing rules:
//   - lines end in LF, CRLF or CR; one leading UTF-8 BOM is skipped;
//   - a line starting with ':' is a comment: skipped and counted (Comments);
//   - "field: value" (one space after the colon is removed; a line without a
//     colon is a field with an empty value); unknown fields are ignored;
//   - data lines are joined with '\n'; a blank line dispatches the event, but
//     an event without any data line is not dispatched;
//   - id values containing NUL are ignored; retry values that are not all
//     ASCII digits (or overflow an int) are ignored;
//   - at the end of input an event not terminated by a blank line is
//     discarded and Next returns io.EOF.
//
// Memory is bounded: a line longer than the limit, or an event whose data
// grows past it, makes Next return ErrTooLarge (from then on).
//
// A Reader is not safe for concurrent use.
type Reader struct {
	r   io.Reader
	max int

	buf        []byte
	start, end int   // unread bytes are buf[start:end]
	scanned    int   // buf[start:start+scanned] is known to hold no CR or LF
	err        error // sticky read (or size) error
	bomDone    bool
	skipLF     bool // the last line ended in CR: a following LF belongs to it
	emptyReads int

	// Event being assembled.
	data    []byte
	hasData bool
	id      string
	event   string
	retry   int

	idBuffer string // the spec's "last event ID buffer"
	lastID   string // committed at each blank line
	retryMS  int    // the stream's reconnection time
	comments int
}

// NewReader returns a Reader on r with the DefaultMaxSize limit.
func NewReader(r io.Reader) *Reader { return NewReaderSize(r, DefaultMaxSize) }

// NewReaderSize returns a Reader on r that accepts lines and event data of at
// most limit bytes (DefaultMaxSize when limit <= 0). Its memory stays within a
// small multiple of limit: a read buffer of at most limit+1 bytes plus the
// event being assembled.
func NewReaderSize(r io.Reader, limit int) *Reader {
	if limit <= 0 {
		limit = DefaultMaxSize
	}
	return &Reader{r: r, max: limit}
}

// Next returns the next dispatched event. Event.ID and Event.Retry are the id
// and retry fields given in that event's own block ("" and 0 if none; see
// LastEventID and Retry for the values that persist across events).
// Event.Data is newly allocated and owned by the caller. At the end of input
// Next returns io.EOF; other read errors are returned as they are.
func (r *Reader) Next() (Event, error) {
	if r.err == ErrTooLarge {
		return Event{}, r.err
	}
	for {
		line, err := r.readLine()
		if err != nil {
			return Event{}, err
		}
		if len(line) == 0 {
			r.lastID = r.idBuffer
			if !r.hasData {
				r.resetEvent()
				continue
			}
			ev := Event{ID: r.id, Event: r.event, Data: make([]byte, len(r.data)), Retry: r.retry}
			copy(ev.Data, r.data)
			r.resetEvent()
			return ev, nil
		}
		if err := r.field(line); err != nil {
			return Event{}, err
		}
	}
}

// LastEventID is the last event ID of the stream as of the last blank line
// (whether or not that event was dispatched): the value to send as
// Last-Event-ID when reconnecting.
func (r *Reader) LastEventID() string { return r.lastID }

// Retry is the reconnection time in milliseconds most recently set by a retry
// field (0 if none).
func (r *Reader) Retry() int { return r.retryMS }

// Comments is the number of comment lines read so far.
func (r *Reader) Comments() int { return r.comments }

func (r *Reader) resetEvent() {
	r.data = r.data[:0]
	r.hasData = false
	r.id = ""
	r.event = ""
	r.retry = 0
}

func (r *Reader) field(line []byte) error {
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		if i == 0 {
			r.comments++
			return nil
		}
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "data":
		n := len(value)
		if r.hasData {
			n++
		}
		if len(r.data)+n > r.max {
			r.err = ErrTooLarge
			return r.err
		}
		if r.hasData {
			r.data = append(r.data, '\n')
		}
		r.data = append(r.data, value...)
		r.hasData = true
	case "event":
		if string(value) != r.event { // compare first: event names repeat
			r.event = string(value)
		}
	case "id":
		if bytes.IndexByte(value, 0) >= 0 {
			return nil
		}
		if string(value) != r.idBuffer {
			r.idBuffer = string(value)
		}
		r.id = r.idBuffer
	case "retry":
		if ms, ok := parseDigits(value); ok {
			r.retry = ms
			r.retryMS = ms
		}
	}
	return nil
}

// parseDigits parses a non-empty run of ASCII digits that fits in an int.
func parseDigits(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int(c - '0')
		if n > (math.MaxInt-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// readLine returns the next line without its terminator. The slice is valid
// until the next call.
func (r *Reader) readLine() ([]byte, error) {
	for {
		b := r.buf[r.start:r.end]
		if !r.bomDone && r.err == nil && len(b) < len(bom) && bytes.HasPrefix(bom, b) {
			r.fill() // could still be a BOM: wait for more
			continue
		}
		if !r.bomDone {
			r.bomDone = true
			if bytes.HasPrefix(b, bom) {
				r.start += len(bom)
				continue
			}
		}
		if r.skipLF && len(b) > 0 {
			r.skipLF = false
			if b[0] == '\n' {
				r.start++
				continue
			}
		}
		if i := indexEOL(b[r.scanned:]); i >= 0 {
			i += r.scanned
			line := b[:i]
			r.skipLF = b[i] == '\r'
			r.start += i + 1
			r.scanned = 0
			return line, nil
		}
		r.scanned = len(b)
		if len(b) > r.max {
			r.err = ErrTooLarge
		}
		if r.err != nil {
			return nil, r.err
		}
		r.fill()
	}
}

// indexEOL returns the index of the first CR or LF in b, or -1.
func indexEOL(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}

// fill reads more input, first moving unread bytes to the front of the buffer
// and growing it (up to max+1 bytes, enough to see a maximal line's end).
func (r *Reader) fill() {
	if r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if r.end == len(r.buf) {
		size := max(2*len(r.buf), initialBufSize)
		size = min(size, r.max+1) // > len(r.buf): readLine fails a full max+1 buffer
		nb := make([]byte, size)
		copy(nb, r.buf[:r.end])
		r.buf = nb
	}
	n, err := r.r.Read(r.buf[r.end:])
	r.end += n
	switch {
	case err != nil:
		r.err = err
	case n == 0:
		if r.emptyReads++; r.emptyReads >= 100 {
			r.err = io.ErrNoProgress
		}
	default:
		r.emptyReads = 0
	}
}
