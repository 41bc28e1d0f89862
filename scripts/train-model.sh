#!/usr/bin/env bash
# Trains the encoder radraft ships (models/cxr-resnet-small) from the NIH ChestX-ray14 images
# in ../shared/data/nih, with the project's own trainer. Two stages: a short one at 128 px
# that learns coarse features fast, then the same weights continued at 224 px.
#   bash scripts/train-model.sh [OUT_DIR] [RADRAFT_BINARY]
# By default it reproduces the shipped cxr-resnet-small-1: 15% of the patients validate
# (they choose the epoch; scripts/build-seed.sh then fits the calibration and thresholds on
# them). With RADRAFT_FOLD set, the patients are split as for 5-fold cross-validation
# (radraft train --folds 5): a holdout of 15% of the patients, the same ones as the default
# validation split, is never trained on, and the rest fall into five folds.
# Environment:
#   RADRAFT_FOLD=I         train fold I's model (validation on fold I, training on the
#                          other four): what scripts/cross-validate.sh runs; -1 trains on
#                          all five folds with a fixed schedule (the next model's recipe)
#   RADRAFT_STAGES="1"     only stage 1 (the 128 px proxy that recipe searches use)
#   RADRAFT_TRAIN_WORK=DIR work folder (default build/train-work)
#   RADRAFT_TRAIN_ARGS=".." extra `radraft train` options for every stage (a recipe change
#                          being measured)
# Takes about an hour on 2 idle cores; interrupted, it resumes from its checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-models/cxr-resnet-small}
radraft=${2:-build/radraft}
data=${RADRAFT_SHARED_DATA:-../shared/data}/nih
work=${RADRAFT_TRAIN_WORK:-build/train-work}
fold=${RADRAFT_FOLD:-}
stages=${RADRAFT_STAGES:-1 2}
mkdir -p "$work"
[ -f "$data/labels.csv" ] || { echo "train-model: $data/labels.csv not found" >&2; exit 1; }

# shellcheck disable=SC2206 # the extra options are words on purpose
extra=(${RADRAFT_TRAIN_ARGS:-})
common=(--images "$data/images" --labels "$data/labels.csv" --arch resnet-small --seed 1
        --batch 32 --threads 2 --label-smoothing 0.05 --pos-weight-cap 10 "${extra[@]}")
if [ -n "$fold" ]; then
    common+=(--folds 5 --fold "$fold" --holdout-fraction 0.15)
    stage2=(--patience 0 --version cxr-resnet-small-2)
else
    common+=(--val-fraction 0.15)
    stage2=(--patience 6 --version cxr-resnet-small-1)
fi

# A stage that finished leaves a marker; an interrupted one resumes from its checkpoint.
resume() { [ -f "$1/checkpoint/state.json" ] && echo --resume "$1/checkpoint" || true; }

if [[ " $stages " == *" 1 "* ]] && [ ! -f "$work/stage1.done" ]; then
    "$radraft" train "${common[@]}" --out "$work/stage1" --input-size 128 --epochs 10 \
        --lr 0.001 --weight-decay 0.0001 --warmup 1 --patience 0 $(resume "$work/stage1")
    touch "$work/stage1.done"
fi
if [[ " $stages " == *" 2 "* ]] && [ ! -f "$work/stage2.done" ]; then
    "$radraft" train "${common[@]}" --out "$work/stage2" --init-model "$work/stage1" \
        --input-size 224 --epochs 24 --lr 0.0005 --weight-decay 0.0001 --warmup 1 \
        "${stage2[@]}" $(resume "$work/stage2")
    touch "$work/stage2.done"
fi

last=stage2
[[ " $stages " == *" 2 "* ]] || last=stage1
mkdir -p "$out"
cp "$work/$last/model.json" "$out/model.json"
cp "$work/$last/"*.safetensors "$out/"
echo "train-model: wrote $out"
