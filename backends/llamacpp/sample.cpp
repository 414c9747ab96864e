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

// fill resets cur to the logits of batch entry idx.
static llama_token_data_array fill(const float *logits, int32_t n_vocab) {
	cur_buf.resize(n_vocab);
	for (int32_t i = 0; i < n_vocab; i++) {
		cur_buf[i] = llama_token_data{i, logits[i], 0.0f};
	}
	return llama_token_data_array{cur_buf.data(), (size_t)n_vocab, -1, false};
}

// lazy_grammar tries the chain without the grammar samplers (the
// lazy_n at lazy_from): when the token it picks is one the grammar allows,
// that is the pick, at the cost of one grammar check instead of a grammar
// pass over the whole vocabulary (llama.cpp's common sampler does the same).
// It returns the token, or -1 when the grammar refuses it.
static int32_t lazy_grammar(struct llama_sampler *chain, const float *logits, int32_t n_vocab, int32_t lazy_from,
		int32_t lazy_n) {
	llama_token_data_array cur = fill(logits, n_vocab);
	const int32_t n = llama_sampler_chain_n(chain);
	for (int32_t i = 0; i < n; i++) {
		if (i < lazy_from || i >= lazy_from + lazy_n) {
			llama_sampler_apply(llama_sampler_chain_get(chain, i), &cur);
		}
	}
	if (cur.selected < 0 || (size_t)cur.selected >= cur.size || !std::isfinite(cur.data[cur.selected].logit)) {
		return -1;
	}
	llama_token_data one = {cur.data[cur.selected].id, 1.0f, 0.0f};
	llama_token_data_array single = {&one, 1, -1, false};
	for (int32_t i = lazy_from; i < lazy_from + lazy_n; i++) {
		llama_sampler_apply(llama_sampler_chain_get(chain, i), &single);
	}
	return std::isfinite(one.logit) ? one.id : -1;
}

