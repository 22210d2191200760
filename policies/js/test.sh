#!/usr/bin/env bash
# Runs the JavaScript tests without building anything: the SDK's tests (policy-sdk/js/test),
# every policy's unit tests (<name>/test/*.test.js, node --test, MockHost) and every
# policy's cases.json through the SDK's native case runner (the `policy` export of
# <name>/logic.js, else <name>/policy.js). Needs only node >= 20.6 (the SDK's type check
# also uses tsc from node_modules, after `bash policies/js/build.sh`, and is reported as
# skipped without it). Ends with a summary line; exit 1 on any failure.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
sdk="$(cd "$here/../../policy-sdk/js" && pwd)"
cd "$here"
command -v node >/dev/null || { echo "[js] error: node not found" >&2; exit 1; }
shopt -s nullglob
files=("$sdk"/test/*.test.js */test/*.test.js)
[ "${#files[@]}" -gt 0 ] || { echo "[js] error: no tests found" >&2; exit 1; }

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
echo "[js] node --test ${files[*]#"$here/"}"
node --test --test-reporter=tap "${files[@]}" | tee "$log"
unit_rc=${PIPESTATUS[0]}
count() { sed -n "s/^# $1 \([0-9]*\)$/\1/p" "$log" | tail -1; }
pass=$(count pass); fail=$(count fail); skipped=$(count skipped)

cases_ok=0; cases_failed=0
for cases in */cases.json; do
  name="$(dirname "$cases")"
  module="$name/logic.js"; [ -f "$module" ] || module="$name/policy.js"
  echo "[js] native cases: $cases ($module)"
  if node "$sdk/run-cases.js" "$module" "$cases"; then
    cases_ok=$((cases_ok + 1))
  else
    cases_failed=$((cases_failed + 1))
  fi
done

echo "[js] summary: unit tests ${pass:-0} passed, ${fail:-?} failed, ${skipped:-0} skipped; case files ${cases_ok} passed, ${cases_failed} failed (native)"
[ "$unit_rc" -eq 0 ] && [ "${fail:-1}" -eq 0 ] && [ "$cases_failed" -eq 0 ] || exit 1
