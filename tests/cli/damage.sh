#!/usr/bin/env bash
# A deliberately damaged map: index entries removed behind the library's
# back, crashed copy-ups (one with its upper file in place, one without),
# files replaced and deleted on a layer. check finds each problem with its
# object and reason, repair --dry-run changes nothing, repair mends what can
# be mended, and afterwards check is clean and every handle encoded before
# the damage still decodes to the same object. Then what repair must leave
# to the operator (moved files), and index entries naming the wrong object.
source "$(dirname "$0")/lib.sh"

make_layers
make_map
encode_all

# A committed copy-up of /a, then two copy-ups whose process died.
cp -a "$T/lower1/a" "$T/upper/a"
"$HELPER" copyup "$T/db" "$(ino_of /a)"
"$HELPER" copyup "$T/db" "$(ino_of /d1/b)" --crash
mkdir -p "$T/upper/d1/d2"
cp -a "$T/lower1/d1/d2/c" "$T/upper/d1/d2/c"
"$HELPER" copyup "$T/db" "$(ino_of /d1/d2/c)" --crash

# Lost index entries.
"$HELPER" drop-index "$T/db" "$(ino_of /d1)" origin
"$HELPER" drop-index "$T/db" "$(ino_of /a)" upper
"$HELPER" drop-index "$T/db" "$(ino_of /fifo)" origin

# The symlink replaced behind the union's back (same path, new inode), and
# the fifo deleted.
rm "$T/lower1/sl"
ln -s d1 "$T/lower1/sl"
rm "$T/lower1/fifo"

run check "$T/db"
run check "$T/db" --deep
found=$(json check --deep "$T/db" | jq '.problems | length')
[ "$found" = 7 ] || fail "check --deep --json lists $found problems, expected 7"

run repair "$T/db" --dry-run
[ "$(json check --deep "$T/db" | jq .found)" = 7 ] || fail "repair --dry-run changed the map"

run repair "$T/db"
run check "$T/db" --deep
run show "$T/db" /d1/d2/c
run show "$T/db" /d1/b

# What repair leaves to the union: the deleted fifo is forgotten.
"$HELPER" unlink "$T/db" "$(ino_of /fifo)"
run check "$T/db" --deep
run info "$T/db"

grep -v "^$(ino_of /fifo) " "$T/handles" > "$T/live"
mv "$T/live" "$T/handles"
decode_all_same
[ "$(json repair "$T/db" | jq .fixed)" = 0 ] || fail "repair of a clean map changed something"

# Files moved on a layer behind the union's back: the handles still open, but
# the name hints lead nowhere or to another file. repair leaves both alone.
mv "$T/lower1/d1/b" "$T/lower1/d1/b.moved"
echo other > "$T/lower1/d1/b"
mv "$T/lower1/sl" "$T/lower1/sl.moved"
run check "$T/db" --deep
run repair "$T/db"
mv "$T/lower1/d1/b.moved" "$T/lower1/d1/b"
mv "$T/lower1/sl.moved" "$T/lower1/sl"
run check "$T/db" --deep

# Index entries that name the wrong object: one for a handle no object has,
# then one pointing the handle of /d1/d2 to /a. repair removes them and
# rebuilds the right entry of /d1/d2.
"$HELPER" forge-index "$T/db" "$(ino_of /d1)" origin
run check "$T/db"
run repair "$T/db"
"$HELPER" redirect-index "$T/db" "$(ino_of /d1/d2)" origin "$(ino_of /a)"
run check "$T/db"
run repair "$T/db"
run check "$T/db" --deep

# Entries that cannot be read (stored object number cut short): check
# reports them, repair replaces them. Both upper entries are damaged, so the
# walk of that index stops at the first whatever the key order.
"$HELPER" truncate-index "$T/db" "$(ino_of /a)" upper
"$HELPER" truncate-index "$T/db" "$(ino_of /d1/d2/c)" upper
run check "$T/db"
run repair "$T/db"
run check "$T/db" --deep
decode_all_same
[ "$(json repair "$T/db" --dry-run | jq -c '[.found, .clean]')" = "[0,true]" ] || fail "repair --json"
finish
