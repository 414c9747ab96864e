package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
	"github.com/llorch/llorch/core/sse"
)

// evRec is one event of a task's stream that carries an id, as a client
// received it.
type evRec struct {
	ID   uint64
	Name string
	Data []byte
}

// taskRec is one accepted task as its client saw it, over every connection
// that carried its stream.
type taskRec struct {
	Client    int
	TaskID    string
	Stream    bool // submitted with Accept: text/event-stream (else 202, then GET events)
	Priority  string
	MaxTokens int
	Temp      float64

	Events      []evRec // every event with an id, in the order received
	Queued      int     // queued events (they carry no id)
	Connections int     // connections that carried the stream
	Gone        bool    // a reconnect answered 404: the orchestrator does not know the task
	TimedOut    bool    // no terminal event before the deadline
	Problems    []string
	EndedAt     time.Time // when the client received the terminal event

	// What the orchestrator said once the task had ended: a fresh replay of
	// its stream and its status (retried across restarts).
	Replay    []evRec
	ReplayErr error
	Status    api.TaskStatus
	StatusErr error
}

func (r *taskRec) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func (r *taskRec) lastID() uint64 {
	if len(r.Events) == 0 {
		return 0
	}
	return r.Events[len(r.Events)-1].ID
}

// ended reports whether the last event received is terminal.
func (r *taskRec) ended() bool {
	if len(r.Events) == 0 {
		return false
	}
	n := r.Events[len(r.Events)-1].Name
	return n == api.EventEnd || n == api.EventError
}

// load is K clients, each submitting one task at a time and following it to
// its terminal event, until stop ends; then each finishes the task it has.
type load struct {
	url  string
	hc   *http.Client       // streams: read raw, to check each event's id and bytes
	oc   *orchclient.Client // the rest of the API
	seed uint64
	stop context.Context // done: submit no more tasks
	hard time.Time       // every followed task must end before this

	mu       sync.Mutex
	recs     []*taskRec
	refusals map[string]int // submissions not accepted, by cause
}

func (l *load) count(cause string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refusals[cause]++
}

// run runs client i until stop ends and its last task ended (or hard passed).
func (l *load) run(i int) {
	rng := rand.New(rand.NewPCG(l.seed, uint64(i)+1))
	ctx, cancel := context.WithDeadline(context.Background(), l.hard)
	defer cancel()
	for n := 0; n < maxTasksPerClient && l.stop.Err() == nil; n++ {
		rec, body := l.submit(ctx, rng, i, n)
		if rec == nil {
			return
		}
		l.follow(ctx, rec, body)
		if rec.ended() {
			rec.EndedAt = time.Now()
			rec.Replay, rec.ReplayErr = retry(ctx, func() ([]evRec, error) { return replay(ctx, l.hc, l.url, rec.TaskID) })
			rec.Status, rec.StatusErr = retry(ctx, func() (api.TaskStatus, error) { return l.oc.Task(ctx, rec.TaskID) })
		}
		l.mu.Lock()
		l.recs = append(l.recs, rec)
		l.mu.Unlock()
	}
}

// maxTasksPerClient bounds a client's loop in count (the load's end bounds
// it in time).
const maxTasksPerClient = 1_000_000

var words = strings.Fields("the orchestrator keeps every task it accepted and the worker streams tokens " +
	"while a queue drains slowly under a restart kill resume river stone lantern harbor signal")

// draw makes client i's task n: the sequence depends only on the seed.
func draw(rng *rand.Rand, i, n int) (api.TaskRequest, bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "soak client %d task %d:", i, n)
	for range 3 + rng.IntN(8) {
		b.WriteString(" " + words[rng.IntN(len(words))])
	}
	maxTokens := 8 + rng.IntN(193) // 8..200
	temp := 0.0
	if rng.IntN(2) == 1 {
		temp = 0.8
	}
	seed := int64(rng.Uint32())
	prio := api.PriorityInteractive
	if rng.IntN(4) == 0 {
		prio = api.PriorityBatch
	}
	stream := rng.IntN(2) == 0
	return api.TaskRequest{Model: "tiny", Priority: prio, ExecuteRequest: api.ExecuteRequest{
		Prompt: b.String(), MaxTokens: &maxTokens, Temperature: &temp, Seed: &seed, IgnoreEOS: true,
	}}, stream
}

