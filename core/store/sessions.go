package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucketSessions holds the orchestrator's sessions (POST /v2/sessions):
// session id → SessionRecord (JSON). Metadata only: never a prompt or an
// output. Written when a session is created or deleted and when a task of
// it ends (and by a periodic flush of what changed), never per token.
var bucketSessions = []byte("sessions")

// SessionRecord is a session with its budgets and what it used.
type SessionRecord struct {
	ID string `json:"id"`
	// Owner is the hash of the key that created it ("" without keys).
	Owner        string    `json:"owner,omitempty"`
	TokenBudget  int64     `json:"token_budget,omitempty"`
	TimeBudgetMs int64     `json:"time_budget_ms,omitempty"`
	TTLMs        int64     `json:"ttl_ms"`
	CreatedAt    time.Time `json:"created_at"`
	LastUsed     time.Time `json:"last_used"`
	Turns        int64     `json:"turns"`
	TokensUsed   int64     `json:"tokens_used"`
	TimeUsedMs   int64     `json:"time_used_ms"`
	// WorkerID is the worker of the session's last task.
	WorkerID string `json:"worker_id,omitempty"`
}

// PutSessions writes sessions in one transaction.
func (o *Orchestrator) PutSessions(rs []SessionRecord) error {
	if len(rs) == 0 {
		return nil
	}
	return o.db.Update(func(tx *bolt.Tx) error {
		for _, r := range rs {
			if err := put(tx, bucketSessions, r.ID, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteSessions removes sessions (absent ones are no error).
func (o *Orchestrator) DeleteSessions(ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	return o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		for _, id := range ids {
			if err := b.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Sessions returns every stored session.
func (o *Orchestrator) Sessions() (out []SessionRecord, err error) {
	err = o.db.View(func(tx *bolt.Tx) error { out, err = list[SessionRecord](tx, bucketSessions); return err })
	return out, err
}
