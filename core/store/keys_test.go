package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
)

func keyRecord(name, secret string) KeyRecord {
	sum := sha256.Sum256([]byte(secret))
	return KeyRecord{SHA256: hex.EncodeToString(sum[:]), CreatedAt: time.Now().UTC().Truncate(time.Second),
		Spec: api.KeySpec{Name: name, Role: "user", Weight: 1}}
}

// Keys are created with unique names and hashes, updated in place, revoked
// without being deleted, and survive a reopen.
func TestKeys(t *testing.T) {
	path := filepath.Join(t.TempDir(), "orchestrator.db")
	o, err := OpenOrchestrator(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if has, err := o.HasKeys(); has || err != nil {
		t.Fatalf("HasKeys on a new store = %v, %v", has, err)
	}
	b := keyRecord("beta", "secret-beta-1")
	b.Spec.Limits = api.KeyLimits{RequestsPerMinute: 60, Models: []string{"tiny"}}
	for _, r := range []KeyRecord{b, keyRecord("alpha", "secret-alpha-1")} {
		if err := o.CreateKey(r); err != nil {
			t.Fatal(err)
		}
	}
	for name, r := range map[string]KeyRecord{
		"same name":   keyRecord("beta", "another-secret"),
		"same secret": keyRecord("gamma", "secret-beta-1"),
	} {
		if err := o.CreateKey(r); !errors.Is(err, ErrExists) {
			t.Errorf("%s: CreateKey = %v, want ErrExists", name, err)
		}
	}
	bad := keyRecord("delta", "x")
	bad.SHA256 = strings.ToUpper(bad.SHA256)
	if err := o.CreateKey(bad); err == nil {
		t.Error("an upper-case hash was stored")
	}
	if err := o.CreateKey(KeyRecord{SHA256: b.SHA256[:10]}); err == nil {
		t.Error("a short hash was stored")
	}

	up, err := o.UpdateKey("beta", func(r *KeyRecord) error { r.Spec.Weight = 5; return nil })
	if err != nil || up.Spec.Weight != 5 || up.Spec.Limits.RequestsPerMinute != 60 {
		t.Fatalf("update = %+v, %v", up, err)
	}
	if _, err := o.UpdateKey("nobody", func(*KeyRecord) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing key = %v", err)
	}
	if _, err := o.UpdateKey("beta", func(r *KeyRecord) error { r.Spec.Name = "other"; return nil }); err == nil {
		t.Fatal("a rename was stored")
	}
	refused := errors.New("refused")
	if _, err := o.UpdateKey("beta", func(r *KeyRecord) error { r.Spec.Weight = 9; return refused }); !errors.Is(err, refused) {
		t.Fatalf("fn's error = %v", err)
	}
	at := time.Now().UTC().Truncate(time.Second)
	if _, err := o.UpdateKey("alpha", func(r *KeyRecord) error { r.RevokedAt = &at; return nil }); err != nil {
		t.Fatal(err)
	}
	o.Close()

	o, err = OpenOrchestrator(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	keys, err := o.Keys()
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %+v, %v", keys, err)
	}
	if keys[0].Spec.Name != "alpha" || !keys[0].Revoked() || !keys[0].RevokedAt.Equal(at) {
		t.Errorf("alpha = %+v", keys[0])
	}
	if keys[1].Spec.Name != "beta" || keys[1].Revoked() || keys[1].Spec.Weight != 5 || keys[1].Spec.Limits.Models[0] != "tiny" || keys[1].SHA256 != b.SHA256 {
		t.Errorf("beta = %+v", keys[1])
	}
	if has, err := o.HasKeys(); !has || err != nil {
		t.Fatalf("HasKeys = %v, %v", has, err)
	}
	// A revoked key's name stays taken.
	if err := o.CreateKey(keyRecord("alpha", "a-new-secret")); !errors.Is(err, ErrExists) {
		t.Fatalf("a revoked key's name was reused: %v", err)
	}
}
