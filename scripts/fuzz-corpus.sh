#!/usr/bin/env bash
# Writes the seed corpora of the fuzz targets, tests/fuzz/corpus/<target>/, from what
# radraft itself writes: sample studies and SRs (`radraft samples`, `report`, `sign`), a
# small model (`model init --arch opzoo`) and the shipped model's description, seed archives
# exported from an archive of the samples (`archive import`, `export-seed`), the effective
# configuration (`config --print`), report texts drafted by the generator, the shipped
# phrase file, and requests of the web API. Nothing comes from ../shared. Only the DICOM
# transfer syntaxes radraft does not write (deflated, big endian, implicit, no meta header)
# are made by DCMTK's dcmconv from a sample, when it is installed. The net target's inputs
# are the bytes that `radraft send`, and DCMTK's echoscu and storescu, send to a
# `radraft serve` on one connection each (an echo, stores of the samples in each transfer
# syntax, a study, an SR), captured by a small forwarding proxy (python3).
#
#   bash scripts/fuzz-corpus.sh [RADRAFT_BINARY]
#
# RADRAFT_BINARY defaults to build-fuzz/radraft (built here when missing; build/radraft
# works as well). Files named regress-* are regression inputs of fixed bugs, kept as they
# are; every other file of a corpus folder is replaced. Run it again when a format changes
# and commit the result (it is small: about 350 KB; the two SRs differ each time, as they
# carry the time they were written).
set -euo pipefail
cd "$(dirname "$0")/.."

radraft=${1:-}
if [ -z "$radraft" ]; then
    radraft=build-fuzz/radraft
    if [ ! -x "$radraft" ]; then
        cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
            -DCMAKE_CXX_COMPILER=clang++ -DRADRAFT_FUZZ=ON -DRADRAFT_BUILD_TESTS=OFF >/dev/null
        cmake --build build-fuzz -j "${RADRAFT_FUZZ_JOBS:-1}" --target radraft
    fi
fi
radraft=$(realpath "$radraft")
model=$(realpath models/cxr-resnet-small)
out=$(realpath tests/fuzz)/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# An instrumented radraft runs as usual; its exit-time leak check is the fuzz targets' job.
export ASAN_OPTIONS=detect_leaks=0
targets=(dicom model seed config labeler phrases web net)
for t in "${targets[@]}"; do
    mkdir -p "$out/$t"
    find "$out/$t" -type f ! -name 'regress-*' -delete
done
cd "$work"

