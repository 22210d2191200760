#!/usr/bin/env bash
# Builds every policy into ${SWITCHYARD_POLICY_OUT:-target/policies}/<name>.wasm:
# Rust crates policies/<name>/Cargo.toml (package policy-<name>) for wasm32-wasip2 with the
# `policy` profile (test guests under policies/testing/ too), then policies/python/build.sh
# and policies/js/build.sh. Each policy's cases.json is copied beside its component as
# <name>.cases.json: the gateway runs it as a self-test before a version goes live.
# `build.sh rust` builds the Rust policies only.
set -euo pipefail
only="${1:-all}"
case "$only" in all|rust) ;; *) echo "usage: $0 [rust]" >&2; exit 2 ;; esac
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-target}"
out="${SWITCHYARD_POLICY_OUT:-target/policies}"
mkdir -p "$out"

names=()
for manifest in policies/*/Cargo.toml policies/testing/*/Cargo.toml; do
    [ -e "$manifest" ] || continue
    names+=("$(basename "$(dirname "$manifest")")")
done

if [ "${#names[@]}" -gt 0 ]; then
    pkgs=()
    for n in "${names[@]}"; do pkgs+=(-p "policy-$n"); done
    echo "==> building Rust policies: ${names[*]}"
    cargo build --profile policy --target wasm32-wasip2 "${pkgs[@]}"
    for n in "${names[@]}"; do
        src="$target_dir/wasm32-wasip2/policy/policy_$n.wasm"
        [ -e "$src" ] || src="$target_dir/wasm32-wasip2/policy/$n.wasm"
        cp "$src" "$out/$n.wasm"
        for d in policies/$n policies/testing/$n; do
            if [ -f "$d/cases.json" ]; then cp "$d/cases.json" "$out/$n.cases.json"; fi
        done
        echo "    $out/$n.wasm ($(wc -c <"$out/$n.wasm") bytes)"
    done
else
    echo "==> no Rust policies found under policies/*/Cargo.toml"
fi

[ "$only" = rust ] && exit 0
for lang in python js; do
    script="policies/$lang/build.sh"
    if [ -x "$script" ] || [ -f "$script" ]; then
        echo "==> $script"
        SWITCHYARD_POLICY_OUT="$out" bash "$script"
    fi
    for cases in policies/"$lang"/*/cases.json; do
        [ -e "$cases" ] || continue
        cp "$cases" "$out/$(basename "$(dirname "$cases")").cases.json"
    done
done
echo "==> policies in $out:"
ls -l "$out"
