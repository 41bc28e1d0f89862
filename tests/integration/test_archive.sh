#!/usr/bin/env bash
# radraft archive, end to end: import from NIH images + labels CSV and from DICOM studies
# with an SR (written by radraft report) or JSON Lines reports, list/stats, query (filters,
# votes, combined scores), seed export + default loading + a damaged seed, and model
# versions kept apart.
#   test_archive.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -euo pipefail
radraft="$1"
data="$2"
work="$3"
[ -f "$data/nih/labels.csv" ] || { echo "FATAL: shared data not found at $data" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$radraft" model init --arch resnet-small --seed 1 --out "$work/m1" >/dev/null
"$radraft" model init --arch resnet-small --seed 2 --out "$work/m2" >/dev/null
v1=resnet-small-random-seed1

# ---- NIH: 40 images ----
"$radraft" archive import --model "$work/m1" --data-dir "$work/d" \
    --nih "$data/nih/labels.csv" --limit 40 >"$work/import1.txt"
grep -q "imported 40 of 40 images" "$work/import1.txt" || fail "nih import: $(cat "$work/import1.txt")"
# Importing again adds nothing.
"$radraft" archive import --model "$work/m1" --data-dir "$work/d" \
    --nih "$data/nih/labels.csv" --limit 40 >"$work/import2.txt"
grep -q "imported 0 of 40 images (40 already" "$work/import2.txt" || fail "re-import: $(cat "$work/import2.txt")"
"$radraft" archive stats --data-dir "$work/d" >"$work/stats.txt"
grep -Eq "^$v1 +40 +0 +40 +0 +40 +0 +0 +0$" "$work/stats.txt" || fail "stats: $(cat "$work/stats.txt")"
"$radraft" archive list --data-dir "$work/d" >"$work/list.jsonl"

# The states are the CSV's labels: listed findings present, the others absent.
python3 - "$work/list.jsonl" "$data/nih/labels.csv" <<'PY'
import csv, json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 40, len(rows)
labels = {}
with open(sys.argv[2]) as f:
    for r in csv.DictReader(f):
        labels["nih:" + r["image"]] = (r["labels"].split("|"), r["view"])
        if len(labels) == 40:
            break
names = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
         "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
         "Pleural_Thickening", "Hernia", "No Finding"]
for r in rows:
    want, view = labels[r["key"]]
    assert r["view"] == "frontal" and view in ("PA", "AP"), r
    assert r["source"] == "import" and not r["has_text"], r
    for n in names:
        st = r["findings"].get(n)
        exp = "present" if n in want else "absent"
        assert st == exp, (r["key"], n, st, exp)
PY

# A hostile CSV row (a path outside the images folder) and a missing image are refused,
# counted, and the exit status says so; the good row is still imported.
{
    echo "image,patient_id,view,age,sex,labels"
    echo "../../../etc/passwd,9,PA,50,M,No Finding"
    echo "99999999_000.png,9,PA,50,M,Effusion"
    echo "00000001_000.png,1,PA,57,M,Cardiomegaly"
} >"$work/hostile.csv"
set +e
"$radraft" archive import --model "$work/m1" --data-dir "$work/h" --nih "$work/hostile.csv" \
    --images "$data/nih/images" >"$work/hostile.txt" 2>"$work/hostile.err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "hostile CSV: exit status $rc"
grep -q "imported 1 of 3 images (0 already in the archive, 2 failed)" "$work/hostile.txt" ||
    fail "hostile CSV: $(cat "$work/hostile.txt")"

# ---- query: neighbours, votes and combined scores ----
png="$data/nih/images/00000001_001.png"
"$radraft" archive query --model "$work/m1" --data-dir "$work/d" --set retrieval.k=7 \
    "$png" >"$work/query.json"
python3 - "$work/query.json" <<'PY'
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["archive_entries"] == 40, o["archive_entries"]
nb = o["neighbours"]
assert len(nb) == 7, len(nb)
# A PNG carries no study or patient: the image itself is its own best neighbour.
assert nb[0]["study_uid"] == "nih:00000001_001" and abs(nb[0]["similarity"] - 1) < 1e-4, nb[0]
sims = [n["similarity"] for n in nb]
assert sims == sorted(sims, reverse=True), sims
for k in ("votes", "encoder", "combined"):
    assert len(o[k]) == 14 and all(0 <= v <= 1 for v in o[k].values()), o[k]
# Default weight 0.5: combined is the mean of encoder and votes.
for f, c in o["combined"].items():
    assert abs(c - 0.5 * o["encoder"][f] - 0.5 * o["votes"][f]) < 1e-5, f
PY
# The configuration's weight is used (encoder_weight 1: the encoder alone).
"$radraft" archive query --model "$work/m1" --data-dir "$work/d" \
    --set retrieval.encoder_weight=1 "$png" >"$work/query_w1.json"
