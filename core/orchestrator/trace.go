package orchestrator

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/llorch/llorch/core/api"
)

// The doors a task comes by: the trace's api field.
const (
	doorTasks       = "tasks"       // /v2/tasks
	doorChat        = "chat"        // /v1/chat/completions
	doorCompletions = "completions" // /v1/completions
)

// traceQueue bounds the records waiting for the trace writer; more are
// dropped (and counted), so a slow disk never slows the relay.
const traceQueue = 4096

// tracer appends one api.TraceRecord JSON line per finished task to the
// trace file (Config.TraceFile): lengths and timings, and the prompt only
// with Config.TracePrompts. A task's end hands its record over without
// blocking (add); one goroutine (loop) writes them. A session id is written
// as a salted fingerprint: tasks of one conversation share it within one
// run of the orchestrator, and it does not give the id away.
type tracer struct {
	f       *os.File
	prompts bool
	salt    [16]byte
	recs    chan api.TraceRecord
	m       *metrics
	log     *slog.Logger
	failed  bool // a write failed: logged once
}

// openTrace opens (or creates, mode 0600) the trace file for appending.
func openTrace(path string, prompts bool, m *metrics, log *slog.Logger) (*tracer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("orchestrator: trace file: %w", err)
	}
	tr := &tracer{f: f, prompts: prompts, recs: make(chan api.TraceRecord, traceQueue), m: m, log: log.With("part", "trace")}
	_, _ = rand.Read(tr.salt[:])
	return tr, nil
}

// add queues a record for the writer, or drops it when the queue is full.
func (tr *tracer) add(rec api.TraceRecord) {
	select {
	case tr.recs <- rec:
	default:
		tr.m.traceDropped.Inc()
	}
}

// loop writes queued records until ctx ends, then writes what is still
// queued and closes the file. It flushes whenever the queue runs dry.
func (tr *tracer) loop(ctx context.Context) {
	bw := bufio.NewWriterSize(tr.f, 64<<10)
	enc := json.NewEncoder(bw) // one line per record
	write := func(rec *api.TraceRecord) {
		if err := enc.Encode(rec); err != nil {
			tr.fail(err)
		}
	}
	flush := func() {
		if err := bw.Flush(); err != nil {
			tr.fail(err)
			bw.Reset(tr.f) // what it held is lost
		}
	}
	defer func() {
		for len(tr.recs) > 0 { // the only reader: this receive cannot block
			rec := <-tr.recs
			write(&rec)
		}
		flush()
		if err := tr.f.Close(); err != nil {
			tr.fail(err)
		}
	}()
	for {
		select {
		case rec := <-tr.recs:
			write(&rec)
			if len(tr.recs) == 0 {
				flush()
			}
		case <-ctx.Done():
			return
		}
	}
}

// fail counts a failed write and logs the first.
func (tr *tracer) fail(err error) {
	tr.m.traceErrors.Inc()
	if !tr.failed {
		tr.failed = true
		tr.log.Error("trace file write failed; records are being lost (counted in llorch_trace_write_errors_total)", "err", err)
	}
}

// session is the fingerprint of a session id ("" for none).
func (tr *tracer) session(id string) string {
	if id == "" {
		return ""
	}
	h := sha256.New()
	h.Write(tr.salt[:])
	h.Write([]byte(id))
	return "s-" + hex.EncodeToString(h.Sum(nil)[:8])
}

// recordOf is the trace record of t, which has just ended.
func (tr *tracer) recordOf(t *task) api.TraceRecord {
	rec := api.TraceRecord{ArrivalMs: t.arrived.UnixMilli(), Model: t.model, API: t.door, Priority: t.priority,
		PromptTokens: t.promptTokens, CachedTokens: t.cachedTokens, OutputTokens: t.tokensOut, Status: t.status}
	if t.arrived.IsZero() {
		rec.ArrivalMs = t.created.UnixMilli()
	}
	var tm *api.Timing
	if t.end != nil {
		tm = t.end.Timing
		if t.end.PromptTokens > 0 {
			rec.PromptTokens, rec.CachedTokens = t.end.PromptTokens, t.end.CachedTokens
		}
	}
	if t.err != nil {
		tm, rec.Code = t.err.Timing, t.err.Code
	}
	if tm != nil {
		rec.QueueMs, rec.TTFTMs, rec.TotalMs = tm.QueueMs, tm.TTFTMs, tm.TotalMs
	}
	if r := t.req; r != nil {
		rec.Session = tr.session(r.SessionID)
		if r.MaxTokens != nil {
			rec.MaxTokens = *r.MaxTokens
		}
		if tr.prompts {
			rec.Prompt, rec.Messages = r.Prompt, r.Messages
		}
	}
	return rec
}
