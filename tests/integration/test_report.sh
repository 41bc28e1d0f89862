#!/bin/bash
# radraft report / sign against DCMTK's and dicom3tools' own readers: every SR written must
# pass dciodvfy without errors, dsrdump must show the TID 2000 tree and the flags, and the
# header must carry the source's patient and study (ISO 2022 names included, as UTF-8).
# Drafting with a (random-weights) model and a small archive runs the pipeline's stages;
# --scores overrides them.
#
# usage: bash test_report.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
DATA=$(readlink -f "$2")
WORK=$3
FAILS=0

fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
}
need() {
    command -v "$1" >/dev/null 2>&1 || { echo "FATAL: $1 not installed" >&2; exit 1; }
}
need dciodvfy
need dsrdump
need dcmdump
need dcmodify
need python3
[ -d "$DATA/dicom/edge" ] || { echo "FATAL: shared data not found at $DATA" >&2; exit 1; }

. "$(dirname "$0")/lib_ports.sh"
. "$(dirname "$0")/lib_wait.sh"
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
cd "$WORK" || exit 1

# An attribute's value as dcmdump prints it (first occurrence, top level or nested).
tagval() {
    dcmdump +L +P "$2" "$1" 2>/dev/null | head -1 | sed -e 's/^[^[]*\[//' -e 's/\].*$//'
}

# dciodvfy prints "Error - ..." lines for every violation of the IOD.
check_iod() {
    local out
    out=$(dciodvfy "$1" 2>&1)
    if echo "$out" | grep -q "^Error"; then
        fail "dciodvfy reports errors for $1:"
        echo "$out" >&2
    fi
    echo "$out" | grep -q "^EnhancedSR" || fail "dciodvfy does not see an Enhanced SR in $1: $out"
}

# ---- the source study: radraft's synthetic samples ------------------------------------
"$RADRAFT" samples --out samples >samples.log 2>&1 || { cat samples.log; echo "FATAL: radraft samples failed" >&2; exit 1; }
PA=samples/RDS0002/pa.dcm
LAT=samples/RDS0002/lateral.dcm
[ -f "$PA" ] && [ -f "$LAT" ] || { echo "FATAL: sample files missing" >&2; exit 1; }

# ---- draft ---------------------------------------------------------------------------
"$RADRAFT" report "$LAT" "$PA" --scores '{"Cardiomegaly": 0.85, "Effusion": 0.35}' \
    -o draft.dcm --json >draft.json 2>draft.err
