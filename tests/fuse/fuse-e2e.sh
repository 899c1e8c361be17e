#!/usr/bin/env bash
# End-to-end tests of fhmap-unionfs on real kernel FUSE mounts.
#   fuse-e2e.sh BINARY FH_TOOL CASE
# CASE: union | handles | restart | forged | recovery | overlayfs | random | options
#       | crash | died | stress | fileops | exchange
# crash and stress also need FHMAP_CTL (fhmapctl) and, for stress,
# FHMAP_STRESS (tests/fuse/stress.c) in the environment; exchange
# FHMAP_POSIX (tests/fuse/posix_tool.c).
# Needs root and /dev/fuse; exits 77 (skipped) with a message otherwise.
# Every mount and daemon it starts is torn down on exit, also on failure.
set -u

BIN=$1
TOOL=$2
CASE=$3

. "$(dirname "$0")/common.sh"

case_union() {
	echo A1 >"$T/l1/a"; echo B1 >"$T/l1/both"; echo B2 >"$T/l2/both"
	mkdir -p "$T/l1/dir" "$T/l2/dir" "$T/l1/sub" "$T/l1/ren/in"
	echo x >"$T/l1/dir/x"; echo dup1 >"$T/l1/dir/dup"; echo y >"$T/l2/dir/y"; echo dup2 >"$T/l2/dir/dup"
	echo k >"$T/l1/sub/k"; echo w >"$T/l1/wh"; echo o >"$T/l2/only2"; echo r >"$T/l1/ren/in/f"
	# l1 as a former upper layer: a whiteout and an opaque directory
	mknod "$T/l1/hidden" c 0 0; echo h >"$T/l2/hidden"
	mkdir "$T/l1/op" "$T/l2/op"; echo a >"$T/l1/op/a"; echo b >"$T/l2/op/b"
	setfattr -n trusted.overlay.opaque -v y "$T/l1/op"
	start
	local names
	names=$(ls -A "$M" | tr '\n' ' ')
	expect "root lists every layer once, work dir hidden" "$names" "a both dir only2 op ren sub wh "
	expect "whiteout in a lower layer hides the layers below" "$(cat "$M/hidden" 2>&1)" \
		"cat: $M/hidden: No such file or directory"
	expect "opaque dir in a lower layer stops the merge" "$(ls "$M/op" | tr '\n' ' ')" "a "
	expect "readdir merge of a dir in both lowers" "$(ls "$M/dir" | tr '\n' ' ')" "dup x y "
	expect "topmost lower wins" "$(cat "$M/both") $(cat "$M/dir/dup")" "B1 dup1"
	# cp -a, tar and rsync open with O_NOFOLLOW: the daemon must not pass it on
	# to its reopen of the layer file through /proc/self/fd (ELOOP)
	expect "O_NOFOLLOW open of a lower file" "$(dd if="$M/both" iflag=nofollow status=none 2>&1)" B1
	expect "readdir d_ino equals st_ino" "$(ls -i "$M" | awk '$2=="a"{print $1}')" "$(ino "$M/a")"

	rm "$M/wh"
	expect "unlinked lower file is gone" "$(ls "$M" | grep -c '^wh$')" 0
	expect "whiteout is a 0/0 char device" "$(stat -c '%F %t:%T' "$T/up/wh")" "character special file 0:0"
	expect "lower layer untouched by unlink" "$(cat "$T/l1/wh")" w

	rm -r "$M/sub"
	mkdir "$M/sub"
	expect "dir made over a whiteout is empty" "$(ls -A "$M/sub" | wc -l)" 0
	expect "and opaque" "$(getfattr --only-values -n trusted.overlay.opaque "$T/up/sub" 2>/dev/null)" y
	expect "its lower content is untouched" "$(cat "$T/l1/sub/k")" k

	local ia
	ia=$(ino "$M/a")
	exec 4<"$M/a"
	echo A2 >>"$M/a"
	expect "a file opened before its copy-up reads the copy" "$(tr '\n' ' ' <&4)" "A1 A2 "
	exec 4<&-
	expect "write copies up" "$(tr '\n' ' ' <"$T/up/a")" "A1 A2 "
	expect "O_NOFOLLOW open of a copied-up file" "$(dd if="$M/a" iflag=nofollow status=none 2>&1 | tr '\n' ' ')" "A1 A2 "
	expect "lower unchanged by copy-up" "$(cat "$T/l1/a")" A1
	expect "st_ino kept by copy-up" "$(ino "$M/a")" "$ia"

	chmod 600 "$M/both"
	expect "chmod copies up" "$(stat -c %a "$T/up/both") $(stat -c %a "$T/l1/both")" "600 644"
	setfattr -n user.tag -v hello "$M/dir/x"
	expect "xattr change copies up" "$(getfattr --only-values -n user.tag "$T/up/dir/x" 2>/dev/null)" hello
	expect "xattr readable through the union" "$(getfattr --only-values -n user.tag "$M/dir/x" 2>/dev/null)" hello
	expect "union markers hidden from listxattr" "$(getfattr -d -m - "$M/sub" 2>/dev/null | grep -c overlay)" 0

	local iren
	iren=$(ino "$M/ren")
	mv "$M/ren" "$M/moved"
	expect "renamed lower dir keeps its content" "$(cat "$M/moved/in/f")" r
	expect "renamed lower dir keeps st_ino" "$(ino "$M/moved")" "$iren"
	expect "old name is gone" "$(ls "$M" | grep -c '^ren$')" 0
	expect "redirect recorded overlayfs style" \
		"$(getfattr --only-values -n trusted.overlay.redirect "$T/up/moved" 2>/dev/null)" /ren
	echo r2 >"$M/moved/in/f"
	expect "copy-up below a renamed dir" "$(cat "$T/up/moved/in/f")" r2

	ln "$M/a" "$M/a-link"
	expect "hardlink shares st_ino" "$(ino "$M/a-link")" "$ia"
	expect "hardlink count" "$(stat -c %h "$M/a")" 2
	echo open >"$M/tmpf"
	exec 3<"$M/tmpf"
	rm "$M/tmpf"
	expect "unlinked file stays readable while open" "$(cat <&3)" open
	expect "and stat-able, with no links" "$(stat -L -c %h /proc/self/fd/3)" 0
	truncate -s 2 /proc/self/fd/3
	chmod 600 /proc/self/fd/3
	expect "and its size and mode can change" "$(stat -L -c '%s %a' /proc/self/fd/3)" "2 600"
	exec 3<&-
	ln -s a "$M/sym"; mkfifo "$M/fifo"; mkdir -p "$M/n1/n2"; echo c >"$M/n1/n2/c"
	expect "symlink" "$(readlink "$M/sym") $(head -1 "$M/sym")" "a A1"
	expect "fifo" "$(stat -c %F "$M/fifo")" fifo
	rmdir "$M/n1" 2>/dev/null
	expect "rmdir of a non-empty dir fails" "$?" 1
	rm "$M/dir/x" "$M/dir/y" "$M/dir/dup"
	rmdir "$M/dir"
	expect "rmdir of an emptied merged dir" "$(ls "$M" | grep -c '^dir$')" 0
	mkdir "$M/dir"
	expect "recreated dir does not merge" "$(ls -A "$M/dir" | wc -l)" 0
	mv "$M/only2" "$M/n1/n2/moved2"
	expect "rename of a file from the second lower" "$(cat "$M/n1/n2/moved2")" o
	expect "statfs" "$(stat -f -c %b "$M")" "$(stat -f -c %b "$T/up")"
	expect "whiteout names never listed" "$(ls -A "$M" | tr '\n' ' ')" \
		"a a-link both dir fifo moved n1 op sub sym "
	local before names
	before=$(find "$M" -printf '%P %i\n' | sort)
	names=$(cd "$M" && find . | sort)
	stop

	# overlayfs reads the same layers (upper as the top lower, read-only)
	mkdir "$T/ovl"
	if mount -t overlay overlay -o "ro,redirect_dir=follow,lowerdir=$T/up:$T/l1:$T/l2" "$T/ovl" 2>/dev/null; then
		expect "overlayfs sees the same names" \
			"$(cd "$T/ovl" && find . -path ./.fhmap-work -prune -o -print | sort)" "$names"
		umount "$T/ovl"
	else
		echo "# overlayfs not available: format compatibility not checked"
	fi

	start
	expect "st_ino and names stable across remount" "$(find "$M" -printf '%P %i\n' | sort)" "$before"
	stop
}

