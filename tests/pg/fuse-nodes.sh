#!/usr/bin/env bash
# Two gateway nodes on one PostgreSQL map: two fhmap-unionfs daemons on two
# mount points over the same layers, one serving at a time. The first makes
# objects (creates, copy-ups, renames, hardlinks, an unlink), hands out
# handles and dies by SIGKILL; the second mounts and serves: every handle
# taken through the first opens on the second the same object with the same
# content, the unlinked one is ESTALE, new objects get new numbers, and
# fhmapctl check is clean.
#   fuse-nodes.sh FHMAP_UNIONFS FUSE_FH_TOOL FHMAPCTL CONNINFO_FILE
# Needs root, /dev/fuse and the tests' PostgreSQL server; exits 77 otherwise.
set -u
BIN=$1 TOOL=$2 CTL=$3
[ -f "$4" ] || { echo "SKIP: no PostgreSQL server for the tests"; exit 77; }
uri=$(cat "$4")

. "$(dirname "$0")/../fuse/common.sh"

schema=n$$_$RANDOM
psql -qX "$uri" -c "CREATE SCHEMA $schema" >/dev/null || { echo "FAIL: CREATE SCHEMA"; exit 1; }
DB="$uri?options=-csearch_path%3D$schema"
M1=$T/node1 M2=$T/node2
mkdir -p "$M1" "$M2"
# common.sh's cleanup unmounts $M and stops $PID: the node serving now
cleanup_nodes() {
	if mounted "$M1"; then umount -l "$M1"; fi
	cleanup
	psql -qX "$uri" -c "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1
}
trap cleanup_nodes EXIT

echo lower-f >"$T/l1/f"; echo keep >"$T/l1/keep"; echo two >"$T/l2/second"
mkdir -p "$T/l1/g/p"; echo deep >"$T/l1/g/p/file"
echo hl >"$T/l1/h1"; ln "$T/l1/h1" "$T/l1/h2"; echo gone >"$T/l1/gone"

M=$M1
start
echo born >"$M/born"
mkdir -p "$M/nd/sub"; echo inner >"$M/nd/sub/inner"
echo new-f >"$M/f"                 # copy-up of a lower file
chmod 600 "$M/second"              # copy-up from the second lower layer
echo new-hl >"$M/h1"               # a lower hardlink: copied into the index
ln "$M/born" "$M/born-link"        # hardlink of an upper file
ln "$M/keep" "$M/keep-link"        # hardlink of a lower file (copies it up)
mv "$M/g/p/file" "$M/g/p/file2"; mv "$M/g" "$M/top"
"$TOOL" save "$T/h" f="$M/f" keep="$M/keep" second="$M/second" file="$M/top/p/file2" parent="$M/top/p" \
	top="$M/top" h1="$M/h1" h2="$M/h2" born="$M/born" inner="$M/nd/sub/inner" sub="$M/nd/sub" \
	gone="$M/gone" root="$M" || fail "save handles on node 1"
rm "$M/gone"
drop_caches
"$TOOL" open "$M" "$T/h" >"$T/before"
expect "node 1 opens its own handles" "$(grep -c ' ok ' "$T/before")" 12
expect "copied-up hardlink through node 1" "$(field h2 "$T/before")" "ok ino=$(ino "$M/h1") data=new-hl"
maxino=$(find "$M" -printf '%i\n' | sort -n | tail -1)
kill -KILL "$PID"
wait "$PID" 2>/dev/null
PID=""
umount -l "$M1" # the dead node's mount: its connection is gone
ok "node 1 killed (SIGKILL) without unmounting"

M=$M2
t0=$(date +%s%3N)
start
echo "node 2 mounted and serving $(($(date +%s%3N) - t0)) ms after node 1 was gone"
drop_caches
"$TOOL" open "$M" "$T/h" >"$T/after"
for l in f keep second file parent top h1 h2 born inner sub root; do
	expect "handle '$l' of node 1 opens its object on node 2" "$(field $l "$T/after")" \
		"$(field $l "$T/before" | sed "s|dir=$M1|dir=$M2|")"
done
expect "handle of a file unlinked on node 1 is ESTALE on node 2" "$(field gone "$T/after")" ESTALE
expect "contents on node 2" "$(cat "$M/f" "$M/h2" "$M/keep-link" "$M/born-link" "$M/top/p/file2" | tr '\n' ' ')" \
	"new-f new-hl keep born deep "
expect "hardlinks are one object on node 2" "$(ino "$M/keep-link") $(ino "$M/born-link")" \
	"$(ino "$M/keep") $(ino "$M/born")"
expect "lower layers untouched" "$(cat "$T/l1/f" "$T/l1/h2" | tr '\n' ' ')" "lower-f hl "
echo node2 >"$M/new"
echo node2-born >"$M/born"
[ "$(ino "$M/new")" -gt "$maxino" ] && ok "node 2 hands out new numbers" || fail "new st_ino $(ino "$M/new") <= $maxino"
drop_caches
"$TOOL" open "$M" "$T/h" >"$T/later"
expect "node 1's handle reads node 2's write" "$(field born "$T/later")" "ok ino=$(ino "$M/born") data=node2-born"
stop
# (not --deep: it takes the index copy of a lower hardlink, work/index/N,
# for a missing file at its name; on LMDB maps as well)
"$CTL" check "$DB" >"$T/check.out" 2>&1
expect "fhmapctl check of the PostgreSQL map is clean" "$?" 0 || cat "$T/check.out"
expect "node 2 says the map is always in full mode" \
	"$(grep -c 'taken as full' "$T/daemon.log")" 2
finish
