#!/usr/bin/env bash
# Debian packages stage (issue 16): builds libfhmap0, libfhmap-dev,
# fhmap-tools and fhmap-unionfs from debian/ with dpkg-buildpackage (in a
# copy of the tree), runs lintian (errors and warnings fail), installs the
# packages, builds consumers against the installed -dev package (pkg-config
# and CMake), runs fhmapctl and its completion, checks the unit, starts the
# daemon the way the unit does (tests/fuse/service.sh notify), mounts with
# mount -t fuse.fhmap-unionfs from the installed binaries and unmounts with
# umount, then purges the packages and checks that nothing of them is left.
# Needs root (dpkg); the FUSE parts skip with a message without /dev/fuse.
# The install into a non-default prefix is ctest's install_consumers.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${FHMAP_BUILD_DIR:?}
pkgs=(libfhmap0 libfhmap-dev fhmap-tools fhmap-unionfs)

[ "$(id -u)" -eq 0 ] || { echo "packages: SKIP: installing packages needs root"; exit 0; }
export DEBIAN_FRONTEND=noninteractive
installed() { dpkg-query -W -f='${db:Status-Status}\n' "$1" 2>/dev/null | grep -qx installed; }
purge() { apt-get purge -y -qq "${pkgs[@]}" >/dev/null 2>&1 || true; }
for p in "${pkgs[@]}"; do
  if installed "$p" || dpkg-query -W "$p" >/dev/null 2>&1; then
    echo "packages: $p is on this machine already (an interrupted run?): purging it first"
    purge
    break
  fi
done

work=$(mktemp -d)
M=$work/mnt
cleanup() {
  if grep -q " $M fuse" /proc/self/mounts; then umount "$M" || umount -l "$M"; fi
  purge
  rm -rf "$work"
}
trap cleanup EXIT