case_handles() {
	echo lower-f >"$T/l1/f"
	mkdir -p "$T/l1/g/p"; echo deep >"$T/l1/g/p/file"
	echo hl >"$T/l1/h1"; ln "$T/l1/h1" "$T/l1/h2"
	echo gone >"$T/l1/gone"; echo two >"$T/l2/second"
	start
	echo born >"$M/born"
	"$TOOL" save "$T/h" f="$M/f" file="$M/g/p/file" parent="$M/g/p" grand="$M/g" h1="$M/h1" h2="$M/h2" \
		gone="$M/gone" second="$M/second" born="$M/born" root="$M" || fail "save handles"
	local fino
	fino=$(ino "$M/f")
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o1"
	expect "lower file handle" "$(field f "$T/o1")" "ok ino=$fino data=lower-f"
	expect "file in second lower" "$(field second "$T/o1")" "ok ino=$(ino "$M/second") data=two"
	expect "upper-born file" "$(field born "$T/o1")" "ok ino=$(ino "$M/born") data=born"
	expect "dir handle reconnects" "$(field parent "$T/o1")" "ok ino=$(ino "$M/g/p") dir=$M/g/p"
	expect "root handle" "$(field root "$T/o1")" "ok ino=1 dir=$M"

	echo new-f >"$M/f"
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o2"
	expect "old handle reads the copied-up content" "$(field f "$T/o2")" "ok ino=$fino data=new-f"

	echo new-hl >"$M/h1"
	expect "hardlink sibling sees the copy-up" "$(cat "$M/h2")" new-hl
	expect "hardlink sibling same st_ino" "$(ino "$M/h2")" "$(ino "$M/h1")"
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o3"
	expect "sibling's old handle reads new content" "$(field h2 "$T/o3")" "ok ino=$(ino "$M/h1") data=new-hl"
	stop
	"$FHMAP_CTL" check "$DB" --deep >"$T/check.out" 2>&1
	expect "check --deep is clean with a lower hardlink's copy in the index" "$?" 0 || cat "$T/check.out"
	start

	mv "$M/g/p/file" "$M/g/p/file2"
	mv "$M/g/p" "$M/g/p2"
	mv "$M/g" "$M/top"
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o4"
	expect "handle after renaming the file, parent, grandparent" "$(field file "$T/o4")" \
		"ok ino=$(ino "$M/top/p2/file2") data=deep"
	expect "renamed parent dir handle reconnects to its new path" "$(field parent "$T/o4")" \
		"ok ino=$(ino "$M/top/p2") dir=$M/top/p2"
	expect "renamed grandparent dir handle" "$(field grand "$T/o4")" "ok ino=$(ino "$M/top") dir=$M/top"
	mkdir "$M/other"
	mv "$M/top/p2" "$M/other/p3"
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o5"
	expect "dir moved to a new parent" "$(field parent "$T/o5")" "ok ino=$(ino "$M/other/p3") dir=$M/other/p3"

	rm "$M/gone"
	rm "$M/h1"
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o6"
	expect "unlinked file handle is ESTALE" "$(field gone "$T/o6")" ESTALE
	expect "remaining hardlink keeps working" "$(field h2 "$T/o6")" "ok ino=$(ino "$M/h2") data=new-hl"
	expect "link count after one name went" "$(stat -c %h "$M/h2")" 1
	stop
	"$FHMAP_CTL" check "$DB" --deep >"$T/check.out" 2>&1
	expect "the hinted name of a lower hardlink went: the hint follows a name looked up" "$?" 0 ||
		cat "$T/check.out"
	start
	rm "$M/h2"
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o7"
	expect "last hardlink gone: ESTALE" "$(field h1 "$T/o7") $(field h2 "$T/o7")" "ESTALE ESTALE"
	expect "index copy removed" "$(ls -A "$T/up/.fhmap-work/index" | wc -l)" 0
	stop
}

