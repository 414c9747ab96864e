package orchestrator

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/prefix"
	"github.com/llorch/llorch/core/workerclient"
)

// The dispatcher's tests run the parts over fake workers (fake_test.go): no
// HTTP server, no llama.cpp; what a worker answers is scripted.

func fastConfig() Config {
	return Config{RetryBackoff: time.Millisecond, MonitorInterval: 20 * time.Millisecond, HeartbeatTimeout: time.Hour,
		ProbeTimeout: 100 * time.Millisecond, QueuedInterval: 20 * time.Millisecond, JournalInterval: 20 * time.Millisecond}
}

// A worker answering ALL_SLOTS_BUSY (its slots taken by its own clients) is
// waited for: the task runs when the worker frees up, whatever
// --max-attempts says, and no WORKER_LOST is invented.
func TestBusyWorkerDoesNotUseAttempts(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxAttempts = 2
	p := startParts(t, cfg, newFakeFleet(), "")
	w := p.addWorker(t, "w1", 1)
	var calls atomic.Int32
	w.set(func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		if calls.Add(1) <= 6 {
			return refuse(http.StatusServiceUnavailable, api.CodeAllSlotsBusy)(ctx, req)
		}
		return streamTokens(-1)(ctx, req)
	})
	req := fakeReq(4)
	req.Placement = &api.Placement{PinWorker: "w1"}
	id := p.submit(t, req)
	st := p.wait(t, id)
	if st.Status != api.TaskSucceeded || st.Attempts != 7 {
		t.Fatalf("status %s after %d attempts (error %v), want succeeded after 7", st.Status, st.Attempts, st.Error)
	}
	if n := value(p.m.attemptsFailed.WithLabelValues("busy")); n != 6 {
		t.Fatalf("%v busy attempts counted, want 6", n)
	}
}

// Workers that fail before the first token use up --max-attempts, each on
// another worker when there is one; then the task fails with WORKER_LOST.
func TestGiveUpAfterMaxAttempts(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxAttempts = 3
	p := startParts(t, cfg, newFakeFleet(), "")
	for _, id := range []string{"w1", "w2"} {
		p.addWorker(t, id, 1).set(refuse(http.StatusInternalServerError, api.CodeInternal))
	}
	st := p.wait(t, p.submit(t, fakeReq(4)))
	if st.Status != api.TaskFailed || st.Error == nil || st.Error.Code != api.CodeWorkerLost || !st.Error.Retriable || st.Attempts != 3 {
		t.Fatalf("status %+v (error %+v)", st, st.Error)
	}
	if !strings.Contains(st.Error.Message, "3 attempts") {
		t.Fatalf("message %q", st.Error.Message)
	}
	var on []string
	for _, id := range []string{"w1", "w2"} {
		if n := len(p.fleet.connect("http://" + id + ".test:1").(*fakeWorker).received()); n > 0 {
			on = append(on, id)
		}
	}
	if len(on) != 2 {
		t.Fatalf("attempts went to %v, want both workers", on)
	}
}

// A worker lost mid-stream: the task continues on another worker from the
// tokens it had sent (their ids go as resume_tokens), and the log holds
// every token once, in order.
func TestMigrationContinuesFromTokens(t *testing.T) {
	p := startParts(t, fastConfig(), newFakeFleet(), "")
	w1 := p.addWorker(t, "w1", 1) // first in the tie-break
	w1.set(streamTokens(5))
	w2 := p.addWorker(t, "w2", 1)
	id := p.submit(t, fakeReq(12))
	st := p.wait(t, id)
	if st.Status != api.TaskSucceeded || st.TokensOut != 12 || st.WorkerID != "w2" {
		t.Fatalf("status %+v", st)
	}
	got := w2.received()
	if len(got) != 1 || !slices.Equal(got[0].ResumeTokens, []int32{100, 101, 102, 103, 104}) {
		t.Fatalf("w2 received %+v", got)
	}
	checkTokens(t, p.events(id), 12)
	if n := value(p.m.resumes.WithLabelValues("migration")); n != 1 {
		t.Fatalf("%v migrations counted", n)
	}
}

