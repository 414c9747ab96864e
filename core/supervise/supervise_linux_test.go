package supervise

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitFor polls cond every 10 ms for up to 10 s, which only a failing test
// ever reaches.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// start starts s and kills the child's process group when the test ends.
func start(t *testing.T, s Spec) Proc {
	t.Helper()
	p, err := Start(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if Kill(p) == nil {
			waitFor(t, p.String()+" to die in cleanup", func() bool { return !Alive(p) })
		}
	})
	return p
}

// marker returns an environment entry unique to this test.
func marker(t *testing.T, tag string) (key, value string) {
	return "LLORCH_SUPERVISE_TEST", fmt.Sprintf("%d-%s-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"), tag)
}

func findMarked(t *testing.T, tag string) []Found {
	t.Helper()
	found, err := FindByEnv(marker(t, tag))
	if err != nil {
		t.Fatal(err)
	}
	return found
}

func sleeper(t *testing.T, tag string) Spec {
	k, v := marker(t, tag)
	return Spec{Path: "sleep", Args: []string{"60"}, Env: []string{k + "=" + v}}
}

func TestStartAliveStop(t *testing.T) {
	t.Parallel()
	p := start(t, sleeper(t, "a"))
	if !Alive(p) {
		t.Fatalf("%s not alive after Start", p)
	}
	if st, err := StartTime(p.PID); err != nil || st != p.StartTime || st == 0 {
		t.Errorf("StartTime = %d, %v; Start said %d", st, err, p.StartTime)
	}
	if s, err := State(p.PID); err != nil || (s != "S" && s != "R") {
		t.Errorf("State = %q, %v; want S or R", s, err)
	}
	if pgid, err := syscall.Getpgid(p.PID); err != nil || pgid != p.PID {
		t.Errorf("getpgid = %d, %v; want its own group %d", pgid, err, p.PID)
	}
	if err := Stop(t.Context(), p, 5*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if Alive(p) {
		t.Fatalf("%s alive after Stop", p)
	}
	if err := Stop(t.Context(), p, time.Second); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Stop = %v, want ErrNotFound", err)
	}
	if err := Kill(p); !errors.Is(err, ErrNotFound) {
		t.Errorf("Kill after Stop = %v, want ErrNotFound", err)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	t.Parallel()
	k, v := marker(t, "stubborn")
	log := filepath.Join(t.TempDir(), "stubborn.log")
	// The shell and its sleep both ignore SIGTERM (an ignored signal stays
	// ignored across fork and exec); "ready" says the trap is in place.
	p := start(t, Spec{
		Path:    "sh",
		Args:    []string{"-c", `trap "" TERM; echo ready; sleep 60; echo survived`},
		Env:     []string{k + "=" + v},
		LogPath: log,
	})
	waitFor(t, "the trap", func() bool { b, _ := os.ReadFile(log); return strings.Contains(string(b), "ready") })
	waitFor(t, "sleep to start", func() bool { return len(findMarked(t, "stubborn")) == 2 })

	const grace = 200 * time.Millisecond
	begin := time.Now()
	if err := Stop(t.Context(), p, grace); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(begin); took < grace {
		t.Errorf("Stop returned after %s, before the %s grace: SIGTERM was not ignored?", took, grace)
	}
	if Alive(p) {
		t.Fatal("alive after Stop")
	}
	// SIGKILL went to the whole group: the sleep died with the shell.
	waitFor(t, "the group to die", func() bool { return len(findMarked(t, "stubborn")) == 0 })
	if b, err := os.ReadFile(log); err != nil || strings.Contains(string(b), "survived") {
		t.Errorf("log = %q, %v", b, err)
	}
}

func TestKilledFromOutside(t *testing.T) {
	t.Parallel()
	p := start(t, sleeper(t, "a"))
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Alive to turn false", func() bool { return !Alive(p) })
	if err := Stop(t.Context(), p, time.Second); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stop of a dead process = %v, want ErrNotFound", err)
	}
}

