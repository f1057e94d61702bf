#!/bin/sh
# Builds target/{{name}}.wasm from app.py with componentize-py, against the WIT in wit/ (world
# arkham:shard/buffered-shard). `arkham shard build` runs this from the shard's folder.
#
# componentize-py comes from PATH, or else is installed into .venv here on the first build.
# CPython's libc imports wasi:sockets: the frame links it with every call refused (no network),
# and the other WASI basics as they are, so print, the clock and os.urandom work.
set -eu
if command -v componentize-py >/dev/null 2>&1; then
  tool=componentize-py
else
  if [ ! -x .venv/bin/componentize-py ]; then
    echo "build: installing componentize-py 0.25.1 into .venv" >&2
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check componentize-py==0.25.1 >&2
  fi
  tool=.venv/bin/componentize-py
fi
mkdir -p target
# Progress goes to stderr: `arkham shard build` prints only the packaged path on stdout.
exec "$tool" -d wit -w arkham:shard/buffered-shard componentize app \
  -o target/{{name}}.wasm >&2
