#!/bin/sh
# Replay (or, under --enable-fuzzing, fuzz from) the telnet corpus.
exec "${SHELL:-/bin/sh}" "${TOP_SRCDIR:-.}/tests/fuzz/run-corpus.sh" telnet
