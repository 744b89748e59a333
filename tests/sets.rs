//! Sets through a real client against real processes: the whole path
//! (parse, table, raft, apply, reply) for every set command, RESP2/RESP3
//! reply shapes, key positions, a restart from a snapshot, and SPOP's
//! seeded picks staying equal on every replica of a 3-node cluster.
//! Exact replies and error texts are the golden script's business.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::cluster::Cluster;
use common::Server;
use redis::{Commands, RedisResult, Value};

fn sorted(members: Vec<String>) -> Vec<String> {
    let mut members = members;
    members.sort();
    members
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_set_command_through_a_client() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(c.sadd::<_, _, i64>("s1", &["a", "b", "c"]).unwrap(), 3);
    assert_eq!(c.sadd::<_, _, i64>("s1", &["a", "d"]).unwrap(), 1);
    assert_eq!(c.srem::<_, _, i64>("s1", &["d", "zz"]).unwrap(), 1);
    assert_eq!(c.scard::<_, i64>("s1").unwrap(), 3);
    assert!(c.sismember::<_, _, bool>("s1", "a").unwrap());
    let flags: Vec<bool> = redis::cmd("SMISMEMBER")
        .arg("s1")
        .arg("a")
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(flags, vec![true, false]);
    assert_eq!(sorted(c.smembers("s1").unwrap()), strings(&["a", "b", "c"]));

    let _: i64 = c.sadd("s2", &["b", "c", "e"]).unwrap();
    assert_eq!(
        sorted(c.sinter(&["s1", "s2"]).unwrap()),
        strings(&["b", "c"])
    );
    assert_eq!(
        sorted(c.sunion(&["s1", "s2"]).unwrap()),
        strings(&["a", "b", "c", "e"])
    );
    assert_eq!(sorted(c.sdiff(&["s1", "s2"]).unwrap()), strings(&["a"]));
    let card: i64 = redis::cmd("SINTERCARD")
        .arg(2)
        .arg("s1")
        .arg("s2")
        .arg("LIMIT")
        .arg(1)
        .query(&mut c)
        .unwrap();
    assert_eq!(card, 1);

    let _: () = c.set_ex("dst", "a string", 100).unwrap();
    assert_eq!(c.sunionstore::<_, _, i64>("dst", &["s1", "s2"]).unwrap(), 4);
    assert_eq!(c.ttl::<_, i64>("dst").unwrap(), -1, "STORE drops the TTL");
    assert_eq!(c.sinterstore::<_, _, i64>("dst", &["s1", "s2"]).unwrap(), 2);
    assert_eq!(c.sdiffstore::<_, _, i64>("dst", &["s1", "s1"]).unwrap(), 0);
    assert!(
        !c.exists::<_, bool>("dst").unwrap(),
        "an empty result deletes"
    );

    assert!(c.smove::<_, _, _, bool>("s1", "s3", "a").unwrap());
    assert!(!c.smove::<_, _, _, bool>("s1", "s3", "a").unwrap());
    assert_eq!(c.smembers::<_, Vec<String>>("s3").unwrap(), strings(&["a"]));

    let one: String = c.srandmember("s3").unwrap();
    assert_eq!(one, "a");
    let repeated: Vec<String> = redis::cmd("SRANDMEMBER")
        .arg("s3")
        .arg(-4)
        .query(&mut c)
        .unwrap();
    assert_eq!(repeated, strings(&["a", "a", "a", "a"]));
    let popped: String = c.spop("s3").unwrap();
    assert_eq!(popped, "a");
    assert!(
        !c.exists::<_, bool>("s3").unwrap(),
        "SPOP of the last member deletes"
    );

    let _: () = c.set("str", "x").unwrap();
    let err: RedisResult<i64> = c.sadd("str", "a");
    assert!(err.unwrap_err().to_string().contains("WRONGTYPE"));
    let err: RedisResult<Vec<String>> = c.sinter(&["s1", "str"]);
    assert!(err.unwrap_err().to_string().contains("WRONGTYPE"));
}

#[test]
fn sscan_and_spop_cover_a_large_set() {
    let server = Server::start();
    let mut c = server.client();
    let members: Vec<String> = (0..700).map(|i| format!("m:{i}")).collect();
    assert_eq!(c.sadd::<_, _, i64>("big", &members).unwrap(), 700);
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SSCAN")
            .arg("big")
            .arg(cursor)
            .arg("COUNT")
            .arg(50)
            .query(&mut c)
            .unwrap();
        for m in batch {
            assert!(seen.insert(m.clone()), "{m} returned twice");
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 700);

    let popped: Vec<String> = redis::cmd("SPOP")
        .arg("big")
        .arg(300)
        .query(&mut c)
        .unwrap();
    let popped: HashSet<String> = popped.into_iter().collect();
    assert_eq!(popped.len(), 300, "SPOP with a count pops distinct members");
    let left: HashSet<String> = c.smembers("big").unwrap();
    assert_eq!(left.len(), 400);
    assert!(popped.is_disjoint(&left));
    assert_eq!(&popped | &left, members.into_iter().collect());
    let sample: Vec<String> = c.srandmember_multiple("big", 100).unwrap();
    assert_eq!(sample.iter().collect::<HashSet<_>>().len(), 100);
    assert!(sample.iter().all(|m| left.contains(m)));
}

