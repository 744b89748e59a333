#!/usr/bin/env python3
"""Offline checks for the Grafana dashboard and the Prometheus alert rules.

    python3 deploy/grafana/check.py [--metrics] [--dashboard FILE] [--rules FILE]

Defaults: deploy/grafana/concord.json and deploy/prometheus/alerts.yml (found
from this file's location, so it runs from any directory).

Checks:

- the dashboard: schemaVersion, a `datasource` variable of type datasource
  (prometheus) and an `instance` query variable; unique panel ids (rows and
  panels inside collapsed rows included); every panel other than a row has a
  datasource and at least one target, and every target an expr;
- the rules: groups with a name and rules; every rule has alert, expr, for,
  labels.severity (critical, warning or info), annotations.summary and
  annotations.description; alert names are unique;
- every expr (both files) has balanced (), [] and {} outside strings, and
  queries only metric names concord exports (KNOWN below) plus `up`.

Exits 1 listing every problem, 0 when there is none.

With --metrics it prints instead, one bare name per line, sorted and unique,
every metric name the dashboard and the rules query: identifiers starting
with `concord_` or `process_`, with a trailing `_bucket`, `_sum` or `_count`
stripped. A Rust integration test checks each against a live node's
/metrics. A problem still makes it exit 1 (on stderr, after the names).
"""

import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
DASHBOARD = os.path.join(HERE, "concord.json")
RULES = os.path.normpath(os.path.join(HERE, "..", "prometheus", "alerts.yml"))

# Every series concord exports (histograms by their base name).
KNOWN = {
    # cluster / raft
    "concord_raft_has_leader", "concord_raft_is_leader", "concord_raft_leader_id",
    "concord_raft_term", "concord_raft_leader_changes_total",
    "concord_raft_commit_index", "concord_raft_applied_index",
    "concord_raft_snapshot_index", "concord_raft_proposals_total",
    "concord_raft_proposals_pending", "concord_raft_proposals_failed_total",
    "concord_raft_apply_duration_seconds",
    "concord_wal_fsync_duration_seconds", "concord_wal_fsyncs_total",
    "concord_wal_bytes_total", "concord_wal_records_total",
    "concord_snapshot_duration_seconds", "concord_snapshots_total",
    "concord_peer_round_trip_seconds", "concord_peer_sent_bytes_total",
    "concord_peer_received_bytes_total",
    # server
    "concord_connected_clients", "concord_connections_total",
    "concord_protocol_errors_total", "concord_commands_processed_total",
    "concord_command_calls_total", "concord_command_failed_total",
    "concord_command_rejected_total", "concord_command_duration_seconds",
    "concord_keys", "concord_keys_volatile",
    # process
    "process_cpu_seconds_total", "process_resident_memory_bytes",
    "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
    "process_start_time_seconds", "process_threads",
    # mesh (same on every node)
    "concord_breaker_state", "concord_breaker_transitions_total",
    "concord_registry_instances", "concord_registry_instances_healthy",
    "concord_registry_instance_healthy", "concord_registry_picks_total",
    "concord_ratelimit_allowed_total", "concord_ratelimit_denied_total",
    "concord_lock_grants_total", "concord_lock_waits_total",
    "concord_lock_fenced_writes_total", "concord_locks_held",
    "concord_queue_jobs", "concord_sessions_live", "concord_sessions_expired_total",
}

SEVERITIES = {"critical", "warning", "info"}

STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
NAME = re.compile(r"(?<![A-Za-z0-9_:$])((?:concord|process)_[A-Za-z0-9_:]*)")
SUFFIX = re.compile(r"_(?:bucket|sum|count)$")

errors = []


def err(msg):
    errors.append(msg)


def strip_strings(expr):
    """The expr with string literals (label values, regexes) blanked."""
    return STRING.sub('""', expr)


def metric_names(expr):
    return {SUFFIX.sub("", m) for m in NAME.findall(strip_strings(expr))}


def check_expr(where, expr):
    bare = strip_strings(expr)
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in bare:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                err(f"{where}: unbalanced '{ch}' in {expr!r}")
                return
    if stack:
        err(f"{where}: unclosed '{stack[-1]}' in {expr!r}")
    for name in sorted(metric_names(expr)):
        if name not in KNOWN:
            err(f"{where}: unknown metric {name!r} (not exported by concord)")
    # `up` is the only series queried that Prometheus makes itself.
    words = set(re.findall(r"(?<![A-Za-z0-9_:$])([A-Za-z_:][A-Za-z0-9_:]*)\s*\{", bare))
    for w in words - KNOWN - {"up"}:
        if SUFFIX.sub("", w) not in KNOWN:
            err(f"{where}: unknown series {w!r}")


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels") or [])


