package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/store"
)

// The sessions part: sessions with budgets (POST /v2/sessions). A session
// is metadata only — budgets, what its tasks used, its last worker — never
// a prompt or an output. It belongs to the key that created it (its owner
// hash) and lives TTL after its last use.
//
// A task naming a session of its own key is checked at admission (admit)
// and counts against it: prompt and generated tokens as they stream (relay,
// under the tasks lock: atomics only, no lock of this part is taken there),
// service time (admission to the end) and a turn when it ends
// (finishLocked). A task that runs past a budget is not cut; the next one
// is refused. A session_id naming no session of the key keeps its older
// meaning: worker affinity only.
//
// The store gets a session when it is created or deleted, and what changed
// (a task ended, tokens streamed) in one batch at most every
// sessionFlushInterval; never a write per token.

// Session bounds and names.
const (
	// maxSessionsPerKey bounds one key's live sessions (429 RATE_LIMITED,
	// Limit "sessions").
	maxSessionsPerKey = 10_000
	limitSessions     = "sessions"
	maxSessionBudget  = 1 << 50

	sessionFlushInterval = 2 * time.Second
	sessionSweepInterval = 10 * time.Second
	// sessionWorkerTimeout bounds a call to the session's worker (GET asks
	// whether its KV is warm, DELETE makes it forget it).
	sessionWorkerTimeout = 2 * time.Second

	headerBudgetTokens = "X-Budget-Tokens-Remaining"
	headerBudgetTime   = "X-Budget-Time-Remaining-Ms"
	// headerSessionID names a session on /v1 requests (OpenAI's bodies have
	// no field for it).
	headerSessionID = "X-Session-Id"
)

// A refusal for a spent session is counted under its own reason in
// llorch_rejections_total (http.go's knownCodes).
func init() { knownCodes[api.CodeBudgetExceeded] = true }

// session is one session. Its budgets are fixed; what it used moves with
// atomics, so the tasks part counts without taking a lock.
type session struct {
	id, owner                 string
	tokenBudget, timeBudgetMs int64
	ttl                       time.Duration
	created                   time.Time

	tokens, timeMs, turns atomic.Int64
	lastUse               atomic.Int64 // unix nanoseconds
	worker                atomic.Pointer[string]
	kick                  chan<- struct{} // the part's: a task ended
	// version moves with every change; saved (sessions.mu) is the version
	// the store has.
	version atomic.Uint64
	saved   uint64
}

// sessions owns the sessions. Its lock is a leaf.
type sessions struct {
	log  *slog.Logger
	st   *store.Orchestrator
	reg  *registry
	kick chan struct{}
	// perKey bounds one key's live sessions (maxSessionsPerKey).
	perKey int
	// inUse reports whether an unfinished task names a session: a session
	// past its TTL stays live while one does (tasks.namesSession). Called
	// without mu held.
	inUse func(*session) bool

	mu      sync.Mutex
	byID    map[string]*session
	byOwner map[string]int // live sessions per owner
}

func newSessions(log *slog.Logger, st *store.Orchestrator, reg *registry, inUse func(*session) bool) *sessions {
	return &sessions{log: log.With("part", "sessions"), st: st, reg: reg, inUse: inUse, kick: make(chan struct{}, 1), perKey: maxSessionsPerKey,
		byID: map[string]*session{}, byOwner: map[string]int{}}
}

// sessionCacher is the optional ability of a worker client to report and
// forget a session's cached prefix (workerclient does).
type sessionCacher interface {
	SessionCache(ctx context.Context, sessionID string) (*api.SessionCache, error)
	DropSession(ctx context.Context, sessionID string) (*api.SessionCache, error)
}

