#!/usr/bin/env bash
# Smoke test of the NFS benchmark (bench/nfs/run.sh) with tiny counts, so
# that it cannot rot: every export, operation and client count is measured,
# the profile is taken, the report has every row, and nothing is left
# mounted or running.
#
#   nfs_bench_smoke.sh TOP_SOURCE_DIR BUILD_DIR
#
# Exit 0 pass, 1 fail, 77 skip (run.sh says what is missing).
set -uo pipefail
top=$1 build=$2
t=$(mktemp -d "${TMPDIR:-/tmp}/fhmap-nfs-smoke.XXXXXX")
trap 'grep -qF " $t/" /proc/self/mounts || rm -rf "$t"' EXIT
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }

TMPDIR=$t bash "$top/bench/nfs/run.sh" -b "$build" -o "$t/report.md" -r 1 -n 40 -t 0.3 -c "1 2" >"$t/out" 2>&1
rc=$?
cat "$t/out"
[ "$rc" = 77 ] && exit 77
[ "$rc" = 0 ] || { echo "FAIL run.sh exited $rc"; exit 1; }
r=$t/report.md
for c in 1 2; do
	for op in lookup getattr read4k read1m write create remove; do
		grep -qE "^\| $c \| $op \| [0-9.]+( k)? \| [0-9.]+( k)? \| [0-9.]+( k)? \| [0-9]+% \|" "$r" ||
			fail "no figures for $op with $c client(s)"
		[ "$(grep -cE "^\| union ≥ .* \| $c \| $op \| " "$r")" = 2 ] || fail "no verdicts for $op with $c client(s)"
	done
done
for d in fhmap-unionfs fuse-overlayfs; do
	[ "$(grep -cE "^\| [a-z0-9+]+ \| $d \| " "$r")" = 6 ] || fail "profile of $d lacks operations"
done
grep -q '^```raw$' "$r" && grep -q '^@nfs union create 2 ' "$r" || fail "no raw block"
# The raw block renders again into the same report.
bash "$top/bench/nfs/run.sh" -R "$r" -o "$t/again.md" 2>/dev/null && cmp -s "$r" "$t/again.md" ||
	fail "run.sh -R does not reproduce the report"
if grep -qF " $t/" /proc/self/mounts; then
	fail "mounts left under $t"
	grep -F " $t/" /proc/self/mounts
fi
# A process left behind names the work directory in its command line or
# holds a file under it open (the daemons, Ganesha, the pinning process).
for p in /proc/[0-9]*; do
	[ "${p#/proc/}" = $$ ] && continue
	if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF "$t/" ||
		for l in "$p"/fd/*; do readlink "$l"; done 2>/dev/null | grep -qF "$t/"; then
		fail "process ${p#/proc/} ($(cat "$p/comm" 2>/dev/null)) left using $t"
	fi
done
[ "$fails" = 0 ] && echo "PASS" || echo "$fails check(s) failed"
[ "$fails" = 0 ]
