#!/bin/bash
# The review web server over real HTTP with curl: `radraft batch` drafts the sample studies,
# users are added on the command line, then `radraft web` serves them and every rule of
# docs/web-api.md is checked from outside: sessions and their cookie flags, CSRF, roles,
# the actions and their audit rows, the image route's PNG, the limits (body size, malformed
# JSON, unknown routes and methods, path traversal), the security headers, the login
# lockout, logout, a slow client that neither blocks others nor stays connected, HTTPS,
# and `radraft serve` starting the same server when web.port is set.
#
# usage: bash test_web_http.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
WORK=$3
for tool in curl python3 openssl; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
. "$(dirname "$0")/lib_ports.sh"
. "$(dirname "$0")/lib_wait.sh"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

# Ports are picked as each server starts (start_web, start_serve).
PORT=
URL=
FAILS=0
PIDS=
cleanup() { [ -n "$PIDS" ] && kill -9 $PIDS 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
# json FILE EXPR: a Python expression over the JSON document d of FILE.
json() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)" 2>/dev/null; }
# req NAME CURL-ARGS...: runs curl, body into NAME.body, headers into NAME.hdr; prints the code.
req() {
    local name=$1
    shift
    curl -s -o "$name.body" -D "$name.hdr" -w '%{http_code}' --max-time 20 "$@"
}
# check WHAT GOT WANT [BODY-PATTERN NAME]: the code is WANT and NAME.body matches PATTERN.
check() {
    local what=$1 got=$2 want=$3 pat=${4:-} name=${5:-}
    if [ "$got" != "$want" ]; then
        fail "$what: HTTP $got (wanted $want): $(head -c 300 "$name.body" 2>/dev/null)"
    elif [ -n "$pat" ] && ! grep -qE "$pat" "$name.body"; then
        fail "$what: body '$(head -c 300 "$name.body")' does not match /$pat/"
    else
        pass "$what ($got)"
    fi
}
# wait_port URL: waits until URL/healthz answers.
wait_port() {
    rd_wait_for "$1/healthz" 20 curl -sSk -o /dev/null "$1/healthz"
}
# start_web LOG ARGS...: radraft web ARGS... on a new port (WEB_PORT), again on another when
# that one was taken; waits until it listens.
start_web() {
    local log=$1 off
    shift
    WEB_PORT=$(rd_free_port)
    off=$(rd_log_size "$log")
    "$RADRAFT" web --port $WEB_PORT "$@" >>"$log" 2>&1 &
    WEB_PID=$!
    PIDS="$PIDS $WEB_PID"
    rd_wait_listening "radraft web" $WEB_PID "$log" "$off" 20 $WEB_PORT
}

"$RADRAFT" samples --out s --size 256 >/dev/null || { fail "samples"; exit 1; }
"$RADRAFT" batch s --data-dir rd >batch.log 2>&1 || { fail "batch"; cat batch.log; exit 1; }
printf '%s\n' 'admin-password' | "$RADRAFT" user add admin --role admin --display-name Admin^A \
    --password-stdin --data-dir rd >/dev/null || fail "user add admin"
RADPW='correct horse battery'
printf '%s\n' "$RADPW" | "$RADRAFT" user add rad --role radiologist --display-name Curie^Marie \
    --password-stdin --user admin --data-dir rd >/dev/null || fail "user add rad"
printf '%s\n' 'viewer-password' | "$RADRAFT" user add view --role viewer \
    --display-name Viewer^V --password-stdin --user admin --data-dir rd >/dev/null ||
    fail "user add view"

rd_retry_port 5 start_web web.log --data-dir rd --set review.organization=Test \
    --set web.request_timeout_seconds=2 --log-level debug || { fail "radraft web did not start"; exit 1; }
PORT=$WEB_PORT
URL=http://127.0.0.1:$PORT
wait_port "$URL" || { fail "radraft web did not answer: $(cat web.log)"; exit 1; }

# ---- service routes ----
code=$(req h "$URL/healthz")
check "healthz" "$code" 200 '"status":"ok"' h
[ "$(json h.body "d['database']")" = True ] && pass "healthz: database true" ||
    fail "healthz: $(cat h.body)"
