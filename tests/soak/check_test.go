package soak

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
)

// Outcomes of an accepted task.
const (
	outSucceeded  = "succeeded"
	outWorkerLost = "failed WORKER_LOST (retriable)"
	outViolation  = "violation"
	// outUnconfirmed: a streamed submission whose connection broke before
	// any event with an id, and which the restarted orchestrator does not
	// know. The client had a 200 and an X-Task-Id, but the orchestrator had
	// shown it nothing it promised to keep.
	outUnconfirmed = "lost before its first event (streamed)"
)

// checkTask checks one task: the client's own record of its stream, a fresh
// replay of GET /v2/tasks/{id}/events, and GET /v2/tasks/{id}. It returns
// the task's outcome and every violation.
func checkTask(rec *taskRec) (string, []string) {
	replay, replayErr, st, stErr := rec.Replay, rec.ReplayErr, &rec.Status, rec.StatusErr
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	bad = append(bad, rec.Problems...)
	switch {
	case rec.Gone && rec.Stream && len(rec.Events) == 0:
		return outUnconfirmed, bad
	case rec.Gone:
		add("the orchestrator does not know the task any more (404 after %d events)", len(rec.Events))
		return outViolation, bad
	case rec.TimedOut:
		add("no terminal event before the deadline (%d events)", len(rec.Events))
	}

	// The client's record: ids 1..n, one started before any token, tokens
	// 0..k-1 once each, exactly one terminal event, last.
	var text strings.Builder
	tokens, started, terminals := 0, 0, 0
	var last api.Event
	for k, e := range rec.Events {
		if e.ID != uint64(k+1) {
			add("event %d has id %d", k+1, e.ID)
		}
		ev, err := api.DecodeEvent(e.Name, e.Data)
		if err != nil {
			add("event %d: %v", e.ID, err)
			continue
		}
		switch {
		case ev.Started != nil:
			started++
			if started > 1 || tokens > 0 {
				add("started event %d after %d started and %d token events", e.ID, started-1, tokens)
			}
		case ev.Token != nil:
			if started == 0 {
				add("token event %d before the started event", e.ID)
			}
			if ev.Token.I != tokens {
				add("token event %d has index %d, want %d", e.ID, ev.Token.I, tokens)
			}
			tokens++
			text.WriteString(ev.Token.T)
		case ev.Migrated != nil:
			// The task moved to another worker: right before the token it
			// continues with, between two different workers, for a reason.
			m := ev.Migrated
			if started == 0 || m.AtToken != tokens || m.From == m.To || m.From == "" || m.To == "" {
				add("migrated event %d %+v after %d started and %d token events", e.ID, *m, started, tokens)
			}
			switch m.Reason {
			case "died", "hung", "drain", "error", "removed":
			default:
				add("migrated event %d has reason %q", e.ID, m.Reason)
			}
		case ev.Terminal():
			terminals++
			last = ev
			if k != len(rec.Events)-1 {
				add("terminal event %d is not the last of %d", e.ID, len(rec.Events))
			}
		default:
			add("unexpected %s event %d", e.Name, e.ID)
		}
	}
	if terminals != 1 {
		add("%d terminal events", terminals)
	}
	outcome := outViolation
	switch {
	case last.End != nil:
		outcome = outSucceeded
		if tokens != rec.MaxTokens || last.End.TokensOut != rec.MaxTokens || last.End.StopReason != api.StopMaxTokens {
			add("succeeded with %d token events, end.tokens_out %d, stop %s; max_tokens %d (ignore_eos)",
				tokens, last.End.TokensOut, last.End.StopReason, rec.MaxTokens)
		}
	case last.Error != nil && last.Error.Code == api.CodeWorkerLost && last.Error.Retriable:
		outcome = outWorkerLost
	case last.Error != nil:
		add("failed: %s (retriable %v): %s", last.Error.Code, last.Error.Retriable, last.Error.Message)
	}

	// A fresh replay is what the client assembled, byte for byte.
	if replayErr != nil {
		add("replay: %v", replayErr)
	} else if d := diffEvents(replay, rec.Events); d != "" {
		add("replay: %s", d)
	}

	// The status agrees with the stream.
	switch {
	case stErr != nil:
		add("status: %v", stErr)
	case outcome == outSucceeded && st.Status != api.TaskSucceeded, outcome == outWorkerLost && st.Status != api.TaskFailed:
		add("status %s, but the stream ended with %s", st.Status, last.Name)
	case st.Text != text.String():
		add("status text (%d bytes) differs from the streamed text (%d bytes)", len(st.Text), text.Len())
	case st.TokensOut != tokens:
		add("status tokens_out %d, %d token events", st.TokensOut, tokens)
	case outcome == outWorkerLost && (st.Error == nil || st.Error.Code != api.CodeWorkerLost):
		add("status error %+v, the stream's %+v", st.Error, last.Error)
	}
	if len(bad) > 0 {
		outcome = outViolation
	}
	return outcome, bad
}

// diffEvents says how a replay differs from what the client received, ""
// when it does not.
func diffEvents(replay, got []evRec) string {
	if len(replay) != len(got) {
		return fmt.Sprintf("%d events, the client received %d", len(replay), len(got))
	}
	for k := range replay {
		a, b := replay[k], got[k]
		if a.ID != b.ID || a.Name != b.Name || !bytes.Equal(a.Data, b.Data) {
			return fmt.Sprintf("event %d is %d %s %s, the client received %d %s %s", k+1, a.ID, a.Name, a.Data, b.ID, b.Name, b.Data)
		}
	}
	return ""
}

// replay reads a task's whole stream from the start (no Last-Event-ID).
func replay(ctx context.Context, hc *http.Client, url, id string) ([]evRec, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v2/tasks/"+id+"/events", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &statusError{code: resp.StatusCode, msg: "GET events: " + resp.Status}
	}
	var out []evRec
	r := sse.NewReader(resp.Body)
	for {
		ev, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if ev.Event == api.EventQueued {
			continue
		}
		id, err := strconv.ParseUint(ev.ID, 10, 64)
		if err != nil {
			return out, fmt.Errorf("%s event with id %q", ev.Event, ev.ID)
		}
		out = append(out, evRec{ID: id, Name: ev.Event, Data: ev.Data})
	}
}

// statusError is an answer other than 200.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }
