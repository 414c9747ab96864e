// Package gguf writes and reads GGUF version 3 files, the model container used
// by llama.cpp and ggml.
//
// A GGUF file is a header (magic "GGUF", version, tensor count, key/value count),
// typed key/value metadata, tensor infos (name, dimensions, ggml type, offset)
// and an aligned data section holding the tensor data. All numbers are little
// endian.
//
// The [Writer] streams tensor data: it takes the metadata and every tensor's
// shape up front, computes the offsets, and then accepts the data of all
// tensors in order through Write, inserting the alignment padding itself.
//
// [Read] and [ReadFile] parse everything up to the data section. They treat the
// input as untrusted: counts, lengths and the total metadata size are bounded
// (see [MaxKVs], [MaxTensors], [MaxStringLen], [MaxArrayLen],
// [MaxHeaderBytes]) and malformed input yields an error, never a panic.
//
// Metadata values are plain Go values; see [KV] for the mapping between GGUF
// value types and Go types.
package gguf