# Build in a copy: dpkg-buildpackage writes the .debs next to the tree.
mkdir -p "$work/src"
tar -C "$top" --exclude=./.git --exclude='./build' --exclude='./build-*' -cf - . | tar -C "$work/src" -xf -
start=$SECONDS
if ! (cd "$work/src" && DEB_BUILD_OPTIONS="parallel=$(nproc)" dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
  tail -n 80 "$work/build.log"; echo "packages: FAIL: dpkg-buildpackage"; exit 1
fi
echo "packages: built $(cd "$work" && ls ./*.deb | grep -vc dbgsym) packages in $((SECONDS - start)) s"
if grep -q "dpkg-gensymbols: warning: some new symbols appeared" "$work/build.log"; then
  echo "packages: note: libfhmap0 exports symbols debian/libfhmap0.symbols lacks: run scripts/abi.sh update"
fi

changes=$(ls "$work"/fhmap_*.changes)
lrc=0
lintian --fail-on error,warning -I "$changes" >"$work/lintian.log" 2>&1 || lrc=$?
grep -v 'root privileges' "$work/lintian.log" || true
[ $lrc -eq 0 ] || { echo "packages: FAIL: lintian errors or warnings (status $lrc)"; exit 1; }
echo "packages: lintian: no errors, no warnings"

debs=()
for p in "${pkgs[@]}"; do debs+=("$work/${p}_"*.deb); done
apt-get install -y -qq --no-install-recommends "${debs[@]}" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log"; echo "packages: FAIL: install"; exit 1; }
for p in "${pkgs[@]}"; do installed "$p" || { echo "packages: FAIL: $p not installed"; exit 1; }; done
dpkg -L "${pkgs[@]}" | sort -u >"$work/files"
echo "packages: installed ${pkgs[*]}"

# Consumers of the installed -dev package, with no search path of ours.
c=$top/tests/install/consumer.c
cc -std=c11 -Wall -Werror -o "$work/pc" "$c" $(pkg-config --cflags --libs fhmap)
env -u LD_LIBRARY_PATH "$work/pc" "$work/map-pc" >/dev/null
cc -std=c11 -o "$work/pc-static" "$c" $(pkg-config --cflags fhmap) \
  "$(pkg-config --variable=libdir fhmap)/libfhmap.a" $(pkg-config --libs-only-l --static fhmap | sed 's/-lfhmap//')
"$work/pc-static" "$work/map-static" >/dev/null
cmake -S "$top/tests/install/consumer" -B "$work/cm" >/dev/null
grep -q "^fhmap_DIR:PATH=/usr/lib/.*/cmake/fhmap$" "$work/cm/CMakeCache.txt" ||
  { grep fhmap_DIR "$work/cm/CMakeCache.txt"; echo "packages: FAIL: find_package did not use the package"; exit 1; }
cmake --build "$work/cm" >/dev/null
env -u LD_LIBRARY_PATH "$work/cm/consumer-shared" "$work/map-cm" >/dev/null
"$work/cm/consumer-static" "$work/map-cm-static" >/dev/null
echo "packages: consumers built with pkg-config and find_package(fhmap) against libfhmap-dev, and ran"

# fhmapctl, its man page and its completion.
mkdir -p "$work/lower" "$work/upper" "$M"
echo hello >"$work/lower/a"
fhmapctl --version | grep -q '^fhmapctl (libfhmap 0\.' || { echo "packages: FAIL: fhmapctl --version"; exit 1; }
fhmapctl init "$work/map" --lower "$work/lower" --upper "$work/upper" >/dev/null
fhmapctl check "$work/map" >/dev/null
fhmapctl layers --json "$work/map" | jq -e '.layers | length == 2' >/dev/null ||
  { echo "packages: FAIL: fhmapctl layers"; exit 1; }
man -w fhmapctl fhmap-unionfs >/dev/null
words=$(bash -c 'source /usr/share/bash-completion/completions/fhmapctl
  COMP_WORDS=(fhmapctl re); COMP_CWORD=1; _fhmapctl; echo "${COMPREPLY[*]}"')
[ "$words" = "repair rebase restore" ] || { echo "packages: FAIL: completion of 're': '$words'"; exit 1; }
echo "packages: fhmapctl, its man page and its bash completion work"

# The unit, and the daemon started the way the unit starts it.
unit=/lib/systemd/system/fhmap-unionfs@.service
if command -v systemd-analyze >/dev/null; then
  mkdir -p "$work/units"
  cp "$unit" "$work/units/fhmap-unionfs@srv-union.service"
  systemd-analyze verify "$work/units/fhmap-unionfs@srv-union.service"
  echo "packages: systemd-analyze verify: unit ok"
else
  echo "packages: systemd-analyze missing: unit not verified"
fi
if [ ! -c /dev/fuse ]; then
  echo "packages: SKIP: /dev/fuse is missing: no mount from the installed binaries"
else
  listen=$build/tests/fuse/fuse_service_listen
  TMPDIR=$work bash "$top/tests/fuse/service.sh" /usr/bin/fhmap-unionfs "$listen" "$unit" notify |
    tail -n 1 | grep -q ' 0 failed$' || { echo "packages: FAIL: the unit's daemon (service.sh notify)"; exit 1; }
  echo "packages: the unit's command line mounts and says READY=1 once the mount answers"

  mount -t fuse.fhmap-unionfs none "$M" -o "lowerdir=$work/lower,upperdir=$work/upper,db=$work/db"
  [ "$(cat "$M/a")" = hello ] || { echo "packages: FAIL: the union does not show the lower file"; exit 1; }
  echo changed >"$M/a"
  umount "$M"
  for _ in $(seq 100); do grep -lqs "$M" /proc/[0-9]*/cmdline || break; sleep 0.1; done
  ! grep -lqs "$M" /proc/[0-9]*/cmdline || { echo "packages: FAIL: the daemon outlived umount"; exit 1; }
  [ "$(cat "$work/upper/a")" = changed ] || { echo "packages: FAIL: no copy-up in the upper layer"; exit 1; }
  echo "packages: mount -t fuse.fhmap-unionfs and umount with the installed binaries"
fi

apt-get purge -y -qq "${pkgs[@]}" >/dev/null
for p in "${pkgs[@]}"; do
  ! dpkg-query -W "$p" >/dev/null 2>&1 || { echo "packages: FAIL: $p still known to dpkg after purge"; exit 1; }
done
left=()
while read -r f; do
  [ "$f" = /. ] && continue
  if [ -d "$f" ]; then
    # directories that only our packages owned must be gone
    case $f in /etc/fhmap-unionfs | */fhmap | */cmake/fhmap | */doc/libfhmap* | */doc/fhmap*) [ -e "$f" ] && left+=("$f") ;; esac
  elif [ -e "$f" ] || [ -L "$f" ]; then
    left+=("$f")
  fi
done <"$work/files"
[ ${#left[@]} -eq 0 ] || { printf 'packages: FAIL: left after purge: %s\n' "${left[@]}"; exit 1; }
echo "packages: purged; none of their $(wc -l <"$work/files") paths is left"
