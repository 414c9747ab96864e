package llamacpp

/*
#include <stdlib.h>
#include <string.h>
#include "helpers.h"

// llorch_embed_context makes a context that outputs pooled embeddings. Every
// decode fits one micro-batch (n_ubatch = n_batch = n_ctx) and the KV cache is
// unified, so llama.cpp splits nothing: each sequence is pooled whole (a
// sequence split across micro-batches would be pooled from its last part only).
static struct llama_context *llorch_embed_context(struct llama_model *m, uint32_t n_tokens, uint32_t n_seq,
		int threads, int threads_batch, int flash, int pooling) {
	struct llama_context_params p = llama_context_default_params();
	p.n_ctx = n_tokens;
	p.n_batch = n_tokens;
	p.n_ubatch = n_tokens;
	p.n_seq_max = n_seq;
	p.n_threads = threads;
	p.n_threads_batch = threads_batch;
	p.flash_attn_type = (enum llama_flash_attn_type)flash;
	p.embeddings = true;
	p.pooling_type = (enum llama_pooling_type)pooling;
	p.kv_unified = true;
	p.no_perf = true;
	return llama_init_from_model(m, p);
}

// llorch_embed clears the memory, decodes n tokens of n_seqs sequences (ids
// 0..n_seqs-1, every token an output: logits are all 1) in one llama_decode,
// and copies each sequence's pooled vector to out[s*n_embd]. It returns
// llama_decode's code, or -100 when a sequence has no pooled vector.
static int llorch_embed(struct llama_context *ctx, struct llama_batch *b, int n, const int32_t *tok,
		const int32_t *pos, const int32_t *seq, const int8_t *logits, int n_seqs, int n_embd, float *out) {
	llama_memory_t mem = llama_get_memory(ctx);
	if (mem != NULL) {
		llama_memory_clear(mem, true);
	}
	int rc = llorch_decode(ctx, b, n, tok, pos, seq, logits);
	if (rc != 0) {
		return rc;
	}
	for (int s = 0; s < n_seqs; s++) {
		const float *v = llama_get_embeddings_seq(ctx, s);
		if (v == NULL) {
			return -100;
		}
		memcpy(out + (size_t)s * n_embd, v, n_embd * sizeof(float));
	}
	return 0;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"unsafe"

	"github.com/llorch/llorch/backends"
)

// ErrEmbed is returned when an embedding decode fails.
var ErrEmbed = errors.New("llamacpp: embedding failed")

// EmbedContext computes pooled embeddings; it implements backends.Embedder.
type EmbedContext struct {
	model *Model
	o     *owner
	ctx   *C.struct_llama_context
	batch C.struct_llama_batch
	info  backends.EmbedInfo
	seqs  int

	// Reused per decode.
	tok, pos, seq []int32
	ones          []int8 // every token is an output
	out           []float32
}

var (
	_ backends.EmbedModel = (*Model)(nil)
	_ backends.Embedder   = (*EmbedContext)(nil)
)

var poolingNames = map[C.enum_llama_pooling_type]string{
	C.LLAMA_POOLING_TYPE_MEAN: "mean",
	C.LLAMA_POOLING_TYPE_CLS:  "cls",
	C.LLAMA_POOLING_TYPE_LAST: "last",
}

// NewEmbedder implements backends.EmbedModel. The pooling is the model's
// <arch>.pooling_type; a model that names none (or "none", as generative
// models do) is pooled by mean. Rerankers (pooling "rank") are refused.
func (m *Model) NewEmbedder(p backends.EmbedParams) (backends.Embedder, error) {
	if p.Tokens < 8 || p.Seqs < 1 || p.Seqs > 256 {
		return nil, fmt.Errorf("%w: bad embedding parameters %+v (tokens >= 8, seqs 1..256)", ErrContext, p)
	}
	if p.Threads <= 0 {
		p.Threads = runtime.NumCPU()
	}
	if p.ThreadsBatch <= 0 {
		p.ThreadsBatch = p.Threads
	}
	// llama.cpp reserves its worst-case graph with the tokens rounded up to a
	// multiple of the sequences but not the outputs, and mean pooling cannot
	// multiply those: keep them multiples.
	p.Tokens = (p.Tokens + p.Seqs - 1) / p.Seqs * p.Seqs
	flash := -1
	switch p.FlashAttn {
	case "on":
		flash = 1
	case "off":
		flash = 0
	}
	pooling := C.LLAMA_POOLING_TYPE_UNSPECIFIED
	defaulted := false
	key := m.info.Arch + ".pooling_type"
	switch v := m.meta(key); v {
	case "", "0":
		pooling, defaulted = C.LLAMA_POOLING_TYPE_MEAN, true
	case "4":
		return nil, fmt.Errorf("%w: the model is a reranker (%s = rank), not an embedding model", ErrContext, key)
	default:
		// Passed explicitly: llama.cpp reads the key only for some
		// architectures (BERT-like ones), not for llama, qwen2, ...
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 3 {
			return nil, fmt.Errorf("%w: unknown %s %q", ErrContext, key, v)
		}
		pooling = n
	}
	e := &EmbedContext{model: m, o: newOwner(), seqs: p.Seqs}
	var err error
	e.o.do(func() {
		e.ctx = C.llorch_embed_context(m.m, C.uint32_t(p.Tokens), C.uint32_t(p.Seqs), C.int(p.Threads),
			C.int(p.ThreadsBatch), C.int(flash), C.int(pooling))
		if e.ctx == nil {
			err = fmt.Errorf("%w: llama_init_from_model failed (embeddings, %d tokens x %d seqs)", ErrContext, p.Tokens, p.Seqs)
			return
		}
		pt := C.llama_pooling_type(e.ctx)
		name, ok := poolingNames[pt]
		if !ok {
			C.llama_free(e.ctx)
			e.ctx = nil
			err = fmt.Errorf("%w: pooling type %d cannot make embeddings", ErrContext, int(pt))
			return
		}
		e.batch = C.llama_batch_init(C.int32_t(p.Tokens), 0, 1)
		e.info = backends.EmbedInfo{Size: int(C.llama_model_n_embd(m.m)), MaxTokens: int(C.llama_n_batch(e.ctx)),
			Pooling: name, PoolingDefaulted: defaulted}
	})
	if err != nil {
		e.o.stop()
		return nil, err
	}
	e.info.MaxTokens = min(e.info.MaxTokens, p.Tokens)
	return e, nil
}

// Info implements backends.Embedder.
func (e *EmbedContext) Info() backends.EmbedInfo { return e.info }

// Embed implements backends.Embedder: inputs are packed in order into decodes
// of at most MaxTokens tokens and Seqs sequences.
func (e *EmbedContext) Embed(inputs [][]backends.Token) ([][]float32, error) {
	for i, in := range inputs {
		if len(in) == 0 || len(in) > e.info.MaxTokens {
			return nil, fmt.Errorf("%w: input %d has %d tokens (1..%d)", ErrEmbed, i, len(in), e.info.MaxTokens)
		}
		for _, t := range in {
			if t < 0 || int(t) >= e.model.info.VocabSize {
				return nil, fmt.Errorf("%w: input %d: token %d is not in the vocabulary", ErrEmbed, i, t)
			}
		}
	}
	out := make([][]float32, 0, len(inputs))
	for start := 0; start < len(inputs); {
		end, n := start, 0
		for end < len(inputs) && end-start < e.seqs && n+len(inputs[end]) <= e.info.MaxTokens {
			n += len(inputs[end])
			end++
		}
		vs, err := e.decode(inputs[start:end])
		if err != nil {
			return nil, err
		}
		out = append(out, vs...)
		start = end
	}
	return out, nil
}

// decode embeds inputs that fit one decode.
func (e *EmbedContext) decode(inputs [][]backends.Token) ([][]float32, error) {
	e.tok, e.pos, e.seq = e.tok[:0], e.pos[:0], e.seq[:0]
	for s, in := range inputs {
		for p, t := range in {
			e.tok = append(e.tok, t)
			e.pos = append(e.pos, int32(p))
			e.seq = append(e.seq, int32(s))
		}
	}
	size := e.info.Size
	if need := len(inputs) * size; cap(e.out) < need {
		e.out = make([]float32, need)
	} else {
		e.out = e.out[:need]
	}
	for len(e.ones) < len(e.tok) {
		e.ones = append(e.ones, 1)
	}
	var rc C.int
	e.o.do(func() {
		rc = C.llorch_embed(e.ctx, &e.batch, C.int(len(e.tok)), (*C.int32_t)(unsafe.Pointer(&e.tok[0])),
			(*C.int32_t)(unsafe.Pointer(&e.pos[0])), (*C.int32_t)(unsafe.Pointer(&e.seq[0])),
			(*C.int8_t)(unsafe.Pointer(&e.ones[0])), C.int(len(inputs)), C.int(size), (*C.float)(unsafe.Pointer(&e.out[0])))
	})
	if rc != 0 {
		return nil, fmt.Errorf("%w: decode of %d inputs (%d tokens) returned %d", ErrEmbed, len(inputs), len(e.tok), int(rc))
	}
	vs := make([][]float32, len(inputs))
	for s := range vs {
		vs[s] = append([]float32(nil), e.out[s*size:(s+1)*size]...)
	}
	return vs, nil
}

// Close implements backends.Embedder.
func (e *EmbedContext) Close() error {
	if e.ctx == nil {
		return nil
	}
	e.o.do(func() {
		C.llama_batch_free(e.batch)
		C.llama_free(e.ctx)
	})
	e.ctx = nil
	e.o.stop()
	return nil
}
