#!/usr/bin/env bash
# Builds the JavaScript policies into ${SWITCHYARD_POLICY_OUT:-target/policies}/<name>.wasm
# (relative to the repository root). Installs the pinned toolchain into
# policies/js/node_modules on first run (npm ci from package-lock.json); idempotent.
# Needs: node >= 18 and npm. Optional: SWITCHYARD_WIT (default: <repo>/wit).
# Args: policy names to build (default: every policies/js/<name>/policy.js).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${SWITCHYARD_POLICY_OUT:-target/policies}"
case "$out" in /*) ;; *) out="$root/$out" ;; esac
wit="${SWITCHYARD_WIT:-$root/wit}"

command -v node >/dev/null || { echo "[js] error: node not found (need node >= 18 and npm)" >&2; exit 1; }
command -v npm >/dev/null || { echo "[js] error: npm not found" >&2; exit 1; }

cd "$here"
stamp="node_modules/.switchyard-lock"
if [ ! -f "$stamp" ] || ! cmp -s package-lock.json "$stamp"; then
  echo "[js] installing toolchain (npm ci) into $here/node_modules ..."
  npm ci --no-audit --no-fund --loglevel=error
  cp package-lock.json "$stamp"
else
  echo "[js] toolchain up to date ($(node -p 'require("@bytecodealliance/componentize-js/package.json").version' 2>/dev/null || echo componentize-js))"
fi

echo "[js] building into $out (wit: $wit)"
node build.mjs "$wit" "$out" "$@"
