// Package llamacpp binds llama.cpp (compiled in through cgo from the pinned
// ollama module's sources) behind the backends.Model interface. It is the only
// cgo package in llorch.
//
// Threading: a Context is owned by one locked OS thread; its methods hand work
// to that thread over a channel and wait, so callers may use any goroutine, but
// must not call one Context concurrently. Models are read-only after loading
// and may be shared.
//
// Build flags (include dirs, -DGGML_USE_CPU_REPACK, -O3 -march) come from the
// Makefile; see the README.
package llamacpp
