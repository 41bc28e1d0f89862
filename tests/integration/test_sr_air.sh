#!/bin/bash
# The IHE AI Results SRs (Comprehensive 3D SR, TID 1500) beside the draft and signed text
# reports, against the two validators (dciodvfy: the IOD and its defined terms; PixelMed's
# DicomSRValidator: the content tree against TID 1500 / 1501 / 1600 / 300 / 4019 and their
# context groups), dsr2html, and a round trip read by DCMTK's dsrdump (not radraft's own
# reader): for every one of the 14 findings the qualitative evaluation says the state the
# draft was made from (not mentioned is written absent), and the measurement group carries
# the draft's probability and its two thresholds; the signed AIR SR says the final states,
# what the labeler reads in the signed report's texts.
#
# PixelMed must report no error and no warning. dciodvfy must report no error; its only
# warnings allowed are two it cannot help, each one a requirement of issue 14 that its
# 2022 tables predate or that the code table imposes:
#   - "Unrecognized defined term <99RADRAFT> ... <Coding Scheme Designator>": the AIR SR
#     codes all 14 findings, so always Pleural thickening, which has no standard code in
#     models/finding-codes.json (the text SR test allows it for the same reason);
#   - the Device UID (0018,1002) in the Contributing Equipment Sequence (IHE AIR's per-model
#     Device UID), "not present in standard DICOM IOD", and the "Standard Extended SOP
#     Class" note that follows from it.
# The counts are printed, so that a change in either shows.
#
# usage: bash test_sr_air.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
WORK=$3
CODES=$(readlink -f "$(dirname "$0")/../../models/finding-codes.json")
PIXELMED=/usr/share/java/pixelmed.jar
FAILS=0

fail() {
    echo "FAIL: $*" >&2
    FAILS=$((FAILS + 1))
}
need() {
    command -v "$1" >/dev/null 2>&1 || { echo "FATAL: $1 not installed (bash scripts/setup.sh --test)" >&2; exit 1; }
}
need dciodvfy
need dsrdump
need dsr2html
need dcmdump
need java
need python3
[ -f "$PIXELMED" ] || { echo "FATAL: $PIXELMED missing (libpixelmed-java; bash scripts/setup.sh --test)" >&2; exit 1; }

rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
cd "$WORK" || exit 1

ALLOWED_DCIODVFY='Unrecognized defined term <99RADRAFT> for value 1 of attribute <Coding Scheme Designator>|Attribute is not present in standard DICOM IOD - \(0x0018,0x1002\) UI Device UID|Dicom dataset contains attributes not present in standard DICOM IOD - this is a Standard Extended SOP Class'

dciodvfy_check() {
    local f=$1 out bad
    out=$(dciodvfy "$f" 2>&1)
    echo "$out" >"$f.dciodvfy"
    echo "$out" | grep -q "^Comprehensive3DSR" || fail "dciodvfy does not see a Comprehensive 3D SR in $f"
    bad=$(echo "$out" | grep -E "^(Error|Warning)" | grep -vE "$ALLOWED_DCIODVFY")
    [ -z "$bad" ] || { fail "dciodvfy on $f:"; echo "$bad" >&2; }
    echo "dciodvfy $f: $(echo "$out" | grep -c '^Error') errors, $(echo "$out" | grep -c '^Warning') warnings (allowed: $(echo "$out" | grep -E '^Warning' | grep -cE "$ALLOWED_DCIODVFY"))"
}

pixelmed_check() {
    local f=$1 out
    out=$(java -Djdk.xml.xpathExprGrpLimit=0 -Djdk.xml.xpathExprOpLimit=0 -Djdk.xml.xpathTotalOpLimit=0 \
        -cp "$PIXELMED" com.pixelmed.validate.DicomSRValidator "$f" 2>&1)
    echo "$out" >"$f.pixelmed"
    echo "$out" | grep -q "Found Root Template TID_1500" || { fail "PixelMed did not find TID 1500 in $f:"; echo "$out" >&2; }
    echo "$out" | grep -q "IOD validation complete" || fail "PixelMed did not complete on $f"
    if echo "$out" | grep -qiE "^(Error|Warning)"; then
        fail "PixelMed on $f:"
        echo "$out" | grep -iE "^(Error|Warning)" >&2
    fi
    echo "PixelMed $f: $(echo "$out" | grep -ciE '^Error') errors, $(echo "$out" | grep -ciE '^Warning') warnings"
}

