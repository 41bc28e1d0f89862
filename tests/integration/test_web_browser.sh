#!/bin/bash
# The review web page in a real browser: `radraft batch` drafts the sample studies, users are
# added, `radraft serve` runs with the web page and delivers to a DCMTK storescp, and
# tests/browser/review.test.js drives Debian's headless Chromium (playwright-core, no
# downloaded browser) through login, the worklist, a study, a toggled finding, Save and a
# keyboard signature (s, Enter). Checked outside the browser: the signed SR arrives at
# storescp with the SOP Instance UID the page was given, and the audit trail holds the
# radiologist's view and sign. Screenshots of the worklist and the study page are left in
# the work folder; with RADRAFT_UPDATE_SCREENSHOT=1 the study page also goes to
# docs/review-page.png.
#
# usage: bash test_web_browser.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
DATA=$2
WORK=$3
REPO=$(cd "$(dirname "$0")/../.." && pwd)
BROWSER_DIR=$REPO/tests/browser
for tool in node storescp dcmdump curl python3; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed (bash scripts/setup.sh --test)"; exit 1; }
done
[ -x /usr/bin/chromium ] || { echo "FAIL: /usr/bin/chromium is not installed (bash scripts/setup.sh --test)"; exit 1; }
[ -d "$BROWSER_DIR/node_modules/playwright-core" ] ||
    { echo "FAIL: playwright-core is not installed in $BROWSER_DIR (bash scripts/setup.sh --test)"; exit 1; }
. "$(dirname "$0")/lib_ports.sh"
. "$(dirname "$0")/lib_wait.sh"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

