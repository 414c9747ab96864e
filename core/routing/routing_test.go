package routing

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// compile compiles src with a generous budget (tests run on loaded machines
// with the race detector) unless cfg says otherwise.
func compile(t *testing.T, src string, cfg ...Config) *Script {
	t.Helper()
	c := Config{Timeout: 5 * time.Second}
	if len(cfg) > 0 {
		c = cfg[0]
	}
	s, err := Compile("t.tengo", []byte(src), c)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}

func newAdmit() AdmitInput {
	return AdmitInput{
		Task:  newTask(),
		Queue: map[string]map[string]int{"llama": {"interactive": 2, "batch": 5}},
		Now:   time.UnixMilli(1735732800123),
	}
}

func newPlace() PlaceInput {
	return PlaceInput{Task: newTask(), Candidates: SampleSnapshot().Candidates[:3], Now: time.UnixMilli(1735732800123)}
}

func TestAdmit(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    AdmitDecision
		outcome Outcome
		note    string
	}{
		{"admit", `decision = {action: "admit"}`,
			AdmitDecision{Action: "admit"}, OutcomeOK, "script: admit"},
		{"priority change", `decision = {action: "admit", priority: "batch"}`,
			AdmitDecision{Action: "admit", Priority: "batch"}, OutcomeOK, "script: admit as batch"},
		{"immutable decision", `decision = immutable({action: "admit", priority: "interactive"})`,
			AdmitDecision{Action: "admit", Priority: "interactive"}, OutcomeOK, "script: admit as interactive"},
		{"reject", `decision = {action: "reject", code: "TOO_BIG", message: "no", status: 400}`,
			AdmitDecision{Action: "reject", Code: "TOO_BIG", Message: "no", Status: 400}, OutcomeOK, "script: reject 400 TOO_BIG: no"},
		{"reject 429", `decision = {action: "reject", code: "SLOW_DOWN", status: 429, reason: "tenant over quota"}`,
			AdmitDecision{Action: "reject", Code: "SLOW_DOWN", Status: 429}, OutcomeOK, "script: reject 429 SLOW_DOWN (tenant over quota)"},
		{"reject default status", `decision = {action: "reject", code: "NO"}`,
			AdmitDecision{Action: "reject", Code: "NO", Status: 403}, OutcomeOK, "script: reject 403 NO"},
		{"multi-line message", `decision = {action: "reject", code: "X", message: "a\nb"}`,
			AdmitDecision{Action: "reject", Code: "X", Message: "a\nb", Status: 403}, OutcomeOK, "script: reject 403 X: a b"},
		{"no decision", `x := 1`, AdmitDecision{}, OutcomeDefault, "script: no decision"},
		{"explicit undefined", `decision = undefined`, AdmitDecision{}, OutcomeDefault, "script: no decision"},
		{"not a map", `decision = "admit"`, AdmitDecision{}, OutcomeInvalid,
			"script ignored: invalid decision: decision is string, want a map"},
		{"no action", `decision = {priority: "batch"}`, AdmitDecision{}, OutcomeInvalid,
			"script ignored: invalid decision: decision has no action"},
		{"unknown action", `decision = {action: "dispatch", worker: "w1"}`, AdmitDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: unknown action "dispatch"`},
		{"bad priority", `decision = {action: "admit", priority: "urgent"}`, AdmitDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: priority "urgent" is not batch or interactive`},
		{"typo field", `decision = {action: "admit", prority: "batch"}`, AdmitDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: admit decision has unknown field "prority"`},
		{"bad status", `decision = {action: "reject", code: "X", status: 500}`, AdmitDecision{}, OutcomeInvalid,
			"script ignored: invalid decision: status 500 is not 400, 403 or 429"},
		{"status as string", `decision = {action: "reject", code: "X", status: "400"}`, AdmitDecision{}, OutcomeInvalid,
			"script ignored: invalid decision: status is string, want an int"},
		{"no code", `decision = {action: "reject", status: 400}`, AdmitDecision{}, OutcomeInvalid,
			"script ignored: invalid decision: reject decision has no code"},
		{"empty code", `decision = {action: "reject", code: ""}`, AdmitDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: code "": want 1 to 64 of A-Z a-z 0-9 _ . -`},
		{"code with spaces", `decision = {action: "reject", code: "NOT OK"}`, AdmitDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: code "NOT OK": want 1 to 64 of A-Z a-z 0-9 _ . -`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compile(t, tt.src)
			d, r := s.Admit(t.Context(), newAdmit())
			if d != tt.want || r.Outcome != tt.outcome || r.Note != tt.note {
				t.Errorf("got %+v, %s, %q\nwant %+v, %s, %q", d, r.Outcome, r.Note, tt.want, tt.outcome, tt.note)
			}
			if (r.Err != nil) != tt.outcome.Fallback() {
				t.Errorf("Err = %v with outcome %s", r.Err, r.Outcome)
			}
			if tt.outcome == OutcomeInvalid && !errors.Is(r.Err, ErrInvalid) {
				t.Errorf("Err = %v, want ErrInvalid", r.Err)
			}
		})
	}
}

func TestPlace(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    PlaceDecision
		outcome Outcome
		note    string
	}{
		{"dispatch", `decision = {action: "dispatch", worker: "w2"}`,
			PlaceDecision{Action: "dispatch", Worker: "w2"}, OutcomeOK, "script: dispatch w2"},
		{"pin by pool", `for c in candidates { if c.pool == "cpu" { decision = {action: "dispatch", worker: c.id} } }`,
			PlaceDecision{Action: "dispatch", Worker: "w3"}, OutcomeOK, "script: dispatch w3"},
		{"wait", `decision = {action: "wait", retry_after_ms: 250, reason: "pool busy"}`,
			PlaceDecision{Action: "wait", RetryAfterMs: 250}, OutcomeOK, "script: wait 250ms (pool busy)"},
		{"wait float", `decision = {action: "wait", retry_after_ms: 1.5 * 100}`,
			PlaceDecision{Action: "wait", RetryAfterMs: 150}, OutcomeOK, "script: wait 150ms"},
		{"wait default", `decision = {action: "wait"}`,
			PlaceDecision{Action: "wait", RetryAfterMs: 1000}, OutcomeOK, "script: wait 1000ms"},
		{"score", `decision = {action: "score", scores: {w1: 2, w3: -0.5}}`,
			PlaceDecision{Action: "score", Scores: map[string]float64{"w1": 2, "w3": -0.5}}, OutcomeOK, "script: score w1=2 w3=-0.5"},
		{"score none", `decision = {action: "score", scores: {}}`,
			PlaceDecision{Action: "score", Scores: map[string]float64{}}, OutcomeOK, "script: score (none)"},
		{"no decision", ``, PlaceDecision{}, OutcomeDefault, "script: no decision"},
		{"not a candidate", `decision = {action: "dispatch", worker: "w9"}`, PlaceDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: worker "w9" is not a candidate`},
		{"worker not a string", `decision = {action: "dispatch", worker: 1}`, PlaceDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: worker is int, want a string`},
		{"no worker", `decision = {action: "dispatch"}`, PlaceDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: dispatch decision has no worker`},
		{"wait zero", `decision = {action: "wait", retry_after_ms: 0}`, PlaceDecision{}, OutcomeInvalid,
			"script ignored: invalid decision: retry_after_ms 0 is not in 1..600000"},
		{"wait too long", `decision = {action: "wait", retry_after_ms: 600001}`, PlaceDecision{}, OutcomeInvalid,
			"script ignored: invalid decision: retry_after_ms 600001 is not in 1..600000"},
		{"score unknown worker", `decision = {action: "score", scores: {w1: 1, w9: 1}}`, PlaceDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: scores names "w9", which is not a candidate`},
		{"score not finite", `math := import("math"); decision = {action: "score", scores: {w1: math.inf(1)}}`, PlaceDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: score of "w1" is +Inf, want a finite number`},
		{"score NaN", `decision = {action: "score", scores: {w1: 0.0 / 0.0}}`, PlaceDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: score of "w1" is NaN, want a finite number`},
		{"score string", `decision = {action: "score", scores: {w1: "1"}}`, PlaceDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: score of "w1" is string, want a number`},
		{"scores not a map", `decision = {action: "score", scores: [1]}`, PlaceDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: scores is array, want a map`},
		{"wait with worker", `decision = {action: "wait", worker: "w1"}`, PlaceDecision{}, OutcomeInvalid,
			`script ignored: invalid decision: wait decision has unknown field "worker"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compile(t, tt.src)
			d, r := s.Place(t.Context(), newPlace())
			if !equalPlace(d, tt.want) || r.Outcome != tt.outcome || r.Note != tt.note {
				t.Errorf("got %+v, %s, %q\nwant %+v, %s, %q", d, r.Outcome, r.Note, tt.want, tt.outcome, tt.note)
			}
			if (r.Err != nil) != tt.outcome.Fallback() {
				t.Errorf("Err = %v with outcome %s", r.Err, r.Outcome)
			}
		})
	}
}

