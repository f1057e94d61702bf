#!/bin/sh
# Builds target/{{name}}.wasm from app.py with componentize-py, against the WIT in wit/ (world
# arkham:shard/buffered-shard). `arkham shard build` runs this from the shard's folder.
#
# componentize-py comes from PATH, or else is installed into .venv here on the first build.
# --stub-wasi: CPython's libc imports wasi:sockets, which the frame does not give shards; the flag
# replaces every WASI import with a trapping stub, so the app must not read the wall clock,
# print, or use os.urandom at run time (ask the database for the time; log with `logging`).
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
exec "$tool" -d wit -w arkham:shard/buffered-shard componentize app --stub-wasi \
  -o target/{{name}}.wasm >&2