// load reads the stored sessions; expired ones are deleted.
func (ss *sessions) load() error {
	recs, err := ss.st.Sessions()
	if err != nil {
		return fmt.Errorf("orchestrator: load sessions: %w", err)
	}
	now := time.Now()
	var expired []string
	ss.mu.Lock()
	for _, r := range recs {
		s := &session{id: r.ID, owner: r.Owner, tokenBudget: r.TokenBudget, timeBudgetMs: r.TimeBudgetMs,
			ttl: time.Duration(r.TTLMs) * time.Millisecond, created: r.CreatedAt, kick: ss.kick}
		s.tokens.Store(r.TokensUsed)
		s.timeMs.Store(r.TimeUsedMs)
		s.turns.Store(r.Turns)
		s.lastUse.Store(r.LastUsed.UnixNano())
		if r.WorkerID != "" {
			s.worker.Store(&r.WorkerID)
		}
		if s.expired(now) {
			expired = append(expired, r.ID)
			continue
		}
		ss.byID[s.id] = s
		ss.byOwner[s.owner]++
	}
	ss.mu.Unlock()
	if err := ss.st.DeleteSessions(expired); err != nil {
		ss.log.Error("deleting expired sessions", "err", err)
	}
	return nil
}

func (s *session) expiresAt() time.Time { return time.Unix(0, s.lastUse.Load()).Add(s.ttl) }

func (s *session) expired(now time.Time) bool { return !now.Before(s.expiresAt()) }

// live reports whether s is live at now: within its TTL, or named by an
// unfinished task. Called without mu held.
func (ss *sessions) live(s *session, now time.Time) bool {
	return s != nil && (!s.expired(now) || (ss.inUse != nil && ss.inUse(s)))
}

// get returns the session id, nil when there is none or it is no longer
// live.
func (ss *sessions) get(id string) *session {
	ss.mu.Lock()
	s := ss.byID[id]
	ss.mu.Unlock()
	if !ss.live(s, time.Now()) {
		return nil
	}
	return s
}

func (s *session) touch(now time.Time) {
	s.lastUse.Store(now.UnixNano())
	s.version.Add(1)
}

// budget is what s has left; nil when s is nil or has no budget.
func (s *session) budget() *api.Budget {
	if s == nil || (s.tokenBudget == 0 && s.timeBudgetMs == 0) {
		return nil
	}
	var b api.Budget
	if s.tokenBudget > 0 {
		b.TokensRemaining = new(max(0, s.tokenBudget-s.tokens.Load()))
	}
	if s.timeBudgetMs > 0 {
		b.TimeRemainingMs = new(max(0, s.timeBudgetMs-s.timeMs.Load()))
	}
	return &b
}

// spend counts tokens of a task of s (prompt tokens at started, each
// generated token); nil-safe, lock-free.
func (s *session) spend(n int) {
	if s == nil || n <= 0 {
		return
	}
	s.tokens.Add(int64(n))
	s.version.Add(1)
}

// workerKey is the session id a task of s sends its worker ("" without a
// session): only sessions created here reach workers.
func (s *session) workerKey() string {
	if s == nil {
		return ""
	}
	return s.id
}

// endLocked counts a task of s that ends now (called by finishLocked, under
// the tasks lock: atomics only): its service time since admission, a turn,
// its worker; and gives the terminal event what s has left.
func (s *session) endLocked(t *task, now time.Time, end *api.End, apiErr *api.Error) {
	if s == nil {
		return
	}
	s.timeMs.Add(max(0, now.Sub(t.created).Milliseconds()))
	s.turns.Add(1)
	if t.workerID != "" {
		w := t.workerID
		s.worker.Store(&w)
	}
	s.touch(now)
	select {
	case s.kick <- struct{}{}:
	default:
	}
	b := s.budget()
	if end != nil {
		end.Budget = b
	} else if apiErr != nil {
		apiErr.Budget = b
	}
}

