#!/usr/bin/env bash
# Load benchmark: one-node concord against Redis, with redis-benchmark.
#
#   bench/load.sh                 # 3 rounds, 100k requests unpipelined, 500k with -P 16
#   BENCH_QUICK=1 bench/load.sh   # 1 round, 20k / 100k requests
#
# Environment:
#   BENCH_ROUNDS             rounds (default 3; 1 with BENCH_QUICK=1)
#   BENCH_REQUESTS           requests per test without pipelining (default 100000; 20000 quick)
#   BENCH_PIPELINE_REQUESTS  requests per test with -P 16 (default 500000; 100000 quick)
#   BENCH_CLIENTS            parallel connections (default 50)
#   BENCH_TIMEOUT            seconds allowed for one redis-benchmark call (default 900)
#   BENCH_OUT                also write the report (markdown) to this file
#   BENCH_CONCORD            benchmark this concord binary instead of building one
#                            (to compare builds; the report names it instead of a commit)
#   TMPDIR                   where the servers' data directories go (the disk fsync hits)
#
# Six servers run side by side for the whole benchmark:
#   concord           one node; acknowledges a write only after its WAL is fsynced
#   redis-nopersist   redis-server --save '' --appendonly no (an in-memory ceiling)
#   redis-always      redis-server --appendonly yes --appendfsync always (the durable equivalent)
#   concord-tls       concord, clients over TLS (--tls-listen; certificates from
#                     scripts/make-certs.sh, no client certificate)
#   redis-tls         redis-always, clients over TLS (--tls-port), the same certificates
#   concord-acl       concord, the load run as an ACL user with key patterns and
#                     category rules (~key:* ~counter:* +@string ...), so every
#                     command pays the permission check
# Each round runs every workload against the three back to back, so that noise from
# the (shared) machine falls on all three alike; the report takes medians over rounds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[load.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ "${BENCH_QUICK:-0}" == 1 ]]; then
    ROUNDS=${BENCH_ROUNDS:-1}
    REQUESTS=${BENCH_REQUESTS:-20000}
    PIPE_REQUESTS=${BENCH_PIPELINE_REQUESTS:-100000}
else
    ROUNDS=${BENCH_ROUNDS:-3}
    REQUESTS=${BENCH_REQUESTS:-100000}
    PIPE_REQUESTS=${BENCH_PIPELINE_REQUESTS:-500000}
fi
CLIENTS=${BENCH_CLIENTS:-50}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}
PIPELINE=16
START_DEADLINE=30 # seconds for a server to answer PING and accept a write
for v in ROUNDS REQUESTS PIPE_REQUESTS CLIENTS BENCH_TIMEOUT; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, got '${!v}'"
done

# --- 1. tools and the binary -------------------------------------------------
if ! command -v redis-benchmark >/dev/null || ! command -v redis-server >/dev/null \
    || ! command -v redis-cli >/dev/null; then
    log "installing redis-server and redis-tools"
    [[ $(id -u) == 0 ]] || die "redis-benchmark is missing and we are not root to install it"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server redis-tools
fi
command -v python3 >/dev/null || die "python3 is required"

if [[ -n "${BENCH_CONCORD:-}" ]]; then
    CONCORD=$(realpath "$BENCH_CONCORD")
    COMMIT="binary $CONCORD"
