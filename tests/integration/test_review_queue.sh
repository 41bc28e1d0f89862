#!/bin/bash
# The review queue end to end, with real peers: `radraft batch` drafts the sample studies;
# users are added; a radiologist claims, edits and signs one; `radraft serve` delivers the
# signed SR to a DCMTK storescp, where its flags, verifier, predecessor and series are read
# back and dciodvfy checks it; rejection, amendment, illegal transitions, competing claims
# and bad input each give one clear message and change nothing; the audit trail verifies,
# and fails once a row is changed behind its triggers; and the signed study teaches the
# archive: a copy of it under another patient finds it as its nearest neighbour.
#
# usage: bash test_review_queue.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
DATA=$2
WORK=$3
for tool in storescp dciodvfy dcmdump dcmodify sqlite3 python3; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
. "$(dirname "$0")/lib_ports.sh"
. "$(dirname "$0")/lib_wait.sh"
. "$(dirname "$0")/lib_store.sh"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

# storescp's port is held from now on: the signed SR is queued to it before storescp starts.
# radraft's is picked when it starts (start_serve).
rd_hold_ports 1 || exit 1
SCP_PORT=$RD_PORTS
HOLDER=$RD_HOLDER
PORT=
FAILS=0
SERVER=
SCP=
cleanup() { kill -9 $SERVER $SCP $HOLDER 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
db() { rd_db "$WORK/rd" "$1"; }
# tagval TAG FILE: the value of a top-level element.
tagval() { dcmdump +L +P "$1" "$2" 2>/dev/null | head -1 | sed -e 's/^[^[]*\[//' -e 's/\].*$//'; }
ORG="General Hospital Radiology"
q() { "$RADRAFT" queue "$@" --data-dir rd --set "review.organization=$ORG"; }
u() { "$RADRAFT" user "$@" --data-dir rd; }
# expect_fail CODE PATTERN CMD...: the command exits CODE and its stderr matches PATTERN.
expect_fail() {
    local code=$1 pat=$2
    shift 2
    "$@" >out.txt 2>err.txt
    local rc=$?
    if [ $rc -eq "$code" ] && grep -qiE "$pat" err.txt; then
        pass "refused ($rc): $(head -c 160 err.txt)"
    else
        fail "'$*' gave exit $rc (wanted $code) and '$(head -c 300 err.txt)' (wanted /$pat/)"
    fi
}
json() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)"; }

"$RADRAFT" samples --out samples --size 512 >/dev/null || { fail "samples"; exit 1; }
"$RADRAFT" batch samples --data-dir rd >batch.log 2>&1 || { fail "batch"; cat batch.log; exit 1; }
q list --json >list.json || fail "queue list"
n=$(json list.json "len(d)")
[ "$n" = 4 ] && pass "queue list shows the 4 drafts" || fail "queue list shows $n items"
[ "$(json list.json "sorted(set(x['state'] for x in d))")" = "['draft']" ] && pass "all drafts" ||
    fail "states: $(json list.json "[x['state'] for x in d]")"
ID=$(json list.json "d[0]['id']")
ID2=$(json list.json "d[1]['id']")
ID3=$(json list.json "d[2]['id']")
STUDY=$(json list.json "d[0]['study_uid']")

# Users: the first one is an admin created without --user; then only an admin adds users.
u add admin --role admin --display-name "Admin^Site" >/dev/null || fail "bootstrap admin"
printf 'correct horse battery\n' | u add alice --role radiologist --display-name "Smith^Alice" \
    --password-stdin --user admin >/dev/null || fail "add alice"
u add bob --role radiologist --display-name "Jones^Bob" --user admin >/dev/null || fail "add bob"
u add vic --role viewer --display-name "Viewer^Vic" --user admin >/dev/null || fail "add vic"
expect_fail 1 "admin" u add eve --role admin --display-name "Eve^" --user alice

# Claims: one holder at a time; a viewer reads but cannot claim.
q claim "$ID" --user alice >/dev/null && pass "alice claims item $ID" || fail "claim"
expect_fail 1 "claimed by alice" q claim "$ID" --user bob
expect_fail 1 "role|radiologist" q claim "$ID2" --user vic
expect_fail 1 "no (such )?user|unknown user|mallory" q claim "$ID2" --user mallory
expect_fail 1 "no review item" q claim 999999 --user alice

# Edit: an explicit finding and new text; the edit's size is recorded.
q edit "$ID" --user alice --set Cardiomegaly=present \
    --impression "Cardiomegaly. No acute pulmonary disease." >/dev/null && pass "edit" || fail "edit"
