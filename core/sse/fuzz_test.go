package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// refParse is a literal, unoptimised transcription of the WHATWG event stream
// parsing rules over a complete input, used as the oracle for Reader. exceeds
// reports whether a Reader limited to limit bytes must fail with ErrTooLarge.
func refParse(in string, limit int) (events []Event, lastID string, retry, comments int, exceeds bool) {
	in = strings.TrimPrefix(in, "\uFEFF")
	var lines []string
	for {
		i := strings.IndexAny(in, "\r\n")
		if i < 0 {
			exceeds = exceeds || len(in) > limit // the unterminated tail
			break
		}
		lines = append(lines, in[:i])
		if in[i] == '\r' && strings.HasPrefix(in[i+1:], "\n") {
			in = in[i+2:]
		} else {
			in = in[i+1:]
		}
	}
	var (
		data, event, idBuf, blockID string
		blockRetry                  int
	)
	for _, line := range lines {
		if len(line) > limit {
			exceeds = true
		}
		if line == "" {
			lastID = idBuf
			if data != "" {
				events = append(events, Event{ID: blockID, Event: event, Data: []byte(strings.TrimSuffix(data, "\n")), Retry: blockRetry})
			}
			data, event, blockID, blockRetry = "", "", "", 0
			continue
		}
		if line[0] == ':' {
			comments++
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			event = value
		case "data":
			data += value + "\n"
			if len(data)-1 > limit {
				exceeds = true
			}
		case "id":
			if !strings.Contains(value, "\x00") {
				idBuf, blockID = value, value
			}
		case "retry":
			if ms, ok := parseDigits([]byte(value)); ok {
				retry, blockRetry = ms, ms
			}
		}
	}
	return events, lastID, retry, comments, exceeds
}

func FuzzReader(f *testing.F) {
	f.Add([]byte("id: 1\nevent: token\nretry: 10\ndata: a\ndata: b\n\n: c\n"), "7", "token", []byte("x\ny"), 5)
	f.Add([]byte("\uFEFFdata:x\r\n\r\ndata\rdata: y\r\r"), "", "", []byte(""), 0)
	f.Add([]byte("\xEF\xBBdata: x\n\nid: \x00\ndata:  z\n\nretry: 1a\n"), " ", ":", []byte("\n\n"), -1)
	f.Add([]byte("data: "+strings.Repeat("x", 100)+"\n\n"), "a\nb", "c\rd", []byte("e\rf"), 1<<40)
	f.Fuzz(func(t *testing.T, stream []byte, id, event string, data []byte, retry int) {
		// 1. Decoding arbitrary input: never panics, agrees with the oracle,
		// does not depend on how the input is chunked, and stays bounded.
		const limit = 64
		want, wantLastID, wantRetry, wantComments, exceeds := refParse(string(stream), limit)
		for name, src := range map[string]io.Reader{
			"whole":   bytes.NewReader(stream),
			"onebyte": iotest.OneByteReader(bytes.NewReader(stream)),
			"halves":  iotest.HalfReader(bytes.NewReader(stream)),
		} {
			r := NewReaderSize(src, limit)
			got, err := readAll(r)
			if len(r.buf) > limit+1 || cap(r.data) > 2*limit+8 {
				t.Fatalf("%s: memory not bounded: buf %d, data cap %d", name, len(r.buf), cap(r.data))
			}
			switch {
			case errors.Is(err, ErrTooLarge):
				if !exceeds {
					t.Fatalf("%s: ErrTooLarge for input within the limit", name)
				}
				if len(got) > len(want) || !sameEvents(got, want[:len(got)]) {
					t.Fatalf("%s: events before ErrTooLarge:\n got %s\nwant prefix of %s", name, show(got...), show(want...))
				}
			case err == io.EOF:
				if exceeds {
					t.Fatalf("%s: no ErrTooLarge for input over the limit", name)
				}
				if !sameEvents(got, want) {
					t.Fatalf("%s: events:\n got %s\nwant %s", name, show(got...), show(want...))
				}
				if r.LastEventID() != wantLastID || r.Retry() != wantRetry || r.Comments() != wantComments {
					t.Fatalf("%s: lastID %q retry %d comments %d, want %q %d %d", name,
						r.LastEventID(), r.Retry(), r.Comments(), wantLastID, wantRetry, wantComments)
				}
			default:
				t.Fatalf("%s: unexpected error %v", name, err)
			}
		}

		// 2. Round trip: whatever a Writer accepts, a Reader returns unchanged.
		e := Event{ID: id, Event: event, Data: data, Retry: retry}
		var buf bytes.Buffer
		w := NewWriter(&buf)
		if err := w.Event(e); err != nil {
			if !errors.Is(err, ErrInvalidEvent) || buf.Len() != 0 {
				t.Fatalf("rejected with %v after writing %q", err, buf.Bytes())
			}
			return
		}
		_ = w.Comment(event) // may be refused (a line break); either way no event changes
		next := Event{Event: "end", Data: []byte("{}")}
		if err := w.Event(next); err != nil {
			t.Fatal(err)
		}
		r := NewReader(iotest.HalfReader(&buf))
		got, err := readAll(r)
		if err != io.EOF || !sameEvents(got, []Event{e, next}) {
			t.Fatalf("round trip: got %s, %v; want %s", show(got...), err, show(e, next))
		}
		if r.LastEventID() != id {
			t.Fatalf("LastEventID = %q, want %q", r.LastEventID(), id)
		}
	})
}