case_restart() {
	echo keep >"$T/l1/keep"; echo cu >"$T/l1/cu"; mkdir -p "$T/l1/d/e"; echo de >"$T/l1/d/e/f"
	echo hl >"$T/l1/h1"; ln "$T/l1/h1" "$T/l1/h2"; echo doomed >"$T/l1/doomed"
	start
	echo cu2 >"$M/cu"
	echo up >"$M/up"
	mkdir -p "$M/ud/sub" "$M/other"
	mv "$M/d" "$M/d2"
	echo hl2 >"$M/h1"
	"$TOOL" save "$T/h" keep="$M/keep" cu="$M/cu" up="$M/up" dir="$M/d2/e" f="$M/d2/e/f" h2="$M/h2" \
		doomed="$M/doomed" ud="$M/ud/sub" || fail "save handles"
	local inos
	inos=$(stat -c '%n %i' "$M/keep" "$M/cu" "$M/up" "$M/d2/e" "$M/d2/e/f" "$M/h2")
	"$TOOL" open "$M" "$T/h" >"$T/before"
	rm "$M/doomed"
	stop

	start
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/after"
	for l in keep cu up dir f h2; do
		expect "handle '$l' survives unmount and daemon restart" "$(field $l "$T/after")" "$(field $l "$T/before")"
	done
	expect "unlinked before restart stays ESTALE" "$(field doomed "$T/after")" ESTALE
	# a directory moved on the upper layer while unmounted: found again, its
	# name hint corrected, and its handle reconnects to the new place
	stop
	mv "$T/up/ud" "$T/up/other/ud"
	start
	ls -R "$M" >/dev/null
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/moved"
	expect "dir moved outside the daemon reconnects" "$(field ud "$T/moved")" \
		"ok ino=$(ino "$M/other/ud/sub") dir=$M/other/ud/sub"
	expect "st_ino stable across restart" "$(stat -c '%n %i' "$M/keep" "$M/cu" "$M/up" "$M/d2/e" "$M/d2/e/f" "$M/h2")" "$inos"
	echo new >"$M/new"
	local maxold
	maxold=$(echo "$inos" | awk '{print $2}' | sort -n | tail -1)
	[ "$(ino "$M/new")" -gt "$maxold" ] && ok "object numbers are never reused" || fail "new st_ino $(ino "$M/new") <= $maxold"

	kill -TERM "$PID"
	wait "$PID"
	expect "SIGTERM: clean exit" "$?" 0
	PID=""
	mounted "$M" && fail "still mounted after SIGTERM" || ok "SIGTERM unmounts"

	# a recreated db reuses object numbers but never their generations
	mv "$DB" "$T/db.old"
	start
	ls -R "$M" >/dev/null
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/newdb"
	expect "handles of a recreated db are all ESTALE" "$(cut -d' ' -f2 "$T/newdb" | sort -u)" ESTALE
	stop
}

case_forged() {
	echo data >"$T/l1/f"; mkdir "$T/l1/d"
	start
	"$TOOL" save "$T/h" f="$M/f" || fail "save handle"
	local out
	out=$("$TOOL" forge "$M" "$T/h" 600)
	expect_match "forged handles (hot cache) never open" "$out" "600 ESTALE, 0 other errors, 0 opened"
	drop_caches
	out=$("$TOOL" forge "$M" "$T/h" 600)
	expect_match "forged handles (cold cache) never open" "$out" "600 ESTALE, 0 other errors, 0 opened"
	kill -0 "$PID" 2>/dev/null && ok "daemon alive after forged handles" || fail "daemon died"
	expect "mount still serves" "$(cat "$M/f")" data
	"$TOOL" open "$M" "$T/h" >"$T/o"
	expect "the real handle still opens" "$(field f "$T/o")" "ok ino=$(ino "$M/f") data=data"
	stop
}

case_recovery() {
	echo orig >"$T/l1/f"; echo orig2 >"$T/l1/g"
	start
	local fi gi
	fi=$(ino "$M/f"); gi=$(ino "$M/g")
	"$TOOL" save "$T/h" f="$M/f" g="$M/g" || fail "save handles"
	stop
	# crash before the copy was in place: the intent is rolled back
	"$TOOL" intent "$DB" "$fi" || fail "record intent"
	expect "intent recorded" "$("$TOOL" state "$DB" "$fi")" copyup
	# crash after the copy was renamed into place: rolled forward
	"$TOOL" intent "$DB" "$gi" || fail "record intent"
	echo copied >"$T/up/g"
	start
	expect "interrupted copy-up without a copy rolled back" "$("$TOOL" state "$DB" "$fi")" origin
	expect "interrupted copy-up with its copy in place rolled forward" "$("$TOOL" state "$DB" "$gi")" upper
	expect_match "recovery is logged" "$(cat "$T/daemon.log")" "rolled back"
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o"
	expect "rolled-back object still reads its lower content" "$(field f "$T/o")" "ok ino=$fi data=orig"
	expect "rolled-forward object reads its upper copy" "$(field g "$T/o")" "ok ino=$gi data=copied"
	echo now >"$M/f"
	expect "rolled-back object copies up again" "$(cat "$T/up/f")" now

	# a real crash: SIGKILL while a large copy-up runs
	head -c 64M /dev/urandom >"$T/l1/big"
	local bi sum
	bi=$(ino "$M/big")
	sum=$(md5sum <"$T/l1/big")
	"$TOOL" save "$T/hb" big="$M/big" || fail "save handle"
	(echo tail >>"$M/big") 2>/dev/null &
	local writer=$!
	sleep 0.05
	kill -KILL "$PID"
	wait "$PID" 2>/dev/null
	wait "$writer" 2>/dev/null
	PID=""
	fusermount3 -u "$M" || umount -l "$M"
	start
	local st
	st=$("$TOOL" state "$DB" "$bi")
	expect_match "after a crash mid copy-up the object is settled" "$st" "^(origin|upper)$"
	local now
	now=$(head -c 64M "$M/big" | md5sum)
	expect "the data before the append is intact" "$now" "$sum"
	expect "no temporaries left in the work dir" "$(ls -A "$T/up/.fhmap-work" | grep -v '^index$' | wc -l)" 0
	drop_caches
	"$TOOL" open "$M" "$T/hb" >"$T/ob"
	expect_match "the handle opens the same object after the crash" "$(field big "$T/ob")" "^ok ino=$bi data="
	echo "# copy-up interrupted at state '$st'; recovery: $(grep -a "copy-up of object $bi " "$T/daemon.log" | tail -1)"
	stop
}

# names and one-line contents of a tree, work dir left out
tree_dump() {
	(cd "$1" && find . -path ./.fhmap-work -prune -o -type f -printf '%p ' -exec cat {} \; &&
		find . -path ./.fhmap-work -prune -o -type d -print) | sort
}

