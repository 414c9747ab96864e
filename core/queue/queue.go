package queue

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Class is a task's priority class.
type Class uint8

// The two classes. Interactive tasks dispatch before batch tasks.
const (
	Interactive Class = 0
	Batch       Class = 1
)

const numClasses = 2

// ParseClass parses "interactive" or "batch", the api.Priority* strings.
func ParseClass(s string) (Class, bool) {
	switch s {
	case "interactive":
		return Interactive, true
	case "batch":
		return Batch, true
	}
	return 0, false
}

// String returns "interactive" or "batch", the reverse of ParseClass.
func (c Class) String() string {
	switch c {
	case Interactive:
		return "interactive"
	case Batch:
		return "batch"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Policy says what Push does when a class is full.
type Policy uint8

const (
	// Reject refuses the new task with ErrFull.
	Reject Policy = iota
	// DropLRU evicts the oldest batch task of the key with the most batch
	// tasks queued and admits the new one.
	DropLRU
)

// ParsePolicy parses "reject" or "drop-lru".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "reject":
		return Reject, nil
	case "drop-lru":
		return DropLRU, nil
	}
	return 0, fmt.Errorf("queue: unknown policy %q (want reject or drop-lru)", s)
}

// String returns "reject" or "drop-lru", the reverse of ParsePolicy.
func (p Policy) String() string {
	switch p {
	case Reject:
		return "reject"
	case DropLRU:
		return "drop-lru"
	}
	return "policy(" + strconv.Itoa(int(p)) + ")"
}

// Config sizes a queue.
type Config struct {
	// Capacity is the number of tasks each class holds, at least 1.
	Capacity int
	// StarvationLimit is how long a batch task waits before it dispatches
	// among interactive tasks, before those enqueued after it (see the
	// package doc). Zero never promotes.
	StarvationLimit time.Duration
	// Policy is what Push does when a class is full.
	Policy Policy
}

// Validate reports the first problem with c, or nil.
func (c Config) Validate() error {
	switch {
	case c.Capacity < 1:
		return fmt.Errorf("queue: capacity must be at least 1, got %d", c.Capacity)
	case c.StarvationLimit < 0:
		return fmt.Errorf("queue: starvation limit must not be negative, got %s", c.StarvationLimit)
	case c.Policy > DropLRU:
		return fmt.Errorf("queue: unknown policy %d", c.Policy)
	}
	return nil
}

// Errors returned by Push.
var (
	ErrFull      = errors.New("queue: full")
	ErrDuplicate = errors.New("queue: duplicate id")
	ErrClass     = errors.New("queue: unknown class")
)

// MaxWeight is the largest weight a key may have; weights are 1..MaxWeight.
const MaxWeight = 1000

// unit is the virtual time one task of a weight-1 key costs; a key of
// weight w pays unit/w. Integer tags keep the order exact and portable.
const unit = 1 << 20

// Key is who a task is queued for: fair queueing shares each class among
// keys in proportion to their weights. The zero Key is one key of weight 1.
type Key struct {
	Name   string
	Weight int // 1..MaxWeight; out of range counts as the nearest bound
}

func (k Key) cost() uint64 { return unit / uint64(min(max(k.Weight, 1), MaxWeight)) }

// Dropped is the task DropLRU evicted to admit another.
type Dropped[T any] struct {
	ID  string
	Key string // the key it was queued for: the key with the most batch tasks
	V   T
}

// node is one queued task, linked into its key's FIFO in its class.
type node[T any] struct {
	prev, next *node[T] // in its flow, oldest first
	f          *flow[T]
	id         string
	seq        uint64 // enqueue order across the whole queue
	start      uint64 // virtual start tag
	at         time.Time
	v          T
}

// before is the fair order within a class: by start tag, then enqueue order.
func (n *node[T]) before(m *node[T]) bool {
	return n.start < m.start || (n.start == m.start && n.seq < m.seq)
}

// flow is one key's FIFO in one class. Its tags never decrease from head to
// tail, so a class's order is a merge of its flows by head.
type flow[T any] struct {
	head, tail *node[T]
	n          int
	key        Key
	class      Class
	finish     uint64 // the finish tag of the last task pushed
	hi         int    // index in its class's heap; -1 while empty
}

