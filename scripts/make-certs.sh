#!/usr/bin/env bash
# Makes a private CA and certificates for a concord cluster, with openssl.
#
#   scripts/make-certs.sh DIR [NODE_ID ...]     # default node ids: 1 2 3
#
# Writes into DIR:
#   ca.pem, ca.key             the cluster CA (keep ca.key offline once done)
#   node-N.pem, node-N.key     node N's certificate: SAN URI concord:node:N
#                              (peers must claim that id), DNS localhost and
#                              node-N, IP 127.0.0.1, plus $CONCORD_CERT_HOSTS
#                              (comma-separated DNS names or IPs, e.g.
#                              "10.0.0.5,db1.internal")
#   client.pem, client.key     a client certificate (for --tls-auth-clients yes)
#
# Use them as (node 1):
#   concord serve --tls-listen 0.0.0.0:6390 --peer-tls \
#     --tls-cert-file DIR/node-1.pem --tls-key-file DIR/node-1.key \
#     --tls-ca-cert-file DIR/ca.pem ...
#   redis-cli --tls --cacert DIR/ca.pem --cert DIR/client.pem --key DIR/client.key -p 6390
# Keys are EC P-256; certificates are valid for CONCORD_CERT_DAYS (365) days.
set -euo pipefail

[[ $# -ge 1 ]] || { echo "usage: $0 DIR [NODE_ID ...]" >&2; exit 2; }
DIR=$1
shift
IDS=("$@")
[[ ${#IDS[@]} -gt 0 ]] || IDS=(1 2 3)
DAYS=${CONCORD_CERT_DAYS:-365}
command -v openssl >/dev/null || { echo "$0: openssl is required" >&2; exit 1; }
mkdir -p "$DIR"
cd "$DIR"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; chmod 600 "$1"; }

if [[ ! -f ca.pem ]]; then
    key ca.key
    openssl req -x509 -new -key ca.key -sha256 -days "$DAYS" -subj "/CN=concord cluster CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out ca.pem
fi

# issue NAME CN SAN
issue() {
    local name=$1 cn=$2 san=$3
    key "$name.key"
    openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
    printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' \
        "$san" >"$name.ext"
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$DAYS" \
        -sha256 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

extra=""
IFS=',' read -ra HOSTS <<<"${CONCORD_CERT_HOSTS:-}"
for h in "${HOSTS[@]}"; do
    [[ -z "$h" ]] && continue
    if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then extra+=",IP:$h"; else extra+=",DNS:$h"; fi
done

for id in "${IDS[@]}"; do
    [[ $id =~ ^[1-9][0-9]*$ ]] || { echo "$0: node id '$id' is not a positive integer" >&2; exit 2; }
    issue "node-$id" "concord node $id" "URI:concord:node:$id,DNS:localhost,DNS:node-$id,IP:127.0.0.1$extra"
done
issue client "concord client" "DNS:client"
echo "certificates in $DIR: ca.pem, $(printf 'node-%s.pem ' "${IDS[@]}")client.pem" >&2