// checkSessionRequest checks a POST /v2/sessions body and fills the TTL.
func checkSessionRequest(r *api.SessionRequest) *api.Error {
	var fe []api.FieldError
	add := func(field, constraint, msg string) {
		fe = append(fe, api.FieldError{Field: field, Constraint: constraint, Message: msg})
	}
	if r.SessionID != "" {
		if why := api.CheckID(r.SessionID); why != "" {
			add("session_id", "id", why)
		}
	}
	if r.TokenBudget < 0 || r.TokenBudget > maxSessionBudget {
		add("token_budget", "0..2^50", "must be between 0 (unlimited) and 2^50")
	}
	if r.TimeBudgetMs < 0 || r.TimeBudgetMs > maxSessionBudget {
		add("time_budget_ms", "0..2^50", "must be between 0 (unlimited) and 2^50")
	}
	switch {
	case r.TTLMs == 0:
		r.TTLMs = api.DefaultSessionTTLMs
	case r.TTLMs < 0 || r.TTLMs > api.MaxSessionTTLMs:
		add("ttl_ms", "1..604800000", fmt.Sprintf("must be between 1 and %d (7 days)", api.MaxSessionTTLMs))
	}
	if len(fe) == 0 {
		return nil
	}
	return &api.Error{Code: api.CodeInvalidRequest, Message: "invalid session", Fields: fe}
}

// create makes a session owned by p. An id already taken — by p's key or
// another's — is 409 CONFLICT (not idempotent: the budgets asked for could
// differ from the session's); the answer never says whose it is.
func (ss *sessions) create(p principal, r api.SessionRequest) (*session, *api.Error) {
	if e := checkSessionRequest(&r); e != nil {
		return nil, e
	}
	now := time.Now()
	s := &session{id: r.SessionID, owner: p.owner, tokenBudget: r.TokenBudget, timeBudgetMs: r.TimeBudgetMs,
		ttl: time.Duration(r.TTLMs) * time.Millisecond, created: now, kick: ss.kick}
	if s.id == "" {
		s.id = newID("s-")
	}
	s.touch(now)
	old := ss.get(s.id)
	ss.mu.Lock()
	if cur := ss.byID[s.id]; cur != nil && (cur == old || !cur.expired(now)) {
		ss.mu.Unlock()
		return nil, api.Errorf(api.CodeConflict, "session id %s is taken; choose another or let the orchestrator generate one", s.id)
	} else if cur != nil {
		ss.removeLocked(cur) // expired, and no task names it
	}
	if ss.byOwner[p.owner] >= ss.perKey {
		ss.mu.Unlock()
		return nil, &api.Error{Code: api.CodeRateLimited, Limit: limitSessions,
			Message: fmt.Sprintf("this key has %d live sessions, the most it may; delete some or let them expire", ss.perKey)}
	}
	ss.byID[s.id] = s
	ss.byOwner[p.owner]++
	s.saved = s.version.Load()
	rec := s.recordLocked()
	ss.mu.Unlock()
	if err := ss.st.PutSessions([]store.SessionRecord{rec}); err != nil {
		ss.log.Error("session write failed", "err", err)
		ss.mu.Lock()
		if ss.byID[s.id] == s {
			ss.removeLocked(s)
		}
		ss.mu.Unlock()
		return nil, &api.Error{Code: api.CodeInternal, Message: "cannot store the session", Retriable: true}
	}
	return s, nil
}

func (ss *sessions) removeLocked(s *session) {
	delete(ss.byID, s.id)
	if ss.byOwner[s.owner]--; ss.byOwner[s.owner] <= 0 {
		delete(ss.byOwner, s.owner)
	}
}

// recordLocked is s as the store keeps it.
func (s *session) recordLocked() store.SessionRecord {
	r := store.SessionRecord{ID: s.id, Owner: s.owner, TokenBudget: s.tokenBudget, TimeBudgetMs: s.timeBudgetMs,
		TTLMs: s.ttl.Milliseconds(), CreatedAt: s.created, LastUsed: time.Unix(0, s.lastUse.Load()),
		Turns: s.turns.Load(), TokensUsed: s.tokens.Load(), TimeUsedMs: s.timeMs.Load()}
	if w := s.worker.Load(); w != nil {
		r.WorkerID = *w
	}
	return r
}

// lookup returns the live session id that p may see (its own; every one
// for an admin), nil otherwise.
func (ss *sessions) lookup(p principal, id string) *session {
	s := ss.get(id)
	if s == nil || !p.canSee(s.owner) {
		return nil
	}
	return s
}