func equalPlace(a, b PlaceDecision) bool {
	if a.Action != b.Action || a.Worker != b.Worker || a.RetryAfterMs != b.RetryAfterMs || len(a.Scores) != len(b.Scores) {
		return false
	}
	if (a.Scores == nil) != (b.Scores == nil) {
		return false
	}
	for k, v := range a.Scores {
		if w, ok := b.Scores[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestInputs checks every input a script sees by having the script spell
// them out: in a reject message at admit, in a wait reason at place.
func TestInputs(t *testing.T) {
	s := compile(t, `
fmt := import("fmt")
if stage == "admit" {
	msg := fmt.sprintf("%s %s %s %s %d %d %s %s team=%s plan=%s q=%d/%d now=%d cands=%d",
		stage, task.id, task.model, task.priority, task.max_tokens, task.prompt_tokens,
		task.session_id, task.key, task.labels.team, task.headers["x-tenant-plan"],
		queue.llama.interactive, queue["llama"]["batch"], now, len(candidates))
	decision = {action: "reject", code: "ECHO", message: msg}
} else {
	c := candidates[1]
	msg := fmt.sprintf("%s n=%d %s %s %s %d/%d load=%.2f tps=%.0f cached=%d gpu=%s cost=%s labels=%d queue=%d now=%d",
		stage, len(candidates), c.id, c.pool, c.model, c.slots_free, c.slots_total, c.load,
		c.tokens_per_second, c.cached_prefix, c.labels.gpu, c.labels["cost_per_hour"],
		len(candidates[2].labels), len(queue), now)
	decision = {action: "wait", reason: msg}
}
`)
	in := newAdmit()
	in.Task.Headers = map[string]string{"X-Tenant-Plan": "pro"}
	d, r := s.Admit(t.Context(), in)
	if want := "admit t1 llama interactive 256 100 s1 key-1 team=a plan=pro q=2/5 now=1735732800123 cands=0"; d.Message != want {
		t.Errorf("admit inputs:\n got %q (%s %v)\nwant %q", d.Message, r.Outcome, r.Err, want)
	}
	_, r = s.Place(t.Context(), newPlace())
	want := "script: wait 1000ms (place n=3 w2 gpu-b llama 3/4 load=0.25 tps=60 cached=64 gpu=l4 cost=0.80 labels=1 queue=0 now=1735732800123)"
	if r.Note != want {
		t.Errorf("place inputs:\n got %q (%v)\nwant %q", r.Note, r.Err, want)
	}
}

func TestInputsReadOnly(t *testing.T) {
	for _, src := range []string{
		`task.model = "qwen"`,
		`task.labels.team = "b"`,
		`candidates[0] = {}`,
		`candidates[0].slots_free = 100`,
	} {
		t.Run(src, func(t *testing.T) {
			_, r := compile(t, src).Place(t.Context(), newPlace())
			if r.Outcome != OutcomeError || !errors.Is(r.Err, ErrRuntime) {
				t.Errorf("%s: %v", r.Outcome, r.Err)
			}
		})
	}
	// A script may replace an input variable; that changes nothing outside.
	in := newPlace()
	_, r := compile(t, `candidates = []; task = {}`).Place(t.Context(), in)
	if r.Outcome != OutcomeDefault || in.Candidates[0].ID != "w1" {
		t.Errorf("%s %v", r.Outcome, r.Err)
	}
}

// TestFreshGlobals: every call starts from the script's initial state, also
// when the VM is reused.
func TestFreshGlobals(t *testing.T) {
	s := compile(t, `
n := 0
n += 1
if task.id == "first" { decision = {action: "admit", priority: n == 1 ? "batch" : "interactive"} }`)
	for i := range 5 {
		in := newAdmit()
		in.Task.ID = "first"
		if d, r := s.Admit(t.Context(), in); d.Priority != "batch" {
			t.Fatalf("call %d: %+v %s %v", i, d, r.Outcome, r.Err)
		}
		in.Task.ID = "second"
		if d, r := s.Admit(t.Context(), in); r.Outcome != OutcomeDefault {
			t.Fatalf("call %d: decision left over: %+v %s", i, d, r.Outcome)
		}
	}
}

func TestRuntimeError(t *testing.T) {
	s := compile(t, "x := 1\ny := x + candidates[0].id\ndecision = {action: \"wait\"}")
	_, r := s.Place(t.Context(), newPlace())
	if r.Outcome != OutcomeError || !errors.Is(r.Err, ErrRuntime) {
		t.Fatalf("%s %v", r.Outcome, r.Err)
	}
	if want := "script ignored: runtime error: invalid operation: int + string at t.tengo:2:6"; r.Note != want {
		t.Errorf("note %q, want %q", r.Note, want)
	}
	// A Go panic inside a builtin is an error too, and the script still runs.
	s = compile(t, `text := import("text"); if stage == "admit" { x := text.repeat("x", -1) }; decision = {action: "wait"}`)
	if _, r := s.Admit(t.Context(), newAdmit()); r.Outcome != OutcomeError || !strings.Contains(r.Note, "panic") {
		t.Errorf("%s %q", r.Outcome, r.Note)
	}
	if _, r := s.Place(t.Context(), newPlace()); r.Outcome != OutcomeOK {
		t.Errorf("after a panic: %s %v", r.Outcome, r.Err)
	}
}

func TestTimeout(t *testing.T) {
	const budget = 20 * time.Millisecond
	s := compile(t, `for { x := 1 }`, Config{Timeout: budget})
	_, r := s.Place(t.Context(), newPlace())
	if r.Outcome != OutcomeTimeout || !errors.Is(r.Err, ErrTimeout) {
		t.Fatalf("%s %v", r.Outcome, r.Err)
	}
	if r.Note != "script ignored: timeout after 20ms" {
		t.Errorf("note %q", r.Note)
	}
	if r.Duration < budget {
		t.Errorf("returned after %v, before the budget", r.Duration)
	}
	waitLingering(t, s)
}

// TestNothingOutlivesTheBudget: when a call runs out of its budget its
// script stops, also when it was inside a builtin call: the call returns
// within the budget and abortGrace (plus a loaded machine's slack), nothing
// is left running and the goroutines come back to where they were.
func TestNothingOutlivesTheBudget(t *testing.T) {
	before := runtime.NumGoroutine()
	const budget = 5 * time.Millisecond
	for _, src := range []string{
		`for {}`,
		`text := import("text"); s := text.repeat("ab", 50000); for { x := text.re_match("(a|b)*c", s) }`,
		`a := range(0, 60000); for { b := a == a }`,
		`text := import("text"); s := text.repeat("ab", 100000); for { b := text.contains(s, "abc") }`,
	} {
		s := compile(t, src, Config{Timeout: budget})
		for range 5 {
			_, r := s.Admit(t.Context(), newAdmit())
			if r.Outcome != OutcomeTimeout {
				t.Errorf("%s: %s %v", src, r.Outcome, r.Err)
			}
			if r.Duration > budget+abortGrace+time.Second {
				t.Errorf("%s: returned after %v", src, r.Duration)
			}
		}
		waitLingering(t, s)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLingering waits until no abandoned call of s is still running.
func waitLingering(t *testing.T, s *Script) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for s.lingering.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls still running", s.lingering.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBusy(t *testing.T) {
	s := compile(t, `decision = {action: "admit"}`)
	s.lingering.Store(maxLingering)
	_, r := s.Admit(t.Context(), newAdmit())
	if r.Outcome != OutcomeError || !errors.Is(r.Err, ErrBusy) {
		t.Errorf("%s %v", r.Outcome, r.Err)
	}
	s.lingering.Store(0)
	if _, r := s.Admit(t.Context(), newAdmit()); r.Outcome != OutcomeOK {
		t.Errorf("%s %v", r.Outcome, r.Err)
	}
}

func TestContext(t *testing.T) {
	s := compile(t, `for {}`)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, r := s.Place(ctx, newPlace()); r.Outcome != OutcomeError || !errors.Is(r.Err, context.Canceled) {
		t.Errorf("canceled: %s %v", r.Outcome, r.Err)
	}
	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, r := s.Place(ctx, newPlace()); r.Outcome != OutcomeTimeout || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Errorf("deadline: %s %v", r.Outcome, r.Err)
	}
	waitLingering(t, s)
}

func TestAllocCap(t *testing.T) {
	tests := []struct{ name, src string }{
		{"array loop", `a := []; for i := 0; i < 100000000; i++ { a = append(a, i) }`},
		{"map loop", `m := {}; for i := 0; i < 100000000; i++ { m[string(i)] = i }`},
		{"string doubling", `s := "x"; for { s += s }`},
		{"huge string", `text := import("text"); s := text.repeat("x", 1 << 40)`},
		{"huge padding", `text := import("text"); s := text.pad_left("x", 1 << 30, " ")`},
		{"huge bytes", `b := bytes(1 << 30)`},
		{"huge range", `r := range(0, 1 << 62)`},
		{"huge range down", `r := range(1 << 62, -(1 << 62), 3)`},
		{"self-referencing string", `a := [0]; a[0] = a; s := string(a)`},
		{"self-referencing json", `json := import("json"); m := {}; m.m = m; s := json.encode(m)`},
		{"self-referencing sprintf", `fmt := import("fmt"); m := {}; m.m = m; s := fmt.sprintf("%v", m)`},
		{"shared parts copied", `a := [1]; for i := 0; i < 60; i++ { a = [a, a] }; b := copy(a)`},
		{"shared parts formatted", `a := [1]; for i := 0; i < 60; i++ { a = [a, a] }; s := format("%v", a)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compile(t, tt.src, Config{Timeout: 5 * time.Second, MaxAllocs: 10000})
			_, r := s.Admit(t.Context(), newAdmit())
			if r.Outcome != OutcomeAllocCap || !errors.Is(r.Err, ErrAllocCap) {
				t.Errorf("%s %v", r.Outcome, r.Err)
			}
			if !strings.HasPrefix(r.Note, "script ignored: allocation cap: ") {
				t.Errorf("note %q", r.Note)
			}
		})
	}
	// Not a size problem: tengo has no string repetition operator.
	_, r := compile(t, `s := "x" * 1000000000`).Admit(t.Context(), newAdmit())
	if r.Outcome != OutcomeError {
		t.Errorf(`"x" * huge: %s %v`, r.Outcome, r.Err)
	}
	// Ranges under the limit work.
	_, r = compile(t, `if len(range(0, 1000)) == 1000 { decision = {action: "admit"} }`).Admit(t.Context(), newAdmit())
	if r.Outcome != OutcomeOK {
		t.Errorf("small range: %s %v", r.Outcome, r.Err)
	}
}

func TestSandbox(t *testing.T) {
	for _, src := range []string{
		`os := import("os")`,
		`rand := import("rand")`,
		`x := import("base64")`,
		`x := import("./helper")`,
		`x := import("/etc/passwd")`,
	} {
		_, err := Compile("t.tengo", []byte(src), Config{})
		var ce *CompileError
		if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "not found") || ce.Line != 1 {
			t.Errorf("%s: %v", src, err)
		}
	}
	// What is left out of allowed modules is undefined at run time.
	for _, src := range []string{
		`times := import("times"); times.sleep(10 * times.second)`,
		`fmt := import("fmt"); fmt.println("to stdout")`,
		`fmt := import("fmt"); fmt.printf("%d", 1)`,
	} {
		_, r := compile(t, src).Admit(t.Context(), newAdmit())
		if r.Outcome != OutcomeError || !strings.Contains(r.Note, "not callable: undefined") {
			t.Errorf("%s: %s %q", src, r.Outcome, r.Note)
		}
	}
	// The allowed modules work.
	s := compile(t, `
math := import("math"); text := import("text"); times := import("times")
json := import("json"); enum := import("enum"); fmt := import("fmt")
ok := math.abs(-2.5) == 2.5 && text.to_upper("a") == "A" && times.second > 0 &&
	json.decode(json.encode({a: 1})).a == 1 && enum.all([1, 2], func(k, v) { return v > 0 }) &&
	fmt.sprintf("%d", 3) == "3" && text.re_match("^w[0-9]$", "w1") && text.re_compile("w").match("w1")
if ok { decision = {action: "admit"} }`)
	if _, r := s.Admit(t.Context(), newAdmit()); r.Outcome != OutcomeOK {
		t.Errorf("modules: %s %v", r.Outcome, r.Err)
	}
}

func TestCompileError(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"syntax", "x := 1\ny := 2 +* 3\n", "routing: bad.tengo:2:9: expected operand, found '*'"},
		{"unresolved", "x := 1\n  decision = y", "routing: bad.tengo:2:14: unresolved reference 'y'"},
		{"redeclared input", "task := 1", "routing: bad.tengo:1:1: 'task' redeclared in this block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile("bad.tengo", []byte(tt.src), Config{})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) || !errors.Is(err, ErrCompile) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := Compile("big.tengo", make([]byte, MaxSourceBytes+1), Config{}); !errors.Is(err, ErrCompile) {
		t.Errorf("oversized script: %v", err)
	}
	if _, err := Compile("t.tengo", nil, Config{Timeout: -1}); err == nil {
		t.Error("negative timeout accepted")
	}
}

func TestObserve(t *testing.T) {
	var mu sync.Mutex
	var got []string
	cfg := Config{Timeout: 5 * time.Second, Observe: func(stage string, o Outcome, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if d <= 0 {
			t.Errorf("duration %v", d)
		}
		got = append(got, stage+"/"+string(o))
	}}
	s := compile(t, `if stage == "admit" { decision = {action: "admit"} } else { decision = {action: "dispatch", worker: "nobody"} }`, cfg)
	s.Admit(t.Context(), newAdmit())
	s.Place(t.Context(), newPlace())
	if want := []string{"admit/ok", "place/invalid"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("observed %v, want %v", got, want)
	}
}

// TestInputsReused: a runner updates its input objects in place between
// calls; each call must see its own inputs.
func TestInputsReused(t *testing.T) {
	s := compile(t, `
fmt := import("fmt")
ids := ""
for c in candidates {
	ids += fmt.sprintf("%s/%s/%d/%.1f/%s ", c.id, c.pool, c.slots_free, c.load, c.labels.gpu)
}
decision = {action: "wait", reason: fmt.sprintf("%s %s %s n=%d: %s", task.id, task.priority, task.headers.h, len(candidates), ids)}`)
	in := newPlace()
	in.Task.Headers = map[string]string{"H": "1"}
	tests := []struct {
		change func(*PlaceInput)
		want   string
	}{
		{func(*PlaceInput) {}, "t1 interactive 1 n=3: w1/gpu-a/2/0.5/a100 w2/gpu-b/3/0.2/l4 w3/cpu/3/0.2/<undefined> "},
		{func(in *PlaceInput) {
			in.Task.ID, in.Task.Priority, in.Task.Headers = "t2", "batch", map[string]string{"h": "2"}
			in.Candidates = []Candidate{
				{ID: "w9", Pool: "gpu-c", SlotsFree: 1, Load: 0.9, Labels: map[string]string{"gpu": "h100"}},
				{ID: "w2", Pool: "gpu-b", SlotsFree: 0, Load: 0.25, Labels: map[string]string{"gpu": "l40"}},
			}
		}, "t2 batch 2 n=2: w9/gpu-c/1/0.9/h100 w2/gpu-b/0/0.2/l40 "},
		{func(in *PlaceInput) { in.Candidates = in.Candidates[1:]; in.Task.Headers = nil },
			"t2 batch <undefined> n=1: w2/gpu-b/0/0.2/l40 "},
		{func(in *PlaceInput) { in.Candidates = nil }, "t2 batch <undefined> n=0: "},
		{func(in *PlaceInput) { in.Candidates = newPlace().Candidates }, "t2 batch <undefined> n=3: w1/gpu-a/2/0.5/a100 w2/gpu-b/3/0.2/l4 w3/cpu/3/0.2/<undefined> "},
	}
	for i, tt := range tests {
		tt.change(&in)
		_, r := s.Place(t.Context(), in)
		if want := "script: wait 1000ms (" + tt.want + ")"; r.Note != want {
			t.Errorf("call %d:\n got %q\nwant %q", i, r.Note, want)
		}
	}
}

// TestHeavyRunnerDropped: a runner whose call built more than
// maxPooledCharge is not kept (its VM would keep what the call left on its
// stack); a light one is.
func TestHeavyRunnerDropped(t *testing.T) {
	heavy := compile(t, `text := import("text"); s := text.repeat("x", 250000) + "y"`)
	if _, r := heavy.Admit(t.Context(), newAdmit()); r.Outcome != OutcomeDefault {
		t.Fatalf("%s %v", r.Outcome, r.Err)
	}
	if n := len(heavy.idle); n != 0 {
		t.Errorf("%d runners kept after a heavy call", n)
	}
	light := compile(t, `s := "x" + "y"`)
	light.Admit(t.Context(), newAdmit())
	if n := len(light.idle); n != 1 {
		t.Errorf("%d runners kept after a light call", n)
	}
}
