package workerd

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/llorch/llorch/backends"
	"github.com/llorch/llorch/core/api"
	"github.com/llorch/llorch/core/openai"
)

// An embedding worker (Config.Embedding, `llorch worker --embedding`) loads
// its model for embeddings: POST /v1/embeddings runs on a backends.Embedder
// instead of the generation engine, which it does not have. Generation
// requests (/execute, /v1/chat/completions, /v1/completions) get a 400 there,
// and /v1/embeddings gets one on a generation worker.

// embedSeqs is the most inputs one decode carries.
const embedSeqs = 64

// errEmbeddingOnly answers generation requests on an embedding worker.
func (s *Server) errEmbeddingOnly() *api.Error {
	return &api.Error{Code: api.CodeInvalidRequest, Message: fmt.Sprintf(
		"this worker serves embeddings of '%s' (started with --embedding): it does not generate text; use POST /v1/embeddings", s.cfg.ModelID),
		Fields: []api.FieldError{{Field: "model", Constraint: "generation", Message: "this worker only serves embeddings"}}}
}

// embedder runs embedding requests on one Embedder, one at a time; at most
// limit requests are admitted (running or waiting) at once.
type embedder struct {
	e     backends.Embedder
	info  backends.EmbedInfo
	run   chan struct{} // a token: the right to call e
	limit int

	mu       sync.Mutex
	admitted int
	draining bool
	idle     chan struct{} // closed when a drain finds nothing admitted
}

// loadEmbedder makes the Embedder of an embedding worker (instead of a
// generation context and engine).
func (s *Server) loadEmbedder(m backends.Model, info backends.Info, seqCtx int) error {
	em, ok := m.(backends.EmbedModel)
	if !ok {
		return fmt.Errorf("workerd: backend %s cannot compute embeddings", s.cfg.Backend)
	}
	e, err := em.NewEmbedder(backends.EmbedParams{Tokens: seqCtx, Seqs: embedSeqs, Threads: s.cfg.Threads,
		ThreadsBatch: s.cfg.ThreadsBatch, FlashAttn: s.cfg.FlashAttn})
	if err != nil {
		return fmt.Errorf("workerd: %w", err)
	}
	ei := e.Info()
	emb := &embedder{e: e, info: ei, run: make(chan struct{}, 1), limit: s.cfg.Slots}
	emb.run <- struct{}{}
	s.mu.Lock()
	s.model, s.info, s.slotCtx, s.emb = m, info, ei.MaxTokens, emb
	s.mu.Unlock()
	if ei.PoolingDefaulted {
		s.log.Info("embedding pooling: mean (the model names no pooling type)", "key", info.Arch+".pooling_type")
	} else {
		s.log.Info("embedding pooling from the model", "pooling", ei.Pooling)
	}
	s.log.Info("embedding worker", "size", ei.Size, "max_tokens", ei.MaxTokens, "inputs_per_decode", embedSeqs)
	return nil
}

// admit takes a place for a request, or says why not.
func (e *embedder) admit() *api.Error {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.draining:
		return &api.Error{Code: api.CodeDraining, Message: "worker is draining", Retriable: true}
	case e.admitted >= e.limit:
		return &api.Error{Code: api.CodeAllSlotsBusy, Message: fmt.Sprintf("all %d slots are busy", e.limit), Retriable: true, RetryAfterMs: 1000}
	}
	e.admitted++
	return nil
}

func (e *embedder) done() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.admitted--
	if e.draining && e.admitted == 0 && e.idle != nil {
		close(e.idle)
		e.idle = nil
	}
}

func (e *embedder) busy() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.admitted
}

// drain refuses new requests; the channel closes when none is left.
func (e *embedder) drain() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.draining = true
	ch := make(chan struct{})
	if e.admitted == 0 {
		close(ch)
	} else {
		e.idle = ch
	}
	return ch
}