else
    COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    # The binary is built from the work tree: say so if it differs from HEAD.
    if [[ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
        COMMIT="$COMMIT+dirty"
    fi
    log "building target/release/concord"
    cargo build --release --bin concord
    CONCORD=$ROOT/target/release/concord
fi
[[ -x "$CONCORD" ]] || die "$CONCORD was not built"

# --- 2. scratch space, cleanup -----------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/concord-load.XXXXXX")
PIDS=()
BENCH_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    if [[ -n "$BENCH_PID" ]]; then
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Give them 10 s to exit, then SIGKILL whatever is left.
    local deadline=$((SECONDS + 10))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready NAME PID PORT: PING answers PONG and a SET is accepted (for concord: a
# leader is elected), before a deadline; fails early if the process has exited.
wait_ready() {
    local name=$1 pid=$2 port=$3
    local deadline=$((SECONDS + START_DEADLINE))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 1
        # shellcheck disable=SC2086
        if [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$port" ${TLS_ARGS[$name]:-} ping 2>/dev/null) == PONG ]] &&
            [[ $(timeout 5 redis-cli -h 127.0.0.1 -p "$port" ${TLS_ARGS[$name]:-} set load.sh:ready 1 2>/dev/null) == OK ]]; then
            return 0
        fi
        sleep 0.1
    done
    log "$name did not become ready within ${START_DEADLINE}s"
    return 1
}

declare -A PORT PID
# Certificates for the TLS servers, and what a client passes to reach each server.
CERTS=$WORK/certs
"$ROOT/scripts/make-certs.sh" "$CERTS" 1 2>/dev/null
declare -A TLS_ARGS=([concord-tls]="--tls --cacert $CERTS/ca.pem" [redis-tls]="--tls --cacert $CERTS/ca.pem")
declare -A AUTH_ARGS=([concord-acl]="--user bench -a bench-pass")
# start NAME: starts the named server on fresh ports (retrying if a port was taken
# in the meantime), records PORT[NAME] and PID[NAME].
start() {
    local name=$1 attempt port pid dir=$WORK/$1 logf=$WORK/$1.log
    mkdir -p "$dir"
    for attempt in 1 2 3; do
        port=$(free_port)
        case $name in
        concord)
            CONCORD_LOG=${CONCORD_LOG:-warn} "$CONCORD" serve \
                --listen "127.0.0.1:$port" --peer-listen "127.0.0.1:$(free_port)" \
                --data-dir "$dir" </dev/null >>"$logf" 2>&1 &
            ;;
        redis-nopersist)
            redis-server --port "$port" --bind 127.0.0.1 --daemonize no --dir "$dir" \
                --save '' --appendonly no </dev/null >>"$logf" 2>&1 &
            ;;
        redis-always)
            redis-server --port "$port" --bind 127.0.0.1 --daemonize no --dir "$dir" \
                --save '' --appendonly yes --appendfsync always </dev/null >>"$logf" 2>&1 &
            ;;
        concord-tls)
            CONCORD_LOG=${CONCORD_LOG:-warn} "$CONCORD" serve \
                --listen "127.0.0.1:$(free_port)" --tls-listen "127.0.0.1:$port" \
                --peer-listen "127.0.0.1:$(free_port)" --data-dir "$dir" \
                --tls-cert-file "$CERTS/node-1.pem" --tls-key-file "$CERTS/node-1.key" \
                --tls-ca-cert-file "$CERTS/ca.pem" --tls-auth-clients no </dev/null >>"$logf" 2>&1 &
            ;;
        redis-tls)
            redis-server --port 0 --tls-port "$port" --bind 127.0.0.1 --daemonize no --dir "$dir" \
                --tls-cert-file "$CERTS/node-1.pem" --tls-key-file "$CERTS/node-1.key" \
                --tls-ca-cert-file "$CERTS/ca.pem" --tls-auth-clients no \
                --save '' --appendonly yes --appendfsync always </dev/null >>"$logf" 2>&1 &
            ;;
        concord-acl)
            CONCORD_LOG=${CONCORD_LOG:-warn} "$CONCORD" serve \
                --listen "127.0.0.1:$port" --peer-listen "127.0.0.1:$(free_port)" \
                --data-dir "$dir" </dev/null >>"$logf" 2>&1 &
            ;;
        *) die "unknown server $name" ;;
        esac
        pid=$!
        PIDS+=("$pid")
        if wait_ready "$name" "$pid" "$port"; then
            PORT[$name]=$port
            PID[$name]=$pid
            log "$name up on 127.0.0.1:$port (pid $pid)"
            return 0
        fi
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        log "$name failed to start (attempt $attempt); log tail:"
        tail -n 20 "$logf" >&2 || true
    done
    die "$name did not start"
}

