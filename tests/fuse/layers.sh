#!/usr/bin/env bash
# fhmap-unionfs next to kernel overlayfs on the same lower layers: every
# case mounts both and requires the same answers (a difference fails).
#   layers.sh BINARY FH_TOOL CASE
# CASE: nlink     directory link counts across mkdir, rmdir and rename
#       redirect  three lower layers written by overlayfs: redirects,
#                 whiteouts and opaque directories of a middle layer, also
#                 on ancestors; symlinks and "../" redirects never followed
#       lowers    a union of lower layers only: read-only (EROFS), handles
#                 persistent, kept by a later mount with an upper layer
# Needs root, /dev/fuse and overlayfs; exits 77 (skipped) otherwise.
set -u

BIN=$1
TOOL=$2
CASE=$3

. "$(dirname "$0")/common.sh"

grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems || skip "kernel overlayfs is not available"
K=$T/ovl
mkdir -p "$K" "$T/kup" "$T/kwk"

# kmount OPTIONS: kernel overlayfs at $K
kmount() { mount -t overlay overlay -o "$1" "$K" || { fail "mount -t overlay -o $1"; finish; }; }

# Path, type and link count of everything, and what find could not read
# (the mount point's name left out): the view stat(2) gives of a tree.
nlinks() { (cd "$1" && find . -path ./.fhmap-work -prune -o -printf '%p %y %n\n' 2>&1 | sed "s|$1|MNT|g" | sort); }
# both DESCRIPTION COMMAND: runs COMMAND in the union and in overlayfs
# (from the mount's root), with the same output and exit status
both() { expect "$1" "$(run_in "$M" "$2")" "$(run_in "$K" "$2")"; }
run_in() { (cd "$1" && bash -c "$2" 2>&1; echo "rc=$?"); }
same_links() { expect "$1: same link counts as overlayfs" "$(nlinks "$M")" "$(nlinks "$K")"; }

case_nlink() {
	mkdir -p "$T/l1/solo/a/x" "$T/l1/solo/b" "$T/l1/both/s1" "$T/l2/both/s2" "$T/l2/deep/er/est"
	mkdir -p "$T/l1/op/o1" "$T/l2/op/o2" "$T/l1/gone/g1" "$T/l1/files"
	setfattr -n trusted.overlay.opaque -v y "$T/l1/op"
	echo f >"$T/l1/files/f"
	start
	kmount "lowerdir=$T/l1:$T/l2,upperdir=$T/kup,workdir=$T/kwk,redirect_dir=on,index=off"
	expect "a lower directory counts its subdirectories" "$(stat -c %h "$M/solo" "$M/deep/er" "$M/op")" \
		"$(printf '4\n3\n3')"
	same_links "as mounted"
	local op
	for op in "mkdir new new/a new/b new/b/c" "rmdir new/a" "mkdir solo/b/in" "mv new/b new2" \
		"mv solo/a new2/a" "mv deep/er new/er" "mkdir both/s3" "rmdir both/s1" "mv new2 new/n2" \
		"rm -r gone && mkdir gone && mkdir gone/g2" "mv op/o1 op/o3 && mkdir op/o4" "mv new/n2/c files/c"; do
		both "$op" "$op"
		same_links "after $op"
	done
	umount "$K"
	stop
	start
	kmount "lowerdir=$T/l1:$T/l2,upperdir=$T/kup,workdir=$T/kwk,redirect_dir=on,index=off"
	same_links "after a remount"
	umount "$K"
	stop
}

