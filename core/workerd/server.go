package workerd

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/buildinfo"
	"github.com/llorch/llorch/core/openai"
	"github.com/llorch/llorch/core/sse"
	"github.com/llorch/llorch/core/textstream"
	"github.com/llorch/llorch/core/toolcall"
)

// Config configures a worker daemon.
type Config struct {
	// ModelPath is the GGUF file to load.
	ModelPath string
	// ModelID names the model in responses; default: the file name without .gguf.
	ModelID  string
	Backend  string
	WorkerID string
	// Slots is the number of parallel sequences.
	Slots int
	// Queue is how many requests may wait for a slot when every slot is busy,
	// first come first served (the client leaving, or a drain, takes one out).
	// 0 answers ALL_SLOTS_BUSY at once: what an orchestrator wants, as it
	// tracks slots and places work itself. A standalone worker serving
	// clients directly (as llama-server does) wants a queue.
	Queue int
	// Ctx is the context size of each slot, in tokens; 0 means 4096 capped at the
	// model's training context.
	Ctx          int
	Threads      int
	ThreadsBatch int
	// Batch is the most tokens one decode step carries (decode tokens of every
	// slot plus chunks of pending prompts).
	Batch     int
	FlashAttn string
	GPULayers int
	GPU       int
	// Token, when set, is required as a bearer token on /execute, /cancel and /shutdown.
	Token string
	// DrainGrace bounds how long a drain waits for running jobs.
	DrainGrace time.Duration
	// KeepAlive is the interval of SSE keep-alive comments on quiet streams.
	KeepAlive time.Duration
	// Orchestrator, when set, is the URL of an orchestrator to register with
	// once the model is loaded; the worker then heartbeats every
	// HeartbeatInterval (default 2s). Token is sent as the bearer token.
	Orchestrator      string
	HeartbeatInterval time.Duration
	// AdvertiseURL is how the orchestrator reaches this worker; default
	// http://<listen address>.
	AdvertiseURL string
	// Pool and Labels are reported at registration.
	Pool   string
	Labels map[string]string
	// Embedding loads the model for embeddings (POST /v1/embeddings, see
	// embed.go) instead of text generation.
	Embedding bool
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if c.ModelPath == "" {
		return errors.New("workerd: model path is required")
	}
	if c.ModelID == "" {
		c.ModelID = strings.TrimSuffix(filepath.Base(c.ModelPath), ".gguf")
	}
	if c.Slots == 0 {
		c.Slots = 4
	}
	if c.Slots < 1 || c.Slots > 256 {
		return fmt.Errorf("workerd: slots must be 1..256, got %d", c.Slots)
	}
	if c.Queue < 0 || c.Queue > 65536 {
		return fmt.Errorf("workerd: queue must be 0..65536, got %d", c.Queue)
	}
	if c.Queue > 0 && c.Orchestrator != "" {
		return errors.New("workerd: a queue is for a worker serving clients directly: an orchestrator tracks slots and queues work itself")
	}
	if c.Ctx < 0 || (c.Ctx > 0 && c.Ctx < 64) {
		return fmt.Errorf("workerd: ctx must be at least 64, got %d", c.Ctx)
	}
	if c.Batch == 0 {
		c.Batch = 512
	}
	if c.Batch < c.Slots {
		return fmt.Errorf("workerd: batch (%d) must be at least the slot count (%d): every decoding slot adds a token per step", c.Batch, c.Slots)
	}
	switch c.FlashAttn {
	case "":
		c.FlashAttn = "auto"
	case "auto", "on", "off":
	default:
		return fmt.Errorf("workerd: flash-attn must be auto, on or off, got %q", c.FlashAttn)
	}
	if c.Backend == "" {
		c.Backend = "cpu"
	}
	if c.WorkerID == "" {
		c.WorkerID = "w-" + randomHex(4)
	}
	if c.DrainGrace == 0 {
		c.DrainGrace = 30 * time.Second
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 15 * time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 2 * time.Second
	}
	return nil
}

