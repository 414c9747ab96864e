package orchestrator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
)

// startKeysOrch serves an orchestrator over a fake fleet on the store in dir
// (a restart opens the same dir again).
func startKeysOrch(t *testing.T, cfg Config, dir string) *fakeOrch {
	t.Helper()
	st, err := store.OpenOrchestrator(filepath.Join(dir, "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	fleet := newFakeFleet()
	srv, err := New(cfg, Deps{Store: st, connect: fleet.connect, Log: testLogger(t), manualStats: true})
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	o, stop, done := serve(t, srv, st)
	return &fakeOrch{orch: o, fleet: fleet, stop: stop, done: done}
}

// as is o with requests made with key ("" : none).
func (o *orch) as(key string) *orch {
	return &orch{Server: o.Server, URL: o.URL, key: key, store: o.store}
}

func keysConfig() Config {
	cfg := testConfig()
	cfg.WorkerToken = "worker-token-keys-1"
	return cfg
}

func createKey(t *testing.T, o *orch, spec any) api.KeyCreated {
	t.Helper()
	return decode[api.KeyCreated](t, o.do(t, http.MethodPost, "/v2/keys", spec), http.StatusCreated)
}

func listKeys(t *testing.T, o *orch) (raw []byte, keys []api.KeyView) {
	t.Helper()
	resp := o.do(t, http.MethodGet, "/v2/keys", nil)
	raw, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	var out struct{ Keys []api.KeyView }
	if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/keys: %d %s", resp.StatusCode, raw)
	}
	return raw, out.Keys
}

// A key's life: the first key is created on an open orchestrator, which
// then wants keys; a user key submits tasks and cannot manage keys; lists
// show no secret; an update changes role, weight and limits at once; a
// revoked key is refused at once, its record kept and its name never reused.
func TestKeyLifecycle(t *testing.T) {
	o := startKeysOrch(t, keysConfig(), t.TempDir())
	o.addWorker("w1", "m", 2)
	anon := o.as("")
	if info := decode[api.AuthInfo](t, anon.do(t, http.MethodGet, "/v2/meta/auth", nil), http.StatusOK); info.KeysRequired {
		t.Fatal("an orchestrator without keys asks for one")
	}

	ops := createKey(t, anon, api.KeySpec{Name: "ops", Role: "admin"})
	sum := sha256.Sum256([]byte(ops.Key))
	if !strings.HasPrefix(ops.Key, keyPrefix) || len(ops.Key) < 40 || ops.Fingerprint != hex.EncodeToString(sum[:3]) ||
		ops.Source != sourceStore || ops.Role != "admin" || ops.Weight != 1 || ops.CreatedAt.IsZero() || ops.RevokedAt != nil {
		t.Fatalf("created %+v", ops)
	}
	// From the first key on, the API wants one.
	apiErr(t, anon.do(t, http.MethodGet, "/v2/keys", nil), http.StatusUnauthorized, api.CodeUnauthorized)
	apiErr(t, anon.do(t, http.MethodPost, "/v2/tasks", fakeReq(1)), http.StatusUnauthorized, api.CodeUnauthorized)
	if info := decode[api.AuthInfo](t, anon.do(t, http.MethodGet, "/v2/meta/auth", nil), http.StatusOK); !info.KeysRequired {
		t.Fatal("keys_required is false with a stored key")
	}
	if !o.KeysRequired() || o.auth.isWorker(nil) {
		t.Fatal("the orchestrator is still open")
	}

	admin := o.as(ops.Key)
	app := createKey(t, admin, map[string]any{"name": "app", "limits": map[string]any{"max_queued": 5, "models": []string{"m"}}})
	if app.Role != "user" || app.Weight != 1 || app.Limits.MaxQueued != 5 {
		t.Fatalf("defaults: %+v", app)
	}
	user := o.as(app.Key)
	acc := user.submitAsync(t, fakeReq(3))
	if st := user.waitTask(t, acc.TaskID, 10*time.Second); st.Status != api.TaskSucceeded || st.TokensOut != 3 {
		t.Fatalf("the user key's task: %+v", st)
	}
	if p, _ := o.auth.identify([]byte(app.Key)); p.key != "app" || p.name != "app" || p.weight != 1 || p.limits == nil || p.limits.MaxQueued != 5 || p.role != RoleUser {
		t.Fatalf("principal %+v", p)
	}
	apiErr(t, user.do(t, http.MethodPost, "/v2/keys", api.KeySpec{Name: "mine", Role: "admin"}), http.StatusForbidden, api.CodeForbidden)
	apiErr(t, user.do(t, http.MethodGet, "/v2/keys", nil), http.StatusForbidden, api.CodeForbidden)
	apiErr(t, user.do(t, http.MethodDelete, "/v2/keys/ops", nil), http.StatusForbidden, api.CodeForbidden)
	apiErr(t, user.do(t, http.MethodGet, "/v2/workers", nil), http.StatusForbidden, api.CodeForbidden)

	raw, keys := listKeys(t, admin)
	if len(keys) != 2 || keys[0].Name != "app" || keys[1].Name != "ops" || keys[0].Fingerprint != app.Fingerprint {
		t.Fatalf("list %s", raw)
	}
	for _, secret := range []string{ops.Key, app.Key, hex.EncodeToString(sum[:])} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("the list shows a secret or a hash: %s", raw)
		}
	}
	if bytes.Contains(raw, []byte(`"key"`)) {
		t.Fatalf("the list has a key field: %s", raw)
	}
	got := decode[api.KeyView](t, admin.do(t, http.MethodGet, "/v2/keys/app", nil), http.StatusOK)
	if got.Name != "app" || got.Limits.MaxQueued != 5 {
		t.Fatalf("get %+v", got)
	}
	apiErr(t, admin.do(t, http.MethodGet, "/v2/keys/nobody", nil), http.StatusNotFound, api.CodeNotFound)

	// Update: the fields given replace the key's (limits as a whole).
	up := decode[api.KeyView](t, admin.do(t, http.MethodPatch, "/v2/keys/app",
		`{"role":"admin","weight":3,"limits":{"requests_per_minute":60,"max_priority":"batch"}}`), http.StatusOK)
	if up.Role != "admin" || up.Weight != 3 || up.Limits.RequestsPerMinute != 60 || up.Limits.MaxQueued != 0 || up.Limits.MaxPriority != "batch" {
		t.Fatalf("updated %+v", up)
	}
	if p, _ := o.auth.identify([]byte(app.Key)); p.role != RoleAdmin || p.weight != 3 || p.limits.RequestsPerMinute != 60 {
		t.Fatalf("principal after the update %+v", p)
	}
	decode[map[string]any](t, user.do(t, http.MethodGet, "/v2/workers", nil), http.StatusOK) // the new role, at once
	up = decode[api.KeyView](t, admin.do(t, http.MethodPatch, "/v2/keys/app", `{"weight":2}`), http.StatusOK)
	if up.Weight != 2 || up.Role != "admin" || up.Limits.RequestsPerMinute != 60 {
		t.Fatalf("a weight-only update changed more: %+v", up)
	}
	apiErr(t, admin.do(t, http.MethodPatch, "/v2/keys/nobody", `{"weight":2}`), http.StatusNotFound, api.CodeNotFound)

	// Revoke: 204, refused at once, idempotent, the record kept.
	resp := admin.do(t, http.MethodDelete, "/v2/keys/app", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	apiErr(t, user.do(t, http.MethodPost, "/v2/tasks", fakeReq(1)), http.StatusUnauthorized, api.CodeKeyRevoked)
	apiErr(t, user.do(t, http.MethodGet, "/v2/workers", nil), http.StatusUnauthorized, api.CodeKeyRevoked)
	first := decode[api.KeyView](t, admin.do(t, http.MethodGet, "/v2/keys/app", nil), http.StatusOK)
	if first.RevokedAt == nil {
		t.Fatalf("revoked key %+v", first)
	}
	resp = admin.do(t, http.MethodDelete, "/v2/keys/app", nil)
	resp.Body.Close()
	again := decode[api.KeyView](t, admin.do(t, http.MethodGet, "/v2/keys/app", nil), http.StatusOK)
	if resp.StatusCode != http.StatusNoContent || !again.RevokedAt.Equal(*first.RevokedAt) {
		t.Fatalf("second revoke: %d, %+v", resp.StatusCode, again)
	}
	apiErr(t, admin.do(t, http.MethodDelete, "/v2/keys/nobody", nil), http.StatusNotFound, api.CodeNotFound)
	apiErr(t, admin.do(t, http.MethodPatch, "/v2/keys/app", `{"weight":1}`), http.StatusConflict, api.CodeConflict)
	apiErr(t, admin.do(t, http.MethodPost, "/v2/keys", api.KeySpec{Name: "app"}), http.StatusConflict, api.CodeConflict)
	if _, ok := o.auth.byOwner(hex.EncodeToString(sum[:16])); !ok {
		t.Fatal("byOwner does not find the ops key")
	}
	appSum := sha256.Sum256([]byte(app.Key))
	if p, ok := o.auth.byOwner(hex.EncodeToString(appSum[:16])); !ok || p.key != "app" { // its running tasks keep its name
		t.Fatalf("byOwner of a revoked key: %+v, %v", p, ok)
	}
	if _, ok := o.auth.byOwner("0123456789abcdef0123456789abcdef"); ok {
		t.Fatal("byOwner finds an unknown owner")
	}
	// Revoking every key does not open the orchestrator again.
	resp = admin.do(t, http.MethodDelete, "/v2/keys/ops", nil)
	resp.Body.Close()
	apiErr(t, anon.do(t, http.MethodGet, "/v2/keys", nil), http.StatusUnauthorized, api.CodeUnauthorized)
	apiErr(t, admin.do(t, http.MethodGet, "/v2/keys", nil), http.StatusUnauthorized, api.CodeKeyRevoked)
	if !o.KeysRequired() {
		t.Fatal("the orchestrator runs open with its keys revoked")
	}
}

