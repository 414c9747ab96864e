// Package gguf writes GGUF version 3 files, the model container used by
// llama.cpp and ggml. It has no reader: the project's one GGUF reader is
// gguf-parser-go, used by core/catalog (catalog.Inspect,
// catalog.CheckComplete); this package's tests read the Writer's output back
// with it.
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
// Metadata values are plain Go values; see [KV] for the mapping between GGUF
// value types and Go types.
package gguf