case_overlayfs() {
	mkdir -p "$T/l1/d/e" "$T/l1/keep" "$T/wk" "$T/ovl"
	echo f >"$T/l1/d/e/f"; echo g >"$T/l1/g"; echo k >"$T/l1/keep/k"; echo m >"$T/l1/mod"
	mount -t overlay overlay -o "lowerdir=$T/l1,upperdir=$T/up,workdir=$T/wk,redirect_dir=on" "$T/ovl" ||
		skip "overlayfs with redirect_dir=on cannot be mounted here"
	(cd "$T/ovl" && mv d d2 && mkdir top && mv d2/e top/e2 && rm g && mkdir g && echo x >g/x &&
		echo changed >mod && mkdir keep/sub && mv keep/k keep/sub/k2)
	local want
	want=$(tree_dump "$T/ovl")
	umount "$T/ovl"
	start
	expect "same tree as overlayfs on layers it wrote (redirects, whiteouts, opaque dirs)" \
		"$(tree_dump "$M")" "$want"
	echo more >"$M/top/e2/f2"
	expect "writes below a directory overlayfs renamed" "$(cat "$M/top/e2/f") $(cat "$M/top/e2/f2")" "f more"
	stop
	start
	expect "same tree after a remount" "$(tree_dump "$M" | grep -v f2)" "$want"
	stop
}

# names, types, modes, link counts, symlink targets and file contents
full_dump() {
	(cd "$1" && find . -path ./.fhmap-work -prune -o -type d -printf '%y %m %p\n' -o \
		-printf '%y %m %n %p %l ' -exec sh -c '[ -f "$1" ] && [ ! -L "$1" ] && md5sum <"$1" || echo' _ {} \;) | sort
}

# Random namespace and data operations, applied to the union and to a plain
# directory holding the same merged tree; results, exit statuses and link
# counts must match, also after a remount.
case_random() {
	local seed=${FHMAP_FUSE_SEED:-$$} n=${FHMAP_FUSE_OPS:-400}
	echo "# seed $seed, $n operations"
	RANDOM=$seed
	mkdir -p "$T/l1/a/b" "$T/l1/c" "$T/l2/a/x" "$T/l2/d" "$T/ref"
	for f in a/1 a/b/2 c/3 top; do echo "l1 $f" >"$T/l1/$f"; done
	for f in a/x/4 d/5 a/1 c6; do echo "l2 $f" >"$T/l2/$f"; done
	ln "$T/l1/c/3" "$T/l1/a/b/3link"; ln "$T/l2/d/5" "$T/l2/d/5link"
	cp -a "$T/l2/." "$T/ref"; cp -a "$T/l1/." "$T/ref"
	start
	expect "merged tree matches the reference" "$(full_dump "$M")" "$(full_dump "$T/ref")"
	local k=0 p args=()
	while read -r p; do
		args+=("h$k=$M/$p")
		k=$((k + 1))
	done < <(cd "$M" && find . -mindepth 1 ! -type l | sort)
	"$TOOL" save "$T/h" "${args[@]}" || fail "save handles"
	"$TOOL" open "$M" "$T/h" >"$T/h.before"
	local i all dirs files s d t cmd rc1 rc2 bad=0
	for ((i = 0; i < n; i++)); do
		mapfile -t all < <(cd "$T/ref" && find . -mindepth 1 | sort)
		mapfile -t dirs < <(cd "$T/ref" && find . -type d | sort)
		mapfile -t files < <(cd "$T/ref" && find . -type f | sort)
		s=${all[RANDOM % (${#all[@]} + 1)]:-./none}
		d=${dirs[RANDOM % ${#dirs[@]}]}
		t=${files[RANDOM % (${#files[@]} + 1)]:-./none}
		# now and then the kernel forgets everything, or the daemon restarts
		if ((i % 100 == 50)); then drop_caches; fi
		if ((i % 100 == 99)); then stop; start; fi
		case $((RANDOM % 13)) in
		0) cmd="echo a$i >>'$t'" ;;
		1) cmd="echo w$i >'$t'" ;;
		2) cmd="truncate -s 2 '$t'" ;;
		3) cmd="mv -T '$s' '$d/n$i'" ;;
		4) cmd="rm '$t'" ;;
		5) cmd="mkdir '$d/n$i'" ;;
		6) cmd="rmdir '$s'" ;;
		7) cmd="ln '$t' '$d/n$i'" ;;
		8) cmd="chmod 700 '$s'" ;;
		9) cmd="mv -T '$s' '${all[RANDOM % ${#all[@]}]}'" ;;
		10) cmd="ln -s 'target$i' '$d/n$i'" ;;
		11) cmd="echo c$i >'$d/n$i'" ;;
		12) cmd="setfattr -n user.op -v $i '$t'" ;;
		esac
		(cd "$T/ref" && eval "$cmd") >/dev/null 2>&1; rc1=$?
		(cd "$M" && eval "$cmd") >/dev/null 2>&1; rc2=$?
		if [ "$rc1" != "$rc2" ]; then
			fail "op $i '$cmd': exit $rc2 on the union, $rc1 on the reference"
			bad=1
			break
		fi
	done
	[ "$bad" = 0 ] && ok "$n random operations: same exit statuses"
	expect "same tree, modes, link counts and contents as the reference" "$(full_dump "$M")" "$(full_dump "$T/ref")" || diff <(full_dump "$M") <(full_dump "$T/ref")
	local inos
	inos=$(cd "$M" && find . -printf '%p %i\n' | sort)
	stop
	start
	expect "same tree after remount" "$(full_dump "$M")" "$(full_dump "$T/ref")"
	expect "same inode numbers after remount" "$(cd "$M" && find . -printf '%p %i\n' | sort)" "$inos"
	check_random_handles
	stop
}

# Every handle taken before the random operations either opens its object
# (same st_ino, content of a name that has that st_ino now, directories
# reconnected to their current path) or is ESTALE and no name has its st_ino.
check_random_handles() {
	local label status rest ino want path bad=0 total=0
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/h.after"
	while read -r label status rest; do
		total=$((total + 1))
		ino=$(field "$label" "$T/h.before" | sed 's/^ok ino=\([0-9]*\).*/\1/')
		path=$(find "$M" -inum "$ino" -print -quit)
		if [ "$status" = ESTALE ]; then
			[ -z "$path" ] && continue
			fail "handle $label is ESTALE but $path has its st_ino $ino"; bad=1; continue
		fi
		case $rest in
		"ino=$ino dir=$path") continue ;;
		"ino=$ino data="*)
			want="ino=$ino data=$(head -c 63 "$path" | head -1)"
			[ "$rest" = "$want" ] && continue ;;
		esac
		fail "handle $label: '$status $rest', expected st_ino $ino at '$path'"; bad=1
	done <"$T/h.after"
	[ "$bad" = 0 ] && ok "all $total handles taken before the operations are consistent after remount"
}

