#!/usr/bin/env bash
# The worker side by side with upstream llama.cpp, on this machine, in the same
# minutes: `llorch worker` vs `llama-server` driven by `llorch ctl bench` over
# the OpenAI API (closed loop, K streams), and `llorch worker bench` vs
# `llama-bench` (pp128/tg64). Rounds alternate which server goes first.
#
#   LLAMA_BIN=/path/to/llama.cpp/build/bin scripts/bench-vs-llama.sh [serve|bench|all|summary]
#
# LLAMA_BIN holds llama-server and llama-bench (scripts/build-llama-upstream.sh
# builds them from a llama.cpp source tree at the commit the pinned ollama
# module vendors). Results: $OUT_DIR (default .cache/bench-vs-llama): one JSON
# report per server, case and round, the bench JSON of each round, serve.svg,
# and summary.txt (medians over rounds, ratio worker / llama-server; `summary`
# prints it again from the files). Needs jq.
#
# Knobs (environment): ROUNDS (2), CONCURRENCY (1,4,8), REQUESTS per step (16),
# PROMPT_TOKENS (250), GEN_TOKENS (128), SHARED_PREFIX (200, the shared case),
# THREADS (2), MODEL (qwen05 Q4_0), BENCH_TYPES (q4_0 q8_0 f16).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
LLAMA_BIN=${LLAMA_BIN:?set LLAMA_BIN to the directory with llama-server and llama-bench}
BIN=${BIN:-bin/llorch}
MODELS=${MODELS:-.cache/models}
MODEL=${MODEL:-$MODELS/qwen05-q4_0.gguf}
OUT_DIR=${OUT_DIR:-.cache/bench-vs-llama}
ROUNDS=${ROUNDS:-2}
CONCURRENCY=${CONCURRENCY:-1,4,8}
REQUESTS=${REQUESTS:-16}
PROMPT_TOKENS=${PROMPT_TOKENS:-250}
GEN_TOKENS=${GEN_TOKENS:-128}
SHARED_PREFIX=${SHARED_PREFIX:-200}
THREADS=${THREADS:-2}
BENCH_TYPES=${BENCH_TYPES:-q4_0 q8_0 f16}
LLAMA_PORT=${LLAMA_PORT:-8091}
WORKER_PORT=${WORKER_PORT:-8092}

for b in "$LLAMA_BIN/llama-server" "$LLAMA_BIN/llama-bench" "$BIN"; do
  test -x "$b" || { echo "bench-vs-llama: $b missing (scripts/build-llama-upstream.sh, make build)" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "bench-vs-llama: needs jq" >&2; exit 2; }
mkdir -p "$OUT_DIR"
summary=$OUT_DIR/summary.txt

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
trap 'exit 143' TERM INT

wait_ready() { # URL PATH
  for _ in $(seq 1 600); do
    curl -fsS "$1$2" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "bench-vs-llama: $1 not ready" >&2; return 1
}

serve() {
  test -f "$MODEL" || make --no-print-directory model PRESET=qwen05 TYPE=q4_0 OUT="$MODEL"
  "$LLAMA_BIN/llama-server" -m "$MODEL" -np 4 -c 8192 -t "$THREADS" --host 127.0.0.1 --port "$LLAMA_PORT" \
    >"$OUT_DIR/llama-server.log" 2>&1 &
  pids+=($!)
  # --queue: requests beyond the slots wait, as they do on llama-server (K=8 on 4 slots).
  "$BIN" worker --model "$MODEL" --slots 4 --ctx 2048 --threads "$THREADS" --queue 64 --host 127.0.0.1 --port "$WORKER_PORT" \
    >"$OUT_DIR/worker.log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$LLAMA_PORT" /health
  wait_ready "http://127.0.0.1:$WORKER_PORT" /health
  until curl -fsS "http://127.0.0.1:$WORKER_PORT/health" | jq -e '.status == "ready"' >/dev/null; do sleep 0.2; done
  model_id=$(curl -fsS "http://127.0.0.1:$WORKER_PORT/health" | jq -r .model.id)
  local common=(--api openai --endpoint completions --concurrency "$CONCURRENCY" --requests "$REQUESTS"
    --prompt-tokens "$PROMPT_TOKENS" --gen-tokens "$GEN_TOKENS" --ignore-eos)
  for round in $(seq 1 "$ROUNDS"); do
    order="llama worker"; [ $((round % 2)) = 0 ] && order="worker llama"
    for case in cold shared; do
      # A new seed each round: both servers get the same requests within a
      # round, and no server finds a previous round's prompts in its cache.
      extra=(--warmup 2 --seed "$round"); [ "$case" = shared ] && extra+=(--shared-prefix "$SHARED_PREFIX")
      for side in $order; do
        if [ "$side" = llama ]; then url=http://127.0.0.1:$LLAMA_PORT label="llama-server $case"
        else url=http://127.0.0.1:$WORKER_PORT label="llorch worker $case"; fi
        echo "== round $round, $case, $side" >&2
        "$BIN" ctl bench --url "$url" --model "$model_id" "${common[@]}" "${extra[@]}" --label "$label" \
          --out "$OUT_DIR/$side-$case-r$round.json" >"$OUT_DIR/$side-$case-r$round.txt"
        cat "$OUT_DIR/$side-$case-r$round.txt" >&2
      done
    done
  done
  "$BIN" ctl bench plot --plot "$OUT_DIR/serve.svg" "$OUT_DIR"/llama-*-r1.json "$OUT_DIR"/worker-*-r1.json
  cleanup; pids=()
}

