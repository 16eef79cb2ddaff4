#!/bin/bash
# Packs this checkout's build for a lent many-core machine (no Node, no network there) into .devbench/, with msgpackr,
# which the ceiling needs: ../shared/tools/bench-pack.sh packs the production dependencies, and msgpackr, a dev
# dependency, asked of it by name is left out all the same (npm omits it as dev); it is copied in here from this
# checkout's node_modules (with its native extractor, where installed). Run after npm run build; then, there:
#   source .devbench/unpack.sh && bash bench/device-ceiling.sh      (or device-compare.sh, device-scale.sh)
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
[ -d node_modules/msgpackr ] || { echo "device-pack: npm ci first (node_modules/msgpackr is missing)" >&2; exit 2; }
../shared/tools/bench-pack.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tar -xJf .devbench/app.tar.xz -C "$tmp"
for m in msgpackr msgpackr-extract @msgpackr-extract; do
  [ -e "node_modules/$m" ] && cp -r "node_modules/$m" "$tmp/app/node_modules/"
done
tar -C "$tmp" -cJf .devbench/app.tar.xz app
du -sh .devbench/*
