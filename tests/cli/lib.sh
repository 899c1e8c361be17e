# Shared by the fhmapctl CLI tests (sourced): temp dir, transcript, checks.
# Usage of a test: bash TEST.sh FHMAPCTL CLIHELPER
# A test appends every fhmapctl run (normalised stdout, stderr and exit code)
# to a transcript and compares it with expected/TEST.out at the end. To
# regenerate after a deliberate output change: FHMAP_CLI_UPDATE=1, then
# review the diff before committing it.
set -euo pipefail

CTL=$1
HELPER=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
name=$(basename "$0" .sh)

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: needs root (open_by_handle_at needs CAP_DAC_READ_SEARCH)"
	exit 77
fi
command -v jq >/dev/null || { echo "FAIL: jq is missing (scripts/packages.txt installs it)"; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/fhmapctl-$name.XXXXXX")
trap 'rm -rf "$T"' EXIT
transcript=$T/transcript
: > "$transcript"

# Makes output independent of the run: temp dir, UUIDs, times, pids,
# generations (random base), real handles and signed handles (inodes, MAC).
norm() {
	sed -E -e "s|$T|\$T|g" \
		-e 's/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/UUID/g' \
		-e 's/[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z/TIME/g' \
		-e 's/pid [0-9]+/pid PID/g' \
		-e 's/\b([0-9]+):-?[0-9]+:[0-9a-f]+\b/\1:TYPE:REALFH/g' \
		-e 's/\b[0-9a-f]{16,}\b/HEX/g' \
		-e 's/^(generation( base:|:) +)[0-9]+/\1GEN/' \
		-e 's/\(generation [0-9]+\)/(generation GEN)/' \
		-e 's/^(handle: +)[0-9a-f]+/\1HANDLE/' \
		-e 's/^(size on disk: +).*/\1SIZE/' \
		-e 's/[0-9]+ bytes in use/N bytes in use/' \
		-e 's/^([0-9]+ +)[0-9]+ +/\1GEN        /'
}

# run ARGS...: runs fhmapctl and records the run in the transcript.
run() {
	local rc=0
	echo "\$ fhmapctl $*" | norm >> "$transcript"
	"$CTL" "$@" > "$T/stdout" 2> "$T/stderr" || rc=$?
	norm < "$T/stdout" >> "$transcript"
	sed 's/^/stderr: /' "$T/stderr" | norm >> "$transcript"
	echo "[exit $rc]" >> "$transcript"
	return 0
}

# expect_rc RC ARGS...: runs fhmapctl quietly and fails unless it exits RC.
expect_rc() {
	local want=$1 rc=0
	shift
	"$CTL" "$@" > "$T/stdout" 2> "$T/stderr" || rc=$?
	if [ "$rc" != "$want" ]; then
		echo "FAIL: fhmapctl $* exited $rc, expected $want"
		cat "$T/stdout" "$T/stderr"
		exit 1
	fi
}

# json ARGS...: fhmapctl ARGS --json on stdout, whatever its exit code.
json() {
	"$CTL" "$@" --json || true
}

fail() {
	echo "FAIL: $*"
	exit 1
}

# Creates $T/lower1 (topmost lower), $T/lower2, $T/upper with real files.
make_layers() {
	mkdir -p "$T/lower1/d1/d2" "$T/lower2/d1" "$T/upper"
	echo a > "$T/lower1/a"
	echo b > "$T/lower1/d1/b"
	echo c > "$T/lower1/d1/d2/c"
	ln -s a "$T/lower1/sl"
	mkfifo "$T/lower1/fifo"
	echo e > "$T/lower2/e"
	echo x > "$T/lower2/d1/x"
}

# Creates the map $T/db over the layers and binds every object of lower1;
# skips the test where the filesystem of $T cannot give file handles.
make_map() {
	"$CTL" init "$T/db" --lower "$T/lower1" --lower "$T/lower2" --upper "$T/upper" > /dev/null
	if ! "$CTL" layers "$T/db" > "$T/stdout"; then
		echo "SKIP: the filesystem of $T cannot export file handles:"
		cat "$T/stdout"
		exit 77
	fi
	"$HELPER" populate "$T/db" 1 > "$T/objects"
}

# The object number the populate step gave PATH.
ino_of() {
	awk -v p="$1" '$2 == p { print $1 }' "$T/objects"
}

# Encodes every object into $T/handles ("INO HEX" lines).
encode_all() {
	: > "$T/handles"
	while read -r ino path; do
		echo "$ino $("$CTL" encode "$T/db" "$ino")" >> "$T/handles"
	done < "$T/objects"
}

# Every handle in $T/handles decodes to its own object.
decode_all_same() {
	local n=0
	while read -r ino hex; do
		got=$(json decode "$T/db" "$hex" | jq -r .ino)
		[ "$got" = "$ino" ] || fail "handle of object $ino decodes to '$got'"
		n=$((n + 1))
	done < "$T/handles"
	[ "$n" -gt 0 ] || fail "no handles to decode"
}

finish() {
	local expected=$here/expected/$name.out
	if [ "${FHMAP_CLI_UPDATE:-0}" = 1 ]; then
		cp "$transcript" "$expected"
		echo "updated $expected"
		return 0
	fi
	if ! diff -u "$expected" "$transcript"; then
		fail "output differs from $expected"
	fi
	echo "PASS: $name"
}
