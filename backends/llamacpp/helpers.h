// Small C helpers for the llama.cpp binding: they keep cgo calls coarse (one
// call per decode step, not one per token).
#ifndef LLORCH_HELPERS_H
#define LLORCH_HELPERS_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include "llama.h"

void llorch_set_log(void);
int llorch_on_thread(pthread_t t);
struct llama_model *llorch_load(const char *path, int n_gpu_layers, int main_gpu, bool mmap, uintptr_t handle);
struct llama_context *llorch_new_context(struct llama_model *m, uint32_t n_ctx, uint32_t n_batch,
		uint32_t n_seq, int threads, int threads_batch, int flash);
struct ggml_threadpool *llorch_attach_threadpool(struct llama_context *ctx, int threads, int poll);
int llorch_decode(struct llama_context *ctx, struct llama_batch *b, int n,
		const int32_t *tok, const int32_t *pos, const int32_t *seq, const int8_t *logits);
void llorch_accept(struct llama_sampler *s, const int32_t *tok, int n);
double llorch_bench_loop(struct llama_context *ctx, struct llama_batch *b, int n_vocab, int depth, int n_prompt,
		int n_gen, int n_batch, unsigned int seed);

#endif
