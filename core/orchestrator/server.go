package orchestrator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/buildinfo"
	"github.com/llorch/llorch/core/queue"
	"github.com/llorch/llorch/core/remote"
	"github.com/llorch/llorch/core/routing"
	"github.com/llorch/llorch/core/store"
)

// Built-in routing policies (Config.RoutingPolicy).
const (
	PolicyCacheAware  = "cache-aware"
	PolicyLeastLoaded = "least-loaded"
)

// Config is the orchestrator's behaviour. Zero values take the defaults listed.
type Config struct {
	// QueueCapacity bounds each priority class of the queue (default 1024).
	QueueCapacity int
	// QueuePolicy is what a full queue does: "reject" (429) or "drop-lru"
	// (the oldest batch task of the key with the most batch tasks queued is
	// dropped). Default reject.
	QueuePolicy string
	// StarvationLimit promotes a batch task that waited this long (default 30s).
	StarvationLimit time.Duration
	// Unavailable is what happens to a task for a known model that no healthy
	// worker serves now: "wait" in the queue (default) or "reject" with 503
	// POOL_UNAVAILABLE.
	Unavailable string
	// HeartbeatTimeout is how long a worker may stay silent before it is
	// probed (default 10s); DeadAfter how long it may stay unhealthy before
	// it is dead (default 60s). MonitorInterval is how often the monitor
	// looks (default 1s); ProbeTimeout bounds one /health probe (default 2s).
	HeartbeatTimeout time.Duration
	DeadAfter        time.Duration
	MonitorInterval  time.Duration
	ProbeTimeout     time.Duration
	// MaxAttempts bounds how often a task is tried when workers fail before
	// its first token (default 3); a worker that answers ALL_SLOTS_BUSY does
	// not count. RetryBackoff is the first wait between attempts, doubled
	// each time (default 100ms).
	MaxAttempts  int
	RetryBackoff time.Duration
	// MaxMigrations bounds how often a task whose worker was lost mid-stream
	// is continued on another worker from the tokens already sent (default
	// 2; -1: never, the stream ends with WORKER_LOST).
	MaxMigrations int
	// AttemptIdleTimeout abandons an attempt whose worker sends nothing, not
	// even a keep-alive, for this long (default 60s; workers send one every
	// 15s).
	AttemptIdleTimeout time.Duration
	// ResultTTL is how long finished tasks (text, stats, events) are kept
	// (default 1h).
	ResultTTL time.Duration
	// KeepAlive is the interval of SSE keep-alive comments on quiet streams
	// (default 15s); QueuedInterval how often a waiting task's stream gets a
	// fresh queued event (default 1s).
	KeepAlive      time.Duration
	QueuedInterval time.Duration
	// JournalInterval is how often task progress is written to the store
	// (default 200ms). Async tasks are written before their 202 regardless.
	JournalInterval time.Duration
	// Keys, when not empty, are required as bearer tokens on /v2 and /v1;
	// each has a role (see Role). Without keys every client is an admin.
	Keys []Key
	// WorkerToken is the secret shared with workers: the orchestrator sends
	// it to workers, and only it registers and heartbeats. With keys and no
	// worker token, workers cannot register.
	WorkerToken string
	// RoutingFile is a Tengo routing script, watched for changes; without it
	// a script stored through PUT /v2/routing/script is used, if any.
	RoutingFile string
	// RoutingTimeout (default 50ms) and RoutingMaxAllocs (default 100000)
	// bound one script call.
	RoutingTimeout   time.Duration
	RoutingMaxAllocs int64
	// RoutingHeaders are the request headers scripts may read.
	RoutingHeaders []string
	// RoutingPolicy is the built-in placement policy: "cache-aware" (the
	// default: the prefix index's expected cached tokens are scored against
	// load) or "least-loaded" (free slots and load only).
	RoutingPolicy string

	// Fleet, when set, is applied at startup (the --fleet file): its pools
	// and models are put, entries not in it are kept.
	Fleet *api.FleetFile
	// AdvertiseURL is the orchestrator's URL as pools' workers reach it
	// (default: http:// and the address Serve listens on).
	AdvertiseURL string
	// SSH is the base SSH configuration for ssh pools (known_hosts,
	// identity files, ssh_config; unknown host keys are refused unless
	// AcceptNewHostKey).
	SSH remote.Config
	// ReconcileInterval is how often the fleet compares declared models
	// with what runs (default 2s); InventoryInterval how often pools are
	// refreshed (default 30s); PoolTimeout bounds one pool command other
	// than a download or a spawn (default 30s); RegisterTimeout how long a
	// spawned worker may take to register (default 30s); StopGrace how long
	// a drained worker may take to finish its tasks before it is stopped
	// anyway (default 10m).
	ReconcileInterval time.Duration
	InventoryInterval time.Duration
	PoolTimeout       time.Duration
	RegisterTimeout   time.Duration
	StopGrace         time.Duration
	// EmbedStartWait is how long a POST /v1/embeddings for a declared
	// embedding model with no ready worker waits while the fleet starts one
	// (default 60s); then it is answered 503 POOL_UNAVAILABLE.
	EmbedStartWait time.Duration
	// Version is the llorch version pools must run when they ask for an
	// install (default buildinfo.Version).
	Version string

	// TraceFile, when set, is a JSON Lines file that gets one
	// api.TraceRecord per finished task (appended; created with mode 0600):
	// lengths and timings, and with TracePrompts the prompt or messages too.
	TraceFile    string
	TracePrompts bool

	// StatsInterval is how often the sample ring behind GET /v2/stats takes
	// a sample (default 1s, at most 1m, at least 10ms); it keeps 15 minutes
	// of them.
	StatsInterval time.Duration
}

