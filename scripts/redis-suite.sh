#!/usr/bin/env bash
# Runs Redis's own test suite (Redis 7.0.15, from Debian's source package)
# against a `concord dev` cluster, once through the leader and once through
# a follower, and prints the [ok]/[err] counts per unit.
#
#   scripts/redis-suite.sh                       # the units of the compatibility target
#   scripts/redis-suite.sh unit/type/list ...    # chosen units
#
# The suite is fetched on demand into target/redis-suite (never committed;
# BSD-licensed at this version). Needs root the first time, to add a deb-src
# entry and install tcl if missing. Environment: SUITE_TIMEOUT (seconds per
# unit, default 600). Each unit's full output stays in target/redis-suite/logs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SUITE_DIR=$ROOT/target/redis-suite
REDIS_VERSION=7.0.15
TIMEOUT=${SUITE_TIMEOUT:-600}
UNITS=("$@")
if ((${#UNITS[@]} == 0)); then
    UNITS=(unit/type/string unit/type/incr unit/expire unit/keyspace unit/type/hash
        unit/type/set unit/type/zset unit/type/list unit/pubsub unit/multi
        unit/scripting unit/info-command)
fi
TAGS="-needs:repl -needs:debug -needs:save -needs:config-maxmemory -needs:config-resetstat -needs:reset -needs:pfdebug -needs:latency -slow"

log() { printf '[redis-suite] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- the suite ---------------------------------------------------------------
SRC=$SUITE_DIR/redis-$REDIS_VERSION
if [[ ! -x $SRC/runtest ]]; then
    [[ $(id -u) == 0 ]] || die "fetching the suite needs root (apt-get source)"
    if ! apt-cache showsrc redis >/dev/null 2>&1 || [[ -z $(apt-cache showsrc redis 2>/dev/null) ]]; then
        log "adding a deb-src entry for bookworm"
        cat >/etc/apt/sources.list.d/concord-deb-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        apt-get update -qq
    fi
    mkdir -p "$SUITE_DIR"
    (cd "$SUITE_DIR" && apt-get source --download-only -qq redis)
    tar -xzf "$SUITE_DIR/redis_$REDIS_VERSION.orig.tar.gz" -C "$SUITE_DIR"
    [[ -x $SRC/runtest ]] || die "the source package has no runtest"
fi
if ! command -v tclsh >/dev/null; then
    [[ $(id -u) == 0 ]] || die "tclsh is missing and we are not root to install it"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tcl >/dev/null
fi
command -v redis-cli >/dev/null || {
    [[ $(id -u) == 0 ]] || die "redis-cli is missing and we are not root to install it"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools >/dev/null
}

# --- the cluster -------------------------------------------------------------
log "building target/release/concord"
cargo build --release --bin concord
WORK=$(mktemp -d "${TMPDIR:-/tmp}/concord-suite.XXXXXX")
DEV_PID=
cleanup() {
    if [[ -n $DEV_PID ]]; then
        kill -TERM "$DEV_PID" 2>/dev/null || true
        wait "$DEV_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
BASE=$(python3 -c 'import random; print(random.randrange(30000, 40000, 10))')
"$ROOT/target/release/concord" dev --base-port "$BASE" --dir "$WORK/dev" >"$WORK/dev.log" 2>&1 &
DEV_PID=$!
leader=
for _ in $(seq 1 300); do
    for port in "$BASE" $((BASE + 1)) $((BASE + 2)); do
        if [[ $(timeout 2 redis-cli -p "$port" info raft 2>/dev/null | tr -d '\r' | sed -n 's/^raft_role://p') == leader ]]; then
            leader=$port
        fi
    done
    [[ -n $leader ]] && break
    sleep 0.1
done
[[ -n $leader ]] || die "the dev cluster elected no leader; log: $(tail -n 20 "$WORK/dev.log")"
follower=$BASE
[[ $follower == "$leader" ]] && follower=$((BASE + 1))
log "leader on $leader, follower on $follower"

# --- the units -----------------------------------------------------------------
mkdir -p "$SUITE_DIR/logs"
printf '| unit | leader ok | leader err | follower ok | follower err |\n|---|---:|---:|---:|---:|\n'
total_ok=(0 0)
total_err=(0 0)
for unit in "${UNITS[@]}"; do
    row="| $unit"
    i=0
    for port in "$leader" "$follower"; do
        out=$SUITE_DIR/logs/$(echo "$unit" | tr / _).$port.log
        (cd "$SRC" && timeout "$TIMEOUT" ./runtest --host 127.0.0.1 --port "$port" --singledb \
            --durable --ignore-encoding --ignore-digest --no-latency --tags "$TAGS" \
            --single "$unit" >"$out" 2>&1) || true
        # The suite colours its tags: strip the escapes before counting.
        plain=$(sed 's/\x1b\[[0-9;]*m//g' "$out")
        ok=$(grep -c '^\[ok\]' <<<"$plain" || true)
        err=$(grep -cE '^\[(err|exception)\]' <<<"$plain" || true)
        total_ok[i]=$((total_ok[i] + ok))
        total_err[i]=$((total_err[i] + err))
        row="$row | $ok | $err"
        i=$((i + 1))
    done
    printf '%s |\n' "$row"
done
printf '| **total** | %d | %d | %d | %d |\n' "${total_ok[0]}" "${total_err[0]}" "${total_ok[1]}" "${total_err[1]}"
