#!/usr/bin/env bash
# SIGKILL of fhmap-unionfs under concurrent load (issue 14.1; killload.h).
#   killload.sh BINARY KILLLOAD FHMAPCTL
# Cycles: the workload (killload run) changes the union from several
# threads in several processes; a random moment later the daemon is killed
# by its PID (SIGKILL), the dead mount is unmounted, the union mounted
# again, and killload check compares it and every handle taken so far with
# what the workload's journal says returned; fhmapctl check --deep must be
# clean. Every FHMAP_KILL_EPOCH cycles a fresh union (new upper layer and
# map) in the next sync mode, after a clean unmount.
# Environment: FHMAP_KILL_CYCLES (default 210), FHMAP_KILL_EPOCH (15),
# FHMAP_KILL_THREADS (4), FHMAP_KILL_PROCS (2), FHMAP_KILL_MAXMS (longest
# run before the kill, 300), FHMAP_KILL_SEED (random; printed),
# FHMAP_KEEP_T=1 keeps the temp dir (also kept on failure).
# Needs root and /dev/fuse; exits 77 (skipped) otherwise.
set -u

BIN=$1
KL=$2
CTL=$3
CYCLES=${FHMAP_KILL_CYCLES:-210}
EPOCH=${FHMAP_KILL_EPOCH:-15}
THREADS=${FHMAP_KILL_THREADS:-4}
PROCS=${FHMAP_KILL_PROCS:-2}
MAXMS=${FHMAP_KILL_MAXMS:-300}
SEED=${FHMAP_KILL_SEED:-$((RANDOM * 32768 + RANDOM))}
# the three sync modes, and deferred with flushes during the runs
MODES=(sync=deferred sync=full sync=lazy sync=deferred,flush_interval=20)

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (mounts, trusted.* xattrs, open_by_handle_at)"
[ -c /dev/fuse ] || skip "/dev/fuse is missing"
command -v fusermount3 >/dev/null || skip "fusermount3 is missing (Debian package fuse3)"
for x in "$BIN" "$KL" "$CTL"; do [ -x "$x" ] || { echo "FAIL: $x not built"; exit 1; }; done

T=$(mktemp -d /tmp/fhmap-kill.XXXXXX)
M=$T/mnt
DB=$T/db
UP=$T/up
PID=""
RUN=""
FAILED=0
mkdir -p "$T/lower" "$M"

mounted() { grep -q " $1 fuse" /proc/self/mounts; }

cleanup() {
	[ -n "$RUN" ] && kill -KILL "$RUN" 2>/dev/null
	if mounted "$M"; then fusermount3 -u "$M" 2>/dev/null || umount -l "$M"; fi
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill -KILL "$PID"
		wait "$PID" 2>/dev/null
	fi
	if [ -n "${FHMAP_KEEP_T:-}" ] || [ "$FAILED" != 0 ]; then
		echo "# kept $T"
	else
		rm -rf "$T"
	fi
}
trap cleanup EXIT

fail() {
	FAILED=1
	echo "FAIL - $*"
	echo "# reproduce: FHMAP_KILL_SEED=$SEED FHMAP_KILL_CYCLES=$CYCLES FHMAP_KILL_EPOCH=$EPOCH" \
		"FHMAP_KILL_THREADS=$THREADS FHMAP_KILL_PROCS=$PROCS FHMAP_KILL_MAXMS=$MAXMS $0 $BIN $KL $CTL"
	echo "# daemon log (last lines):"; tail -n 20 "$T/daemon.log"
	exit 1
}

start() {
	"$BIN" -o "lowerdir=$T/lower,upperdir=$UP,db=$DB,$MODE" "$M" -f 2>>"$T/daemon.log" &
	PID=$!
	for _ in $(seq 1000); do
		mounted "$M" && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.01
	done
	fail "the daemon did not mount ($MODE)"
}

