#!/usr/bin/env bash
# bench/union: fhmap-unionfs (each of its sync modes) against fuse-overlayfs,
# mergerfs and kernel overlayfs, side by side over one lower tree, and
# docs/benchmarks-union.md (with a plot) from the results.
#
# usage: bench/union/run.sh [-r ROUNDS] [-w WORKLOADS] [-s SYSTEMS] [-q] [-p PROFILE]
#                           [-d BASE_DIR] [-b BUILD_DIR] [-o OUT.md] [-R RAW]
#   -r  rounds (default 5; 1 with -q): every round runs each workload once on
#       each system, in an order rotated by round and workload, so that the
#       machine's noise falls on every system alike
#   -w  workloads, comma-separated names, shell patterns or groups (default
#       all): table (the seven of issue 12: stat create create4p copyup
#       seqwrite seqread mixed), meta (meta1t meta4t), walk, fio (fio-*)
#   -s  systems, comma-separated (default all): fhmap (every configuration
#       below), fhmap-NAME, fuse-overlayfs, mergerfs, overlayfs
#   -q  quick: small sizes (a smoke test, not a measurement)
#   -p  profile after the rounds: "missed" (every workload where an
#       fhmap-unionfs configuration misses a target; the default without -q),
#       "none" (the default with -q), or a comma list of workloads. For each,
#       fhmap-unionfs (every configuration) and fuse-overlayfs run once more
#       under `strace -c -f` of the daemon with the FUSE requests counted
#       (kernel tracepoint fuse:fuse_request_send through perf, else the
#       daemon's -d output), and fhmap-unionfs once more under `perf record`.
#   -d  base directory for lower tree, layers and mounts (default
#       /tmp/h-ubench); it must be on a real disk (tmpfs is refused)
#   -b  build directory with fhmap-unionfs and union-load (default
#       build-union in the source tree, configured RelWithDebInfo if missing)
#   -o  report (default docs/benchmarks-union.md; the .png goes beside it)
#   -R  measure nothing: write the report from an earlier run's raw output
#       (a report's last block, or BASE_DIR/run.*.raw)
#
# fhmap-unionfs configurations (environment):
#   FHMAP_UNION_MODES="full lazy"   one system per word: MODE means -o sync=MODE,
#       NAME:OPT1,OPT2 means the given -o options, "default" means none.
#       Unset: each of full, lazy, deferred (and modes named by --help) that
#       the daemon accepts, found by mounting; "default" if it takes none.
#   FHMAP_UNION_OPTS="..."          -o options added to every configuration
#       (e.g. a thread count)
#   FHMAP_UNION_DEFAULT=NAME        the configuration that is the daemon's
#       default (target: <= 1.0x fuse-overlayfs); unset: "default" if
#       listed, else "MODE (default)" or "default: MODE" on a sync line of --help
#   FHMAP_UNION_FULL=NAME           the FULL-sync configuration (<= 1.5x);
#       unset: "full", or "default" for a daemon without sync modes (its
#       map is always FULL)
#   FHMAP_UNION_BIN=PATH            the daemon (default BUILD_DIR/examples/fuse/fhmap-unionfs)
#
# Needs root, /dev/fuse and overlayfs (exit 77 without them). drop_caches
# before every workload affects the whole machine. Every mount and process
# it starts is ended by PID, also on failure or interrupt.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
here="$top/bench/union"
cmdline="bench/union/run.sh${*:+ $*}"

rounds=""
wl_spec=all
sys_spec=all
quick=0
profile=""
base=/tmp/h-ubench
build="$top/build-union"
out="$top/docs/benchmarks-union.md"
raw_in=""
while getopts "r:w:s:qp:d:b:o:R:h" opt; do
	case $opt in
	r) rounds=$OPTARG ;;
	w) wl_spec=$OPTARG ;;
	s) sys_spec=$OPTARG ;;
	q) quick=1 ;;
	p) profile=$OPTARG ;;
	d) base=$OPTARG ;;
	b) build=$OPTARG ;;
	o) out=$OPTARG ;;
	R) raw_in=$OPTARG ;;
	*) sed -n '2,49p' "$0"; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# = 0 ] || { echo "run.sh: unexpected argument '$1'" >&2; exit 2; }
rounds=${rounds:-$((quick ? 1 : 5))}
profile=${profile:-$([ $quick = 1 ] && echo none || echo missed)}
case $rounds in '' | *[!0-9]* | 0) echo "run.sh: -r needs a positive number" >&2; exit 2 ;; esac

say() { echo "union: $*" >&2; }
skip() { echo "union: SKIP: $*" >&2; exit 77; }

# ---- report -----------------------------------------------------------------

