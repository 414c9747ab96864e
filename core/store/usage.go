package store

// Usage: what each key used of each model, by UTC hour.
//
//	usage  key ‖ 0x00 ‖ model ‖ 0x00 ‖ hour (unix seconds, uint64 big endian) → api.UsageRow's sums (JSON)
//
// Keys sort by key, then model, then hour, so one key's (or one key and
// model's) rows over a time range are a few cursor seeks away. Key and model
// names are ids (api.CheckID): they hold no 0x00.
//
// A task is counted once, in the transaction that journals its terminal
// record (Journal): the record's UsageCounted flag says it was, so neither a
// restart (the tail log replayed, the journal read again) nor a task resumed
// or migrated counts it twice. Requests refused at admission are added in
// batches (AddUsage).

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/llorch/llorch/core/api"
)

var bucketUsage = []byte("usage")

// HourOf is the UTC hour that holds at.
func HourOf(at time.Time) time.Time { return at.UTC().Truncate(time.Hour) }

// Usage is the usage of a task that ended, as Journal counts it: one
// request in the hour it finished, the prompt tokens its first started
// event reported, every token it streamed, its error code, and its time
// queued (creation to first start, or to its end if it never started) and
// in service (first start to end).
func (r *TaskRecord) Usage() api.UsageRow {
	row := api.UsageRow{Key: r.Key, Model: r.Model, Hour: HourOf(r.FinishedAt), Requests: 1,
		PromptTokens: int64(r.PromptTokens), CachedPromptTokens: int64(r.CachedTokens), GeneratedTokens: int64(r.TokensOut)}
	if r.Error != nil && r.Error.Code != "" {
		row.Errors = map[string]int64{r.Error.Code: 1}
	}
	end := r.FinishedAt
	if r.StartedAt.IsZero() {
		row.QueueMs = msBetween(r.CreatedAt, end)
	} else {
		row.QueueMs = msBetween(r.CreatedAt, r.StartedAt)
		row.ServiceMs = msBetween(r.StartedAt, end)
	}
	return row
}

func msBetween(a, b time.Time) float64 {
	if a.IsZero() || b.Before(a) {
		return 0
	}
	return float64(b.Sub(a).Microseconds()) / 1e3
}

func usageKey(key, model string, hour time.Time) []byte {
	k := make([]byte, 0, len(key)+len(model)+10)
	k = append(append(append(append(k, key...), 0), model...), 0)
	return binary.BigEndian.AppendUint64(k, uint64(hour.Unix()))
}

// splitUsageKey is usageKey's inverse; ok is false for a malformed key.
func splitUsageKey(k []byte) (key, model string, hour time.Time, ok bool) {
	if len(k) < 10 {
		return "", "", time.Time{}, false
	}
	head, ts := k[:len(k)-8], k[len(k)-8:]
	i := bytes.IndexByte(head, 0)
	if i < 0 || i == len(head)-1 || head[len(head)-1] != 0 {
		return "", "", time.Time{}, false
	}
	key, model = string(head[:i]), string(head[i+1:len(head)-1])
	return key, model, time.Unix(int64(binary.BigEndian.Uint64(ts)), 0).UTC(), true
}

// addUsageTx adds row to its bucket (key, model, hour) within tx.
func addUsageTx(tx *bolt.Tx, row api.UsageRow) error {
	b := tx.Bucket(bucketUsage)
	k := usageKey(row.Key, row.Model, HourOf(row.Hour))
	var s api.UsageRow // its sums only: the bbolt key holds the key, model and hour
	if v := b.Get(k); v != nil {
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("store: decode usage %q: %w", k, err)
		}
	}
	s.Add(row)
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("store: encode usage: %w", err)
	}
	return b.Put(k, data)
}

