#!/bin/sh
# Replay (or, under --enable-fuzzing, fuzz from) the cmdline corpus.
exec "${SHELL:-/bin/sh}" "${TOP_SRCDIR:-.}/tests/fuzz/run-corpus.sh" cmdline