def check_dashboard(path):
    exprs = []
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, ValueError) as e:
        err(f"{path}: cannot load: {e}")
        return exprs
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        err(f"{path}: schemaVersion {d.get('schemaVersion')!r}, want ~39")
    if not d.get("title") or not d.get("uid"):
        err(f"{path}: title and uid are required")

    variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        err(f"{path}: no `datasource` variable of type datasource (prometheus)")
    inst = variables.get("instance")
    if not inst or inst.get("type") != "query":
        err(f"{path}: no `instance` query variable")
    for name, v in variables.items():
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if not q:
                err(f"{path}: variable {name!r} has no query")
                continue
            where = f"{path}: variable {name!r}"
            check_expr(where, q)
            exprs.append(q)

    ids = {}
    for p in walk_panels(d.get("panels", [])):
        title = p.get("title", "?")
        pid = p.get("id")
        where = f"{path}: panel {pid} {title!r}"
        if not isinstance(pid, int):
            err(f"{where}: no integer id")
        elif pid in ids:
            err(f"{where}: id {pid} also used by {ids[pid]!r}")
        else:
            ids[pid] = title
        if "gridPos" not in p:
            err(f"{where}: no gridPos")
        if p.get("type") == "row":
            continue
        dsrc = p.get("datasource")
        if not dsrc or (isinstance(dsrc, dict) and not dsrc.get("uid")):
            err(f"{where}: no datasource")
        targets = p.get("targets") or []
        if not targets:
            err(f"{where}: no targets")
        refs = set()
        for t in targets:
            expr = t.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                err(f"{where}: target {t.get('refId')!r} has no expr")
                continue
            if t.get("refId") in refs:
                err(f"{where}: refId {t.get('refId')!r} used twice")
            refs.add(t.get("refId"))
            check_expr(f"{where} target {t.get('refId')}", expr)
            exprs.append(expr)
    return exprs


def check_rules(path):
    exprs = []
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        err(f"{path}: cannot load: {e}")
        return exprs
    groups = (doc or {}).get("groups")
    if not isinstance(groups, list) or not groups:
        err(f"{path}: no groups")
        return exprs
    alerts = set()
    for g in groups:
        gname = g.get("name")
        if not gname:
            err(f"{path}: a group has no name")
        rules = g.get("rules")
        if not isinstance(rules, list) or not rules:
            err(f"{path}: group {gname!r} has no rules")
            continue
        for r in rules:
            name = r.get("alert")
            where = f"{path}: {gname}/{name or r.get('record') or '?'}"
            if not name:
                err(f"{where}: no alert name")
            elif name in alerts:
                err(f"{where}: alert name used twice")
            else:
                alerts.add(name)
            expr = r.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                err(f"{where}: no expr")
            else:
                check_expr(where, expr)
                exprs.append(expr)
            if not isinstance(r.get("for"), str) or not re.fullmatch(
                    r"(?:\d+[smhdwy])+", r["for"]):
                err(f"{where}: `for` missing or not a duration: {r.get('for')!r}")
            if (r.get("labels") or {}).get("severity") not in SEVERITIES:
                err(f"{where}: labels.severity must be one of {sorted(SEVERITIES)}")
            ann = r.get("annotations") or {}
            for key in ("summary", "description"):
                if not isinstance(ann.get(key), str) or not ann[key].strip():
                    err(f"{where}: no annotations.{key}")
    return exprs


def main(argv):
    args = argv[1:]
    want_metrics = "--metrics" in args
    dashboard, rules = DASHBOARD, RULES
    for flag in ("--dashboard", "--rules"):
        if flag in args:
            i = args.index(flag)
            if i + 1 >= len(args):
                print(f"{flag} needs a file", file=sys.stderr)
                return 2
            if flag == "--dashboard":
                dashboard = args[i + 1]
            else:
                rules = args[i + 1]
    unknown = [a for i, a in enumerate(args)
               if a.startswith("-") and a not in ("--metrics", "--dashboard", "--rules")]
    if unknown:
        print(f"unknown option {unknown[0]}\n{__doc__}", file=sys.stderr)
        return 2

    exprs = check_dashboard(dashboard) + check_rules(rules)
    if want_metrics:
        names = set()
        for e in exprs:
            names |= metric_names(e)
        for n in sorted(names):
            print(n)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        return 1
    if not want_metrics:
        print(f"ok: {dashboard}, {rules}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
