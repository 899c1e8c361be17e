#!/usr/bin/env bash
# Installs the build into a temporary prefix (not the configured one) and
# builds consumers the way users do: pkg-config, CMake find_package (shared
# and static). Also checks the SONAME, that only the public API is exported,
# that the installed programs run without LD_LIBRARY_PATH and that fhmap.pc,
# the CMake files and the systemd unit name that prefix.
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

# A prefix other than the configured one: the programs run as installed
# (relative RUNPATH), fhmap.pc and the CMake files describe this prefix.
for prog in fhmapctl fhmap-unionfs; do
  [ -x "$prefix/bin/$prog" ] || continue
  runpath=$(readelf -d "$prefix/bin/$prog" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p')
  [[ $runpath == '$ORIGIN/'* ]] || { echo "FAIL: $prog RUNPATH is '$runpath', not relative to the binary"; exit 1; }
  env -u LD_LIBRARY_PATH "$prefix/bin/$prog" --version >/dev/null ||
    { echo "FAIL: $prefix/bin/$prog does not run without LD_LIBRARY_PATH"; exit 1; }
done
env -u LD_LIBRARY_PATH "$prefix/bin/fhmapctl" init "$tmp/map-ctl" --lower "$src" >/dev/null
echo "ok: $prefix/bin programs run without LD_LIBRARY_PATH (RUNPATH $runpath)"

export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --variable=prefix fhmap)" = "$prefix" ] ||
  { echo "FAIL: fhmap.pc prefix is '$(pkg-config --variable=prefix fhmap)', not $prefix"; exit 1; }
[[ "$(pkg-config --cflags fhmap) " == "-I$prefix/include "* ]] ||
  { echo "FAIL: fhmap.pc cflags '$(pkg-config --cflags fhmap)'"; exit 1; }
[ "$(pkg-config --variable=libdir fhmap)" = "$libdir" ] ||
  { echo "FAIL: fhmap.pc libdir '$(pkg-config --variable=libdir fhmap)', not $libdir"; exit 1; }
unit=$prefix/lib/systemd/system/fhmap-unionfs@.service
if [ -f "$unit" ]; then
  grep -qx "ExecStart=$prefix/bin/fhmap-unionfs -f -o \${FHMAP_OPTIONS} %f" "$unit" ||
    { echo "FAIL: $unit does not start $prefix/bin/fhmap-unionfs:"; grep ExecStart "$unit"; exit 1; }
fi
echo "ok: fhmap.pc and the systemd unit name $prefix"
cc -std=c11 -Wall -Werror -o "$tmp/pc-consumer" "$src/consumer.c" $(pkg-config --cflags --libs fhmap)
LD_LIBRARY_PATH=$libdir "$tmp/pc-consumer" "$tmp/map-pc"
cc -std=c11 -static-libgcc -o "$tmp/pc-static" "$src/consumer.c" $(pkg-config --cflags fhmap) \
  "$libdir/libfhmap.a" $(pkg-config --libs-only-l --static fhmap | sed 's/-lfhmap//')
"$tmp/pc-static" "$tmp/map-static"
echo "ok: pkg-config consumers (shared and static) built and ran"

cmake -S "$src/consumer" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
grep -qx "fhmap_DIR:PATH=$libdir/cmake/fhmap" "$tmp/cm/CMakeCache.txt" ||
  { echo "FAIL: find_package(fhmap) did not use $libdir/cmake/fhmap:"; grep fhmap_DIR "$tmp/cm/CMakeCache.txt"; exit 1; }
# what find_package resolved: the library and header paths of the build
grep -q "$libdir/libfhmap.so" "$tmp/cm/CMakeFiles/consumer-shared.dir/link.txt" &&
  grep -q "isystem $prefix/include" "$tmp/cm/CMakeFiles/consumer-shared.dir/flags.make" ||
  { echo "FAIL: the CMake package files do not point into $prefix"; exit 1; }
echo "ok: the CMake package files point into $prefix"
cmake --build "$tmp/cm" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/cm/consumer-shared" "$tmp/map-cm"
"$tmp/cm/consumer-static" "$tmp/map-cm-static"
echo "ok: find_package(fhmap) consumers (fhmap::fhmap, fhmap::fhmap_static) built and ran"
