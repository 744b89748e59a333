#!/usr/bin/env python3
"""Turns bench/load.sh's raw redis-benchmark CSV files into one markdown table.

Input: a directory of `ROUND.WORKLOAD.SERVER.csv` files (redis-benchmark 7 `--csv`
output) and `cpu.tsv` (round, workload, server, CPU seconds, wall seconds).
Every number in the table is the median over rounds, taken per cell.
"""

import argparse
import csv
import statistics
import sys
from pathlib import Path

SERVERS = ("concord", "redis-nopersist", "redis-always", "concord-tls", "redis-tls", "concord-acl")
TESTS = ("SET", "GET", "INCR")
COLUMNS = (
    "test", "rps", "avg_latency_ms", "min_latency_ms", "p50_latency_ms",
    "p95_latency_ms", "p99_latency_ms", "max_latency_ms",
)


def fail(msg):
    print(f"report.py: {msg}", file=sys.stderr)
    sys.exit(1)


def read_csv(path):
    """{test: {column: float}} from one redis-benchmark --csv output."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != COLUMNS:
        fail(f"{path}: unexpected CSV header {rows[0] if rows else '(empty)'}; "
             f"expected {','.join(COLUMNS)}")
    out = {}
    for row in rows[1:]:
        if not row:
            continue
        if len(row) != len(COLUMNS):
            fail(f"{path}: malformed row {row}")
        try:
            out[row[0]] = {c: float(v) for c, v in zip(COLUMNS[1:], row[1:])}
        except ValueError:
            fail(f"{path}: non-numeric value in {row}")
    missing = [t for t in TESTS if t not in out]
    if missing:
        fail(f"{path}: no result for {', '.join(missing)}")
    return out


def fmt_rps(v):
    return f"{v:,.0f}"


def fmt_ms(v):
    return f"{v:.3f}"


def fmt_ratio(a, b):
    return f"{a / b:.2f}×" if b > 0 else "n/a"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True, type=Path)
    p.add_argument("--rounds", required=True, type=int)
    p.add_argument("--pipeline", required=True, type=int)
    p.add_argument("--requests", required=True, type=int)
    p.add_argument("--pipeline-requests", required=True, type=int)
    p.add_argument("--clients", required=True, type=int)
    p.add_argument("--machine", required=True)
    p.add_argument("--redis-version", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--date", required=True)
    p.add_argument("--out", type=Path)
    a = p.parse_args()

    workloads = ("P1", f"P{a.pipeline}")
    # data[workload][server][test][column] = [value per round]
    data = {w: {s: {t: {} for t in TESTS} for s in SERVERS} for w in workloads}
    for r in range(1, a.rounds + 1):
        for w in workloads:
            for s in SERVERS:
                path = a.results / f"{r}.{w}.{s}.csv"
                if not path.exists():
                    fail(f"missing {path}")
                for t, cols in read_csv(path).items():
                    if t not in TESTS:
                        continue
                    for c, v in cols.items():
                        data[w][s][t].setdefault(c, []).append(v)

    def med(w, s, t, c):
        return statistics.median(data[w][s][t][c])

    lines = []
    lines.append(f"- date: {a.date}")
    lines.append(f"- concord commit: {a.commit}")
    lines.append(f"- machine: {a.machine}")
    lines.append(f"- redis: {a.redis_version}")
    lines.append(
        f"- load: redis-benchmark -c {a.clients} -r 100000 -t set,get,incr; "
        f"-n {a.requests} unpipelined (P1), -n {a.pipeline_requests} with "
        f"-P {a.pipeline} (P{a.pipeline}); median of {a.rounds} round(s), "
        f"the servers alternating within each round"
    )
    lines.append("")
    header = (
        "| test | pipeline | concord rps | concord p50 ms | concord p99 ms "
        "| redis no-persist rps | redis always rps "
        "| concord / redis always | concord / redis no-persist |"
    )
    lines.append(header)
    lines.append("|" + "---|" * 2 + "---:|" * 7)
    for t in TESTS:
        for w in workloads:
            c_rps = med(w, "concord", t, "rps")
            n_rps = med(w, "redis-nopersist", t, "rps")
            a_rps = med(w, "redis-always", t, "rps")
            lines.append(
                f"| {t} | {w} | {fmt_rps(c_rps)} "
                f"| {fmt_ms(med(w, 'concord', t, 'p50_latency_ms'))} "
                f"| {fmt_ms(med(w, 'concord', t, 'p99_latency_ms'))} "
                f"| {fmt_rps(n_rps)} | {fmt_rps(a_rps)} "
                f"| {fmt_ratio(c_rps, a_rps)} | {fmt_ratio(c_rps, n_rps)} |"
            )

    # TLS and ACL rows: concord over TLS against Redis over TLS (appendfsync
    # always), and the cost of the ACL check (a restricted user against the
    # default user of another concord in the same round).
    lines.append("")
    lines.append(
        "| test | pipeline | concord TLS rps | redis TLS rps | concord TLS / redis TLS "
        "| concord ACL-user rps | ACL user / default user |"
    )
    lines.append("|" + "---|" * 2 + "---:|" * 5)
    for t in TESTS:
        for w in workloads:
            ct = med(w, "concord-tls", t, "rps")
            rt = med(w, "redis-tls", t, "rps")
            ca = med(w, "concord-acl", t, "rps")
            c = med(w, "concord", t, "rps")
            lines.append(
                f"| {t} | {w} | {fmt_rps(ct)} | {fmt_rps(rt)} | {fmt_ratio(ct, rt)} "
                f"| {fmt_rps(ca)} | {fmt_ratio(ca, c)} |"
            )

    # Server CPU while it was under test: CPU seconds / wall seconds of each
    # redis-benchmark call (all three tests), median over rounds.
    cpu_path = a.results / "cpu.tsv"
    if cpu_path.exists():
        cpu = {}
        for line in cpu_path.read_text().splitlines():
            r, w, s, cpu_s, wall_s = line.split("\t")
            if float(wall_s) > 0:
                cpu.setdefault((w, s), []).append(100 * float(cpu_s) / float(wall_s))
        parts = []
        for w in workloads:
            vals = ", ".join(
                f"{s} {statistics.median(cpu[(w, s)]):.0f}%"
                for s in SERVERS if (w, s) in cpu
            )
            parts.append(f"{w}: {vals}")
        lines.append("")
        lines.append(
            "Server CPU while under load (% of one core, median over rounds): "
            + "; ".join(parts) + "."
        )
        # CPU per request: less sensitive than rps to what else the machine
        # runs, and what the ACL row is about (its check costs CPU, not I/O).
        per_req = {}
        for line in cpu_path.read_text().splitlines():
            r, w, s_, cpu_s, _ = line.split("\t")
            n = a.requests if w == "P1" else a.pipeline_requests
            per_req.setdefault((w, s_), []).append(1e6 * float(cpu_s) / (n * len(TESTS)))
        parts = []
        for w in workloads:
            vals = ", ".join(
                f"{s} {statistics.median(per_req[(w, s)]):.2f}"
                for s in SERVERS if (w, s) in per_req
            )
            parts.append(f"{w}: {vals}")
        lines.append("")
        lines.append(
            "Server CPU per request (µs, SET, GET and INCR together, median over rounds): "
            + "; ".join(parts) + "."
        )
        if ("P16", "concord") in per_req and ("P16", "concord-acl") in per_req:
            base = statistics.median(per_req[("P16", "concord")])
            acl = statistics.median(per_req[("P16", "concord-acl")])
            lines.append(
                f"ACL check cost with -P {a.pipeline}: {100 * (acl - base) / base:+.1f}% CPU per request "
                "(the restricted user against the default user)."
            )

    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)


if __name__ == "__main__":
    main()