// Validate checks the config and fills defaults.
func (c *Config) Validate() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.QueueCapacity <= 0 {
		c.QueueCapacity = 1024
	}
	if c.QueuePolicy == "" {
		c.QueuePolicy = "reject"
	}
	if _, err := queue.ParsePolicy(c.QueuePolicy); err != nil {
		return fmt.Errorf("orchestrator: queue policy: %w", err)
	}
	switch c.RoutingPolicy {
	case "":
		c.RoutingPolicy = PolicyCacheAware
	case PolicyCacheAware, PolicyLeastLoaded:
	default:
		return fmt.Errorf("orchestrator: routing policy must be %s or %s, got %q", PolicyCacheAware, PolicyLeastLoaded, c.RoutingPolicy)
	}
	switch c.Unavailable {
	case "":
		c.Unavailable = "wait"
	case "wait", "reject":
	default:
		return fmt.Errorf("orchestrator: unavailable policy must be wait or reject, got %q", c.Unavailable)
	}
	def(&c.StarvationLimit, 30*time.Second)
	def(&c.HeartbeatTimeout, 10*time.Second)
	def(&c.DeadAfter, 60*time.Second)
	def(&c.MonitorInterval, time.Second)
	def(&c.ProbeTimeout, 2*time.Second)
	def(&c.RetryBackoff, 100*time.Millisecond)
	def(&c.ResultTTL, time.Hour)
	def(&c.KeepAlive, 15*time.Second)
	def(&c.QueuedInterval, time.Second)
	def(&c.JournalInterval, 200*time.Millisecond)
	def(&c.RoutingTimeout, 50*time.Millisecond)
	def(&c.AttemptIdleTimeout, time.Minute)
	def(&c.ReconcileInterval, 2*time.Second)
	def(&c.InventoryInterval, 30*time.Second)
	def(&c.PoolTimeout, 30*time.Second)
	def(&c.RegisterTimeout, 30*time.Second)
	def(&c.StopGrace, 10*time.Minute)
	def(&c.EmbedStartWait, time.Minute)
	switch {
	case c.StatsInterval == 0:
		c.StatsInterval = time.Second
	case c.StatsInterval < minStatsInterval || c.StatsInterval > maxStatsInterval:
		return fmt.Errorf("orchestrator: the stats interval must be from %s to %s, got %s", minStatsInterval, maxStatsInterval, c.StatsInterval)
	}
	if c.Version == "" {
		c.Version = buildinfo.Version
	}
	if c.AdvertiseURL != "" {
		u, err := api.BaseURL(c.AdvertiseURL)
		if err != nil {
			return fmt.Errorf("orchestrator: advertise url: %w", err)
		}
		c.AdvertiseURL = u
	}
	if c.TracePrompts && c.TraceFile == "" {
		return errors.New("orchestrator: recording prompts (--trace-prompts) needs a trace file (--trace-file)")
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	switch {
	case c.MaxMigrations == 0:
		c.MaxMigrations = 2
	case c.MaxMigrations < 0:
		c.MaxMigrations = 0
	}
	for i, k := range c.Keys {
		if err := checkSecret(k.Secret); err != nil {
			return fmt.Errorf("orchestrator: api key %d: %w", i+1, err)
		}
		if k.Role != RoleUser && k.Role != RoleAdmin {
			return fmt.Errorf("orchestrator: api key %d: role must be user or admin", i+1)
		}
		for _, o := range c.Keys[:i] {
			if o.Secret == k.Secret {
				return fmt.Errorf("orchestrator: api key %d is listed twice", i+1)
			}
		}
	}
	if c.WorkerToken != "" {
		if err := checkSecret(c.WorkerToken); err != nil {
			return fmt.Errorf("orchestrator: worker token: %w", err)
		}
		for i, k := range c.Keys {
			if k.Secret == c.WorkerToken {
				return fmt.Errorf("orchestrator: api key %d is the worker token: a client key must not let its holder act as a worker", i+1)
			}
		}
	}
	return nil
}

