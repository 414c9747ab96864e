package routing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Limits of a trial's check process (see Trial).
const (
	// TrialTimeout bounds a trial's wall-clock time when ctx allows more.
	TrialTimeout = 30 * time.Second
	// trialMemory is the address space the check process may add to what
	// it has at start (RLIMIT_AS; not under the race detector), and the
	// resident memory at which Trial kills it.
	trialMemory = 1 << 30
	// trialCPU is its CPU time, in seconds (RLIMIT_CPU).
	trialCPU = 20
	// trialStack is its goroutines' largest stack (debug.SetMaxStack).
	trialStack = 64 << 20
	// trialOutput bounds what Trial reads of its stdout and stderr.
	trialOutput = 1 << 20
)

// ErrTrial is wrapped by the error of a trial that failed for another reason
// than a compile error.
var ErrTrial = errors.New("routing: trial failed")

// TrialError is a failed trial: the check process crashed, was killed, or
// the script ran past its time budget or allocation cap on the sample
// inputs. Reason is one line for a person.
type TrialError struct {
	Reason string
}

func (e *TrialError) Error() string { return "routing: trial: " + e.Reason }

// Unwrap makes errors.Is(err, ErrTrial) true.
func (e *TrialError) Unwrap() error { return ErrTrial }

// TrialCommand is the command line Trial runs for a script with limits cfg,
// given the path of the llorch executable (os.Executable()): `llorch
// orchestrate routing check --sandboxed` with cfg's budget and allocation
// cap. Trial adds `--name=NAME -`.
func TrialCommand(exe string, cfg Config) []string {
	cfg, err := cfg.withDefaults()
	if err != nil {
		cfg = Config{Timeout: DefaultTimeout, MaxAllocs: DefaultMaxAllocs}
	}
	return []string{exe, "orchestrate", "routing", "check", "--sandboxed",
		"--routing-timeout", cfg.Timeout.String(),
		"--routing-max-allocs", strconv.FormatInt(cfg.MaxAllocs, 10)}
}

// Trial runs a script in a child process before it is loaded: argv (see
// TrialCommand) followed by `--name=NAME -`, with the script on its stdin.
// The child limits itself (RunSandboxed), compiles the script and runs both
// stages over SampleSnapshot; Trial kills it when it outlives ctx or
// TrialTimeout, or grows past its memory limit. It returns nil when the
// script compiled and no call ran out of its budget or allocation cap
// (runtime errors and invalid decisions pass: the sample may lack what a
// script expects), the *CompileError when it did not compile, and a
// *TrialError otherwise.
func Trial(ctx context.Context, argv []string, name string, src []byte) error {
	if len(argv) == 0 {
		return errors.New("routing: trial: no command")
	}
	if len(src) > MaxSourceBytes {
		return &CompileError{File: name, Msg: fmt.Sprintf("script is larger than %d bytes", MaxSourceBytes)}
	}
	ctx, cancel := context.WithTimeout(ctx, TrialTimeout)
	defer cancel()
	cmd := exec.Command(argv[0], append(append([]string(nil), argv[1:]...), "--name="+name, "-")...)
	cmd.Stdin = bytes.NewReader(src)
	res := runLimited(ctx, cmd, trialMemory)
	if res.startErr != nil {
		return fmt.Errorf("routing: trial: %w", res.startErr)
	}
	switch {
	case res.killed != "":
		return &TrialError{Reason: "the check process was killed: " + res.killed}
	case !res.state.Success():
		return &TrialError{Reason: fmt.Sprintf("the check process failed (%s): %s", res.state, res.stderrReason())}
	}
	var rep trialReport
	if err := json.Unmarshal(res.stdout.Bytes(), &rep); err != nil {
		return &TrialError{Reason: fmt.Sprintf("no report from the check process (%v): %s", err, res.stderrReason())}
	}
	return rep.verdict()
}

// trialReport is what the check process writes.
type trialReport struct {
	Compile  *CompileError   `json:"compile_error,omitempty"`
	Error    string          `json:"error,omitempty"`
	Outcomes map[Outcome]int `json:"outcomes,omitempty"`
	Lines    []string        `json:"lines,omitempty"`
}

