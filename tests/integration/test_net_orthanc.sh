#!/bin/bash
# Interoperability with Orthanc (Debian package orthanc), started on loopback with a
# generated configuration: Orthanc sends a study to radraft through its REST API
# (C-STORE), radraft's outbox delivers a file to Orthanc that then shows up in Orthanc's
# REST API, and with Orthanc stopped the delivery retries and completes once it is back.
#
# usage: test_net_orthanc.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$1
DATA=$2
WORK=$3
for tool in Orthanc curl sqlite3 dcmdump; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
[ -d "$DATA/dicom/chest" ] || { echo "FAIL: shared data not found at $DATA"; exit 1; }
. "$(dirname "$0")/lib_ports.sh"
. "$(dirname "$0")/lib_wait.sh"
. "$(dirname "$0")/lib_store.sh"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

# Orthanc's ports are held for the whole test: it is stopped and started again on them, and
# radraft's outbox delivers to the DICOM one. radraft's own port is picked when it starts.
rd_hold_ports 2 || exit 1
read -r OR_DICOM OR_HTTP <<<"$RD_PORTS"
HOLDER=$RD_HOLDER
PORT=
FAILS=0
SERVER=
ORTHANC=
cleanup() { kill -9 $SERVER $ORTHANC $HOLDER 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
db() { rd_db "$WORK/rd" "$1"; }
api() { curl -s --max-time 20 "http://127.0.0.1:$OR_HTTP$1" "${@:2}"; }

mkdir -p orthanc-db
cat >orthanc.json <<EOF
{
  "Name": "radraft-test",
  "StorageDirectory": "$WORK/orthanc-db",
  "IndexDirectory": "$WORK/orthanc-db",
  "HttpPort": $OR_HTTP,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomAet": "ORTHANC",
  "DicomPort": $OR_DICOM,
  "DicomCheckCalledAet": false,
  "Plugins": [],
  "StorageCompression": false
}
EOF
start_orthanc() {
    local off
    off=$(rd_log_size orthanc.log)
    Orthanc orthanc.json >>orthanc.log 2>&1 &
    ORTHANC=$!
    rd_wait_listening Orthanc $ORTHANC orthanc.log "$off" 60 $OR_DICOM $OR_HTTP || return 1
    rd_wait_for "Orthanc's REST API" 30 api /system
}
start_orthanc || { cat orthanc.log | tail -20; fail "Orthanc did not start"; exit 1; }
pass "Orthanc started"

start_radraft() {
    local off
    PORT=$(rd_free_port)
    off=$(rd_log_size rd.log)
    "$RADRAFT" serve --port $PORT --data-dir rd --stable-seconds 1 --set encoder.model= --send-to ORTHANC@127.0.0.1:$OR_DICOM \
        --set outbox.retry_initial_seconds=1 --set outbox.retry_max_seconds=2 >>rd.log 2>&1 &
    SERVER=$!
    rd_wait_listening "radraft serve" $SERVER rd.log "$off" 20 $PORT
}
rd_retry_port 5 start_radraft || { fail "radraft serve did not start"; exit 1; }
rd_wait_for "radraft serve to answer a C-ECHO" 20 "$RADRAFT" echo RADRAFT@127.0.0.1:$PORT \
    || fail "radraft serve does not answer"
# Orthanc learns radraft's port now that radraft listens on it.
api /modalities/radraft -X PUT -d "{\"AET\": \"RADRAFT\", \"Host\": \"127.0.0.1\", \"Port\": $PORT}" \
    >modality.json || { fail "Orthanc: PUT /modalities/radraft: $(cat modality.json)"; exit 1; }

# 1. Orthanc -> radraft: upload a study to Orthanc, then have Orthanc C-STORE it.
F1=$DATA/dicom/chest/siim-CR-jpeg-baseline.dcm
F2=$DATA/dicom/chest/RG1_J2KI.dcm
id1=$(api /instances -X POST --data-binary @"$F1" | sed -n 's/.*"ID" *: *"\([^"]*\)".*/\1/p')
id2=$(api /instances -X POST --data-binary @"$F2" | sed -n 's/.*"ID" *: *"\([^"]*\)".*/\1/p')
[ -n "$id1" ] && [ -n "$id2" ] && pass "uploaded to Orthanc" || fail "upload to Orthanc"
api /modalities/radraft/echo -X POST -d '' >/dev/null && pass "Orthanc C-ECHO to radraft" \
    || fail "Orthanc C-ECHO to radraft"
api /modalities/radraft/store -X POST -d "[\"$id1\", \"$id2\"]" >store.json
n=$(db "SELECT COUNT(*) FROM instances")
[ "$n" = 2 ] && pass "radraft stored the 2 instances Orthanc sent" || fail "radraft has $n instances"
for f in "$F1" "$F2"; do
    sop=$(dcmdump -q +P 0008,0018 "$f" | sed -e 's/.*\[\(.*\)\].*/\1/')
    [ -n "$(db "SELECT 1 FROM instances WHERE sop_instance_uid='$sop'")" ] \
        || fail "$sop not indexed"
done

# 2. radraft -> Orthanc through the outbox, first while Orthanc is down.
kill $ORTHANC; wait $ORTHANC 2>/dev/null
ORTHANC=
F3=$DATA/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm
SOP3=$(dcmdump -q +P 0008,0018 "$F3" | sed -e 's/.*\[\(.*\)\].*/\1/')
"$RADRAFT" send --queue --data-dir rd --to ORTHANC@127.0.0.1:$OR_DICOM "$F3" \
    && pass "queued for Orthanc" || fail "send --queue"
# outbox_is STATE MIN_ATTEMPTS: the delivery is in STATE after at least MIN_ATTEMPTS attempts.
outbox_is() {
    local st
    st=$(db "SELECT state || ' ' || attempts FROM outbox")
    echo "outbox: ${st:-no row}"
    [ "${st% *}" = "$1" ] && [ "${st#* }" -ge "$2" ]
}
rd_wait_for "two failed attempts while Orthanc is down" 30 outbox_is pending 2 \
    && pass "pending while Orthanc is down ($RD_WAIT_SAID)" || fail "while Orthanc is down: $RD_WAIT_SAID"
start_orthanc || fail "Orthanc did not restart"
rd_wait_for "the delivery once Orthanc is back" 30 outbox_is done 3 \
    && pass "delivered to Orthanc after retries ($RD_WAIT_SAID)" || fail "after Orthanc came back: $RD_WAIT_SAID"
found=$(api /tools/find -X POST -d "{\"Level\":\"Instance\",\"Query\":{\"SOPInstanceUID\":\"$SOP3\"}}")
case "$found" in *[0-9a-f]*) pass "Orthanc's REST API shows the delivered instance" ;;
*) fail "Orthanc does not show $SOP3: $found" ;; esac

kill -TERM $SERVER; wait $SERVER
[ $? -eq 0 ] && pass "radraft stopped cleanly" || fail "radraft exit status"
SERVER=
if [ $FAILS -ne 0 ]; then
    echo "$FAILS check(s) failed"
    exit 1
fi
echo "all checks passed"