// Deps are the orchestrator's collaborators.
type Deps struct {
	Log   *slog.Logger
	Store *store.Orchestrator
	// HTTP talks to workers; nil uses a client without an overall timeout
	// (streams are long) and a 5s dial timeout.
	HTTP *http.Client
	// TrialScript, when set, runs a routing script once in a sandboxed child
	// process before it is loaded (routing.Trial); an error refuses it.
	TrialScript func(ctx context.Context, name string, src []byte) error
	// UI is the dashboard's files, served at /ui/ (embed.UI in the binary);
	// nil serves none.
	UI fs.FS
	// DefaultRoutingScript is the built-in policy written as a script
	// (embed.DefaultRoutingScript), which GET /v2/routing shows.
	DefaultRoutingScript []byte

	// connect replaces the HTTP worker client (tests).
	connect func(url string) workerAPI
	// poolHost replaces the pools' commands (tests).
	poolHost func(api.Pool) poolHost
	// manualStats stops the stats loop: tests take samples (stats.take).
	manualStats bool
}

// Server is the orchestrator daemon: a composition of parts, each owning
// its state and its lock (see the package doc).
type Server struct {
	cfg      Config
	deps     Deps
	log      *slog.Logger
	m        *metrics
	st       *store.Orchestrator
	auth     *authn
	routing  *routing.Manager
	reg      *registry
	tasks    *tasks
	disp     *dispatcher
	fleet    *fleet
	stats    *stats
	usage    *usage    // usage by key and model, period budgets (usage.go)
	limits   limiter   // per-key limits (limits.go)
	sessions *sessions // sessions with budgets (sessions.go)
	echo     *echo.Echo
	ui       map[string]*uiFile // the dashboard's files by path (http_ui.go)
	// closeHosts closes the connections to pools (at the end of Serve).
	closeHosts func()

	// beats are the loops' last signs of life, for /healthz.
	beats [numLoops]atomic.Int64
}

// The loops whose liveness /healthz checks.
const (
	loopMonitor = iota
	loopJournal
	numLoops
)

