#!/usr/bin/env bash
# Checks the Kubernetes manifests offline (no cluster needed):
#
#     deploy/kubernetes/test.sh
#
# For each overlay in overlays/:
#  1. renders it with `kubectl kustomize`, and its Secrets with make-secrets.sh
#  2. validates every resource with kubernetes-validate --strict (unknown
#     fields are errors) against Kubernetes 1.30, the oldest the manifests
#     support (the preStop sleep action), and the newest the package knows
#  3. checks the invariants in check.py: probes and resources on every
#     container, node id = ordinal + 1 for every pod, --initial-cluster
#     members = replicas and named after the headless Service and namespace,
#     $(VAR) references defined before use, PDB, client Service, secrets
#  4. starts each pod's node on this machine from the rendered environment
#     and volumes (check.py --start) and checks its node id and health,
#     when a concord binary is at hand (CONCORD_BIN, target/release/concord
#     or target/debug/concord)
# Then checks that check.py fails on broken variants (replicas and members
# disagree; namespace and hosts disagree; CONCORD_NODE_ID set for all pods;
# $(POD_NAME) used before it is defined).
# kubernetes-validate is installed into a virtualenv under target/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
START=$(date +%s)
step() { printf '== [%3ss] %s\n' "$(($(date +%s) - START))" "$*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

command -v kubectl >/dev/null || fail "kubectl is required (for kubectl kustomize)"
VENV=$ROOT/target/deploy-venv
if [[ ! -x $VENV/bin/kubernetes-validate ]]; then
    step "installing kubernetes-validate into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q kubernetes-validate
fi
PY=$VENV/bin/python
NEWEST=$("$VENV/bin/kubernetes-validate" --help | sed -n 's/.*Defaults to \([0-9.]*\).*/\1/p' | head -1)
VERSIONS=(1.30.0 "${NEWEST:-1.37.0}")

BIN=${CONCORD_BIN:-}
for candidate in "$ROOT/target/release/concord" "$ROOT/target/debug/concord"; do
    [[ -z $BIN && -x $candidate ]] && BIN=$candidate
done
START_ARGS=()
if [[ -n $BIN ]] && "$BIN" health --help >/dev/null 2>&1; then
    START_ARGS=(--start "$BIN")
else
    echo "note: no concord binary with 'health' (build target/release/concord): pods are checked, not started"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/concord-k8s-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

overlays=0
for dir in "$HERE"/overlays/*/; do
    overlay=$(basename "$dir")
    out=$WORK/$overlay.yaml
    secrets=$WORK/$overlay-secrets.yaml
    step "$overlay: kubectl kustomize"
    kubectl kustomize "$dir" >"$out" || fail "$overlay: kubectl kustomize failed"
    replicas=$("$PY" -c 'import sys, yaml
print(next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "StatefulSet")["spec"]["replicas"])' "$out")
    namespace=$("$PY" -c 'import sys, yaml
print(next(d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "StatefulSet")["metadata"].get("namespace", "default"))' "$out")
    tls=()
    grep -q 'secretName: concord-tls' "$out" && tls=(--tls-nodes "$replicas" --certs "$WORK/$overlay-certs")
    "$HERE/make-secrets.sh" "${tls[@]}" "$namespace" >"$secrets" 2>/dev/null || fail "$overlay: make-secrets.sh failed"
    kinds=$("$PY" -c 'import sys, yaml
print(" ".join(d["kind"] for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d))' "$out" "$secrets")
    step "$overlay: $replicas replicas in namespace $namespace; resources: $kinds"
    for version in "${VERSIONS[@]}"; do
        step "$overlay: kubernetes-validate --strict -k $version"
        "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$out" "$secrets" \
            || fail "$overlay: not valid for Kubernetes $version"
    done
    step "$overlay: invariants${START_ARGS:+, and every pod started here}"
    "$PY" "$HERE/check.py" "$out" "$secrets" "${START_ARGS[@]}" || fail "$overlay: invariants violated"
    overlays=$((overlays + 1))
done
[[ $overlays -ge 2 ]] || fail "expected at least the 3-nodes and 5-nodes overlays"

# The checker must catch what it claims to: render broken variants of
# overlays/3-nodes and expect each to be refused for the right reason.
# (Kustomize wants relative paths: the variants live in a copy of this tree.)
TREE=$WORK/tree
mkdir -p "$TREE"
cp -r "$HERE/base" "$HERE/overlays" "$HERE/components" "$TREE/"
broken() {
    local what=$1 expect=$2 kustomization=$3
    local dir=$TREE/broken-$what
    mkdir -p "$dir"
    printf 'resources: [../overlays/3-nodes]\n%s\n' "$kustomization" >"$dir/kustomization.yaml"
    kubectl kustomize "$dir" >"$dir/out.yaml" || fail "broken variant $what did not render"
    if "$PY" "$HERE/check.py" "$dir/out.yaml" "$WORK/3-nodes-secrets.yaml" >"$dir/check.log" 2>&1; then
        fail "check.py accepted a broken variant ($what)"
    fi
    grep -q -- "$expect" "$dir/check.log" || { cat "$dir/check.log" >&2; fail "check.py refused $what, but not with '$expect'"; }
    step "broken variant refused as expected: $what"
}
broken replicas "replicas is 4 but --initial-cluster has 3 members" \
    "replicas: [{name: concord, count: 4}]"
broken namespace "expected concord-0.concord-peer.elsewhere.svc" \
    "namespace: elsewhere"
broken node-id "CONCORD_NODE_ID is set in the pod template" "patches:
- target: {kind: StatefulSet, name: concord}
  patch: |-
    - {op: add, path: /spec/template/spec/containers/0/env/-, value: {name: CONCORD_NODE_ID, value: '1'}}"
broken env-order "uses \$(POD_NAME), which is not defined before it" "patches:
- target: {kind: StatefulSet, name: concord}
  patch: |-
    - {op: add, path: /spec/template/spec/containers/0/env/0, value: {name: CONCORD_ADVERTISE_TOO, value: '\$(POD_NAME):6379'}}"

step "PASS: $overlays overlays ($(($(date +%s) - START)) s)"
