package orchestrator

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/bind"
	"github.com/llorch/llorch/core/store"
)

// Role is what a credential may do.
type Role uint8

// Roles, from least to most trusted among clients. The worker token is
// apart: it registers and heartbeats and does nothing else.
const (
	roleNone Role = iota
	// RoleUser submits tasks, uses /v1, and sees, reads and cancels only its
	// own tasks.
	RoleUser
	// RoleAdmin does everything a user does, on every task, and manages the
	// fleet: workers, pools, routing scripts, drains.
	RoleAdmin
	// roleWorker is the worker token's.
	roleWorker
)

func (r Role) String() string {
	switch r {
	case RoleUser:
		return "user"
	case RoleAdmin:
		return "admin"
	case roleWorker:
		return "worker"
	}
	return "none"
}

// ParseRole parses "user" or "admin".
func ParseRole(s string) (Role, bool) {
	switch s {
	case "user":
		return RoleUser, true
	case "admin":
		return RoleAdmin, true
	}
	return roleNone, false
}

// Key is one API key with its role and an optional name (for logs).
type Key struct {
	Secret string
	Role   Role
	Name   string
}

// maxKeyLen bounds a key.
const maxKeyLen = 512

// ParseKeys reads an API key file: one key per line, optionally followed by
// its role (user or admin; default user) and a name, separated by spaces or
// tabs. Blank lines and lines starting with # are skipped. Errors name the
// line, never the key.
//
//	# key                          role   name
//	sk-3f9a0c…                     admin  ops
//	sk-77b1e2…                     user   chat-app
//	sk-plain-line-is-a-user-key
func ParseKeys(text string) ([]Key, error) {
	var keys []Key
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		k := Key{Secret: f[0], Role: RoleUser}
		if len(f) > 3 {
			return nil, fmt.Errorf("line %d: want KEY [ROLE [NAME]], got %d fields", i+1, len(f))
		}
		if len(f) > 1 {
			r, ok := ParseRole(f[1])
			if !ok {
				// The field is not echoed: it may be a second key on the line.
				return nil, fmt.Errorf("line %d: the second field, the role, must be user or admin", i+1)
			}
			k.Role = r
		}
		if len(f) > 2 {
			k.Name = f[2]
			if len(k.Name) > 64 || !printable(k.Name) {
				return nil, fmt.Errorf("line %d: a name is at most 64 printable characters", i+1)
			}
		}
		if err := checkSecret(k.Secret); err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func checkSecret(s string) error {
	if len(s) < 8 || len(s) > maxKeyLen || !printable(s) {
		return fmt.Errorf("a key is 8 to %d printable ASCII characters without spaces", maxKeyLen)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// principal is who made a request, as far as the orchestrator can tell.
type principal struct {
	role Role
	// owner identifies the key (a hash of it, never the key): a task belongs
	// to the key that submitted it. "" without keys.
	owner string
	// fp is the key's fingerprint as logs show it; name its name, if any.
	fp, name string
	// key names the key in usage, metrics and fair queueing: its name, or
	// "key-" + fp for a file key without one; "" without keys.
	key string
	// weight is the key's share in fair queueing (1 unless set).
	weight int
	// limits are the key's limits; nil: none. Shared by every request of
	// the key: read-only (a change of the key makes new ones).
	limits *api.KeyLimits
}

// canSee reports whether p may read and cancel a task owned by owner.
func (p principal) canSee(owner string) bool { return p.role == RoleAdmin || p.owner == owner }

// Sources of keys (api.KeyView.Source).
const (
	sourceFile  = "file"
	sourceStore = "store"
)

// authn is the credentials part: the file keys (Config.Keys, fixed), the
// keys kept in the store (created, updated and revoked at run time) and the
// worker token. Readers take the current keySet without a lock (an atomic
// pointer); a change builds a new keySet from the store and swaps it in,
// under mu, so changes are serialized and each is in the store before any
// request sees it.
type authn struct {
	workerToken []byte
	file        []Key
	st          *store.Orchestrator // nil: file keys only

	cur atomic.Pointer[keySet]
	mu  sync.Mutex // serializes changes
}

// keySet is one immutable view of the keys.
type keySet struct {
	// open: no key at all (no file key, and none ever stored): every client
	// is an anonymous admin. An orchestrator that stored a key never runs
	// open again, even with all its keys revoked.
	open    bool
	byHash  map[[sha256.Size]byte]*keyEntry
	byOwner map[string]*keyEntry
	byName  map[string]*keyEntry // by the principal's key (name, or "key-" + fp)
	list    []*keyEntry          // file keys in file order, then stored keys by name
}

// keyEntry is one key as requests see it.
type keyEntry struct {
	p       principal
	source  string
	created time.Time
	revoked *time.Time
	spec    api.KeySpec
}

func (e *keyEntry) view() api.KeyView {
	return api.KeyView{KeySpec: e.spec, Fingerprint: e.p.fp, Source: e.source, CreatedAt: e.created, RevokedAt: e.revoked}
}

// Errors of key changes (http_keys.go maps them).
var (
	errKeyExists   = errors.New("orchestrator: a key by that name exists")
	errKeyNotFound = errors.New("orchestrator: no such key")
	errKeyFile     = errors.New("orchestrator: the key comes from the key file (--api-key-file, LLORCH_API_KEYS): change it there")
	errKeyRevoked  = errors.New("orchestrator: the key is revoked")
)

// newAuthn loads the stored keys (st may be nil: file keys only) beside the
// file keys. A stored key whose name or secret is also a file key's, or
// whose secret is the worker token, is an error.
func newAuthn(keys []Key, workerToken string, st *store.Orchestrator) (*authn, error) {
	a := &authn{file: keys, workerToken: []byte(workerToken), st: st}
	if err := a.reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// reload builds the keySet from the file keys and the store and swaps it in.
// Callers other than newAuthn hold mu.
func (a *authn) reload() error {
	var recs []store.KeyRecord
	if a.st != nil {
		var err error
		if recs, err = a.st.Keys(); err != nil {
			return fmt.Errorf("orchestrator: load keys: %w", err)
		}
	}
	ks, err := buildKeySet(a.file, recs, a.workerToken)
	if err != nil {
		return err
	}
	a.cur.Store(ks)
	return nil
}

func buildKeySet(file []Key, recs []store.KeyRecord, workerToken []byte) (*keySet, error) {
	ks := &keySet{open: len(file) == 0 && len(recs) == 0, byHash: map[[sha256.Size]byte]*keyEntry{},
		byOwner: map[string]*keyEntry{}, byName: map[string]*keyEntry{}}
	var worker [sha256.Size]byte
	if len(workerToken) > 0 {
		worker = sha256.Sum256(workerToken)
	}
	for _, k := range file {
		sum := sha256.Sum256([]byte(k.Secret))
		p := principal{role: k.Role, owner: hex.EncodeToString(sum[:16]), fp: hex.EncodeToString(sum[:3]), name: k.Name, key: k.Name, weight: 1}
		if p.key == "" {
			p.key = "key-" + p.fp
		}
		e := &keyEntry{p: p, source: sourceFile, spec: api.KeySpec{Name: p.key, Role: k.Role.String(), Weight: 1}}
		ks.byHash[sum] = e
		ks.byOwner[p.owner] = e
		if _, dup := ks.byName[p.key]; !dup { // the first of two file keys by one name answers GET
			ks.byName[p.key] = e
		}
		ks.list = append(ks.list, e)
	}
	for _, r := range recs {
		raw, err := hex.DecodeString(r.SHA256)
		if err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("orchestrator: stored key %q has a bad hash", r.Spec.Name)
		}
		sum := [sha256.Size]byte(raw)
		if o, ok := ks.byName[r.Spec.Name]; ok && o.source == sourceFile {
			return nil, fmt.Errorf("orchestrator: the key file names a key %q, and a stored key (llorch ctl keys) has that name too: rename the file's", r.Spec.Name)
		}
		if o, ok := ks.byHash[sum]; ok && o.source == sourceFile {
			return nil, fmt.Errorf("orchestrator: a key in the key file (%s) is also the stored key %q: remove one", o.p.fp, r.Spec.Name)
		}
		if sum == worker {
			return nil, fmt.Errorf("orchestrator: the stored key %q is the worker token", r.Spec.Name)
		}
		role, ok := ParseRole(r.Spec.Role)
		if !ok {
			return nil, fmt.Errorf("orchestrator: stored key %q has role %q", r.Spec.Name, r.Spec.Role)
		}
		p := principal{role: role, owner: r.SHA256[:32], fp: r.SHA256[:6], name: r.Spec.Name, key: r.Spec.Name, weight: max(1, r.Spec.Weight)}
		if !limitsZero(&r.Spec.Limits) {
			l := r.Spec.Limits
			l.Models = slices.Clone(l.Models)
			p.limits = &l
		}
		e := &keyEntry{p: p, source: sourceStore, created: r.CreatedAt, revoked: r.RevokedAt, spec: r.Spec}
		ks.byHash[sum] = e
		ks.byOwner[p.owner] = e
		ks.byName[p.key] = e
		ks.list = append(ks.list, e)
	}
	return ks, nil
}

func limitsZero(l *api.KeyLimits) bool {
	return l.RequestsPerMinute == 0 && l.TokensPerMinute == 0 && l.MaxQueued == 0 && l.MaxRunning == 0 &&
		l.MaxPriority == "" && len(l.Models) == 0 && l.TokensPerDay == 0 && l.TokensPerMonth == 0
}

// open reports whether no client credentials are configured: every client
// is then an anonymous admin (a loopback or explicitly insecure setup).
func (a *authn) open() bool { return a.cur.Load().open }

// identify returns the principal of a bearer token, or roleNone; revoked
// tells a revoked key from an unknown one. The token is hashed first and
// looked up by its hash: how long the lookup takes says nothing about the
// keys.
func (a *authn) identify(got []byte) (p principal, revoked bool) {
	ks := a.cur.Load()
	if ks.open {
		return principal{role: RoleAdmin}, false
	}
	if len(got) == 0 || len(got) > maxKeyLen {
		return principal{}, false
	}
	e := ks.byHash[sha256.Sum256(got)]
	switch {
	case e == nil:
		return principal{}, false
	case e.revoked != nil:
		return principal{}, true
	}
	return e.p, false
}

// byOwner returns the principal of the key that owns a task (a restored
// task knows only its owner); false when no key has that owner. A revoked
// key's is returned too: its tasks that were running finish under its name
// (New ends its queued ones).
func (a *authn) byOwner(owner string) (principal, bool) {
	e := a.cur.Load().byOwner[owner]
	if e == nil {
		return principal{}, false
	}
	return e.p, true
}

// revokedOwner reports whether owner is a revoked key's.
func (a *authn) revokedOwner(owner string) bool {
	e := a.cur.Load().byOwner[owner]
	return e != nil && e.revoked != nil
}

// keys lists every key, file keys first; never a secret.
func (a *authn) keys() []api.KeyView {
	ks := a.cur.Load()
	out := make([]api.KeyView, len(ks.list))
	for i, e := range ks.list {
		out[i] = e.view()
	}
	return out
}

// key returns one key by name.
func (a *authn) key(name string) (api.KeyView, bool) {
	e := a.cur.Load().byName[name]
	if e == nil {
		return api.KeyView{}, false
	}
	return e.view(), true
}

// keyPrincipal returns the principal of a key by name, revoked or not.
func (a *authn) keyPrincipal(name string) (principal, bool) {
	e := a.cur.Load().byName[name]
	if e == nil {
		return principal{}, false
	}
	return e.p, true
}

// create stores a new key for spec (valid) and returns it with its secret,
// which is never shown again.
func (a *authn) create(spec api.KeySpec, now time.Time) (api.KeyCreated, error) {
	if a.st == nil {
		return api.KeyCreated{}, errors.New("orchestrator: no store for keys")
	}
	secret, err := newSecret()
	if err != nil {
		return api.KeyCreated{}, err
	}
	sum := sha256.Sum256([]byte(secret))
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.cur.Load().byName[spec.Name]; ok {
		return api.KeyCreated{}, errKeyExists
	}
	rec := store.KeyRecord{SHA256: hex.EncodeToString(sum[:]), Spec: spec, CreatedAt: now.UTC().Truncate(time.Millisecond)}
	rec.Spec.Limits.Models = slices.Clone(spec.Limits.Models)
	if err := a.st.CreateKey(rec); err != nil {
		if errors.Is(err, store.ErrExists) {
			return api.KeyCreated{}, errKeyExists
		}
		return api.KeyCreated{}, err
	}
	if err := a.reload(); err != nil {
		return api.KeyCreated{}, err
	}
	e := a.cur.Load().byName[spec.Name]
	return api.KeyCreated{Key: secret, KeyView: e.view()}, nil
}

// update changes a stored key; check validates the result (nil: valid).
func (a *authn) update(name string, u api.KeyUpdate, check func(*api.KeySpec) *api.Error) (api.KeyView, error) {
	return a.change(name, func(r *store.KeyRecord) error {
		if r.RevokedAt != nil {
			return errKeyRevoked
		}
		spec := r.Spec
		if u.Role != nil {
			spec.Role = *u.Role
		}
		if u.Weight != nil {
			spec.Weight = *u.Weight
		}
		if u.Limits != nil {
			spec.Limits = *u.Limits
			spec.Limits.Models = slices.Clone(u.Limits.Models)
		}
		if e := check(&spec); e != nil {
			return e
		}
		r.Spec = spec
		return nil
	})
}

// revoke marks a stored key revoked (once: a second revoke keeps the first
// time). Requests with it get 401 as soon as it returns.
func (a *authn) revoke(name string, now time.Time) (api.KeyView, error) {
	return a.change(name, func(r *store.KeyRecord) error {
		if r.RevokedAt == nil {
			at := now.UTC().Truncate(time.Millisecond)
			r.RevokedAt = &at
		}
		return nil
	})
}

func (a *authn) change(name string, fn func(*store.KeyRecord) error) (api.KeyView, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.cur.Load().byName[name]
	switch {
	case e == nil || a.st == nil:
		return api.KeyView{}, errKeyNotFound
	case e.source == sourceFile:
		return api.KeyView{}, errKeyFile
	}
	if _, err := a.st.UpdateKey(name, fn); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return api.KeyView{}, errKeyNotFound
		}
		return api.KeyView{}, err
	}
	if err := a.reload(); err != nil {
		return api.KeyView{}, err
	}
	return a.cur.Load().byName[name].view(), nil
}

// keyPrefix starts every key the orchestrator makes (so a leaked one is
// easy to recognise, e.g. by secret scanners).
const keyPrefix = "sk-llorch-"

// newSecret is a new key: the prefix and 32 random bytes, base64url.
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("orchestrator: random key: %w", err)
	}
	return keyPrefix + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// isWorker reports whether got is the worker token. Without a worker token
