#!/usr/bin/env bash
# The demo of libfhmap's main job (run by scripts/demo.sh): an NFS client's
# file handles on a union filesystem keep reaching their objects across
# copy-up, renames and a restart of the union daemon and the NFS server.
#
#   nfs-demo.sh BUILD_DIR
#
# Mounts fhmap-unionfs on a small two-file layer in a temp dir, exports it
# with NFS-Ganesha on 127.0.0.1, takes NFSv3 and NFSv4 handles with a libnfs
# client, writes (copy-up) and renames through NFS, restarts the daemon and
# Ganesha while another mount takes the union's old device number, and reads
# every old handle. Stops everything it started, by PID, and removes the temp
# dir. Exit 0 when every old handle reached its object, 1 when one did not,
# 77 (with the reason on stderr) when root, /dev/fuse, the packages or the
# binaries are missing.
set -uo pipefail
build=$1
here=$(cd "$(dirname "$0")" && pwd)
stack=$here/ganesha-stack.sh
unionfs=$build/examples/fuse/fhmap-unionfs
client=$build/examples/ganesha/fhmap-nfs-client
fsid_lib=$build/examples/ganesha/libfhmap-fsid.so
ctl=$build/tools/fhmapctl

cannot() { echo "$*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || cannot "not root (the NFS demo mounts FUSE and starts Ganesha and rpcbind)"
[ -c /dev/fuse ] && { : </dev/fuse; } 2>/dev/null || cannot "/dev/fuse is missing or cannot be opened"
for cmd in ganesha.nfsd rpcbind rpcinfo; do
	command -v "$cmd" >/dev/null || cannot "$cmd is not installed (nfs-ganesha, rpcbind)"
done
compgen -G "/usr/lib/*/ganesha/libfsalvfs.so" >/dev/null || cannot "FSAL_VFS is not installed (nfs-ganesha-vfs)"
for f in "$unionfs" "$client" "$ctl"; do
	[ -x "$f" ] || cannot "$f was not built (libfuse3-dev, libnfs-dev)"
done
[ -f "$fsid_lib" ] || cannot "$fsid_lib was not built"
ports=($("$stack" free-ports 2 32049)) || cannot "no free TCP ports"

started=$(date +%s%N)
t=$(mktemp -d "${TMPDIR:-/tmp}/fhmap-nfs-demo.XXXXXX")
S=$t/state H=$t/handles
cleanup() {
	local rc=$? f
	if [ "$rc" = 1 ]; then
		for f in "$S"/fuse.log "$S"/ganesha.log; do
			[ -s "$f" ] && { echo "--- tail of $f"; tail -n 15 "$f"; }
		done
	fi
	[ -f "$S/stack.env" ] && "$stack" down "$S" 2>/dev/null
	if mountpoint -q "$t/other" 2>/dev/null; then umount "$t/other"; fi
	grep -qF " $t/" /proc/self/mounts || rm -rf "$t"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

nfs() { "$client" -p "${ports[0]}" -m "${ports[1]}" "$@"; }
say() { echo "$*"; }
dev() { stat -c %Hd:%Ld "$t/mnt"; }

mkdir -p "$t/lower/docs" "$t/upper" "$t/mnt" "$t/other"
printf 'How to use the union.\n' >"$t/lower/docs/guide.txt"
printf 'first notes\n' >"$t/lower/notes.txt"

say "== libfhmap NFS demo: fhmap-unionfs exported by NFS-Ganesha on 127.0.0.1:${ports[0]}"
"$stack" up "$S" --export "$t/mnt" --pseudo /union --nfs-port "${ports[0]}" --mnt-port "${ports[1]}" \
	--unionfs "$unionfs" --lower "$t/lower" --upper "$t/upper" --db "$t/map" --fsid-lib "$fsid_lib" 2>/dev/null ||
	{ echo "the stack did not come up (logs in $S)" >&2; exit 1; }
uuid=$("$ctl" info --json "$t/map" | sed -n 's/.*"map":"[^"]*","uuid":"\([0-9a-f-]*\)".*/\1/p')
dev0=$(dev)
say "1. union of $t/lower (read-only) and $t/upper mounted at $t/mnt (device $dev0),"
say "   map $t/map (uuid $uuid); Ganesha exports it as /union (NFSv3 and NFSv4)"

nfs take "$H" /union notes.txt docs/guide.txt docs >/dev/null || exit 1
h=$(awk '$1 == "v3" && $2 == "notes.txt" { print $3 }' "$H")
fsid=$(LD_PRELOAD=$fsid_lib stat -f -c %i "$t/mnt")
say "2. the client took NFSv3 and NFSv4 handles of notes.txt, docs/guide.txt and docs, e.g. notes.txt (v3):"
say "   ${h:0:10} ${h:10:2} ${h:12:16} ${h:28:2} ${h:30:16} ${h:46:8} ${h:54}"
say "   Ganesha's header and FSAL_VFS flags; the filesystem id ${fsid:0:8}.${fsid:8} (as two little-endian words)"
say "   derived from the map's uuid, not from the mount; the FUSE handle: object number and generation from libfhmap"

nfs write "$H" v3 notes.txt 0 "NOTES written over NFS" >/dev/null || exit 1
nfs rename /union docs/guide.txt docs/manual.txt || exit 1
nfs rename /union docs documents || exit 1
say "3. over NFS: wrote into notes.txt (copied up: the lower file still says \"$(head -c 11 "$t/lower/notes.txt")\"),"
say "   renamed docs/guide.txt to docs/manual.txt, then the lower directory docs to documents"

"$stack" stop-ganesha "$S" && "$stack" stop-fuse "$S" && "$stack" drop-caches "$S" || exit 1
mount -t tmpfs -o size=4k fhmap-demo-other "$t/other"
"$stack" start-fuse "$S" 2>/dev/null && "$stack" start-ganesha "$S" 2>/dev/null || exit 1
say "4. stopped Ganesha and fhmap-unionfs, dropped the kernel's caches, mounted a tmpfs (it took device"
say "   $(stat -c %Hd:%Ld "$t/other")), started fhmap-unionfs (now on device $(dev)) and Ganesha again"

say "5. the old handles, with no lookup:"
bad=0
# check VERS PATH NOW EXPECTED: READ (or GETATTR for a directory) through the
# handle taken of PATH, which is now at NOW.
check() {
	local got
	if [ "$4" = dir ]; then
		got=$(nfs getattr "$H" "$1" "$2" 2>&1 | tr ' ' '\n' | sed -n 's/^type=//p')
	else
		got=$(nfs read "$H" "$1" "$2" 2>&1)
	fi
	if [ "$got" = "$4" ]; then
		say "   $1 $2 -> $3: $(tr '\n' ' ' <<<"$got")ok"
	else
		say "   $1 $2 -> $3: got '$got', expected '$4'  FAILED"
		bad=1
	fi
}
for v in v3 v4; do
	check "$v" notes.txt notes.txt "NOTES written over NFS"
	check "$v" docs/guide.txt documents/manual.txt "How to use the union."
	check "$v" docs documents dir
done
elapsed=$((($(date +%s%N) - started) / 1000000))
if [ "$bad" = 0 ]; then
	say "every old handle reached its object ($((elapsed / 1000)).$((elapsed % 1000 / 100)) s); stopping everything"
else
	say "some old handles did not reach their objects"
fi
exit "$bad"
