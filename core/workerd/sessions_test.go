package workerd_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/workerclient"
	"github.com/llorch/llorch/core/workerd"
)

// sessionReq is a request of a session, long enough for its prompt to be
// cached, that never stops early.
func sessionReq(session, prompt string, maxTokens int) *api.ExecuteRequest {
	r := req(strings.Repeat(prompt+" ", 8), maxTokens, 3)
	r.SessionID, r.IgnoreEOS = session, true
	return r
}

func TestDropSessionForgetsItsCache(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Slots, c.Ctx, c.Token = 2, 2048, "wt" })
	ctx := context.Background()
	a := collect(t, w.client, sessionReq("s-a", "the river runs to the sea", 4))
	b := collect(t, w.client, sessionReq("s-b", "mountains stand above the clouds", 4))
	if a.End == nil || b.End == nil {
		t.Fatalf("runs failed: %+v %+v", a.Error, b.Error)
	}
	again := collect(t, w.client, sessionReq("s-a", "the river runs to the sea", 4))
	if again.End == nil || again.End.CachedTokens == 0 {
		t.Fatalf("the session's second turn reused nothing: %+v", again.End)
	}
	ca, err := w.client.SessionCache(ctx, "s-a")
	if err != nil || !ca.Warm || len(ca.Slots) != 1 || ca.CachedTokens < a.End.PromptTokens {
		t.Fatalf("session s-a before the drop: %+v %v", ca, err)
	}
	// Without the worker token: refused.
	if st, _, _ := request(t, http.MethodDelete, w.url+"/v1/sessions/s-a", "", ""); st != http.StatusUnauthorized {
		t.Errorf("DELETE without the token: %d", st)
	}
	d, err := w.client.DropSession(ctx, "s-a")
	if err != nil || !slices.Equal(d.Slots, ca.Slots) || len(d.Pending) != 0 || d.CachedTokens != ca.CachedTokens {
		t.Fatalf("drop: %+v %v (before: %+v)", d, err, ca)
	}
	if ca, err = w.client.SessionCache(ctx, "s-a"); err != nil || ca.Warm || len(ca.Slots) != 0 {
		t.Errorf("session s-a after the drop: %+v %v", ca, err)
	}
	if cb, err := w.client.SessionCache(ctx, "s-b"); err != nil || !cb.Warm {
		t.Errorf("another session's cache went with it: %+v %v", cb, err)
	}
	// Idempotent.
	if d, err = w.client.DropSession(ctx, "s-a"); err != nil || len(d.Slots) != 0 || d.CachedTokens != 0 {
		t.Errorf("second drop: %+v %v", d, err)
	}
	// The next turn evaluates its prompt afresh, and gives the same tokens.
	cold := collect(t, w.client, sessionReq("s-a", "the river runs to the sea", 4))
	if cold.End == nil || cold.End.CachedTokens != 0 {
		t.Errorf("after the drop the prompt was still cached: %+v", cold.End)
	}
	if tokensJSON(t, cold) != tokensJSON(t, a) {
		t.Errorf("the run after the drop differs from the first")
	}
	// A hostile id.
	if st, _, _ := request(t, http.MethodDelete, w.url+"/v1/sessions/"+strings.Repeat("x", 257), "wt", ""); st != http.StatusBadRequest {
		t.Errorf("DELETE of a 257-byte id: %d", st)
	}
	var se *workerclient.StatusError
	if _, err := workerclient.New(w.url, "wrong", nil).DropSession(ctx, "s-b"); !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Errorf("wrong token: %v", err)
	}
}

func TestDropSessionWhileItsJobRuns(t *testing.T) {
	w := startWorker(t, func(c *workerd.Config) { c.Slots, c.Ctx = 1, 2048 })
	ctx := context.Background()
	w.pace.hold()
	st, err := w.client.Execute(ctx, sessionReq("s-run", "a long conversation about the weather", 8))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	waitBusy(t, w, 1)
	if c, err := w.client.SessionCache(ctx, "s-run"); err != nil || !c.Warm || len(c.Slots) != 1 {
		t.Fatalf("running session: %+v %v", c, err)
	}
	d, err := w.client.DropSession(ctx, "s-run")
	if err != nil || len(d.Slots) != 0 || len(d.Pending) != 1 {
		t.Fatalf("drop while running: %+v %v", d, err)
	}
	w.pace.release()
	var end *api.End
	for end == nil {
		ev, err := st.Next()
		if err != nil {
			t.Fatalf("stream: %v", err)
		}
		if ev.Error != nil {
			t.Fatalf("the job failed: %+v", ev.Error)
		}
		end = ev.End
	}
	if end.TokensOut != 8 {
		t.Errorf("the running job was cut: %+v", end)
	}
	// The job ended: its slot forgot the session.
	waitBusy(t, w, 0)
	if c, err := w.client.SessionCache(ctx, "s-run"); err != nil || c.Warm || len(c.Slots) != 0 {
		t.Errorf("after the job: %+v %v", c, err)
	}
	if res := collect(t, w.client, sessionReq("s-run", "a long conversation about the weather", 2)); res.End == nil || res.End.CachedTokens != 0 {
		t.Errorf("the next turn found a cache: %+v", res.End)
	}
}
