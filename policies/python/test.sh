#!/usr/bin/env bash
# Tests the Python SDK and policies natively: the SDK's tests (policy-sdk/python/tests), each
# policy's test_*.py, and each policy's cases.json through the SDK's case runner (its app.Router
# over componentize-py's generated bindings, imports answered by MockHost). Uses the venv of
# build.sh (venv.sh: toolchain, jsonschema, the SDK editable); needs python3 >= 3.11 (the
# generated bindings use typing.Self). Each suite runs in its own interpreter (the policies'
# `app` modules share a name). Ends with "python: N passed, M failed"; exit 1 on any failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
source "$here/venv.sh"
export SWITCHYARD_WIT="${SWITCHYARD_WIT:-$root/wit}"
export PYTHONDONTWRITEBYTECODE=1
py="$venv/bin/python"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "[py] error: $("$py" --version) is too old: the tests need python >= 3.11 (set PYTHON and remove $venv)" >&2
  exit 1
}
passed=0
failed=0

# Adds "passed failed" (what a suite printed) to the totals; a suite that crashed or printed
# no counts ends the run with an error naming it ($1).
count() {
  local p f
  read -r p f <<<"$2"
  case "$p$f" in ''|*[!0-9]*) echo "[py] error: $1 crashed (no test counts)" >&2; exit 1 ;; esac
  passed=$((passed + p))
  failed=$((failed + f))
}

# unittest in folder $1 (discovering $2), printing "passed failed".
unit() {
  (cd "$1" && "$py" - "$2" <<'PY'
import sys, unittest
suite = unittest.defaultTestLoader.discover(".", pattern=sys.argv[1])
result = unittest.TextTestRunner(verbosity=1, stream=sys.stderr).run(suite)
bad = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
print(max(result.testsRun - len(result.skipped) - bad, 0), bad + len(result.skipped))
PY
  )
}

echo "[py] unittest policy-sdk/python/tests"
count "SDK tests" "$(unit "$root/policy-sdk/python/tests" "test_*.py" || true)"

for dir in "$here"/*/; do
  [ -f "$dir/app.py" ] || continue
  name="$(basename "$dir")"
  echo "[py] unittest $name"
  count "$name tests" "$(unit "$dir" "test_*.py" || true)"
  [ -f "$dir/cases.json" ] || continue
  echo "[py] cases $name/cases.json (native runner, component glue)"
  count "$name cases" "$(cd "$dir" && "$py" - <<'PY'
import os, sys
from switchyard_policy import cases, harness
harness.load_bindings(os.environ["SWITCHYARD_WIT"])
sys.path.insert(0, os.getcwd())
import app
results = cases.run_file(app.Router, "cases.json")
for r in results:
    print("%s %s%s" % ("PASS" if r.passed else "FAIL", r.name, "" if r.passed else ": " + "; ".join(r.problems)),
          file=sys.stderr)
bad = sum(not r.passed for r in results)
print(len(results) - bad, bad)
PY
)"
done

echo "python: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
