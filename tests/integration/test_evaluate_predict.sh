#!/usr/bin/env bash
# radraft evaluate (AUROC of a predictions CSV against NIH-format labels: known values with
# ties, findings without positives, patient restriction from a file or a model's split,
# header errors, no matches) and radraft predict's score source (combined with the archive's
# votes when an archive exists, the encoder's own otherwise or with --encoder-only) and its
# self-exclusion (an image never votes for itself, through the store and a seed archive).
#   test_evaluate_predict.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -euo pipefail
radraft="$1"
data="$2"
work="$3"
[ -f "$data/nih/labels.csv" ] || { echo "FATAL: shared data not found at $data" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }
names="Atelectasis,Cardiomegaly,Effusion,Infiltration,Mass,Nodule,Pneumonia,Pneumothorax,Consolidation,Edema,Emphysema,Fibrosis,Pleural_Thickening,Hernia"

# ---- evaluate: a small hand-made pair with AUROCs worked out by hand ----
# Cardiomegaly: positives a 0.9, b 0.8; negatives c 0.8 (a tie with b), d 0.1, e 0.5:
# (3 + 2.5) / 6 = 11/12. Effusion: positives b 0.9, d 0.5; negatives a 0.2, c 0.5 (a tie
# with d), e 0.1: 11/12 as well. Atelectasis has no positive: n/a.
cat >"$work/labels.csv" <<EOF
image,patient_id,view,age,sex,labels
a.png,1,PA,50,M,Cardiomegaly
b.png,1,PA,51,M,Cardiomegaly|Effusion
c.png,2,PA,60,F,No Finding
d.png,3,AP,70,F,Effusion
e.png,4,PA,40,M,No Finding
EOF
row() { echo "$1,$2,$3,$4,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1"; }
{
    echo "path,$names"
    row /x/a.png 0.1 0.9 0.2
    row "\"/y,z/b.png\"" 0.2 0.8 0.9 # a quoted path with a comma
    row c.png 0.3 0.8 0.5
    row sub/d.png 0.4 0.1 0.5
    row e.png 0.5 0.5 0.1
    row unlabelled.png 0.1 0.1 0.1
} >"$work/pred.csv"
"$radraft" evaluate --labels "$work/labels.csv" "$work/pred.csv" >"$work/ev.txt"
grep -q "matched 5 of 6 predictions to labels (1 without labels)" "$work/ev.txt" ||
    fail "match summary: $(cat "$work/ev.txt")"
grep -Eq "^Cardiomegaly +2 +3 +0\.9167" "$work/ev.txt" || fail "Cardiomegaly: $(cat "$work/ev.txt")"
grep -Eq "^Effusion +2 +3 +0\.9167" "$work/ev.txt" || fail "Effusion: $(cat "$work/ev.txt")"
grep -Eq "^Atelectasis +0 +5 +n/a$" "$work/ev.txt" || fail "no positives: $(cat "$work/ev.txt")"
grep -q "findings with >= 5 positives: n/a (none)" "$work/ev.txt" || fail "mean with none"
grep -q "mean AUROC over the 2 findings with positives and negatives: 0.9167" "$work/ev.txt" ||
    fail "mean over all: $(cat "$work/ev.txt")"
"$radraft" evaluate --labels "$work/labels.csv" "$work/pred.csv" --json --min-positives 2 >"$work/ev.json"
python3 - "$work/ev.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
assert o["matched"] == 5 and o["without_labels"] == 1 and o["not_predicted"] == 0, o
f = {x["finding"]: x for x in o["findings"]}
assert len(f) == 14
assert abs(f["Cardiomegaly"]["auroc"] - 11 / 12) < 1e-12, f["Cardiomegaly"]
assert abs(f["Effusion"]["auroc"] - 11 / 12) < 1e-12, f["Effusion"]
assert f["Atelectasis"]["auroc"] is None and f["Atelectasis"]["positives"] == 0
assert f["Hernia"]["negatives"] == 5
assert o["mean_auroc_findings"] == 2 and abs(o["mean_auroc"] - 11 / 12) < 1e-12, o
PY

