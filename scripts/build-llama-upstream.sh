#!/usr/bin/env bash
# Builds upstream llama.cpp's llama-server and llama-bench, the reference that
# `make bench-vs-llama` runs side by side with the worker, from a llama.cpp
# source tree the user points at. Nothing is copied into this repository.
#
#   scripts/build-llama-upstream.sh SRC_DIR [BUILD_DIR]
#
# SRC_DIR is a llama.cpp checkout or archive at the commit the pinned ollama
# module vendors (ec98e2002), e.g.
#   git -C llama.cpp archive ec98e2002 ':!models' | tar -x -C /tmp/llama-src
# BUILD_DIR defaults to SRC_DIR/build. The build is CMake Release, native CPU,
# no libcurl (models are local files); the binaries land in BUILD_DIR/bin.
set -euo pipefail
src=${1:?usage: build-llama-upstream.sh SRC_DIR [BUILD_DIR]}
build=${2:-$src/build}
if [ ! -f "$src/CMakeLists.txt" ] || [ ! -d "$src/tools/server" ] && [ ! -d "$src/examples/server" ]; then
  echo "build-llama-upstream: $src is not a llama.cpp source tree" >&2
  exit 2
fi
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$src" -B "$build" "${gen[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_TOOLS=ON
cmake --build "$build" --config Release -j "$(nproc)" --target llama-server llama-bench
for b in llama-server llama-bench; do
  test -x "$build/bin/$b" || { echo "build-llama-upstream: $build/bin/$b missing" >&2; exit 1; }
done
"$build/bin/llama-server" --version 2>&1 | head -3 || true
echo "build-llama-upstream: $build/bin/llama-server and $build/bin/llama-bench"
