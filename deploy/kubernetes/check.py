#!/usr/bin/env python3
"""Checks the invariants of a rendered concord overlay (deploy/kubernetes/test.sh).

    check.py RENDERED.yaml SECRETS.yaml [--start BINARY]

RENDERED.yaml is `kubectl kustomize overlays/X`, SECRETS.yaml what
make-secrets.sh prints for it. Checks:

- every container (init containers too) has a liveness and a readiness
  probe and resource requests and limits (cpu and memory);
- the node-id derivation: CONCORD_CONFIG is a file named $(POD_NAME).toml
  in a mounted ConfigMap that holds, for each ordinal o < replicas, exactly
  `node-id = o + 1` (and CONCORD_NODE_ID is not set for all pods at once);
- --initial-cluster has as many members as replicas, ids 1..replicas, and
  member i's host is <statefulset>-<i-1>.<serviceName>.<namespace>.svc
  at the peer port, where serviceName is a headless Service of that
  namespace that publishes not-ready addresses and selects the pods;
- every $(VAR) in an env value names a variable defined before it;
- the probes ask /health (liveness) and /ready (readiness) on the admin
  port, a preStop hook exists, peers are authenticated (secret or TLS),
  the data dir is a volumeClaimTemplate, podManagementPolicy is Parallel,
  a PodDisruptionBudget with maxUnavailable 1 and a client Service select
  the pods, and every Secret key the pods read is in SECRETS.yaml.

With --start BINARY it also runs each pod's node on this machine the way
the kubelet would: the container's environment with fieldRefs and
secretKeyRefs resolved, ConfigMap and Secret volumes written to a
temporary directory, listen addresses moved to free loopback ports. Each
node must start, serve AUTH + INFO raft with raft_node_id = ordinal + 1,
and `concord health` must pass against its admin port.

Exits 1 listing every violation, 0 when there is none.
"""

import base64
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

import yaml

errors = []


def err(msg):
    errors.append(msg)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_value(env, name):
    for e in env:
        if e["name"] == name:
            return e.get("value")
    return None


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def check_container(where, c):
    for probe in ("livenessProbe", "readinessProbe"):
        if probe not in c:
            err(f"{where}: no {probe}")
    res = c.get("resources", {})
    for part in ("requests", "limits"):
        for what in ("cpu", "memory"):
            if what not in res.get(part, {}):
                err(f"{where}: no resources.{part}.{what}")