// A worker that ends a stream with a retriable error after tokens (a failed
// decode): the task migrates with reason error, and the client's log has one
// migrated event right before the token the other worker continues with.
func TestMigrationAfterRetriableError(t *testing.T) {
	p := startParts(t, fastConfig(), newFakeFleet(), "")
	p.addWorker(t, "w1", 1).set(func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		s, _ := streamTokens(4)(ctx, req)
		fs := s.(*fakeStream)
		fs.evs = append(fs.evs, api.Event{Name: api.EventError, Error: &api.Error{Code: api.CodeDecodeFailed, Message: "decode failed", Retriable: true}})
		fs.err = nil
		return fs, nil
	})
	p.addWorker(t, "w2", 1)
	id := p.submit(t, fakeReq(10))
	if st := p.wait(t, id); st.Status != api.TaskSucceeded || st.TokensOut != 10 || st.WorkerID != "w2" {
		t.Fatalf("status %+v", st)
	}
	evs := p.events(id)
	checkTokens(t, evs, 10)
	var moves []api.Migrated
	for i, e := range evs {
		if e.Migrated != nil {
			moves = append(moves, *e.Migrated)
			if next := evs[i+1]; next.Token == nil || next.Token.I != e.Migrated.AtToken {
				t.Fatalf("migrated %+v is followed by %+v", *e.Migrated, next)
			}
		}
	}
	if want := (api.Migrated{From: "w1", To: "w2", AtToken: 4, Reason: "error"}); len(moves) != 1 || moves[0] != want {
		t.Fatalf("migrated events %+v, want [%+v]", moves, want)
	}
	if n := value(p.m.migrations.WithLabelValues("error")); n != 1 {
		t.Fatalf("llorch_migrations_total{reason=error} = %v", n)
	}
}

// Past --max-migrations the stream ends with one retriable WORKER_LOST.
func TestMigrationLimit(t *testing.T) {
	cfg := fastConfig()
	cfg.MaxMigrations = 1
	p := startParts(t, cfg, newFakeFleet(), "")
	p.addWorker(t, "w1", 1).set(streamTokens(3))
	p.addWorker(t, "w2", 1).set(streamTokens(6))
	id := p.submit(t, fakeReq(12))
	st := p.wait(t, id)
	if st.Status != api.TaskFailed || st.Error.Code != api.CodeWorkerLost || !st.Error.Retriable || st.TokensOut != 6 {
		t.Fatalf("status %+v (error %+v)", st, st.Error)
	}
	evs := p.events(id)
	if last := evs[len(evs)-1]; last.Error == nil || last.Error.Code != api.CodeWorkerLost {
		t.Fatalf("last event %+v", last)
	}
}

// A worker lost after its last token but before its end event: the task
// ends with MAX_TOKENS (a continuation would have nothing left to do).
func TestLostAfterLastToken(t *testing.T) {
	p := startParts(t, fastConfig(), newFakeFleet(), "")
	p.addWorker(t, "w1", 1).set(func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		st, _ := streamTokens(-1)(ctx, req)
		fs := st.(*fakeStream)
		fs.evs, fs.err = fs.evs[:len(fs.evs)-1], io.ErrUnexpectedEOF // no end event
		return fs, nil
	})
	w2 := p.addWorker(t, "w2", 1)
	st := p.wait(t, p.submit(t, fakeReq(5)))
	if st.Status != api.TaskSucceeded || st.End == nil || st.End.StopReason != api.StopMaxTokens || st.TokensOut != 5 {
		t.Fatalf("status %+v (end %+v)", st, st.End)
	}
	if n := len(w2.received()); n != 0 {
		t.Fatalf("w2 got %d jobs for a task that had all its tokens", n)
	}
}

