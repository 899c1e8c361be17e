#!/usr/bin/env bash
# The bash completion of fhmapctl against fhmapctl itself: every command of
# `fhmapctl --help` completes, and so does every option that
# `fhmapctl COMMAND --help` lists.
#   completion.sh FHMAPCTL COMPLETION-FILE
set -u
ctl=$1
source "$2"
fails=0 passes=0
# complete WORD...: the completions of the last word after "fhmapctl WORD..."
complete_words() {
	COMP_WORDS=(fhmapctl "$@")
	COMP_CWORD=$#
	COMPREPLY=()
	_fhmapctl
	echo " ${COMPREPLY[*]} "
}
commands=$("$ctl" --help | sed -n 's/^  \([a-z]*\)  *.*/\1/p')
[ -n "$commands" ] || { echo "FAIL: no commands in fhmapctl --help"; exit 1; }
have=$(complete_words "")
for c in $commands; do
	if [[ $have == *" $c "* ]]; then passes=$((passes + 1)); else echo "FAIL: command $c does not complete"; fails=$((fails + 1)); fi
	opts=$("$ctl" "$c" --help | sed -n '1s/^usage: //p' | grep -o -- '--[a-z-]*' | sort -u)
	have_opts=$(complete_words "$c" --)
	for o in $opts; do
		if [[ $have_opts == *" $o "* ]]; then passes=$((passes + 1)); else echo "FAIL: fhmapctl $c $o does not complete"; fails=$((fails + 1)); fi
	done
done
echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
