package routing

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/d5/tengo/v2"
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
