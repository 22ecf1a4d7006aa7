#!/bin/sh
# Installs the JS test dependencies (package-lock.json) when node_modules is
# missing or incomplete. Used by the ctest fixture js_deps.
set -eu
cd "$(dirname "$0")"
if [ -f node_modules/ws/package.json ] && [ -f node_modules/playwright-core/package.json ]; then
  echo "tests/js: node_modules present"
  exit 0
fi
exec npm ci --no-audit --no-fund