html_check() {
    local f=$1
    dsr2html "$f" >"$f.html" 2>"$f.html.err" || { fail "dsr2html cannot render $f"; cat "$f.html.err" >&2; return; }
    grep -q "Imaging Measurement Report" "$f.html" || fail "dsr2html of $f does not show the document title"
    grep -q "Qualitative Evaluations" "$f.html" || fail "dsr2html of $f does not show the qualitative evaluations"
}

# Round trip: the expected states (a JSON object {finding: state}, findings not named not
# mentioned) against the tree dsrdump prints; with scores (a JSON object) also each
# measurement group's probability and thresholds.
round_trip() {
    local f=$1 states=$2 scores=${3:-}
    dsrdump +Pc +Pu +Pl "$f" >"$f.dsr" 2>/dev/null || { fail "dsrdump cannot read $f"; return; }
    python3 - "$f.dsr" "$CODES" "$states" "$scores" <<'EOF' || fail "round trip of $f"
import json, re, sys
lines = open(sys.argv[1]).read().splitlines()
table = json.load(open(sys.argv[2]))
want = json.loads(sys.argv[3])
scores = json.loads(sys.argv[4]) if sys.argv[4] else None
by_code = {(v["code"], v["scheme"]): k for k, v in table["findings"].items()}
state_of = {(v["code"], v["scheme"]): k for k, v in table["states"].items()}
score = table["score"]
code = r'\(([^,]+),([^,]+),"([^"]*)"\)'
# The qualitative evaluations: the CODE children of the container (C0034375, UMLS).
got, section, group, groups = {}, None, None, {}
for line in lines:
    depth = (len(line) - len(line.lstrip())) // 2
    m = re.match(r'\s*<contains CONTAINER:' + code, line)
    if m and depth == 1:
        section = m.group(1)
        continue
    if m and m.group(1) == "125007":
        group = {}
        continue
    if section == "C0034375" and depth == 2:
        m = re.match(r'\s*<contains CODE:' + code + '=' + code + '>', line)
        assert m, "not a qualitative evaluation: " + line
        name = by_code[(m.group(1), m.group(2))]
        assert name not in got, name + " evaluated twice"
        got[name] = state_of[(m.group(4), m.group(5))]
    if section == "126010" and group is not None and depth == 3:
        m = re.match(r'\s*<contains CODE:\(121071,DCM,"Finding"\)=' + code, line)
        if m:
            group["finding"] = by_code[(m.group(1), m.group(2))]
            groups[group["finding"]] = group
        m = re.match(r'\s*<contains NUM:' + code + r'="([^"]*)" \(1,UCUM,"no units"\)>', line)
        if m and (m.group(1), m.group(2)) == (score["code"], score["scheme"]):
            group["probability"] = float(m.group(4))
        elif m and m.group(1) == "122411":
            group.setdefault("thresholds", []).append(float(m.group(4)))
assert sorted(got) == sorted(table["findings"]), sorted(got)
bad = []
for name in table["findings"]:
    w = want.get(name, "not mentioned")
    w = "absent" if w == "not mentioned" else w
    if got[name] != w:
        bad.append("%s: expected %s, evaluated %s" % (name, w, got[name]))
assert not bad, bad
assert sorted(groups) == sorted(table["findings"]), sorted(groups)
for name, g in groups.items():
    assert 0 <= g["probability"] <= 1 and len(g["thresholds"]) == 2, (name, g)
    if scores is not None:
        assert abs(g["probability"] - scores.get(name, 0.0)) < 1e-5, (name, g, scores.get(name))
        assert g["thresholds"] == [0.5, 0.3], (name, g)  # the built-in thresholds
n = {s: list(got.values()).count(s) for s in ("present", "uncertain", "absent")}
print("round trip %s: 14 of 14 agree (%d present, %d uncertain, %d absent)" %
      (sys.argv[1][:-4], n["present"], n["uncertain"], n["absent"]))
EOF
}

