package store

// The orchestrator database, <data dir>/orchestrator.db:
//
//	orchestrator.db
//	├── meta      version → uint64 (big endian)
//	├── workers   worker id → Worker registration and last known state (JSON)
//	├── pools     pool name → api.Pool (JSON)
//	├── tasks     task id → TaskRecord (JSON; the prompt is dropped when the task ends)
//	├── events    task id ‖ 0x00 ‖ seq (uint64 big endian) → Event (JSON)
//	├── settings  name → value (the routing script)
//	├── models    model id → FleetModel: a declared model's spec and revision (JSON)
//	├── poolstate pool name → PoolState: last inventory, state and error (JSON)
//	├── replicas  worker id → Replica: a worker the fleet started (JSON)
//	├── fit       digest|backend|ctx|slots → Fit: learned memory correction (JSON)
//	├── fleetlog  seq (uint64 big endian) → api.FleetEvent (JSON); the newest
//	│             MaxFleetEvents are kept
//	├── keys      SHA-256 of an API key (hex) → KeyRecord: its spec, never the
//	│             key itself (JSON; keys.go)
//	├── usage     key ‖ 0x00 ‖ model ‖ 0x00 ‖ hour (uint64 big endian) → hourly
//	│             sums of a key's use of a model (JSON; usage.go)
//	└── sessions  session id → SessionRecord: budgets and use, never prompts
//	              (JSON; sessions.go)
//
// Next to it, orchestrator.db.tail/ holds the tail log: the events appended
// since the last journal batch (see tail.go).
//
// Events are appended in batches by the orchestrator's journal (never one
// write per token); a task's events sort together and in order.

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

var (
	bucketOrchWorkers = []byte("workers")
	bucketPools       = []byte("pools")
	bucketTasks       = []byte("tasks")
	bucketEvents      = []byte("events")
	bucketSettings    = []byte("settings")
	bucketPoolState   = []byte("poolstate")
	bucketReplicas    = []byte("replicas")
	bucketFit         = []byte("fit")
	bucketFleetLog    = []byte("fleetlog")
	bucketKeys        = []byte("keys")
)

var orchMigrations = []migration{
	func(*bolt.Tx) error { return nil },
	// 2: the fleet buckets (created by open); api.Pool gained a transport,
	// and a pool stored without one is an ssh pool.
	func(*bolt.Tx) error { return nil },
	// 3: the keys bucket (created by open). An older llorch must not open
	// a database whose API keys it would ignore (it would run open).
	func(*bolt.Tx) error { return nil },
	// 4: the usage bucket (created by open); task records gained their key's
	// name and usage fields. Tasks that ended before are not counted.
	func(*bolt.Tx) error { return nil },
	// 5: the sessions bucket (created by open).
	func(*bolt.Tx) error { return nil },
}

// WorkerRecord is a registered worker as the orchestrator remembers it.
type WorkerRecord struct {
	api.WorkerRegistration
	State        string    `json:"state"`
	RegisteredAt time.Time `json:"registered_at"`
	LastSeen     time.Time `json:"last_seen"`
}

// TaskRecord is a task in the journal.
type TaskRecord struct {
	ID       string           `json:"id"`
	Request  *api.TaskRequest `json:"request,omitempty"` // nil once the task ended
	Model    string           `json:"model"`
	Priority string           `json:"priority"`
	Status   string           `json:"status"`
	// Owner identifies the API key that submitted the task (a hash, never
	// the key); "" when the orchestrator runs without keys.
	Owner string `json:"owner,omitempty"`
	// Correlation is the request's X-Correlation-Id, passed to workers.
	Correlation string `json:"correlation,omitempty"`
	// Async tasks were answered 202; stream tasks were streamed at once.
	Async       bool             `json:"async"`
	Seed        uint32           `json:"seed"`
	CreatedAt   time.Time        `json:"created_at"`
	StartedAt   time.Time        `json:"started_at,omitzero"`
	FinishedAt  time.Time        `json:"finished_at,omitzero"`
	WorkerID    string           `json:"worker_id,omitempty"`
	Attempts    int              `json:"attempts"`
	Text        string           `json:"text,omitempty"`
	TokensOut   int              `json:"tokens_out"`
	End         *api.End         `json:"end,omitempty"`
	Error       *api.Error       `json:"error,omitempty"`
	Explanation *api.Explanation `json:"explanation,omitempty"`
	// Key is the name of the key that submitted the task, for usage ("" when
	// the orchestrator runs without keys).
	Key string `json:"key,omitempty"`
	// PromptTokens and CachedTokens are what the task's first started event
	// reported (a resumed attempt's prompt holds the tokens already sent:
	// not counted again).
	PromptTokens int `json:"prompt_tokens,omitempty"`
	CachedTokens int `json:"cached_tokens,omitempty"`
	// UsageCounted is set by the journal batch that counted the ended
	// task's usage (usage.go), so that it is never counted twice.
	UsageCounted bool `json:"usage_counted,omitempty"`
}