render() {
	local raw=$1 png dat ncol
	png="$(dirname "$out")/$(basename "$out" .md).png"
	dat=$(mktemp)
	mkdir -p "$(dirname "$out")"
	awk -f "$here/report.awk" -v mode=plot "$raw" >"$dat"
	local bases nb
	ncol=$(awk '$1 == "workload" { print NF; exit }' "$dat")
	bases=$(sed -n 's/^# relative to //p' "$dat")
	set -- $bases
	nb=$#
	if [ "${ncol:-0}" -ge 2 ] && [ "$nb" -ge 1 ]; then
		gnuplot -e "datafile='$dat'; outfile='$png'; ncol=$ncol; nb=$nb; b0='$1'; b1='${2:-}'" "$here/plot.gp" ||
			{ say "gnuplot failed: no plot"; rm -f "$png"; ncol=""; }
	else
		ncol=""
	fi
	{
		awk -f "$here/report.awk" -v mode=report -v png="${ncol:+$(basename "$png")}" "$raw"
		if [ -f "$here/analysis.md" ]; then
			echo
			cat "$here/analysis.md"
		fi
		printf '\n## Raw output of this run\n\n```\n'
		grep '^@' "$raw"
		printf '```\n'
	} >"$out.tmp"
	mv "$out.tmp" "$out"
	rm -f "$dat"
	say "wrote $out${ncol:+ and $png}"
}

if [ -n "$raw_in" ]; then
	tmp=$(mktemp)
	grep '^@' "$raw_in" >"$tmp"
	render "$tmp"
	rm -f "$tmp"
	exit 0
fi

# ---- prerequisites ----------------------------------------------------------

[ "$(id -u)" = 0 ] || skip "needs root (mounts, drop_caches)"
[ -c /dev/fuse ] || skip "no /dev/fuse"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || skip "kernel without overlayfs"
for t in gnuplot jq; do command -v $t >/dev/null || { echo "run.sh: $t missing (scripts/deps.sh installs it)" >&2; exit 1; }; done

bin=${FHMAP_UNION_BIN:-$build/examples/fuse/fhmap-unionfs}
load="$build/bench/union/union-load"
if [ -z "${FHMAP_UNION_BIN:-}" ] && { [ ! -x "$bin" ] || [ ! -x "$load" ]; }; then
	say "building fhmap-unionfs and union-load in $build"
	[ -f "$build/CMakeCache.txt" ] || cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build "$build" -j"$(nproc)" --target fhmap-unionfs union-load >/dev/null
fi
[ -x "$bin" ] || { echo "run.sh: no daemon at $bin" >&2; exit 1; }
[ -x "$load" ] || { echo "run.sh: no union-load at $load" >&2; exit 1; }
cache="$(dirname "$(dirname "$(dirname "$bin")")")/CMakeCache.txt"
btype=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache" 2>/dev/null || true)
asan=$(sed -n 's/^FHMAP_SANITIZE:[A-Z]*=//p' "$cache" 2>/dev/null || true)
if [ $quick = 0 ] && { [ "$btype" = Debug ] || [ "$asan" = ON ]; }; then
	echo "run.sh: $bin is a ${btype:-?} build${asan:+ (sanitizers $asan)}: figures would mislead" >&2
	exit 1
fi

mkdir -p "$base"
base=$(cd "$base" && pwd)
fstype=$(findmnt -n -o FSTYPE -T "$base")
case $quick:$fstype in 0:tmpfs | 0:ramfs | 0:overlay | 0:fuse*)
	echo "run.sh: $base is on $fstype, not a real disk; choose one with -d" >&2; exit 1 ;;
esac

# ---- sizes ------------------------------------------------------------------

if [ $quick = 1 ]; then
	tag=quick files_dirs=10 files_per=100 walk_dirs=20 walk_per=100 src_dirs=3 src_per=50
	tar_dirs=3 tar_per=50 big_mib=16 create_n=100 par_n=25 copyup_n=50 write_mib=16
	meta_n=200 fio_mib=16 fio_rand_mib=2
else
	tag=full files_dirs=200 files_per=100 walk_dirs=1000 walk_per=100 src_dirs=30 src_per=99
	tar_dirs=30 tar_per=99 big_mib=256 create_n=3000 par_n=1000 copyup_n=1000 write_mib=512
	meta_n=20000 fio_mib=256 fio_rand_mib=64
fi
nfiles=$((files_dirs * files_per))
walk_n=$((walk_dirs * walk_per + walk_dirs))
src_n=$((src_dirs * src_per + src_dirs))
tar_n=$((tar_dirs * tar_per + tar_dirs + 1))

# ---- state and cleanup ------------------------------------------------------

