#!/usr/bin/env bash
# Failover of the database under a bind and copy-up workload (pg_failover):
# a primary p1 with a synchronous standby p2, which has a standby p3 of its
# own; the map location names all three (target_session_attrs=read-write).
# p1 is killed (SIGKILL) in the middle of the workload and p2 promoted; p3
# becomes p2's synchronous standby; p2 is killed and p3 promoted. The
# workload goes on through both; afterwards every update the journal says
# returned is in the map (handles decode to their objects, copy-ups are
# there), fhmapctl check is clean. Prints the figures.
#   failover.sh PG_FAILOVER FHMAPCTL
set -euo pipefail
drv=$1 ctl=$2
srv=$(dirname "$0")/server.sh
t=$(mktemp -d /tmp/pg-failover.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for s in p1 p2 p3; do [ -d "$t/$s" ] && "$srv" stop "$t/$s"; done
	rm -rf "$t"
}
trap cleanup EXIT
"$srv" start "$t/p1" --fsync || exit $? # 77: no PostgreSQL; full_page_writes: p3 is a backup of a standby
"$srv" start "$t/p2" --standby-of "$t/p1"
"$srv" start "$t/p3" --standby-of "$t/p2"
mkdir "$t/lower" "$t/upper"
map="host=127.0.0.1,127.0.0.1,127.0.0.1 port=$(cat "$t/p1/port"),$(cat "$t/p2/port"),$(cat "$t/p3/port")"
map+=" user=fhmap dbname=postgres target_session_attrs=read-write connect_timeout=2"

ms() { date +%s%3N; }
lines() { wc -l <"$t/journal"; }
# make_sync PRIMARY: once its standby streams, makes it synchronous (every
# commit then waits for it)
make_sync() {
	local uri
	uri=$(cat "$t/$1/conninfo")
	wait_for "$uri" "SELECT state FROM pg_stat_replication" streaming "$1 has no standby streaming"
	psql -qXAt "$uri" -c "ALTER SYSTEM SET synchronous_standby_names = '*'" \
		-c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null
	wait_for "$uri" "SELECT sync_state FROM pg_stat_replication" sync "no synchronous standby on $1"
}
# wait_for URI QUERY ANSWER WHY: for up to 20 s
wait_for() {
	for _ in $(seq 400); do
		[ "$(psql -qXAt "$1" -c "$2")" = "$3" ] && return 0
		sleep 0.05
	done
	echo "FAIL: $4"
	exit 1
}
# grow N: waits until the workload journals N more updates
grow() {
	local want=$(($(lines) + $1))
	for _ in $(seq 600); do
		[ "$(lines)" -ge "$want" ] && return 0
		kill -0 "${pids[0]}" 2>/dev/null || { echo "FAIL: the workload ended:"; cat "$t/run.err"; exit 1; }
		sleep 0.05
	done
	echo "FAIL: the workload made no progress for 30 s:"; cat "$t/run.err"; exit 1
}
# failover OLD NEW: SIGKILL of OLD's postmaster, NEW promoted 0.5 s after
# it is gone; prints when the last update before the kill and the first
# after the promotion returned
failover() {
	local n killed promoted
	n=$(lines)
	killed=$(ms)
	"$srv" kill "$t/$1" # returns once the postmaster is reaped
	sleep 0.5
	"$srv" promote "$t/$2"
	promoted=$(ms)
	grow 1
	awk -v k="$killed" -v p="$promoted" -v n="$n" -v old="$1" -v new="$2" '
		$2 < k { last = $2 } $2 >= p && !first { first = $2 }
		END { printf "%s killed (SIGKILL) after %d updates; %s promoted %d ms later; no update returned for" \
		      " %d ms, the first %d ms after the promotion\n", old, n, new, p - k, first - last, first - p }' \
		"$t/journal"
}

make_sync p1
touch "$t/journal"
"$drv" run "$map" "$t/lower" "$t/upper" "$t/journal" "$t/stop" >"$t/run.out" 2>"$t/run.err" &
pids=($!)
grow 300
failover p1 p2
grow 200
make_sync p2
grow 200
failover p2 p3
grow 300
touch "$t/stop"
wait "${pids[0]}" || { echo "FAIL: workload:"; cat "$t/run.err"; exit 1; }
pids=()
cat "$t/run.out"
grep -c "connection lost" "$t/run.err" >/dev/null || { echo "FAIL: the workload saw no failover"; exit 1; }
"$drv" verify "$map" "$t/lower" "$t/upper" "$t/journal"
"$ctl" check "$map" | tee "$t/check.out"
grep -q clean "$t/check.out"
echo "ok: two failovers of the database under a bind and copy-up workload"
