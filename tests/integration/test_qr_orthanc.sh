#!/bin/bash
# batch --from-pacs against Orthanc (Debian package orthanc) as the PACS, on loopback. Orthanc
# holds four chest studies dated January to March 2024, the same chest study type in 2019 and
# in April 2024 (outside the range asked), and a CT study inside it. Checked:
#   - C-GET drafts exactly the four chest radiographs in the range, removes what it
#     retrieved, and a rerun retrieves nothing again;
#   - C-MOVE to radraft's own listener does the same (with --keep, the files stay), and the
#     draft SRs sent back to Orthanc land in the source studies;
#   - DICOMweb (QIDO-RS, WADO-RS; Debian orthanc-dicomweb) does the same;
#   - --import-reports puts the studies' own SRs (the drafts sent back) into the archive;
#   - date pages with too many matches are split (qr.page_max_matches 1), and a query that
#     cannot be paged is refused;
#   - kill -9 in the middle, then a rerun: every study drafted exactly once;
#   - Orthanc stopped in the middle: the run retries and finishes when it is back;
#   - an unreachable PACS, a refused association and a move destination the PACS does not
#     know: clear errors, nothing recorded;
#   - a C-FIND answer with an invalid Study Instance UID (DCMTK's dcmqrscp as the PACS) is
#     left out and counted.
#
# usage: bash test_qr_orthanc.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
WORK=$3
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib_ports.sh"
. "$HERE/lib_wait.sh"
. "$HERE/lib_store.sh"
for tool in Orthanc curl sqlite3 dcmodify dcmdump dcmqrscp dcmqridx; do
    command -v $tool >/dev/null || { echo "FATAL: $tool not installed (bash scripts/setup.sh --test)" >&2; exit 1; }