// LoadOptions are passed to a Loader.
type LoadOptions struct {
	GPULayers int
	GPU       int
	Progress  func(float32) bool
}

// Loader loads a model file; the worker mode passes llamacpp's.
type Loader func(path string, o LoadOptions) (backends.Model, error)

// Deps are the worker's collaborators.
type Deps struct {
	Log  *slog.Logger
	Load Loader
	// Digest computes the model file's digest; nil skips it.
	Digest func(path string) (string, error)
}

// Server is the worker daemon.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	metrics *metrics
	echo    *echo.Echo
	start   time.Time

	status   atomic.Value // string
	progress atomic.Uint32
	loadErr  atomic.Value // string
	digest   atomic.Value // string

	mu      sync.Mutex // guards model, info, eng
	model   backends.Model
	info    backends.Info
	slotCtx int
	eng     *engine
	emb     *embedder // an embedding worker's, instead of eng

	shutdownOnce sync.Once
	shutdownCh   chan struct{}
}

// New builds a worker daemon; Serve loads the model and serves.
func New(cfg Config, deps Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if deps.Load == nil {
		return nil, errors.New("workerd: no model loader")
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, deps: deps, log: deps.Log.With("component", "worker"), metrics: newMetrics(),
		start: time.Now(), shutdownCh: make(chan struct{})}
	s.status.Store(api.StatusLoading)
	s.loadErr.Store("")
	s.digest.Store("")
	s.metrics.slotsTotal.Set(float64(cfg.Slots))
	s.echo = s.routes()
	return s, nil
}

// Handler returns the HTTP handler (usable before the model is loaded).
func (s *Server) Handler() http.Handler { return s.echo }

// Shutdown starts a drain, as POST /shutdown does.
func (s *Server) Shutdown() { s.shutdownOnce.Do(func() { close(s.shutdownCh) }) }

// Serve serves HTTP on ln at once, loads the model, then runs until ctx is done
// or Shutdown is called, and drains: new work gets 503, running jobs get
// DrainGrace to finish. It returns nil after a clean drain, or the load error.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.echo, ReadHeaderTimeout: 10 * time.Second}
	httpErr := make(chan error, 1)
	go func() { httpErr <- hs.Serve(ln) }()
	defer hs.Close()

	loadCtx, stopLoad := context.WithCancel(ctx)
	go func() { // a shutdown during the load aborts it
		select {
		case <-s.shutdownCh:
			stopLoad()
		case <-loadCtx.Done():
		}
	}()
	err := s.load(loadCtx)
	stopLoad()
	if err != nil {
		s.status.Store(api.StatusFailed)
		s.loadErr.Store(err.Error())
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-s.shutdownCh:
			return nil
		default:
		}
		return err
	}
	defer s.close()

	engCtx, stopEngine := context.WithCancel(context.Background())
	engDone := make(chan struct{})
	go func() {
		defer close(engDone)
		if s.eng != nil {
			s.eng.run(engCtx)
		}
	}()
	defer func() { stopEngine(); <-engDone }()

	s.status.Store(api.StatusReady)
	s.log.Info("worker ready", "model", s.cfg.ModelID, "slots", s.cfg.Slots, "slot_ctx", s.slotCtx, "addr", ln.Addr().String())
	if s.deps.Digest != nil {
		go func() {
			if d, err := s.deps.Digest(s.cfg.ModelPath); err == nil {
				s.digest.Store(d)
			}
		}()
	}

	if s.cfg.Orchestrator != "" {
		regCtx, stopReg := context.WithCancel(context.Background())
		regDone := make(chan struct{})
		go func() { defer close(regDone); s.registerLoop(regCtx, ln.Addr()) }()
		defer func() { stopReg(); <-regDone }()
	}

	select {
	case <-ctx.Done():
	case <-s.shutdownCh:
	case err := <-httpErr:
		return fmt.Errorf("workerd: http: %w", err)
	}
	s.drain()
	shCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(shCtx)
	return nil
}