run=$(mktemp -d "$base/run.XXXXXX")
rawf="$run.raw"
ro="$run/lower"     # read-only bind mount of the lower tree: no system can change it
mnt="$run/mnt"
mkdir -p "$ro" "$mnt"
mounts=()           # mount points to undo, in order
daemon_pid=""       # FUSE daemon of the current mount
tracers=()          # strace/perf processes of a profile pass
cleanup() {
	local rc=$? p m i
	trap - EXIT INT TERM HUP
	for p in ${tracers[@]+"${tracers[@]}"}; do kill -INT "$p" 2>/dev/null || true; done
	for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
		m=${mounts[i]}
		mountpoint -q "$m" && { umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; }
	done
	if [ -n "$daemon_pid" ]; then
		for i in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$daemon_pid" 2>/dev/null || true
	fi
	wait 2>/dev/null || true
	rm -rf "$run"
	# the report carries the raw output of a finished run
	if [ $rc = 0 ]; then rm -f "$rawf"; else say "stopped (exit $rc); raw output so far: $rawf"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

emit() { echo "$*" >>"$rawf"; }

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# ---- lower tree -------------------------------------------------------------

lower="$base/lower-$tag"
data="$base/data-$tag"
params="files=$files_dirs*$files_per walk=$walk_dirs*$walk_per src=$src_dirs*$src_per tar=$tar_dirs*$tar_per big=$big_mib v1"
build_lower() {
	if [ -d "$lower" ] && [ -f "$data/tree.tar" ] && [ "$(cat "$base/lower-$tag.params" 2>/dev/null)" = "$params" ]; then
		return
	fi
	say "building the lower tree in $lower ($nfiles + $walk_n + $src_n entries, ${big_mib} MiB file)"
	local new="$lower.new.$$"
	rm -rf "$new" "$data.new.$$"
	mkdir -p "$new" "$data.new.$$"
	"$load" tree "$new/files" "$files_dirs" "$files_per" 1024
	"$load" tree "$new/walk" "$walk_dirs" "$walk_per" 0
	"$load" tree "$new/src" "$src_dirs" "$src_per" 4096
	dd if=/dev/urandom of="$new/big" bs=1M count="$big_mib" status=none
	"$load" tree "$data.new.$$/tarsrc" "$tar_dirs" "$tar_per" 2048
	tar -cf "$data.new.$$/tree.tar" -C "$data.new.$$" tarsrc
	rm -rf "$data.new.$$/tarsrc"
	sync
	rm -rf "$lower" "$data"
	mv "$new" "$lower"
	mv "$data.new.$$" "$data"
	echo "$params" >"$base/lower-$tag.params"
}

# ---- systems ----------------------------------------------------------------

# Starts a FUSE daemon in the foreground (its PID in daemon_pid) and waits
# until its mount is up; 1 if it exited instead.
fuse_start() {
	local log=$1
	shift
	"$@" 2>"$log" &
	daemon_pid=$!
	mounts+=("$mnt")
	for _ in $(seq 100); do
		mountpoint -q "$mnt" && return 0
		kill -0 "$daemon_pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$daemon_pid" 2>/dev/null || true
	local st=0
	wait "$daemon_pid" 2>/dev/null || st=$?
	echo "($1 exited with status $st before the mount was up)" >>"$log"
	daemon_pid=""
	unset 'mounts[-1]'
	return 1
}

unmount() {
	local i rc=0
	for i in $(seq 50); do
		umount "$mnt" 2>/dev/null && break
		sleep 0.2
	done
	mountpoint -q "$mnt" && umount -l "$mnt"
	unset 'mounts[-1]'
	if [ -n "$daemon_pid" ]; then
		for i in $(seq 150); do kill -0 "$daemon_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$daemon_pid" 2>/dev/null || true
		wait "$daemon_pid" || rc=$?
		daemon_pid=""
	fi
	return $rc
}

declare -A sys_opts sys_kind
systems=()

# Mounts a fresh union of system $1 over the lower tree at $mnt, layers in $2;
# extra daemon arguments after it. Returns 1 (log in $2/log) if it fails.
mount_system() {
	local s=$1 d=$2
	shift 2
	rm -rf "$d"
	mkdir -p "$d/upper" "$d/work"
	case ${sys_kind[$s]} in
	overlayfs)
		mount -t overlay overlay -o "lowerdir=$ro,upperdir=$d/upper,workdir=$d/work,index=on,nfs_export=on" "$mnt" \
			2>"$d/log" || return 1
		mounts+=("$mnt")
		;;
	fuse-overlayfs)
		fuse_start "$d/log" fuse-overlayfs -f -o "lowerdir=$ro,upperdir=$d/upper,workdir=$d/work" "$@" "$mnt" ;;
	mergerfs)
		fuse_start "$d/log" mergerfs -f -o category.create=ff "$@" "$d/upper=RW:$ro=RO" "$mnt" ;;
	fhmap)
		local o="lowerdir=$ro,upperdir=$d/upper,db=$d/db${sys_opts[$s]:+,${sys_opts[$s]}}"
		fuse_start "$d/log" "$bin" -f -o "$o" "$@" "$mnt" ;;
	esac
}

