package supervise

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

var (
	// ErrNotFound means no live process has the pid: it never existed, has
	// exited, or is a zombie.
	ErrNotFound = errors.New("supervise: process not found")
	// ErrPIDReused means a process has the pid but started at another time:
	// the process asked for is gone and its pid belongs to someone else.
	ErrPIDReused = errors.New("supervise: pid reused by another process")
	// ErrUnsupported is returned on systems without /proc.
	ErrUnsupported = errors.New("supervise: not supported on this system")
)

// opError is the error of an operation on one process. It reads
// "supervise: OP pid N: CAUSE" and unwraps to the cause (often ErrNotFound or
// ErrPIDReused).
type opError struct {
	op  string
	pid int
	err error
}

func (e *opError) Error() string {
	return "supervise: " + e.op + " pid " + strconv.Itoa(e.pid) + ": " + strings.TrimPrefix(e.err.Error(), "supervise: ")
}

func (e *opError) Unwrap() error { return e.err }

// Spec describes a child process for [Start].
type Spec struct {
	// Path is the program; a name without a slash is looked up in PATH.
	Path string
	// Args are the arguments after the program name.
	Args []string
	// Env is added to this process's environment; a later KEY=VALUE wins
	// over an earlier one with the same key.
	Env []string
	// Dir is the working directory; empty means this process's.
	Dir string
	// LogPath receives the child's stdout and stderr, appended. The file is
	// created with mode 0600 and its directory with 0700 when missing.
	// Empty discards the output.
	LogPath string
}

// Proc identifies one process: its pid and its start time in clock ticks
// since boot (field 22 of /proc/PID/stat). Both are needed because pids are
// reused.
type Proc struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
}

// String returns "pid N".
func (p Proc) String() string { return "pid " + strconv.Itoa(p.PID) }

// Found is a process found by [FindByEnv].
type Found struct {
	Proc
	// Cmdline is the process's argv, as /proc/PID/cmdline holds it.
	Cmdline []string `json:"cmdline"`
}

// procStat is what llorch needs from /proc/PID/stat.
type procStat struct {
	State     string // field 3: R, S, D, T, t, Z, X, ...
	PGID      int    // field 5
	StartTime uint64 // field 22
}

// parseStat parses the contents of /proc/PID/stat. The command name (field
// 2) is in parentheses and may itself hold spaces and parentheses, so the
// fields are counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("supervise: stat: no command name")
	}
	// rest[0] is field 3 (state); field n is rest[n-3].
	rest := bytes.Fields(b[i+1:])
	if len(rest) < 22-3+1 {
		return procStat{}, fmt.Errorf("supervise: stat: %d fields after the command name, want at least 20", len(rest))
	}
	pgid, err := strconv.Atoi(string(rest[5-3]))
	if err != nil {
		return procStat{}, fmt.Errorf("supervise: stat: process group: %w", err)
	}
	start, err := strconv.ParseUint(string(rest[22-3]), 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("supervise: stat: start time: %w", err)
	}
	return procStat{State: string(rest[0]), PGID: pgid, StartTime: start}, nil
}

// splitNUL splits a NUL-separated /proc file (cmdline, environ) into its
// entries, dropping the empty entry after the final NUL.
func splitNUL(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			out = append(out, string(b))
			break
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out
}

// hasEntry reports whether the NUL-separated environ holds exactly entry.
func hasEntry(environ, entry []byte) bool {
	for len(environ) > 0 {
		e, rest, _ := bytes.Cut(environ, []byte{0})
		if bytes.Equal(e, entry) {
			return true
		}
		environ = rest
	}
	return false
}
