# Shared by the FUSE end-to-end scripts (fuse-e2e.sh, layers.sh), sourced
# after they set BIN (fhmap-unionfs) and TOOL (fuse_fh_tool): the skip
# checks, a temp dir $T with layers l1, l2, up and the mount point $M, the
# daemon's start and stop, result counting, and the cleanup on exit of
# every mount and daemon a test started.
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (mounts, trusted.* xattrs, open_by_handle_at)"
[ -c /dev/fuse ] || skip "/dev/fuse is missing"
command -v fusermount3 >/dev/null || skip "fusermount3 is missing (Debian package fuse3)"
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }

T=$(mktemp -d /tmp/fhmap-fuse.XXXXXX)
M=$T/mnt
DB=$T/db
PID=""
PASS=0
FAILS=0
mkdir -p "$T/l1" "$T/l2" "$T/up" "$M"
# the layers start mounts (a script may change them between mounts)
LAYERS="lowerdir=$T/l1:$T/l2,upperdir=$T/up"

mounted() { grep -q " $1 fuse" /proc/self/mounts; }

cleanup() {
	if mounted "$M"; then fusermount3 -u "$M" 2>/dev/null || umount -l "$M"; fi
	if grep -q " $T/ovl " /proc/self/mounts; then umount "$T/ovl"; fi # kernel overlayfs
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill "$PID"
		wait "$PID" 2>/dev/null
	fi
	[ -n "${FHMAP_KEEP_T:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }
# expect DESCRIPTION ACTUAL EXPECTED
expect() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: got '$2', want '$3'"; return 1; fi; }
# expect_match DESCRIPTION ACTUAL REGEX
expect_match() { if [[ $2 =~ $3 ]]; then ok "$1"; else fail "$1: '$2' does not match '$3'"; fi; }

# start [OPTIONS]: mounts the union, with more -o options if given (and
# those of FHMAP_FUSE_OPTS: the suite can run with -o writeback, threads=1...)
start() {
	local o=${FHMAP_FUSE_OPTS:-}${FHMAP_FUSE_OPTS:+${1:+,}}${1:-}
	"$BIN" -o "$LAYERS,db=$DB${o:+,$o}" "$M" -f 2>>"$T/daemon.log" &
	PID=$!
	for _ in $(seq 400); do
		mounted "$M" && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "FAIL - daemon did not mount; log:"; cat "$T/daemon.log"
	exit 1
}

stop() {
	if ! fusermount3 -u "$M"; then
		fail "fusermount3 -u $M"
		umount -l "$M"
	fi
	for _ in $(seq 200); do
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$PID" 2>/dev/null; then
		fail "daemon still running 20 s after unmount"
		kill -KILL "$PID"
	fi
	wait "$PID"
	local rc=$?
	PID=""
	expect "daemon exits 0 after unmount" "$rc" 0
}

# refused DESCRIPTION STATUS REGEX OPTIONS: the daemon given -o OPTIONS
# exits with STATUS, and a message that matches REGEX, without mounting
refused() {
	local out rc
	out=$(timeout -k 5 20 "$BIN" -o "$4" "$M" -f 2>&1); rc=$?
	expect "$1: exit status" "$rc" "$2"
	expect_match "$1: message" "$out" "$3"
	mounted "$M" && fail "$1: mounted all the same"
}

drop_caches() { sync; echo 2 >/proc/sys/vm/drop_caches; }
# field LABEL FILE: the open result of one label
field() { grep -a "^$1 " "$2" | cut -d' ' -f2-; }
ino() { stat -c %i "$1"; }

finish() {
	echo "$PASS passed, $FAILS failed"
	[ "$FAILS" = 0 ]
	exit $?
}