// class is one priority class: its flows by key, and a min-heap of the
// non-empty ones by head.
type class[T any] struct {
	flows  map[string]*flow[T]
	heap   []*flow[T]
	n      int
	vtime  uint64    // the start tag of the last task taken (dispatched)
	lastAt time.Time // the latest enqueue time given
}

// Queue is a bounded two-class queue, fair across keys within each class.
// The zero value is not usable; call New. A Queue is not safe for
// concurrent use.
type Queue[T any] struct {
	cfg     Config
	classes [numClasses]class[T]
	byID    map[string]*node[T]
	seq     uint64
	free    *node[T] // recycled nodes, linked through next
	walks   [2]walk[T]
	walking bool
}

// New returns an empty queue. It panics if cfg is invalid (see
// Config.Validate): a configuration is checked where it is read.
func New[T any](cfg Config) *Queue[T] {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	q := &Queue[T]{cfg: cfg, byID: make(map[string]*node[T], cfg.Capacity)}
	for c := range q.classes {
		q.classes[c].flows = map[string]*flow[T]{}
	}
	return q
}

// Config returns the configuration the queue was made with.
func (q *Queue[T]) Config() Config { return q.cfg }

// full reports whether class c has no room: it holds Capacity tasks, or the
// queue holds 2*Capacity (interactive tasks can grow past Capacity by
// evicting batch tasks, and then batch has less room).
func (q *Queue[T]) full(c Class) bool {
	return q.classes[c].n >= q.cfg.Capacity || q.Len() >= 2*q.cfg.Capacity
}

// Push enqueues v under id in class c for key k at time now.
//
// When the class is full, with Reject it returns ErrFull and the queue is
// unchanged. With DropLRU it removes the oldest batch task of the key that
// has the most batch tasks queued (ties: the key whose oldest task is
// oldest), returns it with ok true, and admits v; when there is no batch task
// to drop it returns ErrFull. A duplicate id gives ErrDuplicate.
//
// Enqueue times are kept non-decreasing within a class: a now earlier than
// the latest given in the class counts as that time.
func (q *Queue[T]) Push(id string, c Class, k Key, now time.Time, v T) (d Dropped[T], ok bool, err error) {
	if err := q.check(id, c); err != nil {
		return d, false, err
	}
	if q.full(c) {
		victim := q.victim()
		if q.cfg.Policy != DropLRU || victim == nil {
			return d, false, ErrFull
		}
		n := victim.head
		d, ok = Dropped[T]{ID: n.id, Key: victim.key.Name, V: n.v}, true
		q.remove(n)
	}
	q.append(id, c, k, now, v)
	return d, ok, nil
}

// victim is the batch flow DropLRU takes from: the most tasks, then the
// oldest head. nil when batch is empty.
func (q *Queue[T]) victim() *flow[T] {
	var best *flow[T]
	for _, f := range q.classes[Batch].heap {
		if best == nil || f.n > best.n || (f.n == best.n && f.head.seq < best.head.seq) {
			best = f
		}
	}
	return best
}

// Readmit enqueues v under id in class c for key k at time now whatever the
// capacity: for tasks that were admitted before (restored after a restart),
// which must never be refused or make another task be dropped for room they
// were already granted. A duplicate id gives ErrDuplicate.
func (q *Queue[T]) Readmit(id string, c Class, k Key, now time.Time, v T) error {
	if err := q.check(id, c); err != nil {
		return err
	}
	q.append(id, c, k, now, v)
	return nil
}

// check refuses an unknown class and a duplicate id.
func (q *Queue[T]) check(id string, c Class) error {
	if c >= numClasses {
		return ErrClass
	}
	if _, dup := q.byID[id]; dup {
		return ErrDuplicate
	}
	return nil
}

// flowOf returns k's flow in class c, made when missing, with k's weight.
func (q *Queue[T]) flowOf(c Class, k Key) *flow[T] {
	cl := &q.classes[c]
	f := cl.flows[k.Name]
	if f == nil {
		f = &flow[T]{class: c, hi: -1}
		cl.flows[k.Name] = f
	}
	f.key = k
	return f
}