# Options the daemon takes, found by mounting an empty union with them.
daemon_accepts() {
	local d="$run/probe" ok=1
	sys_kind[probe]=fhmap sys_opts[probe]=$1
	local save=$ro
	ro="$d-lower"
	mkdir -p "$ro"
	if mount_system probe "$d"; then
		ok=0
		unmount || true
	fi
	ro=$save
	rm -rf "$d" "$d-lower"
	return $ok
}

setup_systems() {
	local modes m name opts help cands
	help=$("$bin" --help 2>&1 || true)
	if [ -n "${FHMAP_UNION_MODES+x}" ]; then
		modes=$FHMAP_UNION_MODES
	else
		cands=$( { echo full lazy deferred
			grep -i 'sync' <<<"$help" | grep -oE 'sync=[a-z]+|[a-z]+(\|[a-z]+)+' | tr '|' '\n' | sed 's/^sync=//' || true
		} | tr ' ' '\n' | awk 'NF && !seen[$0]++')
		modes=""
		for m in $cands; do
			daemon_accepts "sync=$m${FHMAP_UNION_OPTS:+,$FHMAP_UNION_OPTS}" && modes="$modes $m"
		done
		modes=${modes# }
		modes=${modes:-default}
		say "fhmap-unionfs configurations found by mounting: $modes"
	fi
	for m in $modes; do
		case $m in
		default) name=default opts="" ;;
		*:*) name=${m%%:*} opts=${m#*:} ;;
		*) name=$m opts="sync=$m" ;;
		esac
		opts=$opts${FHMAP_UNION_OPTS:+${opts:+,}$FHMAP_UNION_OPTS}
		sys_kind[fhmap-$name]=fhmap sys_opts[fhmap-$name]=$opts
		systems+=("fhmap-$name")
	done
	local def=${FHMAP_UNION_DEFAULT-} full=${FHMAP_UNION_FULL-}
	if [ -z "${FHMAP_UNION_DEFAULT+x}" ]; then
		if [[ " $modes " == *" default "* ]]; then
			def=default
		else
			# "MODE (default)" or "default: MODE" on a line about sync or the next
			def=$(grep -i -A1 sync <<<"$help" | grep -oE '[a-z]+ \(default\)' | head -1 | grep -oE '^[a-z]+' || true)
			[ -n "$def" ] || def=$(grep -i -A1 sync <<<"$help" | grep -oE 'default[: =]+[a-z]+' | head -1 | grep -oE '[a-z]+$' || true)
		fi
	fi
	if [ -z "${FHMAP_UNION_FULL+x}" ]; then
		# a daemon without sync modes keeps its map in FULL mode
		[[ " $modes " == *" default "* ]] && ! grep -q 'sync=' <<<"$help" && full=default
		[[ " $modes " == *" full "* ]] && full=full
	fi
	[ -n "$def" ] && [ -n "${sys_kind[fhmap-$def]-}" ] && emit "@role default fhmap-$def"
	[ -n "$full" ] && [ -n "${sys_kind[fhmap-$full]-}" ] && emit "@role full fhmap-$full"
	sys_kind[fuse-overlayfs]=fuse-overlayfs sys_kind[mergerfs]=mergerfs sys_kind[overlayfs]=overlayfs
	local s
	for s in fuse-overlayfs mergerfs; do
		if command -v "$s" >/dev/null; then
			systems+=("$s")
		else
			emit "@note $s is not installed (scripts/deps.sh installs it): not measured"
		fi
	done
	systems+=(overlayfs)
	# -s: keep the chosen ones
	if [ "$sys_spec" != all ]; then
		local keep=() want
		for s in "${systems[@]}"; do
			for want in ${sys_spec//,/ }; do
				if [ "$want" = "$s" ] || { [ "$want" = fhmap ] && [ "${sys_kind[$s]}" = fhmap ]; }; then
					keep+=("$s")
					break
				fi
			done
		done
		[ ${#keep[@]} -gt 0 ] || { echo "run.sh: -s $sys_spec names no system of: ${systems[*]}" >&2; exit 2; }
		systems=("${keep[@]}")
	fi
	for s in "${systems[@]}"; do
		case ${sys_kind[$s]} in
		fhmap) emit "@system $s fhmap-unionfs -o lowerdir=L,upperdir=U,db=D${sys_opts[$s]:+,${sys_opts[$s]}}" ;;
		fuse-overlayfs) emit "@system $s fuse-overlayfs $(dpkg-query -W -f '${Version}' fuse-overlayfs 2>/dev/null) -o lowerdir=L,upperdir=U,workdir=W" ;;
		mergerfs) emit "@system $s mergerfs $(dpkg-query -W -f '${Version}' mergerfs 2>/dev/null) -o category.create=ff U=RW:L=RO (no copy-up: writes to lower files fail with EROFS)" ;;
		overlayfs) emit "@system $s mount -t overlay -o lowerdir=L,upperdir=U,workdir=W,index=on,nfs_export=on" ;;
		esac
	done
}

