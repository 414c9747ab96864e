package sse

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestRoundTrip(t *testing.T) {
	events := []Event{
		{Data: []byte("hello")},
		{ID: "1", Event: "token", Data: []byte(`{"t":"a","i":0}`)},
		{Data: []byte("")},
		{Data: []byte("\n")},
		{Data: []byte("a\n\nb\n")},
		{ID: " spaced ", Event: " spaced ", Data: []byte("  spaced  ")},
		{ID: "x:y", Event: "a:b", Data: []byte(": not a comment")},
		{Event: "end", Data: []byte("data: nested\n\nid: 9"), Retry: 3000},
		{ID: "\uFEFF", Data: []byte("\uFEFFbom")},
		{Data: []byte("\x00\xff invalid utf8 \xc3")},
		{ID: "9", Data: []byte(strings.Repeat("long ", 2000))},
	}
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, e := range events {
		if err := w.Event(e); err != nil {
			t.Fatalf("write %s: %v", show(e), err)
		}
		if err := w.Comment("ping"); err != nil {
			t.Fatal(err)
		}
	}
	for name, src := range map[string]io.Reader{
		"whole":   bytes.NewReader(buf.Bytes()),
		"onebyte": iotest.OneByteReader(bytes.NewReader(buf.Bytes())),
	} {
		t.Run(name, func(t *testing.T) {
			r := NewReader(src)
			got, err := readAll(r)
			if err != io.EOF {
				t.Fatal(err)
			}
			if !sameEvents(got, events) {
				t.Errorf("round trip:\n got %s\nwant %s", show(got...), show(events...))
			}
			if r.Comments() != len(events) || r.LastEventID() != "9" || r.Retry() != 3000 {
				t.Errorf("comments=%d lastID=%q retry=%d", r.Comments(), r.LastEventID(), r.Retry())
			}
		})
	}
}

func TestRoundTripJSON(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.JSON("token", "17", &token{T: "a\nb\r\u2028</s>", I: 3}); err != nil {
		t.Fatal(err)
	}
	got, err := NewReader(&buf).Next()
	if err != nil {
		t.Fatal(err)
	}
	want := Event{ID: "17", Event: "token", Data: []byte(`{"t":"a\nb\r\u2028\u003c/s\u003e","i":3}`)}
	if !sameEvent(got, want) {
		t.Errorf("got %s, want %s", show(got), show(want))
	}
}