expect_fail 2 "finding" q edit "$ID" --user alice --set Unicorns=present
python3 -c "print('x' * 70000)" >long.txt
expect_fail 1 "65536" q edit "$ID" --user alice --findings "$(cat long.txt)"
expect_fail 1 "UTF-8" q edit "$ID" --user alice --findings "$(printf 'bad \xff\xfe byte')"
q show "$ID" --user vic --json >show.json || fail "show"
[ "$(json show.json "d['final_states']['Cardiomegaly']")" = present ] &&
    pass "the final states have Cardiomegaly present" || fail "final states: $(json show.json "d.get('final_states')")"
[ "$(json show.json "d['edits']['characters'] > 0")" = True ] && pass "edit size recorded" ||
    fail "edit size: $(json show.json "d['edits']")"

# Sign: needs review.organization; the SR goes to every destination through the outbox.
expect_fail 1 "review.organization" "$RADRAFT" queue sign "$ID" --user alice --data-dir rd
expect_fail 1 "claimed by alice" q sign "$ID" --user bob
q sign "$ID" --user alice --set outbox.destinations=STORESCP@127.0.0.1:$SCP_PORT --json >sign.json ||
    { fail "sign"; cat sign.json; }
SIGNED_UID=$(json sign.json "d['sop_instance_uid']")
SIGNED_SR=$(json sign.json "d['sr']")
[ "$(json sign.json "d['version']")" = 1 ] && pass "signed version 1" || fail "version"
[ "$(json sign.json "d['archived']")" = True ] && pass "the signed study joined the archive" ||
    fail "not archived"
expect_fail 1 "is signed" q sign "$ID" --user alice
expect_fail 1 "is signed" q claim "$ID" --user bob
[ "$(db "SELECT COUNT(*) FROM outbox WHERE file='$SIGNED_SR'")" = 1 ] &&
    pass "the signed SR is queued once" || fail "outbox rows for the signed SR"

mkdir -p received
storescp -od received --sort-on-study-uid st $SCP_PORT >storescp.log 2>&1 &
SCP=$!
rd_wait_listening storescp $SCP storescp.log 0 20 $SCP_PORT || fail "storescp did not start"
start_serve() {
    local off
    PORT=$(rd_free_port)
    off=$(rd_log_size serve.log)
    "$RADRAFT" serve --port $PORT --data-dir rd >>serve.log 2>&1 &
    SERVER=$!
    rd_wait_listening "radraft serve" $SERVER serve.log "$off" 20 $PORT
}
rd_retry_port 5 start_serve || fail "radraft serve did not start"
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
    pass "storescp received the signed SR"
    [ "$(tagval 0040,a493 "$got")" = VERIFIED ] && pass "VERIFIED" || fail "verification flag $(tagval 0040,a493 "$got")"
    [ "$(tagval 0040,a491 "$got")" = COMPLETE ] && pass "COMPLETE" || fail "completion flag"
    [ "$(tagval 0040,a496 "$got")" = FINAL ] && pass "FINAL" || fail "preliminary flag"
    [ "$(tagval 0040,a075 "$got")" = "Smith^Alice" ] && pass "verifying observer Smith^Alice" ||
        fail "verifying observer '$(tagval 0040,a075 "$got")'"
    DRAFT_UID=$(json show.json "d['draft_sr_sop_instance_uid']")
    dcmdump +P 0040,a360 +P 0008,1155 "$got" 2>/dev/null | grep -q "$DRAFT_UID" &&
        pass "predecessor = the draft" || fail "no predecessor reference to $DRAFT_UID"
    DRAFT_SERIES=$(tagval 0020,000e "$(json show.json "d['draft_sr']")")
    [ "$(tagval 0020,000e "$got")" != "$DRAFT_SERIES" ] && pass "signed SR in its own series" ||
        fail "signed SR in the draft series"
    dciodvfy "$got" >dciodvfy.txt 2>&1
    grep -q '^Error' dciodvfy.txt && fail "dciodvfy: $(grep '^Error' dciodvfy.txt | head -3)" ||
        pass "dciodvfy: no errors"
else
    fail "the signed SR did not reach storescp: $RD_WAIT_SAID"
    tail -5 serve.log
fi
kill $SERVER 2>/dev/null
wait $SERVER 2>/dev/null
SERVER=

# Reject: a reason from the list; nothing is sent.
q claim "$ID2" --user bob >/dev/null || fail "bob claims $ID2"
expect_fail 1 "reason" q reject "$ID2" --user bob --reason boring
n_out=$(db "SELECT COUNT(*) FROM outbox")
q reject "$ID2" --user bob --reason poor-image --note "motion blur" >/dev/null && pass "rejected" ||
    fail "reject"
[ "$(db "SELECT state FROM reviews WHERE id=$ID2")" = rejected ] && pass "state rejected" || fail "state after reject"
[ "$(db "SELECT COUNT(*) FROM outbox")" = "$n_out" ] && pass "a rejection sends nothing" || fail "outbox grew"
expect_fail 1 "is rejected" q claim "$ID2" --user alice

