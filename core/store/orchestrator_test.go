package store

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

func TestOrchestratorJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "orchestrator.db")
	o, err := OpenOrchestrator(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rec := TaskRecord{ID: "t-1", Model: "tiny", Priority: "batch", Status: api.TaskRunning, Request: &api.TaskRequest{Model: "tiny"}}
	evs := []Event{{Seq: 1, Name: "started", Data: json.RawMessage(`{}`)}, {Seq: 2, Name: "token", Data: json.RawMessage(`{"t":"a","i":0}`)}}
	if err := o.Journal([]TaskWrite{{Task: rec, Events: evs}, {Task: TaskRecord{ID: "t-10"}, Events: []Event{{Seq: 1, Name: "x", Data: json.RawMessage(`1`)}}}}); err != nil {
		t.Fatal(err)
	}
	// A later batch appends; "t-1" events must not pick up "t-10"'s.
	if err := o.Journal([]TaskWrite{{Task: rec, Events: []Event{{Seq: 3, Name: "end", Data: json.RawMessage(`{}`)}}}}); err != nil {
		t.Fatal(err)
	}
	o.Close()

	o, err = OpenOrchestrator(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	got, err := o.Events("t-1")
	if err != nil || len(got) != 3 || got[2].Name != "end" || got[0].Seq != 1 {
		t.Fatalf("events %+v, %v", got, err)
	}
	tasks, _ := o.Tasks()
	if len(tasks) != 2 || tasks[0].Request == nil {
		t.Fatalf("tasks %+v", tasks)
	}
	if err := o.DeleteTasks([]string{"t-1"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := o.Events("t-1"); len(got) != 0 {
		t.Fatalf("events left after delete: %+v", got)
	}
	if got, _ := o.Events("t-10"); len(got) != 1 {
		t.Fatalf("deleting t-1 touched t-10: %+v", got)
	}
}

func TestOrchestratorRegistryAndSettings(t *testing.T) {
	o, err := OpenOrchestrator(filepath.Join(t.TempDir(), "o.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	w := WorkerRecord{WorkerRegistration: api.WorkerRegistration{WorkerID: "w1", URL: "http://x"}, State: api.WorkerHealthy}
	if err := o.PutWorker(w); err != nil {
		t.Fatal(err)
	}
	if ws, _ := o.Workers(); len(ws) != 1 || ws[0].URL != "http://x" {
		t.Fatalf("workers %+v", ws)
	}
	if err := o.DeleteWorker("w1"); err != nil {
		t.Fatal(err)
	}
	if err := o.PutPool(api.Pool{Name: "p", Host: "h"}); err != nil {
		t.Fatal(err)
	}
	if err := o.DeletePool("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete missing pool: %v", err)
	}
	if err := o.PutSetting("routing", []byte("x := 1")); err != nil {
		t.Fatal(err)
	}
	if v, _ := o.Setting("routing"); string(v) != "x := 1" {
		t.Fatalf("setting %q", v)
	}
	_ = o.PutSetting("routing", nil)
	if v, _ := o.Setting("routing"); v != nil {
		t.Fatalf("setting not deleted: %q", v)
	}
}

// The fleet event log keeps the newest MaxFleetEvents, oldest first.
func TestFleetEventsAreBounded(t *testing.T) {
	o, err := OpenOrchestrator(filepath.Join(t.TempDir(), "o.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	var seq uint64
	for range 3 {
		batch := make([]api.FleetEvent, 0, MaxFleetEvents/2+3)
		for range cap(batch) {
			seq++
			batch = append(batch, api.FleetEvent{Seq: seq, Kind: api.EventSpawn})
		}
		if err := o.AppendFleetEvents(batch); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := o.FleetEvents(2 * MaxFleetEvents)
	if err != nil || len(evs) != MaxFleetEvents || evs[0].Seq != seq-MaxFleetEvents+1 || evs[len(evs)-1].Seq != seq {
		t.Fatalf("%d events, first %d last %d (appended %d), %v", len(evs), evs[0].Seq, evs[len(evs)-1].Seq, seq, err)
	}
	if last, _ := o.FleetEvents(2); len(last) != 2 || last[1].Seq != seq {
		t.Fatalf("newest two: %+v", last)
	}
}
