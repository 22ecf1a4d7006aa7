#!/usr/bin/env bash
# The one place that lists what scopecast needs from Debian 12 to build, test
# and run. README commands, .ci/run and docker/Dockerfile all call this.
# Usage: scripts/deps.sh [--test]   (--test adds what the test suite needs)
set -euo pipefail

BUILD_PKGS=(
  build-essential cmake pkg-config
  libwebsockets-dev libwebsockets-evlib-ev libwebsockets-evlib-uv
  libjson-c-dev libjwt-dev libssl-dev libev-dev libhttp-parser-dev
)
TEST_PKGS=(
  libcmocka-dev python3 python3-websockets python3-venv python3-pip python3-wheel
  python3-setuptools
  clang clang-format libclang-rt-14-dev
  chromium
)

want=("${BUILD_PKGS[@]}")
if [ "${1:-}" = "--test" ]; then
  want+=("${TEST_PKGS[@]}")
  # The JS tests need Node.js >= 20 with npm (playwright-core). Machines
  # that already have one (e.g. nodesource's nodejs) keep it; otherwise
  # Debian's nodejs and npm are installed.
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    want+=(nodejs npm)
  fi
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
