// Sampling helpers written in C++ (sample.cpp): they catch llama.cpp's
// exceptions.
#ifndef LLORCH_SAMPLE_H
#define LLORCH_SAMPLE_H

#include <stddef.h>
#include <stdint.h>
#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

int32_t llorch_sample(struct llama_sampler *chain, struct llama_context *ctx, int32_t idx, int32_t n_vocab,
		int32_t n_top, int32_t *top_ids, float *top_lp, int32_t *n_top_out, float *chosen_lp, int32_t lazy_from,
		int32_t lazy_n, char *err, size_t errlen);
int llorch_accept_checked(struct llama_sampler *s, const int32_t *tok, int n, char *err, size_t errlen);
struct llama_sampler *llorch_grammar(const struct llama_vocab *vocab, const char *gbnf, char *err, size_t errlen);
void *llorch_utf8_table_new(const struct llama_vocab *vocab, const int32_t *hidden, int32_t n_hidden);
void llorch_utf8_table_free(void *table);
struct llama_sampler *llorch_utf8_sampler(void *table);

#ifdef __cplusplus
}
#endif

#endif
