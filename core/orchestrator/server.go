package orchestrator

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/llorch/llorch/core/admission"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
	"github.com/llorch/llorch/core/queue"
	"github.com/llorch/llorch/core/routing"
	"github.com/llorch/llorch/core/store"
	"github.com/llorch/llorch/core/workerclient"
)

// Config is the orchestrator's behaviour. Zero values take the defaults listed.
type Config struct {
	// QueueCapacity bounds each priority class of the queue (default 1024).
	QueueCapacity int
	// QueuePolicy is what a full queue does: "reject" (429) or "drop-lru"
	// (the oldest batch task is dropped). Default reject.
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
	// its first token (default 3); RetryBackoff is the first wait between
	// attempts, doubled each time (default 100ms).
	MaxAttempts  int
	RetryBackoff time.Duration
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
	// APIKeys, when not empty, are required as bearer tokens on /v2 and /v1.
	APIKeys []string
	// WorkerToken is the secret shared with workers: the orchestrator sends
	// it to workers and accepts it on register and heartbeat.
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
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	for i, k := range c.APIKeys {
		if strings.TrimSpace(k) != k || k == "" || len(k) > 512 {
			return fmt.Errorf("orchestrator: api key %d is empty, too long or has surrounding spaces", i+1)
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
}

// Server is the orchestrator daemon.
type Server struct {
	cfg     Config
	log     *slog.Logger
	routing *routing.Manager
	st      *store.Orchestrator
	hc      *http.Client
	echo    *echo.Echo
	metrics *metrics
	keys    [][]byte

	mu       sync.Mutex
	workers  map[string]*worker
	tasks    map[string]*task
	q        *queue.Queue[*task]
	depth    map[depthKey]int // queued tasks per model and priority
	meter    *admission.Meter
	sessions map[string]string // session id → worker that served it last
	dirty    map[string]*task  // tasks with unjournaled changes

	// health asks a worker for /health (replaced in time tests).
	health func(context.Context, *workerclient.Client) (*api.Health, error)

	kick        chan struct{} // wakes the dispatcher
	journalKick chan struct{}
	journalMu   sync.Mutex // one journal write at a time
	started     chan struct{}
}

type depthKey struct{ model, priority string }

// New validates cfg and builds a server. It loads the registry and the task
// journal from the store; Serve resumes unfinished tasks.
func New(cfg Config, deps Deps) (*Server, error) {
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
	pol, _ := queue.ParsePolicy(cfg.QueuePolicy)
	s := &Server{
		cfg:         cfg,
		log:         deps.Log.With("component", "orchestrator"),
		st:          deps.Store,
		hc:          deps.HTTP,
		metrics:     newMetrics(),
		workers:     map[string]*worker{},
		tasks:       map[string]*task{},
		q:           queue.New[*task](queue.Config{Capacity: cfg.QueueCapacity, StarvationLimit: cfg.StarvationLimit, Policy: pol}),
		depth:       map[depthKey]int{},
		meter:       admission.NewMeter(0.2),
		sessions:    map[string]string{},
		dirty:       map[string]*task{},
		health:      func(ctx context.Context, c *workerclient.Client) (*api.Health, error) { return c.Health(ctx) },
		kick:        make(chan struct{}, 1),
		journalKick: make(chan struct{}, 1),
		started:     make(chan struct{}),
	}
	for _, k := range cfg.APIKeys {
		s.keys = append(s.keys, []byte(k))
	}
	s.routing = routing.NewManager(routing.Config{Timeout: cfg.RoutingTimeout, MaxAllocs: cfg.RoutingMaxAllocs, Observe: s.observeRouting})
	if err := s.initRouting(); err != nil {
		return nil, err
	}
	if err := s.loadRegistry(); err != nil {
		return nil, err
	}
	if err := s.loadTasks(); err != nil {
		return nil, err
	}
	s.echo = s.routes()
	for _, k := range cfg.APIKeys {
		s.log.Info("api key loaded", "key", Fingerprint(k))
	}
	return s, nil
}

// Handler is the orchestrator's HTTP API.
func (s *Server) Handler() http.Handler { return s.echo }

// Serve runs the daemon's loops and serves HTTP on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){s.dispatchLoop, s.monitorLoop, s.journalLoop, s.janitorLoop, s.queuedLoop, s.watchRouting} {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
	srv := &http.Server{Handler: s.echo, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	close(s.started)
	s.signal()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shut, c2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer c2()
	_ = srv.Shutdown(shut)
	cancel()
	wg.Wait()
	s.flushJournal()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// signal wakes the dispatcher.
func (s *Server) signal() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.httpError
	e.Use(correlation)
	e.GET("/healthz", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "ok"}) })
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})))

	v2 := e.Group("/v2")
	v2.POST("/tasks", s.handleSubmit, s.requireKey)
	v2.GET("/tasks", s.handleListTasks, s.requireKey)
	v2.GET("/tasks/:id", s.handleGetTask, s.requireKey)
	v2.GET("/tasks/:id/events", s.handleEvents, s.requireKey)
	v2.DELETE("/tasks/:id", s.handleCancel, s.requireKey)
	v2.POST("/workers/register", s.handleRegister, s.requireWorker)
	v2.POST("/workers/:id/heartbeat", s.handleHeartbeat, s.requireWorker)
	v2.GET("/workers", s.handleListWorkers, s.requireKey)
	v2.POST("/workers/:id/drain", s.handleDrain, s.requireKey)
	v2.DELETE("/workers/:id", s.handleDeleteWorker, s.requireKey)
	v2.GET("/pools", s.handleListPools, s.requireKey)
	v2.POST("/pools", s.handlePutPool, s.requireKey)
	v2.DELETE("/pools/:name", s.handleDeletePool, s.requireKey)
	v2.GET("/routing/script", s.handleGetScript, s.requireKey)
	v2.PUT("/routing/script", s.handlePutScript, s.requireKey)
	v2.DELETE("/routing/script", s.handleDeleteScript, s.requireKey)
	v2.GET("/routing/snapshot", s.handleSnapshot, s.requireKey)

	openai.Register(e.Group("/v1", openai.ShapeErrors, s.requireKey), openAIBackend{s}, s.log)
	return e
}

