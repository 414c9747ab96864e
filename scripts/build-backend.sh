#!/usr/bin/env bash
# Builds one ggml backend module for llorch (see scripts/ggml-backend/CMakeLists.txt)
# and installs it as OUT_DIR/libggml-BACKEND.so, where `llorch worker --backend
# BACKEND` looks for it (<dir of llorch>/../lib/llorch, or $LLORCH_LIB_PATH).
#
#   scripts/build-backend.sh BACKEND GGML_DIR BUILD_DIR OUT_DIR
#
# BACKEND is cuda (needs nvcc; CUDA_ARCHS, default "80;86;89;90"), cpu (the
# x86-64 CPU variants CPU_VARIANTS, default "skylakex icelake alderlake", as
# OUT_DIR/libggml-cpu-VARIANT.so), or blas/rpc (used by `make loader-check`).
# GGML_DIR is the pinned ollama module's ml/backend/ggml/ggml; BUILD_DIR must
# lie outside it. Needs cmake (ninja is used when present). JOBS defaults to
# the CPU count; CMAKE_ARGS adds options (e.g. -DGGML_CUDA_FA=OFF).
set -euo pipefail

if (($# != 4)); then
  echo "usage: $0 BACKEND GGML_DIR BUILD_DIR OUT_DIR" >&2
  exit 2
fi
backend=$1 ggml=$2 build=$3 out=$4
if [[ ! -f $ggml/src/CMakeLists.txt ]]; then
  echo "build-backend: $ggml is not ggml's source directory (want <ollama module>/ml/backend/ggml/ggml)" >&2
  exit 1
fi
command -v cmake >/dev/null || { echo "build-backend: cmake not found" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
args=(-S "$here/ggml-backend" -B "$build" -DGGML_DIR="$ggml" -DLLORCH_BACKEND="$backend" -DCMAKE_BUILD_TYPE=Release)
if [[ ! -f $build/CMakeCache.txt ]] && command -v ninja >/dev/null; then
  args+=(-G Ninja)
fi
case $backend in
  cuda)
    if ! command -v nvcc >/dev/null && [[ -z ${CUDACXX:-} ]]; then
      for d in /usr/local/cuda/bin /opt/cuda/bin; do
        if [[ -x $d/nvcc ]]; then export PATH="$d:$PATH"; break; fi
      done
    fi
    command -v nvcc >/dev/null || [[ -n ${CUDACXX:-} ]] || {
      echo "build-backend: nvcc not found (install the CUDA toolkit, or set CUDACXX)" >&2; exit 1; }
    args+=(-DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-80;86;89;90}")
    ;;
esac

targets=("ggml-$backend")
if [[ $backend == cpu ]]; then
  targets=()
  for v in ${CPU_VARIANTS:-skylakex icelake alderlake}; do targets+=("ggml-cpu-$v"); done
fi

# shellcheck disable=SC2206 # CMAKE_ARGS is a list of words
args+=(${CMAKE_ARGS:-})
cmake "${args[@]}"
cmake --build "$build" --target "${targets[@]}" -j "${JOBS:-$(nproc)}"

mkdir -p "$out"
for t in "${targets[@]}"; do
  lib="$build/lib/lib$t.so"
  [[ -f $lib ]] || { echo "build-backend: lib$t.so not produced" >&2; exit 1; }
  # The module must not bring its own ggml: llorch provides it (one registry).
  if readelf -d "$lib" | grep -E 'NEEDED.*libggml' >&2; then
    echo "build-backend: $lib depends on a ggml library; llorch must be its only ggml" >&2
    exit 1
  fi
  install -m 0755 "$lib" "$out/lib$t.so"
  echo "built $out/lib$t.so"
done
