package supervise

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pollInterval is how often Stop checks whether the process is gone.
const pollInterval = 20 * time.Millisecond

// killWait bounds the wait for a process to vanish after SIGKILL (a process in
// uninterruptible sleep dies only when it leaves the kernel).
const killWait = 5 * time.Second

// Start starts s in its own process group and returns as soon as the child is
// forked and its start time read. Stdin is /dev/null; stdout and stderr are
// appended to s.LogPath. The environment is this process's plus s.Env.
//
// A goroutine reaps the child while this process lives. The child is not
// tied to this process: it keeps running, reparented to init, after this
// process exits.
func Start(s Spec) (Proc, error) {
	if s.Path == "" {
		return Proc{}, errors.New("supervise: start: empty path")
	}
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		return Proc{}, fmt.Errorf("supervise: start %s: %w", s.Path, err)
	}
	defer stdin.Close()
	out, err := openLog(s.LogPath)
	if err != nil {
		return Proc{}, fmt.Errorf("supervise: start %s: %w", s.Path, err)
	}
	// The child holds its own copies of both descriptors after the fork.
	defer out.Close()

	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = append(os.Environ(), s.Env...) // exec keeps the last value of a repeated key
	cmd.Dir = s.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("supervise: start %s: %w", s.Path, err)
	}
	// Until it is reaped, even a child that exited at once is a zombie whose
	// stat still holds its start time.
	pid := cmd.Process.Pid
	st, err := readStat(pid)
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return Proc{}, fmt.Errorf("supervise: start %s: pid %d: %w", s.Path, pid, err)
	}
	go func() { _ = cmd.Wait() }()
	return Proc{PID: pid, StartTime: st.StartTime}, nil
}

// openLog opens path for appending, creating it (0600) and its directory
// (0700) when missing; an empty path opens /dev/null.
func openLog(path string) (*os.File, error) {
	if path == "" {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log: %w", err)
	}
	return f, nil
}

// readStat reads /proc/PID/stat; a missing process is ErrNotFound. Its
// errors name no pid: the public callers wrap them in an opError.
func readStat(pid int) (procStat, error) {
	if pid <= 0 {
		return procStat{}, ErrNotFound
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return procStat{}, ErrNotFound
	}
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// StartTime returns the start time of process pid in clock ticks since boot.
// A zombie still has one.
func StartTime(pid int) (uint64, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, &opError{"start time of", pid, err}
	}
	return st.StartTime, nil
}

// State returns the state letter of process pid as /proc shows it: R
// (running), S (sleeping), D (disk sleep), T (stopped), t (traced), Z
// (zombie), ...
func State(pid int) (string, error) {
	st, err := readStat(pid)
	if err != nil {
		return "", &opError{"state of", pid, err}
	}
	return st.State, nil
}

// Alive reports whether the process p still exists: its pid is present with
// the same start time and it is not a zombie.
func Alive(p Proc) bool {
	st, err := readStat(p.PID)
	return err == nil && st.StartTime == p.StartTime && !dead(st.State)
}

// dead reports whether a state letter means the process has exited.
func dead(state string) bool { return state == "Z" || state == "X" || state == "x" }

// check returns p's stat when p is alive, ErrNotFound when it is gone, and
// ErrPIDReused when its pid now belongs to another process.
func check(p Proc) (procStat, error) {
	st, err := readStat(p.PID)
	if err != nil {
		return procStat{}, err
	}
	if st.StartTime != p.StartTime {
		return procStat{}, fmt.Errorf("%w (it started at %d, not %d)", ErrPIDReused, st.StartTime, p.StartTime)
	}
	if dead(st.State) {
		return procStat{}, fmt.Errorf("%w (exited, state %s)", ErrNotFound, st.State)
	}
	return st, nil
}

