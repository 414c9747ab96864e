package orchestrator

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
)

// asKey is a request context of a user key named name.
func asKey(name string, limits *api.KeyLimits) context.Context {
	return withPrincipal(context.Background(), principal{role: RoleUser, owner: "owner-" + name, fp: name, key: name, weight: 1, limits: limits})
}

// submitAs admits an async task as ctx's principal.
func (p *parts) submitAs(t *testing.T, ctx context.Context, req *api.TaskRequest) string {
	t.Helper()
	acc, e := p.Server.submitBy(ctx, doorTasks, req, true)
	if e != nil {
		t.Fatalf("submit: %v", e)
	}
	return acc.TaskID
}

// withPrompt is streamTokens whose started event reports prompt tokens
// (plus the tokens resumed, as a worker does) and cached tokens.
func withPrompt(prompt, cached, stopAfter int) func(context.Context, *api.ExecuteRequest) (eventStream, error) {
	inner := streamTokens(stopAfter)
	return func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		s, err := inner(ctx, req)
		if err != nil {
			return nil, err
		}
		fs := s.(*fakeStream)
		st := *fs.evs[0].Started
		st.PromptTokens, st.CachedTokens = prompt+len(req.ResumeTokens), cached
		fs.evs[0].Started = &st
		return fs, nil
	}
}

// stallAfter streams started (prompt tokens) and k tokens, then nothing
// until the attempt is abandoned.
func stallAfter(prompt, k int) func(context.Context, *api.ExecuteRequest) (eventStream, error) {
	return func(ctx context.Context, req *api.ExecuteRequest) (eventStream, error) {
		evs := []api.Event{{Name: api.EventStarted, Started: &api.Started{JobID: req.JobID, PromptTokens: prompt + len(req.ResumeTokens)}}}
		for i := len(req.ResumeTokens); i < k; i++ {
			evs = append(evs, api.Event{Name: api.EventToken, Token: &api.Token{T: fmt.Sprintf("t%d ", i), I: i, ID: int32(100 + i)}})
		}
		return &fakeStream{ctx: ctx, evs: evs, block: true}, nil
	}
}

// addModelWorker registers a fake worker serving model.
func (p *parts) addModelWorker(id, model string, slots int) *fakeWorker {
	w := p.fleet.add("http://" + id + ".test:1")
	p.reg.register(api.WorkerRegistration{WorkerID: id, URL: w.url, Model: api.ModelInfo{ID: model, Ctx: 4096}, Slots: slots})
	return w
}

func modelReq(model string, n int) *api.TaskRequest {
	r := fakeReq(n)
	r.Model = model
	return r
}

