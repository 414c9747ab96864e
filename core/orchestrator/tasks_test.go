package orchestrator

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/sse"
	"github.com/llorch/llorch/core/store"
)

// The tasks part alone: its log, the tail log, restore, and following a
// task's events.

// An event is visible to clients only once the tail log holds it.
func TestEventsVisibleOnlyOnceInTheTailLog(t *testing.T) {
	cfg := fastConfig()
	cfg.JournalInterval = time.Hour
	p := startParts(t, cfg, newFakeFleet(), "")
	p.cancelLoopsOnly(t) // no tail writer: the test writes the tail itself
	id := "t-1"
	req := fakeReq(3)
	req.Seed = ptr(int64(1))
	p.tasks.add(newTask(id, req, true, principal{}, "c", time.Now()))
	exec, job, ok := p.tasks.begin(id, "w1", nil, spent{})
	if !ok || exec.JobID != job {
		t.Fatalf("begin: %v %q", ok, job)
	}
	for _, ev := range []api.Event{
		{Name: api.EventStarted, Started: &api.Started{}},
		{Name: api.EventToken, Token: &api.Token{T: "a", I: 0, ID: 100}},
	} {
		if _, _, err := p.tasks.relay(id, job, ev); err != nil {
			t.Fatal(err)
		}
	}
	if evs := p.events(id); len(evs) != 0 {
		t.Fatalf("%d events visible before the tail log has them", len(evs))
	}
	p.tasks.writeTail()
	if evs := p.events(id); len(evs) != 2 {
		t.Fatalf("%d events visible after the tail write, want 2", len(evs))
	}
	var recs []store.TailRecord
	if err := store.ReadTail(p.st.Tail().Dir(), 0, func(r store.TailRecord) error { recs = append(recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].Task == nil || recs[1].Event.Name != api.EventStarted || recs[2].Event.Seq != 2 {
		t.Fatalf("tail log %+v", recs)
	}
}

// A crash between two journal batches loses nothing a client saw: at
// startup the tail log restores the task and its events, and the task is
// queued again to continue from its tokens.
func TestCrashRestoresFromTheTailLog(t *testing.T) {
	cfg := fastConfig()
	cfg.JournalInterval = time.Hour // no batch after the admission's
	fleet := newFakeFleet()
	dir := t.TempDir()
	p := startParts(t, cfg, fleet, dir)
	w := p.addWorker(t, "w1", 1)
	w.set(func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		st, _ := streamTokens(-1)(ctx, req)
		fs := st.(*fakeStream)
		fs.evs = fs.evs[:6] // started and 5 tokens, then silence
		fs.block = true
		return fs, nil
	})
	id := p.submit(t, fakeReq(9))
	waitFor(t, 10*time.Second, "5 tokens shown", func() bool { return len(p.events(id)) == 6 })
	rec, err := p.st.Tasks()
	if err != nil || len(rec) != 1 || rec[0].TokensOut != 0 {
		t.Fatalf("the journal already has the tokens (%+v, %v): the test would prove nothing", rec, err)
	}
	p.crash()

	w.set(streamTokens(-1))
	q := startParts(t, cfg, fleet, dir)
	st := q.wait(t, id)
	if st.Status != api.TaskSucceeded || st.TokensOut != 9 {
		t.Fatalf("after the crash: %+v", st)
	}
	checkTokens(t, q.events(id), 9)
	jobs := w.received()
	if last := jobs[len(jobs)-1]; !slices.Equal(last.ResumeTokens, []int32{100, 101, 102, 103, 104}) {
		t.Fatalf("continued with %v", last.ResumeTokens)
	}
}

// cancelLoopsOnly stops p's loops but keeps its store open.
func (p *parts) cancelLoopsOnly(t *testing.T) {
	t.Helper()
	p.stopLoops()
	<-p.done
}

func TestParseLastEventID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		last uint64
		want uint64
		ok   bool
	}{
		{"", 5, 0, true},
		{"0", 5, 0, true},
		{"5", 5, 5, true},
		{"6", 5, 0, false},
		{"18446744073709551615", 5, 0, false},
		{"18446744073709551616", 5, 0, false},
		{"-1", 5, 0, false},
		{"+1", 5, 0, false},
		{" 1", 5, 0, false},
		{"1e3", 5000, 0, false},
		{"0x10", 50, 0, false},
		{"00000000000000000000001", 5, 0, false},
	} {
		got, e := parseLastEventID(tc.in, tc.last)
		if (e == nil) != tc.ok || got != tc.want {
			t.Errorf("parseLastEventID(%q, %d) = %d, %v; want %d, ok %v", tc.in, tc.last, got, e, tc.want, tc.ok)
		}
		if e != nil && e.HTTPStatus() != 400 {
			t.Errorf("%q: status %d", tc.in, e.HTTPStatus())
		}
	}
}