// append adds a task at the tail of its key's flow. Its start tag is the
// class's virtual time, or the finish of the key's previous task if that is
// later (the key is backlogged): a key that idled starts at the current
// virtual time and banks nothing.
func (q *Queue[T]) append(id string, c Class, k Key, now time.Time, v T) {
	cl := &q.classes[c]
	if now.Before(cl.lastAt) {
		now = cl.lastAt
	}
	cl.lastAt = now
	f := q.flowOf(c, k)
	n := q.newNode()
	q.seq++
	n.id, n.seq, n.at, n.v, n.f = id, q.seq, now, v, f
	n.start = max(cl.vtime, f.finish)
	f.finish = n.start + k.cost()
	n.prev = f.tail
	if f.tail == nil {
		f.head = n
	} else {
		f.tail.next = n
	}
	f.tail = n
	f.n++
	cl.n++
	if f.n == 1 {
		cl.push(f)
	}
	q.byID[id] = n
}

// Ticket is a task's place in the queue, as Take returns it.
type Ticket struct {
	seq   uint64
	start uint64
	at    time.Time
	class Class
	key   Key
}

// Take removes the task id to dispatch it and returns its place, so that
// Restore can put it back there. Taking a task advances its class's virtual
// time to the task's start tag (Remove, for tasks that leave without being
// served, does not).
func (q *Queue[T]) Take(id string) (T, Ticket, bool) {
	n, ok := q.byID[id]
	if !ok {
		var zero T
		return zero, Ticket{}, false
	}
	f := n.f
	cl := &q.classes[f.class]
	cl.vtime = max(cl.vtime, n.start)
	v, tk := n.v, Ticket{seq: n.seq, start: n.start, at: n.at, class: f.class, key: f.key}
	q.remove(n)
	return v, tk, true
}

// Restore puts a task back at the place Take gave it: in its key's FIFO
// among the tasks queued now, in enqueue order, with its old start tag, so a
// task whose attempt failed returns ahead of its key's later tasks and at
// its old turn among the other keys. It does so whatever the capacity: it
// is never refused or the cause of a drop. A zero Ticket gives ErrClass; a
// duplicate id ErrDuplicate.
func (q *Queue[T]) Restore(id string, tk Ticket, v T) error {
	if tk.seq == 0 || tk.class >= numClasses {
		return ErrClass
	}
	if _, dup := q.byID[id]; dup {
		return ErrDuplicate
	}
	cl := &q.classes[tk.class]
	f := cl.flows[tk.key.Name]
	if f == nil {
		f = q.flowOf(tk.class, tk.key)
	}
	n := q.newNode()
	n.id, n.seq, n.start, n.at, n.v, n.f = id, tk.seq, tk.start, tk.at, v, f
	next := f.head
	for next != nil && next.seq < tk.seq {
		next = next.next
	}
	// Tags never decrease along a flow.
	if next == nil {
		n.prev = f.tail
	} else {
		n.prev = next.prev
		n.start = min(n.start, next.start)
	}
	if n.prev != nil {
		n.start = max(n.start, n.prev.start)
		n.prev.next = n
	} else {
		f.head = n
	}
	n.next = next
	if next != nil {
		next.prev = n
	} else {
		f.tail = n
	}
	f.n++
	cl.n++
	switch {
	case f.n == 1:
		cl.push(f)
	case f.head == n:
		cl.fix(f.hi)
	}
	q.byID[id] = n
	return nil
}

func (q *Queue[T]) newNode() *node[T] {
	n := q.free
	if n == nil {
		return new(node[T])
	}
	q.free = n.next
	n.next = nil
	return n
}

// remove unlinks n from its flow, forgets its id and recycles it. A flow
// left empty whose finish tag no longer matters (it is not after the
// virtual time) is forgotten.
func (q *Queue[T]) remove(n *node[T]) {
	f := n.f
	cl := &q.classes[f.class]
	wasHead := f.head == n
	if n.prev == nil {
		f.head = n.next
	} else {
		n.prev.next = n.next
	}
	if n.next == nil {
		f.tail = n.prev
	} else {
		n.next.prev = n.prev
	}
	f.n--
	cl.n--
	switch {
	case f.n == 0:
		cl.drop(f.hi)
		if f.finish <= cl.vtime {
			delete(cl.flows, f.key.Name)
		}
	case wasHead:
		cl.fix(f.hi)
	}
	delete(q.byID, n.id)
	*n = node[T]{next: q.free} // drop references to the id and value
	q.free = n
}

