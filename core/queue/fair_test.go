package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// keyOf is the key a fair test's id names: "a-17" is key a's task 17.
func keyOf(id string) string { k, _, _ := strings.Cut(id, "-"); return k }

// pushN queues n tasks of key k in class c at now, ids k-0 .. k-(n-1) after
// the first, from.
func pushN(t *testing.T, q *Queue[string], c Class, k Key, from, n int, now time.Time) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("%s-%d", k.Name, from+i)
		if _, dropped, err := q.Push(id, c, k, now, "v-"+id); err != nil || dropped {
			t.Fatalf("Push(%s): dropped %v, err %v", id, dropped, err)
		}
	}
}

// serve takes the front task n times, as the dispatcher does, and returns
// the ids in the order served.
func serve(t *testing.T, q *Queue[string], n int, now time.Time) []string {
	t.Helper()
	var out []string
	for range n {
		id, _, ok := q.Front(now)
		if !ok {
			break
		}
		if _, _, ok := q.Take(id); !ok {
			t.Fatalf("Take(%s) of the front failed", id)
		}
		out = append(out, id)
	}
	return out
}

// checkFIFOPerKey fails when a key's tasks in ids are out of their order.
func checkFIFOPerKey(t *testing.T, ids []string) {
	t.Helper()
	last := map[string]int{}
	for _, id := range ids {
		k, num, _ := strings.Cut(id, "-")
		var n int
		fmt.Sscan(num, &n)
		if prev, ok := last[k]; ok && n <= prev {
			t.Fatalf("key %s served %s after task %d: not FIFO within the key (%v)", k, id, prev, ids)
		}
		last[k] = n
	}
}

// Service while both keys are backlogged follows the weights: after every
// task served, each key's count is within 1 of its share, whichever key
// arrived first and however many it queued.
func TestFairShares(t *testing.T) {
	cases := []struct {
		name       string
		wa, wb     int
		na, nb     int // tasks queued, a first
		bLateAfter int // a's tasks served before b arrives
	}{
		{"1:1", 1, 1, 1000, 200, 0},
		{"1:3", 1, 3, 1000, 300, 0},
		{"3:1", 3, 1, 1000, 300, 0},
		{"1:1 b arrives late", 1, 1, 1000, 200, 300},
		{"1:3 b arrives late", 1, 3, 1000, 300, 300},
		{"2:5", 2, 5, 1000, 500, 0},
	}
	for _, tc := range cases {
		for _, c := range []Class{Interactive, Batch} {
			t.Run(tc.name+" "+c.String(), func(t *testing.T) {
				q := New[string](Config{Capacity: 2000, Policy: Reject})
				a, b := Key{"a", tc.wa}, Key{"b", tc.wb}
				pushN(t, q, c, a, 0, tc.na, t0)
				served := serve(t, q, tc.bLateAfter, t0)
				pushN(t, q, c, b, 0, tc.nb, t0.Add(time.Second))
				var sa, sb int
				for len(served) < tc.na+tc.nb {
					ids := serve(t, q, 1, at(2))
					served = append(served, ids...)
					if keyOf(ids[0]) == "a" {
						sa++
					} else {
						sb++
					}
					if sb == tc.nb || sa == tc.na-tc.bLateAfter {
						break // one key ran dry: shares no longer apply
					}
					// a's share of what was served since b arrived is wa/(wa+wb).
					total := sa + sb
					wantA := float64(total*tc.wa) / float64(tc.wa+tc.wb)
					if d := float64(sa) - wantA; d > 1 || d < -1 {
						t.Fatalf("after %d served since b arrived: a %d, b %d; a's share is %.1f (weights %d:%d)", total, sa, sb, wantA, tc.wa, tc.wb)
					}
				}
				if sb != tc.nb {
					t.Fatalf("b served %d of %d before a ran dry", sb, tc.nb)
				}
				checkFIFOPerKey(t, served)
				t.Logf("weights %d:%d: a %d, b %d while both queued", tc.wa, tc.wb, sa, sb)
			})
		}
	}
}