// follow replays, then follows live: queued events while the task waits
// (no id), keep-alives on a quiet stream, the events with ids 1..n.
func TestFollowQueuedAndKeepAlive(t *testing.T) {
	cfg := fastConfig()
	cfg.KeepAlive = 30 * time.Millisecond
	p := startParts(t, cfg, newFakeFleet(), "")
	w := p.addWorker(t, "w1", 1)
	w.set(hang)
	busy := p.submit(t, fakeReq(3))
	waitFor(t, 10*time.Second, "the first task running", func() bool { return p.state(busy).Status == api.TaskRunning })
	id := p.submit(t, fakeReq(3))
	tk := p.tasks.get(id, principal{role: RoleAdmin})
	rec := &watchWriter{kept: make(chan struct{})}
	go func() {
		<-rec.kept // the waiting stream got a keep-alive: let the task run
		w.set(streamTokens(-1))
		p.cancel(busy, "make room", principal{role: RoleAdmin})
	}()
	if err := p.tasks.follow(context.Background(), sse.NewWriter(rec), tk, 0); err != nil {
		t.Fatalf("follow: %v", err)
	}
	r := sse.NewReader(bytes.NewReader(rec.bytes()))
	var names, ids []string
	for {
		ev, err := r.Next()
		if err != nil {
			break
		}
		names = append(names, ev.Event)
		ids = append(ids, ev.ID)
	}
	if len(names) < 6 || names[0] != api.EventQueued || ids[0] != "" {
		t.Fatalf("events %v (ids %v)", names, ids)
	}
	relayedIDs := slices.DeleteFunc(slices.Clone(ids), func(s string) bool { return s == "" })
	if strings.Join(relayedIDs, ",") != "1,2,3,4,5" {
		t.Fatalf("ids %v", relayedIDs)
	}
	if r.Comments() == 0 {
		t.Fatal("no keep-alive comment while the task waited")
	}
}

// watchWriter collects a stream and closes kept at the first keep-alive.
type watchWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	kept chan struct{}
	once sync.Once
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Contains(p, []byte(":keep-alive")) || bytes.Contains(p, []byte(": keep-alive")) {
		w.once.Do(func() { close(w.kept) })
	}
	return w.buf.Write(p)
}

func (w *watchWriter) bytes() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.buf.Bytes())
}

// A restart keeps finished tasks' events in the store, not in memory; their
// replays read them from there.
func TestRestartLeavesFinishedEventsInTheStore(t *testing.T) {
	fleet := newFakeFleet()
	dir := t.TempDir()
	p := startParts(t, fastConfig(), fleet, dir)
	p.addWorker(t, "w1", 1)
	id := p.submit(t, fakeReq(6))
	p.wait(t, id)
	p.stop()
	q := startParts(t, fastConfig(), fleet, dir)
	q.tasks.mu.Lock()
	tk := q.tasks.table[id]
	evicted, inMemory := tk.evicted, len(tk.log)
	q.tasks.mu.Unlock()
	if !evicted || inMemory != 0 {
		t.Fatalf("evicted %v, %d events in memory", evicted, inMemory)
	}
	rec := &watchWriter{kept: make(chan struct{})}
	if err := q.tasks.follow(context.Background(), sse.NewWriter(rec), tk, 2); err != nil {
		t.Fatal(err)
	}
	r := sse.NewReader(bytes.NewReader(rec.bytes()))
	n := 0
	for {
		if _, err := r.Next(); err != nil {
			break
		}
		n++
	}
	if n != 6 { // started, 6 tokens, end = 8 events; after id 2: 6
		t.Fatalf("%d events replayed after id 2, want 6", n)
	}
	if st := q.state(id); st.Status != api.TaskSucceeded || st.TokensOut != 6 || st.Text == "" {
		t.Fatalf("status %+v", st)
	}
}