// find returns the live session id owned by owner, nil when there is none.
func (ss *sessions) find(owner, id string) *session {
	if id == "" {
		return nil
	}
	s := ss.get(id)
	if s == nil || s.owner != owner {
		return nil
	}
	return s
}

// admit checks a new task of p naming sessionID against the session's
// budgets (429 BUDGET_EXCEEDED naming the budget) and returns the session
// (nil when the id names no session of p's key: affinity only).
func (ss *sessions) admit(p principal, sessionID string) (*session, *api.Error) {
	s := ss.find(p.owner, sessionID)
	if s == nil {
		return nil, nil
	}
	switch {
	case s.tokenBudget > 0 && s.tokens.Load() >= s.tokenBudget:
		return nil, &api.Error{Code: api.CodeBudgetExceeded, Limit: api.LimitSessionTokens, Budget: s.budget(),
			Message: fmt.Sprintf("session %s used %d of its %d tokens", s.id, s.tokens.Load(), s.tokenBudget)}
	case s.timeBudgetMs > 0 && s.timeMs.Load() >= s.timeBudgetMs:
		return nil, &api.Error{Code: api.CodeBudgetExceeded, Limit: api.LimitSessionTime, Budget: s.budget(),
			Message: fmt.Sprintf("session %s used %d of its %d ms of service time", s.id, s.timeMs.Load(), s.timeBudgetMs)}
	}
	s.touch(time.Now())
	return s, nil
}

// remove deletes the session p may see and makes its worker forget its
// cached prefix. Its running tasks go on (and count nowhere).
func (ss *sessions) remove(ctx context.Context, p principal, id string) bool {
	s := ss.lookup(p, id)
	if s == nil {
		return false
	}
	ss.mu.Lock()
	if ss.byID[id] != s { // removed meanwhile
		ss.mu.Unlock()
		return false
	}
	ss.removeLocked(s)
	ss.mu.Unlock()
	if err := ss.st.DeleteSessions([]string{id}); err != nil {
		ss.log.Error("session delete failed", "err", err)
	}
	ss.dropOnWorker(ctx, s)
	return true
}

// dropOnWorker tells the worker of the session's last task to forget its
// cached prefix (best effort: a worker that is gone holds nothing).
func (ss *sessions) dropOnWorker(ctx context.Context, s *session) {
	w := s.worker.Load()
	if w == nil {
		return
	}
	c, ok := ss.reg.client(*w).(sessionCacher)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sessionWorkerTimeout)
	defer cancel()
	if _, err := c.DropSession(ctx, s.id); err != nil {
		ss.log.Warn("the session's worker did not drop its cache", "worker_id", *w, "err", err)
	}
}

// kvWarm asks the session's worker whether a slot still holds the cached
// prefix its last task left (false when the worker is gone or silent).
func (ss *sessions) kvWarm(ctx context.Context, s *session) bool {
	w := s.worker.Load()
	if w == nil || !ss.reg.healthy(*w) {
		return false
	}
	c, ok := ss.reg.client(*w).(sessionCacher)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, sessionWorkerTimeout)
	defer cancel()
	sc, err := c.SessionCache(ctx, s.id)
	return err == nil && sc.Warm
}

// view is GET /v2/sessions/{id}.
func (ss *sessions) view(ctx context.Context, s *session) api.SessionView {
	now := time.Now()
	exp := s.expiresAt()
	v := api.SessionView{SessionID: s.id, CreatedAt: s.created, ExpiresAt: exp, TTLMs: s.ttl.Milliseconds(),
		TTLLeftMs: max(0, exp.Sub(now).Milliseconds()), Turns: int(s.turns.Load()), TokensUsed: s.tokens.Load(),
		TokenBudget: s.tokenBudget, TimeUsedMs: s.timeMs.Load(), TimeBudgetMs: s.timeBudgetMs}
	if b := s.budget(); b != nil {
		v.TokensRemaining, v.TimeRemainingMs = b.TokensRemaining, b.TimeRemainingMs
	}
	if w := s.worker.Load(); w != nil {
		v.WorkerID = *w
		v.KVWarm = ss.kvWarm(ctx, s)
	}
	return v
}

