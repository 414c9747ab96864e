package store

// The pool database, <pool dir>/pool.db, one per pool host:
//
//	pool.db
//	├── meta      version → uint64 (big endian)
//	├── models    model id → Model (JSON)
//	├── aliases   alias → model id
//	├── backends  "report" → detection report (JSON, see core/detect)
//	└── workers   worker id → Worker (JSON)
//
// Keys are sorted by bbolt, so listings come out in id order.

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketModels   = []byte("models")
	bucketAliases  = []byte("aliases")
	bucketBackends = []byte("backends")
	bucketWorkers  = []byte("workers")
	keyReport      = "report"
)

// poolMigrations: index i upgrades version i to i+1. Version 1 is the first schema.
var poolMigrations = []migration{
	func(*bolt.Tx) error { return nil },
}

// Model is a model in a pool's catalog.
type Model struct {
	ID        string    `json:"id"`
	Aliases   []string  `json:"aliases,omitempty"`
	Ref       string    `json:"ref"`
	Path      string    `json:"path"`
	InPlace   bool      `json:"in_place"` // registered from file:, not copied
	SHA256    string    `json:"sha256"`
	Verified  bool      `json:"verified"` // the hash matched the hub's LFS id
	SizeBytes int64     `json:"size_bytes"`
	AddedAt   time.Time `json:"added_at"`
	// From the GGUF header.
	Arch         string `json:"arch,omitempty"`
	Params       uint64 `json:"params,omitempty"`
	FileType     string `json:"file_type,omitempty"`
	ContextLen   int    `json:"context_length,omitempty"`
	ChatTemplate bool   `json:"chat_template"`
}

// Worker is a worker process spawned by the pool.
type Worker struct {
	ID        string    `json:"id"`
	PID       int       `json:"pid"`
	StartTime uint64    `json:"start_time"` // /proc start time; pid + start time identify the process
	Port      int       `json:"port"`       // 0 until the worker has bound and spawn recorded it
	URL       string    `json:"url"`        // "" until then: read AddrFile
	AddrFile  string    `json:"addr_file"`  // where the worker writes its URL once bound (worker --addr-file)
	Model     string    `json:"model"`
	ModelPath string    `json:"model_path"`
	Backend   string    `json:"backend"`
	GPU       int       `json:"gpu"`
	Slots     int       `json:"slots"`
	LogPath   string    `json:"log_path"`
	StartedAt time.Time `json:"started_at"`
}

// Pool is a pool host's database.
type Pool struct{ db *bolt.DB }

// OpenPool opens or creates the pool database at path.
func OpenPool(path string, timeout time.Duration) (*Pool, error) {
	db, err := open(path, timeout, [][]byte{bucketModels, bucketAliases, bucketBackends, bucketWorkers}, poolMigrations)
	if err != nil {
		return nil, err
	}
	return &Pool{db: db}, nil
}

// Close closes the database.
func (p *Pool) Close() error { return p.db.Close() }

// PutModel records a model and its aliases. An alias that names another model
// is an error.
func (p *Pool) PutModel(m Model) error {
	return p.db.Update(func(tx *bolt.Tx) error {
		al := tx.Bucket(bucketAliases)
		for _, a := range m.Aliases {
			if owner := al.Get([]byte(a)); owner != nil && string(owner) != m.ID {
				return fmt.Errorf("store: alias %q already names model %q", a, owner)
			}
			if tx.Bucket(bucketModels).Get([]byte(a)) != nil && a != m.ID {
				return fmt.Errorf("store: alias %q is the id of another model", a)
			}
		}
		for _, a := range m.Aliases {
			if err := al.Put([]byte(a), []byte(m.ID)); err != nil {
				return err
			}
		}
		return put(tx, bucketModels, m.ID, m)
	})
}

// Model finds a model by id or alias.
func (p *Pool) Model(idOrAlias string) (Model, error) {
	var m Model
	err := p.db.View(func(tx *bolt.Tx) error {
		id := idOrAlias
		if owner := tx.Bucket(bucketAliases).Get([]byte(idOrAlias)); owner != nil {
			id = string(owner)
		}
		return get(tx, bucketModels, id, &m)
	})
	return m, err
}

// Models lists the catalog in id order.
func (p *Pool) Models() ([]Model, error) {
	var out []Model
	err := p.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[Model](tx, bucketModels)
		return err
	})
	return out, err
}

// DeleteModel removes a model (by id or alias) and its aliases, returning it.
func (p *Pool) DeleteModel(idOrAlias string) (Model, error) {
	var m Model
	err := p.db.Update(func(tx *bolt.Tx) error {
		id := idOrAlias
		if owner := tx.Bucket(bucketAliases).Get([]byte(idOrAlias)); owner != nil {
			id = string(owner)
		}
		if err := get(tx, bucketModels, id, &m); err != nil {
			return err
		}
		for _, a := range m.Aliases {
			if err := tx.Bucket(bucketAliases).Delete([]byte(a)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketModels).Delete([]byte(id))
	})
	return m, err
}

// PutBackends records the latest backend detection report (any JSON value).
func (p *Pool) PutBackends(report any) error {
	return p.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketBackends, keyReport, report) })
}

// Backends decodes the recorded detection report into v; ErrNotFound if none.
func (p *Pool) Backends(v any) error {
	return p.db.View(func(tx *bolt.Tx) error { return get(tx, bucketBackends, keyReport, v) })
}

// PutWorker records a worker.
func (p *Pool) PutWorker(w Worker) error {
	return p.db.Update(func(tx *bolt.Tx) error { return put(tx, bucketWorkers, w.ID, w) })
}

// Worker returns one worker.
func (p *Pool) Worker(id string) (Worker, error) {
	var w Worker
	err := p.db.View(func(tx *bolt.Tx) error { return get(tx, bucketWorkers, id, &w) })
	return w, err
}

// Workers lists workers in id order.
func (p *Pool) Workers() ([]Worker, error) {
	var out []Worker
	err := p.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[Worker](tx, bucketWorkers)
		return err
	})
	return out, err
}

// DeleteWorker removes a worker record.
func (p *Pool) DeleteWorker(id string) error {
	return p.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketWorkers).Get([]byte(id)) == nil {
			return fmt.Errorf("%w: worker %q", ErrNotFound, id)
		}
		return tx.Bucket(bucketWorkers).Delete([]byte(id))
	})
}
