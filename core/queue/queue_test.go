package queue

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// at is t0 plus s seconds.
func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

// validConfig is a queue config that tests tweak.
func validConfig() Config {
	return Config{Capacity: 8, StarvationLimit: 10 * time.Second, Policy: Reject}
}

type push struct {
	id    string
	class Class
	sec   int    // enqueue time, seconds after t0
	key   string // "" unless set
}

func I(id string, sec int) push { return push{id: id, class: Interactive, sec: sec} }
func B(id string, sec int) push { return push{id: id, class: Batch, sec: sec} }

// of is p queued for key.
func (p push) of(key string) push { p.key = key; return p }

func fill(t *testing.T, q *Queue[string], ps ...push) {
	t.Helper()
	for _, p := range ps {
		if _, dropped, err := q.Push(p.id, p.class, Key{Name: p.key}, at(p.sec), "v-"+p.id); err != nil || dropped {
			t.Fatalf("Push(%s): dropped %v, err %v", p.id, dropped, err)
		}
	}
}

// order lists the ids Each visits, checking that pos counts from 0.
func order(t *testing.T, q *Queue[string], now time.Time) []string {
	t.Helper()
	var ids []string
	q.Each(now, func(pos int, id, v string) bool {
		if pos != len(ids) {
			t.Fatalf("Each gave pos %d for %s, want %d", pos, id, len(ids))
		}
		if v != "v-"+id {
			t.Fatalf("Each gave value %q for %s", v, id)
		}
		ids = append(ids, id)
		return true
	})
	return ids
}

// checkConsistent asserts that Position, Front, Len and Get agree with Each.
func checkConsistent(t *testing.T, q *Queue[string], now time.Time) []string {
	t.Helper()
	ids := order(t, q, now)
	if q.Len() != len(ids) || q.LenClass(Interactive)+q.LenClass(Batch) != len(ids) {
		t.Fatalf("Len %d (interactive %d, batch %d), Each visited %d",
			q.Len(), q.LenClass(Interactive), q.LenClass(Batch), len(ids))
	}
	for i, id := range ids {
		if pos, ok := q.Position(id, now); !ok || pos != i {
			t.Errorf("Position(%s) = %d, %v; Each puts it at %d", id, pos, ok, i)
		}
		if v, ok := q.Get(id); !ok || v != "v-"+id {
			t.Errorf("Get(%s) = %q, %v", id, v, ok)
		}
	}
	id, v, ok := q.Front(now)
	switch {
	case len(ids) == 0 && ok:
		t.Errorf("Front of an empty queue = %s", id)
	case len(ids) > 0 && (!ok || id != ids[0] || v != "v-"+ids[0]):
		t.Errorf("Front = %s %q %v, Each starts with %s", id, v, ok, ids[0])
	}
	return ids
}

func TestDispatchOrder(t *testing.T) {
	cases := []struct {
		name  string
		limit time.Duration
		push  []push
		now   int
		want  []string
	}{
		{"empty", 10 * time.Second, nil, 0, nil},
		{"FIFO within interactive", 10 * time.Second,
			[]push{I("a", 0), I("b", 1), I("c", 2)}, 3, []string{"a", "b", "c"}},
		{"FIFO within batch", 10 * time.Second,
			[]push{B("a", 0), B("b", 1), B("c", 2)}, 3, []string{"a", "b", "c"}},
		{"interactive before batch", 10 * time.Second,
			[]push{B("b1", 0), I("i1", 1), B("b2", 2), I("i2", 3)}, 4, []string{"i1", "i2", "b1", "b2"}},
		{"batch one second short of the limit stays behind", 10 * time.Second,
			[]push{B("b1", 0), I("i1", 1)}, 9, []string{"i1", "b1"}},
		{"batch promoted exactly at the limit", 10 * time.Second,
			[]push{B("b1", 0), I("i1", 1)}, 10, []string{"b1", "i1"}},
		{"promoted batch merges in enqueue order", 10 * time.Second,
			[]push{I("i1", 0), B("b1", 1), I("i2", 2), B("b2", 3), I("i3", 4), B("b3", 20)}, 13,
			[]string{"i1", "b1", "i2", "b2", "i3", "b3"}},
		{"only old batch tasks are promoted", 10 * time.Second,
			[]push{B("b1", 0), B("b2", 5), I("i1", 6), B("b3", 7)}, 15,
			[]string{"b1", "b2", "i1", "b3"}},
		{"zero limit never promotes", 0,
			[]push{B("b1", 0), I("i1", 1)}, 1_000_000, []string{"i1", "b1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.StarvationLimit = tc.limit
			q := New[string](cfg)
			fill(t, q, tc.push...)
			got := checkConsistent(t, q, at(tc.now))
			if !slices.Equal(got, tc.want) {
				t.Errorf("order at +%ds: got %v, want %v", tc.now, got, tc.want)
			}
		})
	}
}

