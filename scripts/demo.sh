#!/usr/bin/env bash
# Sets up, builds and runs the demo on the embedded defaults: radraft serve (port 11112, AE
# RADRAFT, the shipped model and its seed archive) receives the synthetic sample studies by
# C-STORE, drafts a report for each and writes it as a DICOM SR. The demo prints each
# draft's findings, impression and SR file, then signs one in the review queue.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
radraft=$PWD/build/radraft
out=$PWD/demo-out
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

echo "== radraft send: the eight instances by C-STORE"
"$radraft" send samples/*/*.dcm --to RADRAFT@127.0.0.1:11112

echo "== waiting for the drafts (studies are stable after 2 s without a new instance)"
db=radraft-data/radraft.db
for _ in $(seq 1 120); do
    n=$(sqlite3 "$db" "SELECT COUNT(*) FROM reviews" 2>/dev/null || echo 0)
    [ "$n" -ge 4 ] && break
    sleep 0.5
done
kill -TERM $server
wait $server 2>/dev/null || true
trap - EXIT

sqlite3 -separator $'\t' "$db" \
    "SELECT sr_path, findings_text, impression_text FROM reviews ORDER BY id" |
while IFS=$'\t' read -r sr findings impression; do
    who=$("$radraft" info "$sr" | python3 -c \
        'import json,sys; d=json.load(sys.stdin); print(d["patient_id"], d["patient_name"])')
    printf '\n-- %s\nFindings:   %s\nImpression: %s\nSR:         %s\n' \
        "$who" "$findings" "$impression" "$(realpath "$sr")"
done
n=$(sqlite3 "$db" "SELECT COUNT(*) FROM reviews")
[ "$n" -ge 4 ] || { echo "demo: only $n of 4 studies drafted" >&2; exit 1; }

echo
echo "== the review queue: a radiologist claims the first draft, corrects it and signs it"
"$radraft" user add admin --role admin --display-name "Admin^Demo" >/dev/null
"$radraft" user add demo.rad --role radiologist --display-name "Curie^Marie" --user admin >/dev/null
"$radraft" queue list
first=$(sqlite3 "$db" "SELECT MIN(id) FROM reviews")
"$radraft" queue claim "$first" --user demo.rad
"$radraft" queue edit "$first" --user demo.rad --impression "No acute cardiopulmonary disease."
"$radraft" queue sign "$first" --user demo.rad --set "review.organization=radraft demo"
"$radraft" audit verify
echo
echo "demo: $n of 4 studies drafted and one signed; the SRs are DICOM files (dsrdump FILE"
echo "shows one); the signed study is now in the similar-case archive"
