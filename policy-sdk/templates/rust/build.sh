#!/usr/bin/env bash
# Builds the policy component: __NAME__.wasm beside this script (target wasm32-wasip2).
set -euo pipefail
cd "$(dirname "$0")"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/__NAME__.wasm" __NAME__.wasm
echo "built $(pwd)/__NAME__.wasm ($(wc -c <__NAME__.wasm) bytes)"
