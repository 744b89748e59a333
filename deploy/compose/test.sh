#!/usr/bin/env bash
# Starts the compose cluster for real and checks it survives a node's loss:
#
#     deploy/compose/test.sh
#
#  1. builds concord:local from target/release/concord (deploy/build-image.sh)
#  2. brings docker-compose.yml up under its own project name, on free
#     127.0.0.1 ports, with fresh secrets in a temporary directory (up.sh)
#  3. waits for every container to be healthy (`concord health`) and the
#     three nodes to name the same leader
#  4. writes through node-1 and reads the writes back through the others
#  5. kills the leader's container (docker kill: SIGKILL, no clean stop) and
#     checks that writes go on through both other nodes
#  6. starts it again and waits until the three nodes converge: equal
#     raft_applied_index (INFO raft) and equal DEBUG DIGEST (READMODE STALE,
#     each node's own state), and the restarted node holds every write
#  7. stops the (new) leader cleanly (docker-compose stop: SIGTERM to the
#     node, PID 1 in its container): it must exit 0 well within the grace
#     period, another node must lead, and after a restart all converge
# Every wait has a deadline; nothing relies on a fixed sleep. Tears the
# project down (docker-compose down -v) on exit, pass or fail. Exits 0 and
# says so when Docker is not available (no daemon, or no compose); any
# failure exits 1.
#
# CONCORD_COMPOSE_GROW=1 adds an 8th step: start node-4 (--join), add it with
# RAFT.MEMBER ADD 4 node-4:7379 on the leader, and check that all four nodes
# count four voters and converge (README.md, "Growing").
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
START=$(date +%s)
step() { printf '== [%3ss] %s\n' "$(($(date +%s) - START))" "$*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# -- prerequisites ------------------------------------------------------------
if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
    echo "SKIP: deploy/compose/test.sh: Docker is not available (no docker client or no daemon)"
    exit 0
fi
if command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
else
    echo "SKIP: deploy/compose/test.sh: neither docker-compose nor 'docker compose' is installed"
    exit 0
fi
if ! command -v redis-cli >/dev/null; then
    step "installing redis-tools (redis-cli)"
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null
    else
        fail "redis-cli is missing; install redis-tools (as root: apt-get install -y redis-tools)"
    fi
fi

# -- the project: its own name, ports and secrets -------------------------------
export COMPOSE_PROJECT_NAME=concord-test-$$
export CONCORD_IMAGE=${CONCORD_IMAGE:-concord:local}
export CONCORD_BIND=127.0.0.1
export CONCORD_SECRETS_DIR
CONCORD_SECRETS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/concord-compose-secrets.XXXXXX")
read -r -a FREE < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(8)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')
export CONCORD_PORT_1=${FREE[0]} CONCORD_PORT_2=${FREE[1]} CONCORD_PORT_3=${FREE[2]} CONCORD_PORT_4=${FREE[3]}
export CONCORD_ADMIN_PORT_1=${FREE[4]} CONCORD_ADMIN_PORT_2=${FREE[5]} CONCORD_ADMIN_PORT_3=${FREE[6]} CONCORD_ADMIN_PORT_4=${FREE[7]}
declare -A PORT=([1]=$CONCORD_PORT_1 [2]=$CONCORD_PORT_2 [3]=$CONCORD_PORT_3 [4]=$CONCORD_PORT_4)

compose() { (cd "$HERE" && "${COMPOSE[@]}" --profile grow "$@"); }
cleanup() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "-- last log lines of each node" >&2
        compose logs --no-color --tail 25 2>&1 | grep -v 'slog: ' | tail -120 >&2 || true
    fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$CONCORD_SECRETS_DIR"
    if [[ $rc -eq 0 ]]; then
        step "PASS ($(($(date +%s) - START)) s)"
    else
        echo "deploy/compose/test.sh FAILED after $(($(date +%s) - START)) s" >&2
    fi
}
trap cleanup EXIT

