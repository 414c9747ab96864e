package routing

import (
	"strings"
	"time"

	"github.com/d5/tengo/v2"
)

// A script's inputs are immutable maps and arrays. Building them is most of
// the cost of a call (a Go map per candidate), so every runner keeps the
// objects of its last call and updates them in place: numbers are
// overwritten, maps keep their keys, and a string or a labels map is replaced
// only when its value changed (tengo caches a string's runes, so a String is
// never changed). This is safe because a runner serves one call at a time and
// nothing of a call outlives it: a script keeps no state, and the decision is
// read before the runner is reused.

// emptyMap stands for every empty labels, headers or queue map. An empty
// immutable map has no state a script could change or a reader race on.
var emptyMap = &tengo.ImmutableMap{Value: map[string]tengo.Object{}}

// Indexes of the input globals: Compile defines them first, in this order.
const (
	gStage = iota
	gTask
	gQueue
	gNow
	gCandidates
	gDecision
	numInputs
)

var inputNames = [numInputs]string{"stage", "task", "queue", "now", "candidates", "decision"}

// emptyArray is `candidates` in the admit stage.
var emptyArray = &tengo.ImmutableArray{}

// inputs are a runner's input objects.
type inputs struct {
	admit, place tengo.String
	now          tengo.Int
	task         *taskObj
	cands        []*candObj
	candElems    []tengo.Object
	candArray    tengo.ImmutableArray
}

func (in *inputs) setAdmit(g []tengo.Object, a *AdmitInput) {
	in.admit.Value = StageAdmit
	in.now.Value = unixMs(a.Now)
	g[gStage] = &in.admit
	g[gTask] = in.setTask(&a.Task)
	g[gQueue] = queueMap(a.Queue)
	g[gNow] = &in.now
	g[gCandidates] = emptyArray
	g[gDecision] = tengo.UndefinedValue
}

func (in *inputs) setPlace(g []tengo.Object, p *PlaceInput) {
	in.place.Value = StagePlace
	in.now.Value = unixMs(p.Now)
	n := len(p.Candidates)
	for len(in.cands) < n {
		in.cands = append(in.cands, nil)
	}
	if cap(in.candElems) < n {
		in.candElems = make([]tengo.Object, n)
	}
	elems := in.candElems[:n]
	for i := range p.Candidates {
		c := &p.Candidates[i]
		if in.cands[i] == nil {
			in.cands[i] = newCandObj(c)
		} else {
			in.cands[i].set(c)
		}
		elems[i] = &in.cands[i].m
	}
	in.candArray.Value = elems[:n:n] // no room: a script's candidates + [x] must copy
	g[gStage] = &in.place
	g[gTask] = in.setTask(&p.Task)
	g[gQueue] = emptyMap
	g[gNow] = &in.now
	g[gCandidates] = &in.candArray
	g[gDecision] = tengo.UndefinedValue
}

func (in *inputs) setTask(t *Task) tengo.Object {
	if in.task == nil {
		in.task = newTaskObj(t)
	} else {
		in.task.set(t)
	}
	return &in.task.m
}

type taskObj struct {
	m                                 tengo.ImmutableMap
	id, model, priority, session, key *tengo.String
	maxTokens, promptTokens           tengo.Int
	labels, headers                   *tengo.ImmutableMap
}

func newTaskObj(t *Task) *taskObj {
	o := &taskObj{
		id: str(t.ID), model: str(t.Model), priority: str(t.Priority), session: str(t.SessionID), key: str(t.Key),
		maxTokens: tengo.Int{Value: int64(t.MaxTokens)}, promptTokens: tengo.Int{Value: int64(t.PromptTokens)},
		labels: strMap(t.Labels, false), headers: strMap(t.Headers, true),
	}
	o.m.Value = map[string]tengo.Object{
		"id":            o.id,
		"model":         o.model,
		"priority":      o.priority,
		"max_tokens":    &o.maxTokens,
		"prompt_tokens": &o.promptTokens,
		"session_id":    o.session,
		"key":           o.key,
		"labels":        o.labels,
		"headers":       o.headers,
	}
	return o
}

