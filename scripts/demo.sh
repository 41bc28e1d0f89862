#!/usr/bin/env bash
# Sets up, builds and runs the demo on the embedded defaults: radraft serve (port 11112, AE
# RADRAFT, the shipped model and its seed archive) receives by C-STORE the synthetic sample
# studies and the real ones (NIH ChestX-ray14 radiographs filed under made-up patients,
# samples/NIH*), drafts a report for each and writes it as a DICOM SR. The demo prints each
# draft's findings, impression and SR file; for a real study also its NIH labels beside what
# the draft says, as radraft label reads it back. Then it signs one draft in the review queue.
# The real images were in the model's training set (samples/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
repo=$PWD
radraft=$repo/build/radraft
out=$repo/demo-out
real=("$repo"/samples/NIH*/*.dcm)
n_real=${#real[@]}
n_synth=4
total=$((n_synth + n_real))
rm -rf "$out"
mkdir -p "$out"
cd "$out"

echo "== radraft samples: four synthetic studies (PA + lateral), four transfer syntaxes"
"$radraft" samples --out samples

echo "== radraft serve (embedded defaults; data in $out/radraft-data)"
"$radraft" serve --stable-seconds 2 >serve.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do
    "$radraft" echo RADRAFT@127.0.0.1:11112 >/dev/null 2>&1 && break
    kill -0 $server 2>/dev/null || { cat serve.log; echo "demo: radraft serve did not start" >&2; exit 1; }
    sleep 0.2
done

echo "== radraft send: the eight synthetic instances and $n_real real radiographs (samples/NIH*) by C-STORE"
"$radraft" send samples/*/*.dcm "${real[@]}" --to RADRAFT@127.0.0.1:11112

echo "== waiting for the drafts (studies are stable after 2 s without a new instance)"
db=radraft-data/radraft.db
for _ in $(seq 1 120); do
    n=$(sqlite3 "$db" "SELECT COUNT(*) FROM reviews" 2>/dev/null || echo 0)
    [ "$n" -ge "$total" ] && break
    sleep 0.5
done
kill -TERM $server
wait $server 2>/dev/null || true
trap - EXIT

# Each draft, with the patient from its SR; for a real study the NIH labels (from
# samples/nih-samples.tsv) and the draft's findings as the labeler reads them back. The
# review id of the synthetic normal study (RDS0001) goes to sign-id, for the signing below.
RADRAFT="$radraft" LIST="$repo/samples/nih-samples.tsv" DB="$db" python3 - <<'PY'
import json, os, sqlite3, subprocess

radraft = os.environ["RADRAFT"]
nih = {}
with open(os.environ["LIST"], encoding="utf-8") as f:
    for line in f:
        cols = line.rstrip("\n").split("\t")
        if line.startswith("#") or cols[0] == "patient_id" or len(cols) < 9:
            continue
        nih[cols[0]] = {"image": cols[7], "labels": cols[8].replace("|", ", ")}

def read_back(findings, impression):
    """The draft's present and uncertain findings, as radraft label reads them."""
    rec = json.dumps({"id": "d", "findings": findings or "", "impression": impression or ""})
    out = subprocess.run([radraft, "label"], input=rec + "\n", capture_output=True, text=True,
                         check=True).stdout
    states = json.loads(out)["findings"]
    said = [k for k, v in states.items() if v == "present" and k != "No Finding"]
    said += [k + " (uncertain)" for k, v in states.items() if v == "uncertain"]
    return ", ".join(said) if said else "No Finding"

db = sqlite3.connect(os.environ["DB"])
rows = db.execute("SELECT id, sr_path, findings_text, impression_text FROM reviews ORDER BY id")
table, normal = [], None
for rid, sr, findings, impression in rows:
    info = json.loads(subprocess.run([radraft, "info", sr], capture_output=True, text=True,
                                     check=True).stdout)
    pid, name = info["patient_id"], info["patient_name"]
    print(f"\n-- {pid} {name}")
    print(f"Findings:   {findings}")
    print(f"Impression: {impression}")
    if pid in nih:
        said = read_back(findings, impression)
        print(f"NIH labels: {nih[pid]['labels']} (NIH image {nih[pid]['image']})")
        print(f"Read back:  {said}")
        table.append((pid, name, nih[pid]["labels"], said))
    print(f"SR:         {os.path.realpath(sr)}")
    if pid == "RDS0001":
        normal = rid
if table:
    print("\n== the real radiographs: NIH's labels and what the draft says (these images were in")
    print("   the model's training set, so this shows the drafts, not the model's accuracy)")
    w = max(len(t[1]) for t in table)
    print(f"   {'patient':<{w}}  {'NIH labels':<14}  draft (read back by radraft label)")
    lead = 3 + w + 2 + 14 + 2
    for pid, name, labels, said in sorted(table):
        # Wrapped between findings, never inside one ("Fibrosis (uncertain)").
        lines, cur = [], ""
        for item in said.split(", "):
            if cur and len(cur) + 2 + len(item) > max(40, 100 - lead):
                lines.append(cur + ",")
                cur = item
            else:
                cur = f"{cur}, {item}" if cur else item
        lines.append(cur)
        print(f"   {name:<{w}}  {labels:<14}  {lines[0]}")
        for more in lines[1:]:
            print(" " * lead + more)
with open("sign-id", "w", encoding="utf-8") as f:
    f.write("" if normal is None else str(normal))
PY
first=$(cat sign-id)
n=$(sqlite3 "$db" "SELECT COUNT(*) FROM reviews")
[ "$n" -ge "$total" ] || { echo "demo: only $n of $total studies drafted" >&2; exit 1; }
[ -n "$first" ] || { echo "demo: no draft for the synthetic normal study RDS0001" >&2; exit 1; }

echo
echo "== the review queue: a radiologist claims the synthetic normal study's draft, corrects it and signs it"
"$radraft" user add admin --role admin --display-name "Admin^Demo" >/dev/null
"$radraft" user add demo.rad --role radiologist --display-name "Curie^Marie" --user admin >/dev/null
"$radraft" queue list
"$radraft" queue claim "$first" --user demo.rad
"$radraft" queue edit "$first" --user demo.rad --impression "No acute cardiopulmonary disease."
"$radraft" queue sign "$first" --user demo.rad --set "review.organization=radraft demo"
"$radraft" audit verify
echo
echo "demo: $n of $total studies drafted ($n_synth synthetic, $n_real real) and one signed; the SRs"
echo "are DICOM files (dsrdump FILE shows one); the signed study is now in the similar-case archive"
