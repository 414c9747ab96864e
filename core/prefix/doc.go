// Package prefix predicts which worker holds the longest cached prefix of a
// request's prompt, so the orchestrator can send the request there
// (cache-aware routing) without session ids and without tokenizing.
//
// # Streams and block hashes
//
// A worker keeps each slot's KV cache and reuses the longest common token
// prefix of the slot's cache and a new prompt. The orchestrator does not
// tokenize; it identifies prefixes by chained hashes of fixed-size byte
// blocks of the request's stream, a canonical serialization of what the
// worker renders into the prompt (AppendRequest): a kind marker, the tools
// (unless tool_choice is none), then each message's role, name,
// tool_call_id, content and tool calls, every field escaped and terminated
// so that no two different requests share a stream. A raw prompt's stream
// is the prompt. Sampling parameters, max_tokens, stop, seed, grammar and
// response_format are not in the stream: they do not change the prompt text.
//
// A shared prefix of two streams stands for a shared prefix of the rendered
// prompts, because chat templates render the messages in order and their
// contents verbatim. The correspondence is approximate, not exact: a
// template that moves text (Mistral's puts the tool list and system text
// before the last user turn) shares less than the streams do. Verification
// (below) corrects such optimism. The worker needs no new API.
//
// Hashes gives one hash per full block (BlockBytes, default 64): h[i] hashes
// h[i-1] with block i (FNV-1a 64 with a final mix), and h[-1] comes from the
// model name, so a hash names a whole prefix for one model and is the same
// in every process. A partial last block is not hashed.
//
// AppendGenerated is the stream a slot holds after generating text: the
// request's stream and then the next turn's assistant message up to the end
// of its content. A conversation's next turn therefore has it as a byte
// prefix, and its blocks are found on the worker that served the last turn.
//
// # The slot model
//
// A worker with S slots holds at most S sequences. For a new prompt it takes
// the free slot whose cache shares the longest prefix with the prompt when
// that is at least half of what the slot holds, else the least recently used
// free slot; it may also copy another slot's cache. The orchestrator uses
// RecordSlot with the slot the worker names (below); without it the Index
// guesses: Record replaces the tracked sequence sharing the longest
// prefix with the served stream, else adds one while fewer than S are
// tracked, else replaces the worker's least recently recorded one. A worker
// holds a prefix when any of its sequences does (copies make every slot's
// prefix usable). Slots are capped at MaxSlots sequences a worker.
//
// Record's guess assumes the worker's slots were free: a busy slot sends the
// request elsewhere. The started event names the slot the worker used;
// RecordSlot takes it and replaces exactly that slot's sequence. Two
// conversations sharing a system prompt then stay in two slots, where Record
// would guess that the second overwrote the first, as an idle worker does.
//
// Because hashes are chained, what a worker holds of one stream is closed
// under prefixes: Lookup first finds the longest prefix any worker holds,
// then binary-searches each worker's within it, with about log2 of that
// many map lookups a worker, and one for a worker that does not hold the
// first block.
//
// # Verification
//
// Predictions are checked. A worker's started event reports cached_tokens,
// the prompt tokens it reused; the caller turns them into blocks (BlocksFor)
// and calls Observe, which drops from the worker's sequences every block past
// observed + Tolerance (one block: the token/byte conversion is an estimate,
// and the worker always evaluates the prompt's last token again) and returns
// what had been predicted, for metrics. A request with cache_prompt false
// reuses nothing and must not be observed. A worker whose best slot was busy
// reuses less than it holds; Observe then drops blocks that were in fact
// held, which errs towards predicting less.
//
// Tokens and BlocksFor convert blocks to tokens with a tokens-per-byte ratio
// per model, learned (Learn) from requests whose stream length and
// prompt_tokens are known: an exponentially weighted average, 0.25 before
// the first observation.
//
// # Bounds
//
// A stream is indexed up to MaxSeqBlocks blocks (default 4096). All
// sequences of all workers hold at most MaxBlocks block entries (default
// 1<<20); past it the least recently recorded sequences go, whichever worker
// they belong to. A worker with no sequence left is dropped, so memory
// follows MaxBlocks whatever ids, slot counts or streams are recorded.
// Learned ratios are kept for at most 4096 models. The Index reads no clock
// (recency is a counter) and is safe for concurrent use under its own lock,
// a leaf: nothing is called while it is held.
package prefix
