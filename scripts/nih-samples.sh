#!/usr/bin/env bash
# Writes the demo's real studies (samples/NIH*/): each row of samples/nih-samples.tsv names an
# NIH ChestX-ray14 image in ../shared/data/nih/images and the made-up patient it is filed
# under; `radraft samples --from-png` wraps the PNG, pixels unchanged, as a DX or CR instance.
#   bash scripts/nih-samples.sh [OUT_DIR] [RADRAFT_BINARY]
# OUT_DIR defaults to samples/. The output depends only on the list and the images: running it
# again writes the same bytes (tests/integration/test_samples_files.c checks the committed
# files against a fresh run). The view (PA/AP) and the sex are taken from NIH's labels.csv,
# and the labels the list quotes must be the ones labels.csv gives.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-samples}
radraft=${2:-build/radraft}
list=samples/nih-samples.tsv
data=${RADRAFT_SHARED_DATA:-../shared/data}/nih
[ -f "$data/labels.csv" ] || { echo "nih-samples: $data/labels.csv not found" >&2; exit 1; }

n=0
while IFS=$'\t' read -r id name birth date time acc modality image labels; do
    case "$id" in '#'* | patient_id | '') continue ;; esac
    # labels.csv: image,patient_id,view,age,sex,labels (CRLF line ends)
    row=$(awk -F, -v img="$image" '$1 == img { sub(/\r$/, ""); print; exit }' "$data/labels.csv")
    [ -n "$row" ] || { echo "nih-samples: $image is not in $data/labels.csv" >&2; exit 1; }
    IFS=, read -r _ _ view _ sex nih_labels <<<"$row"
    if [ "$nih_labels" != "$labels" ]; then
        echo "nih-samples: $image: the list says '$labels', labels.csv '$nih_labels'" >&2
        exit 1
    fi
    mkdir -p "$out/$id"
    "$radraft" samples --from-png "$data/images/$image" --out "$out/$id/${view,,}.dcm" \
        --patient-id "$id" --patient-name "$name" --birth-date "$birth" --sex "$sex" \
        --view "$view" --study-date "$date" --study-time "$time" --accession "$acc" \
        --modality "$modality" --syntax jpeg-lossless \
        --comment "NIH ChestX-ray14 image $image, courtesy of the NIH Clinical Center (https://nihcc.app.box.com/v/ChestXray-NIHCC); made-up patient data; see samples/README.md"
    n=$((n + 1))
done <"$list"
echo "nih-samples: wrote $n studies under $out"