func writeError(c echo.Context, e *api.Error) error {
	if e.RetryAfterMs > 0 {
		h := c.Response().Header()
		h.Set("Retry-After", fmt.Sprint(max(1, (e.RetryAfterMs+999)/1000)))
		h.Set("X-Backoff-Ms", fmt.Sprint(e.RetryAfterMs))
	}
	return c.JSON(e.HTTPStatus(), api.ErrorBody{Error: e})
}

// httpError renders echo's own errors (404, 405, ...) in the API's shape.
func (s *Server) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	e := &api.Error{Code: api.CodeInternal, Message: "internal error"}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		e = api.ForStatus(he.Code, fmt.Sprint(he.Message))
	} else {
		s.log.Error("request failed", "path", c.Path(), "correlation_id", metaOf(c.Request().Context()).correlation, "err", err)
	}
	_ = writeError(c, e)
}

const headerCorrelation = "X-Correlation-Id"

// correlation echoes a client's X-Correlation-Id (printable, ≤128 bytes) or
// generates one, on every response.
func correlation(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(headerCorrelation)
		if id == "" || len(id) > 128 || !printable(id) {
			id = newID("c-")
		}
		c.Response().Header().Set(headerCorrelation, id)
		r := c.Request()
		c.SetRequest(r.WithContext(context.WithValue(r.Context(), metaKey{}, &reqMeta{correlation: id, header: r.Header})))
		return next(c)
	}
}

type metaKey struct{}

// reqMeta is what the middleware learned about a request.
type reqMeta struct {
	correlation string
	keyFP       string // fingerprint of the API key used
	header      http.Header
}

func metaOf(ctx context.Context) *reqMeta {
	if m, ok := ctx.Value(metaKey{}).(*reqMeta); ok {
		return m
	}
	return &reqMeta{}
}

// requireKey enforces the API keys, when any are configured.
func (s *Server) requireKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if len(s.keys) == 0 {
			return next(c)
		}
		if got := bearer(c); s.keyOK(got) {
			metaOf(c.Request().Context()).keyFP = Fingerprint(string(got))
			return next(c)
		}
		s.metrics.rejections.WithLabelValues("unauthorized").Inc()
		return writeError(c, &api.Error{Code: api.CodeUnauthorized, Message: "missing or wrong API key (Authorization: Bearer <key>)"})
	}
}

// requireWorker accepts the worker token or an API key; with neither
// configured the endpoint is open.
func (s *Server) requireWorker(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if len(s.keys) == 0 && s.cfg.WorkerToken == "" {
			return next(c)
		}
		got := bearer(c)
		if s.cfg.WorkerToken != "" && subtle.ConstantTimeCompare(got, []byte(s.cfg.WorkerToken)) == 1 {
			return next(c)
		}
		if len(s.keys) > 0 && s.keyOK(got) {
			return next(c)
		}
		s.metrics.rejections.WithLabelValues("unauthorized").Inc()
		return writeError(c, &api.Error{Code: api.CodeUnauthorized, Message: "missing or wrong worker token"})
	}
}

// keyOK compares against every key in constant time.
func (s *Server) keyOK(got []byte) bool {
	ok := 0
	for _, k := range s.keys {
		ok |= subtle.ConstantTimeCompare(got, k)
	}
	return ok == 1
}

func bearer(c echo.Context) []byte {
	v, _ := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
	return []byte(v)
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
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("orchestrator: bad listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("orchestrator: refusing to listen on %s without API keys: give --api-key-file (or LLORCH_API_KEYS), listen on 127.0.0.1, or pass --insecure-no-auth", addr)
}

// readBody reads a JSON body of at most api.MaxRequestBytes.
func readBody(c echo.Context) ([]byte, *api.Error) { return api.ReadBody(c.Response(), c.Request()) }

func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
