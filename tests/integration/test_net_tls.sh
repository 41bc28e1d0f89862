#!/bin/bash
# DICOM TLS: radraft serve with a certificate (and a CA that client certificates must chain
# to) against DCMTK's echoscu/storescu with their TLS options, and radraft's own sender
# over TLS. Certificates are generated here with openssl.
#
# usage: test_net_tls.sh RADRAFT SHARED_DATA WORKDIR
set -u
RADRAFT=$1
DATA=$2
WORK=$3
for tool in openssl echoscu storescu sqlite3; do
    command -v $tool >/dev/null || { echo "FAIL: $tool is not installed"; exit 1; }
done
[ -d "$DATA/dicom/codecs" ] || { echo "FAIL: shared data not found at $DATA"; exit 1; }
. "$(dirname "$0")/lib_ports.sh"
. "$(dirname "$0")/lib_wait.sh"
. "$(dirname "$0")/lib_store.sh"
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
PORT=
FAILS=0
SERVER=
trap 'kill -9 $SERVER 2>/dev/null' EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }
# A refusal must be the one expected: the command fails, its output names why (the listener
# aborting the handshake, not a connection refused by nothing listening), and (when a
# pattern is given) the listener logs a new line naming the TLS failure it saw.
#   refused WHAT CLIENT_PATTERN SERVER_LOG_PATTERN|"" command...
# How a client sees the listener abort the TLS handshake (either, depending on timing); a
# listener that is not there gives "Connection refused" instead.
ABORTED='\(Peer aborted Association\|Connection reset by peer\)'
# logged_more PATTERN N: rd.log has more than N lines matching PATTERN.
logged_more() {
    local n
    n=$(grep -c -- "$1" rd.log)
    echo "$n lines match '$1' in rd.log ($2 before)"
    [ "$n" -gt "$2" ]
}
refused() {
    local what=$1 cpat=$2 spat=$3 before after rc
    shift 3
    before=$(grep -c -- "$spat" rd.log)
    "$@" >neg.out 2>&1
    rc=$?
    if [ $rc = 0 ]; then fail "$what: it succeeded"; return; fi
    grep -q -- "$cpat" neg.out || { fail "$what: exit $rc, but not '$cpat': $(cat neg.out)"; return; }
    if [ -n "$spat" ]; then
        rd_wait_for "the listener to log '$spat'" 10 logged_more "$spat" "$before" ||
            { fail "$what: the listener logged no new '$spat'"; return; }
    fi
    pass "$what"
}

# A CA, a server certificate and a client certificate signed by it, and a client
# certificate from another CA that must be refused.
gen() { # NAME CN CA_NAME
    openssl req -new -newkey rsa:2048 -nodes -keyout $1.key -subj "/CN=$2" -out $1.csr 2>/dev/null
    openssl x509 -req -in $1.csr -CA $3.crt -CAkey $3.key -CAcreateserial -days 2 \
        -out $1.crt 2>/dev/null
}
for ca in ca otherca; do
    openssl req -x509 -newkey rsa:2048 -nodes -keyout $ca.key -subj "/CN=$ca" -days 2 \
        -out $ca.crt 2>/dev/null
done
gen server localhost ca && gen client client ca && gen stranger stranger otherca \
    || { fail "openssl could not make the certificates"; exit 1; }

start_radraft() {
    local off
    PORT=$(rd_free_port)
    off=$(rd_log_size rd.log)
    "$RADRAFT" serve --port $PORT --data-dir rd --stable-seconds 1 --set encoder.model= \
        --set server.tls_certificate=server.crt --set server.tls_private_key=server.key \
        --set server.tls_ca_certificates=ca.crt >>rd.log 2>&1 &
    SERVER=$!
    rd_wait_listening "radraft serve" $SERVER rd.log "$off" 20 $PORT
}
rd_retry_port 5 start_radraft || { fail "radraft serve did not start"; exit 1; }
rd_wait_for "a C-ECHO over TLS" 20 echoscu +tls client.key client.crt +cf ca.crt -aet TLSSCU \
    -aec RADRAFT localhost $PORT && pass "echoscu over TLS with a client certificate" ||
    { fail "TLS echo"; cat rd.log; }
refused "plain TCP refused" "Association Request Failed: .*$ABORTED" "TLS error: wrong version number" \
    echoscu -aet PLAIN -aec RADRAFT localhost $PORT
refused "client certificate from an unknown CA refused" "Association Request Failed: .*$ABORTED" \
    "TLS error: certificate verify failed" \
    echoscu +tls stranger.key stranger.crt +cf ca.crt -aet STRANGER -aec RADRAFT localhost $PORT
F=$DATA/dicom/codecs/JPEG-LL.dcm
storescu +tls client.key client.crt +cf ca.crt -xs -aet TLSSCU -aec RADRAFT localhost $PORT "$F" \
    >storescu.log 2>&1 && pass "storescu over TLS" || fail "storescu over TLS"
n=$(rd_db rd "SELECT COUNT(*) FROM instances")
[ "$n" = 1 ] && pass "instance stored over TLS" || fail "$n instances stored"
# radraft's sender over TLS (echo and send), verifying the server against the CA.
TLSOPTS="--set outbox.tls=true --set server.tls_certificate=client.crt
    --set server.tls_private_key=client.key --set server.tls_ca_certificates=ca.crt"
"$RADRAFT" echo $TLSOPTS RADRAFT@localhost:$PORT >/dev/null && pass "radraft echo over TLS" \
    || fail "radraft echo over TLS"
"$RADRAFT" send $TLSOPTS --to RADRAFT@localhost:$PORT "$DATA/dicom/codecs/RG3_J2KR.dcm" \
    && pass "radraft send over TLS" || fail "radraft send over TLS"
# TLS per destination: "+tls" speaks TLS with outbox.tls off; "+plain" speaks plain TCP
# with outbox.tls on, which the TLS-only listener refuses.
CERTS="--set server.tls_certificate=client.crt --set server.tls_private_key=client.key
    --set server.tls_ca_certificates=ca.crt"
"$RADRAFT" echo $CERTS "RADRAFT@localhost:$PORT+tls" >/dev/null \
    && pass "a +tls destination speaks TLS without outbox.tls" \
    || fail "a +tls destination speaks TLS without outbox.tls"
refused "a destination without suffix follows outbox.tls (off)" "cannot associate with RADRAFT@localhost:$PORT.*$ABORTED" \
    "TLS error: wrong version number" "$RADRAFT" echo $CERTS "RADRAFT@localhost:$PORT"
refused "a +plain destination speaks plain TCP despite outbox.tls" "cannot associate with RADRAFT@localhost:$PORT.*$ABORTED" \
    "TLS error: wrong version number" "$RADRAFT" echo $TLSOPTS "RADRAFT@localhost:$PORT+plain"
# With a valid client certificate but trusting another CA, only the sender's own check of
# the server's certificate can fail the association.
refused "sender refuses a server its CA did not sign" "TLS error: certificate verify failed" "" \
    "$RADRAFT" echo --set outbox.tls=true --set server.tls_certificate=client.crt \
    --set server.tls_private_key=client.key --set server.tls_ca_certificates=otherca.crt \
    RADRAFT@localhost:$PORT
kill -TERM $SERVER
wait $SERVER && pass "clean shutdown" || fail "exit status"
SERVER=
if [ $FAILS -ne 0 ]; then
    echo "$FAILS check(s) failed"
    exit 1
fi
echo "all checks passed"