func (r *trialReport) verdict() error {
	switch {
	case r.Compile != nil:
		return r.Compile
	case r.Error != "":
		return &TrialError{Reason: r.Error}
	}
	for _, o := range []Outcome{OutcomeTimeout, OutcomeAllocCap} {
		if r.Outcomes[o] == 0 {
			continue
		}
		line := ""
		for _, l := range r.Lines {
			if strings.Contains(l, " "+string(o)+":") {
				line = l
				break
			}
		}
		return &TrialError{Reason: fmt.Sprintf("%d calls on the sample inputs ended in %s: %s", r.Outcomes[o], o, line)}
	}
	return nil
}

// RunSandboxed is `llorch orchestrate routing check --sandboxed -`, the
// process a Trial starts: it limits its own process (address space, CPU
// time, stack size, no core dump) before it reads a script from in, then
// compiles it and runs it over SampleSnapshot as RunCheck does, and writes a
// JSON report to out. It returns an error only when it cannot write.
func RunSandboxed(in io.Reader, out io.Writer, name string, cfg Config) error {
	limitSelf(trialMemory, trialCPU)
	rep := trialReport{}
	src, err := io.ReadAll(io.LimitReader(in, MaxSourceBytes+1))
	switch {
	case err != nil:
		rep.Error = fmt.Sprintf("reading the script: %v", err)
	case len(src) > MaxSourceBytes:
		rep.Compile = &CompileError{File: name, Msg: fmt.Sprintf("script is larger than %d bytes", MaxSourceBytes)}
	default:
		s, err := Compile(name, src, cfg)
		var ce *CompileError
		switch {
		case errors.As(err, &ce):
			rep.Compile = ce
		case err != nil:
			rep.Error = err.Error()
		default:
			var buf bytes.Buffer
			rep.Outcomes, _ = runSnapshot(&buf, s, SampleSnapshot())
			rep.Lines = strings.Split(strings.TrimSpace(buf.String()), "\n")
		}
	}
	return json.NewEncoder(out).Encode(&rep)
}

// procResult is how a process run by runLimited ended.
type procResult struct {
	startErr error
	state    *os.ProcessState
	stdout   capBuffer
	stderr   capBuffer
	killed   string // why runLimited killed it; "" when it did not
	peakRSS  int64  // the most resident memory seen (0 where unknown)
}

// stderrReason is the line of stderr that says why a process died: a Go
// fatal error or panic, else the last line.
func (r *procResult) stderrReason() string {
	lines := strings.Split(strings.TrimSpace(r.stderr.String()), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "fatal error:") || strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "runtime:") {
			return l
		}
	}
	return lines[len(lines)-1]
}

// runLimited runs cmd in its own process group, kills the group when ctx is
// done or the process's resident memory passes maxRSS (where the system
// tells it), and waits for it.
func runLimited(ctx context.Context, cmd *exec.Cmd, maxRSS int64) *procResult {
	res := &procResult{stdout: capBuffer{limit: trialOutput}, stderr: capBuffer{limit: trialOutput}}
	cmd.Stdout, cmd.Stderr = &res.stdout, &res.stderr
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		res.startErr = err
		return res
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	kill := func(why string) {
		res.killed = why
		killGroup(cmd.Process)
		<-done
	}
loop:
	for {
		select {
		case <-done:
			break loop
		case <-ctx.Done():
			kill(fmt.Sprintf("still running after the trial's time limit (%v)", context.Cause(ctx)))
			break loop
		case <-tick.C:
			rss := residentBytes(cmd.Process.Pid)
			res.peakRSS = max(res.peakRSS, rss)
			if rss > maxRSS {
				kill(fmt.Sprintf("more than %d MiB of memory", maxRSS>>20))
				break loop
			}
		}
	}
	res.state = cmd.ProcessState
	return res
}

// capBuffer keeps the first limit bytes written to it.
type capBuffer struct {
	bytes.Buffer
	limit int
}

func (b *capBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
