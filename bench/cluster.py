#!/usr/bin/env python3
"""Cluster benchmark: a 3-node concord cluster against Redis on this machine.

    bench/cluster.py               # 3 rounds, 100k requests per test
    BENCH_QUICK=1 bench/cluster.py # 1 round, 20k requests, 1 failover

Runs side by side, for the whole benchmark:
  concord 3 nodes   every write is fsync'd on a majority before it is acknowledged
  redis-nopersist   redis-server --save '' --appendonly no
  redis-always      redis-server --appendonly yes --appendfsync always

Each round runs redis-benchmark -c 50 (SET and GET, unpipelined) against the
concord leader, a concord follower (writes relayed to the leader, reads by
ReadIndex), and both Redis servers, back to back so noise falls on all alike;
the table shows medians over rounds, with the CPU time the server processes
used per request (all three nodes for concord, from /proc), the CPU time
redis-benchmark itself used per request (the load generator shares the
cores), the CPU ceiling those two imply, and for SET
through the leader the same split by node and thread, plus how many SETs
one log entry and one WAL fdatasync of each node carried (INFO raft and
persistence). Then it measures failover: kill -9 the
leader, and time until a SET through a survivor succeeds (repeated, with the
killed node restarted and caught up in between).

Environment: BENCH_ROUNDS, BENCH_REQUESTS, BENCH_CLIENTS, BENCH_FAILOVERS,
BENCH_OUT (also write the markdown report there), TMPDIR.
"""

import csv
import io
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "20000" if QUICK else "100000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))
FAILOVERS = int(os.environ.get("BENCH_FAILOVERS", "1" if QUICK else "3"))
DEADLINE = 30.0


