#!/usr/bin/env bash
# Trains the encoder radraft ships (models/cxr-resnet-small) from the NIH ChestX-ray14 images
# in ../shared/data/nih, with the project's own trainer. Two stages: a short one at 128 px
# that learns coarse features fast, then the same weights continued at 224 px.
#   bash scripts/train-model.sh [OUT_DIR] [RADRAFT_BINARY]
# Takes about an hour on 2 idle cores; interrupted, it resumes from its checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-models/cxr-resnet-small}
radraft=${2:-build/radraft}
data=${RADRAFT_SHARED_DATA:-../shared/data}/nih
work=build/train-work
mkdir -p "$work"
[ -f "$data/labels.csv" ] || { echo "train-model: $data/labels.csv not found" >&2; exit 1; }

common=(--images "$data/images" --labels "$data/labels.csv" --arch resnet-small --seed 1
        --val-fraction 0.15 --batch 32 --threads 2 --label-smoothing 0.05 --pos-weight-cap 10)

# A stage that finished leaves a marker; an interrupted one resumes from its checkpoint.
resume() { [ -f "$1/checkpoint/state.json" ] && echo --resume "$1/checkpoint" || true; }

if [ ! -f "$work/stage1.done" ]; then
    "$radraft" train "${common[@]}" --out "$work/stage1" --input-size 128 --epochs 10 \
        --lr 0.001 --weight-decay 0.0001 --warmup 1 --patience 0 $(resume "$work/stage1")
    touch "$work/stage1.done"
fi
if [ ! -f "$work/stage2.done" ]; then
    "$radraft" train "${common[@]}" --out "$work/stage2" --init-model "$work/stage1" \
        --input-size 224 --epochs 24 --lr 0.0005 --weight-decay 0.0001 --warmup 1 --patience 6 \
        --version cxr-resnet-small-1 $(resume "$work/stage2")
    touch "$work/stage2.done"
fi

mkdir -p "$out"
cp "$work/stage2/model.json" "$out/model.json"
cp "$work/stage2/"*.safetensors "$out/"
echo "train-model: wrote $out"
