#!/bin/bash
# On a many-core machine with no Node and no network: bench/scale.ts from a build packed by
# ../shared/tools/bench-pack.sh (there is no redis-server there: the Redis column is left out). ONLY=processes or
# ONLY=stores runs one half. The CPU topology is printed first: which CPUs are threads of one core decides what pinning
# the servers to 0-7 and the load generators to 8-15 means.
set -euo pipefail
source .devbench/unpack.sh
lscpu | grep -E 'Model name|Thread|Core|Socket|NUMA node' || true
for c in 0 1 7 8; do echo "cpu$c siblings: $(cat /sys/devices/system/cpu/cpu$c/topology/thread_siblings_list 2>/dev/null)"; done
cd /tmp/app
node dist/bench/scale.js --rounds "${ROUNDS:-3}" --duration "${DURATION:-3000}" -c "${CONNS:-32}" \
  ${ONLY:+--only "$ONLY"} ${PER_PROCESS:+--per-process "$PER_PROCESS"} --out "${OUT:-/tmp}/scale.md"