func (s *Server) drain() {
	s.status.Store(api.StatusDraining)
	if s.emb != nil {
		s.drainEmbedder()
		return
	}
	idle := s.eng.drain()
	s.log.Info("draining", "busy", s.eng.busy(), "grace", s.cfg.DrainGrace)
	select {
	case <-idle:
		return
	case <-time.After(s.cfg.DrainGrace):
	}
	s.log.Warn("drain grace expired; cancelling running jobs", "busy", s.eng.busy())
	s.eng.cancelAll()
	select {
	case <-idle:
	case <-time.After(5 * time.Second):
	}
}

func (s *Server) load(ctx context.Context) error {
	t0 := time.Now()
	m, err := s.deps.Load(s.cfg.ModelPath, LoadOptions{GPULayers: s.cfg.GPULayers, GPU: s.cfg.GPU,
		Progress: func(p float32) bool {
			s.progress.Store(uint32(p * 1000))
			return ctx.Err() == nil
		}})
	if err != nil {
		return fmt.Errorf("workerd: load %s: %w", s.cfg.ModelPath, err)
	}
	info := m.Info()
	slotCtx := s.cfg.Ctx
	if slotCtx == 0 {
		slotCtx = 4096
		if info.CtxTrain > 0 {
			slotCtx = min(slotCtx, info.CtxTrain)
		}
	}
	if s.cfg.Embedding {
		if err := s.loadEmbedder(m, info, slotCtx); err != nil {
			m.Close()
			return err
		}
		s.progress.Store(1000)
		return nil
	}
	bctx, err := m.NewContext(backends.ContextParams{SeqCtx: slotCtx, Seqs: s.cfg.Slots, Batch: s.cfg.Batch,
		Threads: s.cfg.Threads, ThreadsBatch: s.cfg.ThreadsBatch, FlashAttn: s.cfg.FlashAttn})
	if err != nil {
		m.Close()
		return fmt.Errorf("workerd: %w", err)
	}
	s.mu.Lock()
	s.model, s.info, s.slotCtx = m, info, bctx.SeqCtx()
	s.eng = newEngine(engineConfig{ModelID: s.cfg.ModelID, WorkerID: s.cfg.WorkerID, Batch: s.cfg.Batch, Queue: s.cfg.Queue}, m, bctx, s.cfg.Slots, s.log, s.metrics)
	s.mu.Unlock()
	s.progress.Store(1000)
	s.log.Info("model loaded", "path", s.cfg.ModelPath, "arch", info.Arch, "desc", info.Desc,
		"seconds", time.Since(t0).Seconds())
	return nil
}

func (s *Server) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.eng != nil {
		s.eng.ctx.Close()
	}
	if s.emb != nil {
		s.emb.e.Close()
	}
	if s.model != nil {
		s.model.Close()
	}
}

func (s *Server) ready() (*engine, *api.Error) {
	if s.cfg.Embedding {
		return nil, s.errEmbeddingOnly()
	}
	if e := s.statusErr(); e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eng, nil
}

// statusErr is the error of a request that finds the worker not ready, or nil.
func (s *Server) statusErr() *api.Error {
	switch s.status.Load().(string) {
	case api.StatusReady:
		return nil
	case api.StatusLoading:
		return &api.Error{Code: api.CodeLoading, Message: "model is loading", Retriable: true, RetryAfterMs: 1000}
	case api.StatusDraining:
		return &api.Error{Code: api.CodeDraining, Message: "worker is draining", Retriable: true}
	default:
		return &api.Error{Code: api.CodeInternal, Message: "model failed to load: " + s.loadErr.Load().(string)}
	}
}

// modelErr is the error of an OpenAI request for another model than this
// worker's, or nil.
func (s *Server) modelErr(model string) *api.Error {
	if model == s.cfg.ModelID {
		return nil
	}
	return &api.Error{Code: api.CodeModelNotFound,
		Message: fmt.Sprintf("The model '%s' does not exist; this worker serves '%s'.", model, s.cfg.ModelID)}
}

