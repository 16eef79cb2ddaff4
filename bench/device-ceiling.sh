#!/bin/bash
# On a many-core machine with no Node and no network: npm run bench's run against the ceiling (plain and TLS), from a
# build packed by bench/device-pack.sh (the ceiling needs msgpackr, which it packs). Servers on CPU 2, load
# generators on CPUs 4-7 (bench/common.ts). ROUNDS, DURATION (ms) and IDLE may be set; the tables go to $OUT too.
# Then the servers' own work in one process (bench/inproc.ts, INPROC_ROUNDS rounds, 3 by default; INPROC_ROUNDS=0 skips
# it): what the machine's CPU makes of each server without the system calls.
set -euo pipefail
source .devbench/unpack.sh
cd /tmp/app
node dist/bench/run.js --rounds "${ROUNDS:-3}" --duration "${DURATION:-3000}" --idle "${IDLE:-10000}" --no-scale \
  | tee "${OUT:-/tmp}/ceiling.md"
if [ "${INPROC_ROUNDS:-3}" != 0 ]; then
  node dist/bench/inproc.js --rounds "${INPROC_ROUNDS:-3}" | tee "${OUT:-/tmp}/inproc.md"
fi
