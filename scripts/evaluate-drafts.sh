#!/usr/bin/env bash
# Measures the drafts end to end on held-out patients, the way a site's acceptance test
# would: every held-out NIH image becomes a DICOM study (radraft samples --from-png, with a
# made-up patient), `radraft batch` drafts it into an SR, `radraft label --sr` reads the SR's
# text back into finding states, and those are compared with the NIH labels (present or
# uncertain counts as positive). Prints precision, recall and F1 per finding, micro and
# macro F1 with 95% intervals (bootstrap over patients), and the findings a draft mentions
# against the labels' count.
#   bash scripts/evaluate-drafts.sh MODEL [RADRAFT_BINARY]
# The held-out patients are MODEL's training.split.holdout_patient_ids (a --folds model),
# else its val_patient_ids. The calibration and thresholds are fitted on these same
# patients, so the script cross-fits: the patients fall into two halves, each half is
# drafted by a copy of MODEL calibrated (radraft evaluate --calibrate) on the other half only.
# Pass RADRAFT_DRAFTS_AS_IS=1 to draft with MODEL's own calibration and thresholds instead
# (in-sample when they were fitted on these patients); RADRAFT_OWN_THRESHOLDS=N is passed to
# `evaluate --own-thresholds` (default 0). Work and results: build/drafts-eval (or
# RADRAFT_DRAFTS_WORK).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:?usage: evaluate-drafts.sh MODEL [RADRAFT_BINARY]}
radraft=$(realpath "${2:-build/radraft}")
data=${RADRAFT_SHARED_DATA:-../shared/data}/nih
work=${RADRAFT_DRAFTS_WORK:-build/drafts-eval}
[ -f "$data/labels.csv" ] || { echo "evaluate-drafts: $data/labels.csv not found" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work"

python3 - "$model" "$data" "$work" "$radraft" "${RADRAFT_DRAFTS_AS_IS:-0}" \
    "${RADRAFT_OWN_THRESHOLDS:-0}" <<'PY'
import csv, hashlib, json, os, random, shutil, subprocess, sys
model, data, work, radraft, as_is, own_th = sys.argv[1:7]
as_is = as_is == "1"
mj = os.path.join(model, "model.json") if os.path.isdir(model) else model
split = json.load(open(mj))["training"]["split"]
held = split.get("holdout_patient_ids") or split["val_patient_ids"]
held = set(str(p) for p in held)
rows = [r for r in csv.DictReader(open(os.path.join(data, "labels.csv"))) if r["patient_id"] in held]
FINDINGS = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
            "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
            "Pleural_Thickening", "Hernia"]

def run(args, **kw):
    return subprocess.run(args, check=True, text=True, **kw)

def half(pid):
    return hashlib.sha256(("drafts-eval:" + pid).encode()).digest()[0] & 1

# One DICOM study per image; the made-up patient id carries the image's name.
by_stem = {}
for r in rows:
    stem = r["image"].rsplit(".", 1)[0]
    by_stem[stem] = r
    d = os.path.join(work, f"half{half(r['patient_id'])}", "dicom")
    os.makedirs(d, exist_ok=True)
    run([radraft, "samples", "--from-png", os.path.join(data, "images", r["image"]),
         "--out", os.path.join(d, stem + ".dcm"), "--patient-id", "NIH" + stem,
         "--view", r["view"] if r["view"] in ("PA", "AP") else "PA",
         "--accession", stem[:16], "--comment", "NIH ChestX-ray14 " + r["image"]],
        stdout=subprocess.DEVNULL)

# The model each half is drafted with: calibrated on the other half (or MODEL as it is).
# The scores are those of the DICOM studies, as the pipeline reads them; the labels file
# names the same images by their DICOM file names.
if not as_is:
    scores = os.path.join(work, "scores.csv")
    labels_dcm = os.path.join(work, "labels-dcm.csv")
    with open(os.path.join(data, "labels.csv"), newline="") as f, open(labels_dcm, "w", newline="") as g:
        rd, wr = csv.DictReader(f), None
        for r in rd:
            if wr is None:
                wr = csv.DictWriter(g, fieldnames=rd.fieldnames)
                wr.writeheader()
            r["image"] = r["image"].rsplit(".", 1)[0] + ".dcm"
            wr.writerow(r)
    run([radraft, "predict", "--model", model, "--uncalibrated", "--out", scores,
         "--data-dir", os.path.join(work, "predict-data")]
        + [os.path.join(work, f"half{half(r['patient_id'])}", "dicom",
                        r["image"].rsplit(".", 1)[0] + ".dcm") for r in rows],
        stderr=subprocess.DEVNULL)
