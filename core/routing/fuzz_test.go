package routing

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/d5/tengo/v2"
	llembed "github.com/llorch/llorch/embed"
)

// FuzzDecision feeds arbitrary tengo values, as a script could leave them in
// `decision`, to the admit and place validators: they must never panic, and
// whatever they accept must satisfy the decision contract.
func FuzzDecision(f *testing.F) {
	for _, seed := range [][]byte{
		{},
		{kMap, 1, 0, kKey, 2},             // {action: "admit"}
		{kMap, 2, 0, kKey, 3, 5, kKey, 7}, // {action: "dispatch", worker: "w1"}
		{kMap, 2, 0, kKey, 4, 9, kInt, 0, 0, 0, 0, 0, 0, 1, 0xf4}, // {action: "wait", retry_after_ms: 500}
		{kMap, 2, 0, kKey, 6, 10, kMap, 2, 7, kFloat, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 8, kInt, 0, 0, 0, 0, 0, 0, 0, 2},
		{kMap, 4, 0, kKey, 11, 12, kString, 3, 'B', 'A', 'D', 13, kInt, 0, 0, 0, 0, 0, 0, 1, 0x90, 14, kString, 1, 'x'},
		{kImmutableMap, 2, 0, kKey, 2, 15, kKey, 16},                                // immutable({action: "admit", priority: "batch"})
		{kMap, 2, 0, kKey, 6, 10, kMap, 1, 7, kFloat, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1}, // a NaN score
		{kArray, 2, kInt, 1, kUndefined},
	} {
		f.Add(seed)
	}
	cands := []Candidate{{ID: "w1"}, {ID: "w2"}, {ID: ""}}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &decoder{data: data}
		obj := d.value(0)

		ad, _, decided, err := admitDecision(obj)
		switch {
		case err != nil || !decided:
			if ad != (AdmitDecision{}) && !decided {
				t.Fatalf("undecided admit %+v", ad)
			}
		case ad.Action == ActionAdmit:
			if ad.Priority != "" && ad.Priority != "batch" && ad.Priority != "interactive" {
				t.Fatalf("priority %q", ad.Priority)
			}
		case ad.Action == ActionReject:
			if !validCode(ad.Code) || len(ad.Message) > maxMessageLen || (ad.Status != 400 && ad.Status != 403 && ad.Status != 429) {
				t.Fatalf("reject %+v", ad)
			}
		default:
			t.Fatalf("admit action %q", ad.Action)
		}
		if decided && err == nil {
			describeAdmit(ad)
		}

		pd, _, decided, err := placeDecision(obj, cands)
		isCand := func(id string) bool { return slices.ContainsFunc(cands, func(c Candidate) bool { return c.ID == id }) }
		switch {
		case err != nil || !decided:
			if !decided && (pd.Action != "" || pd.Scores != nil) {
				t.Fatalf("undecided place %+v", pd)
			}
		case pd.Action == ActionDispatch:
			if !isCand(pd.Worker) {
				t.Fatalf("dispatch to %q", pd.Worker)
			}
		case pd.Action == ActionWait:
			if pd.RetryAfterMs < 1 || pd.RetryAfterMs > maxRetryAfter {
				t.Fatalf("wait %d", pd.RetryAfterMs)
			}
		case pd.Action == ActionScore:
			for id, v := range pd.Scores {
				if !isCand(id) || math.IsNaN(v) || math.IsInf(v, 0) {
					t.Fatalf("score %q=%v", id, v)
				}
			}
		default:
			t.Fatalf("place action %q", pd.Action)
		}
		if decided && err == nil {
			describePlace(pd)
		}
	})
}

// Kinds of value in fuzz input.
const (
	kUndefined = iota
	kInt
	kFloat
	kString
	kBool
	kMap
	kImmutableMap
	kArray
	kChar
	kBytes
	kKey // a string from fuzzKeys, so the fuzzer reaches deep quickly
	kError
	numKinds
)

var fuzzKeys = []string{
	"action", "reason", "admit", "dispatch", "wait", "worker", "score", "w1", "w2",
	"retry_after_ms", "scores", "reject", "code", "status", "message",
	"priority", "batch", "interactive", "",
}

// decoder turns fuzz bytes into a tengo value.
type decoder struct {
	data []byte
}

func (d *decoder) byte() byte {
	if len(d.data) == 0 {
		return 0
	}
	b := d.data[0]
	d.data = d.data[1:]
	return b
}

func (d *decoder) uint64() uint64 {
	var b [8]byte
	n := copy(b[:], d.data)
	d.data = d.data[n:]
	return binary.BigEndian.Uint64(b[:])
}

func (d *decoder) str() string {
	n := min(int(d.byte()), len(d.data))
	s := string(d.data[:n])
	d.data = d.data[n:]
	return s
}

func (d *decoder) key() string {
	if k := d.byte(); k&0x80 != 0 {
		return d.str()
	} else {
		return fuzzKeys[int(k)%len(fuzzKeys)]
	}
}