# ---- workloads --------------------------------------------------------------
# unit_NAME MNT runs in a subshell under set -e and is timed from outside;
# a unit that measures itself prints "RESULT ID SECONDS" lines instead.
# prep_NAME (optional) runs untimed after the mount and drop_caches.

all_units="stat create create4p copyup seqwrite seqread mixed meta1t meta4t walk
	fio-seqread-1j fio-seqread-4j fio-seqwrite-1j fio-seqwrite-4j
	fio-randread-1j fio-randread-4j fio-randwrite-1j fio-randwrite-4j"

# @workload ID UNIT CLASSES OPS DESCRIPTION (classes: targets that apply)
describe() {
	emit "@workload stat stat stat $nfiles cold stat of all $nfiles lower files (find, xargs stat -c %i, after drop_caches)"
	emit "@workload create create create $create_n create $create_n small files, one process"
	emit "@workload create4p create4p create $((4 * par_n)) 4 processes x $par_n creates in parallel (one directory)"
	emit "@workload copyup copyup copyup $copyup_n copy-up: append a line to $copyup_n lower files"
	emit "@workload seqwrite seqwrite seqio $write_mib sequential write $write_mib MiB (dd bs=1M conv=fsync)"
	emit "@workload seqread seqread seqio $big_mib sequential read of a $big_mib MiB lower file, cold (dd bs=1M)"
	emit "@workload mixed mixed - 1 mixed: two tar -x of $tar_n entries + find -exec stat {} + of $nfiles lower files + cp -a of a $src_n-entry lower tree, in parallel"
	local t p cls
	for t in 1 4; do
		for p in create stat rename unlink; do
			cls=-
			[ $p = create ] && cls=create
			[ $p = stat ] && cls=stat
			emit "@workload meta${t}t-$p meta${t}t $cls,meta $meta_n $p of $meta_n files, $t thread(s), each its own directory (union-load meta)"
		done
	done
	emit "@workload walk walk stat $walk_n first cold walk (find -printf %s: readdir + lookup) of a $walk_n-entry lower tree"
	local rw j mib bs
	for rw in seqread seqwrite randread randwrite; do
		for j in 1 4; do
			mib=$fio_mib bs=1M cls=seqio
			case $rw in rand*) mib=$fio_rand_mib bs=4k cls=- ;; esac
			emit "@workload fio-$rw-${j}j fio-$rw-${j}j $cls $mib fio $rw bs=$bs, $j job(s), $mib MiB in all$(
				case $rw in *read) echo ", of the lower $big_mib MiB file (lower in page cache, union cache empty)" ;;
				*) echo ", new files, end_fsync" ;; esac)"
		done
	done
}

unit_stat() { find "$1/files" -type f -print0 | xargs -0 stat -c %i >/dev/null; }

unit_create() {
	mkdir "$1/c"
	for ((i = 0; i < create_n; i++)); do echo x >"$1/c/f$i"; done
}

unit_create4p() {
	local p pids=()
	mkdir "$1/c"
	for p in 0 1 2 3; do
		(for ((i = 0; i < par_n; i++)); do echo x >"$1/c/p$p-$i"; done) &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p"; done
}

