#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include "loader.h"
#include "_cgo_export.h"

// Symbols of ggml itself (ggml-base and the registry). llorch defines them
// and exports them; a backend module must leave them undefined.
static const char *const ggml_own[] = {"ggml_init", "ggml_backend_load", "ggml_backend_reg_count"};

// llorch_backend_load registers the backend module at path in ggml's registry
// (the one compiled into llorch), after checking that the module resolves
// against llorch's ggml instead of bringing a copy: dlsym on the module's
// handle searches the module and its dependencies, never the executable, so
// finding a ggml symbol there means a second ggml. On failure it returns NULL
// and writes the reason to err.
ggml_backend_reg_t llorch_backend_load(const char *path, char *err, size_t n) {
	dlerror();
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(err, n, "%s", e != NULL ? e : "dlopen failed");
		return NULL;
	}
	for (size_t i = 0; i < sizeof ggml_own / sizeof ggml_own[0]; i++) {
		if (dlsym(h, ggml_own[i]) != NULL) {
			snprintf(err, n, "%s carries its own copy of ggml (it or a library it needs defines %s); "
					"build it with `make cuda`, which leaves ggml to llorch", path, ggml_own[i]);
			dlclose(h);
			return NULL;
		}
	}
	if (dlsym(h, "ggml_backend_init") == NULL) {
		snprintf(err, n, "%s is not a ggml backend module (no ggml_backend_init)", path);
		dlclose(h);
		return NULL;
	}
	// ggml opens the module again (the same, already loaded, object) and keeps it.
	ggml_backend_reg_t reg = ggml_backend_load(path);
	dlclose(h);
	if (reg == NULL) {
		snprintf(err, n, "ggml could not initialize %s (backend API version mismatch, or not supported on this "
				"system; --log-level debug shows ggml's log)", path);
	}
	return reg;
}

// llorch_backend_score returns the module's ggml_backend_score(): how well
// it suits this machine, 0 when it cannot run here (a CPU variant built for
// instructions this CPU lacks); -1 when it does not load or has no score.
int llorch_backend_score(const char *path) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) return -1;
	int (*score)(void) = (int (*)(void))dlsym(h, "ggml_backend_score");
	int s = score != NULL ? score() : -1;
	dlclose(h);
	return s;
}

static bool load_progress(float progress, void *user) { return llorchProgress(progress, user); }

// llorch_load_dev loads a model whose offloaded layers all go to dev. The
// explicit split gives dev every layer without asking its free memory.
struct llama_model *llorch_load_dev(const char *path, int n_gpu_layers, bool mmap, uintptr_t handle,
		ggml_backend_dev_t dev) {
	ggml_backend_dev_t devs[2] = {dev, NULL};
	float *split = calloc(llama_max_devices(), sizeof(float));
	if (split == NULL) return NULL;
	split[0] = 1.0f;
	struct llama_model_params p = llama_model_default_params();
	p.devices = devs;
	p.main_gpu = 0;
	p.tensor_split = split;
	p.n_gpu_layers = n_gpu_layers;
	p.use_mmap = mmap;
	if (handle != 0) {
		p.progress_callback = load_progress;
		p.progress_callback_user_data = (void *)handle;
	}
	struct llama_model *m = llama_model_load_from_file(path, p);
	free(split);
	return m;
}