// submit posts client i's task n until the orchestrator accepts it (or stop
// ends). A streamed submission comes back with its open body.
func (l *load) submit(ctx context.Context, rng *rand.Rand, i, n int) (*taskRec, io.ReadCloser) {
	req, stream := draw(rng, i, n)
	backoff := 50 * time.Millisecond
	for l.stop.Err() == nil {
		rec := &taskRec{Client: i, Stream: stream, Priority: req.Priority, MaxTokens: *req.MaxTokens, Temp: *req.Temperature}
		if stream {
			body, ok := l.submitStream(ctx, rec, &req)
			if ok {
				return rec, body
			}
		} else {
			acc, err := l.oc.Submit(ctx, &req)
			if err == nil {
				rec.TaskID = acc.TaskID
				return rec, nil
			}
			l.count(refusal(err))
		}
		select {
		case <-l.stop.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
	return nil, nil
}

// submitStream posts a task with Accept: text/event-stream (raw, as its
// stream is read raw) and returns the open stream.
func (l *load) submitStream(ctx context.Context, rec *taskRec, req *api.TaskRequest) (io.ReadCloser, bool) {
	body, err := json.Marshal(req)
	if err != nil {
		panic(err) // the api types always encode
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url+"/v2/tasks", bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "text/event-stream")
	resp, err := l.hc.Do(hreq)
	if err != nil {
		l.count(refusal(&orchclient.Error{Err: &api.Error{Message: err.Error()}}))
		return nil, false
	}
	if resp.StatusCode != http.StatusOK {
		var e api.ErrorBody
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		resp.Body.Close()
		if e.Error == nil {
			e.Error = &api.Error{}
		}
		l.count(refusal(&orchclient.Error{Status: resp.StatusCode, Err: e.Error}))
		return nil, false
	}
	rec.TaskID = resp.Header.Get("X-Task-Id")
	if rec.TaskID == "" {
		resp.Body.Close()
		l.count("stream without X-Task-Id")
		return nil, false
	}
	rec.Connections = 1
	return resp.Body, true
}

// refusal names why a submission was not accepted.
func refusal(err error) string {
	var e *orchclient.Error
	switch {
	case !errors.As(err, &e) || e.Err == nil:
		return "no answer: " + err.Error() // an answer that did not decode
	case e.Status == 0 && strings.Contains(e.Err.Message, "connection refused"):
		return "connection refused" // the orchestrator is down
	case e.Status == 0:
		return "no answer" // perhaps accepted: the orchestrator died meanwhile
	}
	return fmt.Sprintf("%d %s", e.Status, e.Err.Code)
}

// retry calls get until it succeeds or gets an answer that is not a 5xx
// (no answer or a 5xx: the orchestrator is restarting), with backoff, until
// ctx ends.
func retry[T any](ctx context.Context, get func() (T, error)) (T, error) {
	backoff := 50 * time.Millisecond
	for {
		v, err := get()
		var se *statusError
		var oe *orchclient.Error
		final := err == nil || ctx.Err() != nil ||
			(errors.As(err, &se) && se.code < 500) || (errors.As(err, &oe) && oe.Status != 0 && oe.Status < 500)
		if final {
			return v, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// follow reads rec's stream to its terminal event, reconnecting with
// Last-Event-ID (the last id received) whenever a connection breaks.
func (l *load) follow(ctx context.Context, rec *taskRec, body io.ReadCloser) {
	backoff := 50 * time.Millisecond
	for {
		if body != nil {
			l.read(rec, body)
			body.Close()
			body = nil
			if rec.ended() {
				return
			}
		}
		if ctx.Err() != nil {
			rec.TimedOut = true
			return
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.url+"/v2/tasks/"+rec.TaskID+"/events", nil)
		if err != nil {
			panic(err)
		}
		if id := rec.lastID(); id > 0 {
			req.Header.Set("Last-Event-ID", strconv.FormatUint(id, 10))
		}
		resp, err := l.hc.Do(req)
		if err == nil {
			switch {
			case resp.StatusCode == http.StatusOK:
				rec.Connections++
				body = resp.Body
				backoff = 50 * time.Millisecond
				continue
			case resp.StatusCode == http.StatusNotFound:
				resp.Body.Close()
				rec.Gone = true
				return
			case resp.StatusCode < 500:
				data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<12))
				resp.Body.Close()
				rec.problem("GET events after id %d: %s %s", rec.lastID(), resp.Status, bytes.TrimSpace(data))
				return
			default:
				resp.Body.Close() // the orchestrator is starting: try again
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// read takes events from one connection until it ends. Every event but
// queued must carry the next id; nothing may follow the terminal event, and
// the server must close the stream after it.
func (l *load) read(rec *taskRec, body io.ReadCloser) {
	r := sse.NewReader(body)
	var closer *time.Timer
	defer func() {
		if closer != nil {
			closer.Stop()
		}
	}()
	for {
		ev, err := r.Next()
		if err != nil {
			if closer != nil && !closer.Stop() {
				rec.problem("the stream stayed open 5s after its terminal event")
			}
			closer = nil
			return
		}
		if rec.ended() {
			rec.problem("%s event (id %q) after the terminal event", ev.Event, ev.ID)
			continue
		}
		if ev.Event == api.EventQueued {
			if ev.ID != "" {
				rec.problem("queued event with id %s", ev.ID)
			}
			rec.Queued++
			continue
		}
		id, err := strconv.ParseUint(ev.ID, 10, 64)
		if err != nil {
			rec.problem("%s event with id %q", ev.Event, ev.ID)
			continue
		}
		if want := rec.lastID() + 1; id != want {
			rec.problem("%s event id %d where %d was due (connection %d)", ev.Event, id, want, rec.Connections)
		}
		rec.Events = append(rec.Events, evRec{ID: id, Name: ev.Event, Data: ev.Data})
		if rec.ended() {
			closer = time.AfterFunc(5*time.Second, func() { body.Close() })
		}
	}
}
