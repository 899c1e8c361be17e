#!/usr/bin/env bash
# decode, lookup and bind on PostgreSQL next to LMDB in one run
# (docs/postgresql.md). The server is one of the tests' (tests/pg/server.sh),
# with fsync on, on 127.0.0.1: a round trip over loopback per statement.
#   bench/pg/run.sh [BUILD_DIR] [OBJECTS]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$top/build-bench}" && pwd)
objects=${2:-20000}
t=$(mktemp -d /tmp/pg-bench.XXXXXX)
trap '"$top/tests/pg/server.sh" stop "$t/server"; rm -rf "$t"' EXIT
"$top/tests/pg/server.sh" start "$t/server" --fsync
mkdir "$t/lower"
echo "# fhmap-pgbench $objects objects, $(nproc) cores, $(git -C "$top" rev-parse --short HEAD)"
"$build/bench/pg/fhmap-pgbench" "$t/lmdb" "$(cat "$t/server/conninfo")" "$t/lower" "$objects"
