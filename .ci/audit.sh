#!/usr/bin/env bash
# Checks Cargo.lock against the RustSec snapshot in ../shared/advisory-db, offline.
set -euo pipefail
cd "$(dirname "$0")/.."
db_src="${SWITCHYARD_ADVISORY_DB:-../shared/advisory-db}"
[ -d "$db_src" ] || { echo "advisory database not found at $db_src" >&2; exit 1; }
if ! command -v cargo-audit >/dev/null 2>&1; then
  echo "installing cargo-audit (one-off, a few minutes)"
  cargo install cargo-audit --locked --quiet
fi
# cargo-audit wants a git repository: copy the snapshot and commit it in a temp dir.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r "$db_src" "$tmp/advisory-db"
git -C "$tmp/advisory-db" init -q
git -C "$tmp/advisory-db" add -A
git -C "$tmp/advisory-db" -c user.name=ci -c user.email=ci@localhost commit -qm snapshot
# Vulnerabilities fail the run; unmaintained/unsound notices are printed as warnings.
cargo audit --no-fetch --stale --db "$tmp/advisory-db"
