#!/usr/bin/env bash
# Builds __TITLE__ into __NAME__.wasm (beside this script) with componentize-py, against
# world `policy` of the WIT files in wit/ (contract switchyard:policy@0.2.0), with the SDK
# (sdk/switchyard_policy) and this folder on the module path. Creates .venv on the first run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/venv.sh"
out="$here/__NAME__.wasm"
# --stub-wasi: every WASI import becomes a trapping stub, so the component imports only the
# switchyard:policy interfaces (the gateway grants no WASI).
"$venv/bin/componentize-py" -d "$here/wit" -w policy componentize --stub-wasi -p "$here" -p "$here/sdk" \
  -o "$out" app
echo "$out: $(wc -c < "$out") bytes"