// Event is one stored stream event; Seq is its SSE id.
type Event struct {
	Seq  uint64          `json:"seq"`
	Name string          `json:"name"`
	Data json.RawMessage `json:"data"`
}

// TaskWrite is one task's share of a journal batch: its record and the events
// appended since the last write.
type TaskWrite struct {
	Task   TaskRecord
	Events []Event
	// Counted is set by Journal when this write counted the task's usage
	// (it had ended and was not counted before).
	Counted bool
}

// Orchestrator is the orchestrator's database and its tail log (tail.go).
type Orchestrator struct {
	db   *bolt.DB
	tail *TailLog
}

// OpenOrchestrator opens or creates the orchestrator database at path, and
// its tail log in path + ".tail" (opened after bbolt's lock is taken, so two
// orchestrators never share it).
func OpenOrchestrator(path string, timeout time.Duration) (*Orchestrator, error) {
	db, err := open(path, timeout, [][]byte{bucketOrchWorkers, bucketPools, bucketTasks, bucketEvents, bucketSettings,
		bucketModels, bucketPoolState, bucketReplicas, bucketFit, bucketFleetLog, bucketKeys,
		bucketUsage, bucketSessions}, orchMigrations)
	if err != nil {
		return nil, err
	}
	tail, err := OpenTail(path + ".tail")
	if err != nil {
		db.Close()
		return nil, err
	}
	return &Orchestrator{db: db, tail: tail}, nil
}

// Close closes the database and the tail log.
func (o *Orchestrator) Close() error {
	terr := o.tail.Close()
	if err := o.db.Close(); err != nil {
		return err
	}
	return terr
}

// Tail is the tail log.
func (o *Orchestrator) Tail() *TailLog { return o.tail }

// ReplayTail calls fn with the records an earlier process left in the tail
// log (the segments before the one this process writes), oldest first.
func (o *Orchestrator) ReplayTail(fn func(TailRecord) error) error {
	o.tail.mu.Lock()
	cur := o.tail.seg
	o.tail.mu.Unlock()
	return ReadTail(o.tail.dir, cur, fn)
}

// PutWorker records a worker.
func (o *Orchestrator) PutWorker(w WorkerRecord) error {
	return o.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketOrchWorkers, w.WorkerID, w) })
}

// DeleteWorker forgets a worker; a missing one is not an error.
func (o *Orchestrator) DeleteWorker(id string) error {
	return o.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOrchWorkers).Delete([]byte(id)) })
}

// Workers lists workers in id order.
func (o *Orchestrator) Workers() ([]WorkerRecord, error) {
	var out []WorkerRecord
	err := o.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[WorkerRecord](tx, bucketOrchWorkers)
		return err
	})
	return out, err
}

// PutPool records a pool.
func (o *Orchestrator) PutPool(p api.Pool) error {
	return o.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketPools, p.Name, p) })
}

// DeletePool removes a pool; ErrNotFound if there is none by that name.
func (o *Orchestrator) DeletePool(name string) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketPools).Get([]byte(name)) == nil {
			return fmt.Errorf("%w: pool %q", ErrNotFound, name)
		}
		if err := tx.Bucket(bucketPoolState).Delete([]byte(name)); err != nil {
			return err
		}
		return tx.Bucket(bucketPools).Delete([]byte(name))
	})
}