// A worker that stops answering (a frozen process: its stream stays silent
// and /health hangs) is found unhealthy, and its attempts fail over: before
// the first token the task runs elsewhere.
func TestFrozenWorkerFailsOver(t *testing.T) {
	cfg := fastConfig()
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	p := startParts(t, cfg, newFakeFleet(), "")
	w1 := p.addWorker(t, "w1", 1)
	w1.set(hang)
	id := p.submit(t, fakeReq(4))
	waitFor(t, 10*time.Second, "the first attempt", func() bool { return len(w1.received()) == 1 })
	w1.setHealthy(false)
	p.addWorker(t, "w2", 1)
	go func() { // w2 heartbeats; w1 is silent
		for p.state(id).Status != api.TaskSucceeded && p.state(id).Status != "" {
			_ = p.reg.heartbeat("w2", api.Heartbeat{Status: api.StatusReady})
			time.Sleep(20 * time.Millisecond)
		}
	}()
	st := p.wait(t, id)
	if st.Status != api.TaskSucceeded || st.WorkerID != "w2" {
		t.Fatalf("status %+v", st)
	}
	if n := value(p.m.attemptsFailed.WithLabelValues("worker_lost")); n != 1 {
		t.Fatalf("%v attempts lost with their worker", n)
	}
	if s := p.reg.list()[0]; s.WorkerID != "w1" || s.State != api.WorkerUnhealthy || s.Assigned != 0 {
		t.Fatalf("w1 %+v", s)
	}
}

// drop-lru and a retry: a task that failed before its first token goes back
// to its place whatever the capacity; it never evicts a queued task, and
// every task ends exactly once.
func TestRetryNeverDropsAQueuedTask(t *testing.T) {
	cfg := fastConfig()
	cfg.QueueCapacity = 1
	cfg.QueuePolicy = "drop-lru"
	p := startParts(t, cfg, newFakeFleet(), "")
	w := p.addWorker(t, "w1", 1)
	release := make(chan struct{})
	var calls atomic.Int32
	w.set(func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		if calls.Add(1) == 1 {
			<-release // fails only once the batch task waits in the queue
			return nil, errors.New("connection reset")
		}
		return streamTokens(-1)(ctx, req)
	})
	a := p.submit(t, fakeReq(3))
	waitFor(t, 10*time.Second, "the first attempt", func() bool { return calls.Load() == 1 })
	b := fakeReq(3)
	b.Priority = api.PriorityBatch
	bid := p.submit(t, b)
	close(release)
	for _, id := range []string{a, bid} {
		if st := p.wait(t, id); st.Status != api.TaskSucceeded {
			t.Fatalf("task %s: %+v (error %+v)", id, st, st.Error)
		}
	}
	if n := value(p.m.tasks.WithLabelValues("dropped", api.PriorityBatch)); n != 0 {
		t.Fatalf("%v tasks dropped", n)
	}
	for _, prio := range []string{api.PriorityInteractive, api.PriorityBatch} {
		if n := value(p.m.queueDepth.WithLabelValues("m", prio)); n != 0 {
			t.Fatalf("queue depth %s %v after every task ended", prio, n)
		}
	}
}

// When drop-lru evicts a task at admission, that task ends with
// QUEUE_FULL_DROPPED (one terminal event), and the depth gauge follows.
func TestDropEndsTheDroppedTask(t *testing.T) {
	cfg := fastConfig()
	cfg.QueueCapacity = 1
	cfg.QueuePolicy = "drop-lru"
	p := startParts(t, cfg, newFakeFleet(), "")
	w := p.addWorker(t, "w1", 1)
	w.set(hang)
	running := p.submit(t, fakeReq(3))
	waitFor(t, 10*time.Second, "the running task", func() bool { return p.state(running).Status == api.TaskRunning })
	b := fakeReq(3)
	b.Priority = api.PriorityBatch
	old := p.submit(t, b)
	p.submit(t, b) // the batch class is full: the older batch task goes
	st := p.wait(t, old)
	if st.Error == nil || st.Error.Code != api.CodeQueueFullDropped {
		t.Fatalf("dropped task %+v", st)
	}
	if n := value(p.m.queueDepth.WithLabelValues("m", api.PriorityBatch)); n != 1 {
		t.Fatalf("batch depth %v, want 1", n)
	}
}

