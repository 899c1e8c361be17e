#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds libfhmap and runs the demo.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
build=${FHMAP_BUILD_DIR:-$top/build}
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
exec "$build/examples/demo/fhmap-demo" "$@"