func TestStopStoppedProcess(t *testing.T) {
	t.Parallel()
	log := filepath.Join(t.TempDir(), "stopped.log")
	// The shell reports SIGTERM in the log: that proves it was continued and
	// handled SIGTERM rather than being SIGKILLed after the grace. "ready"
	// comes after the fork of sleep, so the shell is then waiting in wait (S).
	p := start(t, Spec{
		Path:    "sh",
		Args:    []string{"-c", `trap "echo got TERM; exit 0" TERM; sleep 60 & echo ready; wait`},
		LogPath: log,
	})
	waitFor(t, "the trap", func() bool { b, _ := os.ReadFile(log); return strings.Contains(string(b), "ready") })
	if err := syscall.Kill(-p.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "state T", func() bool { s, _ := State(p.PID); return s == "T" })

	if err := Stop(t.Context(), p, 10*time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if Alive(p) {
		t.Fatal("alive after Stop")
	}
	if b, err := os.ReadFile(log); err != nil || !strings.Contains(string(b), "got TERM") {
		t.Errorf("log = %q, %v; want the shell to have handled SIGTERM", b, err)
	}
}

func TestPIDReuseGuard(t *testing.T) {
	t.Parallel()
	p := start(t, sleeper(t, "a"))
	other := Proc{PID: p.PID, StartTime: p.StartTime + 1}
	if Alive(other) {
		t.Error("Alive with a wrong start time")
	}
	if err := Stop(t.Context(), other, 200*time.Millisecond); !errors.Is(err, ErrPIDReused) {
		t.Errorf("Stop = %v, want ErrPIDReused", err)
	}
	if err := Kill(other); !errors.Is(err, ErrPIDReused) {
		t.Errorf("Kill = %v, want ErrPIDReused", err)
	}
	if s, err := State(p.PID); !Alive(p) || err != nil || s == "Z" {
		t.Fatalf("the real process did not survive: state %q, %v", s, err)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	const absent = 1 << 30 // above any pid_max
	if _, err := StartTime(absent); !errors.Is(err, ErrNotFound) {
		t.Errorf("StartTime = %v, want ErrNotFound", err)
	}
	if _, err := State(absent); !errors.Is(err, ErrNotFound) {
		t.Errorf("State = %v, want ErrNotFound", err)
	}
	for _, pid := range []int{absent, 0, -1} {
		p := Proc{PID: pid, StartTime: 1}
		if Alive(p) {
			t.Errorf("Alive(%d)", pid)
		}
		if err := Stop(t.Context(), p, time.Second); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stop(%d) = %v, want ErrNotFound", pid, err)
		}
		if err := Kill(p); !errors.Is(err, ErrNotFound) {
			t.Errorf("Kill(%d) = %v, want ErrNotFound", pid, err)
		}
	}
	// Pid 1 exists, and signalling its group would mean kill(-1): refused.
	if st, err := StartTime(1); err == nil {
		if err := Kill(Proc{PID: 1, StartTime: st}); err == nil || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("Kill(init) = %v, want a refusal", err)
		}
	}
}

func TestSelf(t *testing.T) {
	t.Parallel()
	st, err := StartTime(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("StartTime(self) = %d, %v", st, err)
	}
	if s, err := State(os.Getpid()); err != nil || s == "" || dead(s) {
		t.Errorf("State(self) = %q, %v; want a live state", s, err)
	}
	if !Alive(Proc{PID: os.Getpid(), StartTime: st}) {
		t.Error("self not alive")
	}
}

