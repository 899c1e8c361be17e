#!/usr/bin/env bash
# Layers copied elsewhere with cp -a: overlayfs would refuse to mount; here
# check --deep sees the layer gone, rebase re-derives every real handle
# under the new root, and every handle encoded before decodes to the same
# object, which now lives in the copy.
source "$(dirname "$0")/lib.sh"

make_layers
make_map
cp -a "$T/lower1/a" "$T/upper/a"
"$HELPER" copyup "$T/db" "$(ino_of /a)"
encode_all
hb=$(awk -v i="$(ino_of /d1/b)" '$1 == i { print $2 }' "$T/handles")

mkdir "$T/moved" "$T/empty"
cp -a "$T/lower1" "$T/moved/lower1"
rm -rf "$T/lower1"
run layers "$T/db"
run check "$T/db" --deep
run rebase "$T/db" 1 "$T/empty"
run rebase "$T/db" 1 "$T/nowhere"
run rebase "$T/db" 7 "$T/moved/lower1"
run rebase "$T/db" 1 "$T/moved/lower1" --dry-run
run rebase "$T/db" 1 "$T/moved/lower1"
run check "$T/db" --deep
run decode "$T/db" "$hb"
decode_all_same

# The upper layer, named by its root, moved the same way.
cp -a "$T/upper" "$T/moved/upper"
rm -rf "$T/upper"
run rebase "$T/db" "$T/upper" "$T/moved/upper"
run layers "$T/db"
run check "$T/db" --deep
decode_all_same

# A copy on the same filesystem while the original stays: the old handles
# still open (the original files), so only rebase makes the map follow.
# Before that, the union renamed a lower directory: the names moved in the
# map, the lower files did not, and rebase still finds them.
"$HELPER" rename "$T/db" "$(ino_of /d1)" 1 d1-renamed
cp -a "$T/moved/lower1" "$T/copy"
[ "$(json rebase "$T/db" 1 "$T/copy" | jq .updated)" = 8 ] || fail "rebase to copy"
[ "$(json decode "$T/db" "$hb" | jq -r .path)" = "/d1-renamed/b" ] || fail "union path after rename"
[ "$(json decode "$T/db" "$hb" | jq -r .lives_at)" = "$T/copy/d1/b" ] || fail "decode after copy"
rm -rf "$T/moved/lower1"
run check "$T/db" --deep
decode_all_same
finish
