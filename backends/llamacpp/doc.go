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
//
// GPU backends: ggml-base, the CPU backend and ggml's backend registry are
// compiled into the binary and exported from it (-rdynamic). LoadBackend adds
// a backend module built without ggml-base (libggml-cuda.so from `make cuda`)
// to that one registry: the module's ggml calls bind to the binary's, and a
// module that carries its own ggml is refused. Load with LoadParams.Device puts
// the offloaded layers on one of its devices.
package llamacpp
