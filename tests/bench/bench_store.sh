#!/bin/bash
# Benchmark (not a test): C-STORE throughput of `radraft serve` against DCMTK's storescp
# and Orthanc (when installed), same files, same machine.
#
# usage: bench_store.sh RADRAFT SHARED_DATA [N_FILES] [WORKDIR]
# Sends N_FILES (default 400) uncompressed instances with 1 sender, then split over 8
# parallel senders; prints instances/s, MB/s and the server's CPU time per instance.
# Every peer and storescu run with TCP_NODELAY=1 so that the comparison is fair (Debian's
# DCMTK leaves Nagle's algorithm on otherwise).
# A figure is printed only for a run whose work was done: every storescu exited 0 and the
# server holds all N instances afterwards (radraft's index rows, storescp's files, Orthanc's
# instance count); otherwise the benchmark stops with what it found.
set -u
RADRAFT=$(readlink -f "$1")
# Paths are resolved before the benchmark changes to its work folder.
DATA=$(readlink -f "$2")
N=${3:-400}
WORK=${4:-/tmp/radraft-bench.$$}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../integration/lib_ports.sh"
. "$HERE/lib_bench.sh"
export TCP_NODELAY=1
SRC=$DATA/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm
[ -f "$SRC" ] || { echo "bench_store: $SRC not found (SHARED_DATA is $2)" >&2; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK/src" && cd "$WORK" || exit 1
SERVER=
trap 'kill -9 $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

rd_bench_instances "$SRC" $N

wait_up() {
    for _ in $(seq 1 100); do
        echoscu -aet BENCH -aec $1 localhost $PORT >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
cpu_of() { awk '{print ($14 + $15) / 100}' /proc/$1/stat; }
# What each server holds: radraft's index rows, storescp's files, Orthanc's own count.
count_radraft() { sqlite3 -cmd ".timeout 10000" rd/radraft.db "SELECT COUNT(*) FROM instances"; }
count_storescp() { find sc -type f | wc -l; }
count_orthanc() {
    curl -s "http://127.0.0.1:$HTTP_PORT/statistics" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["CountInstances"])'
}

# run NAME SENDERS COUNT_CMD: sends every file with SENDERS parallel storescu to the server
# running as $SERVER, checks the senders' exit codes and that COUNT_CMD (how many instances
# the server holds) says N, and prints one table row.
run() {
    local name=$1 senders=$2 count=$3 t0 t1 c0 c1 pids=() bad=0 held
    c0=$(cpu_of $SERVER)
    t0=$(date +%s.%N)
    if [ $senders -eq 1 ]; then
        storescu -aet BENCH -aec $AE localhost $PORT src/s*/*.dcm >send.log 2>&1 || bad=1
    else
        for s in $(seq 1 $senders); do
            storescu -aet BENCH$s -aec $AE localhost $PORT src/s$s/*.dcm >send$s.log 2>&1 &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p" || bad=1; done
    fi
    t1=$(date +%s.%N)
    c1=$(cpu_of $SERVER)
    held=$($count)
    if [ $bad != 0 ] || [ "$held" != "$N" ]; then
        echo "bench_store: $name with $senders sender(s): not all sent or stored (senders failed: $bad, instances held: $held of $N); no figure" >&2
        tail -5 send*.log >&2
        exit 1
    fi
    awk -v n=$N -v b=$BYTES -v t=$(echo "$t1 - $t0" | bc) -v c=$(echo "$c1 - $c0" | bc) \
        -v name="$name" -v s=$senders 'BEGIN {
            printf "| %-18s | %d | %7.1f | %6.1f | %6.2f |\n", name, s, n / t, b / t / 1e6, 1000 * c / n }'
}

echo "$N instances of $(( BYTES / N / 1024 )) KiB, $(nproc) CPUs"
echo "| server             | senders | instances/s | MB/s | server CPU ms/instance |"
echo "|---|---|---|---|---|"

# radraft: durable before each success (file and index on disk), once with each
# store.sync: `file` (fsync of each file and folder, then the SQLite commit) and
# `filesystem` (the commit group's index rows, then one syncfs for its files and WAL).
# The default, `auto`, is `filesystem` only when the data directory is a mount point, which
# this work folder is not: both are set explicitly.
for sync in file filesystem; do
    for senders in 1 8; do
        rm -rf rd
        PORT=$(rd_free_port)
        "$RADRAFT" serve --port $PORT --data-dir rd --log-level warn --set encoder.model= \
            --set store.sync=$sync >rd.log 2>&1 &
        SERVER=$!
        AE=RADRAFT
        wait_up RADRAFT || { echo "radraft did not start"; cat rd.log; exit 1; }
        run "radraft $sync" $senders count_radraft
        kill -TERM $SERVER; wait $SERVER 2>/dev/null
    done
done

# storescp: writes files without fsync.
for senders in 1 8; do
    rm -rf sc && mkdir sc
    # storescp serves one association at a time (DCMTK's --fork is not available on every
    # build); parallel senders queue on it.
    PORT=$(rd_free_port)
    storescp -aet STORESCP -od sc $PORT >sc.log 2>&1 &
    SERVER=$!
    AE=STORESCP
    wait_up STORESCP || { echo "storescp did not start"; cat sc.log; exit 1; }
    run storescp $senders count_storescp
    kill -9 $SERVER; wait $SERVER 2>/dev/null
done

# Orthanc: stores durably too (SQLite index, fsync), one process with a thread per
# association. Started on loopback with a generated configuration.
if command -v Orthanc >/dev/null; then
    for senders in 1 8; do
        rm -rf or && mkdir or
        PORT=$(rd_free_port)
        HTTP_PORT=$(rd_free_port)
        cat >or.json <<EOF
{ "Name": "bench", "StorageDirectory": "$WORK/or", "IndexDirectory": "$WORK/or",
  "HttpPort": $HTTP_PORT, "RemoteAccessAllowed": false, "DicomAet": "ORTHANC",
  "DicomPort": $PORT, "DicomCheckCalledAet": false, "Plugins": [],
  "StorageCompression": false, "DicomThreadsCount": 8 }
EOF
        Orthanc or.json >or.log 2>&1 &
        SERVER=$!
        AE=ORTHANC
        wait_up ORTHANC || { echo "Orthanc did not start"; tail or.log; exit 1; }
        run orthanc $senders count_orthanc
        kill -TERM $SERVER; wait $SERVER 2>/dev/null
    done
fi
