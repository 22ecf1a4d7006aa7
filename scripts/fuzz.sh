#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, AddressSanitizer + UBSan) and runs
# each for FUZZ_SECONDS seconds (or FUZZ_RUNS inputs); fails on any crash,
# leak, sanitizer report or violated invariant (the targets abort on
# those). docs/FUZZING.md describes the targets and how to replay a crash.
#   sc_fuzz_decode     the WebSocket request decoder and the encoders
#   sc_fuzz_wsframe    the RFC 6455 receive parser (frames cut into reads)
#   sc_fuzz_upgrade    the upgrade request head and its answers
#   sc_fuzz_http_body  the HTTP API body decoders and answer encoders
#   sc_fuzz_http_req   the HTTP/1.1 request reader (http_parser glue)
#   sc_fuzz_cluster    the cluster channel's messages (the Redis broker)
#   sc_fuzz_token      the JWT parser (sc_auth_verify), signing, the scope,
#                      origin and API key rules
# Usage: scripts/fuzz.sh [TARGET...]   (default: all six)
# Environment:
#   FUZZ_SECONDS  time per target (default 60; CI uses the default)
#   FUZZ_RUNS     inputs per target instead (e.g. 10000000 for a long run)
#   BUILD_DIR     default build-fuzz
# Each target starts from its seeds in tests/fuzz/corpus/<target> (read
# only) and the working corpus $BUILD_DIR/corpus/<target>, where new inputs
# go, so the repository stays clean. Crash inputs are written to
# $BUILD_DIR/artifacts/; replay one with
#   $BUILD_DIR/<protocol|server>/<target> $BUILD_DIR/artifacts/<target>-crash-...
# One summary line per target goes to stderr and to
# $BUILD_DIR/fuzz-totals.tsv (date, target, execs, seconds, exec/s, corpus,
# result), which adds up over runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test # clang and libclang-rt-14-dev (libFuzzer)

build="${BUILD_DIR:-build-fuzz}"
secs="${FUZZ_SECONDS:-60}"
runs="${FUZZ_RUNS:-}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(sc_fuzz_decode sc_fuzz_wsframe sc_fuzz_upgrade sc_fuzz_http_body
    sc_fuzz_token sc_fuzz_http_req sc_fuzz_cluster)
fi

CC=clang cmake -S . -B "$build" -DSC_FUZZ=ON -DSC_ASAN=ON \
  -DSC_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

if [ -n "$runs" ]; then
  limit=(-runs="$runs")
  what="$runs inputs"
else
  limit=(-max_total_time="$secs")
  what="${secs}s"
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$build/artifacts"
fuzz_stat() { # fuzz_stat NAME LOG: a value of the final stats
  sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}
failed=()
for t in "${targets[@]}"; do
  bin="$build/protocol/$t"
  [ -x "$bin" ] || bin="$build/server/$t"
  seeds="tests/fuzz/corpus/$t"
  work="$build/corpus/$t"
  mkdir -p "$work"
  echo "fuzz: $t for $what" >&2
  start=$SECONDS
  rc=0
  "$bin" "$work" "$seeds" "${limit[@]}" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" >"$build/$t.log" 2>&1 || rc=$?
  took=$((SECONDS - start))
  execs="$(fuzz_stat number_of_executed_units "$build/$t.log")"
  speed="$(fuzz_stat average_exec_per_sec "$build/$t.log")"
  corpus="$(find "$work" "$seeds" -type f | wc -l)"
  result=ok
  if [ "$rc" -ne 0 ]; then
    result=FAILED
    failed+=("$t")
    tail -n 60 "$build/$t.log" >&2
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" \
    "${execs:-0}" "$took" "${speed:-0}" "$corpus" "$result" \
    >>"$build/fuzz-totals.tsv"
  echo "fuzz: $t: ${execs:-?} execs in ${took}s (${speed:-?} exec/s)," \
    "corpus $corpus inputs, $result (log: $build/$t.log)" >&2
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (crash inputs in $build/artifacts/)" >&2
  exit 1
fi
echo "fuzz: all clean" >&2
