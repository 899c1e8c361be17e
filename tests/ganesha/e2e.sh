#!/usr/bin/env bash
# End-to-end test of issues 5 and 15: NFS clients' handles on an
# fhmap-unionfs mount exported by NFS-Ganesha (FSAL_VFS, 127.0.0.1) carry a
# filesystem id derived from the map's UUID and survive copy-up, renames, a
# full restart of Ganesha and the FUSE daemon while another mount holds the
# old device number, and a "failover" to another mount point and Ganesha
# state directory; a removed file's handle becomes NFS3ERR_STALE. libnfs is
# the client (fhmap-nfs-client).
#
#   e2e.sh UNIONFS_BIN NFS_CLIENT_BIN STACK_SCRIPT FSID_LIB FHMAPCTL
#
# Exit 0 pass, 1 fail, 77 skip (not root, no /dev/fuse, packages missing).
set -uo pipefail

unionfs=$1
client_bin=$2
stack=$3
fsid_lib=$4
fhmapctl=$5
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "needs root (FUSE mount, Ganesha, rpcbind, drop_caches)"
[ -c /dev/fuse ] && { : </dev/fuse; } 2>/dev/null || skip "/dev/fuse is missing or cannot be opened"
for cmd in ganesha.nfsd rpcbind rpcinfo mountpoint; do
	command -v "$cmd" >/dev/null || skip "$cmd not installed (packages nfs-ganesha, rpcbind)"
done
compgen -G "/usr/lib/*/ganesha/libfsalvfs.so" >/dev/null || compgen -G "/usr/lib*/ganesha/libfsalvfs.so" >/dev/null ||
	skip "FSAL_VFS not installed (package nfs-ganesha-vfs)"
[ -x "$client_bin" ] || skip "fhmap-nfs-client not built (libnfs-dev missing): $client_bin"
[ -x "$unionfs" ] || skip "fhmap-unionfs not built: $unionfs"
[ -f "$fsid_lib" ] || skip "libfhmap-fsid.so not built: $fsid_lib"

# Ports of our own, so that a system NFS server does not matter: the first
# two free from 32048 up, or FHMAP_E2E_NFS_PORT/FHMAP_E2E_MNT_PORT.
ports=($("$stack" free-ports 2 32048)) || skip "no free TCP ports from 32048 up"
nfs_port=${FHMAP_E2E_NFS_PORT:-${ports[0]}}
mnt_port=${FHMAP_E2E_MNT_PORT:-${ports[1]}}

t=$(mktemp -d "${TMPDIR:-/tmp}/fhmap-ganesha-e2e.XXXXXX")
L=$t/lower L2=$t/lower2 U=$t/upper M=$t/mnt S=$t/state H=$t/handles
M2=$t/standby-mnt S2=$t/standby-state
states=("$S" "$S2")
started=$(date +%s)
fails=0
pids_seen=()

# Outside files the stack may create; each must be gone again at the end
# unless it existed before.
watch_paths=(/run/rpcbind.sock /run/rpcbind.lock /var/run/ganesha /var/lib/nfs/ganesha)
declare -A existed=()
for p in "${watch_paths[@]}"; do [ -e "$p" ] && existed[$p]=1; done

remember_pids() {
	local f
	for f in "$S"/fuse.pid "$S"/ganesha.pid "$S"/rpcbind.pid "$S2"/fuse.pid "$S2"/ganesha.pid "$S2"/rpcbind.pid; do
		[ -f "$f" ] && pids_seen+=("$(cat "$f")")
	done
}

# True while PID is one of the stack's programs and has not exited. A dead
# process its parent has not reaped yet (State Z, one thread) has exited.
stack_process_alive() {
	local st
	st=$(cat "/proc/$1/status" 2>/dev/null) || return 1
	grep -qE '^Name:[[:space:]]*(fhmap-unionfs|ganesha.nfsd|rpcbind)$' <<<"$st" || return 1
	! { grep -q '^State:[[:space:]]*Z' <<<"$st" && grep -q '^Threads:[[:space:]]*1$' <<<"$st"; }
}

