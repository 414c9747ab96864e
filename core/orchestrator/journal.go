package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/queue"
	"github.com/llorch/llorch/core/store"
)

// The journal: task progress goes to bbolt in batches (on a timer, when a
// task ends, and before an async task's 202), never once per token; the tail
// log (store.TailLog) holds every event from the moment it is shown until
// the batch that has it is written.

// tailSegmentBytes is how large the tail log's current segment grows before
// a journal batch starts a new one.
const tailSegmentBytes = 4 << 20

// tailLoop writes the tail log whenever events are pending, until ctx ends;
// then it writes what is left.
func (ts *tasks) tailLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			ts.writeTail()
			return
		case <-ts.tailKick:
		}
		ts.writeTail()
	}
}

// journalLoop writes a batch every JournalInterval. A task's end needs no
// batch of its own: the tail log already holds it.
func (ts *tasks) journalLoop(ctx context.Context, alive func()) {
	tick(ctx, ts.cfg.JournalInterval, nil, func() {
		if err := ts.flush(); err != nil {
			ts.log.Error("journal write failed", "err", err)
		}
		alive()
	})
}

// flush writes every task with unjournaled changes in one transaction (which
// counts the usage of the tasks that ended: usage.go), then drops the tail
// log segments the batch made redundant. The requests refused at admission
// since the last batch are written after it.
func (ts *tasks) flush() error {
	ts.journalMu.Lock()
	defer ts.journalMu.Unlock()
	if ts.usage != nil {
		defer func() {
			if err := ts.usage.writeRefused(); err != nil {
				ts.m.journalErrors.WithLabelValues("usage").Inc()
				ts.log.Error("writing refused requests' usage failed", "err", err)
			}
		}()
	}
	type mark struct {
		t *task
		n int
	}
	var (
		batch  []store.TaskWrite
		marks  []mark
		sealed uint64
		rerr   error
	)
	func() {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if len(ts.dirty) == 0 {
			return
		}
		// Every event appended so far is in this batch; once it is written,
		// the tail log's closed segments can go.
		sealed, rerr = ts.st.Tail().Rotate(tailSegmentBytes)
		batch = make([]store.TaskWrite, 0, len(ts.dirty))
		marks = make([]mark, 0, len(ts.dirty))
		for _, t := range ts.dirty {
			w := store.TaskWrite{Task: ts.record(t)}
			for _, le := range t.log[t.persisted:] {
				w.Events = append(w.Events, store.Event{Seq: le.seq, Name: le.ev.Name, Data: le.data})
			}
			batch = append(batch, w)
			marks = append(marks, mark{t, len(t.log)})
		}
		clear(ts.dirty)
	}()
	if len(batch) == 0 {
		return nil
	}
	err := ts.st.Journal(batch)
	func() {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for i, m := range marks {
			if err != nil {
				ts.dirty[m.t.id] = m.t
				continue
			}
			m.t.persisted = max(m.t.persisted, m.n)
			if batch[i].Task.UsageCounted {
				m.t.usageCounted, m.t.inflight = true, nil
			}
		}
	}()
	if err != nil {
		ts.m.journalErrors.WithLabelValues("batch").Inc()
		return err
	}
	if ts.usage != nil {
		for i := range batch {
			if batch[i].Counted {
				ts.usage.counted(&batch[i].Task)
			}
		}
	}
	if rerr == nil {
		if err := ts.st.Tail().Drop(sealed); err != nil {
			ts.log.Warn("tail log cleanup failed", "err", err)
		}
	}
	return nil
}

// restored is an unfinished task found at startup, to queue again.
type restored struct {
	t     *task
	class queue.Class
}

// restore loads the journal and the tail log an earlier process left: finished
// tasks are kept for their TTL; unfinished ones are returned, oldest first,
// to be queued again (those that had streamed tokens continue from them).
func (ts *tasks) restore() ([]restored, error) {
	recs, err := ts.st.Tasks()
	if err != nil {
		return nil, err
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for i := range recs {
		r := &recs[i]
		t := taskFromRecord(r)
		if t.terminal() {
			// Its events stay in the store; replays read them from there.
			t.evicted = true
			t.text.WriteString(r.Text)
			t.tokensOut = r.TokensOut
			ts.table[t.id] = t
			continue
		}
		evs, err := ts.st.Events(r.ID)
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			if err := ts.replayLocked(t, ev); err != nil {
				return nil, err
			}
		}
		t.persisted = len(t.log)
		ts.table[t.id] = t
	}
	// The tail log: tasks and events the last batch had not reached.
	tailed := 0
	err = ts.st.ReplayTail(func(rec store.TailRecord) error {
		if rec.Task != nil {
			if _, ok := ts.table[rec.Task.ID]; !ok && rec.Task.Request != nil {
				t := taskFromRecord(rec.Task)
				ts.table[t.id] = t
				ts.dirty[t.id] = t
				tailed++
			}
			return nil
		}
		t := ts.table[rec.TaskID]
		if t == nil || t.evicted || rec.Event.Seq != uint64(len(t.log)+1) {
			return nil // already journaled, or of a task that was never accepted
		}
		ts.dirty[t.id] = t
		tailed++
		return ts.replayLocked(t, rec.Event)
	})
	if err != nil {
		return nil, err
	}
	var out []restored
	for _, t := range ts.table {
		t.visible = len(t.log)
		t.recorded = true
		if !t.usageCounted && ts.usage != nil && (!t.terminal() || ts.dirty[t.id] != nil) {
			// Its tokens so far are in flight until the journal counts it
			// (a task whose end a journal before usage accounting recorded
			// is not counted).
			t.inflight = ts.usage.counter(t.key)
			t.spendInFlight(t.promptTokens + t.tokensOut)
		}
		if t.terminal() {
			continue
		}
		if t.req == nil {
			ts.finishLocked(t, api.TaskFailed, nil, api.Errorf(api.CodeInternal, "the journal has no request for this task"))
			continue
		}
		t.status, t.jobID = api.TaskQueued, ""
		ts.dirty[t.id] = t
		out = append(out, restored{t: t, class: t.class})
	}
	sortRestored(out)
	if len(out) > 0 || tailed > 0 {
		ts.log.Info("restored the journal", "requeued", len(out), "from_tail_log", tailed)
	}
	return out, nil
}

