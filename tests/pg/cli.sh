#!/usr/bin/env bash
# fhmapctl on a PostgreSQL map: init, info, ls, show, check, and a backup to
# an LMDB map restored into another PostgreSQL map (a schema of its own),
# which is the same map; a restore into a map that is not empty is refused.
set -euo pipefail
[ -f "$2" ] || { echo "SKIP: no PostgreSQL server for the tests"; exit 77; }
ctl=$1 uri=$(cat "$2")
t=$(mktemp -d /tmp/pg-cli.XXXXXX)
trap 'rm -rf "$t"' EXIT
s=c$$_$RANDOM
psql -qX "$uri" -c "CREATE SCHEMA ${s}a; CREATE SCHEMA ${s}b" >/dev/null
a="$uri?options=-csearch_path%3D${s}a" b="$uri?options=-csearch_path%3D${s}b"
mkdir -p "$t/lower/d" "$t/upper" && echo x >"$t/lower/d/f"
"$ctl" init "$a" --lower "$t/lower" --upper "$t/upper" >/dev/null
"$ctl" info "$a" | grep -q '^format version: *2'
"$ctl" ls "$a" >/dev/null
"$ctl" check "$a" | grep -q clean
"$ctl" backup "$a" "$t/copy" >/dev/null
"$ctl" restore "$t/copy" "$b" >/dev/null
for m in "$t/copy" "$b"; do
  [ "$("$ctl" info "$m" | grep '^uuid')" = "$("$ctl" info "$a" | grep '^uuid')" ] || { echo "FAIL: $m is another map"; exit 1; }
  "$ctl" check "$m" | grep -q clean
done
if "$ctl" restore "$t/copy" "$b" 2>/dev/null; then echo "FAIL: restored over a map"; exit 1; fi
psql -qX "$uri" -c "DROP SCHEMA ${s}a CASCADE; DROP SCHEMA ${s}b CASCADE" >/dev/null 2>&1
echo "ok: fhmapctl on PostgreSQL, backup to LMDB and restore"
