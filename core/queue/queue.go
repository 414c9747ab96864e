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
	// DropLRU evicts the oldest batch task and admits the new one.
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
	// among interactive tasks in enqueue order. Zero never promotes.
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

// node is one queued task, linked into its class's list.
type node[T any] struct {
	prev, next *node[T]
	id         string
	seq        uint64 // enqueue order across both classes
	at         time.Time
	class      Class
	v          T
}

// fifo is a list of nodes: head is the oldest.
type fifo[T any] struct {
	head, tail *node[T]
	n          int
}

func (l *fifo[T]) pushBack(n *node[T]) {
	n.prev, n.next = l.tail, nil
	if l.tail == nil {
		l.head = n
	} else {
		l.tail.next = n
	}
	l.tail = n
	l.n++
}

func (l *fifo[T]) unlink(n *node[T]) {
	if n.prev == nil {
		l.head = n.next
	} else {
		n.prev.next = n.next
	}
	if n.next == nil {
		l.tail = n.prev
	} else {
		n.next.prev = n.prev
	}
	n.prev, n.next = nil, nil
	l.n--
}

// Queue is a bounded two-class FIFO. The zero value is not usable; call New.
// A Queue is not safe for concurrent use.
type Queue[T any] struct {
	cfg   Config
	lists [numClasses]fifo[T]
	byID  map[string]*node[T]
	seq   uint64
	free  *node[T] // recycled nodes, linked through next
}

// New returns an empty queue. It panics if cfg is invalid (see
// Config.Validate): a configuration is checked where it is read.
func New[T any](cfg Config) *Queue[T] {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return &Queue[T]{cfg: cfg, byID: make(map[string]*node[T], cfg.Capacity)}
}

// Config returns the configuration the queue was made with.
func (q *Queue[T]) Config() Config { return q.cfg }

// full reports whether class c has no room: it holds Capacity tasks, or the
// queue holds 2*Capacity (interactive tasks can grow past Capacity by
// evicting batch tasks, and then batch has less room).
func (q *Queue[T]) full(c Class) bool {
	return q.lists[c].n >= q.cfg.Capacity || q.Len() >= 2*q.cfg.Capacity
}

// Push enqueues v under id in class c at time now.
//
// When the class is full, with Reject it returns ErrFull and the queue is
// unchanged. With DropLRU it removes the oldest batch task, returns it as
// droppedID/dropped with didDrop true, and admits v; when there is no batch
// task to drop it returns ErrFull. A duplicate id gives ErrDuplicate.
//
// Enqueue times are kept non-decreasing within a class: a now earlier than
// the previous task's in the same class counts as that task's time, so
// promotion never reorders a class.
func (q *Queue[T]) Push(id string, c Class, now time.Time, v T) (droppedID string, dropped T, didDrop bool, err error) {
	if err := q.check(id, c); err != nil {
		return "", dropped, false, err
	}
	if q.full(c) {
		old := q.lists[Batch].head
		if q.cfg.Policy != DropLRU || old == nil {
			return "", dropped, false, ErrFull
		}
		droppedID, dropped, didDrop = old.id, old.v, true
		q.remove(old)
	}
	q.append(id, c, now, v)
	return droppedID, dropped, didDrop, nil
}