func (o *taskObj) set(t *Task) {
	m := o.m.Value
	setStr(m, "id", &o.id, t.ID)
	setStr(m, "model", &o.model, t.Model)
	setStr(m, "priority", &o.priority, t.Priority)
	setStr(m, "session_id", &o.session, t.SessionID)
	setStr(m, "key", &o.key, t.Key)
	o.maxTokens.Value = int64(t.MaxTokens)
	o.promptTokens.Value = int64(t.PromptTokens)
	setMap(m, "labels", &o.labels, t.Labels, false)
	setMap(m, "headers", &o.headers, t.Headers, true)
}

type candObj struct {
	m                                   tengo.ImmutableMap
	id, pool, model                     *tengo.String
	slotsFree, slotsTotal, cachedPrefix tengo.Int
	load, tokensPerSecond               tengo.Float
	labels                              *tengo.ImmutableMap
}

func newCandObj(c *Candidate) *candObj {
	o := &candObj{
		id: str(c.ID), pool: str(c.Pool), model: str(c.Model),
		slotsFree: tengo.Int{Value: int64(c.SlotsFree)}, slotsTotal: tengo.Int{Value: int64(c.SlotsTotal)},
		cachedPrefix: tengo.Int{Value: int64(c.CachedPrefix)},
		load:         tengo.Float{Value: c.Load}, tokensPerSecond: tengo.Float{Value: c.TokensPerSecond},
		labels: strMap(c.Labels, false),
	}
	o.m.Value = map[string]tengo.Object{
		"id":                o.id,
		"pool":              o.pool,
		"model":             o.model,
		"slots_free":        &o.slotsFree,
		"slots_total":       &o.slotsTotal,
		"load":              &o.load,
		"tokens_per_second": &o.tokensPerSecond,
		"cached_prefix":     &o.cachedPrefix,
		"labels":            o.labels,
	}
	return o
}

func (o *candObj) set(c *Candidate) {
	m := o.m.Value
	setStr(m, "id", &o.id, c.ID)
	setStr(m, "pool", &o.pool, c.Pool)
	setStr(m, "model", &o.model, c.Model)
	o.slotsFree.Value = int64(c.SlotsFree)
	o.slotsTotal.Value = int64(c.SlotsTotal)
	o.cachedPrefix.Value = int64(c.CachedPrefix)
	o.load.Value = c.Load
	o.tokensPerSecond.Value = c.TokensPerSecond
	setMap(m, "labels", &o.labels, c.Labels, false)
}

func str(v string) *tengo.String { return &tengo.String{Value: v} }

// setStr points m[key] and *p at a String holding v, a new one if *p holds
// another value.
func setStr(m map[string]tengo.Object, key string, p **tengo.String, v string) {
	if (*p).Value != v {
		*p = str(v)
		m[key] = *p
	}
}

// setMap is setStr for a labels or headers map.
func setMap(m map[string]tengo.Object, key string, p **tengo.ImmutableMap, v map[string]string, lower bool) {
	if !sameStrMap(*p, v, lower) {
		*p = strMap(v, lower)
		m[key] = *p
	}
}

// strMap builds an immutable map of strings; lower puts the keys in lower
// case (header names, as scripts look them up).
func strMap(v map[string]string, lower bool) *tengo.ImmutableMap {
	if len(v) == 0 {
		return emptyMap
	}
	m := make(map[string]tengo.Object, len(v))
	for k, s := range v {
		if lower {
			k = strings.ToLower(k)
		}
		m[k] = str(s)
	}
	return &tengo.ImmutableMap{Value: m}
}

// sameStrMap reports whether strMap(v, lower) would equal m.
func sameStrMap(m *tengo.ImmutableMap, v map[string]string, lower bool) bool {
	if len(m.Value) != len(v) {
		return false
	}
	for k, s := range v {
		if lower {
			k = strings.ToLower(k)
		}
		e, ok := m.Value[k].(*tengo.String)
		if !ok || e.Value != s {
			return false
		}
	}
	return true
}

// queueMap builds `queue`; it is small, so it is built for every call.
func queueMap(q map[string]map[string]int) tengo.Object {
	if len(q) == 0 {
		return emptyMap
	}
	v := make(map[string]tengo.Object, len(q))
	for model, byPrio := range q {
		m := make(map[string]tengo.Object, len(byPrio))
		for prio, n := range byPrio {
			m[prio] = &tengo.Int{Value: int64(n)}
		}
		v[model] = &tengo.ImmutableMap{Value: m}
	}
	return &tengo.ImmutableMap{Value: v}
}

func unixMs(t time.Time) int64 {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UnixMilli()
}
