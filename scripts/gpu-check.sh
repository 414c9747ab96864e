#!/usr/bin/env bash
# GPU check for `llorch worker --backend cuda`, on a machine with an NVIDIA GPU,
# nvcc and cmake but no Go toolchain and no network.
#
# Where Go is:   make gpu-bundle      # .cache/gpu-bundle: portable bin/llorch + ggml sources (tar)
# Carry .cache/gpu-bundle to the GPU machine's copy of the repository, then, in its root:
#
#   scripts/gpu-check.sh build   # .cache/gpu/lib/llorch/libggml-cuda.so (cmake + nvcc)
#   scripts/gpu-check.sh run     # detect, fail-fast checks, models, bench, one streamed request
#   scripts/gpu-check.sh         # both
#
# Everything the check makes stays in .cache/gpu (a rerun reuses the build and
# the models), which mirrors a release archive: bin/llorch (copied from the
# bundle) finds lib/llorch/ next to it without LLORCH_LIB_PATH. CUDA_ARCHS
# defaults to this GPU's compute capability (the release default is
# 80;86;89;90); CMAKE_ARGS adds CMake options (-DGGML_CUDA_FA=OFF builds
# quicker). PRESET (default qwen05, the Qwen2.5-0.5B shape) picks the
# synthetic model. Logs and JSON go to $OUT when set (the device tool's
# folder), else .cache/gpu/out.
set -euo pipefail
cd "$(dirname "$0")/.."

IN=.cache/gpu-bundle
B=.cache/gpu
LLORCH=$B/bin/llorch
LIB=$B/lib/llorch/libggml-cuda.so
OUTDIR=${OUT:-$B/out}
PRESET=${PRESET:-qwen05}
mkdir -p "$OUTDIR"

step() { printf '\n== %s\n' "$*"; }
die() { echo "gpu-check: $*" >&2; exit 1; }

# http_get HOST:PORT PATH prints the body (bash's /dev/tcp: no curl needed).
http_get() {
  local hp=$1 path=$2
  exec 3<>"/dev/tcp/${hp%:*}/${hp##*:}"
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hp" >&3
  sed '1,/^\r$/d' <&3
  exec 3<&-
}

# expect_fail WANT CMD...: CMD must exit 1 and print WANT.
expect_fail() {
  local want=$1 out rc=0
  shift
  out=$("$@" 2>&1) || rc=$?
  echo "$out" | tail -n 3
  [[ $rc == 1 ]] || die "want exit 1, got $rc: $*"
  [[ $out == *"$want"* ]] || die "output lacks \"$want\": $*"
  echo "ok: exit 1, \"$want\""
}

build() {
  [[ -f $IN/ggml.tar.gz ]] || die "no $IN/ggml.tar.gz: run \`make gpu-bundle\` where Go is and carry $IN"
  if [[ ! -f $B/ggml/src/CMakeLists.txt ]]; then
    mkdir -p "$B/ggml"
    tar -xzf "$IN/ggml.tar.gz" -C "$B/ggml"
  fi
  local archs=${CUDA_ARCHS:-}
  if [[ -z $archs ]] && command -v nvidia-smi >/dev/null; then
    archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d '. ')
    [[ $archs =~ ^[0-9]+$ ]] || archs=
  fi
  step "build libggml-cuda.so (CUDA_ARCHS=${archs:-90})"
  command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
  command -v nvcc >/dev/null || die "nvcc not found (PATH, /usr/local/cuda/bin)"
  nvcc --version | tail -n 2
  cmake --version | head -n 1
  local t0=$SECONDS
  CUDA_ARCHS=${archs:-90} scripts/build-backend.sh cuda "$B/ggml" "$B/build" "$B/lib/llorch" >"$OUTDIR/build.log" 2>&1 ||
    { tail -n 40 "$OUTDIR/build.log"; die "build failed (log: $OUTDIR/build.log)"; }
  tail -n 3 "$OUTDIR/build.log"
  echo "build took $((SECONDS - t0)) s"
  ls -l "$LIB"
  echo "NEEDED:" $(readelf -d "$LIB" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p')
  echo "undefined ggml symbols (resolved from llorch): $(nm -D --undefined-only "$LIB" | grep -c ' ggml_\| gguf_' || true)"
}

