#!/usr/bin/env bash
# After the whole suite: no test secret appears in any log the gateways wrote. Every test
# provider key, client API key and admin token contains the marker `never-log-me`; the
# tests log everything (trace level) into LOG_DIR (tests/run.sh sets
# SWITCHYARD_TEST_LOG_DIR). An empty or near-empty directory fails too: a scan of nothing
# proves nothing.
set -euo pipefail
dir="${1:?usage: tests/log_scan.sh LOG_DIR}"
marker="never-log-me"
[ -d "$dir" ] || { echo "log scan: $dir does not exist (were the tests run with SWITCHYARD_TEST_LOG_DIR?)" >&2; exit 1; }
files=$(find "$dir" -type f -name '*.log' -size +0 | wc -l)
lines=$(find "$dir" -type f -name '*.log' -exec cat {} + | wc -l)
upstream=$(grep -rlE "upstream|dispatch" "$dir" | wc -l || true)
echo "log scan: $files non-empty log file(s), $lines line(s) in $dir; $upstream mention upstream calls"
if [ "$files" -lt 5 ] || [ "$lines" -lt 200 ] || [ "$upstream" -lt 3 ]; then
  echo "log scan: too little was logged to make the scan meaningful" >&2
  exit 1
fi
if grep -rnF "$marker" "$dir" | head -5 | grep .; then
  echo "log scan: a test secret ($marker) appears in the logs above" >&2
  exit 1
fi
echo "log scan: no test secret in any log"
