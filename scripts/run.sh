#!/usr/bin/env bash
# README command 1: installs what scopecast needs (scripts/deps.sh), builds
# it and runs it in demo mode on http://127.0.0.1:8080 (demo page at /,
# WebSocket at /ws). Extra arguments go to scopecast, e.g.
#   scripts/run.sh --port 9000 --log-level debug
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
build="${BUILD_DIR:-build-run}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSC_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target scopecast >/dev/null
exec "$build/server/scopecast" --demo --web-root "$PWD/web" "$@"