# cli NODE ARGS...: redis-cli against node NODE's published port.
cli() {
    local node=$1
    shift
    REDISCLI_AUTH=$PASSWORD redis-cli -h 127.0.0.1 -p "${PORT[$node]}" "$@" 2>/dev/null | tr -d '\r'
}
# raft NODE FIELD: a field of INFO raft on node NODE (empty if unreachable).
raft() { cli "$1" INFO raft | awk -F: -v k="raft_$2" '$1 == k { print $2 }'; }
# wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.3 s until it
# succeeds, or fails the test after SECONDS.
wait_for() {
    local limit=$1 what=$2
    shift 2
    local deadline=$(($(date +%s) + limit))
    until "$@"; do
        [[ $(date +%s) -lt $deadline ]] || fail "$what: not within ${limit}s"
        sleep 0.3
    done
}
container() { compose ps -q "node-$1"; }
healthy() {
    [[ $(docker inspect --format '{{.State.Health.Status}}' "$(container "$1")" 2>/dev/null) == healthy ]]
}
all_healthy() {
    local n
    for n in "$@"; do healthy "$n" || return 1; done
}
# one_leader NODES...: every node names the same leader, and it is one of them.
one_leader() {
    local n l first=""
    for n in "$@"; do
        l=$(raft "$n" leader_id)
        [[ -n $l && $l != 0 ]] || return 1
        [[ -z $first || $l == "$first" ]] || return 1
        first=$l
    done
    [[ " $* " == *" $first "* ]] || return 1
    LEADER=$first
}
# converged NODES...: equal applied index and equal DEBUG DIGEST, each read
# from the node's own state (READMODE STALE) on one connection.
converged() {
    local n out applied digest want_applied="" want_digest=""
    for n in "$@"; do
        out=$(printf 'READMODE STALE\nINFO raft\nDEBUG DIGEST\n' | cli "$n")
        applied=$(awk -F: '$1 == "raft_applied_index" { print $2 }' <<<"$out")
        digest=$(tail -n 1 <<<"$out")
        [[ -n $applied && $digest =~ ^[0-9a-f]{40}$|^[0-9a-f]+$ ]] || return 1
        if [[ -z $want_applied ]]; then
            want_applied=$applied want_digest=$digest
        elif [[ $applied != "$want_applied" || $digest != "$want_digest" ]]; then
            return 1
        fi
    done
    CONVERGED="applied index $want_applied, digest $want_digest"
}
# incr NODE KEY TIMES: INCR KEY TIMES times through node NODE, pipelined
# on one connection; every answer must be an integer.
incr() {
    local node=$1 key=$2 times=$3 answers
    answers=$(for _ in $(seq "$times"); do echo "INCR $key"; done | cli "$node" | grep -c '^[0-9][0-9]*$' || true)
    [[ $answers == "$times" ]] || fail "INCR $key through node-$node: $answers of $times answered with a number"
}
expect() {
    local node=$1 key=$2 want=$3 got
    got=$(cli "$node" GET "$key")
    [[ $got == "$want" ]] || fail "GET $key through node-$node: '$got', expected '$want'"
}

# -- 1. the image ---------------------------------------------------------------
step "building $CONCORD_IMAGE"
"$ROOT/deploy/build-image.sh" >"$CONCORD_SECRETS_DIR/build.log" 2>&1 \
    || { tail -30 "$CONCORD_SECRETS_DIR/build.log" >&2; fail "deploy/build-image.sh failed"; }
docker run --rm --entrypoint /usr/local/bin/concord "$CONCORD_IMAGE" health --help >/dev/null 2>&1 \
    || fail "the image's concord has no 'health' subcommand: its HEALTHCHECK cannot pass"

# -- 2. up ------------------------------------------------------------------------
step "up: project $COMPOSE_PROJECT_NAME, clients on 127.0.0.1:${PORT[1]},${PORT[2]},${PORT[3]}"
"$HERE/up.sh" >"$CONCORD_SECRETS_DIR/up.log" 2>&1 \
    || { cat "$CONCORD_SECRETS_DIR/up.log" >&2; fail "up.sh failed"; }
PASSWORD=$(cat "$CONCORD_SECRETS_DIR/password")
[[ $(docker inspect --format '{{.Config.User}}' "$(container 1)") == 10001:10001 ]] \
    || fail "node-1 does not run as uid 10001"

# -- 3. healthy, one leader -------------------------------------------------------
step "waiting for the containers to be healthy and a leader"
wait_for 90 "all three containers healthy" all_healthy 1 2 3
wait_for 30 "one leader named by all three nodes" one_leader 1 2 3
step "leader: node-$LEADER"
[[ $(cli 1 PING) == PONG ]] || fail "PING through node-1"
[[ $(redis-cli -h 127.0.0.1 -p "${PORT[1]}" PING 2>&1 | tr -d '\r') == NOAUTH* ]] \
    || fail "node-1 answered a client without the password"