// Readmit enqueues v under id in class c at time now whatever the capacity:
// for tasks that were admitted before (restored after a restart), which must
// never be refused or make another task be dropped for room they were
// already granted. A duplicate id gives ErrDuplicate.
func (q *Queue[T]) Readmit(id string, c Class, now time.Time, v T) error {
	if err := q.check(id, c); err != nil {
		return err
	}
	q.append(id, c, now, v)
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

// append adds a node at the tail of class c, its enqueue time no earlier
// than the tail's.
func (q *Queue[T]) append(id string, c Class, now time.Time, v T) {
	l := &q.lists[c]
	if l.tail != nil && now.Before(l.tail.at) {
		now = l.tail.at
	}
	n := q.newNode()
	q.seq++
	n.id, n.seq, n.at, n.class, n.v = id, q.seq, now, c, v
	l.pushBack(n)
	q.byID[id] = n
}

// Ticket is a task's place in the queue, as Take returns it.
type Ticket struct {
	seq   uint64
	at    time.Time
	class Class
}

// Take removes the task id like Remove and also returns its place, so that
// Restore can put it back there.
func (q *Queue[T]) Take(id string) (T, Ticket, bool) {
	n, ok := q.byID[id]
	if !ok {
		var zero T
		return zero, Ticket{}, false
	}
	v, tk := n.v, Ticket{seq: n.seq, at: n.at, class: n.class}
	q.remove(n)
	return v, tk, true
}

// Restore puts a task back at the place Take gave it (among the tasks queued
// now, in enqueue order), whatever the capacity: a task whose attempt failed
// returns ahead of the tasks that arrived after it, and is never refused or
// the cause of a drop. A zero Ticket gives ErrClass; a duplicate id
// ErrDuplicate.
func (q *Queue[T]) Restore(id string, tk Ticket, v T) error {
	if tk.seq == 0 || tk.class >= numClasses {
		return ErrClass
	}
	if _, dup := q.byID[id]; dup {
		return ErrDuplicate
	}
	l := &q.lists[tk.class]
	n := q.newNode()
	n.id, n.seq, n.at, n.class, n.v = id, tk.seq, tk.at, tk.class, v
	// The first node enqueued after it; nodes keep enqueue order, and enqueue
	// times never decrease along a class, so the order stays valid.
	next := l.head
	for next != nil && next.seq < tk.seq {
		next = next.next
	}
	if next == nil {
		l.pushBack(n)
	} else {
		n.prev, n.next = next.prev, next
		if next.prev == nil {
			l.head = n
		} else {
			next.prev.next = n
		}
		next.prev = n
		l.n++
		if n.prev != nil && n.at.Before(n.prev.at) {
			n.at = n.prev.at
		}
		if n.at.After(next.at) {
			n.at = next.at
		}
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

// remove unlinks n, forgets its id and recycles it.
func (q *Queue[T]) remove(n *node[T]) {
	q.lists[n.class].unlink(n)
	delete(q.byID, n.id)
	*n = node[T]{next: q.free} // drop references to the id and value
	q.free = n
}

// Remove takes the task id out of the queue and returns its value. O(1).
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
func (q *Queue[T]) Len() int { return q.lists[Interactive].n + q.lists[Batch].n }

// LenClass returns the number of queued tasks in class c.
func (q *Queue[T]) LenClass(c Class) int {
	if c >= numClasses {
		return 0
	}
	return q.lists[c].n
}

// promoted reports whether batch node n has waited past the starvation limit
// at now. Batch enqueue times are non-decreasing, so the promoted batch tasks
// are a prefix of the batch list.
func (q *Queue[T]) promoted(n *node[T], now time.Time) bool {
	return q.cfg.StarvationLimit > 0 && !n.at.After(now.Add(-q.cfg.StarvationLimit))
}

// Each calls fn for each task in dispatch order until fn returns false:
// interactive and promoted batch tasks (enqueued at or before
// now-StarvationLimit) merged in enqueue order, then the other batch tasks in
// enqueue order. pos is the 0-based position in that order.
//
// fn may Remove the task it is given (to dispatch it); it must not otherwise
// change the queue.
func (q *Queue[T]) Each(now time.Time, fn func(pos int, id string, v T) bool) {
	in, b := q.lists[Interactive].head, q.lists[Batch].head
	cut := now.Add(-q.cfg.StarvationLimit)
	bp := q.cfg.StarvationLimit > 0 && b != nil && !b.at.After(cut)
	pos := 0
	// Merge interactive with the promoted batch prefix by sequence number.
	for bp {
		n := b
		if in != nil && in.seq < b.seq {
			n, in = in, in.next
		} else {
			b = b.next
			bp = b != nil && !b.at.After(cut)
		}
		if !fn(pos, n.id, n.v) {
			return
		}
		pos++
	}
	for _, l := range [...]*node[T]{in, b} {
		for n := l; n != nil; {
			next := n.next // fn may remove n
			if !fn(pos, n.id, n.v) {
				return
			}
			n = next
			pos++
		}
	}
}

// Position returns id's 0-based position in dispatch order at now, the order
// Each visits. It walks the queue up to id.
func (q *Queue[T]) Position(id string, now time.Time) (int, bool) {
	target, ok := q.byID[id]
	if !ok {
		return 0, false
	}
	if target.class == Interactive || q.promoted(target, now) {
		// Ahead: interactive and promoted batch tasks enqueued before it.
		pos := 0
		for n := q.lists[Interactive].head; n != nil && n.seq < target.seq; n = n.next {
			pos++
		}
		for n := q.lists[Batch].head; n != nil && n.seq < target.seq && q.promoted(n, now); n = n.next {
			pos++
		}
		return pos, true
	}
	// An unpromoted batch task: everything interactive, then the batch
	// tasks ahead of it in its own list.
	pos := q.lists[Interactive].n
	for n := q.lists[Batch].head; n != target; n = n.next {
		pos++
	}
	return pos, true
}

// Front returns the task that dispatches first at now. O(1).
func (q *Queue[T]) Front(now time.Time) (id string, v T, ok bool) {
	in, b := q.lists[Interactive].head, q.lists[Batch].head
	n := in
	switch {
	case in == nil:
		n = b
	case b != nil && b.seq < in.seq && q.promoted(b, now):
		n = b
	}
	if n == nil {
		return "", v, false
	}
	return n.id, n.v, true
}

// Oldest returns the task that has waited longest in class c and its enqueue
// time (as kept by Push: non-decreasing within the class).
func (q *Queue[T]) Oldest(c Class) (id string, enqueued time.Time, ok bool) {
	if c >= numClasses || q.lists[c].head == nil {
		return "", time.Time{}, false
	}
	n := q.lists[c].head
	return n.id, n.at, true
}
