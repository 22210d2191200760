#!/usr/bin/env bash
# Runs the native unit tests of the Python policies (unittest, host imports mocked).
# Needs only python3: the tests import the policy logic directly, no toolchain install.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
status=0
for dir in "$here"/*/; do
  [ -f "$dir/app.py" ] || continue
  echo "[py] unittest $(basename "$dir")"
  (cd "$dir" && PYTHONDONTWRITEBYTECODE=1 "$python" -m unittest discover -v -p 'test_*.py') || status=1
done
exit "$status"
