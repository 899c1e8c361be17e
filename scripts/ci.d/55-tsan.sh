#!/usr/bin/env bash
# ThreadSanitizer stage (issue 12): libfhmap and fhmap-unionfs built again
# with -fsanitize=thread (-DFHMAP_TSAN=ON, assertions on) in
# "$FHMAP_BUILD_DIR-tsan"; the library's concurrency test and every FUSE
# test (the multi-threaded stress and the kill harness among them) run there. Any report fails
# the stage: the first one stops the process that made it, and the reports
# are printed. tests/fuse/tsan.supp says why lock-order reports between
# node locks are left out; for the same reason TSan's note "too long mutex
# cycle found" (a cycle of node locks too long to report) is not one.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${FHMAP_BUILD_DIR:?}-tsan

cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS=-O1 -DFHMAP_TSAN=ON \
  -DFHMAP_WERROR=ON -DFHMAP_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
logs=$(mktemp -d /tmp/fhmap-tsan.XXXXXX)
trap 'rm -rf "$logs"' EXIT
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$top/tests/fuse/tsan.supp log_path=$logs/report"
export FHMAP_STRESS_SECONDS=${FHMAP_STRESS_SECONDS:-15} FHMAP_KILL_CYCLES=${FHMAP_KILL_CYCLES:-40}
cd "$build"
rc=0
ctest --output-on-failure --timeout 900 -R '^unit_concurrency$|^fuse_|^rel_fuse_kill$' || rc=1
for report in "$logs"/report*; do
  [ -e "$report" ] || continue
  if ! grep -q ThreadSanitizer "$report"; then
    echo "== $(basename "$report"): $(sort "$report" | uniq -c | tr '\n' ' ')"
    continue
  fi
  echo "== ThreadSanitizer report $(basename "$report")"
  cat "$report"
  rc=1
done
exit $rc
