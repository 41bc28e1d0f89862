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
# Thresholds for the draft's wording, chosen on the validation patients' combined scores:
# "present" where the specificity reaches 0.95, "uncertain" where it reaches 0.85. The
# training images over-represent findings (see ../shared/data/nih/README.md), so a
# threshold from prevalence or from 0.5 would call far too much.
python3 - "$model/model.json" "$data/labels.csv" "$work/val.txt" <<'PY'
import csv, json, sys
model, labels, out = sys.argv[1:4]
val = set(str(p) for p in json.load(open(model))["training"]["split"]["val_patient_ids"])
with open(labels, newline="") as f, open(out, "w") as g:
    for row in csv.DictReader(f):
        if row["patient_id"] in val:
            g.write(row["image"] + "\n")
PY
sed "s|^|$data/images/|" "$work/val.txt" | xargs "$radraft" predict --model "$model" \
    --data-dir "$work/data" --out "$work/val-scores.csv"
python3 - "$model/model.json" "$data/labels.csv" "$work/val-scores.csv" <<'PY'
import csv, json, os, sys
model_path, labels, scores = sys.argv[1:4]
truth = {}
with open(labels, newline="") as f:
    for row in csv.DictReader(f):
        truth[row["image"]] = set(row["labels"].split("|"))
with open(scores, newline="") as f:
    r = csv.reader(f); head = next(r); rows = [(os.path.basename(x[0]), [float(v) for v in x[1:]]) for x in r]
def at_specificity(neg, spec):
    neg = sorted(neg)
    return neg[min(len(neg) - 1, int(spec * len(neg)))] if neg else 0.5
th = {}
print("build-seed: thresholds (present at specificity 0.95, uncertain at 0.85)")
for j, name in enumerate(head[1:]):
    pos = [s[j] for img, s in rows if name in truth[img]]
    neg = [s[j] for img, s in rows if name not in truth[img]]
    p, u = at_specificity(neg, 0.95), at_specificity(neg, 0.85)
    p = max(p, u)
    sens = sum(x > p for x in pos) / len(pos) if pos else float("nan")
    th[name] = {"present": round(p, 4), "uncertain": round(u, 4)}
    print(f"  {name:20s} present {p:.3f} (sensitivity {sens:.2f}, {len(pos)} positives)  uncertain {u:.3f}")
m = json.load(open(model_path))
m["thresholds"] = th
m.setdefault("metrics", {})["thresholds_rule"] = ("present: specificity 0.95, uncertain: specificity 0.85, "
                                                "on the validation patients' combined scores")
with open(model_path, "w") as f:
    json.dump(m, f, indent=1)
    f.write("\n")
PY

"$radraft" archive export-seed --model "$model" --data-dir "$work/data" -o "$model/seed-archive.bin"
echo "build-seed: wrote $model/seed-archive.bin"