// Remove takes the task id out of the queue and returns its value, for a
// task that leaves without being served (cancelled, failed).
func (q *Queue[T]) Remove(id string) (T, bool) {
	n, ok := q.byID[id]
	if !ok {
		var zero T
		return zero, false
	}
	v := n.v
	q.remove(n)
	return v, true
}

// Get returns the value of the queued task id.
func (q *Queue[T]) Get(id string) (T, bool) {
	n, ok := q.byID[id]
	if !ok {
		var zero T
		return zero, false
	}
	return n.v, true
}

// Len returns the number of queued tasks.
func (q *Queue[T]) Len() int { return q.classes[Interactive].n + q.classes[Batch].n }

// LenClass returns the number of queued tasks in class c.
func (q *Queue[T]) LenClass(c Class) int {
	if c >= numClasses {
		return 0
	}
	return q.classes[c].n
}

// LenKey returns the number of tasks key has queued in class c.
func (q *Queue[T]) LenKey(c Class, key string) int {
	if c >= numClasses {
		return 0
	}
	if f := q.classes[c].flows[key]; f != nil {
		return f.n
	}
	return 0
}

// promoted reports whether batch node n has waited past the starvation limit
// at now.
func (q *Queue[T]) promoted(n *node[T], now time.Time) bool {
	return q.cfg.StarvationLimit > 0 && !n.at.After(now.Add(-q.cfg.StarvationLimit))
}

// first picks the next task of the dispatch order from the heads of the
// interactive and batch orders: the batch one when it is promoted and was
// enqueued before the interactive one, else the interactive one if any.
func (q *Queue[T]) first(in, b *node[T], now time.Time) *node[T] {
	if b != nil && (in == nil || (b.seq < in.seq && q.promoted(b, now))) {
		return b
	}
	return in
}

// Each calls fn for each task in dispatch order until fn returns false.
// Each class's order is fair: its tasks by start tag (then enqueue order),
// which interleaves keys by weight and keeps each key FIFO. The two orders
// merge so that a batch task at the head of batch's order that has waited
// StarvationLimit (promoted) goes before the interactive tasks enqueued
// after it; the rest of batch follows interactive. pos is the 0-based
// position in that order.
//
// fn may Remove or Take the task it is given (to dispatch it); it must not
// otherwise change the queue.
func (q *Queue[T]) Each(now time.Time, fn func(pos int, id string, v T) bool) {
	var in, b *walk[T]
	if q.walking { // a walk inside a walk: its own buffers
		in, b = new(walk[T]), new(walk[T])
	} else {
		q.walking = true
		defer func() { q.walking = false }()
		in, b = &q.walks[0], &q.walks[1]
	}
	in.reset(&q.classes[Interactive])
	b.reset(&q.classes[Batch])
	for pos := 0; ; pos++ {
		n := q.first(in.peek(), b.peek(), now)
		if n == nil {
			return
		}
		if n.f.class == Interactive {
			in.pop()
		} else {
			b.pop()
		}
		if !fn(pos, n.id, n.v) {
			return
		}
	}
}

// Position returns id's 0-based position in dispatch order at now, the order
// Each visits. While no batch task is promoted at the head of batch's
// order, it counts the tasks before id in each key's FIFO, O(position +
// keys); otherwise it walks the queue up to id.
func (q *Queue[T]) Position(id string, now time.Time) (int, bool) {
	target, ok := q.byID[id]
	if !ok {
		return 0, false
	}
	if b := q.classes[Batch].top(); b == nil || !q.promoted(b, now) {
		// No batch task goes before an interactive one: the classes follow
		// each other.
		pos := 0
		if target.f.class == Batch {
			pos = q.classes[Interactive].n
		}
		for _, f := range q.classes[target.f.class].heap {
			for n := f.head; n != nil && n.before(target); n = n.next {
				pos++
			}
		}
		return pos, true
	}
	at := 0
	q.Each(now, func(pos int, got string, _ T) bool {
		at = pos
		return got != id
	})
	return at, true
}

// Front returns the task that dispatches first at now. O(1).
func (q *Queue[T]) Front(now time.Time) (id string, v T, ok bool) {
	n := q.first(q.classes[Interactive].top(), q.classes[Batch].top(), now)
	if n == nil {
		return "", v, false
	}
	return n.id, n.v, true
}

