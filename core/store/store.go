package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Errors returned by the store.
var (
	ErrNotFound = errors.New("store: not found")
	ErrLocked   = errors.New("store: database is in use")
	ErrVersion  = errors.New("store: database was written by a newer llorch")
)

var (
	bucketMeta = []byte("meta")
	keyVersion = []byte("version")
)

// migration upgrades a database from version i to i+1.
type migration func(tx *bolt.Tx) error

// open opens (creating) a bbolt file, creates buckets and runs migrations up
// to len(migrations).
func open(path string, timeout time.Duration, buckets [][]byte, migrations []migration) (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s stayed locked for %s (is another llorch using it?)", ErrLocked, path, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range append([][]byte{bucketMeta}, buckets...) {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		var v uint64
		if raw := meta.Get(keyVersion); len(raw) == 8 {
			v = binary.BigEndian.Uint64(raw)
		}
		if v > uint64(len(migrations)) {
			return fmt.Errorf("%w (version %d, this llorch knows %d)", ErrVersion, v, len(migrations))
		}
		for ; v < uint64(len(migrations)); v++ {
			if err := migrations[v](tx); err != nil {
				return fmt.Errorf("store: migration to version %d: %w", v+1, err)
			}
		}
		return meta.Put(keyVersion, binary.BigEndian.AppendUint64(nil, v))
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func put(tx *bolt.Tx, bucket []byte, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s/%s: %w", bucket, key, err)
	}
	return tx.Bucket(bucket).Put([]byte(key), data)
}

func get(tx *bolt.Tx, bucket []byte, key string, v any) error {
	data := tx.Bucket(bucket).Get([]byte(key))
	if data == nil {
		return fmt.Errorf("%w: %s %q", ErrNotFound, bucket, key)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("store: decode %s/%s: %w", bucket, key, err)
	}
	return nil
}

func list[T any](tx *bolt.Tx, bucket []byte) ([]T, error) {
	var out []T
	err := tx.Bucket(bucket).ForEach(func(k, data []byte) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("store: decode %s/%s: %w", bucket, k, err)
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// byKey is list by key.
func byKey[T any](tx *bolt.Tx, bucket []byte) (map[string]T, error) {
	out := map[string]T{}
	err := tx.Bucket(bucket).ForEach(func(k, data []byte) error {
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return fmt.Errorf("store: decode %s/%s: %w", bucket, k, err)
		}
		out[string(k)] = v
		return nil
	})
	return out, err
}
