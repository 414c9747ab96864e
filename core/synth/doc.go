// Package synth writes deterministic synthetic GGUF models for tests and
// benchmarks.
//
// A synthetic model is a llama-architecture F16 GGUF file with the shape of a
// [Preset], small pseudo-random weights and a working byte-level BPE
// tokenizer (GPT-2 style, with ChatML control tokens and chat template), so
// that llama.cpp loads it, tokenizes and detokenizes text exactly and
// generates tokens. The weights are random: output is gibberish, good for
// speed, streaming, cancellation and determinism tests, useless for quality.
//
// The same preset always produces a byte-identical file: weights come from a
// PRNG seeded by the preset and tensor names, and the tokenizer's merges are
// learned from a small embedded English text.
package synth
