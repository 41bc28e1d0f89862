#!/usr/bin/env bash
# radraft train and radraft predict, end to end on real NIH images at 64 px (a few seconds):
# the model is written with its recipe, split and metrics, embed and predict load it,
# predict writes one CSV row per image (files and folders, PNG and DICOM), resume works,
# and bad usage is refused.
#   test_train_cli.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -euo pipefail
radraft="$1"
data="$2"
work="$3"
[ -d "$data/nih/lowres64/images" ] || { echo "FATAL: shared data not found at $data" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$radraft" train --images "$data/nih/lowres64/images" --labels "$data/nih/lowres64/labels.csv" \
    --out "$work/m" --input-size 64 --max-images 160 --epochs 2 --batch 16 --threads 2 \
    --val-fraction 0.25 --seed 4 >"$work/train.out" 2>"$work/train.err"
grep -q "2 epochs run" "$work/train.out" || fail "train summary: $(cat "$work/train.out")"
grep -q "epoch 2/2" "$work/train.err" || fail "no progress per epoch"
[ -f "$work/m/checkpoint/optimizer.safetensors" ] || fail "no checkpoint"

python3 - "$work/m/model.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
t = m["training"]
assert t["recipe"]["arch"] == "resnet-small" and t["recipe"]["input_size"] == 64
assert t["recipe"]["seed"] == 4
sp = t["split"]
assert sp["train_images"] + sp["val_images"] == 160, sp
assert sp["val_images"] > 0 and len(sp["val_patient_ids"]) == sp["val_patients"] > 0
v = m["metrics"]["validation"]
assert len(v["auroc"]) == 14 and v["images"] == sp["val_images"]
assert m["input"]["height"] == 64
PY

# Resume from the checkpoint for a third epoch.
"$radraft" train --images "$data/nih/lowres64/images" --labels "$data/nih/lowres64/labels.csv" \
    --out "$work/m" --input-size 64 --max-images 160 --epochs 3 --batch 16 --threads 2 \
    --val-fraction 0.25 --seed 4 --resume "$work/m/checkpoint" >"$work/resume.out" 2>"$work/resume.err"
grep -q "resuming at epoch 3" "$work/resume.err" || fail "resume: $(cat "$work/resume.err")"
grep -q "1 epochs run" "$work/resume.out" || fail "resume summary: $(cat "$work/resume.out")"

# predict: two files, a folder (PNG) and a DICOM file.
mkdir -p "$work/imgs/sub"
cp "$data/nih/lowres64/images/00000001_000.png" "$work/imgs/a.png"
cp "$data/nih/lowres64/images/00000001_001.png" "$work/imgs/sub/b.png"
echo "not an image" >"$work/imgs/notes.txt"
dcm="$data/dicom/chest/CR-MONO1-10-chest.dcm"
"$radraft" predict --encoder-only --model "$work/m" --out "$work/p.csv" "$work/imgs" "$dcm"
python3 - "$work/p.csv" "$work/imgs" "$dcm" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
names = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
         "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
         "Pleural_Thickening", "Hernia"]
assert rows[0] == ["path"] + names, rows[0]
paths = [r[0] for r in rows[1:]]
assert paths == [sys.argv[2] + "/a.png", sys.argv[2] + "/sub/b.png", sys.argv[3]], paths
for r in rows[1:]:
    assert len(r) == 15
    assert all(0 <= float(v) <= 1 for v in r[1:])
assert rows[1][1:] != rows[2][1:], "two images got identical scores"
PY
# The same scores as embed prints.
"$radraft" embed --model "$work/m" "$work/imgs/a.png" >"$work/e.jsonl"
python3 - "$work/p.csv" "$work/e.jsonl" <<'PY'
import csv, json, sys
row = list(csv.reader(open(sys.argv[1])))[1]
e = json.loads(open(sys.argv[2]).readline())
for v, s in zip(row[1:], e["scores"].values()):
    assert abs(float(v) - s) < 1e-5, (v, s)
PY

# Errors: a missing file is reported and the exit status is 1; usage errors are 2.
set +e
"$radraft" predict --model "$work/m" "$work/nope.png" >/dev/null 2>"$work/err1"
[ $? -eq 1 ] || fail "predict on a missing file must exit 1"
"$radraft" train --images "$work" --out "$work/x" >/dev/null 2>"$work/err3"
[ $? -eq 2 ] || fail "train without --labels must exit 2"
"$radraft" train --images "$work" --labels "$work/p.csv" --out "$work/x" >/dev/null 2>"$work/err2"
[ $? -eq 1 ] || fail "train on a CSV without the NIH columns must exit 1"
set -e
grep -q "patient_id" "$work/err2" || fail "the CSV error names the columns: $(cat "$work/err2")"
grep -q "nope.png: No such file or directory" "$work/err1" || fail "the missing file is not named: $(cat "$work/err1")"
grep -q -- "--images, --labels and --out are required" "$work/err3" || fail "train without --labels: $(cat "$work/err3")"
echo PASS