func TestPushWhenFull(t *testing.T) {
	cases := []struct {
		name     string
		policy   Policy
		push     []push // capacity is 2 per class
		next     push
		wantErr  error
		wantDrop string // "" when nothing is dropped
		want     []string
	}{
		{"reject full interactive", Reject,
			[]push{I("i1", 0), I("i2", 1), B("b1", 2)}, I("i3", 3),
			ErrFull, "", []string{"i1", "i2", "b1"}},
		{"reject full batch", Reject,
			[]push{B("b1", 0), B("b2", 1)}, B("b3", 2),
			ErrFull, "", []string{"b1", "b2"}},
		{"reject admits into the other class", Reject,
			[]push{B("b1", 0), B("b2", 1)}, I("i1", 2),
			nil, "", []string{"i1", "b1", "b2"}},
		{"drop-lru full batch drops the oldest batch", DropLRU,
			[]push{B("b1", 0), B("b2", 1), I("i1", 2)}, B("b3", 3),
			nil, "b1", []string{"i1", "b2", "b3"}},
		{"drop-lru full interactive evicts the oldest batch", DropLRU,
			[]push{B("b1", 0), I("i1", 1), B("b2", 2), I("i2", 3)}, I("i3", 4),
			nil, "b1", []string{"i1", "i2", "i3", "b2"}},
		{"drop-lru full interactive without batch is full", DropLRU,
			[]push{I("i1", 0), I("i2", 1)}, I("i3", 2),
			ErrFull, "", []string{"i1", "i2"}},
		{"drop-lru batch has less room after interactive grew", DropLRU,
			// Interactive holds 3 (one over capacity), so the total cap
			// of 4 leaves batch one place: b3 replaces b2.
			[]push{B("b1", 0), B("b2", 1), I("i1", 2), I("i2", 3), I("i3", 4)}, B("b3", 5),
			nil, "b2", []string{"i1", "i2", "i3", "b3"}},
		{"drop-lru batch with the queue full of interactive", DropLRU,
			[]push{B("b1", 0), B("b2", 1), I("i1", 2), I("i2", 3), I("i3", 4), I("i4", 5)}, B("b3", 6),
			ErrFull, "", []string{"i1", "i2", "i3", "i4"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			cfg.Capacity, cfg.Policy = 2, tc.policy
			q := New[string](cfg)
			// Pushes that overflow under drop-lru are part of the setup.
			for _, p := range tc.push {
				if _, _, err := q.Push(p.id, p.class, Key{Name: p.key}, at(p.sec), "v-"+p.id); err != nil {
					t.Fatalf("setup Push(%s): %v", p.id, err)
				}
			}
			d, didDrop, err := q.Push(tc.next.id, tc.next.class, Key{}, at(tc.next.sec), "v-"+tc.next.id)
			dropID, dropped := d.ID, d.V
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Push(%s) err = %v, want %v", tc.next.id, err, tc.wantErr)
			}
			if didDrop != (tc.wantDrop != "") || dropID != tc.wantDrop {
				t.Errorf("Push(%s) dropped %q (%v), want %q", tc.next.id, dropID, didDrop, tc.wantDrop)
			}
			if didDrop && dropped != "v-"+tc.wantDrop {
				t.Errorf("dropped value %q, want v-%s", dropped, tc.wantDrop)
			}
			if didDrop {
				if _, ok := q.Get(dropID); ok {
					t.Errorf("dropped %s is still queued", dropID)
				}
			}
			got := checkConsistent(t, q, at(6))
			if !slices.Equal(got, tc.want) {
				t.Errorf("queue after push: %v, want %v", got, tc.want)
			}
			if q.Len() > 2*cfg.Capacity {
				t.Errorf("Len %d over 2*capacity", q.Len())
			}
		})
	}
}

