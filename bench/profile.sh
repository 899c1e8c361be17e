#!/usr/bin/env bash
# Instruction counts per call of read-side kinds of fhmap-bench under
# callgrind (deterministic: free of the machine's noise), with the functions
# each call spends them in; and of fhmap_lookup_origin of the library at
# COMMIT (fhmap_lookup_origin before lookups checked their index hits, and
# fhmap_decode). bench/analysis.md quotes them.
#
# usage: bench/profile.sh [-b BUILD_DIR] [-w WORK_DIR] [-s SCALE] [-n OPS] [-B COMMIT] [-k "KINDS"] [-f N]
#   -b  build directory (default build-bench, Release), -w work directory
#   -s  objects in the map (20000), -n operations per kind (20000; each runs 2 n times)
#   -B  the earlier library (e3e1323), -f functions listed per kind (12)
#   -k  kinds (default: the floors, decode, lookup and bind of a bound origin)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
build="$top/build-bench"
work=""
scale=20000
ops=20000
base_commit=e3e1323
kinds="floor_mdb_get floor_index_get floor_lookup fhmap_decode fhmap_lookup_origin fhmap_bind_bound"
top_n=12
while getopts "b:w:s:n:B:k:f:h" opt; do
	case $opt in
	b) build=$OPTARG ;;
	w) work=$OPTARG ;;
	s) scale=$OPTARG ;;
	n) ops=$OPTARG ;;
	B) base_commit=$OPTARG ;;
	k) kinds=$OPTARG ;;
	f) top_n=$OPTARG ;;
	*) sed -n '2,14p' "$0"; exit 2 ;;
	esac
done
work=${work:-$build/profile-work}
res=$(mktemp -d)
trap 'rm -rf "$res" "${work:?}"' EXIT

# The measured function of each kind (fhmap-bench.c, floor.c).
op_of() {
	case $1 in
	floor_mdb_get) echo floor_op ;;
	floor_index_get) echo floor_index_op ;;
	floor_lookup) echo floor_lookup_op ;;
	fhmap_encode) echo op_encode ;;
	fhmap_decode) echo op_decode ;;
	fhmap_lookup_origin) echo op_lookup_origin ;;
	fhmap_bind_bound) echo op_bind_bound ;;
	*) echo "profile.sh: no function known for kind $1" >&2; exit 2 ;;
	esac
}

# Counts only inside the kind's function: every instruction counted is one
# of its calls'. Prints "@ir LABEL IR_PER_CALL CALLS" and the functions.
profile() {
	local label=$1 fn=$2
	shift 2
	valgrind --tool=callgrind --toggle-collect="$fn" --callgrind-out-file="$res/$label.cg" \
		"$@" --dir "$work" --scale "$scale" --parts core --reps 1 --ops "$ops" --threads 1 >/dev/null 2>"$res/$label.log"
	local calls
	calls=$(callgrind_annotate --inclusive=yes --tree=caller "$res/$label.cg" |
		awk -v fn="$fn" '$0 ~ "[*]  [?]+:" fn " " { print sum; exit }
		                 /^ *[0-9,]+ .*< / { n = $0; sub(/.*\(/, "", n); sub(/x\).*/, "", n); gsub(",", "", n); sum += n; next }
		                 { sum = 0 }')
	callgrind_annotate --inclusive=yes "$res/$label.cg" | awk -v label="$label" -v calls="$calls" -v top="$top_n" '
		/PROGRAM TOTALS/ { t = $1; gsub(",", "", t); printf "@ir %s %.0f %d\n", label, t / calls, calls; next }
		/^ *[0-9,]+ +\(/ && !/clone|start_thread|worker_main/ && shown < top {
			v = $1; gsub(",", "", v); f = $0; sub(/.*:/, "", f); sub(/ \[.*/, "", f)
			printf "@fn %s %s %.0f\n", label, f, v / calls; shown++ }'
}

bench_build "$top" "$build" fhmap-bench
base=$(bench_baseline "$top" "$build" "$base_commit" fhmap fhmap-bench)
echo "@command bench/profile.sh -s $scale -n $ops -B $base_commit"
echo "@machine source commit $(git -C "$top" rev-parse --short HEAD); valgrind $(valgrind --version)"
for k in $kinds; do
	profile "$k" "$(op_of "$k")" "$build/bench/fhmap-bench" --kinds "$k"
done
# The earlier fhmap-bench has no --kinds: it runs every kind, and the calls
# are counted from callgrind's call graph.
for k in fhmap_lookup_origin fhmap_decode; do
	profile "$k@$base_commit" "$(op_of "$k")" "$base/build/bench/fhmap-bench"
done
