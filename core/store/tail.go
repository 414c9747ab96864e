package store

// The tail log, <data dir>/orchestrator.db.tail/:
//
//	orchestrator.db.tail/
//	├── 0000000000000001   records appended since an earlier journal batch
//	└── 0000000000000002   the segment being written
//
// The journal writes task progress to bbolt in batches (every few hundred
// milliseconds, one fsync each), never once per token. Events a client has
// seen must survive a crash of the process all the same, or a client that
// resumes with Last-Event-ID after a restart could miss or see again tokens
// the journal had not reached. So every event is first appended to the tail
// log — one write(2) per group of events, no fsync — and only then shown to
// clients. A process that is killed loses nothing: its writes are in the
// kernel's page cache. (A machine that loses power can lose the unsynced
// tail, as it loses the journal's last batch.)
//
// A journal batch starts a new segment (Rotate) when the current one has
// grown past a few MiB and, once bbolt has the batch, deletes the segments
// before the current one (Drop): the tail log stays small without a file
// operation per batch. At startup the orchestrator
// replays every segment left over (ReadTail) on top of bbolt, skipping what
// bbolt already holds.
//
// A segment is a sequence of records, each
//
//	length uint32 (big endian) ‖ crc32c(payload) uint32 ‖ payload
//
// where payload is kind byte ‖ fields: 'T' ‖ TaskRecord JSON (a new task), or
// 'E' ‖ uvarint len(task id) ‖ task id ‖ uvarint seq ‖ uvarint len(name) ‖
// name ‖ data (one event). A record cut short or failing its checksum ends
// its segment (a torn write at a crash).

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
)

// TailRecord is one record of the tail log: a new task, or one event of a
// task.
type TailRecord struct {
	// Task is set for a task's creation record.
	Task *TaskRecord
	// TaskID and Event are set for an event.
	TaskID string
	Event  Event
}

// maxTailRecord bounds one record (a task record holds a request of at most
// a few MiB).
const maxTailRecord = 64 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// TailLog is the append side of the tail log. It is safe for concurrent use.
type TailLog struct {
	dir string

	mu   sync.Mutex
	f    *os.File
	seg  uint64
	size int64 // of the current segment
	buf  []byte
}

// OpenTail opens the tail log in dir, creating it, and starts a new segment
// after the ones already there (which ReadTail replays).
func OpenTail(dir string) (*TailLog, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: tail log: %w", err)
	}
	segs, err := segments(dir)
	if err != nil {
		return nil, err
	}
	l := &TailLog{dir: dir}
	if n := len(segs); n > 0 {
		l.seg = segs[n-1]
	}
	if err := l.startLocked(); err != nil {
		return nil, err
	}
	return l, nil
}

// Dir is the directory of the log.
func (l *TailLog) Dir() string { return l.dir }

func segName(n uint64) string { return fmt.Sprintf("%016d", n) }

// segments lists the segment numbers in dir, in order.
func segments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: tail log: %w", err)
	}
	var out []uint64
	for _, e := range ents {
		if n, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && len(e.Name()) == 16 && e.Type().IsRegular() {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (l *TailLog) startLocked() error {
	f, err := os.OpenFile(filepath.Join(l.dir, segName(l.seg+1)), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("store: tail log: %w", err)
	}
	if l.f != nil {
		l.f.Close()
	}
	l.f, l.seg, l.size = f, l.seg+1, 0
	return nil
}

// Append writes records to the current segment in one write.
func (l *TailLog) Append(recs []TailRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return errors.New("store: tail log is closed")
	}
	l.buf = l.buf[:0]
	for i := range recs {
		var err error
		if l.buf, err = appendRecord(l.buf, &recs[i]); err != nil {
			return err
		}
	}
	if len(l.buf) == 0 {
		return nil
	}
	n, err := l.f.Write(l.buf)
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("store: tail log: %w", err)
	}
	if cap(l.buf) > 1<<20 {
		l.buf = nil // do not keep a large task's buffer
	}
	return nil
}

