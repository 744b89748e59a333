#!/usr/bin/env python3
"""Primitives benchmark: concord's native commands on a 3-node cluster
against the Redis pattern each one replaces, on Redis with appendfsync
always, in the same run.

    bench/primitives.py               # 3 rounds, 50k requests per test
    BENCH_QUICK=1 bench/primitives.py # 1 round, 10k requests

Each row pairs a concord command (sent to the leader; every write is
fsync'd on a majority before it is acknowledged) with what a mesh service
runs on Redis for the same job: SET NX PX for a lock, a fixed-window Lua
script for a rate limit, PEXPIRE for a session keepalive, LPUSH for a queue
push, LMOVE on a rotating list for round robin. redis-benchmark -c 50,
unpipelined; medians over rounds; servers run side by side so noise falls
on both alike.

Environment: BENCH_ROUNDS, BENCH_REQUESTS, BENCH_CLIENTS, BENCH_OUT, TMPDIR.
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cluster import (  # noqa: E402
    Concord, build_release, cli, client_cpu_seconds, cpu_seconds, die, ensure_tools, log,
    redis_benchmark, start_redis,
)

QUICK = os.environ.get("BENCH_QUICK") == "1"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1" if QUICK else "3"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "10000" if QUICK else "50000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "50"))

RATE_SCRIPT = (
    "local c = redis.call('INCR', KEYS[1]) "
    "if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
    "return c"
)

# (name, concord command, redis command, setup on concord, setup on redis)
ROWS = [
    ("lock acquire",
     ["LOCK.ACQUIRE", "lock:__rand_int__", "w", "30000"],
     ["SET", "lock:__rand_int__", "w", "NX", "PX", "30000"], [], []),
    ("rate limit",
     ["RATELIMIT.ACQUIRE", "rl:__rand_int__", "FIXED", "1000", "60000"],
     ["EVAL", RATE_SCRIPT, "1", "rl:__rand_int__", "60000"], [], []),
    ("session keepalive",
     ["SESSION.KEEPALIVE", "1"],
     ["PEXPIRE", "session:1", "30000"],
     [["SESSION.CREATE", "3600000"]], [["SET", "session:1", "x"]]),
    ("queue push",
     ["QUEUE.PUSH", "jobs", "payload"],
     ["LPUSH", "jobs", "payload"], [], []),
    ("round-robin pick",
     ["REGISTRY.PICK", "svc", "ROUND_ROBIN"],
     ["LMOVE", "svc", "svc", "LEFT", "RIGHT"],
     [["REGISTRY.REGISTER", "svc", f"i{n}", f"10.0.0.{n}:80", "0", "SESSION", "1"] for n in range(3)],
     [["RPUSH", "svc", "i0", "i1", "i2"]]),
]


def bench(port, command, pids):
    """The columns of redis-benchmark's one row for `command`, with the CPU
    per request of the server processes `pids` and of redis-benchmark."""
    server_before, client_before = cpu_seconds(pids), client_cpu_seconds()
    rows = redis_benchmark(port, command, requests=REQUESTS, clients=CLIENTS)
    cols = next(iter(rows.values()))
    cols["cpu_us"] = (cpu_seconds(pids) - server_before) * 1e6 / REQUESTS
    cols["client_us"] = (client_cpu_seconds() - client_before) * 1e6 / REQUESTS
    return cols


def compare(rows, title, pattern_of):
    """Runs every row against the concord leader and Redis (appendfsync
    always) alternately for ROUNDS rounds; prints and returns the table.
    `rows` are (name, concord command, redis command, concord setup, redis
    setup); `pattern_of(redis command)` names the Redis column."""
    ensure_tools()
    binary, commit = build_release()
    workdir = Path(tempfile.mkdtemp(prefix="concord-bench-"))
    concord = Concord(binary, workdir)
    redis_proc = None
    samples = {name: {"concord": [], "redis": []} for name, *_ in rows}
    try:
        for i in concord.ids:
            concord.start(i)
        leader = concord.ports[concord.leader()]
        redis_port, redis_proc = start_redis(
            workdir, "redis-always", ["--appendonly", "yes", "--appendfsync", "always"])
        for _, _, _, concord_setup, redis_setup in rows:
            for port, setup in ((leader, concord_setup), (redis_port, redis_setup)):
                for command in setup:
                    if not cli(port, *command, timeout=10):
                        die(f"setup {command} on {port} got no answer")
        concord_pids = [p.pid for p in concord.procs.values()]
        for r in range(ROUNDS):
            for name, concord_cmd, redis_cmd, _, _ in rows:
                log(f"round {r + 1}/{ROUNDS}: {name}")
                samples[name]["concord"].append(bench(leader, concord_cmd, concord_pids))
                samples[name]["redis"].append(bench(redis_port, redis_cmd, [redis_proc.pid]))
    finally:
        concord.stop()
        if redis_proc:
            redis_proc.terminate()
            redis_proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    def med(name, target, col):
        return statistics.median(s[col] for s in samples[name][target])

    lines = [
        f"{title} — commit {commit}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"{CLIENTS} clients, {REQUESTS} requests per test, median of {ROUNDS} rounds",
        "",
        "| test | concord 3 nodes rps | p99 ms | CPU µs/req | CPU ceiling rps | Redis (appendfsync always) | rps | p99 ms | CPU µs/req | ratio |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    cores = os.cpu_count() or 1
    for name, _, redis_cmd, _, _ in rows:
        c, r = med(name, "concord", "rps"), med(name, "redis", "rps")
        server_us = med(name, "concord", "cpu_us")
        ceiling = cores * 1e6 / (server_us + med(name, "concord", "client_us"))
        lines.append(
            f"| {name} | {c:,.0f} | {med(name, 'concord', 'p99_latency_ms'):.2f} | "
            f"{server_us:.1f} | {ceiling:,.0f} | `{pattern_of(redis_cmd)}` | "
            f"{r:,.0f} | {med(name, 'redis', 'p99_latency_ms'):.2f} | "
            f"{med(name, 'redis', 'cpu_us'):.1f} | {c / r:.2f}x |"
        )
    lines += [
        "",
        "CPU µs/req: the server processes' CPU per request (all three nodes for "
        "concord). CPU ceiling: the rate at which concord and redis-benchmark together "
        f"would keep all {cores} cores busy at the CPU per request measured, with no "
        "waiting at all; a ratio whose Redis rate lies above it cannot be reached at "
        "that cost.",
    ]
    report = "\n".join(lines)
    print(report)
    if os.environ.get("BENCH_OUT"):
        Path(os.environ["BENCH_OUT"]).write_text(report + "\n")
    return report


def main():
    compare(
        ROWS,
        "concord primitives benchmark",
        lambda cmd: "Lua fixed window" if cmd[0] == "EVAL" else " ".join(cmd[:2]),
    )


if __name__ == "__main__":
    main()
