// Package sse is llorch's one Server-Sent Events codec, used by the worker to
// stream tokens, by the orchestrator to read worker streams and relay them, and
// by clients (llorch ctl, tests) to read either.
//
// Writer encodes events (id, event, retry and data fields, comments for
// keep-alive) and flushes after each one when the destination can flush.
// Reader decodes a stream following the WHATWG EventSource parsing rules (LF,
// CRLF or CR line ends; leading BOM; comments; one optional space after the
// colon; data lines joined with LF; dispatch on a blank line) with a bound on
// line and event size.
//
// Anything a Writer writes, a Reader reads back as the same Event. To keep that
// true the Writer refuses what the format cannot carry: CR, LF or NUL in an id,
// CR or LF in an event name, CR in data (LF in data becomes several data lines)
// and a negative retry.
//
// Neither a Writer nor a Reader is safe for concurrent use.
//
//	w := sse.NewWriter(rw) // rw is an http.ResponseWriter: flushed per event
//	w.JSON("token", "", &token{T: "hello", I: 42})
//	w.Comment("ping")
//
//	r := sse.NewReader(resp.Body)
//	for {
//		ev, err := r.Next()
//		if err == io.EOF { break }
//		...
//	}
package sse