copyup_list=()
prep_copyup() {
	[ ${#copyup_list[@]} -gt 0 ] && return
	local i per=$(((copyup_n + files_dirs - 1) / files_dirs))
	for ((i = 0; i < copyup_n; i++)); do
		copyup_list+=("$(printf 'd%05d/f%05d' $((i / per)) $((i % per)))")
	done
}
unit_copyup() {
	local f
	for f in "${copyup_list[@]}"; do echo line >>"$1/files/$f"; done
}

unit_seqwrite() { dd if=/dev/zero of="$1/seq.out" bs=1M count="$write_mib" conv=fsync status=none; }
unit_seqread() { dd if="$1/big" of=/dev/null bs=1M status=none; }

unit_mixed() {
	local p pids=()
	mkdir -p "$1/mix/a" "$1/mix/b"
	tar -xf "$data/tree.tar" -C "$1/mix/a" & pids+=($!)
	tar -xf "$data/tree.tar" -C "$1/mix/b" & pids+=($!)
	find "$1/files" -type f -exec stat -c %s {} + >/dev/null & pids+=($!)
	cp -a "$1/src" "$1/mix/cp" & pids+=($!)
	for p in "${pids[@]}"; do wait "$p"; done
}

unit_meta1t() { "$load" meta "$1/meta" "$meta_n" 1 | sed 's/^/RESULT meta1t-/'; }
unit_meta4t() { "$load" meta "$1/meta" "$meta_n" 4 | sed 's/^/RESULT meta4t-/'; }

unit_walk() { find "$1/walk" -printf '%s\n' >/dev/null; }

# fio_unit MNT ID RW JOBS: fio's own run time (ms -> s) of a fixed amount of I/O.
# invalidate=0: fio's fadvise(DONTNEED) would reach the lower file through
# overlayfs (a cold read there) but only the FUSE inode's cache otherwise.
fio_unit() {
	local m=$1 id=$2 rw=$3 j=$4 args=(--name=u --ioengine=psync --numjobs="$4" --group_reporting --output-format=json
		--invalidate=0)
	case $rw in
	read) args+=(--rw=read --bs=1M --filename="$m/big" --readonly --size=$((fio_mib / j))M --offset_increment=$((fio_mib / j))M) ;;
	randread) args+=(--rw=randread --bs=4k --filename="$m/big" --readonly --size=$((big_mib / j))M
		--offset_increment=$((big_mib / j))M --io_size=$((fio_rand_mib * 1024 / j))k) ;;
	write) mkdir "$m/fio"; args+=(--rw=write --bs=1M --directory="$m/fio" --size=$((fio_mib / j))M --end_fsync=1) ;;
	randwrite) mkdir "$m/fio"; args+=(--rw=randwrite --bs=4k --directory="$m/fio" --size=$((fio_rand_mib * 1024 / j))k --end_fsync=1) ;;
	esac
	fio "${args[@]}" >"$m.fio.json"
	jq -r --arg id "$id" '"RESULT \($id) \((.jobs[0].read.runtime + .jobs[0].write.runtime) / 1000)"' "$m.fio.json"
	rm -f "$m.fio.json"
}
for rw in seqread:read seqwrite:write randread:randread randwrite:randwrite; do
	for j in 1 4; do
		eval "unit_fio-${rw%%:*}-${j}j() { fio_unit \"\$1\" fio-${rw%%:*}-${j}j ${rw#*:} $j; }"
	done
done
# fio reads: the lower file in the page cache, so that they measure the union.
prep_fio_read() { cat "$ro/big" >/dev/null; }
for j in 1 4; do
	eval "prep_fio-seqread-${j}j() { prep_fio_read; }; prep_fio-randread-${j}j() { prep_fio_read; }"
done

select_units() {
	local u w sel=""
	for u in $all_units; do
		for w in ${wl_spec//,/ }; do
			case $w in
			all) ;;
			table) [[ " stat create create4p copyup seqwrite seqread mixed " == *" $u "* ]] || continue ;;
			meta) [[ $u == meta* ]] || continue ;;
			fio) [[ $u == fio-* ]] || continue ;;
			*) # shellcheck disable=SC2053
				[[ $u == $w ]] || continue ;;
			esac
			sel="$sel $u"
			break
		done
	done
	[ -n "$sel" ] || { echo "run.sh: -w $wl_spec names no workload of: $all_units" >&2; exit 2; }
	echo $sel
}

daemon_cpu() {
	[ -n "$daemon_pid" ] && awk '{ print $14 + $15 }' "/proc/$daemon_pid/stat" 2>/dev/null || echo 0
}

# Runs unit $1 once on system $2 (round $3) on a fresh union; emits its
# result(s), daemon CPU seconds, or the failure.
measure_unit() {
	local u=$1 s=$2 r=$3 d="$run/layers" rc=0 t0 t1 c0 c1 why
	if ! mount_system "$s" "$d"; then
		why=$(head -c 300 "$d/log" | tr '\n' ' ')
		emit "@fail $u $s $r mount failed: ${why:-no message}"
		say "round $r $u $s: mount failed: $why"
		return
	fi
	drop_caches
	! declare -F "prep_$u" >/dev/null || "prep_$u"
	c0=$(daemon_cpu)
	t0=$EPOCHREALTIME
	(set -e; "unit_$u" "$mnt") >"$d/out" 2>"$d/err" &
	wait $! || rc=$?
	t1=$EPOCHREALTIME
	c1=$(daemon_cpu)
	unmount || { emit "@note $s exited with status $? after $u (round $r)"; }
	if [ $rc != 0 ]; then
		# (pipefail: head may end the pipe before grep is done)
		why=$(grep -v '^$' "$d/err" | head -3 | tr '\n' ' ' || true)
		why=${why:0:300}
		emit "@fail $u $s $r exit $rc: ${why:-no message}"
		say "round $r $u $s: FAILED: $why"
	elif grep -q '^RESULT ' "$d/out"; then
		sed -n "s/^RESULT \([^ ]*\) \(.*\)/@result \1 $s $r \2/p" "$d/out" >>"$rawf"
		say "round $r $u $s: $(sed -n 's/^RESULT \([^ ]*\) \(.*\)/\1 \2 s/p' "$d/out" | tr '\n' ' ')"
	else
		emit "@result $u $s $r $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')"
		say "round $r $u $s: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f s", b - a }')"
	fi
	[ "${sys_kind[$s]}" = overlayfs ] ||
		emit "@cpu $u $s $r $(awk -v a="$c0" -v b="$c1" -v hz="$(getconf CLK_TCK)" -v w0="$t0" -v w1="$t1" \
			'BEGIN { printf "%.3f %.4f", (b - a) / hz, w1 - w0 }')"
	rm -rf "$d"
}

