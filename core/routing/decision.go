package routing

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/d5/tengo/v2"
)

// What a script leaves in `decision` crosses a trust boundary: these
// functions turn any tengo value into a valid decision or an error that says
// what is wrong, and never panic.

// Limits on decision fields.
const (
	maxCodeLen     = 64
	maxMessageLen  = 512
	maxReasonLen   = 200
	maxRetryAfter  = 600000
	defaultRetry   = 1000
	defaultStatus  = 403
	maxNoteScores  = 5
	maxNoteLen     = 300
	undefinedValue = "undefined"
)

// fields returns the entries of a map decision; ok is false when the value
// is undefined (no decision).
func fields(o tengo.Object) (m map[string]tengo.Object, ok bool, err error) {
	switch v := o.(type) {
	case nil:
		return nil, false, nil
	case *tengo.Undefined:
		return nil, false, nil
	case *tengo.Map:
		return v.Value, true, nil
	case *tengo.ImmutableMap:
		return v.Value, true, nil
	}
	return nil, false, fmt.Errorf("decision is %s, want a map", o.TypeName())
}

// decisionKeys checks that m has only the keys its action allows and returns
// the action and the optional reason.
func decisionKeys(m map[string]tengo.Object, allowed map[string][]string) (action, reason string, err error) {
	a, ok := m["action"]
	if !ok {
		return "", "", fmt.Errorf("decision has no action")
	}
	action, err = strField(a, "action", 32)
	if err != nil {
		return "", "", err
	}
	keys, ok := allowed[action]
	if !ok {
		return "", "", fmt.Errorf("unknown action %s", quote(action))
	}
	if k, ok := firstKey(m, func(k string) bool { return k == "action" || k == "reason" || slices.Contains(keys, k) }); ok {
		return "", "", fmt.Errorf("%s decision has unknown field %s", action, quote(k))
	}
	if r, ok := m["reason"]; ok {
		if reason, err = strField(r, "reason", maxReasonLen); err != nil {
			return "", "", err
		}
	}
	return action, reason, nil
}

var admitKeys = map[string][]string{
	ActionAdmit:  {"priority"},
	ActionReject: {"code", "message", "status"},
}

var placeKeys = map[string][]string{
	ActionDispatch: {"worker"},
	ActionWait:     {"retry_after_ms"},
	ActionScore:    {"scores"},
}

// admitDecision validates an admit decision. decided is false when the
// script left `decision` undefined.
func admitDecision(o tengo.Object) (d AdmitDecision, reason string, decided bool, err error) {
	m, decided, err := fields(o)
	if !decided || err != nil {
		return d, "", false, err
	}
	action, reason, err := decisionKeys(m, admitKeys)
	if err != nil {
		return d, "", true, err
	}
	switch action {
	case ActionAdmit:
		if p, ok := m["priority"]; ok {
			s, err := strField(p, "priority", 32)
			if err != nil {
				return d, "", true, err
			}
			if s != "batch" && s != "interactive" {
				return d, "", true, fmt.Errorf("priority %s is not batch or interactive", quote(s))
			}
			d.Priority = s
		}
	case ActionReject:
		c, ok := m["code"]
		if !ok {
			return d, "", true, fmt.Errorf("reject decision has no code")
		}
		if d.Code, err = strField(c, "code", maxCodeLen); err != nil {
			return d, "", true, err
		}
		if !validCode(d.Code) {
			return d, "", true, fmt.Errorf("code %s: want 1 to %d of A-Z a-z 0-9 _ . -", quote(d.Code), maxCodeLen)
		}
		if msg, ok := m["message"]; ok {
			if d.Message, err = strField(msg, "message", maxMessageLen); err != nil {
				return d, "", true, err
			}
		}
		d.Status = defaultStatus
		if st, ok := m["status"]; ok {
			n, ok := st.(*tengo.Int)
			if !ok {
				return d, "", true, fmt.Errorf("status is %s, want an int", st.TypeName())
			}
			if n.Value != 400 && n.Value != 403 && n.Value != 429 {
				return d, "", true, fmt.Errorf("status %d is not 400, 403 or 429", n.Value)
			}
			d.Status = int(n.Value)
		}
	}
	d.Action = action
	return d, reason, true, nil
}

// placeDecision validates a place decision against the candidates.
func placeDecision(o tengo.Object, cands []Candidate) (d PlaceDecision, reason string, decided bool, err error) {
	m, decided, err := fields(o)
	if !decided || err != nil {
		return d, "", false, err
	}
	action, reason, err := decisionKeys(m, placeKeys)
	if err != nil {
		return d, "", true, err
	}
	switch action {
	case ActionDispatch:
		w, ok := m["worker"]
		if !ok {
			return d, "", true, fmt.Errorf("dispatch decision has no worker")
		}
		id, err := strField(w, "worker", math.MaxInt)
		if err != nil {
			return d, "", true, err
		}
		if !slices.ContainsFunc(cands, func(c Candidate) bool { return c.ID == id }) {
			return d, "", true, fmt.Errorf("worker %s is not a candidate", quote(id))
		}
		d.Worker = id
	case ActionWait:
		d.RetryAfterMs = defaultRetry
		if r, ok := m["retry_after_ms"]; ok {
			var ms float64
			switch v := r.(type) {
			case *tengo.Int:
				ms = float64(v.Value)
			case *tengo.Float:
				ms = v.Value
			default:
				return d, "", true, fmt.Errorf("retry_after_ms is %s, want a number", r.TypeName())
			}
			if !(ms >= 1 && ms <= maxRetryAfter) { // also rejects NaN
				return d, "", true, fmt.Errorf("retry_after_ms %v is not in 1..%d", ms, maxRetryAfter)
			}
			d.RetryAfterMs = int64(ms)
		}
	case ActionScore:
		s, ok := m["scores"]
		if !ok {
			return d, "", true, fmt.Errorf("score decision has no scores")
		}
		sm, ok, err := fields(s)
		if !ok || err != nil {
			return d, "", true, fmt.Errorf("scores is %s, want a map", typeName(s))
		}
		if d.Scores, err = scores(sm, cands); err != nil {
			return d, "", true, err
		}
	}
	d.Action = action
	return d, reason, true, nil
}