func taskFromRecord(r *store.TaskRecord) *task {
	class, _ := queue.ParseClass(r.Priority)
	t := &task{
		id: r.ID, owner: r.Owner, req: r.Request, model: r.Model, priority: r.Priority, class: class, async: r.Async,
		seed: r.Seed, correlation: r.Correlation, status: r.Status, created: r.CreatedAt, started: r.StartedAt,
		finished: r.FinishedAt, workerID: r.WorkerID, attempts: r.Attempts, expl: r.Explanation, end: r.End, err: r.Error,
		changed: make(chan struct{}), key: r.Key, promptTokens: r.PromptTokens, cachedTokens: r.CachedTokens,
		usageCounted: r.UsageCounted,
	}
	if r.Request != nil && r.Request.MaxTokens != nil {
		t.maxTokens = *r.Request.MaxTokens
	}
	return t
}

// replayLocked applies one journaled event to a restored task.
func (ts *tasks) replayLocked(t *task, se store.Event) error {
	ev, err := api.DecodeEvent(se.Name, se.Data)
	if err != nil {
		return fmt.Errorf("orchestrator: task %s: %w", t.id, err)
	}
	t.log = append(t.log, logEvent{seq: se.Seq, ev: ev, data: se.Data})
	switch {
	case ev.Started != nil:
		// A task's log has one started event (a resumed or migrated
		// attempt's is not relayed): its prompt is the task's.
		t.promptTokens, t.cachedTokens = ev.Started.PromptTokens, ev.Started.CachedTokens
		if ev.Started.MaxTokens > 0 {
			t.maxTokens = ev.Started.MaxTokens
		}
	case ev.Token != nil:
		t.tokensOut++
		t.text.WriteString(ev.Token.T)
		t.tokenIDs = append(t.tokenIDs, ev.Token.ID)
		if !tokenHasID(se.Data) {
			t.noResume = "the journal was written by a llorch that did not record token ids"
		}
	case ev.Terminal() && !t.terminal():
		// The batch had not recorded the end: the event says how it ended.
		t.finished = time.Now()
		switch {
		case ev.End != nil:
			t.status, t.end = api.TaskSucceeded, ev.End
		case ev.Error.Code == api.CodeCancelled:
			t.status, t.err = api.TaskCancelled, ev.Error
		default:
			t.status, t.err = api.TaskFailed, ev.Error
		}
		t.req = nil
	}
	return nil
}

// tokenHasID reports whether a token event's data carries an "id" field
// (journals from before token ids did not).
func tokenHasID(data []byte) bool {
	var probe struct {
		ID *int32 `json:"id"`
	}
	return json.Unmarshal(data, &probe) == nil && probe.ID != nil
}

func sortRestored(rs []restored) {
	for i := 1; i < len(rs); i++ {
		for k := i; k > 0 && rs[k].t.created.Before(rs[k-1].t.created); k-- {
			rs[k], rs[k-1] = rs[k-1], rs[k]
		}
	}
}

// janitorLoop forgets finished tasks after the result TTL.
func (ts *tasks) janitorLoop(ctx context.Context) {
	every := min(max(ts.cfg.ResultTTL/4, time.Second), time.Minute)
	tick(ctx, every, nil, func() { ts.expire(time.Now()) })
}

// evictAfter is how long a finished task's events stay in memory; later
// replays read them from the store.
const evictAfter = time.Minute

// expire deletes tasks that finished more than the result TTL before now,
// and moves the events of tasks finished a while ago out of memory.
func (ts *tasks) expire(now time.Time) {
	if err := ts.flush(); err != nil {
		ts.log.Error("journal write failed", "err", err)
		return
	}
	var ids []string
	func() {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for id, t := range ts.table {
			switch {
			case !t.terminal():
			case now.Sub(t.finished) > ts.cfg.ResultTTL:
				ids = append(ids, id)
				delete(ts.table, id)
				delete(ts.dirty, id)
			case t.log != nil && t.persisted == len(t.log) && now.Sub(t.finished) > evictAfter:
				// The events are in the store; replays read them from there.
				t.log, t.visible, t.evicted = nil, 0, true
				t.tokenIDs = nil
			}
		}
	}()
	if err := ts.st.DeleteTasks(ids); err != nil {
		ts.log.Error("deleting expired tasks", "err", err)
	}
}
