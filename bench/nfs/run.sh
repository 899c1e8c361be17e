#!/usr/bin/env bash
# NFS load through NFS-Ganesha (FSAL_VFS, NFSv3, 127.0.0.1) over three
# exports of the same tree, served by one Ganesha side by side:
#   union  fhmap-unionfs (examples/fuse) on the tree as its lower layer
#   plain  a copy of the tree in a plain directory
#   fovl   fuse-overlayfs on the same lower layer
# Rounds interleave them: every (clients, operation) is measured on the three
# exports in turn (the order rotates), so ratios compare moments apart on the
# same shared machine. Then a profile: syscalls per NFS operation of both
# FUSE daemons (strace -c) and where fhmap-unionfs spends CPU (perf, if
# installed). Writes docs/benchmarks-nfs.md.
#
# usage: bench/nfs/run.sh [-b BUILD_DIR] [-w WORK_DIR] [-o OUT.md] [-r ROUNDS]
#                         [-n COUNT] [-t SECONDS] [-c "1 8"] [-P] [-R RAW]
#   -b  build directory with fhmap-nfs-bench, fhmap-unionfs, libfhmap-fsid.so
#       (default build; configured and built if they are missing)
#   -w  work directory (default a new one under $TMPDIR or /tmp)
#   -o  report (default docs/benchmarks-nfs.md)
#   -r  rounds (5), -n operations per phase (20000), -t seconds per phase at
#       most (2), -c client counts ("1 8")
#   -P  leave the profile out
#   -R  measure nothing: render the report again from the raw output of an
#       earlier run (a report's last block, or a saved copy)
# Needs root, /dev/fuse, nfs-ganesha(-vfs), rpcbind and fuse-overlayfs; exits
# 77 saying what is missing otherwise.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$top/build
work=""
out=$top/docs/benchmarks-nfs.md
rounds=5
count=20000
secs=2
clients="1 8"
profile=1
raw=""
while getopts "b:w:o:r:n:t:c:PR:h" opt; do
	case $opt in
	b) build=$OPTARG ;;
	w) work=$OPTARG ;;
	o) out=$OPTARG ;;
	r) rounds=$OPTARG ;;
	n) count=$OPTARG ;;
	t) secs=$OPTARG ;;
	c) clients=$OPTARG ;;
	P) profile=0 ;;
	R) raw=$OPTARG ;;
	*) sed -n '2,24p' "$0"; exit 2 ;;
	esac
done
# render RAW: the report from raw lines; the raw lines are kept beside OUT
# (OUT.raw) when that fails.
render() {
	if awk -v analysis="$top/bench/nfs/analysis.md" -f "$top/bench/nfs/report.awk" "$1" >"$out"; then
		echo "wrote $out" >&2
	else
		cp "$1" "$out.raw"
		echo "run.sh: rendering failed; raw output in $out.raw" >&2
		return 1
	fi
}
if [ -n "$raw" ]; then
	res=$(mktemp)
	sed -n '/^```raw$/,/^```$/p' "$raw" | grep '^@' >"$res" || cp "$raw" "$res"
	render "$res"
	rm -f "$res"
	exit 0
fi

