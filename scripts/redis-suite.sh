#!/usr/bin/env bash
# Runs Redis's own test suite (Redis 7.0.15, from Debian's source package)
# against concord and prints the [ok]/[err] counts per unit. Two modes:
#
#   scripts/redis-suite.sh                       # external mode, every unit of the compatibility target
#   scripts/redis-suite.sh unit/type/list ...    # external mode, chosen units
#   scripts/redis-suite.sh --spawn               # spawn mode: unit/acl unit/acl-v2 unit/auth
#   scripts/redis-suite.sh --spawn unit/auth ... # spawn mode, chosen units
#
# External mode builds target/release/concord and runs each unit with
# --host/--port against a fresh `concord dev` cluster, once through the
# leader and once through a follower (a new cluster for each). The suite skips everything
# tagged external:skip there, and cannot start servers of its own.
#
# Spawn mode runs the suite as Redis's CI does, starting a server per
# start_server block, for the units that need their own configuration
# (requirepass, aclfile, `user` directives...). It runs each unit twice
# from two copies of the suite under target/redis-suite/spawn/: once with
# src/redis-server a link to the real redis-server (Debian's 7.0.x, the
# baseline; REDIS_SERVER to choose another, SPAWN_BASELINE=0 to skip it),
# once with src/redis-server a wrapper (Python, written below) that
# translates the harness's config file into `concord serve` flags:
#   port -> --listen BIND:PORT, peer port PORT+10000 (the harness checks
#   that one is free too); bind (one address; optional `-addr`s dropped);
#   dir -> --data-dir DIR/concord-data, and the base of a relative aclfile;
#   requirepass, aclfile, protected-mode, maxclients -> the same flags;
#   `user` lines -> an ACL file DIR/concord-config-users.acl passed as
#   --aclfile (so, unlike Redis, ACL SAVE/LOAD work on such a server);
#   acl-pubsub-default resetchannels -> nothing (concord's behaviour);
#   any other value of it stops the server from starting;
#   persistence, logging, pidfile, daemonize, databases, unixsocket and a
#   few more Redis-only mechanics -> ignored, each logged (list IGNORED);
#   everything else -> CONFIG SET before the wrapper prints "Ready to
#   accept connections"; if concord refuses it the server is stopped, so
#   the block's tests fail instead of running against a server that is
#   not configured as they asked.
# The wrapper prints the " PID: <pid>" and "Ready to accept" lines the
# harness waits for in the server's stdout, and SIGTERM to that pid stops
# the server. SPAWN_NODES=1 (default) execs one `concord serve`, a one-node
# cluster; SPAWN_NODES=3 makes the wrapper supervise a three-node cluster
# whose node 1 takes the harness's port, and runs each unit twice, node 1
# made leader then follower (RAFT.TRANSFER) before "Ready". The suite's
# client reads without a timeout, so a test whose reply never comes would
# stop the unit: after SPAWN_HANG_TIMEOUT seconds without progress
# (default 60) the test in progress is counted as failed, listed as
# [hang], and the unit runs again with it skipped. Spawn mode does
# not build: it uses target/debug/concord (`cargo build` first) or
# CONCORD_BIN. It needs redis-server, redis-cli and redis-benchmark
# (packages redis-server and redis-tools, installed as root if missing).
#
# The suite is fetched on demand into target/redis-suite (never committed;
# BSD-licensed at this version). Needs root the first time, to add a deb-src
# entry and install tcl if missing. Environment: SUITE_TIMEOUT (seconds per
# unit, default 600), SUITE_BASEPORT (default 21111). Each unit's full output stays in target/redis-suite/logs;
# in spawn mode each server's stdout, stderr and data directory stay in
# target/redis-suite/spawn/*/tests/tmp until the next run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SUITE_DIR=$ROOT/target/redis-suite
REDIS_VERSION=7.0.15
TIMEOUT=${SUITE_TIMEOUT:-600}
# Where the suite's own ports start (its test server takes one 32 below):
# another run of the suite on this machine needs another SUITE_BASEPORT.
BASEPORT=${SUITE_BASEPORT:-21111}
# Seconds without progress after which a test counts as hung (external mode
# too; spawn mode reads SPAWN_HANG_TIMEOUT).
HANG_TIMEOUT=${SUITE_HANG_TIMEOUT:-60}
MODE=external
if [[ ${1:-} == --spawn ]]; then
    MODE=spawn
    shift
