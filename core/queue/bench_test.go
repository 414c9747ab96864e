package queue

import (
	"container/list"
	"slices"
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

// benchKeys are the 100 keys of the benchmarks, of weights 1 to 4.
func benchKeys() []Key {
	ks := make([]Key, 100)
	for i := range ks {
		ks[i] = Key{Name: "key-" + strconv.Itoa(i), Weight: 1 + i%4}
	}
	return ks
}

// BenchmarkPushPop pushes a task and takes the front one (as the dispatcher
// does) on a queue holding 10,000 tasks over 100 keys of weights 1 to 4,
// half interactive and half batch, some batch tasks promoted: one op is one
// task's push and pop. "one key" is the same queue with every task of one
// key (plain FIFO); "baseline" is the obvious container/list plus map
// implementation of one FIFO, measured in the same run for a ratio.
func BenchmarkPushPop(b *testing.B) {
	const depth = 10_000
	ids := benchIDs(2 * depth)
	keys := benchKeys()
	run := func(b *testing.B, key func(i int) Key) {
		q := New[int](Config{Capacity: 2 * depth, StarvationLimit: time.Second, Policy: Reject})
		now := t0
		for i := range depth {
			q.Push(ids[i], Class(i%2), key(i), now, i)
			now = now.Add(time.Millisecond)
		}
		// Ids not queued, to push; the ids taken go back there.
		spare := slices.Clone(ids[depth:])
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			now = now.Add(time.Millisecond)
			id := spare[len(spare)-1]
			spare = spare[:len(spare)-1]
			if _, _, err := q.Push(id, Class(i%2), key(i*7), now, i); err != nil {
				b.Fatal(err)
			}
			id, _, _ = q.Front(now)
			q.Take(id)
			spare = append(spare, id)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/task")
	}
	b.Run("Queue", func(b *testing.B) { run(b, func(i int) Key { return keys[i%len(keys)] }) })
	b.Run("one-key", func(b *testing.B) { run(b, func(int) Key { return Key{} }) })
	b.Run("baseline", func(b *testing.B) {
		l, byID := list.New(), map[string]*list.Element{}
		for i := range depth {
			byID[ids[i]] = l.PushBack(ids[i])
		}
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			id := ids[(i+depth)%len(ids)]
			byID[id] = l.PushBack(id)
			front := l.Front()
			delete(byID, front.Value.(string))
			l.Remove(front)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/task")
	})
}

// BenchmarkEach10k visits 10,000 queued tasks of 100 keys (half batch, a quarter of them
// promoted) in dispatch order. "baseline" ranges over a slice of the same
// length calling the same function: the floor for any walk.
func BenchmarkEach10k(b *testing.B) {
	const n = 10_000
	ids, keys := benchIDs(n), benchKeys()
	q := New[int](Config{Capacity: n, StarvationLimit: time.Duration(n/4) * time.Millisecond, Policy: Reject})
	now := t0
	for i := range n {
		q.Push(ids[i], Class(i%2), keys[i%len(keys)], now, i)
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
// 2,000 over 100 keys, as GET /v2/tasks/{id} and each admission do: by
// counting per key, or with batch tasks promoted, by walking the order.
func BenchmarkPosition(b *testing.B) {
	const n = 2000
	ids, keys := benchIDs(n), benchKeys()
	for _, tc := range []struct {
		name  string
		limit time.Duration
	}{{"count", time.Hour}, {"walk", time.Second}} {
		b.Run(tc.name, func(b *testing.B) {
			q := New[int](Config{Capacity: n, StarvationLimit: tc.limit, Policy: Reject})
			now := t0
			for i := range n {
				q.Push(ids[i], Class(i%2), keys[i%len(keys)], now, i)
				now = now.Add(time.Millisecond)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := q.Position(ids[n/2], now); !ok {
					b.Fatal("not queued")
				}
			}
		})
	}
}
