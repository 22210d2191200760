#!/usr/bin/env bash
# Builds the Python policies into ${SWITCHYARD_POLICY_OUT:-target/policies}/<name>.wasm
# (relative to the repository root) with componentize-py, against world `policy` of
# the WIT package in <repo>/wit (contract 0.2; override with SWITCHYARD_WIT), with the
# SDK (policy-sdk/python, package switchyard_policy) on the module path. Installs the
# pinned toolchain (requirements.txt) into policies/python/.venv on first run (venv.sh);
# idempotent.
# Needs: python3 >= 3.9 with the venv module (Debian: apt-get install python3-venv).
# Args: policy names to build (default: every policies/python/<name>/app.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${SWITCHYARD_POLICY_OUT:-target/policies}"
case "$out" in /*) ;; *) out="$root/$out" ;; esac
wit="${SWITCHYARD_WIT:-$root/wit}"
sdk="$root/policy-sdk/python"
source "$here/venv.sh"

if [ "$#" -gt 0 ]; then
  names=("$@")
else
  names=()
  for app in "$here"/*/app.py; do
    [ -f "$app" ] && names+=("$(basename "$(dirname "$app")")")
  done
fi
mkdir -p "$out"
echo "[py] building into $out (wit: $wit)"
for name in "${names[@]}"; do
  dir="$here/$name"
  [ -f "$dir/app.py" ] || { echo "[py] error: $dir/app.py not found" >&2; exit 1; }
  start=$(date +%s)
  echo "[py] componentizing $name ..."
  # componentize-py generates the `wit_world` bindings itself; -p adds the policy's
  # own directory and the SDK to the module search path, and `app` is its entry module.
  # --stub-wasi replaces every WASI import with a trapping stub, so the component
  # imports only the switchyard:policy interfaces (the host grants no WASI anyway);
  # a policy that prints or reads the clock through WASI traps and gets the fallback.
  "$venv/bin/componentize-py" -d "$wit" -w policy componentize --stub-wasi -p "$dir" -p "$sdk" -o "$out/$name.wasm" app
  size=$(wc -c < "$out/$name.wasm")
  echo "[py] $out/$name.wasm: $size bytes in $(( $(date +%s) - start ))s"
done
