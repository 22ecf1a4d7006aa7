#!/usr/bin/env bash
# Installs what the tests need (scripts/deps.sh --test), builds scopecast and
# runs every test with ctest. This is the README's test command.
# Usage: scripts/test.sh [asan|tsan|release]   (default: release)
# Environment: BUILD_DIR (default build-<mode>), CTEST_ARGS (extra ctest args)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-release}"
bash scripts/deps.sh --test

cmake_args=(-DSC_WERROR=ON)
ctest_args=(--output-on-failure)
case "$mode" in
  release) cmake_args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan) cmake_args+=(-DCMAKE_BUILD_TYPE=Debug -DSC_ASAN=ON) ;;
  tsan) cmake_args+=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSC_TSAN=ON)
        ctest_args+=(-L threads) ;;
  *) echo "usage: $0 [release|asan|tsan]" >&2; exit 2 ;;
esac
build="${BUILD_DIR:-build-$mode}"
cmake -S . -B "$build" "${cmake_args[@]}" >/dev/null
cmake --build "$build" -j"$(nproc)"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"
cd "$build"
# shellcheck disable=SC2086
ctest "${ctest_args[@]}" ${CTEST_ARGS:-}
