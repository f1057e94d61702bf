#!/bin/sh
# Builds target/{{name}}.wasm from app.js with componentize-js (StarlingMonkey), against the WIT
# in wit/ (world arkham:shard/buffered-shard). `arkham shard build` runs this from the folder.
#
# componentize-js comes from PATH, or else from package.json, installed by npm on the first build.
# `--disable http fetch-event`: the shard serves through arkham's http-handler and needs no
# wasi:http; clocks, random and stdio stay, the frame provides them.
set -eu
if command -v componentize-js >/dev/null 2>&1; then
  tool=componentize-js
else
  if [ ! -x node_modules/.bin/componentize-js ]; then
    echo "build: installing componentize-js with npm" >&2
    npm install --no-audit --no-fund --loglevel=error >&2
  fi
  tool=node_modules/.bin/componentize-js
fi
mkdir -p target
# Progress goes to stderr: `arkham shard build` prints only the packaged path on stdout.
exec "$tool" app.js --wit wit --world-name buffered-shard --disable http fetch-event \
  -o target/{{name}}.wasm >&2