labelled = []
for h in (0, 1):
    hd = os.path.join(work, f"half{h}")
    if not os.path.isdir(hd):
        continue
    m = model
    if not as_is:
        m = os.path.join(hd, "model")
        shutil.copytree(model, m)
        pats = os.path.join(hd, "fit-patients.txt")
        with open(pats, "w") as f:
            f.writelines(p + "\n" for p in sorted(held) if half(p) != h)
        run([radraft, "evaluate", "--labels", labels_dcm, scores,
             "--patients", pats, "--calibrate", m, "--write", "--own-thresholds", own_th],
            stdout=subprocess.DEVNULL)
    run([radraft, "batch", "--data-dir", os.path.join(hd, "data"), "--out", os.path.join(hd, "sr"),
         "--model", m, os.path.join(hd, "dicom")], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    # The SRs only: the FHIR Bundles beside them are not DICOM.
    srs = sorted(os.path.join(hd, "sr", f) for f in os.listdir(os.path.join(hd, "sr"))
                 if f.endswith(".dcm"))
    out = run([radraft, "label", "--sr"] + srs, capture_output=True).stdout
    labelled += [json.loads(l) for l in out.splitlines() if l.strip()]

# Drafts against labels.
drafted = {}
for l in labelled:
    stem = l["patient_id"][3:]
    drafted[stem] = {f for f, s in l["findings"].items() if s in ("present", "uncertain")}
missing = [s for s in by_stem if s not in drafted]
if missing:
    sys.exit(f"evaluate-drafts: {len(missing)} images have no draft (e.g. {missing[0]})")
items = []
for stem, r in by_stem.items():
    truth = set(r["labels"].split("|")) - {"No Finding"}
    items.append((r["patient_id"], truth, drafted[stem] & set(FINDINGS)))

def measure(its):
    per, tp_all, fp_all, fn_all = {}, 0, 0, 0
    for f in FINDINGS:
        tp = sum(1 for _, t, d in its if f in t and f in d)
        fp = sum(1 for _, t, d in its if f not in t and f in d)
        fn = sum(1 for _, t, d in its if f in t and f not in d)
        per[f] = (tp, fp, fn)
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    f1 = lambda tp, fp, fn: 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    scored = [f for f in FINDINGS if per[f][0] + per[f][2] > 0]
    micro = f1(tp_all, fp_all, fn_all)
    macro = sum(f1(*per[f]) for f in scored) / len(scored) if scored else float("nan")
    return per, micro, macro, f1

per, micro, macro, f1 = measure(items)
rng = random.Random(1)
pats = sorted({p for p, _, _ in items})
by_pat = {}
for it in items:
    by_pat.setdefault(it[0], []).append(it)
boot_micro, boot_macro = [], []
for _ in range(1000):
    sample = [it for p in (rng.choice(pats) for _ in pats) for it in by_pat[p]]
    _, mi, ma, _ = measure(sample)
    boot_micro.append(mi)
    boot_macro.append(ma)
boot_micro.sort(); boot_macro.sort()
ci = lambda v: (v[24], v[974])
mentions = sum(len(d) for _, _, d in items) / len(items)
labels_mean = sum(len(t) for _, t, _ in items) / len(items)
print(f"evaluate-drafts: {len(items)} drafts of {len(pats)} held-out patients, "
      f"{'as is' if as_is else 'cross-fitted calibration and thresholds'}, model {model}")
print(f"  {'finding':20s} {'pos':>4s} {'drafted':>7s} {'prec':>6s} {'recall':>6s} {'F1':>6s}")
for f in FINDINGS:
    tp, fp, fn = per[f]
    pr = tp / (tp + fp) if tp + fp else float("nan")
    rc = tp / (tp + fn) if tp + fn else float("nan")
    print(f"  {f:20s} {tp + fn:4d} {tp + fp:7d} {pr:6.3f} {rc:6.3f} {f1(tp, fp, fn):6.3f}")
print(f"  micro-F1 {micro:.4f} [{ci(boot_micro)[0]:.3f}, {ci(boot_micro)[1]:.3f}], "
      f"macro-F1 {macro:.4f} [{ci(boot_macro)[0]:.3f}, {ci(boot_macro)[1]:.3f}] "
      f"(95% intervals, 1000 bootstrap resamplings of the patients)")
print(f"  findings mentioned per draft {mentions:.2f}, labelled per image {labels_mean:.2f}")
json.dump({"model": model, "drafts": len(items), "patients": len(pats), "cross_fitted": not as_is,
           "micro_f1": micro, "micro_f1_ci": ci(boot_micro), "macro_f1": macro,
           "macro_f1_ci": ci(boot_macro), "mentions_per_draft": mentions,
           "labels_per_image": labels_mean,
           "per_finding": {f: dict(zip(("tp", "fp", "fn"), per[f])) for f in FINDINGS}},
          open(os.path.join(work, "summary.json"), "w"), indent=1)
PY
