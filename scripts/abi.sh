#!/usr/bin/env bash
# ABI guard of libfhmap (issue 16), with libabigail (Debian: abigail-tools).
#
#   scripts/abi.sh check  [BUILD]  compares BUILD's libfhmap.so.N with the
#                                  committed baseline lib/abi/libfhmap.so.N.abi
#   scripts/abi.sh update [BUILD]  records BUILD's ABI as the baseline and
#                                  refreshes debian/libfhmap0.symbols
#
# BUILD defaults to $FHMAP_BUILD_DIR, else build/; the library must carry
# debug information (RelWithDebInfo, the default build type).
#
# check fails on what breaks binaries linked against the baseline: a removed
# function or variable, a changed signature, a changed layout of a type the
# API reaches, a changed enumerator value. It passes, and lists them, on
# additions: new functions and variables, new enumerators, members appended
# to the versioned option structs named in lib/abi/fhmap.abignore. After an
# intended addition, run `scripts/abi.sh update` and commit both files. A new
# SONAME has no baseline yet: check says so and passes.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-}
build=${2:-${FHMAP_BUILD_DIR:-$top/build}}
headers=$top/include/fhmap
supp=$top/lib/abi/fhmap.abignore

[ "$mode" = check ] || [ "$mode" = update ] || { echo "usage: $0 check|update [BUILD]" >&2; exit 2; }
command -v abidiff >/dev/null || { echo "abi: abidiff missing (Debian package abigail-tools)" >&2; exit 1; }
lib=$(readlink -f "$build/lib/libfhmap.so" 2>/dev/null || true)
[ -f "$lib" ] || { echo "abi: no libfhmap.so in $build/lib: build first" >&2; exit 1; }
readelf -S "$lib" | grep -q '\.debug_info' ||
  { echo "abi: $lib has no debug information: build with -DCMAKE_BUILD_TYPE=RelWithDebInfo" >&2; exit 1; }
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
baseline=$top/lib/abi/$soname.abi

if [ "$mode" = update ]; then
  abidw --drop-private-types --headers-dir "$headers" --no-corpus-path --out-file "$baseline" "$lib"
  version=$(dpkg-parsechangelog -l "$top/debian/changelog" -S Version)
  out=$(dpkg-gensymbols -plibfhmap0 -v"$version" -e"$lib" -I"$top/debian/libfhmap0.symbols" \
    -O"$top/debian/libfhmap0.symbols" -c0 2>&1) || { echo "$out" >&2; exit 1; }
  echo "abi: recorded $soname in ${baseline#$top/} and debian/libfhmap0.symbols (new symbols: version $version)"
  exit 0
fi

if [ ! -f "$baseline" ]; then
  echo "abi: no baseline for $soname (a new SONAME): nothing to compare against;"
  echo "abi: record one with scripts/abi.sh update and commit lib/abi/$soname.abi"
  exit 0
fi
# abidiff's status is a bit mask: 1 error, 2 usage, 4 ABI change, 8 incompatible change.
compare() {
  abidiff --drop-private-types --headers-dir2 "$headers" --suppressions "$supp" "$@" "$baseline" "$lib"
}
set +e
report=$(compare)
rc=$?
set -e
if [ $rc -eq 0 ]; then
  echo "abi: $soname is compatible with lib/abi/$soname.abi (no change old binaries can notice)"
  exit 0
fi
if [ $((rc & 3)) -ne 0 ]; then
  echo "abi: abidiff failed (status $rc):"; echo "$report"; exit 1
fi
set +e
breaking=$(compare --no-added-syms)
brc=$?
set -e
if [ $((rc & 8)) -eq 0 ] && [ $brc -eq 0 ]; then
  echo "abi: $soname only adds to lib/abi/$soname.abi (compatible); refresh with scripts/abi.sh update:"
  echo "$report"
  exit 0
fi
echo "abi: FAIL: $soname is incompatible with lib/abi/$soname.abi (binaries built against it may break)."
echo "abi: Keep the old ABI, or change the SONAME (lib/CMakeLists.txt) and record a new baseline."
echo "$breaking"
exit 1