rc=$?
[ $rc -eq 0 ] || { fail "report exited $rc"; cat draft.err >&2; }
grep -q "scores given on the command line; no model" draft.err || fail "report did not say the scores came from the command line"
python3 - draft.json "$PA" <<'EOF' || fail "report --json content"
import json, sys
d = json.load(open(sys.argv[1]))
f = {x["name"]: x for x in d["findings"]}
assert d["frontal"] == sys.argv[2], d["frontal"]
assert d["frontal_rule"] == "view position PA", d["frontal_rule"]
assert f["Cardiomegaly"]["state"] == "present" and abs(f["Cardiomegaly"]["score"] - 0.85) < 1e-9
assert f["Effusion"]["state"] == "uncertain"
assert f["Mass"]["state"] in ("absent", "not mentioned")
assert len(d["findings"]) == 15
assert "enlarged" in d["findings_text"].lower() or "cardiomegaly" in d["findings_text"].lower()
assert d["impression_text"]
assert d["sr"]["path"] == "draft.dcm" and d["sr"]["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.88.22"
assert d["sr"]["evidence_instances"] == 2
EOF
[ -f draft.dcm ] || { fail "draft.dcm not written"; exit 1; }
check_iod draft.dcm

dsrdump +Pc +Pt +Pl draft.dcm >draft.dsr 2>/dev/null || fail "dsrdump cannot read draft.dcm"
for want in "Enhanced SR Document" \
    "Completion Flag     : PARTIAL" \
    "Verification Flag   : UNVERIFIED" \
    "Preliminary Flag    : PRELIMINARY" \
    '<CONTAINER:(18748-4,LN,"Diagnostic Imaging Report")=SEPARATE>  # TID 2000 (DCMR)' \
    '<has concept mod CODE:(121049,DCM,"Language of Content Item and Descendants")=(en,RFC5646,"English")>' \
    '<has obs context CODE:(121005,DCM,"Observer Type")=(121007,DCM,"Device")>' \
    '<has obs context UIDREF:(121012,DCM,"Device Observer UID")=' \
    '<has obs context TEXT:(121013,DCM,"Device Observer Name")="radraft">' \
    '<has obs context TEXT:(121014,DCM,"Device Observer Manufacturer")="radraft">' \
    '<has obs context TEXT:(121015,DCM,"Device Observer Model Name")="radraft ' \
    '<has concept mod CODE:(121058,DCM,"Procedure reported")=(399208008,SCT,"Plain chest X-ray")>' \
    '<contains CONTAINER:(121070,DCM,"Findings")=SEPARATE>' \
    '<contains TEXT:(121071,DCM,"Finding")="' \
    '<contains CODE:(121071,DCM,"Finding")=(8186001,SCT,"Cardiomegaly")>' \
    '<contains CONTAINER:(121072,DCM,"Impressions")=SEPARATE>' \
    '<contains TEXT:(121073,DCM,"Impression")="'; do
    grep -qF -- "$want" draft.dsr || fail "dsrdump of the draft lacks: $want"
done
grep -q "Verifying Observers" draft.dsr && fail "the draft has a verifying observer"
# The uncertain effusion is in the text only: TID 2002 has no row for a certainty.
grep -qF '60046008' draft.dsr && fail "the draft codes the uncertain effusion"
grep -qF '99RADRAFT' draft.dsr && fail "the draft uses the private scheme with standard codes at hand"

# The header: patient and study copied from the source; a new SR series in the same study.
for tag in PatientName PatientID PatientBirthDate PatientSex StudyInstanceUID StudyDate \
    StudyTime AccessionNumber ReferringPhysicianName StudyID; do
    a=$(tagval "$PA" "$tag")
    b=$(tagval draft.dcm "$tag")
    [ -n "$a" ] || fail "source has no $tag (test premise)"
    [ "$a" = "$b" ] || fail "$tag: source '$a', SR '$b'"
done
[ "$(tagval draft.dcm Modality)" = "SR" ] || fail "Modality is not SR"
[ "$(tagval draft.dcm SpecificCharacterSet)" = "ISO_IR 192" ] || fail "Specific Character Set is not ISO_IR 192"
[ "$(tagval draft.dcm SeriesNumber)" = "9001" ] || fail "series number is not 9001"
[ "$(tagval draft.dcm SeriesInstanceUID)" != "$(tagval "$PA" SeriesInstanceUID)" ] || fail "the SR is in the image series"
dcmdump draft.dcm >draft.dump 2>/dev/null
for f in "$PA" "$LAT"; do
    uid=$(tagval "$f" SOPInstanceUID)
    grep -A200 "CurrentRequestedProcedureEvidenceSequence" draft.dump | grep -qF "[$uid]" ||
        fail "evidence does not reference $f ($uid)"
done
grep -A12 "ContributingEquipmentSequence" draft.dump | grep -q "Manufacturer.*radraft\|\[radraft\].*Manufacturer" ||
    fail "Contributing Equipment Sequence does not name radraft"
grep -A20 "ContributingEquipmentSequence" draft.dump | grep -q "\[109102\]" ||
    fail "Contributing Equipment purpose is not Processing Equipment (109102)"

# DCMTK's generic reader (radraft info) sees an SR of the source study.
"$RADRAFT" info draft.dcm >draft.info 2>&1 || fail "radraft info draft.dcm"
python3 - draft.info "$(tagval "$PA" StudyInstanceUID)" <<'EOF' || fail "radraft info of the SR"
import json, sys
d = json.loads(open(sys.argv[1]).read())
assert d["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.88.22", d
assert d["modality"] == "SR" and d["study_uid"] == sys.argv[2], d
EOF

# ---- sign --------------------------------------------------------------------------
"$RADRAFT" sign draft.dcm --verifier "Doe^Jane" --organization "General Hospital" \
    --impression "Cardiomegaly. Small left pleural effusion." --datetime 20260102103000 \
    -o signed.dcm --json >signed.json 2>signed.err || { fail "sign failed"; cat signed.err >&2; }
[ -f signed.dcm ] || { fail "signed.dcm not written"; exit 1; }
check_iod signed.dcm
dsrdump +Pc +Pl signed.dcm >signed.dsr 2>/dev/null || fail "dsrdump cannot read signed.dcm"
for want in "Completion Flag     : COMPLETE" \
    "Verification Flag   : VERIFIED" \
    "Preliminary Flag    : FINAL" \
    "Predecessor Docs    : 1" \
    "Verifying Observers : 2026-01-02 10:30:00, Doe^Jane, General Hospital" \
    "Series              : radraft signed reports (#9002)" \
    '<has obs context CODE:(121005,DCM,"Observer Type")=(121006,DCM,"Person")>' \
    '<has obs context PNAME:(121008,DCM,"Person Observer Name")="Doe^Jane">' \
    '<has obs context TEXT:(121009,DCM,"Person Observer'"'"'s Organization Name")="General Hospital">' \
    '<has obs context CODE:(121005,DCM,"Observer Type")=(121007,DCM,"Device")>' \
    '<contains TEXT:(121073,DCM,"Impression")="Cardiomegaly. Small left pleural effusion.">' \
    '<contains CODE:(121071,DCM,"Finding")=(60046008,SCT,"Pleural effusion")>'; do
    grep -qF -- "$want" signed.dsr || fail "dsrdump of the signed SR lacks: $want"
done
draft_uid=$(tagval draft.dcm SOPInstanceUID)
signed_uid=$(tagval signed.dcm SOPInstanceUID)
[ "$draft_uid" != "$signed_uid" ] || fail "signed SR reuses the draft's SOP Instance UID"
# The signed series: its own, not the draft's; its UID depends on the study alone (a
# version-5 UUID of the Study Instance UID, checked against Python's uuid module).
signed_series=$(tagval signed.dcm SeriesInstanceUID)
[ "$signed_series" != "$(tagval draft.dcm SeriesInstanceUID)" ] || fail "signed SR is in the draft's series"
want_series=$(python3 -c 'import sys, uuid; ns = uuid.UUID(int=304579798466862766817839100710713265282); print("2.25.%d" % uuid.uuid5(ns, sys.argv[1]).int)' "$(tagval draft.dcm StudyInstanceUID)")
[ "$signed_series" = "$want_series" ] || fail "signed series UID $signed_series, expected $want_series"
[ "$(tagval signed.dcm SeriesDescription)" = "radraft signed reports" ] || fail "signed series description"
[ "$(tagval draft.dcm SeriesDescription)" = "Unverified AI draft report (radraft)" ] || fail "draft series description"
# The radiologist as author (Author Observer Sequence, Observer Type PSN).
dcmdump signed.dcm 2>/dev/null | grep -A12 "AuthorObserverSequence" >signed.author
for want in "[PSN]" "[Doe^Jane]" "[General Hospital]"; do
    grep -qF -- "$want" signed.author || fail "Author Observer Sequence lacks $want"
done
dcmdump signed.dcm 2>/dev/null | grep -A12 "PredecessorDocumentsSequence" | grep -qF "[$draft_uid]" ||
    fail "Predecessor Documents Sequence does not name the draft"
dcmdump signed.dcm 2>/dev/null | grep -q "ContributingEquipmentSequence" || fail "signed SR lost the Contributing Equipment"
"$RADRAFT" sign signed.dcm --verifier "Doe^Jane" --organization "X" -o again.dcm 2>/dev/null &&
    fail "signing a signed SR succeeded"

# ---- ISO 2022 names (Japanese, Korean) come out as UTF-8 ------------------------------
for pair in "chrJapMulti-CR-chest.dcm:やまだ^たろう" "chrKoreanMulti-CR-chest.dcm:김희중"; do
    f=${pair%%:*}
    name=${pair#*:}
    "$RADRAFT" report "$DATA/dicom/edge/$f" --scores '{"Nodule": 0.9}' -o "sr-$f" >/dev/null 2>"sr-$f.err" ||
        { fail "report on $f"; cat "sr-$f.err" >&2; continue; }
    check_iod "sr-$f"
    [ "$(tagval "sr-$f" PatientName)" = "$name" ] || fail "$f: PatientName '$(tagval "sr-$f" PatientName)', expected '$name'"
    [ "$(tagval "sr-$f" SpecificCharacterSet)" = "ISO_IR 192" ] || fail "$f: not UTF-8"
    dsrdump "sr-$f" 2>/dev/null | grep -qF "Patient             : $name" || fail "$f: dsrdump does not show $name"
done

# ---- frontal by image content when View Position is missing ---------------------------
mkdir -p noview
cp "$PA" noview/a.dcm && cp "$LAT" noview/b.dcm
dcmodify -nb -ea "(0018,5101)" noview/a.dcm noview/b.dcm >/dev/null 2>&1 || fail "dcmodify"
[ -z "$(tagval noview/a.dcm ViewPosition)" ] || fail "View Position not removed (test premise)"
"$RADRAFT" report noview/b.dcm noview/a.dcm --scores '{}' -o noview.dcm --json >noview.json 2>/dev/null ||
    fail "report without view positions"
python3 - noview.json <<'EOF' || fail "frontal chosen by content"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["frontal"] == "noview/a.dcm", d["frontal"]
assert d["frontal_rule"] == "most left-right symmetric image", d["frontal_rule"]
assert all(x["state"] != "present" for x in d["findings"][:14])
EOF
check_iod noview.dcm

# ---- source values invalid for their VR are copied as is (the SR must match its images)
LONG="Averyveryverylongfamilyname-Averyveryverylongfamilyname-Averyverylongone^Given"
cp "$PA" long.dcm && dcmodify -nb -ma "(0010,0010)=$LONG" -ma "(0008,0020)=2024-01-02" long.dcm >/dev/null 2>&1 || fail "dcmodify"
"$RADRAFT" report long.dcm --scores '{}' -o long-sr.dcm >/dev/null 2>long.err || fail "report with a long name"
grep -q "copied as is" long.err || fail "no warning about the invalid source value"
[ "$(tagval long-sr.dcm PatientName)" = "$LONG" ] || fail "long patient name not copied"
[ "$(tagval long-sr.dcm StudyDate)" = "2024-01-02" ] || fail "invalid study date not copied as is"

# ---- default output name, scores from a file -----------------------------------------
mkdir -p defaults && echo '{"Pneumothorax": 0.95}' >defaults/scores.json
(cd defaults && "$RADRAFT" report "../$PA" --scores scores.json >out.txt 2>err.txt) || fail "report with a scores file"
study=$(tagval "$PA" StudyInstanceUID)
[ -f "defaults/$study-draft-sr.dcm" ] || fail "default output defaults/$study-draft-sr.dcm missing"
head -1 defaults/out.txt | grep -qF "$study-draft-sr.dcm" || fail "report did not print the SR path"
grep -qi "pneumothorax" defaults/out.txt || fail "the report text does not mention the pneumothorax"

# ---- refusals --------------------------------------------------------------------------
env -u RADRAFT_CONFIG "$RADRAFT" report "$PA" --set encoder.model= -o x.dcm >/dev/null 2>err1.txt
[ $? -eq 2 ] || fail "report without --scores or a model did not exit 2"
grep -q -- "--scores" err1.txt || fail "report without --scores does not say how to give them"
"$RADRAFT" report "$PA" --scores '{"Heartache": 0.5}' -o x.dcm >/dev/null 2>err2.txt
[ $? -eq 2 ] || fail "unknown finding in --scores accepted"
grep -q "unknown finding 'Heartache'" err2.txt || fail "unknown finding: not named: $(cat err2.txt)"
"$RADRAFT" report "$PA" --scores '{"Mass": 1.5}' -o x.dcm >/dev/null 2>err4.txt
[ $? -eq 2 ] || fail "score 1.5 accepted"
grep -q "Mass: the score must be a number in \[0, 1\]" err4.txt || fail "score 1.5: not named: $(cat err4.txt)"
"$RADRAFT" report "$PA" samples/RDS0001/pa.dcm --scores '{}' -o x.dcm >/dev/null 2>err3.txt
[ $? -ne 0 ] || fail "instances of two studies accepted"
grep -q "different studies" err3.txt || fail "two studies: no clear message"
[ -f x.dcm ] && fail "a refused report left x.dcm"
"$RADRAFT" sign draft.dcm -o y.dcm >/dev/null 2>err5.txt
[ $? -eq 2 ] || fail "sign without verifier did not exit 2"
grep -q -- "--verifier and --organization" err5.txt || fail "sign without verifier: $(cat err5.txt)"
[ -f y.dcm ] && fail "a refused sign left y.dcm"

# ---- drafting with the encoder and the archive, as the pipeline does -------------------
# A random-weights model and an archive of 40 NIH images: the numbers mean nothing, but
# every stage runs (embed, retrieve, combine, generate, write).
"$RADRAFT" model init --arch resnet-small --seed 1 --out model >model.log 2>&1 ||
    { cat model.log >&2; fail "model init"; }
"$RADRAFT" archive import --nih "$DATA/nih/labels.csv" --images "$DATA/nih/images" --limit 40 \
    --model model --data-dir archive >import.log 2>&1 || { cat import.log >&2; fail "archive import"; }
"$RADRAFT" report "$LAT" "$PA" --model model --data-dir archive -o model-out/draft.dcm --json \
    >model.json 2>model.err
rc=$?
[ $rc -eq 0 ] || { fail "report with a model exited $rc"; cat model.err >&2; }
grep -q "scores given on the command line" model.err && fail "report with a model says the scores came from the command line"
[ -f model-out/draft.dcm ] && check_iod model-out/draft.dcm || fail "report with a model wrote no SR"
python3 - model.json "$PA" "$(tagval "$PA" StudyInstanceUID)" <<'EOF2' || fail "report --json with a model"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["scores_source"] == "model", d["scores_source"]
assert d["model_version"] == "resnet-small-random-seed1", d["model_version"]
assert d["archive_size"] == 40, d["archive_size"]
assert d["frontal"] == sys.argv[2] and d["frontal_rule"] == "view position PA", d["frontal"]
assert d["study_uid"] == sys.argv[3]
nb = d["neighbours"]
assert 1 <= len(nb) <= 40, len(nb)
sims = [x["similarity"] for x in nb]
assert all(-1 <= s <= 1 for s in sims) and sims == sorted(sims, reverse=True), sims
assert all(isinstance(x["id"], int) and x["study_uid"].startswith("nih:") for x in nb), nb
assert len({x["study_uid"] for x in nb}) == len(nb), "a study twice among the neighbours"
assert len(d["findings"]) == 15
for f in d["findings"][:14]:
    for k in ("score", "encoder", "votes"):
        assert 0 <= f[k] <= 1, (f["name"], k, f[k])
    assert f["state"] in ("present", "uncertain", "absent", "not mentioned"), f
# The combined score lies between the encoder's score and the neighbours' vote.
    lo, hi = sorted((f["encoder"], f["votes"]))
    assert lo - 1e-6 <= f["score"] <= hi + 1e-6, f
assert d["findings_text"] and d["impression_text"]
assert d["sr"]["path"] == "model-out/draft.dcm" and d["sr"]["evidence_instances"] == 2
EOF2
dsrdump +Pc model-out/draft.dcm 2>/dev/null | grep -qF '(121015,DCM,"Device Observer Model Name")="radraft resnet-small ' ||
    fail "the SR's device observer does not name the model"
[ "$(tagval model-out/draft.dcm ManufacturerModelName)" = "resnet-small" ] || fail "the SR does not name the model"
. "$(dirname "$0")/lib_store.sh"
for t in reviews outbox study_versions; do
    [ "$(rd_db archive "SELECT COUNT(*) FROM $t")" = 0 ] ||
        fail "report recorded something in the data directory ($t)"
done
[ -d archive/sr ] && fail "report created the pipeline's SR folder"

# The same files with --scores: the override wins, no model is used.
"$RADRAFT" report "$LAT" "$PA" --model model --data-dir archive --scores '{"Cardiomegaly": 0.85}' \
    -o model-out/override.dcm --json >override.json 2>override.err || fail "report --scores with a model"
grep -q "scores given on the command line; no model" override.err || fail "--scores with a model: no override note"
python3 - override.json <<'EOF2' || fail "--scores with a model: the given scores were not used"
import json, sys
d = json.load(open(sys.argv[1]))
f = {x["name"]: x for x in d["findings"]}
assert d["scores_source"] == "command line (no model)" and d["model_version"] is None, d
assert d["neighbours"] == []
assert f["Cardiomegaly"]["state"] == "present" and abs(f["Cardiomegaly"]["score"] - 0.85) < 1e-9
assert all(f[n]["score"] == 0 and f[n]["encoder"] is None for n in f if n not in ("Cardiomegaly", "No Finding"))
EOF2

# Not a chest radiograph: no draft, and the reason.
"$RADRAFT" report "$DATA/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm" --model model \
    --data-dir archive -o ct.dcm >/dev/null 2>ct.err
[ $? -eq 1 ] || fail "report of a CT study with a model did not exit 1"
grep -q "not a chest radiograph" ct.err || fail "CT study: no reason given: $(cat ct.err)"
[ -f ct.dcm ] && fail "a CT study got a draft"

# No model and no scores: a usage error that names both ways.
env -u RADRAFT_CONFIG "$RADRAFT" report "$PA" --set encoder.model= -o nomodel.dcm >/dev/null 2>nomodel.err
[ $? -eq 2 ] || fail "report without model or scores did not exit 2"
grep -q -- "--model" nomodel.err && grep -q "encoder.model" nomodel.err ||
    fail "report without model or scores does not name --model and encoder.model: $(cat nomodel.err)"
[ -f nomodel.dcm ] && fail "report without model or scores wrote an SR"

# ---- a real PACS: Orthanc accepts the draft and the signed SR by C-STORE ----------------
need Orthanc
need storescu
need curl
mkdir -p orthanc/db
# Orthanc on two new ports, again on others when one was taken.
start_orthanc() {
    local off
    read -r DPORT HPORT < <(rd_free_ports 2)
    cat >orthanc/orthanc.json <<JSON
{"Name": "radraft-test", "StorageDirectory": "$WORK/orthanc/db", "IndexDirectory": "$WORK/orthanc/db",
 "DicomAet": "ORTHANC", "DicomPort": $DPORT, "HttpPort": $HPORT, "RemoteAccessAllowed": false,
 "AuthenticationEnabled": false, "DicomCheckCalledAet": false, "Plugins": []}
JSON
    off=$(rd_log_size orthanc/log.txt)
    Orthanc orthanc/orthanc.json >>orthanc/log.txt 2>&1 &
    OPID=$!
    rd_wait_listening Orthanc $OPID orthanc/log.txt "$off" 60 $DPORT $HPORT
}
OPID=
rd_retry_port 5 start_orthanc || OPID=
up=0
[ -n "$OPID" ] && rd_wait_for "Orthanc's REST API" 30 curl -sf "http://127.0.0.1:$HPORT/system" && up=1
if [ $up -eq 1 ]; then
    storescu -aec ORTHANC 127.0.0.1 "$DPORT" draft.dcm signed.dcm sr-chrJapMulti-CR-chest.dcm \
        >storescu.log 2>&1 || { fail "storescu to Orthanc failed"; cat storescu.log >&2; }
    curl -sf "http://127.0.0.1:$HPORT/instances?expand" >orthanc/instances.json || fail "Orthanc REST"
    python3 - orthanc/instances.json "$draft_uid" "$signed_uid" <<'PY' || fail "Orthanc did not store the SRs as sent"
import json, sys
inst = json.load(open(sys.argv[1]))
uids = {i["MainDicomTags"]["SOPInstanceUID"] for i in inst}
assert sys.argv[2] in uids and sys.argv[3] in uids, uids
assert len(inst) == 3, len(inst)
PY
    curl -sf "http://127.0.0.1:$HPORT/patients?expand" >orthanc/patients.json || fail "Orthanc REST"
    python3 - orthanc/patients.json <<'PY' || fail "Orthanc shows other patient names"
import json, sys
names = {p["MainDicomTags"].get("PatientName") for p in json.load(open(sys.argv[1]))}
assert names == {"やまだ^たろう", "Synthetic^Cardiomegaly"}, names
PY
else
    fail "Orthanc did not start"
    cat orthanc/log.txt >&2
fi
kill "$OPID" 2>/dev/null
wait "$OPID" 2>/dev/null

if [ $FAILS -ne 0 ]; then
    echo "$FAILS check(s) failed" >&2
    exit 1
fi
echo "test_report: all checks passed"
