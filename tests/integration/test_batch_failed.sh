#!/bin/bash
# `radraft batch` with a study that fails next to good ones: the failed study leaves a
# failed job row with its error in the data directory's database (as `serve` records a
# failed job), the good ones are drafted, the summary counts the failure and the exit
# status is 1. A rerun retries the failed study (only drafted or skipped versions count
# as done) and records the new failure; a study with a failure on record that is then
# drafted gets a done job after it.
#
# usage: bash test_batch_failed.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
DATA=$2
WORK=$3
for tool in sqlite3 dcmodify dcmdump; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
[ -d "$DATA/dicom/chest" ] || { echo "FAIL: shared data not found at $DATA"; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
. "$(dirname "$0")/lib_store.sh"
q() { rd_db d "$1"; }
study_of() { dcmdump +P 0020,000D "$1" | sed -n 's/.*\[\(.*\)\].*/\1/p'; }
count() { sed -n "s/^  $1 *\([0-9]*\)\$/\1/p" "$2"; }

"$RADRAFT" model init --arch resnet-small --seed 1 --out model >/dev/null || { fail "model init"; exit 1; }
"$RADRAFT" samples --out archive/good --seed 3 --size 256 >/dev/null || { fail "samples"; exit 1; }
"$RADRAFT" samples --out extra --seed 4 --size 256 >/dev/null || { fail "samples"; exit 1; }
NGOOD=$(ls -d archive/good/*/ | wc -l)
[ "$NGOOD" -ge 2 ] || { fail "expected at least 2 sample studies, got $NGOOD"; exit 1; }

# The failing study: valid DICOM images whose Study Instance UID is malformed (a letter in
# it). Batch groups them into a study, and the pipeline refuses it at the read stage, since
# such a UID must never become a file name.
BAD_UID=1.2.826.0.1.3680043.x.7
mkdir -p archive/bad
first=$(ls -d extra/*/ | head -1)
cp "$first"/*.dcm archive/bad/
dcmodify -nb -m "(0020,000D)=$BAD_UID" archive/bad/*.dcm >/dev/null 2>&1 || fail "dcmodify"
[ "$(study_of "$(ls archive/bad/*.dcm | head -1)")" = "$BAD_UID" ] || fail "the bad study's UID was not set"

# ---- first run ------------------------------------------------------------------------
"$RADRAFT" batch archive --data-dir d --out out --model model --workers 2 >run1.log 2>&1
rc=$?
[ $rc = 1 ] && pass "exit status 1 with a failed study" || fail "exit status $rc (expected 1)"
[ "$(count failed run1.log)" = 1 ] && pass "summary counts 1 failed" || fail "summary: $(tail -8 run1.log)"
[ "$(count drafted run1.log)" = "$NGOOD" ] && pass "summary counts $NGOOD drafted" || fail "summary: $(tail -8 run1.log)"
rows=$(q "SELECT COUNT(*) FROM jobs WHERE study_uid='$BAD_UID' AND state='failed'")
[ "$rows" = 1 ] && pass "the failed study has a failed job row" || fail "failed job rows of the bad study: $rows"
error=$(q "SELECT error FROM jobs WHERE study_uid='$BAD_UID'")
case "$error" in
*malformed*) pass "its error is recorded: $error" ;;
*) fail "job error '$error' (expected the malformed UID)" ;;
esac
[ "$(q "SELECT attempts FROM jobs WHERE study_uid='$BAD_UID'")" = 1 ] \
    && pass "one attempt (not a retriable failure)" || fail "attempts: $(q "SELECT attempts FROM jobs")"
[ "$(q "SELECT COUNT(*) FROM reviews WHERE study_uid='$BAD_UID'")" = 0 ] || fail "a review item for the bad study"
[ "$(q "SELECT COUNT(*) FROM jobs WHERE study_uid<>'$BAD_UID'")" = 0 ] \
    && pass "no job rows for studies that never failed" || fail "jobs: $(q "SELECT study_uid, state FROM jobs")"
for d in archive/good/*/; do
    uid=$(study_of "$(ls "$d"*.dcm | head -1)")
    [ "$(q "SELECT COUNT(*) FROM reviews WHERE study_uid='$uid' AND state='draft'")" = 1 ] \
        && [ -f "$(q "SELECT sr_path FROM reviews WHERE study_uid='$uid'")" ] \
        || fail "good study $uid has no draft review item with its SR"
done
[ "$(q "SELECT COUNT(*) FROM reviews")" = "$NGOOD" ] && pass "the $NGOOD good studies are drafted" \
    || fail "review items: $(q "SELECT COUNT(*) FROM reviews") (expected $NGOOD)"

# ---- a rerun, with one more good study that has a failure on record -------------------
# The new study's earlier failure is simulated with a failed job row, as a run that hit a
# full disk would have left it.
second=$(ls -d extra/*/ | sed -n 2p)
cp -r "$second" archive/new
NEW_UID=$(study_of "$(ls archive/new/*.dcm | head -1)")
q "INSERT INTO jobs(study_uid, state, attempts, error, created_at, updated_at)
   VALUES('$NEW_UID', 'failed', 5, 'write: disk full', 1, 1)"
"$RADRAFT" batch archive --data-dir d --out out --model model >run2.log 2>&1
rc=$?
[ $rc = 1 ] || fail "rerun exit status $rc (expected 1: the bad study fails again)"
[ "$(count "done before" run2.log)" = "$NGOOD" ] && [ "$(count drafted run2.log)" = 1 ] \
    && [ "$(count failed run2.log)" = 1 ] && pass "rerun: $NGOOD done before, 1 drafted, 1 failed (retried)" \
    || fail "rerun summary: $(tail -8 run2.log)"
rows=$(q "SELECT COUNT(*) FROM jobs WHERE study_uid='$BAD_UID' AND state='failed'")
[ "$rows" = 2 ] && pass "the retried failure is recorded again" || fail "failed rows of the bad study: $rows"
newest=$(q "SELECT state FROM jobs WHERE study_uid='$NEW_UID' ORDER BY id DESC LIMIT 1")
[ "$newest" = done ] && [ "$(q "SELECT COUNT(*) FROM jobs WHERE study_uid='$NEW_UID'")" = 2 ] \
    && pass "a drafted study with a failure on record gets a done job after it" \
    || fail "jobs of the new study: $(q "SELECT id, state FROM jobs WHERE study_uid='$NEW_UID'")"
[ "$(q "SELECT COUNT(*) FROM jobs WHERE state NOT IN ('done','failed')")" = 0 ] \
    || fail "jobs left running or queued: $(q "SELECT id, state FROM jobs WHERE state NOT IN ('done','failed')")"

# ---- a third run: only the bad study runs; nothing else changes ------------------------
"$RADRAFT" batch archive --data-dir d --out out --model model >run3.log 2>&1
[ "$(count "done before" run3.log)" = $((NGOOD + 1)) ] && [ "$(q "SELECT COUNT(*) FROM jobs WHERE study_uid='$NEW_UID'")" = 2 ] \
    && pass "third run: done-before studies add no job rows" || fail "third run: $(tail -8 run3.log)"

if [ $FAILS -ne 0 ]; then
    echo "$FAILS check(s) failed"; tail -20 run1.log
    exit 1
fi
echo "all checks passed"
