//! Rate limits and circuit breakers on a 3-node cluster of real processes:
//! a limit holds exactly with clients hammering every node at once, and a
//! breaker shared by clients on different nodes trips, half-opens and
//! closes as configured, across the loss of the leader.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cluster::Cluster;
use common::wait_for;
use redis::{Connection, Value};

/// A FIXED window of 100 years: aligned to the epoch, it does not end
/// while the test runs.
const LONG_WINDOW_MS: u64 = 3_153_600_000_000;
const WAIT: Duration = Duration::from_secs(60);

fn acquire(con: &mut Connection, key: &str, algorithm: &str, limit: u64) -> Vec<i64> {
    redis::cmd("RATELIMIT.ACQUIRE")
        .arg(key)
        .arg(algorithm)
        .arg(limit)
        .arg(LONG_WINDOW_MS)
        .query(con)
        .expect("RATELIMIT.ACQUIRE")
}

fn config(con: &mut Connection, name: &str, failures: u64, cooldown_ms: u64, probes: u64) {
    let reply: String = redis::cmd("BREAKER.CONFIG")
        .arg(name)
        .arg("FAILURES")
        .arg(failures)
        .arg("WINDOW")
        .arg(60_000)
        .arg("COOLDOWN")
        .arg(cooldown_ms)
        .arg("PROBES")
        .arg(probes)
        .query(con)
        .expect("BREAKER.CONFIG");
    assert_eq!(reply, "OK");
}

fn allow(con: &mut Connection, name: &str) -> (i64, String) {
    redis::cmd("BREAKER.ALLOW")
        .arg(name)
        .query(con)
        .expect("BREAKER.ALLOW")
}

fn record(con: &mut Connection, name: &str, result: &str) -> String {
    redis::cmd("BREAKER.RECORD")
        .arg(name)
        .arg(result)
        .query(con)
        .expect("BREAKER.RECORD")
}

/// BREAKER.STATE as a map, or None if the node could not answer (no
/// leader yet).
fn state(con: &mut Connection, name: &str) -> Option<HashMap<String, Value>> {
    redis::cmd("BREAKER.STATE").arg(name).query(con).ok()
}

fn phase(state: &HashMap<String, Value>) -> String {
    redis::from_redis_value(&state["state"]).expect("state is a string")
}

fn int(state: &HashMap<String, Value>, field: &str) -> i64 {
    redis::from_redis_value(&state[field]).expect("an integer field")
}

fn wait_for_phase(con: &mut Connection, name: &str, wanted: &str) -> HashMap<String, Value> {
    wait_for(&format!("breaker {name} to be {wanted}"), WAIT, || {
        state(con, name).filter(|s| phase(s) == wanted)
    })
}

#[test]
fn a_rate_limit_is_exact_with_clients_on_every_node() {
    let cluster = Cluster::start(3, &[]);
    let hammers: Vec<_> = (1..=3u64)
        .map(|id| {
            let mut con = cluster.client(id);
            std::thread::spawn(move || {
                let (mut fixed, mut bucket) = (0, 0);
                for _ in 0..60 {
                    fixed += acquire(&mut con, "api", "FIXED", 100)[0];
                    bucket += acquire(&mut con, "burst", "BUCKET", 50)[0];
                }
                (fixed, bucket)
            })
        })
        .collect();
    let (mut fixed, mut bucket) = (0, 0);
    for hammer in hammers {
        let (f, b) = hammer.join().expect("client thread");
        fixed += f;
        bucket += b;
    }
    assert_eq!(fixed, 100, "FIXED 100 admitted exactly 100 of 180");
    assert_eq!(bucket, 50, "a bucket of 50 admitted exactly 50 of 180");
    for id in 1..=3u64 {
        let mut con = cluster.client(id);
        let peek: Vec<i64> = redis::cmd("RATELIMIT.PEEK")
            .arg("api")
            .arg("FIXED")
            .arg(100)
            .arg(LONG_WINDOW_MS)
            .query(&mut con)
            .expect("RATELIMIT.PEEK");
        assert_eq!(&peek[..2], &[0, 0], "node {id} sees the limit used up");
        assert!(peek[2] > 0, "node {id}: retry-after {}", peek[2]);
    }
    cluster.converged(&[1, 2, 3]);
}

