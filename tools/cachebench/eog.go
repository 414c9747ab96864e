package main

import (
	"fmt"
	"slices"

	parser "github.com/gpustack/gguf-parser-go"
)

// eogTexts are texts of tokens that llama.cpp treats as ending generation
// whatever the metadata's ids say.
var eogTexts = []string{"<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "<end_of_turn>", "</s>"}

// eogTokens returns the ids of the end-of-generation tokens of the GGUF model
// at path: the eos, eot and eom ids of its metadata and the tokens whose text
// is one of eogTexts. The orchestrator's /v1 has no ignore_eos, so the
// benchmark bans these with a logit_bias and every request runs to
// max_tokens.
func eogTokens(path string) ([]int, error) {
	gf, err := parser.ParseGGUFFile(path, parser.UseMMap())
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	kvs := gf.Header.MetadataKV
	var ids []int
	for _, key := range []string{"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"} {
		if kv, ok := kvs.Get(key); ok {
			ids = append(ids, int(parser.ValueNumeric[int64](kv)))
		}
	}
	if kv, ok := kvs.Get("tokenizer.ggml.tokens"); ok && kv.ValueType == parser.GGUFMetadataValueTypeArray {
		if av := kv.ValueArray(); av.Type == parser.GGUFMetadataValueTypeString {
			for id, text := range av.ValuesString() {
				if slices.Contains(eogTexts, text) {
					ids = append(ids, id)
				}
			}
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}
