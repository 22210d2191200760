#!/usr/bin/env bash
# Runs the native unit tests of the JavaScript policies (node --test, host imports mocked).
# Needs only node >= 18: the tests import the policy logic directly, no toolchain install.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
command -v node >/dev/null || { echo "[js] error: node not found" >&2; exit 1; }
shopt -s nullglob
files=(*/test/*.test.js)
[ "${#files[@]}" -gt 0 ] || { echo "[js] error: no tests found" >&2; exit 1; }
echo "[js] node --test ${files[*]}"
node --test "${files[@]}"
