#!/bin/bash
# Benchmark (not a test): C-STORE ingest of several `radraft serve` nodes on one PostgreSQL
# database (store.backend postgresql, one shared data folder), with 1, 2 and 3 nodes,
# against the single SQLite node and against Orthanc with its PostgreSQL index plugin
# (Debian orthanc-postgresql) on the same database server: same files, same 8 parallel
# senders (spread over the nodes in turn), same machine, same run.
#
# usage: bench_nodes.sh RADRAFT SHARED_DATA [N_FILES] [WORKDIR]
# Sends N_FILES (default 400) uncompressed instances; prints instances/s and the ratio to
# the single SQLite node. Drafting is off (encoder.model empty): only ingest is measured. A
# figure is printed only when every storescu exited 0 and the index holds all N instances
# afterwards (radraft's instances rows, Orthanc's own count).
set -u
RADRAFT=$(readlink -f "$1")
DATA=$(readlink -f "$2")
N=${3:-400}
WORK=${4:-/tmp/radraft-bench-nodes.$$}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/lib_ports.sh"
. "$HERE/lib_bench.sh"
. "$HERE/../integration/lib_pg.sh"
export TCP_NODELAY=1
SRC=$DATA/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm
[ -f "$SRC" ] || { echo "bench_nodes: $SRC not found (SHARED_DATA is $2)" >&2; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK/src" && cd "$WORK" || exit 1
SERVERS=
trap 'kill -9 $SERVERS 2>/dev/null; rd_pg_stop "$WORK/pg"; rm -rf "$WORK"' EXIT

rd_bench_instances "$SRC" $N

rd_pg_start "$WORK/pg" || exit 1
DSN="postgresql://radraft@127.0.0.1:$RD_PG_PORT/radraft"
psql "$DSN" -qc "CREATE DATABASE orthanc" >/dev/null || exit 1

wait_up() { # AE PORT
    for _ in $(seq 1 150); do
        echoscu -aet BENCH -aec $1 localhost $2 >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# send NAME COUNT_CMD PORT...: 8 senders, sender k to the k-th port in turn; checks the
# senders and that COUNT_CMD says N; prints the row and sets RATE.
BASE=
send() {
    local name=$1 count=$2 t0 t1 pids=() bad=0 held ports
    shift 2
    ports=("$@")
    t0=$(date +%s.%N)
    for s in $(seq 1 8); do
        storescu -aet BENCH$s -aec $AE localhost ${ports[$(( (s - 1) % ${#ports[@]} ))]} \
            src/s$s/*.dcm >send$s.log 2>&1 &
        pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p" || bad=1; done
    t1=$(date +%s.%N)
    held=$($count)
    if [ $bad != 0 ] || [ "$held" != "$N" ]; then
        echo "bench_nodes: $name: not all sent or stored (senders failed: $bad, held: $held of $N); no figure" >&2
        tail -5 send*.log >&2
        exit 1
    fi
    RATE=$(echo "$N / ($t1 - $t0)" | bc -l)
    [ -n "$BASE" ] || BASE=$RATE
    awk -v r=$RATE -v b=$BASE -v m=$(echo "$BYTES / ($t1 - $t0) / 1000000" | bc -l) -v name="$name" \
        'BEGIN { printf "| %-32s | %7.1f | %6.1f | %5.2fx |\n", name, r, m, r / b }'
}
stop_all() {
    kill -TERM $SERVERS 2>/dev/null
    for p in $SERVERS; do wait $p 2>/dev/null; done
    SERVERS=
}

echo "$N instances of $(( BYTES / N / 1024 )) KiB, 8 senders, $(nproc) CPUs"
echo "| server | instances/s | MB/s | vs SQLite node |"
echo "|---|---|---|---|"

# The single node on SQLite: the baseline.
AE=RADRAFT
PORT=$(rd_free_port)
"$RADRAFT" serve --port $PORT --data-dir sq --log-level warn --set encoder.model= >sq.log 2>&1 &
SERVERS=$!
wait_up RADRAFT $PORT || { echo "radraft did not start"; cat sq.log; exit 1; }
count_sqlite() { sqlite3 -cmd ".timeout 10000" sq/radraft.db "SELECT COUNT(*) FROM instances"; }
send "radraft, SQLite, 1 node" count_sqlite $PORT
stop_all

# 1, 2, 3 nodes on PostgreSQL, each run in a schema of its own.
for nodes in 1 2 3; do
    ports=()
    for i in $(seq 1 $nodes); do
        port=$(rd_free_port)
        "$RADRAFT" serve --port $port --data-dir pg$nodes --log-level warn --set encoder.model= \
            --set store.backend=postgresql --set "store.postgresql_dsn=$DSN" \
            --set store.postgresql_schema=bench$nodes --set server.node_name=n$i >n$nodes-$i.log 2>&1 &
        SERVERS="$SERVERS $!"
        wait_up RADRAFT $port || { echo "node $i did not start"; cat n$nodes-$i.log; exit 1; }
        ports+=($port)
    done
    count_pg() { psql "$DSN" -Atqc "SELECT COUNT(*) FROM bench$nodes.instances"; }
    send "radraft, PostgreSQL, $nodes node(s)" count_pg "${ports[@]}"
    stop_all
done

# Orthanc with its PostgreSQL index (files on disk, as radraft's).
PLUGIN=/usr/share/orthanc/plugins/libOrthancPostgreSQLIndex.so
if command -v Orthanc >/dev/null && [ -f $PLUGIN ]; then
    AE=ORTHANC
    PORT=$(rd_free_port)
    HTTP_PORT=$(rd_free_port)
    mkdir -p or
    cat >or.json <<EOF
{ "Name": "bench", "StorageDirectory": "$WORK/or", "IndexDirectory": "$WORK/or",
  "HttpPort": $HTTP_PORT, "RemoteAccessAllowed": false, "DicomAet": "ORTHANC",
  "DicomPort": $PORT, "DicomCheckCalledAet": false, "Plugins": ["$PLUGIN"],
  "StorageCompression": false, "DicomThreadsCount": 8,
  "PostgreSQL": { "EnableIndex": true, "EnableStorage": false, "Host": "127.0.0.1",
                  "Port": $RD_PG_PORT, "Database": "orthanc", "Username": "radraft",
                  "Password": "" } }
EOF
    Orthanc or.json >or.log 2>&1 &
    SERVERS=$!
    wait_up ORTHANC $PORT || { echo "Orthanc did not start"; tail or.log; exit 1; }
    count_orthanc() {
        curl -s "http://127.0.0.1:$HTTP_PORT/statistics" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["CountInstances"])'
    }
    send "Orthanc, PostgreSQL index" count_orthanc $PORT
    stop_all
else
    echo "(Orthanc with orthanc-postgresql not installed: no Orthanc row)"
fi