func TestDuplicateID(t *testing.T) {
	cases := []struct {
		name  string
		class Class
	}{
		{"same class", Interactive},
		{"other class", Batch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := New[string](validConfig())
			fill(t, q, I("a", 0))
			if _, _, err := q.Push("a", tc.class, Key{}, at(1), "other"); !errors.Is(err, ErrDuplicate) {
				t.Fatalf("second Push(a) err = %v, want ErrDuplicate", err)
			}
			if v, _ := q.Get("a"); v != "v-a" || q.Len() != 1 {
				t.Errorf("after duplicate: Get(a) = %q, Len %d; want v-a, 1", v, q.Len())
			}
			q.Remove("a")
			if _, _, err := q.Push("a", tc.class, Key{}, at(2), "v-a"); err != nil {
				t.Errorf("Push(a) after Remove: %v", err)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	cases := []struct {
		name   string
		remove []string
		want   []string
	}{
		{"head", []string{"i1"}, []string{"i2", "i3", "b1", "b2", "b3"}},
		{"middle", []string{"i2", "b2"}, []string{"i1", "i3", "b1", "b3"}},
		{"tail", []string{"i3", "b3"}, []string{"i1", "i2", "b1", "b2"}},
		{"all", []string{"b2", "i1", "i3", "b1", "i2", "b3"}, nil},
		{"missing", []string{"nope"}, []string{"i1", "i2", "i3", "b1", "b2", "b3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			q := New[string](validConfig())
			fill(t, q, I("i1", 0), B("b1", 1), I("i2", 2), B("b2", 3), I("i3", 4), B("b3", 5))
			for _, id := range tc.remove {
				v, ok := q.Remove(id)
				if want := id != "nope"; ok != want || (ok && v != "v-"+id) {
					t.Errorf("Remove(%s) = %q, %v", id, v, ok)
				}
				if _, ok := q.Remove(id); ok {
					t.Errorf("second Remove(%s) succeeded", id)
				}
				if _, ok := q.Position(id, at(6)); ok {
					t.Errorf("Position(%s) after Remove", id)
				}
			}
			if got := checkConsistent(t, q, at(6)); !slices.Equal(got, tc.want) {
				t.Errorf("after Remove %v: %v, want %v", tc.remove, got, tc.want)
			}
			// The queue keeps working on recycled nodes.
			fill(t, q, I("i4", 7), B("b4", 8))
			want := append(slices.Clone(tc.want), "i4", "b4")
			rank := func(id string) int { // interactive ids start with i
				if id[0] == 'i' {
					return 0
				}
				return 1
			}
			slices.SortStableFunc(want, func(a, b string) int { return rank(a) - rank(b) })
			if got := checkConsistent(t, q, at(9)); !slices.Equal(got, want) {
				t.Errorf("after refill: %v, want %v", got, want)
			}
		})
	}
}

func TestEach(t *testing.T) {
	q := New[string](validConfig())
	fill(t, q, I("i1", 0), B("b1", 1), I("i2", 2), B("b2", 3))
	t.Run("stops when fn returns false", func(t *testing.T) {
		var seen []string
		q.Each(at(4), func(pos int, id, _ string) bool {
			seen = append(seen, id)
			return pos < 2
		})
		if want := []string{"i1", "i2", "b1"}; !slices.Equal(seen, want) {
			t.Errorf("visited %v, want %v", seen, want)
		}
	})
	t.Run("fn may remove the task it visits", func(t *testing.T) {
		var seen []string
		q.Each(at(20), func(_ int, id, _ string) bool { // both batch tasks promoted
			seen = append(seen, id)
			if id != "i2" {
				q.Remove(id)
			}
			return true
		})
		if want := []string{"i1", "b1", "i2", "b2"}; !slices.Equal(seen, want) {
			t.Errorf("visited %v, want %v", seen, want)
		}
		if got := checkConsistent(t, q, at(20)); !slices.Equal(got, []string{"i2"}) {
			t.Errorf("left %v, want [i2]", got)
		}
	})
}

func TestEnqueueTimeNeverGoesBack(t *testing.T) {
	q := New[string](validConfig())
	// b2 claims to be older than b1; it stays behind b1 and is promoted
	// with it, not before it.
	fill(t, q, B("b1", 100), B("b2", 0), I("i1", 101))
	if got, want := checkConsistent(t, q, at(105)), []string{"i1", "b1", "b2"}; !slices.Equal(got, want) {
		t.Errorf("at +105s: %v, want %v", got, want)
	}
	if got, want := checkConsistent(t, q, at(110)), []string{"b1", "b2", "i1"}; !slices.Equal(got, want) {
		t.Errorf("at +110s: %v, want %v", got, want)
	}
	q.Remove("b1")
	if id, when, ok := q.Oldest(Batch); !ok || id != "b2" || !when.Equal(at(100)) {
		t.Errorf("Oldest(batch) = %s %v %v, want b2 at +100s", id, when, ok)
	}
}

func TestOldest(t *testing.T) {
	q := New[string](validConfig())
	if _, _, ok := q.Oldest(Interactive); ok {
		t.Error("Oldest of an empty queue")
	}
	fill(t, q, B("b1", 1), I("i1", 2), I("i2", 3), B("b2", 4))
	for _, tc := range []struct {
		class Class
		id    string
		sec   int
	}{{Interactive, "i1", 2}, {Batch, "b1", 1}} {
		t.Run(tc.class.String(), func(t *testing.T) {
			id, when, ok := q.Oldest(tc.class)
			if !ok || id != tc.id || !when.Equal(at(tc.sec)) {
				t.Errorf("Oldest = %s %v %v, want %s at +%ds", id, when, ok, tc.id, tc.sec)
			}
		})
	}
}

func TestInvalidClass(t *testing.T) {
	q := New[string](validConfig())
	if _, _, err := q.Push("x", Class(2), Key{}, t0, "v"); !errors.Is(err, ErrClass) {
		t.Errorf("Push with class 2: %v, want ErrClass", err)
	}
	if q.Len() != 0 || q.LenClass(Class(2)) != 0 {
		t.Errorf("Len %d after a refused push", q.Len())
	}
	if _, _, ok := q.Oldest(Class(2)); ok {
		t.Error("Oldest(class 2) ok")
	}
}

func TestParse(t *testing.T) {
	for _, c := range []Class{Interactive, Batch} {
		t.Run(c.String(), func(t *testing.T) {
			if got, ok := ParseClass(c.String()); !ok || got != c {
				t.Errorf("ParseClass(%q) = %v, %v", c.String(), got, ok)
			}
		})
	}
	for _, p := range []Policy{Reject, DropLRU} {
		t.Run(p.String(), func(t *testing.T) {
			if got, err := ParsePolicy(p.String()); err != nil || got != p {
				t.Errorf("ParsePolicy(%q) = %v, %v", p.String(), got, err)
			}
		})
	}
	for _, s := range []string{"", "Interactive", "high", "drop_lru"} {
		t.Run("bad "+s, func(t *testing.T) {
			if _, ok := ParseClass(s); ok {
				t.Errorf("ParseClass(%q) ok", s)
			}
			if _, err := ParsePolicy(s); err == nil {
				t.Errorf("ParsePolicy(%q) ok", s)
			}
		})
	}
	if got := Class(7).String(); got != "class(7)" {
		t.Errorf("Class(7) = %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name  string
		tweak func(*Config)
		ok    bool
	}{
		{"valid", func(*Config) {}, true},
		{"capacity 1", func(c *Config) { c.Capacity = 1 }, true},
		{"no promotion", func(c *Config) { c.StarvationLimit = 0 }, true},
		{"capacity 0", func(c *Config) { c.Capacity = 0 }, false},
		{"negative limit", func(c *Config) { c.StarvationLimit = -time.Second }, false},
		{"unknown policy", func(c *Config) { c.Policy = 9 }, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.tweak(&cfg)
			if err := cfg.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
			defer func() {
				if p := recover(); (p == nil) != tc.ok {
					t.Errorf("New panic = %v, want ok %v", p, tc.ok)
				}
			}()
			New[int](cfg)
		})
	}
}

// model is the obvious slice implementation of the same contract, used to
// check the queue over random operations.
type model struct {
	cfg    Config
	items  []modelItem           // enqueue order
	lastAt [numClasses]time.Time // the latest enqueue time given per class
}

type modelItem struct {
	id    string
	class Class
	at    time.Time
}

func (m *model) count(c Class) int {
	n := 0
	for _, it := range m.items {
		if it.class == c {
			n++
		}
	}
	return n
}

func (m *model) push(id string, c Class, now time.Time) (string, error) {
	for _, it := range m.items {
		if it.id == id {
			return "", ErrDuplicate
		}
	}
	if now.Before(m.lastAt[c]) { // enqueue time never goes back
		now = m.lastAt[c]
	}
	dropped := ""
	if m.count(c) >= m.cfg.Capacity || len(m.items) >= 2*m.cfg.Capacity {
		i := slices.IndexFunc(m.items, func(it modelItem) bool { return it.class == Batch })
		if m.cfg.Policy == Reject || i < 0 {
			return "", ErrFull
		}
		dropped = m.items[i].id
		m.items = slices.Delete(m.items, i, i+1)
	}
	m.lastAt[c] = now
	m.items = append(m.items, modelItem{id, c, now})
	return dropped, nil
}

func (m *model) order(now time.Time) []string {
	var first, rest []string
	for _, it := range m.items {
		old := m.cfg.StarvationLimit > 0 && !it.at.After(now.Add(-m.cfg.StarvationLimit))
		if it.class == Interactive || old {
			first = append(first, it.id)
		} else {
			rest = append(rest, it.id)
		}
	}
	return append(first, rest...)
}

func TestAgainstModel(t *testing.T) {
	for _, policy := range []Policy{Reject, DropLRU} {
		t.Run(policy.String(), func(t *testing.T) {
			cfg := Config{Capacity: 5, StarvationLimit: 3 * time.Second, Policy: policy}
			q, m := New[string](cfg), &model{cfg: cfg}
			r := rand.New(rand.NewPCG(1, uint64(policy)))
			now := t0
			var drops, fulls, promotions int
			for step := range 5000 {
				now = now.Add(time.Duration(r.IntN(1500)) * time.Millisecond)
				id := fmt.Sprintf("t%d", r.IntN(40))
				switch op := r.IntN(5); {
				case op < 3:
					c := Batch
					if op == 0 {
						c = Interactive
					}
					pushAt := now.Add(-time.Duration(r.IntN(3)) * time.Second) // sometimes earlier
					wantDrop, wantErr := m.push(id, c, pushAt)
					d, _, err := q.Push(id, c, Key{}, pushAt, "v-"+id)
					gotDrop, v := d.ID, d.V
					if !errors.Is(err, wantErr) || gotDrop != wantDrop || (gotDrop != "" && v != "v-"+gotDrop) {
						t.Fatalf("step %d Push(%s, %v) = %q %q %v; model %q %v", step, id, c, gotDrop, v, err, wantDrop, wantErr)
					}
					if gotDrop != "" {
						drops++
					}
					if errors.Is(err, ErrFull) {
						fulls++
					}
				default:
					if len(m.items) > 0 && r.IntN(4) > 0 { // mostly a queued task
						id = m.items[r.IntN(len(m.items))].id
					}
					i := slices.IndexFunc(m.items, func(it modelItem) bool { return it.id == id })
					if i >= 0 {
						m.items = slices.Delete(m.items, i, i+1)
					}
					if _, ok := q.Remove(id); ok != (i >= 0) {
						t.Fatalf("step %d Remove(%s) = %v, model %v", step, id, ok, i >= 0)
					}
				}
				got, want := checkConsistent(t, q, now), m.order(now)
				if !slices.Equal(got, want) {

					t.Fatalf("step %d order %v, model %v", step, got, want)
				}
				if id, _, ok := q.Oldest(Interactive); ok && got[0] != id {
					promotions++ // a batch task dispatches before an interactive one
				}
				if q.LenClass(Batch) != m.count(Batch) {
					t.Fatalf("step %d LenClass(batch) %d, model %d", step, q.LenClass(Batch), m.count(Batch))
				}
			}
			// The walk must have reached the interesting states.
			if promotions == 0 || fulls == 0 || (policy == DropLRU) != (drops > 0) {
				t.Errorf("walk saw %d promotions, %d full, %d drops", promotions, fulls, drops)
			}
			t.Logf("%d promotions, %d full, %d drops", promotions, fulls, drops)
		})
	}
}

// Take and Restore put a task back at its place among the tasks queued now,
// whatever the capacity; Readmit appends whatever the capacity. Neither ever
// drops a task.
func TestTakeRestoreReadmit(t *testing.T) {
	q := New[string](Config{Capacity: 2, StarvationLimit: time.Minute, Policy: DropLRU})
	push := func(id string, c Class, at time.Time) {
		t.Helper()
		if _, dropped, err := q.Push(id, c, Key{}, at, "v-"+id); err != nil || dropped {
			t.Fatalf("Push(%s) = %v, dropped %v", id, err, dropped)
		}
	}
	push("a", Interactive, t0)
	push("b", Interactive, t0.Add(time.Second))
	push("x", Batch, t0.Add(2*time.Second))
	_, tk, ok := q.Take("a")
	if !ok {
		t.Fatal("Take(a)")
	}
	push("c", Interactive, t0.Add(3*time.Second)) // the class has room again
	if err := q.Restore("a", tk, "v-a"); err != nil {
		t.Fatalf("Restore(a) over capacity: %v", err)
	}
	if got := checkConsistent(t, q, t0.Add(4*time.Second)); !slices.Equal(got, []string{"a", "b", "c", "x"}) {
		t.Fatalf("order %v", got)
	}
	if q.LenClass(Batch) != 1 {
		t.Fatal("the batch task was dropped")
	}
	if err := q.Restore("a", tk, "v-a"); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("Restore of a queued id: %v", err)
	}
	if err := q.Restore("z", Ticket{}, "v-z"); !errors.Is(err, ErrClass) {
		t.Fatalf("Restore with a zero ticket: %v", err)
	}
	if err := q.Readmit("d", Interactive, Key{}, t0.Add(5*time.Second), "v-d"); err != nil {
		t.Fatalf("Readmit over capacity: %v", err)
	}
	if err := q.Readmit("e", Batch, Key{}, t0, "v-e"); err != nil { // an earlier time counts as the tail's
		t.Fatal(err)
	}
	// A task restored after the batch tasks' promotion keeps its old time.
	_, tk, _ = q.Take("b")
	if err := q.Restore("b", tk, "v-b"); err != nil {
		t.Fatal(err)
	}
	if got := checkConsistent(t, q, t0.Add(2*time.Minute)); !slices.Equal(got, []string{"a", "b", "x", "c", "d", "e"}) {
		t.Fatalf("order after promotion %v", got)
	}
	// New admissions still see the queue as full.
	if _, dropped, err := q.Push("f", Interactive, Key{}, t0.Add(6*time.Second), "v-f"); err != nil || !dropped {
		t.Fatalf("Push into a full queue with drop-lru: %v, dropped %v", err, dropped)
	}
}
