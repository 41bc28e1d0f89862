#!/usr/bin/env bash
# radraft localize-eval: the pointing game and side agreement on bounding boxes, checked
# against a recomputation from the per-box output (--boxes) of what each column means: the
# peak cell's centre in the box, the box centre's side by radiographic convention (a PNG is
# a standard display: column 0 is the patient's right), the text's side from the hot region;
# a box covering the whole image scores 1 for the map and every baseline; patient
# restriction; malformed files.
#   test_localize_eval.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -euo pipefail
radraft="$1"
data="$2"
work="$3"
[ -f "$data/nih/bbox.csv" ] || { echo "FATAL: shared data not found at $data" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work/images"
fail() { echo "FAIL: $*" >&2; exit 1; }
py=python3
[ -x /usr/bin/python3 ] && py=/usr/bin/python3

"$radraft" model init --arch resnet-small --seed 3 --out "$work/model" >/dev/null
# Twelve real boxes (their images linked), and one whole-image box.
head -13 "$data/nih/bbox.csv" >"$work/bbox.csv"
tail -n +2 "$work/bbox.csv" | cut -d, -f1 | sort -u | while read -r img; do
    ln -s "$data/nih/images/$img" "$work/images/$img"
done
first=$(sed -n 2p "$work/bbox.csv" | cut -d, -f1)
echo "$first,Nodule,0,0,256,256" >>"$work/bbox.csv"

"$radraft" localize-eval --bbox "$work/bbox.csv" --model "$work/model" --json \
    --boxes "$work/boxes.csv" --random-runs 50 >"$work/out.json"
"$radraft" localize-eval --bbox "$work/bbox.csv" --model "$work/model" --random-runs 50 \
    >"$work/out.md"
grep -q '^| finding | boxes | pointing: CAM |' "$work/out.md" || fail "no table: $(cat "$work/out.md")"
grep -q '^| all boxes | 13 |' "$work/out.md" || fail "no total row: $(cat "$work/out.md")"
grep -q '8x8 maps' "$work/out.md" || fail "map size not said"

"$py" - "$work/out.json" "$work/boxes.csv" "$work/bbox.csv" <<'PY'
import csv, json, sys
out = json.load(open(sys.argv[1]))
rows = list(csv.DictReader(open(sys.argv[2])))
boxes = list(csv.DictReader(open(sys.argv[3])))
assert out["boxes"] == 13 and len(rows) == 13, (out["boxes"], len(rows))
by = {}
for b in boxes:
    by.setdefault((b["image"], b["finding"]), []).append(b)
hits = {}
for r in rows:
    (b,) = by[(r["image"], r["finding"])]  # one box per image and finding here
    x, y, w, h = (float(b[k]) for k in "xywh")
    cells = [float(v) for v in r["map"].split()]
    assert len(cells) == 64, len(cells)
    peak = max(range(64), key=lambda i: (cells[i], -i))
    px, py_ = (peak % 8 + 0.5) / 8 * 256, (peak // 8 + 0.5) / 8 * 256
    assert abs(float(r["peak_x"]) * 256 - px) < 0.05 and abs(float(r["peak_y"]) * 256 - py_) < 0.05, r
    hit = int(x <= px <= x + w and y <= py_ <= y + h)
    assert hit == int(r["pointing_hit"]), (r["image"], hit, r["pointing_hit"])
    hits[r["finding"]] = hits.get(r["finding"], 0) + hit
    # The box centre's side: column 0 is the patient's right.
    cx = x + w / 2
    want = "" if cx == 128 else ("right" if cx < 128 else "left")
    assert r["box_side"] == want, (r["box_side"], want)
    # The hot region's right share: cells above the midpoint of min and max, columns
    # 0..3 the patient's right (8 columns: no midline column).
    lo, hi = min(cells), max(cells)
    mid = (lo + hi) / 2
    e = [max(0.0, v - mid) for v in cells]
    R = sum(e[i] for i in range(64) if i % 8 < 4)
    L = sum(e[i] for i in range(64) if i % 8 >= 4)
    share = R / (R + L)
    assert abs(share - float(r["right_share"])) < 1e-3, (share, r["right_share"])
    side = "bilateral" if min(R, L) >= 0.5 * max(R, L) else ("right" if R > L else "left")
    assert r["map_side"] == side, (r["map_side"], side)
for f, o in out["findings"].items():
    n = o["boxes"]
    assert abs(o["pointing"] * n - hits[f]) < 1e-6, (f, o["pointing"], hits[f])
    assert 0 <= o["pointing_uniform"] <= 1 and 0 <= o["pointing_random"] <= 1
# The whole-image box: 1 for the map, the uniform map and the random map.
whole = [r for r in rows if r["finding"] == "Nodule"]
assert len(whole) == 1 and whole[0]["pointing_hit"] == "1"
nod = out["findings"]["Nodule"]
assert nod["pointing"] == 1 and nod["pointing_uniform"] == 1 and nod["pointing_random"] == 1, nod
# The first boxes are atelectasis: sides named by its templates.
at = out["findings"]["Atelectasis"]
assert at["side_boxes"] == at["boxes_right"] + at["boxes_left"] > 0, at
PY

# Only the patients given.
pid=$(echo "$first" | cut -d_ -f1 | sed 's/^0*//')
echo "$pid" >"$work/patients.txt"
"$radraft" localize-eval --bbox "$work/bbox.csv" --model "$work/model" \
    --patients "$work/patients.txt" --random-runs 0 >"$work/p.md"
grep -q "of the 1 patients of $work/patients.txt" "$work/p.md" || fail "patients: $(cat "$work/p.md")"
n_first=$(grep -c "^$first," "$work/bbox.csv")
grep -q "^| all boxes | $n_first |" "$work/p.md" || fail "patients: $(cat "$work/p.md")"
# A model with no split to restrict to.
if "$radraft" localize-eval --bbox "$work/bbox.csv" --model "$work/model" \
    --split-from "$work/model" >/dev/null 2>"$work/err"; then
    fail "--split-from a model without a split succeeded"
fi
grep -q "val_patient_ids" "$work/err" || fail "split error: $(cat "$work/err")"

# Malformed files.
printf 'img,what\n' >"$work/bad1.csv"
printf 'image,finding,x,y,w,h\na.png,Fracture,1,2,3,4\n' >"$work/bad2.csv"
printf 'image,finding,x,y,w,h\na.png,Nodule,1,2,-3,4\n' >"$work/bad3.csv"
printf 'image,finding,x,y,w,h\n../a.png,Nodule,1,2,3,4\n' >"$work/bad4.csv"
for b in 1 2 3 4; do
    if "$radraft" localize-eval --bbox "$work/bad$b.csv" --model "$work/model" \
        >/dev/null 2>"$work/err"; then
        fail "bad$b.csv accepted"
    fi
    grep -q "bad$b.csv" "$work/err" || fail "bad$b.csv: $(cat "$work/err")"
done
if "$radraft" localize-eval --model "$work/model" >/dev/null 2>"$work/err"; then
    fail "no --bbox accepted"
fi
grep -q -- "--bbox FILE is required" "$work/err" || fail "no --bbox: $(cat "$work/err")"
echo "PASS localize-eval"