#[test]
fn reply_shapes_follow_the_protocol_version() {
    let server = Server::start();
    let client = redis::Client::open(format!("{}?protocol=resp3", server.url())).unwrap();
    let mut c3 = client.get_connection().unwrap();
    let _: i64 = c3.sadd("s", &["a", "b", "c"]).unwrap();
    let members: Value = redis::cmd("SMEMBERS").arg("s").query(&mut c3).unwrap();
    assert!(
        matches!(members, Value::Set(_)),
        "RESP3 SMEMBERS: {members:?}"
    );
    let inter: Value = redis::cmd("SINTER").arg("s").query(&mut c3).unwrap();
    assert!(matches!(inter, Value::Set(_)), "RESP3 SINTER: {inter:?}");
    let picks: Value = redis::cmd("SRANDMEMBER")
        .arg("s")
        .arg(2)
        .query(&mut c3)
        .unwrap();
    assert!(matches!(picks, Value::Array(_)), "SRANDMEMBER: {picks:?}");
    let popped: Value = redis::cmd("SPOP").arg("s").arg(1).query(&mut c3).unwrap();
    assert!(
        matches!(popped, Value::Set(_)),
        "RESP3 SPOP count: {popped:?}"
    );
    let none: Value = redis::cmd("SPOP").arg("nokey").query(&mut c3).unwrap();
    assert_eq!(none, Value::Nil);

    let mut c2 = server.client();
    let members: Value = redis::cmd("SMEMBERS").arg("s").query(&mut c2).unwrap();
    assert!(
        matches!(members, Value::Array(_)),
        "RESP2 SMEMBERS: {members:?}"
    );
}

#[test]
fn command_getkeys_names_every_set_key() {
    let server = Server::start();
    let mut c = server.client();
    let getkeys = |c: &mut redis::Connection, args: &[&str]| -> Vec<String> {
        redis::cmd("COMMAND")
            .arg("GETKEYS")
            .arg(args)
            .query(c)
            .unwrap()
    };
    assert_eq!(
        getkeys(&mut c, &["SINTERCARD", "2", "a", "b", "LIMIT", "1"]),
        strings(&["a", "b"])
    );
    assert_eq!(
        getkeys(&mut c, &["SDIFFSTORE", "dst", "a", "b"]),
        strings(&["dst", "a", "b"])
    );
    assert_eq!(
        getkeys(&mut c, &["SUNION", "a", "b", "c"]),
        strings(&["a", "b", "c"])
    );
    assert_eq!(
        getkeys(&mut c, &["SMOVE", "from", "to", "m"]),
        strings(&["from", "to"])
    );
    assert_eq!(getkeys(&mut c, &["SADD", "k", "m1", "m2"]), strings(&["k"]));
}

#[test]
fn sets_survive_a_restart_from_a_snapshot() {
    let mut server = Server::start_with(&["--snapshot-entries", "50"]);
    let mut c = server.client();
    for i in 0..200 {
        let _: i64 = c.sadd(format!("s{}", i % 7), format!("m{i}")).unwrap();
    }
    let _: i64 = c.srem("s0", "m0").unwrap();
    let _: () = c.expire("s1", 1000).unwrap();
    let before: Vec<BTreeSet<String>> = (0..7)
        .map(|k| c.smembers(format!("s{k}")).unwrap())
        .collect();
    server.kill9();
    server.boot();
    let mut c = server.client();
    let after: Vec<BTreeSet<String>> = (0..7)
        .map(|k| c.smembers(format!("s{k}")).unwrap())
        .collect();
    assert_eq!(before, after);
    assert!(c.ttl::<_, i64>("s1").unwrap() > 0, "the deadline survives");
    let kind: String = redis::cmd("TYPE").arg("s3").query(&mut c).unwrap();
    assert_eq!(kind, "set");
}

#[test]
fn spop_picks_the_same_members_on_every_replica() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let mut lc = cluster.client(leader);
    let members: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let _: i64 = lc.sadd("pool", &members).unwrap();
    let mut popped = HashSet::new();
    for id in 1..=3u64 {
        let mut c = cluster.client(id);
        let batch: Vec<String> = redis::cmd("SPOP")
            .arg("pool")
            .arg(20)
            .query(&mut c)
            .unwrap();
        let one: String = c.spop("pool").unwrap();
        for m in batch.into_iter().chain([one]) {
            assert!(popped.insert(m.clone()), "{m} popped twice");
        }
        let _: i64 = c.sinterstore(format!("copy{id}"), "pool").unwrap();
    }
    cluster.converged(&[1, 2, 3]);
    let mut views = Vec::new();
    for id in 1..=3u64 {
        let mut c = cluster.client(id);
        let _: () = redis::cmd("READMODE").arg("STALE").query(&mut c).unwrap();
        let left: BTreeSet<String> = c.smembers("pool").unwrap();
        views.push(left);
    }
    assert_eq!(views[0], views[1]);
    assert_eq!(views[1], views[2]);
    assert_eq!(views[0].len(), 200 - 63);
    assert!(views[0].iter().all(|m| !popped.contains(m)));
}
