#!/bin/bash
# radraft serve against real DCMTK peers: echo, storage in every transfer syntax with the
# dataset unchanged, parallel senders, kill -9 during a parallel send, the calling AE
# allowlist, hostile UIDs, and the outbox delivering to a storescp that is down, then up.
#
# usage: test_net_serve.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$1
DATA=$2
WORK=$3
for tool in storescu storescp echoscu dcmdump dcmodify sqlite3; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
[ -d "$DATA/dicom/codecs" ] || { echo "FAIL: shared data not found at $DATA"; exit 1; }

. "$(dirname "$0")/lib_ports.sh"
. "$(dirname "$0")/lib_wait.sh"
. "$(dirname "$0")/lib_store.sh"

rm -rf "$WORK" && mkdir -p "$WORK" || exit 1
cd "$WORK" || exit 1
# radraft's port is new at each start (start_server); the peer's is held from now on, since
# the outbox queues deliveries to it before it is up (section 5).
PORT=
rd_hold_ports 1 || exit 1
PEER_PORT=$RD_PORTS
FAILS=0
PIDS=($RD_HOLDER)
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }

# start_server DATADIR LOG [extra args]: starts radraft serve on a new port (PORT), again on
# another one when the port was taken meanwhile, and waits until it answers.
start_server() {
    rd_retry_port 5 start_server_once "$@"
}
start_server_once() {
    local dir=$1 log=$2 off
    shift 2
    PORT=$(rd_free_port)
    off=$(rd_log_size "$log")
    "$RADRAFT" serve --port $PORT --data-dir "$dir" --stable-seconds 1 --log-level debug \
        --set encoder.model= "$@" \
        >>"$log" 2>&1 &
    SERVER=$!
    PIDS+=($SERVER)
    rd_wait_listening "radraft serve" $SERVER "$log" "$off" 20 $PORT || return
    rd_wait_for "radraft serve to answer a C-ECHO" 20 echo_probe
}
echo_probe() { echoscu -aet PROBE -aec RADRAFT localhost $PORT; }
# acks LOG: the number of C-STOREs storescu -v logged as acknowledged in LOG.
acks() { grep -c "Received Store Response (Success)" "$1"; }
# make_files DIR N STUDY: N copies of a 0.5 MB CT image in DIR, new SOP Instance UIDs, one
# study. Inputs for senders that must still be sending when they are cut off.
make_files() {
    mkdir -p "$1"
    for i in $(seq 1 "$2"); do cp "$DATA/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm" "$1/f$i.dcm"; done
    chmod u+w "$1"/*.dcm
    dcmodify -nb -gin -i "(0020,000d)=$3" "$1"/*.dcm >/dev/null 2>&1
}
# sending PID LOG N: says how far storescu PID (logging to LOG, sending N files) got; true
# while it has had a store acknowledged and is still sending (not all N acknowledged, no
# release).
sending() {
    local n
    n=$(acks "$2")
    echo "storescu $1: $n of $3 acknowledged$(grep -q 'Releasing Association' "$2" && echo ', released')"
    [ "$n" -ge 1 ] && [ "$n" -lt "$3" ] && ! grep -q "Releasing Association" "$2" && kill -0 "$1" 2>/dev/null
}
# got_going PID LOG: storescu PID has had a store acknowledged, or has exited.
got_going() {
    echo "storescu $1: $(acks "$2") acknowledged"
    [ "$(acks "$2")" -ge 1 ] || ! kill -0 "$1" 2>/dev/null
}
stop_server() {
    kill -TERM $SERVER 2>/dev/null
    wait $SERVER 2>/dev/null
    return $?
}
db() { rd_db "$1" "$2"; }
sop_of() { dcmdump -q +P 0008,0018 "$1" | sed -e 's/.*\[\(.*\)\].*/\1/' | head -1; }
study_of() { dcmdump -q +P 0020,000d "$1" | sed -e 's/.*\[\(.*\)\].*/\1/' | head -1; }
# The dataset as dcmdump prints it, every value in full (pixel data included), without
# the file meta header, group lengths and length annotations: storescu itself re-encodes
# what it sends (it drops group lengths and may change sequence length encoding), which is
# not radraft's doing; every value, pixel data included, must be the same.
dataset_dump() {
    dcmdump -q +L +U8 "$1" | grep -a -v -e '^#' -e '^(0002,' -e '^ *([0-9a-f]\{4\},0000)' \
        -e '(fffe,e00d)' -e '(fffe,e0dd)' \
        | sed -e 's/ *#[^#]*$//' -e 's/(Sequence with [a-z]* length #=[0-9]*)/(Sequence)/' \
              -e 's/(Item with [a-z]* length #=[0-9]*)/(Item)/'
}
meta_xfer() { dcmdump -q -M +P 0002,0010 "$1" 2>/dev/null | sed -e 's/.*\[\(.*\)\].*/\1/' | head -1; }

########## 1. echo and storage of every transfer syntax, dataset unchanged
D1=$WORK/d1
start_server "$D1" server1.log || { fail "radraft serve did not start"; exit 1; }
echoscu -aet TESTSCU -aec RADRAFT localhost $PORT && pass "echoscu" || fail "echoscu"
"$RADRAFT" echo RADRAFT@localhost:$PORT >/dev/null && pass "radraft echo" || fail "radraft echo"

# A sample whose SOP Instance UID breaks the standard's rules (a component with a leading
# zero, 999.999.01...) is refused (0xC000), never stored under a repaired UID; it is sent on
# its own below, as storescu stops at the first refusal.
uid_ok() { [[ $1 =~ ^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$ ]] && [ ${#1} -le 64 ]; }
FILES=""
BAD_UID_FILES=""
for f in "$DATA"/dicom/codecs/*.dcm "$DATA"/dicom/chest/*.dcm; do
    if uid_ok "$(sop_of "$f")"; then FILES="$FILES $f"; else BAD_UID_FILES="$BAD_UID_FILES $f"; fi
done
[ -n "$BAD_UID_FILES" ] || fail "expected a sample with an invalid UID (codecs/CR-ModalitySequenceLUT-jpeg-lossless.dcm)"
# storescu proposes only uncompressed syntaxes unless told otherwise: a generated
# configuration proposes each file's own (SOP class, transfer syntax), one context each,
# so that every file travels as it is, compressed or not.
make_storescu_cfg() {
    local i=0 t=0
    declare -A ts_name
    {
        echo "[[TransferSyntaxes]]"
        for f in "$@"; do
            ts=$(dcmdump -q -M -Un +P 0002,0010 "$f" 2>/dev/null | sed -e 's/.*\[\(.*\)\].*/\1/' | head -1)
            [ -n "$ts" ] || ts=1.2.840.10008.1.2
            if [ -z "${ts_name[$ts]:-}" ]; then
                t=$((t + 1)); ts_name[$ts]=TS$t
                echo "[TS$t]"; echo "TransferSyntax1 = $ts"
            fi
        done
        echo "[[PresentationContexts]]"; echo "[Files]"
        for f in "$@"; do
            ts=$(dcmdump -q -M -Un +P 0002,0010 "$f" 2>/dev/null | sed -e 's/.*\[\(.*\)\].*/\1/' | head -1)
            [ -n "$ts" ] || ts=1.2.840.10008.1.2
            cls=$(dcmdump -q -Un +P 0008,0016 "$f" | sed -e 's/.*\[\(.*\)\].*/\1/' | head -1)
            echo "$cls ${ts_name[$ts]}"
        done | sort -u | while read -r cls tsn; do
            i=$((i + 1)); echo "PresentationContext$i = $cls\\$tsn"
        done
        echo "[[Profiles]]"; echo "[Files]"; echo "PresentationContexts = Files"
    } >storescu.cfg
}
make_storescu_cfg $FILES
storescu -aet TESTSCU -aec RADRAFT -xf storescu.cfg Files localhost $PORT $FILES >storescu1.log 2>&1 \
    && pass "storescu sent $(echo $FILES | wc -w) files" || fail "storescu (see storescu1.log)"
# Some sample files are one image in several encodings with one SOP Instance UID: the
# first one sent is kept (store.duplicate_policy keep-first), the others are duplicates.
declare -A first_of
n_unique=0
for f in $FILES; do
    sop=$(sop_of "$f")
    if [ -z "${first_of[$sop]:-}" ]; then first_of[$sop]=$f; n_unique=$((n_unique + 1)); fi
done
n_ok=0
for sop in "${!first_of[@]}"; do
    f=${first_of[$sop]}
    stored=$(find "$D1/store" -name "$sop.dcm")
    if [ -n "$stored" ] && cmp -s <(dataset_dump "$f") <(dataset_dump "$stored"); then
        n_ok=$((n_ok + 1))
    else
        fail "$f ($sop): not stored, or not the first one sent"
    fi
done
[ $n_ok -eq $n_unique ] && pass "$n_unique distinct instances stored, duplicates kept first" \
    || fail "only $n_ok of $n_unique distinct instances stored as sent first"
for f in $BAD_UID_FILES; do
    sop=$(sop_of "$f")
    before=$(find "$D1/store" -name '*.dcm' | wc -l)
    make_storescu_cfg "$f"
    if storescu -v -aet TESTSCU -aec RADRAFT -xf storescu.cfg Files localhost $PORT "$f" >baduid.log 2>&1; then
        fail "$f: SOP Instance UID $sop accepted"
    elif grep -q "Received Store Response (Error: CannotUnderstand)" baduid.log && grep -qF "SOP Instance UID '$sop' is not a valid UID" server1.log &&
        [ "$(find "$D1/store" -name '*.dcm' | wc -l)" -eq "$before" ]; then
        pass "$sop (not a valid UID) refused with 0xC000 and logged, nothing stored"
    else fail "$f: invalid UID $sop not refused as expected: $(tail -3 baduid.log)"; fi
done
grep -q "received again with different content.*keeping the first" server1.log \
    && pass "different-content duplicates logged" || fail "duplicates not logged"
rows=$(db "$D1" "SELECT COUNT(*) FROM instances")
[ "$rows" -eq $n_unique ] && pass "$rows rows indexed" || fail "$rows rows indexed, not $n_unique"

# Every transfer syntax: copies with new SOP Instance UIDs (dcmodify keeps the syntax and
# the encapsulated pixel data), each stored with the dataset unchanged, pixel data
# included, in the syntax it was sent in.
mkdir -p uniq
i=0
for f in $FILES; do i=$((i + 1)); cp "$f" uniq/u$i.dcm; done
chmod u+w uniq/*.dcm
dcmodify -nb -gin uniq/*.dcm >/dev/null 2>&1
UFILES=$(ls uniq/*.dcm)
make_storescu_cfg $UFILES
storescu -aet TESTSCU -aec RADRAFT -xf storescu.cfg Files localhost $PORT $UFILES >storescu1u.log 2>&1 \
    && pass "storescu sent the copies" || fail "storescu copies (see storescu1u.log)"
n_ok=0
for f in $UFILES; do
    sop=$(sop_of "$f")
    stored=$(find "$D1/store" -name "$sop.dcm")
    if [ -z "$stored" ]; then
        fail "$f ($sop) not stored"
        continue
    fi
    if ! cmp -s <(dataset_dump "$f") <(dataset_dump "$stored"); then
        fail "$f: stored dataset differs"
        diff <(dataset_dump "$f") <(dataset_dump "$stored") | head -6 | cut -c1-200
        continue
    fi
    orig=$(meta_xfer "$f")
    if [ -n "$orig" ] && [ "$orig" != "$(meta_xfer "$stored")" ]; then
        fail "$f: transfer syntax $orig became $(meta_xfer "$stored")"
        continue
    fi
    n_ok=$((n_ok + 1))
done
n_xfers=$(for f in $UFILES; do meta_xfer "$f"; done | sort -u | wc -l)
[ $n_ok -eq $(echo $UFILES | wc -w) ] && pass "$n_ok files in $n_xfers transfer syntaxes stored unchanged" \
    || fail "only $n_ok files stored unchanged"
n_all=$((n_unique + $(echo $UFILES | wc -w)))
# Sending everything again: success, no second copy.
storescu -aet TESTSCU -aec RADRAFT -xf storescu.cfg Files localhost $PORT $UFILES >storescu1b.log 2>&1 \
    && pass "resend accepted" || fail "resend"
[ "$(find "$D1/store" -name '*.dcm' | wc -l)" -eq $n_all ] \
    && pass "resend kept one copy each" || fail "resend made copies"
# Every study gets a job once it is stable: polled for, not slept for.
jobs_done() {
    studies=$(db "$D1" "SELECT COUNT(*) FROM studies")
    jobs=$(db "$D1" "SELECT COUNT(*) FROM jobs WHERE state='done'")
    no_job=$(db "$D1" "SELECT COUNT(*) FROM studies s WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid=s.study_uid AND j.state='done')")
    echo "$studies studies, $jobs jobs done, $no_job studies without a done job"
    [ "$studies" -gt 0 ] && [ "$no_job" -eq 0 ]
}
rd_wait_for "a done job for every study" 60 jobs_done && pass "$studies studies, $jobs jobs done" \
    || fail "studies without a done job: $RD_WAIT_SAID"
stop_server && pass "clean shutdown on SIGTERM" || fail "exit status after SIGTERM"

########## 2. parallel senders: 8 x 25 instances, each stored exactly once
mkdir -p big
for s in $(seq 1 8); do
    mkdir -p big/s$s
    for i in $(seq 1 60); do cp "$DATA/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm" big/s$s/f$i.dcm; done
    dcmodify -nb -gin -i "(0020,000d)=1.2.826.0.1.3680043.9.7778.$s.$$" big/s$s/*.dcm \
        >/dev/null 2>&1
done
D2=$WORK/d2
mkdir -p src
# An uncompressed file: storescu proposes uncompressed syntaxes only by default.
SRC=$DATA/dicom/codecs/emri_small_big_endian.dcm
for s in $(seq 1 8); do
    mkdir -p src/s$s
    for i in $(seq 1 25); do cp "$SRC" src/s$s/f$i.dcm; done
    # New SOP Instance UIDs, and a study per sender.
    dcmodify -nb -gin -i "(0020,000d)=1.2.826.0.1.3680043.9.7777.$s.$$" src/s$s/*.dcm \
        >/dev/null 2>&1
done
chmod -R u+w src
start_server "$D2" server2.log || { fail "radraft serve did not start"; exit 1; }
for s in $(seq 1 8); do
    storescu -aet SENDER$s -aec RADRAFT localhost $PORT src/s$s/*.dcm >par$s.log 2>&1 &
    SENDERS[$s]=$!
done
ok=1
for s in $(seq 1 8); do wait ${SENDERS[$s]} || ok=0; done
[ $ok -eq 1 ] && pass "8 parallel storescu finished" || fail "a parallel storescu failed"
rows=$(db "$D2" "SELECT COUNT(*) FROM instances")
files=$(find "$D2/store" -name '*.dcm' | wc -l)
uniq=$(for f in src/s*/*.dcm; do sop_of "$f"; done | sort -u | wc -l)
[ "$rows" -eq 200 ] && [ "$files" -eq 200 ] && [ "$uniq" -eq 200 ] \
    && pass "200 instances stored exactly once" || fail "rows=$rows files=$files unique=$uniq"

# A peer that disconnects in the middle of a transfer: nothing half-written, the server
# goes on, and what it acknowledged before is stored. The sender is killed once a store of
# it is acknowledged, and it must still have been sending then; if it had already finished
# (a fast machine), the same again with three times as many files.
QAE=
quitter_files=(big/s1/*.dcm)
for try in 1 2 3; do
    QAE=QUITTER$try
    storescu -v -aet $QAE -aec RADRAFT localhost $PORT "${quitter_files[@]}" >quitter.log 2>&1 &
    Q=$!
    rd_wait_for "$QAE's first acknowledged store" 60 got_going $Q quitter.log
    mid=0
    said=$(sending $Q quitter.log ${#quitter_files[@]}) && mid=1
    kill -9 $Q 2>/dev/null
    wait $Q 2>/dev/null
    [ $mid -eq 1 ] && break
    echo "note: $QAE was not sending when killed ($said); again with more files"
    make_files quit/t$try $((${#quitter_files[@]} * 3)) "1.2.826.0.1.3680043.9.7779.$try.$$"
    quitter_files=(quit/t$try/*.dcm)
done
[ $mid -eq 1 ] && pass "$QAE killed mid-send ($said)" \
    || fail "no sender was still sending when killed, after 3 tries (test premise): $said"
# The listener is done with the killed association once it logs why it ended (a failed
# receive or response, or the abort); only then is what it stored final.
quitter_ended() {
    grep -a "$QAE (127.0.0.1)" server2.log | tail -1
    grep -aqE "$QAE \(127\.0\.0\.1\).*(failed|aborted|aborting)" server2.log
}
rd_wait_for "the listener to end $QAE's association" 30 quitter_ended \
    || fail "the listener did not log the end of the killed association"
# Garbage instead of an association request, and a connection closed at once: the server
# must log the garbage as a failed association request, and answer after both.
garbage_before=$(grep -ac "receiving the association request from 127.0.0.1 failed" server2.log)
exec 3<>/dev/tcp/127.0.0.1/$PORT && printf 'this is not a DICOM PDU\r\n' >&3 && exec 3>&-
exec 3<>/dev/tcp/127.0.0.1/$PORT && exec 3>&-
garbage_seen() {
    local n
    n=$(grep -ac "receiving the association request from 127.0.0.1 failed" server2.log)
    echo "$((n - garbage_before)) new 'receiving the association request from 127.0.0.1 failed' lines"
    [ "$n" -gt "$garbage_before" ]
}
rd_wait_for "the listener to log the garbage" 30 garbage_seen || fail "garbage not logged"
echoscu -aet PROBE -aec RADRAFT localhost $PORT >/dev/null 2>&1 \
    && pass "alive after a sender was killed mid-transfer and after garbage" \
    || fail "server dead after a disconnect"
acked=$(acks quitter.log)
rows=$(db "$D2" "SELECT COUNT(*) FROM instances WHERE calling_ae='$QAE'")
[ "$rows" -ge "$acked" ] && [ "$rows" -le $((acked + 1)) ] \
    && pass "killed sender: $acked acknowledged, $rows stored" \
    || fail "killed sender: $acked acknowledged but $rows stored"
[ -z "$(find "$D2/store" -name '.tmp-*')" ] && pass "no temporary file after the disconnect" \
    || fail "temporary file left after the disconnect"
stop_server

########## 2b. SIGTERM during a send: the store in flight finishes, the server exits
# The SIGTERM goes once a store is acknowledged while the sender is still sending; if it
# finished first (a fast machine), the same again with three times as many files.
start_server "$D2" server2b.log || { fail "radraft serve did not restart"; exit 1; }
termed_files=(big/s2/*.dcm)
mid=0
for try in 1 2 3; do
    storescu -v -aet TERMED -aec RADRAFT localhost $PORT "${termed_files[@]}" >termed.log 2>&1 &
    T=$!
    rd_wait_for "TERMED's first acknowledged store" 60 got_going $T termed.log
    said=$(sending $T termed.log ${#termed_files[@]}) && { mid=1; break; }
    wait $T
    echo "note: TERMED was not sending at the SIGTERM ($said); again with more files"
    make_files term/t$try $((${#termed_files[@]} * 3)) "1.2.826.0.1.3680043.9.7780.$try.$$"
    termed_files=(term/t$try/*.dcm)
done
[ $mid -eq 1 ] && pass "SIGTERM while TERMED is sending ($said)" \
    || fail "TERMED was not sending at the SIGTERM, after 3 tries (test premise): $said"
t0=$(rd_now_us)
kill -TERM $SERVER
# The time to exit is reported, not judged; a server that does not exit at all fails.
server_gone() { ! kill -0 $SERVER 2>/dev/null; }
rd_wait_for "radraft serve to exit after SIGTERM" 60 server_gone || fail "no exit 60 s after SIGTERM"
wait $SERVER
rc=$?
t1=$(rd_now_us)
wait $T
[ $rc -eq 0 ] && pass "SIGTERM during a send: exit 0 after $(((t1 - t0) / 1000)) ms" \
    || fail "SIGTERM during a send: exit $rc after $(((t1 - t0) / 1000)) ms"
missing=0
for f in $(awk '/Sending file:/{f=$NF} /Received Store Response \(Success\)/{print f}' termed.log); do
    sop=$(sop_of "$f")
    [ -n "$(db "$D2" "SELECT 1 FROM instances WHERE sop_instance_uid='$sop'")" ] \
        || missing=$((missing + 1))
done
n_t=$(acks termed.log)
[ $missing -eq 0 ] && [ $n_t -lt ${#termed_files[@]} ] \
    && pass "$n_t of ${#termed_files[@]} acknowledged before the shutdown, all stored" \
    || fail "shutdown: $n_t of ${#termed_files[@]} acknowledged, $missing missing"

########## 3. kill -9 during a parallel send; restart; every success is there
D3=$WORK/d3
start_server "$D3" server3.log || { fail "radraft serve did not start"; exit 1; }
for s in $(seq 1 8); do
    storescu -v -aet CRASH$s -aec RADRAFT localhost $PORT big/s$s/*.dcm >crash$s.log 2>&1 &
    SENDERS[$s]=$!
done
# Kill as soon as some instances are acknowledged, so that the kill falls mid-send on a fast
# machine as on a slow one (a fixed sleep let all 480 finish first when the machine was idle).
crash_acks() {
    local n
    n=$(cat crash*.log 2>/dev/null | grep -c "Received Store Response (Success)")
    echo "$n of 480 acknowledged"
    [ "$n" -ge 24 ]
}
rd_wait_for "24 acknowledged stores among the 8 senders" 60 crash_acks \
    || fail "the senders did not get going before the kill -9"
kill -9 $SERVER
for s in $(seq 1 8); do wait ${SENDERS[$s]}; done
# Files whose C-STORE got a success response: storescu -v logs "Sending file: X" and then
# "Received Store Response (Success)".
awk '/Sending file:/{f=$NF} /Received Store Response \(Success\)/{print f}' crash*.log \
    | sort -u >acked.txt
n_acked=$(wc -l <acked.txt)
[ "$n_acked" -gt 0 ] && [ "$n_acked" -lt 480 ] && pass "$n_acked of 480 acknowledged before kill -9" \
    || fail "$n_acked of 480 acknowledged before kill -9 (the kill was not mid-send)"
start_server "$D3" server3b.log || { fail "radraft serve did not restart"; exit 1; }
missing=0
while read -r f; do
    sop=$(sop_of "$f")
    r=$(db "$D3" "SELECT path FROM instances WHERE sop_instance_uid='$sop'")
    if [ -z "$r" ] || ! cmp -s <(dataset_dump "$f") <(dataset_dump "$D3/$r"); then
        missing=$((missing + 1))
    fi
done <acked.txt
[ $missing -eq 0 ] && pass "every acknowledged instance is present, indexed and intact" \
    || fail "$missing acknowledged instances missing after the crash"
[ -z "$(find "$D3/store" -name '.tmp-*')" ] && pass "no temporary file left after restart" \
    || fail "temporary files left"
every_job_done() {
    no_job=$(db "$D3" "SELECT COUNT(*) FROM studies s WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.study_uid=s.study_uid AND j.state='done')")
    echo "$no_job studies without a done job"
    [ "$no_job" -eq 0 ]
}
rd_wait_for "a done job for every study after the restart" 60 every_job_done \
    && pass "every study got its job after the restart" || fail "after the restart: $RD_WAIT_SAID"
stop_server

########## 4. allowlist, called AE check and hostile UIDs
D4=$WORK/d4
start_server "$D4" server4.log --set server.allowed_calling_aes=GOODAE,PROBE \
    --set server.check_called_ae=true || { fail "radraft serve did not start"; exit 1; }
echoscu -aet GOODAE -aec RADRAFT localhost $PORT >/dev/null 2>&1 && pass "allowed AE accepted" \
    || fail "allowed AE rejected"
# Each refusal must be the one expected: echoscu fails with an association rejection, and
# the listener logs the reason with the peer.
if echoscu -aet BADAE -aec RADRAFT localhost $PORT >badae.out 2>&1; then
    fail "BADAE accepted"
elif grep -q "Association Rejected" badae.out; then pass "unknown calling AE rejected"
else fail "BADAE: not an association rejection: $(cat badae.out)"; fi
grep -q "rejected an association from 127.0.0.1: calling AE title 'BADAE' is not in server.allowed_calling_aes" \
    server4.log && pass "rejection logged with the peer and the reason" || fail "rejection not logged"
if echoscu -aet GOODAE -aec WRONG localhost $PORT >wrongae.out 2>&1; then
    fail "wrong called AE accepted"
elif grep -q "Association Rejected" wrongae.out &&
    grep -q "called AE title 'WRONG' is not 'RADRAFT'" server4.log; then
    pass "wrong called AE rejected, and logged"
else fail "wrong called AE: $(cat wrongae.out)"; fi

mkdir -p hostile
i=0
# An uncompressed source, so that storescu sends every variant as it is.
HSRC=$DATA/dicom/codecs/emri_small_big_endian.dcm
for uid in "../../../../evil" "1.2.3/../../evil" "1.2..3" \
    "1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25.26.27.28"; do
    i=$((i + 1))
    for tag in 0020,000d 0020,000e 0008,0018; do
        n=hostile/h$i-${tag/,/-}.dcm
        cp "$HSRC" $n && chmod u+w $n
        dcmodify -nb -gin -i "($tag)=$uid" $n >/dev/null 2>&1
    done
done
for f in hostile/*.dcm; do
    storescu -v -aet GOODAE -aec RADRAFT localhost $PORT $f >>hostile.log 2>&1
done
# Malformed UIDs are refused as they arrive, by the rules of PS3.5 9.1 (0xC000, Cannot
# Understand); the store refuses what would still be unsafe as a path (0xA900). DCMTK itself
# refuses some (a UID over 64 characters does not fit in a C-STORE request). Each refusal is
# logged with its status, and each reaches its sender as that status.
n_c000=$(grep -a -c "from GOODAE (127.0.0.1) failed with status 0xc000: the dataset's .* is not a valid UID" server4.log)
n_a900=$(grep -a -c "from GOODAE (127.0.0.1) failed with status 0xa900" server4.log)
refused=$((n_c000 + n_a900))
[ "$refused" -ge 6 ] && pass "$refused hostile instances refused ($n_c000 as invalid UIDs, $n_a900 by the store)" \
    || fail "only $refused hostile instances were refused"
n_status=$(grep -a -c -e "Received Store Response (Error: CannotUnderstand)" \
    -e "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" hostile.log)
[ "$n_status" -eq "$refused" ] \
    && pass "each of the $refused refusals reached the sender as its failure status" \
    || fail "$refused refusals logged, but $n_status senders saw a failure status"
[ -z "$(find "$WORK" -name 'evil*')" ] && pass "no hostile UID escaped the store" \
    || fail "a hostile UID made a file: $(find "$WORK" -name 'evil*')"
rows=$(db "$D4" "SELECT COUNT(*) FROM instances")
[ "$rows" -eq 0 ] && pass "hostile instances refused" || fail "$rows hostile instances stored"
echoscu -aet GOODAE -aec RADRAFT localhost $PORT >/dev/null 2>&1 && pass "alive after hostile input" \
    || fail "server dead after hostile input"
stop_server

########## 5. outbox: delivery to storescp, retried while it is down
D5=$WORK/d5
mkdir -p rx
start_server "$D5" server5.log --send-to PEER@localhost:$PEER_PORT \
    --set outbox.retry_initial_seconds=1 --set outbox.retry_max_seconds=2 \
    || { fail "radraft serve did not start"; exit 1; }
F=$DATA/dicom/chest/siim-CR-jpeg-baseline.dcm
"$RADRAFT" send --queue --data-dir "$D5" --to PEER@localhost:$PEER_PORT "$F" && pass "queued in the outbox" || fail "send --queue"
# outbox_is STATE MIN_ATTEMPTS [ID]: the delivery (ID, or the only one) is in STATE after at
# least MIN_ATTEMPTS attempts.
outbox_is() {
    local st
    st=$(db "$D5" "SELECT state || ' ' || attempts FROM outbox WHERE id=${3:-(SELECT MIN(id) FROM outbox)}")
    echo "outbox: ${st:-no row}"
    [ "${st% *}" = "$1" ] && [ "${st#* }" -ge "$2" ]
}
rd_wait_for "two failed attempts while the peer is down" 30 outbox_is pending 2 \
    && pass "delivery pending while the peer is down ($RD_WAIT_SAID)" \
    || fail "while the peer is down: $RD_WAIT_SAID"
storescp +xa -aet PEER -od rx $PEER_PORT >storescp.log 2>&1 &
PIDS+=($!)
STORESCP=$!
rd_wait_listening storescp $STORESCP storescp.log 0 20 $PEER_PORT || fail "storescp did not start"
rd_wait_for "the delivery once the peer is up" 30 outbox_is done 3 \
    && pass "delivered after retries ($RD_WAIT_SAID)" || fail "after the peer came up: $RD_WAIT_SAID"
[ "$(ls rx | wc -l)" -eq 1 ] && cmp -s <(dataset_dump "$F") <(dataset_dump rx/*) \
    && pass "peer received the file unchanged" || fail "peer did not receive the file unchanged"
# Confirmed deliveries are never sent again, also after a restart. The restarted outbox has
# had its chance to resend once a delivery queued after the restart is done and none is
# left pending: then the peer must hold that one and the first, nothing more.
attempts1=$(db "$D5" "SELECT attempts FROM outbox")
stop_server
start_server "$D5" server5b.log --send-to PEER@localhost:$PEER_PORT || fail "restart"
"$RADRAFT" send --queue --data-dir "$D5" --to PEER@localhost:$PEER_PORT "$DATA"/dicom/codecs/RG3_J2KR.dcm \
    || fail "send --queue after the restart"
outbox_idle() {
    db "$D5" "SELECT id, state, attempts FROM outbox"
    [ "$(db "$D5" "SELECT COUNT(*) FROM outbox WHERE state<>'done'")" = 0 ] &&
        [ "$(db "$D5" "SELECT COUNT(*) FROM outbox")" = 2 ]
}
rd_wait_for "both deliveries done after the restart" 30 outbox_idle || fail "outbox after the restart: $RD_WAIT_SAID"
[ "$(ls rx | wc -l)" -eq 2 ] && [ "$(db "$D5" "SELECT attempts FROM outbox WHERE id=(SELECT MIN(id) FROM outbox)")" = "$attempts1" ] \
    && pass "nothing sent twice after restart" || fail "sent twice: $(ls rx | wc -l) files at the peer, outbox: $(db "$D5" "SELECT id, state, attempts FROM outbox")"
"$RADRAFT" send --to PEER@localhost:$PEER_PORT "$DATA"/dicom/codecs/JPEG-LL.dcm \
    && pass "radraft send" || fail "radraft send"
[ "$(ls rx | wc -l)" -eq 3 ] && pass "storescp got the sent file" || fail "storescp did not get it"
stop_server
kill $STORESCP 2>/dev/null

# store.sync filesystem: 4 senders at once, each instance made durable by its commit group's
# syncfs; every acknowledged instance has its row and its file, and nothing is left in the
# spool.
D6="$WORK/data6"
mkdir -p fsync
for i in $(seq 1 24); do cp "$DATA"/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm fsync/f$i.dcm; done
chmod u+w fsync/*.dcm && dcmodify -nb -gin fsync/*.dcm >/dev/null 2>&1
start_server "$D6" server6.log --set store.sync=filesystem || fail "serve with store.sync filesystem"
pids=()
for k in 0 1 2 3; do
    storescu -aet TESTSCU -aec RADRAFT localhost $PORT $(ls fsync/*.dcm | awk -v k=$k 'NR % 4 == k') \
        >storescu6.$k.log 2>&1 &
    pids+=($!)
done
sent_ok=1
for p in "${pids[@]}"; do wait "$p" || sent_ok=0; done
rows=$(db "$D6" "SELECT COUNT(*) FROM instances")
files=$(find "$D6/store" -name '*.dcm' | wc -l)
[ $sent_ok = 1 ] && [ "$rows" = 24 ] && [ "$files" = 24 ] && [ -z "$(ls -A "$D6/spool")" ] &&
    pass "store.sync filesystem: 24 instances from 4 senders, each with its row and file" ||
    fail "store.sync filesystem: senders ok $sent_ok, $rows rows, $files files, spool: $(ls -A "$D6/spool" | head -3)"
stop_server

if [ $FAILS -ne 0 ]; then
    echo "$FAILS check(s) failed"
    exit 1
fi
echo "all checks passed"