# ---- dicom: the sample studies (every transfer syntax radraft writes) and two SRs ----
"$radraft" samples --out samples --size 64 --seed 1 >/dev/null
for f in samples/*/*.dcm; do
    cp "$f" "$out/dicom/$(basename "$(dirname "$f")")-$(basename "$f")"
done
"$radraft" report --scores '{"Cardiomegaly": 0.8, "Effusion": 0.4, "Nodule": 0.35}' \
    -o sr-draft.dcm samples/RDS0002/*.dcm 2>/dev/null >/dev/null
"$radraft" sign sr-draft.dcm --verifier 'Doe^Jane' --organization 'Fuzz Hospital' \
    --datetime 20240101120000 --findings 'The heart is enlarged. No effusion.' \
    -o sr-signed.dcm >/dev/null
cp sr-draft.dcm "$out/dicom/sr-draft.dcm"
cp sr-signed.dcm "$out/dicom/sr-signed.dcm"
if command -v dcmconv >/dev/null; then
    src=samples/RDS0001/pa.dcm # explicit VR little endian
    dcmconv +td "$src" "$out/dicom/dcmconv-deflated.dcm"
    dcmconv +tb "$src" "$out/dicom/dcmconv-big-endian.dcm"
    dcmconv +ti "$src" "$out/dicom/dcmconv-implicit.dcm"
    dcmconv -F +ti "$src" "$out/dicom/dcmconv-dataset-only.dcm"
else
    echo "fuzz-corpus: dcmconv (DCMTK) not found: no deflated, big endian or implicit VR input" >&2
fi

# ---- model: description NUL weights ----
"$radraft" model init --arch opzoo --seed 1 --out opzoo >/dev/null
cat opzoo/model.json <(printf '\0') opzoo/model.safetensors >"$out/model/opzoo"
cp "$model/model.json" "$out/model/shipped-description-only"

# ---- seed: archives of the shipped model's version (the target's index) ----
cat >reports.jsonl <<'EOF'
{"accession": "RDA0001", "findings": "The heart is normal in size. The lungs are clear.", "impression": "No acute cardiopulmonary abnormality."}
{"accession": "RDA0002", "findings": "The heart is enlarged. No focal consolidation.", "impression": "Cardiomegaly."}
{"accession": "RDA0003", "findings": "Small left pleural effusion with atelectasis.", "impression": "Left pleural effusion."}
{"accession": "RDA0004", "findings": "A nodule in the right upper lobe. No effusion.", "impression": "Right upper lobe nodule."}
EOF
"$radraft" archive import --dicom samples --reports reports.jsonl --data-dir data8 \
    --model "$model" --log-level error >/dev/null
"$radraft" archive export-seed --data-dir data8 --model "$model" -o "$out/seed/seed-8" \
    --log-level error >/dev/null
"$radraft" archive import --dicom samples/RDS0003/pa.dcm --reports reports.jsonl \
    --data-dir data1 --model "$model" --log-level error >/dev/null
"$radraft" archive export-seed --data-dir data1 --model "$model" -o "$out/seed/seed-1" \
    --log-level error >/dev/null

# ---- config: the defaults as printed, a few small files, one --set line ----
"$radraft" config --print >"$out/config/defaults.json"
printf '{"dicom": {"max_dimension": 8192}}\n' >"$out/config/nested.json"
printf '{"dicom.max_dimension": 4096, "server": {"allowed_calling_aes": ["MODALITY1", "PACS"], "port": 11112}, "log": {"level": "warn"}}\n' \
    >"$out/config/mixed.json"
printf '{"retrieval": {"k": 5, "min_similarity": 0.25}, "web": {"port": 8443, "bind": "127.0.0.1"}, "outbox": {"destinations": ["PACS@10.0.0.5:104"]}}\n' \
    >"$out/config/lists.json"
printf 'server.allowed_calling_aes=A,B,C\n' >"$out/config/set-line"

# ---- labeler: drafts of the generator (findings NUL impression) and JSON Lines records ----
i=0
for scores in '{"Cardiomegaly": 0.8, "Effusion": 0.4, "Nodule": 0.35}' \
    '{"Pneumothorax": 0.9, "Atelectasis": 0.45, "Emphysema": 0.6}' \
    '{"Mass": 0.7, "Pneumonia": 0.4, "Edema": 0.55, "Hernia": 0.31}' '{}'; do
    i=$((i + 1))
    "$radraft" report --scores "$scores" --json -o "sr$i.dcm" samples/RDS0003/*.dcm 2>/dev/null |
        python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.stdout.buffer.write(d["findings_text"].encode() + b"\0" + d["impression_text"].encode())
' >"$out/labeler/draft-$i"
done
python3 - "$out/labeler" <<'PY'
import json, sys
records = [
    {"id": "neg-1", "findings": "No pneumothorax, the heart is enlarged. Pneumothorax is not seen.",
     "impression": "Cardiomegaly."},
    {"id": 7, "findings": "Atelectasis versus scarring. May represent pneumonia; cannot exclude a "
     "nodule. Suggestive of emphysema. No change in the pericardial effusion.",
     "impression": "XXXX. Possible mass, but no consolidation; however, mild edema."},
]
for i, r in enumerate(records):
    open(f"{sys.argv[1]}/record-{i + 1}", "w").write(json.dumps(r))
PY

# ---- phrases: the shipped phrase file and a small extending one ----
cp "$(dirname "$model")/labeler.json" "$out/phrases/shipped.json"
cat >"$out/phrases/extend.json" <<'EOF'
{"mode": "extend", "version": 1, "findings": {"Effusion": {"mentions": ["fluid ... pleural space", "hydrothora*"], "exclude": ["pericardial fluid"]}}, "negation": {"before": ["without evidence of"], "after": ["is ruled out"]}, "speculation": {"before": ["worrisome for"], "after": []}, "pseudo": ["no interval change"], "scope_end": ["although"]}
EOF

# ---- web: requests of the web API (@SESSION@ and @CSRF@ become a logged-in session's) ----
# req NAME REQUEST: the request as printf %b reads it. post NAME PATH BODY: a POST of the
# session with its CSRF token and a Content-Length.
req() { printf '%b' "$2" >"$out/web/$1"; }
auth='Host: localhost\r\nCookie: radraft_session=@SESSION@\r\n'
post() {
    printf 'POST %s HTTP/1.1\r\n%bX-CSRF-Token: @CSRF@\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s' \
        "$2" "$auth" "${#3}" "$3" >"$out/web/$1"
}
req healthz 'GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n'
req metrics 'GET /metrics HTTP/1.0\r\n\r\n'
req index 'GET / HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n\r\n'
body='{"user": "nobody", "password": "wrong-password"}'
req login "POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${#body}\r\n\r\n$body"
req me "GET /api/me HTTP/1.1\r\n$auth\r\n"
req queue "GET /api/queue?state=draft&sort=priority&limit=20 HTTP/1.1\r\n$auth\r\n"
req item "GET /api/queue/1 HTTP/1.1\r\n$auth\r\n"
req image "GET /api/queue/1/image?index=0&width=512&center=0.5&window=0.8 HTTP/1.1\r\n$auth\r\n"
req heatmap "GET /api/queue/1/heatmap?finding=Cardiomegaly&width=256 HTTP/1.1\r\n$auth\r\n"
req users "GET /api/users HTTP/1.1\r\n$auth\r\n"
post claim /api/queue/1/claim '{}'
post edit /api/queue/1/edit '{"findings_text": "The heart is enlarged.", "impression_text": "Cardiomegaly.", "set": {"Cardiomegaly": "present", "Effusion": "absent"}}'
post reject /api/queue/1/reject '{"reason": "poor-image", "note": "rotated."}'
post sign /api/queue/1/sign ''
post user-add /api/users '{"name": "rad2", "role": "radiologist", "display_name": "Roe^Jim", "password": null}'
post user-disable /api/users/rad2/disable '{}'
req chunked "POST /api/queue/2/amend HTTP/1.1\r\n${auth}X-CSRF-Token: @CSRF@\r\nTransfer-Encoding: chunked\r\n\r\n1a\r\n{\"impression_text\": \"Ok.\"}\r\n0\r\n\r\n"
req pipelined "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /api/me HTTP/1.1\r\n$auth\r\nGET /assets/app.js HTTP/1.0\r\n\r\n"

# ---- net: what peers send on one connection, captured between them and `radraft serve` ----
# The listener runs as the fuzz target's does (AE FUZZSCP, max PDU 16384, so that the
# peers' PDUs fit the target's), with no model (nothing is drafted).
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
scp_port=$(free_port)
proxy_port=$(free_port)
mkdir -p captures
"$radraft" serve --port "$scp_port" --ae-title FUZZSCP --data-dir serve-data --log-level error \
    --set server.bind=127.0.0.1 --set server.max_pdu=16384 --set encoder.model= \
    --set web.port=0 >serve.log 2>&1 &
serve_pid=$!
# The proxy forwards each connection to the listener and writes what the peer sent to
# captures/NN, one file per connection (named once the connection is over).
python3 - "$proxy_port" "$scp_port" captures <<'PY' &
import os, socket, sys, threading
listen, target, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen))
srv.listen(4)
n = 0
while True:
    peer, _ = srv.accept()
    n += 1
    scp = socket.create_connection(("127.0.0.1", target))
    log = open(f"{out}/.{n:02d}", "wb")
    def pump(a, b, f):
        while True:
            data = a.recv(65536)
            if not data:
                break
            if f:
                f.write(data)
            b.sendall(data)
        try:
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    t = threading.Thread(target=pump, args=(scp, peer, None))
    t.start()
    pump(peer, scp, log)
    t.join()
    log.close()
    os.rename(f"{out}/.{n:02d}", f"{out}/{n:02d}")
    peer.close()
    scp.close()
PY
proxy_pid=$!
trap 'kill "$serve_pid" "$proxy_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do # until both listen (this echo's capture is not kept)
    echoscu -aet FUZZ -aec FUZZSCP 127.0.0.1 "$proxy_port" 2>/dev/null && break
    sleep 0.2
done
# capture NAME COMMAND...: runs a peer through the proxy and keeps its bytes as NAME.
capture() {
    local name=$1 before after
    shift
    before=$(ls captures | wc -l)
    "$@" >/dev/null 2>&1 || [ "$name" = wrong-called-ae ] ||
        echo "fuzz-corpus: net: '$*' failed" >&2
    for _ in $(seq 50); do
        after=$(ls captures | wc -l)
        [ "$after" -gt "$before" ] && break
        sleep 0.1
    done
    if [ "$after" -gt "$before" ]; then
        cp "captures/$(ls captures | tail -1)" "$out/net/$name"
    else
        echo "fuzz-corpus: net: nothing captured for $name" >&2
    fi
}
to="FUZZSCP@127.0.0.1:$proxy_port"
capture echo echoscu -aet FUZZ -aec FUZZSCP 127.0.0.1 "$proxy_port"
capture store-explicit "$radraft" send samples/RDS0001/pa.dcm --to "$to" --calling-ae FUZZ
capture store-jpegls-study "$radraft" send samples/RDS0001/pa.dcm samples/RDS0001/lateral.dcm \
    --to "$to" --calling-ae FUZZ
capture store-jpeg-rle-study "$radraft" send samples/RDS0002/pa.dcm samples/RDS0002/lateral.dcm \
    --to "$to" --calling-ae FUZZ
capture store-sr "$radraft" send sr-draft.dcm --to "$to" --calling-ae MODALITY
if [ -f "$out/dicom/dcmconv-deflated.dcm" ]; then
    capture storescu-deflated storescu -aet FUZZ -aec FUZZSCP -xd 127.0.0.1 "$proxy_port" \
        "$out/dicom/dcmconv-deflated.dcm"
    capture storescu-implicit storescu -aet FUZZ -aec FUZZSCP -xi 127.0.0.1 "$proxy_port" \
        "$out/dicom/dcmconv-implicit.dcm"
    capture storescu-big-endian storescu -aet FUZZ -aec FUZZSCP -xb 127.0.0.1 "$proxy_port" \
        "$out/dicom/dcmconv-big-endian.dcm"
fi
capture wrong-called-ae echoscu -aet FUZZ -aec SOMEONE 127.0.0.1 "$proxy_port" ||
    true # rejected, as it should be
kill "$serve_pid" "$proxy_pid" 2>/dev/null
wait "$serve_pid" 2>/dev/null || true

du -sh "$out"
for t in "${targets[@]}"; do
    printf 'fuzz-corpus: %-8s %3d files\n' "$t" "$(find "$out/$t" -type f | wc -l)"
done
