#!/usr/bin/env bash
# libFuzzer (with ASan and UBSan) on the mapping source parser, outside the server, bounded
# in time: SEQUIN_LIBFUZZER_SECONDS (default 15; e.g. 600 for a longer run).
set -uo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=test/lib/cluster.sh
source test/lib/cluster.sh
if ! command -v clang++-14 >/dev/null || ! ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
    if [[ $(id -u) == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-14 libclang-rt-14-dev >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang-14 libclang-rt-14-dev >/dev/null 2>&1; }
    fi
fi
if ! command -v clang++-14 >/dev/null; then
    echo "ok - skipped: clang-14 with libFuzzer is not installed # SKIP"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
clang++-14 -std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -Isrc test/libfuzzer/mapping_source_fuzzer.cpp src/mapping/mapping_source.cpp -o "$work/fuzzer" 2>"$work/build.log"
tap_ok "the fuzz target builds with -fsanitize=fuzzer,address,undefined" test -x "$work/fuzzer"
[[ -x $work/fuzzer ]] || { cat "$work/build.log"; tap_done; }
cp -r test/libfuzzer/corpus "$work/corpus"
seconds=${SEQUIN_LIBFUZZER_SECONDS:-15}
"$work/fuzzer" -max_total_time="$seconds" -max_len=4096 -seed=1 "$work/corpus" >"$work/fuzz.log" 2>&1
rc=$?
runs=$(grep -Eo 'Done [0-9]+ runs' "$work/fuzz.log" | grep -Eo '[0-9]+' || echo 0)
tap_ok "mapping source parser: $runs inputs in ${seconds}s, no crash, leak or undefined behaviour" test $rc -eq 0
((rc == 0)) || tail -40 "$work/fuzz.log"
tap_done
