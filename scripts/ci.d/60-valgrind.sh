#!/usr/bin/env bash
# Valgrind stage (issue 7): every test of tests/unit and tests/reliability
# of "$FHMAP_BUILD_DIR", run as ctest would (command, working directory,
# environment) under memcheck. Any error or leak (definite, indirect,
# possible) fails the test; Check runs in one process (CK_FORK=no) so that
# memcheck sees the test code. Exit code 77 is a skip, as in ctest.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
build=${FHMAP_BUILD_DIR:?}
supp="$top/tests/reliability/valgrind.supp"

export CK_FORK=no CK_DEFAULT_TIMEOUT=600
export FHMAP_CRASH_SECONDS=${FHMAP_CRASH_SECONDS:-15} FHMAP_LOAD_SECONDS=${FHMAP_LOAD_SECONDS:-3}
export FHMAP_FORGERY_RANDOM=${FHMAP_FORGERY_RANDOM:-20000}

# One line per test: name, working directory, environment (;-separated),
# then the command, separated by US (0x1f: fields may be empty); only tests
# added under the two suites.
list=$(cd "$build" && ctest --show-only=json-v1 | jq -r '
  .backtraceGraph as $g
  | .tests[]
  | select(($g.files[$g.nodes[.backtrace].file]) | test("/tests/(unit|reliability)/"))
  | [ .name,
      ((.properties // []) | map(select(.name == "WORKING_DIRECTORY") | .value) | first // "."),
      ((.properties // []) | map(select(.name == "ENVIRONMENT") | .value | join(";")) | first // "")
    ] + .command
  | join("\u001f")')
[ -n "$list" ] || { echo "valgrind: no tests found in $build"; exit 1; }

failed=0 ran=0 skipped=0
while IFS=$'\x1f' read -r -a f; do
  name=${f[0]} wd=${f[1]} envs=${f[2]}
  [ "$wd" = "." ] && wd="$build"
  IFS=';' read -r -a envv <<<"$envs"
  start=$SECONDS
  set +e
  (cd "$wd" && env ${envv[@]+"${envv[@]}"} valgrind --quiet --tool=memcheck \
     --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible \
     --errors-for-leak-kinds=definite,indirect,possible --track-fds=no \
     --suppressions="$supp" "${f[@]:3}") >"$build/valgrind-$name.log" 2>&1
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    ran=$((ran + 1)); echo "valgrind: $name clean ($((SECONDS - start)) s)"
  elif [ $rc -eq 77 ]; then
    skipped=$((skipped + 1)); echo "valgrind: $name skipped"
  else
    failed=$((failed + 1)); echo "valgrind: $name FAILED (exit $rc)"; tail -n 80 "$build/valgrind-$name.log"
  fi
done <<<"$list"
echo "valgrind: $ran clean, $skipped skipped, $failed failed"
[ $failed -eq 0 ]