// A key with one task is not served behind another key's thousand: it is
// next or the one after (the tie with the head of the backlog goes to the
// older task).
func TestLightKeyNotBehindFlood(t *testing.T) {
	q := New[string](Config{Capacity: 2000, Policy: Reject})
	pushN(t, q, Interactive, Key{Name: "a"}, 0, 1000, t0)
	serve(t, q, 10, t0)
	pushN(t, q, Interactive, Key{Name: "b"}, 0, 1, at(1))
	if pos, ok := q.Position("b-0", at(1)); !ok || pos > 1 {
		t.Fatalf("b-0 is at position %d behind a's %d tasks; want 0 or 1", pos, q.LenKey(Interactive, "a"))
	}
	w, ok := q.Bypassed("b-0")
	if !ok || w.Key != "a" || w.Queued != 990 || w.ID != "a-10" || w.Weight != 1 {
		t.Fatalf("Bypassed(b-0) = %+v, %v; want key a with 990 queued, oldest a-10", w, ok)
	}
	if _, ok := q.Bypassed("a-10"); ok {
		t.Fatal("a-10 bypasses nobody: it is the oldest task")
	}
	checkConsistent(t, q, at(1))
}

// A key that idled does not bank the service it did not use: it returns at
// the current virtual time and shares from there.
func TestNoCreditBanking(t *testing.T) {
	q := New[string](Config{Capacity: 2000, Policy: Reject})
	a, b := Key{Name: "a"}, Key{Name: "b"}
	pushN(t, q, Interactive, a, 0, 500, t0)
	pushN(t, q, Interactive, b, 0, 2, t0)
	serve(t, q, 4, t0) // b is served dry
	if q.LenKey(Interactive, "b") != 0 {
		t.Fatal("b still queued")
	}
	serve(t, q, 200, t0) // only a is served: b idles
	pushN(t, q, Interactive, b, 2, 100, at(1))
	got := serve(t, q, 40, at(1))
	nb := 0
	for _, id := range got {
		if keyOf(id) == "b" {
			nb++
		}
	}
	if nb < 19 || nb > 21 {
		t.Fatalf("b served %d of the next 40 after idling; want 20±1 (no banked credit): %v", nb, got)
	}
	// The same after b's tasks were removed (cancelled) rather than served.
	for i := 2; i < 102; i++ {
		q.Remove(fmt.Sprintf("b-%d", i))
	}
	serve(t, q, 100, at(2))
	pushN(t, q, Interactive, b, 200, 50, at(3))
	got = serve(t, q, 20, at(3))
	nb = 0
	for _, id := range got {
		if keyOf(id) == "b" {
			nb++
		}
	}
	if nb < 9 || nb > 11 {
		t.Fatalf("b served %d of the next 20; want 10±1: %v", nb, got)
	}
}

// The dispatcher skips tasks it cannot place and takes later ones: a
// skipped key keeps its turn (it stays first), and the keys behind it are
// served meanwhile.
func TestSkippedKeyKeepsItsTurn(t *testing.T) {
	q := New[string](Config{Capacity: 100, Policy: Reject})
	pushN(t, q, Interactive, Key{Name: "x"}, 0, 5, t0) // x's model has no free worker
	pushN(t, q, Interactive, Key{Name: "a"}, 0, 20, t0)
	pushN(t, q, Interactive, Key{Name: "b"}, 0, 20, t0)
	var served []string
	for range 30 {
		// Take the first task that is not x's.
		q.Each(t0, func(_ int, id, _ string) bool {
			if keyOf(id) == "x" {
				return true
			}
			q.Take(id)
			served = append(served, id)
			return false
		})
	}
	checkFIFOPerKey(t, served)
	na := 0
	for _, id := range served {
		if keyOf(id) == "a" {
			na++
		}
	}
	if na != 15 {
		t.Errorf("a served %d of 30 with x blocked; want 15 (a and b share)", na)
	}
	// x is unblocked: its tasks come first, as it was skipped, not served.
	if got := checkConsistent(t, q, t0); got[0] != "x-0" || got[1] != "x-1" {
		t.Fatalf("order after x's wait: %v; want x's tasks first", got)
	}
}