extern "C" int32_t llorch_sample(struct llama_sampler *chain, struct llama_context *ctx, int32_t idx, int32_t n_vocab,
		int32_t n_top, int32_t *top_ids, float *top_lp, int32_t *n_top_out, float *chosen_lp, int32_t lazy_from,
		int32_t lazy_n, char *err, size_t errlen) {
	try {
		const float *logits = llama_get_logits_ith(ctx, idx);
		if (logits == nullptr) {
			set_err(err, errlen, "no logits for this batch entry");
			return -1;
		}
		if (lazy_from >= 0 && chosen_lp == nullptr) {
			const int32_t id = lazy_grammar(chain, logits, n_vocab, lazy_from, lazy_n);
			if (id >= 0) {
				llama_sampler_accept(chain, id);
				return id;
			}
		}
		llama_token_data_array cur = fill(logits, n_vocab);
		// The chain's samplers one by one, as llama_sampler_apply(chain)
		// runs them, but with a check before the last (the distribution or
		// greedy pick): when the grammar (or a -inf bias) left no token,
		// llama.cpp's dist sampler fails an assertion and aborts.
		const int32_t n = llama_sampler_chain_n(chain);
		for (int32_t i = 0; i < n; i++) {
			if (i == n - 1) {
				bool any = false;
				for (size_t k = 0; k < cur.size && !any; k++) {
					any = std::isfinite(cur.data[k].logit);
				}
				if (!any) {
					set_err(err, errlen, "the grammar allows no token here (every token it allows is banned)");
					return -1;
				}
			}
			llama_sampler_apply(llama_sampler_chain_get(chain, i), &cur);
		}
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

// A sampler that keeps the output valid UTF-8. llama.cpp's grammar decodes
// token bytes loosely (an overlong form such as E0 81 81 reads as "A"), so
// under a grammar it bans every token whose bytes, after what was generated,
// are not a valid UTF-8 sequence (overlong forms, surrogates, values above
// U+10FFFF, stray continuation bytes, a character cut by end of generation).

struct utf8_state {
	int remain = 0;       // continuation bytes still expected
	unsigned char lo = 0x80, hi = 0xBF; // the range of the next one
};

// step feeds one byte; false when it makes the sequence invalid.
static bool utf8_step(utf8_state &st, unsigned char c) {
	if (st.remain > 0) {
		if (c < st.lo || c > st.hi) return false;
		st.remain--;
		st.lo = 0x80;
		st.hi = 0xBF;
		return true;
	}
	if (c < 0x80) return true;
	if (c >= 0xC2 && c <= 0xDF) {
		st.remain = 1;
	} else if (c == 0xE0) {
		st.remain = 2, st.lo = 0xA0;
	} else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
		st.remain = 2;
	} else if (c == 0xED) {
		st.remain = 2, st.hi = 0x9F;
	} else if (c == 0xF0) {
		st.remain = 3, st.lo = 0x90;
	} else if (c >= 0xF1 && c <= 0xF3) {
		st.remain = 3;
	} else if (c == 0xF4) {
		st.remain = 3, st.hi = 0x8F;
	} else {
		return false;
	}
	return true;
}

// utf8_table holds every token's bytes, and whether they are valid from a
// character boundary (most are: then only the few others need a look).
// Hidden tokens are control tokens the output does not show: the grammar
// matches a control token by its text, so one inside a JSON string would
// pass the grammar and vanish from what the client gets; they are banned.
struct utf8_table {
	std::vector<uint32_t> off; // n_vocab + 1 offsets into bytes
	std::vector<unsigned char> bytes;
	std::vector<int32_t> bad_at_boundary; // tokens invalid from a boundary, and the hidden ones
	std::vector<bool> eog;
	std::vector<bool> hidden;
};

extern "C" void *llorch_utf8_table_new(const struct llama_vocab *vocab, const int32_t *hidden, int32_t n_hidden) {
	auto *t = new utf8_table;
	const int32_t n = llama_vocab_n_tokens(vocab);
	t->off.resize(n + 1);
	t->eog.resize(n);
	t->hidden.resize(n);
	for (int32_t i = 0; i < n_hidden; i++) {
		if (hidden[i] >= 0 && hidden[i] < n) t->hidden[hidden[i]] = true;
	}
	char buf[512];
	for (int32_t i = 0; i < n; i++) {
		t->off[i] = (uint32_t)t->bytes.size();
		int32_t k = llama_token_to_piece(vocab, i, buf, sizeof buf, 0, true);
		for (int32_t j = 0; j < k; j++) t->bytes.push_back((unsigned char)buf[j]);
		t->eog[i] = llama_vocab_is_eog(vocab, i);
		utf8_state st;
		bool ok = true;
		for (int32_t j = 0; j < k && ok; j++) ok = utf8_step(st, (unsigned char)buf[j]);
		if (!ok || t->hidden[i]) t->bad_at_boundary.push_back(i);
	}
	t->off[n] = (uint32_t)t->bytes.size();
	return t;
}

extern "C" void llorch_utf8_table_free(void *t) { delete (utf8_table *)t; }

struct utf8_sampler {
	const utf8_table *t;
	utf8_state st;
};

static const char *utf8_name(const struct llama_sampler *) { return "llorch-utf8"; }

static void utf8_accept(struct llama_sampler *smpl, llama_token tok) {
	auto *u = (utf8_sampler *)smpl->ctx;
	if (tok < 0 || (size_t)tok + 1 >= u->t->off.size()) return;
	for (uint32_t j = u->t->off[tok]; j < u->t->off[tok + 1]; j++) {
		if (!utf8_step(u->st, u->t->bytes[j])) {
			u->st = utf8_state{}; // cannot happen after apply; start afresh
			return;
		}
	}
}

static bool utf8_valid_after(const utf8_sampler *u, llama_token tok) {
	if (tok < 0 || (size_t)tok + 1 >= u->t->off.size()) return false;
	if (u->t->eog[tok]) return u->st.remain == 0;
	if (u->t->hidden[tok]) return false;
	utf8_state st = u->st;
	for (uint32_t j = u->t->off[tok]; j < u->t->off[tok + 1]; j++) {
		if (!utf8_step(st, u->t->bytes[j])) return false;
	}
	return true;
}

static void utf8_apply(struct llama_sampler *smpl, llama_token_data_array *cur) {
	auto *u = (utf8_sampler *)smpl->ctx;
	const size_t n_vocab = u->t->off.size() - 1;
	if (u->st.remain == 0 && cur->size == n_vocab && !cur->sorted) {
		// At a character boundary, on the whole vocabulary in id order
		// (the sampler runs right after the grammar): only the tokens
		// invalid from a boundary need banning.
		bool in_order = true;
		for (int32_t id : u->t->bad_at_boundary) {
			if (cur->data[id].id != id) {
				in_order = false;
				break;
			}
		}
		if (in_order) {
			for (int32_t id : u->t->bad_at_boundary) cur->data[id].logit = -INFINITY;
			return;
		}
	}
	for (size_t k = 0; k < cur->size; k++) {
		if (std::isfinite(cur->data[k].logit) && !utf8_valid_after(u, cur->data[k].id)) {
			cur->data[k].logit = -INFINITY;
		}
	}
}

static void utf8_reset(struct llama_sampler *smpl) { ((utf8_sampler *)smpl->ctx)->st = utf8_state{}; }

static struct llama_sampler *utf8_clone(const struct llama_sampler *smpl);

static void utf8_free(struct llama_sampler *smpl) { delete (utf8_sampler *)smpl->ctx; }

static struct llama_sampler_i utf8_iface = {
	/* .name   = */ utf8_name,
	/* .accept = */ utf8_accept,
	/* .apply  = */ utf8_apply,
	/* .reset  = */ utf8_reset,
	/* .clone  = */ utf8_clone,
	/* .free   = */ utf8_free,
};

static struct llama_sampler *utf8_clone(const struct llama_sampler *smpl) {
	auto *u = new utf8_sampler(*(const utf8_sampler *)smpl->ctx);
	return llama_sampler_init(&utf8_iface, u);
}

extern "C" struct llama_sampler *llorch_utf8_sampler(void *table) {
	auto *u = new utf8_sampler{(const utf8_table *)table, utf8_state{}};
	return llama_sampler_init(&utf8_iface, u);
}
