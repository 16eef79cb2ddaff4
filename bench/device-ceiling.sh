#!/bin/bash
# On a many-core machine with no Node and no network: npm run bench's run against the ceiling (plain and TLS), from a
# build packed by ../shared/tools/bench-pack.sh msgpackr (the ceiling needs msgpackr). Servers on CPU 2, load
# generators on CPUs 4-7 (bench/common.ts). ROUNDS, DURATION (ms) and IDLE may be set; the tables go to $OUT too.
set -euo pipefail
source .devbench/unpack.sh
cd /tmp/app
node dist/bench/run.js --rounds "${ROUNDS:-3}" --duration "${DURATION:-3000}" --idle "${IDLE:-10000}" --no-scale \
  | tee "${OUT:-/tmp}/ceiling.md"
