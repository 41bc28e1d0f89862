#!/bin/bash
# Benchmark (not a test): latency of `radraft serve` from the last instance of a study to its
# draft SR arriving at the destination, without the stable delay.
#
# usage: bench_latency.sh RADRAFT [N_STUDIES] [--model MODEL] [--stable S] [--size ROWS]
#                         [--workdir DIR] [--keep]
#
# DCMTK's storescp is the destination (the "PACS"); storescu sends N_STUDIES (default 50)
# sample studies (`radraft samples --seed K --syntax explicit-le`, a PA and a lateral of
# ROWS rows, default 1024) to `radraft serve --stable-seconds S` (default 1), one study at a
# time: the next study is sent only after the previous one's SR has arrived, plus a random
# pause of 0.2-0.7 s, so that no study waits behind another and the polling loops in serve
# are met at random phases. MODEL defaults to random weights (`radraft model init --arch
# resnet-small --seed 1`); the speed of a network does not depend on its weight values, but a
# trained model with a seed archive also pays for retrieval over that archive.
#
# For each study:
#   t_sent     when storescu exits (the last instance's C-STORE response has arrived and the
#              association is released);
#   t_arrived  when storescp has written the SR (its --exec-on-reception command runs then);
#   latency    t_arrived - t_sent - S.
# Prints median, p95, min and max of the latency, then the same statistics for its parts,
# from radraft's database and log (all on the same clock):
#   stable wait  jobs.created_at - studies.last_received - S  (scheduler poll, period 0.5 s)
#   worker wait  job claimed (log) - jobs.created_at             (worker poll, period 0.2 s)
#   drafting     reviews.created_at - job claimed                (read .. record, one study)
#   delivery     t_arrived - reviews.created_at                  (outbox poll, period 0.5 s,
#                                                                 + association + C-STORE)
# and the cost of one delivery alone (`radraft send` of an SR, median of 10), whence the
# time spent waiting for the three polling loops.
# Every peer runs with TCP_NODELAY=1. Ports: 24000-24999 on loopback.
set -u
RADRAFT=$(readlink -f "$1")
shift
N=50
if [ $# -gt 0 ] && [[ $1 != --* ]]; then N=$1; shift; fi
MODEL=
STABLE=1
SIZE=1024
WORK=/tmp/radraft-bench-latency.$$
KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
    --model) MODEL=$(readlink -f "$2"); shift 2 ;;
    --stable) STABLE=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --workdir) WORK=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
for tool in storescu storescp dcmdump sqlite3 python3; do
    command -v $tool >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
