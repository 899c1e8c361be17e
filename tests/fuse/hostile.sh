#!/usr/bin/env bash
# Hostile layer contents for fhmap-unionfs, on real mounts: layers prepared
# by someone else. Every case checks that the daemon stays up, answers with
# a clear errno, and never reads or writes outside its layers: canary files
# next to the layers (on the same tmpfs, so that a path or a handle could
# reach them) are watched with inotify (any open, read, write, attribute
# change, listing) and must stay unchanged, and in the cases about paths the
# daemon runs under strace, whose path arguments must never name them.
# Where meaningful the kernel's overlayfs mounts the same layers and must
# show the same.
#   hostile.sh BINARY TOOL CASE
# CASE: symlinks | midpath | race | names | xattrs | redirects | deep | bigdir
#       | special | workdir
# TOOL is tests/fuse/hostile_tool.c. FHMAP_HOSTILE_ENTRIES sets the size of
# the big directory (1000000), FHMAP_HOSTILE_DEPTH the depth of the deep
# tree (10000). Needs root and /dev/fuse; exits 77 (skipped) otherwise.
set -u

BIN=$1
TOOL=$2
CASE=$3

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root (mounts, trusted.* xattrs, open_by_handle_at)"
[ -c /dev/fuse ] || skip "/dev/fuse is missing"
command -v fusermount3 >/dev/null || skip "fusermount3 is missing (Debian package fuse3)"
command -v setfattr >/dev/null || skip "setfattr is missing (Debian package attr)"
[ -x "$BIN" ] && [ -x "$TOOL" ] || { echo "FAIL: $BIN or $TOOL not built"; exit 1; }

T=$(mktemp -d /tmp/fhmap-hostile.XXXXXX)
mount -t tmpfs -o size=3g,nr_inodes=3m tmpfs "$T" || skip "cannot mount a tmpfs"
M=$T/mnt
OUT=$T/outside
PID="" WPID=""
PASS=0 FAILS=0
STRACE=""
LOWERS="$T/l1:$T/l2"
mkdir -p "$T/l1" "$T/l2" "$T/up" "$M" "$OUT/dir/b/c" "$T/ovl"
echo SECRET >"$OUT/secret"
echo LEAK >"$OUT/dir/b/c/leak"
echo LEAK >"$OUT/dir/leak"

mounted() { grep -q " $1 " /proc/self/mounts; }

cleanup() {
	if mounted "$M"; then fusermount3 -u "$M" 2>/dev/null || umount -l "$M"; fi
	if mounted "$T/ovl"; then umount "$T/ovl"; fi
	if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
		kill "$PID"
		wait "$PID" 2>/dev/null
	fi
	if [ -n "$WPID" ] && kill -0 "$WPID" 2>/dev/null; then
		kill "$WPID"
		wait "$WPID" 2>/dev/null
	fi
	if [ -n "${FHMAP_KEEP_T:-}" ]; then
		cp -a "$T" "$T.kept" 2>/dev/null
		echo "kept in $T.kept"
	fi
	umount "$T" && rmdir "$T"
}
trap cleanup EXIT

