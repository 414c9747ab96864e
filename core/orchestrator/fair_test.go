package orchestrator

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

// serveFor answers each job d (its service time) after gate is closed,
// then streams its tokens; a cancelled attempt ends at once.
func serveFor(d time.Duration, gate <-chan struct{}) func(context.Context, *api.ExecuteRequest) (eventStream, error) {
	stream := streamTokens(-1)
	return func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-gate:
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		return stream(ctx, req)
	}
}

// floodWaits is what one run of the flood test measured of key b's tasks.
type floodWaits struct {
	waits   []float64 // queue waits (started − created), ms, sorted
	fifo    []float64 // the wait FIFO would have given each (see below), ms, sorted
	service float64   // mean service time of the tasks that ran, ms
	noted   []string  // the explanations that name a fair-share decision
}

// runFlood submits key b's light load (n tasks, one every gap) on one
// worker with 2 slots serving each task in service, after key a has queued
// flood tasks at once (0: no flood). It returns b's queue waits.
func runFlood(t *testing.T, flood, n int, gap, service time.Duration) floodWaits {
	cfg := testConfig()
	cfg.WorkerToken = "worker-token-fair-1"
	cfg.Keys = []Key{{Secret: "sk-fair-admin-0001", Role: RoleAdmin, Name: "admin"},
		{Secret: "sk-fair-key-a-0001", Role: RoleUser, Name: "a"}, {Secret: "sk-fair-key-b-0001", Role: RoleUser, Name: "b"}}
	cfg.QueueCapacity = 1000
	f := startFakeOrch(t, cfg, false)
	// The worker starts serving once the flood is queued, so that b meets
	// all of it however slowly this machine admits it.
	gate := make(chan struct{})
	f.addWorker("w1", "m", 2).set(serveFor(service, gate))
	a, b := f.as("sk-fair-key-a-0001"), f.as("sk-fair-key-b-0001")
	req := func() *api.TaskRequest { return fakeReq(2) }

	var aIDs []string
	if flood > 0 {
		// Four clients of key a queue the flood as fast as they can.
		var mu sync.Mutex
		var wg sync.WaitGroup
		for c := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := c; i < flood; i += 4 {
					id := a.submitAsync(t, req()).TaskID
					mu.Lock()
					aIDs = append(aIDs, id)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	close(gate)
	var bIDs []string
	tick := time.NewTicker(gap) // b's requests are spaced out: a light, steady client
	for range n {
		bIDs = append(bIDs, b.submitAsync(t, req()).TaskID)
		<-tick.C
	}
	tick.Stop()
	var out floodWaits
	bs := make([]api.TaskStatus, 0, n)
	for _, id := range bIDs {
		st := b.waitTask(t, id, 60*time.Second)
		if st.Status != api.TaskSucceeded || st.StartedAt == nil || st.FinishedAt == nil {
			t.Fatalf("b's task %s ended %s (%+v)", id, st.Status, st.Error)
		}
		bs = append(bs, st)
		if st.Explanation != nil && strings.Contains(st.Explanation.Summary, "fair share: key b (weight 1) served before key a (weight 1), which has ") {
			out.noted = append(out.noted, st.Explanation.Summary)
		}
		out.waits = append(out.waits, float64(st.StartedAt.Sub(st.CreatedAt).Microseconds())/1000)
		out.service += float64(st.FinishedAt.Sub(*st.StartedAt).Microseconds()) / 1000
	}
	out.service /= float64(n)
	// What FIFO would have given b's task: the tasks of a queued before it
	// and not started when it arrived are ahead of it in arrival order;
	// two slots serve them at the measured service time each.
	var as []api.TaskStatus
	for _, id := range aIDs {
		as = append(as, a.taskStatus(t, id))
	}
	for _, bt := range bs {
		ahead := 0
		for _, at := range as {
			if at.CreatedAt.Before(bt.CreatedAt) && (at.StartedAt == nil || at.StartedAt.After(bt.CreatedAt)) {
				ahead++
			}
		}
		out.fifo = append(out.fifo, float64(ahead)*out.service/2)
	}
	for _, id := range aIDs { // the rest of the flood is not needed
		a.cancelTask(id)
	}
	slices.Sort(out.waits)
	slices.Sort(out.fifo)
	return out
}

// Key a floods the queue with 300 tasks; key b, sending one task every
// 25 ms, still starts each within its fair share: its wait p95 stays near
// one service time per slot, where FIFO would have made it wait for most of
// the flood.
//
// The bound: b's task arrives with its key idle, so it starts at the
// current virtual time, level with a's next task: at most one task of a is
// ahead of it. Both slots are busy with a's tasks, so it waits for one to
// free (≤ 1 service time) and, at worst, for a's task ahead to take that
// slot first while the other slot frees (≤ 1 more). So ideally wait ≤ the
// service of one task of a plus one of b per slot: 2 × service. Three
// times that, plus b's p95 without the flood (what HTTP, the journal and the
// dispatcher cost on this machine), holds on a loaded 2-core CI under
// -race; FIFO would give b the whole backlog ahead of it, ~ hundreds of
// tasks × service / 2 slots.
func TestFairQueueingFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("a load test")
	}
	const (
		flood   = 300
		light   = 20
		gap     = 25 * time.Millisecond
		service = 20 * time.Millisecond
	)
	quiet := runFlood(t, 0, light, gap, service)
	loud := runFlood(t, flood, light, gap, service)
	qp95, lp95, fifo95 := percentile(quiet.waits, 0.95), percentile(loud.waits, 0.95), percentile(loud.fifo, 0.95)
	svc := max(loud.service, float64(service.Milliseconds()))
	bound := 3*2*svc + qp95
	t.Logf("key b's queue wait p95: %.1f ms without the flood, %.1f ms with key a's %d-task flood (bound %.1f ms; service %.1f ms per task)",
		qp95, lp95, flood, bound, svc)
	t.Logf("FIFO would have given b a wait p95 of %.0f ms (median %.0f ms): the tasks of a ahead of it × service / 2 slots",
		fifo95, percentile(loud.fifo, 0.5))
	if lp95 > bound {
		t.Errorf("b's wait p95 with the flood is %.1f ms, over its fair-share bound %.1f ms (waits %v)", lp95, bound, loud.waits)
	}
	if len(quiet.noted) != 0 || len(loud.noted) == 0 {
		t.Errorf("%d of b's tasks were explained as served by fair share without the flood, %d with it; want none, and some", len(quiet.noted), len(loud.noted))
	} else {
		t.Logf("%d of b's %d tasks explained as e.g. %q", len(loud.noted), light, loud.noted[0])
	}
	if fifo95 < 4*bound {
		t.Errorf("the flood was not a flood: FIFO would have given b a p95 of only %.0f ms", fifo95)
	}
}

