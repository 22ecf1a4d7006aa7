#!/usr/bin/env bash
# Builds the libFuzzer targets of protocol/ (clang, AddressSanitizer +
# UBSan) and runs each for FUZZ_SECONDS seconds; fails on any crash, leak,
# sanitizer report or violated invariant (the targets abort on those).
#   sc_fuzz_decode   the JSON request/body decoders and encoders
#   sc_fuzz_wsframe  the WebSocket receive parser (frames cut into reads)
#   sc_fuzz_upgrade  the WebSocket upgrade request head and its answers
# Usage: scripts/fuzz.sh [TARGET...]   (default: all three)
# Environment: FUZZ_SECONDS (default 20 per target), BUILD_DIR (default
# build-fuzz). The corpus grows in $BUILD_DIR/corpus/<target> (seeded
# here), crash inputs are written to $BUILD_DIR/artifacts/; replay one with
#   $BUILD_DIR/protocol/<target> $BUILD_DIR/artifacts/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --test # clang and libclang-rt-14-dev (libFuzzer)

build="${BUILD_DIR:-build-fuzz}"
secs="${FUZZ_SECONDS:-20}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(sc_fuzz_decode sc_fuzz_wsframe sc_fuzz_upgrade)
fi

CC=clang cmake -S . -B "$build" -DSC_FUZZ=ON -DSC_ASAN=ON \
  -DSC_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

# Seeds: a few valid inputs to start from (the fuzzer mutates them).
seed() { # seed TARGET NAME PRINTF-FORMAT
  mkdir -p "$build/corpus/$1"
  # shellcheck disable=SC2059
  printf "$3" >"$build/corpus/$1/seed-$2"
}
# decode: a request, a batch emit body
seed sc_fuzz_decode req '{"op":"subscribe","id":1,"scope":"doc:1","meta":{"a":[1,2]}}'
seed sc_fuzz_decode emit '[{"scope":"s","paths":["a"],"data":null,"audience":["u"]}]'
# wsframe: 4 setting bytes, then masked frames (mask 01 02 03 04): a text
# message, a message in two fragments with a ping between, a close 1000
seed sc_fuzz_wsframe frames '\x0d\x12\x34\x56\x81\x85\x01\x02\x03\x04\x69\x67\x6f\x68\x6e\x01\x82\x01\x02\x03\x04\x60\x60\x89\x81\x01\x02\x03\x04\x71\x80\x81\x01\x02\x03\x04\x63\x88\x82\x01\x02\x03\x04\x02\xea'
seed sc_fuzz_wsframe split '\x18\x00\x00\x07\x81\x85\x01\x02\x03\x04\x69\x67\x6f\x68\x6e\x8a\x80\x01\x02\x03\x04'
# upgrade: 1 setting byte, then a valid upgrade with a token and the
# subprotocol, and a plain HTTP request
seed sc_fuzz_upgrade ws '\x05GET /ws?token=a%%2Eb&x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: scopecast.v1\r\n\r\n'
seed sc_fuzz_upgrade http '\x00GET /api/stats HTTP/1.1\r\nHost: h\r\n\r\n'

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$build/artifacts"
for t in "${targets[@]}"; do
  echo "fuzz: $t for ${secs}s" >&2
  "$build/protocol/$t" "$build/corpus/$t" -max_total_time="$secs" \
    -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$t-" 2>"$build/$t.log" || {
    tail -n 60 "$build/$t.log" >&2
    echo "fuzz: $t FAILED (log: $build/$t.log)" >&2
    exit 1
  }
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|stat::peak_rss_mb)' \
    "$build/$t.log" | sed "s/^/fuzz: $t /" >&2
  echo "fuzz: $t corpus $(find "$build/corpus/$t" -type f | wc -l) inputs" >&2
done
echo "fuzz: all clean" >&2
