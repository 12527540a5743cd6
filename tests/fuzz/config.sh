#!/bin/sh
# Replay (or, under --enable-fuzzing, fuzz from) the config corpus.
exec "${SHELL:-/bin/sh}" "${TOP_SRCDIR:-.}/tests/fuzz/run-corpus.sh" config
