//! `maxmemory` against real processes: the leader evicts through the log,
//! every replica deletes the same keys, and under `noeviction` (or with
//! nothing to evict) writes get Redis's OOM error while reads and deletes
//! go on.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{wait_for, Server};
use redis::Commands;

/// One field of INFO as a number.
fn info_u64(c: &mut redis::Connection, field: &str) -> u64 {
    let text: String = redis::cmd("INFO").arg("all").query(c).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("INFO has no {field}"))
        .trim()
        .parse()
        .unwrap()
}

fn config_set(c: &mut redis::Connection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(c)
        .unwrap();
}

const LIMIT: u64 = 16 << 20;

#[test]
fn allkeys_lru_keeps_every_replica_under_the_limit_alike_and_spares_a_hot_key() {
    let cluster = Cluster::start(
        3,
        &["--maxmemory", "16mb", "--maxmemory-policy", "allkeys-lru"],
    );
    let leader = cluster.leader();
    let mut c = cluster.client(leader);
    let _: () = c.set("hot", "h").unwrap();
    let value = vec![b'v'; 10_000];
    // 80 MB of values, five times the limit, in pipelines of 100 SETs; the
    // hot key is read between them.
    let mut worst = 0;
    for batch in 0..80 {
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.set(format!("key:{batch}:{i}"), &value).ignore();
        }
        let _: () = pipe.query(&mut c).unwrap();
        let _: String = c.get("hot").unwrap();
        worst = worst.max(info_u64(&mut c, "used_memory_dataset"));
    }
    let digest = cluster.converged(&[1, 2, 3]);
    assert!(!digest.is_empty());
    for id in 1..=3 {
        let mut n = cluster.client(id);
        let _: () = redis::cmd("READMODE").arg("STALE").query(&mut n).unwrap();
        let dataset = info_u64(&mut n, "used_memory_dataset");
        let evicted = info_u64(&mut n, "evicted_keys");
        let keys: u64 = redis::cmd("DBSIZE").query(&mut n).unwrap();
        println!("node {id}: dataset {dataset} B, {keys} keys, {evicted} evicted");
        assert!(
            dataset <= LIMIT,
            "node {id}: dataset {dataset} over {LIMIT}"
        );
        assert!(evicted > 0, "node {id} evicted nothing");
        assert!(keys < 8000);
        let hot: Option<String> = n.get("hot").unwrap();
        assert_eq!(hot.as_deref(), Some("h"), "node {id} lost the hot key");
    }
    // Eviction runs after the writes that pass the limit: the overshoot
    // seen between batches is what one batch adds, not more.
    println!("largest dataset seen between batches: {worst} B (limit {LIMIT})");
    assert!(worst <= LIMIT + (2 << 20), "dataset reached {worst}");
}

#[test]
fn evictions_are_keyspace_events_on_every_node() {
    let cluster = Cluster::start(
        3,
        &["--maxmemory", "1mb", "--maxmemory-policy", "allkeys-random"],
    );
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut c = cluster.client(leader);
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "notify-keyspace-events", "Ee"])
        .query(&mut c)
        .unwrap();
    let mut sub = cluster.client(follower);
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe("__keyevent@0__:evicted").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let value = vec![b'v'; 10_000];
    for i in 0..200 {
        let _: () = c.set(format!("k{i}"), &value).unwrap();
    }
    let msg = pubsub.get_message().unwrap();
    let key: String = msg.get_payload().unwrap();
    assert!(key.starts_with('k'), "{key}");
}

#[test]
fn volatile_ttl_evicts_the_shortest_ttls_first_and_spares_keys_without_one() {
    let server = Server::start();
    let mut c = server.client();
    config_set(&mut c, "maxmemory-policy", "volatile-ttl");
    config_set(&mut c, "maxmemory", "2mb");
    let value = vec![b'v'; 10_000];
    for i in 0..50 {
        let _: () = c.set(format!("keep:{i}"), &value).unwrap();
    }
    // TTLs grow with i: the first written go first.
    for i in 0..400u64 {
        let _: () = c.set_ex(format!("ttl:{i:03}"), &value, 10_000 + i).unwrap();
    }
    wait_for("eviction to catch up", Duration::from_secs(20), || {
        (info_u64(&mut c, "used_memory_dataset") <= 2 << 20).then_some(())
    });
    for i in 0..50 {
        assert!(
            c.exists::<_, bool>(format!("keep:{i}")).unwrap(),
            "keep:{i} went"
        );
    }
    let left: Vec<String> = c.keys("ttl:*").unwrap();
    let mut left: Vec<u64> = left.iter().map(|k| k[4..].parse().unwrap()).collect();
    left.sort();
    assert!(!left.is_empty() && left.len() < 400);
    // What is left is a run up to the last one: every evicted key had a
    // shorter TTL than every key left.
    let first = left[0];
    assert_eq!(left, (first..400).collect::<Vec<_>>());
}

