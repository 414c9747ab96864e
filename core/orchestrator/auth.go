package orchestrator

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/bind"
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
	// limits are the key's limits; nil: none.
	limits *api.KeyLimits
}

// canSee reports whether p may read and cancel a task owned by owner.
func (p principal) canSee(owner string) bool { return p.role == RoleAdmin || p.owner == owner }

// authn holds the credentials. It is immutable after New.
type authn struct {
	keys        []Key
	secrets     [][]byte
	principals  []principal // of each key, computed once
	workerToken []byte
}

func newAuthn(keys []Key, workerToken string) *authn {
	a := &authn{keys: keys, workerToken: []byte(workerToken)}
	for _, k := range keys {
		a.secrets = append(a.secrets, []byte(k.Secret))
		sum := sha256.Sum256([]byte(k.Secret))
		p := principal{role: k.Role, owner: hex.EncodeToString(sum[:16]), fp: Fingerprint(k.Secret), name: k.Name, key: k.Name, weight: 1}
		if p.key == "" {
			p.key = "key-" + p.fp
		}
		a.principals = append(a.principals, p)
	}
	return a
}

// open reports whether no client credentials are configured: every client
// is then an anonymous admin (a loopback or explicitly insecure setup).
func (a *authn) open() bool { return len(a.keys) == 0 }

// identify returns the principal of a bearer token: the key it matches, in
// constant time across all keys, or roleNone.
func (a *authn) identify(got []byte) principal {
	if a.open() {
		return principal{role: RoleAdmin}
	}
	match := -1
	for i, k := range a.secrets {
		if subtle.ConstantTimeCompare(got, k) == 1 {
			match = i
		}
	}
	if match < 0 {
		return principal{}
	}
	return a.principals[match]
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
	return fmt.Errorf("orchestrator: refusing to listen on %s without API keys: give --api-key-file (or LLORCH_API_KEYS), listen on 127.0.0.1, or pass --insecure-no-auth", addr)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