// scores validates a score map: every key a candidate, every value a finite
// number. It looks the candidates up in the script's map rather than building
// an index of them.
func scores(sm map[string]tengo.Object, cands []Candidate) (map[string]float64, error) {
	out := make(map[string]float64, len(sm))
	for i := range cands {
		id := cands[i].ID
		v, ok := sm[id]
		if !ok {
			continue
		}
		if _, dup := out[id]; dup {
			continue
		}
		var f float64
		switch n := v.(type) {
		case *tengo.Int:
			f = float64(n.Value)
		case *tengo.Float:
			f = n.Value
		default:
			return nil, fmt.Errorf("score of %s is %s, want a number", quote(id), typeName(v))
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("score of %s is %v, want a finite number", quote(id), f)
		}
		out[id] = f
	}
	if len(out) < len(sm) {
		id, _ := firstKey(sm, func(id string) bool { _, ok := out[id]; return ok })
		return nil, fmt.Errorf("scores names %s, which is not a candidate", quote(id))
	}
	return out, nil
}

// firstKey returns the smallest key of m that known rejects, so that an
// error names the same key every time.
func firstKey[V any](m map[string]V, known func(string) bool) (key string, found bool) {
	for k := range m {
		if !known(k) && (!found || k < key) {
			key, found = k, true
		}
	}
	return key, found
}

// strField returns a string field of at most limit bytes of valid UTF-8.
func strField(o tengo.Object, name string, limit int) (string, error) {
	s, ok := o.(*tengo.String)
	if !ok {
		return "", fmt.Errorf("%s is %s, want a string", name, typeName(o))
	}
	if len(s.Value) > limit {
		return "", fmt.Errorf("%s is longer than %d bytes", name, limit)
	}
	if !utf8.ValidString(s.Value) {
		return "", fmt.Errorf("%s is not valid UTF-8", name)
	}
	return s.Value, nil
}

func typeName(o tengo.Object) string {
	if o == nil {
		return undefinedValue
	}
	return o.TypeName()
}

func validCode(s string) bool {
	if s == "" || len(s) > maxCodeLen {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
		default:
			return false
		}
	}
	return true
}

// quote quotes a script-supplied string for a note, shortened.
func quote(s string) string {
	if len(s) > 40 {
		s = strings.ToValidUTF8(s[:40], "") + "…"
	}
	return strconv.Quote(s)
}

// describeAdmit and describePlace say what a decision does, in the words
// of the task explanation and of check/replay output.
func describeAdmit(d AdmitDecision) string {
	switch d.Action {
	case ActionAdmit:
		if d.Priority != "" {
			return "admit as " + d.Priority
		}
		return "admit"
	case ActionReject:
		s := fmt.Sprintf("reject %d %s", d.Status, d.Code)
		if d.Message != "" {
			s += ": " + d.Message
		}
		return s
	}
	return "built-in"
}

func describePlace(d PlaceDecision) string {
	switch d.Action {
	case ActionDispatch:
		return "dispatch " + d.Worker
	case ActionWait:
		return fmt.Sprintf("wait %dms", d.RetryAfterMs)
	case ActionScore:
		return "score " + topScores(d.Scores, maxNoteScores)
	}
	return "built-in"
}

// topScores lists the n highest scores (ties: lower id first) as
// "w2=1 w5=0.5 +3 more", without sorting the whole map.
func topScores(scores map[string]float64, n int) string {
	if len(scores) == 0 {
		return "(none)"
	}
	type entry struct {
		id string
		v  float64
	}
	top := make([]entry, 0, n)
	before := func(a, b entry) bool { return a.v > b.v || a.v == b.v && a.id < b.id }
	for id, v := range scores {
		e := entry{id, v}
		if len(top) == n && !before(e, top[n-1]) {
			continue
		}
		if len(top) < n {
			top = append(top, e)
		} else {
			top[n-1] = e
		}
		for i := len(top) - 1; i > 0 && before(top[i], top[i-1]); i-- {
			top[i], top[i-1] = top[i-1], top[i]
		}
	}
	var b strings.Builder
	for i, e := range top {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(e.id)
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(e.v, 'g', 4, 64))
	}
	if more := len(scores) - len(top); more > 0 {
		fmt.Fprintf(&b, " +%d more", more)
	}
	return b.String()
}
