#!/bin/sh
# Builds target/pynotes.wasm with componentize-py against the frame's WIT, world
# arkham:shard/buffered-shard. `arkham shard build` runs this from the shard's folder.
#
# No `--stub-wasi`: the frame links the WASI basics CPython imports, `wasi:sockets` included
# (every socket call is refused), so print, the clock and os.urandom work.
set -eu
tool="$(pwd)/../../.tools/python-venv/bin/componentize-py"
[ -x "$tool" ] || tool=componentize-py
mkdir -p target
# Its progress goes to stderr, so `arkham shard build` prints only the packaged path on stdout.
exec "$tool" -d ../../wit -w arkham:shard/buffered-shard componentize app \
  -o target/pynotes.wasm >&2