// the worker endpoints are open only when no keys are configured either.
func (a *authn) isWorker(got []byte) bool {
	if len(a.workerToken) == 0 {
		return a.open()
	}
	return subtle.ConstantTimeCompare(got, a.workerToken) == 1
}

// bearer extracts the token of an "Authorization: Bearer <token>" header
// (the scheme is case-insensitive); nil when there is none.
func bearer(h http.Header) []byte {
	v := h.Get("Authorization")
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return nil
	}
	return []byte(strings.TrimSpace(v[7:]))
}

type principalKey struct{}

func withPrincipal(ctx context.Context, p principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principalOf is the request's principal; an anonymous admin when the
// context has none (calls from inside the process).
func principalOf(ctx context.Context) principal {
	if p, ok := ctx.Value(principalKey{}).(principal); ok {
		return p
	}
	return principal{role: RoleAdmin}
}

// Fingerprint is how logs name a secret: the first 6 hex digits of its SHA-256.
func Fingerprint(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:3])
}

// CheckBind refuses to serve a non-loopback address without API keys unless
// the operator insists.
func CheckBind(addr string, haveKeys, insecure bool) error {
	if haveKeys || insecure {
		return nil
	}
	loop, err := bind.LoopbackAddr(addr)
	if err != nil {
		return fmt.Errorf("orchestrator: %w", err)
	}
	if loop {
		return nil
	}
	return fmt.Errorf("orchestrator: refusing to listen on %s without API keys: give --api-key-file (or LLORCH_API_KEYS), create a key on a loopback orchestrator first (llorch ctl keys create), listen on 127.0.0.1, or pass --insecure-no-auth", addr)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