python3 -c '
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert all(abs(o["combined"][f] - o["encoder"][f]) < 1e-6 for f in o["combined"]), o
' "$work/query_w1.json"
# min_similarity above every similarity: no neighbours, votes carry nothing.
"$radraft" archive query --model "$work/m1" --data-dir "$work/d" \
    --set retrieval.min_similarity=1 --set retrieval.k=5 "$png" >"$work/query_min.json"
python3 -c '
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert len(o["neighbours"]) <= 1, o["neighbours"]
' "$work/query_min.json"

# ---- evaluate: AUROC of encoder / votes / combined; the chosen settings go to the model ----
cp -r "$work/m1" "$work/m1eval"
set +e
"$radraft" archive evaluate --model "$work/m1eval" --data-dir "$work/d" \
    --nih "$data/nih/labels.csv" >/dev/null 2>"$work/eval_noval.err"
rc=$?
set -e
[ "$rc" = 2 ] && grep -q "val_patient_ids" "$work/eval_noval.err" || fail "evaluate without a split"
"$radraft" archive evaluate --model "$work/m1eval" --data-dir "$work/d" --patients all \
    --limit 120 --nih "$data/nih/labels.csv" --write >"$work/eval.txt"
grep -q "^evaluated 120 images (all patients) against 40 archive entries" "$work/eval.txt" ||
    fail "evaluate: $(cat "$work/eval.txt")"
python3 - "$work/eval.txt" "$work/m1eval/model.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
rows = [l.split() for l in text.splitlines() if re.match(r"^[A-Z][a-z_A-Z]+ +\d+ +[0-9.n]", l)]
assert len(rows) == 14, rows
for r in rows:
    for v in r[2:5]:
        assert v == "nan" or 0 <= float(v) <= 1, r
m = re.search(r"combined ([0-9.]+) at k=(\d+) temperature=([0-9.e-]+) encoder_weight=([0-9.]+)", text)
enc = float(re.search(r"macro AUROC: encoder ([0-9.]+)", text).group(1))
assert m, text
r = json.load(open(sys.argv[2]))["retrieval"]
assert r["k"] == int(m.group(2)) and abs(r["encoder_weight"] - float(m.group(4))) < 1e-9, r
print(r["k"])
PY
# The encoder column, measured again independently: radraft predict --encoder-only and
# radraft evaluate on its CSV give the same AUROCs. (The combined column is not comparable
# that way: evaluate leaves out the patient's other images, which a PNG cannot name.)
head -121 "$data/nih/labels.csv" | tail -120 | cut -d, -f1 | sed "s|^|$data/nih/images/|" |
    xargs "$radraft" predict --model "$work/m1eval" --encoder-only --threads 1 \
        --out "$work/eval_pred.csv" 2>/dev/null
"$radraft" evaluate --labels "$data/nih/labels.csv" "$work/eval_pred.csv" --json >"$work/eval_pred.json"
python3 - "$work/eval.txt" "$work/eval_pred.json" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
table = {l.split()[0]: l.split()[2] for l in text.splitlines()
         if re.match(r"^[A-Z][a-z_A-Z]+ +\d+ +[0-9.n]", l)}
got = {f["finding"]: f["auroc"] for f in json.load(open(sys.argv[2]))["findings"]}
assert len(table) == 14, table
for name, a in table.items():
    if a == "nan":
        assert got[name] is None, (name, got[name])
    else:
        assert abs(got[name] - float(a)) < 6e-5, (name, a, got[name])
PY
kmodel=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["retrieval"]["k"])' "$work/m1eval/model.json")
"$radraft" archive query --model "$work/m1eval" --data-dir "$work/d" "$png" >"$work/q_model_k.json"
python3 -c '
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert len(o["neighbours"]) == min(int(sys.argv[2]), 40), (len(o["neighbours"]), sys.argv[2])
' "$work/q_model_k.json" "$kmodel"

# ---- seed: export, loaded by default into an empty archive, damaged seed refused ----
"$radraft" archive export-seed --model "$work/m1" --data-dir "$work/d" >"$work/export.txt"
grep -q "wrote 40 entries" "$work/export.txt" || fail "export-seed: $(cat "$work/export.txt")"
[ -s "$work/m1/seed-archive.bin" ] || fail "no seed file"
if grep -q "00000001_001" "$work/m1/seed-archive.bin"; then fail "the seed names an image"; fi
"$radraft" archive query --model "$work/m1" --data-dir "$work/fresh" "$png" >"$work/q_seed.json"
python3 -c '
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["archive_entries"] == 40, o
assert all(n["source"] == "seed" for n in o["neighbours"]), o["neighbours"]
' "$work/q_seed.json"
"$radraft" archive stats --data-dir "$work/fresh" | grep -Eq "^$v1 +40 +40 +0 +0 " ||
    fail "seed rows not stored"
