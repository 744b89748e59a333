#!/usr/bin/env bash
# Tests everything under deploy/, for CI and by hand:
#
#     deploy/test.sh
#
#   kubernetes  deploy/kubernetes/test.sh  always (offline: kubectl kustomize,
#               kubernetes-validate --strict, invariants, each pod's node started)
#   systemd     deploy/systemd/test.sh     always (systemd-analyze, the unit's
#               environment run for real, its system call filter)
#   compose     deploy/compose/test.sh     when Docker works (builds the image,
#               a 3-node cluster, the leader killed and restarted, convergence);
#               skipped with a message otherwise
#
# Needs target/release/concord (built when missing: cargo build --release
# --bin concord) and kubectl. Prints one line per part and a closing
# "N passed, N failed" line; exits 1 if any part failed.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [[ ! -x target/release/concord ]]; then
    echo "== building target/release/concord"
    cargo build --release --bin concord || exit 1
fi

passed=0 failed=0 skipped=0
results=()
run() { # NAME SCRIPT
    local name=$1 script=$2 start rc log
    start=$(date +%s)
    log=$(mktemp)
    echo "== $name: $script"
    "$script" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    local took=$(($(date +%s) - start))
    if [[ $rc -ne 0 ]]; then
        failed=$((failed + 1))
        results+=("FAIL  $name (${took}s)")
    elif grep -q '^SKIP: ' "$log" && ! grep -q 'PASS' "$log"; then
        skipped=$((skipped + 1))
        results+=("SKIP  $name (${took}s): $(grep -m1 '^SKIP: ' "$log" | sed 's/^SKIP: //')")
    else
        passed=$((passed + 1))
        results+=("ok    $name (${took}s)")
    fi
    rm -f "$log"
}

run kubernetes deploy/kubernetes/test.sh
run systemd deploy/systemd/test.sh
run compose deploy/compose/test.sh

echo "== deploy/test.sh"
printf '   %s\n' "${results[@]}"
echo "$passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
