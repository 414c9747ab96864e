package routing

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/d5/tengo/v2"
	"github.com/d5/tengo/v2/parser"
)

// Script is a compiled routing script. It is safe for concurrent use: every
// call runs on its own VM and globals (pooled), over bytecode shared
// read-only.
type Script struct {
	name       string
	src        []byte
	cfg        Config
	bytecode   *tengo.Bytecode
	numGlobals int
	mods       []int // the guarded modules it imports (fText...)
	// idle holds runners between calls; a runner keeps its VM and its input
	// objects warm, so it is kept out of sync.Pool, which drops at GC.
	idle chan *runner
	// lingering counts calls that returned to their caller (timeout,
	// cancel) while their VM was still running.
	lingering atomic.Int64
}

// CompileError is a parse or compile error at a place in the script. Its
// text is "routing: FILE:LINE:COL: message".
type CompileError struct {
	File         string
	Line, Column int // 0 when unknown
	Msg          string
}

func (e *CompileError) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("routing: %s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("routing: %s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// Unwrap makes errors.Is(err, ErrCompile) true.
func (e *CompileError) Unwrap() error { return ErrCompile }

// Compile compiles a script. name is used in error positions (usually the
// file name). Imports are limited to the sandbox's modules, and the script is
// rewritten so that every operation tengo does not bound calls a guard (see
// rewrite.go).
func Compile(name string, src []byte, cfg Config) (s *Script, err error) {
	defer func() {
		if p := recover(); p != nil { // a defect in tengo's parser or compiler
			s, err = nil, &CompileError{File: name, Msg: fmt.Sprintf("internal error: %v", p)}
		}
	}()
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(src) > MaxSourceBytes {
		return nil, &CompileError{File: name, Msg: fmt.Sprintf("script is larger than %d bytes", MaxSourceBytes)}
	}
	src = append([]byte(nil), src...)
	if err := prescan(name, src); err != nil {
		return nil, err
	}
	fset := parser.NewFileSet()
	file := fset.AddFile(name, -1, len(src))
	ast, err := parser.NewParser(file, src, nil).ParseFile()
	if err != nil {
		return nil, compileError(name, err)
	}
	mods, err := rewrite(name, file, ast)
	if err != nil {
		return nil, err
	}
	st := tengo.NewSymbolTable()
	for _, n := range inputNames {
		st.Define(n)
	}
	c := tengo.NewCompiler(file, st, nil, sandboxModules, nil)
	// Defined after NewCompiler, which defines the builtins: the fixed
	// globals take the builtins' names.
	for i, n := range fixedNames {
		if st.Define(n).Index != numInputs+i {
			panic("routing: fixed globals out of place")
		}
	}
	if err := c.Compile(ast); err != nil {
		return nil, compileError(name, err)
	}
	bc := c.Bytecode()
	bc.RemoveDuplicates()
	n := st.MaxSymbols() + 1
	if n > tengo.GlobalsSize {
		return nil, &CompileError{File: name, Msg: fmt.Sprintf("more than %d globals", tengo.GlobalsSize)}
	}
	// Constants are shared by every call; tengo caches a string's runes in
	// the string the first time it is indexed, so fill the caches now,
	// while nothing else can see them.
	for _, k := range bc.Constants {
		if str, ok := k.(*tengo.String); ok {
			str.IndexGet(&tengo.Int{})
		}
	}
	return &Script{name: name, src: src, cfg: cfg, bytecode: bc, numGlobals: n, mods: mods,
		idle: make(chan *runner, max(4, 2*runtime.GOMAXPROCS(0)))}, nil
}

func compileError(name string, err error) error {
	var list parser.ErrorList
	var ce *tengo.CompilerError
	switch {
	case errors.As(err, &list) && len(list) > 0:
		msg := list[0].Msg
		if len(list) > 1 {
			msg += fmt.Sprintf(" (and %d more errors)", len(list)-1)
		}
		return &CompileError{File: name, Line: list[0].Pos.Line, Column: list[0].Pos.Column, Msg: msg}
	case errors.As(err, &ce):
		pos := ce.FileSet.Position(ce.Node.Pos())
		return &CompileError{File: name, Line: pos.Line, Column: pos.Column, Msg: ce.Err.Error()}
	}
	return &CompileError{File: name, Msg: err.Error()}
}

// Name returns the name the script was compiled with.
func (s *Script) Name() string { return s.name }

// Source returns a copy of the script's source.
func (s *Script) Source() []byte { return append([]byte(nil), s.src...) }

// Config returns the limits the script runs under, defaults filled in.
func (s *Script) Config() Config { return s.cfg }

// Admit runs the script with stage "admit". The decision is valid when
// Result.Outcome is OutcomeOK; otherwise it is the zero AdmitDecision and the
// built-in policy decides.
func (s *Script) Admit(ctx context.Context, in AdmitInput) (AdmitDecision, Result) {
	start := time.Now()
	var d AdmitDecision
	var note string
	outcome, err := s.call(ctx,
		func(r *runner) { r.in.setAdmit(r.globals, &in) },
		func(obj tengo.Object) (o Outcome, err error) {
			var reason string
			var decided bool
			d, reason, decided, err = admitDecision(obj)
			o, note, err = judge(decided, err, reason)
			return o, err
		})
	if outcome == OutcomeOK {
		note = "script: " + describeAdmit(d) + note
	} else {
		d = AdmitDecision{}
	}
	return d, s.result(StageAdmit, start, outcome, err, note)
}

// Place runs the script with stage "place". The decision is valid when
// Result.Outcome is OutcomeOK; otherwise it is the zero PlaceDecision and the
// built-in policy decides.
func (s *Script) Place(ctx context.Context, in PlaceInput) (PlaceDecision, Result) {
	start := time.Now()
	var d PlaceDecision
	var note string
	outcome, err := s.call(ctx,
		func(r *runner) { r.in.setPlace(r.globals, &in) },
		func(obj tengo.Object) (o Outcome, err error) {
			var reason string
			var decided bool
			d, reason, decided, err = placeDecision(obj, in.Candidates)
			o, note, err = judge(decided, err, reason)
			return o, err
		})
	if outcome == OutcomeOK {
		note = "script: " + describePlace(d) + note
	} else {
		d = PlaceDecision{}
	}
	return d, s.result(StagePlace, start, outcome, err, note)
}

// judge turns a validated decision into an outcome and, for OutcomeOK, the
// reason suffix of the note.
func judge(decided bool, err error, reason string) (Outcome, string, error) {
	switch {
	case err != nil:
		return OutcomeInvalid, "", fmt.Errorf("%w: %v", ErrInvalid, err)
	case !decided:
		return OutcomeDefault, "", nil
	case reason != "":
		return OutcomeOK, " (" + reason + ")", nil
	}
	return OutcomeOK, "", nil
}

func (s *Script) result(stage string, start time.Time, o Outcome, err error, note string) Result {
	switch {
	case o == OutcomeDefault:
		note = "script: no decision"
	case err != nil:
		note = "script ignored: " + strings.TrimPrefix(err.Error(), "routing: ")
	}
	r := Result{Outcome: o, Err: err, Note: oneLine(note, maxNoteLen), Duration: time.Since(start)}
	if s.cfg.Observe != nil {
		s.cfg.Observe(stage, o, r.Duration)
	}
	return r
}

// oneLine replaces control characters with spaces and cuts s to at most
// limit bytes.
func oneLine(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > limit {
		s = strings.ToValidUTF8(s[:limit-len("…")], "") + "…"
	}
	return s
}

// runner is a VM with its globals and its guards. A runner goes back to the
// pool only after a clean run: tengo keeps a failed run's error in the VM,
// and an aborted VM may still be running.
type runner struct {
	vm      *tengo.VM
	globals []tengo.Object
	in      inputs
	g       *guards
	done    chan error
	state   atomic.Int32
}

const (
	running int32 = iota
	finished
	abandoned
)

// abortGrace is how long a call waits, after its budget or its context ran
// out, for the script to stop. tengo stops a VM between two instructions
// and every builtin a script can reach is bounded, so it stops well within
// this; a run that does not is abandoned (see ErrBusy).
const abortGrace = 25 * time.Millisecond

// call runs the script once with the inputs fill sets, and hands what the
// script left in `decision` to read, before the runner (whose input objects
// the decision may point to) is reused. The VM runs on its own goroutine:
// when the budget or the context runs out, the caller aborts it and waits at
// most abortGrace for it to stop, so that the caller gets its answer in time
// and, but for a defect, nothing of the call keeps running.
func (s *Script) call(ctx context.Context, fill func(*runner), read func(tengo.Object) (Outcome, error)) (Outcome, error) {
	if err := ctx.Err(); err != nil {
		return ctxOutcome(err), ctxError(err)
	}
	if n := s.lingering.Load(); n >= maxLingering {
		return OutcomeError, fmt.Errorf("%w: %d earlier calls still running", ErrBusy, n)
	}
	r := s.getRunner()
	fill(r)
	copy(r.globals[numInputs:], r.g.fixed[:])
	r.g.m.reset()
	r.state.Store(running)
	go s.run(r)

	timer := time.NewTimer(s.cfg.Timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-r.done:
	case <-timer.C:
		s.stop(r)
		return OutcomeTimeout, fmt.Errorf("%w after %v", ErrTimeout, s.cfg.Timeout)
	case <-ctx.Done():
		s.stop(r)
		return ctxOutcome(ctx.Err()), ctxError(ctx.Err())
	}
	if err != nil {
		if allocCapError(err) {
			return OutcomeAllocCap, fmt.Errorf("%w: %s", ErrAllocCap, flatten(err))
		}
		return OutcomeError, fmt.Errorf("%w: %s", ErrRuntime, flatten(err))
	}
	o, err := read(r.globals[gDecision])
	s.putRunner(r)
	return o, err
}

func (s *Script) getRunner() *runner {
	select {
	case r := <-s.idle:
		return r
	default:
		g := make([]tengo.Object, s.numGlobals)
		return &runner{vm: tengo.NewVM(s.bytecode, g, s.cfg.MaxAllocs), globals: g,
			g: newGuards(s.mods), done: make(chan error, 1)}
	}
}

// maxPooledCharge: a runner whose call built more than this is dropped
// rather than kept, since tengo's VM keeps references to what its last run
// left on its stack.
const maxPooledCharge = 1 << 20

// putRunner keeps r for the next call after a clean run. The script's own
// globals are cleared (they would keep its objects alive); the input and
// fixed globals are set again by the next call.
func (s *Script) putRunner(r *runner) {
	if MaxCallBytes-r.g.m.left > maxPooledCharge {
		return
	}
	clear(r.globals[numInputs+numFixed:])
	select {
	case s.idle <- r:
	default:
	}
}

func (s *Script) run(r *runner) {
	err := runVM(r.vm)
	// The swap comes before the send: once the caller has the result it may
	// put r back in the pool and a next call may set r.state again, which a
	// late swap here would then take for this run's.
	if !r.state.CompareAndSwap(running, finished) {
		s.lingering.Add(-1) // abandoned: counted by stop
	}
	r.done <- err
}

// stop aborts r's run and waits up to abortGrace for it to end; a run that
// is still going then is abandoned and counted in s.lingering until it
// ends. The runner is not reused either way.
func (s *Script) stop(r *runner) {
	r.g.m.stop.Store(true)
	r.vm.Abort()
	grace := time.NewTimer(abortGrace)
	defer grace.Stop()
	select {
	case <-r.done:
		return
	case <-grace.C:
	}
	// Counted before the swap: the run's own decrement, which follows the
	// swap, can then never take the count below zero.
	s.lingering.Add(1)
	if !r.state.CompareAndSwap(running, abandoned) {
		s.lingering.Add(-1)
	}
}

func runVM(vm *tengo.VM) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return vm.Run()
}

func ctxOutcome(err error) Outcome {
	if errors.Is(err, context.DeadlineExceeded) {
		return OutcomeTimeout
	}
	return OutcomeError
}

func ctxError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return fmt.Errorf("routing: %w", err)
}

// flatten turns tengo's multi-line "Runtime Error: msg\n\tat pos" into one
// line.
func flatten(err error) string {
	s := strings.TrimPrefix(err.Error(), "Runtime Error: ")
	return strings.ReplaceAll(s, "\n\tat ", " at ")
}