func appendRecord(b []byte, r *TailRecord) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // length and checksum, filled below
	if r.Task != nil {
		data, err := json.Marshal(r.Task)
		if err != nil {
			return b[:start], fmt.Errorf("store: tail log: encode task: %w", err)
		}
		b = append(b, 'T')
		b = append(b, data...)
	} else {
		b = append(b, 'E')
		b = binary.AppendUvarint(b, uint64(len(r.TaskID)))
		b = append(b, r.TaskID...)
		b = binary.AppendUvarint(b, r.Event.Seq)
		b = binary.AppendUvarint(b, uint64(len(r.Event.Name)))
		b = append(b, r.Event.Name...)
		b = append(b, r.Event.Data...)
	}
	payload := b[start+8:]
	if len(payload) > maxTailRecord {
		return b[:start], fmt.Errorf("store: tail log: record of %d bytes", len(payload))
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b, nil
}

// Rotate starts a new segment when the current one holds at least minSize
// bytes, and returns the number of the last segment that is closed: every
// record appended before the call is in it or in a segment before it, or in
// the current one when it did not rotate. A journal batch that holds those
// records may then Drop the closed segments.
func (l *TailLog) Rotate(minSize int64) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return l.seg - 1, errors.New("store: tail log is closed")
	}
	if l.size < minSize {
		return l.seg - 1, nil
	}
	sealed := l.seg
	return sealed, l.startLocked()
}

// Drop deletes the segments numbered upTo or less: what they hold is in
// bbolt now.
func (l *TailLog) Drop(upTo uint64) error {
	segs, err := segments(l.dir)
	if err != nil {
		return err
	}
	l.mu.Lock()
	cur := l.seg
	l.mu.Unlock()
	for _, n := range segs {
		if n > upTo || n >= cur {
			break
		}
		if err := os.Remove(filepath.Join(l.dir, segName(n))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store: tail log: %w", err)
		}
	}
	return nil
}

// Close closes the current segment.
func (l *TailLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// ReadTail calls fn with every record in dir's segments, oldest first, up
// to (not including) the segment numbered before; before 0 reads all. A
// torn or corrupt record ends its segment; ReadTail goes on with the next.
func ReadTail(dir string, before uint64, fn func(TailRecord) error) error {
	segs, err := segments(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, n := range segs {
		if before != 0 && n >= before {
			break
		}
		data, err := os.ReadFile(filepath.Join(dir, segName(n)))
		if err != nil {
			return fmt.Errorf("store: tail log: %w", err)
		}
		if err := readSegment(data, fn); err != nil {
			return err
		}
	}
	return nil
}

// readSegment decodes the records of one segment.
func readSegment(data []byte, fn func(TailRecord) error) error {
	for len(data) >= 8 {
		n := binary.BigEndian.Uint32(data)
		sum := binary.BigEndian.Uint32(data[4:])
		if n == 0 || n > maxTailRecord || uint64(len(data)-8) < uint64(n) {
			return nil // torn
		}
		payload := data[8 : 8+n]
		data = data[8+n:]
		if crc32.Checksum(payload, castagnoli) != sum {
			return nil // corrupt: the rest cannot be trusted
		}
		rec, err := decodeRecord(payload)
		if err != nil {
			return nil
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

func decodeRecord(p []byte) (TailRecord, error) {
	bad := errors.New("store: tail log: bad record")
	if len(p) == 0 {
		return TailRecord{}, bad
	}
	switch p[0] {
	case 'T':
		var t TaskRecord
		if err := json.Unmarshal(p[1:], &t); err != nil {
			return TailRecord{}, bad
		}
		return TailRecord{Task: &t}, nil
	case 'E':
		r := bytes.NewReader(p[1:])
		idLen, err := binary.ReadUvarint(r)
		if err != nil || idLen > uint64(r.Len()) {
			return TailRecord{}, bad
		}
		id := make([]byte, idLen)
		_, _ = io.ReadFull(r, id)
		seq, err := binary.ReadUvarint(r)
		if err != nil {
			return TailRecord{}, bad
		}
		nameLen, err := binary.ReadUvarint(r)
		if err != nil || nameLen > uint64(r.Len()) {
			return TailRecord{}, bad
		}
		name := make([]byte, nameLen)
		_, _ = io.ReadFull(r, name)
		data := make([]byte, r.Len())
		_, _ = io.ReadFull(r, data)
		return TailRecord{TaskID: string(id), Event: Event{Seq: seq, Name: string(name), Data: data}}, nil
	}
	return TailRecord{}, bad
}
