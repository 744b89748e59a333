//! Lists through real processes: the commands over a real client, the
//! RESP2 shapes of the null replies (the golden scripts cannot tell `*-1`
//! from `$-1`), and blocking pops in a 3-node cluster: a client blocked on
//! a follower answered by a push through another node, two blocked clients
//! served in the order they blocked, and a blocked client that disconnects
//! losing its place.
//!
//! Whether a client is waiting is seen through DEBUG DIGEST, which covers
//! the replicated waiters: with nothing else written, a new digest after a
//! blocking command was sent means the wait was applied.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::Duration;

use common::cluster::Cluster;
use common::{wait_for, Server};
use redis::Commands;

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

/// Sends `command` (RESP) and reads until `expected` bytes arrived.
fn exchange(s: &mut TcpStream, command: &[u8], expected: &[u8]) {
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
fn list_commands_through_a_real_client() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.rpush::<_, _, i64>("l", &["a", "b", "c"]).unwrap(), 3);
    assert_eq!(c.lpush::<_, _, i64>("l", "z").unwrap(), 4);
    assert_eq!(
        c.lrange::<_, Vec<String>>("l", 0, -1).unwrap(),
        ["z", "a", "b", "c"]
    );
    assert_eq!(c.llen::<_, i64>("l").unwrap(), 4);
    assert_eq!(c.lindex::<_, String>("l", -1).unwrap(), "c");
    let _: () = c.lset("l", 1, "A").unwrap();
    assert_eq!(c.linsert_after::<_, _, _, i64>("l", "A", "x").unwrap(), 5);
    assert_eq!(c.lrem::<_, _, i64>("l", 0, "x").unwrap(), 1);
    let pos: Option<i64> = redis::cmd("LPOS").arg("l").arg("b").query(&mut c).unwrap();
    assert_eq!(pos, Some(2));
    let moved: String = redis::cmd("LMOVE")
        .arg("l")
        .arg("other")
        .arg("RIGHT")
        .arg("LEFT")
        .query(&mut c)
        .unwrap();
    assert_eq!(moved, "c");
    let popped: Vec<String> = redis::cmd("RPOP").arg("l").arg(2).query(&mut c).unwrap();
    assert_eq!(popped, ["b", "A"]);
    let (key, elements): (String, Vec<String>) = redis::cmd("LMPOP")
        .arg(2)
        .arg("l")
        .arg("other")
        .arg("LEFT")
        .arg("COUNT")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert_eq!((key.as_str(), elements), ("l", vec!["z".to_owned()]));
    let _: () = c.ltrim("other", 0, 0).unwrap();
    assert_eq!(c.lpop::<_, String>("other", None).unwrap(), "c");
    assert!(!c.exists::<_, bool>("other").unwrap());
    let got: Option<(String, String)> = c.blpop("nothing", 0.05).unwrap();
    assert_eq!(got, None, "a wait that runs out answers null");
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("BLMPOP")
        .arg(0)
        .arg(2)
        .arg("a")
        .arg("b")
        .arg("LEFT")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn null_replies_have_redis_resp2_shapes() {
    let server = Server::start();
    let mut s = server.raw();
    exchange(&mut s, b"LPOP missing\r\n", b"$-1\r\n");
    exchange(&mut s, b"LPOP missing 1\r\n", b"*-1\r\n");
    exchange(&mut s, b"LMPOP 1 missing LEFT\r\n", b"*-1\r\n");
    exchange(&mut s, b"RPUSH l a\r\n", b":1\r\n");
    exchange(&mut s, b"LPOP l 0\r\n", b"*0\r\n");
    exchange(&mut s, b"LPOS l x COUNT 1\r\n", b"*0\r\n");
    exchange(&mut s, b"LPOS l x\r\n", b"$-1\r\n");
    exchange(&mut s, b"BLPOP missing 0.01\r\n", b"*-1\r\n");
    exchange(&mut s, b"BLMPOP 0.01 1 missing LEFT\r\n", b"*-1\r\n");
    exchange(&mut s, b"BRPOPLPUSH missing l 0.01\r\n", b"$-1\r\n");
}

/// Starts `BLPOP key 0` on its own connection to `url`; the handle yields
/// the reply.
fn blpop_in_background(url: String, key: &'static str) -> JoinHandle<(String, String)> {
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.blpop(key, 0.0).unwrap()
    })
}

#[test]
fn blocked_pops_in_a_cluster_are_served_in_order_and_leavers_lose_their_place() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let others = cluster.followers(leader);
    let mut producer = cluster.client(others[1]);

    // A client blocked on a follower is answered by a push elsewhere.
    let before = digest(&mut producer);
    let first = blpop_in_background(cluster.url(others[0]), "jobs");
    let before = wait_for_change(&mut producer, &before, "the first client to wait");
    let second = blpop_in_background(cluster.url(leader), "jobs");
    let before = wait_for_change(&mut producer, &before, "the second client to wait");

    // A third client blocks, then disconnects: its place goes.
    let mut leaver = cluster.raw(others[0]);
    leaver.write_all(b"BLPOP jobs 0\r\n").unwrap();
    let before = wait_for_change(&mut producer, &before, "the leaving client to wait");
    drop(leaver);
    let before = wait_for_change(
        &mut producer,
        &before,
        "the leaving client to lose its place",
    );
    let third = blpop_in_background(cluster.url(others[1]), "jobs");
    wait_for_change(&mut producer, &before, "the third client to wait");

    // Three pushes reach the three waiters present, in the order they
    // blocked; the leaver takes nothing.
    assert_eq!(producer.rpush::<_, _, i64>("jobs", "one").unwrap(), 1);
    assert_eq!(first.join().unwrap(), ("jobs".into(), "one".into()));
    assert_eq!(producer.rpush::<_, _, i64>("jobs", "two").unwrap(), 1);
    assert_eq!(second.join().unwrap(), ("jobs".into(), "two".into()));
    assert_eq!(producer.rpush::<_, _, i64>("jobs", "three").unwrap(), 1);
    assert_eq!(third.join().unwrap(), ("jobs".into(), "three".into()));
    assert!(!producer.exists::<_, bool>("jobs").unwrap());
    wait_for("the replicas to agree", Duration::from_secs(10), || {
        let digests: Vec<String> = cluster
            .running()
            .into_iter()
            .map(|id| digest(&mut cluster.client(id)))
            .collect();
        digests.windows(2).all(|w| w[0] == w[1]).then_some(())
    });
}
