package routing

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hostile scripts: each runs through Script.Admit and Script.Place in a
// child process of the test binary, under a memory limit, so that a
// regression fails its case instead of killing the test runner. The child
// reports how each call ended and how long it took, and whether its
// goroutines came back to where they were before the script ran.

// outcomeCompile stands for "Compile refused the script".
const outcomeCompile Outcome = "compile"

// shared makes `a`, an array of 2^n references to one string, built of n
// levels of [a, a].
func shared(n int) string {
	return fmt.Sprintf(`a := ["aaaaaaaaaaaaaaaa"]; for i := 0; i < %d; i++ { a = [a, a] }; `, n)
}

type hostileCase struct {
	name string
	src  string
	want []Outcome // the outcomes each call may end in
	// long: the script grows memory in a loop; it gets a budget long enough
	// to reach MaxCallBytes or the allocation cap.
	long bool
}

var hostileCases = []hostileCase{
	// The three of the issue.
	{"self-referencing ==", `a := [0]; a[0] = a; x := a == a`, capped, false},
	{"string + shared parts", shared(40) + `s := "" + a`, capped, false},
	{"== of shared parts", shared(50) + `x := a == a`, capped, false},

	// Comparisons.
	{"self-referencing map !=", `m := {}; m.m = m; x := m != m`, capped, false},
	{"map == of shared parts", `m := {k: 1}; for i := 0; i < 50; i++ { m = {a: m, b: m} }; x := m == m`, capped, false},
	{"immutable self-reference ==", `a := [0]; a[0] = a; b := immutable(a); x := b == b`, capped, false},
	{"deep nesting ==", `a := [0]; for i := 0; i < 100000; i++ { a = [a] }; x := a == a`, capped, false},

	// Conversions to strings.
	{"string += self-reference", `a := [0]; a[0] = a; s := "x"; s += a`, capped, false},
	{"string + error of shared parts", shared(40) + `e := error(a); s := "" + e`, capped, false},
	{"string() of shared parts", shared(40) + `s := string(a)`, capped, false},
	{"string() of a self-referencing error", `a := [0]; a[0] = a; s := string(error(a))`, capped, false},
	{"sprintf %v of shared parts", `fmt := import("fmt"); ` + shared(40) + `s := fmt.sprintf("%v", a)`, capped, false},
	{"format %v of a self-reference", `m := {}; m.m = m; s := format("%v", m)`, capped, false},
	{"sprintf huge width", `fmt := import("fmt"); s := fmt.sprintf("%0900000d", 1)`, capped, false},
	{"map key of shared parts", shared(40) + `m := {}; m[a] = 1`, capped, false},
	{"map read with a self-referencing key", `a := [0]; a[0] = a; m := {}; x := m[a]`, capped, false},
	{"text function on shared parts", `text := import("text"); ` + shared(40) + `x := text.contains(a, "b")`, capped, false},

	// Building arrays.
	{"array + array doubling", `a := [1]; for { a = a + a }`, capped, true},
	{"array += doubling", `a := [1, 2]; for { a += a }`, capped, true},
	{"immutable array + doubling", `a := immutable([1]); for { a = immutable(a + a) }`, capped, true},
	{"append spread doubling", `a := [1]; for { a = append(a, a...) }`, []Outcome{OutcomeError, OutcomeAllocCap}, false},
	{"append in a loop", `a := []; for { a = append(a, 1) }`, capped, true},
	{"append big chunks", `c := range(0, 2000); a := []; for { a = append(a, c...) }`, capped, true},
	{"variadic arrays kept", `f := func(...x) { return x }; c := range(0, 2000); keep := []; for { keep = append(keep, f(c...)) }`, capped, true},
	{"splice growth", `a := []; for { splice(a, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8) }`, capped, true},
	{"copy of shared parts", shared(40) + `b := copy(a)`, capped, false},
	{"copies kept", `a := range(0, 60000); keep := []; for { keep = append(keep, copy(a)) }`, capped, true},
	{"big literals kept", `keep := []; for { keep = append(keep, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]) }`, capped, true},
	{"map growth", `m := {}; for i := 0; ; i++ { m[i] = i }`, capped, true},
	{"huge bytes", `b := bytes(1 << 30)`, capped, false},
	{"huge range", `r := range(0, 1 << 62)`, capped, false},
	{"enum.map of big arrays", `enum := import("enum"); a := range(0, 60000); keep := []; for { keep = append(keep, enum.map(a, func(k, v) { return v })) }`, capped, true},

	// Building strings.
	{"string doubling", `s := "x"; for { s += s }`, capped, false},
	{"string building", `s := ""; for { s += "0123456789012345678901234567890123456789" }`, capped, true},
	{"string slices with rune caches", `text := import("text"); s := text.repeat("é", 60000); keep := []; for { t := s[1:]; c := t[5]; keep = append(keep, t) }`, capped, true},
	{"map keys with rune caches", `text := import("text"); m := {}; m[text.repeat("k", 200000)] = 1; keep := []; for { for k, _ in m { c := k[1]; keep = append(keep, k) } }`, capped, true},
	{"enum keys with rune caches", `enum := import("enum"); text := import("text"); m := {}; m[text.repeat("k", 200000)] = 1; keep := []; for { enum.each(m, func(k, v) { c := k[1]; keep = append(keep, k) }) }`, capped, true},
	{"strings indexed from the end", `text := import("text"); s := text.repeat("é", 100000); for i := 0; ; i++ { c := s[99999 - i % 10] }`, []Outcome{OutcomeTimeout}, false},
	{"text.join of big strings", `text := import("text"); s := text.repeat("x", 200000); j := text.join([s, s, s], ",")`, capped, false},
	{"text.join of shared parts", `text := import("text"); ` + shared(40) + `j := text.join([a], ",")`, capped, false},
	{"text.repeat overflow", `text := import("text"); s := text.repeat("xx", 1 << 62)`, capped, false},
	{"text.replace blowup", `text := import("text"); s := text.repeat("a", 100000); r := text.replace(s, "", text.repeat("b", 100000), -1)`, capped, false},
	{"text.split into characters", `text := import("text"); p := text.split(text.repeat("a", 200000), "")`, capped, false},
	{"text.fields", `text := import("text"); p := text.fields(text.repeat("a ", 100000))`, capped, false},
	{"text.trim with a big set", `text := import("text"); s := text.trim(text.repeat("é", 100000), text.repeat("ü", 100000))`, capped, false},
	{"text.format_float precision", `text := import("text"); s := text.format_float(1.5, "f", 1 << 30, 64)`, capped, false},
	{"text.pad_left", `text := import("text"); s := text.pad_left("x", 1 << 30, " ")`, capped, false},
	{"strings kept", `text := import("text"); keep := []; for i := 0; ; i++ { keep = append(keep, text.repeat("x", 200000) + i) }`, capped, true},

	// JSON.
	{"json.encode of shared parts", `json := import("json"); ` + shared(40) + `b := json.encode(a)`, capped, false},
	{"json.encode of escapes", `json := import("json"); text := import("text"); s := text.repeat("\x01", 200000); b := json.encode([s, s])`, capped, false},
	{"json.encode of a self-reference", `json := import("json"); m := {}; m.m = m; b := json.encode(m)`, capped, false},
	{"json.decode deep", `json := import("json"); text := import("text"); x := json.decode(text.repeat("[", 100000))`, capped, false},
	{"json.decode wide", `json := import("json"); text := import("text"); x := json.decode("[" + text.repeat("0,", 100000) + "0]")`, capped, false},
	{"json.indent blowup", `json := import("json"); text := import("text"); x := json.indent("[" + text.repeat("[],", 20000) + "[]]", text.repeat(" ", 1000), "  ")`, capped, false},

	// Regular expressions.
	{"regex work", `text := import("text"); x := text.re_match("(x{1000}|y)+z", text.repeat("x", 200000))`, capped, false},
	{"regex replace blowup", `text := import("text"); x := text.re_replace("a+", text.repeat("a", 1000), text.repeat("$0", 100000))`, capped, false},
	{"regex find everything", `text := import("text"); x := text.re_find("", text.repeat("a", 200000), -1)`, capped, false},
	{"compiled regexes kept", `text := import("text"); p := text.repeat("x{1000}", 60); keep := []; for { keep = append(keep, text.re_compile(p)) }`, capped, true},
	{"compiled regex split", `text := import("text"); r := text.re_compile(""); x := r.split(text.repeat("a", 200000))`, capped, false},

	// Time and the stack.
	{"infinite loop", `for {}`, []Outcome{OutcomeTimeout}, false},
	{"long builtin calls in a loop", `text := import("text"); s := text.repeat("ab", 50000); for { x := text.re_match("(a|b)*c", s) }`, []Outcome{OutcomeTimeout}, false},
	{"deep recursion", `f := func(n) { return f(n + 1) + 1 }; x := f(0)`, []Outcome{OutcomeError}, false},
	{"spread past the stack", `f := func(...x) { return len(x) }; a := range(0, 60000); n := f(a...)`, []Outcome{OutcomeError}, false},
	{"sleep", `times := import("times"); times.sleep(10 * times.second)`, []Outcome{OutcomeError}, false},

	// What the parser and the compiler would recurse through.
	{"deep brackets", "x := " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000), compiled, false},
	{"unary operators", "x := " + strings.Repeat("!", 200000) + "true", compiled, false},
	{"long sum", "x := 1" + strings.Repeat(" + 1", 100000), compiled, false},
	{"else if chain", "x := 0\nif x == 1 {}" + strings.Repeat(" else if x == 1 {}", 5000), compiled, false},
	{"conditional chain", "x := " + strings.Repeat("true ? 1 : ", 5000) + "0", compiled, false},
	{"nested functions", strings.Repeat("f := func() {", 2000) + strings.Repeat("}", 2000), compiled, false},
	{"selector chain", "x := {}" + strings.Repeat(".a", 100000), compiled, false},
	{"call chain", "f := func() { return f }\nx := f" + strings.Repeat("()", 100000), compiled, false},
}