def check(docs, secrets):
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    sets = by_kind.get("StatefulSet", [])
    if len(sets) != 1:
        err(f"expected one StatefulSet, found {len(sets)}")
        return None
    sts = sets[0]
    name, ns = sts["metadata"]["name"], sts["metadata"].get("namespace", "default")
    spec = sts["spec"]
    replicas = spec.get("replicas", 1)
    pod = spec["template"]
    pod_labels = pod["metadata"].get("labels", {})
    pspec = pod["spec"]

    if spec.get("podManagementPolicy") != "Parallel":
        err("podManagementPolicy is not Parallel (a new cluster's pods must start together)")
    if not labels_match(spec["selector"]["matchLabels"], pod_labels):
        err("the StatefulSet's selector does not match its pod labels")

    for c in pspec.get("initContainers", []):
        check_container(f"initContainer {c['name']}", c)
    for c in pspec["containers"]:
        check_container(f"container {c['name']}", c)

    main = next((c for c in pspec["containers"] if c["name"] == "concord"), None)
    if main is None:
        err("no container named concord")
        return None
    env = main.get("env", [])
    names = [e["name"] for e in env]
    mounts = {m["mountPath"]: m["name"] for m in main.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pspec.get("volumes", [])}
    ports = {p.get("name"): p["containerPort"] for p in main.get("ports", [])}

    # $(VAR) references: Kubernetes expands only variables defined earlier.
    for i, e in enumerate(env):
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", "") or ""):
            if ref not in names[:i]:
                err(f"env {e['name']} uses $({ref}), which is not defined before it")
    if len(set(names)) != len(names):
        err(f"env names repeat: {names}")

    pod_name = next((e for e in env if e["name"] == "POD_NAME"), None)
    if not pod_name or pod_name.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        err("POD_NAME is not the downward API's metadata.name")

    # --initial-cluster against replicas, the headless Service and the namespace.
    service_name = spec.get("serviceName")
    headless = [
        s for s in by_kind.get("Service", [])
        if s["metadata"]["name"] == service_name and s["metadata"].get("namespace", "default") == ns
    ]
    if not headless:
        err(f"serviceName {service_name}: no such Service in namespace {ns}")
    else:
        h = headless[0]["spec"]
        if h.get("clusterIP") != "None":
            err(f"Service {service_name} is not headless (clusterIP: None)")
        if h.get("publishNotReadyAddresses") is not True:
            err(f"Service {service_name} does not publish not-ready addresses")
        if not labels_match(h.get("selector"), pod_labels):
            err(f"Service {service_name} does not select the pods")

    peer_listen = env_value(env, "CONCORD_PEER_LISTEN")
    initial = env_value(env, "CONCORD_INITIAL_CLUSTER")
    members = {}
    if not initial:
        err("CONCORD_INITIAL_CLUSTER is not set")
    else:
        for part in initial.split(","):
            ident, addr = part.split("=", 1)
            members[int(ident)] = addr
        if len(members) != replicas:
            err(f"replicas is {replicas} but --initial-cluster has {len(members)} members")
        if sorted(members) != list(range(1, replicas + 1)):
            err(f"--initial-cluster ids are {sorted(members)}, not 1..{replicas}")
        for ident, addr in sorted(members.items()):
            host, port = addr.rsplit(":", 1)
            want = f"{name}-{ident - 1}.{service_name}.{ns}.svc"
            if host not in (want, want + ".cluster.local"):
                err(f"member {ident} is {host}, expected {want} (pod {name}-{ident - 1} of Service {service_name} in namespace {ns})")
            if peer_listen and int(port) != port_of(peer_listen):
                err(f"member {ident} uses port {port}, the peer port is {port_of(peer_listen)}")
            if int(port) != ports.get("peer"):
                err(f"member {ident} uses port {port}, the container's peer port is {ports.get('peer')}")

    # Node ids: ordinal + 1, from a per-pod file in a ConfigMap.
    node_files = {}
    if "CONCORD_NODE_ID" in names:
        err("CONCORD_NODE_ID is set in the pod template: every pod would get the same id")
    config = env_value(env, "CONCORD_CONFIG") or ""
    directory, _, file = config.rpartition("/")
    if file != "$(POD_NAME).toml":
        err(f"CONCORD_CONFIG is {config!r}, not <dir>/$(POD_NAME).toml: no per-pod node id")
    elif directory not in mounts or "configMap" not in volumes.get(mounts[directory], {}):
        err(f"CONCORD_CONFIG's directory {directory} is not a mounted ConfigMap")
    else:
        cm_name = volumes[mounts[directory]]["configMap"]["name"]
        cms = [
            c for c in by_kind.get("ConfigMap", [])
            if c["metadata"]["name"] == cm_name and c["metadata"].get("namespace", "default") == ns
        ]
        if not cms:
            err(f"ConfigMap {cm_name} is not in the output")
        else:
            data = cms[0].get("data", {})
            want = {f"{name}-{o}.toml" for o in range(replicas)}
            if set(data) != want:
                err(f"ConfigMap {cm_name} has {sorted(data)}, expected {sorted(want)}")
            for o in range(replicas):
                text = data.get(f"{name}-{o}.toml")
                if text is None:
                    continue
                parsed = tomllib.loads(text)
                if parsed != {"node-id": o + 1}:
                    err(f"{name}-{o}.toml is {parsed}, expected {{'node-id': {o + 1}}}")
                node_files[o] = (directory, f"{name}-{o}.toml", text)

    # Probes on the admin port.
    admin = env_value(env, "CONCORD_ADMIN_LISTEN")
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        get = main.get(probe, {}).get("httpGet", {})
        port = get.get("port")
        port = ports.get(port, port)
        if get.get("path") != path:
            err(f"{probe} asks {get.get('path')}, expected {path}")
        if not admin or port != port_of(admin):
            err(f"{probe} port {port} is not the admin port ({admin})")
    if "preStop" not in main.get("lifecycle", {}):
        err("no preStop hook")

    # Peers authenticated; secrets mounted.
    secret_file = env_value(env, "CONCORD_PEER_SECRET_FILE")
    if not secret_file and env_value(env, "CONCORD_PEER_TLS") != "true":
        err("peers are not authenticated (CONCORD_PEER_SECRET_FILE or CONCORD_PEER_TLS)")
    if secret_file:
        d = secret_file.rpartition("/")[0]
        if "secret" not in volumes.get(mounts.get(d, ""), {}):
            err(f"CONCORD_PEER_SECRET_FILE {secret_file} is not in a mounted Secret")
    pass_ref = next((e for e in env if e["name"] == "CONCORD_REQUIREPASS"), {})
    if "secretKeyRef" not in pass_ref.get("valueFrom", {}):
        err("CONCORD_REQUIREPASS does not come from a Secret")

    data_dir = env_value(env, "CONCORD_DATA_DIR")
    claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    if mounts.get(data_dir) not in claims:
        err(f"CONCORD_DATA_DIR {data_dir} is not a volumeClaimTemplate's mount")
    if not pspec.get("securityContext", {}).get("runAsNonRoot"):
        err("the pod does not require runAsNonRoot")

    # Every Secret key the pod reads exists.
    have = {(s["metadata"]["name"], k) for s in secrets for k in s.get("data", {})}
    needed = set()
    for e in env:
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            needed.add((ref["name"], ref["key"]))
    for v in volumes.values():
        s = v.get("secret")
        if s:
            keys = [i["key"] for i in s.get("items", [])]
            if not keys:
                keys = [k for (n, k) in have if n == s["secretName"]] or ["(any key)"]
            needed |= {(s["secretName"], k) for k in keys}
            if s.get("defaultMode", 0o644) & 0o007:
                err(f"Secret volume {v['name']} is readable by others (defaultMode {oct(s['defaultMode'])})")
    for n, k in sorted(needed - have):
        err(f"the pods read Secret {n} key {k}, which make-secrets.sh does not make")
    if "CONCORD_TLS_CERT_FILE" in names:
        tls_vol = next((v for v in volumes.values() if v.get("secret", {}).get("secretName") == "concord-tls"), None)
        if tls_vol:
            for o in range(replicas):
                for ext in ("pem", "key"):
                    if ("concord-tls", f"{name}-{o}.{ext}") not in have:
                        err(f"Secret concord-tls has no {name}-{o}.{ext}")

    # The disruption budget and the client Service.
    pdbs = [p for p in by_kind.get("PodDisruptionBudget", []) if labels_match(p["spec"]["selector"]["matchLabels"], pod_labels)]
    if not pdbs:
        err("no PodDisruptionBudget selects the pods")
    elif pdbs[0]["spec"].get("maxUnavailable") != 1:
        err(f"PodDisruptionBudget maxUnavailable is {pdbs[0]['spec'].get('maxUnavailable')}, expected 1")
    clients = [
        s for s in by_kind.get("Service", [])
        if s["spec"].get("clusterIP") != "None" and labels_match(s["spec"].get("selector"), pod_labels)
    ]
    if not clients or not any(p.get("targetPort") in ("redis", ports.get("redis")) for p in clients[0]["spec"]["ports"]):
        err("no client Service sends port 6379 to the pods")

    return {
        "name": name, "ns": ns, "replicas": replicas, "env": env, "mounts": mounts,
        "volumes": volumes, "node_files": node_files, "docs": docs,
    }


