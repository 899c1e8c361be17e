#!/usr/bin/env bash
# A PostgreSQL server of the tests' own, on 127.0.0.1, in a directory.
#
#   server.sh start DIR [--fsync] [--standby-of PRIMARY_DIR]
#   server.sh stop DIR            (fast shutdown, then DIR is removed)
#   server.sh kill DIR            (SIGKILL of the postmaster, DIR stays)
#   server.sh promote DIR
#
# start writes DIR/conninfo (a postgresql:// URI as user fhmap, database
# postgres), DIR/port and DIR/pid. PostgreSQL refuses to run as root: as
# root the server runs as nobody. Exits 77 where PostgreSQL is not
# installed. Without --fsync the server does not flush (fast tests; the
# tests that need durability across a crash use replication or --fsync).
set -euo pipefail
cmd=$1 dir=$2
shift 2

bindir=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
  [ -x "$d/postgres" ] && { bindir=$d; break; }
done
if [ -z "$bindir" ]; then
  echo "SKIP: PostgreSQL is not installed (Debian: apt-get install postgresql)" >&2
  exit 77
fi

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u nobody -- "$@"
  else
    "$@"
  fi
}

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  echo "no free port" >&2
  exit 1
}

start() {
  local fsync=off primary="" port
  while [ $# -gt 0 ]; do
    case $1 in
      --fsync) fsync=on ;;
      --standby-of) primary=$2; shift ;;
    esac
    shift
  done
  mkdir -p "$dir"
  # nobody must reach DIR: its parents may be 0700 temp dirs of root.
  if [ "$(id -u)" -eq 0 ]; then
    local p=$dir
    while [ "$p" != / ]; do
      case $p in /tmp/*) chmod o+x "$p" ;; esac
      p=$(dirname "$p")
    done
    chown nobody "$dir"
  fi
  if [ -n "$primary" ]; then
    as_owner "$bindir/pg_basebackup" -h 127.0.0.1 -p "$(cat "$primary/port")" -U fhmap -D "$dir/data" \
      -X stream -R --no-sync >/dev/null
  else
    as_owner "$bindir/initdb" -D "$dir/data" -U fhmap --auth=trust -E UTF8 --no-sync >"$dir/initdb.log"
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
fsync = $fsync
full_page_writes = $fsync
wal_level = replica
max_wal_senders = 4
max_connections = 200
shared_buffers = 32MB
EOF
    echo "host replication fhmap 127.0.0.1/32 trust" >>"$dir/data/pg_hba.conf"
  fi
  for attempt in 1 2 3; do
    port=$(free_port)
    if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 -o "-p $port" start >/dev/null; then
      break
    fi
    [ "$attempt" = 3 ] && { cat "$dir/log" >&2; exit 1; }
  done
  echo "$port" >"$dir/port"
  head -1 "$dir/data/postmaster.pid" >"$dir/pid"
  echo "postgresql://fhmap@127.0.0.1:$port/postgres" >"$dir/conninfo"
}

case $cmd in
  start) start "$@" ;;
  stop)
    if [ -f "$dir/data/postmaster.pid" ]; then
      as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
  kill)
    pid=$(cat "$dir/pid")
    kill -KILL "$pid"
    # dead once a zombie: who reaps it (init) may take its time
    while kill -0 "$pid" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
      sleep 0.05
    done
    ;;
  promote) as_owner "$bindir/pg_ctl" -D "$dir/data" -w promote >/dev/null ;;
  *) echo "usage: $0 start|stop|kill|promote DIR" >&2; exit 2 ;;
esac
