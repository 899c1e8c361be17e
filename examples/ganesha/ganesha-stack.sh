#!/usr/bin/env bash
# Brings up and tears down NFS-Ganesha (FSAL_VFS, 127.0.0.1) exporting an
# fhmap-unionfs mount, or a plain directory, with rpcbind for NFSv3.
#
#   ganesha-stack.sh up STATE_DIR --export DIR [--pseudo /fuse] [--nfs-port N]
#                    [--mnt-port N] [--extra-export PSEUDO=DIR]...
#                    [--unionfs BIN --lower L1:L2 --upper U --db DB --fsid-lib SO]
#   ganesha-stack.sh down|restart|status STATE_DIR
#   ganesha-stack.sh start-fuse|stop-fuse|start-ganesha|stop-ganesha|
#                    start-rpcbind|stop-rpcbind|drop-caches STATE_DIR
#   ganesha-stack.sh free-ports COUNT FROM   (COUNT free TCP ports >= FROM)
#
# With --unionfs, DIR is the mountpoint of the union. Order is fixed: the FUSE
# daemon starts before Ganesha and stops after it (Ganesha holds file
# descriptors on the mount). `restart` is the full cycle of issue 5: stop
# Ganesha, stop the daemon, drop caches, start the daemon, start Ganesha.
# Every process is stopped by the PID this script recorded; logs, pid files,
# the generated ganesha.conf and Ganesha's recovery data live in STATE_DIR.
# --extra-export adds more directories (export ids 78, 79, ...) as they are.
#
# FSAL_VFS puts a filesystem id in every handle. For the union it comes from
# the map's UUID: ganesha.nfsd runs with the --fsid-lib library
# (libfhmap-fsid.so) preloaded, which answers statfs() on the mount with it,
# so handles do not depend on the mount's device number (see README.md).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
timeout_s=${FHMAP_STACK_TIMEOUT:-20}

die() { echo "ganesha-stack: $*" >&2; exit 1; }
say() { echo "ganesha-stack: $*" >&2; }