// Revoking a key ends its queued tasks at once with KEY_REVOKED (an open
// stream on one ends with the error); its running task and other keys'
// tasks go on.
func TestRevokeEndsQueuedTasks(t *testing.T) {
	cfg := keysConfig()
	cfg.Keys = []Key{{Secret: "sk-admin-file-key", Role: RoleAdmin, Name: "root"}}
	o := startKeysOrch(t, cfg, t.TempDir())
	w := o.addWorker("w1", "m", 1)
	w.set(hang) // the first task holds the only slot
	tenant := createKey(t, o.orch, api.KeySpec{Name: "tenant"})
	user := o.as(tenant.Key)

	running := user.submitAsync(t, fakeReq(5)).TaskID
	waitFor(t, 10*time.Second, "the first task running", func() bool { return o.taskStatus(t, running).Status == api.TaskRunning })
	queued := []string{user.submitAsync(t, fakeReq(5)).TaskID, user.submitAsync(t, fakeReq(5)).TaskID}
	other := o.submitAsync(t, fakeReq(5)).TaskID // the admin's
	streamed := make(chan []ev, 1)
	go func() {
		streamed <- readAll(t, user.do(t, http.MethodPost, "/v2/tasks", fakeReq(5), "Accept", "text/event-stream"))
	}()
	waitFor(t, 10*time.Second, "four queued tasks", func() bool {
		n := 0
		for _, ts := range o.tasks.list(principal{role: RoleAdmin}, taskFilter{status: api.TaskQueued, limit: 100}) {
			if ts.TaskID != "" {
				n++
			}
		}
		return n == 4
	})

	resp := o.do(t, http.MethodDelete, "/v2/keys/tenant", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	for _, id := range queued { // at once: no wait
		st := o.taskStatus(t, id)
		if st.Status != api.TaskFailed || st.Error == nil || st.Error.Code != api.CodeKeyRevoked {
			t.Fatalf("queued task after the revoke: %+v", st)
		}
	}
	select {
	case evs := <-streamed:
		_, last := checkStream(t, evs, 0)
		if e := last.apiError(); last.Name != api.EventError || e.Code != api.CodeKeyRevoked {
			t.Fatalf("the stream ended with %s %s", last.Name, last.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued stream did not end")
	}
	if st := o.taskStatus(t, running); st.Status != api.TaskRunning {
		t.Fatalf("the running task: %+v", st)
	}
	if st := o.taskStatus(t, other); st.Status != api.TaskQueued {
		t.Fatalf("another key's task: %+v", st)
	}
	apiErr(t, user.do(t, http.MethodGet, "/v2/tasks/"+running, nil), http.StatusUnauthorized, api.CodeKeyRevoked)
	// The running task may finish: it is not the revoke's to end.
	w.set(nil)
	o.cancelTask(running)
	if st := o.waitTask(t, other, 10*time.Second); st.Status != api.TaskSucceeded {
		t.Fatalf("another key's task after the revoke: %+v", st)
	}
}

// Stored keys, revocations and queued tasks survive a restart; a task of a
// key revoked while the orchestrator was down ends KEY_REVOKED when it comes
// back.
func TestKeysSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	o := startKeysOrch(t, keysConfig(), dir)
	ops := createKey(t, o.as(""), api.KeySpec{Name: "ops", Role: "admin"})
	admin := o.as(ops.Key)
	app := createKey(t, admin, api.KeySpec{Name: "app", Weight: 7, Limits: api.KeyLimits{TokensPerMinute: 1000}})
	gone := createKey(t, admin, api.KeySpec{Name: "gone"})
	late := createKey(t, admin, api.KeySpec{Name: "late"})
	resp := admin.do(t, http.MethodDelete, "/v2/keys/gone", nil)
	resp.Body.Close()
	// The only slot is held: late's task waits in the queue across the
	// restart.
	o.addWorker("w1", "m", 1).set(hang)
	holder := admin.submitAsync(t, fakeReq(2)).TaskID
	waitFor(t, 10*time.Second, "the first task running", func() bool { return admin.taskStatus(t, holder).Status == api.TaskRunning })
	waiting := o.as(late.Key).submitAsync(t, fakeReq(2)).TaskID
	o.stop()
	o.store.Close()
	// late is revoked while the orchestrator is down (as by one that
	// crashed before ending its tasks).
	st, err := store.OpenOrchestrator(filepath.Join(dir, "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if _, err := st.UpdateKey("late", func(r *store.KeyRecord) error { r.RevokedAt = &at; return nil }); err != nil {
		t.Fatal(err)
	}
	st.Close()

	o = startKeysOrch(t, keysConfig(), dir)
	if !o.KeysRequired() {
		t.Fatal("open after a restart")
	}
	admin = o.as(ops.Key)
	_, keys := listKeys(t, admin)
	if len(keys) != 4 {
		t.Fatalf("keys after the restart: %+v", keys)
	}
	if p, _ := o.auth.identify([]byte(app.Key)); p.key != "app" || p.weight != 7 || p.limits == nil || p.limits.TokensPerMinute != 1000 {
		t.Fatalf("app after the restart: %+v", p)
	}
	apiErr(t, o.as(gone.Key).do(t, http.MethodPost, "/v2/tasks", fakeReq(1)), http.StatusUnauthorized, api.CodeKeyRevoked)
	if st := admin.taskStatus(t, waiting); st.Status != api.TaskFailed || st.Error == nil || st.Error.Code != api.CodeKeyRevoked {
		t.Fatalf("the revoked key's restored task: %+v", st)
	}
	o.addWorker("w1", "m", 1)
	acc := o.as(app.Key).submitAsync(t, fakeReq(2))
	if st := admin.waitTask(t, acc.TaskID, 10*time.Second); st.Status != api.TaskSucceeded {
		t.Fatalf("app's task after the restart: %+v", st)
	}
}

// File keys and stored keys work side by side; a name (or secret) both
// have is refused, at creation and at startup; file keys are read-only here.
func TestFileAndStoredKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := keysConfig()
	cfg.Keys = []Key{{Secret: "sk-file-admin-1", Role: RoleAdmin, Name: "root"}, {Secret: "sk-file-user-nameless", Role: RoleUser}}
	o := startKeysOrch(t, cfg, dir)
	o.addWorker("w1", "m", 1)
	nameless := "key-" + Fingerprint("sk-file-user-nameless")
	_, keys := listKeys(t, o.orch)
	if len(keys) != 2 || keys[0].Name != "root" || keys[0].Source != sourceFile || keys[0].Role != "admin" ||
		keys[1].Name != nameless || keys[1].Fingerprint != Fingerprint("sk-file-user-nameless") || keys[1].Weight != 1 {
		t.Fatalf("file keys: %+v", keys)
	}
	for _, name := range []string{"root", nameless} {
		apiErr(t, o.do(t, http.MethodPost, "/v2/keys", api.KeySpec{Name: name}), http.StatusConflict, api.CodeConflict)
		apiErr(t, o.do(t, http.MethodPatch, "/v2/keys/"+name, `{"weight":2}`), http.StatusConflict, api.CodeConflict)
		apiErr(t, o.do(t, http.MethodDelete, "/v2/keys/"+name, nil), http.StatusConflict, api.CodeConflict)
	}
	later := createKey(t, o.orch, api.KeySpec{Name: "later"})
	_, keys = listKeys(t, o.orch)
	if len(keys) != 3 || keys[2].Name != "later" || keys[2].Source != sourceStore {
		t.Fatalf("keys: %+v", keys)
	}
	for _, key := range []string{"sk-file-user-nameless", later.Key} {
		acc := o.as(key).submitAsync(t, fakeReq(1))
		if st := o.waitTask(t, acc.TaskID, 10*time.Second); st.Status != api.TaskSucceeded {
			t.Fatalf("task: %+v", st)
		}
	}
	if p, _ := o.auth.identify([]byte("sk-file-user-nameless")); p.key != nameless || p.weight != 1 || p.limits != nil {
		t.Fatalf("a file key's principal: %+v", p)
	}
	o.stop()
	o.store.Close()

	// A key file that now names a stored key, or holds its secret, is
	// refused at startup.
	for name, k := range map[string]Key{
		"name":   {Secret: "sk-another-secret", Role: RoleUser, Name: "later"},
		"secret": {Secret: later.Key, Role: RoleUser, Name: "other"},
	} {
		st, err := store.OpenOrchestrator(filepath.Join(dir, "orchestrator.db"), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c := keysConfig()
		c.Keys = []Key{k}
		_, err = New(c, Deps{Store: st})
		st.Close()
		if err == nil || !strings.Contains(err.Error(), "later") {
			t.Errorf("%s clash: New = %v", name, err)
		}
	}
}

// Hostile input is refused with every bad field named, before anything is
// stored.
func TestKeysHostileInput(t *testing.T) {
	cfg := keysConfig()
	cfg.Keys = []Key{{Secret: "sk-admin-file-key", Role: RoleAdmin, Name: "root"}}
	o := startKeysOrch(t, cfg, t.TempDir())
	for _, tc := range []struct {
		name, body string
		status     int
		fields     []string
	}{
		{"slash in name", `{"name":"a/b"}`, 400, []string{"name"}},
		{"dot-dot name", `{"name":".."}`, 400, []string{"name"}},
		{"empty name", `{"name":""}`, 400, []string{"name"}},
		{"long name", `{"name":"` + strings.Repeat("n", 200) + `"}`, 400, []string{"name"}},
		{"huge weight", `{"name":"a","weight":1000000}`, 400, []string{"weight"}},
		{"negative weight", `{"name":"a","weight":-1}`, 400, []string{"weight"}},
		{"bad role", `{"name":"a","role":"root"}`, 400, []string{"role"}},
		{"negative limits", `{"name":"a","limits":{"requests_per_minute":-1,"tokens_per_minute":-5,"max_queued":-1,"tokens_per_day":-1}}`, 400,
			[]string{"limits.requests_per_minute", "limits.tokens_per_minute", "limits.max_queued", "limits.tokens_per_day"}},
		{"huge limit", `{"name":"a","limits":{"tokens_per_month":99999999999999999}}`, 400, []string{"limits.tokens_per_month"}},
		{"bad priority", `{"name":"a","limits":{"max_priority":"urgent"}}`, 400, []string{"limits.max_priority"}},
		{"bad model", `{"name":"a","limits":{"models":["../x"]}}`, 400, []string{"limits.models"}},
		{"overflowing weight", `{"name":"a","weight":1e30}`, 400, nil},
		{"unknown field", `{"name":"a","rpm":10}`, 400, nil},
		{"not json", `name=a`, 400, nil},
		{"two objects", `{"name":"a"}{"name":"b"}`, 400, nil},
		{"1 MB body", `{"name":"a","pad":"` + strings.Repeat("x", 1<<20) + `"}`, 413, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := apiErr(t, o.do(t, http.MethodPost, "/v2/keys", tc.body), tc.status,
				map[int]string{400: api.CodeInvalidRequest, 413: api.CodeBodyTooLarge}[tc.status])
			var got []string
			for _, f := range e.Fields {
				got = append(got, f.Field)
			}
			if strings.Join(got, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("fields %v, want %v (%s)", got, tc.fields, e.Message)
			}
		})
	}
	// The same checks on an update.
	createKey(t, o.orch, api.KeySpec{Name: "a"})
	e := apiErr(t, o.do(t, http.MethodPatch, "/v2/keys/a", `{"weight":5000,"limits":{"max_running":-2}}`), 400, api.CodeInvalidRequest)
	if len(e.Fields) != 2 {
		t.Fatalf("update fields %+v", e.Fields)
	}
	apiErr(t, o.do(t, http.MethodPatch, "/v2/keys/a", `{"role":"root"}`), 400, api.CodeInvalidRequest)
	apiErr(t, o.do(t, http.MethodPatch, "/v2/keys/a", strings.Repeat(" ", 1<<20)), 413, api.CodeBodyTooLarge)
	// An escaped slash in the path is no key.
	apiErr(t, o.do(t, http.MethodGet, "/v2/keys/a%2Fb", nil), http.StatusNotFound, api.CodeNotFound)
	_, keys := listKeys(t, o.orch)
	if len(keys) != 2 {
		t.Fatalf("keys stored: %+v", keys)
	}
	if v := decode[api.KeyView](t, o.do(t, http.MethodGet, "/v2/keys/a", nil), http.StatusOK); v.Weight != 1 || v.Limits.MaxRunning != 0 {
		t.Fatalf("a refused update changed the key: %+v", v)
	}
}

// Requests identify keys while keys are created, updated and revoked: no
// race, and each change is seen by the next lookup.
func TestAuthnConcurrentChanges(t *testing.T) {
	st, err := store.OpenOrchestrator(filepath.Join(t.TempDir(), "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := newAuthn([]Key{{Secret: "sk-file-admin-1", Role: RoleAdmin, Name: "root"}}, "worker-token-1", st)
	if err != nil {
		t.Fatal(err)
	}
	secrets := make(chan string, 64)
	done := make(chan struct{})
	readers := make(chan int, 4)
	for range 4 {
		go func() {
			var known []string
			n := 0
			for {
				select {
				case s := <-secrets:
					known = append(known, s)
				case <-done:
					readers <- n
					return
				default:
				}
				if p, _ := a.identify([]byte("sk-file-admin-1")); p.role != RoleAdmin {
					t.Error("the file key was not found")
				}
				for _, s := range known {
					if p, revoked := a.identify([]byte(s)); p.role == roleNone && !revoked {
						t.Error("a stored key was neither found nor revoked")
					}
				}
				_ = a.keys()
				n++
			}
		}()
	}
	for i := range 16 {
		name := "k" + string(rune('a'+i))
		kc, err := a.create(api.KeySpec{Name: name, Role: "user", Weight: 1}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			secrets <- kc.Key
		}
		w := i + 2
		if _, err := a.update(name, api.KeyUpdate{Weight: &w}, func(s *api.KeySpec) *api.Error { return s.Validate() }); err != nil {
			t.Fatal(err)
		}
		if p, _ := a.identify([]byte(kc.Key)); p.weight != w {
			t.Fatalf("weight %d after the update to %d", p.weight, w)
		}
		if i%2 == 0 {
			if _, err := a.revoke(name, time.Now()); err != nil {
				t.Fatal(err)
			}
			if p, revoked := a.identify([]byte(kc.Key)); p.role != roleNone || !revoked {
				t.Fatalf("%s answered after its revoke: %+v", name, p)
			}
		}
	}
	close(done)
	for range 4 {
		if n := <-readers; n == 0 {
			t.Error("a reader never ran")
		}
	}
	if got := len(a.keys()); got != 17 {
		t.Fatalf("%d keys", got)
	}
}
