#!/usr/bin/env bash
# Patient-level 5-fold cross-validation of the training recipe (scripts/train-model.sh):
# trains one model per fold (validation on that fold, training on the other four, the
# holdout patients left out of all of them) and reports each finding's validation AUROC at
# the last epoch of the fixed schedule, as the mean and standard deviation over the folds.
# The last epoch, not the best one, so that the figure does not choose anything on the
# patients it is measured on.
#   bash scripts/cross-validate.sh NAME [RADRAFT_BINARY]
# NAME names the recipe variant; its work goes to build/cv/NAME and its summary to
# build/cv/NAME/summary.json. RADRAFT_STAGES and RADRAFT_TRAIN_ARGS are passed on to
# train-model.sh (e.g. RADRAFT_STAGES=1 for the 128 px proxy, RADRAFT_TRAIN_ARGS="--mixup
# 0.2" for a change being measured). Interrupted, it resumes: finished folds are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: cross-validate.sh NAME [RADRAFT_BINARY]}
radraft=${2:-build/radraft}
folds=5
base=build/cv/$name
mkdir -p "$base"
for ((i = 0; i < folds; i++)); do
    dir=$base/fold-$i
    if [ ! -f "$dir/model/model.json" ]; then
        echo "cross-validate: $name fold $i"
        RADRAFT_FOLD=$i RADRAFT_TRAIN_WORK=$dir bash scripts/train-model.sh "$dir/model" \
            "$radraft" >"$dir.log" 2>&1 || { tail -5 "$dir.log" >&2; exit 1; }
    fi
done

python3 - "$base" "$folds" "$name" "${RADRAFT_STAGES:-1 2}" "${RADRAFT_TRAIN_ARGS:-}" <<'PY'
import json, math, os, statistics, sys
base, folds, name, stages, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
last = "stage2" if "2" in stages.split() else "stage1"
per = []
for i in range(folds):
    # The checkpoint holds the last epoch's weights and metrics.
    m = json.load(open(os.path.join(base, f"fold-{i}", last, "checkpoint", "model.json")))
    v = m["metrics"]["validation"]
    per.append(v)
names = list(per[0]["auroc"].keys())
def ms(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return (statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)
summary = {"name": name, "stages": stages, "train_args": args, "folds": folds,
           "epoch": "last of the fixed schedule", "findings": {}}
print(f"cross-validate: {name} ({folds} folds, {last}, last epoch{', ' + args if args else ''})")
print(f"  {'finding':20s} {'AUROC mean':>10s} {'sd':>6s}  positives per fold")
for f in names:
    mean, sd = ms([p["auroc"].get(f) for p in per])
    pos = [p["positives"].get(f) for p in per]
    summary["findings"][f] = {"auroc_mean": mean, "auroc_sd": sd, "positives": pos}
    print(f"  {f:20s} {mean:10.4f} {sd:6.4f}  {pos}")
means = [p["mean_auroc"] for p in per]
mean, sd = ms(means)
summary["mean_auroc"] = {"mean": mean, "sd": sd, "per_fold": means}
print(f"  {'mean of 14':20s} {mean:10.4f} {sd:6.4f}  per fold {[round(x, 4) for x in means]}")
json.dump(summary, open(os.path.join(base, "summary.json"), "w"), indent=1)
PY
