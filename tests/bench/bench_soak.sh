#!/bin/bash
# Soak benchmark (not a test): `radraft serve` receiving from 8 senders while one peer drips
# half association requests (slowloris) and another sends deflate bombs, for a while.
#
# usage: bench_soak.sh RADRAFT SHARED_DATA [SECONDS] [WORKDIR]
# First SECONDS/10 (at least 20 s) with the 8 senders alone, then SECONDS (default 600) with
# the attackers too. Each sender sends one instance per association, in a loop, and times
# each (association included). Prints, for both phases: instances acknowledged and per
# second, p50/p99 latency, and then the ratio of the rates (under attack / alone), the
# server's peak RSS, the associations and connections it rejected or cut, the bombs it
# refused, and a check that every acknowledged instance is in the store.
set -u
RADRAFT=$(readlink -f "$1")
DATA=$(readlink -f "$2") # the script works in WORKDIR: a relative path would miss
[ -f "$DATA/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm" ] || { echo "bench_soak: no sample under $2" >&2; exit 1; }
SECS=${3:-600}
WORK=${4:-/tmp/radraft-soak.$$}
HERE=$(cd "$(dirname "$0")/../integration" && pwd)
PY=/usr/bin/python3
BASE=$((SECS / 10 < 20 ? 20 : SECS / 10))
rm -rf "$WORK" && mkdir -p "$WORK/src" && cd "$WORK" || exit 1
PIDS=""
trap 'kill -9 $PIDS 2>/dev/null' EXIT
PORT=$($PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# 8 x 100 distinct instances (dcmodify gives each new UIDs); a sender cycles through its own,
# so after the first round they are resends of the same content (acknowledged, not rewritten).
SRC=$DATA/dicom/codecs/CT-MONO2-16-ankle-implicit.dcm
. "$HERE/../bench/lib_bench.sh"
rd_bench_instances "$SRC" 800
$PY "$HERE/make_deflated.py" bomb.dcm 1024 1.2.826.0.1.3680043.10.998.1 || exit 1

"$RADRAFT" serve --port $PORT --data-dir rd --stable-seconds 30 --set encoder.model= \
    --set server.bind=127.0.0.1 >serve.log 2>&1 &
SERVER=$!
PIDS="$PIDS $SERVER"
for _ in $(seq 1 100); do grep -q "serve: ready" serve.log && break; sleep 0.1; done
grep -q "serve: ready" serve.log || { echo "bench_soak: serve did not start: $(tail -3 serve.log)"; exit 1; }

# sender N END_EPOCH OUT: one storescu per instance until END_EPOCH; each line of OUT is
# "ok|fail SECONDS SOP_FILE".
sender() {
    local s=$1 end=$2 out=$3 f t0 t1 rc
    while :; do
        for f in src/s$s/*.dcm; do
            [ "$(date +%s)" -ge "$end" ] && return
            t0=$(date +%s.%N)
            storescu -aet SOAK$s -aec RADRAFT 127.0.0.1 $PORT "$f" >/dev/null 2>&1
            rc=$?
            t1=$(date +%s.%N)
            echo "$([ $rc = 0 ] && echo ok || echo fail) $(echo "$t1 - $t0" | bc) $f" >>"$out"
        done
    done
}
phase() { # NAME SECONDS
    local end=$(($(date +%s) + $2)) pids=""
    for s in $(seq 1 8); do sender $s $end $1.s$s & pids="$pids $!"; done
    wait $pids
}
summary() { # NAME SECONDS
    cat $1.s* >$1.all
    $PY - $1.all "$2" "$1" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
ok = sorted(float(r[1]) for r in rows if r[0] == "ok")
fail = sum(1 for r in rows if r[0] != "ok")
q = lambda p: ok[min(len(ok) - 1, int(p * len(ok)))] * 1000 if ok else float("nan")
print("%-12s %6d acknowledged %4d failed  %6.1f inst/s  p50 %6.1f ms  p99 %6.1f ms"
      % (sys.argv[3], len(ok), fail, len(ok) / float(sys.argv[2]), q(0.5), q(0.99)))
EOF
}

phase alone $BASE
END=$(($(date +%s) + SECS))
(while [ "$(date +%s)" -lt $END ]; do
    $PY "$HERE/slow_client.py" 127.0.0.1 $PORT 127.0.0.2 4 drip 30 >>slow.out 2>&1
done) &
SLOW=$!
(while [ "$(date +%s)" -lt $END ]; do
    $PY "$HERE/raw_store.py" 127.0.0.1 $PORT BOMB RADRAFT bomb.dcm >>bomb.out 2>&1
    sleep 1
done) &
BOMB=$!
PIDS="$PIDS $SLOW $BOMB"
(while kill -0 $SERVER 2>/dev/null && [ "$(date +%s)" -lt $END ]; do
    awk '/VmRSS/ {print $2}' /proc/$SERVER/status >>rss.txt
    sleep 1
done) &
phase attack $SECS
wait $SLOW $BOMB 2>/dev/null
hwm=$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)
rss_max=$(sort -n rss.txt | tail -1)
kill -TERM $SERVER && wait $SERVER 2>/dev/null

# The work was done, before anything is reported: every instance acknowledged is in the
# store, and the attackers really attacked.
acked=$(cat alone.s* attack.s* | awk '$1 == "ok" {print $3}' | sort -u)
missing=0
for f in $acked; do
    sop=$(dcmdump -q +P 0008,0018 "$f" | sed -e 's/.*\[\(.*\)\].*/\1/')
    [ -n "$(find rd/store -name "$sop.dcm" | head -1)" ] || missing=$((missing + 1))
done
n_acked=$(echo "$acked" | wc -w)
if [ "$n_acked" = 0 ] || [ $missing != 0 ] || ! grep -q '^closed' slow.out || ! grep -q status bomb.out; then
    echo "bench_soak: the run did not do its work: $n_acked instances acknowledged, $missing of" \
        "them missing from the store, $(grep -c '^closed' slow.out) slow connections cut," \
        "$(grep -c status bomb.out) bombs answered" >&2
    exit 1
fi

echo "== $BASE s: 8 senders alone; then $SECS s beside a slowloris (4 dripping connections) and 1 GiB deflate bombs"
summary alone $BASE | tee alone.txt
summary attack $SECS | tee attack.txt
rate() { awk '{for (i = 1; i <= NF; i++) if ($i == "inst/s") print $(i - 1)}' $1; }
echo "ratio: $(echo "scale=2; $(rate attack.txt) / $(rate alone.txt)" | bc) of the throughput alone, under attack"
echo "server peak RSS: $((hwm / 1024)) MiB (highest sample while attacked: $((${rss_max:-0} / 1024)) MiB)"
echo "bombs: $(grep -c 'status 0xa700' bomb.out) refused with 0xA700, $(grep -c 'status 0x0000' bomb.out) accepted, $(grep -vc status bomb.out) other outcomes"
echo "slowloris connections cut: $(grep -c '^closed' slow.out)"
echo "rejected associations: $(grep -c 'rejected an association' serve.log); connections closed before their request: $(grep -c 'closed the connection from' serve.log) logged"
echo "acknowledged distinct instances: $n_acked, all of them in the store"
