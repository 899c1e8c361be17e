#!/usr/bin/env bash
# Test of libfhmap-fsid.so on real mounts: on an fhmap-unionfs mount all
# eight statfs/statvfs calls report the filesystem id derived from the map's
# UUID (worked out here from `fhmapctl info`), the same after a remount on
# another device and at another mount point; without the library they
# report 0; a plain directory, tmpfs and a FUSE filesystem that does not
# answer trusted.fhmap.uuid (fuse-overlayfs) keep the kernel's answer; errno
# is kept and failures pass through.
#
#   fsid_preload.sh UNIONFS_BIN FSID_PROBE FSID_LIB FHMAPCTL
#
# Exit 0 pass, 1 fail, 77 skip (not root, no /dev/fuse).
set -uo pipefail

unionfs=$1 probe=$2 lib=$3 fhmapctl=$4
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (FUSE mounts)"
[ -c /dev/fuse ] && { : </dev/fuse; } 2>/dev/null || skip "/dev/fuse is missing or cannot be opened"
[ -x "$unionfs" ] || skip "fhmap-unionfs not built: $unionfs"

t=$(mktemp -d "${TMPDIR:-/tmp}/fhmap-fsid.XXXXXX")
fails=0
pids=()
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

cleanup() {
	local p
	for p in "$t"/m1 "$t"/m2 "$t"/ovl "$t"/pin; do
		if mountpoint -q "$p" 2>/dev/null; then umount "$p"; fi
	done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	grep -qF " $t/" /proc/self/mounts || rm -rf "$t"
}
trap cleanup EXIT

# mount_union MOUNTPOINT: fhmap-unionfs on the test's layers, in the
# foreground in the background, until the mount answers.
mount_union() {
	local i
	"$unionfs" -f -o "lowerdir=$t/l,upperdir=$t/u,db=$t/db" "$1" </dev/null >>"$t/fuse.log" 2>&1 &
	pids+=($!)
	for ((i = 0; i < 100; i++)); do
		[ "$(stat -f -c %t "$1" 2>/dev/null)" = 65735546 ] && return 0 # FUSE_SUPER_MAGIC
		sleep 0.1
	done
	cat "$t/fuse.log"
	return 1
}

# expect_all PATH VAL0 VAL1 LABEL [PRELOAD]: every call reports VAL0 VAL1.
expect_all() {
	local out
	if ! out=$(LD_PRELOAD=${5:-} "$probe" "$1" 2>&1); then
		fail "$4: fsid-probe failed: $out"
		return
	fi
	if [ "$(awk '{ print $2, $3 }' <<<"$out" | sort -u)" = "$2 $3" ] && [ "$(wc -l <<<"$out")" = 8 ]; then
		pass "$4: all 8 calls report $2 $3"
	else
		fail "$4: expected $2 $3 from all 8 calls, got: $(tr '\n' ';' <<<"$out")"
	fi
}

mkdir -p "$t/l" "$t/u" "$t/m1" "$t/m2" "$t/pin" "$t/plain"
echo x >"$t/l/f"
mount_union "$t/m1" || { fail "fhmap-unionfs did not mount"; exit 1; }
uuid=$("$fhmapctl" info --json "$t/db" | sed -n 's/.*"map":"[^"]*","uuid":"\([0-9a-f-]*\)".*/\1/p')
u=${uuid//-/}
[ ${#u} = 32 ] || { fail "no map UUID from fhmapctl info"; exit 1; }
w0=$(printf '%08x' $((0x${u:0:8} ^ 0x${u:16:8})))
w1=$(printf '%08x' $((0x${u:8:8} ^ 0x${u:24:8})))

expect_all "$t/m1" 00000000 00000000 "fhmap-unionfs without the library"
expect_all "$t/m1" "$w0" "$w1" "fhmap-unionfs (map $uuid)" "$lib"
expect_all "$t/m1/f" "$w0" "$w1" "a file on fhmap-unionfs" "$lib"
dev1=$(stat -c %d "$t/m1")
umount "$t/m1"
wait "${pids[0]}" # the daemon ends after the unmount: until then it has the map open
mount -t tmpfs -o size=4k fhmap-fsid-pin "$t/pin" # takes the device number just freed
mount_union "$t/m2" || { fail "fhmap-unionfs did not mount again"; exit 1; }
[ "$(stat -c %d "$t/m2")" != "$dev1" ] && pass "the remount is on another device" || fail "the remount got device $dev1 again"
expect_all "$t/m2" "$w0" "$w1" "the same map remounted elsewhere" "$lib"

# expect_kernel PATH LABEL: with the library, what the kernel says alone.
expect_kernel() {
	local k
	k=$("$probe" "$1" | awk '{ print $2, $3 }' | sort -u)
	expect_all "$1" "${k% *}" "${k#* }" "$2" "$lib"
}
expect_kernel "$t/plain" "a plain directory keeps the kernel's fsid"
expect_kernel "$t/pin" "tmpfs keeps the kernel's fsid"

if command -v fuse-overlayfs >/dev/null; then
	mkdir -p "$t/ovl" "$t/ou" "$t/ow"
	fuse-overlayfs -o "lowerdir=$t/l,upperdir=$t/ou,workdir=$t/ow" "$t/ovl" && pass "fuse-overlayfs mounted" ||
		fail "fuse-overlayfs did not mount"
	expect_kernel "$t/ovl" "FUSE without trusted.fhmap.uuid keeps the kernel's fsid"
	umount "$t/ovl"
else
	echo "note: fuse-overlayfs not installed; the foreign-FUSE check is left out"
fi

if out=$(LD_PRELOAD=$lib "$probe" "$t/missing" 2>&1); then
	fail "fsid-probe of a missing path succeeded"
else
	grep -q "No such file" <<<"$out" && pass "a missing path fails with ENOENT" || fail "missing path: $out"
fi
umount "$t/m2"
[ "$fails" = 0 ] && echo "PASS" || echo "$fails check(s) failed"
[ "$fails" = 0 ]
