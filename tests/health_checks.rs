//! Health checks run by a real 3-node cluster against small HTTP and TCP
//! servers this test starts on loopback: thresholds counted in probes,
//! transitions published once and seen alike on every node, a check that
//! moves when the node that owns it dies, TCP and TTL checks.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::wait_for;
use redis::Value;

/// An HTTP server answering every request with the current status; it
/// remembers the status of each answer it gave, in order.
struct Endpoint {
    port: u16,
    status: Arc<AtomicU16>,
    answers: Arc<Mutex<Vec<u16>>>,
    hits: Arc<AtomicU64>,
}

impl Endpoint {
    fn start() -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(200));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicU64::new(0));
        let (s, a, h) = (status.clone(), answers.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 1024];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let code = s.load(Ordering::SeqCst);
                a.lock().unwrap().push(code);
                h.fetch_add(1, Ordering::SeqCst);
                let _ = stream.write_all(
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                );
            }
        });
        Endpoint {
            port,
            status,
            answers,
            hits,
        }
    }

    fn set(&self, code: u16) {
        self.status.store(code, Ordering::SeqCst);
    }

    /// Answers given with `code` since the first `from` answers.
    fn count_since(&self, from: usize, code: u16) -> usize {
        self.answers.lock().unwrap()[from..]
            .iter()
            .filter(|c| **c == code)
            .count()
    }

    fn answered(&self) -> usize {
        self.answers.lock().unwrap().len()
    }
}

/// The instance's map in REGISTRY.LIST ALL, from `id`'s node (stale reads:
/// what that node applied).
fn instance(
    cluster: &Cluster,
    node: u64,
    service: &str,
    id: &str,
) -> Option<HashMap<String, Value>> {
    let mut c = cluster.client(node);
    let _: () = redis::cmd("READMODE").arg("STALE").query(&mut c).ok()?;
    let list: Value = redis::cmd("REGISTRY.LIST")
        .arg(service)
        .arg("ALL")
        .query(&mut c)
        .ok()?;
    let Value::Array(items) = list else {
        return None;
    };
    items
        .into_iter()
        .map(to_map)
        .find(|m| matches!(m.get("id"), Some(Value::BulkString(b)) if b == id.as_bytes()))
}

fn to_map(v: Value) -> HashMap<String, Value> {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Map(pairs) => pairs,
        Value::Array(flat) => flat
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect(),
        other => panic!("not a map: {other:?}"),
    };
    pairs
        .into_iter()
        .map(|(k, v)| match k {
            Value::BulkString(k) => (String::from_utf8(k).unwrap(), v),
            other => panic!("key {other:?}"),
        })
        .collect()
}