case_options() {
	local out rc
	out=$(timeout -k 5 20 "$BIN" "$M" -f 2>&1); rc=$?
	expect "missing lowerdir: usage error" "$rc" 2
	expect_match "missing lowerdir: message" "$out" "missing -o lowerdir="
	out=$(timeout -k 5 20 "$BIN" -o "lowerdir=$T/nope,upperdir=$T/up,db=$DB" "$M" -f 2>&1); rc=$?
	expect "missing lower layer: error" "$rc" 1
	expect_match "missing lower layer: message" "$out" "lowerdir '$T/nope': No such file"
	mkdir "$T/l1/sub"
	out=$(timeout -k 5 20 "$BIN" -o "lowerdir=$T/l1,upperdir=$T/l1/sub,db=$DB" "$M" -f 2>&1); rc=$?
	expect "overlapping layers: error" "$rc" 1
	expect_match "overlapping layers: message" "$out" "upperdir '$T/l1/sub' and lowerdir '$T/l1' overlap"
	[ -e "$DB" ] && fail "db created despite bad options" || ok "bad options create no db"
	out=$(timeout -k 5 20 "$BIN" -o "lowerdir=$T/l1,upperdir=$T/up,db=$DB" "$T/nomnt" -f 2>&1); rc=$?
	expect "missing mountpoint: command line rejected" "$rc" 2
	expect_match "missing mountpoint: message" "$out" "bad mount point .$T/nomnt.: No such file"
	touch "$T/file"
	out=$(timeout -k 5 20 "$BIN" -o "lowerdir=$T/l1,upperdir=$T/up,db=$DB" "$T/file" -f 2>&1); rc=$?
	expect "mountpoint not a directory: error" "$rc" 1
	expect_match "mountpoint not a directory: message" "$out" "mountpoint '$T/file': not a directory"
	out=$(timeout -k 5 20 "$BIN" -o "lowerdir=$T/l1,upperdir=$T/up,db=$DB,workdir=$T/up" "$M" -f 2>&1); rc=$?
	expect "workdir inside upperdir: error" "$rc" 1
	expect_match "workdir inside upperdir: message" "$out" "must not be inside upperdir"
	rm -rf "$DB"
	mkdir "$T/work"
	"$BIN" -o "lowerdir=$T/l1:$T/l2,upperdir=$T/up,db=$DB,workdir=$T/work" "$M" -f 2>>"$T/daemon.log" &
	PID=$!
	for _ in $(seq 400); do mounted "$M" && break; sleep 0.05; done
	echo w >"$M/w"
	expect "separate workdir: not in the upper layer" "$(ls -A "$T/up")" w
	expect "separate workdir: holds the index" "$(ls -A "$T/work")" index
	stop
	start
	stop
	mkdir "$T/up2"
	out=$(timeout -k 5 20 "$BIN" -o "lowerdir=$T/l1:$T/l2,upperdir=$T/up2,db=$DB" "$M" -f 2>&1); rc=$?
	expect "other upper layer with the same db: error" "$rc" 1
	expect_match "layer mismatch message" "$out" "belongs to other layers"
	mounted "$M" && fail "mounted despite layer mismatch" || ok "not mounted on layer mismatch"
}

# A crash, after creates, mkdirs, copy-ups and lookups whose map updates
# were not committed yet (the flush interval is a minute): a daemon crash
# (SIGKILL), or a system crash, simulated by giving the deferred updates'
# overlay the name of an earlier boot's (libfhmap then drops it, as it
# would after a reboot; data.mdb holds only its last durable state).
crash_one() {
	local mode=$1 kind=$2 k labels=() born=()
	rm -rf "$T/up" "$DB"
	mkdir "$T/up"
	start "sync=$mode,flush_interval=60000"
	for k in 0 1 2 3; do stat "$M/a$k" >/dev/null; labels+=("a$k=$M/a$k"); done
	for k in 0 1 2 3; do
		echo "born $k" >"$M/n$k"
		mkdir -p "$M/nd$k/deep"
		echo "inner $k" >"$M/nd$k/deep/f"
		echo "appended $k" >>"$M/b$k"
		echo "below $k" >>"$M/ld/c$k"
		labels+=("n$k=$M/n$k" "nd$k=$M/nd$k" "deep$k=$M/nd$k/deep" "f$k=$M/nd$k/deep/f" "b$k=$M/b$k"
		         "c$k=$M/ld/c$k")
		born+=("n$k" "nd$k" "deep$k" "f$k" "b$k" "c$k")
	done
	labels+=("ld=$M/ld")
	"$TOOL" save "$T/h" "${labels[@]}" || fail "save handles"
	"$TOOL" open "$M" "$T/h" >"$T/h.before"
	sync
	kill -KILL "$PID"
	wait "$PID" 2>/dev/null
	PID=""
	fusermount3 -u "$M" 2>/dev/null || umount -l "$M"
	if [ "$kind" = system ]; then
		local ovl n=0
		for ovl in "$DB"/deferred-*.mdb; do
			[ -e "$ovl" ] || continue
			mv "$ovl" "$DB/deferred-00000000-0000-4000-8000-00000000000$n.mdb"
			[ -e "$ovl-lock" ] && mv "$ovl-lock" "$DB/deferred-00000000-0000-4000-8000-00000000000$n.mdb-lock"
			n=$((n + 1))
		done
		expect "$mode/$kind: the updates were still deferred" "$n" 1
	fi
	: >"$T/daemon.log"
	start "sync=$mode,flush_interval=60000"
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/h.after"
	local l want got bad=0 stale=0
	for l in "${born[@]}" ld; do
		want=$(field "$l" "$T/h.before"); got=$(field "$l" "$T/h.after")
		[ "$got" = "$want" ] || { fail "$mode/$kind: handle $l: '$got', want '$want'"; bad=1; }
	done
	for k in 0 1 2 3; do
		want=$(field "a$k" "$T/h.before"); got=$(field "a$k" "$T/h.after")
		if [ "$got" = ESTALE ] && [ "$mode/$kind" = deferred/system ]; then
			stale=$((stale + 1))
			[ "$(ino "$M/a$k")" != "$(echo "$want" | sed 's/^ok ino=\([0-9]*\).*/\1/')" ] ||
				{ fail "$mode/$kind: a$k is ESTALE but keeps its st_ino"; bad=1; }
		elif [ "$got" != "$want" ]; then
			fail "$mode/$kind: handle a$k of a lower file: '$got', want '$want'"; bad=1
		fi
	done
	[ "$bad" = 0 ] && ok "$mode/$kind: every surviving object's handle opens it; $stale lower handles ESTALE, none another object"
	# deferred: everything made since the mount is restored from the upper
	# layer; full: only what came after its last sync
	if [ "$mode/$kind" = deferred/system ]; then
		expect_match "$mode/$kind: the recovery is logged" "$(cat "$T/daemon.log")" "recovery: [1-9][0-9]* objects restored"
	elif [ "$kind" = system ]; then
		expect_match "$mode/$kind: the recovery is logged" "$(cat "$T/daemon.log")" "recovery: [0-9]+ objects restored, [0-9]+ copy-ups adopted"
	fi
	stop
	"$CTL" check "$DB" --deep >"$T/check.out" 2>&1
	expect "$mode/$kind: fhmapctl check --deep is clean" "$?" 0 || cat "$T/check.out"
}

