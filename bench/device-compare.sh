#!/bin/bash
# On a many-core machine with no Node and no network (see ../shared/tools/bench-pack.sh): the build packed in
# .devbench/ against an older one packed beside it (.devbench/old-dist.tar.xz, a tar of that build's dist/), side by
# side on pinned CPUs (bench/compare-builds.mjs). ROUNDS and DURATION (ms) may be set; the table goes to $OUT too.
set -euo pipefail
source .devbench/unpack.sh
rm -rf /tmp/old && mkdir -p /tmp/old
cp -r /tmp/app/node_modules /tmp/app/package.json /tmp/old/
tar -xJf .devbench/old-dist.tar.xz -C /tmp/old
cd /tmp/app
node bench/compare-builds.mjs /tmp/old /tmp/app "${ROUNDS:-5}" "${DURATION:-3000}" "${OUT:-/tmp}"