ok() { PASS=$((PASS + 1)); echo "ok - $1"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL - $1"; }
expect() { if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: got '$2', want '$3'"; fi; }

# What a command says: its output, or the errno of its failure (strerror).
errno_of() { "$@" 2>&1 | sed -E 's/.*: ([^:]+)$/\1/' | tr '\n' ' '; }

# The canaries: every event inotify reports on them, from now on.
canary_state() { stat -c '%n %s %Y %Z %i' "$OUT/secret" "$OUT/dir/leak" "$OUT/dir/b/c/leak"; md5sum "$OUT/secret"; }
watch_start() {
	CANARY=$(canary_state)
	coproc WATCH { exec "$TOOL" watch "$T/events" "$OUT" "$OUT/secret" "$OUT/dir" "$OUT/dir/leak" \
		"$OUT/dir/b" "$OUT/dir/b/c" "$OUT/dir/b/c/leak"; }
	WPID=$WATCH_PID
	read -r _ <&"${WATCH[0]}"
}
watch_check() {
	kill "$WPID"
	wait "$WPID" 2>/dev/null
	WPID=""
	expect "nothing outside the layers was opened, read, listed or changed" "$(cat "$T/events")" ""
	expect "the canaries are unchanged" "$(canary_state)" "$CANARY"
	if [ -n "$STRACE" ]; then
		# path arguments only: a symlink's target read or written is no access
		expect "the daemon named no path outside its layers" \
			"$(grep -v -E 'readlink|symlink' "$T/strace" | grep -c -F "$OUT")" 0
	fi
}

# start [OPTIONS]: mounts the union over $LOWERS and $T/up.
start() {
	local o=${1:-}
	# shellcheck disable=SC2086
	$STRACE "$BIN" -o "lowerdir=$LOWERS,upperdir=$T/up,db=$T/db${o:+,$o}" "$M" -f 2>>"$T/daemon.log" &
	PID=$!
	for _ in $(seq 600); do
		mounted "$M" && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "FAIL - daemon did not mount; log:"; cat "$T/daemon.log"
	exit 1
}
# (LeakSanitizer cannot run under ptrace: a sanitizer build's daemon would
# abort at exit; its leaks are checked by every untraced case)
traced() { STRACE="env ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace -f -qq -o $T/strace -e trace=%file"; }

stop() {
	kill -0 "$PID" 2>/dev/null && ok "daemon still up" || fail "daemon died"
	if ! fusermount3 -u "$M"; then
		fail "fusermount3 -u $M"
		umount -l "$M"
	fi
	wait "$PID"
	local rc=$?
	PID=""
	expect "daemon exits 0 after unmount" "$rc" 0
}

# ovl_start: the kernel's overlayfs over the same lower layers and a copy of
# the upper layer as it is now (made before the union touches it).
ovl_copy() { rm -rf "$T/oup" "$T/owk"; cp -a "$T/up" "$T/oup"; rm -rf "$T/oup/.fhmap-work"; mkdir "$T/owk"; }
ovl_start() {
	mount -t overlay overlay -o "lowerdir=$LOWERS,upperdir=$T/oup,workdir=$T/owk,redirect_dir=on" "$T/ovl" ||
		skip "overlayfs with redirect_dir=on cannot be mounted here"
}
ovl_stop() { umount "$T/ovl"; }

finish() {
	echo "$PASS passed, $FAILS failed"
	[ "$FAILS" = 0 ]
	exit $?
}

# ---------------------------------------------------------------------------

# names, types and symlink targets, without following anything
listing() { (cd "$1" && find . -path ./.fhmap-work -prune -o -printf '%y %p -> %l\n' | sort); }

# Symlinks pointing out of the layer: absolute, relative, ../ chains,
# dangling, to a directory. They read back unchanged, copy up as symlinks
# (the target is never opened or changed), and nothing follows them.
case_symlinks() {
	mkdir -p "$T/l1/sub/deeper"
	ln -s "$OUT/secret" "$T/l1/abs"
	ln -s ../outside/secret "$T/l1/rel"
	ln -s "../../../../../../../../../..$OUT/secret" "$T/l1/sub/chain"
	ln -s ../../../outside/dir "$T/l1/sub/deeper/todir"
	ln -s "$OUT/nothing" "$T/l1/dangling"
	ln -s "$OUT/dir" "$T/l2/absdir"
	ovl_copy
	traced
	watch_start
	start
	ovl_start
	expect "same listing as overlayfs" "$(listing "$M")" "$(listing "$T/ovl")"
	ovl_stop
	local l
	for l in abs rel sub/chain sub/deeper/todir dangling absdir; do
		expect "readlink $l" "$(readlink "$M/$l")" "$(readlink "$T/l1/$l" 2>/dev/null || readlink "$T/l2/$l")"
	done
	# copy-ups of the symlinks themselves
	touch -h -d @1000000000 "$M/abs"
	chown -h 123:456 "$M/rel" "$M/sub/chain" "$M/absdir"
	expect "touch -h copies up the symlink" "$(stat -c '%F %Y' "$T/up/abs") $(readlink "$T/up/abs")" \
		"symbolic link 1000000000 $OUT/secret"
	expect "chown -h copies up the symlinks" "$(stat -c '%u:%g %F' "$T/up/rel" "$T/up/sub/chain" "$T/up/absdir" |
		tr '\n' ' ')" "123:456 symbolic link 123:456 symbolic link 123:456 symbolic link "
	expect "copies keep the targets" "$(readlink "$T/up/rel") $(readlink "$T/up/absdir")" "../outside/secret $OUT/dir"
	ln -P "$M/sub/deeper/todir" "$M/hard"
	expect "a hardlink of a symlink is a symlink" "$(stat -c %F "$M/hard") $(readlink "$M/hard")" \
		"symbolic link ../../../outside/dir"
	mv "$M/dangling" "$M/sub/moved"
	rm "$M/sub/chain"
	expect "rename and unlink of symlinks" "$(readlink "$M/sub/moved") $(errno_of ls "$M/sub/chain")" \
		"$OUT/nothing No such file or directory "
	expect "getfattr -h on a symlink" "$(errno_of getfattr -h -n user.x "$M/abs")" "No such attribute "
	stop
	start
	expect "after a remount" "$(readlink "$M/abs") $(readlink "$M/hard")" "$OUT/secret ../../../outside/dir"
	stop
	watch_check
}

# A symlinked directory in the middle of a path: the merge of a/b/c with
# the layers below stops at a symlink, it never goes through it.
case_midpath() {
	mkdir -p "$T/l1/a/b/c" "$T/l1/x/y" "$T/l2/x" "$T/l3/x/y/z"
	echo f >"$T/l1/a/b/c/f"; echo g >"$T/l1/x/y/g"; echo z >"$T/l3/x/y/z/z"
	ln -s "$OUT/dir" "$T/l2/a"         # a symlink where l1 has a directory
	ln -s ../../outside/dir "$T/l2/x/y" # and one level deeper, relative
	mkdir -p "$T/up/u"; ln -s "$OUT/dir" "$T/up/u/b" # in the upper layer
	mkdir -p "$T/l1/u/b/c"; echo uf >"$T/l1/u/b/c/uf"
	LOWERS="$T/l1:$T/l2:$T/l3"
	ovl_copy
	traced
	watch_start
	start
	expect "a/b/c merges with nothing behind the symlink" "$(ls -A "$M/a/b/c" | tr '\n' ' ')" "f "
	expect "x/y stops at the symlink of the layer below" "$(ls -A "$M/x/y" | tr '\n' ' ')" "g "
	expect "an upper symlink hides the lower directory" "$(stat -c %F "$M/u/b") $(readlink "$M/u/b")" \
		"symbolic link $OUT/dir"
	echo more >>"$M/a/b/c/f"
	mkdir "$M/x/y/new"
	expect "copy-ups below work" "$(cat "$T/up/a/b/c/f" | tr '\n' ' ')$(ls "$T/up/x/y")" "f more new"
	expect "the upper layer has no symlink followed" "$(find "$T/up" -path "$T/up/.fhmap-work" -prune -o \
		-name leak -print)" ""
	ovl_start
	expect "same trees as overlayfs" "$(listing "$M" | grep -v -e new -e ' ./a/b/c/f ')" \
		"$(listing "$T/ovl" | grep -v ' ./a/b/c/f ')"
	ovl_stop
	stop
	watch_check
}

# A lower file replaced while it is being copied up: a second process
# swaps (RENAME_EXCHANGE) each file with a symlink to a canary, or with
# another file, as fast as it can while the union copies them up. The copy
# is always one whole lower file and never what a symlink names.
case_race() {
	local n=40 i pairs=() res
	for i in $(seq $n); do
		head -c $((256 * 1024)) /dev/zero | tr '\0' "$(printf '\\%03o' $((65 + i % 26)))" >"$T/l1/f$i"
		if [ $((i % 2)) = 0 ]; then
			ln -s "$OUT/secret" "$T/l1/s$i"
		else
			echo other >"$T/l1/s$i"
		fi
		pairs+=("f$i" "s$i")
		md5sum <"$T/l1/f$i" >"$T/orig$i"
	done
	mkdir -p "$T/l1/dd"; echo dd >"$T/l1/dd/file"; ln -s "$OUT/dir" "$T/l1/ddsym"
	pairs+=(dd ddsym)
	traced
	watch_start
	start "entry_timeout=0,attr_timeout=0"
	"$TOOL" swap "$T/l1" 8 "${pairs[@]}" >"$T/swaps" &
	local swapper=$!
	for i in $(seq $n); do
		echo "f$i $("$TOOL" append "$M" "f$i")" >>"$T/results"
		echo "dd $("$TOOL" append "$M" dd file)" >>"$T/results"
	done
	wait $swapper
	echo "$(cat "$T/swaps") swaps; results: $(cut -d' ' -f2 "$T/results" | sort | uniq -c | tr '\n' ' ')"
	# ELOOP, ENOTDIR: the name was the symlink when it was opened
	expect "every append succeeds or meets the symlink" \
		"$(grep -v -x -e '.* ok' -e 'f.* ELOOP' -e 'dd ENOTDIR' "$T/results" | sort -u)" ""
	local bad=0
	for i in $(seq $n); do
		res=$(grep "^f$i " "$T/results" | cut -d' ' -f2)
		[ "$res" = ok ] || continue
		# the copy is the whole file the name showed, plus the appended line
		local up=$T/up/f$i
		if [ -L "$up" ] || [ ! -f "$up" ]; then bad=$((bad + 1)); continue; fi
		local body; body=$(head -c -2 "$up" | md5sum)
		[ "$(tail -c 2 "$up")" = x ] || bad=$((bad + 1))
		[ "$body" = "$(cat "$T/orig$i")" ] || [ "$(head -c -2 "$up")" = other ] || bad=$((bad + 1))
	done
	expect "every copied-up file is one whole lower file" "$bad" 0
	expect "no copy holds a canary" "$(grep -r -l -e SECRET -e LEAK "$T/up" | wc -l)" 0
	stop
	watch_check
}

# Names with newlines, control bytes, escape sequences, bytes that are not
# UTF-8, 255 bytes: listed, read, copied up, renamed, linked, removed, and
# merged across layers (a directory whose lower path holds them).
case_names() {
	local nl=$'nl\nx' ctl=$'t\t\001\033[31m\177' bin=$'\xff\xfe' long d
	long=$(printf 'L%.0s' $(seq 255))
	d=$'dir\n\001'
	for f in "$nl" "$ctl" "$bin" "$long" "x (deleted)"; do echo "$f" >"$T/l1/$f"; done
	mkdir -p "$T/l1/$d/$ctl" "$T/l2/$d/$ctl"
	echo one >"$T/l1/$d/$ctl/$nl"; echo two >"$T/l2/$d/$ctl/two"
	ovl_copy
	start
	expect "every name listed" "$(cd "$M" && find . -print0 | tr -c -d '\0' | wc -c)" 10
	ovl_start
	expect "same listing as overlayfs" "$(cd "$M" && find . -print0 | sort -z | od -c)" \
		"$(cd "$T/ovl" && find . -print0 | sort -z | od -c)"
	ovl_stop
	expect "merge below a directory with such a name" "$(ls -b "$M/$d/$ctl" | tr '\n' ' ')" 'nl\nx two '
	expect "read" "$(cat "$M/$nl" "$M/$bin" "$M/$long" | md5sum)" \
		"$(cat "$T/l1/$nl" "$T/l1/$bin" "$T/l1/$long" | md5sum)"
	echo more >>"$M/$ctl"
	expect "copy-up" "$(tail -n 1 "$T/up/$ctl")" more
	ln "$M/$bin" "$M/$d/$bin.2"
	mv "$M/$long" "$M/$d/$ctl/$long"
	rm "$M/x (deleted)"
	expect "link, rename, unlink" \
		"$(cat "$M/$d/$bin.2") $(cat "$M/$d/$ctl/$long") $(errno_of cat "$M/x (deleted)")" \
		"$bin $long No such file or directory "
	expect "a hardlink with such names counts" "$(stat -c %h "$M/$bin")" 2
	rm "$M/$bin"
	expect "the hint moved to the other name" "$(cat "$M/$d/$bin.2") $(stat -c %h "$M/$d/$bin.2")" "$bin 1"
	# a lower directory with such names renamed: its redirect holds them
	mv "$M/$d" "$M/$ctl.dir"
	expect "renamed directory keeps merging" "$(ls -b "$M/$ctl.dir/$ctl" | tr '\n' ' ')" "$long "'nl\nx two '
	stop
	start
	expect "after a remount" "$(ls -b "$M/$ctl.dir/$ctl" | wc -l)" 3
	stop
	rm -rf "$T/db" # a new map: the directory is adopted through its redirect
	start
	expect "a new map reads the redirect back" "$(ls -b "$M/$ctl.dir/$ctl" | tail -n 2 | tr '\n' ' ')" \
		'nl\nx two '
	stop
	ovl_copy
	ovl_start
	expect "overlayfs reads the same layers" "$(ls -b "$T/ovl/$ctl.dir/$ctl" | tail -n 2 | tr '\n' ' ')" \
		'nl\nx two '
	ovl_stop
}

# 64 KiB xattr values (the most Linux allows), many names; the union's
# own names on lower files are neither shown nor copied up.
case_xattrs() {
	local big
	echo x >"$T/l1/f"; mkdir "$T/l1/d"
	head -c 65536 /dev/urandom >"$T/big"
	head -c 65537 /dev/zero >"$T/huge"
	big=$(md5sum <"$T/big")
	for o in f d; do
		"$TOOL" setx "$T/l1/$o" user.big "$T/big" >/dev/null
		"$TOOL" setx "$T/l1/$o" trusted.big "$T/big" >/dev/null
	done
	for i in $(seq 100); do setfattr -n "user.n$i" -v "$i" "$T/l1/f"; done
	setfattr -n trusted.overlay.redirect -v /../outside "$T/l1/d"
	setfattr -n trusted.overlay.origin -v 0x00fb1e "$T/l1/f"
	setfattr -n trusted.fhmap.id -v 0x0100 "$T/l1/f"
	LOWERS=$T/l1 # one layer: l1's redirect is not walked to a layer below (EACCES, as in overlayfs)
	ovl_copy
	start
	expect "64 KiB value read whole" "$("$TOOL" getx "$M/f" user.big | md5sum)" "$big"
	expect "64 KiB trusted value of a directory" "$("$TOOL" getx "$M/d" trusted.big | md5sum)" "$big"
	expect "100 names listed" "$(getfattr -m '^user\.n' "$M/f" 2>/dev/null | grep -c user.n)" 100
	expect "union names hidden" "$(getfattr --absolute-names -m - "$M/f" "$M/d" |
		grep -c -e '^trusted.overlay' -e '^trusted.fhmap')" 0
	expect "and unreadable" "$(errno_of getfattr -n trusted.overlay.origin "$M/f")" "No such attribute "
	ovl_start
	expect "overlayfs reads the same value" "$("$TOOL" getx "$T/ovl/f" user.big | md5sum)" "$big"
	ovl_stop
	echo more >>"$M/f"
	chmod 700 "$M/d"
	expect "copy-up keeps the 64 KiB value" "$("$TOOL" getx "$T/up/f" user.big | md5sum)" "$big"
	expect "also of a directory" "$("$TOOL" getx "$T/up/d" trusted.big | md5sum)" "$big"
	expect "and the 100 others" "$(getfattr -m '^user\.n' "$T/up/f" 2>/dev/null | grep -c user.n)" 100
	expect "the lower layer's union names are not copied" \
		"$(getfattr --absolute-names -m trusted.overlay -d "$T/up/f" "$T/up/d" | grep -c overlay)" 0
	expect "the copy carries the daemon's own identity" \
		"$("$TOOL" getx "$T/up/f" trusted.fhmap.id | head -c 1 | od -An -tx1 | tr -d ' ')" 01
	expect "64 KiB value set through the union" "$("$TOOL" setx "$M/f" user.big2 "$T/big")" ok
	expect "and read back" "$("$TOOL" getx "$M/f" user.big2 | md5sum)" "$big"
	expect "a larger value is refused" "$("$TOOL" setx "$M/f" user.huge "$T/huge")" E2BIG
	expect "so is a union name" "$("$TOOL" setx "$M/f" trusted.overlay.redirect "$T/big")" EPERM
	stop
}

