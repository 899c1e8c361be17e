#!/usr/bin/env bash
# bench_union_smoke: bench/union/run.sh -q over every workload and system,
# one round, with the profile of one workload; then checks the report: a
# figure for every workload on every system (mergerfs's copy-up excepted:
# it has none and must fail with EROFS), no daemon that exited badly, the
# targets table, the plot, and the profile's strace, FUSE and perf parts
# where those tools are installed.
#
# usage: union-smoke.sh SOURCE_DIR BUILD_DIR WORK_DIR   (exit 77: skipped)
set -euo pipefail
src=$1 build=$2 work=$3
out="$work/benchmarks-union.md"
rm -f "$out"
mkdir -p "$work"
rc=0
"$src/bench/union/run.sh" -q -r 1 -p create -b "$build" -d "$work" -o "$out" || rc=$?
[ $rc = 77 ] && exit 77
fail() { echo "bench_union_smoke: FAIL: $*" >&2; exit 1; }
[ $rc = 0 ] || fail "run.sh exited with $rc"
[ -s "$out" ] || fail "no report $out"
[ -s "$work/benchmarks-union.png" ] || fail "no plot"
raw=$(sed -n '/^## Raw output/,$p' "$out" | grep '^@')

systems=$(sed -n 's/^@systems //p' <<<"$raw")
units=$(sed -n 's/^@units //p' <<<"$raw")
[[ " $systems " == *" overlayfs "* ]] || fail "kernel overlayfs missing from: $systems"
[[ " $systems " == *" fhmap-"* ]] || fail "no fhmap-unionfs configuration in: $systems"
for tool in fuse-overlayfs mergerfs; do
	! command -v $tool >/dev/null || [[ " $systems " == *" $tool "* ]] || fail "$tool is installed but was not measured"
done

ids=$(awk -v units=" $units " '$1 == "@workload" && index(units, " " $3 " ") { print $2 }' <<<"$raw")
[ "$(wc -w <<<"$ids")" -ge 24 ] || fail "only $(wc -w <<<"$ids") workloads: $ids"
missing=""
for s in $systems; do
	for id in $ids; do
		[ "$s/$id" = mergerfs/copyup ] && continue
		grep -qE "^@result $id $s 1 [0-9.]+$" <<<"$raw" || missing="$missing $s/$id"
	done
done
[ -z "$missing" ] || { grep '^@fail' <<<"$raw" >&2 || true; fail "no figure for:$missing"; }
if [[ " $systems " == *" mergerfs "* ]]; then
	grep -q '^@fail copyup mergerfs 1 .*Read-only file system' <<<"$raw" || fail "mergerfs copy-up did not fail with EROFS"
fi
bad=$(grep '^@fail' <<<"$raw" | grep -v '^@fail copyup mergerfs ' || true)
[ -z "$bad" ] || fail "unexpected failures: $bad"
bad=$(grep '^@note .* exited with status' <<<"$raw" || true)
[ -z "$bad" ] || fail "$bad"

grep -q '^| default mode ≤ 1.0× fuse-overlayfs' "$out" || grep -q 'default mode was not recognised' "$out" ||
	fail "no default-mode target in the report"
grep -q '^| 4-thread metadata throughput ≥ 1.8× 1-thread | fhmap-' "$out" || fail "no scaling target in the report"

grep -q '^@profiled create$' <<<"$raw" || fail "create was not profiled"
if command -v strace >/dev/null; then
	for s in $systems; do
		case $s in fhmap-* | fuse-overlayfs) ;; *) continue ;; esac
		grep -qE "^@strace create $s total [1-9]" <<<"$raw" || fail "no strace summary for $s"
		# every create of the workload reached the daemon as a CREATE request
		want=$(awk '$1 == "@workload" && $2 == "create" { print $5 }' <<<"$raw")
		n=$(awk -v s="$s" '$1 == "@fusereq" && $2 == "create" && $3 == s && $4 == "CREATE" { print $5 }' <<<"$raw")
		[ "${n:-0}" -ge "$want" ] || fail "FUSE CREATE requests counted for $s: ${n:-none} for $want creates"
	done
fi
if command -v perf >/dev/null; then
	grep -q '^@perf create fhmap-' <<<"$raw" || fail "no perf profile"
fi
echo "bench_union_smoke: $(wc -w <<<"$ids") workloads on: $systems"