// Oldest returns the task that has waited longest in class c and its enqueue
// time (as kept by Push: non-decreasing within the class). O(keys).
func (q *Queue[T]) Oldest(c Class) (id string, enqueued time.Time, ok bool) {
	if c >= numClasses {
		return "", time.Time{}, false
	}
	var o *node[T]
	for _, f := range q.classes[c].heap {
		if o == nil || f.head.seq < o.seq {
			o = f.head
		}
	}
	if o == nil {
		return "", time.Time{}, false
	}
	return o.id, o.at, true
}

// Waiting is a key that fair queueing served another key before.
type Waiting[T any] struct {
	ID     string // its oldest task in the class
	V      T
	Key    string
	Weight int
	Queued int // its tasks queued in the class
}

// Bypassed returns, for the queued task id, the key (other than id's) whose
// oldest task in id's class was enqueued before id: serving id now is a
// fairness decision over that key. ok is false when no other key has an
// older task there (FIFO would have served id now too). O(keys).
func (q *Queue[T]) Bypassed(id string) (w Waiting[T], ok bool) {
	n := q.byID[id]
	if n == nil {
		return w, false
	}
	var o *node[T]
	for _, f := range q.classes[n.f.class].heap {
		if f != n.f && f.head.seq < n.seq && (o == nil || f.head.seq < o.seq) {
			o = f.head
		}
	}
	if o == nil {
		return w, false
	}
	return Waiting[T]{ID: o.id, V: o.v, Key: o.f.key.Name, Weight: min(max(o.f.key.Weight, 1), MaxWeight), Queued: o.f.n}, true
}

// The class heap: non-empty flows, least head first. Each flow knows its
// index, so a head change is one fix.

func (cl *class[T]) top() *node[T] {
	if len(cl.heap) == 0 {
		return nil
	}
	return cl.heap[0].head
}

func (cl *class[T]) less(i, j int) bool { return cl.heap[i].head.before(cl.heap[j].head) }

func (cl *class[T]) swap(i, j int) {
	h := cl.heap
	h[i], h[j] = h[j], h[i]
	h[i].hi, h[j].hi = i, j
}

func (cl *class[T]) push(f *flow[T]) {
	f.hi = len(cl.heap)
	cl.heap = append(cl.heap, f)
	cl.up(f.hi)
}

// drop removes the flow at index i.
func (cl *class[T]) drop(i int) {
	last := len(cl.heap) - 1
	f := cl.heap[i]
	if i != last {
		cl.swap(i, last)
	}
	cl.heap[last] = nil
	cl.heap = cl.heap[:last]
	f.hi = -1
	if i != last {
		cl.fix(i)
	}
}

func (cl *class[T]) fix(i int) {
	if !cl.down(i) {
		cl.up(i)
	}
}

func (cl *class[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !cl.less(i, p) {
			return
		}
		cl.swap(i, p)
		i = p
	}
}

func (cl *class[T]) down(i int) bool {
	i0, n := i, len(cl.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && cl.less(r, l) {
			m = r
		}
		if !cl.less(m, i) {
			break
		}
		cl.swap(i, m)
		i = m
	}
	return i > i0
}

// walk merges a class's flows in fair order without changing them: a
// min-heap of one cursor per flow, each with its node's tags copied in so
// that sifting does not chase pointers.
type walk[T any] struct{ h []cursor[T] }

type cursor[T any] struct {
	start, seq uint64
	n          *node[T]
}

func (c *cursor[T]) before(d *cursor[T]) bool {
	return c.start < d.start || (c.start == d.start && c.seq < d.seq)
}

func (w *walk[T]) reset(cl *class[T]) {
	w.h = w.h[:0]
	for _, f := range cl.heap { // already a heap on the same order
		w.h = append(w.h, cursor[T]{f.head.start, f.head.seq, f.head})
	}
}

func (w *walk[T]) peek() *node[T] {
	if len(w.h) == 0 {
		return nil
	}
	return w.h[0].n
}

// pop advances past the least node: its flow's next node takes its place.
func (w *walk[T]) pop() {
	h := w.h
	if nx := h[0].n.next; nx != nil {
		h[0] = cursor[T]{nx.start, nx.seq, nx}
	} else {
		last := len(h) - 1
		h[0] = h[last]
		h[last] = cursor[T]{}
		h = h[:last]
		w.h = h
	}
	for i, n := 0, len(h); ; {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h[r].before(&h[l]) {
			m = r
		}
		if !h[m].before(&h[i]) {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
