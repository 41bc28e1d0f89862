#!/bin/bash
# Benchmark (not a test): `radraft batch` throughput over the sample studies repeated to a
# few thousand.
#
# usage: bench_batch.sh RADRAFT [N_STUDIES] [--model MODEL] [--size ROWS] [--workdir DIR]
#                       [--workers-list "0 1"] [--blocks "16"] [--archive N] [--keep]
#
# Writes the four sample studies once (`radraft samples --syntax explicit-le`, a PA and a
# lateral each, ROWS rows, default 512), then copies them to N_STUDIES studies (default
# 2000) with new Study, Series and SOP Instance UIDs: every 2.25.* UID of a file is replaced
# by another UID of the same length, so the files stay valid byte for byte apart from the
# UIDs, and each copy is a new study to radraft. Then runs `radraft batch` over them once for
# each value of --workers-list (default "0 1": the default worker count, then 1 worker), each
# time into a fresh data directory, and prints one markdown table row per run: studies/s and
# instances/s as batch reports them (from the first study started to the last finished),
# the whole command's wall time (with the folder scan and model load), and batch's mean
# milliseconds per study of each stage. MODEL defaults to random weights (`radraft model
# init --arch resnet-small --seed 1`); a model with a seed archive also pays for retrieval.
# The work folder (default under /tmp; about 0.9 MB per study at 512 rows) is deleted at
# the end unless --keep.
#
# --blocks "16 1" runs each worker count once per pipeline.block value (studies a worker
# drafts together, their archive searches as one sgemm). --archive N gives the model a
# seed archive of N entries (its own seed's entries, then random unit vectors; built by
# bench_archive_seed.c into a copy of the model folder), so that retrieval searches a large
# archive; each run imports it into its fresh data directory before the first study (that
# time is in "wall s", not in studies/s).
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd) # before the cd into the work folder
RADRAFT=$(readlink -f "$1")
shift
N=2000
if [ $# -gt 0 ] && [[ $1 != --* ]]; then N=$1; shift; fi
MODEL=
SIZE=512
WORK=/tmp/radraft-bench-batch.$$
WORKERS_LIST="0 1"
BLOCKS=16
ARCHIVE=0
KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
    --model) MODEL=$(readlink -f "$2"); shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --workdir) WORK=$2; shift 2 ;;
    --workers-list) WORKERS_LIST=$2; shift 2 ;;
    --blocks) BLOCKS=$2; shift 2 ;;
    --archive) ARCHIVE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v python3 >/dev/null || { echo "python3 is not installed" >&2; exit 1; }
trap '[ $KEEP = 1 ] || rm -rf "$WORK"' EXIT
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

if [ -z "$MODEL" ]; then
    "$RADRAFT" model init --arch resnet-small --seed 1 --out model >/dev/null || exit 1
    MODEL=$WORK/model
