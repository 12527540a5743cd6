#!/bin/sh
# Replay (or, under --enable-fuzzing, fuzz from) the peerlink corpus.
exec "${SHELL:-/bin/sh}" "${TOP_SRCDIR:-.}/tests/fuzz/run-corpus.sh" peerlink