# l1 (top), l2 (middle), and l3 (bottom) as overlayfs leaves them
redirect_layers() {
	local l1=$T/l1 l2=$T/l2 l3=$T/l3
	mkdir -p "$l3/origin/dir" "$l3/x/y" "$l2/merged/sub" "$l3/origin/sub/deep" "$l2/abs" "$l1/merged/top"
	echo f >"$l3/origin/dir/f"; echo s >"$l3/origin/sub/deep/s"; echo m >"$l2/merged/sub/m"
	# renamed by overlayfs: a redirect, and a whiteout at the old name
	setfattr -n trusted.overlay.redirect -v origin "$l2/merged"  # relative, on a middle layer
	setfattr -n trusted.overlay.redirect -v /x "$l2/abs"         # absolute
	mkdir -p "$l2/nest/inner" "$l3/far/away"; echo a >"$l3/far/away/a"
	setfattr -n trusted.overlay.redirect -v /far/away "$l2/nest/inner" # below a plain directory
	mknod "$l2/origin" c 0 0; mknod "$l2/far" c 0 0
	# an opaque and a whited-out ancestor on the middle layer
	mkdir -p "$l2/op/sub" "$l3/op/sub" "$l1/wh/sub" "$l3/wh/sub"
	echo hidden >"$l3/op/sub/h"; echo hidden >"$l3/wh/sub/h"; echo o >"$l2/op/sub/o"
	setfattr -n trusted.overlay.opaque -v y "$l2/op"
	mknod "$l2/wh" c 0 0
	# a symlink of the middle layer where the top layer has a directory
	mkdir -p "$l1/sl/sub" "$l3/real/sub"; echo r >"$l3/real/sub/r"; ln -s ../l3/real "$l2/sl"
	# redirects out of the layers: refused, never followed
	mkdir -p "$l2/esc" "$l2/esc2" "$l2/esc3" "$l2/esc4"
	setfattr -n trusted.overlay.redirect -v .. "$l2/esc"
	setfattr -n trusted.overlay.redirect -v ../origin "$l2/esc2"
	setfattr -n trusted.overlay.redirect -v /../origin "$l2/esc3"
	setfattr -n trusted.overlay.redirect -v /x//y "$l2/esc4"
}

case_redirect() {
	mkdir -p "$T/l3"
	redirect_layers
	LAYERS="lowerdir=$T/l1:$T/l2:$T/l3"
	start
	kmount "ro,redirect_dir=follow,lowerdir=$T/l1:$T/l2:$T/l3"
	expect "a middle layer's relative redirect is followed" "$(ls "$M/merged" | tr '\n' ' ')" "dir sub top "
	both "the same tree, link counts and errors (lower layers only)" "find . -printf '%p %y %n\n' | sort"
	both "the same contents" "cat merged/dir/f merged/sub/deep/s merged/sub/m nest/inner/a; ls abs"
	both "an opaque ancestor on a middle layer hides the layers below" "ls -A op/sub"
	both "a whited-out ancestor on a middle layer hides the layers below" "ls -A wh/sub"
	both "a middle layer's symlink is not followed" "ls -A sl/sub"
	for d in esc esc2 esc3 esc4; do
		both "redirect '$(getfattr --only-values -n trusted.overlay.redirect "$T/l2/$d")' refused" "stat -c %F $d"
	done
	umount "$K"
	stop
	# with an upper layer, and an upper directory's own escaping redirect
	mkdir -p "$T/up/upesc" "$T/kup/upesc"
	setfattr -n trusted.overlay.redirect -v .. "$T/up/upesc"
	setfattr -n trusted.overlay.redirect -v .. "$T/kup/upesc"
	LAYERS="lowerdir=$T/l1:$T/l2:$T/l3,upperdir=$T/up"
	rm -rf "$DB"
	start
	kmount "redirect_dir=on,index=off,lowerdir=$T/l1:$T/l2:$T/l3,upperdir=$T/kup,workdir=$T/kwk"
	both "an upper directory's '..' redirect is refused" "stat -c %F upesc"
	local op
	for op in "echo g >merged/dir/g" "mv merged/sub merged/sub2" "mkdir nest/inner/new" "mv abs abs2" \
		"rm -r op/sub" "echo w >wh/sub/w"; do
		both "$op" "$op"
	done
	both "the same tree after changes below redirected directories" \
		"find . -path ./.fhmap-work -prune -o -printf '%p %y %n\n' | sort"
	umount "$K"
	stop
}

# names, types, modes, link counts, symlink targets and file contents
tree() {
	(cd "$1" && find . -printf '%y %m %n %p %l ' -exec sh -c '[ -f "$1" ] && [ ! -L "$1" ] && md5sum <"$1" || echo' _ {} \; | sort)
}

