package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

func openOrch(t *testing.T, path string) *Orchestrator {
	t.Helper()
	o, err := OpenOrchestrator(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// endedTask is a task record that ended at finished.
func endedTask(id, key, model string, finished time.Time, prompt, cached, out int) TaskRecord {
	return TaskRecord{ID: id, Key: key, Model: model, Status: api.TaskSucceeded, CreatedAt: finished.Add(-3 * time.Second),
		StartedAt: finished.Add(-2 * time.Second), FinishedAt: finished, PromptTokens: prompt, CachedTokens: cached, TokensOut: out}
}

// A task is counted once, in the batch that journals its end, by the hour
// it ended in; writing its record again (a restart's replay, a later batch)
// never counts it twice, even when the record written does not know.
func TestUsageCountedOnceByHour(t *testing.T) {
	path := filepath.Join(t.TempDir(), "orchestrator.db")
	o := openOrch(t, path)
	h0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	running := TaskRecord{ID: "t-1", Key: "alice", Model: "m1", Status: api.TaskRunning, CreatedAt: h0, StartedAt: h0.Add(time.Second),
		PromptTokens: 7, TokensOut: 3, Request: &api.TaskRequest{Model: "m1"}}
	batch := []TaskWrite{{Task: running}}
	if err := o.Journal(batch); err != nil || batch[0].Counted {
		t.Fatalf("a running task: counted %v, %v", batch[0].Counted, err)
	}
	ended := endedTask("t-1", "alice", "m1", h0.Add(10*time.Minute), 7, 2, 5)
	ended.Error = &api.Error{Code: api.CodeWorkerLost}
	ended.Status = api.TaskFailed
	batch = []TaskWrite{
		{Task: ended},
		{Task: endedTask("t-2", "alice", "m1", h0.Add(50*time.Minute), 10, 0, 4)},
		{Task: endedTask("t-3", "alice", "m2", h0.Add(61*time.Minute), 1, 0, 1)},
		{Task: endedTask("t-4", "bob", "m1", h0.Add(2*time.Minute), 100, 50, 20)},
	}
	if err := o.Journal(batch); err != nil {
		t.Fatal(err)
	}
	for i, w := range batch {
		if !w.Counted || !w.Task.UsageCounted {
			t.Fatalf("write %d not counted", i)
		}
	}
	// The same ended records again, without the flag (as a process that
	// replayed its tail log would have them): nothing more is counted.
	again := []TaskWrite{{Task: ended}, {Task: endedTask("t-4", "bob", "m1", h0.Add(2*time.Minute), 100, 50, 20)}}
	if err := o.Journal(again); err != nil || again[0].Counted || again[1].Counted {
		t.Fatalf("counted twice: %+v, %v", again, err)
	}
	o.Close()
	o = openOrch(t, path)
	defer o.Close()
	if err := o.Journal(again); err != nil || again[0].Counted {
		t.Fatalf("counted again after reopening: %v", err)
	}
	if err := o.AddUsage([]api.UsageRow{{Key: "alice", Model: "m1", Hour: h0.Add(5 * time.Minute), Requests: 1,
		Errors: map[string]int64{api.CodeRateLimited: 1}}}); err != nil {
		t.Fatal(err)
	}

	all, err := o.Usage(UsageFilter{Since: h0.Add(-time.Hour), Until: h0.Add(3 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	type cell struct {
		key, model string
		hour       int
	}
	got := map[cell]api.UsageRow{}
	for i, r := range all {
		if i > 0 && r.Hour.Before(all[i-1].Hour) {
			t.Fatalf("rows not oldest first: %+v", all)
		}
		got[cell{r.Key, r.Model, int(r.Hour.Sub(h0) / time.Hour)}] = r
	}
	if len(got) != 3 || len(all) != 3 {
		t.Fatalf("rows %+v", all)
	}
	a := got[cell{"alice", "m1", 0}]
	if a.Requests != 3 || a.PromptTokens != 17 || a.CachedPromptTokens != 2 || a.GeneratedTokens != 9 ||
		a.Errors[api.CodeWorkerLost] != 1 || a.Errors[api.CodeRateLimited] != 1 || a.QueueMs != 2000 || a.ServiceMs != 4000 {
		t.Fatalf("alice m1 hour 0: %+v", a)
	}
	if r := got[cell{"alice", "m2", 1}]; r.Requests != 1 || r.GeneratedTokens != 1 {
		t.Fatalf("alice m2 hour 1: %+v", r)
	}
	if r := got[cell{"bob", "m1", 0}]; r.PromptTokens != 100 || r.CachedPromptTokens != 50 || r.GeneratedTokens != 20 {
		t.Fatalf("bob: %+v", r)
	}
	tot := UsageTotals(all)
	if tot.Requests != 5 || tot.PromptTokens != 118 || tot.GeneratedTokens != 30 || tot.Key != "" || tot.Model != "" {
		t.Fatalf("totals %+v", tot)
	}

	for _, c := range []struct {
		name string
		f    UsageFilter
		want int
	}{
		{"key", UsageFilter{Key: "alice"}, 2},
		{"key and model", UsageFilter{Key: "alice", Model: "m2"}, 1},
		{"model", UsageFilter{Model: "m1"}, 2},
		{"a key that is a prefix of none", UsageFilter{Key: "ali"}, 0},
		{"since cuts the first hour", UsageFilter{Since: h0.Add(time.Hour + 30*time.Minute)}, 1},
		{"until cuts the second hour", UsageFilter{Until: h0.Add(time.Hour)}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := c.f
			if f.Since.IsZero() {
				f.Since = h0.Add(-time.Hour)
			}
			if f.Until.IsZero() {
				f.Until = h0.Add(3 * time.Hour)
			}
			rows, err := o.Usage(f)
			if err != nil || len(rows) != c.want {
				t.Fatalf("%+v: %d rows %+v, want %d (%v)", f, len(rows), rows, c.want, err)
			}
			for _, r := range rows {
				if f.Key != "" && r.Key != f.Key || f.Model != "" && r.Model != f.Model {
					t.Fatalf("row %+v does not match %+v", r, f)
				}
			}
		})
	}
}

func TestUsageKeyRoundTrip(t *testing.T) {
	h := time.Date(2026, 12, 31, 23, 0, 0, 0, time.UTC)
	for _, c := range [][2]string{{"alice", "m"}, {"", "m"}, {"k", ""}, {"", ""}} {
		key, model, hour, ok := splitUsageKey(usageKey(c[0], c[1], h))
		if !ok || key != c[0] || model != c[1] || !hour.Equal(h) {
			t.Fatalf("%q: %q %q %v %v", c, key, model, hour, ok)
		}
	}
	if _, _, _, ok := splitUsageKey([]byte("short")); ok {
		t.Fatal("a short key parsed")
	}
}