usage() {
	sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# True when PID is a dead process not yet reaped by its parent. A zombie
# main thread with other threads still running (Ganesha shutting down) is
# not dead.
pid_dead() {
	local st
	st=$(cat "/proc/$1/status" 2>/dev/null) || return 0
	grep -q '^State:[[:space:]]*Z' <<<"$st" && grep -q '^Threads:[[:space:]]*1$' <<<"$st"
}

# True while PID runs the program named NAME (guards against PID reuse).
pid_is() {
	local pid=$1 name=$2 comm
	[ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
	comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
	pid_dead "$pid" && return 1
	[ "${comm:0:15}" = "${name:0:15}" ]
}

# Sends SIGTERM to the process in PIDFILE and waits up to WAIT seconds;
# SIGKILL after that. Removes the pid file.
stop_pid() {
	local pidfile=$1 name=$2 wait=$3 pid i
	[ -f "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	if pid_is "$pid" "$name"; then
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < wait * 10; i++)); do
			pid_is "$pid" "$name" || break
			sleep 0.1
		done
		if pid_is "$pid" "$name"; then
			say "$name (pid $pid) ignored SIGTERM for ${wait}s, sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			for ((i = 0; i < 50; i++)); do
				pid_is "$pid" "$name" || break
				sleep 0.1
			done
		fi
		wait "$pid" 2>/dev/null || true
	fi
	rm -f "$pidfile"
}

load_env() {
	state=$1
	[ -f "$state/stack.env" ] || die "$state is not a stack state directory (run 'up' first)"
	# shellcheck disable=SC1091
	. "$state/stack.env"
}

is_fuse_mount() {
	local t
	mountpoint -q "$1" 2>/dev/null || return 1
	t=$(stat -f -c %T "$1" 2>/dev/null) || return 1
	[ "${t#fuse}" != "$t" ]
}

# Device number of a mount as major:minor.
dev_of() { stat -c '%Hd:%Ld' "$1"; }

# The filesystem id the preload library gives the mount (hex, as
# `stat -f -c %i` prints it); 0 when the mount does not report a map UUID.
map_fsid() { LD_PRELOAD=$FSID_LIB stat -f -c %i "$EXPORT"; }

mount_fuse() {
	local pid i
	"$UNIONFS" -o "lowerdir=$LOWER,upperdir=$UPPER,db=$DB" "$EXPORT" -f \
		</dev/null >>"$state/fuse.log" 2>&1 &
	pid=$!
	echo "$pid" >"$state/fuse.pid"
	for ((i = 0; i < timeout_s * 10; i++)); do
		is_fuse_mount "$EXPORT" && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	stop_fuse
	tail -n 20 "$state/fuse.log" >&2 || true
	die "fhmap-unionfs did not mount $EXPORT"
}

start_fuse() {
	[ -n "$UNIONFS" ] || return 0
	local fsid
	[ -x "$UNIONFS" ] || die "fhmap-unionfs not found at $UNIONFS"
	[ -f "$FSID_LIB" ] || die "preload library not found at $FSID_LIB (--fsid-lib)"
	is_fuse_mount "$EXPORT" && die "$EXPORT is already a FUSE mount"
	mount_fuse
	fsid=$(map_fsid) || fsid=0
	if [ "$(printf '%s' "$fsid" | tr -d 0)" = "" ]; then
		stop_fuse
		die "$UNIONFS does not report its map's UUID (xattr trusted.fhmap.uuid): NFS handles would carry the device number"
	fi
	say "fhmap-unionfs pid $(cat "$state/fuse.pid") mounted $EXPORT (device $(dev_of "$EXPORT"), filesystem id $fsid from the map)"
}

stop_fuse() {
	[ -n "$UNIONFS" ] || return 0
	stop_pid "$state/fuse.pid" "$(basename "$UNIONFS")" 10
	if is_fuse_mount "$EXPORT"; then
		say "daemon gone but $EXPORT still mounted; unmounting"
		umount "$EXPORT" 2>/dev/null || umount -l "$EXPORT"
	fi
}

start_rpcbind() {
	local i
	if rpcinfo -p 127.0.0.1 >/dev/null 2>&1; then
		[ -f "$state/rpcbind.pid" ] && return 0
		say "using the rpcbind already running"
		return 0
	fi
	# Remember what exists so that stop_rpcbind removes only what rpcbind made.
	: >"$state/rpcbind.preexisting"
	for f in /run/rpcbind.sock /run/rpcbind.lock /run/rpcbind /run/rpcbind/rpcbind.xdr \
		/run/rpcbind/portmap.xdr; do
		if [ -e "$f" ]; then echo "$f" >>"$state/rpcbind.preexisting"; fi
	done
	rpcbind -f </dev/null >>"$state/rpcbind.log" 2>&1 &
	echo $! >"$state/rpcbind.pid"
	for ((i = 0; i < timeout_s * 10; i++)); do
		rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	stop_rpcbind
	die "rpcbind did not come up"
}

stop_rpcbind() {
	local f
	[ -f "$state/rpcbind.pid" ] || return 0
	stop_pid "$state/rpcbind.pid" rpcbind 5
	for f in /run/rpcbind.sock /run/rpcbind.lock /run/rpcbind/rpcbind.xdr /run/rpcbind/portmap.xdr; do
		grep -qx "$f" "$state/rpcbind.preexisting" || rm -f "$f"
	done
	grep -qx /run/rpcbind "$state/rpcbind.preexisting" || rmdir /run/rpcbind 2>/dev/null || true
	rm -f "$state/rpcbind.preexisting"
}

start_ganesha() {
	local pid i lines
	[ -f "$state/ganesha.pid" ] && pid_is "$(cat "$state/ganesha.pid")" ganesha.nfsd &&
		die "Ganesha already runs (pid $(cat "$state/ganesha.pid"))"
	# Exporting the bare mountpoint would hand out handles of the wrong filesystem.
	[ -z "$UNIONFS" ] || is_fuse_mount "$EXPORT" || die "$EXPORT is not mounted: start the FUSE daemon first"
	[ -d /var/run/ganesha ] || echo /var/run/ganesha >"$state/ganesha.rundir"
	touch "$state/ganesha.log"
	lines=$(wc -l <"$state/ganesha.log")
	LD_PRELOAD=$FSID_LIB ganesha.nfsd -F -f "$state/ganesha.conf" -L "$state/ganesha.log" -p "$state/ganesha.pid.nfsd" \
		-N NIV_EVENT </dev/null >>"$state/ganesha.out" 2>&1 &
	pid=$!
	echo "$pid" >"$state/ganesha.pid"
	for ((i = 0; i < timeout_s * 10; i++)); do
		tail -n +"$((lines + 1))" "$state/ganesha.log" | grep -q "NFS SERVER INITIALIZED" && {
			say "ganesha.nfsd pid $pid serves $EXPORT as $PSEUDO on 127.0.0.1:$NFS_PORT (mount $MNT_PORT)"
			return 0
		}
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	tail -n +"$((lines + 1))" "$state/ganesha.log" | grep -E "CRIT|FATAL|MAJ" | tail -n 10 >&2 || true
	stop_ganesha
	die "ganesha.nfsd did not start (log: $state/ganesha.log)"
}

stop_ganesha() {
	stop_pid "$state/ganesha.pid" ganesha.nfsd 15
	rm -f "$state/ganesha.pid.nfsd"
	if [ -f "$state/ganesha.rundir" ]; then
		rmdir /var/run/ganesha 2>/dev/null || true
		rm -f "$state/ganesha.rundir"
	fi
}

drop_caches() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
}

