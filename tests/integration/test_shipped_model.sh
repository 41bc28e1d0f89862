#!/usr/bin/env bash
# The shipped model under test (models/cxr-resnet-small), on NIH images of its held-out
# patients read from ../shared (never copied):
# - golden encoder scores of three frozen images, to a tolerance that allows for BLAS
#   kernels and CPUs but not for changed weights or preprocessing;
# - its seed archive belongs to it (the same model version, all its entries loaded);
# - its calibration is applied as model.json says, monotone, and thresholds sit in (0, 1);
# - the mean AUROC on its held-out patients is not below the model card's figure minus a
#   small margin, and the drafts' micro-F1 measured end to end (scripts/evaluate-drafts.sh)
#   is not below the card's figure minus the margin either.
# When the model is retrained, the golden scores and the two figures change with it (the
# model card gives the new figures; the golden scores are printed on failure).
#   test_shipped_model.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -euo pipefail
radraft=$(readlink -f "$1")
data=$(readlink -f "$2")
mkdir -p "$3"
work=$(readlink -f "$3")
src=$(cd "$(dirname "$0")/../.." && pwd)
model=$src/models/cxr-resnet-small
[ -f "$data/nih/labels.csv" ] || { echo "FATAL: shared data not found at $data" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

# Figures of the model card (models/README.md) and the margin below them that fails.
card_auroc=0.761
card_micro_f1=0.431
margin=0.02

# ---- golden scores (encoder only with its test-time augmentation, before calibration) ----
imgs=(00000054_004.png 00000100_000.png 00000820_000.png)
"$radraft" predict --model "$model" --encoder-only --uncalibrated --threads 1 \
    --out "$work/golden.csv" "${imgs[@]/#/$data/nih/images/}" 2>/dev/null
python3 - "$work/golden.csv" <<'PY'
import csv, sys
golden = {
    "00000054_004.png": [0.481706, 0.431306, 0.267129, 0.256317, 0.369233, 0.431917, 0.491794,
                         0.320598, 0.288592, 0.169357, 0.501196, 0.571819, 0.355735, 0.513929],
    "00000100_000.png": [0.760090, 0.263843, 0.529453, 0.575257, 0.391278, 0.552049, 0.780921,
                         0.447340, 0.632087, 0.304980, 0.404094, 0.471357, 0.412116, 0.389523],
    "00000820_000.png": [0.433305, 0.145323, 0.243954, 0.518086, 0.356554, 0.568372, 0.698788,
                         0.407475, 0.524036, 0.393423, 0.317741, 0.368652, 0.395143, 0.193877],
}
rows = list(csv.reader(open(sys.argv[1])))
assert len(rows) == 4, rows
for r in rows[1:]:
    name = r[0].rsplit("/", 1)[1]
    got = [float(v) for v in r[1:]]
    worst = max(abs(a - b) for a, b in zip(got, golden[name]))
    assert worst < 2e-3, f"{name}: scores moved by {worst:.6f}: now {r[1:]}"
print("golden scores: within 2e-3")
PY

# ---- the seed archive is the model's ----
version=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['version'])" "$model/model.json")
"$radraft" predict --model "$model" --data-dir "$work/empty" --threads 1 --out /dev/null \
    "$data/nih/images/${imgs[0]}" 2>"$work/seed.err"
grep -q "from the seed archive $model/seed-archive.bin (2100 entries)" "$work/seed.err" ||
    fail "the seed archive does not load for model $version: $(cat "$work/seed.err")"
grep -q "calibrated by the model's calibration" "$work/seed.err" ||
    fail "the shipped model is not calibrated: $(cat "$work/seed.err")"

# ---- calibration and thresholds as model.json says ----
"$radraft" predict --model "$model" --data-dir "$work/empty" --threads 1 --uncalibrated \
    --out "$work/raw.csv" "${imgs[@]/#/$data/nih/images/}" 2>/dev/null
"$radraft" predict --model "$model" --data-dir "$work/empty" --threads 1 \
    --out "$work/cal.csv" "${imgs[@]/#/$data/nih/images/}" 2>/dev/null
python3 - "$model/model.json" "$work/raw.csv" "$work/cal.csv" <<'PY'
import csv, json, math, sys
m = json.load(open(sys.argv[1]))
cal = m["calibration"]["findings"]
raw, got = list(csv.DictReader(open(sys.argv[2]))), list(csv.DictReader(open(sys.argv[3])))
for r, g in zip(raw, got):
    for name, c in cal.items():
        assert c["a"] > 0, (name, c)
        s = min(max(float(r[name]), 1e-6), 1 - 1e-6)
        want = 1 / (1 + math.exp(-(c["a"] * math.log(s / (1 - s)) + c["b"])))
        assert abs(float(g[name]) - want) < 2e-6, (name, g[name], want)
for name, t in m["thresholds"].items():
    assert 0 < t["uncertain"] <= t["present"] < 1, (name, t)
print("calibration: applied as model.json says")
PY

# ---- the model card's figures on the held-out patients ----
python3 - "$model/model.json" "$data/nih/labels.csv" "$work/held.txt" <<'PY'
import csv, json, sys
split = json.load(open(sys.argv[1]))["training"]["split"]
held = set(split.get("holdout_patient_ids") or split["val_patient_ids"])
with open(sys.argv[3], "w") as f:
    for r in csv.DictReader(open(sys.argv[2])):
        if r["patient_id"] in held:
            f.write(r["image"] + "\n")
PY
sed "s|^|$data/nih/images/|" "$work/held.txt" | xargs "$radraft" predict --model "$model" \
    --data-dir "$work/empty" --out "$work/held.csv" 2>/dev/null
"$radraft" evaluate --labels "$data/nih/labels.csv" "$work/held.csv" --split-from "$model" \
    --json >"$work/held.json"
python3 - "$work/held.json" "$card_auroc" "$margin" <<'PY'
import json, sys
o, card, margin = json.load(open(sys.argv[1])), float(sys.argv[2]), float(sys.argv[3])
assert o["mean_auroc_findings"] == 14, o
assert o["mean_auroc"] >= card - margin, f"mean AUROC {o['mean_auroc']:.4f} < card {card} - {margin}"
print(f"held-out mean AUROC {o['mean_auroc']:.4f} (card {card})")
PY
(cd "$src" && RADRAFT_SHARED_DATA=$data RADRAFT_DRAFTS_WORK=$work/drafts \
    bash scripts/evaluate-drafts.sh "$model" "$radraft") \
    >"$work/drafts.txt" 2>&1 || fail "evaluate-drafts: $(tail -5 "$work/drafts.txt")"
python3 - "$work/drafts/summary.json" "$card_micro_f1" "$margin" <<'PY'
import json, sys
o, card, margin = json.load(open(sys.argv[1])), float(sys.argv[2]), float(sys.argv[3])
assert o["cross_fitted"] and o["drafts"] >= 300, o
assert o["micro_f1"] >= card - margin, f"drafts' micro-F1 {o['micro_f1']:.4f} < card {card} - {margin}"
print(f"drafts' micro-F1 {o['micro_f1']:.4f} (card {card}), {o['mentions_per_draft']:.2f} per draft")
PY
echo PASS
