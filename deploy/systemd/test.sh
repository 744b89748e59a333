#!/usr/bin/env bash
# Checks the systemd unit and its environment file on this machine:
#
#     deploy/systemd/test.sh
#
#  1. `systemd-analyze verify` on concord.service (ExecStart pointed at the
#     built binary, which must exist for verify): no error and no warning
#  2. `systemd-analyze security --offline=yes`: the unit's exposure score
#     is at most 2.0 ("OK"; systemd rates 0 to 10, lower is safer)
#  3. every variable in concord.env is a setting `concord serve` knows
#  4. runs the node as the unit would (its Environment= defaults, then
#     concord.env, with addresses moved to free loopback ports, a one-node
#     --initial-cluster and the data in a temporary directory): it serves
#     AUTH, SET, GET, EVAL, passes `concord health`, and on SIGTERM exits 0
#     within the unit's TimeoutStopSec
#  5. under strace, step 4's system calls are all allowed by the unit's
#     SystemCallFilter (@system-service without @privileged and @resources)
# systemd-analyze comes from Debian's systemd package (installed when
# missing and root; steps 1-2 are skipped with a message otherwise); strace
# likewise for step 5. A concord binary is needed for 1, 3-5: CONCORD_BIN or
# target/release/concord.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
UNIT=$HERE/concord.service
ENVFILE=$HERE/concord.env
START=$(date +%s)
step() { printf '== [%3ss] %s\n' "$(($(date +%s) - START))" "$*"; }
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/concord-systemd-test.XXXXXX")
NODE_PID=
cleanup() {
    [[ -n $NODE_PID ]] && kill "$NODE_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

BIN=${CONCORD_BIN:-$ROOT/target/release/concord}
[[ -x $BIN ]] || fail "no concord binary at $BIN (cargo build --release --bin concord, or set CONCORD_BIN)"
"$BIN" health --help >/dev/null 2>&1 || fail "$BIN has no 'health' subcommand: rebuild it"

install_if_missing() { # COMMAND PACKAGE
    command -v "$1" >/dev/null && return 0
    [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null || return 1
    step "installing $2 (for $1)"
    { apt-get install -y -qq "$2" || { apt-get update -qq && apt-get install -y -qq "$2"; }; } >/dev/null 2>&1
    command -v "$1" >/dev/null
}

# -- 1, 2: systemd-analyze ---------------------------------------------------------
if install_if_missing systemd-analyze systemd; then
    step "systemd-analyze verify concord.service"
    mkdir -p "$WORK/units"
    sed "s#^ExecStart=/usr/local/bin/concord#ExecStart=$BIN#" "$UNIT" >"$WORK/units/concord.service"
    # verify prints the unit's problems as warnings and errors; other units
    # it loads (the host's) are not ours to judge.
    if ! systemd-analyze verify --man=no "$WORK/units/concord.service" >"$WORK/verify.log" 2>&1; then
        cat "$WORK/verify.log" >&2
        fail "systemd-analyze verify failed"
    fi
    if grep -i 'concord' "$WORK/verify.log"; then
        fail "systemd-analyze verify has remarks on concord.service (above)"
    fi
    step "systemd-analyze security --offline=yes concord.service"
    systemd-analyze security --offline=yes --no-pager "$WORK/units/concord.service" >"$WORK/security.log" 2>&1 || true
    score=$(sed -n 's/.*Overall exposure level for concord.service: \([0-9.]*\).*/\1/p' "$WORK/security.log")
    [[ -n $score ]] || { cat "$WORK/security.log" >&2; fail "systemd-analyze security gave no score"; }
    echo "   exposure $score ($(grep -o 'Overall exposure level.*' "$WORK/security.log" | sed 's/.*: //'))"
    awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || { grep '✗' "$WORK/security.log" | head -30 >&2; fail "exposure $score is above 2.0"; }
else
    echo "SKIP: steps 1-2: systemd-analyze is not installed and cannot be installed here"
fi

# -- 3: the environment file names real settings ------------------------------------
step "concord.env: every variable is a concord serve setting"
known=$("$BIN" serve --help | sed -n 's/.*\[env: \(CONCORD_[A-Z_]*\).*/\1/p' | sort -u)
[[ -n $known ]] || fail "concord serve --help lists no [env: ...] names"
count=0
while IFS= read -r line; do
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    [[ $line =~ ^([A-Z_][A-Z0-9_]*)=.*$ ]] || fail "concord.env: not VARIABLE=value: $line"
    grep -qx "${BASH_REMATCH[1]}" <<<"$known" || fail "concord.env: ${BASH_REMATCH[1]} is not a concord serve setting"
    count=$((count + 1))
done <"$ENVFILE"
# The commented-out alternatives must be real settings too.
while IFS= read -r name; do
    grep -qx "$name" <<<"$known" || fail "concord.env: the commented $name is not a concord serve setting"
done < <(sed -n 's/^#\(CONCORD_[A-Z_]*\)=.*/\1/p' "$ENVFILE")
echo "   $count settings, all known"

# -- 4, 5: run the node as the unit would ----------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT=$(free_port) PEER=$(free_port) ADMIN=$(free_port)
mkdir -p "$WORK/data"
chmod 0700 "$WORK/data"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$WORK/peer-secret"
# The unit's Environment= lines, then the file (which wins), then what this
# machine needs instead: loopback ports, one member, a temporary data dir.
{
    sed -n 's/^Environment=//p' "$UNIT"
    grep -Ev '^[[:space:]]*(#|$)' "$ENVFILE"
    cat <<EOF
CONCORD_LISTEN=127.0.0.1:$PORT
CONCORD_ADVERTISE=127.0.0.1:$PORT
CONCORD_PEER_LISTEN=127.0.0.1:$PEER
CONCORD_ADMIN_LISTEN=127.0.0.1:$ADMIN
CONCORD_INITIAL_CLUSTER=1=127.0.0.1:$PEER
CONCORD_DATA_DIR=$WORK/data
CONCORD_PEER_SECRET_FILE=$WORK/peer-secret
EOF
} >"$WORK/env"
PASSWORD=$(sed -n 's/^CONCORD_REQUIREPASS=//p' "$WORK/env" | tail -1)
STOP_TIMEOUT=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s*$/\1/p' "$UNIT")

TRACE=()
if install_if_missing strace strace && strace -f -o /dev/null true 2>/dev/null; then
    TRACE=(strace -f -qq -o "$WORK/strace.log")
else
    echo "SKIP: step 5: strace is not available (or ptrace is not allowed here)"
fi

step "starting the node with the unit's environment${TRACE:+ (under strace)}"
env -i PATH=/usr/bin:/bin $(cat "$WORK/env" | tr '\n' ' ') "${TRACE[@]}" "$BIN" serve >"$WORK/node.log" 2>&1 &
NODE_PID=$!
cli() { REDISCLI_AUTH=$PASSWORD redis-cli -h 127.0.0.1 -p "$PORT" "$@" 2>/dev/null | tr -d '\r'; }
resp() { # a RESP exchange without redis-cli: AUTH then one command
    python3 - "$PORT" "$PASSWORD" "$@" <<'PY'
import socket, sys
port, password, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
def enc(*a):
    return b"*%d\r\n" % len(a) + b"".join(b"$%d\r\n%s\r\n" % (len(x.encode()), x.encode()) for x in a)
s = socket.create_connection(("127.0.0.1", port), timeout=5)
s.sendall(enc("AUTH", password) + enc(*args))
f = s.makefile("rb")
def read():
    line = f.readline().rstrip(b"\r\n")
    if line[:1] == b"$":
        n = int(line[1:])
        return f.read(n + 2)[:-2].decode() if n >= 0 else ""
    return line[1:].decode()
read()
print(read())
PY
}
deadline=$(($(date +%s) + 20))
until [[ $(resp PING 2>/dev/null) == PONG ]]; do
    kill -0 "$NODE_PID" 2>/dev/null || { cat "$WORK/node.log" >&2; fail "the node exited at start"; }
    [[ $(date +%s) -lt $deadline ]] || { tail -20 "$WORK/node.log" >&2; fail "the node did not answer PING within 20 s"; }
    sleep 0.2
done
deadline=$(($(date +%s) + 20))
until [[ $(resp SET unit-test ok) == OK ]]; do
    [[ $(date +%s) -lt $deadline ]] || { tail -20 "$WORK/node.log" >&2; fail "SET did not succeed within 20 s"; }
    sleep 0.2
done
[[ $(resp GET unit-test) == ok ]] || fail "GET after SET"
[[ $(resp EVAL "return redis.call('INCRBY', KEYS[1], ARGV[1])" 1 unit-counter 41) == 41 ]] || fail "EVAL"
[[ $(python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"*1\r\n$4\r\nPING\r\n")
print(s.recv(200).decode().strip())
PY
) == -NOAUTH* ]] || fail "the node answered a client without the password"
"$BIN" health --admin "127.0.0.1:$ADMIN" >/dev/null || fail "concord health on the admin port"
"$BIN" health --ready --admin "127.0.0.1:$ADMIN" >/dev/null || fail "concord health --ready on the admin port"
echo "   AUTH, SET, GET, EVAL, NOAUTH without the password, /health and /ready: ok"

step "SIGTERM: the node must exit 0 within TimeoutStopSec (${STOP_TIMEOUT}s)"
# Under strace the node is strace's child (strace itself holds off fatal
# signals while it traces a program it started, and exits with its status).
target=$NODE_PID
if [[ ${#TRACE[@]} -gt 0 ]]; then
    target=$(pgrep -P "$NODE_PID" | head -1)
    [[ -n $target ]] || fail "no node process under strace"
fi
kill -TERM "$target"
deadline=$(($(date +%s) + STOP_TIMEOUT))
while kill -0 "$NODE_PID" 2>/dev/null; do
    [[ $(date +%s) -lt $deadline ]] || fail "still running ${STOP_TIMEOUT}s after SIGTERM"
    sleep 0.2
done
rc=0
wait "$NODE_PID" || rc=$?
NODE_PID=
[[ $rc -eq 0 ]] || { tail -20 "$WORK/node.log" >&2; fail "exit status $rc after SIGTERM"; }
echo "   exited 0"

if [[ ${#TRACE[@]} -gt 0 ]]; then
    step "system calls against the unit's SystemCallFilter"
    python3 - "$UNIT" "$WORK/strace.log" <<'PY'
import re, subprocess, sys
unit, log = sys.argv[1], sys.argv[2]

def expand(name, seen=None):
    seen = seen if seen is not None else set()
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True, check=True).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if line and not line.startswith("#"):
            calls |= expand(line, seen)
    return calls

allow, deny = set(), set()
for line in open(unit):
    m = re.match(r"SystemCallFilter=(~?)(.*)", line.strip())
    if m:
        names = set().union(*(expand(n) for n in m.group(2).split()))
        (deny if m.group(1) else allow).update(names)
allowed = allow - deny
used = set()
for line in open(log):
    m = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
    if m:
        used.add(m.group(1))
# execve of the binary happens before systemd's filter applies? No: the
# filter is installed before exec, so execve itself must be allowed too.
bad = sorted(used - allowed)
print(f"   {len(used)} distinct system calls used, {len(allowed)} allowed")
if bad:
    print(f"FAIL: system calls the unit's SystemCallFilter forbids: {bad}", file=sys.stderr)
    sys.exit(1)
PY
fi

step "PASS ($(($(date +%s) - START)) s)"
