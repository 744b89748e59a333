//! Streams through real processes in a 3-node cluster: appends through
//! every node read back identically everywhere, a group reader blocked on
//! a follower woken by an append through the leader, two consumers of one
//! group on different nodes getting distinct entries, the pending entries
//! of a consumer that stopped claimed by another, and the RESP2 shapes of
//! XREAD (the golden scripts cannot tell `*-1` from `$-1`).
//!
//! Whether a client is waiting is seen through DEBUG DIGEST, which covers
//! the replicated waiters: with nothing else written, a new digest after a
//! blocking command was sent means the wait was applied.

mod common;

use std::io::{Read, Write};
use std::thread::JoinHandle;
use std::time::Duration;

use common::cluster::Cluster;
use common::wait_for;

type Entry = (String, Vec<String>);
type Streams = Vec<(String, Vec<Entry>)>;
/// XPENDING's summary: count, first and last ID, consumers and counts.
type Summary = (
    i64,
    Option<String>,
    Option<String>,
    Option<Vec<(String, String)>>,
);

fn digest(c: &mut redis::Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(c).unwrap()
}

/// Waits until the digest seen through `c` differs from `before`.
fn wait_for_change(c: &mut redis::Connection, before: &str, what: &str) -> String {
    wait_for(what, Duration::from_secs(10), || {
        let now = digest(c);
        (now != before).then_some(now)
    })
}

fn xadd(c: &mut redis::Connection, key: &str, id: &str, field: &str, value: &str) -> String {
    redis::cmd("XADD")
        .arg(key)
        .arg(id)
        .arg(field)
        .arg(value)
        .query(c)
        .unwrap()
}

fn xrange(c: &mut redis::Connection, key: &str) -> Vec<Entry> {
    redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(c)
        .unwrap()
}

/// Pending summary: count, and per consumer its count.
fn pending(c: &mut redis::Connection, key: &str, group: &str) -> (i64, Vec<(String, String)>) {
    let (count, _, _, consumers): Summary =
        redis::cmd("XPENDING").arg(key).arg(group).query(c).unwrap();
    (count, consumers.unwrap_or_default())
}

/// Starts `XREADGROUP GROUP group consumer COUNT 1 BLOCK 0 STREAMS key >`
/// on its own connection to `url`; the handle yields the reply.
fn xreadgroup_in_background(
    url: String,
    group: &'static str,
    consumer: &'static str,
    key: &'static str,
) -> JoinHandle<Streams> {
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(group)
            .arg(consumer)
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(0)
            .arg("STREAMS")
            .arg(key)
            .arg(">")
            .query(&mut c)
            .unwrap()
    })
}

#[test]
fn appends_through_every_node_read_back_identically_everywhere() {
    let cluster = Cluster::start(3, &[]);
    let nodes = cluster.running();
    let mut clients: Vec<_> = nodes.iter().map(|id| cluster.client(*id)).collect();
    let mut ids = Vec::new();
    for round in 0..10 {
        for (n, c) in clients.iter_mut().enumerate() {
            ids.push(xadd(c, "s", "*", "from", &format!("{n}:{round}")));
        }
    }
    // Explicit and partial IDs go through the same checks on every node.
    let top = xadd(&mut clients[0], "s", "99999999999999-*", "from", "explicit");
    assert_eq!(top, "99999999999999-0");
    let err = redis::cmd("XADD")
        .arg("s")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .query::<String>(&mut clients[1])
        .unwrap_err();
    assert!(err.to_string().contains("equal or smaller"), "{err}");
    ids.push(top);

    let first = xrange(&mut clients[0], "s");
    assert_eq!(first.len(), 31);
    let got: Vec<&String> = first.iter().map(|(id, _)| id).collect();
    assert_eq!(got, ids.iter().collect::<Vec<_>>());
    for c in clients.iter_mut() {
        assert_eq!(xrange(c, "s"), first);
        let len: i64 = redis::cmd("XLEN").arg("s").query(c).unwrap();
        assert_eq!(len, 31);
    }
    cluster.converged(&nodes);
}

#[test]
fn group_readers_block_on_any_node_and_share_the_entries() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let others = cluster.followers(leader);
    let mut producer = cluster.client(leader);
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("jobs")
        .arg("workers")
        .arg("$")
        .arg("MKSTREAM")
        .query(&mut producer)
        .unwrap();

    // One consumer on each follower waits; both waits go through the log.
    let before = digest(&mut producer);
    let first = xreadgroup_in_background(cluster.url(others[0]), "workers", "w1", "jobs");
    let before = wait_for_change(&mut producer, &before, "the first consumer to wait");
    let second = xreadgroup_in_background(cluster.url(others[1]), "workers", "w2", "jobs");
    wait_for_change(&mut producer, &before, "the second consumer to wait");

    // Each append through the leader wakes the next consumer in line, with
    // an entry nobody else got.
    let a = xadd(&mut producer, "jobs", "*", "job", "a");
    let got = first.join().unwrap();
    assert_eq!(
        got,
        vec![(
            "jobs".to_owned(),
            vec![(a.clone(), vec!["job".to_owned(), "a".to_owned()])]
        )]
    );
    let b = xadd(&mut producer, "jobs", "*", "job", "b");
    let got = second.join().unwrap();
    assert_eq!(
        got,
        vec![(
            "jobs".to_owned(),
            vec![(b.clone(), vec!["job".to_owned(), "b".to_owned()])]
        )]
    );
    let (count, consumers) = pending(&mut producer, "jobs", "workers");
    assert_eq!(count, 2);
    assert_eq!(
        consumers,
        vec![
            ("w1".to_owned(), "1".to_owned()),
            ("w2".to_owned(), "1".to_owned())
        ]
    );
    cluster.converged(&cluster.running());
}