// waitUsage waits until the store's usage (key, model: "" any) holds n
// requests, and returns its totals.
func waitUsage(t *testing.T, st *store.Orchestrator, key, model string, n int64) api.UsageRow {
	t.Helper()
	var tot api.UsageRow
	waitFor(t, 20*time.Second, fmt.Sprintf("%d requests of %q/%q counted", n, key, model), func() bool {
		rows, err := st.Usage(store.UsageFilter{Key: key, Model: model, Since: time.Now().Add(-48 * time.Hour), Until: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		tot = store.UsageTotals(rows)
		return tot.Requests >= n
	})
	if tot.Requests != n {
		t.Fatalf("%q/%q: %d requests counted, want %d", key, model, tot.Requests, n)
	}
	return tot
}

// streamed counts a task's prompt tokens (its started event) and token
// events.
func streamed(evs []api.Event) (prompt, cached, tokens int) {
	for _, ev := range evs {
		switch {
		case ev.Started != nil:
			prompt, cached = ev.Started.PromptTokens, ev.Started.CachedTokens
		case ev.Token != nil:
			tokens++
		}
	}
	return prompt, cached, tokens
}

// Usage totals by key and model equal what the tasks streamed; each task is
// one request; the per-key series agree; a refused request counts as a
// request with its code and no tokens; nothing stays in flight.
func TestUsageTotalsEqualTokensStreamed(t *testing.T) {
	p := startParts(t, fastConfig(), newFakeFleet(), "")
	p.addWorker(t, "w1", 4).set(withPrompt(7, 3, -1))
	p.addModelWorker("w2", "m2", 4).set(withPrompt(5, 0, -1))
	type km struct{ key, model string }
	jobs := []struct {
		key, model string
		n          int
	}{{"alice", "m", 4}, {"alice", "m", 6}, {"alice", "m2", 3}, {"bob", "m", 5}}
	want := map[km]api.UsageRow{}
	for _, j := range jobs {
		id := p.submitAs(t, asKey(j.key, nil), modelReq(j.model, j.n))
		if st := p.wait(t, id); st.Status != api.TaskSucceeded {
			t.Fatalf("task %+v", st)
		}
		prompt, cached, tokens := streamed(p.events(id))
		w := want[km{j.key, j.model}]
		w.Requests++
		w.PromptTokens += int64(prompt)
		w.CachedPromptTokens += int64(cached)
		w.GeneratedTokens += int64(tokens)
		want[km{j.key, j.model}] = w
	}
	if _, e := p.Server.submitBy(asKey("bob", nil), doorTasks, modelReq("nope", 2), true); e == nil || e.Code != api.CodeModelNotFound {
		t.Fatalf("an unknown model: %v", e)
	}
	for k, w := range want {
		got := waitUsage(t, p.st, k.key, k.model, w.Requests)
		if got.PromptTokens != w.PromptTokens || got.CachedPromptTokens != w.CachedPromptTokens || got.GeneratedTokens != w.GeneratedTokens {
			t.Fatalf("%v: usage %+v, streamed %+v", k, got, w)
		}
		if got.ServiceMs <= 0 || got.Errors != nil {
			t.Fatalf("%v: usage %+v", k, got)
		}
	}
	// The series move once the batch has committed: a moment after the
	// store has the rows.
	series := map[[3]string]float64{{"tokens", "alice", "generated"}: 13, {"tokens", "alice", "prompt"}: 19,
		{"tokens", "alice", "cached"}: 6, {"requests", "bob", api.TaskSucceeded}: 1, {"requests", "bob", "refused"}: 1}
	waitFor(t, 10*time.Second, "the per-key series", func() bool {
		for k, want := range series {
			vec := p.usage.tokens
			if k[0] == "requests" {
				vec = p.usage.requests
			}
			if value(vec.WithLabelValues(k[1], k[2])) != want {
				return false
			}
		}
		return true
	})
	// The refusal: a request with its code, no tokens, under no model (the
	// client's model name is not kept).
	bob := waitUsage(t, p.st, "bob", "", 2)
	if bob.Errors[api.CodeModelNotFound] != 1 || bob.GeneratedTokens != 5 {
		t.Fatalf("bob's usage %+v", bob)
	}
	waitFor(t, 10*time.Second, "no tokens in flight", func() bool {
		return p.usage.counter("alice").Load() == 0 && p.usage.counter("bob").Load() == 0
	})
}

// Usage survives restarts and counts each task once: tasks that ended
// before a crash, one running through it (resumed from its tokens: its
// prompt is the first started event's, its tokens all it streamed), tasks
// after it; a clean restart after that counts nothing again.
func TestUsageAcrossRestart(t *testing.T) {
	cfg := fastConfig()
	fleet := newFakeFleet()
	dir := t.TempDir()
	p := startParts(t, cfg, fleet, dir)
	w := p.addWorker(t, "w1", 2)
	w.set(withPrompt(7, 0, -1))
	alice := asKey("alice", nil)
	p.wait(t, p.submitAs(t, alice, fakeReq(4)))
	waitUsage(t, p.st, "alice", "m", 1)

	w.set(stallAfter(7, 3))
	running := p.submitAs(t, alice, fakeReq(10))
	waitFor(t, 10*time.Second, "3 tokens streamed", func() bool { return p.state(running).TokensOut == 3 })
	if n := p.usage.counter("alice").Load(); n != 10 {
		t.Fatalf("%d tokens in flight, want 10", n)
	}
	p.crash()

	w.set(refuse(http.StatusServiceUnavailable, api.CodeAllSlotsBusy)) // held until the count is checked
	q := startParts(t, cfg, fleet, dir)
	if n := q.usage.counter("alice").Load(); n != 10 {
		t.Fatalf("after the restart: %d tokens in flight, want 10", n)
	}
	w.set(withPrompt(7, 0, -1))
	if st := q.wait(t, running); st.Status != api.TaskSucceeded || st.TokensOut != 10 {
		t.Fatalf("the resumed task: %+v", st)
	}
	q.wait(t, q.submitAs(t, alice, fakeReq(2)))
	got := waitUsage(t, q.st, "alice", "m", 3)
	if got.PromptTokens != 21 || got.GeneratedTokens != 16 {
		t.Fatalf("usage after the restart %+v, want 21 prompt and 16 generated tokens", got)
	}
	waitFor(t, 10*time.Second, "no tokens in flight", func() bool { return q.usage.counter("alice").Load() == 0 })
	q.stop()

	r := startParts(t, cfg, fleet, dir)
	r.stop() // a clean start and stop on the same journal counts nothing again
	st, err := store.OpenOrchestrator(filepath.Join(dir, "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if again := waitUsage(t, st, "alice", "m", 3); again.PromptTokens != 21 || again.GeneratedTokens != 16 {
		t.Fatalf("usage after a second restart %+v", again)
	}
}

// A task that migrates mid-stream counts once: one request, the first
// attempt's prompt, every token.
func TestUsageMigrationCountsOnce(t *testing.T) {
	p := startParts(t, fastConfig(), newFakeFleet(), "")
	p.addWorker(t, "w1", 1).set(withPrompt(7, 2, 5))
	p.addWorker(t, "w2", 1).set(withPrompt(7, 0, -1))
	id := p.submitAs(t, asKey("alice", nil), fakeReq(12))
	if st := p.wait(t, id); st.Status != api.TaskSucceeded || st.WorkerID != "w2" {
		t.Fatalf("status %+v", st)
	}
	got := waitUsage(t, p.st, "alice", "m", 1)
	if got.PromptTokens != 7 || got.CachedPromptTokens != 2 || got.GeneratedTokens != 12 {
		t.Fatalf("usage %+v", got)
	}
}

// A key's period budget counts its tasks in flight and those counted:
// spent, a request is refused 429 QUOTA_EXCEEDED naming the budget, to
// retry at the next UTC midnight; the refusal is in the key's usage.
func TestUsageQuotaExceeded(t *testing.T) {
	p := startParts(t, fastConfig(), newFakeFleet(), "")
	w := p.addWorker(t, "w1", 4)
	w.set(stallAfter(12, 0))
	limits := &api.KeyLimits{TokensPerDay: 10}
	ctx := asKey("carol", limits)
	first := p.submitAs(t, ctx, fakeReq(5))
	waitFor(t, 10*time.Second, "the prompt in flight", func() bool { return p.usage.counter("carol").Load() == 12 })
	check := func(what string) {
		t.Helper()
		before := time.Now().UTC()
		_, e := p.Server.submitBy(ctx, doorTasks, fakeReq(1), true)
		after := time.Now().UTC()
		if e == nil || e.Code != api.CodeQuotaExceeded || e.Limit != api.LimitTokensPerDay || e.HTTPStatus() != http.StatusTooManyRequests {
			t.Fatalf("%s: %+v, want QUOTA_EXCEEDED for tokens_per_day", what, e)
		}
		day, _ := periodStarts(before)
		lo, hi := day.AddDate(0, 0, 1).Sub(after).Milliseconds()-1, day.AddDate(0, 0, 1).Sub(before).Milliseconds()+1
		if e.RetryAfterMs < lo || e.RetryAfterMs > hi {
			t.Fatalf("%s: retry after %d ms, want the next UTC midnight (%d..%d)", what, e.RetryAfterMs, lo, hi)
		}
	}
	check("in flight")
	p.cancel(first, "test", principal{role: RoleAdmin})
	waitUsage(t, p.st, "carol", "m", 2) // the task and the refusal
	check("counted")
	// Another key, without budgets, is not held back.
	w.set(withPrompt(1, 0, -1))
	p.wait(t, p.submitAs(t, asKey("dave", &api.KeyLimits{TokensPerDay: 1000}), fakeReq(1)))
	tot := waitUsage(t, p.st, "carol", "", 3)
	if tot.PromptTokens != 12 || tot.Errors[api.CodeQuotaExceeded] != 2 || tot.Errors[api.CodeCancelled] != 1 {
		t.Fatalf("carol's usage %+v", tot)
	}
}

// The budgets turn with the UTC day and month; the month is named when both
// are spent.
func TestUsageQuotaPeriods(t *testing.T) {
	st, err := store.OpenOrchestrator(filepath.Join(t.TempDir(), "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 2, 15, 22, 30, 0, 0, time.UTC)
	u := newUsage(st, newMetrics().reg, testLogger(t))
	u.now = func() time.Time { return now }
	u.counter("k").Add(10)
	u.counted(&store.TaskRecord{Key: "k", Model: "m", Status: api.TaskSucceeded, FinishedAt: now, PromptTokens: 4, TokensOut: 6})
	for _, c := range []struct {
		name    string
		at      time.Time
		limits  api.KeyLimits
		limit   string
		retryMs int64
	}{
		{"day", now, api.KeyLimits{TokensPerDay: 10}, api.LimitTokensPerDay, 90 * 60 * 1000},
		{"day not reached", now, api.KeyLimits{TokensPerDay: 11}, "", 0},
		{"both: the month", now, api.KeyLimits{TokensPerDay: 10, TokensPerMonth: 10}, api.LimitTokensPerMonth, (13*24*60 + 90) * 60 * 1000},
		{"a new day", now.Add(2 * time.Hour), api.KeyLimits{TokensPerDay: 10}, "", 0},
		{"a new day, the same month", now.Add(2 * time.Hour), api.KeyLimits{TokensPerDay: 10, TokensPerMonth: 10}, api.LimitTokensPerMonth, (12*24*60 + 23*60 + 30) * 60 * 1000},
		{"a new month", now.AddDate(0, 1, 0), api.KeyLimits{TokensPerMonth: 10}, "", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			now = c.at
			e := u.checkQuota(principal{role: RoleUser, key: "k", limits: &c.limits})
			switch {
			case c.limit == "" && e != nil:
				t.Fatalf("refused: %+v", e)
			case c.limit != "" && (e == nil || e.Limit != c.limit || e.RetryAfterMs != c.retryMs):
				t.Fatalf("%+v, want %s retry after %d ms", e, c.limit, c.retryMs)
			}
		})
	}
	// A new process reads this month's usage from the store.
	now = time.Date(2026, 2, 15, 22, 30, 0, 0, time.UTC)
	if err := st.AddUsage([]api.UsageRow{{Key: "k", Model: "m", Hour: now, Requests: 1, PromptTokens: 4, GeneratedTokens: 6},
		{Key: "k", Model: "m", Hour: now.AddDate(0, 0, -1), Requests: 1, GeneratedTokens: 5},
		{Key: "k", Model: "m", Hour: now.AddDate(0, -1, 0), Requests: 1, GeneratedTokens: 100}}); err != nil {
		t.Fatal(err)
	}
	v := newUsage(st, newMetrics().reg, testLogger(t))
	v.now = func() time.Time { return now }
	if err := v.load(); err != nil {
		t.Fatal(err)
	}
	if kp := v.periods["k"]; kp == nil || kp.dayTokens != 10 || kp.monthTokens != 15 {
		t.Fatalf("loaded periods %+v", kp)
	}
}

// GET /v2/usage: an admin sees every key; a user key its own (another's
// is 403); a bad query is 400 naming each field.
func TestUsageHTTP(t *testing.T) {
	cfg := testConfig()
	cfg.Keys = []Key{{Secret: "sk-admin-0001", Role: RoleAdmin, Name: "root"}, {Secret: "sk-alice-0001", Role: RoleUser, Name: "alice"},
		{Secret: "sk-bob-00001", Role: RoleUser, Name: "bob"}}
	cfg.WorkerToken = "wt-0123456789"
	st, err := store.OpenOrchestrator(filepath.Join(t.TempDir(), "orchestrator.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	hour := store.HourOf(time.Now()).Add(-time.Hour)
	if err := st.AddUsage([]api.UsageRow{{Key: "alice", Model: "m", Hour: hour, Requests: 2, GeneratedTokens: 10},
		{Key: "bob", Model: "m", Hour: hour, Requests: 1, GeneratedTokens: 3},
		{Key: "bob", Model: "m", Hour: hour.Add(-72 * time.Hour), Requests: 1, GeneratedTokens: 1}}); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Deps{Store: st, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	o, _, _ := serve(t, srv, st)
	get := func(key, query string, status int) api.Usage {
		t.Helper()
		o.key = key
		return decode[api.Usage](t, o.do(t, http.MethodGet, "/v2/usage"+query, nil), status)
	}
	if u := get("sk-admin-0001", "", http.StatusOK); len(u.Rows) != 2 || u.Totals.GeneratedTokens != 13 || u.Totals.Requests != 3 {
		t.Fatalf("admin: %+v", u)
	}
	if u := get("sk-admin-0001", "?since=96h", http.StatusOK); len(u.Rows) != 3 || u.Rows[0].Key != "bob" || u.Rows[0].GeneratedTokens != 1 {
		t.Fatalf("admin, 4 days: %+v", u)
	}
	if u := get("sk-admin-0001", "?key=bob&since="+hour.Add(-100*time.Hour).Format(time.RFC3339), http.StatusOK); len(u.Rows) != 2 ||
		u.Totals.Key != "bob" || u.Totals.GeneratedTokens != 4 {
		t.Fatalf("admin, bob: %+v", u)
	}
	if u := get("sk-alice-0001", "", http.StatusOK); len(u.Rows) != 1 || u.Rows[0].Key != "alice" || u.Totals.GeneratedTokens != 10 {
		t.Fatalf("alice: %+v", u)
	}
	if u := get("sk-alice-0001", "?key=alice&model=m", http.StatusOK); len(u.Rows) != 1 {
		t.Fatalf("alice naming herself: %+v", u)
	}
	o.key = "sk-alice-0001"
	apiErr(t, o.do(t, http.MethodGet, "/v2/usage?key=bob", nil), http.StatusForbidden, api.CodeForbidden)
	e := apiErr(t, o.do(t, http.MethodGet, "/v2/usage?since=yesterday&until=later&model=a%20b", nil), http.StatusBadRequest, api.CodeInvalidRequest)
	fields := map[string]bool{}
	for _, f := range e.Fields {
		fields[f.Field] = true
	}
	if len(fields) != 3 || !fields["since"] || !fields["until"] || !fields["model"] {
		t.Fatalf("fields %+v", e.Fields)
	}
	for _, q := range []string{"?since=1h&until=2h", "?since=2020-01-01T00:00:00Z", "?since=-5h"} {
		apiErr(t, o.do(t, http.MethodGet, "/v2/usage"+q, nil), http.StatusBadRequest, api.CodeInvalidRequest)
	}
}

// Over HTTP with a managed key: its tokens_per_day budget reaches
// admission; spent, a task is refused 429 QUOTA_EXCEEDED with Retry-After
// to the next UTC midnight; a larger budget (PATCH) admits it again; the
// key's usage and series show what it did.
func TestUsageQuotaHTTP(t *testing.T) {
	o := startKeysOrch(t, keysConfig(), t.TempDir())
	o.addWorker("w1", "m", 2).set(withPrompt(4, 0, -1))
	ops := createKey(t, o.as(""), api.KeySpec{Name: "ops", Role: "admin"})
	admin := o.as(ops.Key)
	tenant := createKey(t, admin, api.KeySpec{Name: "tenant", Limits: api.KeyLimits{TokensPerDay: 10}})
	user := o.as(tenant.Key)
	usage := func() api.Usage {
		return decode[api.Usage](t, user.do(t, http.MethodGet, "/v2/usage", nil), http.StatusOK)
	}
	for i := range 2 { // 7 tokens each: the second starts below the budget
		acc := user.submitAsync(t, fakeReq(3))
		if st := user.waitTask(t, acc.TaskID, 10*time.Second); st.Status != api.TaskSucceeded {
			t.Fatalf("task %d: %+v", i, st)
		}
		waitFor(t, 10*time.Second, "the task counted", func() bool { return usage().Totals.Requests == int64(i+1) })
	}
	resp := user.do(t, http.MethodPost, "/v2/tasks", fakeReq(3))
	retryAfter := resp.Header.Get("Retry-After")
	e := apiErr(t, resp, http.StatusTooManyRequests, api.CodeQuotaExceeded)
	day, _ := periodStarts(time.Now())
	left := time.Until(day.AddDate(0, 0, 1))
	if secs, err := strconv.Atoi(retryAfter); err != nil || e.Limit != api.LimitTokensPerDay ||
		time.Duration(secs)*time.Second < left-5*time.Second || time.Duration(secs)*time.Second > left+5*time.Second {
		t.Fatalf("Retry-After %q, limit %q; want %s to the next UTC midnight", retryAfter, e.Limit, left)
	}
	// /v1 answers OpenAI's shape: a 429 the SDKs raise as RateLimitError.
	resp = user.do(t, http.MethodPost, "/v1/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":3}`)
	type openAIError struct {
		Error struct{ Type, Code string }
	}
	v1 := decode[openAIError](t, resp, http.StatusTooManyRequests)
	if resp.Header.Get("Retry-After") == "" || v1.Error.Code != "insufficient_quota" || v1.Error.Type == "" {
		t.Fatalf("/v1: Retry-After %q, error %+v", resp.Header.Get("Retry-After"), v1.Error)
	}
	decode[api.KeyView](t, admin.do(t, http.MethodPatch, "/v2/keys/tenant", api.KeyUpdate{Limits: &api.KeyLimits{TokensPerDay: 100}}), http.StatusOK)
	acc := user.submitAsync(t, fakeReq(3))
	if st := user.waitTask(t, acc.TaskID, 10*time.Second); st.Status != api.TaskSucceeded {
		t.Fatalf("after a larger budget: %+v", st)
	}
	var u api.Usage
	waitFor(t, 10*time.Second, "three tasks and two refusals counted", func() bool { u = usage(); return u.Totals.Requests == 5 })
	if u.Totals.Key != "tenant" || u.Totals.PromptTokens != 12 || u.Totals.GeneratedTokens != 9 || u.Totals.Errors[api.CodeQuotaExceeded] != 2 {
		t.Fatalf("tenant's usage %+v", u.Totals)
	}
	apiErr(t, user.do(t, http.MethodGet, "/v2/usage?key=ops", nil), http.StatusForbidden, api.CodeForbidden)
	waitFor(t, 10*time.Second, "the per-key series", func() bool {
		m := get(t, o.URL+"/metrics")
		return strings.Contains(m, `llorch_key_tokens_total{key="tenant",kind="generated"} 9`) &&
			strings.Contains(m, `llorch_key_requests_total{key="tenant",outcome="refused"} 2`) &&
			strings.Contains(m, `llorch_key_requests_total{key="tenant",outcome="succeeded"} 3`)
	})
}
