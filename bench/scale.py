#!/usr/bin/env python3
"""Scale benchmark: a large keyspace in a 3-node concord cluster beside Redis.

    bench/scale.py                # 1,000,000 strings of 100 B, 100,000 hashes
    bench/scale.py --keys 10000000
    bench/scale.py --keys 200000 --hashes 20000   # a quick look

Runs side by side on this machine:
  concord 3 nodes   every write fsync'd on a majority before it is acknowledged
  redis-nopersist   redis-server --save '' --appendonly no
  redis-always      redis-server --appendonly yes --appendfsync always

and prints one table:
  load              `redis-cli --pipe` of N SETs (100-byte values) through
                    the leader and into each Redis: SET/s and the ratios
  RSS per key       (RSS after − RSS before) / N, per concord node and for
                    Redis without persistence; the same for H hashes of 20
                    small fields. Twice: right after the load, while each
                    node still holds the load's log since its last snapshot
                    (up to --snapshot-log-bytes, 64 MiB by default), and
                    after RAFT.SNAPSHOT on every node (the keyspace alone)
  snapshot          RAFT.SNAPSHOT on the leader: duration, file size, MB/s;
                    the worst GET latency on every node meanwhile (one
                    client per node, GETs back to back) and whether the term
                    changed
  restart           kill -9 a follower, start it again: time until it
                    answers a linearizable GET with the right value
  catch-up          an empty node 4 added with RAFT.MEMBER ADD: time until
                    it is a voter, snapshot MB/s, the leader's worst GET
                    meanwhile

Environment: TMPDIR (data dirs; the snapshot and load files are large).
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster  # noqa: E402  (the shared helpers: ports, nodes, redis-cli)

VALUE = b"v" * 100
FIELDS = 20


def log(msg):
    print(f"[scale.py] {msg}", file=sys.stderr, flush=True)


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def write_strings(path, n):
    with open(path, "wb") as f:
        chunk = []
        for i in range(n):
            chunk.append(resp(b"SET", b"key:%d" % i, VALUE))
            if len(chunk) == 10000:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))


def write_hashes(path, n):
    with open(path, "wb") as f:
        chunk = []
        for i in range(n):
            args = [b"HSET", b"hash:%d" % i]
            for j in range(FIELDS):
                args += [b"field:%02d" % j, b"value:%08d" % (i * FIELDS + j)]
            chunk.append(resp(*args))
            if len(chunk) == 2000:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))


def pipe(port, path):
    """Seconds `redis-cli --pipe` took to send the file and read every reply."""
    started = time.monotonic()
    with open(path, "rb") as f:
        out = subprocess.run(["redis-cli", "-p", str(port), "--pipe"], stdin=f,
                             capture_output=True, text=True, timeout=3600)
    took = time.monotonic() - started
    if out.returncode != 0 or "errors: 0" not in out.stdout:
        cluster.die(f"redis-cli --pipe into {port} failed: {out.stdout[-300:]} {out.stderr[-300:]}")
    return took


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Prober(threading.Thread):
    """GETs one key back to back on one connection; keeps the worst latency
    seen while `recording` is set."""

    def __init__(self, port, key=b"key:1"):
        super().__init__(daemon=True)
        self.port = port
        self.request = resp(b"GET", key)
        self.worst = 0.0
        self.count = 0
        self.failures = 0
        self.recording = threading.Event()
        self.stopping = threading.Event()

    def run(self):
        sock = None
        while not self.stopping.is_set():
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                started = time.monotonic()
                sock.sendall(self.request)
                buf = b""
                while not buf.endswith(b"\r\n") or buf.startswith(b"$") and buf.count(b"\r\n") < 2:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("closed")
                    buf += data
                took = time.monotonic() - started
                if self.recording.is_set():
                    self.worst = max(self.worst, took)
                    self.count += 1
            except OSError:
                self.failures += 1
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.05)

    def stop(self):
        self.stopping.set()
        self.join(timeout=60)


def probing(ports, action, settle=0.5):
    """Runs `action()` while one prober per port records; returns (action's
    result, seconds it took, {port: worst GET ms})."""
    probes = {p: Prober(p) for p in ports}
    for p in probes.values():
        p.start()
    time.sleep(0.3)  # connected and warm
    for p in probes.values():
        p.recording.set()
    started = time.monotonic()
    result = action()
    took = time.monotonic() - started
    time.sleep(settle)
    for p in probes.values():
        p.stop()
    return result, took, {port: p.worst * 1000 for port, p in probes.items()}


def snapshot_files(node_dir):
    return sorted(node_dir.rglob("*.snap"))


def wait_long(what, check, deadline):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.02)
    cluster.die(f"timed out after {deadline:.0f} s waiting for {what}")


def used_memory(port):
    """INFO's used_memory: the bytes the allocator has handed out."""
    return int(cluster.info_field(port, "memory", "used_memory") or 0)