// Pools lists pools in name order.
func (o *Orchestrator) Pools() ([]api.Pool, error) {
	var out []api.Pool
	err := o.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[api.Pool](tx, bucketPools)
		return err
	})
	return out, err
}

// Journal writes a batch of task records and their new events in one
// transaction. A record of a task that ended is counted in the usage
// bucket in the same transaction, once (usage.go); the writes counted get
// Counted once the transaction has committed.
func (o *Orchestrator) Journal(batch []TaskWrite) error {
	if len(batch) == 0 {
		return nil
	}
	counted := make([]bool, len(batch))
	err := o.db.Update(func(tx *bolt.Tx) error {
		eb := tx.Bucket(bucketEvents)
		for i := range batch {
			w := batch[i] // a copy: a failed transaction leaves the batch as it was
			var err error
			if counted[i], err = countUsageTx(tx, &w.Task); err != nil {
				return err
			}
			if err := put(tx, bucketTasks, w.Task.ID, w.Task); err != nil {
				return err
			}
			for _, ev := range w.Events {
				data, err := json.Marshal(ev)
				if err != nil {
					return fmt.Errorf("store: encode event: %w", err)
				}
				if err := eb.Put(eventKey(w.Task.ID, ev.Seq), data); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := range batch {
		if counted[i] {
			batch[i].Counted, batch[i].Task.UsageCounted = true, true
		}
	}
	return nil
}

// DeleteTasks removes tasks and their events.
func (o *Orchestrator) DeleteTasks(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return o.db.Update(func(tx *bolt.Tx) error {
		for _, id := range ids {
			if err := tx.Bucket(bucketTasks).Delete([]byte(id)); err != nil {
				return err
			}
			c := tx.Bucket(bucketEvents).Cursor()
			prefix := eventPrefix(id)
			for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Seek(prefix) {
				if err := c.Delete(); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Tasks lists every journaled task in id order.
func (o *Orchestrator) Tasks() ([]TaskRecord, error) {
	var out []TaskRecord
	err := o.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[TaskRecord](tx, bucketTasks)
		return err
	})
	return out, err
}

// Events returns a task's stored events in order.
func (o *Orchestrator) Events(id string) ([]Event, error) {
	var out []Event
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEvents).Cursor()
		prefix := eventPrefix(id)
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			var ev Event
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("store: decode event %q: %w", k, err)
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

// PutSetting stores a named value; nil deletes it.
func (o *Orchestrator) PutSetting(name string, value []byte) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		if value == nil {
			return tx.Bucket(bucketSettings).Delete([]byte(name))
		}
		return tx.Bucket(bucketSettings).Put([]byte(name), value)
	})
}

// Setting returns a named value, or nil.
func (o *Orchestrator) Setting(name string) ([]byte, error) {
	var out []byte
	err := o.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketSettings).Get([]byte(name)); v != nil {
			out = bytes.Clone(v)
		}
		return nil
	})
	return out, err
}

func eventPrefix(id string) []byte { return append([]byte(id), 0) }

func eventKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(eventPrefix(id), seq)
}

// FleetModel is a declared model: its spec, and the previous one while a
// rolling change may still roll back to it.
type FleetModel struct {
	Spec     api.ModelSpec  `json:"spec"`
	Revision uint64         `json:"revision"`
	Previous *api.ModelSpec `json:"previous,omitempty"`
}

// PoolState is the fleet's last view of a pool.
type PoolState struct {
	State       string          `json:"state"`
	LastError   string          `json:"last_error,omitempty"`
	RefreshedAt time.Time       `json:"refreshed_at,omitzero"`
	Inventory   *api.PoolStatus `json:"inventory,omitempty"`
}