fi
UNITS=("$@")
if ((${#UNITS[@]} == 0)) && [[ $MODE == spawn ]]; then
    UNITS=(unit/acl unit/acl-v2 unit/auth)
elif ((${#UNITS[@]} == 0)); then
    UNITS=(unit/type/string unit/type/incr unit/expire unit/keyspace unit/type/hash
        unit/type/set unit/type/zset unit/type/list unit/pubsub unit/multi
        unit/scripting unit/info-command
        unit/bitfield unit/bitops unit/dump unit/functions unit/geo unit/hyperloglog
        unit/introspection unit/introspection-2 unit/lazyfree unit/other unit/pause
        unit/slowlog unit/sort unit/tracking
        unit/type/list-2 unit/type/list-3 unit/type/stream unit/type/stream-cgroups
        unit/scan unit/protocol unit/quit unit/pubsubshard unit/info)
fi
TAGS="-needs:repl -needs:debug -needs:save -needs:config-resetstat -needs:reset -needs:pfdebug -needs:latency -slow"

log() { printf '[redis-suite] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- spawn mode --------------------------------------------------------------
# The redis-server stand-in (see the header). Written into each concord
# tree as src/redis-server with @CONCORD_BIN@ filled in.
write_wrapper() {
    cat >"$1" <<'PYEOF'
#!/usr/bin/env python3
# redis-server stand-in that runs concord, written by scripts/redis-suite.sh
# (--spawn). Redis's test harness starts `src/redis-server <conffile>` (or
# `src/redis-server --directive value ...`), waits for " PID: <pid>" and
# then "Ready to accept" in the server's stdout, PINGs the port, and stops
# the server with SIGTERM to that pid. This translates the configuration
# into `concord serve` flags for a one-node cluster (SPAWN_NODES=1, the
# process execs concord and keeps the pid) or a three-node cluster
# (SPAWN_NODES=3: this process supervises the nodes; clients reach node 1,
# made leader or follower as SPAWN_THROUGH says).
#
# Every directive is either translated, applied with CONFIG SET before
# "Ready to accept" is printed (concord's parameter table accepts or
# refuses it), matched by concord's fixed behaviour, or on the IGNORED list
# below (Redis mechanics these units do not exercise); each is logged. A
# directive concord refuses stops the server: the tests of that
# start_server block then fail rather than run against a server that is
# not configured as they asked.
import os
import shlex
import signal
import socket
import sys
import time

CONCORD = "@CONCORD_BIN@"
NODES = int(os.environ.get("SPAWN_NODES", "1"))
THROUGH = os.environ.get("SPAWN_THROUGH", "leader")

# Redis mechanics with no concord counterpart that the acl/auth units do
# not test. Persistence is the raft log (every write is fsync'd there, a
# restart recovers it, as `save` gives Redis on SIGTERM); logging goes to
# stderr; the sixteen databases are fixed (`databases` answers 16); there is
# no unix socket (a test that connects through one fails).
IGNORED = {
    "always-show-logo", "daemonize", "pidfile", "logfile", "loglevel",
    "databases", "latency-monitor-threshold", "repl-diskless-sync-delay",
    "save", "rdbcompression", "dbfilename", "slave-serve-stale-data",
    "appendonly", "appendfsync", "no-appendfsync-on-rewrite",
    "activerehashing", "enable-protected-configs", "enable-debug-command",
    "enable-module-command", "propagation-error-behavior", "unixsocket",
    "timeout",
}


def say(msg):
    sys.stdout.write(msg + "\n")
    sys.stdout.flush()


class RespError(str):
    pass


class Conn:
    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self.read()

    def read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.file.read(n + 2)[:-2].decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ConnectionError("unexpected reply %r" % line)

    def close(self):
        self.sock.close()


def parse_config(argv):
    """Redis's order: the file's directives, then `--name args` pairs."""
    directives = []
    if argv and not argv[0].startswith("--"):
        with open(argv.pop(0)) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    words = shlex.split(line)
                    directives.append((words[0].lower(), words[1:]))
    name = None
    for arg in argv:
        if arg.startswith("--"):
            name = arg[2:].lower()
            directives.append((name, []))
        elif name is None:
            raise SystemExit("bad argument %r" % arg)
        else:
            directives[-1][1].append(arg)
    return directives


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but is not reaped yet is a zombie.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def main():
    # The harness waits for this line; print it before anything can fail,
    # so a refused configuration shows up as a server that never answers.
    say("concord standing in for redis-server, PID: %d" % os.getpid())
    directives = parse_config(sys.argv[1:])
    last = {}
    users = []
    for name, args in directives:
        if name == "user":
            users.append(" ".join(args))
        else:
            last[name] = args
    port = int(last.pop("port", ["6379"])[0])
    if port == 0:
        raise SystemExit("port 0 (no TCP listener) cannot be honoured")
    binds = last.pop("bind", ["*", "-::*"])
    required = [b for b in binds if not b.startswith("-")]
    if len(required) != 1:
        raise SystemExit("bind %s: concord listens on one address" % " ".join(binds))
    host = {"*": "0.0.0.0"}.get(required[0], required[0])
    for b in binds:
        if b.startswith("-"):
            say("# bind: optional address %s not bound" % b[1:])
    data = os.path.abspath((last.pop("dir", ["."]) or ["."])[0])
    flags = []
    # Only the configuration given here reaches concord: no CONCORD_*
    # setting is inherited (CONCORD_LOG aside).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CONCORD_") or k == "CONCORD_LOG"}
    env.setdefault("CONCORD_LOG", "info,slog=warn")
    password = None
    if "requirepass" in last:
        # Through the environment, to keep it out of ps and the log.
        password = " ".join(last.pop("requirepass"))
        env["CONCORD_REQUIREPASS"] = password
    if "aclfile" in last:
        if users:
            raise SystemExit("Configuring Redis with users defined in redis.conf "
                             "and at the same setting an ACL file path is invalid.")
        aclfile = " ".join(last.pop("aclfile"))
        flags += ["--aclfile", os.path.join(data, aclfile)]
    elif users:
        # concord takes users from an ACL file only: write the `user`
        # directives to one (it seeds a new cluster, as Redis loads them).
        aclfile = os.path.join(data, "concord-config-users.acl")
        os.makedirs(data, exist_ok=True)
        with open(aclfile, "w") as f:
            f.write("".join("user %s\n" % u for u in users))
        flags += ["--aclfile", aclfile]
        say("# user directives written to %s (ACL SAVE and ACL LOAD will use it)" % aclfile)
    if "protected-mode" in last:
        flags += ["--protected-mode", last.pop("protected-mode")[0]]
    if "maxclients" in last:
        flags += ["--max-clients", last.pop("maxclients")[0]]
    pubsub = last.pop("acl-pubsub-default", None)
    if pubsub is not None and pubsub != ["resetchannels"]:
        raise SystemExit("acl-pubsub-default %s: concord has no such parameter; its users "
                         "start with no channels, as resetchannels" % " ".join(pubsub))
    runtime = []
    for name, args in last.items():
        if name in IGNORED:
            say("# ignored: %s %s" % (name, " ".join(args)))
        else:
            runtime.append((name, " ".join(args)))

    # Node 1's peer port is the one the harness checked free beside the
    # client port (port + 10000, where Redis puts its cluster bus); the
    # other nodes take free ports from the kernel.
    if port + 10000 > 65535:
        raise SystemExit("no peer port for client port %d" % port)
    ports, peers = [port], [port + 10000]
    for _ in range(NODES - 1):
        for lst in (ports, peers):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                lst.append(s.getsockname()[1])

    def argv(i):
        a = [CONCORD, "serve", "--node-id", str(i + 1),
             "--listen", "%s:%d" % (host if i == 0 else "127.0.0.1", ports[i]),
             "--peer-listen", "127.0.0.1:%d" % peers[i]]
        if NODES == 1:
            a += ["--data-dir", os.path.join(data, "concord-data")]
        else:
            a += ["--data-dir", os.path.join(data, "concord-node-%d" % (i + 1)),
                  "--initial-cluster",
                  ",".join("%d=127.0.0.1:%d" % (j + 1, peers[j]) for j in range(NODES))]
        return a + flags

    say("# concord: " + " ".join(shlex.quote(a) for a in argv(0)))
    if NODES == 1:
        server = os.getpid()
        if os.fork() == 0:
            # The helper: a grandchild, so that concord never has to reap it.
            if os.fork() == 0:
                code = configure(server, host, port, password, runtime, [server])
                os._exit(code)
            os._exit(0)
        os.wait()
        os.execve(CONCORD, argv(0), env)
    children = []
    for i in range(NODES):
        pid = os.fork()
        if pid == 0:
            import ctypes
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
            os.execve(CONCORD, argv(i), env)
        children.append(pid)

    def stop(*_):
        for c in children:
            try:
                os.kill(c, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for c in children:
            try:
                os.waitpid(c, 0)
            except ChildProcessError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if configure(children[0], host, port, password, runtime, children, ports) != 0:
        stop()
    # Node 1 is the server the harness knows: when it ends (SHUTDOWN), so
    # does the cluster.
    while True:
        pid, status = os.wait()
        if pid == children[0]:
            children.remove(pid)
            stop()


def configure(server, host, port, password, runtime, pids, ports=None):
    """Waits for node 1, puts leadership where asked, applies the runtime
    directives and prints "Ready to accept". On failure, stops the server."""
    connect_host = "127.0.0.1" if host == "0.0.0.0" else host

    def fail(reason):
        say("# cannot start: " + reason)
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass
        # The harness waits for this line once PING has answered; the
        # server is gone, so its tests fail to connect.
        say("# Ready to accept connections: no, the server was stopped")
        return 1

    deadline = time.time() + 60
    conn = None
    while conn is None:
        if not all(alive(p) for p in pids):
            return fail("concord exited (its stderr says why)")
        if time.time() > deadline:
            return fail("no PING answer in 60 s")
        try:
            c = Conn(connect_host, port)
            c.call("PING")
            conn = c
        except OSError:
            time.sleep(0.05)

    def call(*args):
        reply = conn.call(*args)
        if isinstance(reply, RespError) and reply.startswith("NOAUTH") and password is not None:
            conn.call("AUTH", password)
            reply = conn.call(*args)
        return reply

    def raft_info():
        reply = call("INFO", "raft")
        if isinstance(reply, RespError):
            return {}
        return dict(l.split(":", 1) for l in reply.replace("\r", "").split("\n") if ":" in l)

    while True:
        info = raft_info()
        if info.get("raft_leader_id", "0") not in ("", "0"):
            break
        if time.time() > deadline:
            return fail("no leader in 60 s (INFO raft: %r)" % info)
        time.sleep(0.1)
    if len(pids) > 1:
        want_leader = THROUGH == "leader"
        while (info.get("raft_role") == "leader") != want_leader:
            if time.time() > deadline:
                return fail("node 1 did not become %s" % THROUGH)
            target = "1" if want_leader else "2"
            if info.get("raft_leader_id") != target:
                leader = int(info.get("raft_leader_id", "1")) - 1
                lc = Conn("127.0.0.1", ports[leader])
                r = lc.call("RAFT.TRANSFER", target)
                if isinstance(r, RespError) and r.startswith("NOAUTH") and password:
                    lc.call("AUTH", password)
                    r = lc.call("RAFT.TRANSFER", target)
                lc.close()
            time.sleep(0.3)
            info = raft_info()
        say("# node 1 is the %s" % info.get("raft_role"))
    for name, value in runtime:
        reply = call("CONFIG", "SET", name, value)
        if isinstance(reply, RespError):
            return fail("CONFIG SET %s %s: concord answered %s" % (name, value, reply))
        say("# CONFIG SET %s %s: %s" % (name, value, reply))
    conn.close()
    say("Ready to accept connections")
    return 0


if __name__ == "__main__":
    try:
        main()
    except SystemExit as e:
        if isinstance(e.code, str):
            say("# cannot start: " + e.code)
            sys.stderr.write(e.code + "\n")
            sys.exit(1)
        raise
PYEOF
    sed -i "s|@CONCORD_BIN@|$2|" "$1"
    chmod +x "$1"
}

# A copy of the suite whose src/ holds the given redis-server.
make_tree() {
    local tree=$1 server=$2
    rm -rf "$tree"
    mkdir -p "$tree/src"
    cp -a "$SRC/tests" "$SRC/runtest" "$tree/"
    ln -s "$(command -v redis-cli)" "$tree/src/redis-cli"
    ln -s "$(command -v redis-benchmark)" "$tree/src/redis-benchmark"
    if [[ $server == concord ]]; then
        write_wrapper "$tree/src/redis-server" "$CONCORD_BIN"
    else
        ln -s "$server" "$tree/src/redis-server"
    fi
}

run_spawn_mode() {
    CONCORD_BIN=${CONCORD_BIN:-$ROOT/target/debug/concord}
    [[ -x $CONCORD_BIN ]] || die "no $CONCORD_BIN: run cargo build first, or set CONCORD_BIN"
    CONCORD_BIN=$(cd "$(dirname "$CONCORD_BIN")" && pwd)/$(basename "$CONCORD_BIN")
    local nodes=${SPAWN_NODES:-1} baseline=${SPAWN_BASELINE:-1}
    HANG_TIMEOUT=${SPAWN_HANG_TIMEOUT:-60}
    [[ $nodes == 1 || $nodes == 3 ]] || die "SPAWN_NODES is 1 or 3"
    if ! command -v redis-benchmark >/dev/null ||
        { [[ $baseline == 1 && -z ${REDIS_SERVER:-} ]] && ! command -v redis-server >/dev/null; }; then
        [[ $(id -u) == 0 ]] || die "redis-server/redis-benchmark missing and we are not root to install them"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-tools redis-server >/dev/null
        # Debian starts the service it installs; the suite needs no server.
        { systemctl stop redis-server || service redis-server stop; } >/dev/null 2>&1 || true
    fi
    local runs=() labels=()
    if [[ $baseline == 1 ]]; then
        local redis=${REDIS_SERVER:-$(command -v redis-server)}
        make_tree "$SUITE_DIR/spawn/redis" "$redis"
        runs+=(redis:)
        labels+=("$("$redis" --version | sed 's/^Redis server v=\([^ ]*\).*/Redis \1/')")
    fi
    make_tree "$SUITE_DIR/spawn/concord" concord
    if [[ $nodes == 1 ]]; then
        runs+=(concord:leader)
        labels+=("concord, 1 node")
    else
        runs+=(concord:leader concord:follower)
        labels+=("concord, 3 nodes, via leader" "concord, 3 nodes, via follower")
    fi
    mkdir -p "$SUITE_DIR/logs"
    local head="| unit" rule="|---" i
    for i in "${!runs[@]}"; do
        head="$head | ${labels[i]} ok | err"
        rule="$rule|---:|---:"
    done
    printf '%s |\n%s|\n' "$head" "$rule"
    local total_ok=() total_err=() failures=""
    for unit in "${UNITS[@]}"; do
        local row="| $unit"
        for i in "${!runs[@]}"; do
            local kind=${runs[i]%%:*} through=${runs[i]#*:}
            local out=$SUITE_DIR/logs/spawn.$(echo "$unit" | tr / _).$kind${through:+-$nodes-$through}.log
            # A test that waits forever for a reply (the suite's client has
            # no read timeout) would end the unit there. The suite's own
            # --timeout reports which test was in progress; it is counted
            # as failed ([hang]) and the unit runs again without it.
            local hangs=() skip=() plain ok err
            while :; do
                (cd "$SUITE_DIR/spawn/$kind" && SPAWN_NODES=$nodes SPAWN_THROUGH=${through:-leader} \
                    timeout "$TIMEOUT" ./runtest --clients 1 --baseport "$BASEPORT" --durable --ignore-encoding \
                    --ignore-digest --no-latency --tags "$TAGS" --timeout "$HANG_TIMEOUT" --dont-clean \
                    "${skip[@]}" --single "$unit" >"$out" 2>&1) || true
                plain=$(sed 's/\x1b\[[0-9;]*m//g' "$out")
                grep -q '^\[TIMEOUT\]' <<<"$plain" || break
                local name
                name=$(sed -n 's/^.* => (IN PROGRESS) //p' <<<"$plain" | head -n 1)
                if [[ -z $name ]] || printf '%s\n' "${hangs[@]}" | grep -qxF -- "$name"; then
                    hangs+=("stalled outside a test: $(grep ' => ' <<<"$plain" | head -n 1)")
                    break
                fi
                hangs+=("$name")
                skip+=(--skiptest "$name")
                cp "$out" "$out.hang${#hangs[@]}"
            done
            ok=$(grep -c '^\[ok\]' <<<"$plain" || true)
            err=$(grep -cE '^\[(err|exception)\]' <<<"$plain" || true)
            err=$((err + ${#hangs[@]}))
            total_ok[i]=$((${total_ok[i]:-0} + ok))
            total_err[i]=$((${total_err[i]:-0} + err))
            row="$row | $ok | $err"
            if ((err > 0)); then
                failures+=$({
                    grep -E '^\[(err|exception)\]' <<<"$plain" || true
                    if ((${#hangs[@]} > 0)); then printf '[hang]: %s\n' "${hangs[@]}"; fi
                } | sed "s|^|  $unit (${labels[i]}): |")$'\n'
            fi
        done
        printf '%s |\n' "$row"
    done
    local row="| **total**"
    for i in "${!runs[@]}"; do
        row="$row | ${total_ok[i]} | ${total_err[i]}"
    done
    printf '%s |\n' "$row"
    if [[ -n $failures ]]; then
        log "failures (full output in $SUITE_DIR/logs/spawn.*):"
        printf '%s' "$failures" >&2
    fi
}


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

if [[ $MODE == spawn ]]; then
    run_spawn_mode
    exit 0
fi

# --- the cluster -------------------------------------------------------------
log "building target/release/concord"
cargo build --release --bin concord
WORK=$(mktemp -d "${TMPDIR:-/tmp}/concord-suite.XXXXXX")
DEV_PID=
stop_cluster() {
    if [[ -n $DEV_PID ]]; then
        kill -TERM "$DEV_PID" 2>/dev/null || true
        wait "$DEV_PID" 2>/dev/null || true
        DEV_PID=
    fi
    rm -rf "$WORK/dev"
}
cleanup() {
    stop_cluster
    rm -rf "$WORK"
}
trap cleanup EXIT
# A fresh cluster for each run of a unit: what one unit leaves behind (a
# maxmemory a failed test never reset, keys, users) never reaches the next.
start_cluster() {
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
    # The leader answered; the follower may still be starting.
    for _ in $(seq 1 300); do
        [[ $(timeout 2 redis-cli -p "$follower" ping 2>/dev/null) == PONG ]] && break
        sleep 0.1
    done
    log "leader on $leader, follower on $follower"
}

# --- the units -----------------------------------------------------------------
mkdir -p "$SUITE_DIR/logs"
printf '| unit | leader ok | leader err | follower ok | follower err |\n|---|---:|---:|---:|---:|\n'
total_ok=(0 0)
total_err=(0 0)
for unit in "${UNITS[@]}"; do
    row="| $unit"
    i=0
    for through in leader follower; do
        port=
        out=$SUITE_DIR/logs/$(echo "$unit" | tr / _).$through.log
        # A test that waits forever for a reply would end the unit there:
        # the suite's own --timeout names the test in progress, which is
        # counted as failed ([hang]) and skipped in a run on a new cluster.
        hangs=() skip=()
        while :; do
            start_cluster
            port=${!through}
            (cd "$SRC" && timeout "$TIMEOUT" ./runtest --host 127.0.0.1 --port "$port" --baseport "$BASEPORT" \
                --durable --ignore-encoding --ignore-digest --no-latency --tags "$TAGS" \
                --timeout "$HANG_TIMEOUT" "${skip[@]}" --single "$unit" >"$out" 2>&1) || true
            stop_cluster
            # The suite colours its tags: strip the escapes before counting.
            plain=$(sed 's/\x1b\[[0-9;]*m//g' "$out")
            grep -q '^\[TIMEOUT\]' <<<"$plain" || break
            name=$(sed -n 's/^.* => (IN PROGRESS) //p' <<<"$plain" | head -n 1)
            if [[ -z $name ]] || printf '%s\n' "${hangs[@]}" | grep -qxF -- "$name"; then
                hangs+=("stalled outside a test")
                break
            fi
            hangs+=("$name")
            skip+=(--skiptest "$name")
            log "$unit ($through): [hang] $name; again without it"
        done
        ok=$(grep -c '^\[ok\]' <<<"$plain" || true)
        err=$(grep -cE '^\[(err|exception)\]' <<<"$plain" || true)
        err=$((err + ${#hangs[@]}))
        total_ok[i]=$((total_ok[i] + ok))
        total_err[i]=$((total_err[i] + err))
        row="$row | $ok | $err"
        i=$((i + 1))
    done
    printf '%s |\n' "$row"
done
printf '| **total** | %d | %d | %d | %d |\n' "${total_ok[0]}" "${total_err[0]}" "${total_ok[1]}" "${total_err[1]}"