// AddUsage adds rows (each to the hour that holds its Hour) in one
// transaction: the requests refused at admission, which have no task.
func (o *Orchestrator) AddUsage(rows []api.UsageRow) error {
	if len(rows) == 0 {
		return nil
	}
	return o.db.Update(func(tx *bolt.Tx) error {
		for _, r := range rows {
			if err := addUsageTx(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// countUsageTx counts a terminal task record's usage unless it was counted
// before (by the record as given, or as stored), and marks it counted. It
// reports whether it counted now.
func countUsageTx(tx *bolt.Tx, r *TaskRecord) (bool, error) {
	if r.UsageCounted || !terminalStatus(r.Status) {
		return false, nil
	}
	if v := tx.Bucket(bucketTasks).Get([]byte(r.ID)); v != nil {
		var stored struct {
			UsageCounted bool `json:"usage_counted"`
		}
		if err := json.Unmarshal(v, &stored); err != nil {
			return false, fmt.Errorf("store: decode task %q: %w", r.ID, err)
		}
		if stored.UsageCounted {
			r.UsageCounted = true
			return false, nil
		}
	}
	if err := addUsageTx(tx, r.Usage()); err != nil {
		return false, err
	}
	r.UsageCounted = true
	return true, nil
}

func terminalStatus(s string) bool {
	return s == api.TaskSucceeded || s == api.TaskFailed || s == api.TaskCancelled
}

// UsageFilter selects usage rows: a key and a model ("" matches any) and the
// hours that start in [Since, Until) once Since is truncated to its hour.
type UsageFilter struct {
	Key, Model   string
	Since, Until time.Time
}

// Usage returns the hourly rows f selects, oldest first (then by key and
// model). It seeks each (key, model) pair to f.Since and stops at f.Until,
// so a range reads only its own rows and one seek per pair.
func (o *Orchestrator) Usage(f UsageFilter) ([]api.UsageRow, error) {
	since, until := HourOf(f.Since), f.Until
	var out []api.UsageRow
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketUsage).Cursor()
		var prefix []byte
		if f.Key != "" {
			prefix = append([]byte(f.Key), 0)
			if f.Model != "" {
				prefix = append(append(prefix, f.Model...), 0)
			}
		}
		k, _ := c.Seek(prefix)
		for k != nil && bytes.HasPrefix(k, prefix) {
			key, model, _, ok := splitUsageKey(k)
			if !ok {
				return fmt.Errorf("store: malformed usage key %q", k)
			}
			pair := append(append(append(append([]byte(nil), key...), 0), model...), 0)
			if f.Model != "" && model != f.Model {
				// Next pair: past every hour of this model.
				k, _ = c.Seek(append(pair[:len(pair)-1:len(pair)-1], 1))
				continue
			}
			var v []byte
			for k, v = c.Seek(usageKey(key, model, since)); k != nil && bytes.HasPrefix(k, pair) && len(k) == len(pair)+8; k, v = c.Next() {
				_, _, hour, _ := splitUsageKey(k)
				if !hour.Before(until) {
					break
				}
				var r api.UsageRow
				if err := json.Unmarshal(v, &r); err != nil {
					return fmt.Errorf("store: decode usage %q: %w", k, err)
				}
				r.Key, r.Model, r.Hour = key, model, hour
				out = append(out, r)
			}
			k, _ = c.Seek(append(pair[:len(pair)-1:len(pair)-1], 1))
		}
		return nil
	})
	slices.SortStableFunc(out, func(a, b api.UsageRow) int { return a.Hour.Compare(b.Hour) })
	return out, err
}

// UsageTotals sums rows; the totals carry the key and model when every row
// has the same one.
func UsageTotals(rows []api.UsageRow) api.UsageRow {
	var t api.UsageRow
	for i, r := range rows {
		if i == 0 {
			t.Key, t.Model = r.Key, r.Model
		}
		if t.Key != r.Key {
			t.Key = ""
		}
		if t.Model != r.Model {
			t.Model = ""
		}
		t.Add(r)
	}
	return t
}