code=$(req m "$URL/metrics")
check "metrics" "$code" 200 'radraft_queue_items\{state="draft"\} 4' m
grep -qi '^Content-Type: text/plain; version=0.0.4' m.hdr && pass "metrics content type" ||
    fail "metrics content type: $(grep -i content-type m.hdr)"

# ---- sessions ----
code=$(req q0 "$URL/api/queue")
check "queue without a cookie" "$code" 401 'not logged in' q0
code=$(req l0 -X POST -d '{"user":"rad","password":"wrong password"}' "$URL/api/login")
check "login with a wrong password" "$code" 401 '"error":"wrong user name or password"' l0
code=$(req l1 -c rad.jar -X POST -d "{\"user\":\"rad\",\"password\":\"$RADPW\"}" "$URL/api/login")
check "login" "$code" 200 '"role":"radiologist"' l1
cookie=$(grep -i '^Set-Cookie:' l1.hdr | tr -d '\r')
if echo "$cookie" | grep -q 'radraft_session=[0-9a-f]\{64\};' && echo "$cookie" | grep -q HttpOnly &&
    echo "$cookie" | grep -q 'SameSite=Strict'; then
    pass "session cookie: $cookie"
else
    fail "session cookie: '$cookie'"
fi
CSRF=$(json l1.body "d['csrf']")
[ ${#CSRF} = 64 ] && pass "csrf token" || fail "csrf token '$CSRF'"
code=$(req me -b rad.jar "$URL/api/me")
check "me" "$code" 200 '"display_name":"Curie\^Marie"' me

# ---- the queue ----
code=$(req q1 -b rad.jar "$URL/api/queue")
check "queue" "$code" 200 '"counts":\{"draft":4' q1
[ "$(json q1.body "len(d['items'])")" = 4 ] && pass "4 items" || fail "items: $(cat q1.body)"
ID=$(json q1.body "d['items'][0]['id']")
ID2=$(json q1.body "d['items'][1]['id']")
code=$(req q2 -b rad.jar "$URL/api/queue?state=nonsense")
check "queue with a bad state" "$code" 400 '"error":"state: draft, in_review' q2
code=$(req it -b rad.jar "$URL/api/queue/$ID")
check "item" "$code" 200 '"patient":\{"name":"[^"]+"' it
# The worklist (4 items, read above) never shows a patient: not the name the item shows.
PATIENT=$(json it.body "d['patient']['name'].split('^')[0]")
if [ -z "$PATIENT" ] || [ "$(json q1.body "len(d['items'])")" != 4 ]; then
    fail "no patient name in the item or no worklist to look for it in (test premise)"
elif grep -qF "$PATIENT" q1.body; then
    fail "the worklist shows the patient name $PATIENT"
else
    pass "no patient ($PATIENT) in the list"
fi
[ "$(json it.body "len(d['images']) >= 1 and any(i['frontal'] for i in d['images'])")" = True ] &&
    pass "item images" || fail "item images: $(json it.body "d.get('images')")"
# The similar cases say what their reports said and where they came from (the seed
# archive of the shipped model here).
[ "$(json it.body "len(d['neighbours']) > 0 and all(n.get('source') == 'seed' and isinstance(n.get('states'), dict) for n in d['neighbours'])")" = True ] &&
    pass "neighbours with source and states ($(json it.body "d['neighbours'][0]"))" ||
    fail "neighbours: $(json it.body "d['neighbours'][:2]")"
code=$(req it404 -b rad.jar "$URL/api/queue/999999")
check "missing item" "$code" 404 'no review item 999999' it404

code=$(req c0 -b rad.jar -X POST -d '{}' "$URL/api/queue/$ID/claim")
check "claim without X-CSRF-Token" "$code" 403 'X-CSRF-Token' c0
code=$(req c1 -b rad.jar -H "X-CSRF-Token: $(printf '0%.0s' $(seq 64))" -X POST -d '{}' \
    "$URL/api/queue/$ID/claim")
check "claim with a wrong token" "$code" 403 'X-CSRF-Token' c1
code=$(req c2 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{}' "$URL/api/queue/$ID/claim")
check "claim" "$code" 200 '"state":"in_review","priority":"[a-z]+","created_at":[0-9.]+,"claimed_by":"rad"' c2

# The viewer may read but not sign.
code=$(req lv -c view.jar -X POST -d '{"user":"view","password":"viewer-password"}' "$URL/api/login")
check "viewer login" "$code" 200 '"role":"viewer"' lv
VCSRF=$(json lv.body "d['csrf']")
code=$(req vs -b view.jar -H "X-CSRF-Token: $VCSRF" -X POST -d '{}' "$URL/api/queue/$ID2/sign")
check "viewer's sign" "$code" 403 "user 'view' is a viewer: the radiologist role is needed" vs

code=$(req ed -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST \
    -d '{"set":{"Cardiomegaly":"present"},"impression_text":"Cardiomegaly."}' \
    "$URL/api/queue/$ID/edit")
check "edit" "$code" 200 '"final_states":\{[^}]*"Cardiomegaly":"present"' ed
code=$(req ed2 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{"set":{"Unicorn":"present"}}' \
    "$URL/api/queue/$ID/edit")
check "edit with an unknown finding" "$code" 400 "\"error\":\"set: 'Unicorn' must be" ed2
code=$(req sg -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{}' "$URL/api/queue/$ID/sign")
check "sign" "$code" 200 '"state":"signed"' sg
[ "$(json sg.body "d['signed']['version']")" = 1 ] && pass "signed version 1" ||
    fail "signed: $(json sg.body "d.get('signed')")"
code=$(req sg2 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{}' "$URL/api/queue/$ID/claim")
check "claim of a signed item" "$code" 409 "item $ID is signed: claim is not possible" sg2
# An unchanged draft nobody holds is signed in one request.
code=$(req sg3 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{}' "$URL/api/queue/$ID2/sign")
check "sign of an unclaimed draft" "$code" 200 '"signed":\{"version":1' sg3

# ---- the image ----
code=$(req img -b rad.jar "$URL/api/queue/$ID/image?width=200&center=0.5&window=0.8")
if [ "$code" = 200 ] && [ "$(head -c 8 img.body | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] &&
    [ "$(python3 -c "import struct; b=open('img.body','rb').read(); print(struct.unpack('>I', b[16:20])[0], b[25])")" = "200 0" ]; then
    pass "image: a gray PNG 200 wide"
else
    fail "image: HTTP $code, $(head -c 64 img.body | od -c | head -2)"
fi
grep -qi '^Content-Type: image/png' img.hdr && pass "image content type" || fail "image type"
code=$(req img2 -b rad.jar "$URL/api/queue/$ID/image?width=10")
check "image of a bad width" "$code" 400 '"error":"index: 0 or more; width: 64 to 2048"' img2

# ---- heat maps: a finding the draft places has one, served as an RGBA overlay; the item
# says only that there is one, never where the server keeps it ----
HID=
HF=
for i in $(json q1.body "' '.join(str(x['id']) for x in d['items'])"); do
    code=$(req hi -b rad.jar "$URL/api/queue/$i")
    [ "$code" = 200 ] && grep -q '"findings"' hi.body || fail "item $i: HTTP $code: $(head -c 200 hi.body)"
    grep -q '/heatmaps/' hi.body && fail "item $i shows a heat map's path"
    f=$(json hi.body "next((k for k, v in d['findings'].items() if v.get('heatmap') is True), '')")
    if [ -n "$f" ] && [ -z "$HID" ]; then
        HID=$i
        HF=$f
        NOHF=$(json hi.body "next(k for k, v in d['findings'].items() if not v.get('heatmap'))")
        [ -n "$(json hi.body "d['findings']['$f']['side']")" ] && pass "placed finding $f: side" ||
            fail "placed finding $f has no side"
    fi
done
if [ -z "$HID" ]; then
    fail "no drafted sample has a placed finding with a heat map"
else
    code=$(req hm -b rad.jar "$URL/api/queue/$HID/heatmap?finding=$HF&width=200")
    if [ "$code" = 200 ] && [ "$(python3 -c "import struct; b=open('hm.body','rb').read(); print(b[:8].hex(), struct.unpack('>I', b[16:20])[0], b[25])")" = "89504e470d0a1a0a 200 6" ]; then
        pass "heat map of $HF: an RGBA PNG 200 wide"
    else
        fail "heat map: HTTP $code, $(head -c 64 hm.body | od -c | head -2)"
    fi
    code=$(req hm2 -b rad.jar "$URL/api/queue/$HID/heatmap?finding=$NOHF")
    check "heat map of an unplaced finding" "$code" 404 'heat map' hm2
    code=$(req hm3 -b rad.jar "$URL/api/queue/$HID/heatmap?finding=Unicorn")
    check "heat map of an unknown finding" "$code" 400 '"error":"finding: a finding' hm3
    code=$(req hm4 "$URL/api/queue/$HID/heatmap?finding=$HF")
    check "heat map without a session" "$code" 401 'not logged in' hm4
fi

# ---- limits ----
head -c 300000 /dev/zero | tr '\0' 'x' >big.txt
code=$(req big -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST --data-binary @big.txt \
    "$URL/api/queue/$ID2/edit")
check "body over web.max_body_bytes" "$code" 413 'web.max_body_bytes' big
code=$(req bad -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{"set": ' "$URL/api/queue/$ID2/edit")
check "malformed JSON" "$code" 400 'not a JSON object' bad
code=$(req nf -b rad.jar "$URL/api/nothing")
check "unknown route" "$code" 404 'no such route' nf
code=$(req nf2 "$URL/no/such/page")
check "unknown page" "$code" 404 'no such page' nf2
code=$(req wm -b rad.jar -X DELETE "$URL/api/queue")
check "wrong method" "$code" 405 'takes GET' wm
grep -qi '^Allow: GET' wm.hdr && pass "405 names the allowed method" || fail "no Allow header"
code=$(req tr --path-as-is "$URL/assets/../../etc/passwd")
check "path traversal" "$code" 404 'no such page' tr
grep -q 'root:' tr.body && fail "traversal served /etc/passwd"

# ---- page, assets, headers ----
code=$(req page "$URL/")
check "page" "$code" 200 '<script src="/assets/app.js"' page
for h in "Content-Security-Policy: default-src 'self'" "X-Frame-Options: DENY" \
    "X-Content-Type-Options: nosniff" "Referrer-Policy: no-referrer" "Cache-Control: no-store" \
    "Content-Type: text/html; charset=utf-8"; do
    grep -qiF "$h" page.hdr && pass "page header $h" || fail "page lacks '$h'"
done
grep -qiF "frame-ancestors 'none'" q1.hdr && grep -qiF "Cache-Control: no-store" q1.hdr &&
    pass "API headers" || fail "API headers: $(cat q1.hdr)"
code=$(req js "$URL/assets/app.js")
[ "$code" = 200 ] && grep -qi '^Content-Type: text/javascript' js.hdr && pass "app.js" ||
    fail "app.js: $code $(grep -i content-type js.hdr)"
code=$(req css "$URL/assets/app.css")
[ "$code" = 200 ] && grep -qi '^Content-Type: text/css' css.hdr && pass "app.css" ||
    fail "app.css: $code $(grep -i content-type css.hdr)"

# ---- reject, release, amend ----
ID3=$(json q1.body "d['items'][2]['id']")
code=$(req rj0 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{"reason":"bored"}' \
    "$URL/api/queue/$ID3/reject")
check "reject with an unknown reason" "$code" 400 '"error":"reason: wrong-findings, poor-image' rj0
code=$(req rj1 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{"reason":"poor-image"}' \
    "$URL/api/queue/$ID3/reject")
check "reject of an unclaimed draft" "$code" 409 "item $ID3 is draft: reject is not possible" rj1
req cl3 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{}' "$URL/api/queue/$ID3/claim" >/dev/null
code=$(req rl3 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST "$URL/api/queue/$ID3/release")
check "release (empty body)" "$code" 200 '"state":"draft"' rl3
req cl3 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{}' "$URL/api/queue/$ID3/claim" >/dev/null
code=$(req rj2 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{"reason":"other","note":"motion"}' \
    "$URL/api/queue/$ID3/reject")
check "reject" "$code" 200 '"state":"rejected"' rj2
code=$(req am -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST \
    -d '{"impression_text":"Cardiomegaly, amended."}' "$URL/api/queue/$ID/amend")
check "amend" "$code" 200 '"signed":\{"version":2' am
code=$(req ed3 -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{"findings_text":"a\u0001b"}' \
    "$URL/api/queue/$ID2/edit")
check "edit with a control character" "$code" 400 'control character' ed3
code=$(req q3 -b rad.jar "$URL/api/queue?state=signed&sort=age&limit=1")
check "queue filtered" "$code" 200 '"signed":2' q3
[ "$(json q3.body "[i['state'] for i in d['items']]")" = "['signed']" ] && pass "one signed item" ||
    fail "filtered items: $(cat q3.body)"

# ---- users (admin) ----
code=$(req uv -b view.jar "$URL/api/users")
check "users for a viewer" "$code" 403 "user 'view' is a viewer: the admin role is needed" uv
code=$(req la -c admin.jar -X POST -d '{"user":"admin","password":"admin-password"}' "$URL/api/login")
check "admin login" "$code" 200 '"role":"admin"' la
ACSRF=$(json la.body "d['csrf']")
code=$(req ul -b admin.jar "$URL/api/users")
check "users" "$code" 200 '"name":"rad","display_name":"Curie\^Marie","role":"radiologist","disabled":false' ul
code=$(req ua -b admin.jar -H "X-CSRF-Token: $ACSRF" -X POST \
    -d '{"name":"rad2","display_name":"Roe^R","role":"radiologist","password":"second-password"}' \
    "$URL/api/users")
check "add a user" "$code" 200 '"name":"rad2"' ua
code=$(req ua2 -b admin.jar -H "X-CSRF-Token: $ACSRF" -X POST \
    -d '{"name":"rad2","display_name":"Roe^R","role":"radiologist"}' "$URL/api/users")
check "add a taken name" "$code" 400 "user 'rad2' exists already" ua2
code=$(req ud -b admin.jar -H "X-CSRF-Token: $ACSRF" -X POST "$URL/api/users/rad2/disable")
check "disable" "$code" 200 '"disabled":true' ud
code=$(req l2 -X POST -d '{"user":"rad2","password":"second-password"}' "$URL/api/login")
check "a disabled user's login" "$code" 403 'disabled' l2
code=$(req ue -b admin.jar -H "X-CSRF-Token: $ACSRF" -X POST "$URL/api/users/rad2/enable")
check "enable" "$code" 200 '"disabled":false' ue
code=$(req uz -b admin.jar -H "X-CSRF-Token: $ACSRF" -X POST "$URL/api/users/nobody/disable")
check "disable an unknown user" "$code" 404 "no user 'nobody'" uz

# ---- a slow client ----
exec 3<>/dev/tcp/127.0.0.1/$PORT
printf 'GET / HTTP/1.1\r\n' >&3
t0=$(date +%s%N)
code=$(req slow "$URL/healthz")
check "served beside a slow client" "$code" 200 '"status":"ok"' slow
# The server must end the connection itself (cat sees the end of the stream; timeout's 124
# would mean it was still open after 60 s), and not before its 2 s request timeout is near.
# How long it took beyond that is reported, not judged.
timeout 60 cat <&3 >slow.out
rc=$?
t1=$(date +%s%N)
exec 3<&-
ms=$(((t1 - t0) / 1000000))
[ $rc -eq 0 ] && [ "$ms" -ge 1000 ] && pass "slow client cut off by the server after ${ms} ms" ||
    fail "slow client: cat exit $rc (124: the server kept the connection) after ${ms} ms"

# ---- lockout ----
for i in 1 2 3 4 5; do
    req lk -X POST -d '{"user":"rad","password":"not it at all"}' "$URL/api/login" >/dev/null
done
code=$(req lk6 -X POST -d "{\"user\":\"rad\",\"password\":\"$RADPW\"}" "$URL/api/login")
check "right password after 5 failures" "$code" 429 'too many failed logins' lk6
grep -q "radraft warn: web: .*too many failed logins" web.log && pass "lockout logged" ||
    fail "lockout not logged at warn"
# The log has rad's logins and item actions (at debug level), yet neither the password nor
# the patient's name.
if ! grep -q "web: rad logged in from" web.log || ! grep -qE "web: rad [a-z]+ item $ID" web.log; then
    fail "web.log lacks rad's login or actions (test premise): $(grep -c . web.log) lines"
else
    grep -qF "$RADPW" web.log && fail "the log holds a password" || pass "no password in the log"
    grep -qF "$PATIENT" web.log && fail "the log holds the patient name $PATIENT" ||
        pass "no patient name in the log"
fi

# ---- logout ----
code=$(req lo -b rad.jar -H "X-CSRF-Token: $CSRF" -X POST -d '{}' "$URL/api/logout")
check "logout" "$code" 200 '' lo
code=$(req lo2 -b rad.jar "$URL/api/queue")
check "the old cookie after logout" "$code" 401 'not logged in' lo2

# ---- audit ----
"$RADRAFT" audit verify --data-dir rd >verify.txt 2>&1 && pass "audit verify: $(cat verify.txt)" ||
    fail "audit verify: $(cat verify.txt)"
"$RADRAFT" audit list --user rad --data-dir rd >audit.txt
grep -Eq " rad +view " audit.txt && pass "audit has the view" || fail "no view: $(cat audit.txt)"
grep -Eq " rad +sign " audit.txt && pass "audit has the sign" || fail "no sign: $(cat audit.txt)"

# ---- HTTPS ----
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 \
    -subj /CN=127.0.0.1 >/dev/null 2>&1 || fail "openssl"
TLS_PORT=
rd_retry_port 5 start_web tls.log --data-dir rd --set web.tls_certificate=cert.pem \
    --set web.tls_private_key=key.pem && TLS_PORT=$WEB_PORT
if [ -n "$TLS_PORT" ] && wait_port "https://127.0.0.1:$TLS_PORT"; then
    code=$(req tl -k -X POST -d "{\"user\":\"view\",\"password\":\"viewer-password\"}" \
        "https://127.0.0.1:$TLS_PORT/api/login")
    check "login over HTTPS" "$code" 200 '"role":"viewer"' tl
    grep -i '^Set-Cookie:' tl.hdr | grep -q Secure && pass "Secure cookie under TLS" ||
        fail "no Secure: $(grep -i set-cookie tl.hdr)"
else
    fail "radraft web over TLS did not start: $(cat tls.log)"
fi
echo "not a key" >bad.pem
# On a port nothing listens on, so that only the key can be the reason for the refusal.
"$RADRAFT" web --port "$(rd_free_port)" --data-dir rd --set web.tls_certificate=cert.pem \
    --set web.tls_private_key=bad.pem >badtls.log 2>&1
[ $? = 1 ] && grep -q 'web.tls_private_key' badtls.log && pass "bad PEM refused: $(cat badtls.log)" ||
    fail "bad PEM: $(cat badtls.log)"

# ---- serve starts the same server ----
# start_serve: radraft serve on two new ports (SERVE_DICOM, SERVE_WEB), again on others when
# one was taken; waits until it listens on both.
start_serve() {
    local off
    read -r SERVE_DICOM SERVE_WEB < <(rd_free_ports 2)
    off=$(rd_log_size serve.log)
    "$RADRAFT" serve --port $SERVE_DICOM --data-dir rd --set web.port=$SERVE_WEB \
        --set encoder.model= >>serve.log 2>&1 &
    SERVE_PID=$!
    PIDS="$PIDS $SERVE_PID"
    rd_wait_listening "radraft serve" $SERVE_PID serve.log "$off" 20 $SERVE_DICOM $SERVE_WEB
}
SERVE_WEB=
rd_retry_port 5 start_serve || SERVE_WEB=
if [ -n "$SERVE_WEB" ] && wait_port "http://127.0.0.1:$SERVE_WEB"; then
    code=$(req sv "http://127.0.0.1:$SERVE_WEB/metrics")
    check "serve's web server" "$code" 200 'radraft_queue_items\{state="rejected"\} 1' sv
    # The node's own latencies: one C-STORE received is one observation.
    "$RADRAFT" send "$(ls s/*/*.dcm | head -1)" --to RADRAFT@127.0.0.1:$SERVE_DICOM >send.log 2>&1 ||
        fail "send to serve: $(cat send.log)"
    code=$(req sv2 "http://127.0.0.1:$SERVE_WEB/metrics")
    check "serve's C-STORE histogram" "$code" 200 'radraft_cstore_seconds_count 1' sv2
    check "serve's drafting histogram" "$code" 200 'radraft_draft_seconds_bucket\{le="\+Inf"\} 0' sv2
    check "skipped studies counted" "$code" 200 'radraft_studies_total\{outcome="skipped"\} [0-9]' sv2
else
    fail "serve did not start its web server: $(cat serve.log)"
fi

if [ $FAILS -gt 0 ]; then
    echo "$FAILS check(s) failed; web.log:"
    tail -30 web.log
    exit 1
fi
echo "all checks passed"