// A batch task at the head of batch's fair order that waited the limit is
// served among interactive tasks, in enqueue order with them; fairness
// within batch stays.
func TestPromotionWithKeys(t *testing.T) {
	q := New[string](Config{Capacity: 100, StarvationLimit: 10 * time.Second, Policy: Reject})
	fill(t, q, B("b-0", 0).of("b"), B("b-1", 0).of("b"), B("c-0", 1).of("c"), I("i-0", 2).of("i"), I("j-0", 3).of("j"), I("i-1", 4).of("i"))
	if got, want := checkConsistent(t, q, at(5)), []string{"i-0", "j-0", "i-1", "b-0", "c-0", "b-1"}; !slices.Equal(got, want) {
		t.Fatalf("before promotion: %v, want %v", got, want)
	}
	// At +11s the batch tasks queued at 0 and 1 are promoted; batch's fair
	// order alternates b and c, each ahead of the interactive tasks
	// enqueued after it.
	if got, want := checkConsistent(t, q, at(11)), []string{"b-0", "c-0", "b-1", "i-0", "j-0", "i-1"}; !slices.Equal(got, want) {
		t.Fatalf("after promotion: %v, want %v", got, want)
	}
}

// drop-lru evicts the oldest batch task of the key with the most batch
// tasks, and says which key.
func TestDropLRUVictim(t *testing.T) {
	cases := []struct {
		name     string
		push     []push // capacity 4 per class
		next     push
		wantDrop string
	}{
		{"the key with most batch tasks", []push{B("a-0", 0).of("a"), B("b-0", 1).of("b"), B("b-1", 2).of("b"), B("c-0", 3).of("c")},
			B("a-1", 4).of("a"), "b-0"},
		{"not the oldest task overall", []push{B("a-0", 0).of("a"), B("b-0", 1).of("b"), B("b-1", 2).of("b"), B("b-2", 3).of("b")},
			B("c-0", 4).of("c"), "b-0"},
		{"tie: the key whose oldest task is oldest", []push{B("b-0", 0).of("b"), B("a-0", 1).of("a"), B("a-1", 2).of("a"), B("b-1", 3).of("b")},
			B("c-0", 4).of("c"), "b-0"},
		{"interactive evicts batch from the biggest key", []push{I("i-0", 0).of("i"), I("i-1", 1).of("i"), I("i-2", 2).of("i"), I("i-3", 3).of("i"), B("a-0", 4).of("a"), B("b-0", 5).of("b"), B("b-1", 6).of("b")},
			I("i-4", 7).of("i"), "b-0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := New[string](Config{Capacity: 4, Policy: DropLRU})
			fill(t, q, tc.push...)
			d, ok, err := q.Push(tc.next.id, tc.next.class, Key{Name: tc.next.key}, at(tc.next.sec), "v-"+tc.next.id)
			if err != nil || !ok || d.ID != tc.wantDrop || d.Key != keyOf(tc.wantDrop) || d.V != "v-"+tc.wantDrop {
				t.Fatalf("Push(%s) dropped %+v (%v, %v), want %s of key %s", tc.next.id, d, ok, err, tc.wantDrop, keyOf(tc.wantDrop))
			}
			if _, queued := q.Get(tc.wantDrop); queued {
				t.Fatal("the dropped task is still queued")
			}
			checkConsistent(t, q, at(8))
		})
	}
}