case_crash() {
	[ -x "${FHMAP_CTL:-}" ] || { echo "FAIL: FHMAP_CTL (fhmapctl) not given"; exit 1; }
	CTL=$FHMAP_CTL
	mkdir -p "$T/l1/ld"
	for k in 0 1 2 3; do
		echo "lower a$k" >"$T/l1/a$k"; echo "lower b$k" >"$T/l1/b$k"; echo "lower c$k" >"$T/l1/ld/c$k"
	done
	crash_one deferred system
	crash_one full system
	for mode in deferred full lazy; do crash_one "$mode" process; done
}

# A daemon that died between an operation's change of the upper layer and
# its map update (each request thread can leave one): simulated by making
# the changes on the upper layer of a stopped daemon and leaving the work
# dir marked, as a killed daemon does. The next mount finishes them before
# any lookup could: handles taken before reach the object where it is now,
# or are ESTALE for what the operations removed.
case_died() {
	[ -x "${FHMAP_CTL:-}" ] || { echo "FAIL: FHMAP_CTL (fhmapctl) not given"; exit 1; }
	echo gone >"$T/l1/lgone"; echo hl >"$T/l1/h1"; ln "$T/l1/h1" "$T/l1/h2"
	echo p >"$T/l1/p1"; ln "$T/l1/p1" "$T/l1/p2"; echo q >"$T/l1/q1"; ln "$T/l1/q1" "$T/l1/q2"
	start
	mkdir -p "$M/a/moved" "$M/b"; echo up >"$M/a/moved/f"; echo doomed >"$M/a/doomed"
	echo copied >>"$M/h1"; mv "$M/h1" "$M/b/h"; rm "$M/h2"
	echo p2 >>"$M/p1"; echo q2 >>"$M/q1"
	local mi fi hi pi qi
	mi=$(ino "$M/a/moved"); fi=$(ino "$M/a/moved/f"); hi=$(ino "$M/b/h"); pi=$(ino "$M/p1"); qi=$(ino "$M/q1")
	"$TOOL" save "$T/h" moved="$M/a/moved" f="$M/a/moved/f" doomed="$M/a/doomed" lgone="$M/lgone" \
		h="$M/b/h" || fail "save handles"
	stop
	expect "the lower hardlink's copy is in the index, its last name an upper link" \
		"$(stat -c %h "$T/up/.fhmap-work/index/$hi") $(getfattr --only-values -n trusted.fhmap.lowerlinks \
			"$T/up/.fhmap-work/index/$hi")" "2 0"
	mv "$T/up/a/moved" "$T/up/b/moved"
	rm "$T/up/a/doomed"
	mknod "$T/up/lgone" c 0 0
	rm "$T/up/b/h"
	# an unlink of p1 that whited it out, one of q1 that had not yet: their
	# lower link counts still marked
	mknod "$T/up/p1" c 0 0
	setfattr -n trusted.fhmap.lowerlinks -v "2 -1 p1" "$T/up/.fhmap-work/index/$pi"
	setfattr -n trusted.fhmap.lowerlinks -v "2 -1 q1" "$T/up/.fhmap-work/index/$qi"
	setfattr -n trusted.fhmap.running -v "" "$T/up/.fhmap-work"
	start
	expect_match "the recovery is logged" "$(cat "$T/daemon.log")" \
		"last daemon died.*recovery: .* 3 lost objects forgotten, 0 copied up again, 1 name hints moved"
	"$TOOL" open "$M" "$T/h" >"$T/o"
	expect "the moved directory's handle reconnects to its new path" "$(field moved "$T/o")" "ok ino=$mi dir=$M/b/moved"
	expect "a file below it" "$(field f "$T/o")" "ok ino=$fi data=up"
	expect "the removed upper file's handle is ESTALE" "$(field doomed "$T/o")" ESTALE
	expect "the whited-out lower file's handle is ESTALE" "$(field lgone "$T/o")" ESTALE
	expect "the nameless index copy's handle is ESTALE" "$(field h "$T/o")" ESTALE
	expect "and the copy is gone" "$(ls -A "$T/up/.fhmap-work/index" | grep -vc "^$pi$\|^$qi$")" 0
	expect "a marked lower link count drops when the name was hidden, else stays" \
		"$(stat -c %h "$M/p2") $(stat -c %h "$M/q1") $(cat "$M/q2" | tr '\n' ' ')" "1 2 q q2 "
	stop
	expect "no mark left after a clean end" \
		"$(getfattr -n trusted.fhmap.running "$T/up/.fhmap-work" 2>/dev/null | grep -c '^trusted')" 0
	"$FHMAP_CTL" check "$DB" --deep >"$T/check.out" 2>&1
	expect "fhmapctl check --deep is clean" "$?" 0 || cat "$T/check.out"
}