serve_summary() {
  # Medians over rounds, per case and K: worker / llama-server.
  {
    echo "serving: $(basename "$MODEL"), $THREADS threads, prompts ~$PROMPT_TOKENS tokens, $GEN_TOKENS generated (EOS ignored), $REQUESTS requests per step, $(ls "$OUT_DIR"/llama-cold-r*.json | wc -l) rounds (median)"
    printf '%-7s %3s | %12s %12s %6s | %12s %12s %6s\n' case K "llama tok/s" "worker tok/s" ratio "llama TTFT50" "worker TTFT50" ratio
    for case in cold shared; do
      jq -s --arg case "$case" -r '
        def med: sort | if length == 0 then 0 elif length % 2 == 1 then .[(length-1)/2] else (.[length/2-1] + .[length/2]) / 2 end;
        (map(select(.label|startswith("llama"))) | [.[].steps[]] | group_by(.concurrency)) as $l |
        (map(select(.label|startswith("llorch"))) | [.[].steps[]] | group_by(.concurrency)) as $w |
        range(0; $l|length) as $i |
        [$case, $l[$i][0].concurrency,
         ($l[$i] | map(.output_tokens_per_s) | med), ($w[$i] | map(.output_tokens_per_s) | med),
         ($l[$i] | map(.ttft_ms.p50) | med), ($w[$i] | map(.ttft_ms.p50) | med)] |
        "\(.[0]) \(.[1]) \(.[2]) \(.[3]) \(.[4]) \(.[5])"' \
        "$OUT_DIR"/llama-"$case"-r*.json "$OUT_DIR"/worker-"$case"-r*.json |
      while read -r c k lt wt lf wf; do
        printf '%-7s %3s | %12.1f %12.1f %5.2fx | %10.0fms %11.0fms %5.2fx\n' "$c" "$k" "$lt" "$wt" \
          "$(jq -n "$wt / $lt")" "$lf" "$wf" "$(jq -n "if $lf > 0 then $wf / $lf else 0 end")"
      done
    done
  }
}

bench() {
  for t in $BENCH_TYPES; do
    m=$MODELS/qwen05-$t.gguf
    test -f "$m" || make --no-print-directory model PRESET=qwen05 TYPE="$t" OUT="$m"
    for round in $(seq 1 "$ROUNDS"); do
      echo "== round $round, $t: llama-bench, worker bench" >&2
      "$LLAMA_BIN/llama-bench" -m "$m" -t "$THREADS" -p 128 -n 64 -r 5 -o json >"$OUT_DIR/llama-bench-$t-r$round.json" 2>/dev/null
      "$BIN" worker bench --model "$m" --threads "$THREADS" -p 128 -n 64 --reps 5 --json >"$OUT_DIR/worker-bench-$t-r$round.json" 2>/dev/null
    done
  done
}

bench_summary() {
  med() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
  echo
  echo "worker bench vs llama-bench: pp128 / tg64 tokens/s, $THREADS threads, 5 reps, median over rounds"
  printf '%-5s | %9s %9s %6s | %9s %9s %6s\n' type "llama pp" "worker pp" ratio "llama tg" "worker tg" ratio
  for t in $BENCH_TYPES; do
    ls "$OUT_DIR"/llama-bench-"$t"-r*.json >/dev/null 2>&1 || continue
    LP=$(med $(jq '.[] | select(.n_prompt > 0) | .avg_ts' "$OUT_DIR"/llama-bench-"$t"-r*.json))
    LG=$(med $(jq '.[] | select(.n_gen > 0) | .avg_ts' "$OUT_DIR"/llama-bench-"$t"-r*.json))
    WP=$(med $(jq '.results[] | select(.test == "pp128") | .tokens_per_second' "$OUT_DIR"/worker-bench-"$t"-r*.json))
    WG=$(med $(jq '.results[] | select(.test == "tg64") | .tokens_per_second' "$OUT_DIR"/worker-bench-"$t"-r*.json))
    printf '%-5s | %9.1f %9.1f %5.2fx | %9.1f %9.1f %5.2fx\n' "$t" "$LP" "$WP" "$(jq -n "$WP / $LP")" \
      "$LG" "$WG" "$(jq -n "$WG / $LG")"
  done
}

summary() {
  { ls "$OUT_DIR"/llama-cold-r*.json >/dev/null 2>&1 && serve_summary; bench_summary; } | tee "$summary"
}

case $what in
  serve) serve ;;
  bench) bench ;;
  all) serve; bench ;;
  summary) ;;
  *) echo "usage: bench-vs-llama.sh [serve|bench|all|summary]" >&2; exit 2 ;;
esac
summary
echo "bench-vs-llama: $summary" >&2