# Crafted trusted.overlay.* values on upper directories: redirects out of
# the layers, through symlinks, huge, not UTF-8, malformed; huge opaque
# values; origin xattrs the daemon does not use. Each lookup answers as
# overlayfs does, and no redirect reaches anything outside.
case_redirects() {
	local i=0 v
	mkdir -p "$T/l1/real/sub" "$T/l1/plain"
	ln -s "$OUT" "$T/l1/lnk"
	mkdir -p "$T/l1/real2/sub" "$T/l1/real3/sub"
	for v in "/../outside/dir" "../outside/dir" "/../../../../../../../..$OUT/dir" "/lnk/dir" "lnk" \
		"/real" "real2" "0xff00fe" "0x2f7265616c33002f2e2e" "0x2f0a78ff1b2f" "//real" ".." "." "/real/../.." "/real/" \
		"/$(printf 'a%.0s' $(seq 300))" "/$(printf 'a/%.0s' $(seq 2200))"; do
		i=$((i + 1))
		mkdir -p "$T/up/e$i" "$T/l1/e$i"
		setfattr -n trusted.overlay.redirect -v "$v" "$T/up/e$i"
	done
	mkdir -p "$T/up/huge" "$T/l1/huge/in"
	setfattr -n trusted.overlay.redirect -v "0x2f$(head -c 65000 /dev/zero | tr '\0' a | od -An -tx1 -v | tr -d ' \n')" \
		"$T/up/huge"
	mkdir -p "$T/up/op1" "$T/up/op2" "$T/l1/op1/in" "$T/l1/op2/in"
	setfattr -n trusted.overlay.opaque -v "0x$(head -c 65536 /dev/zero | tr '\0' y | od -An -tx1 -v | tr -d ' \n')" \
		"$T/up/op1"
	setfattr -n trusted.overlay.opaque -v 0xff "$T/up/op2"
	mkdir -p "$T/up/orig" "$T/l1/orig/in"; echo f >"$T/up/of"
	setfattr -n trusted.overlay.origin -v 0x00fb21000100deadbeef "$T/up/orig"
	setfattr -n trusted.overlay.origin -v "0x$(head -c 65536 /dev/urandom | od -An -tx1 -v | tr -d ' \n')" "$T/up/of"
	ovl_copy
	LOWERS=$T/l1
	traced
	watch_start
	start
	local names
	# huge (65001 bytes) is compared apart: overlayfs looks its one name up
	# (found nowhere), the daemon refuses a value longer than a path (EINVAL)
	names=$(cd "$T/up" && ls -d e* op* orig of | sort -V)
	for n in $names; do echo "$n $(cd "$M" && errno_of ls -A "$n")"; done >"$T/union.txt"
	ovl_start
	for n in $names; do echo "$n $(cd "$T/ovl" && errno_of ls -A "$n")"; done >"$T/ovl.txt"
	ovl_stop
	cat "$T/union.txt"
	expect "every lookup answers as overlayfs does" "$(diff "$T/union.txt" "$T/ovl.txt")" ""
	expect "a 65001-byte redirect is refused" "$(cd "$M" && errno_of ls -A huge)" "Invalid argument "
	expect "the valid redirects merge" "$(grep -E '^e(6|7|9) ' "$T/union.txt" | tr '\n' ' ')" \
		"e6 sub  e7 sub  e9 sub  "
	# no merge reached the canaries (their names are leak and b)
	expect "nothing from outside shows" "$(grep -c -w -e leak -e b "$T/union.txt")" 0
	expect "the daemon says why" "$(grep -c 'invalid redirect' "$T/daemon.log")" \
		"$(($(grep -c -e 'Invalid argument' "$T/union.txt") + 1))"
	# a raw newline would start a line of its own, or a raw byte stay in it
	expect "and prints no raw control or non-ASCII byte of a value" \
		"$(LC_ALL=C grep -c -v -e '^fhmap-unionfs: [ -~]*$' "$T/daemon.log")" 0
	stop
	watch_check
}