// Health reports the worker's state; it never waits for inference.
func (s *Server) Health() api.Health {
	h := api.Health{
		Status:     s.status.Load().(string),
		WorkerID:   s.cfg.WorkerID,
		Version:    buildinfo.Version,
		Backend:    s.cfg.Backend,
		SlotsTotal: s.cfg.Slots,
		UptimeS:    time.Since(s.start).Seconds(),
		RSSBytes:   selfRSS(),
		Progress:   float64(s.progress.Load()) / 1000,
		Error:      s.loadErr.Load().(string),
		Model:      api.ModelInfo{ID: s.cfg.ModelID, Path: s.cfg.ModelPath, Digest: s.digest.Load().(string), Embedding: s.cfg.Embedding},
	}
	s.mu.Lock()
	eng, info, model := s.eng, s.info, s.model
	h.SlotCtx = s.slotCtx
	s.mu.Unlock()
	if d, ok := model.(backends.DeviceReporter); ok {
		h.Device, h.VRAMBytes = d.Device()
	}
	if eng != nil {
		h.Model.Arch, h.Model.Ctx, h.Model.CtxTrain = info.Arch, h.SlotCtx, info.CtxTrain
		h.Model.Params, h.Model.Size, h.Model.ChatTmpl, h.Model.Desc = info.Params, info.SizeBytes, info.HasChatTpl, info.Desc
		h.Slots = eng.slotStates()
		for _, sl := range h.Slots {
			if sl.State != slotIdle {
				h.SlotsBusy++
			}
		}
		h.TokensPerSecond = eng.rate.perSecond(time.Now())
	}
	s.embedHealth(&h)
	return h
}

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.httpError
	e.GET("/health", func(c echo.Context) error { return c.JSON(http.StatusOK, s.Health()) })
	e.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})))
	e.POST("/execute", s.handleExecute, s.auth)
	e.POST("/cancel", s.handleCancel, s.auth)
	e.POST("/shutdown", s.handleShutdown, s.auth)
	e.GET("/v1/sessions/:id", s.handleGetSession, s.auth)
	e.DELETE("/v1/sessions/:id", s.handleDropSession, s.auth)
	v1 := e.Group("/v1", openai.ShapeErrors, s.auth)
	openai.Register(v1, s.openAI(), s.log)
	openai.RegisterEmbeddings(v1, embedBackend{s}, s.log)
	return e
}

func writeError(c echo.Context, e *api.Error) error {
	if e.RetryAfterMs > 0 {
		c.Response().Header().Set("Retry-After", fmt.Sprint(max(1, (e.RetryAfterMs+999)/1000)))
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
		s.log.Error("request failed", "path", c.Path(), "err", err)
	}
	_ = writeError(c, e)
}

func (s *Server) auth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.cfg.Token == "" {
			return next(c)
		}
		got, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.Token)) != 1 {
			return writeError(c, &api.Error{Code: api.CodeUnauthorized, Message: "missing or wrong bearer token"})
		}
		return next(c)
	}
}

// readBody reads a JSON body of at most api.MaxRequestBytes.
func readBody(c echo.Context) ([]byte, *api.Error) { return api.ReadBody(c.Response(), c.Request()) }

// DecodeExecute parses and validates an /execute body.
func DecodeExecute(body []byte) (*api.ExecuteRequest, *api.Error) {
	var req api.ExecuteRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &api.Error{Code: api.CodeInvalidRequest, Message: "body is not a valid execute request: " + err.Error()}
	}
	if e := req.Validate(); e != nil {
		return nil, e
	}
	return &req, nil
}

