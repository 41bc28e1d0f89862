#!/usr/bin/env bash
# Builds a model's seed archive (models/<model>/seed-archive.bin): the embeddings and finding
# labels of the model's TRAINING images (no images, no text), so that a fresh install can
# retrieve similar cases before a site has its own history. Then chooses the retrieval
# settings (k, encoder weight, temperature) on the validation patients, searched against
# the training images only, and writes them into model.json. Run it whenever the model changes.
#   bash scripts/build-seed.sh MODEL_DIR [RADRAFT_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: build-seed.sh MODEL_DIR [RADRAFT_BINARY]}
radraft=${2:-build/radraft}
data=${RADRAFT_SHARED_DATA:-../shared/data}/nih
work=build/seed-work
rm -rf "$work"
mkdir -p "$work"

# The training split: every labelled image whose patient is not a validation patient.
python3 - "$model/model.json" "$data/labels.csv" "$work/train.csv" <<'PY'
import csv, json, sys
model, labels, out = sys.argv[1:4]
val = set(str(p) for p in json.load(open(model))["training"]["split"]["val_patient_ids"])
with open(labels, newline="") as f, open(out, "w", newline="") as g:
    r = csv.reader(f); w = csv.writer(g)
    head = next(r); w.writerow(head); pid = head.index("patient_id")
    kept = [row for row in r if row[pid] not in val]
    w.writerows(kept)
print(f"build-seed: {len(kept)} training images ({len(val)} validation patients left out)")
PY

"$radraft" archive import --model "$model" --nih "$work/train.csv" --images "$data/images" \
    --data-dir "$work/data"
"$radraft" archive evaluate --model "$model" --nih "$data/labels.csv" --images "$data/images" \
    --data-dir "$work/data" --write | tee "$work/retrieval-evaluate.txt"
"$radraft" archive export-seed --model "$model" --data-dir "$work/data" -o "$model/seed-archive.bin"
echo "build-seed: wrote $model/seed-archive.bin"
