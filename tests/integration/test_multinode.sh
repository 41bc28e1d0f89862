#!/bin/bash
# Several nodes on one PostgreSQL database: three `radraft serve` processes share one data
# folder and one database (store.backend postgresql); 8 senders spread their studies over
# the three. One node is killed (SIGKILL) while it drafts; the others take its jobs once its
# heartbeat is older than server.node_timeout_seconds. Afterwards every instance is stored
# once, every study drafted exactly once (one review item, one SR, one AI Results SR) and
# every SR delivered once; the job the killed node was running finished on another node.
# The store's own unit cases then run against the same server (RD_TEST_POSTGRESQL_DSN):
# every case of test_store, test_review, test_users_audit and test_index but the few that
# reach into SQLite itself.
#
# usage: bash test_multinode.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$(readlink -f "$1")
WORK=$3
TESTS=$(dirname "$RADRAFT")/tests
HERE=$(cd "$(dirname "$0")" && pwd)
for tool in storescu storescp psql sqlite3; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
. "$HERE/lib_ports.sh"
. "$HERE/lib_wait.sh"
. "$HERE/lib_pg.sh"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

FAILS=0
# Process IDs of the nodes ("" when not running: `kill 0` would signal the whole group).
NODES=("" "" "")
PORTS=(0 0 0)
SCP=
SENDERS=
cleanup() {
    kill -9 ${NODES[@]} $SCP $SENDERS 2>/dev/null
    rd_pg_stop "$WORK/pg"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }

rd_pg_start "$WORK/pg" || { echo "FAIL: PostgreSQL did not start"; exit 1; }
DSN="postgresql://radraft@127.0.0.1:$RD_PG_PORT/radraft"
q() { psql "$DSN" -v ON_ERROR_STOP=1 -Atqc "SET search_path TO multi; $1"; }

"$RADRAFT" model init --arch resnet-small --seed 1 --out model >/dev/null || { fail "model init"; exit 1; }
for seed in $(seq 1 6); do
    "$RADRAFT" samples --out "studies/s$seed" --seed $seed --size 1024 --syntax explicit-le >/dev/null \
        || { fail "samples --seed $seed"; exit 1; }
done
NS=$(ls -d studies/*/*/ | wc -l)
NI=$(find studies -name '*.dcm' | wc -l)

rd_start_storescp received || { fail "storescp did not start"; exit 1; }

# start_node I: node I (0..2) on a new port; every node has the same AE title, data folder
# and database, and a name of its own.
start_node() { START_I=$1; rd_retry_port 5 start_node_once; }
start_node_once() {
    local i=$START_I off port
    port=$(rd_free_port)
    off=$(rd_log_size node$i.log)
    "$RADRAFT" serve --port $port --data-dir shared --stable-seconds 2 \
        --set store.backend=postgresql --set "store.postgresql_dsn=$DSN" \
        --set store.postgresql_schema=multi --set server.node_name=node$i \
        --set server.node_timeout_seconds=4 --set encoder.model=model --set pipeline.workers=1 \
        --set encoder.threads=1 --send-to STORESCP@127.0.0.1:$SCP_PORT >>node$i.log 2>&1 &
    NODES[$i]=$!
    PORTS[$i]=$port
    rd_wait_listening "node $i" ${NODES[$i]} node$i.log "$off" 30 $port || return
    rd_wait_for "node $i to answer a C-ECHO" 20 "$RADRAFT" echo RADRAFT@127.0.0.1:$port
}
for i in 0 1 2; do
    start_node $i || { fail "node $i did not start"; exit 1; }
done
pass "3 nodes on one database"

