#!/usr/bin/env bash
# Runs every Switchyard test on a fresh machine: installs the wasm target, the default
# model, the policy toolchains, headless Chromium and PostgreSQL's server binaries (the
# ledger tests start their own server), builds the policies, then runs the Rust test
# suites (the dashboard's in Chromium: screenshots in target/ui-screenshots/), the Python/JS
# policy unit tests and every policy's case file through the real sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

step "wasm target"
rustup target add wasm32-wasip2

step "default model"
bash host/local/fetch-model.sh
bash host/local/fetch-embed-model.sh

step "policies"
bash policies/build.sh

step "headless chromium (the dashboard test drives it; Debian's package, no browser download)"
if ! command -v chromium >/dev/null 2>&1 && [ -z "${SWITCHYARD_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium
fi

step "postgresql server binaries (the PostgreSQL ledger tests start their own server)"
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  echo "present"
else
  echo "installing Debian's postgresql package"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
fi

step "cargo test"
# Gateways under test log everything here; the log scan below searches it for secrets.
export SWITCHYARD_TEST_LOG_DIR="$PWD/target/test-logs"
rm -rf "$SWITCHYARD_TEST_LOG_DIR"
mkdir -p "$SWITCHYARD_TEST_LOG_DIR"
cargo test --workspace --all-targets

step "end to end: the openai Python SDK against the embedded default"
bash tests/e2e/run.sh

step "python and js policy unit tests"
bash policies/python/test.sh
bash policies/js/test.sh

step "log scan: no test API key, client key or admin token in any log"
bash tests/log_scan.sh "$SWITCHYARD_TEST_LOG_DIR"

step "policy case files through the sandbox"
# The binary `cargo test` built above (a `cargo run -p switchyard` would compile it again
# with one package's features).
out="${SWITCHYARD_POLICY_OUT:-target/policies}"
shopt -s nullglob
failed=0
for cases in policies/*/cases.json policies/python/*/cases.json policies/js/*/cases.json; do
  name=$(basename "$(dirname "$cases")")
  echo "--- $name"
  # --warm: every shipped policy must decide the same on reused instances.
  # The compiled-component cache the Rust tests filled: shipped policies compile once.
  target/debug/switchyard policy test --warm --cache-dir target/test-policy-cache \
    "$out/$name.wasm" "$cases" || failed=$((failed + 1))
done
if [ "$failed" -ne 0 ]; then
  echo "$failed policy case file(s) failed" >&2
  exit 1
fi

step "policy new: each language's generated project passes its tests and its case file"
rm -rf target/policy-new
switchyard="$PWD/target/debug/switchyard"
for lang in rust python js; do
  dir="target/policy-new/$lang"
  echo "--- $lang"
  "$switchyard" policy new "Team-Router" --lang "$lang" --dir "$dir"
  (
    cd "$dir"
    case "$lang" in
      # The generated project's own build, kept apart from the workspace's target folder.
      rust) SWITCHYARD="$switchyard" CARGO_TARGET_DIR="$PWD/../rust-target" bash test.sh ;;
      python) bash test.sh && bash build.sh ;;
      js) npm install --prefer-offline --no-audit --no-fund --loglevel=error && npm test \
            && npm run cases && bash build.sh ;;
    esac
    if [ "$lang" != rust ]; then
      "$switchyard" policy test --warm --cache-dir "$OLDPWD/target/test-policy-cache" \
        team_router.wasm cases.json
    fi
  )
done
# ... and each hot-swaps into a running gateway (the policy file replaced, as an operator
# would) without a failed request.
SWITCHYARD_POLICY_CACHE="$PWD/target/test-policy-cache" \
  python3 tests/e2e/hot_swap.py "$switchyard" target/policies/hybrid.wasm \
  target/policy-new/rust/team_router.wasm target/policy-new/python/team_router.wasm \
  target/policy-new/js/team_router.wasm