# Amend: a new signed version whose predecessor is the previous signed SR.
q amend "$ID" --user bob --findings "Enlarged cardiac silhouette. Lungs are clear." --json >amend.json ||
    fail "amend"
[ "$(json amend.json "d['version']")" = 2 ] && pass "amended: version 2" || fail "amend version"
[ "$(json amend.json "d['predecessor_sop_instance_uid']")" = "$SIGNED_UID" ] &&
    pass "the amendment's predecessor is version 1" || fail "amend predecessor"
states=$(db "SELECT state FROM signatures WHERE review_id=$ID ORDER BY version" | paste -sd,)
[ "$states" = "superseded,current" ] && pass "version 1 superseded" || fail "signature states $states"

# Two radiologists claim at once: exactly one wins.
(q claim "$ID3" --user alice >c1.out 2>&1; echo $? >c1.rc) &
p1=$!
(q claim "$ID3" --user bob >c2.out 2>&1; echo $? >c2.rc) &
p2=$!
wait $p1 $p2
wins=$(( ($(cat c1.rc) == 0) + ($(cat c2.rc) == 0) ))
[ "$wins" = 1 ] && pass "two claims at once: one wins" || fail "two claims at once: $wins won"

# The audit trail: every action and view is there, the chain verifies, and a row changed
# around the triggers breaks it.
n_audit=$(db "SELECT COUNT(*) FROM audit")
[ "$(db "SELECT COUNT(*) FROM audit WHERE action='view' AND user='vic'")" -ge 1 ] &&
    pass "views are audited" || fail "no view row"
for a in claim edit sign reject amend user-add; do
    [ "$(db "SELECT COUNT(*) FROM audit WHERE action='$a'")" -ge 1 ] || fail "no '$a' audit row"
done
"$RADRAFT" audit verify --data-dir rd >verify.txt 2>&1 && pass "audit verify: $(cat verify.txt)" ||
    fail "audit verify: $(cat verify.txt)"
expect_fail "$(rd_db_refused_status)" "append-only" rd_db rd "UPDATE audit SET user='mallory' WHERE id=2"
rd_db_around_triggers rd "UPDATE audit SET user='mallory' WHERE id=2"
expect_fail 1 "row 2|id 2" "$RADRAFT" audit verify --data-dir rd

# Data and model together: a copy of the signed study under another patient finds it as
# its nearest neighbour, and its draft follows the signed Cardiomegaly.
mkdir -p copy
i=0
for f in samples/*/*.dcm; do
    [ "$(tagval 0020,000d "$f")" = "$STUDY" ] || continue
    i=$((i + 1))
    cp "$f" copy/$i.dcm
done
[ "$i" -ge 1 ] || fail "no file of study $STUDY among the samples"
dcmodify -nb -m "(0010,0020)=OTHER-PATIENT" -m "(0010,0010)=Other^Patient" \
    -m "(0020,000d)=1.2.826.0.1.3680043.10.1082.77.1" \
    -m "(0020,000e)=1.2.826.0.1.3680043.10.1082.77.2" copy/*.dcm >/dev/null 2>&1 || fail "dcmodify"
for f in copy/*.dcm; do
    dcmodify -nb -m "(0008,0018)=1.2.826.0.1.3680043.10.1082.77.3.$(basename "$f" .dcm)" "$f" >/dev/null 2>&1
done
"$RADRAFT" batch copy --data-dir rd >batch2.log 2>&1 || { fail "batch of the copy"; cat batch2.log; }
NEW=$(db "SELECT id FROM reviews WHERE study_uid='1.2.826.0.1.3680043.10.1082.77.1'")
db "SELECT neighbours_json FROM reviews WHERE id=$NEW" >nb.json
db "SELECT findings_json FROM reviews WHERE id=$NEW" >fj.json
db "SELECT findings_json FROM reviews WHERE id=$ID" >fj0.json
[ "$(json nb.json "d[0]['study_uid']")" = "$STUDY" ] && pass "the signed study is the copy's nearest neighbour ($(json nb.json "round(d[0]['similarity'], 4)"))" ||
    fail "nearest neighbour: $(json nb.json "d[:2]")"
v_new=$(json fj.json "d['Cardiomegaly'].get('votes', 0)")
v_old=$(json fj0.json "d['Cardiomegaly'].get('votes', 0)")
python3 -c "import sys; sys.exit(0 if $v_new > $v_old else 1)" &&
    pass "the neighbours' Cardiomegaly vote rose from $v_old to $v_new with the signed report" ||
    fail "Cardiomegaly votes $v_old -> $v_new"

echo "audit rows: $n_audit"
[ $FAILS -eq 0 ] && echo "PASS" || { echo "$FAILS failures"; exit 1; }
