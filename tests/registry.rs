//! The service registry on a 3-node cluster of real processes: picks shared
//! by clients on every node, liveness through TTLs and sessions, health
//! thresholds, and registry state across a leader's death.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::cluster::Cluster;
use common::wait_for;
use redis::{Connection, RedisResult, Value};

const WAIT: Duration = Duration::from_secs(30);

/// One instance as REGISTRY.LIST shows it.
#[derive(Debug, PartialEq)]
struct Listed {
    id: String,
    address: String,
    meta: Option<String>,
    healthy: bool,
    active: i64,
    session: Option<i64>,
}

fn list(c: &mut Connection, service: &str, all: bool) -> RedisResult<Vec<Listed>> {
    let mut cmd = redis::cmd("REGISTRY.LIST");
    cmd.arg(service);
    if all {
        cmd.arg("ALL");
    }
    let rows: Vec<Vec<Value>> = cmd.query(c)?;
    Ok(rows.into_iter().map(listed).collect())
}

/// A RESP2 map: field, value, field, value...
fn listed(flat: Vec<Value>) -> Listed {
    let fields: BTreeMap<String, Value> = flat
        .chunks(2)
        .map(|pair| {
            let name: String = redis::from_redis_value(&pair[0]).expect("field name");
            (name, pair[1].clone())
        })
        .collect();
    let get = |name: &str| fields.get(name).unwrap_or_else(|| panic!("no {name}"));
    Listed {
        id: redis::from_redis_value(get("id")).unwrap(),
        address: redis::from_redis_value(get("address")).unwrap(),
        meta: redis::from_redis_value(get("meta")).unwrap(),
        healthy: redis::from_redis_value::<i64>(get("healthy")).unwrap() == 1,
        active: redis::from_redis_value(get("active")).unwrap(),
        session: redis::from_redis_value(get("session")).unwrap(),
    }
}

fn ids(instances: &[Listed]) -> Vec<&str> {
    instances.iter().map(|i| i.id.as_str()).collect()
}

fn register(c: &mut Connection, service: &str, id: &str, ttl_ms: u64) -> i64 {
    redis::cmd("REGISTRY.REGISTER")
        .arg(service)
        .arg(id)
        .arg(format!("{id}.{service}.internal:80"))
        .arg(ttl_ms)
        .query(c)
        .unwrap()
}

fn pick(c: &mut Connection, service: &str, strategy: &str) -> Option<(String, String)> {
    redis::cmd("REGISTRY.PICK")
        .arg(service)
        .arg(strategy)
        .query(c)
        .unwrap()
}

fn picked_id(c: &mut Connection, service: &str, strategy: &str) -> String {
    pick(c, service, strategy).expect("a healthy instance").0
}

fn health(c: &mut Connection, service: &str, id: &str, reporter: &str, up: bool) -> i64 {
    redis::cmd("REGISTRY.HEALTH")
        .arg(service)
        .arg(id)
        .arg(reporter)
        .arg(if up { "UP" } else { "DOWN" })
        .query(c)
        .unwrap()
}

