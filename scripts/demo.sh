#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine, builds libfhmap and runs the demo: as
# root where FUSE and NFS-Ganesha are available, the NFS demo
# (examples/ganesha/nfs-demo.sh: client handles across copy-up, renames and a
# restart of the union daemon and Ganesha); elsewhere the library-only demo
# (examples/demo), saying why.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/scripts/deps.sh"
build=${FHMAP_BUILD_DIR:-$top/build}
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
rc=0
"$top/examples/ganesha/nfs-demo.sh" "$build" 2>"$build/nfs-demo.why" || rc=$?
if [ "$rc" != 77 ]; then
	cat "$build/nfs-demo.why" >&2
	exit "$rc"
fi
echo "NFS demo not run: $(cat "$build/nfs-demo.why"); running the library-only demo instead."
exec "$build/examples/demo/fhmap-demo" "$@"
