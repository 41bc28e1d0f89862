#!/bin/bash
# What radraft writes holds patient data, so it is its own user's only: after `radraft batch`
# the data directory and its folders are 0700 and the database, its journal files, the
# draft SRs and the signed SR 0600, whatever umask radraft was started with (022 here, the
# usual default that made them world-readable before).
#
# usage: bash test_permissions.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
umask 022
"$RADRAFT" samples --out s --size 256 >/dev/null || { fail "samples"; exit 1; }
"$RADRAFT" batch s --data-dir rd >batch.log 2>&1 || { fail "batch: $(tail -3 batch.log)"; exit 1; }
"$RADRAFT" user add admin --role admin --display-name "Admin^A" --data-dir rd >/dev/null || fail "user"
"$RADRAFT" queue claim 1 --user admin --data-dir rd >/dev/null || fail "claim"
"$RADRAFT" queue sign 1 --user admin --data-dir rd --set review.organization=Test >/dev/null ||
    fail "sign"
n=0
while IFS= read -r -d '' f; do
    n=$((n + 1))
    mode=$(stat -c %a "$f")
    if [ -d "$f" ]; then want=700; else want=600; fi
    [ "$mode" = $want ] || fail "$f is $mode, not $want"
done < <(find rd -print0)
[ "$n" -ge 8 ] && pass "$n paths under the data directory checked" || fail "only $n paths found"
. "$(dirname "$0")/lib_store.sh"
# On PostgreSQL the index is in the database: the folder holds its id instead.
for f in $(rd_db_is_pg && echo rd/store-id || echo rd/radraft.db) rd/sr; do
    [ -e "$f" ] || fail "$f missing"
done
ls rd/sr/*signed* >/dev/null 2>&1 && pass "a signed SR among them" || fail "no signed SR"
[ $FAILS -eq 0 ] && echo "PASS" || { echo "$FAILS failures"; exit 1; }
