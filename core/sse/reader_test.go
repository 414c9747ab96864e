package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll reads events until an error and returns them with that error.
func readAll(r *Reader) ([]Event, error) {
	var evs []Event
	for {
		ev, err := r.Next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

// show formats events for failure messages.
func show(evs ...Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "{id=%q event=%q data=%q retry=%d}", e.ID, e.Event, e.Data, e.Retry)
	}
	return "[" + b.String() + "]"
}

func ev(id, event, data string) Event { return Event{ID: id, Event: event, Data: []byte(data)} }

func sameEvents(a, b []Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameEvent(a[i], b[i]) {
			return false
		}
	}
	return true
}

func sameEvent(a, b Event) bool {
	return a.ID == b.ID && a.Event == b.Event && a.Retry == b.Retry && bytes.Equal(a.Data, b.Data)
}

// readers returns the ways a test feeds input: at once, byte by byte, and
// with the final bytes delivered together with io.EOF.
func readers(in string) map[string]func() io.Reader {
	return map[string]func() io.Reader{
		"whole":   func() io.Reader { return strings.NewReader(in) },
		"onebyte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
		"dataerr": func() io.Reader { return iotest.DataErrReader(strings.NewReader(in)) },
		"halves":  func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) },
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     []Event
		lastID   string
		retry    int
		comments int
	}{
		{name: "empty", in: ""},
		{name: "one event", in: "data: hello\n\n", want: []Event{ev("", "", "hello")}},
		{name: "all fields", in: "id: 1\nevent: token\nretry: 250\ndata: x\n\n",
			want: []Event{{ID: "1", Event: "token", Data: []byte("x"), Retry: 250}}, lastID: "1", retry: 250},
		{name: "CRLF", in: "event: a\r\ndata: 1\r\ndata: 2\r\n\r\n", want: []Event{ev("", "a", "1\n2")}},
		{name: "CR", in: "event: a\rdata: 1\rdata: 2\r\r", want: []Event{ev("", "a", "1\n2")}},
		{name: "mixed line ends", in: "data: a\r\ndata: b\rdata: c\n\r\n", want: []Event{ev("", "", "a\nb\nc")}},
		{name: "CR CR is two lines", in: "data: a\r\rdata: b\n\n", want: []Event{ev("", "", "a"), ev("", "", "b")}},
		{name: "BOM skipped", in: "\uFEFFdata: a\n\n", want: []Event{ev("", "", "a")}},
		{name: "only one BOM skipped", in: "\uFEFF\uFEFFdata: a\n\n"},
		{name: "BOM later is data", in: "data: a\n\n\uFEFFdata: b\n\n", want: []Event{ev("", "", "a")}},
		{name: "comments", in: ": ping\n:\ndata: a\n: mid\n\n", want: []Event{ev("", "", "a")}, comments: 3},
		{name: "one space removed", in: "data:  two\ndata:none\n\n", want: []Event{ev("", "", " two\nnone")}},
		{name: "no colon means empty value", in: "data\ndata\n\n", want: []Event{ev("", "", "\n")}},
		{name: "empty data dispatched", in: "data:\n\n", want: []Event{ev("", "", "")}},
		{name: "no data not dispatched", in: "event: x\nid: 5\n\ndata: y\n\n",
			want: []Event{ev("", "", "y")}, lastID: "5"},
		{name: "id sticky but per event", in: "id: 1\ndata: a\n\ndata: b\n\n",
			want: []Event{ev("1", "", "a"), ev("", "", "b")}, lastID: "1"},
		{name: "empty id resets", in: "id: 1\ndata: a\n\nid\ndata: b\n\n",
			want: []Event{ev("1", "", "a"), ev("", "", "b")}, lastID: ""},
		{name: "id with NUL ignored", in: "id: 1\n\nid: a\x00b\ndata: x\n\n",
			want: []Event{ev("", "", "x")}, lastID: "1"},
		{name: "retry digits only", in: "retry: 12x\nretry: -1\nretry:\nretry: 1 \ndata: a\n\n",
			want: []Event{ev("", "", "a")}},
		{name: "retry overflow ignored", in: "retry: 99999999999999999999999\ndata: a\n\n",
			want: []Event{ev("", "", "a")}},
		{name: "retry without data still counts", in: "retry: 3000\n\n", retry: 3000},
		{name: "unknown fields ignored", in: "foo: bar\nData: no\ndata: a\n\n", want: []Event{ev("", "", "a")}},
		{name: "event type resets", in: "event: a\ndata: 1\n\ndata: 2\n\n",
			want: []Event{ev("", "a", "1"), ev("", "", "2")}},
		{name: "incomplete final event discarded", in: "data: a\n\ndata: b\n", want: []Event{ev("", "", "a")}},
		{name: "unterminated final line discarded", in: "data: a\n\ndata: b", want: []Event{ev("", "", "a")}},
		{name: "id of incomplete block not committed", in: "id: 1\ndata: a\n\nid: 2\n", want: []Event{ev("1", "", "a")}, lastID: "1"},
		{name: "utf8 and colons", in: "event: tök:en\ndata: {\"t\":\"世界\"}\n\n", want: []Event{ev("", "tök:en", `{"t":"世界"}`)}},
	}
	for _, tt := range tests {
		for rname, mk := range readers(tt.in) {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				r := NewReader(mk())
				got, err := readAll(r)
				if err != io.EOF {
					t.Fatalf("err = %v, want io.EOF", err)
				}
				if !sameEvents(got, tt.want) {
					t.Errorf("events:\n got %s\nwant %s", show(got...), show(tt.want...))
				}
				if r.LastEventID() != tt.lastID {
					t.Errorf("LastEventID = %q, want %q", r.LastEventID(), tt.lastID)
				}
				if r.Retry() != tt.retry {
					t.Errorf("Retry = %d, want %d", r.Retry(), tt.retry)
				}
				if r.Comments() != tt.comments {
					t.Errorf("Comments = %d, want %d", r.Comments(), tt.comments)
				}
				if _, err := r.Next(); err != io.EOF {
					t.Errorf("Next after EOF: err = %v", err)
				}
			})
		}
	}
}