var (
	capped   = []Outcome{OutcomeAllocCap}
	compiled = []Outcome{outcomeCompile}
)

// The time budget of a hostile call, and of one that is long. A case that
// must end at a guard (not at the timer) gets guardBudget: room for the
// guard to trip first on a loaded 2-core machine under the race detector,
// where 150ms was sometimes not enough to build what trips it.
const (
	hostileBudget = 150 * time.Millisecond
	guardBudget   = time.Second
	longBudget    = 10 * time.Second
)

// budget is the time budget of hc's calls.
func (hc hostileCase) budget() time.Duration {
	switch {
	case hc.long:
		return longBudget
	case slices.Contains(hc.want, OutcomeTimeout):
		return hostileBudget
	}
	return guardBudget
}

// hostileReport is what the child reports.
type hostileReport struct {
	Compile   string          `json:"compile,omitempty"`
	Outcomes  []Outcome       `json:"outcomes"`
	Notes     []string        `json:"notes"`
	Durations []time.Duration `json:"durations"`
	// Goroutines before the calls and after, once back to that number or
	// after a while; Settled is how long that took.
	Before, After int
	Settled       time.Duration
	Lingering     int64
}

const hostileEnv = "LLORCH_ROUTING_HOSTILE"

func TestHostile(t *testing.T) {
	if name := os.Getenv(hostileEnv); name != "" {
		hostileChild(t, name)
		return
	}
	slack := 2 * time.Second
	rssLimit, rssMax := int64(3<<30), int64(256<<20)
	if raceEnabled {
		slack, rssMax = 6*time.Second, rssLimit
	}
	for _, hc := range hostileCases {
		t.Run(hc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHostile$", "-test.count=1", "-test.timeout=2m")
			cmd.Env = append(os.Environ(), hostileEnv+"="+hc.name)
			res := runLimited(ctx, cmd, rssLimit)
			if res.startErr != nil {
				t.Fatal(res.startErr)
			}
			if res.killed != "" || !res.state.Success() {
				t.Fatalf("the process did not survive (%s %s): %s", res.killed, res.state, res.stderrReason())
			}
			t.Logf("peak resident memory %d MiB", res.peakRSS>>20)
			if res.peakRSS > rssMax {
				t.Errorf("peak resident memory %d MiB, more than %d", res.peakRSS>>20, rssMax>>20)
			}
			var rep hostileReport
			if err := readHostileReport(res.stdout.Bytes(), &rep); err != nil {
				t.Fatalf("%v\n%s", err, res.stdout.String())
			}
			if rep.Compile != "" {
				if !slices.Contains(hc.want, outcomeCompile) {
					t.Fatalf("compile error: %s", rep.Compile)
				}
				return
			}
			for i, o := range rep.Outcomes {
				if !slices.Contains(hc.want, o) {
					t.Errorf("call %d: outcome %s (%s), want one of %v", i, o, rep.Notes[i], hc.want)
				}
				if d := rep.Durations[i]; d > hc.budget()+abortGrace+slack {
					t.Errorf("call %d returned after %v", i, d)
				}
			}
			if rep.After > rep.Before || rep.Lingering != 0 {
				t.Errorf("goroutines %d before, %d after %v; %d calls lingering", rep.Before, rep.After, rep.Settled, rep.Lingering)
			}
		})
	}
}

