#!/usr/bin/env bash
# backup writes a compacted copy that is the same map (identity, secret,
# objects); restore makes a new map from it; handles encoded before the
# original was lost decode to the same objects with the restored map.
source "$(dirname "$0")/lib.sh"

make_layers
make_map
cp -a "$T/lower1/a" "$T/upper/a"
"$HELPER" copyup "$T/db" "$(ino_of /a)"
encode_all
uuid=$(json info "$T/db" | jq -r .uuid)

run backup "$T/db" "$T/backup"
run backup "$T/db" "$T/backup"
run backup "$T/nomap" "$T/backup2"
[ ! -e "$T/backup2" ] || fail "a failed backup left $T/backup2 behind"
[ "$(json info "$T/backup" | jq -r .uuid)" = "$uuid" ] || fail "backup has another identity"
[ "$(json backup "$T/db" "$T/backup3" | jq .objects)" = 8 ] || fail "backup --json"

# The map is lost; the backup brings it back.
rm -rf "$T/db"
run restore "$T/backup" "$T/db"
run restore "$T/backup" "$T/db"
run check "$T/db" --deep
decode_all_same
[ "$(json info "$T/db" | jq -r .uuid)" = "$uuid" ] || fail "restored map has another identity"
finish
