#!/usr/bin/env bash
# fhmap-unionfs as a service, on real FUSE mounts.
#   service.sh BINARY LISTENER UNIT CASE
# notify: starts the daemon with the ExecStart line of the systemd unit UNIT
#         and a NOTIFY_SOCKET this test listens on (LISTENER, no systemd
#         needed); READY=1 must come only once the mount answers, not at all
#         when the mount fails, STOPPING=1 and exit status 0 on SIGTERM.
# mount:  mount -t fuse.fhmap-unionfs, the same line from an fstab file,
#         umount, and the detached daemon's messages on syslog. Runs in a
#         private mount namespace of its own, where a listener stands in for
#         /dev/log and the binary is on mount's fixed PATH.
# Needs root and /dev/fuse; exits 77 (skipped) with a message otherwise.
# Every mount and process it starts is torn down by PID on exit.
set -u
BIN=$1 LISTEN=$2 UNIT=$3 CASE=$4

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (FUSE mounts)"
[ -c /dev/fuse ] || skip "/dev/fuse is missing"
for p in "$BIN" "$LISTEN"; do [ -x "$p" ] || { echo "FAIL: $p not built"; exit 1; }; done

PASS=0 FAILS=0
ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
mounted() { grep -q " $1 fuse" /proc/self/mounts; }
# wait_for FILE REGEX: up to 20 s
wait_for() { for _ in $(seq 200); do grep -Eq "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done; return 1; }
gone() { for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done; return 1; }
finish() { echo "$PASS passed, $FAILS failed"; [ "$FAILS" -eq 0 ]; exit $?; }

T=${SERVICE_TEST_DIR:-}
if [ -z "$T" ]; then
	T=$(mktemp -d "${TMPDIR:-/tmp}/fhmap-svc.XXXXXX")
fi
M=$T/mnt
PIDS=()
cleanup() {
	if mounted "$M"; then umount "$M" 2>/dev/null || umount -l "$M"; fi
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	[ -n "${SERVICE_TEST_DIR:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
mkdir -p "$T/lower" "$T/upper" "$M"
echo hello >"$T/lower/a"
OPTS="lowerdir=$T/lower,upperdir=$T/upper,db=$T/db"

case_notify() {
	grep -qx 'Type=notify' "$UNIT" && grep -qx 'Before=nfs-ganesha.service' "$UNIT"
	check "unit is Type=notify, ordered before nfs-ganesha" test $? = 0
	local line
	line=$(sed -n 's/^ExecStart=//p' "$UNIT")
	# unit_cmd OPTIONS: ExecStart as systemd runs it for instance $M
	unit_cmd() {
		local w
		CMD=()
		for w in $line; do
			w=${w//@bindir@\/fhmap-unionfs/$BIN}
			w=${w//'${FHMAP_OPTIONS}'/$1}
			CMD+=("${w//%f/$M}")
		done
	}
	"$LISTEN" "$T/notify" "$T/notify.log" "$M" &
	PIDS+=($!)
	for _ in $(seq 100); do [ -S "$T/notify" ] && break; sleep 0.05; done

	unit_cmd "lowerdir=$T/missing,upperdir=$T/upper,db=$T/db"
	NOTIFY_SOCKET=$T/notify "${CMD[@]}" 2>"$T/err.log"
	check "a failing mount exits 1" test $? = 1
	check "it names the missing layer" grep -q "lowerdir '$T/missing'" "$T/err.log"
	check "and never says READY=1" test "$(grep -c READY=1 "$T/notify.log")" = 0

	unit_cmd "$OPTS"
	NOTIFY_SOCKET=$T/notify "${CMD[@]}" 2>"$T/err.log" &
	local pid=$!
	PIDS+=($pid)
	check "READY=1 arrives" wait_for "$T/notify.log" "READY=1"
	sed 's/^/  notify: /' "$T/notify.log"
	check "READY=1 once, and the mount answered when it arrived" \
		test "$(grep -c READY=1 "$T/notify.log"):$(grep '^probe:' "$T/notify.log")" = "1:probe: fuse answers, 1 entries"
	check "MAINPID is the daemon" grep -q "MAINPID=$pid\b" "$T/notify.log"
	check "the union serves the lower file" test "$(cat "$M/a")" = hello
	kill -TERM "$pid"
	wait "$pid"
	check "SIGTERM: exit status 0" test $? = 0
	check "STOPPING=1 arrives" grep -q "STOPPING=1" "$T/notify.log"
	check "SIGTERM unmounted the union" bash -c "! grep -q ' $M fuse' /proc/self/mounts"
	check "nothing on stderr" test ! -s "$T/err.log"
	sed 's/^/  stderr: /' "$T/err.log"
}

case_mount() {
	command -v mount.fuse3 >/dev/null || skip "mount.fuse3 is missing (Debian package fuse3)"
	command -v unshare >/dev/null || skip "unshare is missing (util-linux)"
	if [ -z "${SERVICE_TEST_DIR:-}" ]; then
		# again inside a mount namespace of its own; it ends with its processes
		SERVICE_TEST_DIR=$T unshare --mount --propagation private "$0" "$@"
		exit $? # cleanup (trap) removes $T
	fi
	# /dev/log for the listener: a /dev of our own (only in this namespace)
	mount -t tmpfs -o mode=755 fhmap-test-dev /dev || skip "cannot mount a private /dev"
	mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/fuse c 10 229 || skip "cannot create device nodes"
	ln -s /proc/self/fd /dev/fd
	# mount(8) runs helpers with a fixed PATH: put the binary on it
	mount -t tmpfs -o mode=755 fhmap-test-bin /usr/local/sbin && ln -s "$BIN" /usr/local/sbin/fhmap-unionfs
	"$LISTEN" /dev/log "$T/syslog.log" &
	PIDS+=($!)
	for _ in $(seq 100); do [ -S /dev/log ] && break; sleep 0.05; done

	mount -t fuse.fhmap-unionfs none "$M" -o "$OPTS" 2>"$T/err.log"
	check "mount -t fuse.fhmap-unionfs" test $? = 0
	check "the union serves the lower file" test "$(cat "$M/a" 2>/dev/null)" = hello
	check "the detached daemon says so on syslog" wait_for "$T/syslog.log" "fhmap-unionfs\[[0-9]+\]: serving $M "
	local pid
	pid=$(sed -En "s/.*fhmap-unionfs\[([0-9]+)\]: serving.*/\1/p" "$T/syslog.log" | head -n 1)
	[ -n "$pid" ] && PIDS+=("$pid")
	check "it runs as the detached daemon" grep -q "fhmap-unionfs" "/proc/${pid:-0}/cmdline"
	echo changed >"$M/a"
	umount "$M"
	check "umount" test $? = 0
	check "the daemon ends after umount" gone "${pid:-0}"
	check "and says so on syslog" wait_for "$T/syslog.log" "\[$pid\]: unmounting $M"
	sed 's/^/  syslog: /' "$T/syslog.log"

	printf 'none %s fuse.fhmap-unionfs %s,nofail 0 0\n' "$M" "$OPTS" >"$T/fstab"
	mount --fstab "$T/fstab" "$M" 2>>"$T/err.log"
	check "mount MOUNTPOINT from an fstab line" test $? = 0
	check "the copy-up survived the remount" test "$(cat "$M/a" 2>/dev/null)" = changed
	pid=$(sed -En "s/.*fhmap-unionfs\[([0-9]+)\]: serving.*/\1/p" "$T/syslog.log" | tail -n 1)
	umount "$M"
	check "umount of the fstab mount" test $? = 0
	check "the daemon ends" gone "${pid:-0}"
	check "nothing on the terminal while all went well" test ! -s "$T/err.log"

	mount -t fuse.fhmap-unionfs none "$M" -o "lowerdir=$T/missing,upperdir=$T/upper,db=$T/db" 2>"$T/err.log"
	check "a failing mount -t fails" test $? != 0
	check "and mount's caller reads why" grep -q "lowerdir '$T/missing'" "$T/err.log"
	check "nothing is mounted" bash -c "! grep -q ' $M fuse' /proc/self/mounts"
	"$BIN" none "$M" extra -o "$OPTS" 2>"$T/err.log"
	check "three non-option arguments: usage error 2" test $? = 2
}

case "$CASE" in
notify) case_notify ;;
mount) case_mount "$@" ;;
*) echo "unknown case $CASE"; exit 2 ;;
esac
finish
