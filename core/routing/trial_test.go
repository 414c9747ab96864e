package routing

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llorch/llorch/core/testkit"
	llembed "github.com/llorch/llorch/embed"
)

// The llorch binary, built once, by the first test that needs it.
var (
	kitOnce sync.Once
	kit     *testkit.Kit
	kitErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if kit != nil {
		kit.Close()
	}
	os.Exit(code)
}

func llorch(t *testing.T) string {
	t.Helper()
	kitOnce.Do(func() { kit, kitErr = testkit.Setup() })
	if kitErr != nil {
		t.Fatal(kitErr)
	}
	return kit.Bin
}

// TestTrial tries scripts with the real llorch binary.
func TestTrial(t *testing.T) {
	argv := TrialCommand(llorch(t), Config{})
	tests := []struct {
		name string
		src  string
		want string // "" (passes), "compile" or a part of the TrialError
	}{
		{"default", string(llembed.DefaultRoutingScript), ""},
		{"runtime errors pass", `x := 1 + "a"`, ""},
		{"self-referencing ==", `a := [0]; a[0] = a; x := a == a`, "ended in alloc_cap"},
		{"string + shared parts", `a := ["aaaaaaaaaaaaaaaa"]; for i := 0; i < 40; i++ { a = [a, a] }; s := "" + a`, "ended in alloc_cap"},
		{"== of shared parts", `a := ["aaaaaaaaaaaaaaaa"]; for i := 0; i < 50; i++ { a = [a, a] }; x := a == a`, "ended in alloc_cap"},
		{"infinite loop", `for {}`, "ended in timeout"},
		{"syntax", "decision = {\n  action: }", "compile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Trial(t.Context(), argv, "try.tengo", []byte(tt.src))
			var ce *CompileError
			var te *TrialError
			switch {
			case tt.want == "":
				if err != nil {
					t.Errorf("trial failed: %v", err)
				}
			case tt.want == "compile":
				if !errors.As(err, &ce) || ce.File != "try.tengo" || ce.Line != 2 || !errors.Is(err, ErrCompile) {
					t.Errorf("want a compile error at try.tengo:2, got %v", err)
				}
			default:
				if !errors.As(err, &te) || !errors.Is(err, ErrTrial) || !strings.Contains(te.Reason, tt.want) {
					t.Errorf("want a trial error with %q, got %v", tt.want, err)
				}
			}
		})
	}
	t.Run("a name like a flag", func(t *testing.T) {
		var ce *CompileError
		if err := Trial(t.Context(), argv, "-odd name.tengo", []byte("x := [")); !errors.As(err, &ce) || ce.File != "-odd name.tengo" {
			t.Errorf("got %v", err)
		}
	})
	t.Run("the examples pass", func(t *testing.T) {
		names, _ := fs.Glob(llembed.RoutingExamples, "*.tengo")
		for _, n := range names {
			src, _ := fs.ReadFile(llembed.RoutingExamples, n)
			if err := Trial(t.Context(), argv, n, src); err != nil {
				t.Errorf("%s: %v", n, err)
			}
		}
	})
}

// TestTrialProcess: what Trial reports when the check process itself goes
// wrong (here, processes that stand in for it).
func TestTrialProcess(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	tests := []struct {
		name, script string
		limit        time.Duration
		want         string
	}{
		{"crash", `cat >/dev/null; echo "goroutine 1 [running]:" >&2; echo "fatal error: stack overflow" >&2; exit 2`, time.Minute,
			"the check process failed (exit status 2): fatal error: stack overflow"},
		{"killed", `kill -KILL $$`, time.Minute, "the check process failed (signal: killed)"},
		{"no report", `cat >/dev/null; echo hello`, time.Minute, "no report from the check process"},
		{"hangs", `exec sleep 60`, 300 * time.Millisecond, "the check process was killed: still running"},
		{"bad report", `cat >/dev/null; echo '{"error": "reading the script: boom"}'`, time.Minute, "reading the script: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), tt.limit)
			defer cancel()
			start := time.Now()
			err := Trial(ctx, []string{sh, "-c", tt.script, "sh"}, "x.tengo", []byte("x := 1"))
			var te *TrialError
			if !errors.As(err, &te) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
			if time.Since(start) > 30*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
		})
	}
	if err := Trial(t.Context(), []string{"/nonexistent/llorch"}, "x.tengo", nil); err == nil || errors.Is(err, ErrTrial) {
		t.Errorf("missing binary: %v", err)
	}
}

// TestRoutingCommands runs `llorch orchestrate routing check` and
// `examples` as an operator would.
func TestRoutingCommands(t *testing.T) {
	bin := llorch(t)
	run := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"orchestrate", "routing"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	out, err := run("", "check")
	if err != nil || !strings.HasPrefix(out, "check default.tengo: compiled;") || !strings.Contains(out, "calls 12: ok 10 default 2") {
		t.Errorf("check without a file: %v\n%s", err, out)
	}
	out, err = run(`if stage == "admit" { decision = {action: "admit"} }`, "check", "--name", "mine.tengo", "-")
	if err != nil || !strings.HasPrefix(out, "check mine.tengo: compiled;") {
		t.Errorf("check -: %v\n%s", err, out)
	}
	out, err = run("x := [", "check", "-")
	if err == nil || !strings.Contains(out, "stdin.tengo:1:") {
		t.Errorf("check - with a syntax error: %v\n%s", err, out)
	}
	out, err = run("", "examples")
	names, _ := fs.Glob(llembed.RoutingExamples, "*.tengo")
	if err != nil || !strings.HasPrefix(out, "default ") || strings.Count(out, "\n") != len(names)+1 {
		t.Errorf("examples: %v\n%s", err, out)
	}
	for _, n := range names {
		if !strings.Contains(out, strings.TrimSuffix(n, ".tengo")+" ") {
			t.Errorf("examples does not list %s:\n%s", n, out)
		}
	}
	out, err = run("", "examples", "reject_big_batch")
	want, _ := fs.ReadFile(llembed.RoutingExamples, "reject_big_batch.tengo")
	if err != nil || out != string(want) {
		t.Errorf("examples reject_big_batch: %v\n%s", err, out)
	}
	if out, err = run("", "examples", "default.tengo"); err != nil || out != string(llembed.DefaultRoutingScript) {
		t.Errorf("examples default.tengo: %v\n%s", err, out)
	}
	if out, err = run("", "examples", "../embed"); err == nil || !strings.Contains(out, `no script "../embed"`) {
		t.Errorf("examples ../embed: %v\n%s", err, out)
	}
	if out, err = run("x := 1", "check", "--sandboxed", "file.tengo"); err == nil {
		t.Errorf("--sandboxed with a file: %s", out)
	}
}
