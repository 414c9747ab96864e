package store

import (
	"path/filepath"
	"testing"
	"time"
)

func TestSessionsSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "orchestrator.db")
	o, err := OpenOrchestrator(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	a := SessionRecord{ID: "s-a", Owner: "h1", TokenBudget: 100, TTLMs: 60_000, CreatedAt: now, LastUsed: now, Turns: 2, TokensUsed: 42, TimeUsedMs: 7, WorkerID: "w1"}
	b := SessionRecord{ID: "s-b", Owner: "h2", TimeBudgetMs: 5000, TTLMs: 1000, CreatedAt: now, LastUsed: now}
	if err := o.PutSessions([]SessionRecord{a, b}); err != nil {
		t.Fatal(err)
	}
	a.Turns, a.TokensUsed = 3, 60 // a task of it ended
	if err := o.PutSessions([]SessionRecord{a}); err != nil {
		t.Fatal(err)
	}
	if err := o.PutSessions(nil); err != nil {
		t.Fatal(err)
	}
	o.Close()

	o, err = OpenOrchestrator(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got, err := o.Sessions()
	if err != nil || len(got) != 2 || got[0] != a || got[1] != b {
		t.Fatalf("sessions after reopen: %+v %v, want %+v and %+v", got, err, a, b)
	}
	if err := o.DeleteSessions([]string{"s-a", "s-unknown"}); err != nil {
		t.Fatal(err)
	}
	if got, err = o.Sessions(); err != nil || len(got) != 1 || got[0].ID != "s-b" {
		t.Fatalf("after delete: %+v %v", got, err)
	}
}
