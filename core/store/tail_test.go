package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

func TestTailLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tail")
	l, err := OpenTail(dir)
	if err != nil {
		t.Fatal(err)
	}
	task := &TaskRecord{ID: "t-1", Model: "m", Status: api.TaskQueued, CreatedAt: time.Now().UTC().Round(0)}
	if err := l.Append([]TailRecord{{Task: task}, {TaskID: "t-1", Event: Event{Seq: 1, Name: "started", Data: []byte(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	if sealed, err := l.Rotate(1 << 20); err != nil || sealed != 0 {
		t.Fatalf("Rotate of a small segment: %d, %v", sealed, err)
	}
	sealed, err := l.Rotate(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Append([]TailRecord{{TaskID: "t-1", Event: Event{Seq: 2, Name: "token", Data: []byte(`{"t":"a","i":0,"id":7}`)}}}); err != nil {
		t.Fatal(err)
	}
	read := func(before uint64) []TailRecord {
		t.Helper()
		var out []TailRecord
		if err := ReadTail(dir, before, func(r TailRecord) error { out = append(out, r); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := read(0)
	if len(all) != 3 || all[0].Task == nil || all[0].Task.ID != "t-1" || all[1].Event.Name != "started" || all[2].Event.Seq != 2 ||
		string(all[2].Event.Data) != `{"t":"a","i":0,"id":7}` {
		t.Fatalf("records %+v", all)
	}
	if got := read(sealed + 1); len(got) != 2 {
		t.Fatalf("%d records before the second segment, want 2", len(got))
	}
	if err := l.Drop(sealed); err != nil {
		t.Fatal(err)
	}
	if got := read(0); len(got) != 1 || got[0].Event.Seq != 2 {
		t.Fatalf("after Drop: %+v", got)
	}
	// A torn last record (a crash in the middle of a write) ends its
	// segment; what came before it is read.
	if err := l.Append([]TailRecord{{TaskID: "t-1", Event: Event{Seq: 3, Name: "token", Data: []byte(`{}`)}}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	segs, _ := segments(dir)
	last := filepath.Join(dir, segName(segs[len(segs)-1]))
	data, _ := os.ReadFile(last)
	if err := os.WriteFile(last, data[:len(data)-3], 0o600); err != nil {
		t.Fatal(err)
	}
	if got := read(0); len(got) != 1 {
		t.Fatalf("a torn record was read: %+v", got)
	}
	// Reopening starts a new segment after the old ones.
	l2, err := OpenTail(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if l2.seg != segs[len(segs)-1]+1 {
		t.Fatalf("new segment %d after %v", l2.seg, segs)
	}
}

// FuzzTailSegment: whatever bytes a segment holds (a torn or corrupt tail
// after a crash), reading it never panics, and what it returns was written
// whole.
func FuzzTailSegment(f *testing.F) {
	good, _ := appendRecord(nil, &TailRecord{TaskID: "t-1", Event: Event{Seq: 1, Name: "token", Data: []byte(`{"t":"x"}`)}})
	good, _ = appendRecord(good, &TailRecord{Task: &TaskRecord{ID: "t-2"}})
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{0, 0, 0, 5, 1, 2, 3, 4, 'E', 200, 200})
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = readSegment(data, func(r TailRecord) error {
			// What was read encodes and reads back the same.
			enc, err := appendRecord(nil, &r)
			if err != nil {
				return nil // a task record too big to write again
			}
			var again []TailRecord
			_ = readSegment(enc, func(x TailRecord) error { again = append(again, x); return nil })
			if len(again) != 1 || again[0].TaskID != r.TaskID || again[0].Event.Seq != r.Event.Seq ||
				again[0].Event.Name != r.Event.Name || string(again[0].Event.Data) != string(r.Event.Data) ||
				(again[0].Task == nil) != (r.Task == nil) {
				t.Fatalf("%+v read back as %+v", r, again)
			}
			return nil
		})
	})
}