// Take and Restore with keys: a task whose attempt failed returns at its
// key's head and at its old turn among the keys; Readmit queues a restored
// task by its key.
func TestRestoreWithKeys(t *testing.T) {
	q := New[string](Config{Capacity: 100, Policy: Reject})
	a, b := Key{Name: "a"}, Key{Name: "b"}
	pushN(t, q, Interactive, a, 0, 3, t0)
	pushN(t, q, Interactive, b, 0, 3, t0)
	if got := checkConsistent(t, q, t0); !slices.Equal(got, []string{"a-0", "b-0", "a-1", "b-1", "a-2", "b-2"}) {
		t.Fatalf("order %v", got)
	}
	_, tk, _ := q.Take("a-0")
	_, tkb, _ := q.Take("b-0")
	pushN(t, q, Interactive, b, 3, 1, t0)
	pushN(t, q, Interactive, Key{Name: "c"}, 0, 2, t0)
	if err := q.Restore("a-0", tk, "v-a-0"); err != nil {
		t.Fatal(err)
	}
	if got := checkConsistent(t, q, t0); got[0] != "a-0" {
		t.Fatalf("restored a-0 is not first: %v", got)
	}
	// Restored after the rest of its key was served and its flow forgotten.
	serve(t, q, 20, t0)
	if err := q.Restore("b-0", tkb, "v-b-0"); err != nil {
		t.Fatal(err)
	}
	pushN(t, q, Interactive, Key{Name: "d"}, 0, 2, t0)
	if got := checkConsistent(t, q, t0); !slices.Equal(got, []string{"b-0", "d-0", "d-1"}) {
		t.Fatalf("order %v", got)
	}
	if err := q.Readmit("e-0", Interactive, Key{Name: "e", Weight: 2}, t0, "v-e-0"); err != nil {
		t.Fatal(err)
	}
	if q.LenKey(Interactive, "e") != 1 {
		t.Fatal("Readmit did not queue e-0 under key e")
	}
	if err := q.Readmit("e-0", Interactive, Key{Name: "e"}, t0, "v"); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Readmit of a queued id: %v", err)
	}
}

// Over random pushes, takes, removes and restores across keys, weights and
// classes: Each, Position and Front agree; each key stays FIFO within a
// class; unpromoted batch follows interactive; lengths add up.
func TestFairRandomWalk(t *testing.T) {
	cfg := Config{Capacity: 40, StarvationLimit: 3 * time.Second, Policy: DropLRU}
	q := New[string](cfg)
	r := rand.New(rand.NewPCG(7, 20))
	now := t0
	next := 0
	type taken struct {
		id string
		tk Ticket
	}
	var out []taken
	for step := range 4000 {
		now = now.Add(time.Duration(r.IntN(400)) * time.Millisecond)
		switch op := r.IntN(10); {
		case op < 5:
			k := Key{Name: string(rune('a' + r.IntN(6))), Weight: 1 + r.IntN(4)}
			id := fmt.Sprintf("%s-%d", k.Name, next)
			next++
			c := Class(r.IntN(2))
			d, dropped, err := q.Push(id, c, k, now, "v-"+id)
			if err != nil && !errors.Is(err, ErrFull) {
				t.Fatalf("step %d Push: %v", step, err)
			}
			if dropped && (keyOf(d.ID) != d.Key || d.V != "v-"+d.ID) {
				t.Fatalf("step %d dropped %+v", step, d)
			}
		case op < 7:
			if id, _, ok := q.Front(now); ok {
				_, tk, _ := q.Take(id)
				out = append(out, taken{id, tk})
			}
		case op < 8:
			if len(out) > 0 {
				i := r.IntN(len(out))
				if err := q.Restore(out[i].id, out[i].tk, "v-"+out[i].id); err != nil {
					t.Fatalf("step %d Restore: %v", step, err)
				}
				out = slices.Delete(out, i, i+1)
			}
		default:
			ids := order(t, q, now)
			if len(ids) > 0 {
				q.Remove(ids[r.IntN(len(ids))])
			}
		}
		ids := checkConsistent(t, q, now)
		var perClass [numClasses][]string
		seenBatch := false
		for _, id := range ids {
			n := q.byID[id]
			c := n.f.class
			perClass[c] = append(perClass[c], id)
			if c == Batch && !q.promoted(n, now) {
				seenBatch = true
			} else if c == Interactive && seenBatch {
				t.Fatalf("step %d: interactive %s after an unpromoted batch task: %v", step, id, ids)
			}
		}
		for c := range perClass {
			checkFIFOPerKey(t, perClass[c])
			if n := 0; true {
				for _, f := range q.classes[c].flows {
					n += f.n
				}
				if n != q.LenClass(Class(c)) {
					t.Fatalf("step %d: flows hold %d, class %d", step, n, q.LenClass(Class(c)))
				}
			}
		}
	}
}
