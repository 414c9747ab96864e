package llamacpp

/*
#include <stdlib.h>
#include "helpers.h"
*/
import "C"

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"

	"github.com/llorch/llorch/backends"
)

// Context is a llama.cpp context with Seqs sequences.
type Context struct {
	model  *Model
	o      *owner
	ctx    *C.struct_llama_context
	batch  C.struct_llama_batch
	cap    int
	seqCtx int
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
	var rc C.int
	c.o.do(func() {
		rc = C.llorch_decode(c.ctx, &c.batch, C.int(n),
			(*C.int32_t)(unsafe.Pointer(&b.Tokens[0])), (*C.int32_t)(unsafe.Pointer(&b.Pos[0])),
			(*C.int32_t)(unsafe.Pointer(&b.Seq[0])), (*C.int8_t)(unsafe.Pointer(&c.logits[0])))
	})
	switch rc {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%w: no KV cache slot for the batch (context full)", ErrDecode)
	default:
		return fmt.Errorf("%w: llama_decode returned %d", ErrDecode, int(rc))
	}
}

// Sampler is a llama.cpp sampler chain.
type Sampler struct {
	c *Context
	s *C.struct_llama_sampler
}

// NewSampler implements backends.Context. The chain follows llama.cpp's default
// order: logit bias, penalties, top-k, top-p, min-p, temperature, then a seeded
// distribution (or greedy at temperature 0).
func (c *Context) NewSampler(p backends.SamplerParams) (backends.Sampler, error) {
	s := &Sampler{c: c}
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
		if p.RepetitionPenalty != 0 && p.RepetitionPenalty != 1 {
			lastN := p.PenaltyLastN
			if lastN == 0 {
				lastN = 64
			}
			C.llama_sampler_chain_add(chain, C.llama_sampler_init_penalties(C.int32_t(lastN), C.float(p.RepetitionPenalty), 0, 0))
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
	return s, nil
}

// Accept implements backends.Sampler.
func (s *Sampler) Accept(tokens []backends.Token) {
	if len(tokens) == 0 {
		return
	}
	s.c.o.do(func() {
		C.llorch_accept(s.s, (*C.int32_t)(unsafe.Pointer(&tokens[0])), C.int(len(tokens)))
	})
}

// Close implements backends.Sampler.
func (s *Sampler) Close() {
	if s.s == nil {
		return
	}
	s.c.o.do(func() { C.llama_sampler_free(s.s) })
	s.s = nil
}

// Sample implements backends.Context.
func (c *Context) Sample(bs backends.Sampler, i int) backends.Token {
	s := bs.(*Sampler)
	var t C.llama_token
	c.o.do(func() { t = C.llama_sampler_sample(s.s, c.ctx, C.int32_t(i)) })
	return backends.Token(t)
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

// Close implements backends.Context.
func (c *Context) Close() error {
	if c.ctx == nil {
		return nil
	}
	c.o.do(func() {
		C.llama_batch_free(c.batch)
		C.llama_free(c.ctx)
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