case_lowers() {
	mkdir -p "$T/l1/d/e" "$T/l2/d/f" "$T/l2/only"
	echo top >"$T/l1/file"; echo low >"$T/l2/file"; echo e >"$T/l1/d/e/x"; echo y >"$T/l2/only/y"
	echo h >"$T/l2/h1"; ln "$T/l2/h1" "$T/l2/only/h2"; ln -s file "$T/l1/sym"; mknod "$T/l1/gone" c 0 0
	echo gone >"$T/l2/gone"
	local lowers
	lowers=$(find "$T/l1" "$T/l2" -printf '%p %y %s %T@ %C@\n')
	LAYERS="lowerdir=$T/l1:$T/l2"
	start
	kmount "ro,lowerdir=$T/l1:$T/l2"
	expect "read-only union: the same tree as overlayfs" "$(tree "$M")" "$(tree "$K")"
	expect "mounted read-only" "$(awk -v m="$M" '$2 == m { print $4 }' /proc/self/mounts | cut -d, -f1)" ro
	expect "statfs of the topmost lower layer" "$(stat -f -c %b "$M")" "$(stat -f -c %b "$T/l1")"
	local op
	for op in "touch new" "mkdir d/new" "rm file" "rmdir d/f" "mv d d2" "chmod 600 file" "ln file l" \
		"echo x >>file" "truncate -s 0 only/y" "setfattr -n user.x -v 1 file" "ln -s a s" "mknod p p"; do
		both "$op: EROFS as in overlayfs" "$op"
	done
	umount "$K"
	expect "the lower layers are untouched" "$(find "$T/l1" "$T/l2" -printf '%p %y %s %T@ %C@\n')" "$lowers"
	"$TOOL" save "$T/h" file="$M/file" deep="$M/d/e/x" dir="$M/d/f" h1="$M/h1" h2="$M/only/h2" root="$M" ||
		fail "save handles"
	local before
	before=$(cd "$M" && find . -printf '%p %i\n' | sort)
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o1"
	expect "handles open their objects" "$(cut -d' ' -f2 "$T/o1" | sort -u)" ok
	expect "hardlinks are one object" "$(field h1 "$T/o1" | cut -d' ' -f2)" "$(field h2 "$T/o1" | cut -d' ' -f2)"
	stop
	[ -z "${FHMAP_CTL:-}" ] || { "$FHMAP_CTL" check "$DB" >"$T/check" 2>&1; expect "fhmapctl check" "$?" 0; }
	start
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o2"
	expect "handles survive a remount" "$(cat "$T/o2")" "$(cat "$T/o1")"
	stop
	# the same lower layers with an upper layer: the same objects
	LAYERS="lowerdir=$T/l1:$T/l2,upperdir=$T/up"
	start
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o3"
	expect "an upper layer added later keeps every handle" "$(cat "$T/o3")" "$(cat "$T/o1")"
	expect "and every st_ino" "$(cd "$M" && find . -path ./.fhmap-work -prune -o -printf '%p %i\n' | sort)" \
		"$before"
	echo changed >"$M/file"; echo more >"$M/d/e/x"
	drop_caches
	"$TOOL" open "$M" "$T/h" >"$T/o4"
	expect "copy-ups keep the objects of the read-only union" "$(field file "$T/o4") $(field deep "$T/o4")" \
		"$(field file "$T/o1" | sed 's/data=.*/data=changed/') $(field deep "$T/o1" | sed 's/data=.*/data=more/')"
	stop
	refused "the map has an upper layer now: no read-only union without it" 1 \
		"belongs to other layers.*upper none" "lowerdir=$T/l1:$T/l2,db=$DB"
	refused "workdir without upperdir" 2 "workdir= needs -o upperdir=" "lowerdir=$T/l1:$T/l2,db=$DB,workdir=$T/kwk"
}

case "$CASE" in
nlink | redirect | lowers) "case_$CASE" ;;
*) echo "unknown case $CASE"; exit 2 ;;
esac
finish
