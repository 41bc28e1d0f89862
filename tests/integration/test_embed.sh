#!/usr/bin/env bash
# radraft embed and radraft model, end to end: PNG and DICOM input, JSON lines output,
# the encoder.* configuration keys, and the errors a user sees.
#   test_embed.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -euo pipefail
radraft="$1"
data="$2"
work="$3"
[ -d "$data/nih/images" ] || { echo "FATAL: shared data not found at $data" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work"
fail() { echo "FAIL: $*" >&2; exit 1; }

"$radraft" model init --arch resnet-small --seed 3 --out "$work/m"
"$radraft" model check "$work/m" >"$work/check.json"
grep -q '"version": "resnet-small-random-seed3"' "$work/check.json" || fail "model check output"

png1="$data/nih/images/00000001_000.png"
png2="$data/nih/images/00000001_001.png"
dcm="$data/dicom/chest/CR-MONO1-10-chest.dcm"
"$radraft" embed --model "$work/m" --threads 2 --batch 2 "$png1" "$png2" "$dcm" >"$work/out.jsonl"

python3 - "$work/out.jsonl" "$png1" "$png2" "$dcm" <<'PY'
import json, math, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 3, "expected 3 lines, got %d" % len(lines)
names = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
         "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
         "Pleural_Thickening", "Hernia"]
embs = []
for line, want in zip(lines, sys.argv[2:]):
    o = json.loads(line)
    assert o["file"] == want, o["file"]
    assert o["model"] == "resnet-small-random-seed3", o["model"]
    e = o["embedding"]
    assert len(e) == 256, len(e)
    n = math.sqrt(sum(v * v for v in e))
    assert abs(n - 1) < 1e-4, n
    assert list(o["scores"].keys()) == names, list(o["scores"].keys())
    assert all(0 <= v <= 1 for v in o["scores"].values())
    embs.append(e)
# Two different radiographs: different embeddings.
assert sum(abs(a - b) for a, b in zip(embs[0], embs[1])) > 1e-3
print("embed output OK")
PY

# The same image embedded alone and inside a batch gives the same numbers; the model can
# come from the configuration (encoder.model) instead of --model.
"$radraft" embed --set encoder.model="$work/m" --set encoder.threads=1 "$png2" >"$work/one.jsonl"
python3 - "$work/out.jsonl" "$work/one.jsonl" <<'PY'
import json, sys
a = json.loads(open(sys.argv[1]).read().splitlines()[1])
b = json.loads(open(sys.argv[2]).read())
d = max(abs(x - y) for x, y in zip(a["embedding"], b["embedding"]))
assert d < 1e-5, d
print("batch-independent OK")
PY

# A missing file is reported, the others are still embedded, the exit status is 1.
set +e
"$radraft" embed --model "$work/m" "$work/missing.png" "$png1" >"$work/partial.jsonl" 2>"$work/err.txt"
rc=$?
set -e
[ "$rc" = 1 ] || fail "missing file: exit status $rc"
grep -q "missing.png" "$work/err.txt" || fail "missing file not named: $(cat "$work/err.txt")"
[ "$(wc -l <"$work/partial.jsonl")" = 1 ] || fail "the readable file was not embedded"

# No model configured: a usage error that says what to set.
set +e
"$radraft" embed --set encoder.model= "$png1" >/dev/null 2>"$work/err.txt"
rc=$?
set -e
[ "$rc" = 2 ] || fail "no model: exit status $rc"
grep -q "encoder.model" "$work/err.txt" || fail "no model: $(cat "$work/err.txt")"

# A damaged weights file is refused with a precise message.
cp -r "$work/m" "$work/bad"
head -c 5000 "$work/m/model.safetensors" >"$work/bad/model.safetensors"
set +e
"$radraft" model check "$work/bad" >/dev/null 2>"$work/err.txt"
rc=$?
set -e
[ "$rc" = 1 ] || fail "truncated weights: exit status $rc"
grep -q "data_offsets outside\|header length" "$work/err.txt" || fail "truncated weights: $(cat "$work/err.txt")"

echo "PASS test_embed"