# the union against the journal, then the map
check() {
	"$KL" check "$M" "$T/state" "$T/journal" "$UP/.fhmap-work" >"$T/check.out" 2>&1 ||
		{ cat "$T/check.out"; cp "$T/journal" "$T/journal.failed" 2>/dev/null; fail "$1: killload check"; }
	"$CTL" check "$DB" --deep >"$T/ctl.out" 2>&1 || { cat "$T/ctl.out"; fail "$1: fhmapctl check --deep"; }
	awk -v c="$1" '/^killload check:/ { sub(/^killload check: /, ""); print "# " c ": " $0 }' "$T/check.out" \
		>>"$T/summary"
}

"$KL" init "$T/lower" "$T/state0" "$THREADS" || fail "killload init"
RANDOM=$SEED
echo "# seed $SEED: $CYCLES cycles, a fresh union every $EPOCH, $THREADS threads in $PROCS processes," \
	"killed 10-$MAXMS ms into each run"
: >"$T/summary"
cycle=0 epoch=0
while [ "$cycle" -lt "$CYCLES" ]; do
	MODE=${MODES[$((epoch % ${#MODES[@]}))]}
	rm -rf "$UP" "$DB" "$T/journal"
	mkdir "$UP"
	cp "$T/state0" "$T/state"
	start
	check "epoch $epoch start ($MODE)"
	for _ in $(seq "$EPOCH"); do
		[ "$cycle" -lt "$CYCLES" ] || break
		cycle=$((cycle + 1))
		"$KL" run "$M" "$T/state" "$T/journal" "$PROCS" "$((SEED + cycle))" 30 >"$T/run.out" 2>&1 &
		RUN=$!
		ms=$((10 + RANDOM % (MAXMS - 9)))
		sleep "$(printf '0.%03d' "$ms")"
		kill -KILL "$PID"
		wait "$PID" 2>/dev/null
		PID=""
		wait "$RUN"
		rc=$?
		RUN=""
		cat "$T/run.out" >>"$T/runs.log"
		[ "$rc" = 0 ] || { cat "$T/run.out"; fail "cycle $cycle ($MODE): the workload failed"; }
		fusermount3 -u "$M" 2>/dev/null || umount -l "$M"
		start
		check "cycle $cycle ($MODE) killed at $ms ms"
	done
	# a clean end: unmount, the daemon exits 0, the map is consistent
	fusermount3 -u "$M" || fail "fusermount3 -u"
	wait "$PID"
	rc=$?
	PID=""
	[ "$rc" = 0 ] || fail "epoch $epoch: the daemon exited $rc after the unmount"
	"$CTL" check "$DB" --deep >"$T/ctl.out" 2>&1 || { cat "$T/ctl.out"; fail "epoch $epoch: check after unmount"; }
	epoch=$((epoch + 1))
done
awk '/^# cycle/ { n++; s = $0
	match(s, /[0-9]+ operations returned/); ops += substr(s, RSTART, RLENGTH) + 0
	match(s, /[0-9]+ done/); done += substr(s, RSTART, RLENGTH) + 0
	match(s, /[0-9]+ not done/); undone += substr(s, RSTART, RLENGTH) + 0
	match(s, /[0-9]+ open their/); opened += substr(s, RSTART, RLENGTH) + 0
	match(s, /[0-9]+ ESTALE/); stale += substr(s, RSTART, RLENGTH) + 0 }
	END { printf "# %d kill cycles: %d operations returned (%.0f a cycle), %d interrupted ones seen done, %d not done;" \
		" %d handle opens reached their object, %d ESTALE for removed objects\n", n, ops, n ? ops / n : 0, done,
		undone, opened, stale }' "$T/summary"
for m in "${MODES[@]}"; do
	echo "# $m: $(grep -c "^# cycle.*($m)" "$T/summary") cycles"
done
echo "ok - $CYCLES kill cycles (seed $SEED): every union and handle as the journal says, fhmapctl check --deep clean"
