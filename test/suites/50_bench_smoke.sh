#!/usr/bin/env bash
# Smoke run of the benchmark: `bench/run --smoke` (N=2000, B=200, one run, every scenario
# and method) against the server test/run started (PG* exported), without rebuilding.
# Asserts only that every method leaves identical table contents; speed is not tested.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=$(mktemp)
trap 'rm -f "$out"' EXIT

rc=0
SEQUIN_BENCH_NO_BUILD=1 timeout 600 bash "$root/bench/run" --smoke --existing-server \
    --db sequin_bench_smoke >"$out" 2>&1 || rc=$?
# The table (and any mismatch) as TAP comments.
sed 's/^/# /' "$out"
if ((rc == 0)) && grep -q '^contents check: every method left identical contents' "$out"; then
    echo "ok - bench smoke: identical contents across methods"
else
    echo "not ok - bench smoke: identical contents across methods (bench/run exited $rc)"
    exit 1
fi
