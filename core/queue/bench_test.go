package queue

import (
	"container/list"
	"strconv"
	"testing"
	"time"
)

func benchIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = "task-" + strconv.Itoa(i)
	}
	return ids
}

// BenchmarkPushPop pushes a task and dispatches the front one on a queue
// holding 1,000 tasks in each class with some batch tasks promoted: the
// orchestrator's steady state. "baseline" is the obvious container/list plus
// map implementation of one FIFO, measured in the same run for a ratio.
func BenchmarkPushPop(b *testing.B) {
	const depth = 1000
	ids := benchIDs(4 * depth)
	b.Run("Queue", func(b *testing.B) {
		q := New[int](Config{Capacity: 2 * depth, StarvationLimit: time.Second, Policy: Reject})
		now := t0
		for i := range 2 * depth {
			q.Push(ids[i], Class(i%2), now, i)
			now = now.Add(time.Millisecond)
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			now = now.Add(time.Millisecond)
			if _, _, _, err := q.Push(ids[(i+2*depth)%len(ids)], Class(i%2), now, i); err != nil {
				b.Fatal(err)
			}
			id, _, _ := q.Front(now)
			q.Remove(id)
		}
	})
	b.Run("baseline", func(b *testing.B) {
		l, byID := list.New(), map[string]*list.Element{}
		for i := range 2 * depth {
			byID[ids[i]] = l.PushBack(ids[i])
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			id := ids[(i+2*depth)%len(ids)]
			byID[id] = l.PushBack(id)
			front := l.Front()
			delete(byID, front.Value.(string))
			l.Remove(front)
		}
	})
}

// BenchmarkEach10k visits 10,000 queued tasks (half batch, a quarter of them
// promoted) in dispatch order. "baseline" ranges over a slice of the same
// length calling the same function: the floor for any walk.
func BenchmarkEach10k(b *testing.B) {
	const n = 10_000
	ids := benchIDs(n)
	q := New[int](Config{Capacity: n, StarvationLimit: time.Duration(n/4) * time.Millisecond, Policy: Reject})
	now := t0
	for i := range n {
		q.Push(ids[i], Class(i%2), now, i)
		now = now.Add(time.Millisecond)
	}
	sum := 0
	visit := func(pos int, _ string, v int) bool { sum += v; return true }
	b.Run("Queue", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			q.Each(now, visit)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/task")
	})
	b.Run("baseline", func(b *testing.B) {
		vals := make([]int, n)
		b.ReportAllocs()
		for b.Loop() {
			for i, v := range vals {
				visit(i, ids[i], v)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/task")
	})
	_ = sum
}

// BenchmarkPosition finds the position of a task in the middle of a queue of
// 2,000, as GET /v2/tasks/{id} does.
func BenchmarkPosition(b *testing.B) {
	const n = 2000
	ids := benchIDs(n)
	q := New[int](Config{Capacity: n, StarvationLimit: time.Second, Policy: Reject})
	now := t0
	for i := range n {
		q.Push(ids[i], Class(i%2), now, i)
		now = now.Add(time.Millisecond)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := q.Position(ids[n/2], now); !ok {
			b.Fatal("not queued")
		}
	}
}
