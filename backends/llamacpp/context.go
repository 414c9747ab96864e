package llamacpp

/*
#include <stdlib.h>
#include "helpers.h"
#include "sample.h"
#include "ggml-cpu.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/llorch/llorch/backends"
)

// threadPoll is how long ggml's threads spin for the next decode before they
// sleep, on llama.cpp's scale of 0 (no spinning) to 100; 50 is llama.cpp's
// default. Idle stops the spinning at once.
const threadPoll = 50

// Context is a llama.cpp context with Seqs sequences.
type Context struct {
	model  *Model
	o      *owner
	ctx    *C.struct_llama_context
	batch  C.struct_llama_batch
	cap    int
	seqCtx int
	pool   *C.struct_ggml_threadpool
	logits []int8
}

var (
	_ backends.Context   = (*Context)(nil)
	_ backends.SeqCopier = (*Context)(nil)
)

// NewContext implements backends.Model.
func (m *Model) NewContext(p backends.ContextParams) (backends.Context, error) {
	return m.newContext(p)
}

func (m *Model) newContext(p backends.ContextParams) (*Context, error) {
	if p.Seqs < 1 || p.SeqCtx < 8 || p.Batch < 1 {
		return nil, fmt.Errorf("%w: bad parameters %+v", ErrContext, p)
	}
	if p.Threads <= 0 {
		p.Threads = runtime.NumCPU()
	}
	if p.ThreadsBatch <= 0 {
		p.ThreadsBatch = p.Threads
	}
	flash := -1 // auto
	switch p.FlashAttn {
	case "on":
		flash = 1
	case "off":
		flash = 0
	}
	c := &Context{model: m, o: newOwner(), cap: p.Batch}
	var err error
	c.o.do(func() {
		c.ctx = C.llorch_new_context(m.m, C.uint32_t(p.SeqCtx*p.Seqs), C.uint32_t(p.Batch), C.uint32_t(p.Seqs),
			C.int(p.Threads), C.int(p.ThreadsBatch), C.int(flash))
		if c.ctx == nil {
			err = fmt.Errorf("%w: llama_init_from_model failed (ctx %d x %d seqs)", ErrContext, p.SeqCtx, p.Seqs)
			return
		}
		c.batch = C.llama_batch_init(C.int32_t(p.Batch), 0, 1)
		// Without a threadpool of its own, ggml starts and joins its
		// threads for every decode: on a small model that costs more
		// than the decode.
		if n := max(p.Threads, p.ThreadsBatch); n > 1 {
			c.pool = C.llorch_attach_threadpool(c.ctx, C.int(n), threadPoll)
		}
		c.seqCtx = int(C.llama_n_ctx_seq(c.ctx))
	})
	if err != nil {
		c.o.stop()
		return nil, err
	}
	return c, nil
}

// SeqCtx implements backends.Context.
func (c *Context) SeqCtx() int { return c.seqCtx }

// Decode implements backends.Context.
func (c *Context) Decode(b *backends.Batch) error {
	n := b.Len()
	if n == 0 {
		return nil
	}
	if n > c.cap {
		return fmt.Errorf("%w: batch of %d exceeds capacity %d", ErrDecode, n, c.cap)
	}
	c.logits = c.logits[:0]
	for _, l := range b.Logits {
		var v int8
		if l {
			v = 1
		}
		c.logits = append(c.logits, v)
	}
	// On the thread (inside Own) without a closure: a decode loop's step
	// allocates nothing here.
	var rc C.int
	if c.o.here() {
		rc = c.decode(b, n)
	} else {
		c.o.do(func() { rc = c.decode(b, n) })
	}
	switch rc {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%w: no KV cache slot for the batch (context full)", ErrDecode)
	default:
		return fmt.Errorf("%w: llama_decode returned %d", ErrDecode, int(rc))
	}
}

func (c *Context) decode(b *backends.Batch, n int) C.int {
	return C.llorch_decode(c.ctx, &c.batch, C.int(n),
		(*C.int32_t)(unsafe.Pointer(&b.Tokens[0])), (*C.int32_t)(unsafe.Pointer(&b.Pos[0])),
		(*C.int32_t)(unsafe.Pointer(&b.Seq[0])), (*C.int8_t)(unsafe.Pointer(&c.logits[0])))
}

// Sampler is a llama.cpp sampler chain. pen is the index of its penalties
// sampler in the chain (-1 when it has none), which alone sees prompt tokens.
type Sampler struct {
	c   *Context
	s   *C.struct_llama_sampler
	pen C.int32_t
	// gram is the index of the grammar sampler (followed by the UTF-8
	// one), -1 when there is none.
	gram C.int32_t
	// buffers for logprobs
	topIDs []C.int32_t
	topLP  []C.float
	out    *sampleOut
}

// sampleOut is what a sampling step writes besides the token: one per
// Sampler, so that a step allocates nothing.
type sampleOut struct {
	t    C.int32_t
	nTop C.int32_t
	lp   C.float
	err  [errBufLen]C.char
}

// errBufLen sizes the buffers C helpers write an error message into.
const errBufLen = 512

// NewSampler implements backends.Context. The chain follows llama.cpp's default
// order: logit bias, penalties, grammar, top-k, top-p, min-p, temperature,
// then a seeded distribution (or greedy at temperature 0).
func (c *Context) NewSampler(p backends.SamplerParams) (backends.Sampler, error) {
	s := &Sampler{c: c, pen: -1, gram: -1, out: new(sampleOut)}
	var err error
	c.o.do(func() {
		chain := C.llama_sampler_chain_init(C.llama_sampler_chain_params{no_perf: true})
		if len(p.LogitBias) > 0 || p.IgnoreEOS {
			lb := make([]C.llama_logit_bias, 0, len(p.LogitBias))
			for t, b := range p.LogitBias {
				if int(t) < c.model.info.VocabSize && !(p.IgnoreEOS && c.model.eog[t]) {
					lb = append(lb, C.llama_logit_bias{token: C.llama_token(t), bias: C.float(b)})
				}
			}
			if p.IgnoreEOS {
				for t, eog := range c.model.eog {
					if eog {
						lb = append(lb, C.llama_logit_bias{token: C.llama_token(t), bias: C.float(math.Inf(-1))})
					}
				}
			}
			if len(lb) > 0 {
				C.llama_sampler_chain_add(chain, C.llama_sampler_init_logit_bias(C.int32_t(c.model.info.VocabSize), C.int32_t(len(lb)), &lb[0]))
			}
		}
		repeat := p.RepetitionPenalty
		if repeat == 0 {
			repeat = 1
		}
		if repeat != 1 || p.FrequencyPenalty != 0 || p.PresencePenalty != 0 {
			lastN := p.PenaltyLastN
			if lastN == 0 {
				lastN = 64
			}
			s.pen = C.llama_sampler_chain_n(chain)
			C.llama_sampler_chain_add(chain, C.llama_sampler_init_penalties(C.int32_t(lastN), C.float(repeat),
				C.float(p.FrequencyPenalty), C.float(p.PresencePenalty)))
		}
		if p.Grammar != "" {
			g, gerr := grammarSampler(c.model.vocab, p.Grammar)
			if gerr != nil {
				C.llama_sampler_free(chain)
				err = gerr
				return
			}
			s.gram = C.llama_sampler_chain_n(chain)
			C.llama_sampler_chain_add(chain, g)
			C.llama_sampler_chain_add(chain, C.llorch_utf8_sampler(c.model.utf8Table()))
		}
		if p.Temperature <= 0 {
			C.llama_sampler_chain_add(chain, C.llama_sampler_init_greedy())
		} else {
			if p.TopK > 0 {
				C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_k(C.int32_t(p.TopK)))
			}
			if p.TopP > 0 && p.TopP < 1 {
				C.llama_sampler_chain_add(chain, C.llama_sampler_init_top_p(C.float(p.TopP), 1))
			}
			if p.MinP > 0 {
				C.llama_sampler_chain_add(chain, C.llama_sampler_init_min_p(C.float(p.MinP), 1))
			}
			C.llama_sampler_chain_add(chain, C.llama_sampler_init_temp(C.float(p.Temperature)))
			C.llama_sampler_chain_add(chain, C.llama_sampler_init_dist(C.uint32_t(p.Seed)))
		}
		s.s = chain
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// grammarMu serializes grammar parsing, so that the error llama.cpp logs
// for a grammar it refuses is the one reported.
var (
	grammarMu      sync.Mutex
	grammarCapture atomic.Pointer[capture]
)

// capture collects llama.cpp's error lines while a grammar is parsed.
type capture struct {
	mu    sync.Mutex
	lines []string
}

func (c *capture) add(line string) {
	c.mu.Lock()
	c.lines = append(c.lines, line)
	c.mu.Unlock()
}

// grammarSampler builds a grammar sampler, or an error wrapping
// backends.ErrGrammar with llama.cpp's reason. vocab may be nil (a parse check).
func grammarSampler(vocab *C.struct_llama_vocab, gbnf string) (*C.struct_llama_sampler, error) {
	cg := C.CString(gbnf)
	defer C.free(unsafe.Pointer(cg))
	var errBuf [errBufLen]C.char
	grammarMu.Lock()
	cp := &capture{}
	grammarCapture.Store(cp)
	g := C.llorch_grammar(vocab, cg, &errBuf[0], errBufLen)
	grammarCapture.Store(nil)
	grammarMu.Unlock()
	if g != nil {
		return g, nil
	}
	msg := C.GoString(&errBuf[0])
	cp.mu.Lock()
	if len(cp.lines) > 0 {
		msg = strings.Join(cp.lines, "; ")
	}
	cp.mu.Unlock()
	return nil, fmt.Errorf("%w: %s", backends.ErrGrammar, msg)
}

// CheckGrammar implements backends.GrammarChecker.
func (m *Model) CheckGrammar(gbnf string) error {
	g, err := grammarSampler(m.vocab, gbnf)
	if err != nil {
		return err
	}
	C.llama_sampler_free(g)
	return nil
}

// ParseGrammar reports whether llama.cpp's grammar parser accepts gbnf (no
// token references: there is no vocabulary).
func ParseGrammar(gbnf string) error {
	backendInit()
	g, err := grammarSampler(nil, gbnf)
	if err != nil {
		return err
	}
	C.llama_sampler_free(g)
	return nil
}

// AcceptPrompt implements backends.Sampler: only the penalties see prompt
// tokens (the grammar constrains the output alone).
func (s *Sampler) AcceptPrompt(tokens []backends.Token) {
	if len(tokens) == 0 || s.pen < 0 {
		return
	}
	s.c.o.do(func() {
		C.llorch_accept(C.llama_sampler_chain_get(s.s, s.pen), (*C.int32_t)(unsafe.Pointer(&tokens[0])), C.int(len(tokens)))
	})
}

// Accept implements backends.Sampler.
func (s *Sampler) Accept(tokens []backends.Token) error {
	if len(tokens) == 0 {
		return nil
	}
	var rc C.int
	var errBuf [errBufLen]C.char
	s.c.o.do(func() {
		rc = C.llorch_accept_checked(s.s, (*C.int32_t)(unsafe.Pointer(&tokens[0])), C.int(len(tokens)), &errBuf[0], errBufLen)
	})
	if rc != 0 {
		return fmt.Errorf("%w: %s", backends.ErrGrammar, C.GoString(&errBuf[0]))
	}
	return nil
}

// Close implements backends.Sampler.
func (s *Sampler) Close() {
	if s.s == nil {
		return
	}
	s.c.o.do(func() { C.llama_sampler_free(s.s) })
	s.s = nil
}

// ErrSample is the error of a sampling step that found no token.
var ErrSample = errors.New("llamacpp: sampling failed")

// Sample implements backends.Context.
func (c *Context) Sample(bs backends.Sampler, i int, probs *backends.Probs) (backends.Token, error) {
	s := bs.(*Sampler)
	o := s.out
	top := 0
	var (
		lpp *C.float
		ids *C.int32_t
		lps *C.float
	)
	if probs != nil {
		top = min(max(probs.Top, 0), 64)
		if len(s.topIDs) < top {
			s.topIDs, s.topLP = make([]C.int32_t, top), make([]C.float, top)
		}
		lpp = &o.lp
		if top > 0 {
			ids, lps = &s.topIDs[0], &s.topLP[0]
		}
	}
	if c.o.here() {
		s.sample(i, top, ids, lps, lpp)
	} else {
		c.o.do(func() { s.sample(i, top, ids, lps, lpp) })
	}
	if o.t < 0 {
		return -1, fmt.Errorf("%w: %s", ErrSample, C.GoString(&o.err[0]))
	}
	if probs != nil {
		probs.Logprob = float64(o.lp)
		probs.Alts = probs.Alts[:0]
		for k := range int(o.nTop) {
			probs.Alts = append(probs.Alts, backends.Alt{ID: backends.Token(s.topIDs[k]), Logprob: float64(s.topLP[k])})
		}
	}
	return backends.Token(o.t), nil
}

// sample runs one sampling step on the context's thread into s.out.
func (s *Sampler) sample(i, top int, ids *C.int32_t, lps, lpp *C.float) {
	o := s.out
	o.t = C.llorch_sample(s.s, s.c.ctx, C.int32_t(i), C.int32_t(s.c.model.info.VocabSize), C.int32_t(top),
		ids, lps, &o.nTop, lpp, s.gram, 2, &o.err[0], errBufLen)
}

// TrimSeq implements backends.Context.
func (c *Context) TrimSeq(seq int, from int) error {
	var ok C.bool
	c.o.do(func() {
		ok = C.llama_memory_seq_rm(C.llama_get_memory(c.ctx), C.llama_seq_id(seq), C.llama_pos(from), -1)
	})
	if !ok {
		return fmt.Errorf("llamacpp: cannot trim sequence %d from %d", seq, from)
	}
	return nil
}

// CopySeq replaces sequence dst's KV cache with a copy of src's (the whole
// sequence: llama.cpp copies across KV streams only in full; trim afterwards).
// It implements the optional backends.SeqCopier.
func (c *Context) CopySeq(src, dst int) error {
	c.o.do(func() {
		mem := C.llama_get_memory(c.ctx)
		C.llama_memory_seq_rm(mem, C.llama_seq_id(dst), -1, -1)
		C.llama_memory_seq_cp(mem, C.llama_seq_id(src), C.llama_seq_id(dst), -1, -1)
	})
	return nil
}

// Idle lets ggml's threads sleep at once instead of spinning for a next
// decode: the caller has nothing to decode for now. The next Decode wakes
// them.
func (c *Context) Idle() {
	if c.pool != nil {
		c.o.do(func() { C.ggml_threadpool_pause(c.pool) })
	}
}

// Own runs f on the context's OS thread: the calls f makes to the context
// and its samplers run there at once, instead of each being handed to the
// thread and back (two thread wake-ups per call, most of a tiny model's
// per-token cost). A decode loop runs inside Own. Calls from other goroutines
// wait until f returns.
func (c *Context) Own(f func()) { c.o.do(f) }

// Close implements backends.Context.
func (c *Context) Close() error {
	if c.ctx == nil {
		return nil
	}
	c.o.do(func() {
		C.llama_batch_free(c.batch)
		C.llama_free(c.ctx)
		if c.pool != nil {
			C.ggml_threadpool_free(c.pool)
		}
	})
	c.ctx = nil
	c.o.stop()
	return nil
}

// NativeLoop runs prompt tokens (in batches) or gen single-token decodes
// entirely in C, the way llama-bench does, after depth untimed tokens, and
// returns the elapsed seconds. It is the baseline that `llorch worker bench
// --baseline` compares the Go-driven loop against. The KV cache is cleared first.
func (c *Context) NativeLoop(depth, prompt, gen int, seed uint32) (float64, error) {
	if prompt > 0 && gen > 0 {
		return 0, fmt.Errorf("llamacpp: native loop runs prompt or generation, not both")
	}
	var secs C.double
	c.o.do(func() {
		secs = C.llorch_bench_loop(c.ctx, &c.batch, C.int(c.model.info.VocabSize), C.int(depth), C.int(prompt), C.int(gen),
			C.int(c.cap), C.uint(seed))
	})
	if secs < 0 {
		return 0, fmt.Errorf("%w: native loop failed", ErrDecode)
	}
	return float64(secs), nil
}