#[test]
fn pending_entries_of_a_stopped_consumer_are_claimed_by_another() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let others = cluster.followers(leader);
    let mut a = cluster.client(others[0]);
    let mut b = cluster.client(others[1]);
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("q")
        .arg("g")
        .arg("0")
        .arg("MKSTREAM")
        .query(&mut a)
        .unwrap();
    for i in 0..3 {
        xadd(&mut a, "q", &format!("{}-0", i + 1), "n", &i.to_string());
    }
    // The first consumer takes everything, then stops without acking.
    let read: Streams = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("dead")
        .arg("STREAMS")
        .arg("q")
        .arg(">")
        .query(&mut a)
        .unwrap();
    assert_eq!(read[0].1.len(), 3);
    assert_eq!(
        pending(&mut b, "q", "g"),
        (3, vec![("dead".into(), "3".into())])
    );

    // Once they have been idle for 200 ms, another consumer on another
    // node claims one explicitly and the rest with XAUTOCLAIM.
    let claimed: Vec<Entry> = wait_for("the entries to be idle", Duration::from_secs(10), || {
        let claimed: Vec<Entry> = redis::cmd("XCLAIM")
            .arg("q")
            .arg("g")
            .arg("alive")
            .arg(200)
            .arg("1-0")
            .query(&mut b)
            .unwrap();
        (!claimed.is_empty()).then_some(claimed)
    });
    assert_eq!(
        claimed,
        vec![("1-0".to_owned(), vec!["n".to_owned(), "0".to_owned()])]
    );
    let (cursor, rest, deleted): (String, Vec<Entry>, Vec<String>) = redis::cmd("XAUTOCLAIM")
        .arg("q")
        .arg("g")
        .arg("alive")
        .arg(200)
        .arg("0")
        .query(&mut b)
        .unwrap();
    assert_eq!(cursor, "0-0");
    assert_eq!(rest.len(), 2);
    assert!(deleted.is_empty());
    assert_eq!(
        pending(&mut a, "q", "g"),
        (3, vec![("alive".into(), "3".into())])
    );
    let details: Vec<(String, String, i64, i64)> = redis::cmd("XPENDING")
        .arg("q")
        .arg("g")
        .arg("-")
        .arg("+")
        .arg(10)
        .query(&mut a)
        .unwrap();
    assert!(details.iter().all(|(_, c, _, n)| c == "alive" && *n == 2));
    let acked: i64 = redis::cmd("XACK")
        .arg("q")
        .arg("g")
        .arg("1-0")
        .arg("2-0")
        .arg("3-0")
        .query(&mut b)
        .unwrap();
    assert_eq!(acked, 3);
    assert_eq!(pending(&mut a, "q", "g"), (0, vec![]));
    cluster.converged(&cluster.running());
}

/// Sends `command` (RESP) and reads until `expected` bytes arrived.
fn exchange(s: &mut std::net::TcpStream, command: &[u8], expected: &[u8]) {
    s.write_all(command).unwrap();
    let mut got = vec![0u8; expected.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(expected),
        "reply to {}",
        String::from_utf8_lossy(command)
    );
}

#[test]
fn xread_has_redis_shapes_in_resp2_and_resp3() {
    let cluster = Cluster::start(3, &[]);
    let mut s = cluster.raw(cluster.leader());
    exchange(&mut s, b"XADD s 1-0 f v\r\n", b"$3\r\n1-0\r\n");
    exchange(&mut s, b"XREAD STREAMS s 1-0\r\n", b"*-1\r\n");
    exchange(&mut s, b"XREAD BLOCK 10 STREAMS s $\r\n", b"*-1\r\n");
    exchange(
        &mut s,
        b"XREAD STREAMS s 0\r\n",
        b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
    );
    exchange(&mut s, b"XINFO GROUPS s\r\n", b"*0\r\n");
    // HELLO's map, then PONG: read up to the PONG.
    s.write_all(b"HELLO 3\r\nPING\r\n").unwrap();
    let mut seen = Vec::new();
    while !seen.ends_with(b"+PONG\r\n") {
        let mut byte = [0u8; 1];
        s.read_exact(&mut byte).unwrap();
        seen.push(byte[0]);
    }
    exchange(&mut s, b"XREAD STREAMS s 1-0\r\n", b"_\r\n");
    exchange(
        &mut s,
        b"XREAD STREAMS s 0\r\n",
        b"%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
    );
}
