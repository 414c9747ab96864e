package routing

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

const (
	scriptW1 = `if stage == "place" { decision = {action: "dispatch", worker: "w1"} }`
	scriptW2 = `if stage == "place" { decision = {action: "dispatch", worker: "w2"} }`
)

func TestManagerNoScript(t *testing.T) {
	var observed atomic.Int32
	m := NewManager(Config{Observe: func(string, Outcome, time.Duration) { observed.Add(1) }})
	if d, r := m.Admit(t.Context(), newAdmit()); d != (AdmitDecision{}) || r != (Result{Outcome: OutcomeDefault}) {
		t.Errorf("admit: %+v %+v", d, r)
	}
	if d, r := m.Place(t.Context(), newPlace()); d.Action != "" || r != (Result{Outcome: OutcomeDefault}) {
		t.Errorf("place: %+v %+v", d, r)
	}
	if _, _, ok := m.Source(); ok || m.Script() != nil {
		t.Error("a script without Load")
	}
	if observed.Load() != 0 {
		t.Error("Observe called without a script")
	}
}

func TestManagerLoad(t *testing.T) {
	m := NewManager(Config{Timeout: 5 * time.Second})
	if err := m.Load("w1.tengo", []byte(scriptW1)); err != nil {
		t.Fatal(err)
	}
	if d, _ := m.Place(t.Context(), newPlace()); d.Worker != "w1" {
		t.Fatalf("decision %+v", d)
	}
	// A script that does not compile leaves the previous one in place.
	err := m.Load("broken.tengo", []byte("decision = {action: \"dispatch\",\n  worker: w2}"))
	var ce *CompileError
	if !errors.As(err, &ce) || ce.File != "broken.tengo" || ce.Line != 2 || ce.Column != 11 {
		t.Fatalf("error %v", err)
	}
	if want := "routing: broken.tengo:2:11: unresolved reference 'w2'"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	name, src, ok := m.Source()
	if !ok || name != "w1.tengo" || string(src) != scriptW1 {
		t.Errorf("source %q %q %v", name, src, ok)
	}
	if d, _ := m.Place(t.Context(), newPlace()); d.Worker != "w1" {
		t.Errorf("after a failed load: %+v", d)
	}
	src[0] = 'X' // Source returns a copy
	if _, src, _ := m.Source(); string(src) != scriptW1 {
		t.Error("Source shares its bytes")
	}
	m.Clear()
	if _, r := m.Place(t.Context(), newPlace()); r.Outcome != OutcomeDefault || r.Note != "" {
		t.Errorf("after Clear: %+v", r)
	}
}

// TestManagerConcurrent: 64 goroutines place tasks while another reloads
// the script back and forth; every call sees one whole script.
func TestManagerConcurrent(t *testing.T) {
	m := NewManager(Config{Timeout: 10 * time.Second})
	if err := m.Load("w1.tengo", []byte(scriptW1)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var reloads sync.WaitGroup
	reloads.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			src := scriptW1
			if i%2 == 1 {
				src = scriptW2
			}
			if i%7 == 3 {
				src = "decision = {" // fails, keeps the current script
			}
			m.Load("s.tengo", []byte(src))
		}
	})
	var wg sync.WaitGroup
	var w1, w2 atomic.Int32
	for range 64 {
		wg.Go(func() {
			for range 20 {
				d, r := m.Place(t.Context(), newPlace())
				switch {
				case r.Outcome != OutcomeOK:
					t.Errorf("%s %v", r.Outcome, r.Err)
					return
				case d.Worker == "w1":
					w1.Add(1)
				case d.Worker == "w2":
					w2.Add(1)
				default:
					t.Errorf("decision %+v", d)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	reloads.Wait()
	t.Logf("w1 %d, w2 %d", w1.Load(), w2.Load())
}

func TestWatchFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "route.tengo")
		write := func(src string, mtime time.Time) {
			t.Helper()
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Chtimes(path, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		mtime := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		write(scriptW1, mtime)

		m := NewManager(Config{Timeout: 5 * time.Second})
		// The watcher reports on a channel: synctest.Wait does not order
		// memory for the race detector.
		ch := make(chan error, 100)
		watch := func(err error) { ch <- err }
		var reloads []error
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			m.WatchFile(ctx, path, time.Second, watch)
			close(done)
		}()
		expect := func(n int, worker string) {
			t.Helper()
			synctest.Wait()
			for len(ch) > 0 {
				reloads = append(reloads, <-ch)
			}
			if len(reloads) != n {
				t.Fatalf("%d reloads, want %d: %v", len(reloads), n, reloads)
			}
			if d, r := m.Place(t.Context(), newPlace()); d.Worker != worker {
				t.Fatalf("decision %+v %v, want dispatch %s", d, r.Err, worker)
			}
		}
		expect(1, "w1") // loaded at once
		if reloads[0] != nil {
			t.Fatal(reloads[0])
		}

		time.Sleep(3 * time.Second)
		expect(1, "w1") // unchanged: no reload

		write(scriptW2, mtime.Add(time.Second))
		time.Sleep(time.Second)
		expect(2, "w2")

		write("x := 1\ny := 2 +* 3\n", mtime.Add(2*time.Second))
		time.Sleep(time.Second)
		expect(3, "w2") // the broken script is reported, w2 stays
		if err := reloads[2]; !errors.Is(err, ErrCompile) || !strings.HasSuffix(err.Error(), "route.tengo:2:9: expected operand, found '*'") {
			t.Errorf("reload error %v", err)
		}
		time.Sleep(3 * time.Second)
		expect(3, "w2") // not retried until it changes

		write(scriptW2, mtime.Add(3*time.Second))
		time.Sleep(time.Second)
		expect(3, "w2") // back to what is loaded: nothing to do

		os.Remove(path)
		time.Sleep(time.Second)
		expect(4, "w2")
		if !errors.Is(reloads[3], os.ErrNotExist) {
			t.Errorf("missing file: %v", reloads[3])
		}
		time.Sleep(3 * time.Second)
		expect(4, "w2") // reported once

		write(scriptW1, mtime.Add(4*time.Second))
		time.Sleep(time.Second)
		expect(5, "w1")

		cancel()
		<-done
	})
}