dcmdump_val() { dcmdump -Un +P "$2" "$1" 2>/dev/null | head -1 | sed -e 's/^[^[]*\[//' -e 's/\].*$//'; }

"$RADRAFT" samples --out samples >samples.log 2>&1 || { cat samples.log; echo "FATAL: radraft samples failed" >&2; exit 1; }
PA=samples/RDS0002/pa.dcm
LAT=samples/RDS0002/lateral.dcm

# Drafts: present, uncertain, absent and not mentioned mixed; nothing; everything present.
mix='{"Cardiomegaly": 0.85, "Effusion": 0.35, "Pneumothorax": 0.9, "Infiltration": 0.7, "Nodule": 0.4, "Edema": 0.12}'
none='{}'
all=$(python3 -c 'import json; n=json.load(open("'"$CODES"'"))["findings"]; print(json.dumps({k: 0.97 for k in n}))')
i=0
for scores in "$mix" "$none" "$all"; do
    i=$((i + 1))
    "$RADRAFT" report "$LAT" "$PA" --scores "$scores" -o "draft$i.dcm" --json >"draft$i.json" 2>"draft$i.err" ||
        { fail "report $i failed"; cat "draft$i.err" >&2; continue; }
    air=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["air_sr"]["path"])' "draft$i.json")
    [ "$air" = "draft$i-air-sr.dcm" ] && [ -f "$air" ] || { fail "draft $i: no AIR SR ($air)"; continue; }
    states=$(python3 -c 'import json,sys; print(json.dumps({x["name"]: x["state"] for x in json.load(open(sys.argv[1]))["findings"]}))' "draft$i.json")
    dciodvfy_check "$air"
    pixelmed_check "$air"
    html_check "$air"
    round_trip "$air" "$states" "$scores"
done

# What the header of a draft AIR SR says, which the validators do not check.
[ "$(dcmdump_val draft1-air-sr.dcm SOPClassUID)" = "1.2.840.10008.5.1.4.1.1.88.34" ] || fail "not a Comprehensive 3D SR"
[ "$(dcmdump_val draft1-air-sr.dcm StudyInstanceUID)" = "$(dcmdump_val "$PA" StudyInstanceUID)" ] || fail "the AIR SR is not in the source study"
[ "$(dcmdump_val draft1-air-sr.dcm SeriesInstanceUID)" != "$(dcmdump_val draft1.dcm SeriesInstanceUID)" ] || fail "the AIR SR shares the text SR's series"
[ "$(dcmdump_val draft1-air-sr.dcm SeriesInstanceUID)" != "$(dcmdump_val "$PA" SeriesInstanceUID)" ] || fail "the AIR SR is in the images' series"
dcmdump_val draft1-air-sr.dcm SeriesDescription | grep -q "Unverified AI results" || fail "AIR series description"
[ "$(dcmdump_val draft1-air-sr.dcm ImplementationClassUID)" = "2.25.160384215838637916498815963712455385379" ] || fail "AIR Implementation Class UID"
# The image library and the evidence name the frontal image (the PA).
pa_uid=$(dcmdump_val "$PA" SOPInstanceUID)
[ "$(dcmdump_val draft1-air-sr.dcm ReferencedSOPInstanceUID)" = "$pa_uid" ] || fail "the AIR SR does not reference the frontal image"
# The Device UID: the Device Observer UID and the Contributing Equipment's, the same for two
# drafts of one model.
dev1=$(dcmdump_val draft1-air-sr.dcm DeviceUID)
dev2=$(dcmdump_val draft2-air-sr.dcm DeviceUID)
[ -n "$dev1" ] && [ "$dev1" = "$dev2" ] || fail "Device UID '$dev1' / '$dev2'"
grep -qF "(121012,DCM,\"Device Observer UID\")=\"$dev1\"" draft1-air-sr.dcm.dsr || fail "the Device Observer UID is not the Device UID"
dcmdump +P PurposeOfReferenceCodeSequence draft1-air-sr.dcm >/dev/null 2>&1 || fail "no Purpose of Reference"
for flag in "CompletionFlag PARTIAL" "VerificationFlag UNVERIFIED" "PreliminaryFlag PRELIMINARY"; do
    [ "$(dcmdump_val draft1-air-sr.dcm ${flag% *})" = "${flag#* }" ] || fail "draft AIR ${flag% *}"