func (s *Server) handleExecute(c echo.Context) error {
	eng, apiErr := s.ready()
	if apiErr != nil {
		s.metrics.requests.WithLabelValues(outcome(apiErr.Code)).Inc()
		return writeError(c, apiErr)
	}
	body, apiErr := readBody(c)
	if apiErr != nil {
		s.metrics.requests.WithLabelValues("invalid").Inc()
		return writeError(c, apiErr)
	}
	req, apiErr := DecodeExecute(body)
	if apiErr != nil {
		s.metrics.requests.WithLabelValues("invalid").Inc()
		return writeError(c, apiErr)
	}
	j, apiErr := s.prepare(req)
	if apiErr != nil {
		s.metrics.requests.WithLabelValues("invalid").Inc()
		return writeError(c, apiErr)
	}
	if err := eng.reserve(c.Request().Context(), j); err != nil {
		switch {
		case errors.Is(err, errBusy):
			s.metrics.requests.WithLabelValues("busy").Inc()
			return writeError(c, &api.Error{Code: api.CodeAllSlotsBusy, Message: fmt.Sprintf("all %d slots are busy", s.cfg.Slots), Retriable: true, RetryAfterMs: 1000})
		case errors.Is(err, errDraining):
			s.metrics.requests.WithLabelValues("draining").Inc()
			return writeError(c, &api.Error{Code: api.CodeDraining, Message: "worker is draining", Retriable: true})
		default:
			return writeError(c, &api.Error{Code: api.CodeConflict, Message: err.Error()})
		}
	}
	s.stream(c, j)
	return nil
}

// prepare builds the prompt tokens and checks them against the slot context.
func (s *Server) prepare(req *api.ExecuteRequest) (*job, *api.Error) {
	text := req.Prompt
	var format toolcall.Format
	if len(req.Messages) > 0 {
		var apiErr *api.Error
		if text, format, apiErr = s.chatPrompt(req); apiErr != nil {
			return nil, apiErr
		}
	}
	gbnf, apiErr := s.grammarOf(req, format)
	if apiErr != nil {
		return nil, apiErr
	}
	prompt, err := s.model.Tokenize(text, true, true)
	if err != nil {
		return nil, &api.Error{Code: api.CodeInvalidRequest, Message: err.Error()}
	}
	if len(prompt) == 0 {
		return nil, &api.Error{Code: api.CodeInvalidRequest, Message: "invalid request",
			Fields: []api.FieldError{{Field: "prompt", Constraint: "1..ctx_tokens", Message: "prompt has no tokens"}}}
	}
	seed := mrand.Uint32()
	p := req.Resolve(seed)
	p.Grammar = gbnf
	resume := req.ResumeTokens
	for i, t := range resume {
		if int(t) >= s.info.VocabSize {
			return nil, resumeError(api.CodeInvalidRequest, "token_id", "resume_tokens[%d] = %d is not in the vocabulary (%d tokens)", i, t, s.info.VocabSize)
		}
	}
	if len(resume) > 0 && len(prompt)+len(resume) >= s.slotCtx {
		return nil, resumeError(api.CodeContextOverflow, "prompt_tokens+resume_tokens<ctx",
			"prompt (%d tokens) + resume_tokens (%d) leave no room in the slot context of %d tokens", len(prompt), len(resume), s.slotCtx)
	}
	room := s.slotCtx - len(prompt)
	if req.MaxTokens == nil {
		p.MaxTokens = min(p.MaxTokens, room)
	}
	if room < 1 || p.MaxTokens > room {
		return nil, &api.Error{Code: api.CodeContextOverflow, Message: fmt.Sprintf(
			"prompt (%d tokens) + max_tokens (%d) exceeds the slot context of %d tokens", len(prompt), p.MaxTokens, s.slotCtx),
			Fields: []api.FieldError{{Field: "max_tokens", Constraint: "prompt_tokens+max_tokens<=ctx",
				Message: fmt.Sprintf("at most %d for this prompt", max(room, 0))}}}
	}
	if len(resume) >= p.MaxTokens {
		return nil, resumeError(api.CodeInvalidRequest, "<max_tokens",
			"%d resume_tokens leave nothing to generate: max_tokens (%d) counts them", len(resume), p.MaxTokens)
	}
	stream, ended, apiErr := resumeStream(s.model, p.Stop, resume)
	if apiErr != nil {
		return nil, apiErr
	}
	id := req.JobID
	if id == "" {
		id = "job-" + randomHex(8)
	}
	j := newJob(id, s.cfg.ModelID, prompt, resume, p, stream, ended)
	j.toolFormat = string(format)
	j.session = req.SessionID
	return j, nil
}

