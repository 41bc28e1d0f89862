#!/bin/bash
# The draft and signed TID 2000 SRs against the two validators that check what PACS, viewers
# and the RIS rely on: dciodvfy (dicom3tools: the IOD, its attributes and defined terms) and
# PixelMed's DicomSRValidator (the content tree against TID 2000 / 2002 and their context
# groups). Any error or warning from either fails, except, where a draft codes Pleural
# thickening (the one finding the code table has no standard code for), dciodvfy's note on
# the private scheme. Then the round trip: for every one of the 14 findings, the coded
# content read back by DCMTK's dsrdump (not radraft's reader) says present exactly when the
# draft's state is present, with the code of models/finding-codes.json.
#
# usage: bash test_sr_validate.sh RADRAFT_BINARY SHARED_DATA WORKDIR
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
need java
need python3
[ -f "$PIXELMED" ] || { echo "FATAL: $PIXELMED missing (libpixelmed-java; bash scripts/setup.sh --test)" >&2; exit 1; }

rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
cd "$WORK" || exit 1

# dciodvfy: its "Error" and "Warning" lines, less the private-scheme note when allowed.
dciodvfy_check() {
    local f=$1 allow_private=$2 out bad
    out=$(dciodvfy "$f" 2>&1)
    echo "$out" >"$f.dciodvfy"
    echo "$out" | grep -q "^EnhancedSR" || fail "dciodvfy does not see an Enhanced SR in $f"
    bad=$(echo "$out" | grep -E "^(Error|Warning)")
    if [ "$allow_private" = 1 ]; then
        bad=$(echo "$bad" | grep -v "Unrecognized defined term <99RADRAFT> for value 1 of attribute <Coding Scheme Designator>")
    fi
    [ -z "$bad" ] || { fail "dciodvfy on $f:"; echo "$bad" >&2; }
}

# PixelMed: any "Error" or "Warning" line; it must also have found the TID 2000 root.
pixelmed_check() {
    local f=$1 out
    out=$(java -Djdk.xml.xpathExprGrpLimit=0 -Djdk.xml.xpathExprOpLimit=0 -Djdk.xml.xpathTotalOpLimit=0 \
        -cp "$PIXELMED" com.pixelmed.validate.DicomSRValidator "$f" 2>&1)
    echo "$out" >"$f.pixelmed"
    echo "$out" | grep -q "Found Root Template TID_2000" || { fail "PixelMed did not find TID 2000 in $f:"; echo "$out" >&2; }
    echo "$out" | grep -q "IOD validation complete" || fail "PixelMed did not complete on $f"
    if echo "$out" | grep -qiE "^(Error|Warning)"; then
        fail "PixelMed on $f:"
        echo "$out" | grep -iE "^(Error|Warning)" >&2
    fi
}

# Round trip: the draft's states (its --json) against the CODE (121071, DCM, "Finding")
# items dsrdump prints, for all 14 findings.
round_trip() {
    local json=$1 f=$2
    dsrdump +Pc "$f" >"$f.dsr" 2>&1 || { fail "dsrdump cannot read $f"; return; }
    python3 - "$json" "$f.dsr" "$CODES" <<'EOF' || fail "round trip of $f"
import json, re, sys
draft = json.load(open(sys.argv[1]))
tree = open(sys.argv[2]).read()
table = json.load(open(sys.argv[3]))["findings"]
coded = re.findall(r'<contains CODE:\(121071,DCM,"Finding"\)=\(([^,]+),([^,]+),"([^"]*)"\)>', tree)
by_code = {(v["code"], v["scheme"]): name for name, v in table.items()}
back = {}
for value, scheme, meaning in coded:
    name = by_code.get((value, scheme))
    assert name, "a coded finding not in the code table: %s" % ((value, scheme, meaning),)
    assert meaning == table[name]["meaning"], (name, meaning)
    assert name not in back, "%s coded twice" % name
    back[name] = "present"
states = {x["name"]: x["state"] for x in draft["findings"]}
assert len(table) == 14
bad = []
for name in table:
    want = "present" if states[name] == "present" else "not coded"
    got = back.get(name, "not coded")
    if want != got:
        bad.append("%s: drafted %s, coded %s" % (name, states[name], got))
assert not bad, bad
print("round trip: %d present of 14, all 14 agree" % len(back))
EOF
}

