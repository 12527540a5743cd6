#!/bin/sh
# Replay (or, under --enable-fuzzing, fuzz from) the control corpus.
exec "${SHELL:-/bin/sh}" "${TOP_SRCDIR:-.}/tests/fuzz/run-corpus.sh" control