fi
if [ "$ARCHIVE" != 0 ]; then
    # A copy of the model whose seed archive has ARCHIVE entries.
    gcc -std=c11 -O2 -D_GNU_SOURCE -DRD_MODELS_DIR="\"$ROOT/models\"" -I"$ROOT/include" \
        -I"$ROOT/src" -o "$WORK/bench_archive_seed" "$ROOT/tests/bench/bench_archive_seed.c" \
        "$ROOT"/src/retrieval/*.c "$ROOT"/src/store/*.c "$ROOT"/src/base/*.c "$ROOT"/src/nn/*.c \
        $(pkg-config --cflags --libs openblas libcjson sqlite3 libpq) -lpthread -lm || exit 1
    MJSON=$MODEL
    [ -d "$MODEL" ] && MJSON=$MODEL/model.json
    read -r VERSION DIM < <(python3 - "$(dirname "$MJSON")/seed-archive.bin" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read(1 << 30)
h = json.loads(b[16:16 + struct.unpack("<Q", b[8:16])[0]])
print(h["model_version"], h["dim"])
PY
    ) || { echo "the model has no seed archive to start from" >&2; exit 1; }
    mkdir -p model-archive
    for f in "$(dirname "$MJSON")"/*; do
        [ "$(basename "$f")" = seed-archive.bin ] || ln -s "$f" model-archive/
    done
    "$WORK/bench_archive_seed" "$VERSION" "$DIM" "$(dirname "$MJSON")/seed-archive.bin" \
        "$ARCHIVE" model-archive/seed-archive.bin || exit 1
    MODEL=$WORK/model-archive
fi
"$RADRAFT" samples --out orig --size $SIZE --syntax explicit-le >/dev/null || exit 1

t0=$(date +%s.%N)
python3 - "$WORK/orig" "$WORK/studies" "$N" <<'PY' || exit 1
import hashlib, os, re, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
files = []  # (study folder, file name, bytes)
for study in sorted(os.listdir(src)):
    for name in sorted(os.listdir(os.path.join(src, study))):
        with open(os.path.join(src, study, name), "rb") as f:
            files.append((study, name, f.read()))
uids = sorted({u for _, _, b in files for u in re.findall(rb"2\.25\.[0-9]{10,}", b)})
studies = sorted({s for s, _, _ in files})

def new_uid(uid, copy):
    """A UID of the same length (so that element lengths and padding stay), derived from the
    original and the copy number: 2.25. then as many decimal digits, the first non-zero."""
    digits = len(uid) - 5
    h = int.from_bytes(hashlib.sha256(uid + b"/%d" % copy).digest() * 2, "big")
    s = str(h)[:digits]
    if s[0] == "0":
        s = "1" + s[1:]
    return b"2.25." + s.encode()

for c in range(n):
    study = studies[c % len(studies)]
    copy = c // len(studies)
    out = os.path.join(dst, "c%05d" % copy, study)
    os.makedirs(out, exist_ok=True)
    for s, name, b in files:
        if s != study:
            continue
        if copy:
            for u in uids:
                if u in b:
                    b = b.replace(u, new_uid(u, copy))
        with open(os.path.join(out, name), "wb") as f:
            f.write(b)
PY
t1=$(date +%s.%N)
N_FILES=$(find studies -name '*.dcm' | wc -l)
echo "$N studies ($N_FILES instances, $SIZE rows, $(du -sh studies | cut -f1)) written in" \
    "$(python3 -c "print(f'{$t1 - $t0:.1f}')") s; $(nproc) CPUs; load average $(cut -d' ' -f1 /proc/loadavg)"
echo "model: $MODEL"
echo
echo "| workers | block | studies/s | instances/s | wall s (with scan, load) | read | decode | embed | retrieve | generate | SR write | record |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for w in $WORKERS_LIST; do
for blk in $BLOCKS; do
    rm -rf rd
    wflag=()
    [ "$w" != 0 ] && wflag=(--workers "$w")
    a=$(date +%s.%N)
    "$RADRAFT" batch studies --data-dir rd --model "$MODEL" "${wflag[@]}" \
        --set pipeline.block="$blk" >summary.txt 2>batch.log
    rc=$?
    b=$(date +%s.%N)
    [ $rc = 0 ] || { echo "batch failed (exit $rc)" >&2; cat summary.txt >&2; tail -5 batch.log >&2; exit 1; }
    python3 - "$w" "$N_FILES" "$(python3 -c "print($b - $a)")" summary.txt batch.log "$blk" <<'PY'
import re, sys
w, n_files, wall, summary, log, blk = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
text = open(summary).read()
m = re.search(r"batch: (\d+) studies in ([\d.]+) s \(([\d.]+) studies/s", text)
drafted = int(re.search(r"drafted\s+(\d+)", text).group(1))
stages = re.search(r"mean ms per drafted study: (.*)", text).group(1)
ms = [float(x) for x in re.findall(r"[a-zA-Z ]+ ([\d.]+)", stages)]
workers = re.search(r"batch: (\d+) worker\(s\) x (\d+) encoder thread", open(log).read())
label = f"{workers.group(1)} x {workers.group(2)} threads" + (" (default)" if w == "0" else "")
n, rate = int(m.group(1)), float(m.group(3))
assert drafted == n, f"{drafted} of {n} drafted"
print(f"| {label} | {blk} | {rate:.1f} | {rate * n_files / n:.1f} | {wall:.1f} | " +
      " | ".join(f"{x:.1f}" for x in ms) + " |")
PY
done
done