done
DICOMWEB_PLUGIN=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
[ -f $DICOMWEB_PLUGIN ] || { echo "FATAL: $DICOMWEB_PLUGIN missing (orthanc-dicomweb; bash scripts/setup.sh --test)" >&2; exit 1; }
FAILS=0
ORTHANC=
BATCH=
HOLDER=
QRSCP=
cleanup() { kill -9 $ORTHANC $BATCH $HOLDER $QRSCP 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
api() { curl -s --max-time 20 "http://127.0.0.1:$OR_HTTP$1" "${@:2}"; }
db() { rd_db "$1" "$2"; }
tag() { dcmdump +P "$1" "$2" 2>/dev/null | head -1 | sed -e 's/^[^[]*\[//' -e 's/\].*$//'; }

# --- the PACS's content ---
"$RADRAFT" samples --out s --size 256 >/dev/null || { fail "samples"; exit 1; }
mkdir -p extra/old extra/ct extra/april
cp s/RDS0001/*.dcm extra/old/ && cp s/RDS0002/*.dcm extra/ct/ && cp s/RDS0003/*.dcm extra/april/
# New studies of their own (new UIDs), dated outside the range, or a CT inside it.
newuid() { python3 -c 'import uuid; print("2.25.%d" % uuid.uuid4().int)'; }
dcmodify -nb -gse -gin -m StudyInstanceUID=$(newuid) -m StudyDate=20190101 extra/old/*.dcm >/dev/null 2>&1
dcmodify -nb -gse -gin -m StudyInstanceUID=$(newuid) -m StudyDate=20240210 -m Modality=CT \
    -m SOPClassUID=1.2.840.10008.5.1.4.1.1.2 extra/ct/*.dcm >/dev/null 2>&1
dcmodify -nb -gse -gin -m StudyInstanceUID=$(newuid) -m StudyDate=20240415 extra/april/*.dcm >/dev/null 2>&1
want=$(for d in s/RDS000*; do tag StudyInstanceUID "$(ls $d/*.dcm | head -1)"; done | sort)
[ "$(echo "$want" | wc -l)" = 4 ] || { fail "four sample studies expected"; exit 1; }
for d in s/RDS000*; do tag StudyDate "$(ls $d/*.dcm | head -1)"; done | sort | tr '\n' ' ' >dates.txt
python3 -c "import sys; d=open('dates.txt').read().split(); sys.exit(0 if all('20240101' <= x <= '20240331' for x in d) else 1)" ||
    { fail "sample dates outside January to March 2024: $(cat dates.txt)"; exit 1; }

# Held for the whole test: Orthanc keeps its ports when it is stopped and started again, and
# Orthanc's configuration names radraft's listener port before radraft listens.
rd_hold_ports 3 || { fail "cannot hold ports"; exit 1; }
HOLDER=$RD_HOLDER
read OR_HTTP OR_DICOM RD_PORT <<<"$RD_PORTS"
mkdir -p orthanc-db
cat >orthanc.json <<EOF
{ "Name": "qr-test", "StorageDirectory": "$WORK/orthanc-db", "IndexDirectory": "$WORK/orthanc-db",
  "HttpPort": $OR_HTTP, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
  "DicomAet": "ORTHANC", "DicomPort": $OR_DICOM, "DicomCheckCalledAet": false,
  "Plugins": ["$DICOMWEB_PLUGIN"], "StorageCompression": false,
  "DicomModalities": { "radraft": ["RADRAFT", "127.0.0.1", $RD_PORT] } }
EOF
start_orthanc() {
    local off
    off=$(rd_log_size orthanc.log)
    Orthanc orthanc.json >>orthanc.log 2>&1 &
    ORTHANC=$!
    rd_wait_listening Orthanc $ORTHANC orthanc.log "$off" 60 $OR_DICOM $OR_HTTP || return 1
    rd_wait_for "Orthanc's REST API" 30 api /system
}
start_orthanc || { tail -20 orthanc.log; fail "Orthanc did not start"; exit 1; }
for f in $(find s extra -name '*.dcm'); do
    api /instances -X POST --data-binary @"$f" >/dev/null || fail "upload $f"
done
[ "$(api /statistics | python3 -c 'import json,sys; print(json.load(sys.stdin)["CountStudies"])')" = 7 ] &&
    pass "Orthanc holds 7 studies" || fail "Orthanc: $(api /statistics)"
PACS=ORTHANC@127.0.0.1:$OR_DICOM
RANGE="--since 20240101 --until 20240331"

drafted_studies() { db "$1" "SELECT study_uid FROM reviews ORDER BY study_uid" | sort; }

# --- C-GET ---
"$RADRAFT" batch --from-pacs "$PACS" $RANGE --data-dir get >get.log 2>&1 || { fail "batch by C-GET"; tail -20 get.log; }
[ "$(drafted_studies get)" = "$want" ] && pass "C-GET: exactly the 4 chest radiographs of the range drafted" ||
    fail "C-GET drafted: $(drafted_studies get | tr '\n' ' ')"
[ "$(db get "SELECT state, COUNT(*) FROM qr_studies GROUP BY state")" = "drafted|4" ] &&
    pass "4 studies recorded drafted" || fail "states: $(db get "SELECT state, COUNT(*) FROM qr_studies GROUP BY state")"
[ -z "$(find get/qr -name '*.dcm' 2>/dev/null)" ] && pass "the retrieved files are removed" ||
    fail "files left: $(find get/qr -name '*.dcm' | head -3)"
"$RADRAFT" batch --from-pacs "$PACS" $RANGE --data-dir get >get2.log 2>&1 || fail "rerun"
grep -q "0 to retrieve" get2.log && grep -q "batch: 0 studies" get2.log &&
    pass "a rerun retrieves nothing again" || fail "rerun: $(grep -E 'to retrieve|studies in' get2.log)"
[ "$(db get "SELECT COUNT(*) FROM reviews")" = 4 ] || fail "reviews after the rerun: $(db get "SELECT COUNT(*) FROM reviews")"

# --- pages: one match at most per C-FIND; the range is split down to days ---
"$RADRAFT" batch --from-pacs "$PACS" $RANGE --data-dir pages --set qr.page_max_matches=1 >pages.log 2>&1 ||
    { fail "batch with split pages"; tail -5 pages.log; }
[ "$(drafted_studies pages)" = "$want" ] && pass "pages split to one match each: the same 4 studies" ||
    fail "split pages drafted: $(drafted_studies pages | tr '\n' ' ')"
grep -q "asking it in two halves" pages.log || fail "no page was split"
"$RADRAFT" batch --from-pacs "$PACS" --data-dir nopage --set qr.page_max_matches=1 >nopage.log 2>&1
[ $? = 1 ] && grep -q "give --since" nopage.log && pass "an unpaged query over the cap is refused" ||
    fail "unpaged query: $(tail -2 nopage.log)"

# --- C-MOVE to radraft's listener, --keep; then the SRs back to Orthanc ---
"$RADRAFT" batch --from-pacs "$PACS" $RANGE --data-dir move --keep --set qr.retrieve=move \
    --set server.port=$RD_PORT >move.log 2>&1 || { fail "batch by C-MOVE"; tail -20 move.log; }
[ "$(drafted_studies move)" = "$want" ] && pass "C-MOVE: the same 4 studies drafted" ||
    fail "C-MOVE drafted: $(drafted_studies move | tr '\n' ' ')"
[ "$(find move/qr -name '*.dcm' | wc -l)" -ge 4 ] && pass "--keep: $(find move/qr -name '*.dcm' | wc -l) files kept" ||
    fail "--keep kept $(find move/qr -name '*.dcm' | wc -l) files"
"$RADRAFT" send move/sr/*-draft-sr.dcm --to "$PACS" >sendback.log 2>&1 || fail "sending the SRs to Orthanc"
sr_in_studies=0
for st in $want; do
    n=$(api /tools/find -X POST -d "{\"Level\": \"Series\", \"Query\": {\"StudyInstanceUID\": \"$st\", \"Modality\": \"SR\"}}" |
        python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
    [ "$n" -ge 1 ] && sr_in_studies=$((sr_in_studies + 1))
done
[ $sr_in_studies = 4 ] && pass "Orthanc files each draft SR in its source study" || fail "SRs in $sr_in_studies of 4 studies"

# --- --import-reports: the studies' own reports (the SRs now at Orthanc) seed the archive ---
"$RADRAFT" batch --from-pacs "$PACS" $RANGE --import-reports --data-dir imp >imp.log 2>&1 ||
    { fail "batch --import-reports"; tail -10 imp.log; }
imported=$(db imp "SELECT COUNT(DISTINCT study_uid) FROM archive WHERE source=1") # RD_ARCHIVE_IMPORT
[ "$imported" = 4 ] && [ "$(db imp "SELECT COUNT(*) FROM reviews")" = 0 ] &&
    [ "$(db imp "SELECT state, COUNT(*) FROM qr_studies GROUP BY state")" = "imported|4" ] &&
    pass "--import-reports: the 4 reported studies in the archive, none drafted" ||
    fail "--import-reports: $imported studies in the archive, $(db imp "SELECT COUNT(*) FROM reviews") drafts, states $(db imp "SELECT state, COUNT(*) FROM qr_studies GROUP BY state")"

# --- DICOMweb: QIDO-RS and WADO-RS at Orthanc's DICOMweb plugin ---
WEB=http://127.0.0.1:$OR_HTTP/dicom-web
"$RADRAFT" batch --from-dicomweb "$WEB" $RANGE --data-dir web >web.log 2>&1 || { fail "batch by DICOMweb"; tail -20 web.log; }
[ "$(drafted_studies web)" = "$want" ] && pass "DICOMweb: the same 4 studies drafted" ||
    fail "DICOMweb drafted: $(drafted_studies web | tr '\n' ' ')"
grep -q "WADO-RS" web.log || fail "the run does not say it retrieves by WADO-RS"
"$RADRAFT" batch --from-dicomweb "$WEB" $RANGE --data-dir web >web2.log 2>&1 && grep -q "0 to retrieve" web2.log &&
    pass "DICOMweb rerun retrieves nothing" || fail "DICOMweb rerun: $(grep 'to retrieve' web2.log)"
"$RADRAFT" batch --from-dicomweb "http://127.0.0.1:$OR_HTTP/no-such-root" $RANGE --data-dir web404 >web404.log 2>&1
[ $? = 1 ] && grep -q "QIDO-RS.*HTTP 404" web404.log && pass "a wrong DICOMweb root: $(grep -m1 -o 'QIDO-RS.*HTTP 404' web404.log)" ||
    fail "wrong DICOMweb root: $(tail -2 web404.log)"
"$RADRAFT" batch --from-dicomweb "http://user@127.0.0.1/dicom-web" --data-dir webbad >webbad.log 2>&1
[ $? = 2 ] && pass "a DICOMweb URL with a user is refused" || fail "DICOMweb URL with a user: $(tail -1 webbad.log)"

# --- garbage in a C-FIND answer: DCMTK's dcmqrscp holding a study whose Study Instance UID
# is invalid (a leading zero, "1.02.3") beside a valid one ---
mkdir -p qrscp/db
cp s/RDS0001/pa.dcm qrscp/good.dcm
cp s/RDS0003/lateral.dcm qrscp/bad.dcm
dcmodify -nb -gin -m StudyInstanceUID=1.02.3 qrscp/bad.dcm >/dev/null 2>&1
QR_PORT=$(rd_free_port)
cat >qrscp/qr.cfg <<EOF
NetworkTCPPort = $QR_PORT
MaxPDUSize = 16384
MaxAssociations = 16
HostTable BEGIN
HostTable END
VendorTable BEGIN
VendorTable END
AETable BEGIN
QRSCP $WORK/qrscp/db RW (200, 1024mb) ANY
AETable END
EOF
dcmqridx qrscp/db qrscp/good.dcm qrscp/bad.dcm || fail "dcmqridx"
dcmqrscp -c qrscp/qr.cfg >qrscp.log 2>&1 &
QRSCP=$!
rd_wait_listening dcmqrscp $QRSCP qrscp.log 0 20 $QR_PORT || fail "dcmqrscp did not start"
"$RADRAFT" batch --from-pacs QRSCP@127.0.0.1:$QR_PORT $RANGE --data-dir garbage >garbage.log 2>&1 ||
    { fail "batch from dcmqrscp"; tail -5 garbage.log; }
grep -q "1 answers without a valid Study Instance UID" garbage.log &&
    [ "$(db garbage "SELECT COUNT(*) FROM qr_studies")" = 1 ] &&
    [ "$(db garbage "SELECT state FROM qr_studies")" = drafted ] &&
    pass "dcmqrscp: the answer with an invalid Study Instance UID left out, the valid study drafted" ||
    fail "dcmqrscp: $(grep -E 'without a valid|drafted  ' garbage.log) rows: $(db garbage "SELECT study_uid, state FROM qr_studies")"
# dcmqrscp knows only its own AE title: another called AE is a refused association.
"$RADRAFT" batch --from-pacs NOSUCHAE@127.0.0.1:$QR_PORT $RANGE --data-dir refused >refused.log 2>&1
[ $? = 1 ] && grep -qi "rejected the association\|cannot associate" refused.log &&
    [ "$(db refused "SELECT COUNT(*) FROM qr_studies" 2>/dev/null || echo 0)" = 0 ] &&
    pass "a refused association: $(grep -m1 -oi 'cannot associate.*\|rejected the association.*' refused.log | cut -c1-120)" ||
    fail "refused association: $(tail -2 refused.log)"
kill $QRSCP 2>/dev/null
wait $QRSCP 2>/dev/null

# --- errors: a PACS that is not there, a move destination it does not know ---
"$RADRAFT" batch --from-pacs "ORTHANC@127.0.0.1:$(rd_free_port)" $RANGE --data-dir down >down.log 2>&1
[ $? = 1 ] && grep -q "cannot associate" down.log && pass "unreachable PACS: $(grep -m1 'cannot associate' down.log | cut -c1-140)" ||
    fail "unreachable PACS: $(tail -2 down.log)"
[ "$(db down "SELECT COUNT(*) FROM qr_studies" 2>/dev/null || echo 0)" = 0 ] || fail "an unreachable PACS left studies recorded"
"$RADRAFT" batch --from-pacs "$PACS" $RANGE --limit 1 --data-dir nodest --set qr.retrieve=move \
    --set qr.move_destination=NOBODY --set server.port=$(rd_free_port) >nodest.log 2>&1
[ $? = 1 ] && grep -qE "(does not know|knows) the move destination NOBODY" nodest.log &&
    pass "unknown move destination: $(grep -m1 -oE 'status 0x[0-9a-f]+.*move destination NOBODY' nodest.log)" ||
    fail "unknown move destination: $(tail -3 nodest.log)"
[ "$(db nodest "SELECT state FROM qr_studies WHERE state<>'queried'")" = failed ] || fail "the refused study is not failed"
"$RADRAFT" batch --from-pacs "$PACS" --since 2024-01-01 --data-dir bad >bad.log 2>&1
[ $? = 2 ] && pass "a malformed date is a usage error" || fail "--since 2024-01-01 accepted"

# --- kill -9 in the middle, then a rerun: each study drafted once ---
"$RADRAFT" batch --from-pacs "$PACS" $RANGE --data-dir kill --set qr.studies_per_minute=40 >kill.log 2>&1 &
BATCH=$!
drafted_one() { n=$(db kill "SELECT COUNT(*) FROM qr_studies WHERE state='drafted'" 2>/dev/null); echo "drafted: ${n:-0}"; [ "${n:-0}" -ge 1 ]; }
rd_wait_for "a first study drafted" 60 drafted_one || fail "kill: $RD_WAIT_SAID"
if kill -0 $BATCH 2>/dev/null; then
    kill -9 $BATCH
    wait $BATCH 2>/dev/null
    BATCH=
    before=$(db kill "SELECT COUNT(*) FROM qr_studies WHERE state='drafted'")
    [ "$before" -lt 4 ] && pass "killed with $before of 4 drafted" || fail "the run had finished before the kill"
    "$RADRAFT" batch --from-pacs "$PACS" $RANGE --data-dir kill >kill2.log 2>&1 || fail "rerun after kill -9"
    [ "$(drafted_studies kill)" = "$want" ] &&
        [ "$(db kill "SELECT COUNT(*) FROM reviews")" = 4 ] && pass "after the rerun: each study drafted once" ||
        fail "after kill and rerun: $(db kill "SELECT study_uid, COUNT(*) FROM reviews GROUP BY study_uid")"
else
    fail "the run finished before it could be killed (studies_per_minute did not slow it)"
fi

# --- Orthanc stopped in the middle: retried with backoff, then finished ---
"$RADRAFT" batch --from-pacs "$PACS" $RANGE --data-dir outage --set qr.studies_per_minute=40 \
    --set pipeline.retry_initial_seconds=1 --set pipeline.retry_max_seconds=2 \
    --set pipeline.retry_max_attempts=30 >outage.log 2>&1 &
BATCH=$!
drafted_out() { n=$(db outage "SELECT COUNT(*) FROM qr_studies WHERE state='drafted'" 2>/dev/null); echo "drafted: ${n:-0}"; [ "${n:-0}" -ge 1 ]; }
rd_wait_for "a first study drafted" 60 drafted_out || fail "outage: $RD_WAIT_SAID"
kill $ORTHANC
wait $ORTHANC 2>/dev/null
retried() { grep -c "retrying in" outage.log; grep -q "retrying in" outage.log; }
rd_wait_for "a retry while Orthanc is down" 30 retried && pass "a failed retrieval is retried ($RD_WAIT_SAID retries logged)" ||
    fail "no retry while Orthanc was down"
start_orthanc || fail "Orthanc did not restart"
rd_wait_for "the run to finish" 90 bash -c "! kill -0 $BATCH 2>/dev/null" || fail "the run did not finish"
wait $BATCH
rc=$?
BATCH=
[ $rc = 0 ] && [ "$(drafted_studies outage)" = "$want" ] && pass "Orthanc back: the run finished with all 4 drafted" ||
    fail "after the outage: exit $rc, drafted $(drafted_studies outage | wc -l); $(tail -3 outage.log)"

if [ "$FAILS" -gt 0 ]; then
    echo "$FAILS failure(s)"
    exit 1
fi
echo "all query/retrieve checks passed"
