#!/bin/bash
# Benchmark (not a test): response times of the review web page's API (`radraft web`) with a
# worklist of N_ITEMS review items.
#
# usage: bench_web.sh RADRAFT [N_ITEMS] [--workdir DIR] [--keep]
#
# Makes real drafts of the four sample studies (`radraft samples --size 256`, then `radraft
# batch`, random model weights), then grows the queue to N_ITEMS review items (default
# 10000) by copying their rows inside SQLite with new study_uid and content_version values
# and every other column kept, images_json included: every item has a real image, and the
# copies share the 4 studies' images (and SRs). Adds an admin and a radiologist, starts
# `radraft web --log-level debug` on the data directory, logs in as the radiologist with curl
# and requests, one route after another, each R times over one kept-alive connection:
#   GET /healthz                              (the cheapest route: the HTTP round trip, a store
#                                              open and two outbox counts; the limit to compare with)
#   GET /api/queue                            (the whole worklist, N_ITEMS items), R=50
#   GET /api/queue?state=draft&limit=100      (the first page of drafts), R=50
#   GET /api/queue/ID                         (the study page's data; each writes an audit row), R=30
#   GET /api/queue/ID/image?width=1024 / 256  (the PNG of the frontal image), R=30
# For each it prints the median and p95 of two times: the server's, from the debug log's
# `web: METHOD ROUTE STATUS T ms` (from the request's arrival to the response queued, so
# without sending the body), and curl's %{time_total} (to the last byte received). The last
# column is curl's median over /healthz's. Before printing it checks that the work was done:
# every response was 200 (and the worklist and image the same size every time), the
# worklist's JSON has N_ITEMS items, the item has the 14 findings, and each image is a PNG of
# the requested width (read from its IHDR). Ports: 27000-27899 on loopback. The work folder
# (default under /tmp) is deleted at the end unless --keep.
set -u
[ $# -ge 1 ] || { echo "usage: bench_web.sh RADRAFT [N_ITEMS] [--workdir DIR] [--keep]" >&2; exit 2; }
RADRAFT=$(readlink -f "$1")
shift
[ -x "$RADRAFT" ] || { echo "not an executable: $RADRAFT" >&2; exit 2; }
N=10000
if [ $# -gt 0 ] && [[ $1 != --* ]]; then N=$1; shift; fi
WORK=/tmp/radraft-bench-web.$$
KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
    --workdir) WORK=$(readlink -f "$2"); shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$N" -ge 4 ] || { echo "N_ITEMS must be at least 4" >&2; exit 2; }
for tool in curl sqlite3 python3; do
    command -v $tool >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
PORT=$((27000 + ($$ % 90) * 10))
R_LIST=50
R_ITEM=30
R_IMAGE=30
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    [ $KEEP = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1

"$RADRAFT" model init --arch resnet-small --seed 1 --out model >/dev/null || exit 1
"$RADRAFT" samples --out s --size 256 >/dev/null || exit 1
"$RADRAFT" batch s --data-dir rd --model model >batch.txt 2>batch.log ||
    { echo "batch failed" >&2; tail -5 batch.log >&2; exit 1; }
DB=rd/radraft.db
[ "$(sqlite3 "$DB" 'SELECT COUNT(*) FROM reviews')" = 4 ] ||
    { echo "batch did not make 4 review items" >&2; exit 1; }

# N_ITEMS - 4 copies of the 4 rows: copy k of row r gets study_uid '2.25.9<k><r>' style
# values (short, unique) and content_version '<original>.c<k>'.
COLS=$(sqlite3 "$DB" "SELECT group_concat(name, ',') FROM pragma_table_info('reviews')
                      WHERE name NOT IN ('id', 'study_uid', 'content_version')")
sqlite3 "$DB" "
WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < ($N + 3) / 4)
INSERT INTO reviews(study_uid, content_version, $COLS)
SELECT '2.25.9' || printf('%08d', k.n) || r.id, r.content_version || '.c' || k.n, $COLS
FROM k, (SELECT * FROM reviews ORDER BY id) AS r
ORDER BY k.n, r.id
LIMIT $N - 4;" || exit 1
[ "$(sqlite3 "$DB" "SELECT COUNT(*) FROM reviews WHERE state='draft' AND images_json IS NOT NULL")" = "$N" ] ||
    { echo "the queue does not hold $N drafts with images" >&2; exit 1; }
ID=$(sqlite3 "$DB" "SELECT MIN(id) FROM reviews")

"$RADRAFT" user add admin --role admin --display-name Admin^A --data-dir rd >/dev/null 2>&1 ||
    { echo "user add admin failed" >&2; exit 1; }
printf 'password-123\n' | "$RADRAFT" user add rad --role radiologist --display-name Rad^R \
    --password-stdin --user admin --data-dir rd >/dev/null 2>&1 ||
    { echo "user add rad failed" >&2; exit 1; }

"$RADRAFT" web --port $PORT --data-dir rd --log-level debug >web.out 2>web.log &
SERVER=$!
BASE=http://127.0.0.1:$PORT
for _ in $(seq 100); do
    curl -sf -o /dev/null "$BASE/healthz" && break
    sleep 0.1
done
curl -sf -o /dev/null "$BASE/healthz" || { echo "radraft web did not start" >&2; tail -5 web.log >&2; exit 1; }
curl -sf -c jar -H 'Content-Type: application/json' -d '{"user": "rad", "password": "password-123"}' \
    -o login.json "$BASE/api/login" || { echo "login failed" >&2; exit 1; }

# measure NAME R PATH: R requests over one connection; the bodies of the first go to
# NAME.body, curl's "code bytes seconds" lines to NAME.curl, the server's log lines to NAME.srv.
measure() {
    local name=$1 r=$2 path=$3 args=() before
    args=(-o "$name.body" "$BASE$path")
    for _ in $(seq 2 "$r"); do args+=(-o /dev/null "$BASE$path"); done
    before=$(wc -l <web.log)
    curl -s -b jar -w '%{http_code} %{size_download} %{time_total}\n' "${args[@]}" >"$name.curl" ||
        { echo "$name: curl failed" >&2; exit 1; }
    sleep 0.2 # the log line is written after the response is queued
    tail -n +$((before + 1)) web.log | grep -F 'web: GET ' >"$name.srv"
}
# A few requests first, so that neither the page cache nor the first connection counts.
measure warm 5 "/api/queue"
measure healthz $R_LIST "/healthz"
measure list $R_LIST "/api/queue"
measure page $R_LIST "/api/queue?state=draft&limit=100"
measure item $R_ITEM "/api/queue/$ID"
measure img1024 $R_IMAGE "/api/queue/$ID/image?width=1024"
measure img256 $R_IMAGE "/api/queue/$ID/image?width=256"

echo "$N review items (4 real drafts of 256-row samples and their copies, sharing the 4 studies' images);" \
    "$(nproc) CPUs; load average $(cut -d' ' -f1 /proc/loadavg)"
echo
python3 - "$N" <<'PY'
import json, re, statistics, struct, sys
n = int(sys.argv[1])
# The 14 findings (ChestX-ray14's labels); the item also carries "No Finding".
FINDINGS = {"Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule",
            "Pneumonia", "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis",
            "Pleural_Thickening", "Hernia"}

def times(name):
    codes, sizes, curl = [], [], []
    for line in open(name + ".curl"):
        c, b, t = line.split()
        codes.append(c); sizes.append(int(b)); curl.append(float(t) * 1000)
    srv = [float(m.group(1)) for m in
           (re.search(r"web: GET \S+ 200 ([\d.]+) ms", l) for l in open(name + ".srv")) if m]
    assert all(c == "200" for c in codes), f"{name}: status {set(codes)}"
    assert len(srv) == len(curl), f"{name}: {len(srv)} server log lines for {len(curl)} requests"
    return sizes, srv, curl

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]

def png_width(path):
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", f"{path}: not a PNG"
    return struct.unpack(">I", b[16:20])[0]

lst = json.load(open("list.body"))
assert len(lst["items"]) == n, f"worklist: {len(lst['items'])} items, not {n}"
assert lst["counts"]["draft"] == n, lst["counts"]
page = json.load(open("page.body"))
assert len(page["items"]) == 100 and all(i["state"] == "draft" for i in page["items"])
item = json.load(open("item.body"))
missing = FINDINGS - {k for k, v in item["findings"].items() if "state" in v}
assert not missing, f"item: no {sorted(missing)}"
assert item["images"], "item: no images"
for name, w in (("img1024", 1024), ("img256", 256)):
    assert png_width(name + ".body") == w, f"{name}: PNG width {png_width(name + '.body')}"

rows = [("healthz", "`GET /healthz` (the limit)"),
        ("list", f"`GET /api/queue` (all {n:,} items)"),
        ("page", "`GET /api/queue?state=draft&limit=100`"),
        ("item", "`GET /api/queue/ID` (study page data, audited)"),
        ("img1024", "`GET /api/queue/ID/image?width=1024`"),
        ("img256", "`GET /api/queue/ID/image?width=256`")]
data = {}
for name, _ in rows:
    sizes, srv, curl = times(name)
    if name not in ("item",):  # the item grows by one audit row in its history per view
        assert len(set(sizes)) == 1, f"{name}: response sizes differ: {sorted(set(sizes))}"
    data[name] = (sizes, srv, curl)
base = statistics.median(data["healthz"][2])
print("| route | requests | response KiB | server median ms | server p95 ms | "
      "curl median ms | curl p95 ms | curl median / healthz |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name, label in rows:
    sizes, srv, curl = data[name]
    print(f"| {label} | {len(curl)} | {statistics.median(sizes) / 1024:.1f} | "
          f"{statistics.median(srv):.2f} | {pct(srv, 95):.2f} | "
          f"{statistics.median(curl):.2f} | {pct(curl, 95):.2f} | "
          f"{statistics.median(curl) / base:.1f}x |")
print()
srv, curl = data["list"][1], data["list"][2]
print(f"Worklist: {statistics.median(srv) / n * 1000:.2f} server ms and "
      f"{statistics.median(curl) / n * 1000:.2f} curl ms per 1,000 items (median); "
      f"{statistics.median(data['list'][0]) / n:.0f} bytes per item.")
PY