func readHostileReport(out []byte, rep *hostileReport) error {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "hostile-report "); ok {
			return json.Unmarshal([]byte(line), rep)
		}
	}
	return errors.New("no report from the child")
}

// hostileChild runs one case in this process, under the limits a trial's
// check process has, and prints the report.
func hostileChild(t *testing.T, name string) {
	i := slices.IndexFunc(hostileCases, func(c hostileCase) bool { return c.name == name })
	if i < 0 {
		t.Fatalf("no case %q", name)
	}
	limitSelf(1<<30, 120)
	var rep hostileReport
	rep.Before = runtime.NumGoroutine()
	cfg := Config{Timeout: hostileCases[i].budget()}
	s, err := Compile("hostile.tengo", []byte(hostileCases[i].src), cfg)
	if err != nil {
		rep.Compile = err.Error()
	} else {
		call := func(f func() Result) {
			start := time.Now()
			r := f()
			rep.Durations = append(rep.Durations, time.Since(start))
			rep.Outcomes = append(rep.Outcomes, r.Outcome)
			rep.Notes = append(rep.Notes, r.Note)
		}
		call(func() Result { _, r := s.Admit(context.Background(), newAdmit()); return r })
		call(func() Result { _, r := s.Place(context.Background(), newPlace()); return r })
		start := time.Now()
		for runtime.NumGoroutine() > rep.Before && time.Since(start) < 5*time.Second {
			time.Sleep(5 * time.Millisecond)
		}
		rep.Settled = time.Since(start)
		rep.Lingering = s.lingering.Load()
	}
	rep.After = runtime.NumGoroutine()
	b, _ := json.Marshal(&rep)
	fmt.Printf("hostile-report %s\n", b)
}

// TestLingeringNeverNegative runs many short calls at once on runners that
// go back to the pool between them, some with a budget that runs out about
// when the script ends: the count of abandoned calls must never go below
// zero and must come back to zero. A run's state swap that came after its
// result was sent could land on the next call's state (CI saw -1).
func TestLingeringNeverNegative(t *testing.T) {
	src := `n := 0; for i := 0; i < 50; i++ { n += i }; decision = {action: "admit"}`
	quick, err := Compile("quick.tengo", []byte(src), Config{Timeout: time.Second, MaxAllocs: 100000})
	if err != nil {
		t.Fatal(err)
	}
	edge, err := Compile("edge.tengo", []byte(src), Config{Timeout: 20 * time.Microsecond, MaxAllocs: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		s := quick
		if i%4 == 0 {
			s = edge
		}
		wg.Go(func() {
			for range 3000 {
				s.Admit(t.Context(), newAdmit())
				if n := s.lingering.Load(); n < 0 {
					t.Errorf("%s: lingering %d", s.name, n)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, s := range []*Script{quick, edge} {
		deadline := time.Now().Add(10 * time.Second)
		for s.lingering.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d calls still running", s.name, s.lingering.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
}