export TCP_NODELAY=1
BASE=$((24000 + ($$ % 100) * 10))
PORT=$BASE
SCP_PORT=$((BASE + 1))
SERVER=
SCP=
cleanup() {
    kill $SERVER $SCP 2>/dev/null
    wait 2>/dev/null
    [ $KEEP = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

if [ -z "$MODEL" ]; then
    "$RADRAFT" model init --arch resnet-small --seed 1 --out model >/dev/null || exit 1
    MODEL=$WORK/model
fi
# Four studies per seed; the seed changes every UID, so each study is new to serve.
seeds=$(( (N + 3) / 4 ))
for k in $(seq 1 $seeds); do
    "$RADRAFT" samples --out src/s$k --seed $k --size $SIZE --syntax explicit-le >/dev/null || exit 1
done
ls -d src/s*/* | sort -V | head -n $N >studies.txt

mkdir -p received
# The SR's arrival: storescp runs this after writing each file (asynchronously, so it does
# not delay storescp itself). #p is the study's folder, named st_<Study Instance UID>.
storescp -aet STORESCP --sort-on-study-uid st -od received \
    -xcr "echo \$(date +%s.%N) #p >>$WORK/arrivals.txt" $SCP_PORT >storescp.log 2>&1 &
SCP=$!
"$RADRAFT" serve --port $PORT --data-dir rd --stable-seconds $STABLE --log-level info \
    --send-to STORESCP@127.0.0.1:$SCP_PORT --set encoder.model="$MODEL" >rd.log 2>&1 &
SERVER=$!
for _ in $(seq 1 300); do
    "$RADRAFT" echo RADRAFT@127.0.0.1:$PORT >/dev/null 2>&1 && break
    sleep 0.1
done
"$RADRAFT" echo RADRAFT@127.0.0.1:$PORT >/dev/null 2>&1 || { echo "serve did not start" >&2; cat rd.log >&2; exit 1; }
touch arrivals.txt

i=0
while read -r study; do
    i=$((i + 1))
    before=$(wc -l <arrivals.txt)
    storescu -aec RADRAFT 127.0.0.1 $PORT "$study"/*.dcm >>storescu.log 2>&1 \
        || { echo "storescu failed for $study" >&2; exit 1; }
    t_sent=$(date +%s.%N)
    uid=$(dcmdump +P StudyInstanceUID "$study/pa.dcm" | sed -e 's/^[^[]*\[//' -e 's/\].*$//')
    echo "$t_sent $uid" >>sent.txt
    ok=0
    for _ in $(seq 1 3000); do
        [ "$(wc -l <arrivals.txt)" -gt "$before" ] && { ok=1; break; }
        sleep 0.02
    done
    [ $ok = 1 ] || { echo "no SR within 60 s for $study" >&2; tail -20 rd.log >&2; exit 1; }
    printf '\r%d/%d studies' $i $N >&2
    sleep "$(python3 -c 'import random; print(f"{0.2 + random.random() * 0.5:.3f}")')"
done <studies.txt
echo >&2
sleep 0.5
# What one delivery costs without the outbox's wait: `radraft send` of one SR to storescp
# (a new association, one C-STORE, the release; plus starting the process), 10 times.
for f in $(ls rd/sr/*.dcm | head -10); do
    a=$(date +%s.%N)
    "$RADRAFT" send "$f" --to STORESCP@127.0.0.1:$SCP_PORT >/dev/null 2>&1 || echo "send failed" >&2
    b=$(date +%s.%N)
    echo "$a $b" >>sends.txt
done

python3 - "$WORK" "$STABLE" "$N" "$MODEL" "$SIZE" <<'PY'
import datetime, os, re, sqlite3, sys
work, stable, n, model, size = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
sent = {}
for line in open(os.path.join(work, "sent.txt")):
    t, uid = line.split()
    sent[uid] = float(t)
arrived = {}
for line in open(os.path.join(work, "arrivals.txt")):
    t, path = line.split(maxsplit=1)
    uid = os.path.basename(path.strip())[3:]  # st_<UID>
    arrived.setdefault(uid, float(t))
claimed = {}
pat = re.compile(r"^(\S+Z) radraft info: pipeline: job \d+: study (\S+) \(attempt")
for line in open(os.path.join(work, "rd.log")):
    m = pat.match(line)
    if m:
        ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
        claimed.setdefault(m.group(2), ts.replace(tzinfo=datetime.timezone.utc).timestamp())
db = sqlite3.connect(os.path.join(work, "rd", "radraft.db"))
rows = db.execute("SELECT s.study_uid, s.last_received, MIN(j.created_at), MIN(r.created_at)"
                  " FROM studies s JOIN jobs j ON j.study_uid=s.study_uid"
                  " JOIN reviews r ON r.study_uid=s.study_uid GROUP BY s.study_uid").fetchall()
parts = {k: [] for k in ("latency", "stable wait", "worker wait", "drafting", "delivery",
                         "send (storescu exit - last stored)")}
for uid, last, queued, drafted in rows:
    if uid not in sent or uid not in arrived or uid not in claimed:
        continue
    parts["latency"].append(arrived[uid] - sent[uid] - stable)
    parts["stable wait"].append(queued - last - stable)
    parts["worker wait"].append(claimed[uid] - queued)
    parts["drafting"].append(drafted - claimed[uid])
    parts["delivery"].append(arrived[uid] - drafted)
    parts["send (storescu exit - last stored)"].append(sent[uid] - last)

def q(v, p):
    v = sorted(v)
    x = (len(v) - 1) * p
    lo = int(x)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (x - lo)

sends = sorted(float(b) - float(a) for a, b in (l.split() for l in open(os.path.join(work, "sends.txt"))))
send = sends[len(sends) // 2] if sends else 0.0
parts["one send (radraft send, median of 10)"] = [send] if sends else []
parts["polling waits (stable + worker + delivery - one send)"] = [
    a + b + c - send for a, b, c in zip(parts["stable wait"], parts["worker wait"], parts["delivery"])]
m = len(parts["latency"])
print(f"{m} of {n} studies measured; stable delay {stable:g} s subtracted; {size} rows, "
      f"2 instances per study; model {model}; {os.cpu_count()} CPUs; "
      f"load average {os.getloadavg()[0]:.2f}")
print()
print("| ms | median | mean | p95 | min | max |")
print("|---|---:|---:|---:|---:|---:|")
for k, v in parts.items():
    if not v:
        continue
    v = [x * 1000 for x in v]
    print(f"| {k} | {q(v, 0.5):.0f} | {sum(v) / len(v):.0f} | {q(v, 0.95):.0f} | {min(v):.0f} | {max(v):.0f} |")
sys.exit(0 if m == n else 1)
PY