// loop writes what changed (every sessionFlushInterval, and at once when a
// task ended) and removes expired sessions; at the end it writes once more.
// inUse reports the sessions that unfinished tasks name (they do not
// expire under them).
func (ss *sessions) loop(ctx context.Context, inUse func() map[*session]bool) {
	flush := time.NewTicker(sessionFlushInterval)
	defer flush.Stop()
	sweep := time.NewTicker(sessionSweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			ss.flush()
			return
		case <-ss.kick:
			ss.flush()
		case <-flush.C:
			ss.flush()
		case now := <-sweep.C:
			ss.sweep(now, inUse())
		}
	}
}

// flush writes the sessions that changed since their last write.
func (ss *sessions) flush() {
	type pending struct {
		s       *session
		version uint64
	}
	var ps []pending
	var recs []store.SessionRecord
	ss.mu.Lock()
	for _, s := range ss.byID {
		if v := s.version.Load(); v != s.saved {
			ps = append(ps, pending{s, v})
			recs = append(recs, s.recordLocked())
		}
	}
	ss.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	if err := ss.st.PutSessions(recs); err != nil {
		ss.log.Error("session write failed", "sessions", len(recs), "err", err)
		return
	}
	var gone []string
	ss.mu.Lock()
	for _, p := range ps {
		p.s.saved = max(p.s.saved, p.version)
		if ss.byID[p.s.id] != p.s {
			gone = append(gone, p.s.id) // deleted while it was written
		}
	}
	ss.mu.Unlock()
	if len(gone) > 0 {
		// Deleted meanwhile, unless the id was taken again.
		ss.mu.Lock()
		gone = slices.DeleteFunc(gone, func(id string) bool { return ss.byID[id] != nil })
		ss.mu.Unlock()
		if err := ss.st.DeleteSessions(gone); err != nil {
			ss.log.Error("session delete failed", "err", err)
		}
	}
}

// sweep removes the sessions expired at now that no unfinished task names.
func (ss *sessions) sweep(now time.Time, inUse map[*session]bool) int {
	var ids []string
	ss.mu.Lock()
	for id, s := range ss.byID {
		if s.expired(now) && !inUse[s] {
			ss.removeLocked(s)
			ids = append(ids, id)
		}
	}
	ss.mu.Unlock()
	if err := ss.st.DeleteSessions(ids); err != nil {
		ss.log.Error("deleting expired sessions", "err", err)
	}
	return len(ids)
}

// sessionsInUse returns the sessions that unfinished tasks name.
func (ts *tasks) sessionsInUse() map[*session]bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := map[*session]bool{}
	for _, t := range ts.table {
		if t.sess != nil && !t.terminal() {
			out[t.sess] = true
		}
	}
	return out
}

// namesSession reports whether an unfinished task names s.
func (ts *tasks) namesSession(s *session) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, t := range ts.table {
		if t.sess == s && !t.terminal() {
			return true
		}
	}
	return false
}

// sessionOf returns the session of task id as p sees it and what it had
// left at admission.
func (ts *tasks) sessionOf(id string, p principal) (*session, *api.Budget) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.table[id]
	if t == nil || !p.canSee(t.owner) {
		return nil, nil
	}
	return t.sess, t.admitBudget
}

// setBudgetHeaders writes a budget's figures as response headers (none for
// an unlimited one).
func setBudgetHeaders(h http.Header, b *api.Budget) {
	if b == nil {
		return
	}
	if b.TokensRemaining != nil {
		h.Set(headerBudgetTokens, fmt.Sprint(*b.TokensRemaining))
	}
	if b.TimeRemainingMs != nil {
		h.Set(headerBudgetTime, fmt.Sprint(*b.TimeRemainingMs))
	}
}
