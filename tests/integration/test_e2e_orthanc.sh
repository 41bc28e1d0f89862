#!/bin/bash
# End to end with Orthanc as the PACS (Debian package, started on loopback with a generated
# configuration): Orthanc sends a sample study to `radraft serve` through its REST API
# (/modalities/radraft/store), radraft drafts it, and the draft SR shows up in Orthanc in
# the same study, for the same patient (how long it took is reported, not judged); so does
# the AI Results SR beside it (sr.air), in a series of its own of that study.
#
# usage: bash test_e2e_orthanc.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
DATA=$2
WORK=$3
for tool in Orthanc curl sqlite3 python3 dciodvfy; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
[ -d "$DATA/dicom/chest" ] || { echo "FAIL: shared data not found at $DATA"; exit 1; }
. "$(dirname "$0")/lib_ports.sh"
. "$(dirname "$0")/lib_wait.sh"
. "$(dirname "$0")/lib_store.sh"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

# Ports are picked as each server starts (start_orthanc, start_radraft).
PORT=
OR_DICOM=
OR_HTTP=
STABLE=2
FAILS=0
SERVER=
ORTHANC=
cleanup() { kill -9 $SERVER $ORTHANC 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
api() { curl -s --max-time 20 "http://127.0.0.1:$OR_HTTP$1" "${@:2}"; }

"$RADRAFT" model init --arch resnet-small --seed 1 --out model >/dev/null || { fail "model init"; exit 1; }
"$RADRAFT" samples --out samples --size 512 >/dev/null || { fail "samples"; exit 1; }

mkdir -p orthanc-db
# Orthanc on two new ports; radraft's modality is added once radraft listens.
start_orthanc() {
    local off
    read -r OR_DICOM OR_HTTP < <(rd_free_ports 2)
    cat >orthanc.json <<JSON
{
  "Name": "radraft-e2e", "StorageDirectory": "$WORK/orthanc-db", "IndexDirectory": "$WORK/orthanc-db",
  "HttpPort": $OR_HTTP, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
  "DicomAet": "ORTHANC", "DicomPort": $OR_DICOM, "DicomCheckCalledAet": false,
  "Plugins": [], "StorageCompression": false
}
JSON
    off=$(rd_log_size orthanc.log)
    Orthanc orthanc.json >>orthanc.log 2>&1 &
    ORTHANC=$!
    rd_wait_listening Orthanc $ORTHANC orthanc.log "$off" 60 $OR_DICOM $OR_HTTP
}
rd_retry_port 5 start_orthanc || { fail "Orthanc did not start"; exit 1; }
rd_wait_for "Orthanc's REST API" 30 api /system || { tail -20 orthanc.log; fail "Orthanc does not answer"; exit 1; }

start_radraft() {
    local off
    PORT=$(rd_free_port)
    off=$(rd_log_size rd.log)
    "$RADRAFT" serve --port $PORT --data-dir rd --stable-seconds $STABLE --set encoder.model=model \
        --send-to ORTHANC@127.0.0.1:$OR_DICOM >>rd.log 2>&1 &
    SERVER=$!
    rd_wait_listening "radraft serve" $SERVER rd.log "$off" 20 $PORT
}
rd_retry_port 5 start_radraft || { fail "radraft serve did not start"; exit 1; }
api /modalities/radraft -X PUT -d "{\"AET\": \"RADRAFT\", \"Host\": \"127.0.0.1\", \"Port\": $PORT}" \
    >modality.json || { fail "Orthanc: PUT /modalities/radraft: $(cat modality.json)"; exit 1; }
rd_wait_for "radraft serve to answer a C-ECHO" 20 "$RADRAFT" echo RADRAFT@127.0.0.1:$PORT \
    || fail "radraft serve does not answer"

# Upload one study (JPEG-LS and RLE files, PA + lateral) to Orthanc, then have Orthanc send it.
ids=()
for f in samples/RDS0002/*.dcm; do
    id=$(api /instances -X POST --data-binary @"$f" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ID"])')
    [ -n "$id" ] && ids+=("\"$id\"") || fail "upload $f"
done
study_uid=$(dcmdump +P StudyInstanceUID samples/RDS0002/pa.dcm | sed -e 's/.*\[\(.*\)\].*/\1/')
patient=$(dcmdump +P PatientID samples/RDS0002/pa.dcm | sed -e 's/.*\[\(.*\)\].*/\1/')
body=$(IFS=,; echo "[${ids[*]}]")
api /modalities/radraft/store -X POST -d "$body" >store.json || fail "Orthanc store to radraft"
t0=$(date +%s.%N)
# The study's SR instances in Orthanc, by SOP class: the text report (Enhanced SR) and the
# AI results (Comprehensive 3D SR).
sr_of_class() {
    for id in $(api /tools/find -X POST -d "{\"Level\":\"Instance\",\"Query\":{\"StudyInstanceUID\":\"$study_uid\",\"Modality\":\"SR\"}}" |
        python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)))'); do
        [ "$(api "/instances/$id/metadata/SopClassUid")" = "$1" ] && { echo "$id"; return; }
    done
}
sr=
air=
both_srs_in_orthanc() {
    sr=$(sr_of_class 1.2.840.10008.5.1.4.1.1.88.22)
    air=$(sr_of_class 1.2.840.10008.5.1.4.1.1.88.34)
    echo "in Orthanc: text SR ${sr:-none}, AI results SR ${air:-none}"
    [ -n "$sr" ] && [ -n "$air" ]
}
rd_wait_for "the draft SR and the AI results SR in Orthanc" 120 both_srs_in_orthanc
t1=$(date +%s.%N)
lat=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
if [ -n "$sr" ]; then
    pass "the draft SR is in Orthanc ${lat} s after Orthanc sent the study (stable delay $STABLE s)"
    # The latency is reported, not judged: on a loaded machine it says nothing about radraft.
    echo "latency: the draft SR was in Orthanc $lat s after Orthanc sent the study (stable delay $STABLE s)"
    api "/instances/$sr/simplified-tags" >sr-tags.json
    python3 - sr-tags.json "$study_uid" "$patient" <<'PY' || fail "SR tags in Orthanc"