// A key at its max_running waits, with the reason in its explanation, and
// another key's task is started meanwhile.
func TestMaxRunning(t *testing.T) {
	cfg := keysConfig()
	cfg.Keys = []Key{{Secret: "sk-fair-admin-0001", Role: RoleAdmin, Name: "admin"}}
	o := startFakeOrch(t, cfg, false) // requests as the admin key
	held := createKey(t, o.orch, map[string]any{"name": "held", "limits": map[string]any{"max_running": 1}})
	other := createKey(t, o.orch, map[string]any{"name": "other"})
	w := o.addWorker("w1", "m", 4)
	w.set(hang)
	h, x := o.as(held.Key), o.as(other.Key)
	ids := []string{h.submitAsync(t, fakeReq(2)).TaskID, h.submitAsync(t, fakeReq(2)).TaskID, h.submitAsync(t, fakeReq(2)).TaskID}
	waitFor(t, 10*time.Second, "held's first task to run", func() bool { return h.taskStatus(t, ids[0]).Status == api.TaskRunning })
	st := h.waitExplained(t, ids[1], "held: key held has 1 running (max_running 1)")
	if st.Status != api.TaskQueued {
		t.Fatalf("held's second task is %s, want queued", st.Status)
	}
	// other's task starts although held's are older: it is fair queueing's
	// decision, and the explanation says so.
	xid := x.submitAsync(t, fakeReq(2)).TaskID
	waitFor(t, 10*time.Second, "other's task to run", func() bool { return x.taskStatus(t, xid).Status == api.TaskRunning })
	if s := h.taskStatus(t, ids[2]).Status; s != api.TaskQueued {
		t.Fatalf("held's third task is %s, want queued", s)
	}
	// held's first task ends: its second starts, its third still waits.
	h.cancelTask(ids[0])
	waitFor(t, 10*time.Second, "held's second task to run", func() bool { return h.taskStatus(t, ids[1]).Status == api.TaskRunning })
	if s := h.taskStatus(t, ids[2]).Status; s != api.TaskQueued {
		t.Fatalf("held's third task is %s after its first ended, want queued", s)
	}
	n := 0
	for _, j := range w.received() {
		if strings.HasPrefix(j.JobID, ids[0]) || strings.HasPrefix(j.JobID, ids[1]) || strings.HasPrefix(j.JobID, ids[2]) {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("the worker got %d jobs of key held, want 2 (one at a time)", n)
	}
}

// A task restored after a restart is queued for its owner's key, looked up
// again by the owner hash; an owner whose key is gone gets a key of its own
// (weight 1), and without keys every task is of the one key "".
func TestRestoredKey(t *testing.T) {
	cfg := keysConfig()
	cfg.Keys = []Key{{Secret: "sk-fair-admin-0001", Role: RoleAdmin, Name: "admin"}, {Secret: "sk-fair-key-a-0001", Role: RoleUser, Name: "a"}}
	o := startFakeOrch(t, cfg, false)
	p, _ := o.auth.identify([]byte("sk-fair-key-a-0001"))
	if got := o.restoredKey(p.owner); got.key != "a" || got.weight != 1 {
		t.Errorf("restoredKey(a's owner) = %q weight %d, want a, 1", got.key, got.weight)
	}
	if got := o.restoredKey("0123abcd"); got.key != "owner-0123abcd" || got.weight != 1 || got.limits != nil {
		t.Errorf("restoredKey(unknown owner) = %+v, want owner-0123abcd, weight 1, no limits", got)
	}
	if got := o.restoredKey(""); got.key != "" {
		t.Errorf("restoredKey(\"\") = %q, want \"\"", got.key)
	}
}
