package store

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/llorch/llorch/core/api"
)

// ErrExists is returned when a key's name (or its hash) is taken.
var ErrExists = errors.New("store: already exists")

// KeyRecord is an API key the orchestrator manages (POST /v2/keys): the
// SHA-256 of the key, never the key itself, and what the operator set on it.
// A revoked key's record stays, with RevokedAt set, so that its name keeps
// naming its usage and is never given to another key.
type KeyRecord struct {
	// SHA256 is the hex SHA-256 of the key (64 lowercase hex digits).
	SHA256    string      `json:"sha256"`
	Spec      api.KeySpec `json:"spec"`
	CreatedAt time.Time   `json:"created_at"`
	RevokedAt *time.Time  `json:"revoked_at,omitempty"`
}

// Revoked reports whether the key is revoked.
func (r KeyRecord) Revoked() bool { return r.RevokedAt != nil }

func checkKeyHash(h string) error {
	if len(h) != 64 || strings.ToLower(h) != h {
		return fmt.Errorf("store: a key hash is 64 lowercase hex digits")
	}
	if _, err := hex.DecodeString(h); err != nil {
		return fmt.Errorf("store: a key hash is 64 lowercase hex digits")
	}
	return nil
}

// CreateKey stores a new key; ErrExists when its name or its hash is taken
// (by a revoked key too: names are never reused).
func (o *Orchestrator) CreateKey(r KeyRecord) error {
	if err := checkKeyHash(r.SHA256); err != nil {
		return err
	}
	if r.Spec.Name == "" {
		return errors.New("store: a key needs a name")
	}
	return o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if b.Get([]byte(r.SHA256)) != nil {
			return fmt.Errorf("%w: a key with this hash", ErrExists)
		}
		if _, _, err := keyByName(tx, r.Spec.Name); err == nil {
			return fmt.Errorf("%w: key %q", ErrExists, r.Spec.Name)
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		return put(tx, bucketKeys, r.SHA256, r)
	})
}

// UpdateKey applies fn to the key named name and stores the result in one
// transaction; ErrNotFound when there is none. fn may not change the hash or
// the name; an error from fn is returned as is and nothing is written.
func (o *Orchestrator) UpdateKey(name string, fn func(*KeyRecord) error) (KeyRecord, error) {
	var out KeyRecord
	err := o.db.Update(func(tx *bolt.Tx) error {
		hash, r, err := keyByName(tx, name)
		if err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		if r.SHA256 != hash || r.Spec.Name != name {
			return errors.New("store: a key's hash and name cannot change")
		}
		out = r
		return put(tx, bucketKeys, hash, r)
	})
	return out, err
}

// Keys lists the stored keys, revoked ones included, by name.
func (o *Orchestrator) Keys() ([]KeyRecord, error) {
	var out []KeyRecord
	err := o.db.View(func(tx *bolt.Tx) (err error) {
		out, err = list[KeyRecord](tx, bucketKeys)
		return err
	})
	slices.SortFunc(out, func(a, b KeyRecord) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	return out, err
}

// HasKeys reports whether any key was ever stored (revoked ones count: an
// orchestrator that had keys never runs open again).
func (o *Orchestrator) HasKeys() (bool, error) {
	var has bool
	err := o.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketKeys).Cursor().First()
		has = k != nil
		return nil
	})
	return has, err
}

// keyByName finds a key by its name (keys are few: operator-created).
func keyByName(tx *bolt.Tx, name string) (string, KeyRecord, error) {
	c := tx.Bucket(bucketKeys).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		var r KeyRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return "", KeyRecord{}, fmt.Errorf("store: decode %s/%s: %w", bucketKeys, k, err)
		}
		if r.Spec.Name == name {
			return string(k), r, nil
		}
	}
	return "", KeyRecord{}, fmt.Errorf("%w: key %q", ErrNotFound, name)
}