# 8 senders, each with its share of the studies, to the nodes in turn.
studies=(studies/*/*/)
for k in $(seq 0 7); do
    files=()
    for ((j = k; j < ${#studies[@]}; j += 8)); do
        files+=("${studies[$j]}"*.dcm)
    done
    [ ${#files[@]} -gt 0 ] || continue
    storescu -aec RADRAFT 127.0.0.1 ${PORTS[$((k % 3))]} "${files[@]}" >sender$k.log 2>&1 &
    SENDERS="$SENDERS $!"
done
for p in $SENDERS; do
    wait $p || fail "a sender failed (sender*.log)"
done
SENDERS=
stored=$(q "SELECT COUNT(*) FROM instances")
distinct=$(q "SELECT COUNT(DISTINCT sop_instance_uid) FROM instances")
[ "$stored" = $NI ] && [ "$distinct" = $NI ] && pass "$NI instances from 8 senders stored once" ||
    fail "$stored instance rows, $distinct distinct, for $NI files sent"

# Kill node 1 while it runs a job (seen in the database), and note which. A job can end
# between the look and the kill: then node 1 starts again and the next job is caught.
running_on_1() {
    JOB=$(q "SELECT id FROM jobs WHERE state='running' AND node='node1' LIMIT 1")
    [ -n "$JOB" ]
}
left=0
for try in 1 2 3 4 5; do
    rd_wait_for "node 1 to run a job" 60 running_on_1 || break
    kill -9 ${NODES[1]}
    wait ${NODES[1]} 2>/dev/null
    NODES[1]=
    left=$(q "SELECT COUNT(*) FROM jobs WHERE state='running' AND node='node1'")
    # The job seen may have ended and another begun before the kill: the one left counts.
    KILLED_JOB=$(q "SELECT MIN(id) FROM jobs WHERE state='running' AND node='node1'")
    [ "$left" -ge 1 ] && break
    echo "note: node 1's job $JOB ended before the kill; again"
    start_node 1 || { fail "node 1 did not restart"; break; }
done
[ "$left" -ge 1 ] && pass "node 1 killed with $left job(s) running" ||
    fail "node 1 was never killed while it ran a job (test premise)"

settled() {
    local done left_out left_jobs rx
    done=$(q "SELECT COUNT(*) FROM outbox WHERE state='done'")
    left_out=$(q "SELECT COUNT(*) FROM outbox WHERE state<>'done'")
    left_jobs=$(q "SELECT COUNT(*) FROM jobs WHERE state<>'done'")
    rx=$(find received -type f | wc -l)
    echo "$done deliveries done, $left_out not, $left_jobs jobs not done, $rx files at storescp"
    [ "$done" -ge $((2 * NS)) ] && [ "$left_out" = 0 ] && [ "$left_jobs" = 0 ] && [ "$rx" -ge "$done" ]
}
rd_wait_for "the two nodes left to draft and deliver every study" 240 settled ||
    fail "not settled: $RD_WAIT_SAID"
killed=$(q "SELECT state || ' on ' || COALESCE(node, '-') FROM jobs WHERE id=$KILLED_JOB")
case "$killed" in
"done on node0" | "done on node2") pass "the killed node's job $KILLED_JOB finished: $killed" ;;
*) fail "the killed node's job $KILLED_JOB: $killed" ;;
esac
grep -q "queued again" node0.log node2.log && pass "a node logged taking the work back" ||
    fail "no node logged the requeue"

reviews=$(q "SELECT COUNT(*) FROM reviews")
rstudies=$(q "SELECT COUNT(DISTINCT study_uid) FROM reviews")
srs=$(ls shared/sr/*-draft-sr.dcm 2>/dev/null | wc -l)
airs=$(ls shared/sr/*-draft-air-sr.dcm 2>/dev/null | wc -l)
deliveries=$(q "SELECT COUNT(*) FROM outbox WHERE state='done'")
received=$(find received -type f | wc -l)
[ "$reviews" = $NS ] && [ "$rstudies" = $NS ] && pass "$NS studies drafted exactly once" ||
    fail "$reviews review items for $rstudies studies (expected $NS)"
[ "$srs" = $NS ] && [ "$airs" = $NS ] && pass "$NS SR and $NS AI results SR files" ||
    fail "$srs SR and $airs AI results SR files (expected $NS each)"
[ "$deliveries" = $((2 * NS)) ] && [ "$received" = $((2 * NS)) ] &&
    pass "$((2 * NS)) SRs delivered once each" ||
    fail "$deliveries deliveries done, $received files at storescp (expected $((2 * NS)))"
workers=$(q "SELECT COUNT(DISTINCT node) FROM jobs WHERE state='done'")
[ "$workers" -ge 2 ] && pass "jobs done by $workers nodes" || fail "jobs done by $workers node(s)"

# The database restarts under the nodes (every connection cut): they connect again, and a
# study sent afterwards is drafted and delivered.
# Errors while the database is down are logged (and only those: see the end).
errors() { cat node*.log | grep -ac " error: "; }
errors_before=$(errors)
rd_pg_restart "$WORK/pg" || fail "PostgreSQL did not restart: $(cat "$WORK/pg/pg_ctl.log")"
mkdir -p after
"$RADRAFT" samples --out after --seed 9 --size 512 --syntax explicit-le >/dev/null || fail "samples after"
one=$(ls -d after/*/ | head -1)
storescu -aec RADRAFT 127.0.0.1 ${PORTS[2]} "$one"*.dcm >after.log 2>&1 ||
    fail "a C-STORE after the database restart: $(tail -3 after.log)"
after_restart() {
    local d
    d=$(q "SELECT COUNT(*) FROM outbox WHERE state='done'")
    echo "$d deliveries done"
    [ "$d" -ge $((2 * NS + 2)) ]
}
rd_wait_for "the study sent after the database restart to be delivered" 120 after_restart &&
    pass "the nodes went on after the database restarted" || fail "after the restart: $RD_WAIT_SAID"
grep -q "connection lost; connected again" node0.log node2.log &&
    pass "a node logged its reconnect" || fail "no node logged a reconnect"
errors_restart=$(errors)

# The node restarts under its name and takes back nothing that is not its own.
start_node 1 || fail "node 1 did not restart"
[ "$(q "SELECT COUNT(*) FROM jobs WHERE state<>'done'")" = 0 ] || fail "jobs left after the restart"
# A reprocessing run through the shared queue: batch --queue stores the files and the three
# nodes draft them; its progress and summary come from the database.
for seed in 7 8; do
    "$RADRAFT" samples --out "rerun/s$seed" --seed $seed --size 1024 --syntax explicit-le >/dev/null ||
        fail "samples --seed $seed"
done
NR=$(ls -d rerun/*/*/ | wc -l)
echo "not DICOM" >rerun/readme.txt
before_jobs=$(q "SELECT COALESCE(MAX(id), 0) FROM jobs")
timeout 240 "$RADRAFT" batch --queue rerun --data-dir shared --set store.backend=postgresql \
    --set "store.postgresql_dsn=$DSN" --set store.postgresql_schema=multi >queue.out 2>queue.log ||
    fail "batch --queue: $(tail -3 queue.log)"
grep -q "studies: 0 waiting to be stable, 0 queued, 0 running, $NR done, 0 failed" queue.out &&
    grep -q "^  drafted      $NR$" queue.out && pass "batch --queue: $NR studies drafted by the nodes" ||
    fail "batch --queue said: $(cat queue.out)"
grep -q "1 not DICOM" queue.log || fail "batch --queue: the text file not counted: $(grep files queue.log)"
run=$(sed -n 's/^batch: run \([0-9]*\):.*/\1/p' queue.out)
"$RADRAFT" batch --run "$run" --data-dir shared --set store.backend=postgresql \
    --set "store.postgresql_dsn=$DSN" --set store.postgresql_schema=multi >run.out 2>&1 &&
    cmp -s queue.out run.out && pass "batch --run $run reads the same summary" ||
    fail "batch --run: $(cat run.out)"
nodes=$(q "SELECT COUNT(DISTINCT node) FROM jobs WHERE id > $before_jobs")
[ "$nodes" -ge 2 ] && pass "the run's $NR studies drafted by $nodes nodes" ||
    fail "the run was drafted by $nodes node(s)"

# A report signed while the nodes run (with the command line, as from any machine) joins
# each node's in-memory archive: every node that drafts afterwards logs it refreshed.
pgm=(--data-dir shared --set store.backend=postgresql --set "store.postgresql_dsn=$DSN"
    --set store.postgresql_schema=multi)
"$RADRAFT" user add admin --role admin --display-name "Admin^Site" "${pgm[@]}" >/dev/null &&
    "$RADRAFT" user add alice --role radiologist --display-name "Smith^Alice" --user admin \
        "${pgm[@]}" >/dev/null || fail "user add on the shared database"
item=$("$RADRAFT" queue list --json "${pgm[@]}" | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
entries_before=$(q "SELECT COUNT(*) FROM archive")
"$RADRAFT" queue claim "$item" --user alice "${pgm[@]}" >/dev/null &&
    "$RADRAFT" queue sign "$item" --user alice "${pgm[@]}" --set review.organization=Test \
        >/dev/null || fail "claim and sign item $item on the shared database"
entries=$(q "SELECT COUNT(*) FROM archive")
[ "$entries" = $((entries_before + 1)) ] || fail "the archive has $entries entries after the sign"
offs=()
for i in 0 1 2; do offs[$i]=$(rd_log_size node$i.log); done
before_jobs=$(q "SELECT COALESCE(MAX(id), 0) FROM jobs")
"$RADRAFT" samples --out signed-after --seed 11 --size 512 --syntax explicit-le >/dev/null ||
    fail "samples after the sign"
for i in 0 1 2; do
    storescu -aec RADRAFT 127.0.0.1 ${PORTS[$i]} signed-after/*/*.dcm >signed-after$i.log 2>&1 ||
        fail "C-STORE to node $i after the sign: $(tail -3 signed-after$i.log)"
done
NA=$(ls -d signed-after/*/ | wc -l)
drafted_after() {
    local d
    d=$(q "SELECT COUNT(*) FROM jobs WHERE id > $before_jobs AND state='done'")
    echo "$d of $NA drafted"
    [ "$d" -ge $NA ]
}
rd_wait_for "the studies sent after the sign to be drafted" 120 drafted_after ||
    fail "after the sign: $RD_WAIT_SAID"
seen=0
for n in $(q "SELECT DISTINCT node FROM jobs WHERE id > $before_jobs AND state='done'"); do
    i=${n#node}
    if tail -c +$((${offs[$i]} + 1)) node$i.log | grep -q "archive refreshed: $entries entries now"; then
        seen=$((seen + 1))
    else
        fail "$n drafted after the sign without taking in the signed report's archive entry"
    fi
done
[ $seen -ge 1 ] && pass "the signed report reached the archive of the $seen node(s) that drafted next" ||
    fail "no node drafted after the sign"

for i in 0 1 2; do
    [ -n "${NODES[$i]}" ] || continue
    kill -TERM ${NODES[$i]}
    wait ${NODES[$i]} 2>/dev/null
    NODES[$i]=
done
[ "$errors_before" = 0 ] && [ "$(errors)" = "$errors_restart" ] &&
    pass "no error logged but $((errors_restart - errors_before)) while the database restarted" ||
    { fail "errors in the nodes' logs"; grep -a " error: " node*.log | head -20; }

# ---- radraft store migrate: an SQLite data directory into PostgreSQL -------------------
# A node's history: drafts, users, a signed report (its audit rows, its archive entry).
mkdir -p single
"$RADRAFT" samples --out single-in --size 512 >/dev/null || fail "samples for migrate"
"$RADRAFT" batch single-in --data-dir single --model model >migrate-batch.log 2>&1 || fail "batch for migrate"
"$RADRAFT" user add admin --role admin --display-name "Admin^Site" --data-dir single >/dev/null ||
    fail "user add"
"$RADRAFT" user add alice --role radiologist --display-name "Smith^Alice" --user admin \
    --data-dir single >/dev/null || fail "user add alice"
item=$("$RADRAFT" queue list --json --data-dir single | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['id'])")
"$RADRAFT" queue claim "$item" --user alice --data-dir single >/dev/null || fail "claim"
"$RADRAFT" queue sign "$item" --user alice --data-dir single --set review.organization=Test \
    >/dev/null || fail "sign"
"$RADRAFT" store migrate --to postgresql "$DSN" --schema moved --data-dir single >migrate.log 2>&1 ||
    { fail "store migrate"; cat migrate.log; }
grep -q "rows copied" migrate.log && pass "store migrate: $(tail -1 migrate.log)" || fail "migrate said: $(cat migrate.log)"
mq() { psql "$DSN" -v ON_ERROR_STOP=1 -Atqc "SET search_path TO moved; $1"; }
for t in instances studies jobs outbox study_versions reviews signatures archive users audit; do
    a=$(sqlite3 single/radraft.db "SELECT COUNT(*) FROM $t")
    b=$(mq "SELECT COUNT(*) FROM $t")
    [ "$a" = "$b" ] || fail "migrate: $t has $a rows in SQLite, $b in PostgreSQL"
done
pg=(--data-dir single --set store.backend=postgresql --set "store.postgresql_dsn=$DSN"
    --set store.postgresql_schema=moved)
"$RADRAFT" audit verify "${pg[@]}" >verify.log 2>&1 && pass "the audit chain verifies on PostgreSQL: $(cat verify.log)" ||
    fail "audit verify after migrate: $(cat verify.log)"
[ "$("$RADRAFT" queue show "$item" --json --user alice "${pg[@]}" | python3 -c "import json,sys; print(json.load(sys.stdin)['state'])")" = signed ] &&
    pass "the signed item reads back from PostgreSQL" || fail "queue show after migrate"
# New rows after the copied ones: the identities moved past them.
"$RADRAFT" user add bob --role radiologist --display-name "Jones^Bob" --user admin "${pg[@]}" >/dev/null &&
    "$RADRAFT" audit verify "${pg[@]}" >/dev/null && pass "a new audit row chains after the copied ones" ||
    fail "a new row after migrate"
"$RADRAFT" store migrate --to postgresql "$DSN" --schema moved --data-dir single >again.log 2>&1 &&
    fail "a second migrate into the same schema was accepted" ||
    { grep -q "holds .* rows already" again.log && pass "a second migrate is refused: $(head -c 150 again.log)" ||
        fail "second migrate said: $(cat again.log)"; }

# ---- a schema belongs to one data folder; auto gives each folder its own ---------------
mkdir -p otherdir
if "$RADRAFT" queue list --data-dir otherdir --set store.backend=postgresql \
    --set "store.postgresql_dsn=$DSN" --set store.postgresql_schema=multi >other.out 2>other.err; then
    fail "another data folder opened the schema of the shared one"
else
    grep -q "holds the index of another data folder" other.err &&
        pass "another folder is refused: $(head -c 160 other.err)" || fail "other folder: $(cat other.err)"
fi
"$RADRAFT" queue list --data-dir otherdir --set store.backend=postgresql \
    --set "store.postgresql_dsn=$DSN" --set store.postgresql_schema=auto >/dev/null 2>other.err ||
    fail "schema auto: $(cat other.err)"
auto=radraft_$(head -c 16 otherdir/store-id)
[ "$(psql "$DSN" -Atqc "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='$auto' AND table_name='reviews'")" = 1 ] &&
    pass "schema auto: the folder's own schema $auto" || fail "schema auto: no $auto"

# ---- the store's unit cases on PostgreSQL ------------------------------------------------
# Left out, each because it tests SQLite itself: its lock and busy timeout
# (db_errors_name_what_failed_and_a_lock_waits_the_busy_timeout) and edits made around its
# triggers with its own SQL (audit_tampering_is_detected).
skip="db_errors_name_what_failed_and_a_lock_waits_the_busy_timeout audit_tampering_is_detected"
export RD_TEST_POSTGRESQL_DSN="host=127.0.0.1 port=$RD_PG_PORT user=radraft dbname=radraft"
cases=0
for t in test_store test_review test_users_audit test_index; do
    [ -x "$TESTS/$t" ] || { fail "$TESTS/$t not built"; continue; }
    for c in $(grep -oE '^RD_TEST\([a-z0-9_]+\)' "$HERE/../unit/$t.c" | sed 's/RD_TEST(//; s/)//'); do
        case " $skip " in *" $c "*) continue ;; esac
        cases=$((cases + 1))
        if ! timeout 300 "$TESTS/$t" "$c" >"unit-$t.$c.log" 2>&1; then
            fail "$t.$c on PostgreSQL:"
            grep -v NOTICE "unit-$t.$c.log" | tail -5
        fi
    done
done
[ $cases -ge 50 ] && pass "$cases store unit cases run on PostgreSQL" || fail "only $cases unit cases found"

if [ $FAILS -ne 0 ]; then
    echo "$FAILS check(s) failed"
    tail -20 node0.log
    exit 1
fi
echo "all checks passed"
