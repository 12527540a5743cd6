#!/bin/sh
#
# Copyright (c) 2026 The vspcd authors
#
# Permission to use, copy, modify, and distribute this software for any
# purpose with or without fee is hereby granted, provided that the above
# copyright notice and this permission notice appear in all copies.
#
# THE SOFTWARE IS PROVIDED "AS IS" AND THE AUTHOR DISCLAIMS ALL WARRANTIES
# WITH REGARD TO THIS SOFTWARE INCLUDING ALL IMPLIED WARRANTIES OF
# MERCHANTABILITY AND FITNESS. IN NO EVENT SHALL THE AUTHOR BE LIABLE FOR
# ANY SPECIAL, DIRECT, INDIRECT, OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
# WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN AN
# ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION, ARISING OUT OF
# OR IN CONNECTION WITH THE USE OR PERFORMANCE OF THIS SOFTWARE.
#
# run-corpus.sh NAME: run the fuzz target ./fuzz_NAME (in the build
# directory) over $TOP_SRCDIR/tests/fuzz/corpus/NAME.
#
# A libFuzzer build (FUZZING=yes, or a binary that answers -help=1 as
# libFuzzer) fuzzes for FUZZ_TIME seconds (default 20) starting from a
# copy of the corpus, so the source tree is never written.  Otherwise the
# plain driver runs every corpus file once.  Exit status: that of the
# target (0 when nothing crashed).

set -u

name=${1:?usage: run-corpus.sh NAME}
top=${TOP_SRCDIR:-.}
builddir=${TOP_BUILDDIR:-.}
corpus=$top/tests/fuzz/corpus/$name
bin=$builddir/fuzz_$name
[ -x "$bin" ] || bin=./fuzz_$name

if [ ! -x "$bin" ]; then
	echo "run-corpus.sh: $bin not found" >&2
	exit 99
fi
if [ ! -d "$corpus" ]; then
	echo "run-corpus.sh: no corpus $corpus" >&2
	exit 99
fi

libfuzzer=${FUZZING:-}
if [ -z "$libfuzzer" ]; then
	if "$bin" -help=1 2>&1 | grep -q libFuzzer; then
		libfuzzer=yes
	else
		libfuzzer=no
	fi
fi

if [ "$libfuzzer" = yes ]; then
	work=$(mktemp -d "${TMPDIR:-/tmp}/fuzz_$name.XXXXXX") || exit 99
	trap 'rm -rf "$work"' EXIT INT TERM
	mkdir "$work/corpus" "$work/artifacts"
	cp "$corpus"/* "$work/corpus/"
	# The node's own log goes nowhere (-close_fd_mask=2); libFuzzer's
	# report and the sanitizers' still reach stderr.
	"$bin" -max_total_time="${FUZZ_TIME:-20}" -timeout=10 \
	    -rss_limit_mb=2048 -print_final_stats=1 -close_fd_mask=2 \
	    -artifact_prefix="$work/artifacts/" "$work/corpus"
	rc=$?
	if [ $rc -ne 0 ]; then
		# Keep the crashing input where it can be found.
		mkdir -p "$builddir/fuzz-artifacts"
		cp "$work/artifacts"/* "$builddir/fuzz-artifacts/" \
		    2>/dev/null
		echo "run-corpus.sh: artifacts in" \
		    "$builddir/fuzz-artifacts" >&2
	fi
	exit $rc
fi

exec "$bin" "$corpus"