# --- 3. servers ----------------------------------------------------------------
SERVERS=(concord redis-nopersist redis-always concord-tls redis-tls concord-acl)
for s in "${SERVERS[@]}"; do
    start "$s"
done
# The ACL row's user: its keys by pattern, its commands by category.
[[ $(redis-cli -h 127.0.0.1 -p "${PORT[concord-acl]}" ACL SETUSER bench on '>bench-pass' \
    '~key:*' '~counter:*' '~load.sh:*' +@string +@connection +config\|get) == OK ]] ||
    die "cannot create the ACL benchmark user"
REDIS_VERSION=$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')
BENCH_VERSION=$(redis-benchmark --version | awk '{print $2}')

# CPU seconds (user+system) a process has used so far, from /proc.
cpu_seconds() {
    local tck
    tck=$(getconf CLK_TCK)
    awk -v t="$tck" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / t }' "/proc/$1/stat"
}

# --- 4. benchmark, in alternation -----------------------------------------------
RESULTS=$WORK/results
mkdir -p "$RESULTS"
: >"$RESULTS/cpu.tsv"
for ((round = 1; round <= ROUNDS; round++)); do
    for workload in P1 P$PIPELINE; do
        if [[ $workload == P1 ]]; then
            n=$REQUESTS
            extra=()
        else
            n=$PIPE_REQUESTS
            extra=(-P "$PIPELINE")
        fi
        for s in "${SERVERS[@]}"; do
            out=$RESULTS/$round.$workload.$s.csv
            err=$RESULTS/$round.$workload.$s.err
            kill -0 "${PID[$s]}" 2>/dev/null || die "$s (pid ${PID[$s]}) has exited; log tail: $(tail -n 20 "$WORK/$s.log")"
            log "round $round/$ROUNDS $workload $s: -c $CLIENTS -n $n ${extra[*]}"
            cpu_before=$(cpu_seconds "${PID[$s]}")
            t0=$(date +%s.%N)
            rc=0
            # In the background and waited for, so that a signal reaches the trap at once.
            # shellcheck disable=SC2086
            timeout --kill-after=10 "$BENCH_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "${PORT[$s]}" \
                ${TLS_ARGS[$s]:-} ${AUTH_ARGS[$s]:-} \
                -c "$CLIENTS" -n "$n" -r 100000 -t set,get,incr --csv "${extra[@]}" \
                </dev/null >"$out" 2>"$err" &
            BENCH_PID=$!
            wait "$BENCH_PID" || rc=$?
            BENCH_PID=
            t1=$(date +%s.%N)
            cpu_after=$(cpu_seconds "${PID[$s]}")
            if ((rc != 0)); then
                cat "$err" >&2
                die "redis-benchmark against $s exited with $rc (124 = timed out after ${BENCH_TIMEOUT}s)"
            fi
            # redis-benchmark exits 0 even when the server answers with errors.
            if grep -qiE 'error|refused|reset' "$err"; then
                head -n 20 "$err" >&2
                die "redis-benchmark against $s reported errors"
            fi
            printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$workload" "$s" \
                "$(awk -v a="$cpu_before" -v b="$cpu_after" 'BEGIN{printf "%.2f", b-a}')" \
                "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')" >>"$RESULTS/cpu.tsv"
            sed 's/^/    /' "$out" >&2
        done
    done
done

# --- 5. report -------------------------------------------------------------------
report_args=(
    --results "$RESULTS" --rounds "$ROUNDS" --pipeline "$PIPELINE"
    --requests "$REQUESTS" --pipeline-requests "$PIPE_REQUESTS" --clients "$CLIENTS"
    --machine "$(nproc) cores, Linux $(uname -r)"
    --redis-version "$REDIS_VERSION (redis-benchmark $BENCH_VERSION)"
    --commit "$COMMIT" --date "$(date -u '+%Y-%m-%d %H:%M UTC')"
)
if [[ -n "${BENCH_OUT:-}" ]]; then
    report_args+=(--out "$BENCH_OUT")
fi
python3 "$ROOT/bench/report.py" "${report_args[@]}"
