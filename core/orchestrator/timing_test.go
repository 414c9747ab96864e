package orchestrator

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/llorch/llorch/core/api"
)

// gated streams a job's events (streamTokens) but holds its first token
// until open is closed: a worker that is slow to its first token.
func gated(open <-chan struct{}) func(context.Context, *api.ExecuteRequest) (eventStream, error) {
	return func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		st, err := streamTokens(-1)(ctx, req)
		if err != nil {
			return nil, err
		}
		return &gatedStream{fakeStream: st.(*fakeStream), open: open}, nil
	}
}

type gatedStream struct {
	*fakeStream
	open   <-chan struct{}
	passed bool
}

func (s *gatedStream) Next() (api.Event, error) {
	ev, err := s.fakeStream.Next()
	if ev.Token != nil && !s.passed {
		select {
		case <-s.open:
			s.passed = true
		case <-s.ctx.Done():
			return api.Event{}, s.ctx.Err()
		}
	}
	return ev, err
}

// terminalTiming is the timing of a finished task's terminal event.
func terminalTiming(t *testing.T, evs []api.Event) *api.Timing {
	t.Helper()
	last := evs[len(evs)-1]
	var tm *api.Timing
	switch {
	case last.End != nil:
		tm = last.End.Timing
	case last.Error != nil:
		tm = last.Error.Timing
	}
	if tm == nil {
		t.Fatalf("terminal event %+v has no timing", last)
	}
	return tm
}

// checkAddsUp asserts what a client can check: queue, schedule, routing and
// the worker's TTFT add up to the TTFT from admission (each is rounded to
// the microsecond), and no part exceeds the total.
func checkAddsUp(t *testing.T, tm *api.Timing) {
	t.Helper()
	sum := tm.QueueMs + tm.ScheduleMs + tm.RoutingMs + tm.WorkerTTFTMs
	if math.Abs(sum-tm.TTFTMs) > 0.005 {
		t.Fatalf("queue+schedule+routing+worker_ttft = %.3f, ttft %.3f: %+v", sum, tm.TTFTMs, tm)
	}
	if tm.TTFTMs > tm.TotalMs || tm.QueueMs < 0 || tm.WorkerTTFTMs < 0 {
		t.Fatalf("timing out of order: %+v", tm)
	}
}

// The timing of a terminal event: each figure grows with the wait it
// names. Lower bounds only, measured around conditions, never sleeps.
func TestTiming(t *testing.T) {
	t.Run("worker ttft", func(t *testing.T) {
		p := startParts(t, testConfig(), newFakeFleet(), "")
		w := p.addWorker(t, "w1", 1)
		open := make(chan struct{})
		w.set(gated(open))
		id := p.submit(t, fakeReq(3))
		waitFor(t, 10*time.Second, "the job at the worker", func() bool { return len(w.received()) == 1 })
		t0 := time.Now() // the request was sent before this
		waitFor(t, 10*time.Second, "started relayed", func() bool { return len(p.events(id)) >= 1 })
		held := time.Since(t0)
		close(open)
		p.wait(t, id)
		tm := terminalTiming(t, p.events(id))
		if tm.WorkerTTFTMs < ms(held) || tm.Attempts != 1 {
			t.Fatalf("worker_ttft %.3f ms, held %s; %+v", tm.WorkerTTFTMs, held, tm)
		}
		if tm.ScheduleMs <= 0 || tm.RoutingMs != 0 {
			t.Fatalf("schedule %.3f ms, routing %.3f ms (no script)", tm.ScheduleMs, tm.RoutingMs)
		}
		checkAddsUp(t, tm)
		if st := p.state(id); st.End == nil || st.End.Timing == nil || *st.End.Timing != *tm {
			t.Fatalf("status timing %+v, want the event's %+v", st.End, tm)
		}
	})

	t.Run("queued behind a busy worker", func(t *testing.T) {
		p := startParts(t, testConfig(), newFakeFleet(), "")
		w := p.addWorker(t, "w1", 1)
		open := make(chan struct{})
		w.set(gated(open))
		first := p.submit(t, fakeReq(2))
		waitFor(t, 10*time.Second, "the first job at the worker", func() bool { return len(w.received()) == 1 })
		t0 := time.Now()
		second := p.submit(t, fakeReq(2))
		waitFor(t, 10*time.Second, "the second task explained", func() bool {
			st := p.state(second)
			return st.Status == api.TaskQueued && st.Explanation != nil
		})
		waited := time.Since(t0) // the slot is still taken: the second task cannot have been sent
		close(open)
		p.wait(t, first)
		p.wait(t, second)
		tm := terminalTiming(t, p.events(second))
		if tm.QueueMs < ms(waited) {
			t.Fatalf("queue %.3f ms, but it waited at least %s: %+v", tm.QueueMs, waited, tm)
		}
		checkAddsUp(t, tm)
	})

	t.Run("routing script", func(t *testing.T) {
		cfg := testConfig()
		cfg.RoutingTimeout, cfg.RoutingMaxAllocs = 5*time.Second, 100_000_000
		p := startParts(t, cfg, newFakeFleet(), "")
		p.addWorker(t, "w1", 1)
		// 10 ms at admission, 20 ms at placement.
		src := `times := import("times")
burn := func(ns) { s := times.now(); for times.since(s) < ns {} }
if stage == "admit" { burn(10000000) } else { burn(20000000) }`
		if err := p.routing.Load("slow.tengo", []byte(src)); err != nil {
			t.Fatal(err)
		}
		id := p.submit(t, fakeReq(2))
		p.wait(t, id)
		tm := terminalTiming(t, p.events(id))
		if tm.RoutingMs < 30 {
			t.Fatalf("routing %.3f ms, the script burnt 30 ms: %+v", tm.RoutingMs, tm)
		}
		if got := histogramSum(t, p.m.routingSeconds.WithLabelValues("admit")) + histogramSum(t, p.m.routingSeconds.WithLabelValues("place")); math.Abs(got*1000-tm.RoutingMs) > 0.01 {
			t.Fatalf("routing %.3f ms, the script's calls took %.3f ms", tm.RoutingMs, got*1000)
		}
		checkAddsUp(t, tm)
	})

	t.Run("cancelled in the queue", func(t *testing.T) {
		p := startParts(t, testConfig(), newFakeFleet(), "")
		w := p.addWorker(t, "w1", 1)
		open := make(chan struct{})
		defer close(open)
		w.set(gated(open))
		p.submit(t, fakeReq(2)) // takes the only slot
		waitFor(t, 10*time.Second, "the first job at the worker", func() bool { return len(w.received()) == 1 })
		id := p.submit(t, fakeReq(2))
		if !p.cancel(id, "test", principal{role: RoleAdmin}) {
			t.Fatal("cancel")
		}
		p.wait(t, id)
		tm := terminalTiming(t, p.events(id))
		if tm.Attempts != 0 || tm.WorkerTTFTMs != 0 || tm.TTFTMs != 0 || tm.QueueMs > tm.TotalMs {
			t.Fatalf("%+v", tm)
		}
	})
}