# Trees deeper than PATH_MAX allows as one path: walked, copied up (every
# ancestor: no recursion per level), renamed (a clear errno where the
# lower path no longer fits a redirect), remounted.
case_deep() {
	local n=${FHMAP_HOSTILE_DEPTH:-10000}
	"$TOOL" deep "$T/l1" "$n" || { fail "making the tree"; finish; }
	"$TOOL" deep "$T/l2" 3000
	LOWERS=$T/l1
	start
	expect "walk $n levels" "$("$TOOL" walk "$M" "$n")" deep
	expect "copy-up of the leaf and its $n ancestors" "$("$TOOL" walk "$M" "$n" append | tr '\n' ' ')" "deep more "
	expect "the copy is on the upper layer" "$("$TOOL" walk "$T/up" "$n" | tr '\n' ' ')" "deep more "
	expect "rename at depth 100, and back" "$("$TOOL" mvdeep "$M" 100 d e) $("$TOOL" mvdeep "$M" 100 e d)" "ok ok"
	expect "rename at depth $n: the lower path does not fit a redirect" \
		"$("$TOOL" mvdeep "$M" "$n" d e 2>/dev/null)" ENAMETOOLONG
	stop
	start
	expect "after a remount" "$("$TOOL" walk "$M" "$n" | tr '\n' ' ')" "deep more "
	stop
	ovl_copy
	rm -rf "$T/oup"/*
	ovl_start
	expect "overlayfs walks the same tree" "$("$TOOL" walk "$T/ovl" "$n")" deep
	ovl_stop
	# two lower layers: a directory merges by its lower path, which the
	# kernel gives only up to 4 KiB
	LOWERS="$T/l2:$T/l1"
	rm -rf "$T/db" "$T/up"/* "$T/up/.fhmap-work"
	start
	expect "two layers: walk 1500 levels" "$("$TOOL" walk "$M" 1500 2>/dev/null)" ENOENT
	expect "two layers: past 4 KiB of lower path, a clear errno" "$("$TOOL" walk "$M" 3000 2>/dev/null)" ENAMETOOLONG
	stop
}

# A directory of a million entries: listed whole, once each, looked up,
# copied up, removed in.
case_bigdir() {
	local n=${FHMAP_HOSTILE_ENTRIES:-1000000} last
	last=$(printf 'f%07d' $((n - 1)))
	mkdir "$T/l1/big"
	"$TOOL" dents "$T/l1/big" "$n" || { fail "making the directory"; finish; }
	LOWERS=$T/l1
	ovl_copy
	start
	ls -f "$M/big" >"$T/names"
	expect "readdir lists $n names" "$(grep -c '^f' "$T/names")" "$n"
	expect "each once" "$(sort "$T/names" | uniq -d | head -3)" ""
	expect "lookup of the last" "$(stat -c %F "$M/big/$last")" "regular empty file"
	echo x >>"$M/big/f0000001"
	rm "$M/big/f0000002"
	expect "copy-up and unlink in it" "$(cat "$M/big/f0000001") $(errno_of stat "$M/big/f0000002")" \
		"x No such file or directory "
	ovl_start
	expect "overlayfs lists as many" "$(ls -f "$T/ovl/big" | grep -c '^f')" "$n"
	ovl_stop
	stop
}

# FIFOs, device nodes and sockets: listed with their types and numbers,
# copied up (mknod, never opened), and a FIFO opened through the union
# (which the kernel serves itself) never holds a daemon thread: with a
# single thread, the union answers while a reader waits on the FIFO.
case_special() {
	mkfifo "$T/l1/fifo"; mknod "$T/l1/null" c 1 3; mknod "$T/l1/loop" b 7 0
	python3 -c "import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])" "$T/l1/sock" 2>/dev/null ||
		mkfifo "$T/l1/sock"
	mknod "$T/l1/wh" c 0 0
	ovl_copy
	start threads=1
	local types
	types=$(cd "$T/l1" && stat -c '%n %F %t:%T %a' fifo null loop sock)
	expect "types and device numbers" "$(cd "$M" && stat -c '%n %F %t:%T %a' fifo null loop sock)" "$types"
	expect "a 0/0 device is a whiteout" "$(errno_of stat "$M/wh")" "No such file or directory "
	(timeout 20 cat "$M/fifo" >"$T/fifo.out"; echo "rc $?" >>"$T/fifo.out") &
	local reader=$!
	sleep 0.5
	expect "the daemon answers while a reader waits on the FIFO" \
		"$(timeout 5 ls "$M" | tr '\n' ' ')" "fifo loop null sock "
	expect "and copies up meanwhile" "$(timeout 5 chmod 600 "$M/fifo" "$M/null" "$M/loop" "$M/sock"; echo $?)" 0
	echo hello >"$M/fifo"
	wait $reader
	expect "the FIFO carries data through the union" "$(tr '\n' ' ' <"$T/fifo.out")" "hello rc 0 "
	expect "copies have the same types and numbers" "$(cd "$T/up" && stat -c '%n %F %t:%T %a' fifo null loop sock)" \
		"$(echo "$types" | sed 's/ [0-7]*$/ 600/')"
	expect "device nodes cannot be opened (nodev)" "$(errno_of cat "$M/null")" "Permission denied "
	mknod "$M/newfifo" p
	expect "mknod of a FIFO" "$(stat -c %F "$T/up/newfifo")" fifo
	ovl_start
	expect "overlayfs shows the same types" "$(cd "$T/ovl" && stat -c '%n %F %t:%T' fifo null loop sock)" \
		"$(echo "$types" | sed 's/ [0-7]*$//')"
	ovl_stop
	stop
}

# An upper layer prepared with its work directory (or the index in it) a
# symlink out of the layer is refused at mount; temporaries left in the
# work directory that are symlinks are removed, never followed.
case_workdir() {
	watch_start
	ln -s "$OUT/dir" "$T/up/.fhmap-work"
	"$BIN" -o "lowerdir=$T/l1,upperdir=$T/up,db=$T/db" "$M" -f 2>"$T/err"
	expect "a work dir that is a symlink: mount refused" "$? $(grep -c 'workdir' "$T/err")" "1 1"
	rm "$T/up/.fhmap-work"; mkdir "$T/up/.fhmap-work"; ln -s "$OUT/dir" "$T/up/.fhmap-work/index"
	"$BIN" -o "lowerdir=$T/l1,upperdir=$T/up,db=$T/db" "$M" -f 2>"$T/err"
	expect "an index that is a symlink: mount refused" "$? $(grep -c 'workdir' "$T/err")" "1 1"
	rm "$T/up/.fhmap-work/index"
	ln -s "$OUT/secret" "$T/up/.fhmap-work/cu-5"
	ln -s "$OUT/dir" "$T/up/.fhmap-work/new-1-1"
	LOWERS=$T/l1
	start
	expect "symlink temporaries removed" "$(ls "$T/up/.fhmap-work")" index
	stop
	watch_check
}

case "$CASE" in
symlinks | midpath | race | names | xattrs | redirects | deep | bigdir | special | workdir) "case_$CASE" ;;
*) echo "unknown case $CASE"; exit 2 ;;
esac
finish