// New validates cfg and builds a server. It loads the registry and the task
// journal from the store; Serve resumes unfinished tasks.
func New(cfg Config, deps Deps) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Store == nil {
		return nil, errors.New("orchestrator: a store is required")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	if deps.HTTP == nil {
		deps.HTTP = &http.Client{Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Log.With("component", "orchestrator"), m: newMetrics(), st: deps.Store}
	if s.auth, err = newAuthn(cfg.Keys, cfg.WorkerToken, deps.Store); err != nil {
		return nil, err
	}
	s.routing = routing.NewManager(routing.Config{Timeout: cfg.RoutingTimeout, MaxAllocs: cfg.RoutingMaxAllocs, Observe: s.m.observeRouting})
	connect := deps.connect
	if connect == nil {
		connect = httpWorkers(cfg.WorkerToken, deps.HTTP)
	}
	s.reg = newRegistry(&s.cfg, s.log, s.st, connect, s.m)
	s.tasks = newTasks(&s.cfg, s.log, s.st, s.m)
	s.usage = newUsage(s.st, s.m.reg, s.log)
	s.tasks.usage = s.usage
	if cfg.TraceFile != "" {
		tr, err := openTrace(cfg.TraceFile, cfg.TracePrompts, s.m, s.log)
		if err != nil {
			return nil, err
		}
		s.tasks.trace = tr
		defer func() {
			if err != nil {
				_ = tr.f.Close() // Serve will not run
			}
		}()
	}
	s.disp = newDispatcher(&s.cfg, s.log, s.m, s.reg, s.tasks, s.routing)
	s.reg.onReady = s.disp.kick
	s.reg.onLost = s.disp.workerLost
	s.reg.onGone = s.disp.forgetWorker
	host, closeHosts := deps.poolHost, func() {}
	if host == nil {
		host, closeHosts = newCLIHost(cfg.SSH)
	}
	s.closeHosts = closeHosts
	s.fleet = newFleet(&s.cfg, s.log, s.m, s.st, s.reg, s.disp, host)
	s.disp.onStarved = s.fleet.kick
	s.stats = newStats(&s.cfg, s.m, s.tasks, s.disp, s.reg)
	s.stats.manual = deps.manualStats
	if err := s.initRouting(); err != nil {
		return nil, err
	}
	if err := s.reg.load(); err != nil {
		return nil, err
	}
	if err := s.fleet.load(); err != nil {
		return nil, err
	}
	if err := s.fleet.apply(cfg.Fleet); err != nil {
		return nil, err
	}
	if err := s.usage.load(); err != nil { // before the journal's restored tasks are counted
		return nil, err
	}
	s.sessions = newSessions(s.log, s.st, s.reg, s.tasks.namesSession)
	if err := s.sessions.load(); err != nil { // before restored tasks find theirs
		return nil, err
	}
	rs, err := s.tasks.restore()
	if err != nil {
		return nil, err
	}
	s.requeueRestored(rs)
	if s.ui, err = loadUI(deps.UI); err != nil {
		return nil, err
	}
	s.echo = s.routes()
	s.keysLoaded() // keys.go: logs the keys, ends restored tasks of revoked keys
	return s, nil
}

// Handler is the orchestrator's HTTP API.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve runs the parts' loops and serves HTTP on ln until ctx ends. Running
// tasks stay running in the journal: a restart continues them.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if s.cfg.AdvertiseURL == "" {
		s.cfg.AdvertiseURL = "http://" + ln.Addr().String()
	}
	// The tail writer outlives the other loops, so their last events are
	// written before the final journal batch.
	tailCtx, stopTail := context.WithCancel(context.Background())
	tailDone := make(chan struct{})
	go func() { defer close(tailDone); s.tasks.tailLoop(tailCtx) }()
	// The trace writer too: tasks that end while the others stop are traced.
	traceDone := make(chan struct{})
	go func() {
		defer close(traceDone)
		if s.tasks.trace != nil {
			s.tasks.trace.loop(tailCtx)
		}
	}()
	var wg sync.WaitGroup
	for i := range s.beats {
		s.beats[i].Store(time.Now().UnixNano())
	}
	alive := func(i int) func() { return func() { s.beats[i].Store(time.Now().UnixNano()) } }
	loops := []func(context.Context){
		s.disp.loop,
		func(ctx context.Context) { s.reg.monitorLoop(ctx, alive(loopMonitor)) },
		func(ctx context.Context) { s.tasks.journalLoop(ctx, alive(loopJournal)) },
		s.tasks.janitorLoop, s.disp.queuedLoop, s.watchRouting, s.fleet.loop, s.stats.loop,
		func(ctx context.Context) { s.sessions.loop(ctx, s.tasks.sessionsInUse) },
	}
	for _, loop := range loops {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	// No ReadTimeout: it would cancel the context of every stream after it;
	// bodies get their own deadline (api.ReadBody).
	srv := &http.Server{Handler: s.echo, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.disp.kick()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shut, c2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer c2()
	if srv.Shutdown(shut) != nil {
		_ = srv.Close() // streams that did not end in time
	}
	cancel()
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		s.log.Error("the orchestrator's loops did not stop in 10s; exiting without them")
	}
	s.closeHosts()
	stopTail()
	<-tailDone
	<-traceDone
	if ferr := s.tasks.flush(); ferr != nil {
		s.log.Error("final journal write failed", "err", ferr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// health checks that the server can serve: every part's lock can be taken
// within a second, and the periodic loops have run recently. A request that
// left a lock held (or a deadlock) makes /healthz fail instead of hanging.
func (s *Server) health() []string {
	var bad []string
	for _, p := range []struct {
		name string
		mu   *sync.Mutex
	}{{"registry", &s.reg.mu}, {"tasks", &s.tasks.mu}, {"dispatcher", &s.disp.mu}, {"fleet", &s.fleet.mu}} {
		if !tryLockFor(p.mu, time.Second) {
			bad = append(bad, p.name+" is locked for more than 1s")
		}
	}
	now := time.Now().UnixNano()
	for i, every := range [numLoops]time.Duration{loopMonitor: s.cfg.MonitorInterval, loopJournal: s.cfg.JournalInterval} {
		if lag := time.Duration(now - s.beats[i].Load()); lag > 3*every+5*time.Second {
			bad = append(bad, fmt.Sprintf("the %s loop has not run for %s", [numLoops]string{"monitor", "journal"}[i], lag.Round(time.Second)))
		}
	}
	return bad
}

// tryLockFor takes and releases mu if it can within limit.
func tryLockFor(mu *sync.Mutex, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		if mu.TryLock() {
			mu.Unlock()
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
