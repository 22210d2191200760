#!/usr/bin/env bash
# Unit tests against the SDK's mock host, then (with a `switchyard` on PATH or in
# $SWITCHYARD) the case file through the real sandbox.
set -euo pipefail
cd "$(dirname "$0")"
cargo test
switchyard="${SWITCHYARD:-$(command -v switchyard || true)}"
if [ -z "$switchyard" ]; then
  echo "no switchyard binary (PATH or \$SWITCHYARD): case file not run through the sandbox" >&2
  exit 1
fi
bash build.sh
"$switchyard" policy test --warm __NAME__.wasm cases.json
