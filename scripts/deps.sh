#!/usr/bin/env bash
# The one place that lists what scopecast needs from Debian 12 to build, test
# and run. README commands, .ci/run and docker/Dockerfile all call this.
# Usage: scripts/deps.sh [--test | --runtime | --containers]
#   (none)        what building scopecast needs
#   --test        and what the test suite needs
#   --runtime     only what the built binary needs to run (the image's
#                 runtime stage)
#   --containers  what building and running the images needs here: podman
#                 and its helpers, mmdebstrap for base images without Docker
#                 Hub, docker-compose (see scripts/container-test.sh)
set -euo pipefail

BUILD_PKGS=(
  build-essential cmake pkg-config
  libwebsockets-dev libwebsockets-evlib-ev libwebsockets-evlib-uv
  libjson-c-dev libjwt-dev libssl-dev libev-dev libhttp-parser-dev
  libpq-dev libhiredis-dev
)
TEST_PKGS=(
  libcmocka-dev python3 python3-websockets python3-venv python3-pip python3-wheel
  python3-setuptools
  clang clang-format libclang-rt-14-dev
  chromium
  postgresql
  redis-server
)

RUNTIME_PKGS=(
  libwebsockets17 libwebsockets-evlib-ev libev4 libjson-c5 libjwt0 libssl3
  libhttp-parser2.9 libpq5 libhiredis0.14 ca-certificates
)
CONTAINER_PKGS=(
  podman buildah mmdebstrap uidmap fuse-overlayfs slirp4netns runc
  docker-compose python3 python3-websockets
  golang-github-containernetworking-plugin-dnsname
)

want=("${BUILD_PKGS[@]}")
case "${1:-}" in
  --runtime) want=("${RUNTIME_PKGS[@]}") ;;
  --containers) want=("${CONTAINER_PKGS[@]}") ;;
esac
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
