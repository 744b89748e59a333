#!/usr/bin/env bash
# Prints the Secrets the concord manifests read, as YAML for `kubectl apply`.
# Nothing secret is kept in git; run this once per cluster:
#
#     deploy/kubernetes/make-secrets.sh [--tls-nodes N] [--certs DIR] [NAMESPACE] | kubectl apply -f -
#
#   concord-auth  password     the default user's password (32 random bytes, hex)
#                 peer-secret  what nodes prove to each other (32 random bytes, hex)
#   concord-tls   (with --tls-nodes N, for components/tls) ca.pem and, for
#                 each ordinal o < N, concord-<o>.pem/.key: the certificate of
#                 node o+1 (SAN URI concord:node:<o+1>), made by
#                 scripts/make-certs.sh in DIR (default ./concord-certs; keep
#                 its ca.key offline, it signs future nodes' certificates).
#                 The certificates also name the client Service
#                 (concord.NAMESPACE.svc) and every pod.
#
# NAMESPACE defaults to concord (the overlays' namespace). The password can
# be read back with
#     kubectl -n concord get secret concord-auth -o jsonpath='{.data.password}' | base64 -d
# Only kubectl's offline --dry-run=client is used: no cluster is contacted.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NS=concord
TLS_NODES=0
CERTS=./concord-certs
while [[ $# -gt 0 ]]; do
    case $1 in
    --tls-nodes) TLS_NODES=$2; shift 2 ;;
    --certs) CERTS=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
    -*) echo "$0: unknown option $1" >&2; exit 2 ;;
    *) NS=$1; shift ;;
    esac
done
command -v kubectl >/dev/null || { echo "$0: kubectl is required" >&2; exit 1; }

random() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

kubectl create secret generic concord-auth --namespace "$NS" --dry-run=client -o yaml \
    --from-literal=password="$(random)" \
    --from-literal=peer-secret="$(random)"

if [[ $TLS_NODES -gt 0 ]]; then
    hosts="concord,concord.$NS,concord.$NS.svc,*.concord-peer.$NS.svc"
    CONCORD_CERT_HOSTS=$hosts "$ROOT/scripts/make-certs.sh" "$CERTS" $(seq 1 "$TLS_NODES") >/dev/null
    args=(--from-file=ca.pem="$CERTS/ca.pem")
    for id in $(seq 1 "$TLS_NODES"); do
        args+=(--from-file="concord-$((id - 1)).pem=$CERTS/node-$id.pem")
        args+=(--from-file="concord-$((id - 1)).key=$CERTS/node-$id.key")
    done
    echo "---"
    kubectl create secret generic concord-tls --namespace "$NS" --dry-run=client -o yaml "${args[@]}"
fi
