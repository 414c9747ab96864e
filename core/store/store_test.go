package store_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/llorch/llorch/core/store"
)

func openPool(t *testing.T) (*store.Pool, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pool.db")
	p, err := store.OpenPool(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p, path
}

func model(id string, aliases ...string) store.Model {
	return store.Model{ID: id, Aliases: aliases, Ref: "file:/m/" + id + ".gguf", Path: "/m/" + id + ".gguf", SizeBytes: 10}
}

func TestModels(t *testing.T) {
	p, path := openPool(t)
	if err := p.PutModel(model("b", "bee")); err != nil {
		t.Fatal(err)
	}
	if err := p.PutModel(model("a")); err != nil {
		t.Fatal(err)
	}
	if m, err := p.Model("bee"); err != nil || m.ID != "b" {
		t.Fatalf("by alias: %+v %v", m, err)
	}
	if err := p.PutModel(model("c", "bee")); err == nil {
		t.Error("alias of another model accepted")
	}
	if err := p.PutModel(model("c", "a")); err == nil {
		t.Error("alias equal to another model's id accepted")
	}
	ms, err := p.Models()
	if err != nil || len(ms) != 2 || ms[0].ID != "a" || ms[1].ID != "b" {
		t.Fatalf("list = %+v %v", ms, err)
	}
	if _, err := p.DeleteModel("bee"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Model("bee"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleted alias still resolves: %v", err)
	}
	// Survives reopening.
	p.Close()
	p2, err := store.OpenPool(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	if _, err := p2.Model("a"); err != nil {
		t.Errorf("after reopen: %v", err)
	}
}

func TestWorkersAndBackends(t *testing.T) {
	p, _ := openPool(t)
	w := store.Worker{ID: "w1", PID: 42, StartTime: 7, Port: 8001, Backend: "cpu", StartedAt: time.Unix(1, 0).UTC()}
	if err := p.PutWorker(w); err != nil {
		t.Fatal(err)
	}
	got, err := p.Worker("w1")
	if err != nil || got != w {
		t.Fatalf("worker = %+v %v", got, err)
	}
	if err := p.DeleteWorker("w1"); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteWorker("w1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	var rep map[string]any
	if err := p.Backends(&rep); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("no report yet: %v", err)
	}
	if err := p.PutBackends(map[string]any{"cpu": true}); err != nil {
		t.Fatal(err)
	}
	if err := p.Backends(&rep); err != nil || rep["cpu"] != true {
		t.Errorf("report = %v %v", rep, err)
	}
}

func TestLockedDatabase(t *testing.T) {
	_, path := openPool(t)
	_, err := store.OpenPool(path, 50*time.Millisecond)
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second open = %v, want ErrLocked", err)
	}
}
