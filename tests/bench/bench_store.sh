#!/bin/bash
# Benchmark (not a test): C-STORE throughput of `radraft serve` against DCMTK's storescp
# and Orthanc (when installed), same files, same machine.
#
# usage: bench_store.sh RADRAFT SHARED_DATA [N_FILES] [WORKDIR] [ROUNDS]
# Sends N_FILES (default 400) uncompressed instances with 1 sender, then split over 8
# parallel senders; prints instances/s, MB/s and the server's CPU time per instance.
# ROUNDS (default 1) repeats the whole set, each round in another order of the servers, so
# that a disk that slows down as the runs go on weighs on each of them alike; the summary
# gives each server's median and the median (and range) of its ratio to storescp in the
# same round. WORKDIR (default /tmp/radraft-bench.PID) is where every server writes.
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
ROUNDS=${5:-1}
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
        -v name="$name" -v s=$senders -v r=$ROUND 'BEGIN {
            printf "| %d | %-18s | %d | %7.1f | %6.1f | %6.2f |\n", r, name, s, n / t, b / t / 1e6, 1000 * c / n
            printf "%d\t%s\t%d\t%f\t%f\n", r, name, s, n / t, 1000 * c / n >>"results.tsv" }'
}

# radraft: durable before each success (file and index on disk), once with each
# store.sync: `file` (fsync of each file and folder, then the SQLite commit) and
# `filesystem` (the commit group's index rows, then one syncfs for its files and WAL).
# The default, `auto`, is `filesystem` only when the data directory is a mount point, which
# this work folder is not: both are set explicitly.
bench_radraft() {
    local sync=$1 senders=$2
    rm -rf rd
    PORT=$(rd_free_port)
    "$RADRAFT" serve --port $PORT --data-dir rd --log-level warn --set encoder.model= \
        --set store.sync=$sync >rd.log 2>&1 &
    SERVER=$!
    AE=RADRAFT
    wait_up RADRAFT || { echo "radraft did not start"; cat rd.log; exit 1; }
    run "radraft $sync" $senders count_radraft
    kill -TERM $SERVER; wait $SERVER 2>/dev/null
    rm -rf rd
}

# storescp: writes files without fsync. It serves one association at a time (DCMTK's
# --fork is not available on every build); parallel senders queue on it.
bench_storescp() {
    local senders=$1
    rm -rf sc && mkdir sc
    PORT=$(rd_free_port)
    storescp -aet STORESCP -od sc $PORT >sc.log 2>&1 &
    SERVER=$!
    AE=STORESCP
    wait_up STORESCP || { echo "storescp did not start"; cat sc.log; exit 1; }
    run storescp $senders count_storescp
    kill -9 $SERVER; wait $SERVER 2>/dev/null
    rm -rf sc
}

# Orthanc: stores durably too (SQLite index, fsync), one process with a thread per
# association. Started on loopback with a generated configuration.
bench_orthanc() {
    local senders=$1
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
    rm -rf or
}

servers=("bench_radraft file" "bench_radraft filesystem" bench_storescp)
command -v Orthanc >/dev/null && servers+=(bench_orthanc)
echo "$N instances of $((BYTES / N / 1024)) KiB, $(nproc) CPUs, $ROUNDS round(s), work folder $WORK" \
    "($(df --output=source "$WORK" | tail -1)), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| round | server             | senders | instances/s | MB/s | server CPU ms/instance |"
echo "|---|---|---|---|---|---|"
: >results.tsv
for ROUND in $(seq 1 "$ROUNDS"); do
    for senders in 1 8; do
        # Round r starts with server r (mod their number), then the others in turn.
        for i in $(seq 0 $((${#servers[@]} - 1))); do
            ${servers[$(((i + ROUND - 1) % ${#servers[@]}))]} $senders
        done
    done
done

# The summary: each server's median over the rounds, and its ratio to storescp's run of the
# same round and sender count (median, min-max).
echo
echo "| server             | senders | median instances/s | median server CPU ms/instance | x storescp, median (min-max) |"
echo "|---|---|---|---|---|"
awk -F'\t' '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    { rate[$1, $2, $3] = $4; key = $2 SUBSEP $3
      if (!(key in seen)) { seen[key] = 1; order[++n] = key }
      rates[key] = rates[key] " " $4; cpus[key] = cpus[key] " " $5; last = $1 }
    END {
        for (k = 1; k <= n; k++) {
            split(order[k], ks, SUBSEP); lo = ""; hi = ""; ratios = ""
            for (r = 1; r <= last; r++) {
                x = rate[r, ks[1], ks[2]] / rate[r, "storescp", ks[2]]
                ratios = ratios " " x
                if (lo == "" || x < lo) lo = x
                if (hi == "" || x > hi) hi = x
            }
            printf "| %-18s | %d | %7.1f | %6.2f | %.2fx (%.2f-%.2f) |\n", ks[1], ks[2],
                median(rates[order[k]]), median(cpus[order[k]]), median(ratios), lo, hi
        }
    }' results.tsv