done
# sr.air off: no AIR SR.
"$RADRAFT" report "$PA" --scores "$mix" -o off.dcm --set sr.air=false --json >off.json 2>/dev/null || fail "report with sr.air off"
[ -f off-air-sr.dcm ] && fail "sr.air=false wrote an AIR SR"
python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))["air_sr"] is None' off.json || fail "sr.air off: air_sr not null"

# Signed: as drafted, and with the impression edited; the final states are what the labeler
# reads in the signed report (radraft label --sr).
"$RADRAFT" sign draft1.dcm --air draft1-air-sr.dcm --verifier "Doe^Jane" --organization "General Hospital" \
    --datetime 20260102103000 -o signed1.dcm >signed1.out 2>&1 || { fail "sign 1"; cat signed1.out >&2; }
"$RADRAFT" sign draft2.dcm --air draft2-air-sr.dcm --verifier "Doe^Jane" --organization "General Hospital" \
    --impression "Cardiomegaly. Small left pleural effusion." -o signed2.dcm >signed2.out 2>&1 ||
    { fail "sign 2"; cat signed2.out >&2; }
for k in 1 2; do
    f=signed$k-air-sr.dcm
    [ -f "$f" ] || { fail "no $f"; continue; }
    dciodvfy_check "$f"
    pixelmed_check "$f"
    html_check "$f"
    "$RADRAFT" label --sr signed$k.dcm >signed$k.labels 2>/dev/null || fail "label signed$k.dcm"
    states=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["findings"]))' signed$k.labels)
    round_trip "$f" "$states"
    for flag in "CompletionFlag COMPLETE" "VerificationFlag VERIFIED" "PreliminaryFlag FINAL"; do
        [ "$(dcmdump_val "$f" ${flag% *})" = "${flag#* }" ] || fail "$f: ${flag% *}"
    done
    [ "$(dcmdump_val "$f" SeriesInstanceUID)" != "$(dcmdump_val signed$k.dcm SeriesInstanceUID)" ] || fail "$f shares the signed text SR's series"
    [ "$(dcmdump_val "$f" SeriesInstanceUID)" != "$(dcmdump_val draft$k-air-sr.dcm SeriesInstanceUID)" ] || fail "$f is in the draft AIR series"
    dcmdump_val "$f" SeriesDescription | grep -q "signed AI results" || fail "$f: series description"
    dsrdump "$f" 2>/dev/null | grep -q "Verifying Observers : .*Doe^Jane, General Hospital" || fail "$f: verifying observer"
    grep -qF '(121008,DCM,"Person Observer Name")="Doe^Jane"' "$f.dsr" || fail "$f: no person observer"
    [ "$(dcmdump_val "$f" StudyInstanceUID)" = "$(dcmdump_val "$PA" StudyInstanceUID)" ] || fail "$f: not in the source study"
done
# The edited impression makes the effusion present in the signed AIR SR (uncertain drafted).
grep -qF '<contains CODE:(60046008,SCT,"Pleural effusion")=(52101004,SCT,"Present")>' signed2-air-sr.dcm.dsr ||
    fail "the signed AIR SR does not carry the effusion the edited impression states"
# Both signed AIR SRs of one study share its signed AIR series.
[ "$(dcmdump_val signed1-air-sr.dcm SeriesInstanceUID)" = "$(dcmdump_val signed2-air-sr.dcm SeriesInstanceUID)" ] ||
    fail "two signed AIR SRs of one study in different series"
[ "$(dcmdump_val signed1-air-sr.dcm SeriesNumber)" = 9004 ] || fail "signed AIR series number"

if [ "$FAILS" -gt 0 ]; then
    echo "$FAILS failure(s)" >&2
    exit 1
fi
echo "ok"
