//! Lists through real processes: the commands over a real client, the
//! RESP2 shapes of the null replies (the golden scripts cannot tell `*-1`
//! from `$-1`), and blocking pops in a 3-node cluster: a client blocked on
//! a follower answered by a push through another node, two blocked clients
//! served in the order they blocked, a blocked client that disconnects
//! losing its place, and CLIENT UNBLOCK ending a wait through the log. SORT
//! ... STORE (which makes lists) through a follower, read back everywhere.
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

/// Reads one RESP line (a simple reply) from a raw connection.
fn read_line(s: &mut TcpStream) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        s.read_exact(&mut byte).unwrap();
        line.push(byte[0]);
    }
    String::from_utf8(line).unwrap()
}

#[test]
fn client_unblock_ends_a_wait_on_a_follower_through_the_log() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut control = cluster.client(follower);
    let mut waiter = cluster.raw(follower);
    waiter
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    waiter.write_all(b"CLIENT ID\r\n").unwrap();
    let id: i64 = read_line(&mut waiter)[1..].trim().parse().unwrap();

    let unblock = |c: &mut redis::Connection, reason: Option<&str>| -> redis::RedisResult<i64> {
        let mut cmd = redis::cmd("CLIENT");
        cmd.arg("UNBLOCK").arg(id);
        if let Some(reason) = reason {
            cmd.arg(reason);
        }
        cmd.query(c)
    };
    assert_eq!(unblock(&mut control, None).unwrap(), 0, "not blocked yet");

    // TIMEOUT (the default): the wait ends with the command's timeout reply.
    let before = digest(&mut control);
    waiter.write_all(b"BLPOP ub 0\r\n").unwrap();
    let before = wait_for_change(&mut control, &before, "the BLPOP to wait");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut control)
        .unwrap();
    let line = list
        .lines()
        .find(|l| l.starts_with(&format!("id={id} ")))
        .expect("the waiter is listed");
    assert!(line.contains(" flags=b "), "{line}");
    assert_eq!(unblock(&mut control, None).unwrap(), 1);
    assert_eq!(read_line(&mut waiter), "*-1\r\n");

    // ERROR: the wait ends with an UNBLOCKED error.
    waiter.write_all(b"BLMOVE ub dst LEFT LEFT 0\r\n").unwrap();
    wait_for_change(&mut control, &before, "the BLMOVE to wait");
    assert_eq!(unblock(&mut control, Some("error")).unwrap(), 1);
    assert_eq!(
        read_line(&mut waiter),
        "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
    );

    // The unblocked waits took nothing: the element stays for others.
    assert_eq!(control.rpush::<_, _, i64>("ub", "x").unwrap(), 1);
    assert_eq!(control.llen::<_, i64>("ub").unwrap(), 1);
    assert!(!control.exists::<_, bool>("dst").unwrap());
    assert_eq!(unblock(&mut control, Some("TIMEOUT")).unwrap(), 0);
    let bad = unblock(&mut control, Some("later")).unwrap_err();
    assert_eq!(
        bad.detail(),
        Some("CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    );
    waiter.write_all(b"PING\r\n").unwrap();
    assert_eq!(read_line(&mut waiter), "+PONG\r\n");
}

#[test]
fn sort_store_through_a_follower_is_replicated_and_sorted_alike_everywhere() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut c = cluster.client(follower);
    let _: i64 = c.sadd("ids", &[3, 1, 2]).unwrap();
    let _: () = c
        .mset(&[("w_1", "30"), ("w_2", "10"), ("w_3", "20")])
        .unwrap();
    let _: () = c
        .mset(&[("name_1", "one"), ("name_2", "two"), ("name_3", "three")])
        .unwrap();
    let stored: i64 = redis::cmd("SORT")
        .arg(&[
            "ids", "BY", "w_*", "GET", "#", "GET", "name_*", "STORE", "out",
        ])
        .query(&mut c)
        .unwrap();
    assert_eq!(stored, 6);
    let expected = ["2", "two", "3", "three", "1", "one"];
    for id in cluster.running() {
        let mut node = cluster.client(id);
        let _: () = redis::cmd("READMODE")
            .arg("LINEARIZABLE")
            .query(&mut node)
            .unwrap();
        let out: Vec<String> = node.lrange("out", 0, -1).unwrap();
        assert_eq!(out, expected, "node {id}");
        let sorted: Vec<String> = redis::cmd("SORT_RO")
            .arg(&["ids", "BY", "w_*", "DESC", "GET", "name_*"])
            .query(&mut node)
            .unwrap();
        assert_eq!(sorted, ["one", "three", "two"], "node {id}");
    }
}
