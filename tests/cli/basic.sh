#!/usr/bin/env bash
# fhmapctl on a healthy map: init, info, layers, ls, show, encode, decode
# (including every rejection reason), stats, usage errors and exit codes.
source "$(dirname "$0")/lib.sh"

make_layers

# Usage and input errors: exit 2, map untouched.
run
run frobnicate
run init "$T/db"
run init "$T/db" --lower "$T/missing" --upper "$T/upper"
run init "$T/db" --lower "$T/lower1" --lower "$T/lower1"
[ ! -e "$T/db" ] || fail "a refused init left $T/db behind"
run info "$T/db"

run init "$T/db" --lower "$T/lower1" --lower "$T/lower2" --upper "$T/upper"
run init "$T/db" --lower "$T/lower1"
"$HELPER" populate "$T/db" 1 > "$T/objects"
run layers "$T/db"
run info "$T/db"
run ls "$T/db"
run ls "$T/db" --limit 2 --start 3

b=$(ino_of /d1/b)
run show "$T/db" "$b"
run show "$T/db" /d1/b
run show "$T/db" "$T/lower1/d1/b"
run show "$T/db" 999
run show "$T/db" /d1/nothing
run show "$T/db" /e

# encode: by number and by path give the same handle; decode names the object.
h=$("$CTL" encode "$T/db" "$b")
[ "${#h}" -eq 56 ] || fail "handle $h is not 28 bytes"
[ "$("$CTL" encode "$T/db" --path /d1/b)" = "$h" ] || fail "encode --path differs"
run decode "$T/db" "$h"

# Every rejection reason, exactly.
run decode "$T/db" "${h:0:20}"
run decode "$T/db" "${h:0:54}$(printf '%02x' $(((0x${h:54:2} + 1) % 256)))"
run decode "$T/db" "zz"
run decode "$T/db" "123"
hc=$("$CTL" encode "$T/db" "$b" --connectable)
[ "${#hc}" -eq 80 ] || fail "connectable handle $hc is not 40 bytes"
run decode "$T/db" "$hc" --parent
hu=$("$CTL" encode "$T/db" "$b" --unsigned)
run decode "$T/db" "$hu"
run decode "$T/db" "$hu" --allow-unsigned
"$CTL" init "$T/other" --lower "$T/lower2" > /dev/null
run decode "$T/other" "$h"
run encode "$T/db" 999
run encode "$T/db" "$b" --parent 3

# Forgotten, reused and purged objects: stale, with the exact reason.
hsl=$("$CTL" encode "$T/db" "$(ino_of /sl)")
hfifo=$("$CTL" encode "$T/db" "$(ino_of /fifo)")
"$HELPER" unlink "$T/db" "$(ino_of /sl)"
"$HELPER" gen-bump "$T/db" "$(ino_of /fifo)"
run decode "$T/db" "$hsl"
run decode "$T/db" "$hfifo"
run encode "$T/db" "$(ino_of /sl)"
run gc "$T/db"
run decode "$T/db" "$hsl"
ha=$(($(grep -c . "$T/objects") - 1))
run check "$T/db" --deep

# JSON is valid for every report command and agrees with the map.
[ "$("$CTL" stats --json "$T/db" | jq .objects)" = "$ha" ] || fail "stats --json objects"
[ "$("$CTL" info --json "$T/db" | jq .objects.unlinked)" = 0 ] || fail "info --json unlinked"
[ "$("$CTL" ls --json "$T/db" | jq '.objects | length')" = "$ha" ] || fail "ls --json"
[ "$("$CTL" ls --json "$T/db" --limit "$ha" | jq .truncated)" = false ] || fail "ls --limit all"
[ "$("$CTL" ls --json "$T/db" --limit 2 | jq .truncated)" = true ] || fail "ls --limit 2"
[ "$("$CTL" layers --json "$T/db" | jq -r '.layers[2].role')" = upper ] || fail "layers --json"
[ "$("$CTL" show --json "$T/db" /d1/b | jq -r .path)" = /d1/b ] || fail "show --json"
[ "$("$CTL" decode --json "$T/db" "$h" | jq -r .lives_at)" = "$T/lower1/d1/b" ] || fail "decode --json"
[ "$("$CTL" check --json "$T/db" | jq .clean)" = true ] || fail "check --json"
[ "$("$CTL" gc --json --dry-run "$T/db" | jq .tombstones)" = 0 ] || fail "gc --json"
expect_rc 0 stats "$T/db"

# A progress bar on a terminal, nothing on stderr when piped.
command -v script >/dev/null || fail "script(1) is missing (util-linux)"
script -qec "'$CTL' check --deep '$T/db'" /dev/null > "$T/tty"
grep -q 'deep check \[#*\] 100%' "$T/tty" || fail "no progress bar on a terminal"
"$CTL" check --deep "$T/db" 2> "$T/stderr" > /dev/null
[ ! -s "$T/stderr" ] || fail "check wrote to a piped stderr"

# Every command has --help, exit 0.
for c in init info layers ls show encode decode check repair rebase gc backup restore stats; do
	expect_rc 0 "$c" --help
	grep -q "^usage: fhmapctl $c " "$T/stdout" || fail "$c --help"
done
expect_rc 0 --help

finish