// Replica is a worker the fleet started (or is starting): written before the
// spawn, so that a restart finds a half-done start and resolves it from the
// pool's own state.
type Replica struct {
	WorkerID  string    `json:"worker_id"`
	Model     string    `json:"model"`
	Pool      string    `json:"pool"`
	Revision  uint64    `json:"revision"`
	Source    string    `json:"source"`
	NeedBytes uint64    `json:"need_bytes"`
	GPU       int       `json:"gpu"`   // the device placed on; -1: none
	Phase     string    `json:"phase"` // starting, ready, stopping
	CreatedAt time.Time `json:"created_at"`
}

// Fit is the learned ratio of a model's measured memory to its estimate.
type Fit struct {
	EstimateBytes uint64    `json:"estimate_bytes"`
	ActualBytes   uint64    `json:"actual_bytes"`
	Ratio         float64   `json:"ratio"`
	Samples       int       `json:"samples"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// MaxFleetEvents bounds the fleet event log.
const MaxFleetEvents = 10000

// PutModel stores a declared model.
func (o *Orchestrator) PutModel(m FleetModel) error {
	return o.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketModels, m.Spec.ID, m) })
}

// DeleteModel removes a declared model (no error when absent).
func (o *Orchestrator) DeleteModel(id string) error {
	return o.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketModels).Delete([]byte(id)) })
}

// Models lists the declared models in id order.
func (o *Orchestrator) Models() (out []FleetModel, err error) {
	err = o.db.View(func(tx *bolt.Tx) error { out, err = list[FleetModel](tx, bucketModels); return err })
	return out, err
}

// PutPoolState stores a pool's last view; DeletePool removes it too.
func (o *Orchestrator) PutPoolState(name string, s PoolState) error {
	return o.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketPoolState, name, s) })
}

// PoolStates returns every pool's last view by name.
func (o *Orchestrator) PoolStates() (out map[string]PoolState, err error) {
	err = o.db.View(func(tx *bolt.Tx) error { out, err = byKey[PoolState](tx, bucketPoolState); return err })
	return out, err
}

// PutReplica records a fleet worker.
func (o *Orchestrator) PutReplica(r Replica) error {
	return o.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketReplicas, r.WorkerID, r) })
}

// DeleteReplica forgets a fleet worker (no error when absent).
func (o *Orchestrator) DeleteReplica(id string) error {
	return o.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketReplicas).Delete([]byte(id)) })
}

// Replicas lists the fleet's workers.
func (o *Orchestrator) Replicas() (out []Replica, err error) {
	err = o.db.View(func(tx *bolt.Tx) error { out, err = list[Replica](tx, bucketReplicas); return err })
	return out, err
}

// PutFit stores a learned fit under its key.
func (o *Orchestrator) PutFit(key string, f Fit) error {
	return o.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketFit, key, f) })
}

// Fits returns every learned fit by key.
func (o *Orchestrator) Fits() (out map[string]Fit, err error) {
	err = o.db.View(func(tx *bolt.Tx) error { out, err = byKey[Fit](tx, bucketFit); return err })
	return out, err
}

// AppendFleetEvents stores events (their Seq set by the caller, increasing)
// and drops the oldest beyond MaxFleetEvents.
func (o *Orchestrator) AppendFleetEvents(evs []api.FleetEvent) error {
	return o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFleetLog)
		for _, ev := range evs {
			data, err := json.Marshal(ev)
			if err != nil {
				return fmt.Errorf("store: encode fleet event: %w", err)
			}
			if err := b.Put(binary.BigEndian.AppendUint64(nil, ev.Seq), data); err != nil {
				return err
			}
		}
		if len(evs) == 0 || evs[len(evs)-1].Seq <= MaxFleetEvents {
			return nil
		}
		cut := evs[len(evs)-1].Seq - MaxFleetEvents
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= cut; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
}

// FleetEvents returns the newest limit stored events, oldest first.
func (o *Orchestrator) FleetEvents(limit int) ([]api.FleetEvent, error) {
	var out []api.FleetEvent
	err := o.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketFleetLog).Cursor()
		for k, v := c.Last(); k != nil && len(out) < limit; k, v = c.Prev() {
			var ev api.FleetEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("store: decode fleet event: %w", err)
			}
			out = append(out, ev)
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}
