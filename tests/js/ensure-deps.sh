#!/bin/sh
# Installs the JS test dependencies (package-lock.json) when node_modules is
# missing or incomplete (ws, playwright-core, typescript, @types/ws). Used by
# the ctest fixture js_deps.
set -eu
cd "$(dirname "$0")"
missing=
for dep in ws playwright-core typescript @types/ws; do
  [ -f "node_modules/$dep/package.json" ] || missing="$missing $dep"
done
if [ -z "$missing" ]; then
  echo "tests/js: node_modules present"
  exit 0
fi
echo "tests/js: missing:$missing; npm ci"
exec npm ci --no-audit --no-fund