# ---- profiles ---------------------------------------------------------------

fuse_tracepoint() { perf list tracepoint 2>/dev/null | grep 'fuse:fuse_request_send' >/dev/null; }

# Kernel connection number of the FUSE mount (minor of its st_dev).
fuse_conn() { local dev; dev=$(mountpoint -d "$mnt"); echo "${dev#*:}"; }

stop_tracer() {
	kill -INT "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
	local keep=() p
	for p in "${tracers[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	tracers=(${keep[@]+"${keep[@]}"})
}

# Waits until process $1 has a tracer attached (strace -p).
wait_traced() {
	for _ in $(seq 100); do
		[ "$(awk '/^TracerPid/ { print $2 }' "/proc/$1/status" 2>/dev/null)" != 0 ] && return 0
		sleep 0.05
	done
	return 1
}

# One pass of unit $1 on system $2 with tracers: kind "strace" (strace -c -f
# and FUSE request counts) or "perf" (perf record of the daemon).
profile_pass() {
	local u=$1 s=$2 kind=$3 d="$run/layers" p rc=0 tp=0 debug=()
	[ $kind = strace ] && { fuse_tracepoint && tp=1 || debug=(-d); }
	mount_system "$s" "$d" ${debug[@]+"${debug[@]}"} || { emit "@note profile $kind $u $s: mount failed"; return; }
	drop_caches
	! declare -F "prep_$u" >/dev/null || "prep_$u"
	if [ $kind = strace ]; then
		strace -c -w -f -qq -p "$daemon_pid" -o "$d/strace" 2>/dev/null &
		tracers+=($!)
		wait_traced "$daemon_pid" || true
		if [ $tp = 1 ]; then
			perf record -q -e fuse:fuse_request_send --filter "connection == $(fuse_conn)" -a -o "$d/fuse.data" \
				>/dev/null 2>&1 &
			tracers+=($!)
			sleep 1 # perf has no ready signal; its set-up takes well under a second
		fi
	else
		perf record -q -e cpu-clock -F 999 -p "$daemon_pid" -o "$d/perf.data" >/dev/null 2>&1 &
		tracers+=($!)
		sleep 1
	fi
	(set -e; "unit_$u" "$mnt") >/dev/null 2>"$d/err" &
	wait $! || rc=$?
	for p in ${tracers[@]+"${tracers[@]}"}; do stop_tracer "$p"; done
	unmount || true
	[ $rc = 0 ] || emit "@note profile $kind $u $s: the workload failed (exit $rc): $(head -c 200 "$d/err" | tr '\n' ' ')"
	if [ $kind = strace ]; then
		# strace -c: "% time seconds usecs/call calls errors syscall" rows
		awk -v u="$u" -v s="$s" '$NF != "syscall" && $NF != "total" && $1 ~ /^[0-9.]+$/ && NF >= 5 {
			err = NF == 6 ? $5 : 0; printf "@strace %s %s %s %s %s %s\n", u, s, $NF, $4, err, $2 }
			$NF == "total" { printf "@strace %s %s total %s %s %s\n", u, s, $4, (NF == 6 ? $5 : 0), $2 }' \
			"$d/strace" >>"$rawf"
		if [ $tp = 1 ]; then
			perf script -i "$d/fuse.data" -F trace 2>/dev/null |
				awk -v u="$u" -v s="$s" '{ for (i = 1; i <= NF; i++) if ($i ~ /^\(FUSE_/) { n[substr($i, 7, length($i) - 7)]++ } }
					END { for (o in n) printf "@fusereq %s %s %s %d tracepoint\n", u, s, o, n[o] }' >>"$rawf"
		else
			awk -v u="$u" -v s="$s" '/opcode: [A-Z_]+/ { for (i = 1; i < NF; i++) if ($i == "opcode:") n[$(i + 1)]++ }
				END { for (o in n) printf "@fusereq %s %s %s %d debug\n", u, s, o, n[o] }' "$d/log" >>"$rawf"
		fi
	else
		perf report -i "$d/perf.data" --stdio --no-children --sort dso --percent-limit 1 2>/dev/null |
			awk -v u="$u" -v s="$s" '$1 ~ /%$/ { printf "@perfdso %s %s %s %s\n", u, s, $1, $2 }' >>"$rawf"
		perf report -i "$d/perf.data" --stdio --no-children --sort dso,sym --percent-limit 1 2>/dev/null |
			awk -v u="$u" -v s="$s" '$1 ~ /%$/ && n++ < 25 { pct = $1; dso = $2; $1 = $2 = ""; sub(/^ +/, "");
				printf "@perf %s %s %s %s %s\n", u, s, pct, dso, $0 }' >>"$rawf"
	fi
	rm -rf "$d"
}

