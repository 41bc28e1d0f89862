#!/bin/bash
# Benchmark (not a test): studies per second from a PACS to drafted SRs, `radraft batch
# --from-pacs` by C-GET and by C-MOVE and `--from-dicomweb` by WADO-RS, against `radraft batch`
# on the same studies as local files, in one run on this machine. Orthanc (with its DICOMweb
# plugin) is the PACS, on loopback.
#
# usage: bench_qr.sh RADRAFT [N_STUDIES] [WORKDIR]
# N_STUDIES (default 40) chest studies of two instances each are made from `radraft samples`
# (new UIDs per copy). A figure is printed only for a run that drafted all N studies.
set -u
RADRAFT=$(readlink -f "$1")
N=${2:-40}
WORK=${3:-/tmp/radraft-bench-qr.$$}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/lib_ports.sh"
. "$HERE/../integration/lib_wait.sh"
PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
for t in Orthanc curl dcmodify sqlite3; do
    command -v $t >/dev/null || { echo "bench_qr: $t missing (bash scripts/setup.sh --test)" >&2; exit 1; }
done
[ -f $PLUGIN ] || { echo "bench_qr: $PLUGIN missing (orthanc-dicomweb)" >&2; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
ORTHANC=
trap 'kill -9 $ORTHANC 2>/dev/null; wait $ORTHANC 2>/dev/null; rm -rf "$WORK"' EXIT

"$RADRAFT" samples --out s --size 512 >/dev/null || exit 1
mkdir -p studies
for i in $(seq 1 "$N"); do
    src=s/RDS000$(((i - 1) % 4 + 1))
    mkdir -p studies/$i && cp "$src"/*.dcm studies/$i/
    uid=$(python3 -c 'import uuid; print("2.25.%d" % uuid.uuid4().int)')
    dcmodify -nb -gse -gin -m StudyInstanceUID=$uid -m StudyDate=20240201 studies/$i/*.dcm >/dev/null 2>&1
done

read OR_HTTP OR_DICOM RD_PORT <<<"$(rd_free_ports 3)"
mkdir -p or
cat >or.json <<EOF
{ "Name": "bench", "StorageDirectory": "$WORK/or", "IndexDirectory": "$WORK/or",
  "HttpPort": $OR_HTTP, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
  "DicomAet": "ORTHANC", "DicomPort": $OR_DICOM, "DicomCheckCalledAet": false,
  "Plugins": ["$PLUGIN"], "StorageCompression": false,
  "DicomModalities": { "radraft": ["RADRAFT", "127.0.0.1", $RD_PORT] } }
EOF
Orthanc or.json >or.log 2>&1 &
ORTHANC=$!
rd_wait_listening Orthanc $ORTHANC or.log 0 60 $OR_DICOM $OR_HTTP >/dev/null || { tail or.log; exit 1; }
for f in studies/*/*.dcm; do
    curl -s -X POST "http://127.0.0.1:$OR_HTTP/instances" --data-binary @"$f" >/dev/null
done

# run NAME ARGS...: one batch run into its own data directory; prints its row.
run() {
    local name=$1 t0 t1 n
    shift
    rm -rf "rd-$name"
    t0=$(date +%s.%N)
    "$RADRAFT" batch "$@" --data-dir "rd-$name" --workers 2 >"$name.log" 2>&1
    t1=$(date +%s.%N)
    n=$(sqlite3 "rd-$name/radraft.db" "SELECT COUNT(DISTINCT study_uid) FROM reviews" 2>/dev/null)
    if [ "${n:-0}" != "$N" ]; then
        echo "bench_qr: $name drafted ${n:-0} of $N studies; no figure" >&2
        tail -5 "$name.log" >&2
        exit 1
    fi
    awk -v n=$N -v t="$(echo "$t1 - $t0" | bc)" -v name="$name" 'BEGIN { printf "%s %.3f\n", name, n / t }' >>rates
}

echo "$N studies of 2 instances, $(nproc) CPUs, $(uptime | sed 's/.*load average/load average/')"
: >rates
run local studies
run c-get --from-pacs ORTHANC@127.0.0.1:$OR_DICOM --since 20240201 --until 20240201
run c-move --from-pacs ORTHANC@127.0.0.1:$OR_DICOM --since 20240201 --until 20240201 \
    --set qr.retrieve=move --set server.port=$RD_PORT
run wado-rs --from-dicomweb http://127.0.0.1:$OR_HTTP/dicom-web --since 20240201 --until 20240201
echo "| source | studies/s | vs local files |"
echo "|---|---|---|"
awk 'NR == 1 { base = $2 } { printf "| %s | %.2f | %.2fx |\n", $1, $2, $2 / base }' rates
