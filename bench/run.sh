#!/usr/bin/env bash
# Runs fhmap-bench at each scale, the end-to-end part once, counts sync
# syscalls under strace, and writes docs/benchmarks.md with a PNG plot.
#
# usage: bench/run.sh [-s SCALES] [-l LARGE] [-b BUILD_DIR] [-w WORK_DIR] [-o OUT.md]
#                     [-r REPS] [-n OPS] [-f FILES] [-R RAW]
#   -s  scales (objects), default "100000 1000000"
#   -l  scales at or above this leave SQLite out (its load takes the most
#       time and disk there); default 10000000
#   -b  build directory (configured and built Release if fhmap-bench is missing)
#   -w  work directory on the filesystem to measure (default BUILD_DIR/bench-work)
#   -o  report (default docs/benchmarks.md; benchmarks.png goes beside it)
#   -r  interleaved repetitions (3), -n operations per thread and repetition
#       (200000), -f real files for the walk and end-to-end parts (20000)
#   -R  measure nothing: render the report again from the raw output of an
#       earlier run (a report's last block, or a saved copy)
# Needs root for the end-to-end part (open_by_handle_at, overlayfs, drop_caches);
# without root that part is reported as skipped.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
scales="100000 1000000"
large=10000000
build="$top/build-bench"
work=""
out="$top/docs/benchmarks.md"
reps=3
ops=200000
files=20000
raw=""
while getopts "s:l:b:w:o:r:n:f:R:h" opt; do
	case $opt in
	s) scales=$OPTARG ;;
	l) large=$OPTARG ;;
	b) build=$OPTARG ;;
	w) work=$OPTARG ;;
	o) out=$OPTARG ;;
	r) reps=$OPTARG ;;
	n) ops=$OPTARG ;;
	f) files=$OPTARG ;;
	R) raw=$OPTARG ;;
	*) sed -n '2,18p' "$0"; exit 2 ;;
	esac
done
work=${work:-$build/bench-work}
bin="$build/bench/fhmap-bench"
res=$(mktemp -d)
cleanup() {
	# The bench unmounts its overlay itself; this covers a crash.
	if mountpoint -q "$work/e2e/mnt" 2>/dev/null; then umount "$work/e2e/mnt"; fi
	[ -n "$raw" ] || rm -rf "$work"
	rm -rf "$res"
}
trap cleanup EXIT

label() {
	awk -v n="$1" 'BEGIN { if (n % 1000000 == 0) printf "%dM", n / 1000000;
	                       else if (n % 1000 == 0) printf "%dk", n / 1000; else printf "%d", n }'
}


scale_runs() {
	local s l parts start
	for s in $scales; do
		l=$(label "$s")
		parts=core,sqlite,copyup
		[ "$s" -ge "$large" ] && parts=core,copyup
		echo "== scale $l ($parts)" >&2
		start=$(date +%s)
		"$bin" --dir "$work" --scale "$s" --label "$l" --parts "$parts" --reps "$reps" --ops "$ops"
		echo "@machine busy_during_$l $(bench_busy fhmap-bench)"
		echo "@seconds $l $(($(date +%s) - start)) $parts"
		rm -rf "${work:?}"/*
	done
}

# Sync syscalls per durable commit: strace a small copy-up run. The bench's
# progress lines (writes to fd 2) mark where each sync mode starts and ends;
# LMDB writes its meta page through an O_DSYNC descriptor, counted as well.
strace_commits() {
	command -v strace >/dev/null || return 0
	echo "== strace of copy-up commits" >&2
	strace -f -qq -o "$res/strace.txt" -e trace=openat,fsync,fdatasync,msync,sync_file_range,pwrite64,write \
		"$bin" --dir "$work" --scale 5000 --label strace --parts copyup --reps 1 --ops 1000 --commits 50 \
		>/dev/null 2>"$res/strace-stderr.txt"
	awk -f "$top/bench/strace-count.awk" -v commits=100 "$res/strace.txt"
	rm -rf "${work:?}"/*
}

measure() {
	bench_build "$top" "$build" fhmap-bench
	mkdir -p "$work"
	echo "@command bench/run.sh -s \"$scales\" -r $reps -n $ops -f $files"
	bench_machine "$top" "$work"
	scale_runs
	echo "== end to end ($files files)" >&2
	"$bin" --dir "$work" --parts e2e --files "$files" --reps "$reps" --ops "$ops"
	strace_commits
	echo "@machine load_after $(cut -d' ' -f1-3 /proc/loadavg)"
}

if [ -n "$raw" ]; then
	grep '^@' "$raw" >"$res/all.txt"
else
	measure >"$res/all.txt"
fi
mkdir -p "$(dirname "$out")"
png="$(dirname "$out")/benchmarks.png"
awk -f "$top/bench/plot-data.awk" "$res/all.txt" >"$res/plot.dat"
gnuplot -e "datafile='$res/plot.dat'; outfile='$png'" "$top/bench/plot.gp"
{
	awk -f "$top/bench/report.awk" -v png="$(basename "$png")" "$res/all.txt"
	echo
	cat "$top/bench/analysis.md"
	printf '\n## Raw output of this run\n\n```\n'
	cat "$res/all.txt"
	printf '```\n'
} >"$out.tmp"
mv "$out.tmp" "$out"
echo "wrote $out and $png" >&2
