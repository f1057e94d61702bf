#!/bin/sh
# Builds target/pynotes.wasm with componentize-py against the frame's WIT, world
# arkham:shard/buffered-shard. `arkham shard build` runs this from the shard's folder.
#
# --stub-wasi: CPython's libc imports wasi:sockets, which the frame does not give shards, so the
# component would not install. The flag replaces every WASI import with a trapping stub; the app
# therefore uses no wall clock, print or os.urandom at run time (the database gives the time,
# the `logging` interface takes messages), and Python's hash seed is fixed at build time.
set -eu
tool="$(pwd)/../../.tools/python-venv/bin/componentize-py"
[ -x "$tool" ] || tool=componentize-py
mkdir -p target
# Its progress goes to stderr, so `arkham shard build` prints only the packaged path on stdout.
exec "$tool" -d ../../wit -w arkham:shard/buffered-shard componentize app --stub-wasi \
  -o target/pynotes.wasm >&2
