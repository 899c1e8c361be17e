#!/usr/bin/env bash
# Fuzz stage (issue 7): builds the libFuzzer targets of tests/fuzz with clang,
# ASan and UBSan in "$FHMAP_BUILD_DIR-fuzz" and runs each from its seed corpus
# for FHMAP_FUZZ_SECONDS (default 25). Any crash or oracle failure fails the
# stage and prints the reproducer. Long runs: tests/fuzz/README.md.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${FHMAP_BUILD_DIR:?}-fuzz
secs=${FHMAP_FUZZ_SECONDS:-25}

CC=clang cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFHMAP_FUZZ=ON \
  -DFHMAP_BUILD_EXAMPLES=OFF -DFHMAP_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_decode fuzz_open >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in decode open; do
  mkdir -p "$work/corpus-$t"
  if TMPDIR="$work" "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -max_len=64 \
       -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus-$t" \
       "$top/tests/fuzz/corpus/$t" >"$work/$t.log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
    echo "fuzz_$t: $runs executions in ${secs}s, no finding"
    grep '^fuzz_open:' "$work/$t.log" || true
  else
    echo "fuzz_$t: FAILED"
    tail -n 60 "$work/$t.log"
    status=1
  fi
done
exit $status
