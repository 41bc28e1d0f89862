#!/usr/bin/env bash
# Sets up, builds and runs the demo on the embedded defaults: writes the synthetic sample
# studies and prints what radraft reads from each.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=demo-out
rm -rf "$out"
mkdir -p "$out"
echo "== radraft samples --out $out/samples"
./build/radraft samples --out "$out/samples"
echo "== radraft info (one JSON object per instance)"
find "$out/samples" -name '*.dcm' | sort | xargs ./build/radraft info
