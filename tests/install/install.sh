#!/usr/bin/env bash
# Installs the build into a temporary prefix and builds consumers the way
# users do: pkg-config, CMake find_package (shared and static). Also checks
# the SONAME and that only the public API is exported.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
lib=$(find "$prefix" -name 'libfhmap.so.0' | head -n 1)
libdir=$(dirname "$lib")

soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = libfhmap.so.0 ] || { echo "FAIL: SONAME is '$soname'"; exit 1; }
extra=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^fhmap_' | grep -v '^FHMAP_' || true)
[ -z "$extra" ] || { echo "FAIL: exported beyond the public API: $extra"; exit 1; }
internal=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep '^fhmap__' || true)
[ -z "$internal" ] || { echo "FAIL: internals exported: $internal"; exit 1; }
public=$(grep -o 'FHMAP_EXTERN [^(]*(' "$src/../../include/fhmap/fhmap.h" | grep -o 'fhmap_[a-z_]*' | sort)
exported=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep '^fhmap_' | sed 's/@.*//' | sort)
[ "$public" = "$exported" ] || { echo "FAIL: exports differ from the header:"; diff <(echo "$public") <(echo "$exported"); exit 1; }
echo "ok: SONAME $soname, $(echo "$exported" | wc -l) symbols exported, all in the public header"

export PKG_CONFIG_PATH=$libdir/pkgconfig
cc -std=c11 -Wall -Werror -o "$tmp/pc-consumer" "$src/consumer.c" $(pkg-config --cflags --libs fhmap)
LD_LIBRARY_PATH=$libdir "$tmp/pc-consumer" "$tmp/map-pc"
cc -std=c11 -static-libgcc -o "$tmp/pc-static" "$src/consumer.c" $(pkg-config --cflags fhmap) \
  "$libdir/libfhmap.a" $(pkg-config --libs-only-l --static fhmap | sed 's/-lfhmap//')
"$tmp/pc-static" "$tmp/map-static"
echo "ok: pkg-config consumers (shared and static) built and ran"

cmake -S "$src/consumer" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$tmp/cm" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/cm/consumer-shared" "$tmp/map-cm"
"$tmp/cm/consumer-static" "$tmp/map-cm-static"
echo "ok: find_package(fhmap) consumers (fhmap::fhmap, fhmap::fhmap_static) built and ran"
