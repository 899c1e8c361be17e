#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine and runs every test: unit suites, CLI
# scripts, end-to-end mounts (as root), then the stages in scripts/ci.d/.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
build=${FHMAP_BUILD_DIR:-$top/build}
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFHMAP_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)"
cmake --build "$build" --target docs
(cd "$build" && ctest --output-on-failure -j2 --timeout 900)
for stage in "$top"/scripts/ci.d/*.sh; do
  [ -e "$stage" ] || continue
  echo "== stage $(basename "$stage")"
  FHMAP_BUILD_DIR="$build" bash "$stage"
done
