//! Locks and sessions through real processes: waiting clients answered on
//! whichever node they are connected to, fencing tokens across a leader
//! kill, session expiry handing a lock to the next waiter, LOCK.GUARD, and
//! sessions surviving a leader change.

mod common;

use std::io::Write;
use std::time::Duration;

use common::cluster::Cluster;
use common::{wait_for, Server};
use redis::{Commands, Value};

fn acquire(c: &mut redis::Connection, name: &str, owner: &str, args: &[&str]) -> Option<i64> {
    redis::cmd("LOCK.ACQUIRE")
        .arg(name)
        .arg(owner)
        .arg(args)
        .query(c)
        .unwrap()
}

fn release(c: &mut redis::Connection, name: &str, token: i64) -> i64 {
    redis::cmd("LOCK.RELEASE")
        .arg(name)
        .arg(token)
        .query(c)
        .unwrap()
}

/// A LOCK.INFO field, or None when the lock is free.
fn info_field(c: &mut redis::Connection, name: &str, field: &str) -> Option<Value> {
    let info: Value = redis::cmd("LOCK.INFO").arg(name).query(c).ok()?;
    let Value::Array(items) = info else {
        return None;
    };
    items
        .chunks(2)
        .find(|kv| kv[0] == Value::BulkString(field.as_bytes().to_vec()))
        .map(|kv| kv[1].clone())
}

fn follower_of(cluster: &Cluster, leader: u64) -> u64 {
    cluster
        .running()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower")
}

#[test]
fn a_waiter_is_answered_when_the_lock_is_released() {
    let server = Server::start();
    let mut holder = server.client();
    let first = acquire(&mut holder, "job", "a", &["10000"]).expect("granted");
    let url = server.url();
    let waiter = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        acquire(&mut c, "job", "b", &["10000", "WAIT", "0"])
    });
    wait_for("the waiter to queue", Duration::from_secs(10), || {
        (info_field(&mut holder, "job", "waiters")? == Value::Int(1)).then_some(())
    });
    wait_for(
        "INFO to count the blocked client",
        Duration::from_secs(10),
        || {
            let info: String = redis::cmd("INFO").arg("clients").query(&mut holder).ok()?;
            info.contains("blocked_clients:1\r\n").then_some(())
        },
    );
    assert_eq!(release(&mut holder, "job", first), 1);
    let second = waiter.join().unwrap().expect("granted to the waiter");
    assert!(second > first, "tokens grow: {first} then {second}");
    assert_eq!(
        info_field(&mut holder, "job", "owner"),
        Some(Value::BulkString(b"b".to_vec()))
    );
    // A wait that runs out answers nil.
    let mut c = server.client();
    assert_eq!(acquire(&mut c, "job", "c", &["1000", "WAIT", "200"]), None);
}

#[test]
fn a_waiter_that_disconnects_gives_up_its_place() {
    let server = Server::start();
    let mut c = server.client();
    let token = acquire(&mut c, "res", "a", &["10000"]).expect("granted");
    let mut raw = server.raw();
    raw.write_all(b"LOCK.ACQUIRE res gone 10000 WAIT 0\r\n")
        .unwrap();
    wait_for("the raw client to queue", Duration::from_secs(10), || {
        (info_field(&mut c, "res", "waiters")? == Value::Int(1)).then_some(())
    });
    drop(raw);
    wait_for(
        "the departed waiter to leave the queue",
        Duration::from_secs(10),
        || (info_field(&mut c, "res", "waiters")? == Value::Int(0)).then_some(()),
    );
    assert_eq!(release(&mut c, "res", token), 1);
    assert_eq!(info_field(&mut c, "res", "owner"), None, "nobody holds it");
}

#[test]
fn fencing_tokens_grow_across_a_leader_kill() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let mut c = cluster.client(follower_of(&cluster, leader));
    let mut tokens = Vec::new();
    for _ in 0..5 {
        let t = acquire(&mut c, "fenced", "x", &["5000"]).expect("free");
        assert_eq!(release(&mut c, "fenced", t), 1);
        tokens.push(t);
    }
    cluster.kill9(leader);
    let survivor = cluster.leader();
    let mut c = cluster.client(survivor);
    for _ in 0..5 {
        let t = wait_for(
            "a grant after the failover",
            Duration::from_secs(15),
            || {
                redis::cmd("LOCK.ACQUIRE")
                    .arg("fenced")
                    .arg("x")
                    .arg(5000)
                    .query::<Option<i64>>(&mut c)
                    .ok()
                    .flatten()
            },
        );
        assert_eq!(release(&mut c, "fenced", t), 1);
        tokens.push(t);
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens strictly increase: {tokens:?}"
    );
}