# Many threads changing the union at once (tests/fuse/stress.c), then a
# remount: the map is consistent and every handle reaches its own object.
case_stress() {
	[ -x "${FHMAP_CTL:-}" ] && [ -x "${FHMAP_STRESS:-}" ] ||
		{ echo "FAIL: FHMAP_CTL and FHMAP_STRESS not given"; exit 1; }
	local threads=${FHMAP_STRESS_THREADS:-8} secs=${FHMAP_STRESS_SECONDS:-8} n=12 k
	mkdir -p "$T/l1/lower"
	for k in $(seq 0 $((n - 1))); do echo "lower $k" >"$T/l1/lower/f$k"; done
	start
	"$FHMAP_STRESS" run "$M" "$threads" "$secs" "$T/stress.out"
	expect "$threads threads for $secs s: no operation failed unexplained" "$?" 0
	kill -0 "$PID" 2>/dev/null && ok "daemon alive after the stress" || fail "daemon died"
	stop
	"$FHMAP_CTL" check "$DB" --deep >"$T/check.out" 2>&1
	expect "fhmapctl check --deep is clean after the stress" "$?" 0 || cat "$T/check.out"
	start
	drop_caches
	"$FHMAP_STRESS" verify "$M" "$T/stress.out" "$n"
	expect "after a remount every handle opens its own object or is ESTALE with no name left" "$?" 0
	stop
}

# A copy of the layers as they are now, mounted with the kernel's overlayfs
# at $T/ovl (with an upper and a work dir of its own): the same operations
# on it and on the union must give the same results.
ovl_twin() {
	mkdir -p "$T/o/up" "$T/o/wk" "$T/ovl"
	cp -a "$T/l1" "$T/l2" "$T/o/"
	mount -t overlay overlay -o "lowerdir=$T/o/l1:$T/o/l2,upperdir=$T/o/up,workdir=$T/o/wk,redirect_dir=on,index=on" \
		"$T/ovl" || skip "overlayfs with redirect_dir=on,index=on cannot be mounted here"
}

# both DESCRIPTION COMMANDS: runs the shell COMMANDS in the union and in
# the overlayfs twin; output and exit status must be the same.
both() {
	local got want
	got=$(cd "$M" && eval "$2" 2>&1; echo "status $?")
	want=$(cd "$T/ovl" && eval "$2" 2>&1; echo "status $?")
	expect "$1 (as overlayfs)" "$got" "$want"
}

# fallocate(2) in every mode and O_DIRECT reads and writes, on new files and
# on lower ones (copied up first), against overlayfs on the same layers.
case_fileops() {
	head -c 2M /dev/urandom >"$T/data"
	head -c 64K /dev/urandom >"$T/l1/big"; echo small >"$T/l1/small"; head -c 64K /dev/urandom >"$T/l2/ro"
	cp "$T/l1/big" "$T/l1/big2"
	ovl_twin
	start
	"$TOOL" save "$T/h" big="$M/big" small="$M/small" ro="$M/ro" || fail "save handles"
	local bi
	bi=$(ino "$M/big")
	both "fallocate of a new file" 'fallocate -l 1M new && stat -c %s new && md5sum new'
	both "KEEP_SIZE on a lower file" 'fallocate -n -o 0 -l 1M small && stat -c "%s %b" small && cat small'
	both "PUNCH_HOLE on a lower file" 'fallocate -p -o 4096 -l 8192 big && stat -c %s big && md5sum big'
	both "ZERO_RANGE" 'fallocate -z -o 0 -l 4096 big && stat -c %s big && md5sum big'
	both "ZERO_RANGE beyond the end, KEEP_SIZE" 'fallocate -z -n -o 60K -l 8K big && stat -c %s big && md5sum big'
	both "default mode extends" 'fallocate -o 64K -l 64K big && stat -c %s big && md5sum big'
	both "bad range" 'fallocate -o 0 -l 0 big; stat -c %s big'
	both "open(O_NOFOLLOW) of lower and upper files (cp -a)" 'mkdir cp && cp -a ro small new cp/ && md5sum cp/*'
	expect "lower layer untouched" "$(md5sum <"$T/l1/big")" "$(md5sum <"$T/o/l1/big")"
	# the kernel's FUSE module refuses these itself (fs/fuse/file.c), before
	# any daemon sees them; overlayfs passes them to ext4
	expect "COLLAPSE_RANGE and INSERT_RANGE: EOPNOTSUPP from the kernel's FUSE" \
		"$(cd "$M" && fallocate -c -o 0 -l 4096 big2 2>&1; fallocate -i -o 0 -l 4096 big2 2>&1; md5sum <big2)" \
		"fallocate: fallocate failed: Operation not supported
fallocate: fallocate failed: Operation not supported
$(md5sum <"$T/l1/big2")"

	local dd="dd status=none"
	both "O_DIRECT write of 4 KiB to a new file" "$dd if=$T/data of=y bs=4096 count=1 oflag=direct && md5sum y"
	both "O_DIRECT writes of 1 MiB, then O_DIRECT reads" \
		"$dd if=$T/data of=y2 bs=1M count=2 oflag=direct && $dd if=y2 bs=1M iflag=direct | md5sum"
	both "O_DIRECT write into a lower file" \
		"$dd if=$T/data of=big2 bs=4096 seek=2 count=3 oflag=direct conv=notrunc && md5sum big2"
	both "O_DIRECT read of a lower file" "$dd if=ro bs=8192 iflag=direct | md5sum"
	both "O_DIRECT read of 4 KiB at an offset" "$dd if=y2 bs=4096 skip=7 count=1 iflag=direct | md5sum"
	both "O_DIRECT|O_SYNC write" "$dd if=$T/data of=y3 bs=64K count=4 oflag=direct,sync && md5sum y3"
	expect "ro stayed on the lower layer" "$(ls "$T/up/ro" 2>&1)" "ls: cannot access '$T/up/ro': No such file or directory"
	# the union does direct I/O of any size and alignment, as FUSE does
	$dd if="$T/data" of="$M/odd" bs=100 count=3 oflag=direct
	expect "O_DIRECT write of 100 bytes" "$(cmp <(head -c 300 "$T/data") "$M/odd" && echo same)" same
	expect "same tree as overlayfs" "$(full_dump "$M" | grep -v ' ./odd ')" "$(full_dump "$T/ovl")"
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o1"
	expect "handle of a file copied up by fallocate reads its new data" "$(field big "$T/o1" | cut -d' ' -f1-2)" \
		"ok ino=$bi"
	expect "and the same object as its name" "$(ino "$M/big")" "$bi"
	stop
	start
	expect "same contents after a remount" "$(full_dump "$M" | grep -v ' ./odd ')" "$(full_dump "$T/ovl")"
	stop
}