"$RADRAFT" samples --out samples >samples.log 2>&1 || { cat samples.log; echo "FATAL: radraft samples failed" >&2; exit 1; }
PA=samples/RDS0002/pa.dcm
LAT=samples/RDS0002/lateral.dcm

# Drafts: a mix of present, uncertain and absent; nothing present; everything present but
# Pleural thickening; everything present.
mix='{"Cardiomegaly": 0.85, "Effusion": 0.35, "Pneumothorax": 0.9, "Infiltration": 0.7, "Nodule": 0.4}'
none='{}'
most=$(python3 -c 'import json; n=json.load(open("'"$CODES"'"))["findings"]; print(json.dumps({k: 0.97 for k in n if k != "Pleural_Thickening"}))')
all=$(python3 -c 'import json; n=json.load(open("'"$CODES"'"))["findings"]; print(json.dumps({k: 0.97 for k in n}))')
i=0
for scores in "$mix" "$none" "$most" "$all"; do
    i=$((i + 1))
    "$RADRAFT" report "$LAT" "$PA" --scores "$scores" -o "draft$i.dcm" --json >"draft$i.json" 2>"draft$i.err" ||
        { fail "report $i failed"; cat "draft$i.err" >&2; continue; }
    private=0
    [ "$i" = 4 ] && private=1
    dciodvfy_check "draft$i.dcm" "$private"
    pixelmed_check "draft$i.dcm"
    round_trip "draft$i.json" "draft$i.dcm"
done
# The all-present draft is the one that needs the private scheme, and declares it.
grep -q "99RADRAFT" draft4.dcm.dciodvfy || fail "the Pleural thickening draft does not use the private code (test premise)"
# Looked for in the SR itself, which must hold coded findings (SNOMED CT) to look at.
grep -aq "SCT" draft3.dcm || fail "draft 3 holds no SNOMED CT code (test premise)"
grep -aq "99RADRAFT" draft3.dcm && fail "a draft without Pleural thickening uses the private scheme"

# Signed: as drafted, and with the impression edited (its findings recoded from the text).
"$RADRAFT" sign draft1.dcm --verifier "Doe^Jane" --organization "General Hospital" \
    --datetime 20260102103000 -o signed1.dcm >signed1.out 2>&1 || { fail "sign 1"; cat signed1.out >&2; }
"$RADRAFT" sign draft2.dcm --verifier "Doe^Jane" --organization "General Hospital" \
    --impression "Cardiomegaly. Small left pleural effusion." -o signed2.dcm >signed2.out 2>&1 ||
    { fail "sign 2"; cat signed2.out >&2; }
for f in signed1.dcm signed2.dcm; do
    [ -f "$f" ] || continue
    dciodvfy_check "$f" 0
    pixelmed_check "$f"
done
# The signed SRs keep (1) or recode (2) the findings.
round_trip draft1.json signed1.dcm
dsrdump +Pc signed2.dcm 2>/dev/null | grep -qF '<contains CODE:(121071,DCM,"Finding")=(60046008,SCT,"Pleural effusion")>' ||
    fail "the edited signed SR does not code the effusion its impression states"

# What the header says about the draft, which validators do not check.
dcmdump_val() { dcmdump +P "$2" "$1" 2>/dev/null | head -1 | sed -e 's/^[^[]*\[//' -e 's/\].*$//'; }
[ "$(dcmdump_val draft1.dcm ImplementationClassUID)" = "2.25.160384215838637916498815963712455385379" ] ||
    fail "the Implementation Class UID is not radraft's"
case "$(dcmdump_val draft1.dcm ImplementationVersionName)" in RADRAFT_*) ;; *) fail "Implementation Version Name" ;; esac
[ -n "$(dcmdump_val draft1.dcm SeriesDate)" ] && [ -n "$(dcmdump_val draft1.dcm SeriesTime)" ] || fail "no Series Date/Time"
dcmdump_val draft1.dcm TimezoneOffsetFromUTC | grep -qE '^[+-][0-9]{4}$' || fail "no Timezone Offset From UTC"
dcmdump_val draft1.dcm SeriesDescription | grep -q "Unverified AI draft" || fail "the draft series does not say it is an unverified AI draft"

if [ "$FAILS" -gt 0 ]; then
    echo "$FAILS failure(s)" >&2
    exit 1
fi
echo "ok"
