#!/usr/bin/env bash
# Local-model benchmark: Switchyard (CPU path, quantized kernels) and llama.cpp
# (llama-cpp-python) on the same GGUF with the same thread count, in the same run.
# Prints both result lines and the ratios (Switchyard / llama.cpp; > 1 is faster).
#
#   THREADS=2 DEVICES="cpu" bash host/local/bench/run.sh
# DEVICES may list several CPU device names: "cpu" (the default) and "ndarray" (built with
# --features ndarray when listed; same compute path, see Cargo.toml).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
threads="${THREADS:-2}"
devices="${DEVICES:-cpu}"
model="${SWITCHYARD_MODEL:-${SWITCHYARD_MODELS:-$repo/models}/SmolLM2-135M-Instruct.Q4_1.gguf}"
venv="${LLAMA_VENV:-$repo/target-local/venv}"
target="${CARGO_TARGET_DIR:-$repo/target}"

[ -f "$model" ] || bash "$repo/host/local/fetch-model.sh"
if ! "$venv/bin/python" -c "import llama_cpp, numpy" 2>/dev/null; then
    echo "bench: installing llama-cpp-python into $venv (builds llama.cpp, ~10 min on 2 cores)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet llama-cpp-python==0.3.36 numpy
fi

features=""
case " $devices " in *" ndarray "*) features="--features ndarray" ;; esac
(cd "$repo" && cargo build --release -p switchyard-local --example bench $features >&2)

results=()
for device in $devices; do
    results+=("$("$target/release/examples/bench" --model "$model" --device "$device" --threads "$threads")")
done
results+=("$("$venv/bin/python" "$here/llamacpp.py" --model "$model" --threads "$threads")")

printf '%s\n' "${results[@]}" | python3 "$here/compare.py"
