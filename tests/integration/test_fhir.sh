#!/bin/bash
# The FHIR R4 output: the Bundle written beside each draft and signed report, checked against
# the R4 StructureDefinitions and the rules they leave out (tests/fhir/validate.mjs), its
# content against what the draft and the SRs say (the 14 states, the codes of the code
# table, the text, the study, the model's Device UID), and its delivery through the outbox
# to a FHIR server's transaction endpoint on loopback (tests/integration/fhir_server.py):
# retried after 503s, in order, one DiagnosticReport per report updated from preliminary to
# final to amended (never a second one), a 400 failed at once with the server's reason;
# `radraft send` to https with the certificate checked (CA and host name) and a bearer token.
#
# usage: bash test_fhir.sh RADRAFT_BINARY SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
WORK=$3
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CODES=$ROOT/models/finding-codes.json
VALIDATE="node $ROOT/tests/fhir/validate.mjs"
. "$HERE/lib_ports.sh"
. "$HERE/lib_wait.sh"
. "$HERE/lib_store.sh"
FAILS=0
SERVER=
FHIR=
FHIR2=
cleanup() { kill -9 $SERVER $FHIR $FHIR2 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
[ -d "$ROOT/tests/fhir/node_modules/@medplum/core" ] ||
    { echo "FATAL: tests/fhir/node_modules missing (bash scripts/setup.sh --test)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "FATAL: openssl missing" >&2; exit 1; }

rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
db() { rd_db "$WORK/rd" "$1"; }
json() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)"; }
ORG="General Hospital Radiology"
q() { "$RADRAFT" queue "$@" --data-dir rd --set "review.organization=$ORG" --set "fhir.endpoint=$URL"; }

# start_fhir DIR ARGS...: the test FHIR server, its port in FHIR_PORT.
start_fhir() {
    local dir=$1
    shift
    rm -f "$dir/port"
    python3 "$HERE/fhir_server.py" --dir "$dir" "$@" >"$dir.log" 2>&1 &
    LAST_PID=$!
    rd_wait_for "the FHIR server's port" 20 test -s "$dir/port" || return 1
    FHIR_PORT=$(cat "$dir/port")
}

# --- the Bundles of drafts, queued by batch --send ---
"$RADRAFT" samples --out samples --size 512 >/dev/null || { fail "samples"; exit 1; }
# Two of the committed NIH studies too, whose drafts have present and uncertain findings.
cp -r "$ROOT/samples/NIH02" "$ROOT/samples/NIH03" samples/ || fail "the NIH samples"
mkdir -p fhir
start_fhir fhir --fail-first 2 --reject-path /reject || { fail "the FHIR server did not start"; cat fhir.log; exit 1; }
FHIR=$LAST_PID
URL=http://127.0.0.1:$FHIR_PORT/fhir
"$RADRAFT" batch samples --data-dir rd --send --set "fhir.endpoint=$URL" >batch.log 2>&1 ||
    { fail "batch"; cat batch.log; exit 1; }
"$RADRAFT" user add admin --role admin --display-name "Admin^Site" --data-dir rd >/dev/null || fail "admin"
"$RADRAFT" user add alice --role radiologist --display-name "Smith^Alice" --user admin --data-dir rd >/dev/null ||
    fail "add alice"
q list --json >list.json || fail "queue list"
n_items=$(json list.json "len(d)")
bundles=$(ls rd/sr/*-draft-fhir.json 2>/dev/null | wc -l)
[ "$bundles" = "$n_items" ] && [ "$bundles" -gt 0 ] && pass "$bundles draft Bundles beside $n_items draft SRs" ||
    fail "$bundles Bundles for $n_items drafts"
[ "$(db "SELECT COUNT(*) FROM outbox WHERE destination='$URL' AND state='pending'")" = "$bundles" ] &&
    pass "every Bundle queued for the FHIR server" ||
    fail "outbox: $(db "SELECT file, destination, state FROM outbox")"
$VALIDATE rd/sr/*-draft-fhir.json >drafts.jsonl 2>validate.err && pass "the draft Bundles validate (R4 StructureDefinitions and rules)" ||
    { fail "validation of the draft Bundles"; cat drafts.jsonl validate.err | head -c 3000; }

# Each Bundle says what its review item says: the 14 states coded with the code table, the
# texts, the study, the model's Device UID (as in the AIR SR), status preliminary.
for id in $(json list.json "' '.join(str(x['id']) for x in d)"); do
    q show "$id" --user alice --json >"show-$id.json" 2>/dev/null || { fail "queue show $id"; continue; }
    sr=$(json "show-$id.json" "d['draft_sr']")
    bundle=${sr%-sr.dcm}-fhir.json
    air=${sr%-sr.dcm}-air-sr.dcm
    device=$(dcmdump +P DeviceUID "$air" 2>/dev/null | head -1 | sed -e 's/^[^[]*\[//' -e 's/\].*$//')
    python3 - "$bundle" "show-$id.json" "$CODES" "$device" "$sr" <<'EOF' || fail "Bundle of item $id"
import base64, json, subprocess, sys
bundle, item, codes = (json.load(open(p)) for p in sys.argv[1:4])
device, sr = sys.argv[4], sys.argv[5]
system = {"SCT": "http://snomed.info/sct", "DCM": "http://dicom.nema.org/resources/ontology/DCM"}
res = [e["resource"] for e in bundle["entry"]]
dr = [r for r in res if r["resourceType"] == "DiagnosticReport"][0]
obs = {r["code"]["coding"][0]["code"]: r for r in res if r["resourceType"] == "Observation"}
assert dr["status"] == "preliminary", dr["status"]
assert len(obs) == 14, len(obs)
study = {"system": "urn:dicom:uid", "value": "urn:oid:" + item["study_uid"]}
assert dr["imagingStudy"][0]["identifier"] == study, dr["imagingStudy"]
text = base64.b64decode(dr["presentedForm"][0]["data"]).decode()
assert item["findings_text"] in text and item["impression_text"] in text, text
assert dr["conclusion"] == item["impression_text"]
sop = subprocess.run(["dcmdump", "+P", "SOPInstanceUID", sr], capture_output=True, text=True).stdout
assert "urn:oid:" + sop.split("[")[1].split("]")[0] in [i["value"] for i in dr["identifier"]]
n = {}
for name, f in item["findings"].items():
    if name not in codes["findings"]:
        continue  # No Finding
    c = codes["findings"][name]
    o = obs[c["code"]]
    assert o["code"]["coding"][0]["system"] == system.get(c["scheme"], "urn:uuid:5b0e6a52-2f7e-4d8c-9a51-8f1d3c2e7a90"), o["code"]
    state = f["state"] if f["state"] in ("present", "uncertain") else "absent"
    want = codes["states"][state]
    got = o["valueCodeableConcept"]["coding"][0]
    assert (got["code"], got["system"]) == (want["code"], system[want["scheme"]]), (name, got, state)
    p = o["component"][0]["valueQuantity"]["value"]
    assert abs(p - f["score"]) < 1e-9, (name, p, f["score"])
    assert o["device"]["identifier"]["value"] == "urn:oid:" + device, o["device"]
    assert o["status"] == "preliminary"
    n[state] = n.get(state, 0) + 1
present = {c["coding"][0]["code"] for c in dr.get("conclusionCode", [])}
assert present == {codes["findings"][k]["code"] for k, f in item["findings"].items()
                   if f["state"] == "present" and k in codes["findings"]}, present
print("item round trip: 14 of 14 states agree", n)
EOF
done

# --- delivery: serve's outbox POSTs them; the first two attempts get 503 ---
start_serve() {
    local off
    PORT=$(rd_free_port)
    off=$(rd_log_size serve.log)
    "$RADRAFT" serve --port $PORT --data-dir rd --set "fhir.endpoint=$URL" \
        --set outbox.retry_initial_seconds=1 --set outbox.retry_max_seconds=2 >>serve.log 2>&1 &
    SERVER=$!
    rd_wait_listening "radraft serve" $SERVER serve.log "$off" 20 $PORT
}
rd_retry_port 5 start_serve || fail "radraft serve did not start"
reports() {
    python3 - fhir/resources.json "$1" "$2" <<'EOF'
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit("no resources yet")
drs = [v for k, v in r.items() if k.startswith("DiagnosticReport/")]
obs = [v for k, v in r.items() if k.startswith("Observation/")]
st = sorted(v["status"] for v in drs)
print(len(drs), "reports", st, len(obs), "observations")
want_n, want_status = int(sys.argv[2]), sys.argv[3]
ok = len(drs) == want_n and len(obs) == 14 * want_n and want_status in st
sys.exit(0 if ok else 1)
EOF
}
rd_wait_for "the $bundles reports at the FHIR server" 60 reports "$bundles" preliminary &&
    pass "the FHIR server holds $bundles preliminary reports and $((14 * bundles)) observations" ||
    fail "delivery: $RD_WAIT_SAID"
grep -q "attempt 1 failed: FHIR server 127.0.0.1: HTTP 503: try again later" serve.log &&
    pass "a 503 was retried (the server's reason logged)" || fail "no retry logged: $(grep outbox serve.log | head -5)"
rd_wait_for "the deliveries done" 20 test "$(db "SELECT COUNT(*) FROM outbox WHERE destination='$URL' AND state='done'")" = "$bundles" ||
    fail "outbox: $(db "SELECT state, attempts, last_error FROM outbox WHERE destination='$URL'")"
grep -h '"Content-Type"' fhir/request-*.json >/dev/null && python3 - fhir <<'EOF' || fail "request headers"
import glob, json, sys
for f in sorted(glob.glob(sys.argv[1] + "/request-*.json")):
    h = json.load(open(f))["headers"]
    assert h["Content-Type"].startswith("application/fhir+json"), h
    assert h["Accept"] == "application/fhir+json", h
    assert "Authorization" not in h, h
EOF

# --- signing: the same report becomes final, then amended, at the server ---
ID=$(json list.json "d[0]['id']")
STUDY=$(json list.json "d[0]['study_uid']")
q claim "$ID" --user alice >/dev/null || fail "claim"
q edit "$ID" --user alice --set Pneumothorax=present --impression "Left pneumothorax." >/dev/null || fail "edit"
q sign "$ID" --user alice --json >sign.json || { fail "sign"; cat sign.json; }
SIGNED=$(json sign.json "d['fhir']")
[ -f "$SIGNED" ] && pass "signing wrote $SIGNED" || fail "no signed Bundle ($SIGNED)"
$VALIDATE "$SIGNED" >signed.jsonl || { fail "the signed Bundle does not validate"; cat signed.jsonl; }
python3 - "$SIGNED" "$CODES" "$(dcmdump +P DeviceUID "$(json sign.json "d['air_sr']")" | head -1 | sed -e 's/^[^[]*\[//' -e 's/\].*$//')" <<'EOF' ||
import json, sys
b, codes, device = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
res = [e["resource"] for e in b["entry"]]
dr = res[0]
assert dr["status"] == "final", dr["status"]
assert dr["resultsInterpreter"] == [{"display": "Alice Smith"}], dr.get("resultsInterpreter")
assert dr["performer"] == [{"display": "General Hospital Radiology"}], dr.get("performer")
ptx = [r for r in res[1:] if r["code"]["coding"][0]["code"] == codes["findings"]["Pneumothorax"]["code"]][0]
assert ptx["valueCodeableConcept"]["coding"][0]["code"] == codes["states"]["present"]["code"], ptx
assert ptx["performer"] == [{"display": "Alice Smith"}]
assert all(r["device"]["identifier"]["value"] == "urn:oid:" + device for r in res[1:])
assert dr["conclusion"] == "Left pneumothorax."
EOF
    fail "the signed Bundle's content"
same_report() {
    python3 - fhir/resources.json "$STUDY" "$1" "$2" "$bundles" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
study, status, version, n = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
drs = {k: v for k, v in r.items() if k.startswith("DiagnosticReport/")}
mine = [v for v in drs.values() if v["imagingStudy"][0]["identifier"]["value"] == "urn:oid:" + study]
print(len(drs), "reports;", [(v["status"], v["meta"]["versionId"]) for v in mine])
assert len(drs) == n and len(mine) == 1, "a second report appeared"
v = mine[0]
assert v["status"] == status and v["meta"]["versionId"] == version
obs = [r[ref["reference"]] for ref in v["result"]]
assert len(obs) == 14 and all(o["status"] == status and o["meta"]["versionId"] == version for o in obs)
EOF
}
rd_wait_for "the signed report at the FHIR server" 30 same_report final 2 &&
    pass "the server's report of study $STUDY is now final (version 2), no second report" ||
    fail "after signing: $RD_WAIT_SAID"
q amend "$ID" --user alice --impression "Small left pneumothorax." --json >amend.json 2>&1 || { fail "amend"; cat amend.json; }
rd_wait_for "the amended report at the FHIR server" 30 same_report amended 3 &&
    pass "amended (version 3), still one report" || fail "after amending: $RD_WAIT_SAID"

# --- a Bundle the server refuses (400) fails at once, with the server's reason ---
"$RADRAFT" send --queue "$SIGNED" --to "http://127.0.0.1:$FHIR_PORT/reject" --data-dir rd ||
    fail "send --queue to a FHIR URL"
rejected() {
    local st
    st=$(db "SELECT state, attempts, last_error FROM outbox WHERE destination LIKE '%/reject'")
    echo "$st"
    [ "${st%%|*}" = failed ]
}
rd_wait_for "the refused delivery failed" 20 rejected && pass "refused with 400: failed after one attempt ($RD_WAIT_SAID)" ||
    fail "refused delivery: $RD_WAIT_SAID"
echo "$RD_WAIT_SAID" | grep -q "|1|.*HTTP 400: rejected by the test server" || fail "the 400's reason not recorded"
kill $SERVER 2>/dev/null
wait $SERVER 2>/dev/null
SERVER=

# --- radraft send over https: the certificate (CA, host name) and the bearer token ---
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout key.pem -out cert.pem >/dev/null 2>&1 || fail "openssl"
printf 's3cret-token\n' >token
mkdir -p fhirs
start_fhir fhirs --tls cert.pem key.pem --token s3cret-token || { fail "https FHIR server"; cat fhirs.log; }
FHIR2=$LAST_PID
HTTPS=https://127.0.0.1:$FHIR_PORT/fhir
expect_send() {
    local want=$1 pat=$2 rc
    shift 2
    "$RADRAFT" send "$SIGNED" --to "$@" >send.out 2>&1
    rc=$?
    if [ $rc = "$want" ] && grep -qE "$pat" send.out; then pass "send $*: exit $rc, $(grep -E "$pat" send.out | head -1 | cut -c1-150)"; else
        fail "send $*: exit $rc (wanted $want), $(head -c 400 send.out)"; fi
}
expect_send 1 "SSL certificate problem: self-signed certificate" "$HTTPS"
expect_send 1 "no alternative certificate subject name matches target host name .localhost." "https://localhost:$FHIR_PORT/fhir" --set fhir.ca_certificates=cert.pem
expect_send 1 "HTTP 401" "$HTTPS" --set fhir.ca_certificates=cert.pem
expect_send 0 "1 of 1 Bundle\(s\) accepted" "$HTTPS" --set fhir.ca_certificates=cert.pem --set fhir.bearer_token_file=token
python3 -c "
import glob, json
h = [json.load(open(f))['headers'] for f in sorted(glob.glob('fhirs/request-*.json'))]
assert h[-1]['Authorization'] == 'Bearer s3cret-token', h[-1]
" || fail "the bearer token was not sent"
expect_send 1 "Couldn.t connect to server" "http://127.0.0.1:$(rd_free_port)/fhir" --set fhir.timeout_seconds=5
expect_send 2 "user, query or fragment" "http://user@127.0.0.1/fhir"
expect_send 2 "not AE@host:port" "ftp://127.0.0.1/fhir"
"$RADRAFT" serve --port "$(rd_free_port)" --data-dir rd2 --set fhir.endpoint=http://x/?a=1 >bad.out 2>&1
[ $? = 2 ] && grep -q "fhir.endpoint" bad.out && pass "serve refuses a bad fhir.endpoint" || fail "serve with a bad endpoint: $(cat bad.out)"

# --- fhir.enabled=false writes none ---
pa=$(ls samples/*/pa.dcm | head -1)
"$RADRAFT" report "$pa" --scores '{"Cardiomegaly": 0.9}' -o off-sr.dcm --set fhir.enabled=false --json >off.json 2>/dev/null ||
    fail "report with fhir off"
[ ! -e off-fhir.json ] && [ "$(json off.json "d['fhir']")" = None ] && pass "fhir.enabled=false: no Bundle" ||
    fail "fhir.enabled=false wrote a Bundle"
"$RADRAFT" report "$pa" --scores '{"Cardiomegaly": 0.9}' -o on-sr.dcm --json >on.json 2>/dev/null || fail "report"
$VALIDATE on-fhir.json >/dev/null && pass "radraft report writes a valid Bundle" || fail "report's Bundle"

if [ "$FAILS" -gt 0 ]; then
    echo "$FAILS failure(s)"
    exit 1
fi
echo "all FHIR checks passed"