// Tasks admitted before a restart are queued again whatever the capacity:
// none is failed for room it was already granted.
func TestRestoreNeverFailsForCapacity(t *testing.T) {
	cfg := fastConfig()
	cfg.QueueCapacity = 2
	fleet := newFakeFleet()
	dir := t.TempDir()
	p := startParts(t, cfg, fleet, dir)
	w := p.addWorker(t, "w1", 2)
	w.set(hang)
	var ids []string
	for range 2 { // two running
		ids = append(ids, p.submit(t, fakeReq(3)))
	}
	waitFor(t, 10*time.Second, "two running", func() bool { return len(w.received()) == 2 })
	for range 2 { // two queued: the interactive class is full
		ids = append(ids, p.submit(t, fakeReq(3)))
	}
	if _, e := p.Server.submit(context.Background(), fakeReq(3), true); e == nil || e.Code != api.CodeQueueFull {
		t.Fatalf("a fifth task: %v, want QUEUE_FULL", e)
	}
	p.stop()

	w.set(streamTokens(-1))
	q := startParts(t, cfg, fleet, dir)
	for _, id := range ids {
		if st := q.wait(t, id); st.Status != api.TaskSucceeded {
			t.Fatalf("task %s after the restart: %+v (error %+v)", id, st, st.Error)
		}
	}
}

// Cancelling a running task stops its attempt, tells the worker, and gives
// the slot back.
func TestCancelTellsTheWorker(t *testing.T) {
	p := startParts(t, fastConfig(), newFakeFleet(), "")
	w := p.addWorker(t, "w1", 1)
	w.set(hang)
	id := p.submit(t, fakeReq(3))
	waitFor(t, 10*time.Second, "running", func() bool { return p.state(id).Status == api.TaskRunning })
	if !p.cancel(id, "test", principal{role: RoleAdmin}) {
		t.Fatal("cancel found no task")
	}
	waitFor(t, 10*time.Second, "the worker told and the slot free", func() bool {
		w.mu.Lock()
		n := len(w.cancels)
		w.mu.Unlock()
		return n == 1 && p.reg.list()[0].Assigned == 0
	})
	if st := p.state(id); st.Status != api.TaskCancelled {
		t.Fatalf("status %+v", st)
	}
	evs := p.events(id)
	if last := evs[len(evs)-1]; last.Error == nil || last.Error.Code != api.CodeCancelled {
		t.Fatalf("last event %+v", last)
	}
}

// A stream that breaks the contract (a token out of order) fails the attempt
// like a lost worker: the task runs elsewhere, and nothing wrong reaches the
// log.
func TestBadStreamFailsTheAttempt(t *testing.T) {
	p := startParts(t, fastConfig(), newFakeFleet(), "")
	p.addWorker(t, "w1", 1).set(func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		return &fakeStream{ctx: ctx, evs: []api.Event{
			{Name: api.EventStarted, Started: &api.Started{}},
			{Name: api.EventToken, Token: &api.Token{T: "x", I: 7, ID: 1}},
		}}, nil
	})
	p.addWorker(t, "w2", 1)
	id := p.submit(t, fakeReq(4))
	if st := p.wait(t, id); st.Status != api.TaskSucceeded || st.WorkerID != "w2" {
		t.Fatalf("status %+v", st)
	}
	checkTokens(t, p.events(id), 4)
	if n := value(p.m.attemptsFailed.WithLabelValues("bad_stream")); n != 1 {
		t.Fatalf("%v bad streams", n)
	}
}