# Ports are picked as each server starts (rd_start_storescp, start_serve).
PORT=
WEB_PORT=
SCP_PORT=
FAILS=0
SERVER=
SCP=
cleanup() { kill -9 $SERVER $SCP 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
tagval() { dcmdump +L +P "$1" "$2" 2>/dev/null | head -1 | sed -e 's/^[^[]*\[//' -e 's/\].*$//'; }
RAD=rita
RAD_PASSWORD='browser test password'

"$RADRAFT" samples --out s --size 256 >/dev/null || { fail "radraft samples"; exit 1; }
"$RADRAFT" batch s --data-dir rd >batch.log 2>&1 || { fail "radraft batch"; cat batch.log; exit 1; }
"$RADRAFT" user add admin --role admin --display-name "Admin^A" --data-dir rd >/dev/null ||
    { fail "user add admin"; exit 1; }
printf '%s\n' "$RAD_PASSWORD" | "$RADRAFT" user add $RAD --role radiologist \
    --display-name "Reader^Rita" --password-stdin --user admin --data-dir rd >/dev/null ||
    { fail "user add $RAD"; exit 1; }

rd_start_storescp received || { fail "storescp did not start"; exit 1; }
start_serve() {
    local off
    read -r PORT WEB_PORT < <(rd_free_ports 2)
    off=$(rd_log_size serve.log)
    "$RADRAFT" serve --data-dir rd --port $PORT --set web.port=$WEB_PORT \
        --set review.organization=Test --send-to STORESCP@127.0.0.1:$SCP_PORT >>serve.log 2>&1 &
    SERVER=$!
    rd_wait_listening "radraft serve" $SERVER serve.log "$off" 20 $PORT $WEB_PORT
}
rd_retry_port 5 start_serve || { fail "radraft serve did not start"; exit 1; }
healthy() { curl -sS -f "http://127.0.0.1:$WEB_PORT/healthz" -o healthz.json; }
if ! rd_wait_for "/healthz on the web port" 20 healthy; then
    fail "radraft serve did not answer on the web port $WEB_PORT: $RD_WAIT_SAID; serve.log:"
    tail -20 serve.log
    exit 1
fi
pass "radraft serve answers /healthz on port $WEB_PORT: $(cat healthz.json)"

RD_URL="http://127.0.0.1:$WEB_PORT" RD_USER=$RAD RD_PASSWORD=$RAD_PASSWORD RD_OUT=$WORK \
    RD_EXPECT_ITEMS=4 NODE_PATH="$BROWSER_DIR/node_modules" \
    timeout 180 node "$BROWSER_DIR/review.test.js" >browser.log 2>&1
rc=$?
cat browser.log
[ $rc = 0 ] && pass "the browser test passed" || fail "the browser test failed (exit $rc; $WORK/failure.png)"

SIGNED_UID=
[ -f signed.json ] && SIGNED_UID=$(python3 -c "import json; print(json.load(open('signed.json'))['sop_instance_uid'])")
if [ -n "$SIGNED_UID" ]; then
    got=
    signed_sr_received() {
        got=$(for f in $(find received -type f); do
            [ "$(tagval 0008,0018 "$f")" = "$SIGNED_UID" ] && echo "$f"
        done | head -1)
        echo "files at storescp: $(find received -type f | wc -l); the signed SR: ${got:-not there}"
        [ -n "$got" ]
    }
    rd_wait_for "the signed SR at storescp" 60 signed_sr_received
    if [ -n "$got" ]; then
        pass "storescp received the signed SR $SIGNED_UID"
        [ "$(tagval 0008,0060 "$got")" = SR ] && pass "it is an SR" || fail "$got is not an SR"
        [ "$(tagval 0040,a493 "$got")" = VERIFIED ] && pass "VERIFIED" ||
            fail "verification flag '$(tagval 0040,a493 "$got")'"
        [ "$(tagval 0040,a075 "$got")" = "Reader^Rita" ] && pass "verifying observer Reader^Rita" ||
            fail "verifying observer '$(tagval 0040,a075 "$got")'"
    else
        fail "no SR with SOP Instance UID $SIGNED_UID arrived at storescp: $RD_WAIT_SAID"
        tail -5 serve.log
    fi
else
    fail "the browser test recorded no signed SR"
fi

# The audit trail: the radiologist's view (the page opening the item) and signature.
"$RADRAFT" audit list --data-dir rd --json >audit.json 2>audit.err || fail "audit list: $(cat audit.err)"
python3 - "$RAD" <<'EOF' >audit.txt
import json, sys
text = open("audit.json").read()
try:
    rows = json.loads(text)
    rows = rows if isinstance(rows, list) else [rows]
except ValueError:  # one JSON object per line
    rows = [json.loads(l) for l in text.splitlines() if l.strip()]
user = sys.argv[1]
for action in ("view", "claim", "edit", "sign"):
    n = sum(1 for r in rows if r.get("action") == action and r.get("user") == user)
    print(f"{action} {n}")
EOF
for a in view sign claim edit; do
    n=$(awk -v a=$a '$1 == a { print $2 }' audit.txt)
    [ "${n:-0}" -ge 1 ] && pass "the audit trail has $n '$a' row(s) by $RAD" || fail "no '$a' audit row by $RAD"
done
"$RADRAFT" audit verify --data-dir rd >verify.txt 2>&1 && pass "audit verify: $(cat verify.txt)" ||
    fail "audit verify: $(cat verify.txt)"

for png in worklist.png study.png; do
    [ -s "$png" ] && pass "screenshot $WORK/$png" || fail "no screenshot $png"
done
if [ "${RADRAFT_UPDATE_SCREENSHOT:-0}" = 1 ] && [ -s study.png ] && [ "$FAILS" = 0 ]; then
    cp study.png "$REPO/docs/review-page.png" && pass "docs/review-page.png updated"
fi

kill $SERVER 2>/dev/null
wait $SERVER 2>/dev/null
SERVER=
if [ "$FAILS" -gt 0 ]; then
    echo "test_web_browser: $FAILS failure(s)"
    exit 1
fi
echo "test_web_browser: all passed"
exit 0
