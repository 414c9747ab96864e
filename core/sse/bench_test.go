package sse

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"testing"
)

func reportEventsPerSec(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkWriterJSON writes a token event with an id, as the orchestrator
// relay does. "baseline" is the obvious json.Marshal + fmt.Fprintf encoding,
// measured in the same run for a ratio.
func BenchmarkWriterJSON(b *testing.B) {
	tok := &token{T: "hello", I: 42}
	b.Run("Writer", func(b *testing.B) {
		w := NewWriter(io.Discard)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if err := w.JSON("token", "42", tok); err != nil {
				b.Fatal(err)
			}
		}
		reportEventsPerSec(b)
	})
	b.Run("baseline", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			data, err := json.Marshal(tok)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(io.Discard, "id: %s\nevent: %s\ndata: %s\n\n", "42", "token", data)
		}
		reportEventsPerSec(b)
	})
}

// BenchmarkWriterEvent writes pre-encoded data (a relay passing data through).
func BenchmarkWriterEvent(b *testing.B) {
	w := NewWriter(io.Discard)
	ev := Event{ID: "42", Event: "token", Data: []byte(`{"t":"hello","i":42}`)}
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Event(ev); err != nil {
			b.Fatal(err)
		}
	}
	reportEventsPerSec(b)
}

// loopReader serves the same stream forever.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// BenchmarkReader decodes token events with ids, as the orchestrator does
// when reading a worker stream.
func BenchmarkReader(b *testing.B) {
	var stream []byte
	for i := range 1000 {
		stream = fmt.Appendf(stream, "id: %d\nevent: token\ndata: {\"t\":\"hello\",\"i\":%d}\n\n", i, i)
	}
	r := NewReader(&loopReader{data: stream})
	b.SetBytes(int64(len(stream) / 1000))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := r.Next()
		if err != nil || ev.Event != "token" {
			b.Fatal(ev, err)
		}
	}
	reportEventsPerSec(b)
}

// BenchmarkRelay reads events and writes them again: the orchestrator's
// per-token work on the SSE side.
func BenchmarkRelay(b *testing.B) {
	var stream []byte
	for i := range 1000 {
		stream = fmt.Appendf(stream, "event: token\ndata: {\"t\":\"hello\",\"i\":%d}\n\n", i)
	}
	r := NewReader(&loopReader{data: stream})
	w := NewWriter(io.Discard)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev, err := r.Next()
		if err != nil {
			b.Fatal(err)
		}
		ev.ID = strconv.Itoa(i)
		if err := w.Event(ev); err != nil {
			b.Fatal(err)
		}
	}
	reportEventsPerSec(b)
}