func TestLogEnvDirStdin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	log := filepath.Join(dir, "logs", "deeper", "worker.log") // directories made by Start
	work := t.TempDir()
	spec := Spec{
		Path: "sh",
		// PATH comes from this process's environment, LLORCH_X from Env.
		Args: []string{"-c", `echo "out $LLORCH_X"; echo "err $PATH" >&2; echo "dir $(pwd)"; read line; echo "read $?"`},
		// A later entry wins over an earlier one with the same key.
		Env:     []string{"LLORCH_X=first", "LLORCH_X=second"},
		Dir:     work,
		LogPath: log,
	}
	for range 2 {
		p := start(t, spec)
		waitFor(t, "the shell to exit", func() bool { return !Alive(p) })
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	// Two runs, appended; stdin was /dev/null, so read hit EOF (status 1).
	one := "out second\nerr " + os.Getenv("PATH") + "\ndir " + work + "\nread 1\n"
	if got := string(b); got != one+one {
		t.Errorf("log = %q, want %q twice", got, one)
	}
	fi, err := os.Stat(log)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("log mode = %v, want 0600", perm)
	}
	di, err := os.Stat(filepath.Dir(log))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("log directory mode = %v, want 0700", perm)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		spec Spec
	}{
		{"empty path", Spec{}},
		{"no such program", Spec{Path: filepath.Join(t.TempDir(), "absent")}},
		{"log under a file", Spec{Path: "true", LogPath: filepath.Join(file, "x.log")}},
		{"no such directory", Spec{Path: "true", Dir: filepath.Join(t.TempDir(), "absent")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Start(tt.spec)
			if err == nil {
				_ = Kill(p)
				t.Fatalf("Start(%+v) succeeded", tt.spec)
			}
			if !strings.HasPrefix(err.Error(), "supervise: start") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestFindByEnv(t *testing.T) {
	t.Parallel()
	a1 := start(t, sleeper(t, "A"))
	a2 := start(t, sleeper(t, "A"))
	b := start(t, sleeper(t, "B"))

	found := findMarked(t, "A")
	var pids []int
	for _, f := range found {
		pids = append(pids, f.PID)
		if !slices.Equal(f.Cmdline, []string{"sleep", "60"}) {
			t.Errorf("cmdline of %s = %q", f.Proc, f.Cmdline)
		}
		if !Alive(f.Proc) {
			t.Errorf("found %s is not alive", f.Proc)
		}
	}
	want := []int{a1.PID, a2.PID}
	slices.Sort(want)
	if !slices.Equal(pids, want) {
		t.Errorf("FindByEnv(A) = %v, want %v", pids, want)
	}
	if found := findMarked(t, "B"); len(found) != 1 || found[0].Proc != b {
		t.Errorf("FindByEnv(B) = %+v, want %+v", found, b)
	}
	// A value is matched whole, not as a prefix.
	k, v := marker(t, "A")
	if found, err := FindByEnv(k, v[:len(v)-1]); err != nil || len(found) != 0 {
		t.Errorf("FindByEnv(prefix) = %+v, %v", found, err)
	}
	if _, err := FindByEnv("A=B", "x"); err == nil {
		t.Error("FindByEnv accepted a key with '='")
	}
	if _, err := FindByEnv("", "x"); err == nil {
		t.Error("FindByEnv accepted an empty key")
	}

	// Stopped processes drop out.
	if err := Stop(t.Context(), a1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if found := findMarked(t, "A"); len(found) != 1 || found[0].Proc != a2 {
		t.Errorf("after Stop, FindByEnv(A) = %+v, want %+v", found, a2)
	}
}

func TestStopContextEnds(t *testing.T) {
	t.Parallel()
	log := filepath.Join(t.TempDir(), "stubborn.log")
	p := start(t, Spec{Path: "sh", Args: []string{"-c", `trap "" TERM; echo ready; sleep 60`}, LogPath: log})
	waitFor(t, "the trap", func() bool { b, _ := os.ReadFile(log); return strings.Contains(string(b), "ready") })
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	// The grace is long; the context ends first and Stop kills at once.
	if err := Stop(ctx, p, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Stop = %v, want DeadlineExceeded", err)
	}
	waitFor(t, "SIGKILL after the context ended", func() bool { return !Alive(p) })
}
