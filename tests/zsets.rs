//! Sorted sets against real processes: the wire shapes of scores and
//! WITHSCORES replies in RESP2 and RESP3, the keys COMMAND GETKEYS finds in
//! counted and blocking commands, BZPOPMIN waiters on followers served in
//! arrival order by a ZADD through another node, a wait that runs out, and
//! a waiter whose client leaves.
//!
//! A waiter is seen to wait through DEBUG DIGEST: the digest covers the
//! replicated waiting lines, so it changes when a pop starts waiting and
//! comes back when the line is empty again.

mod common;

use std::io::Write;
use std::time::Duration;

use common::cluster::Cluster;
use common::{exchange, wait_for, Server};
use redis::Value;

const WAIT: Duration = Duration::from_secs(10);

fn digest(c: &mut redis::Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(c).unwrap()
}

/// Waits until the digest seen through `c` is no longer `before`.
fn wait_for_change(c: &mut redis::Connection, before: &str, what: &str) -> String {
    wait_for(what, WAIT, || {
        let now = digest(c);
        (now != before).then_some(now)
    })
}

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

#[test]
fn resp2_sends_scores_as_bulk_strings_and_missing_ranks_as_null_arrays() {
    let server = Server::start();
    let mut s = server.raw();
    let cases: [(&str, &str); 8] = [
        ("ZADD z 1 a 2.5 b -inf c\r\n", ":3\r\n"),
        ("ZSCORE z b\r\n", "$3\r\n2.5\r\n"),
        (
            "ZRANGE z 0 1 WITHSCORES\r\n",
            "*4\r\n$1\r\nc\r\n$4\r\n-inf\r\n$1\r\na\r\n$1\r\n1\r\n",
        ),
        ("ZRANK z b WITHSCORE\r\n", "*2\r\n:2\r\n$3\r\n2.5\r\n"),
        ("ZRANK z nosuch WITHSCORE\r\n", "*-1\r\n"),
        ("ZRANK z nosuch\r\n", "$-1\r\n"),
        ("BZPOPMIN empty 0.05\r\n", "*-1\r\n"),
        (
            "BZPOPMAX empty z 0\r\n",
            "*3\r\n$1\r\nz\r\n$1\r\nb\r\n$3\r\n2.5\r\n",
        ),
    ];
    for (request, reply) in cases {
        let got = exchange(&mut s, request.as_bytes(), reply.len());
        assert_eq!(String::from_utf8_lossy(&got), reply, "{request:?}");
    }
}

#[test]
fn resp3_sends_scores_as_doubles_and_pairs_as_nested_arrays() {
    let server = Server::start();
    let client = redis::Client::open(format!("{}?protocol=resp3", server.url())).unwrap();
    let mut c = client.get_connection().unwrap();
    let added: i64 = redis::cmd("ZADD")
        .arg(&["z", "1", "a", "2", "b"])
        .query(&mut c)
        .unwrap();
    assert_eq!(added, 2);
    let score: Value = redis::cmd("ZSCORE").arg(&["z", "b"]).query(&mut c).unwrap();
    assert_eq!(score, Value::Double(2.0));
    let range: Value = redis::cmd("ZRANGE")
        .arg(&["z", "0", "-1", "WITHSCORES"])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        range,
        Value::Array(vec![
            Value::Array(vec![bulk("a"), Value::Double(1.0)]),
            Value::Array(vec![bulk("b"), Value::Double(2.0)]),
        ])
    );
    // ZPOPMIN without a count stays flat; with one it nests.
    let one: Value = redis::cmd("ZPOPMIN").arg("z").query(&mut c).unwrap();
    assert_eq!(one, Value::Array(vec![bulk("a"), Value::Double(1.0)]));
    let counted: Value = redis::cmd("ZPOPMIN")
        .arg(&["z", "5"])
        .query(&mut c)
        .unwrap();
    assert_eq!(
        counted,
        Value::Array(vec![Value::Array(vec![bulk("b"), Value::Double(2.0)])])
    );
    // ZSCAN's scores are bulk strings in RESP3 too.
    let _: i64 = redis::cmd("ZADD")
        .arg(&["s", "1.5", "m"])
        .query(&mut c)
        .unwrap();
    let scan: Value = redis::cmd("ZSCAN").arg(&["s", "0"]).query(&mut c).unwrap();
    assert_eq!(
        scan,
        Value::Array(vec![bulk("0"), Value::Array(vec![bulk("m"), bulk("1.5")])])
    );
    let timed_out: Value = redis::cmd("BZPOPMIN")
        .arg(&["empty", "0.05"])
        .query(&mut c)
        .unwrap();
    assert_eq!(timed_out, Value::Nil);
}