#[test]
fn a_breaker_trips_half_opens_and_closes_for_clients_on_different_nodes() {
    let cluster = Cluster::start(3, &[]);
    let mut c: Vec<Connection> = (1..=3u64).map(|id| cluster.client(id)).collect();
    // A cooldown far longer than the test, so OPEN is checked without a
    // race; shortened below (CONFIG keeps the state).
    config(&mut c[0], "payments", 3, 3_600_000, 2);
    assert_eq!(allow(&mut c[1], "payments"), (1, "CLOSED".into()));
    assert_eq!(record(&mut c[0], "payments", "FAILURE"), "CLOSED");
    assert_eq!(record(&mut c[1], "payments", "FAILURE"), "CLOSED");
    assert_eq!(record(&mut c[2], "payments", "FAILURE"), "OPEN");
    for con in c.iter_mut() {
        assert_eq!(allow(con, "payments"), (0, "OPEN".into()));
    }
    let opened = state(&mut c[1], "payments").expect("BREAKER.STATE");
    assert_eq!(int(&opened, "failures"), 3);

    config(&mut c[1], "payments", 3, 200, 2);
    let half = wait_for_phase(&mut c[2], "payments", "HALF_OPEN");
    assert_eq!(int(&half, "probes-left"), 2);
    assert_eq!(allow(&mut c[0], "payments"), (1, "HALF_OPEN".into()));
    // Long again once half open: with every probe out, another cooldown
    // without a verdict admits them again, and on a loaded machine 200 ms
    // can pass between two of these calls.
    config(&mut c[0], "payments", 3, 3_600_000, 2);
    assert_eq!(allow(&mut c[1], "payments"), (1, "HALF_OPEN".into()));
    assert_eq!(allow(&mut c[2], "payments"), (0, "HALF_OPEN".into()));
    // A failed probe opens it again, its cooldown starting anew.
    assert_eq!(record(&mut c[0], "payments", "FAILURE"), "OPEN");
    let reopened = state(&mut c[2], "payments").expect("BREAKER.STATE");
    assert!(int(&reopened, "opened-at") > int(&opened, "opened-at"));

    config(&mut c[1], "payments", 3, 200, 2);
    wait_for_phase(&mut c[1], "payments", "HALF_OPEN");
    assert_eq!(allow(&mut c[2], "payments"), (1, "HALF_OPEN".into()));
    config(&mut c[2], "payments", 3, 3_600_000, 2);
    assert_eq!(allow(&mut c[0], "payments"), (1, "HALF_OPEN".into()));
    assert_eq!(record(&mut c[2], "payments", "SUCCESS"), "HALF_OPEN");
    assert_eq!(record(&mut c[0], "payments", "SUCCESS"), "CLOSED");
    for con in c.iter_mut() {
        let closed = state(con, "payments").expect("BREAKER.STATE");
        assert_eq!(phase(&closed), "CLOSED");
        assert_eq!(int(&closed, "failures"), 0);
        assert_eq!(allow(con, "payments"), (1, "CLOSED".into()));
    }
    cluster.converged(&[1, 2, 3]);
}

#[test]
fn an_open_breaker_and_a_used_limit_survive_the_leader() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let survivors: Vec<u64> = (1..=3u64).filter(|id| *id != leader).collect();
    let mut con = cluster.client(leader);
    config(&mut con, "db", 2, 3_600_000, 1);
    record(&mut con, "db", "FAILURE");
    assert_eq!(record(&mut con, "db", "FAILURE"), "OPEN");
    assert_eq!(acquire(&mut con, "logins", "SLIDING", 1)[0], 1);

    cluster.kill9(leader);
    let mut first = cluster.client(survivors[0]);
    let open = wait_for_phase(&mut first, "db", "OPEN");
    assert!(int(&open, "cooldown-left") > 0);
    cluster.leader_among(&survivors);
    assert_eq!(allow(&mut first, "db"), (0, "OPEN".into()));
    let denied = acquire(&mut first, "logins", "SLIDING", 1);
    assert_eq!(&denied[..2], &[0, 0], "the limit stays used up");

    let mut second = cluster.client(survivors[1]);
    config(&mut second, "db", 2, 100, 1);
    wait_for_phase(&mut first, "db", "HALF_OPEN");
    assert_eq!(allow(&mut second, "db"), (1, "HALF_OPEN".into()));
    // Long again before the probe is checked as out (see above).
    config(&mut second, "db", 2, 3_600_000, 1);
    assert_eq!(allow(&mut first, "db"), (0, "HALF_OPEN".into()));
    assert_eq!(record(&mut second, "db", "SUCCESS"), "CLOSED");
    assert_eq!(phase(&state(&mut first, "db").expect("STATE")), "CLOSED");
}
