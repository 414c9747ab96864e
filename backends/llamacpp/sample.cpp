// Sampling with the chain applied by hand (as llama_sampler_sample does), so
// that the distribution it drew from can be read back for logprobs, and with
// llama.cpp's C++ exceptions (a grammar refusing a token) turned into errors
// instead of crossing the cgo boundary.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <vector>

#include "sample.h"

static void set_err(char *err, size_t n, const char *msg) {
	if (n == 0) return;
	strncpy(err, msg, n - 1);
	err[n - 1] = 0;
}

// One buffer per thread: a context is driven from one locked OS thread.
static thread_local std::vector<llama_token_data> cur_buf;

extern "C" int32_t llorch_sample(struct llama_sampler *chain, struct llama_context *ctx, int32_t idx, int32_t n_vocab,
		int32_t n_top, int32_t *top_ids, float *top_lp, int32_t *n_top_out, float *chosen_lp, char *err, size_t errlen) {
	try {
		const float *logits = llama_get_logits_ith(ctx, idx);
		if (logits == nullptr) {
			set_err(err, errlen, "no logits for this batch entry");
			return -1;
		}
		cur_buf.resize(n_vocab);
		for (int32_t i = 0; i < n_vocab; i++) {
			cur_buf[i] = llama_token_data{i, logits[i], 0.0f};
		}
		llama_token_data_array cur = {cur_buf.data(), (size_t)n_vocab, -1, false};
		llama_sampler_apply(chain, &cur);
		if (cur.selected < 0 || (size_t)cur.selected >= cur.size) {
			set_err(err, errlen, "the sampler selected no token");
			return -1;
		}
		const llama_token_data chosen = cur.data[cur.selected];
		if (!std::isfinite(chosen.logit)) {
			set_err(err, errlen, "the grammar allows no token here");
			return -1;
		}
		if (chosen_lp != nullptr) {
			float mx = -INFINITY;
			for (size_t i = 0; i < cur.size; i++) {
				if (cur.data[i].logit > mx) mx = cur.data[i].logit;
			}
			double sum = 0;
			for (size_t i = 0; i < cur.size; i++) {
				if (std::isfinite(cur.data[i].logit)) sum += std::exp((double)(cur.data[i].logit - mx));
			}
			const double lse = (double)mx + std::log(sum);
			*chosen_lp = (float)((double)chosen.logit - lse);
			int32_t k = 0;
			if (n_top > 0) {
				// Partial selection of the n_top highest finite logits.
				std::vector<llama_token_data> best;
				best.reserve(n_top + 1);
				for (size_t i = 0; i < cur.size; i++) {
					const llama_token_data &d = cur.data[i];
					if (!std::isfinite(d.logit)) continue;
					if ((int32_t)best.size() == n_top && d.logit <= best.back().logit) continue;
					auto at = std::upper_bound(best.begin(), best.end(), d,
							[](const llama_token_data &a, const llama_token_data &b) { return a.logit > b.logit; });
					best.insert(at, d);
					if ((int32_t)best.size() > n_top) best.pop_back();
				}
				for (const auto &d : best) {
					top_ids[k] = d.id;
					top_lp[k] = (float)((double)d.logit - lse);
					k++;
				}
			}
			*n_top_out = k;
		}
		llama_sampler_accept(chain, chosen.id);
		return chosen.id;
	} catch (const std::exception &e) {
		set_err(err, errlen, e.what());
		return -1;
	}
}

extern "C" int llorch_accept_checked(struct llama_sampler *s, const int32_t *tok, int n, char *err, size_t errlen) {
	try {
		for (int i = 0; i < n; i++) {
			llama_sampler_accept(s, tok[i]);
		}
		return 0;
	} catch (const std::exception &e) {
		set_err(err, errlen, e.what());
		return -1;
	}
}

extern "C" struct llama_sampler *llorch_grammar(const struct llama_vocab *vocab, const char *gbnf, char *err, size_t errlen) {
	try {
		struct llama_sampler *g = llama_sampler_init_grammar(vocab, gbnf, "root");
		if (g == nullptr) {
			set_err(err, errlen, "llama.cpp cannot parse it (run with --log-level debug for its message)");
		}
		return g;
	} catch (const std::exception &e) {
		set_err(err, errlen, e.what());
		return nullptr;
	}
}
