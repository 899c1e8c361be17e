#!/usr/bin/env bash
# Fuzz stage (issue 7): builds the libFuzzer targets of tests/fuzz with clang,
# ASan and UBSan in "$FHMAP_BUILD_DIR-fuzz" and runs each from its seed corpus
# for FHMAP_FUZZ_SECONDS (default 25), then fuzz_open on damaged LMDB pages
# (FHMAP_FUZZ_PAGES=1, opened with FHMAP_OPEN_VERIFY) for
# FHMAP_FUZZ_PAGES_SECONDS (default 20). Any crash or oracle failure fails
# the stage and prints the reproducer. Long runs: tests/fuzz/README.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${FHMAP_BUILD_DIR:?}-fuzz
secs=${FHMAP_FUZZ_SECONDS:-25}
page_secs=${FHMAP_FUZZ_PAGES_SECONDS:-20}

CC=clang cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFHMAP_FUZZ=ON \
  -DFHMAP_BUILD_EXAMPLES=OFF -DFHMAP_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_decode fuzz_open >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
# run NAME TARGET SECONDS [VAR=VALUE...]: one target from its seed corpus.
run() {
  local name=$1 t=$2 n=$3 runs
  shift 3
  mkdir -p "$work/corpus-$name"
  if env TMPDIR="$work" "$@" "$build/tests/fuzz/fuzz_$t" -max_total_time="$n" -max_len=64 \
       -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus-$name" \
       "$top/tests/fuzz/corpus/$t" >"$work/$name.log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$name.log")
    echo "$name: $runs executions in ${n}s, no finding"
    grep '^fuzz_open:' "$work/$name.log" || true
  else
    echo "$name: FAILED"
    tail -n 60 "$work/$name.log"
    status=1
  fi
}
run fuzz_decode decode "$secs"
run fuzz_open open "$secs"
run fuzz_open_pages open "$page_secs" FHMAP_FUZZ_PAGES=1
exit $status