# archive.load_seed=false: an empty archive stays empty.
"$radraft" archive query --model "$work/m1" --data-dir "$work/noseed" \
    --set archive.load_seed=false "$png" | grep -q '"archive_entries": 0' || fail "load_seed=false"
# A truncated seed: a clear error, exit status 1, never a crash.
cp -r "$work/m1" "$work/m1bad"
size=$(stat -c %s "$work/m1/seed-archive.bin")
head -c $((size - 100)) "$work/m1/seed-archive.bin" >"$work/m1bad/seed-archive.bin"
set +e
"$radraft" archive query --model "$work/m1bad" --data-dir "$work/bad" "$png" >/dev/null 2>"$work/bad.err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "damaged seed: exit status $rc"
grep -q "corrupt\|embeddings" "$work/bad.err" || fail "damaged seed message: $(cat "$work/bad.err")"
# Explicit import of a seed of another model is refused.
set +e
"$radraft" archive import --model "$work/m2" --data-dir "$work/d" --seed "$work/m1/seed-archive.bin" \
    >/dev/null 2>"$work/wrongmodel.err"
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "seed of model $v1" "$work/wrongmodel.err" || fail "seed of another model"

# ---- DICOM studies: reports as SR (radraft report) and as JSON Lines ----
"$radraft" samples --out "$work/samples" >/dev/null
s2=("$work"/samples/RDS0002/*.dcm)
s3=("$work"/samples/RDS0003/*.dcm)
"$radraft" report "${s2[@]}" --scores '{"Cardiomegaly": 0.9}' -o "$work/samples/RDS0002/sr.dcm" \
    >/dev/null 2>&1
"$radraft" report "${s3[@]}" --scores '{"Effusion": 0.9}' -o "$work/samples/RDS0003/sr.dcm" \
    >/dev/null 2>&1
acc4=$("$radraft" info "$work/samples/RDS0004/pa.dcm" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accession_number"])')
printf '{"accession": "%s", "findings": "There is a nodule in the right upper lobe.", "impression": "Right upper lobe nodule."}\n' \
    "$acc4" >"$work/reports.jsonl"
"$radraft" archive import --model "$work/m1" --data-dir "$work/dd" --dicom "$work/samples" \
    --reports "$work/reports.jsonl" >"$work/dicom.txt" 2>"$work/dicom.err"
grep -q "imported 6 of 8 images (2 without a report, 0 failed" "$work/dicom.txt" ||
    fail "dicom import: $(cat "$work/dicom.txt")"
"$radraft" archive list --data-dir "$work/dd" >"$work/dlist.jsonl"
python3 - "$work/dlist.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert len(rows) == 6, len(rows)
by_study = {}
for r in rows:
    by_study.setdefault(r["study_uid"], []).append(r)
assert len(by_study) == 3, by_study.keys()
present = sorted(sorted(k for r in rs for k, v in r["findings"].items() if v == "present")
                 for rs in by_study.values())
assert present == [["Cardiomegaly", "Cardiomegaly"], ["Effusion", "Effusion"], ["Nodule", "Nodule"]], present
for r in rows:
    assert r["has_text"] and r["study_date"] > 20000000, r
    assert r["view"] in ("frontal", "lateral"), r
assert sorted(r["view"] for r in rows) == ["frontal"] * 3 + ["lateral"] * 3
PY
# A DICOM query: never its own study or patient, only its view family.
"$radraft" archive query --model "$work/m1" --data-dir "$work/dd" \
    "$work/samples/RDS0002/pa.dcm" >"$work/dq.json"
study2=$("$radraft" info "$work/samples/RDS0002/pa.dcm" | python3 -c 'import json,sys; print(json.load(sys.stdin)["study_uid"])')
python3 - "$work/dq.json" "$study2" <<'PY'
import json, sys
o = json.loads(open(sys.argv[1]).read())
nb = o["neighbours"]
assert len(nb) == 2, nb  # the two other studies' frontal images
assert all(n["study_uid"] != sys.argv[2] and n["view"] == "frontal" for n in nb), nb
PY

# ---- model versions never mix ----
"$radraft" archive import --model "$work/m2" --data-dir "$work/d" \
    --nih "$data/nih/labels.csv" --limit 5 >/dev/null
"$radraft" archive stats --data-dir "$work/d" >"$work/stats2.txt"
grep -Eq "^$v1 +40 " "$work/stats2.txt" && grep -Eq "^resnet-small-random-seed2 +5 " "$work/stats2.txt" ||
    fail "two model versions: $(cat "$work/stats2.txt")"
"$radraft" archive query --model "$work/m2" --data-dir "$work/d" "$png" |
    grep -q '"archive_entries": 5' || fail "model 2 sees other entries"

echo "test_archive: all checks passed"
