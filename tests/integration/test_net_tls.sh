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
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
PORT=$((21000 + ($$ % 90) * 10 + 8))
FAILS=0
SERVER=
trap 'kill -9 $SERVER 2>/dev/null' EXIT
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { echo "ok: $*"; }

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

"$RADRAFT" serve --port $PORT --data-dir rd --stable-seconds 1 --set encoder.model= \
    --set server.tls_certificate=server.crt --set server.tls_private_key=server.key \
    --set server.tls_ca_certificates=ca.crt >rd.log 2>&1 &
SERVER=$!
up=0
for _ in $(seq 1 100); do
    if echoscu +tls client.key client.crt +cf ca.crt -aet TLSSCU -aec RADRAFT localhost $PORT \
        >/dev/null 2>&1; then up=1; break; fi
    sleep 0.1
done
[ $up -eq 1 ] && pass "echoscu over TLS with a client certificate" || { fail "TLS echo"; cat rd.log; }
echoscu -aet PLAIN -aec RADRAFT localhost $PORT >/dev/null 2>&1 \
    && fail "a plain TCP association was accepted" || pass "plain TCP refused"
echoscu +tls stranger.key stranger.crt +cf ca.crt -aet STRANGER -aec RADRAFT localhost $PORT \
    >/dev/null 2>&1 && fail "a certificate from an unknown CA was accepted" \
    || pass "client certificate from an unknown CA refused"
F=$DATA/dicom/codecs/JPEG-LL.dcm
storescu +tls client.key client.crt +cf ca.crt -xs -aet TLSSCU -aec RADRAFT localhost $PORT "$F" \
    >storescu.log 2>&1 && pass "storescu over TLS" || fail "storescu over TLS"
n=$(sqlite3 -cmd ".timeout 10000" rd/radraft.db "SELECT COUNT(*) FROM instances")
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
"$RADRAFT" echo $CERTS "RADRAFT@localhost:$PORT" >/dev/null 2>&1 \
    && fail "a plain destination reached the TLS listener" \
    || pass "a destination without suffix follows outbox.tls (off)"
"$RADRAFT" echo $TLSOPTS "RADRAFT@localhost:$PORT+plain" >/dev/null 2>&1 \
    && fail "a +plain destination spoke TLS" \
    || pass "a +plain destination speaks plain TCP despite outbox.tls"
# With a valid client certificate but trusting another CA, only the sender's own check of
# the server's certificate can fail the association.
"$RADRAFT" echo --set outbox.tls=true --set server.tls_certificate=client.crt \
    --set server.tls_private_key=client.key --set server.tls_ca_certificates=otherca.crt \
    RADRAFT@localhost:$PORT >/dev/null 2>&1 && fail "server not verified against the CA" \
    || pass "sender refuses a server its CA did not sign"
kill -TERM $SERVER
wait $SERVER && pass "clean shutdown" || fail "exit status"
SERVER=
if [ $FAILS -ne 0 ]; then
    echo "$FAILS check(s) failed"
    exit 1
fi
echo "all checks passed"
