# Shell pieces shared by bench/run.sh and bench/writers.sh (sourced).

# Other busy processes during a run say how noisy it was.
bench_busy() {
	ps -eo pcpu=,comm= --sort=-pcpu |
		awk -v me="$1" '$1 > 20 && $2 != me { printf "%s(%s%%) ", $2, $1 }'
}

# "@machine" lines: the machine, the filesystem of work dir $2 and the source
# of tree $1 (a dirty lib/ or include/ is said).
bench_machine() {
	local top=$1 work=$2 dirty=""
	git -C "$top" status --porcelain lib include | grep -q . && dirty=", lib/ or include/ with uncommitted changes"
	echo "@machine kernel $(uname -r)"
	echo "@machine cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
	echo "@machine memory $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "@machine filesystem $(df -T "$work" | awk 'NR == 2 { print $2 " on " $1 }')"
	echo "@machine libraries LMDB $(dpkg-query -W -f '${Version}' liblmdb0 2>/dev/null || echo ?)," \
		"SQLite $(dpkg-query -W -f '${Version}' libsqlite3-0 2>/dev/null || echo ?), $(cc --version | head -1)"
	echo "@machine source commit $(git -C "$top" rev-parse --short HEAD)$dirty"
	echo "@machine load_before $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "@machine date $(date -u '+%Y-%m-%d %H:%M UTC')"
}

# Configures build dir $2 of tree $1 as Release if needed and builds targets
# $3...; refuses a build of another type (its figures would mislead).
bench_build() {
	local top=$1 build=$2
	shift 2
	[ -f "$build/CMakeCache.txt" ] || cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
	if [ "$(grep -s CMAKE_BUILD_TYPE: "$build/CMakeCache.txt" | cut -d= -f2)" != Release ]; then
		echo "$build is not a Release build; results would mislead" >&2
		exit 1
	fi
	cmake --build "$build" -j"$(nproc)" --target "$@" >&2
}

# Builds targets $4... of the library at commit $3 of tree $1 in
# $2/baseline-$3 (its source in src/, from git archive: nothing is added to
# the repository; its build in build/) and prints that directory.
bench_baseline() {
	local top=$1 base=$2/baseline-$3 commit=$3
	shift 3
	if [ ! -f "$base/build/CMakeCache.txt" ]; then
		rm -rf "$base"
		mkdir -p "$base/src"
		git -C "$top" archive "$commit" | tar -x -C "$base/src"
		cmake -S "$base/src" -B "$base/build" -DCMAKE_BUILD_TYPE=Release -DFHMAP_BUILD_TESTS=OFF \
			-DFHMAP_BUILD_TOOLS=OFF -DFHMAP_BUILD_EXAMPLES=OFF >&2
	fi
	cmake --build "$base/build" -j"$(nproc)" --target "$@" >&2
	echo "$base"
}
