#!/bin/sh
# Builds target/jsnotes.wasm with componentize-js (StarlingMonkey) against the frame's WIT, world
# arkham:shard/buffered-shard. `arkham shard build` runs this from the shard's folder.
#
# componentize-js directly, not `jco componentize`: jco 1.35.0's WIT reader runs with no
# preopened directory and fails on every WIT path ("failed to get path metadata").
# `--disable http fetch-event`: the shard serves through arkham's http-handler, so it needs no
# wasi:http; clocks, random and stdio stay, the frame provides them.
set -eu
tool="$(pwd)/../../.tools/js/node_modules/.bin/componentize-js"
[ -x "$tool" ] || tool=componentize-js
mkdir -p target
# Its progress goes to stderr, so `arkham shard build` prints only the packaged path on stdout.
exec "$tool" app.js --wit ../../wit --world-name buffered-shard --disable http fetch-event \
  -o target/jsnotes.wasm >&2
