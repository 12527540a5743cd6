#!/bin/sh
# Replay (or, under --enable-fuzzing, fuzz from) the compat corpus.
exec "${SHELL:-/bin/sh}" "${TOP_SRCDIR:-.}/tests/fuzz/run-corpus.sh" compat
