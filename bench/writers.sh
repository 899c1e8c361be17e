#!/usr/bin/env bash
# Measures the write path with fhmap-writers: durable updates/s, device
# flushes per update and latency with 1..16 writer threads in each sync mode
# and in SQLite (WAL) with the same durability, next to the library before
# group commit; every configuration once per repetition, so machine noise
# hits all alike. Writes docs/benchmarks-write.md.
#
# usage: bench/writers.sh [-b BUILD_DIR] [-w WORK_DIR] [-o OUT.md] [-r REPS] [-s SECONDS]
#                         [-t "THREADS"] [-B COMMIT] [-R RAW]
#   -b  build directory (default build-bench; configured Release if new)
#   -w  work directory on the disk to measure (default BUILD_DIR/writers-work);
#       tmpfs is refused: its flushes cost nothing
#   -o  report (default docs/benchmarks-write.md)
#   -r  repetitions (5), -s seconds measured per configuration (3, after 0.5 s
#       of warm-up), -t writer thread counts ("1 2 4 8 16")
#   -B  the library before group commit: this commit is built in
#       BUILD_DIR/baseline-COMMIT (default e3e1323)
#   -R  measure nothing: render the report again from the raw output of an
#       earlier run (a report's last block, or a saved copy)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
build="$top/build-bench"
work=""
out="$top/docs/benchmarks-write.md"
reps=5
secs=3
threads="1 2 4 8 16"
base_commit=e3e1323
raw=""
while getopts "b:w:o:r:s:t:B:R:h" opt; do
	case $opt in
	b) build=$OPTARG ;;
	w) work=$OPTARG ;;
	o) out=$OPTARG ;;
	r) reps=$OPTARG ;;
	s) secs=$OPTARG ;;
	t) threads=$OPTARG ;;
	B) base_commit=$OPTARG ;;
	R) raw=$OPTARG ;;
	*) sed -n '2,19p' "$0"; exit 2 ;;
	esac
done
build=$(realpath -m "$build") # the tools want absolute paths
work=$(realpath -m "${work:-$build/writers-work}")
old_lib=""
res=$(mktemp -d)
trap 'rm -rf "$res" "${work:?}/run"' EXIT

# fhmap-writers built against the library before group commit too.
baseline() {
	local base
	base=$(bench_baseline "$top" "$build" "$base_commit" fhmap)
	local type=()
	[ -f "$build/CMakeCache.txt" ] || type=(-DCMAKE_BUILD_TYPE=Release) # a new build dir
	cmake -S "$top" -B "$build" "${type[@]}" -DFHMAP_BENCH_BASELINE="$base" >/dev/null
	bench_build "$top" "$build" fhmap-writers fhmap-writers-baseline fhmap-commitpair
	old_lib=$base/build/lib/libfhmap.so.0
	# It must run the old library, not this tree's.
	if ! ldd "$build/bench/fhmap-writers-baseline" | grep -q "$base/build/lib/libfhmap"; then
		echo "writers.sh: fhmap-writers-baseline does not load $base/build/lib/libfhmap.so" >&2
		exit 1
	fi
}

# One configuration: "@w REP CONFIG THREADS ..." (see bench/writers.c).
# today-full is full on the earlier library; full-batchN is full with
# explicit batches of N binds.
one() {
	local rep=$1 name=$2 n=$3 bin=$build/bench/fhmap-writers args=(--config "$2")
	case $name in
	today-full) bin=$build/bench/fhmap-writers-baseline args=(--config full) ;;
	*-batch*) args=(--config "${name%-batch*}" --batch "${name##*-batch}") ;;
	esac
	"$bin" --dir "$work/run" "${args[@]}" --threads "$n" --seconds "$secs" |
		sed -e "s/^@w /@w $rep /" -e "s/^@w $rep full /@w $rep $name /"
}

measure() {
	baseline
	mkdir -p "$work"
	local fs
	fs=$(df -T "$work" | awk 'NR == 2 { print $2 }')
	if [ "$fs" = tmpfs ]; then
		echo "writers.sh: $work is on tmpfs; measure on a real disk (-w)" >&2
		exit 1
	fi
	echo "@command bench/writers.sh -r $reps -s $secs -t \"$threads\" -B $base_commit"
	bench_machine "$top" "$work"
	echo "@machine baseline $base_commit $(git -C "$top" log -1 --format=%s "$base_commit" | cut -c1-60)"
	local list=() block n c rep i
	for n in $threads; do
		for c in full lazy deferred-sync deferred sqlite-full sqlite-normal; do
			list+=("$c $n")
		done
	done
	list+=("today-full 16" "full-batch8 1" "full-batch16 1")
	for ((rep = 1; rep <= reps; rep++)); do
		echo "== repetition $rep/$reps" >&2
		# The targets' configurations run as one block, A B C C B A
		# (C B A A B C in the next repetition), so that their ratios
		# compare windows seconds apart; the rest forwards, then
		# backwards.
		block=("today-full 1" "full 1" "full 16")
		((rep % 2)) || block=("full 16" "full 1" "today-full 1")
		for i in 0 1 2 2 1 0; do
			echo "   ${block[i]}" >&2
			one "$rep" ${block[i]}
		done
		for ((i = 0; i < ${#list[@]}; i++)); do
			if ((rep % 2)); then c=${list[i]}; else c=${list[${#list[@]} - 1 - i]}; fi
			[ "$c" = "full 1" ] || [ "$c" = "full 16" ] && continue
			echo "   $c" >&2
			one "$rep" $c
		done
		echo "   one writer, this library and $base_commit in paired blocks" >&2
		"$build/bench/fhmap-commitpair" --dir "$work/run" --old "$old_lib" --new "$build/lib/libfhmap.so.0" \
			--seconds "$(awk -v s="$secs" 'BEGIN { print 4 * s }')" | sed "s/^@gcpair /@gcpair $rep /"
		echo "@machine busy_rep_$rep $(bench_busy fhmap-writers)"
		echo "@machine load_rep_$rep $(cut -d' ' -f1-3 /proc/loadavg)"
	done
	echo "@machine load_after $(cut -d' ' -f1-3 /proc/loadavg)"
}

if [ -n "$raw" ]; then
	grep '^@' "$raw" >"$res/all.txt"
else
	measure >"$res/all.txt"
fi
mkdir -p "$(dirname "$out")"
{
	awk -f "$top/bench/writers-report.awk" "$res/all.txt"
	echo
	cat "$top/bench/analysis-write.md"
	printf '\n## Raw output of this run\n\n```\n'
	cat "$res/all.txt"
	printf '```\n'
} >"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out" >&2
