#!/usr/bin/env bash
# Builds a model's seed archive (models/<model>/seed-archive.bin): the embeddings and finding
# labels of the model's TRAINING images (no images, no text), so that a fresh install can
# retrieve similar cases before a site has its own history. Then chooses the retrieval
# settings (k, encoder weight, temperature) on the held-out patients (the holdout of a
# --folds model, else the validation split), searched against the training images only,
# fits the calibration and thresholds on them, and writes all of it into model.json. Run it
# whenever the model changes.
#   bash scripts/build-seed.sh MODEL_DIR [RADRAFT_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: build-seed.sh MODEL_DIR [RADRAFT_BINARY]}
radraft=${2:-build/radraft}
data=${RADRAFT_SHARED_DATA:-../shared/data}/nih
work=build/seed-work
rm -rf "$work"
mkdir -p "$work"

# The training split: every labelled image whose patient is neither a validation nor a
# holdout patient.
python3 - "$model/model.json" "$data/labels.csv" "$work/train.csv" <<'PY'
import csv, json, sys
model, labels, out = sys.argv[1:4]
split = json.load(open(model))["training"]["split"]
val = set(str(p) for p in split["val_patient_ids"] + split.get("holdout_patient_ids", []))
with open(labels, newline="") as f, open(out, "w", newline="") as g:
    r = csv.reader(f); w = csv.writer(g)
    head = next(r); w.writerow(head); pid = head.index("patient_id")
    kept = [row for row in r if row[pid] not in val]
    w.writerows(kept)
print(f"build-seed: {len(kept)} training images ({len(val)} held-out patients left out)")
PY

"$radraft" archive import --model "$model" --nih "$work/train.csv" --images "$data/images" \
    --data-dir "$work/data"
"$radraft" archive evaluate --model "$model" --nih "$data/labels.csv" --images "$data/images" \
    --data-dir "$work/data" --write | tee "$work/retrieval-evaluate.txt"
# The calibration and the thresholds for the draft's wording, fitted on the held-out
# patients' combined scores before calibration: Platt scaling per finding, then, over every
# finding's calibrated probabilities pooled, the "uncertain" threshold (above it a draft
# mentions the finding) where F1 is highest and the "present" one where F0.5 is highest.
# Pooled thresholds did better end to end than per-finding ones (scripts/evaluate-drafts.sh;
# the models README). The figures printed are cross-fitted over two halves of those
# patients (radraft evaluate --calibrate).
python3 - "$model/model.json" "$data/labels.csv" "$work/held.txt" <<'PY'
import csv, json, sys
model, labels, out = sys.argv[1:4]
split = json.load(open(model))["training"]["split"]
held = set(str(p) for p in (split.get("holdout_patient_ids") or split["val_patient_ids"]))
with open(labels, newline="") as f, open(out, "w") as g:
    for row in csv.DictReader(f):
        if row["patient_id"] in held:
            g.write(row["image"] + "\n")
PY
sed "s|^|$data/images/|" "$work/held.txt" | xargs "$radraft" predict --model "$model" \
    --data-dir "$work/data" --uncalibrated --out "$work/held-scores.csv"
"$radraft" evaluate --labels "$data/labels.csv" "$work/held-scores.csv" --split-from "$model" \
    --bootstrap 1000 --calibrate "$model" --write | tee "$work/calibration.txt"

"$radraft" archive export-seed --model "$model" --data-dir "$work/data" -o "$model/seed-archive.bin"
echo "build-seed: wrote $model/seed-archive.bin"
