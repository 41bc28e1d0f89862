#!/usr/bin/env bash
# `radraft info` and `radraft render` on the shared DICOM files.
# Usage: bash test_cli_info.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$1
DATA=$2/dicom
WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
fail=0
check() { # check DESCRIPTION COMMAND...: runs the command, records a failure if it fails
    local what=$1
    shift
    if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
[ -d "$DATA" ] || { echo "FATAL: shared data not found at $DATA"; exit 1; }

# info on good files: one JSON object per file and line, exit code 0.
"$RADRAFT" info "$DATA/chest/CR-MONO1-10-chest.dcm" "$DATA/edge/chrJapMulti-CR-chest.dcm" \
    "$DATA/codecs/emri_small_RLE.dcm" >"$WORK/info.jsonl" 2>"$WORK/info.err"
check "info exits 0 on readable files" test $? -eq 0
check "info output is 3 JSON objects with the expected fields" python3 - "$WORK/info.jsonl" <<'PY'
import json, sys
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
assert len(lines) == 3, lines
objs = [json.loads(l) for l in lines]
a, b, c = objs
assert a["file"].endswith("CR-MONO1-10-chest.dcm") and a["format"] == "dicom"
assert a["rows"] == 440 and a["columns"] == 440 and a["photometric"] == "MONOCHROME1"
assert a["bits_stored"] == 10 and a["modality"] == "CR" and a["has_pixel_data"] == 1
assert isinstance(a["rows"], int) and "pixel_spacing" not in a
assert b["patient_name"] == "\u3084\u307e\u3060^\u305f\u308d\u3046", b["patient_name"]
assert b["pixel_spacing"] == [0.15, 0.15], b.get("pixel_spacing")
assert c["number_of_frames"] == 10 and c["transfer_syntax_uid"] == "1.2.840.10008.1.2.5"
PY

# info on a file that is not DICOM, a missing one and a good one: error objects, exit 1.
printf 'not a dicom file at all\n' >"$WORK/bad.dcm"
"$RADRAFT" info "$WORK/bad.dcm" "$WORK/missing.dcm" "$DATA/sr/test_SR-comprehensive.dcm" \
    >"$WORK/bad.jsonl" 2>/dev/null
check "info exits 1 when a file fails" test $? -eq 1
check "info error objects carry status and message" python3 - "$WORK/bad.jsonl" <<'PY'
import json, sys
objs = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
assert len(objs) == 3, objs
assert objs[0]["status"] == "RD_E_DICOM" and "not a DICOM file" in objs[0]["error"], objs[0]
assert objs[1]["status"] == "RD_E_NOT_FOUND" and "error" in objs[1], objs[1]
assert "status" not in objs[2] and objs[2]["sop_class_name"] == "ComprehensiveSRStorage"
PY
"$RADRAFT" info >/dev/null 2>"$WORK/nofile.err"
check "info without FILE is a usage error (2)" test $? -eq 2
check "info without FILE says so" grep -q "radraft info: no FILE given" "$WORK/nofile.err"
"$RADRAFT" info --help | grep -q "usage: radraft info"
check "info --help" test $? -eq 0

# render: DICOM to PNG at the requested size, aspect kept; a PNG back through info.
"$RADRAFT" render "$DATA/codecs/JPEG-LL.dcm" -o "$WORK/jpegll.png" --size 128
check "render exits 0" test $? -eq 0
"$RADRAFT" info "$WORK/jpegll.png" >"$WORK/png.jsonl"
check "rendered PNG is 32x128 (1024x256 scaled to 128), 8-bit gray" python3 - "$WORK/png.jsonl" <<'PY'
import json, sys
o = json.loads(open(sys.argv[1]).read())
assert o["format"] == "png" and o["width"] == 32 and o["height"] == 128, o
assert o["bit_depth"] == 8 and o["channels"] == 1, o
PY
"$RADRAFT" render "$DATA/chest/CR-MONO1-10-chest.dcm" -o "$WORK/chest16.png" --bits 16
"$RADRAFT" info "$WORK/chest16.png" | python3 -c '
import json, sys
o = json.loads(sys.stdin.read())
sys.exit(0 if (o["width"], o["height"], o["bit_depth"]) == (440, 440, 16) else 1)'
check "render --bits 16 keeps the size and writes 16-bit" test $? -eq 0
"$RADRAFT" render "$WORK/chest16.png" -o "$WORK/again.png" --size 100
check "render reads a PNG too" test -s "$WORK/again.png"
"$RADRAFT" render "$DATA/sr/reportsi-basic-text.dcm" -o "$WORK/sr.png" 2>"$WORK/sr.err"
check "render of an SR fails with exit 1" test $? -eq 1
check "render of an SR names RD_E_NOT_IMAGE" grep -q RD_E_NOT_IMAGE "$WORK/sr.err"
check "render of an SR writes nothing" test ! -e "$WORK/sr.png"
"$RADRAFT" render "$DATA/chest/siim-CR-jpeg-baseline.dcm" -o "$WORK/big.png" \
    --set dicom.max_dimension=512 2>"$WORK/big.err"
check "render honours dicom.max_dimension (RD_E_TOO_LARGE)" grep -q RD_E_TOO_LARGE "$WORK/big.err"
"$RADRAFT" render "$DATA/chest/CR-MONO1-10-chest.dcm" --size 0 -o "$WORK/x.png" 2>"$WORK/size0.err"
check "render --size 0 is a usage error" test $? -eq 2
check "render --size 0 names the option and the value" \
    grep -q -- "--size expects an integer in \[1, 65535\], got '0'" "$WORK/size0.err"
check "render --size 0 writes nothing" test ! -e "$WORK/x.png"
"$RADRAFT" render "$DATA/chest/CR-MONO1-10-chest.dcm" 2>"$WORK/noout.err"
check "render without -o is a usage error" test $? -eq 2
check "render without -o says it is required" grep -q -- "-o OUT.png is required" "$WORK/noout.err"
exit $fail