// A worker killed mid-stream while every other worker is busy: the task waits
// for one to free up instead of spending its attempts and migrations on the
// dead one (refused connections), and then continues there.
func TestDeadWorkerIsNotRetriedWhileOthersAreBusy(t *testing.T) {
	p := startParts(t, fastConfig(), newFakeFleet(), "")
	a := p.addWorker(t, "a", 1)
	b := p.addWorker(t, "b", 1)
	var aCalls atomic.Int32
	a.set(func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		if aCalls.Add(1) == 1 {
			a.setHealthy(false)
			return streamTokens(5)(ctx, req) // 5 tokens, then the process dies
		}
		return nil, &workerclient.StatusError{Status: 0, Err: &api.Error{Code: api.CodeWorkerUnreachable, Message: "connection refused"}}
	})
	release := make(chan struct{})
	var bCalls atomic.Int32
	b.set(func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		if bCalls.Add(1) == 1 {
			<-release // busy with another task for a while
		}
		return streamTokens(-1)(ctx, req)
	})
	hold := fakeReq(3)
	hold.Placement = &api.Placement{PinWorker: "b"}
	busy := p.submit(t, hold)
	waitFor(t, 10*time.Second, "b busy", func() bool { return bCalls.Load() == 1 })
	id := p.submit(t, fakeReq(12))
	waitFor(t, 10*time.Second, "a lost and the task queued again", func() bool {
		return p.reg.list()[0].State == api.WorkerUnhealthy && p.state(id).Status == api.TaskQueued && p.state(id).TokensOut == 5
	})
	time.Sleep(100 * time.Millisecond) // dispatcher passes and probes happen meanwhile
	if st := p.state(id); st.Status != api.TaskQueued {
		t.Fatalf("while b is busy: %+v (error %+v)", st, st.Error)
	}
	if n := aCalls.Load(); n != 1 {
		t.Fatalf("the dead worker got %d jobs", n)
	}
	close(release)
	st := p.wait(t, id)
	if st.Status != api.TaskSucceeded || st.TokensOut != 12 || st.WorkerID != "b" {
		t.Fatalf("status %+v (error %+v)", st, st.Error)
	}
	checkTokens(t, p.events(id), 12)
	if st := p.wait(t, busy); st.Status != api.TaskSucceeded {
		t.Fatalf("the other task: %+v", st)
	}
}

// What a worker is believed to hold after a task ends is the prompt and the
// text it generated, as the next turn carries them: the next turn's lookup
// finds every full block of that (fake worker, so the text is known).
func TestIndexHoldsPromptAndAnswer(t *testing.T) {
	p := startParts(t, fastConfig(), newFakeFleet(), "")
	p.addWorker(t, "w1", 2)
	sys := strings.Repeat("You are a careful assistant. ", 20)
	first := &api.TaskRequest{Model: "m", ExecuteRequest: api.ExecuteRequest{MaxTokens: ptr(40),
		Messages: []api.Message{{Role: "system", Content: sys}, {Role: "user", Content: "Tell me a story."}}}}
	st := p.wait(t, p.submit(t, first))
	if st.Status != api.TaskSucceeded || st.Text == "" {
		t.Fatalf("status %+v", st)
	}
	next := first.ExecuteRequest
	next.Messages = append(slices.Clone(first.Messages), api.Message{Role: "assistant", Content: st.Text}, api.Message{Role: "user", Content: "Go on."})
	served := prefix.Hashes(nil, "m", prefix.AppendGenerated(nil, &first.ExecuteRequest, st.Text), p.disp.prefix.BlockBytes())
	prompt := prefix.Hashes(nil, "m", prefix.AppendRequest(nil, &first.ExecuteRequest), p.disp.prefix.BlockBytes())
	h := prefix.Hashes(nil, "m", prefix.AppendRequest(nil, &next), p.disp.prefix.BlockBytes())
	held := make([]int, 1)
	waitFor(t, 5*time.Second, "the end recorded", func() bool {
		p.disp.prefix.Lookup(h, []string{"w1"}, held)
		return held[0] == len(served)
	})
	if len(served) <= len(prompt) {
		t.Fatalf("the answer adds no block: %d blocks served, %d in the prompt", len(served), len(prompt))
	}
}
