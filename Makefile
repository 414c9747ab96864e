# llorch Makefile: the one place that owns the cgo build environment.
# `make help` lists the targets.

SHELL := bash
GO    ?= go

# llama.cpp and ggml sources come from the pinned ollama module (see README).
LLAMA_MOD := github.com/ollama/ollama
# `go mod download -json` fetches the module first when the module cache is
# empty (a fresh machine), where `go list -m` would print an empty Dir.
LLAMA_DIR := $(shell $(GO) mod download -json $(LLAMA_MOD) 2>/dev/null | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$$/\1/p')
ifeq ($(LLAMA_DIR),)
  $(error cannot locate the $(LLAMA_MOD) module (go mod download $(LLAMA_MOD) failed: is the Go module proxy reachable?))
endif

# PORTABLE=1 builds for any x86-64-v3 (AVX2) CPU instead of this machine's.
ifeq ($(PORTABLE),1)
  MARCH := -march=x86-64-v3
  # as goreleaser's linux/amd64 builds: the same compiled packages
  export GOAMD64 := v3
else
  MARCH := -march=native
endif
# ggml's src dirs are on the path for backends/llamacpp/ggml_amx*.cpp, which
# compile ggml's AMX kernels from the module on AMX CPUs (the module has no cgo
# package for them).
GGML_SRC := $(LLAMA_DIR)/ml/backend/ggml/ggml/src
export CGO_ENABLED  := 1
export CGO_CPPFLAGS := -I$(LLAMA_DIR)/llama/llama.cpp/include -I$(LLAMA_DIR)/ml/backend/ggml/ggml/include -I$(GGML_SRC) -I$(GGML_SRC)/ggml-cpu -DGGML_USE_CPU_REPACK
export CGO_CFLAGS   := -O3 $(MARCH)
export CGO_CXXFLAGS := -O3 $(MARCH)
# Every go command shares one set of build flags, so build, run, vet and
# staticcheck reuse one compiled llama.cpp (a cold compile takes minutes).
export GOFLAGS := $(strip $(GOFLAGS) -trimpath)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
BACKEND ?= cpu
LDFLAGS := -X github.com/llorch/llorch/core/buildinfo.Version=$(VERSION) \
           -X github.com/llorch/llorch/core/buildinfo.Commit=$(COMMIT) \
           -X github.com/llorch/llorch/core/buildinfo.Backend=$(BACKEND)

BIN    := bin/llorch
MODELS := .cache/models
PRESET ?= tiny
TYPE   ?= f16
OUT    ?= $(MODELS)/$(PRESET)-$(TYPE).gguf
PORT   ?= 8001
ORCH_PORT ?= 8080

# The CUDA backend library (`make cuda`): CMake + nvcc over the pinned module's
# ggml sources (never copied), built in CUDA_BUILD outside them, installed in
# LIB_DIR, which is <dir of bin/llorch>/../lib/llorch as in a release archive.
GGML_DIR   ?= $(LLAMA_DIR)/ml/backend/ggml/ggml
CUDA_ARCHS ?= 80;86;89;90
CUDA_BUILD ?= .cache/ggml-cuda
LIB_DIR    ?= lib/llorch
# What scripts/gpu-check.sh needs on a GPU machine without Go (see gpu-bundle).
GPU_BUNDLE := .cache/gpu-bundle

# Benchmarks: the Qwen2.5-0.5B-shaped synthetic model.
BENCH_THREADS ?= 2
BENCH_TYPES   ?= q4_0 q8_0 f16

.PHONY: help env ui build test soak check bench bench-slots bench-features run model deps clean release-check release-snapshot fuzz cuda cpu-variants loader-check gpu-bundle
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

env: ## print the build environment as shell exports: eval "$$(make -s env)" before go test/vet/gopls
	@echo 'export CGO_ENABLED=$(CGO_ENABLED)'
	@echo "export CGO_CPPFLAGS='$(CGO_CPPFLAGS)'"
	@echo "export CGO_CFLAGS='$(CGO_CFLAGS)'"
	@echo "export CGO_CXXFLAGS='$(CGO_CXXFLAGS)'"
	@echo "export GOFLAGS='$(GOFLAGS)'"

deps: ## download Go modules
	$(GO) mod download

# The dashboard's third-party code (embed/ui/vendor/, generated, not
# committed): uPlot as web/package-lock.json pins it, installed by `npm ci`
# and copied from its dist/; rebuilt only when the lock changes. A plain
# `go build` without it serves the dashboard without charts.
NPM      ?= npm
UI_DIST  := web/node_modules/uplot/dist
UI_VENDOR := embed/ui/vendor/uPlot.iife.min.js embed/ui/vendor/uPlot.min.css

ui: $(UI_VENDOR) ## fetch the dashboard's chart library (uPlot, pinned by web/package-lock.json) into embed/ui/vendor/

$(UI_VENDOR) &: web/package-lock.json web/package.json
	@command -v $(NPM) >/dev/null 2>&1 || { echo "make ui needs node and npm: apt-get install nodejs npm" >&2; exit 1; }
	$(NPM) ci --prefix web --no-audit --no-fund --ignore-scripts
	@mkdir -p embed/ui/vendor
	cp $(UI_DIST)/uPlot.iife.min.js $(UI_DIST)/uPlot.min.css embed/ui/vendor/
	@touch $(UI_VENDOR)

build: ui ## build bin/llorch with the dashboard (PORTABLE=1 for x86-64-v3)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) .

# Allocation checks (tests named *Allocs, using testing.AllocsPerRun) mean
# nothing under -race, which makes sync.Pool drop items; `test` runs them again
# without it, in every package that has one.
GREP_TESTS := grep -rl --include='*_test.go' --exclude-dir=.cache --exclude-dir=.git --exclude-dir=node_modules
ALLOC_PKGS = $(shell $(GREP_TESTS) 'testing.AllocsPerRun' . | xargs -r -n1 dirname | sort -u)

test: ui ## run all tests with the race detector, shuffled; then the allocation checks without it
	$(GO) test -race -shuffle=on -count=1 -timeout 20m ./...
	$(GO) test -count=1 -run 'Allocs$$' -v $(ALLOC_PKGS)

# The chaos/soak test (tests/soak): `make test` runs it for 60 seconds under
# the race detector; this runs it longer, on a plain build (resident memory as
# in production), and prints its summary. SOAK_SEED=N replays a run's faults.
SOAK_DURATION ?= 10m
SOAK_TIMEOUT  ?= 2h
soak: ## chaos/soak test: tasks flow while workers and the orchestrator are killed -9 and frozen (SOAK_DURATION=10m, SOAK_SEED=N)
	SOAK_DURATION=$(SOAK_DURATION) $(if $(SOAK_SEED),SOAK_SEED=$(SOAK_SEED)) $(GO) test -count=1 -v -run '^TestSoak$$' -timeout $(SOAK_TIMEOUT) ./tests/soak

check: ## gofmt, go vet, staticcheck, import boundaries, go mod tidy diff
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(GO) run ./tools/importcheck
	@cp go.mod /tmp/llorch-go.mod.bak; cp go.sum /tmp/llorch-go.sum.bak; \
	  $(GO) mod tidy; \
	  if ! git diff --quiet -- go.mod go.sum; then echo "go mod tidy changes go.mod/go.sum:"; git diff -- go.mod go.sum; \
	    cp /tmp/llorch-go.mod.bak go.mod; cp /tmp/llorch-go.sum.bak go.sum; exit 1; fi

model: ## write a synthetic GGUF: PRESET=tiny|qwen05 TYPE=f16|q8_0|q4_0 OUT=path
	@mkdir -p $(dir $(OUT))
	$(GO) run ./tools/mkmodel -preset $(PRESET) -type $(TYPE) -out $(OUT)

run: build ## start an orchestrator with one local pool and the synthetic tiny model declared (min_replicas 0): the first request starts its worker
	@test -f $(MODELS)/tiny-f16.gguf || $(MAKE) --no-print-directory model PRESET=tiny TYPE=f16 OUT=$(MODELS)/tiny-f16.gguf
	@data=$$(mktemp -d); \
	  sed -e "s|@POOL_DIR@|$$data/pool|" -e "s|@LLORCH@|$(abspath $(BIN))|" -e "s|@MODEL@|$(abspath $(MODELS))/tiny-f16.gguf|" \
	    embed/run-fleet.yaml > "$$data/fleet.yaml"; \
	  trap '$(BIN) pool --pool-dir "$$data/pool" worker stop --all --grace 5s >/dev/null 2>&1; rm -rf "$$data"' EXIT; \
	  trap 'exit 143' TERM INT; \
	  echo "orchestrator on http://127.0.0.1:$(ORCH_PORT), with pool 'local' and model 'tiny' (started on the first request) — in another shell:"; \
	  echo "  curl -N http://127.0.0.1:$(ORCH_PORT)/v2/tasks -H 'Accept: text/event-stream' -d '{\"model\":\"tiny\",\"prompt\":\"Hello\",\"max_tokens\":32,\"seed\":1}'"; \
	  $(BIN) orchestrate --listen 127.0.0.1:$(ORCH_PORT) --data-dir "$$data" --fleet "$$data/fleet.yaml"

bench: build ## llama-bench-style pp128/tg64 on the qwen05 synthetic model, plus Go benchmarks
	@for t in $(BENCH_TYPES); do \
	  test -f $(MODELS)/qwen05-$$t.gguf || $(MAKE) --no-print-directory model PRESET=qwen05 TYPE=$$t OUT=$(MODELS)/qwen05-$$t.gguf || exit 1; \
	  echo "== qwen05 $$t"; \
	  $(BIN) worker bench --model $(MODELS)/qwen05-$$t.gguf --threads $(BENCH_THREADS) -p 128 -n 64 --reps 5 || exit 1; \
	done
	$(GO) test -run '^$$' -bench . -benchmem ./core/...

clean: ## remove build outputs and generated models
	rm -rf bin .cache

release-check: ## validate goreleaser.yaml (goreleaser v2.15.1)
	goreleaser check -f goreleaser.yaml

release-snapshot: ## build the linux/amd64 cpu archive into dist/ (with CPU variants: needs cmake; ARM64=1: also arm64, needs g++-aarch64-linux-gnu; CUDA=1: also cuda, needs nvcc)
	$(if $(filter 1,$(ARM64)),LLORCH_ARM64=1) $(if $(filter 1,$(CUDA)),LLORCH_CUDA=1) goreleaser release --snapshot --clean -f goreleaser.yaml

cuda: ## build lib/llorch/libggml-cuda.so with CMake + nvcc (CUDA_ARCHS="80;86;89;90")
	CUDA_ARCHS='$(CUDA_ARCHS)' scripts/build-backend.sh cuda $(GGML_DIR) $(CUDA_BUILD) $(LIB_DIR)

cpu-variants: ## build lib/llorch/libggml-cpu-{skylakex,icelake,alderlake}.so: AVX-512/AVX-VNNI CPU backends a portable llorch loads at run time
	scripts/build-backend.sh cpu $(GGML_DIR) .cache/ggml-cpu $(LIB_DIR)

# The released CPU variants, plus haswell (AVX2, what x86-64-v3 already is):
# on a CI machine without AVX-512 or AVX-VNNI no released variant applies, and
# TestCPUVariant needs one that does.
LOADER_CPU_VARIANTS ?= haswell skylakex icelake alderlake
loader-check: ## load real ggml modules (BLAS, CPU variants; needs cmake, libopenblas-dev) into llorch's one registry
	scripts/build-backend.sh blas $(GGML_DIR) .cache/ggml-blas .cache/loader-lib
	CPU_VARIANTS='$(LOADER_CPU_VARIANTS)' scripts/build-backend.sh cpu $(GGML_DIR) .cache/ggml-cpu .cache/loader-lib
	LLORCH_TEST_BACKEND_LIB=$(CURDIR)/.cache/loader-lib/libggml-blas.so $(GO) test -count=1 -run '^TestLoadBackend' -v ./backends/llamacpp/
	LLORCH_TEST_CPU_VARIANTS=$(CURDIR)/.cache/loader-lib $(GO) test -count=1 -run '^TestCPUVariant$$' -v ./modes/worker/

gpu-bundle: ## stage .cache/gpu-bundle for scripts/gpu-check.sh: a portable bin/llorch and the ggml sources (tar)
	$(MAKE) --no-print-directory build PORTABLE=1 BIN=$(GPU_BUNDLE)/bin/llorch
	tar -C $(GGML_DIR) -czf $(GPU_BUNDLE)/ggml.tar.gz --mode=u+w --exclude=./src/ggml-vulkan --exclude=./src/ggml-metal .
	@ls -l $(GPU_BUNDLE)/bin/llorch $(GPU_BUNDLE)/ggml.tar.gz

FUZZTIME ?= 30s
# Every Fuzz* function in the tree: packages found by grep, names by
# `go test -list` (so a fuzzer added anywhere runs without editing this file).
fuzz: ## run every Fuzz* function in the tree for FUZZTIME each (default 30s)
	@set -e; n=0; \
	for pkg in $$($(GREP_TESTS) '^func Fuzz' . | xargs -r -n1 dirname | sort -u); do \
	  list=$$($(GO) test -list '^Fuzz' $$pkg) || { echo "$$list"; exit 1; }; \
	  for fz in $$(echo "$$list" | grep '^Fuzz'); do \
	    echo "== $$pkg $$fz"; \
	    $(GO) test -run '^$$' -fuzz "^$$fz\$$" -fuzztime $(FUZZTIME) $$pkg; \
	    n=$$((n+1)); \
	  done; \
	done; \
	echo "fuzz: $$n fuzzers ran for $(FUZZTIME) each"

LOAD_MODEL ?= $(MODELS)/qwen05-q4_0.gguf
LOAD_PORT  ?= 8011
bench-features: build ## decode tok/s of the OpenAI features on qwen05 Q4_0: plain, logprobs, a permissive and a narrow grammar
	@test -f $(LOAD_MODEL) || $(MAKE) --no-print-directory model PRESET=qwen05 TYPE=q4_0 OUT=$(LOAD_MODEL)
	@$(BIN) worker --model $(LOAD_MODEL) --port $(LOAD_PORT) --slots 1 --threads $(BENCH_THREADS) --ctx 2048 --log-level warn & pid=$$!; \
	  trap "kill $$pid 2>/dev/null" EXIT; \
	  for i in $$(seq 100); do curl -sf http://127.0.0.1:$(LOAD_PORT)/health | grep -q '"ready"' && break; sleep 0.2; done; \
	  $(GO) run ./tools/featbench -url http://127.0.0.1:$(LOAD_PORT) -tokens 96 -rounds 3

bench-slots: build ## slots benchmark: K=1 and K=4 streams, ~250-token prompts, 128 tokens, cold vs shared-prefix TTFT
	@test -f $(LOAD_MODEL) || $(MAKE) --no-print-directory model PRESET=qwen05 TYPE=q4_0 OUT=$(LOAD_MODEL)
	@$(BIN) worker --model $(LOAD_MODEL) --port $(LOAD_PORT) --slots 4 --threads $(BENCH_THREADS) --ctx 2048 --log-level warn & pid=$$!; \
	  trap "kill $$pid 2>/dev/null" EXIT; \
	  for i in $$(seq 100); do curl -sf http://127.0.0.1:$(LOAD_PORT)/health | grep -q '"ready"' && break; sleep 0.2; done; \
	  bench="$(BIN) ctl bench --url http://127.0.0.1:$(LOAD_PORT) --prompt-tokens 250 --gen-tokens 128"; \
	  echo "== K=1 cold";            $$bench --concurrency 1 --requests 4 --label "K=1 cold" || exit 1; \
	  echo "== K=4 cold";            $$bench --concurrency 4 --requests 8 --label "K=4 cold" || exit 1; \
	  echo "== K=1 shared prefix";   $$bench --concurrency 1 --requests 4 --warmup 1 --shared-prefix 200 --label "K=1 shared prefix" || exit 1; \
	  echo "== K=4 shared prefix";   $$bench --concurrency 4 --requests 8 --warmup 1 --shared-prefix 200 --label "K=4 shared prefix" || exit 1

# Cache-aware routing (issue #17): for each policy a fresh orchestrator and
# 3 workers (cold caches), 12 four-turn conversations with their own ~400-token
# system prompts, interleaved, no session ids. CACHEBENCH_ARGS adds flags
# (-json FILE, -conversations N, ...; see tools/cachebench).
.PHONY: check-resume
check-resume: ## a greedy run on qwen05 Q4_0 cut at several points and continued (resume_tokens) equals the uncut run
	@test -f $(LOAD_MODEL) || $(MAKE) --no-print-directory model PRESET=qwen05 TYPE=q4_0 OUT=$(LOAD_MODEL)
	LLORCH_RESUME_MODEL=$(abspath $(LOAD_MODEL)) $(GO) test -count=1 -v -run TestResumeEqualityOnModel ./core/workerd

# The orchestrator's own cost (issue #18): a 64-token stream from a fake
# worker that answers at once, straight and through the orchestrator,
# interleaved; budget: what a byte-passing proxy (llama-swap) adds, 0.8 ms.
OVERHEAD_BUDGET_MS ?= 0.8
.PHONY: bench-overhead
bench-overhead: ## orchestrator relay overhead: added time and TTFT per 64-token stream (native, /v1) and relay tokens/s, against a budget
	@{ $(GO) test -run '^$$' -bench 'BenchmarkAddedStream' -benchtime 400x ./core/orchestrator; \
	   $(GO) test -run '^$$' -bench 'BenchmarkRelay$$' -benchtime 5x ./core/orchestrator; } | awk -v budget=$(OVERHEAD_BUDGET_MS) ' \
	  /^BenchmarkAddedStream/ { name = $$1; sub(/^BenchmarkAddedStream\//, "", name); sub(/-[0-9]+$$/, "", name); \
	    for (i = 3; i < NF; i += 2) v[$$(i+1)] = $$i; \
	    printf "%-7s added %.3f ms/stream (budget %.1f: %s), added TTFT %.3f ms, direct %.3f ms, through %.3f ms\n", name, \
	      v["added-p50-ms"], budget, (v["added-p50-ms"] <= budget ? "within" : "OVER"), v["added-ttft-p50-ms"], v["direct-p50-ms"], v["via-p50-ms"] } \
	  /^BenchmarkRelay/ { for (i = 3; i < NF; i += 2) if ($$(i+1) == "tokens/s") printf "relay   %.0f tokens/s (one 20000-token stream)\n", $$i } \
	  /^(FAIL|panic)/ { print; bad = 1 } END { exit bad }'

.PHONY: bench-cache
bench-cache: build ## cache-aware routing benchmark on qwen05 Q4_0: TTFT p50/p95, tokens/s, hit ratio, least-loaded vs cache-aware
	@test -f $(LOAD_MODEL) || $(MAKE) --no-print-directory model PRESET=qwen05 TYPE=q4_0 OUT=$(LOAD_MODEL)
	$(GO) run ./tools/cachebench -bin $(BIN) -model $(LOAD_MODEL) -policies least-loaded,cache-aware $(CACHEBENCH_ARGS)
