#!/usr/bin/env python3
"""A value near the largest log entry, on a 3-node cluster (issue: values
too big for the log).

Starts `concord dev` (release build) on 127.0.0.1:18001-18003, keeps a
client writing small values to the leader one at a time, and meanwhile
SETs one value of --mb MiB (60 by default) through the leader. Reports
how long the big SET took, the small writes' latency during it (p50, p99,
max), whether the leader changed (raft terms before and after), and what
a value over --max-entry-bytes (65 MiB) is answered.

  cargo build --release && python3 bench/big_value.py [--mb 60]
"""

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

PORTS = [18001, 18002, 18003]


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(120)
    return s


def command(s, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    s.sendall(out)
    buf = b""
    while not buf.endswith(b"\r\n"):
        buf += s.recv(65536)
    if buf.startswith(b"$") and not buf.startswith(b"$-1"):
        head = buf.index(b"\r\n")
        n = int(buf[1:head])
        while len(buf) < head + 2 + n + 2:
            buf += s.recv(65536)
    return buf


def info(port, section, field):
    s = connect(port)
    text = command(s, "INFO", section).decode()
    s.close()
    for line in text.split("\r\n"):
        if line.startswith(field + ":"):
            return line.split(":", 1)[1]
    return None


def wait_for_leader(deadline):
    while time.time() < deadline:
        try:
            roles = {p: info(p, "replication", "role") for p in PORTS}
            leaders = [p for p, r in roles.items() if r == "master"]
            if len(leaders) == 1:
                return leaders[0]
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("no leader within the deadline")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=60)
    ap.add_argument("--binary", default="target/release/concord")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="concord-big-")
    dev = subprocess.Popen(
        [args.binary, "dev", "--base-port", str(PORTS[0]), "--dir", tmp, "--fresh"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        leader = wait_for_leader(time.time() + 30)
        terms = [info(p, "raft", "raft_term") for p in PORTS]
        latencies = []
        stop = threading.Event()

        def small_writes():
            s = connect(leader)
            while not stop.is_set():
                t = time.perf_counter()
                command(s, "SET", "small", "x")
                latencies.append((time.perf_counter() - t) * 1000)

        writer = threading.Thread(target=small_writes)
        writer.start()
        time.sleep(1)
        first = len(latencies)
        big = connect(leader)
        t = time.perf_counter()
        reply = command(big, "SET", "big", b"x" * (args.mb << 20))
        big_ms = (time.perf_counter() - t) * 1000
        time.sleep(1)
        stop.set()
        writer.join()
        during = sorted(latencies[first:])
        after_terms = [info(p, "raft", "raft_term") for p in PORTS]
        over = command(connect(leader), "SET", "over", b"x" * (65 << 20))
        print(f"SET of {args.mb} MiB: {reply.strip().decode()} in {big_ms:.0f} ms")
        print(
            "small SETs meanwhile: n=%d p50=%.2f ms p99=%.2f ms max=%.2f ms"
            % (
                len(during),
                during[len(during) // 2],
                during[int(len(during) * 0.99)],
                during[-1],
            )
        )
        changed = "no leader change" if terms == after_terms else "LEADER CHANGED"
        print(f"raft terms {terms} -> {after_terms}: {changed}")
        print(f"SET of 65 MiB: {over.strip().decode()}")
    finally:
        dev.terminate()
        dev.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    main()
