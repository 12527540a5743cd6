#!/bin/sh
#
# Config golden tests.  For each NAME.conf in this directory (with extra
# arguments, such as -o overrides, from NAME.args if present):
#   NAME.ok   "vspcd -n -v -f NAME.conf" must exit 0 and print exactly
#             NAME.ok; and NAME.ok read back must print itself again;
#   NAME.err  "vspcd -n -f NAME.conf" must exit non-zero with the line in
#             NAME.err in its standard error.
# Also checks that deploy/vspcd.conf shows every key with its default.
# $VSPCD names the daemon (set by "make check").  Exit 77 (skip) if it has
# not been built.

srcdir=${TOP_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
dir=$srcdir/tests/config
VSPCD=${VSPCD:-${TOP_BUILDDIR:-.}/vspcd}

if [ ! -x "$VSPCD" ]; then
	echo "SKIP: $VSPCD not built"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vspcd-config.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT INT TERM

cd "$dir" || exit 99
fail=0
n=0
for conf in *.conf; do
	t=${conf%.conf}
	args=
	[ -f "$t.args" ] && args=$(cat "$t.args")
	n=$((n + 1))
	if [ -f "$t.ok" ]; then
		# shellcheck disable=SC2086
		"$VSPCD" -n -v -f "$conf" $args >"$tmp/out" 2>"$tmp/err"
		rc=$?
		if [ $rc -ne 0 ]; then
			echo "FAIL $t: exit status $rc"
			cat "$tmp/err"
			fail=1
			continue
		fi
		if ! diff -u "$t.ok" "$tmp/out"; then
			echo "FAIL $t: output differs from $t.ok"
			fail=1
			continue
		fi
		"$VSPCD" -n -v -f "$t.ok" >"$tmp/again" 2>"$tmp/err"
		if ! diff -u "$t.ok" "$tmp/again"; then
			echo "FAIL $t: $t.ok does not read back to itself"
			cat "$tmp/err"
			fail=1
			continue
		fi
		echo "PASS $t"
	elif [ -f "$t.err" ]; then
		# shellcheck disable=SC2086
		"$VSPCD" -n -f "$conf" $args >"$tmp/out" 2>"$tmp/err"
		rc=$?
		want=$(cat "$t.err")
		if [ $rc -eq 0 ]; then
			echo "FAIL $t: accepted, want \"$want\""
			fail=1
		elif ! grep -qF -- "$want" "$tmp/err"; then
			echo "FAIL $t: want \"$want\", got:"
			cat "$tmp/err"
			fail=1
		elif [ -s "$tmp/out" ]; then
			echo "FAIL $t: output on standard output"
			fail=1
		else
			echo "PASS $t"
		fi
	else
		echo "FAIL $t: no $t.ok or $t.err"
		fail=1
	fi
done
# The example in deploy/ lists every key with its default: with every key
# uncommented it must read as the defaults (minimal.ok).
example=$srcdir/deploy/vspcd.conf
if [ -f "$example" ]; then
	n=$((n + 1))
	sed 's/^#\([a-z_]* =\)/\1/' "$example" >"$tmp/example.conf"
	if "$VSPCD" -n -v -f "$tmp/example.conf" -o node.id=n1 \
	    >"$tmp/out" 2>"$tmp/err" && diff -u minimal.ok "$tmp/out"; then
		echo "PASS deploy/vspcd.conf"
	else
		echo "FAIL deploy/vspcd.conf: its defaults differ"
		cat "$tmp/err"
		fail=1
	fi
fi

echo "$n configurations"
exit $fail
