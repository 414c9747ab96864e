// Loading ggml backend libraries (libggml-cuda.so) into this process's one
// ggml registry, and loading models onto one of their devices. See loader.go.
#ifndef LLORCH_LOADER_H
#define LLORCH_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "ggml-backend.h"
#include "llama.h"

ggml_backend_reg_t llorch_backend_load(const char *path, char *err, size_t n);
int llorch_backend_score(const char *path);
struct llama_model *llorch_load_dev(const char *path, int n_gpu_layers, bool mmap, uintptr_t handle,
		ggml_backend_dev_t dev);

#endif
