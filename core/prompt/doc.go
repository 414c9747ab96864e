// Package prompt turns chat messages into the prompt text a model was trained
// on, in pure Go (standard library only).
//
// A Template is one of llama.cpp's built-in chat formats — ChatML (Qwen and
// most fine-tunes), Llama 2 and its system-prompt variants, Llama 3, Mistral
// v1/v3/v3-tekken/v7/v7-tekken, Phi-3, Gemma and every other family that
// llama.cpp's llama_chat_apply_template knows — plus Raw. Detect picks one from
// a GGUF's tokenizer.chat_template (its Jinja source) with the same marker
// heuristics, in the same order, as llama.cpp; the Jinja itself is never
// executed. Format writes exactly the bytes llama.cpp writes for the same
// messages: the tests compare the two on every template, byte for byte.
//
// Conventions, all inherited from llama.cpp so that the two agree:
//
//   - Detect("") is ChatML: a model without a chat template gets ChatML, the
//     format of llama.cpp's own fallback (a NULL template) and the worker's
//     behaviour before this package existed. A source in which no known marker
//     occurs is Unknown, and Unknown.Format fails with ErrUnknownTemplate.
//   - Roles are free text. Each format maps "system", "user" and "assistant"
//     to its own markup; other roles fall into the format's catch-all branch
//     (usually treated as assistant, or dropped), exactly as in llama.cpp.
//   - No role order is rejected: a system message after the first turn, two
//     user turns in a row or a conversation that ends with the assistant are
//     all formatted, since llama.cpp's built-in formatter formats them.
//   - Some formats have no generation prompt (Llama 2 and Mistral end a user
//     turn with [/INST]; Orion, MiniCPM, RWKV and Hunyuan write theirs inside
//     the turn) and ignore addGenerationPrompt.
//   - Trimming, where a format trims (Llama 3, Gemma, Mistral v3 assistant
//     turns, ...), removes ASCII white space only: space, \t, \n, \v, \f, \r.
//
// Raw is not a llama.cpp format: it concatenates the contents with no markup,
// for base models and for callers that format prompts themselves. Detect never
// returns it: a caller names the constant.
package prompt
