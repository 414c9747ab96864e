package sse

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func TestWriterEvent(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"data only", Event{Data: []byte("hello")}, "data: hello\n\n"},
		{"all fields", Event{ID: "7", Event: "token", Data: []byte(`{"t":"a"}`), Retry: 1500},
			"id: 7\nevent: token\nretry: 1500\ndata: {\"t\":\"a\"}\n\n"},
		{"empty data is still dispatched", Event{Event: "ping"}, "event: ping\ndata:\n\n"},
		{"multi-line data", Event{Data: []byte("a\nb\n\nc")}, "data: a\ndata: b\ndata:\ndata: c\n\n"},
		{"trailing newline in data", Event{Data: []byte("a\n")}, "data: a\ndata:\n\n"},
		{"leading space kept", Event{ID: " x", Data: []byte(" y")}, "id:  x\ndata:  y\n\n"},
		{"colon in values", Event{Event: "a:b", Data: []byte("k: v")}, "event: a:b\ndata: k: v\n\n"},
		{"unicode", Event{Data: []byte("héllo 世界 🎉")}, "data: héllo 世界 🎉\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := NewWriter(&buf).Event(tt.ev); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWriterRejects(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
	}{
		{"LF in id", Event{ID: "a\nb", Data: []byte("x")}},
		{"CR in id", Event{ID: "a\rb", Data: []byte("x")}},
		{"NUL in id", Event{ID: "a\x00b", Data: []byte("x")}},
		{"LF in event", Event{Event: "a\nb", Data: []byte("x")}},
		{"CR in event", Event{Event: "a\r", Data: []byte("x")}},
		{"CR in data", Event{Data: []byte("a\r\nb")}},
		{"negative retry", Event{Retry: -1, Data: []byte("x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := NewWriter(&buf).Event(tt.ev)
			if !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("err = %v, want ErrInvalidEvent", err)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %q after rejecting", buf.String())
			}
		})
	}
}

type token struct {
	T string `json:"t"`
	I int    `json:"i"`
}

func TestWriterJSON(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.JSON("token", "42", &token{T: "line1\nline2\r", I: 42}); err != nil {
		t.Fatal(err)
	}
	if err := w.JSON("", "", map[string]any{"a": []int{1, 2}}); err != nil {
		t.Fatal(err)
	}
	want := "id: 42\nevent: token\ndata: {\"t\":\"line1\\nline2\\r\",\"i\":42}\n\n" +
		"data: {\"a\":[1,2]}\n\n"
	if got := buf.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}

	buf.Reset()
	err := w.JSON("bad", "", func() {})
	if err == nil || !strings.HasPrefix(err.Error(), "sse: marshal") {
		t.Fatalf("err = %v, want a marshal error", err)
	}
	if err := w.JSON("x\n", "", 1); !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("err = %v, want ErrInvalidEvent", err)
	}
	if buf.Len() != 0 {
		t.Errorf("wrote %q after errors", buf.String())
	}
	// The buffer is reused correctly after a failed marshal.
	if err := w.JSON("ok", "", 1); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != "event: ok\ndata: 1\n\n" {
		t.Errorf("after error got %q", got)
	}
}

func TestWriterComment(t *testing.T) {
	tests := []struct{ text, want string }{
		{"ping", ": ping\n"},
		{"", ":\n"},
		{"a\nb", ": a\n: b\n"},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		if err := NewWriter(&buf).Comment(tt.text); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); got != tt.want {
			t.Errorf("Comment(%q) = %q, want %q", tt.text, got, tt.want)
		}
	}
	if err := NewWriter(new(bytes.Buffer)).Comment("a\rb"); !errors.Is(err, ErrInvalidEvent) {
		t.Errorf("CR in comment: err = %v", err)
	}
}

// countingFlusher is an http.ResponseWriter that counts flushes.
type countingFlusher struct {
	*httptest.ResponseRecorder
	flushes int
}

func (c *countingFlusher) Flush() { c.flushes++; c.ResponseRecorder.Flush() }

// noFlushWriter is an http.ResponseWriter that cannot flush.
type noFlushWriter struct{ http.ResponseWriter }

// unwrapper hides its flusher behind Unwrap, like middleware wrappers do.
type unwrapper struct{ rw http.ResponseWriter }