import json, sys
t = json.load(open(sys.argv[1]))
assert t["StudyInstanceUID"] == sys.argv[2], t["StudyInstanceUID"]
assert t["PatientID"] == sys.argv[3], t["PatientID"]
assert t["Modality"] == "SR" and t["CompletionFlag"] == "PARTIAL" and t["VerificationFlag"] == "UNVERIFIED"
PY
    # Same study in Orthanc: the SR's series hangs under the study that holds the images.
    n_series=$(api "/studies/$(api "/instances/$sr/study" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ID"])')" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)["Series"]))')
    [ "$n_series" -ge 2 ] && pass "the SR is a new series of the study in Orthanc ($n_series series)" || fail "series in the study: $n_series"
    api "/instances/$sr/file" >sr.dcm
    out=$(dciodvfy sr.dcm 2>&1)
    echo "$out" | grep -q "^Error" && { fail "dciodvfy reports errors for the SR from Orthanc"; echo "$out" | grep "^Error"; }
else
    fail "no SR of study $study_uid in Orthanc: $RD_WAIT_SAID"
fi
if [ -n "$air" ]; then
    api "/instances/$air/simplified-tags" >air-tags.json
    python3 - air-tags.json "$study_uid" "$patient" <<'PY' || fail "AI results SR tags in Orthanc"
import json, sys
t = json.load(open(sys.argv[1]))
assert t["StudyInstanceUID"] == sys.argv[2], t["StudyInstanceUID"]
assert t["PatientID"] == sys.argv[3], t["PatientID"]
assert t["Modality"] == "SR" and t["SOPClassUID"] == "1.2.840.10008.5.1.4.1.1.88.34", t
assert t["SeriesDescription"] == "Unverified AI results (radraft)", t["SeriesDescription"]
PY
    # Indexed into the source study (Orthanc's study of the images), in a series of its own.
    img_study=$(api /tools/find -X POST -d "{\"Level\":\"Study\",\"Query\":{\"StudyInstanceUID\":\"$study_uid\"}}" |
        python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[0] if len(r) == 1 else "")')
    air_study=$(api "/instances/$air/study" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ID"])')
    air_series=$(api "/instances/$air/series" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ID"])')
    sr_series=$(api "/instances/$sr/series" | python3 -c 'import json,sys; print(json.load(sys.stdin)["ID"])')
    [ -n "$img_study" ] && [ "$air_study" = "$img_study" ] && [ "$air_series" != "$sr_series" ] &&
        pass "Orthanc indexes the AI results SR in the source study, in its own series" ||
        fail "AI results SR: study '$air_study' (images' '$img_study'), series '$air_series' (text SR's '$sr_series')"
else
    fail "no AI results SR of study $study_uid in Orthanc after 20 s"
fi
n=$(rd_db rd "SELECT COUNT(*) FROM reviews WHERE study_uid='$study_uid' AND state='draft'")
[ "$n" = 1 ] && pass "one review item" || fail "$n review items"

kill -TERM $SERVER; wait $SERVER
[ $? -eq 0 ] && pass "radraft stopped cleanly" || fail "radraft exit status"
SERVER=
if [ $FAILS -ne 0 ]; then
    echo "$FAILS check(s) failed"; tail -20 rd.log
    exit 1
fi
echo "all checks passed"
