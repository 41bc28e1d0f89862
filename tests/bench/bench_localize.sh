#!/usr/bin/env bash
# Localization of the shipped encoder's class activation maps on NIH's expert bounding
# boxes: the pointing game and side agreement per finding, against maps that know nothing
# (radraft localize-eval --help says what each column is). Prints the Markdown tables of
# models/README.md's "Localization" section: all boxes, then only the boxes of the model's
# validation patients (never trained on, though they chose the epoch), and the CAM's cost
# from `radraft model bench`. Deterministic for a given model (the random baselines are
# seeded); about half a minute on 2 cores.
#
#   tests/bench/bench_localize.sh [RADRAFT_BINARY] [MODEL] [BBOX_CSV]
#
# Defaults: build/radraft, models/cxr-resnet-small, ../shared/data/nih/bbox.csv (its
# images in the CSV's folder/images).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
radraft="${1:-$root/build/radraft}"
model="${2:-$root/models/cxr-resnet-small}"
bbox="${3:-$(cd "$root/.." && pwd)/shared/data/nih/bbox.csv}"

echo "### All boxes"
echo
"$radraft" localize-eval --bbox "$bbox" --model "$model"
echo
if grep -q '"val_patient_ids"' "$model/model.json" 2>/dev/null; then
    echo "### Boxes of the model's validation patients"
    echo
    "$radraft" localize-eval --bbox "$bbox" --model "$model" --split-from "$model"
    echo
fi
echo "### Cost of the maps"
echo
"$radraft" model bench "$model" --threads 1 --iters 50
