#!/bin/bash
# The DICOM listener against hostile peers: clients that send half an association request
# or drip it a byte at a time, a flood of connections from one address, a bound address,
# TLS peers with certificates nobody vouches for, and UIDs that DCMTK would repair into
# another instance's UID. Each case asserts what the peer saw and what radraft logged.
#
# usage: test_net_hardening.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$1
DATA=$2
WORK=$3
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
for tool in openssl echoscu storescu dcmodify dcmconv $PY; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
[ -d "$DATA/dicom/codecs" ] || { echo "FAIL: shared data not found at $DATA"; exit 1; }
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
FAILS=0
PIDS=""
trap 'kill -9 $PIDS 2>/dev/null' EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }

# Polls CMD every 0.1 s for up to SECONDS; on timeout prints WHAT and fails.
wait_for() { # SECONDS WHAT CMD...
    local secs=$1 what=$2 i
    shift 2
    for i in $(seq 1 $((secs * 10))); do
        "$@" && return 0
        sleep 0.1
    done
    fail "$what: not within $secs s"
    return 1
}

# A port the kernel says is free (bound to port 0, then released).
free_port() {
    $PY -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts radraft serve with the given options on a free port (tries a few, in case another
# test took the port meanwhile); sets PORT and SERVER. Logs go to LOG.
start_server() { # LOG options...
    local log=$1 try
    shift
    for try in 1 2 3 4 5; do
        PORT=$(free_port)
        "$RADRAFT" serve --port "$PORT" --stable-seconds 1 --set encoder.model= "$@" >"$log" 2>&1 &
        SERVER=$!
        PIDS="$PIDS $SERVER"
        for _ in $(seq 1 100); do
            grep -q "serve: ready" "$log" && return 0
            kill -0 $SERVER 2>/dev/null || break
            sleep 0.1
        done
        kill -9 $SERVER 2>/dev/null
        wait $SERVER 2>/dev/null
        grep -q "cannot listen" "$log" || break
    done
    fail "radraft serve did not start: $(tail -3 "$log")"
    return 1
}
stop_server() { kill -TERM $SERVER 2>/dev/null && wait $SERVER 2>/dev/null; }
# Sockets the server holds (files come and go with the workers' own store connections).
open_fds() { ls -l /proc/$SERVER/fd 2>/dev/null | grep -c "socket:"; }

# A client that opens N connections from address SRC to PORT, each sending the first 8 bytes
# of an A-ASSOCIATE-RQ (a 6-byte header announcing 204 more bytes), then, in mode "drip",
# one more byte per second on each; it prints "connected N", and "closed I T" when the
# server closes connection I after T seconds. It ends when all are closed or after HOLD s.
slow() { # OUT SRC N MODE HOLD
    $PY "$HERE/slow_client.py" 127.0.0.1 $PORT "$2" "$3" "$4" "$5" >"$1" 2>&1 &
    PIDS="$PIDS $!"
}
n_closed() { grep -c "^closed" "$1"; }
closed_is() { [ "$(n_closed "$1")" "$2" "$3" ]; } # FILE OP N, e.g. closed_is x.out = 3
fds_at_most() { [ "$(open_fds)" -le "$1" ]; }

SRC=$DATA/dicom/codecs/emri_small_big_endian.dcm
dcmconv +te "$SRC" plain.dcm || { fail "dcmconv"; exit 1; }

########## 1. slow clients hold up nobody; they are closed at the deadline, named
start_server rd.log --data-dir d1 --set server.bind=127.0.0.1 --set server.request_timeout=8 \
    --set server.max_pending_per_peer=2 --set server.max_associations=4 || exit 1
fds0=$(open_fds)
slow slow.out 127.0.0.2 3 silent 30
wait_for 10 "the slow client connected" grep -q "^connected 3" slow.out
slow drip.out 127.0.0.2 1 drip 30
wait_for 10 "the dripping client connected" grep -q "^connected 1" drip.out
if echoscu -aet GOOD -aec RADRAFT 127.0.0.1 $PORT >echo1.out 2>&1 &&
    storescu -aet GOOD -aec RADRAFT 127.0.0.1 $PORT plain.dcm >store1.out 2>&1; then
    # The premise: the slow connections were still open while echoscu and storescu ran.
    if [ "$(n_closed slow.out)" = 0 ] && [ "$(n_closed drip.out)" = 0 ]; then
        pass "echoscu and storescu served while 4 slow connections were open"
    else fail "the slow connections were closed before the senders finished (premise not met)"; fi
else fail "a sender failed beside slow clients: $(cat echo1.out store1.out)"; fi
# Four legitimate associations at once from one address: they wait behind the per-address
# limit (2), not refused.
for i in 1 2 3 4; do
    echoscu -aet BURST$i -aec RADRAFT 127.0.0.1 $PORT >burst$i.out 2>&1 &
    eval "b$i=\$!"
done
ok=1
for i in 1 2 3 4; do eval "wait \$b$i" || { ok=0; fail "burst echoscu $i: $(cat burst$i.out)"; }; done
[ $ok = 1 ] && pass "4 associations at once from one address all served (2 read at a time)"
wait_for 25 "the silent connections closed by the server" closed_is slow.out = 3
wait_for 25 "the dripping connection closed by the server" closed_is drip.out = 1
t=$(awk '/^closed/ {print $3}' drip.out)
awk -v t="$t" 'BEGIN { exit !(t >= 7) }' && pass "the dripping client was cut after its deadline ($t s), though it kept sending" \
    || fail "the dripping client closed after $t s, before the 8 s deadline"
grep -q "closed the connection from 127.0.0.2: no association request within 8 s (server.request_timeout)" rd.log \
    && pass "the cut connections are logged with their address and reason" \
    || fail "no log line for the cut connections: $(grep 127.0.0.2 rd.log | head -3)"

########## 2. a flood from one address: 2 read, 4 wait, the rest closed at once
slow flood.out 127.0.0.3 10 silent 30
wait_for 10 "the flood connected" grep -q "^connected 10" flood.out
wait_for 5 "4 of the flood's connections closed at once" closed_is flood.out -ge 4
t_first=$(awk '/^closed/ {print $3; exit}' flood.out)
awk -v t="$t_first" 'BEGIN { exit !(t < 5) }' && [ "$(n_closed flood.out)" = 4 ] \
    && pass "10 connections from one address: 4 closed at once (after $t_first s), 6 held" \
    || fail "flood: $(n_closed flood.out) closed, the first after $t_first s"
grep -q "closed the connection from 127.0.0.3: too many connections of this address waiting" rd.log \
    && pass "the flood is logged with its address" || fail "flood not logged"
echoscu -aet GOOD -aec RADRAFT 127.0.0.1 $PORT >echo2.out 2>&1 && [ "$(n_closed flood.out)" = 4 ] \
    && pass "another address is served during the flood" \
    || fail "echoscu during the flood: $(cat echo2.out)"
wait_for 25 "the flood's held connections closed at the deadline" closed_is flood.out = 10
# Every connection's descriptors are given back.
wait_for 10 "sockets back to $fds0" fds_at_most $((fds0 + 1))
[ "$(open_fds)" -le $((fds0 + 1)) ] && pass "no socket leaked ($(open_fds) open, $fds0 before)"

########## 3. the called AE title is checked by default
if echoscu -aet GOOD -aec OTHER 127.0.0.1 $PORT >wrongae.out 2>&1; then
    fail "a wrong called AE title was accepted"
elif grep -q "Called AE Title Not Recognized" wrongae.out &&
    grep -q "called AE title 'OTHER' is not 'RADRAFT'" rd.log; then
    pass "wrong called AE title rejected by default, and logged"
else fail "wrong called AE: $(cat wrongae.out)"; fi

########## 4. UIDs refused as sent, never repaired
# A Study Instance UID with an embedded NUL (DCMTK reads "1.2"), one with a space (DCMTK reads
# "1.255"), and a SOP Instance UID with a leading zero in a component.
# DCMTK's senders would repair these values before sending, so raw_store.py sends the file's
# bytes as they are.
n_uid=0
mkuid() { # OUT PLACEHOLDER_TAG PLACEHOLDER RAW_PYTHON_BYTES
    n_uid=$((n_uid + 1))
    cp plain.dcm "$1" && chmod u+w "$1"
    dcmodify -nb -i "(0008,0018)=1.2.826.0.1.3680043.10.999.$n_uid" "$1" >/dev/null 2>&1 &&
        dcmodify -nb -i "($2)=$3" "$1" >/dev/null 2>&1 || return 1
    [ -z "${4:-}" ] && return 0
    $PY - "$1" "$3" "$4" <<'EOF'
import sys
path, old, new = sys.argv[1], sys.argv[2].encode(), eval(sys.argv[3])
data = open(path, "rb").read()
assert data.count(old) == 1 and len(new) == len(old), (data.count(old), len(new), len(old))
open(path, "wb").write(data.replace(old, new))
EOF
}
mkuid nul.dcm 0020,000d 1.2.77 'b"1.2\x00/x"' && mkuid space.dcm 0020,000d 1.2.55 'b"1.2 55"' &&
    mkuid zero.dcm 0008,0018 1.02.3 "" || fail "could not make the UID variants"
before=$(find d1/store -name '*.dcm' | wc -l)
for v in "nul:Study Instance UID '1.2?/x'" "space:Study Instance UID '1.2 55'" \
    "zero:SOP Instance UID '1.02.3'"; do
    f=${v%%:*}.dcm
    msg=${v#*:}
    $PY "$HERE/raw_store.py" 127.0.0.1 $PORT GOOD RADRAFT $f >$f.out 2>&1
    if grep -q "status 0x0000" $f.out; then
        fail "$f: accepted"
    elif grep -q "status 0xc000" $f.out && grep -qF "$msg is not a valid UID" rd.log; then
        pass "$f refused with 0xC000, logged as: $msg"
    else fail "$f: $(cat $f.out)"; fi
done
# The sender itself works: the same file with a valid UID is stored.
mkuid valid.dcm 0020,000d 1.2.66 "" && $PY "$HERE/raw_store.py" 127.0.0.1 $PORT GOOD RADRAFT valid.dcm >valid.out 2>&1
grep -q "status 0x0000" valid.out && [ -d d1/store/1.2.66 ] && pass "raw_store.py stores a valid instance (the sender works)" \
    || fail "raw_store.py with a valid UID: $(cat valid.out)"
before=$((before + 1))
[ "$(find d1/store -name '*.dcm' | wc -l)" = "$before" ] && [ -z "$(find d1/store -name '1.2' -o -name '1.255')" ] \
    && pass "nothing stored for the invalid UIDs, no repaired UID in the store" \
    || fail "invalid UIDs stored: $(find d1/store | head)"
stop_server

########## 5. server.bind
start_server bind.log --data-dir d2 --set server.bind=127.0.0.2 || exit 1
grep -q "listening on 127.0.0.2:$PORT" bind.log && pass "listening on the bound address" \
    || fail "bind not logged: $(grep listening bind.log)"
! grep -q "allowed_calling_aes is empty" bind.log && pass "no allowlist warning on a loopback bind" \
    || fail "allowlist warning on a loopback bind"
echoscu -aet GOOD -aec RADRAFT 127.0.0.2 $PORT >bind_ok.out 2>&1 && pass "echo on the bound address" \
    || fail "echo on 127.0.0.2: $(cat bind_ok.out)"
if echoscu -aet GOOD -aec RADRAFT 127.0.0.1 $PORT >bind_no.out 2>&1; then
    fail "the listener answered on 127.0.0.1 though bound to 127.0.0.2"
elif grep -q "Connection refused" bind_no.out; then pass "another address is refused (connection refused)"
else fail "127.0.0.1: $(cat bind_no.out)"; fi
stop_server
start_server open.log --data-dir d3 || exit 1
grep -q "server.allowed_calling_aes is empty and the listener is reachable on 0.0.0.0" open.log \
    && pass "default bind 0.0.0.0 with no allowlist warns at start" || fail "no warning on an open listener"
stop_server
if "$RADRAFT" serve --port "$(free_port)" --data-dir d4 --set server.bind=somewhere >badbind.log 2>&1; then
    fail "serve started with server.bind=somewhere"
else
    grep -q "server.bind: 'somewhere' is not an IPv4 address" badbind.log && pass "a bad server.bind is a clear error" \
        || fail "bad bind: $(cat badbind.log)"
fi

########## 6. TLS: peers verified by default, with no CA file the system store decides
openssl req -x509 -newkey rsa:2048 -nodes -keyout self.key -subj "/CN=localhost" -days 2 \
    -out self.crt 2>/dev/null || { fail "openssl"; exit 1; }
start_server tls.log --data-dir d5 --set server.bind=127.0.0.1 --set server.tls_certificate=self.crt \
    --set server.tls_private_key=self.key || exit 1
if "$RADRAFT" echo RADRAFT@127.0.0.1:$PORT+tls >tls1.out 2>&1; then
    fail "radraft echo trusted a self-signed certificate without being told to"
elif grep -q "certificate verify failed" tls1.out; then
    pass "a self-signed listener certificate is refused by default: $(grep -o 'certificate verify failed' tls1.out | head -1)"
else fail "self-signed certificate: $(cat tls1.out)"; fi
if "$RADRAFT" echo --set server.tls_ca_certificates=self.crt RADRAFT@127.0.0.1:$PORT+tls >tls2.out 2>&1; then
    fail "the listener accepted a client without a certificate"
elif grep -q "TLS" tls.log && grep -qi "certificate" tls.log; then
    pass "the listener requires a client certificate by default (no CA file: the system store)"
else fail "client without certificate: $(cat tls2.out; grep -i tls tls.log)"; fi
stop_server
start_server tls_off.log --data-dir d6 --set server.bind=127.0.0.1 --set server.tls_certificate=self.crt \
    --set server.tls_private_key=self.key --set server.tls_verify_peer=false || exit 1
grep -q "server.tls_verify_peer is false: the listener accepts any TLS client certificate" tls_off.log \
    && pass "tls_verify_peer=false warns at start" || fail "no warning for tls_verify_peer=false"
"$RADRAFT" echo --set server.tls_ca_certificates=self.crt RADRAFT@127.0.0.1:$PORT+tls >tls3.out 2>&1 \
    && pass "with the certificate trusted explicitly, echo over TLS succeeds" || fail "trusted echo: $(cat tls3.out)"
if "$RADRAFT" echo --set server.tls_verify_peer=false RADRAFT@127.0.0.1:$PORT+tls >tls4.out 2>&1 &&
    grep -q "TLS peers are not verified" tls4.out; then
    pass "the sender with tls_verify_peer=false connects, and warns"
else fail "sender without verification: $(cat tls4.out)"; fi
stop_server

########## 7. deflate bombs: refused (0xA700) before they are inflated in memory
# A Deflated Explicit VR Little Endian file whose pixel data is SIZE MiB of zeros, written by
# streaming zeros through zlib (about 1 MB on disk per GiB).
$PY "$HERE/make_deflated.py" bomb1g.dcm 1024 1.2.826.0.1.3680043.10.999.100 && $PY "$HERE/make_deflated.py" bomb64m.dcm 64 1.2.826.0.1.3680043.10.999.101 &&
    $PY "$HERE/make_deflated.py" small.dcm 2 1.2.826.0.1.3680043.10.999.102 || fail "could not make the deflated files"
start_server bomb.log --data-dir d7 --set server.bind=127.0.0.1 || exit 1
hwm0=$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)
for i in 1 2 3 4; do
    $PY "$HERE/raw_store.py" 127.0.0.1 $PORT GOOD RADRAFT bomb1g.dcm >bomb$i.out 2>&1 &
    eval "p$i=\$!"
done
for i in 1 2 3 4; do eval "wait \$p$i"; done
hwm=$(awk '/VmHWM/ {print $2}' /proc/$SERVER/status)
n_ok=0
for i in 1 2 3 4; do grep -q "status 0xa700" bomb$i.out && n_ok=$((n_ok + 1)); done
[ $n_ok = 4 ] && grep -q "inflates to more than 256 MiB (server.max_inflated_mb)" bomb.log \
    && pass "4 deflate bombs of 1 GiB ($(stat -c %s bomb1g.dcm) bytes each) at once refused with 0xA700" \
    || fail "bombs: $(cat bomb1.out); $(grep -i inflat bomb.log | head -2)"
[ $((hwm - hwm0)) -lt 102400 ] && pass "peak memory grew by $(((hwm - hwm0) / 1024)) MiB for the 4 bombs (< 100)" \
    || fail "peak memory grew by $(((hwm - hwm0) / 1024)) MiB receiving 4 bombs"
$PY "$HERE/raw_store.py" 127.0.0.1 $PORT GOOD RADRAFT bomb64m.dcm >bomb64.out 2>&1
grep -q "status 0xa700" bomb64.out && grep -q "inflates [0-9]* times.*server.max_inflate_ratio 200" bomb.log \
    && pass "64 MiB of zeros in $(stat -c %s bomb64m.dcm) bytes refused by the inflation ratio" \
    || fail "ratio: $(cat bomb64.out); $(grep -i inflat bomb.log | tail -1)"
$PY "$HERE/raw_store.py" 127.0.0.1 $PORT GOOD RADRAFT small.dcm >small.out 2>&1
grep -q "status 0x0000" small.out && [ -n "$(find d7/store -name '1.2.826.0.1.3680043.10.999.102.dcm')" ] \
    && pass "a deflated dataset within the limits is stored" || fail "small deflated: $(cat small.out)"
[ -z "$(ls d7/spool 2>/dev/null)" ] && pass "no spool file left behind" || fail "spool files left: $(ls d7/spool)"
stop_server

########## 8. the receive memory budget
# 1 MiB holds two associations' buffers (256 KiB + 2 PDUs each): a third is rejected while
# they last, and a deflated dataset's 2 MiB do not fit.
start_server budget.log --data-dir d8 --set server.bind=127.0.0.1 --set server.receive_memory_mb=1 || exit 1
for i in 1 2; do
    $PY "$HERE/raw_store.py" 127.0.0.1 $PORT HOLD$i RADRAFT --hold 6 >hold$i.out 2>&1 &
    eval "h$i=\$!"
    PIDS="$PIDS $!"
done
wait_for 10 "the first association held" grep -q associated hold1.out
wait_for 10 "the second association held" grep -q associated hold2.out
if echoscu -aet THIRD -aec RADRAFT 127.0.0.1 $PORT >third.out 2>&1; then
    fail "a third association was accepted with the budget in use"
elif grep -q "Local Limit Exceeded" third.out &&
    grep -q "the receive memory budget is in use (server.receive_memory_mb 1)" budget.log; then
    pass "a third association is rejected (local limit exceeded) while the budget is in use, and logged"
else fail "third association: $(cat third.out)"; fi
wait $h1 $h2
echoscu -aet FOURTH -aec RADRAFT 127.0.0.1 $PORT >fourth.out 2>&1 \
    && pass "associations are accepted again once the budget is free" || fail "after the budget freed: $(cat fourth.out)"
$PY "$HERE/raw_store.py" 127.0.0.1 $PORT GOOD RADRAFT small.dcm >small2.out 2>&1
grep -q "status 0xa700" small2.out && grep -q "no room in the receive memory budget to parse" budget.log \
    && pass "a deflated dataset whose inflation does not fit the budget is refused (0xA700)" \
    || fail "inflation over the budget: $(cat small2.out)"
stop_server

########## 9. every folder created on the way to a stored file is fsynced into its parent
# Seen with strace: for each mkdir under store/ that created a folder, an fsync of the folder
# above must follow (else a power loss can lose the new study folder with the files in it).
command -v strace >/dev/null || fail "strace is not installed"
PORT=$(free_port)
strace -f -qq -o trace.txt -e trace=mkdir,openat,fsync,close "$RADRAFT" serve --port $PORT \
    --data-dir "$WORK/d9" --stable-seconds 1 --set encoder.model= --set server.bind=127.0.0.1 >trace.log 2>&1 &
STRACE=$!
PIDS="$PIDS $STRACE"
wait_for 30 "radraft serve under strace ready" grep -q "serve: ready" trace.log
storescu -aet GOOD -aec RADRAFT 127.0.0.1 $PORT plain.dcm >trace_store.out 2>&1 || fail "storescu: $(cat trace_store.out)"
# Stop radraft itself (strace's child); strace ends with it.
SERVER=$(pgrep -P $STRACE | head -1)
PIDS="$PIDS $SERVER"
kill -TERM $SERVER 2>/dev/null
wait $STRACE 2>/dev/null
cat >dirsync.py <<'EOF'
import re, sys
store = sys.argv[2]
fds, created, synced, order = {}, [], {}, 0
for line in open(sys.argv[1]):
    order += 1
    m = re.search(r'^(\d+) +mkdir\("([^"]+)", [0-7]+\) = 0', line)
    if m and m.group(2).startswith(store + "/"):
        created.append((order, m.group(2)))
    m = re.search(r'^(\d+) +openat\(AT_FDCWD, "([^"]+)", [^)]*O_DIRECTORY[^)]*\) += (\d+)', line)
    if m:
        fds[(m.group(1), m.group(3))] = m.group(2)
    m = re.search(r'^(\d+) +fsync\((\d+)\) += 0', line)
    if m and (m.group(1), m.group(2)) in fds:
        synced.setdefault(fds[(m.group(1), m.group(2))], []).append(order)
missing = [d for (t, d) in created
           if not any(o > t for o in synced.get(d.rsplit("/", 1)[0], []))]
print("created %d, parents fsynced for %d" % (len(created), len(created) - len(missing)))
for d in missing:
    print("not fsynced into its parent:", d)
sys.exit(1 if missing or len(created) < 2 else 0)
EOF
if $PY dirsync.py trace.txt "$WORK/d9/store" >dirsync.out; then
    pass "new study and series folders fsynced into their parents: $(head -1 dirsync.out)"
else fail "folder fsync: $(cat dirsync.out)"; fi

[ $FAILS = 0 ] && echo "all passed" || echo "$FAILS check(s) failed"
exit $((FAILS > 0))
