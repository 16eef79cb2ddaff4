#!/bin/bash
# On a many-core machine with no Node and no network: bench/scale.ts from a build packed by
# ../shared/tools/bench-pack.sh (there is no redis-server there: the Redis column is left out).
set -euo pipefail
source .devbench/unpack.sh
cd /tmp/app
node dist/bench/scale.js --rounds "${ROUNDS:-3}" --duration "${DURATION:-3000}" -c "${CONNS:-32}" --out "${OUT:-/tmp}/scale.md"