profiles() {
	local units="" u s
	case $profile in
	none) return ;;
	missed) units=$(awk -f "$here/report.awk" -v mode=missed "$rawf") ;;
	*) units=${profile//,/ } ;;
	esac
	[ -n "$units" ] || { say "profile: no target missed"; return; }
	command -v strace >/dev/null || emit "@note strace is not installed: no strace profile"
	command -v perf >/dev/null || emit "@note perf is not installed: no perf profile or FUSE request counts"
	for u in $units; do
		declare -F "unit_$u" >/dev/null || { echo "run.sh: -p: no workload $u" >&2; continue; }
		emit "@profiled $u"
		for s in "${systems[@]}"; do
			case ${sys_kind[$s]} in fhmap | fuse-overlayfs) ;; *) continue ;; esac
			if command -v strace >/dev/null; then
				say "profile $u $s: strace -c -f, FUSE requests"
				profile_pass "$u" "$s" strace
			fi
			if [ "${sys_kind[$s]}" = fhmap ] && command -v perf >/dev/null; then
				say "profile $u $s: perf record"
				profile_pass "$u" "$s" perf
			fi
		done
	done
}

# ---- machine ----------------------------------------------------------------

machine() {
	local dev disk pk dirty=""
	git -C "$top" status --porcelain lib include examples 2>/dev/null | grep -q . && dirty=" (lib/, include/ or examples/ with uncommitted changes)"
	dev=$(findmnt -n -o SOURCE -T "$base")
	disk=$dev
	pk=$(lsblk -no PKNAME "$dev" 2>/dev/null | head -1 || true)
	[ -n "$pk" ] && disk=/dev/$pk
	disk=$(lsblk -dno NAME,SIZE,ROTA,MODEL "$disk" 2>/dev/null || echo "$disk ? ?")
	emit "@command ${FHMAP_UNION_MODES+FHMAP_UNION_MODES=\"$FHMAP_UNION_MODES\" }${FHMAP_UNION_OPTS:+FHMAP_UNION_OPTS=\"$FHMAP_UNION_OPTS\" }$cmdline"
	emit "@machine cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
	emit "@machine memory $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	emit "@machine disk $(echo "$disk" | awk '{ printf "%s, %s, %s", $1, $2, $3 == 1 ? "reported rotational" : "non-rotational"; if (NF > 3) { $1 = $2 = $3 = ""; printf ",%s", $0 } }')"
	emit "@machine filesystem $fstype on $dev ($(findmnt -n -o OPTIONS -T "$base")), base directory $base"
	emit "@machine kernel $(uname -r)"
	emit "@machine packages $(dpkg-query -W -f '${Package} ${Version}, ' fuse-overlayfs mergerfs fio fuse3 libfuse3-3 liblmdb0 strace linux-perf 2>/dev/null | sed 's/, $//')"
	emit "@machine daemon $bin (${btype:-unknown build type}${asan:+, sanitizers $asan}), source commit $(git -C "$top" rev-parse --short HEAD 2>/dev/null || echo ?)$dirty"
	emit "@machine sizes $tag: rounds $rounds"
	emit "@machine date $(date -u '+%Y-%m-%d %H:%M UTC')"
	emit "@machine load_before $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Other processes busy during the run say how noisy it was.
busy() {
	ps -eo pcpu=,comm= --sort=-pcpu | awk -v me="$$" '$1 > 20 && $2 !~ /^(fhmap-unionfs|fuse-overlayfs|mergerfs|union-load|fio|find|xargs|stat|tar|cp|dd|bash|run.sh|kworker.*)$/ { printf "%s(%s%%) ", $2, $1 }'
}

# ---- main -------------------------------------------------------------------

: >"$rawf"
build_lower
mount --bind "$lower" "$ro"
mounts+=("$ro")
mount -o remount,bind,ro "$ro"
machine
setup_systems
describe
units=$(select_units)
emit "@units $units"
emit "@systems ${systems[*]}"
say "systems: ${systems[*]}; workloads: $units; $rounds round(s)"
start=$SECONDS
n=${#systems[@]}
for ((r = 1; r <= rounds; r++)); do
	k=0
	for u in $units; do
		for ((j = 0; j < n; j++)); do
			measure_unit "$u" "${systems[(j + r + k) % n]}" "$r"
		done
		k=$((k + 1))
	done
	emit "@busy $r $(busy)"
done
emit "@seconds measure $((SECONDS - start))"
start=$SECONDS
profiles
emit "@seconds profile $((SECONDS - start))"
emit "@machine load_after $(cut -d' ' -f1-3 /proc/loadavg)"
render "$rawf"