# fill_conf TEMPLATE EXPORT_PATH PSEUDO EXPORT_ID: the template with the
# @NAME@ fields of this stack filled in.
fill_conf() {
	sed -e "s|@STATE_DIR@|$state|g" -e "s|@EXPORT_PATH@|$2|g" -e "s|@PSEUDO@|$3|g" \
		-e "s|@NFS_PORT@|$nfs_port|g" -e "s|@MNT_PORT@|$mnt_port|g" -e "s|@EXPORT_ID@|$4|g" "$1"
}

cmd_up() {
	local export="" pseudo=/fuse nfs_port=2049 mnt_port=20048 unionfs="" lower="" upper="" db="" fsid_lib=""
	local extra=() e id
	while [ $# -gt 0 ]; do
		case $1 in
		--export) export=$2; shift 2 ;;
		--pseudo) pseudo=$2; shift 2 ;;
		--nfs-port) nfs_port=$2; shift 2 ;;
		--mnt-port) mnt_port=$2; shift 2 ;;
		--unionfs) unionfs=$2; shift 2 ;;
		--lower) lower=$2; shift 2 ;;
		--upper) upper=$2; shift 2 ;;
		--db) db=$2; shift 2 ;;
		--fsid-lib) fsid_lib=$2; shift 2 ;;
		--extra-export) extra+=("$2"); shift 2 ;;
		*) usage ;;
		esac
	done
	[ -n "$export" ] || die "--export DIR is required"
	[ -d "$export" ] || die "$export is not a directory"
	case $pseudo in /?*) ;; *) die "--pseudo must be an absolute path other than /" ;; esac
	if [ -n "$unionfs" ] && { [ -z "$lower" ] || [ -z "$upper" ] || [ -z "$db" ] || [ -z "$fsid_lib" ]; }; then
		die "--unionfs needs --lower, --upper, --db and --fsid-lib"
	fi
	[ -z "$fsid_lib" ] || fsid_lib=$(cd "$(dirname "$fsid_lib")" && pwd)/$(basename "$fsid_lib")
	command -v ganesha.nfsd >/dev/null || die "ganesha.nfsd not installed (nfs-ganesha, nfs-ganesha-vfs)"
	command -v rpcbind >/dev/null || die "rpcbind not installed"
	mkdir -p "$state/recovery"
	state=$(cd "$state" && pwd)
	export=$(cd "$export" && pwd)
	{
		printf 'EXPORT=%q\nPSEUDO=%q\nNFS_PORT=%q\nMNT_PORT=%q\n' "$export" "$pseudo" "$nfs_port" "$mnt_port"
		printf 'UNIONFS=%q\nLOWER=%q\nUPPER=%q\nDB=%q\nFSID_LIB=%q\n' "$unionfs" "$lower" "$upper" "$db" "$fsid_lib"
	} >"$state/stack.env"
	fill_conf "$here/ganesha.conf.in" "$export" "$pseudo" 77 >"$state/ganesha.conf"
	id=78
	for e in "${extra[@]}"; do
		case $e in /?*=/*) ;; *) die "--extra-export takes PSEUDO=DIR with absolute paths: $e" ;; esac
		[ -d "${e#*=}" ] || die "${e#*=} is not a directory"
		sed -n '/^EXPORT {/,/^}/p' "$here/ganesha.conf.in" |
			fill_conf - "$(cd "${e#*=}" && pwd)" "${e%%=*}" "$id" >>"$state/ganesha.conf"
		id=$((id + 1))
	done
	load_env "$state"
	trap up_failed EXIT
	start_fuse
	start_rpcbind
	start_ganesha
	trap - EXIT
}

# Leaves nothing running when `up` fails half-way.
up_failed() {
	local rc=$?
	[ "$rc" = 0 ] || cmd_down
}

cmd_down() {
	stop_ganesha
	stop_fuse
	stop_rpcbind
}

cmd_restart() {
	stop_ganesha
	stop_fuse
	drop_caches
	start_fuse
	start_ganesha
}

cmd_status() {
	local f
	for f in fuse ganesha rpcbind; do
		if [ -f "$state/$f.pid" ]; then
			echo "$f: pid $(cat "$state/$f.pid")"
		else
			echo "$f: stopped"
		fi
	done
	if [ -n "$UNIONFS" ] && is_fuse_mount "$EXPORT"; then
		echo "fuse device: $(dev_of "$EXPORT"), filesystem id $(map_fsid)"
	fi
	return 0
}

# free_ports COUNT FROM: COUNT TCP ports from FROM up that nothing listens
# on, for a stack of one's own next to others.
free_ports() {
	local n=$1 p=$2 taken
	taken=$(ss -Hltn | awk '{ sub(/.*:/, "", $4); print $4 }')
	while [ "$n" -gt 0 ] && [ "$p" -lt 65536 ]; do
		if ! grep -qx "$p" <<<"$taken"; then
			echo "$p"
			n=$((n - 1))
		fi
		p=$((p + 1))
	done
	[ "$n" = 0 ]
}

[ $# -ge 2 ] || usage
if [ "$1" = free-ports ]; then
	[ $# = 3 ] || usage
	free_ports "$2" "$3"
	exit
fi
cmd=$1
state=$2
shift 2
[ "$(id -u)" = 0 ] || die "must run as root (FUSE mount, drop_caches, rpcbind)"
case $cmd in
up) mkdir -p "$state"; cmd_up "$@" ;;
down) load_env "$state"; cmd_down ;;
restart) load_env "$state"; cmd_restart ;;
status) load_env "$state"; cmd_status ;;
start-fuse) load_env "$state"; start_fuse ;;
stop-fuse) load_env "$state"; stop_fuse ;;
start-ganesha) load_env "$state"; start_ganesha ;;
stop-ganesha) load_env "$state"; stop_ganesha ;;
start-rpcbind) load_env "$state"; start_rpcbind ;;
stop-rpcbind) load_env "$state"; stop_rpcbind ;;
drop-caches) drop_caches ;;
*) usage ;;
esac