# Restricted to patients 1 and 3 (a, b, d): both findings are then ranked perfectly.
printf '# validation patients\n1\n\n3\n' >"$work/patients.txt"
"$radraft" evaluate --labels "$work/labels.csv" "$work/pred.csv" --patients "$work/patients.txt" \
    >"$work/evp.txt"
grep -q "restricted to the 2 patients of $work/patients.txt: 3 images evaluated, 2 left out" \
    "$work/evp.txt" || fail "patients: $(cat "$work/evp.txt")"
grep -Eq "^Cardiomegaly +2 +1 +1\.0000" "$work/evp.txt" || fail "restricted: $(cat "$work/evp.txt")"
# The same patients from a model's recorded split.
mkdir -p "$work/splitmodel"
echo '{"training": {"split": {"val_patient_ids": ["1", "3"]}}}' >"$work/splitmodel/model.json"
"$radraft" evaluate --labels "$work/labels.csv" "$work/pred.csv" --split-from "$work/splitmodel" \
    >"$work/evs.txt"
diff <(tail -n +3 "$work/evp.txt") <(tail -n +3 "$work/evs.txt") >/dev/null ||
    fail "--split-from differs from --patients: $(cat "$work/evs.txt")"

# A larger random pair with many ties, checked against a reference computed here by
# counting pairs (independent of rd_auroc).
python3 - "$work/big_labels.csv" "$work/big_pred.csv" "$work/big_ref.json" "$names" <<'PY'
import json, random, sys
names = sys.argv[4].split(",")
rng = random.Random(7)
rows, preds = [], []
for i in range(80):
    present = [n for j, n in enumerate(names) if rng.random() < (0.3 if j < 3 else 0.04 if j < 13 else 0)]
    rows.append(("img%03d.png" % i, str(i // 2), present))
    preds.append(("/data/img%03d.png" % i,
                  [round(rng.random() * 0.5 + (0.3 if n in present else 0), 1) for n in names]))
with open(sys.argv[1], "w") as f:
    f.write("image,patient_id,view,age,sex,labels\n")
    for name, pid, present in rows:
        f.write("%s,%s,PA,50,F,%s\n" % (name, pid, "|".join(present) or "No Finding"))
with open(sys.argv[2], "w") as f:
    f.write("path," + ",".join(names) + "\n")
    for path, s in preds:
        f.write(path + "," + ",".join("%.1f" % v for v in s) + "\n")
ref = {}
for j, n in enumerate(names):
    pos = [preds[i][1][j] for i in range(80) if n in rows[i][2]]
    neg = [preds[i][1][j] for i in range(80) if n not in rows[i][2]]
    if pos and neg:
        wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
        ref[n] = (len(pos), wins / (len(pos) * len(neg)))
    else:
        ref[n] = (len(pos), None)
json.dump(ref, open(sys.argv[3], "w"))
PY
"$radraft" evaluate --labels "$work/big_labels.csv" "$work/big_pred.csv" --json >"$work/big.json"
python3 - "$work/big.json" "$work/big_ref.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
ref = json.load(open(sys.argv[2]))
assert o["matched"] == 80, o["matched"]
main, all_ = [], []
for x in o["findings"]:
    npos, a = ref[x["finding"]]
    assert x["positives"] == npos and x["negatives"] == 80 - npos, (x, npos)
    if a is None:
        assert x["auroc"] is None, x
    else:
        assert abs(x["auroc"] - a) < 1e-9, (x, a)
        all_.append(a)
        if npos >= 5:
            main.append(a)
assert o["findings"][13]["auroc"] is None  # Hernia: no positives
assert len(main) >= 3 and o["mean_auroc_findings"] == len(main), (main, o)
assert abs(o["mean_auroc"] - sum(main) / len(main)) < 1e-9
assert o["mean_auroc_all_findings"] == len(all_)
assert abs(o["mean_auroc_all"] - sum(all_) / len(all_)) < 1e-9
PY

# ---- evaluate --bootstrap and --calibrate on a set with a known structure ----
# 600 images of 300 patients. For every finding the raw score s is overconfident: the true
# probability is sigmoid(0.6 logit(s) - 1.5). The fit must recover that map, lower the
# calibration error, and write a calibration and thresholds that predict then applies.
python3 - "$work/cal_labels.csv" "$work/cal_pred.csv" "$names" <<'PY'
import math, random, sys
names = sys.argv[3].split(",")
rng = random.Random(3)
with open(sys.argv[1], "w") as f, open(sys.argv[2], "w") as g:
    f.write("image,patient_id,view,age,sex,labels\n")
    g.write("path," + ",".join(names) + "\n")
    for i in range(600):
        s = [0.02 + 0.96 * rng.random() for _ in names]
        present = [n for n, v in zip(names, s)
                   if rng.random() < 1 / (1 + math.exp(-(0.6 * math.log(v / (1 - v)) - 1.5)))]
        f.write("c%03d.png,%d,PA,50,F,%s\n" % (i, i // 2, "|".join(present) or "No Finding"))
        g.write("c%03d.png," % i + ",".join("%.6f" % v for v in s) + "\n")
PY
"$radraft" evaluate --labels "$work/cal_labels.csv" "$work/cal_pred.csv" --bootstrap 200 \
    --json >"$work/boot.json"
python3 - "$work/boot.json" <<'PY'
import json, sys
o = json.load(open(sys.argv[1]))
assert o["bootstrap"]["replicates"] == 200 and o["bootstrap"]["over"] == "patients", o["bootstrap"]
assert o["bootstrap"]["mean_auroc_ci_lo"] < o["mean_auroc"] < o["bootstrap"]["mean_auroc_ci_hi"], o
for x in o["findings"]:
    assert x["auroc_ci_lo"] <= x["auroc"] <= x["auroc_ci_hi"], x
    assert x["auroc_ci_hi"] - x["auroc_ci_lo"] < 0.25, x
PY
mkdir -p "$work/calm"
"$radraft" model init --arch resnet-small --seed 2 --out "$work/calm" >/dev/null
"$radraft" evaluate --labels "$work/cal_labels.csv" "$work/cal_pred.csv" --calibrate "$work/calm" \
    --write >"$work/cal.txt"
grep -q "wrote the calibration and thresholds into $work/calm" "$work/cal.txt" ||
    fail "calibrate: $(cat "$work/cal.txt")"
python3 - "$work/calm/model.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
c, t = m["calibration"], m["thresholds"]
assert c["method"] == "platt" and c["images"] == 600 and c["patients"] == 300, c
assert len(c["findings"]) == 14 and len(t) == 14
for name, f in c["findings"].items():
    assert abs(f["a"] - 0.6) < 0.25 and abs(f["b"] + 1.5) < 0.4, (name, f)
    assert f["ece_calibrated"] < f["ece_uncalibrated"], (name, f)
    assert 0 < t[name]["uncertain"] <= t[name]["present"] < 1, (name, t[name])
    assert f["pooled_thresholds"] is True  # the default: one pair for all findings
assert len({(v["uncertain"], v["present"]) for v in t.values()}) == 1, t
assert "F1 is highest" in m["metrics"]["thresholds_rule"]
PY
# predict applies it (and says so); --uncalibrated gives the raw scores back.
"$radraft" predict --model "$work/calm" --data-dir "$work/none2" --threads 1 \
    --out "$work/calp.csv" "$data/nih/images/00000001_000.png" 2>"$work/calp.err"
grep -q "calibrated by the model's calibration" "$work/calp.err" || fail "$(cat "$work/calp.err")"
"$radraft" predict --model "$work/calm" --data-dir "$work/none2" --threads 1 --uncalibrated \
    --out "$work/rawp.csv" "$data/nih/images/00000001_000.png" 2>"$work/rawp.err"
grep -q "not calibrated (--uncalibrated)" "$work/rawp.err" || fail "$(cat "$work/rawp.err")"
python3 - "$work/calm/model.json" "$work/calp.csv" "$work/rawp.csv" <<'PY'
import csv, json, math, sys
c = json.load(open(sys.argv[1]))["calibration"]["findings"]
cal, raw = list(csv.DictReader(open(sys.argv[2]))), list(csv.DictReader(open(sys.argv[3])))
for name, f in c.items():
    s = min(max(float(raw[0][name]), 1e-6), 1 - 1e-6)
    want = 1 / (1 + math.exp(-(f["a"] * math.log(s / (1 - s)) + f["b"])))
    assert abs(float(cal[0][name]) - want) < 2e-6, (name, cal[0][name], want)
PY
# A finding with its own thresholds when it has the positives (--own-thresholds).
"$radraft" evaluate --labels "$work/cal_labels.csv" "$work/cal_pred.csv" --calibrate "$work/calm" \
    --own-thresholds 20 --json >"$work/own.json"
python3 -c "
import json, sys
o = json.load(open('$work/own.json'))['calibration']['findings']
assert any(not f['pooled_thresholds'] for f in o.values()), o
"
expect_fail_early() { # like expect_fail below, defined before it is
    local want="$1" pat="$2"
    shift 2
    set +e
    "$@" >"$work/out.txt" 2>"$work/err.txt"
    local rc=$?
    set -e
    [ "$rc" = "$want" ] || fail "$*: exit status $rc, expected $want ($(cat "$work/err.txt"))"
    grep -q -- "$pat" "$work/err.txt" || fail "$*: message '$(cat "$work/err.txt")' lacks '$pat'"
}
expect_fail_early 2 "--write needs --calibrate" \
    "$radraft" evaluate --labels "$work/cal_labels.csv" "$work/cal_pred.csv" --write
cut -d, -f1,3- "$work/cal_labels.csv" >"$work/cal_nopid.csv"
expect_fail_early 1 "no patient_id column: --bootstrap and --calibrate work by patient" \
    "$radraft" evaluate --labels "$work/cal_nopid.csv" "$work/cal_pred.csv" --bootstrap 100

# Errors: exit 1 with a message that says what is wrong; usage errors exit 2.
expect_fail() { # expected-status pattern command...
    local want="$1" pat="$2"
    shift 2
    set +e
    "$@" >"$work/out.txt" 2>"$work/err.txt"
    local rc=$?
    set -e
    [ "$rc" = "$want" ] || fail "$*: exit status $rc, expected $want ($(cat "$work/err.txt"))"
    grep -q -- "$pat" "$work/err.txt" || fail "$*: message '$(cat "$work/err.txt")' lacks '$pat'"
}
printf 'image,patient_id,view,age,sex,findings\na.png,1,PA,50,M,Mass\n' >"$work/badlab.csv"
expect_fail 1 "must name the columns image and labels" \
    "$radraft" evaluate --labels "$work/badlab.csv" "$work/pred.csv"
printf 'image,patient_id,view,age,sex,labels\na.png,1,PA,50,M,Masss\n' >"$work/badfind.csv"
expect_fail 1 "badfind.csv:2: unknown finding 'Masss'" \
    "$radraft" evaluate --labels "$work/badfind.csv" "$work/pred.csv"
printf 'image,patient_id,view,age,sex,labels\na.png,1,PA,50,M,Mass\na.png,2,PA,50,M,Mass\n' \
    >"$work/duplab.csv"
expect_fail 1 "a.png is listed twice" "$radraft" evaluate --labels "$work/duplab.csv" "$work/pred.csv"
sed '1s/^path,/file,/' "$work/pred.csv" >"$work/p_nopath.csv"
expect_fail 1 'must begin with "path"' \
    "$radraft" evaluate --labels "$work/labels.csv" "$work/p_nopath.csv"
sed '1s/,Hernia$/,Hernias/' "$work/pred.csv" >"$work/p_unknown.csv"
expect_fail 1 "header column 15 'Hernias' is not a finding" \
    "$radraft" evaluate --labels "$work/labels.csv" "$work/p_unknown.csv"
cut -d, -f1-14 "$work/big_pred.csv" >"$work/p_missing.csv"
expect_fail 1 "the header has no column Hernia" \
    "$radraft" evaluate --labels "$work/big_labels.csv" "$work/p_missing.csv"
sed '2s/,0\.9,/,high,/' "$work/pred.csv" >"$work/p_score.csv"
expect_fail 1 "p_score.csv:2: column 3: 'high' is not a score" \
    "$radraft" evaluate --labels "$work/labels.csv" "$work/p_score.csv"
{ echo "path,$names"; row /q/a.png 0.1 0.2 0.3; row /r/a.png 0.1 0.2 0.3; } >"$work/p_dup.csv"
expect_fail 1 "a second prediction for image a.png" \
    "$radraft" evaluate --labels "$work/labels.csv" "$work/p_dup.csv"
{ echo "path,$names"; row /q/x.png 0.1 0.2 0.3; } >"$work/p_none.csv"
expect_fail 1 "no prediction matches a labelled image" \
    "$radraft" evaluate --labels "$work/labels.csv" "$work/p_none.csv"
echo 99 >"$work/nopatients.txt"
expect_fail 1 "none of the 5 matched images belongs to the 1 patients" \
    "$radraft" evaluate --labels "$work/labels.csv" "$work/pred.csv" --patients "$work/nopatients.txt"
echo '{"training": {}}' >"$work/nosplit.json"
expect_fail 1 "no training.split.holdout_patient_ids or val_patient_ids" \
    "$radraft" evaluate --labels "$work/labels.csv" "$work/pred.csv" --split-from "$work/nosplit.json"
expect_fail 2 "--labels FILE is required" "$radraft" evaluate "$work/pred.csv"
expect_fail 2 "exclude each other" "$radraft" evaluate --labels "$work/labels.csv" "$work/pred.csv" \
    --patients "$work/patients.txt" --split-from "$work/splitmodel"

# ---- predict: which scores, and never an image's own vote ----
"$radraft" model init --arch resnet-small --seed 1 --out "$work/m" >/dev/null
"$radraft" archive import --model "$work/m" --data-dir "$work/d" --nih "$data/nih/labels.csv" \
    --limit 40 >"$work/import.txt"
grep -q "imported 40 of 40 images" "$work/import.txt" || fail "import: $(cat "$work/import.txt")"
img="$data/nih/images"
own="$img/00000001_000.png"                 # in the archive
other="$img/$(sed -n 100p "$data/nih/labels.csv" | cut -d, -f1)" # not in it
dcm="$data/dicom/chest/CR-MONO1-10-chest.dcm"
"$radraft" predict --model "$work/m" --data-dir "$work/d" --threads 1 --batch 2 \
    --out "$work/comb.csv" "$own" "$other" "$dcm" 2>"$work/comb.err"
grep -q "scores: combined: encoder x 0.50 + votes of up to 10 similar cases x 0.50, from the archive in $work/d (40 entries)" \
    "$work/comb.err" || fail "combined not announced: $(cat "$work/comb.err")"
"$radraft" predict --model "$work/m" --data-dir "$work/d" --threads 1 --encoder-only \
    --out "$work/enc.csv" "$own" "$other" "$dcm" 2>"$work/enc.err"
grep -q "scores: the encoder's own (--encoder-only)" "$work/enc.err" || fail "$(cat "$work/enc.err")"
# No archive at all: the encoder's own scores, said so, and no data directory created.
"$radraft" predict --model "$work/m" --data-dir "$work/none" --threads 1 \
    --out "$work/noarch.csv" "$own" "$other" "$dcm" 2>"$work/noarch.err"
grep -q "scores: the encoder's own (no archive: nothing for model resnet-small-random-seed1 in $work/none and no seed archive" \
    "$work/noarch.err" || fail "no archive: $(cat "$work/noarch.err")"
[ ! -e "$work/none" ] || fail "predict created a data directory"
cmp -s "$work/enc.csv" "$work/noarch.csv" || fail "encoder-only differs from no-archive scores"
"$radraft" embed --model "$work/m" "$other" >"$work/emb.jsonl"
"$radraft" archive query --model "$work/m" --data-dir "$work/d" "$other" >"$work/query.json" 2>/dev/null
python3 - "$work/comb.csv" "$work/enc.csv" "$work/emb.jsonl" "$work/query.json" <<'PY'
import csv, json, sys
comb = list(csv.reader(open(sys.argv[1])))
enc = list(csv.reader(open(sys.argv[2])))
assert comb[0] == enc[0] and len(comb) == len(enc) == 4, (comb, enc)
assert [r[0] for r in comb] == [r[0] for r in enc]
for c, e in zip(comb[1:], enc[1:]):
    d = max(abs(float(a) - float(b)) for a, b in zip(c[1:], e[1:]))
    assert d > 1e-3, ("combined equals the encoder's scores", c[0], d)
    assert all(0 <= float(v) <= 1 for v in c[1:])
# --encoder-only gives what embed gives.
emb = json.loads(open(sys.argv[3]).readline())
for v, s in zip(enc[2][1:], emb["scores"].values()):
    assert abs(float(v) - s) < 1e-5, (v, s)
# For an image that is not in the archive, the combined scores are the archive query's.
q = json.loads(open(sys.argv[4]).read())
want = q["combined"]
names = comb[0][1:]
for n, v in zip(names, comb[2][1:]):
    assert abs(float(v) - want[n]) < 2e-6, (n, v, want[n])
PY

# Self-exclusion: the archived image's own entry is never its neighbour, while a copy of it
# under another name finds it first (with similarity 1), through the store and through a
# seed archive (which keeps the study only as a SHA-256).
cp "$own" "$work/renamed.png"
check_self() { # label data-dir own-study-as-archived
    "$radraft" predict --model "$work/m" --data-dir "$2" --threads 1 --log-level debug \
        "$own" >/dev/null 2>"$work/self_$1.err"
    "$radraft" predict --model "$work/m" --data-dir "$2" --threads 1 --log-level debug \
        "$work/renamed.png" >/dev/null 2>"$work/copy_$1.err"
    [ "$(grep -c "00000001_000.png: neighbour" "$work/self_$1.err")" = 10 ] ||
        fail "$1: expected 10 neighbours: $(cat "$work/self_$1.err")"
    ! grep -q "neighbour .* study $3\$" "$work/self_$1.err" ||
        fail "$1: the image voted for itself: $(cat "$work/self_$1.err")"
    grep -Eq "renamed.png: neighbour 1: id [0-9]+ similarity 1\.0000(00|01) study $3\$" \
        "$work/copy_$1.err" || fail "$1: the copy does not find the original: $(cat "$work/copy_$1.err")"
}
check_self store "$work/d" "nih:00000001_000"
"$radraft" archive export-seed --model "$work/m" --data-dir "$work/d" >/dev/null
hash=$(printf '%s' "nih:00000001_000" | sha256sum | cut -d' ' -f1)
check_self seed "$work/none" "$hash"
grep -q "from the seed archive $work/m/seed-archive.bin (40 entries)" "$work/self_seed.err" ||
    fail "seed not announced: $(cat "$work/self_seed.err")"
[ ! -e "$work/none" ] || fail "predict created a data directory"
# archive.load_seed=false: no archive again.
"$radraft" predict --model "$work/m" --data-dir "$work/none" --set archive.load_seed=false \
    "$own" >/dev/null 2>"$work/noseed.err"
grep -q "archive.load_seed is off" "$work/noseed.err" || fail "load_seed: $(cat "$work/noseed.err")"
echo PASS
