#!/usr/bin/env bash
# Runs __TITLE__'s tests natively (test_*.py: rules, cases.json, the component glue) with the
# SDK from sdk/ and the bindings generated from wit/. Ends with "N passed, M failed";
# exit 1 on any failure. Needs python3 >= 3.11 (the generated bindings use typing.Self).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/venv.sh"
export SWITCHYARD_WIT="$here/wit"
cd "$here"
counts="$(PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$here:$here/sdk" "$venv/bin/python" - <<'PY'
import sys, unittest
if sys.version_info < (3, 11):
    sys.exit("error: python >= 3.11 is needed (the generated bindings use typing.Self)")
suite = unittest.defaultTestLoader.discover(".", pattern="test_*.py")
result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
bad = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses) + len(result.skipped)
print(max(result.testsRun - bad, 0), bad)
PY
)" || { echo "error: the test run crashed" >&2; exit 1; }
read -r passed failed <<<"$counts"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