func (d *decoder) value(depth int) tengo.Object {
	if len(d.data) == 0 {
		return tengo.UndefinedValue
	}
	kind := int(d.byte()) % numKinds
	if depth > 4 && (kind == kMap || kind == kImmutableMap || kind == kArray || kind == kError) {
		kind = kInt
	}
	switch kind {
	case kInt:
		return &tengo.Int{Value: int64(d.uint64())}
	case kFloat:
		return &tengo.Float{Value: math.Float64frombits(d.uint64())}
	case kString:
		return &tengo.String{Value: d.str()}
	case kBool:
		if d.byte()&1 == 1 {
			return tengo.TrueValue
		}
		return tengo.FalseValue
	case kMap, kImmutableMap:
		n := int(d.byte()) % 8
		m := make(map[string]tengo.Object, n)
		for range n {
			k := d.key()
			m[k] = d.value(depth + 1)
		}
		if kind == kMap {
			return &tengo.Map{Value: m}
		}
		return &tengo.ImmutableMap{Value: m}
	case kArray:
		n := int(d.byte()) % 8
		a := make([]tengo.Object, n)
		for i := range a {
			a[i] = d.value(depth + 1)
		}
		return &tengo.Array{Value: a}
	case kChar:
		return &tengo.Char{Value: rune(d.uint64())}
	case kBytes:
		return &tengo.Bytes{Value: []byte(d.str())}
	case kKey:
		return &tengo.String{Value: d.key()}
	case kError:
		return &tengo.Error{Value: d.value(depth + 1)}
	}
	return tengo.UndefinedValue
}

// FuzzScript compiles arbitrary source and runs both stages under a small
// budget: Compile and the calls must never panic or crash, every outcome
// must agree with its error, and nothing of a call may keep running after
// it returned.
func FuzzScript(f *testing.F) {
	for _, src := range [][]byte{llembed.DefaultRoutingScript, example(f, "reject_big_batch.tengo"),
		example(f, "pin_model_to_pool.tengo"), example(f, "prefer_cheapest_gpu.tengo")} {
		f.Add(string(src))
	}
	for _, hc := range hostileCases {
		if len(hc.src) < 4096 {
			f.Add(hc.src)
		}
	}
	for _, src := range []string{
		`text := import("text"); json := import("json"); fmt := import("fmt"); times := import("times")`,
		`m := {a: [1, "x", 2.5, 'c', true, undefined, error("e"), immutable({b: bytes(3)})]}; s := string(m) + m.a[1:3]`,
		`f := func(a, ...b) { return [a] + b }; x := f(1, 2, 3); x += x; y := x == copy(x); z := {k: x}[string(y)]`,
		`for k, v in {a: 1, b: "2"} { decision = {action: "admit", reason: k + v} }`,
	} {
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		s, err := Compile("fuzz.tengo", []byte(src), Config{Timeout: 20 * time.Millisecond, MaxAllocs: 20000})
		if err != nil {
			var ce *CompileError
			if !errors.As(err, &ce) || !errors.Is(err, ErrCompile) {
				t.Fatalf("compile error of type %T: %v", err, err)
			}
			return
		}
		for _, r := range []Result{runAdmit(t, s), runPlace(t, s)} {
			if r.Outcome.Fallback() != (r.Err != nil) {
				t.Fatalf("outcome %s with error %v", r.Outcome, r.Err)
			}
		}
		deadline := time.Now().Add(30 * time.Second) // an aborted VM on a loaded machine
		for s.lingering.Load() != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d calls still running", s.lingering.Load())
			}
			time.Sleep(time.Millisecond)
		}
	})
}

func runAdmit(t *testing.T, s *Script) Result {
	_, r := s.Admit(t.Context(), newAdmit())
	return r
}

func runPlace(t *testing.T, s *Script) Result {
	_, r := s.Place(t.Context(), newPlace())
	return r
}

// FuzzSnapshot replays arbitrary snapshot JSON, as `routing replay` reads
// it, through the default script and the examples: no panic, and a snapshot
// that parses prints one admit and one place line per task.
func FuzzSnapshot(f *testing.F) {
	seed, err := os.ReadFile("testdata/snapshot.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"tasks": [{"id": "t", "model": "m", "max_tokens": -1, "labels": {"": ""}}], "candidates": [{"id": "t", "model": "m", "slots_total": -3, "load": 1e308}]}`))
	f.Add([]byte(`{"now": "0001-01-01T00:00:00Z", "queue": {"m": {"batch": 9223372036854775807}}, "tasks": [{}, {}]}`))
	var scripts []*Script
	for _, src := range [][]byte{llembed.DefaultRoutingScript, example(f, "reject_big_batch.tengo"),
		example(f, "pin_model_to_pool.tengo"), example(f, "prefer_cheapest_gpu.tengo")} {
		s, err := Compile("s.tengo", src, Config{Timeout: time.Second})
		if err != nil {
			f.Fatal(err)
		}
		scripts = append(scripts, s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var snap Snapshot
		parses := json.Unmarshal(data, &snap) == nil
		for _, s := range scripts {
			var out bytes.Buffer
			err := replay(&out, s, "s.tengo", "snap.json", data)
			if !parses {
				if err == nil {
					t.Fatal("replayed a snapshot that does not parse")
				}
				continue
			}
			if err != nil && !errors.Is(err, ErrFallback) {
				t.Fatalf("replay: %v", err)
			}
			if lines := strings.Count(out.String(), "\n"); lines != 2+2*len(snap.Tasks) {
				t.Fatalf("%d lines for %d tasks:\n%s", lines, len(snap.Tasks), out.String())
			}
		}
	})
}