func TestReaderLimit(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Event // before the error
	}{
		{"long line", "data: ok\n\ndata: " + strings.Repeat("x", 20) + "\n\n", []Event{ev("", "", "ok")}},
		{"long unterminated line", "data: ok\n\n" + strings.Repeat("x", 100), []Event{ev("", "", "ok")}},
		{"long event", "data: 1234567\ndata: 1234567\ndata: 12345\n\n", nil},
		{"long comment", ": " + strings.Repeat("x", 20) + "\n", nil},
	}
	for _, tt := range tests {
		for rname, mk := range readers(tt.in) {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				r := NewReaderSize(mk(), 20)
				got, err := readAll(r)
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err = %v, want ErrTooLarge", err)
				}
				if !sameEvents(got, tt.want) {
					t.Errorf("events before error: got %s, want %s", show(got...), show(tt.want...))
				}
				if _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
					t.Errorf("error not sticky: %v", err)
				}
				if len(r.buf) > 21 {
					t.Errorf("buffer grew to %d bytes", len(r.buf))
				}
			})
		}
	}
	// Exactly at the limit is fine: a 20-byte line and 20 bytes of data.
	in := "data:" + strings.Repeat("y", 15) + "\n\ndata: 123456789\ndata: 123456789\n\n"
	got, err := readAll(NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), 20))
	if err != io.EOF || len(got) != 2 {
		t.Fatalf("at the limit: %s, %v", show(got...), err)
	}
}

func TestReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := NewReader(io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(boom)))
	got, err := readAll(r)
	if !errors.Is(err, boom) || !sameEvents(got, []Event{ev("", "", "a")}) {
		t.Errorf("got %s, %v", show(got...), err)
	}
}

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderNoProgress(t *testing.T) {
	if _, err := NewReader(emptyReader{}).Next(); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("err = %v, want io.ErrNoProgress", err)
	}
}

// A CR at the end of one read and LF at the start of the next is one line end.
func TestReaderCRLFAcrossReads(t *testing.T) {
	r, w := io.Pipe()
	go func() {
		for _, s := range []string{"data: a\r", "\ndata: b\r", "\n\r", "\n"} {
			_, _ = w.Write([]byte(s))
		}
		w.Close()
	}()
	got, err := readAll(NewReader(r))
	if err != io.EOF || !sameEvents(got, []Event{ev("", "", "a\nb")}) {
		t.Errorf("got %s, %v", show(got...), err)
	}
}

// An event is returned as soon as its blank line arrives, without waiting
// for more input (which matters for a live stream).
func TestReaderDoesNotReadAhead(t *testing.T) {
	r, w := io.Pipe()
	defer w.Close()
	go func() { _, _ = w.Write([]byte("\uFEFFdata: a\r\r")) }()
	got, err := NewReader(r).Next()
	if err != nil || !sameEvent(got, ev("", "", "a")) {
		t.Errorf("got %s, %v", show(got), err)
	}
}

func TestReaderDataOwned(t *testing.T) {
	r := NewReader(strings.NewReader("data: aaaa\n\ndata: bbbb\n\n"))
	first, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if second, err := r.Next(); err != nil || string(second.Data) != "bbbb" {
		t.Fatalf("second event: %q, %v", second.Data, err)
	}
	if string(first.Data) != "aaaa" {
		t.Errorf("first event's data was overwritten: %q", first.Data)
	}
}