run() {
  [[ -x $IN/bin/llorch ]] || die "no $IN/bin/llorch: run \`make gpu-bundle\` where Go is and carry $IN"
  [[ -f $LIB ]] || die "no $LIB: run \`$0 build\` first"
  install -D -m 0755 "$IN/bin/llorch" "$LLORCH"
  pool=$B/pool
  export LLORCH_POOL_DIR=$pool
  tmp=$(mktemp -d)
  trap '"$LLORCH" pool worker stop --all --grace 5s >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

  step "versions"
  "$LLORCH" version
  nvidia-smi --query-gpu=index,name,memory.total,memory.used,driver_version,compute_cap --format=csv

  step "pool backends detect"
  "$LLORCH" pool backends detect | tee "$OUTDIR/detect.txt"
  grep -Eq '^cuda +true' "$OUTDIR/detect.txt" || die "detect does not report cuda available"

  step "models: $PRESET-shaped synthetic F16 and Q4_0 (written here by llorch)"
  [[ -f $pool/models/tiny.gguf ]] || "$LLORCH" pool models synth tiny --preset tiny --type f16 >/dev/null
  for t in f16 q4_0; do
    if [[ ! -f $pool/models/$PRESET-$t.gguf ]]; then
      local t0=$SECONDS
      "$LLORCH" pool models synth "$PRESET-$t" --preset "$PRESET" --type "$t"
      echo "$PRESET-$t written in $((SECONDS - t0)) s"
    fi
  done

  step "fail fast: no such GPU, no library (exit 1, reason, available backends)"
  expect_fail '--gpu 99: no such device' "$LLORCH" worker --backend cuda --gpu 99 --model "$pool/models/tiny.gguf"
  mkdir -p "$tmp/bin" && cp "$LLORCH" "$tmp/bin/llorch"
  expect_fail 'not usable: libggml-cuda.so not found' env -u LLORCH_LIB_PATH "$tmp/bin/llorch" worker --backend cuda --model "$pool/models/tiny.gguf"
  step "LLORCH_LIB_PATH finds the library for a binary elsewhere"
  LLORCH_LIB_PATH=$B/lib/llorch "$tmp/bin/llorch" worker bench --backend cuda --model "$pool/models/tiny.gguf" -p 32 -n 8 --reps 1

  step "bench: pp512 / tg128 and pp128 / tg64, all layers on GPU 0"
  for t in q4_0 f16; do
    "$LLORCH" worker bench --backend cuda --gpu 0 --model "$pool/models/$PRESET-$t.gguf" -p 512 -n 128 --reps 3 | tee "$OUTDIR/bench-$t.txt"
    "$LLORCH" worker bench --backend cuda --gpu 0 --model "$pool/models/$PRESET-$t.gguf" -p 128 -n 64 --reps 3 --json >"$OUTDIR/bench-$t-pp128.json"
    cat "$OUTDIR/bench-$t-pp128.json"
  done
  step "bench: the same on CPU, for scale (4 threads)"
  "$LLORCH" worker bench --backend cpu --threads 4 --model "$pool/models/$PRESET-q4_0.gguf" -p 128 -n 64 --reps 2 | tee "$OUTDIR/bench-cpu-q4_0.txt"

  step "pool worker spawn cuda --gpu 0, /health, one streamed request"
  local line url hp
  line=$("$LLORCH" pool worker spawn cuda --model "$PRESET-q4_0" --gpu 0 --slots 4)
  echo "$line"
  url=$(echo "$line" | awk '{print $2}')
  hp=${url#http://}
  http_get "$hp" /health | tee "$OUTDIR/health.json"
  echo
  grep -q '"backend":"cuda"' "$OUTDIR/health.json" || die "/health does not say backend cuda"
  grep -o '"device":"[^"]*"' "$OUTDIR/health.json" || echo "note: /health has no device yet (workerd does not fill api.Health.Device)"
  "$LLORCH" ctl infer --worker "$hp" --raw --prompt "The GPU check streams one answer:" --max-tokens 256 --ignore-eos --seed 1 \
    >"$OUTDIR/stream.txt" 2>"$OUTDIR/stream-stats.txt"
  echo "streamed $(wc -c <"$OUTDIR/stream.txt") bytes"
  cat "$OUTDIR/stream-stats.txt"
  nvidia-smi --query-gpu=index,memory.used --format=csv
  grep -i 'cuda device\|offload' "$pool/logs/"*.log | head -n 5 || true
  "$LLORCH" pool worker stop --all --grace 5s
  step "done"
}

case ${1:-all} in
  build) build ;;
  run) run ;;
  all) build && run ;;
  *) die "usage: $0 [build|run|all]" ;;
esac