#[test]
fn a_lock_of_an_expired_session_goes_to_the_next_waiter_on_another_node() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let other = follower_of(&cluster, leader);
    let mut a = cluster.client(leader);
    let session: i64 = redis::cmd("SESSION.CREATE")
        .arg(1500)
        .query(&mut a)
        .unwrap();
    let held = acquire(
        &mut a,
        "leader-election",
        "a",
        &["0", "SESSION", &session.to_string()],
    )
    .expect("granted");
    let url = cluster.url(other);
    let waiter = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        acquire(&mut c, "leader-election", "b", &["10000", "WAIT", "30000"])
    });
    // No keepalive: the session lapses and takes the lock with it.
    let granted = waiter.join().unwrap().expect("the waiter gets the lock");
    assert!(granted > held);
    let exists: Value = redis::cmd("SESSION.INFO")
        .arg(session)
        .query(&mut a)
        .unwrap();
    assert_eq!(exists, Value::Nil, "the session is gone");
    // The old holder's token is fenced now.
    let fenced: redis::RedisResult<Value> = redis::cmd("LOCK.GUARD")
        .arg("leader-election")
        .arg(held)
        .arg("SET")
        .arg("config")
        .arg("stale")
        .query(&mut a);
    let err = fenced.unwrap_err();
    assert_eq!(err.code(), Some("FENCED"), "{err}");
    let ok: String = redis::cmd("LOCK.GUARD")
        .arg("leader-election")
        .arg(granted)
        .arg("SET")
        .arg("config")
        .arg("fresh")
        .query(&mut a)
        .unwrap();
    assert_eq!(ok, "OK");
    let value: String = a.get("config").unwrap();
    assert_eq!(value, "fresh");
    cluster.converged(&[1, 2, 3]);
}

#[test]
fn a_session_kept_alive_survives_a_leader_change() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let keeper_node = follower_of(&cluster, leader);
    let mut c = cluster.client(keeper_node);
    let ttl = 3000;
    let session: i64 = redis::cmd("SESSION.CREATE").arg(ttl).query(&mut c).unwrap();
    let _: i64 = redis::cmd("SESSION.ATTACH")
        .arg(session)
        .arg("presence")
        .query(&mut c)
        .unwrap();
    let _: () = c.set("presence", "here").unwrap();
    let t = acquire(
        &mut c,
        "primary",
        "me",
        &["0", "SESSION", &session.to_string()],
    )
    .unwrap();
    let keepalive = |c: &mut redis::Connection| -> Option<i64> {
        redis::cmd("SESSION.KEEPALIVE").arg(session).query(c).ok()
    };
    assert_eq!(keepalive(&mut c), Some(ttl));
    cluster.kill9(leader);
    // The client keeps renewing through its node, as a real one would,
    // while the survivors elect a new leader.
    let new_leader = wait_for("a new leader", Duration::from_secs(30), || {
        // Renewals during the election may time out; the session's TTL
        // plus the new leader's grace cover the gap.
        let _ = keepalive(&mut c);
        let l: u64 = cluster
            .raft_field(keeper_node, "raft_leader_id")?
            .parse()
            .ok()?;
        (l != 0 && l != leader).then_some(l)
    });
    wait_for(
        "a renewal through the new leader",
        Duration::from_secs(15),
        || keepalive(&mut c),
    );
    let mut n = cluster.client(new_leader);
    let remaining = wait_for("the session's info", Duration::from_secs(5), || {
        let info: Value = redis::cmd("SESSION.INFO").arg(session).query(&mut n).ok()?;
        let Value::Array(items) = info else {
            return None;
        };
        let at = items
            .iter()
            .position(|v| *v == Value::BulkString(b"remaining".to_vec()))?;
        match items[at + 1] {
            Value::Int(ms) => Some(ms),
            _ => None,
        }
    });
    assert!(remaining > 0, "the session lives on");
    assert_eq!(
        info_field(&mut n, "primary", "token"),
        Some(Value::Int(t)),
        "its lock too"
    );
    let value: Option<String> = n.get("presence").unwrap();
    assert_eq!(value.as_deref(), Some("here"), "and its keys");
    let destroyed: i64 = redis::cmd("SESSION.DESTROY")
        .arg(session)
        .query(&mut n)
        .unwrap();
    assert_eq!(destroyed, 1);
    assert_eq!(info_field(&mut n, "primary", "owner"), None);
    let value: Option<String> = n.get("presence").unwrap();
    assert_eq!(value, None, "its keys end with it");
}