#[test]
fn noeviction_refuses_writes_with_oom_but_serves_reads_and_deletes() {
    let server = Server::start();
    let mut c = server.client();
    config_set(&mut c, "maxmemory", "1mb");
    let value = vec![b'v'; 10_000];
    let mut written = 0;
    let err = loop {
        match c.set::<_, _, ()>(format!("k{written}"), &value) {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 1000, "never refused");
    };
    assert_eq!(err.code(), Some("OOM"), "{err}");
    assert!(err
        .to_string()
        .contains("command not allowed when used memory > 'maxmemory'"));
    // Reads and deletes still work; so do writes that cannot grow it.
    let got: Vec<u8> = c.get("k0").unwrap();
    assert_eq!(got.len(), 10_000);
    let e = redis::cmd("EVAL")
        .arg("return redis.call('set', KEYS[1], 'x')")
        .arg(1)
        .arg("s")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(e.code(), Some("OOM"), "{e}");
    let ro: String = redis::cmd("EVAL_RO")
        .arg("return redis.call('get', KEYS[1]) and 'ok'")
        .arg(1)
        .arg("k1")
        .query(&mut c)
        .unwrap();
    assert_eq!(ro, "ok");
    // MULTI: the OOM command is refused when queued, and EXEC aborts.
    let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
    let queued = redis::cmd("SET")
        .arg("m")
        .arg("1")
        .query::<()>(&mut c)
        .unwrap_err();
    assert_eq!(queued.code(), Some("OOM"));
    let exec = redis::cmd("EXEC").query::<()>(&mut c).unwrap_err();
    assert_eq!(exec.code(), Some("EXECABORT"));
    let deleted: u64 = c
        .del(
            (0..written / 2)
                .map(|i| format!("k{i}"))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert_eq!(deleted, written / 2);
    wait_for(
        "the dataset to shrink below the limit",
        Duration::from_secs(10),
        || (info_u64(&mut c, "used_memory_dataset") < 1 << 20).then_some(()),
    );
    let _: () = c.set("after", "x").unwrap();
    assert_eq!(info_u64(&mut c, "evicted_keys"), 0);

    // A volatile policy with no key that has a deadline has nothing to
    // evict: OOM as well.
    config_set(&mut c, "maxmemory-policy", "volatile-lru");
    let err = loop {
        match c.set::<_, _, ()>(format!("v{written}"), &value) {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 2000, "never refused");
    };
    assert_eq!(err.code(), Some("OOM"), "{err}");
}

#[test]
fn memory_settings_are_reported_and_checked() {
    let server = Server::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lfu"]);
    let mut c = server.client();
    assert_eq!(info_u64(&mut c, "maxmemory"), 64 << 20);
    let text: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
    assert!(text.contains("maxmemory_policy:allkeys-lfu"), "{text}");
    assert!(info_u64(&mut c, "used_memory") > 0);
    let _: () = c.set("k", "v").unwrap();
    for _ in 0..100 {
        let _: String = c.get("k").unwrap();
    }
    let freq: i64 = redis::cmd("OBJECT")
        .arg("FREQ")
        .arg("k")
        .query(&mut c)
        .unwrap();
    assert!(freq > 5, "freq {freq}");
    let e = redis::cmd("OBJECT")
        .arg("IDLETIME")
        .arg("k")
        .query::<i64>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("LFU"), "{e}");
    let e = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-policy", "sometimes"])
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("maxmemory-policy"), "{e}");
    let usage: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg("k")
        .query(&mut c)
        .unwrap();
    assert!(usage > 100 && usage < 1000, "{usage}");
}
