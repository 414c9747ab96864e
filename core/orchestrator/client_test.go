package orchestrator

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/orchclient"
)

// The one Go client of this API, end to end: a worker registers and
// heartbeats with the worker token, an admin manages, a user submits and
// follows, resumes after an event id, and cancels.
func TestOrchClient(t *testing.T) {
	const admin, user, token = "admin-key-0001", "user-key-00001", "worker-token-01"
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: admin, Role: RoleAdmin}, {Secret: user, Role: RoleUser}}
	cfg.WorkerToken = token
	o := startOrch(t, cfg)
	f := newFakeExecute(t, streamN(5))
	ctx := context.Background()
	wc, err := orchclient.New(o.URL, token, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wc.Register(ctx, api.WorkerRegistration{WorkerID: "w1", URL: f.URL, Model: api.ModelInfo{ID: "fake"}, Slots: 2}); err != nil {
		t.Fatal(err)
	}
	if err := wc.Heartbeat(ctx, "w1", api.Heartbeat{Status: api.StatusReady, SlotsTotal: 2}); err != nil {
		t.Fatal(err)
	}
	if err := wc.Heartbeat(ctx, "w9", api.Heartbeat{Status: api.StatusReady}); orchclient.Code(err) != api.CodeWorkerNotFound {
		t.Fatalf("heartbeat of an unknown worker: %v", err)
	}
	ac, _ := orchclient.New(o.URL, admin, nil)
	uc, _ := orchclient.New(o.URL, user, nil)
	if ws, err := ac.Workers(ctx); err != nil || len(ws) != 1 || ws[0].URL != f.URL {
		t.Fatalf("workers %+v, %v", ws, err)
	}
	if _, err := uc.Workers(ctx); orchclient.Code(err) != api.CodeForbidden {
		t.Fatalf("a user lists workers: %v", err)
	}
	if _, err := ac.PutPool(ctx, api.Pool{Name: "p1", Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	if ps, err := ac.Pools(ctx); err != nil || len(ps) != 1 {
		t.Fatalf("pools %+v, %v", ps, err)
	}
	if err := ac.PutScript(ctx, []byte("decision = undefined\n")); err != nil {
		t.Fatal(err)
	}
	if name, src, err := ac.Script(ctx); err != nil || name != "api.tengo" || string(src) != "decision = undefined\n" {
		t.Fatalf("script %q %q %v", name, src, err)
	}
	if err := ac.DeleteScript(ctx); err != nil {
		t.Fatal(err)
	}

	// Submit and stream; the stream's ids let a reader resume.
	st, err := uc.SubmitStream(ctx, taskReq("fake", "x", 5, 1))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for {
		ev, err := st.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, ev.Name)
	}
	st.Close()
	if len(names) < 7 || names[len(names)-1] != api.EventEnd || st.TaskID == "" || st.LastID() != 7 {
		t.Fatalf("events %v, task %q, last id %d", names, st.TaskID, st.LastID())
	}
	rest, err := uc.Events(ctx, st.TaskID, 5)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		if _, err := rest.Next(); err != nil {
			break
		}
		n++
	}
	rest.Close()
	if n != 2 {
		t.Fatalf("%d events after id 5, want 2", n)
	}
	acc, err := uc.Submit(ctx, taskReq("fake", "y", 5, 1))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the async task", func() bool {
		s, err := uc.Task(ctx, acc.TaskID)
		return err == nil && s.Status == api.TaskSucceeded
	})
	if err := uc.Cancel(ctx, acc.TaskID); err != nil {
		t.Fatal(err)
	}
	if ts, err := uc.Tasks(ctx, api.TaskSucceeded); err != nil || len(ts) != 2 {
		t.Fatalf("tasks %d, %v", len(ts), err)
	}
	if _, err := uc.Task(ctx, "t-nope"); orchclient.Code(err) != api.CodeTaskNotFound {
		t.Fatalf("unknown task: %v", err)
	}
	if _, err := ac.Drain(ctx, "w1", false); err != nil {
		t.Fatal(err)
	}
	if err := ac.RemoveWorker(ctx, "w1"); err != nil {
		t.Fatal(err)
	}
	if err := ac.DeletePool(ctx, "p1"); err != nil {
		t.Fatal(err)
	}
	if _, err := orchclient.New("ftp://x", "", nil); err == nil {
		t.Fatal("an ftp orchestrator")
	}
}