cleanup() {
	local rc=$? p
	remember_pids
	for p in "${states[@]}"; do
		[ -f "$p/stack.env" ] && "$stack" down "$p" || true
	done
	# The mounts that held the old device number are the test's own.
	for p in "$t"/taken/*; do
		if mountpoint -q "$p" 2>/dev/null; then umount "$p"; fi
	done
	while read -r _ p _; do
		case $p in "$t"/*)
			echo "FAIL: $p still mounted after teardown; unmounting"
			umount -l "$p" || true
			rc=1 ;;
		esac
	done </proc/self/mounts
	for p in "${pids_seen[@]}"; do
		if stack_process_alive "$p"; then
			echo "FAIL: process $p ($(sed -n 's/^Name:[[:space:]]*//p' "/proc/$p/status" 2>/dev/null)) survived teardown"
			rc=1
		fi
	done
	for p in "${watch_paths[@]}"; do
		if [ -e "$p" ] && [ -z "${existed[$p]:-}" ]; then
			echo "FAIL: $p left behind"
			rc=1
		fi
	done
	if [ "$rc" != 0 ]; then
		for f in "$S"/fuse.log "$S"/ganesha.log "$S2"/fuse.log "$S2"/ganesha.log; do
			[ -f "$f" ] && { echo "--- tail of $f"; tail -n 25 "$f"; }
		done
	fi
	grep -qF " $t/" /proc/self/mounts || rm -rf "$t"
	echo "elapsed $(($(date +%s) - started)) s"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

nfs() { "$client_bin" -p "$nfs_port" -m "$mnt_port" "$@"; }
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

# expect_read VERS PATH CONTENT: READ through the saved handle of PATH.
expect_read() {
	local got
	if got=$(nfs read "$H" "$1" "$2" 2>"$t/err"); then
		[ "$got" = "$3" ] && pass "$1 READ $2 = '$3'" || fail "$1 READ $2 = '$got', expected '$3'"
	else
		fail "$1 READ $2: $(cat "$t/err")"
	fi
}

# expect_status VERS PATH STATUS: READ through the saved handle must fail so.
expect_status() {
	if nfs read "$H" "$1" "$2" >/dev/null 2>"$t/err"; then
		fail "$1 READ $2 succeeded, expected $3"
	elif grep -q "$3" "$t/err"; then
		pass "$1 READ $2 -> $3"
	else
		fail "$1 READ $2: $(cat "$t/err"), expected $3"
	fi
}

# attr VERS PATH KEY: a GETATTR field through the saved handle.
attr() { nfs getattr "$H" "$1" "$2" 2>"$t/err" | tr ' ' '\n' | sed -n "s/^$3=//p"; }

both() { local f=$1; shift; "$f" v3 "$@"; "$f" v4 "$@"; }

step() { echo "== $*"; }

# 1. Layers and stack.
mkdir -p "$L/dir/sub" "$L/dir/empty" "$L2" "$U" "$M"
printf 'one' >"$L/file1.txt"
printf 'hard' >"$L/h1"
ln "$L/h1" "$L/h2"
printf 'deep' >"$L/dir/sub/deep.txt"
printf 'x' >"$L/dir/x.txt"
printf 'move me' >"$L/mv.txt"
printf 'doomed' >"$L/gone.txt"
printf 'second layer' >"$L2/only2.txt"
printf 'hidden' >"$L2/shadow.txt"
printf 'top layer wins' >"$L/shadow.txt"

step "1. mount fhmap-unionfs, start rpcbind and Ganesha"
"$stack" up "$S" --export "$M" --pseudo /union --nfs-port "$nfs_port" --mnt-port "$mnt_port" \
	--unionfs "$unionfs" --lower "$L:$L2" --upper "$U" --db "$t/db" --fsid-lib "$fsid_lib" ||
	{ fail "stack did not come up"; exit 1; }
remember_pids
dev_before=$(stat -c %Hd:%Ld "$M")
# The filesystem id the handles must carry, worked out here from the map's
# UUID by the rule of examples/ganesha/fsid_preload.c: the UUID as four
# big-endian words, (u0 ^ u2, u1 ^ u3), each stored little-endian by FSAL_VFS.
uuid=$("$fhmapctl" info --json "$t/db" | sed -n 's/.*"map":"[^"]*","uuid":"\([0-9a-f-]*\)".*/\1/p')
u=${uuid//-/}
le32() { printf '%08x' "$1" | sed 's/\(..\)\(..\)\(..\)\(..\)/\4\3\2\1/'; }
[ ${#u} = 32 ] || { fail "no map UUID from fhmapctl info"; exit 1; }
want_fsid=$(le32 $((0x${u:0:8} ^ 0x${u:16:8})))$(le32 $((0x${u:8:8} ^ 0x${u:24:8})))
dev_fsid=$(le32 "$(stat -c %Hd "$M")")$(le32 "$(stat -c %Ld "$M")")

step "2. take NFSv3 and NFSv4 handles"
paths=(file1.txt h1 h2 dir dir/sub dir/sub/deep.txt dir/x.txt mv.txt gone.txt only2.txt shadow.txt)
nfs take "$H" /union "${paths[@]}" || { fail "could not take handles"; exit 1; }
while read -r vers path hex; do
	max=64
	[ "$vers" = v4 ] && max=128
	[ $((${#hex} / 2)) -le "$max" ] || fail "$vers handle of $path is $((${#hex} / 2)) bytes"
	# Ganesha's 5-byte header, FSAL_VFS's flags byte, then the fsid.
	[ "${hex:12:16}" = "$want_fsid" ] || fail "$vers handle of $path carries fsid ${hex:12:16}, not $want_fsid (map $uuid)"
done <"$H"
[ "$want_fsid" != "$dev_fsid" ] && grep -q "$want_fsid" "$H" &&
	pass "every handle carries fsid $want_fsid from map $uuid, not the device's $dev_fsid" ||
	fail "handles do not carry the map's fsid"
both expect_read file1.txt one
both expect_read h1 hard
both expect_read h2 hard
both expect_read dir/sub/deep.txt deep
both expect_read only2.txt "second layer"
both expect_read shadow.txt "top layer wins"
[ "$(attr v3 dir type)" = dir ] && pass "v3 GETATTR dir: a directory" || fail "v3 GETATTR dir: $(cat "$t/err")"
[ "$(attr v4 dir/sub type)" = dir ] && pass "v4 GETATTR dir/sub: a directory" || fail "v4 GETATTR dir/sub: $(cat "$t/err")"
id_h1=$(attr v3 h1 fileid)
id_h2=$(attr v4 h2 fileid)
[ -n "$id_h1" ] && [ "$id_h1" = "$id_h2" ] && [ "$(attr v3 h2 nlink)" = 2 ] &&
	pass "hardlinks h1/h2 share fileid $id_h1, nlink 2" || fail "hardlinks: fileid '$id_h1' vs '$id_h2'"

step "3. write through one handle (copy-up), read through the hardlink sibling"
# Copy-up, checked without assuming the daemon's upper layout (hardlinks may
# live in its index): the lower file is untouched and the upper layer holds
# the new bytes.
copied_up() {
	[ "$(cat "$L/$1")" = "$2" ] && grep -rqF -- "$3" "$U" &&
		pass "$1 was copied up (lower keeps '$2')" || fail "$1: no copy-up (lower: '$(cat "$L/$1")')"
}
nfs write "$H" v3 h1 0 "HARD-written-over-v3" 2>"$t/err" && pass "v3 WRITE through h1's handle" ||
	fail "v3 WRITE h1: $(cat "$t/err")"
copied_up h1 hard HARD-written-over-v3
both expect_read h2 HARD-written-over-v3
both expect_read h1 HARD-written-over-v3
[ "$(attr v4 h1 fileid)" = "$id_h1" ] && [ "$(attr v3 h2 fileid)" = "$id_h1" ] &&
	pass "h1/h2 keep fileid $id_h1 after copy-up" || fail "fileid changed by copy-up"
nfs write "$H" v4 file1.txt 0 "ONE-written-over-v4" 2>"$t/err" && pass "v4 WRITE through file1.txt's handle" ||
	fail "v4 WRITE file1.txt: $(cat "$t/err")"
copied_up file1.txt one ONE-written-over-v4
both expect_read file1.txt ONE-written-over-v4

step "4. rename a file and a directory over NFS"
nfs rename /union mv.txt dir/sub/moved.txt 2>"$t/err" && pass "RENAME mv.txt -> dir/sub/moved.txt" ||
	fail "RENAME mv.txt: $(cat "$t/err")"
nfs rename /union dir dir2 2>"$t/err" && pass "RENAME dir -> dir2 (a lower directory)" ||
	fail "RENAME dir: $(cat "$t/err")"
both expect_read mv.txt "move me"
both expect_read dir/sub/deep.txt deep
both expect_read dir/x.txt x
[ "$(attr v3 dir type)" = dir ] && [ "$(attr v4 dir/sub type)" = dir ] &&
	pass "directory handles still work after the rename" || fail "directory handle after rename: $(cat "$t/err")"
# same_handle VERS SAVED_PATH FILE NEW_PATH: a fresh lookup gave the saved handle.
same_handle() {
	local old new
	old=$(grep "^$1 $2 " "$H" | cut -d' ' -f3)
	new=$(grep "^$1 $4 " "$3" | cut -d' ' -f3)
	[ -n "$old" ] && [ "$old" = "$new" ] && pass "$1 handle of $2 is byte-identical when looked up as $4" ||
		fail "$1 handle of $2 differs from the one looked up as $4"
}
nfs take "$t/fresh" /union dir2/sub/deep.txt dir2/sub/moved.txt >/dev/null 2>"$t/err" || fail "lookup after rename: $(cat "$t/err")"
both same_handle dir/sub/deep.txt "$t/fresh" dir2/sub/deep.txt
both same_handle mv.txt "$t/fresh" dir2/sub/moved.txt

# check_saved_handles WHEN: every saved handle reaches its object as steps
# 2-5 left it; fresh lookups give byte-identical handles.
check_saved_handles() {
	both expect_read file1.txt ONE-written-over-v4
	both expect_read h1 HARD-written-over-v3
	both expect_read h2 HARD-written-over-v3
	both expect_read dir/sub/deep.txt deep
	both expect_read dir/x.txt "$x_now"
	both expect_read mv.txt "move me"
	both expect_read only2.txt "$only2_now"
	both expect_read shadow.txt "top layer wins"
	[ "$(attr v3 dir/sub type)" = dir ] && [ "$(attr v4 dir type)" = dir ] &&
		pass "directory handles work $1" || fail "directory handle $1: $(cat "$t/err")"
	[ "$(attr v4 h2 fileid)" = "$id_h1" ] && pass "h2 keeps fileid $id_h1 $1" || fail "fileid changed $1"
	rm -f "$t/after"
	nfs take "$t/after" /union dir2 dir2/sub/moved.txt h2 file1.txt >/dev/null 2>"$t/err" ||
		fail "lookup $1: $(cat "$t/err")"
	both same_handle dir "$t/after" dir2
	both same_handle mv.txt "$t/after" dir2/sub/moved.txt
	both same_handle h2 "$t/after" h2
	both same_handle file1.txt "$t/after" file1.txt
	expect_status v3 gone.txt NFS3ERR_STALE
	expect_status v4 gone.txt NFS4ERR_STALE
}

# Mounts tmpfs under $t/taken until the anonymous device number DEV
# (major:minor, lowest free first) is held: by one of these or by another
# mount that took it meanwhile.
take_device() {
	local want=${1#*:} i got=-1
	for ((i = 0; i < 64 && got < want; i++)); do
		mkdir -p "$t/taken/$i"
		mount -t tmpfs -o size=4k,mode=0700 fhmap-e2e-taken "$t/taken/$i" || break
		got=$(stat -c %Ld "$t/taken/$i")
	done
	[ "$got" -ge "$want" ]
}

step "5. remove gone.txt; restart while another mount holds the old device number"
nfs remove /union gone.txt 2>"$t/err" && pass "REMOVE gone.txt" || fail "REMOVE gone.txt: $(cat "$t/err")"
remember_pids
t0=$(date +%s%N)
"$stack" stop-ganesha "$S" && "$stack" stop-fuse "$S" && "$stack" drop-caches "$S" ||
	{ fail "stop failed"; exit 1; }
take_device "$dev_before" && pass "device $dev_before is held by another mount" ||
	fail "could not occupy device $dev_before"
"$stack" start-fuse "$S" && "$stack" start-ganesha "$S" || { fail "start failed"; exit 1; }
remember_pids
echo "restart cycle took $((($(date +%s%N) - t0) / 1000000)) ms"
dev_now=$(stat -c %Hd:%Ld "$M")
[ "$dev_now" != "$dev_before" ] && pass "the union came back on device $dev_now, not $dev_before" ||
	fail "the union got device $dev_before back"
x_now=x only2_now="second layer"
check_saved_handles "after the restart on another device"
nfs write "$H" v3 dir/x.txt 0 "x-after-restart" 2>"$t/err" && pass "v3 WRITE dir2/x.txt (copy-up after restart)" ||
	fail "v3 WRITE dir/x.txt: $(cat "$t/err")"
x_now=x-after-restart
both expect_read dir/x.txt x-after-restart
copied_up dir/x.txt x x-after-restart
nfs write "$H" v4 only2.txt 0 "SECOND-after-restart" 2>"$t/err" &&
	pass "v4 WRITE only2.txt (copy-up from the second lower layer)" || fail "v4 WRITE only2.txt: $(cat "$t/err")"
only2_now=SECOND-after-restart
both expect_read only2.txt SECOND-after-restart
[ "$(cat "$L2/only2.txt")" = "second layer" ] && pass "second lower layer untouched" || fail "second lower layer modified"

step "6. failover: stop everything; the same layers and map at another mount point, another Ganesha state"
remember_pids
"$stack" down "$S" || fail "teardown of the first node reported an error"
mkdir -p "$M2"
"$stack" up "$S2" --export "$M2" --pseudo /union --nfs-port "$nfs_port" --mnt-port "$mnt_port" \
	--unionfs "$unionfs" --lower "$L:$L2" --upper "$U" --db "$t/db" --fsid-lib "$fsid_lib" ||
	{ fail "standby stack did not come up"; exit 1; }
remember_pids
[ "$(stat -c %Hd:%Ld "$M2")" != "$dev_before" ] && pass "the standby mount is on device $(stat -c %Hd:%Ld "$M2")" ||
	fail "the standby mount got device $dev_before"
check_saved_handles "on the standby at $M2"
nfs write "$H" v4 h2 0 "HARD-standby-written" 2>"$t/err" && pass "v4 WRITE through h2's handle on the standby" ||
	fail "v4 WRITE h2 on the standby: $(cat "$t/err")"
both expect_read h1 HARD-standby-written

step "7. tear down"
remember_pids
"$stack" down "$S2" || fail "teardown reported an error"
[ "$fails" = 0 ] && echo "PASS: every saved NFS handle survived" || echo "$fails check(s) failed"
[ "$fails" = 0 ]
