#include <string.h>
#include "helpers.h"
#include "ggml-cpu.h"
#include "_cgo_export.h"

static bool progress_trampoline(float progress, void *user) { return llorchProgress(progress, user); }

static void log_trampoline(enum ggml_log_level level, const char *text, void *user) {
	llorchLog((int)level, (char *)text, user);
}

void llorch_set_log(void) { llama_log_set(log_trampoline, NULL); }

int llorch_on_thread(pthread_t t) { return pthread_equal(pthread_self(), t); }

struct llama_model *llorch_load(const char *path, int n_gpu_layers, int main_gpu, bool mmap, uintptr_t handle) {
	struct llama_model_params p = llama_model_default_params();
	p.n_gpu_layers = n_gpu_layers;
	p.main_gpu = main_gpu;
	p.use_mmap = mmap;
	if (handle != 0) {
		p.progress_callback = progress_trampoline;
		p.progress_callback_user_data = (void *)handle;
	}
	return llama_model_load_from_file(path, p);
}

struct llama_context *llorch_new_context(struct llama_model *m, uint32_t n_ctx, uint32_t n_batch,
		uint32_t n_seq, int threads, int threads_batch, int flash) {
	struct llama_context_params p = llama_context_default_params();
	p.n_ctx = n_ctx;
	p.n_batch = n_batch;
	p.n_ubatch = n_batch;
	p.n_seq_max = n_seq;
	p.n_threads = threads;
	p.n_threads_batch = threads_batch;
	p.flash_attn_type = (enum llama_flash_attn_type)flash;
	p.kv_unified = false;
	p.no_perf = true;
	return llama_init_from_model(m, p);
}

struct ggml_threadpool *llorch_attach_threadpool(struct llama_context *ctx, int threads, int poll) {
	struct ggml_threadpool_params p = ggml_threadpool_params_default(threads);
	p.poll = (uint32_t)poll;
	struct ggml_threadpool *tp = ggml_threadpool_new(&p);
	if (tp != NULL) {
		llama_attach_threadpool(ctx, tp, tp);
	}
	return tp;
}

int llorch_decode(struct llama_context *ctx, struct llama_batch *b, int n,
		const int32_t *tok, const int32_t *pos, const int32_t *seq, const int8_t *logits) {
	b->n_tokens = n;
	memcpy(b->token, tok, n * sizeof(int32_t));
	memcpy(b->pos, pos, n * sizeof(int32_t));
	memcpy(b->logits, logits, n * sizeof(int8_t));
	for (int i = 0; i < n; i++) {
		b->n_seq_id[i] = 1;
		b->seq_id[i][0] = seq[i];
	}
	return llama_decode(ctx, *b);
}

void llorch_accept(struct llama_sampler *s, const int32_t *tok, int n) {
	for (int i = 0; i < n; i++) {
		llama_sampler_accept(s, tok[i]);
	}
}

static int llorch_bench_fill(struct llama_context *ctx, struct llama_batch *b, int n_vocab, int from, int n, int n_batch,
		unsigned int *seed, bool last_logits) {
	for (int done = 0; done < n;) {
		int k = n - done < n_batch ? n - done : n_batch;
		b->n_tokens = k;
		for (int i = 0; i < k; i++) {
			*seed = *seed * 1103515245u + 12345u;
			b->token[i] = (int32_t)((*seed >> 8) % (unsigned)n_vocab);
			b->pos[i] = from + done + i;
			b->n_seq_id[i] = 1;
			b->seq_id[i][0] = 0;
			b->logits[i] = last_logits && done + i == n - 1;
		}
		if (llama_decode(ctx, *b) != 0) return -1;
		done += k;
	}
	return 0;
}

// llorch_bench_loop runs llama-bench's pp or tg test entirely in C (no Go in
// the loop), after depth untimed tokens: the baseline that shows what the Go
// binding costs. Returns seconds, or a negative value on error.
double llorch_bench_loop(struct llama_context *ctx, struct llama_batch *b, int n_vocab, int depth, int n_prompt,
		int n_gen, int n_batch, unsigned int seed) {
	llama_memory_clear(llama_get_memory(ctx), true);
	if (depth > 0 && llorch_bench_fill(ctx, b, n_vocab, 0, depth, n_batch, &seed, false) != 0) return -1;
	llama_synchronize(ctx);
	const int64_t t0 = llama_time_us();
	if (n_prompt > 0 && llorch_bench_fill(ctx, b, n_vocab, depth, n_prompt, n_batch, &seed, true) != 0) return -1;
	for (int i = 0; i < n_gen; i++) {
		if (llorch_bench_fill(ctx, b, n_vocab, depth + i, 1, 1, &seed, true) != 0) return -1;
	}
	llama_synchronize(ctx);
	return (double)(llama_time_us() - t0) / 1e6;
}