# renameat2(RENAME_EXCHANGE) of files and directories, lower, upper and
# mixed, in one directory and across directories; RENAME_NOREPLACE and
# RENAME_WHITEOUT; against overlayfs, then every handle taken before.
case_exchange() {
	[ -x "${FHMAP_POSIX:-}" ] || { echo "FAIL: FHMAP_POSIX not given"; exit 1; }
	mkdir -p "$T/l1/d1/sub" "$T/l1/d2" "$T/l2/d1" "$T/l1/p/q"
	echo f1 >"$T/l1/f1"; echo f2 >"$T/l1/f2"; echo x >"$T/l1/d1/x"; echo lx >"$T/l2/d1/lx"; echo y >"$T/l1/d2/y"
	echo hl >"$T/l1/hl1"; ln "$T/l1/hl1" "$T/l1/p/hl2"; echo q >"$T/l1/p/q/qf"; echo s >"$T/l1/d1/sub/s"
	ovl_twin
	start
	echo u1 >"$M/u1"; echo u2 >"$M/u2"; mkdir "$M/nd"; echo nz >"$M/nd/z"
	echo u1 >"$T/ovl/u1"; echo u2 >"$T/ovl/u2"; mkdir "$T/ovl/nd"; echo nz >"$T/ovl/nd/z"
	"$TOOL" save "$T/h" f1="$M/f1" f2="$M/f2" u1="$M/u1" u2="$M/u2" d1="$M/d1" d2="$M/d2" nd="$M/nd" \
		x="$M/d1/x" lx="$M/d1/lx" y="$M/d2/y" z="$M/nd/z" hl1="$M/hl1" q="$M/p/q" qf="$M/p/q/qf" \
		sub="$M/d1/sub" || fail "save handles"
	local x="$FHMAP_POSIX rename2" want
	local if1 if2 iu1 iu2 id1 id2 ind ihl iq isub
	if1=$(ino "$M/f1"); if2=$(ino "$M/f2"); iu1=$(ino "$M/u1"); iu2=$(ino "$M/u2"); id1=$(ino "$M/d1")
	id2=$(ino "$M/d2"); ind=$(ino "$M/nd"); ihl=$(ino "$M/hl1"); iq=$(ino "$M/p/q"); isub=$(ino "$M/d1/sub")
	both "exchange two upper files" "$x u1 u2 exchange; cat u1 u2"
	both "exchange two lower files" "$x f1 f2 exchange; cat f1 f2"
	both "exchange a lower and an upper file" "$x f1 u1 exchange; cat f1 u1"
	both "exchange two lower directories (one merged across layers)" "$x d1 d2 exchange; ls d1 d2"
	both "exchange an upper and a lower directory" "$x nd d1 exchange; ls nd d1"
	both "exchange a file and a directory across directories" "$x u2 d2/sub exchange; ls d2 d2/sub; cat u2"
	both "exchange a lower hardlink and a lower directory across directories" \
		"$x hl1 p/q exchange; cat p/hl2 q/qf; ls -d hl1; cat p/q"
	both "exchange two names of one file" "$x hl1 hl1 exchange; $x q/qf q/qf exchange; cat q/qf"
	both "exchange with a missing target" "$x f1 nothere exchange; $x nothere f1 exchange"
	both "exchange a directory with its own child" "$x d2 d2/sub/s exchange"
	both "exchange into its own subtree" "$x nd/y nd exchange; $x d1 d2/sub exchange"
	both "RENAME_EXCHANGE|RENAME_NOREPLACE" "$x f1 f2 exchange,noreplace"
	both "RENAME_NOREPLACE over an existing name" "$x f1 f2 noreplace; $x f1 f3 noreplace; cat f3"
	both "RENAME_WHITEOUT" "$x f2 f4 whiteout; cat f2"
	expect "same tree as overlayfs" "$(tree_dump "$M")" "$(tree_dump "$T/ovl")"
	# where each object ended: f1 at f2, f2 at u1, u2 at f3, u1 at d1; d1 at
	# d2 (its sub at u2), d2 at nd, nd at d2/sub; hl1 at p/q (and p/hl2), q
	# at hl1
	check_exchanged() {
		local o="$T/o$1"
		"$TOOL" open "$M" "$T/h" >"$o"
		expect "$2: files exchanged twice keep their objects" \
			"$(field f1 "$o") $(field f2 "$o") $(field u1 "$o") $(field u2 "$o")" \
			"ok ino=$if1 data=f1 ok ino=$if2 data=f2 ok ino=$iu1 data=u1 ok ino=$iu2 data=u2"
		expect "$2: at their new names" "$(ino "$M/f2") $(ino "$M/u1") $(ino "$M/f3") $(ino "$M/d1")" \
			"$if1 $if2 $iu2 $iu1"
		expect "$2: directories reconnect to their new paths" \
			"$(field d1 "$o") $(field d2 "$o") $(field nd "$o") $(field sub "$o")" \
			"ok ino=$id1 dir=$M/d2 ok ino=$id2 dir=$M/nd ok ino=$ind dir=$M/d2/sub ok ino=$isub dir=$M/u2"
		expect "$2: files inside them" "$(field x "$o") $(field lx "$o") $(field z "$o") $(field y "$o")" \
			"ok ino=$(ino "$M/d2/x") data=x ok ino=$(ino "$M/d2/lx") data=lx ok ino=$(ino "$M/d2/sub/z") data=nz ok ino=$(ino "$M/nd/y") data=y"
		expect "$2: hardlink and directory exchanged across directories" \
			"$(field hl1 "$o") $(field q "$o") $(field qf "$o")" \
			"ok ino=$ihl data=hl ok ino=$iq dir=$M/hl1 ok ino=$(ino "$M/hl1/qf") data=q"
		expect "$2: both names of the hardlink" "$(ino "$M/p/q") $(ino "$M/p/hl2") $(stat -c %h "$M/p/q")" \
			"$ihl $ihl 2"
	}
	drop_caches
	check_exchanged 1 "after drop_caches"
	stop
	start
	drop_caches
	check_exchanged 2 "after a remount"
	want=$(tree_dump "$M")
	expect "same tree after a remount" "$want" "$(tree_dump "$T/ovl")"
	stop
	umount "$T/ovl"
	# overlayfs reads the layers the union wrote (upper as the top lower)
	mount -t overlay overlay -o "ro,redirect_dir=follow,lowerdir=$T/up:$T/l1:$T/l2" "$T/ovl" ||
		skip "overlayfs cannot mount the union's layers"
	expect "overlayfs reads the exchanged layers" "$(tree_dump "$T/ovl")" "$want"
	umount "$T/ovl"
}

case "$CASE" in
union | handles | restart | forged | recovery | overlayfs | random | options | crash | died | stress | fileops | exchange)
	"case_$CASE" ;;
*) echo "unknown case $CASE"; exit 2 ;;
esac
finish
