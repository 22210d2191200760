#!/usr/bin/env bash
# Installs the pinned toolchain on first run (npm install) and builds __NAME__.wasm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v node >/dev/null || { echo "error: node not found (need node >= 20.6 and npm)" >&2; exit 1; }
command -v npm >/dev/null || { echo "error: npm not found" >&2; exit 1; }
if [ ! -d node_modules/@bytecodealliance/componentize-js ]; then
  echo "installing the toolchain (npm install) ..."
  npm install --no-audit --no-fund --loglevel=error
fi
node build.mjs "$@"
