#!/usr/bin/env bash
# Encoder benchmark: radraft's nn engine vs PyTorch (CPU) on the same networks, weights and
# thread count. Prints a markdown table. Not a test: timings depend on the machine and on
# what else runs on it (the load average is printed with the table).
#
#   tests/bench/bench_encoder.sh [RADRAFT_BINARY] [THREADS] [ITERS] [ROUNDS]
#
# Defaults: build/radraft, 2 threads, 20 timed forward passes per cell (after 3 warm-up
# passes) whose median is one measurement; ROUNDS (default 1) repeats every measurement,
# alternating the engines, and keeps each engine's best median, which damps the effect of
# other processes on a shared machine. Models: the shipped architecture (resnet-small,
# 1x256x256) and ResNet-18 at 3x224x224, with seeded random weights (speed does not depend
# on the values). PyTorch runs tests/integration/torch_ref.py (torch.set_num_threads(THREADS),
# inference_mode; convolutions through its oneDNN backend when available).
#
# radraft's rate is also given as GFLOP/s (a multiply-add counts two) against the sgemm rate
# that `radraft model bench` measures on the same threads in the same run (each thread
# multiplying its own 1024^3 matrices, as the engine's threads do). Before any figure, each
# network's outputs at batch 16 are checked against PyTorch's on the same input; the script
# refuses to print a table when they differ.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
radraft="${1:-$here/../../build/radraft}"
threads="${2:-2}"
iters="${3:-20}"
rounds="${4:-1}"
py="${RADRAFT_PYTHON:-}"
if [ -z "$py" ]; then
    if [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; else py=python3; fi
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$radraft" model init --arch resnet-small --seed 1 --out "$work/resnet-small"
"$radraft" model init --arch resnet18 --seed 1 --out "$work/resnet18"

# The work must be the right work: radraft's outputs on its bench input against PyTorch's.
for model in resnet-small resnet18; do
    "$radraft" model bench "$work/$model" --batch 16 --threads "$threads" --iters 1 \
        --save-io "$work/io-$model" >/dev/null
    "$py" "$here/../integration/torch_ref.py" --model "$work/$model" --input "$work/io-$model/input.bin" \
        --batch 16 --threads "$threads" --out "$work/io-$model/torch.bin"
    "$py" - "$work/io-$model" "$model" <<'PYEOF'
import array, sys
d, model = sys.argv[1], sys.argv[2]
a, b = array.array("f"), array.array("f")
a.frombytes(open(d + "/output.bin", "rb").read())
b.frombytes(open(d + "/torch.bin", "rb").read())
if len(a) != len(b) or not a:
    sys.exit("bench_encoder: %s: radraft wrote %d outputs, PyTorch %d: no figures" % (model, len(a), len(b)))
scale = max(abs(x) for x in b) or 1.0
err = max(abs(x - y) for x, y in zip(a, b)) / scale
if err > 1e-3:
    sys.exit("bench_encoder: %s: outputs differ from PyTorch's (max error %.2e of the largest): no figures" % (model, err))
print("%s: %d outputs of 16 images equal PyTorch's (max error %.1e of the largest)" % (model, len(a), err))
PYEOF
done

results="$work/results.jsonl"
for round in $(seq "$rounds"); do
    for model in resnet-small resnet18; do
        for batch in 1 16; do
            # Interleaved, so that both engines see the same background load.
            "$radraft" model bench "$work/$model" --batch "$batch" --threads "$threads" \
                --iters "$iters" >>"$results"
            "$py" "$here/../integration/torch_ref.py" --model "$work/$model" --bench \
                --batch "$batch" --threads "$threads" --iters "$iters" >>"$results"
        done
    done
done

"$py" - "$results" "$threads" "$rounds" <<'PYEOF'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = "?"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
def best(engine):
    out = {}
    for r in rows:
        k = (r["model"], r["batch"])
        if r["engine"] == engine and (k not in out or r["ms_per_batch"] < out[k]["ms_per_batch"]):
            out[k] = r
    return out
rd, pt = best("radraft"), best("torch")
some = next(iter(rd.values()))
print("CPU: %s, %d cores online, threads %s, best of %s round(s), load average %s; "
      "OpenBLAS core %s; PyTorch %s"
      % (cpu, os.cpu_count(), sys.argv[2], sys.argv[3],
         " ".join("%.2f" % x for x in os.getloadavg()),
         some.get("blas_core", "?"), next(iter(pt.values())).get("torch", "?")))
print()
print("| model | batch | radraft ms/batch | radraft images/s | PyTorch ms/batch | PyTorch images/s | radraft speed-up | GFLOP/image | radraft GFLOP/s | sgemm peak GFLOP/s | share of peak |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for key in sorted(rd, key=lambda k: (k[0] != "resnet-small", k[1])):
    a, b = rd[key], pt[key]
    print("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.2fx | %.2f | %.1f | %.1f | %.0f%% |" % (
        key[0], key[1], a["ms_per_batch"], a["images_per_s"], b["ms_per_batch"],
        b["images_per_s"], b["ms_per_batch"] / a["ms_per_batch"], a["gflop_per_image"],
        a["gflops"], a["sgemm_peak_gflops"], 100 * a["gflops"] / a["sgemm_peak_gflops"]))
PYEOF