// histogramSum reads the sum of a histogram's observations.
func histogramSum(t *testing.T, h interface{}) float64 {
	t.Helper()
	m, ok := h.(interface{ Write(*dto.Metric) error })
	if !ok {
		t.Fatalf("%T is not a metric", h)
	}
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetHistogram().GetSampleSum()
}

// parseServerTiming reads a Server-Timing header into name → ms.
func parseServerTiming(t *testing.T, h string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, part := range strings.Split(h, ",") {
		name, dur, ok := strings.Cut(strings.TrimSpace(part), ";dur=")
		v, err := strconv.ParseFloat(dur, 64)
		if !ok || err != nil {
			t.Fatalf("Server-Timing %q: bad entry %q", h, part)
		}
		out[name] = v
	}
	for _, name := range []string{"queue", "schedule", "routing", "worker_ttft", "ttft", "total"} {
		if _, ok := out[name]; !ok {
			t.Fatalf("Server-Timing %q has no %s", h, name)
		}
	}
	return out
}

// Every door shows the timing: the native stream's end event, the events
// of a finished task, its status (and Server-Timing), and the OpenAI
// answers that are not streamed (Server-Timing).
func TestTimingDoors(t *testing.T) {
	fw := instantWorker(3)
	defer fw.Close()
	o := startOrch(t, testConfig())
	reg := api.WorkerRegistration{WorkerID: "fake", URL: fw.URL, Model: api.ModelInfo{ID: "fake"}, Slots: 2}
	o.do(t, http.MethodPost, "/v2/workers/register", reg).Body.Close()

	evs := o.submitStream(t, taskReq("fake", "x", 3, 1))
	last := evs[len(evs)-1]
	if last.Name != api.EventEnd {
		t.Fatalf("last event %s", last.Name)
	}
	var end api.End
	if err := json.Unmarshal(last.Data, &end); err != nil {
		t.Fatal(err)
	}
	if end.Timing == nil || end.Timing.Attempts != 1 || end.Timing.TTFTMs <= 0 {
		t.Fatalf("stream's end: %+v", end.Timing)
	}
	checkAddsUp(t, end.Timing)

	acc := o.submitAsync(t, taskReq("fake", "x", 3, 1))
	o.waitTask(t, acc.TaskID, 10*time.Second)
	resp := o.do(t, http.MethodGet, "/v2/tasks/"+acc.TaskID, nil)
	st := decode[api.TaskStatus](t, resp, http.StatusOK)
	if st.End == nil || st.End.Timing == nil {
		t.Fatalf("status: %+v", st)
	}
	sv := parseServerTiming(t, resp.Header.Get("Server-Timing"))
	if sv["total"] != st.End.Timing.TotalMs || sv["worker_ttft"] != st.End.Timing.WorkerTTFTMs {
		t.Fatalf("Server-Timing %v, status timing %+v", sv, st.End.Timing)
	}
	evs = readAll(t, o.do(t, http.MethodGet, "/v2/tasks/"+acc.TaskID+"/events", nil))
	var end2 api.End
	if err := json.Unmarshal(evs[len(evs)-1].Data, &end2); err != nil {
		t.Fatal(err)
	}
	if end2.Timing == nil || *end2.Timing != *st.End.Timing {
		t.Fatalf("events' end timing %+v, status %+v", end2.Timing, st.End.Timing)
	}

	for _, door := range []struct{ path, body string }{
		{"/v1/completions", `{"model":"fake","prompt":"x","max_tokens":3}`},
		{"/v1/chat/completions", `{"model":"fake","messages":[{"role":"user","content":"x"}],"max_tokens":3}`},
	} {
		resp := o.do(t, http.MethodPost, door.path, door.body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", door.path, resp.StatusCode)
		}
		sv := parseServerTiming(t, resp.Header.Get("Server-Timing"))
		if sum := sv["queue"] + sv["schedule"] + sv["routing"] + sv["worker_ttft"]; math.Abs(sum-sv["ttft"]) > 0.005 || sv["ttft"] > sv["total"] {
			t.Fatalf("%s: Server-Timing %v does not add up", door.path, sv)
		}
	}
}