// embed runs a request's inputs on the Embedder, in groups: the Embedder is
// taken for one group at a time (requests waiting for it take turns), and a
// client that leaves stops its request between two groups.
func (e *embedder) embed(ctx context.Context, inputs [][]backends.Token) ([][]float32, error) {
	out := make([][]float32, 0, len(inputs))
	for len(inputs) > 0 {
		n := min(len(inputs), embedGroup)
		vs, err := e.group(ctx, inputs[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, vs...)
		inputs = inputs[n:]
	}
	return out, nil
}

// group embeds one group when the Embedder is free (or ctx ends).
func (e *embedder) group(ctx context.Context, inputs [][]backends.Token) ([][]float32, error) {
	select {
	case <-e.run:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { e.run <- struct{}{} }()
	return e.e.Embed(inputs)
}

// embedGroup is how many inputs run between two checks of the client.
const embedGroup = 64

// normalize scales v to unit length (as OpenAI's embeddings are); a zero
// vector stays zero.
func normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 {
		return
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
}

// drainEmbedder refuses new embedding requests and waits for the admitted
// ones, up to the grace.
func (s *Server) drainEmbedder() {
	idle := s.emb.drain()
	s.log.Info("draining", "busy", s.emb.busy(), "grace", s.cfg.DrainGrace)
	select {
	case <-idle:
	case <-time.After(s.cfg.DrainGrace):
		s.log.Warn("drain grace expired with embedding requests running", "busy", s.emb.busy())
	}
}

// embedHealth adds an embedding worker's model and load to h.
func (s *Server) embedHealth(h *api.Health) {
	s.mu.Lock()
	emb, info := s.emb, s.info
	s.mu.Unlock()
	if emb == nil {
		return
	}
	h.Model.Arch, h.Model.Ctx, h.Model.CtxTrain = info.Arch, h.SlotCtx, info.CtxTrain
	h.Model.Params, h.Model.Size, h.Model.ChatTmpl, h.Model.Desc = info.Params, info.SizeBytes, info.HasChatTpl, info.Desc
	h.SlotsBusy = emb.busy()
}

// embedBackend serves POST /v1/embeddings (core/openai) on this worker.
type embedBackend struct{ s *Server }

var _ openai.EmbedBackend = embedBackend{}

// Embed tokenizes the inputs, checks them against the model, and embeds them
// all in as few decodes as fit (each input its own sequence).
func (b embedBackend) Embed(ctx context.Context, req *openai.EmbedRequest) (*openai.EmbedResult, error) {
	s := b.s
	res, apiErr := b.embed(ctx, req)
	switch {
	case apiErr == nil:
		s.metrics.requests.WithLabelValues("ok").Inc()
		return res, nil
	case apiErr.Code == api.CodeInvalidRequest || apiErr.Code == api.CodeContextOverflow || apiErr.Code == api.CodeModelNotFound:
		s.metrics.requests.WithLabelValues("invalid").Inc()
	default:
		s.metrics.requests.WithLabelValues(outcome(apiErr.Code)).Inc()
	}
	return nil, apiErr
}

func (b embedBackend) embed(ctx context.Context, req *openai.EmbedRequest) (*openai.EmbedResult, *api.Error) {
	s := b.s
	if !s.cfg.Embedding {
		return nil, &api.Error{Code: api.CodeInvalidRequest, Message: fmt.Sprintf(
			"this worker serves '%s' for text generation, not embeddings: start a worker with --embedding to serve POST /v1/embeddings", s.cfg.ModelID),
			Fields: []api.FieldError{{Field: "model", Constraint: "embedding", Message: "this worker does not serve embeddings (start it with --embedding)"}}}
	}
	if e := s.statusErr(); e != nil {
		return nil, e
	}
	if e := s.modelErr(req.Model); e != nil {
		return nil, e
	}
	s.mu.Lock()
	emb, model, vocab := s.emb, s.model, s.info.VocabSize
	s.mu.Unlock()
	ei := emb.info
	if req.Dimensions != 0 && req.Dimensions != ei.Size {
		return nil, &api.Error{Code: api.CodeInvalidRequest, Message: "invalid dimensions", Fields: []api.FieldError{{
			Field: "dimensions", Constraint: "model_size",
			Message: fmt.Sprintf("this model's embeddings have %d dimensions and are not shortened; send %d or leave dimensions out", ei.Size, ei.Size)}}}
	}
	inputs := make([][]backends.Token, len(req.Input))
	total := 0
	for i, in := range req.Input {
		toks := in.Tokens
		if toks == nil {
			var err error
			if toks, err = model.Tokenize(in.Text, true, false); err != nil {
				return nil, inputError(api.CodeInvalidRequest, "tokenize", "input[%d] cannot be tokenized: %v", i, err)
			}
		}
		for _, t := range toks {
			if int(t) >= vocab {
				return nil, inputError(api.CodeInvalidRequest, "token_id", "input[%d]: token %d is not in the vocabulary (%d tokens)", i, t, vocab)
			}
		}
		switch {
		case len(toks) == 0:
			return nil, inputError(api.CodeInvalidRequest, "1..max_tokens", "input[%d] has no tokens", i)
		case len(toks) > ei.MaxTokens:
			return nil, inputError(api.CodeContextOverflow, "1..max_tokens",
				"input[%d] has %d tokens; this worker embeds at most %d tokens per input (its --ctx)", i, len(toks), ei.MaxTokens)
		}
		inputs[i] = toks
		total += len(toks)
	}
	if e := emb.admit(); e != nil {
		return nil, e
	}
	defer emb.done()
	vs, err := emb.embed(ctx, inputs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, &api.Error{Code: api.CodeCancelled, Message: "request cancelled"}
		}
		s.log.Error("embedding failed", "inputs", len(inputs), "tokens", total, "err", err)
		return nil, &api.Error{Code: api.CodeDecodeFailed, Message: "embedding failed: " + err.Error()}
	}
	for _, v := range vs {
		normalize(v)
	}
	return &openai.EmbedResult{Model: s.cfg.ModelID, Vectors: vs, PromptTokens: total}, nil
}

func inputError(code, constraint, format string, args ...any) *api.Error {
	msg := fmt.Sprintf(format, args...)
	return &api.Error{Code: code, Message: msg, Fields: []api.FieldError{{Field: "input", Constraint: constraint, Message: msg}}}
}