# -- 4. writes through node-1 -----------------------------------------------------
step "writing through node-1"
[[ $(cli 1 SET greeting hello) == OK ]] || fail "SET through node-1"
incr 1 counter 200
expect 2 greeting hello
expect 3 counter 200

# -- 5. kill the leader, write on -------------------------------------------------
victim=$LEADER
mapfile -t others < <(printf '%s\n' 1 2 3 | grep -vx "$victim")
step "docker kill node-$victim (the leader)"
docker kill "$(container "$victim")" >/dev/null
[[ $(docker inspect --format '{{.State.Running}}' "$(container "$victim")") == false ]] \
    || fail "node-$victim still running after docker kill"
wait_for 30 "a new leader among node-${others[0]} and node-${others[1]}" one_leader "${others[@]}"
step "new leader: node-$LEADER; writing through node-${others[0]} and node-${others[1]}"
incr "${others[0]}" counter 100
incr "${others[1]}" counter 100
[[ $(cli "${others[1]}" SET written-while-down "node-$victim") == OK ]] || fail "SET while node-$victim is down"
expect "${others[0]}" counter 400
expect "${others[1]}" written-while-down "node-$victim"

# -- 6. restart, converge ---------------------------------------------------------
[[ $(docker inspect --format '{{.State.Running}}' "$(container "$victim")") == false ]] \
    || fail "node-$victim was restarted behind the test's back (restart policy)"
step "starting node-$victim again"
compose start "node-$victim" >/dev/null 2>&1 || fail "docker-compose start node-$victim"
wait_for 90 "node-$victim healthy again" healthy "$victim"
wait_for 60 "the three nodes converged" converged 1 2 3
step "converged: $CONVERGED"
wait_for 30 "one leader named by all three nodes" one_leader 1 2 3
[[ $(printf 'READMODE STALE\nGET counter\n' | cli "$victim" | tail -n 1) == 400 ]] \
    || fail "node-$victim's own state lacks the writes made while it was down"
expect "$victim" written-while-down "node-$victim"

# -- 7. a clean stop of the leader ------------------------------------------------
victim=$LEADER
mapfile -t others < <(printf '%s\n' 1 2 3 | grep -vx "$victim")
step "docker-compose stop node-$victim (the leader; SIGTERM as PID 1)"
stop_start=$(date +%s)
compose stop -t 30 "node-$victim" >/dev/null 2>&1 || fail "docker-compose stop node-$victim"
took=$(($(date +%s) - stop_start))
code=$(docker inspect --format '{{.State.ExitCode}}' "$(container "$victim")")
[[ $code == 0 ]] || fail "node-$victim exited with $code on SIGTERM, expected 0"
[[ $took -lt 30 ]] || fail "node-$victim took ${took}s to stop: killed at the grace period?"
wait_for 30 "a new leader among node-${others[0]} and node-${others[1]}" one_leader "${others[@]}"
step "stopped in ${took}s with exit 0; node-$LEADER leads"
incr "${others[0]}" counter 10
compose start "node-$victim" >/dev/null 2>&1 || fail "docker-compose start node-$victim"
wait_for 90 "node-$victim healthy again" healthy "$victim"
wait_for 60 "the three nodes converged" converged 1 2 3
step "converged: $CONVERGED"
expect "$victim" counter 410

# -- 8. (optional) grow to four -----------------------------------------------------
if [[ ${CONCORD_COMPOSE_GROW:-0} == 1 ]]; then
    step "growing: node-4 with --join, RAFT.MEMBER ADD 4 node-4:7379 on node-$LEADER"
    compose up -d node-4 >/dev/null 2>&1 || fail "docker-compose up -d node-4"
    wait_for 60 "node-4 healthy" healthy 4
    [[ $(cli "$LEADER" RAFT.MEMBER ADD 4 node-4:7379) == OK ]] || fail "RAFT.MEMBER ADD 4"
    four_voters() {
        local n
        for n in 1 2 3 4; do [[ $(raft "$n" voters) == 4 ]] || return 1; done
    }
    wait_for 30 "every node, node-4 included, counting 4 voters" four_voters
    incr 4 counter 10
    wait_for 60 "the four nodes converged" converged 1 2 3 4
    step "converged: $CONVERGED"
fi