def log(msg):
    print(f"[cluster.py] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(f"error: {msg}")
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_tools():
    if all(shutil.which(t) for t in ("redis-server", "redis-benchmark", "redis-cli")):
        return
    if os.geteuid() != 0:
        die("redis-server/redis-tools are missing and we are not root to install them")
    log("installing redis-server and redis-tools")
    subprocess.run(["apt-get", "update"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "redis-server", "redis-tools"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def cli(port, *args, timeout=2.0):
    try:
        out = subprocess.run(
            ["redis-cli", "-p", str(port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return out.stdout.strip()
    except subprocess.TimeoutExpired:
        return ""


def wait_until(what, check, deadline=DEADLINE):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    die(f"timed out waiting for {what}")


def info_field(port, section, field):
    for line in cli(port, "INFO", section).splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


def raft_field(port, field):
    return info_field(port, "raft", field)


def wal_fsyncs(port):
    return int(info_field(port, "persistence", "concord_wal_fsyncs") or 0)


class Concord:
    def __init__(self, binary, workdir):
        self.binary = binary
        self.workdir = workdir
        self.ids = [1, 2, 3]
        self.ports = {i: free_port() for i in self.ids}
        self.peers = {i: free_port() for i in self.ids}
        self.procs = {}
        self.tls_ports = {i: free_port() for i in self.ids}
        self.cluster = ",".join(f"{i}=127.0.0.1:{self.peers[i]}" for i in self.ids)
        # Clients may also come over TLS (the TLS rows); no client certificate.
        self.certs = workdir / "certs"
        subprocess.run([str(Path(__file__).resolve().parent.parent / "scripts/make-certs.sh"),
                        str(self.certs), *map(str, self.ids)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self, i):
        log_file = open(self.workdir / f"node-{i}.log", "ab")
        self.procs[i] = subprocess.Popen(
            [
                self.binary, "serve",
                "--node-id", str(i),
                "--listen", f"127.0.0.1:{self.ports[i]}",
                "--peer-listen", f"127.0.0.1:{self.peers[i]}",
                "--data-dir", str(self.workdir / f"node-{i}"),
                "--initial-cluster", self.cluster,
                "--tls-listen", f"127.0.0.1:{self.tls_ports[i]}",
                "--tls-cert-file", str(self.certs / f"node-{i}.pem"),
                "--tls-key-file", str(self.certs / f"node-{i}.key"),
                "--tls-auth-clients", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
            env={**os.environ, "CONCORD_LOG": os.environ.get("CONCORD_LOG", "warn")},
        )
        wait_until(f"node {i} to answer PING", lambda: cli(self.ports[i], "PING") == "PONG")

    def leader(self, among=None):
        among = among or [i for i in self.ids if i in self.procs]

        def agreed():
            leaders = {raft_field(self.ports[i], "raft_leader_id") for i in among}
            if len(leaders) == 1:
                leader = leaders.pop()
                if leader and leader != "0" and int(leader) in among:
                    return int(leader)
            return None

        return wait_until("a leader", agreed)

    def terminate(self, i):
        """SIGTERM, as an orchestrator stops a node: a leader hands over first."""
        proc = self.procs.pop(i)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            die(f"node {i} did not stop within 30 s of SIGTERM")

    def kill9(self, i):
        proc = self.procs.pop(i)
        proc.kill()
        proc.wait()

    def converged(self):
        def same():
            applied = {raft_field(self.ports[i], "raft_applied_index") for i in self.procs}
            return len(applied) == 1 and None not in applied

        wait_until("the nodes to converge", same, deadline=60)

    def stop(self):
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def start_redis(workdir, name, extra):
    port = free_port()
    data = workdir / name
    data.mkdir()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
         "--dir", str(data), "--save", "", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(f"{name} to answer PING", lambda: cli(port, "PING") == "PONG")
    return port, proc


def start_redis_tls(workdir, certs):
    """Redis with appendfsync always, clients over TLS only."""
    port = free_port()
    data = workdir / "redis-always-tls"
    data.mkdir()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--daemonize", "no", "--dir", str(data), "--save", "", "--appendonly", "yes",
         "--appendfsync", "always", "--tls-cert-file", str(certs / "node-1.pem"),
         "--tls-key-file", str(certs / "node-1.key"), "--tls-auth-clients", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until("redis over TLS to answer PING",
               lambda: cli(port, "--tls", "--cacert", str(certs / "ca.pem"), "PING") == "PONG")
    return port, proc


def redis_benchmark(port, args, requests=REQUESTS, clients=CLIENTS):
    """{test: {column: value}} from `redis-benchmark --csv` with `args`
    (`-t set,get`, or a command to run)."""
    out = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients),
         "-n", str(requests), "-r", "100000", "--csv", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0 or "ERR" in out.stderr:
        die(f"redis-benchmark {' '.join(args)} against {port} failed: {out.stderr.strip()[:300]}")
    rows = list(csv.reader(io.StringIO(out.stdout)))
    header, results = rows[0], {}
    for row in rows[1:]:
        results[row[0]] = {h: float(v) for h, v in zip(header[1:], row[1:])}
    return results


def client_cpu_seconds():
    """User + system CPU seconds of the children waited for so far: every
    redis-benchmark run once it has returned."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stat_cpu_seconds(stat_path):
    """User + system CPU seconds from a /proc .../stat file."""
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """User + system CPU seconds the processes have used so far."""
    return sum(stat_cpu_seconds(f"/proc/{pid}/stat") for pid in pids)


def thread_cpu_seconds(pid):
    """{thread name: user + system CPU seconds} of one process's threads."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            secs = stat_cpu_seconds(f"/proc/{pid}/task/{task}/stat")
            with open(f"/proc/{pid}/task/{task}/comm") as f:
                name = f.read().strip()
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        out[name] = out.get(name, 0) + secs
    return out


def build_release():
    """Builds target/release/concord; returns its path and HEAD's short hash."""
    log("building target/release/concord")
    subprocess.run(["cargo", "build", "--release", "--bin", "concord"], cwd=ROOT, check=True)
    binary = str(ROOT / "target" / "release" / "concord")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"
    return binary, commit


def failover_ms(concord):
    leader = concord.leader()
    survivor = next(i for i in concord.ids if i != leader)
    port = concord.ports[survivor]
    concord.kill9(leader)
    started = time.monotonic()
    wait_until(
        "a write through a survivor",
        lambda: cli(port, "SET", "failover", str(started), timeout=1.0) == "OK",
        deadline=60,
    )
    elapsed = (time.monotonic() - started) * 1000
    concord.start(leader)
    concord.leader()
    concord.converged()
    return elapsed


class SteadyWriter(threading.Thread):
    """SETs one after another through the nodes, moving to the next node when
    one fails or closes the connection (as a client with a node list does);
    records when each write was acknowledged."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.ports = list(ports)
        self.acks = []
        self.errors = 0
        self.stopping = threading.Event()

    def run(self):
        sock, at, n = None, 0, 0
        while not self.stopping.is_set():
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.ports[at]), timeout=2)
                    reader = sock.makefile("rb")
                n += 1
                key, value = b"rolling", str(n).encode()
                sock.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                             % (len(key), key, len(value), value))
                line = reader.readline()
                if line != b"+OK\r\n":
                    raise OSError(line.decode(errors="replace").strip() or "closed")
                self.acks.append(time.monotonic())
            except OSError:
                self.errors += 1
                if sock is not None:
                    sock.close()
                sock = None
                at = (at + 1) % len(self.ports)
                time.sleep(0.005)
        if sock is not None:
            sock.close()

    def longest_gap_ms(self, since):
        times = [since] + self.acks
        return max((b - a) * 1000 for a, b in zip(times, times[1:]))


def rolling_restart_gap(concord):
    """Restarts every node in turn (SIGTERM, start, wait until it caught up)
    under a steady writer; the longest time without an acknowledged write."""
    concord.leader()
    writer = SteadyWriter(concord.ports[i] for i in concord.ids)
    started = time.monotonic()
    writer.start()
    wait_until("the first acknowledged write", lambda: writer.acks or None)
    for i in concord.ids:
        concord.terminate(i)
        concord.start(i)
        leader = concord.leader()
        # Caught up with what the leader had applied when it came back (the
        # writer goes on, so the indexes are never equal at one instant).
        target = int(raft_field(concord.ports[leader], "raft_applied_index") or 0)
        wait_until(
            f"node {i} to catch up",
            lambda: int(raft_field(concord.ports[i], "raft_applied_index") or 0) >= target or None,
            deadline=60,
        )
    writer.stopping.set()
    writer.join()
    return writer.longest_gap_ms(started), len(writer.acks), writer.errors


def main():
    ensure_tools()
    binary, commit = build_release()
    workdir = Path(tempfile.mkdtemp(prefix="concord-cluster-bench-"))
    concord = Concord(binary, workdir)
    redis_procs = []
    try:
        for i in concord.ids:
            concord.start(i)
        leader = concord.leader()
        follower = next(i for i in concord.ids if i != leader)
        nopersist_port, p1 = start_redis(workdir, "redis-nopersist", ["--appendonly", "no"])
        always_port, p2 = start_redis(workdir, "redis-always", ["--appendonly", "yes", "--appendfsync", "always"])
        certs = concord.certs
        tls_port, p3 = start_redis_tls(workdir, certs)
        redis_procs = [p1, p2, p3]
        # The ACL row's user: key patterns and category rules, so every
        # command pays the permission check.
        if cli(concord.ports[leader], "ACL", "SETUSER", "bench", "on", ">bench-pass", "~key:*",
               "~counter:*", "+@string", "+@connection", "+config|get") != "OK":
            die("cannot create the ACL benchmark user")
        tls = ["--tls", "--cacert", str(certs / "ca.pem")]
        targets = {
            "concord leader": concord.ports[leader],
            "concord follower": concord.ports[follower],
            "redis no-persist": nopersist_port,
            "redis always": always_port,
            "concord leader TLS": concord.tls_ports[leader],
            "redis always TLS": tls_port,
            "concord leader ACL user": concord.ports[leader],
        }
        bench_args = {
            "concord leader TLS": tls,
            "redis always TLS": tls,
            "concord leader ACL user": ["--user", "bench", "-a", "bench-pass"],
        }
        # Whose CPU a target's requests cost: all three nodes for concord.
        servers = {
            "concord leader": [p.pid for p in concord.procs.values()],
            "concord follower": [p.pid for p in concord.procs.values()],
            "redis no-persist": [p1.pid],
            "redis always": [p2.pid],
            "concord leader TLS": [p.pid for p in concord.procs.values()],
            "redis always TLS": [p3.pid],
            "concord leader ACL user": [p.pid for p in concord.procs.values()],
        }
        samples = {name: {"SET": [], "GET": []} for name in targets}
        # SET through the leader, per node and thread: where the cluster's
        # CPU goes.
        roles = {leader: "leader"}
        for n, i in enumerate(i for i in concord.ids if i != leader):
            roles[i] = f"follower {n + 1}"
        threads = {}
        # SETs per fdatasync on each node, and per log entry: how well the
        # write path batches.
        per_fsync = {}
        per_entry = []
        for r in range(ROUNDS):
            for name, port in targets.items():
                log(f"round {r + 1}/{ROUNDS}: {name}")
                for test in ("set", "get"):
                    if (name, test) == ("concord leader", "set"):
                        fsyncs = {i: wal_fsyncs(concord.ports[i]) for i in concord.ids}
                        last_index = int(raft_field(concord.ports[leader], "raft_last_index") or 0)
                    before = cpu_seconds(servers[name])
                    client_before = client_cpu_seconds()
                    per_thread = {i: thread_cpu_seconds(p.pid) for i, p in concord.procs.items()}
                    for label, cols in redis_benchmark(port, [*bench_args.get(name, []), "-t", test]).items():
                        used = cpu_seconds(servers[name]) - before
                        cols["cpu_us"] = used * 1e6 / REQUESTS
                        cols["client_us"] = (client_cpu_seconds() - client_before) * 1e6 / REQUESTS
                        samples[name][label].append(cols)
                    if (name, test) == ("concord leader", "set"):
                        for i, p in concord.procs.items():
                            after = thread_cpu_seconds(p.pid)
                            for thread, secs in after.items():
                                key = (roles[i], thread)
                                spent = secs - per_thread[i].get(thread, 0)
                                threads.setdefault(key, []).append(spent * 1e6 / REQUESTS)
                        for i in concord.ids:
                            synced = wal_fsyncs(concord.ports[i]) - fsyncs[i]
                            per_fsync.setdefault(roles[i], []).append(REQUESTS / max(synced, 1))
                        entries = int(raft_field(concord.ports[leader], "raft_last_index") or 0) - last_index
                        per_entry.append(REQUESTS / max(entries, 1))
        rolling = []
        for n in range(FAILOVERS):
            log(f"rolling restart {n + 1}/{FAILOVERS}")
            rolling.append(rolling_restart_gap(concord))
        failovers = []
        for n in range(FAILOVERS):
            log(f"failover {n + 1}/{FAILOVERS}")
            failovers.append(failover_ms(concord))
    finally:
        concord.stop()
        for p in redis_procs:
            p.terminate()
            p.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    def med(name, test, col):
        return statistics.median(s[col] for s in samples[name][test])

    lines = [
        f"concord cluster benchmark — commit {commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, {CLIENTS} clients, {REQUESTS} requests per test, median of {ROUNDS} rounds",
        "",
        "| test | target | rps | p50 ms | p99 ms | server CPU µs/req | client CPU µs/req | CPU ceiling rps | vs redis always | vs redis no-persist |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cores = os.cpu_count() or 1
    for test in ("SET", "GET"):
        always = med("redis always", test, "rps")
        nopersist = med("redis no-persist", test, "rps")
        for name in targets:
            rps = med(name, test, "rps")
            server_us, client_us = med(name, test, "cpu_us"), med(name, test, "client_us")
            ceiling = cores * 1e6 / (server_us + client_us)
            lines.append(
                f"| {test} | {name} | {rps:,.0f} | {med(name, test, 'p50_latency_ms'):.3f} | "
                f"{med(name, test, 'p99_latency_ms'):.3f} | {server_us:.1f} | {client_us:.1f} | "
                f"{ceiling:,.0f} | {rps / always:.2f}x | {rps / nopersist:.2f}x |"
            )
    lines += [
        "",
        "CPU ceiling: the rate at which server and redis-benchmark together would keep "
        f"all {cores} cores busy at the CPU per request measured, with no waiting at all "
        "(kernel work run outside both, such as softirq threads, is not counted, so the "
        "real ceiling is lower). A target above it cannot be met at that CPU cost.",
        "",
        "SET through the leader, CPU per request by node and thread (µs, median):",
        "",
        "| node | thread | µs/req |",
        "|---|---|---:|",
    ]
    for (role, thread), values in sorted(threads.items()):
        if statistics.median(values) >= 0.05:
            lines.append(f"| {role} | {thread} | {statistics.median(values):.1f} |")
    lines += [
        "",
        "SET through the leader, batching (median): "
        + f"{statistics.median(per_entry):.1f} SETs per log entry; SETs per WAL fdatasync: "
        + ", ".join(f"{role} {statistics.median(v):.1f}" for role, v in sorted(per_fsync.items())),
    ]
    lines += [
        "",
        "Failover (leader killed with SIGKILL → first acknowledged SET through a survivor): "
        + ", ".join(f"{ms:.0f} ms" for ms in failovers)
        + f" (median {statistics.median(failovers):.0f} ms)",
    ]
    lines += [
        "",
        "TLS and ACL, from the rows above: "
        + "; ".join(
            f"{test} concord leader TLS / redis always TLS "
            f"{med('concord leader TLS', test, 'rps') / med('redis always TLS', test, 'rps'):.2f}×, "
            f"ACL user / default user {med('concord leader ACL user', test, 'rps') / med('concord leader', test, 'rps'):.2f}×"
            for test in ("SET", "GET")
        ),
    ]
    lines += [
        "",
        "Rolling restart (each node in turn: SIGTERM, start, caught up) under one steady writer "
        "that moves to the next node on an error: longest gap between acknowledged writes "
        + ", ".join(f"{gap:.0f} ms ({acks} writes, {errors} errors)" for gap, acks, errors in rolling)
        + f" (median {statistics.median(g for g, _, _ in rolling):.0f} ms)",
    ]
    report = "\n".join(lines)
    print(report)
    if os.environ.get("BENCH_OUT"):
        Path(os.environ["BENCH_OUT"]).write_text(report + "\n")


if __name__ == "__main__":
    main()