skip() { echo "SKIP: $*" >&2; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (FUSE mounts, Ganesha, rpcbind)"
[ -c /dev/fuse ] && { : </dev/fuse; } 2>/dev/null || skip "/dev/fuse is missing or cannot be opened"
for cmd in ganesha.nfsd rpcbind rpcinfo fuse-overlayfs strace; do
	command -v "$cmd" >/dev/null || skip "$cmd not installed (scripts/packages.txt)"
done
bench=$build/bench/nfs/fhmap-nfs-bench
unionfs=$build/examples/fuse/fhmap-unionfs
fsid_lib=$build/examples/ganesha/libfhmap-fsid.so
if [ ! -x "$bench" ] || [ ! -x "$unionfs" ] || [ ! -f "$fsid_lib" ]; then
	cmake -S "$top" -B "$build" >/dev/null
	cmake --build "$build" -j"$(nproc)" --target fhmap-nfs-bench fhmap-unionfs fhmap-fsid >/dev/null
fi
[ -x "$bench" ] || skip "fhmap-nfs-bench not built (libnfs-dev missing)"
[ -x "$unionfs" ] || skip "fhmap-unionfs not built (libfuse3-dev missing)"
stack=$top/examples/ganesha/ganesha-stack.sh
ports=($("$stack" free-ports 2 "${FHMAP_NFS_BENCH_PORTS_FROM:-32100}")) || skip "no free TCP ports"

work=${work:-$(mktemp -d "${TMPDIR:-/tmp}/fhmap-nfs-bench.XXXXXX")}
mkdir -p "$work"
work=$(cd "$work" && pwd)
S=$work/state
res=$work/raw
ovl_pid="" pin_pid=""
maxc=$(tr ' ' '\n' <<<"$clients" | sort -n | tail -1)

cleanup() {
	local rc=$? m
	[ -z "$pin_pid" ] || { kill "$pin_pid" 2>/dev/null; wait "$pin_pid" 2>/dev/null || true; }
	[ -f "$S/stack.env" ] && "$stack" down "$S" || true
	if [ -n "$ovl_pid" ]; then
		kill -TERM "$ovl_pid" 2>/dev/null || true
		wait "$ovl_pid" 2>/dev/null || true
	fi
	for m in "$work/fovl" "$work/union"; do
		if mountpoint -q "$m" 2>/dev/null; then
			echo "run.sh: $m still mounted; unmounting" >&2
			umount "$m" || umount -l "$m"
			rc=1
		fi
	done
	grep -qF " $work/" /proc/self/mounts || rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

machine() {
	local dirty=""
	git -C "$top" status --porcelain lib include examples | grep -q . && dirty=", with uncommitted changes"
	echo "@command bench/nfs/run.sh -r $rounds -n $count -t $secs -c \"$clients\""
	echo "@machine kernel $(uname -r)"
	echo "@machine cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
	echo "@machine memory $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "@machine filesystem $(df -T "$work" | awk 'NR == 2 { print $2 " on " $1 }')"
	echo "@machine software nfs-ganesha $(dpkg-query -W -f '${Version}' nfs-ganesha 2>/dev/null || echo ?)," \
		"libnfs $(dpkg-query -W -f '${Version}' libnfs13 2>/dev/null || echo ?)," \
		"fuse-overlayfs $(dpkg-query -W -f '${Version}' fuse-overlayfs 2>/dev/null || echo ?)," \
		"libfuse $(dpkg-query -W -f '${Version}' libfuse3-3 2>/dev/null || echo ?)," \
		"LMDB $(dpkg-query -W -f '${Version}' liblmdb0 2>/dev/null || echo ?)"
	echo "@machine source commit $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo ?)$dirty"
	echo "@machine load_before $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "@machine date $(date -u '+%Y-%m-%d %H:%M UTC')"
}

# The tree: the lower layer of both unions, and a copy as the plain export.
mkdir -p "$work"/{lower,plain,upper,union,ovl-upper,ovl-work,fovl}
"$bench" populate "$work/lower" -c "$maxc"
"$bench" populate "$work/plain" -c "$maxc"
fuse-overlayfs -f -o "lowerdir=$work/lower,upperdir=$work/ovl-upper,workdir=$work/ovl-work" "$work/fovl" \
	</dev/null >"$work/fovl.log" 2>&1 &
ovl_pid=$!
for ((i = 0; i < 100; i++)); do
	[ "$(stat -f -c %t "$work/fovl" 2>/dev/null)" = 65735546 ] && break # FUSE_SUPER_MAGIC
	sleep 0.1
done
"$stack" up "$S" --export "$work/union" --pseudo /union --nfs-port "${ports[0]}" --mnt-port "${ports[1]}" \
	--unionfs "$unionfs" --lower "$work/lower" --upper "$work/upper" --db "$work/db" --fsid-lib "$fsid_lib" \
	--extra-export "/plain=$work/plain" --extra-export "/fovl=$work/fovl"
# fuse-overlayfs cannot be exported over NFS as it is: its nodeids are
# pointers and it answers no LOOKUP of ".", so Ganesha's handles turn
# ESTALE/NOENT as soon as the kernel evicts an inode (within seconds here).
# Every object of the three trees stays open in this process for the run, so
# that the comparison measures speed, for all three alike.
(
	while IFS= read -r f; do
		# shellcheck disable=SC2034 # the fd only has to stay open
		exec {fd}<"$f"
	done < <(find "$work/union/nfsbench" "$work/plain/nfsbench" "$work/fovl/nfsbench")
	exec sleep 86400
) &
pin_pid=$!

nfsrun() { "$bench" run -p "${ports[0]}" -m "${ports[1]}" "$@"; }
targets=(union plain fovl)
# shellcheck disable=SC2054 # create,remove is one group: remove removes what create made
groups=(lookup getattr read4k read1m write create,remove)

# round R COUNT SECONDS: every group, client count and export once.
round() {
	local r=$1 n=$2 t=$3 c g k i
	for c in $clients; do
		for g in "${groups[@]}"; do
			for ((k = 0; k < 3; k++)); do
				i=$(((k + r) % 3))
				nfsrun -e "/${targets[$i]}" -c "$c" -n "$n" -t "$t" -l "${targets[$i]}" "$g"
			done
		done
	done
}

# profiled TOOL...: one more phase of group $g on /$target (1 client,
# COUNT / 10 operations) with TOOL attached to the daemon between the setup
# and the phase; the phase's lines go to $work/phase.
profiled() {
	local tool i
	nfsrun -e "/$target" -c 1 -n $((count / 10 + 1)) -t "$secs" -l profile -d 0.3 "$g" >"$work/phase" 2>"$work/phase.err" &
	local b=$!
	for ((i = 0; i < 300; i++)); do
		grep -q '^@ready' "$work/phase.err" && break
		sleep 0.05
	done
	"$@" &
	tool=$!
	wait "$b" || { cat "$work/phase.err" >&2; kill -INT "$tool"; wait "$tool" || true; return 1; }
	kill -INT "$tool"
	wait "$tool" || true
}

# profile_daemon NAME PID TARGET: strace -c -w (wall time per syscall) of
# the daemon during one phase per operation, as
# "@profile NAME OP OPS SYSCALL CALLS SECONDS" (SYSCALL "total" too).
profile_daemon() {
	local name=$1 pid=$2 target=$3 g op ops
	for g in "${groups[@]}"; do
		profiled strace -c -w -f -q -p "$pid" -o "$work/strace.$name"
		# strace -c sums the whole group: create+remove counts per file
		# created and removed, the OPS of its first phase.
		op=${g/,/+}
		ops=$(awk 'NR == 1 { print $5 }' "$work/phase")
		awk -v n="$name" -v op="$op" -v ops="$ops" '
			$1 ~ /^[0-9.]+$/ { printf "@profile %s %s %d %s %d %s\n", n, op, ops, $NF, $4, $2; any = 1 }
			END { if (!any) printf "@profile %s %s %d total 0 0\n", n, op, ops }' "$work/strace.$name"
	done
}

# perf of fhmap-unionfs during CREATE+REMOVE and WRITE: top functions by
# self (on-CPU) time.
perf_union() {
	local pid=$1 g target=union
	command -v perf >/dev/null || { echo "@skip perf not installed: no CPU profile"; return; }
	for g in create,remove write; do
		profiled perf record -q -F 1999 -g -p "$pid" -o "$work/perf.data"
		perf report -i "$work/perf.data" --no-children --stdio --sort dso,sym 2>/dev/null |
			awk -v g="${g/,/+}" '/^ +[0-9.]+%/ && n < 12 { pct = $1; $1 = ""; sub(/^ +/, ""); printf "@perf %s %s %s\n", g, pct, $0; n++ }'
	done
}

{
	machine
	echo "@info rounds $rounds"
	echo "@info count $count"
	echo "@info seconds $secs"
	echo "@info clients $clients"
	start=$(date +%s)
	round 0 $((count / 10 + 1)) "$secs" >/dev/null # warm-up: copy-ups, caches
	for ((r = 1; r <= rounds; r++)); do
		echo "@round $r"
		round "$r" "$count" "$secs"
	done
	echo "@info measure_seconds $(($(date +%s) - start))"
	if [ "$profile" = 1 ]; then
		profile_daemon fhmap-unionfs "$(cat "$S/fuse.pid")" union
		profile_daemon fuse-overlayfs "$ovl_pid" fovl
		perf_union "$(cat "$S/fuse.pid")"
	fi
	echo "@machine load_after $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$res"
render "$res"