# ---- starting each pod's node on this machine --------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp(sock, *args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    f = sock.makefile("rb")
    line = f.readline().rstrip(b"\r\n")
    if line[:1] == b"$":
        n = int(line[1:])
        return f.read(n + 2)[:-2].decode() if n >= 0 else None
    if line[:1] == b"-":
        raise RuntimeError(line[1:].decode())
    return line[1:].decode()


def start_pods(info, secrets, binary):
    name, ns = info["name"], info["ns"]
    secret_data = {
        s["metadata"]["name"]: {k: base64.b64decode(v) for k, v in s.get("data", {}).items()}
        for s in secrets
    }
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in info["docs"] if c["kind"] == "ConfigMap"}
    for ordinal in range(info["replicas"]):
        pod = f"{name}-{ordinal}"
        with tempfile.TemporaryDirectory(prefix=f"concord-{pod}-") as tmp:
            # Volumes as the kubelet would mount them, under tmp.
            remap = {}
            for mount, vol_name in info["mounts"].items():
                local = os.path.join(tmp, vol_name)
                os.makedirs(local, exist_ok=True)
                remap[mount] = local
                vol = info["volumes"].get(vol_name, {})
                files = {}
                if "configMap" in vol:
                    files = {k: v.encode() for k, v in configmaps[vol["configMap"]["name"]].items()}
                elif "secret" in vol:
                    data = secret_data.get(vol["secret"]["secretName"], {})
                    items = vol["secret"].get("items")
                    files = {i["path"]: data[i["key"]] for i in items} if items else data
                for fname, content in files.items():
                    with open(os.path.join(local, fname), "wb") as f:
                        f.write(content)
            ports = {}
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            for e in info["env"]:
                value = e.get("value")
                src = e.get("valueFrom", {})
                if "fieldRef" in src:
                    value = {"metadata.name": pod, "metadata.namespace": ns}[src["fieldRef"]["fieldPath"]]
                elif "secretKeyRef" in src:
                    ref = src["secretKeyRef"]
                    value = secret_data[ref["name"]][ref["key"]].decode()
                value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)
                for mount, local in sorted(remap.items(), key=lambda kv: -len(kv[0])):
                    if value == mount or value.startswith(mount + "/"):
                        value = local + value[len(mount):]
                        break
                if e["name"] in ("CONCORD_LISTEN", "CONCORD_PEER_LISTEN", "CONCORD_ADMIN_LISTEN", "CONCORD_TLS_LISTEN"):
                    ports[e["name"]] = free_port()
                    value = f"127.0.0.1:{ports[e['name']]}"
                env[e["name"]] = value
            log = open(os.path.join(tmp, "log"), "w+")
            proc = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                node_id, deadline, last = None, time.time() + 15, None
                while time.time() < deadline and proc.poll() is None:
                    try:
                        with socket.create_connection(("127.0.0.1", ports["CONCORD_LISTEN"]), timeout=2) as s:
                            resp(s, "AUTH", env["CONCORD_REQUIREPASS"])
                            text = resp(s, "INFO", "raft")
                            node_id = int(re.search(r"raft_node_id:(\d+)", text).group(1))
                            break
                    except (OSError, RuntimeError, AttributeError) as e:
                        last = e
                        time.sleep(0.2)
                if node_id != ordinal + 1:
                    log.seek(0)
                    err(f"pod {pod}: node id {node_id}, expected {ordinal + 1} ({last}); its log:\n{log.read()[-2000:]}")
                    continue
                health = subprocess.run(
                    [binary, "health", "--admin", f"127.0.0.1:{ports['CONCORD_ADMIN_LISTEN']}"],
                    capture_output=True, text=True, timeout=15,
                )
                if health.returncode != 0:
                    err(f"pod {pod}: concord health failed: {health.stderr.strip()}")
                print(f"   pod {pod}: started as node {node_id}, concord health: exit {health.returncode}")
            finally:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    err(f"pod {pod}: did not stop within 15 s of SIGTERM")
                log.close()


def main():
    args = sys.argv[1:]
    binary = None
    if "--start" in args:
        i = args.index("--start")
        binary = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    docs, secrets = load(args[0]), load(args[1])
    info = check(docs, secrets)
    if info and binary and not errors:
        start_pods(info, secrets, binary)
    for e in errors:
        print(f"   FAIL {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