fn int(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

fn check_field(m: &HashMap<String, Value>, field: &str) -> Option<Value> {
    match m.get("check")? {
        v @ (Value::Map(_) | Value::Array(_)) => to_map(v.clone()).get(field).cloned(),
        _ => None,
    }
}

fn healthy_everywhere(cluster: &Cluster, nodes: &[u64], service: &str, id: &str) -> Option<bool> {
    let mut seen = None;
    for node in nodes {
        let h = int(instance(cluster, *node, service, id)?.get("healthy"))? == 1;
        if seen.is_some_and(|s| s != h) {
            return None;
        }
        seen = Some(h);
    }
    seen
}

fn cmd(cluster: &Cluster, node: u64, args: &[&str]) -> Value {
    let mut c = cluster.client(node);
    redis::cmd(args[0]).arg(&args[1..]).query(&mut c).unwrap()
}

/// A subscriber to `__registry__:health` on `node`, collecting messages.
fn watch_health(cluster: &Cluster, node: u64) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let client = redis::Client::open(cluster.url(node)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut con = client.get_connection().unwrap();
        let mut pubsub = con.as_pubsub();
        pubsub.subscribe("__registry__:health").unwrap();
        tx.send(()).unwrap();
        while let Ok(msg) = pubsub.get_message() {
            out.lock()
                .unwrap()
                .push(msg.get_payload::<String>().unwrap());
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    seen
}

/// Registers `service id` with the thresholds (UNHEALTHY, HEALTHY) and
/// an HTTP check of `url`, through different nodes.
fn checked_instance(
    cluster: &Cluster,
    (service, id): (&str, &str),
    (unhealthy, healthy): (u32, u32),
    url: &str,
    (interval_ms, timeout_ms): (u32, u32),
) {
    cmd(
        cluster,
        1,
        &["REGISTRY.REGISTER", service, id, "127.0.0.1:1", "600000"],
    );
    let (u, h) = (unhealthy.to_string(), healthy.to_string());
    cmd(
        cluster,
        2,
        &["REGISTRY.CONFIG", service, "UNHEALTHY", &u, "HEALTHY", &h],
    );
    let (i, t) = (interval_ms.to_string(), timeout_ms.to_string());
    cmd(
        cluster,
        3,
        &[
            "REGISTRY.CHECK",
            service,
            id,
            "HTTP",
            url,
            "INTERVAL",
            &i,
            "TIMEOUT",
            &t,
        ],
    );
}

/// Every watcher saw exactly `expected`, in order.
fn assert_transitions(watchers: &[Arc<Mutex<Vec<String>>>], expected: &[&str]) {
    for (i, seen) in watchers.iter().enumerate() {
        let got = wait_for("the transitions to arrive", Duration::from_secs(10), || {
            let seen = seen.lock().unwrap().clone();
            (seen.len() >= expected.len()).then_some(seen)
        });
        assert_eq!(got, expected, "watcher {i}");
    }
}

#[test]
fn an_http_check_flips_after_exactly_its_thresholds_alike_on_every_node() {
    let cluster = Cluster::start(3, &[]);
    let endpoint = Endpoint::start();
    let watchers: Vec<_> = (1..=3).map(|n| watch_health(&cluster, n)).collect();
    let url = format!("http://127.0.0.1:{}/health", endpoint.port);
    checked_instance(&cluster, ("web", "w1"), (3, 2), &url, (400, 300));

    // Probed and passing: the first result is recorded, and then a steady
    // check writes nothing (the recorded result ages while probes go on).
    let owner = wait_for(
        "the check to get an owner and a result",
        Duration::from_secs(10),
        || {
            let m = instance(&cluster, 1, "web", "w1")?;
            let owner = int(check_field(&m, "owner").as_ref())?;
            let ok = int(check_field(&m, "last-ok").as_ref())?;
            (owner != 0 && ok == 1).then_some(owner)
        },
    );
    assert!((1..=3).contains(&owner));
    let hits = endpoint.hits.load(Ordering::SeqCst);
    wait_for("three more probes", Duration::from_secs(10), || {
        (endpoint.hits.load(Ordering::SeqCst) >= hits + 3).then_some(())
    });
    let m = instance(&cluster, 1, "web", "w1").unwrap();
    let age = int(check_field(&m, "last-age").as_ref()).unwrap();
    assert!(age >= 800, "the result was written again {age} ms ago");
    assert_eq!(
        healthy_everywhere(&cluster, &[1, 2, 3], "web", "w1"),
        Some(true)
    );

    // 503: unhealthy after exactly three failed probes.
    let from = endpoint.answered();
    endpoint.set(503);
    wait_for(
        "the instance to turn unhealthy",
        Duration::from_secs(20),
        || (!healthy_everywhere(&cluster, &[1, 2, 3], "web", "w1")?).then_some(()),
    );
    let failed = endpoint.count_since(from, 503);
    assert_eq!(failed, 3, "turned unhealthy after {failed} failed probes");
    let m = instance(&cluster, 2, "web", "w1").unwrap();
    assert_eq!(
        text(check_field(&m, "last-detail").as_ref()).as_deref(),
        Some("HTTP 503")
    );

    // 200 again: healthy after exactly two good ones.
    let from = endpoint.answered();
    endpoint.set(200);
    wait_for(
        "the instance to turn healthy",
        Duration::from_secs(20),
        || healthy_everywhere(&cluster, &[1, 2, 3], "web", "w1")?.then_some(()),
    );
    let good = endpoint.count_since(from, 200);
    assert_eq!(good, 2, "turned healthy after {good} good probes");

    // Each node's subscriber saw the two transitions, once each, in order.
    assert_transitions(&watchers, &["web w1 down", "web w1 up"]);
}

#[test]
fn a_check_moves_when_its_owner_dies_and_no_transition_is_lost_or_doubled() {
    let mut cluster = Cluster::start(3, &[]);
    let endpoint = Endpoint::start();
    let url = format!("http://127.0.0.1:{}/", endpoint.port);
    checked_instance(&cluster, ("api", "a1"), (2, 1), &url, (2000, 500));
    let owner = wait_for("an owner", Duration::from_secs(10), || {
        let m = instance(&cluster, 1, "api", "a1")?;
        let owner = int(check_field(&m, "owner").as_ref())?;
        (owner != 0).then_some(owner as u64)
    });
    let others: Vec<u64> = (1..=3).filter(|n| *n != owner).collect();
    let watchers: Vec<_> = others.iter().map(|n| watch_health(&cluster, *n)).collect();
    cluster.kill9(owner);
    let killed = Instant::now();
    let moved_to = wait_for("the check to move", Duration::from_secs(20), || {
        let m = instance(&cluster, others[0], "api", "a1")?;
        let now_owner = int(check_field(&m, "owner").as_ref())? as u64;
        (now_owner != owner).then_some(now_owner)
    });
    let took = killed.elapsed();
    println!("check moved from node {owner} to node {moved_to} in {took:?}");
    assert!(others.contains(&moved_to));
    // Within two intervals of 2 s: the leader counts a node gone after two
    // election timeouts (2 s), plus a new election when the owner led.
    assert!(took < Duration::from_secs(2 + 2 + 2), "took {took:?}");

    // The new owner probes: a failure streak turns it down once, seen once
    // on both live nodes.
    endpoint.set(500);
    wait_for(
        "the instance to turn unhealthy",
        Duration::from_secs(20),
        || (!healthy_everywhere(&cluster, &others, "api", "a1")?).then_some(()),
    );
    endpoint.set(200);
    wait_for(
        "the instance to turn healthy",
        Duration::from_secs(20),
        || healthy_everywhere(&cluster, &others, "api", "a1")?.then_some(()),
    );
    assert_transitions(&watchers, &["api a1 down", "api a1 up"]);
}

/// A TCP check of `addr` on db/d1, every 200 ms.
fn tcp_check(cluster: &Cluster, node: u64, addr: &str) {
    cmd(
        cluster,
        node,
        &["REGISTRY.CHECK", "db", "d1", "TCP", addr, "INTERVAL", "200"],
    );
}

#[test]
fn a_tcp_check_of_a_closed_port_fails_and_a_ttl_check_lapses() {
    let cluster = Cluster::start(3, &[]);
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    cmd(
        &cluster,
        1,
        &["REGISTRY.REGISTER", "db", "d1", "127.0.0.1:1", "600000"],
    );
    cmd(
        &cluster,
        1,
        &["REGISTRY.REGISTER", "db", "d2", "127.0.0.1:2", "600000"],
    );
    cmd(
        &cluster,
        1,
        &["REGISTRY.CONFIG", "db", "UNHEALTHY", "1", "HEALTHY", "1"],
    );
    let addr = format!("127.0.0.1:{closed}");
    tcp_check(&cluster, 2, &addr);
    cmd(&cluster, 2, &["REGISTRY.CHECK", "db", "d2", "TTL", "500"]);
    wait_for("the TCP check to fail", Duration::from_secs(10), || {
        let m = instance(&cluster, 3, "db", "d1")?;
        let detail = text(check_field(&m, "last-detail").as_ref())?;
        (detail == "connection refused" && int(m.get("healthy")) == Some(0)).then_some(())
    });
    wait_for("the TTL check to lapse", Duration::from_secs(10), || {
        let m = instance(&cluster, 1, "db", "d2")?;
        let detail = text(check_field(&m, "last-detail").as_ref())?;
        (detail == "no report within the TTL" && int(m.get("healthy")) == Some(0)).then_some(())
    });
    // Reporting UP brings the TTL instance back.
    cmd(&cluster, 3, &["REGISTRY.HEALTH", "db", "d2", "self", "UP"]);
    assert_eq!(healthy_everywhere(&cluster, &[3], "db", "d2"), Some(true));
    // A listening port passes.
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("127.0.0.1:{}", open.local_addr().unwrap().port());
    tcp_check(&cluster, 1, &addr);
    wait_for("the TCP check to pass", Duration::from_secs(10), || {
        let m = instance(&cluster, 2, "db", "d1")?;
        (int(m.get("healthy")) == Some(1)
            && text(check_field(&m, "last-detail").as_ref()).as_deref() == Some("connected"))
        .then_some(())
    });
}

#[test]
fn a_leader_change_leaves_checks_with_their_owners() {
    let cluster = Cluster::start(3, &[]);
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("127.0.0.1:{}", open.local_addr().unwrap().port());
    for id in ["s1", "s2", "s3"] {
        cmd(
            &cluster,
            1,
            &["REGISTRY.REGISTER", "svc", id, "127.0.0.1:1", "600000"],
        );
        cmd(
            &cluster,
            1,
            &["REGISTRY.CHECK", "svc", id, "TCP", &addr, "INTERVAL", "500"],
        );
    }
    let owners = || -> Option<Vec<i64>> {
        ["s1", "s2", "s3"]
            .iter()
            .map(|id| {
                let m = instance(&cluster, 1, "svc", id)?;
                int(check_field(&m, "owner").as_ref()).filter(|o| *o != 0)
            })
            .collect()
    };
    let before = wait_for(
        "every check to get an owner",
        Duration::from_secs(10),
        owners,
    );
    let mut sorted = before.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 2, 3], "spread one per node");
    // Leadership moves to another node: it heard only from the old leader
    // while it followed, yet no check may move.
    let leader = cluster.leader();
    let target = (1..=3u64).find(|id| *id != leader).unwrap();
    let mut c = cluster.client(leader);
    let _: () = redis::cmd("RAFT.TRANSFER")
        .arg(target)
        .query(&mut c)
        .unwrap();
    assert_eq!(cluster.leader(), target);
    // Past two election timeouts of the new leader, the owners are the same.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if let Some(now) = owners() {
            assert_eq!(now, before, "a check moved after the leader changed");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