// signal sends sig to p's process group when p leads one (as every process
// from Start does), else to p alone.
func signal(p Proc, st procStat, sig syscall.Signal, name string) error {
	if p.PID <= 1 {
		// kill(-1) would signal every process; pid 1 is init.
		return errors.New("refusing to signal it")
	}
	target := p.PID
	if st.PGID == p.PID {
		target = -p.PID
	}
	err := syscall.Kill(target, sig)
	if errors.Is(err, syscall.ESRCH) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Stop stops p and its process group: SIGTERM, then SIGCONT so that stopped
// members can act on the SIGTERM, a wait of up to grace for p to exit, then
// SIGKILL. It returns nil once p is gone.
//
// It signals nothing and returns ErrNotFound when p has already exited, and
// ErrPIDReused when p's pid belongs to another process. When ctx ends first,
// Stop sends SIGKILL at once and returns the context's error.
//
// Stop waits for p only, not for the rest of its group: a group member that
// outlives p after SIGTERM is not killed.
func Stop(ctx context.Context, p Proc, grace time.Duration) error {
	st, err := check(p)
	if err == nil {
		err = signal(p, st, syscall.SIGTERM, "SIGTERM")
	}
	if err != nil {
		return &opError{"stop", p.PID, err}
	}
	// A stopped process acts on SIGTERM only once continued. The leader's
	// state does not tell whether some member of the group is stopped (a shell
	// in vfork waits in state D on its stopped child), so the whole group gets
	// SIGCONT, which a running process ignores.
	if err := signal(p, st, syscall.SIGCONT, "SIGCONT"); err != nil && !errors.Is(err, ErrNotFound) {
		return &opError{"stop", p.PID, err}
	}
	ctxErr := waitGone(ctx, p, grace)
	if ctxErr == nil && !Alive(p) {
		return nil
	}
	// Grace is over (or ctx ended): check the identity again before SIGKILL.
	st, err = check(p)
	if err == nil {
		err = signal(p, st, syscall.SIGKILL, "SIGKILL")
	}
	switch {
	case errors.Is(err, ErrNotFound) || errors.Is(err, ErrPIDReused):
		return nil // p exited just before SIGKILL
	case err != nil:
		return &opError{"stop", p.PID, err}
	case ctxErr != nil:
		return &opError{"stop", p.PID, ctxErr}
	}
	if err := waitGone(ctx, p, killWait); err != nil {
		return &opError{"stop", p.PID, err}
	}
	if Alive(p) {
		return &opError{"stop", p.PID, fmt.Errorf("still alive %s after SIGKILL", killWait)}
	}
	return nil
}

// waitGone polls until p is gone or d has passed; it returns ctx's error when
// ctx ends first.
func waitGone(ctx context.Context, p Proc, d time.Duration) error {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for Alive(p) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return nil
		case <-tick.C:
		}
	}
	return nil
}

// Kill sends SIGKILL to p's process group and returns without waiting. Like
// Stop it signals nothing and returns ErrNotFound or ErrPIDReused when p is
// gone.
func Kill(p Proc) error {
	st, err := check(p)
	if err == nil {
		err = signal(p, st, syscall.SIGKILL, "SIGKILL")
	}
	if err != nil {
		return &opError{"kill", p.PID, err}
	}
	return nil
}

// FindByEnv returns the live processes, other than this one, whose
// environment holds key=value, sorted by pid. It reads /proc/PID/environ,
// which is the environment the process started with, and skips processes it
// may not read (other users' processes, unless running as root).
func FindByEnv(key, value string) ([]Found, error) {
	if key == "" || strings.ContainsAny(key, "=\x00") || strings.ContainsRune(value, 0) {
		return nil, fmt.Errorf("supervise: find: invalid variable %q", key)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("supervise: find: %w", err)
	}
	want := []byte(key + "=" + value)
	self := os.Getpid()
	var found []Found
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid <= 0 {
			continue
		}
		dir := "/proc/" + e.Name()
		env, err := os.ReadFile(dir + "/environ")
		if err != nil || !hasEntry(env, want) {
			continue
		}
		st, err := readStat(pid)
		if err != nil || dead(st.State) {
			continue
		}
		cmdline, err := os.ReadFile(dir + "/cmdline")
		if err != nil {
			continue
		}
		found = append(found, Found{Proc: Proc{PID: pid, StartTime: st.StartTime}, Cmdline: splitNUL(cmdline)})
	}
	slices.SortFunc(found, func(a, b Found) int { return a.PID - b.PID })
	return found, nil
}