// resumeStream returns a text streamer for stops that has been fed the text
// of the resumed tokens, as the interrupted run fed it, so that held-back
// bytes and partial stop matches carry over. When those tokens already ended
// the generation (an end-of-generation token, or text completing a stop
// sequence) ended says how; that may only happen at the last of them.
func resumeStream(m backends.Model, stops []string, resume []backends.Token) (*textstream.Streamer, *api.End, *api.Error) {
	st := textstream.New(stops)
	var ended *api.End
	for i, t := range resume {
		if ended != nil {
			return nil, nil, resumeError(api.CodeInvalidRequest, "ends_last",
				"the generation ended at resume_tokens[%d] (%s); no token can follow it", i-1, ended.StopReason)
		}
		if m.IsEOG(t) {
			ended = &api.End{StopReason: api.StopEOS}
			continue
		}
		if _, stopped, matched := st.Push(m.Piece(t)); stopped {
			ended = &api.End{StopReason: api.StopSequence, StopSequenceMatched: matched}
		}
	}
	return st, ended, nil
}

func resumeError(code, constraint, format string, args ...any) *api.Error {
	msg := fmt.Sprintf(format, args...)
	return &api.Error{Code: code, Message: msg,
		Fields: []api.FieldError{{Field: "resume_tokens", Constraint: constraint, Message: msg}}}
}

// stream writes the job's events as SSE until its terminal event, a cancel, or
// the client leaving (which cancels the job).
func (s *Server) stream(c echo.Context, j *job) {
	h := c.Response().Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.Response().WriteHeader(http.StatusOK)
	c.Response().Flush()
	w := sse.NewWriter(c.Response())
	log := s.log.With("job_id", j.id)
	keep := time.NewTicker(s.cfg.KeepAlive)
	defer keep.Stop()
	var buf []event
	write := func() (done bool) {
		var last bool
		buf, last = j.box.take(buf)
		for _, ev := range buf {
			if err := w.JSON(ev.name, "", ev.data); err != nil {
				log.Debug("client gone", "err", err)
				j.cancel()
				return true
			}
		}
		return last
	}
	for {
		select {
		case <-j.box.notify:
			if write() {
				return
			}
		case <-j.cancelCh:
			if write() {
				return
			}
			_ = w.JSON(api.EventError, "", &api.Error{Code: api.CodeCancelled, Message: "job cancelled"})
			return
		case <-c.Request().Context().Done():
			j.cancel()
			return
		case <-keep.C:
			if err := w.Comment("ping"); err != nil {
				j.cancel()
				return
			}
		}
	}
}

func (s *Server) handleCancel(c echo.Context) error {
	eng, apiErr := s.ready()
	if apiErr != nil && apiErr.Code != api.CodeDraining {
		return writeError(c, apiErr)
	}
	if eng == nil {
		s.mu.Lock()
		eng = s.eng
		s.mu.Unlock()
	}
	body, apiErr := readBody(c)
	if apiErr != nil {
		return writeError(c, apiErr)
	}
	var req api.CancelRequest
	if err := json.Unmarshal(body, &req); err != nil || req.JobID == "" {
		return writeError(c, &api.Error{Code: api.CodeInvalidRequest, Message: "body must be {\"job_id\": \"...\"}",
			Fields: []api.FieldError{{Field: "job_id", Constraint: "required", Message: "job_id is required"}}})
	}
	j := eng.lookup(req.JobID)
	if j != nil {
		j.cancel()
		s.log.Info("job cancelled", "job_id", req.JobID)
	}
	return c.JSON(http.StatusAccepted, api.CancelResponse{JobID: req.JobID, Found: j != nil})
}

func (s *Server) handleShutdown(c echo.Context) error {
	s.log.Info("shutdown requested over HTTP")
	s.Shutdown()
	return c.JSON(http.StatusAccepted, map[string]string{"status": api.StatusDraining})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
