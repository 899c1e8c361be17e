#!/usr/bin/env bash
# ABI stage (issue 16): libfhmap.so of "$FHMAP_BUILD_DIR" against the
# committed baseline (scripts/abi.sh check: incompatible changes fail,
# additions pass). First a self-check that the guard can fail: the same
# objects linked without one exported function must be refused.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${FHMAP_BUILD_DIR:?}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# libfhmap.a holds the same position-independent objects as the .so
[ -f "$build/lib/libfhmap.a" ] || { echo "abi: no $build/lib/libfhmap.a"; exit 1; }
mkdir -p "$work/lib"
printf 'FHMAP_0 {\n  global: fhmap_*;\n  local: fhmap_version; *;\n};\n' >"$work/fewer.map"
cc -shared -g -o "$work/lib/libfhmap.so.0" -Wl,-soname,libfhmap.so.0 -Wl,--version-script="$work/fewer.map" \
  -Wl,--whole-archive "$build/lib/libfhmap.a" -Wl,--no-whole-archive $(pkg-config --libs lmdb uuid) -pthread
ln -s libfhmap.so.0 "$work/lib/libfhmap.so"
if "$top/scripts/abi.sh" check "$work" >"$work/self.log"; then
  echo "abi: FAIL: the guard accepted a library without fhmap_version:"; cat "$work/self.log"; exit 1
fi
grep -q "fhmap_version" "$work/self.log" || { echo "abi: FAIL: the refusal does not name fhmap_version:"; cat "$work/self.log"; exit 1; }
echo "abi: self-check ok (a removed function is refused)"
"$top/scripts/abi.sh" check "$build"
