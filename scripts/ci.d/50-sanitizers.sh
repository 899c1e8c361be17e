#!/usr/bin/env bash
# Sanitizer stage (issue 7): the whole project built again with ASan and
# UBSan (-DFHMAP_SANITIZE=ON) in "$FHMAP_BUILD_DIR-asan" and its full ctest
# suite run there. Any sanitizer report aborts the test that made it.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${FHMAP_BUILD_DIR:?}-asan

cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFHMAP_SANITIZE=ON \
  -DFHMAP_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# The reliability harnesses are time-bounded; keep them short here.
export FHMAP_CRASH_SECONDS=${FHMAP_CRASH_SECONDS:-20} FHMAP_LOAD_SECONDS=${FHMAP_LOAD_SECONDS:-5}
export FHMAP_KILL_CYCLES=${FHMAP_KILL_CYCLES:-60}
cd "$build"
# install_consumers links plain consumer programs against the installed
# (here instrumented) libfhmap.a, which cannot work without the sanitizer
# runtimes; it checks packaging, and runs in the main ctest.
ctest --output-on-failure -j2 --timeout 900 -E '^install_consumers$'
