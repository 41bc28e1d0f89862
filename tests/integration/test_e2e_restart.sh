#!/bin/bash
# Crash and restart: `radraft serve` is killed (SIGKILL) while it drafts, then restarted;
# `radraft batch` is killed midway through 40 studies, then run again. Afterwards every
# study is drafted exactly once: one review item, one SR file and one AI Results SR file per
# study, one delivery per SR, and the rerun of batch drafts only what the killed run had not
# finished.
#
# usage: bash test_e2e_restart.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
DATA=$2
WORK=$3
for tool in storescu storescp sqlite3; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
[ -d "$DATA/dicom/chest" ] || { echo "FAIL: shared data not found at $DATA"; exit 1; }
. "$(dirname "$0")/lib_ports.sh"
. "$(dirname "$0")/lib_wait.sh"
. "$(dirname "$0")/lib_store.sh"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

# Ports are picked as each server starts (rd_start_storescp, start_serve).
PORT=
SCP_PORT=
FAILS=0
SERVER=
SCP=
BATCH=
cleanup() { kill -9 $SERVER $SCP $BATCH 2>/dev/null; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
q() { rd_db "$1" "$2"; }

"$RADRAFT" model init --arch resnet-small --seed 1 --out model >/dev/null || { fail "model init"; exit 1; }
for seed in $(seq 1 10); do
    "$RADRAFT" samples --out "archive/s$seed" --seed $seed --size 1024 --syntax explicit-le >/dev/null \
        || { fail "samples --seed $seed"; exit 1; }
done
N=40

# ---- serve: SIGKILL while a job runs, then restart ------------------------------------
# start_serve: radraft serve on a new port, again on another when that one was taken.
start_serve() {
    rd_retry_port 5 start_serve_once
}
start_serve_once() {
    local off
    PORT=$(rd_free_port)
    off=$(rd_log_size rd.log)
    "$RADRAFT" serve --port $PORT --data-dir rd --stable-seconds 1 --set encoder.model=model \
        --set pipeline.workers=1 --send-to STORESCP@127.0.0.1:$SCP_PORT >>rd.log 2>&1 &
    SERVER=$!
    rd_wait_listening "radraft serve" $SERVER rd.log "$off" 20 $PORT || return
    rd_wait_for "radraft serve to answer a C-ECHO" 20 "$RADRAFT" echo RADRAFT@127.0.0.1:$PORT
}
rd_start_storescp received || { fail "storescp did not start"; exit 1; }
# The kill comes as soon as the first job starts, and serve must not have drafted every
# study by then (the test's premise); if it had, the same again from scratch with twice as
# many studies.
job_started() { tail -c +$((try_log + 1)) rd.log | grep -a "pipeline: job" | tail -1 | grep .; }
for try in 1 2 3; do
    NS=$((8 << (try - 1)))
    rm -rf rd received && mkdir -p received
    try_log=$(rd_log_size rd.log)
    start_serve || fail "serve did not start"
    storescu -aec RADRAFT 127.0.0.1 $PORT $(for i in $(seq 1 $((NS / 4))); do echo archive/s$i/*/*.dcm; done) \
        >storescu.log 2>&1 || fail "storescu"
    rd_wait_for "the first job of serve" 60 job_started || fail "no job started"
    kill -9 $SERVER; wait $SERVER 2>/dev/null
    SERVER=
    before=$(q rd "SELECT COUNT(*) FROM reviews")
    [ "$before" -lt $NS ] && break
    echo "note: serve drafted all $NS studies before the kill; again with $((NS * 2))"
done
[ "$before" -lt $NS ] && pass "killed serve with $before of $NS studies drafted" || fail "serve finished all $NS before the kill, 3 times (test premise)"
start_serve || fail "serve did not restart"
# Settled: every job done, every delivery done (a text SR and an AI results SR per study),
# and storescp holds as many files.
serve_settled() {
    local done left_jobs left_out rx
    done=$(q rd "SELECT COUNT(*) FROM outbox WHERE state='done'")
    left_out=$(q rd "SELECT COUNT(*) FROM outbox WHERE state<>'done'")
    left_jobs=$(q rd "SELECT COUNT(*) FROM jobs WHERE state<>'done'")
    rx=$(find received -type f | wc -l)
    echo "$done deliveries done, $left_out not, $left_jobs jobs not done, $rx files at storescp"
    [ "$done" -ge $((2 * NS)) ] && [ "$left_out" = 0 ] && [ "$left_jobs" = 0 ] && [ "$rx" -ge "$done" ]
}
rd_wait_for "serve to draft and deliver every study after the restart" 120 serve_settled ||
    fail "serve after the restart: $RD_WAIT_SAID"
reviews=$(q rd "SELECT COUNT(*) FROM reviews")
studies=$(q rd "SELECT COUNT(DISTINCT study_uid) FROM reviews")
srs=$(ls rd/sr/*-draft-sr.dcm 2>/dev/null | wc -l)
airs=$(ls rd/sr/*-draft-air-sr.dcm 2>/dev/null | wc -l)
deliveries=$(q rd "SELECT COUNT(*) FROM outbox WHERE state='done'")
received=$(find received -type f | wc -l)
[ "$reviews" = $NS ] && [ "$studies" = $NS ] && pass "serve: $NS review items after the restart" \
    || fail "serve: $reviews review items for $studies studies (expected $NS)"
[ "$srs" = $NS ] && [ "$airs" = $NS ] && pass "serve: $NS SR and $NS AI results SR files" ||
    fail "serve: $srs SR and $airs AI results SR files (expected $NS each)"
[ "$deliveries" = $((2 * NS)) ] && [ "$received" = $((2 * NS)) ] && pass "serve: $((2 * NS)) SRs delivered once each" \
    || fail "serve: $deliveries deliveries done, $received files at storescp (expected $((2 * NS)))"
[ "$(q rd "SELECT COUNT(*) FROM jobs WHERE state<>'done'")" = 0 ] || fail "serve: unfinished jobs: $(q rd "SELECT id, state, error FROM jobs WHERE state<>'done'")"
[ "$(ls rd/sr/*-draft-fhir.json 2>/dev/null | wc -l)" = $NS ] || fail "serve: $(ls rd/sr/*-draft-fhir.json 2>/dev/null | wc -l) FHIR Bundles (expected $NS)"
[ -z "$(ls rd/sr | grep -vE -- '-draft-(air-)?sr.dcm$|-draft-fhir.json$')" ] ||
    fail "serve: stray files in rd/sr: $(ls rd/sr | grep -vE -- '-draft-(air-)?sr.dcm$|-draft-fhir.json$')"
kill -TERM $SERVER; wait $SERVER
SERVER=

# ---- batch: SIGKILL midway, then run again ------------------------------------------
# The kill comes once 5 SRs are written, and batch must not have finished by then (the
# test's premise); if it had, the same again from scratch with 40 studies more.
five_srs() {
    local n
    n=$(ls out/*-draft-sr.dcm 2>/dev/null | wc -l)
    echo "$n SRs written"
    [ "$n" -ge 5 ] || ! kill -0 $BATCH 2>/dev/null
}
for try in 1 2 3; do
    rm -rf bd out
    "$RADRAFT" batch archive --data-dir bd --out out --model model >batch1.log 2>&1 &
    BATCH=$!
    rd_wait_for "5 SRs from batch" 120 five_srs || fail "batch wrote no 5 SRs"
    kill -9 $BATCH; wait $BATCH 2>/dev/null
    # What a kill between writing a file and renaming it leaves (radraft/tempname.h), in case
    # this kill came at another moment: the rerun must remove it, on a shared store as well.
    : >"out/1.2.3-0123456789abcdef-draft-fhir.json.tmp.$(hostname | tr -c 'A-Za-z0-9_\n-' _)@$BATCH"
    BATCH=
    first=$(q bd "SELECT COUNT(*) FROM reviews")
    [ "$first" -lt $N ] && break
    echo "note: batch finished all $N studies before the kill; again with $((N + 40))"
    for seed in $(seq $((N / 4 + 1)) $((N / 4 + 10))); do
        "$RADRAFT" samples --out "archive/s$seed" --seed $seed --size 1024 --syntax explicit-le >/dev/null \
            || { fail "samples --seed $seed"; exit 1; }
    done
    N=$((N + 40))
done
[ "$first" -lt $N ] && pass "killed batch with $first of $N studies recorded" || fail "batch finished before the kill, 3 times (test premise)"
"$RADRAFT" batch archive --data-dir bd --out out --model model >batch2.log 2>&1 || fail "batch rerun exit status"
drafted=$(sed -n 's/^  drafted *\([0-9]*\)$/\1/p' batch2.log)
done_before=$(sed -n 's/^  done before *\([0-9]*\)$/\1/p' batch2.log)
[ "$drafted" = $((N - first)) ] && [ "$done_before" = "$first" ] \
    && pass "rerun drafted $drafted and skipped the $done_before done before" \
    || fail "rerun: drafted '$drafted', done before '$done_before' (first run recorded $first)"
reviews=$(q bd "SELECT COUNT(*) FROM reviews")
studies=$(q bd "SELECT COUNT(DISTINCT study_uid) FROM reviews")
srs=$(ls out/*-draft-sr.dcm | wc -l)
airs=$(ls out/*-draft-air-sr.dcm | wc -l)
[ "$reviews" = $N ] && [ "$studies" = $N ] && [ "$srs" = $N ] && [ "$airs" = $N ] &&
    pass "batch: $N review items, $N SRs and $N AI results SRs" \
    || fail "batch: $reviews review items, $studies studies, $srs SRs, $airs AI results SRs (expected $N)"
[ "$(ls out/*-draft-fhir.json 2>/dev/null | wc -l)" = $N ] || fail "batch: $(ls out/*-draft-fhir.json 2>/dev/null | wc -l) FHIR Bundles (expected $N)"
[ -z "$(ls out | grep -vE -- '-draft-(air-)?sr.dcm$|-draft-fhir.json$')" ] ||
    fail "batch: stray files in out: $(ls out | grep -vE -- '-draft-(air-)?sr.dcm$|-draft-fhir.json$')"
"$RADRAFT" batch archive --data-dir bd --out out --model model >batch3.log 2>&1 || fail "third run"
grep -q "^  done before  $N$" batch3.log && pass "a third run drafts nothing" || fail "third run: $(cat batch3.log | tail -6)"

if [ $FAILS -ne 0 ]; then
    echo "$FAILS check(s) failed"; tail -20 rd.log
    exit 1
fi
echo "all checks passed"