def footprint(concord, pids):
    return {i: (rss_bytes(pids[i]), used_memory(concord.ports[i])) for i in pids}


def rss_row(what, label, count, concord, pids, base, redis_grew):
    """RSS per item on each node against Redis's, and beside it what the
    allocator handed out per item (what is resident beyond it is memory
    freed but not yet given back)."""
    # mimalloc returns freed pages after a short delay.
    time.sleep(1)
    redis = redis_grew / count
    now = footprint(concord, pids)
    per = {i: (now[i][0] - base[i][0]) / count for i in pids}
    used = {i: (now[i][1] - base[i][1]) / count for i in pids}
    return (f"RSS per {what}, {label}, B (allocated)",
            " / ".join(f"{per[i]:.0f} ({used[i]:.0f})" for i in pids),
            f"Redis {redis:.0f} ({max(per.values()) / redis:.2f}× worst node)")


# Right after a load each node still holds the load's log entries since its
# last snapshot (up to --snapshot-log-bytes, 64 MiB by default); after
# RAFT.SNAPSHOT on every node the keyspace alone remains.
AFTER_LOAD = "after the load"
AFTER_SNAPSHOTS = "after a snapshot on every node"


def snapshot_all(concord, ids):
    for i in ids:
        reply = cluster.cli(concord.ports[i], "RAFT.SNAPSHOT", timeout=600)
        if not reply.isdigit():
            cluster.die(f"RAFT.SNAPSHOT on node {i} answered {reply!r}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--hashes", type=int, default=100_000)
    ap.add_argument("--logs", type=Path,
                    help="copy the nodes' logs here before the work dir goes "
                         "(CONCORD_LOG=info for the phase and slow-turn lines)")
    args = ap.parse_args()
    n, h = args.keys, args.hashes

    cluster.ensure_tools()
    binary, commit = cluster.build_release()
    import tempfile
    work = Path(tempfile.mkdtemp(prefix="concord-scale-"))
    log(f"work dir {work}; writing the load files")
    strings, hashes = work / "strings.resp", work / "hashes.resp"
    write_strings(strings, n)
    write_hashes(hashes, h)

    concord = cluster.Concord(binary, work)
    for i in concord.ids:
        concord.start(i)
    leader = concord.leader()
    followers = [i for i in concord.ids if i != leader]
    nopersist_port, nopersist = cluster.start_redis(work, "redis-nopersist", [])
    always_port, always = cluster.start_redis(
        work, "redis-always", ["--appendonly", "yes", "--appendfsync", "always"])
    rows = []
    try:
        pids = {i: concord.procs[i].pid for i in concord.ids}
        base = footprint(concord, pids)
        base_redis = rss_bytes(nopersist.pid)

        log(f"loading {n:,} strings")
        term_before = cluster.raft_field(concord.ports[leader], "raft_term")
        t_concord = pipe(concord.ports[leader], strings)
        concord.converged()
        term_after = cluster.raft_field(concord.ports[leader], "raft_term")
        # Where the rest happens, should the load have moved the leadership.
        leader = concord.leader()
        followers = [i for i in concord.ids if i != leader]
        t_nopersist = pipe(nopersist_port, strings)
        t_always = pipe(always_port, strings)
        rate = n / t_concord
        rows.append(("load, SET/s through the leader", f"{rate:,.0f}",
                     f"nopersist {n / t_nopersist:,.0f} ({rate * t_nopersist / n:.2f}×), "
                     f"always {n / t_always:,.0f} ({rate * t_always / n:.2f}×); "
                     + ("term changed" if term_before != term_after else "term unchanged")))
        redis_grew = rss_bytes(nopersist.pid) - base_redis
        rows.append(rss_row("string key", AFTER_LOAD, n, concord, pids, base, redis_grew))

        # Snapshot of the leader while every node serves GETs.
        term_before = cluster.raft_field(concord.ports[leader], "raft_term")
        (reply, took, worst) = probing(
            [concord.ports[i] for i in concord.ids],
            lambda: cluster.cli(concord.ports[leader], "RAFT.SNAPSHOT", timeout=600))
        if not reply.isdigit():
            cluster.die(f"RAFT.SNAPSHOT answered {reply!r}")
        files = snapshot_files(work / f"node-{leader}")
        size = files[-1].stat().st_size if files else 0
        term_after = cluster.raft_field(concord.ports[leader], "raft_term")
        # Where the rest happens, should the load have moved the leadership.
        leader = concord.leader()
        followers = [i for i in concord.ids if i != leader]
        rows.append(("snapshot of the leader", f"{took * 1000:,.0f} ms, {size / 1e6:,.1f} MB",
                     f"{size / 1e6 / took:,.0f} MB/s"))
        rows.append(("worst GET during the snapshot, ms",
                     " / ".join(f"{worst[concord.ports[i]]:,.1f}" for i in concord.ids),
                     "term changed" if term_before != term_after else "term unchanged"))
        snapshot_all(concord, followers)
        rows.append(rss_row("string key", AFTER_SNAPSHOTS, n, concord, pids, base,
                            redis_grew))

        # A follower killed and started again.
        victim = followers[0]
        concord.kill9(victim)
        started = time.monotonic()
        spawn(concord, victim)
        wait_long("the restarted follower to serve a GET",
                  lambda: cluster.cli(concord.ports[victim], "GET", "key:1", timeout=5)
                  == VALUE.decode(), deadline=600)
        restart = time.monotonic() - started
        rows.append(("follower restart to serving", f"{restart:,.2f} s",
                     f"snapshot {size / 1e6 / restart:,.0f} MB/s of wall time"))

        # An empty node added: it catches up from a snapshot.
        concord.ids.append(4)
        for table in (concord.ports, concord.peers, concord.tls_ports):
            table[4] = cluster.free_port()
        concord.cluster += f",4=127.0.0.1:{concord.peers[4]}"
        log("starting an empty node 4 and adding it")
        spawn(concord, 4, join=True)
        cluster.wait_until("node 4 to answer PING",
                           lambda: cluster.cli(concord.ports[4], "PING") == "PONG")
        leader = concord.leader(among=[i for i in concord.ids if i != 4])
        (reply, took, worst) = probing(
            [concord.ports[leader]],
            lambda: cluster.cli(concord.ports[leader], "RAFT.MEMBER", "ADD", "4",
                                f"127.0.0.1:{concord.peers[4]}", timeout=900))
        if reply != "OK":
            cluster.die(f"RAFT.MEMBER ADD answered {reply!r}")
        rows.append(("new node caught up (voter)", f"{took:,.2f} s",
                     f"snapshot {size / 1e6 / took:,.0f} MB/s; leader's worst GET "
                     f"{worst[concord.ports[leader]]:,.1f} ms"))

        # Hashes on top of the strings.
        live = [i for i in concord.ids if i in concord.procs]
        base = footprint(concord, {i: concord.procs[i].pid for i in live})
        base_redis = rss_bytes(nopersist.pid)
        log(f"loading {h:,} hashes of {FIELDS} fields")
        pipe(concord.ports[leader], hashes)
        concord.converged()
        pipe(nopersist_port, hashes)
        live_pids = {i: concord.procs[i].pid for i in live}
        redis_grew = rss_bytes(nopersist.pid) - base_redis
        what = f"{FIELDS}-field hash"
        rows.append(rss_row(what, AFTER_LOAD, h, concord, live_pids, base, redis_grew))
        snapshot_all(concord, live)
        rows.append(rss_row(what, AFTER_SNAPSHOTS, h, concord, live_pids, base, redis_grew))
    finally:
        concord.stop()
        for proc in (nopersist, always):
            proc.terminate()
            proc.wait()

    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
        for f in work.glob("node-*.log"):
            subprocess.run(["cp", str(f), str(args.logs)])
    print(f"\n### scale: {n:,} strings of 100 B, {h:,} hashes, commit {commit}\n")
    print("| measure | concord (per node where it applies) | beside |")
    print("|---|---:|---|")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")
    subprocess.run(["rm", "-rf", str(work)])


def spawn(concord, i, join=False):
    """Starts node `i` as `Concord.start` does, without waiting for it."""
    log_file = open(concord.workdir / f"node-{i}.log", "ab")
    extra = ["--join"] if join else [
        "--tls-listen", f"127.0.0.1:{concord.tls_ports[i]}",
        "--tls-cert-file", str(concord.certs / f"node-{i}.pem"),
        "--tls-key-file", str(concord.certs / f"node-{i}.key"),
        "--tls-auth-clients", "no"]
    concord.procs[i] = subprocess.Popen(
        [concord.binary, "serve", "--node-id", str(i),
         "--listen", f"127.0.0.1:{concord.ports[i]}",
         "--peer-listen", f"127.0.0.1:{concord.peers[i]}",
         "--data-dir", str(concord.workdir / f"node-{i}"),
         "--initial-cluster", concord.cluster, *extra],
        stdout=subprocess.DEVNULL, stderr=log_file,
        env={**os.environ, "CONCORD_LOG": os.environ.get("CONCORD_LOG", "warn")})


if __name__ == "__main__":
    main()