#[test]
fn command_getkeys_finds_counted_and_blocking_keys() {
    let server = Server::start();
    let mut c = server.client();
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["ZUNIONSTORE", "dest", "2", "a", "b", "WEIGHTS", "1", "2"],
            &["dest", "a", "b"],
        ),
        (&["ZINTER", "2", "a", "b", "WITHSCORES"], &["a", "b"]),
        (&["ZINTERCARD", "1", "a", "LIMIT", "3"], &["a"]),
        (&["BZPOPMIN", "a", "b", "0"], &["a", "b"]),
        (&["ZRANGESTORE", "dst", "src", "0", "-1"], &["dst", "src"]),
    ];
    for (argv, keys) in cases {
        let got: Vec<String> = redis::cmd("COMMAND")
            .arg("GETKEYS")
            .arg(argv)
            .query(&mut c)
            .unwrap();
        assert_eq!(got, keys, "{argv:?}");
    }
}

fn bzpop(
    url: String,
    command: &'static str,
    args: &'static [&'static str],
) -> std::thread::JoinHandle<Value> {
    std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        redis::cmd(command).arg(args).query(&mut c).unwrap()
    })
}

#[test]
fn waiters_on_followers_are_served_in_arrival_order_by_a_zadd_elsewhere() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let followers: Vec<u64> = cluster
        .running()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let mut producer = cluster.client(leader);
    let before = digest(&mut producer);
    let first = bzpop(
        cluster.url(followers[0]),
        "BZPOPMIN",
        &["jobs", "other", "0"],
    );
    let waiting = wait_for_change(&mut producer, &before, "the first pop to wait");
    let second = bzpop(cluster.url(followers[1]), "BZPOPMIN", &["jobs", "20"]);
    wait_for_change(&mut producer, &waiting, "the second pop to wait");

    let added: i64 = redis::cmd("ZADD")
        .arg(&["jobs", "2", "later", "1", "sooner", "3", "last"])
        .query(&mut producer)
        .unwrap();
    assert_eq!(added, 3);
    let served =
        |name: &str, score: &str| Value::Array(vec![bulk("jobs"), bulk(name), bulk(score)]);
    assert_eq!(first.join().unwrap(), served("sooner", "1"));
    assert_eq!(second.join().unwrap(), served("later", "2"));
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg(&["jobs", "0", "-1"])
        .query(&mut producer)
        .unwrap();
    assert_eq!(left, ["last"]);
    let _: i64 = redis::cmd("ZREM")
        .arg(&["jobs", "last"])
        .query(&mut producer)
        .unwrap();
    assert_eq!(digest(&mut producer), before, "nobody waits any more");

    // A wait that runs out answers a null array, on the follower.
    let mut c = cluster.client(followers[0]);
    let timed_out: Value = redis::cmd("BZPOPMAX")
        .arg(&["jobs", "0.3"])
        .query(&mut c)
        .unwrap();
    assert_eq!(timed_out, Value::Nil);
}

#[test]
fn a_waiter_that_disconnects_gives_up_its_place() {
    let server = Server::start();
    let mut c = server.client();
    let before = digest(&mut c);
    let mut raw = server.raw();
    raw.write_all(b"BZPOPMIN inbox 0\r\n").unwrap();
    wait_for_change(&mut c, &before, "the raw client to wait");
    drop(raw);
    // A member added goes to the first waiter in line: it reaches us only
    // once the departed waiter has given up its place. (Comparing digests
    // with the one before would also see the node's own start-up writes,
    // which may apply after it was taken.)
    wait_for("the departed waiter to leave the line", WAIT, || {
        let _: i64 = redis::cmd("ZADD")
            .arg(&["inbox", "1", "for someone still here"])
            .query(&mut c)
            .unwrap();
        let popped: Value = redis::cmd("ZPOPMIN").arg("inbox").query(&mut c).unwrap();
        (popped == Value::Array(vec![bulk("for someone still here"), bulk("1")])).then_some(())
    });
}