#[test]
fn round_robin_is_exact_for_concurrent_clients_on_every_node() {
    let cluster = Cluster::start(3, &[]);
    let mut c = cluster.client(1);
    for id in ["a", "b", "c"] {
        assert_eq!(register(&mut c, "api", id, 60_000), 1);
    }
    let pickers: Vec<_> = (1..=3u64)
        .map(|node| {
            let mut c = cluster.client(node);
            std::thread::spawn(move || {
                (0..100)
                    .map(|_| picked_id(&mut c, "api", "ROUND_ROBIN"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut counts = BTreeMap::new();
    for picker in pickers {
        for id in picker.join().unwrap() {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    let expected: BTreeMap<String, i32> = ["a", "b", "c"]
        .into_iter()
        .map(|id| (id.to_owned(), 100))
        .collect();
    assert_eq!(counts, expected);
    for node in 1..=3u64 {
        let instances = list(&mut cluster.client(node), "api", false).unwrap();
        assert_eq!(ids(&instances), ["a", "b", "c"], "LIST on node {node}");
    }
}

#[test]
fn least_connections_spreads_and_health_thresholds_steer_picks() {
    let cluster = Cluster::start(3, &[]);
    let mut clients: Vec<Connection> = (1..=3u64).map(|id| cluster.client(id)).collect();
    register(&mut clients[0], "db", "x", 60_000);
    register(&mut clients[1], "db", "y", 60_000);

    let picks: Vec<String> = (0..4)
        .map(|i| picked_id(&mut clients[i % 3], "db", "LEAST_CONNECTIONS"))
        .collect();
    assert_eq!(picks, ["x", "y", "x", "y"]);
    let done = |c: &mut Connection, id: &str| -> i64 {
        redis::cmd("REGISTRY.DONE")
            .arg("db")
            .arg(id)
            .query(c)
            .unwrap()
    };
    assert_eq!(done(&mut clients[2], "y"), 1);
    assert_eq!(done(&mut clients[0], "y"), 1);
    assert_eq!(done(&mut clients[1], "y"), 0, "active never goes below 0");
    let picks: Vec<String> = (0..3)
        .map(|i| picked_id(&mut clients[i % 3], "db", "LEAST_CONNECTIONS"))
        .collect();
    assert_eq!(picks, ["y", "y", "x"], "freed connections are picked first");
    let active: Vec<i64> = list(&mut clients[1], "db", false)
        .unwrap()
        .iter()
        .map(|i| i.active)
        .collect();
    assert_eq!(active, [3, 2]);

    let _: () = redis::cmd("REGISTRY.CONFIG")
        .arg("db")
        .arg("UNHEALTHY")
        .arg(2)
        .arg("HEALTHY")
        .arg(2)
        .query(&mut clients[0])
        .unwrap();
    assert_eq!(health(&mut clients[0], "db", "x", "probe-1", false), 1);
    assert_eq!(health(&mut clients[1], "db", "x", "probe-2", false), 0);
    for i in 0..6 {
        assert_eq!(picked_id(&mut clients[i % 3], "db", "ROUND_ROBIN"), "y");
        assert_eq!(
            picked_id(&mut clients[i % 3], "db", "LEAST_CONNECTIONS"),
            "y"
        );
    }
    assert_eq!(ids(&list(&mut clients[2], "db", false).unwrap()), ["y"]);
    let all = list(&mut clients[2], "db", true).unwrap();
    assert_eq!(ids(&all), ["x", "y"]);
    assert!(!all[0].healthy && all[1].healthy);

    assert_eq!(health(&mut clients[2], "db", "y", "probe-1", false), 1);
    assert_eq!(health(&mut clients[2], "db", "y", "probe-1", false), 0);
    assert_eq!(pick(&mut clients[0], "db", "ROUND_ROBIN"), None);

    assert_eq!(health(&mut clients[1], "db", "x", "probe-3", true), 0);
    assert_eq!(health(&mut clients[0], "db", "x", "probe-1", true), 1);
    assert_eq!(picked_id(&mut clients[1], "db", "ROUND_ROBIN"), "x");
    let err = redis::cmd("REGISTRY.HEALTH")
        .arg("db")
        .arg("gone")
        .arg("probe-1")
        .arg("UP")
        .query::<i64>(&mut clients[0])
        .unwrap_err();
    assert!(err.to_string().contains("no such instance"), "{err}");
}

#[test]
fn instances_end_with_their_ttl_or_their_session() {
    let cluster = Cluster::start(3, &[]);
    let mut c = cluster.client(2);
    // "kept" goes first: once "short" has lapsed, so has kept's first
    // deadline, and only its heartbeats can have kept it.
    register(&mut c, "api", "kept", 2_000);
    register(&mut c, "api", "short", 2_000);
    let mut heartbeats = cluster.client(3);
    let mut reader = cluster.client(1);
    let left = wait_for("the instance without heartbeats to go", WAIT, || {
        let beat: i64 = redis::cmd("REGISTRY.HEARTBEAT")
            .arg("api")
            .arg("kept")
            .query(&mut heartbeats)
            .unwrap();
        assert_eq!(beat, 1, "the heartbeated instance lapsed");
        let instances = list(&mut reader, "api", true).unwrap();
        (!ids(&instances).contains(&"short")).then_some(instances)
    });
    assert_eq!(
        ids(&left),
        ["kept"],
        "the instance registered first, kept alive by heartbeats, is still there"
    );

    let session: i64 = redis::cmd("SESSION.CREATE")
        .arg(60_000)
        .query(&mut c)
        .unwrap();
    let registered: i64 = redis::cmd("REGISTRY.REGISTER")
        .arg("web")
        .arg("w1")
        .arg("10.1.0.1:80")
        .arg(0)
        .arg("META")
        .arg(r#"{"zone":"eu-1"}"#)
        .arg("SESSION")
        .arg(session)
        .query(&mut c)
        .unwrap();
    assert_eq!(registered, 1);
    let instances = list(&mut reader, "web", false).unwrap();
    assert_eq!(
        instances,
        [Listed {
            id: "w1".into(),
            address: "10.1.0.1:80".into(),
            meta: Some(r#"{"zone":"eu-1"}"#.into()),
            healthy: true,
            active: 0,
            session: Some(session),
        }]
    );
    let destroyed: i64 = redis::cmd("SESSION.DESTROY")
        .arg(session)
        .query(&mut heartbeats)
        .unwrap();
    assert_eq!(destroyed, 1);
    assert!(list(&mut reader, "web", true).unwrap().is_empty());
    let services: Vec<(String, i64, i64)> =
        redis::cmd("REGISTRY.SERVICES").query(&mut reader).unwrap();
    assert_eq!(services, [("api".to_owned(), 1, 1)]);
}

#[test]
fn the_registry_survives_the_leaders_death() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let mut c = cluster.client(leader);
    for id in ["a", "b", "c"] {
        register(&mut c, "api", id, 600_000);
    }
    assert_eq!(picked_id(&mut c, "api", "ROUND_ROBIN"), "a");
    assert_eq!(picked_id(&mut c, "api", "LEAST_CONNECTIONS"), "a");
    assert_eq!(health(&mut c, "api", "c", "probe", false), 1);
    let before = list(&mut c, "api", true).unwrap();
    drop(c);

    cluster.kill9(leader);
    let survivor = (1..=3u64).find(|id| *id != leader).unwrap();
    let after = wait_for("a survivor to answer REGISTRY.LIST", WAIT, || {
        let client = redis::Client::open(cluster.url(survivor)).ok()?;
        let mut c = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        list(&mut c, "api", true).ok()
    });
    assert_eq!(after, before);
    let mut c = cluster.client(survivor);
    assert_eq!(
        picked_id(&mut c, "api", "ROUND_ROBIN"),
        "b",
        "the round-robin cursor survived"
    );
    assert_eq!(health(&mut c, "api", "c", "probe", false), 1);
    assert_eq!(
        health(&mut c, "api", "c", "probe", false),
        0,
        "the streak survived"
    );
}
