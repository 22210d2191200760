#!/usr/bin/env bash
# Runs the native unit tests of the Python policies (unittest, host imports mocked).
# Needs only python3: the tests import the policy logic directly, no toolchain install.
# Each policy runs in its own interpreter (their `app` modules share a name).
# Ends with a summary line "python: N passed, M failed"; exit 1 on any failure or no test.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
passed=0
failed=0
for dir in "$here"/*/; do
  [ -f "$dir/app.py" ] || continue
  echo "[py] unittest $(basename "$dir")"
  counts="$(cd "$dir" && PYTHONDONTWRITEBYTECODE=1 "$python" - <<'PY'
import sys, unittest
suite = unittest.defaultTestLoader.discover(".", pattern="test_*.py")
result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
bad = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
print(result.testsRun - bad - len(result.skipped), bad)
PY
)" || { echo "[py] error: test run of $dir crashed" >&2; exit 1; }
  read -r p f <<<"$counts"
  passed=$((passed + p))
  failed=$((failed + f))
done
echo "python: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
