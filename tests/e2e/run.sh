#!/usr/bin/env bash
# End-to-end tests with real clients: the official openai Python SDK (pinned) against
# `switchyard serve` on its embedded default. Needs target/debug/switchyard (cargo test
# builds it; run standalone, this builds it the same way), the default model and
# target/policies/hybrid.wasm; tool_calling.py runs a two-turn tool-calling conversation
# through OpenAI-compatible, Anthropic and Gemini mock upstreams.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=target/e2e-venv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" 2>/dev/null || python3 -m virtualenv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
# The test build's own binary: `cargo build -p switchyard` would resolve features for one
# package instead of the workspace and compile much of the tree a second time.
cargo test -q --workspace --all-targets --no-run
export SWITCHYARD_BIN="${SWITCHYARD_BIN:-${CARGO_TARGET_DIR:-target}/debug/switchyard}"
"$venv/bin/python" tests/e2e/openai_sdk.py
"$venv/bin/python" tests/e2e/tool_calling.py