func (u unwrapper) Header() http.Header         { return u.rw.Header() }
func (u unwrapper) Write(p []byte) (int, error) { return u.rw.Write(p) }
func (u unwrapper) WriteHeader(code int)        { u.rw.WriteHeader(code) }
func (u unwrapper) Unwrap() http.ResponseWriter { return u.rw }

func TestWriterFlushes(t *testing.T) {
	t.Run("ResponseWriter", func(t *testing.T) {
		cf := &countingFlusher{ResponseRecorder: httptest.NewRecorder()}
		w := NewWriter(cf)
		for _, err := range []error{w.Event(Event{Data: []byte("a")}), w.JSON("t", "", 1), w.Comment("ping")} {
			if err != nil {
				t.Fatal(err)
			}
		}
		if cf.flushes != 3 {
			t.Errorf("flushes = %d, want 3", cf.flushes)
		}
	})
	t.Run("behind Unwrap", func(t *testing.T) {
		cf := &countingFlusher{ResponseRecorder: httptest.NewRecorder()}
		if err := NewWriter(unwrapper{cf}).Event(Event{Data: []byte("a")}); err != nil {
			t.Fatal(err)
		}
		if cf.flushes != 1 {
			t.Errorf("flushes = %d, want 1", cf.flushes)
		}
	})
	t.Run("cannot flush", func(t *testing.T) {
		rec := httptest.NewRecorder()
		w := NewWriter(noFlushWriter{rec})
		for range 2 {
			if err := w.Event(Event{Data: []byte("a")}); err != nil {
				t.Fatal(err)
			}
		}
		if got := rec.Body.String(); got != "data: a\n\ndata: a\n\n" {
			t.Errorf("body = %q", got)
		}
	})
	t.Run("bufio", func(t *testing.T) {
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		if err := NewWriter(bw).Event(Event{Data: []byte("a")}); err != nil {
			t.Fatal(err)
		}
		if out.String() != "data: a\n\n" {
			t.Errorf("not flushed through bufio.Writer: %q", out.String())
		}
	})
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("boom") }

func TestWriterWriteError(t *testing.T) {
	err := NewWriter(failWriter{}).Event(Event{Data: []byte("a")})
	if err == nil || err.Error() != "sse: write: boom" {
		t.Errorf("err = %v", err)
	}
}

func TestWriterAllocs(t *testing.T) {
	w := NewWriter(discard{})
	ev := Event{ID: "123", Event: "token", Data: []byte(`{"t":"hello","i":42}`)}
	tok := &token{T: "hello", I: 42}
	if err := w.JSON("token", "123", tok); err != nil { // warms up the buffer
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = w.Event(ev) }); n != 0 {
		t.Errorf("Event allocates %v times per call, want 0", n)
	}
	if raceEnabled {
		t.Skip("JSON's allocations cannot be counted under -race; make test runs this again without it")
	}
	if n := testing.AllocsPerRun(100, func() { _ = w.JSON("token", "123", tok) }); n > 0 {
		t.Errorf("JSON allocates %v times per call, want 0", n)
	}
}

// discard is an io.Writer without ReadFrom or Flush.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// countFlusher counts flushes and the writes between them.
type countFlusher struct {
	bytes.Buffer
	flushes int
}

func (c *countFlusher) Flush() error { c.flushes++; return nil }

// Batch flushes once for the events written inside it.
func TestBatchFlushesOnce(t *testing.T) {
	var c countFlusher
	w := NewWriter(&c)
	err := w.Batch(func() error {
		for i := range 3 {
			if err := w.Event(Event{ID: strconv.Itoa(i + 1), Event: "token", Data: []byte("x")}); err != nil {
				return err
			}
		}
		return w.Comment("ping")
	})
	if err != nil || c.flushes != 1 {
		t.Fatalf("err %v, %d flushes", err, c.flushes)
	}
	if err := w.Comment("after"); err != nil || c.flushes != 2 {
		t.Fatalf("after the batch: err %v, %d flushes", err, c.flushes)
	}
	r := NewReader(bytes.NewReader(c.Bytes()))
	n := 0
	for {
		if _, err := r.Next(); err != nil {
			break
		}
		n++
	}
	if n != 3 {
		t.Fatalf("%d events read back", n)
	}
}
