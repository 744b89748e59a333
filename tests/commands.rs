//! Every command family through a real client (`redis` crate) against a real
//! process. Exact semantics are covered by the state machine's golden tests;
//! these check the whole path: parse, table, raft, apply, reply.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{wait_for, Server};
use redis::{Commands, RedisResult, Value};

#[test]
fn strings_and_counters() {
    let server = Server::start();
    let mut c = server.client();
    let _: () = c.set("s", "hello").unwrap();
    assert_eq!(c.get::<_, String>("s").unwrap(), "hello");
    assert_eq!(c.append::<_, _, i64>("s", " world").unwrap(), 11);
    assert_eq!(c.strlen::<_, i64>("s").unwrap(), 11);
    assert_eq!(c.getrange::<_, String>("s", 0, 4).unwrap(), "hello");
    assert_eq!(c.setrange::<_, _, i64>("s", 6, "WORLD").unwrap(), 11);
    assert_eq!(c.get::<_, String>("s").unwrap(), "hello WORLD");
    assert_eq!(c.incr::<_, _, i64>("n", 5).unwrap(), 5);
    assert_eq!(c.decr::<_, _, i64>("n", 7).unwrap(), -2);
    let f: f64 = redis::cmd("INCRBYFLOAT")
        .arg("f")
        .arg("10.5")
        .query(&mut c)
        .unwrap();
    assert_eq!(f, 10.5);
    let got: Option<String> = redis::cmd("SET")
        .arg("s")
        .arg("x")
        .arg("NX")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, None);
    let old: String = redis::cmd("SET")
        .arg("s")
        .arg("y")
        .arg("GET")
        .query(&mut c)
        .unwrap();
    assert_eq!(old, "hello WORLD");
    assert_eq!(c.set_nx::<_, _, i64>("s", "z").unwrap(), 0);
    let _: () = c.mset(&[("a", "1"), ("b", "2")]).unwrap();
    let vals: Vec<Option<String>> = c.mget(&["a", "b", "nope"]).unwrap();
    assert_eq!(vals, vec![Some("1".into()), Some("2".into()), None]);
    let r: i64 = redis::cmd("MSETNX")
        .arg("a")
        .arg("9")
        .arg("c")
        .arg("3")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, 0);
    let gd: String = redis::cmd("GETDEL").arg("a").query(&mut c).unwrap();
    assert_eq!(gd, "1");
    assert!(!c.exists::<_, bool>("a").unwrap());
    let err: RedisResult<i64> = c.incr("s", 1);
    assert!(err.unwrap_err().to_string().contains("not an integer"));
    let _: () = c.set("max", i64::MAX).unwrap();
    let err: RedisResult<i64> = c.incr("max", 1);
    assert!(err.unwrap_err().to_string().contains("overflow"));
}

#[test]
fn keys_and_expiry() {
    let server = Server::start();
    let mut c = server.client();
    for i in 0..50 {
        let _: () = c.set(format!("user:{i}"), i).unwrap();
    }
    let mut keys: Vec<String> = c.keys("user:1*").unwrap();
    keys.sort();
    assert_eq!(keys.len(), 11);
    let scanned: Vec<String> = c.scan_match::<_, String>("user:*").unwrap().collect();
    assert_eq!(scanned.len(), 50);
    assert_eq!(c.del::<_, i64>(&["user:0", "user:1", "nope"]).unwrap(), 2);
    let _: () = c.rename("user:2", "renamed").unwrap();
    assert_eq!(c.get::<_, i64>("renamed").unwrap(), 2);
    let t: String = redis::cmd("TYPE").arg("renamed").query(&mut c).unwrap();
    assert_eq!(t, "string");
    assert!(c.expire::<_, bool>("renamed", 100).unwrap());
    let ttl: i64 = c.ttl("renamed").unwrap();
    assert!((99..=100).contains(&ttl), "ttl {ttl}");
    assert!(c.persist::<_, bool>("renamed").unwrap());
    assert_eq!(c.ttl::<_, i64>("renamed").unwrap(), -1);
    assert_eq!(c.ttl::<_, i64>("missing").unwrap(), -2);
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 48);
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn expired_keys_vanish_for_reads_and_are_deleted_through_the_log() {
    let server = Server::start();
    let mut c = server.client();
    let _: () = redis::cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(150)
        .query(&mut c)
        .unwrap();
    let _: () = c.set("long", "v").unwrap();
    // GET stops seeing the key once its deadline passes...
    wait_for(
        "GET to miss the expired key",
        Duration::from_secs(10),
        || {
            c.get::<_, Option<String>>("short")
                .unwrap()
                .is_none()
                .then_some(())
        },
    );
    // ...and the leader's expiry proposal removes it from the keyspace.
    wait_for(
        "active expiry to delete the key",
        Duration::from_secs(10),
        || {
            let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
            (n == 1).then_some(())
        },
    );
    assert_eq!(c.get::<_, String>("long").unwrap(), "v");
}

#[test]
fn hashes() {
    let server = Server::start();
    let mut c = server.client();
    assert_eq!(
        c.hset_multiple::<_, _, _, ()>("h", &[("a", "1"), ("b", "2")])
            .ok(),
        Some(())
    );
    assert_eq!(c.hget::<_, _, String>("h", "a").unwrap(), "1");
    let all: HashMap<String, String> = c.hgetall("h").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(c.hincr::<_, _, _, i64>("h", "a", 10).unwrap(), 11);
    assert_eq!(c.hlen::<_, i64>("h").unwrap(), 2);
    assert!(c.hexists::<_, _, bool>("h", "b").unwrap());
    assert_eq!(c.hdel::<_, _, i64>("h", &["a", "b"]).unwrap(), 2);
    assert!(
        !c.exists::<_, bool>("h").unwrap(),
        "an emptied hash is deleted"
    );
    let _: () = c.set("str", "x").unwrap();
    let err: RedisResult<String> = c.hget("str", "f");
    assert!(err.unwrap_err().to_string().contains("WRONGTYPE"));
}

#[test]
fn hyperloglog() {
    let server = Server::start();
    let mut c = server.client();
    let added: i64 = redis::cmd("PFADD")
        .arg("h")
        .arg(&["a", "b", "c"])
        .query(&mut c)
        .unwrap();
    assert_eq!(added, 1);
    let elements: Vec<String> = (0..5000).map(|i| format!("el{i}")).collect();
    let _: i64 = redis::cmd("PFADD")
        .arg("big")
        .arg(&elements)
        .query(&mut c)
        .unwrap();
    // Redis 7.0 answers 5041 for these elements: same hash, same estimator.
    let count: i64 = redis::cmd("PFCOUNT").arg("big").query(&mut c).unwrap();
    assert_eq!(count, 5041);
    let raw: Vec<u8> = c.get("big").unwrap();
    assert_eq!(raw.len(), 12304, "5000 elements make the HLL dense");
    let _: () = redis::cmd("PFMERGE")
        .arg("u")
        .arg("h")
        .arg("big")
        .query(&mut c)
        .unwrap();
    let union: i64 = redis::cmd("PFCOUNT")
        .arg("h")
        .arg("big")
        .query(&mut c)
        .unwrap();
    let merged: i64 = redis::cmd("PFCOUNT").arg("u").query(&mut c).unwrap();
    assert_eq!(union, merged);
    let _: () = c.set("s", "not an hll").unwrap();
    let err: RedisResult<i64> = redis::cmd("PFCOUNT").arg("s").query(&mut c);
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("not a valid HyperLogLog"));
    let ok: String = redis::cmd("PFSELFTEST").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
}

#[test]
fn server_and_connection_commands() {
    let server = Server::start();
    let mut c = server.client();
    let info: String = redis::cmd("INFO").query(&mut c).unwrap();
    for field in [
        "redis_version:7.2",
        "arch_bits:64",
        "raft_role:leader",
        "raft_leader_id:1",
        "raft_term:",
        "raft_commit_index:",
        "raft_applied_index:",
        "role:master",
    ] {
        assert!(info.contains(field), "INFO lacks {field}");
    }
    let raft_only: String = redis::cmd("INFO").arg("raft").query(&mut c).unwrap();
    assert!(raft_only.starts_with("# Raft") && !raft_only.contains("redis_version"));
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    assert!(count > 60, "only {count} commands");
    let info: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("get")
        .query(&mut c)
        .unwrap();
    let Value::Array(items) = info else {
        panic!("COMMAND INFO: {info:?}")
    };
    let Value::Array(get) = &items[0] else {
        panic!()
    };
    assert_eq!(get[1], Value::Int(2));
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query(&mut c)
        .unwrap();
    let name: String = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
    assert_eq!(name, "tester");
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    assert!(list.contains("name=tester"));
    // The command running is the one named, as in Redis.
    assert!(list.contains("cmd=client|list"), "{list}");
    // Cluster probes get a standalone Redis's answer.
    let err: RedisResult<Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut c);
    assert_eq!(
        err.unwrap_err().detail(),
        Some("This instance has cluster support disabled")
    );
    let err: RedisResult<()> = redis::cmd("SELECT").arg(16).query(&mut c);
    assert!(err.unwrap_err().to_string().contains("out of range"));
    let _: () = redis::cmd("SELECT").arg(15).query(&mut c).unwrap();
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
    assert!(list.contains("db=15"), "{list}");
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    let cfg: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendfsync")
        .query(&mut c)
        .unwrap();
    assert_eq!(cfg["appendfsync"], "always");
    // A setting concord does not honour is refused by name, never
    // accepted and ignored; its true value is accepted.
    let err: RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("everysec")
        .query(&mut c);
    let text = err.unwrap_err().to_string();
    assert!(
        text.contains("'appendfsync'") && text.contains("does not support"),
        "{text}"
    );
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("always")
        .query(&mut c)
        .unwrap();
    let err: RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("nonsense")
        .arg("1")
        .query(&mut c);
    assert!(err.unwrap_err().to_string().contains("Unknown option"));
    // Memory values take Redis's units and read back in bytes.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("proto-max-bulk-len")
        .arg("100mb")
        .query(&mut c)
        .unwrap();
    let cfg: HashMap<String, String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("proto-max-bulk-len")
        .query(&mut c)
        .unwrap();
    assert_eq!(cfg["proto-max-bulk-len"], "104857600");
    let err: RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("bla")
        .query(&mut c);
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("argument must be a memory value"));
    let time: Vec<String> = redis::cmd("TIME").query(&mut c).unwrap();
    assert!(time[0].parse::<u64>().unwrap() > 1_600_000_000);
    let role: Value = redis::cmd("ROLE").query(&mut c).unwrap();
    let Value::Array(role) = role else { panic!() };
    assert_eq!(role[0], Value::BulkString(b"master".to_vec()));
    // Redis's own test harness sends FUNCTION FLUSH before every unit.
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query(&mut c).unwrap();
    let _: () = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .arg("sync")
        .query(&mut c)
        .unwrap();
    let err: RedisResult<()> = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .arg("LATER")
        .query(&mut c);
    assert!(err
        .unwrap_err()
        .to_string()
        .contains("only supports SYNC|ASYNC"));
    let stats: Value = redis::cmd("FUNCTION").arg("STATS").query(&mut c).unwrap();
    let Value::Array(stats) = stats else { panic!() };
    assert_eq!(stats[0], Value::BulkString(b"running_script".to_vec()));
    let err: RedisResult<()> = redis::cmd("FUNCTION").arg("NOSUCH").query(&mut c);
    assert!(err.unwrap_err().to_string().contains("unknown subcommand"));
}

#[test]
fn resp3_clients_get_maps() {
    let server = Server::start();
    let client = redis::Client::open(format!("{}?protocol=resp3", server.url())).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: () = c.hset("h", "f", "v").unwrap();
    let v: Value = redis::cmd("HGETALL").arg("h").query(&mut c).unwrap();
    assert!(matches!(v, Value::Map(_)), "RESP3 HGETALL is a map: {v:?}");
    let nil: Value = redis::cmd("GET").arg("missing").query(&mut c).unwrap();
    assert_eq!(nil, Value::Nil);
}

/// INFO errorstats counts error replies by code, as monitoring scrapes them;
/// CONFIG RESETSTAT clears them.
#[test]
fn error_replies_are_counted_by_code() {
    let server = Server::start();
    let mut c = server.client();
    let errorstats = |c: &mut redis::Connection| -> String {
        redis::cmd("INFO").arg("errorstats").query(c).unwrap()
    };
    let _: () = c.set("s", "x").unwrap();
    for _ in 0..2 {
        assert!(c.lpush::<_, _, i64>("s", "y").is_err());
    }
    assert!(redis::cmd("NOSUCHCOMMAND").query::<()>(&mut c).is_err());
    assert!(redis::cmd("EVAL")
        .arg("return redis.error_reply('MY_CODE custom text')")
        .arg(0)
        .query::<()>(&mut c)
        .is_err());
    assert!(redis::cmd("EVAL")
        .arg("return redis.error_reply('')")
        .arg(0)
        .query::<()>(&mut c)
        .is_err());
    let info = errorstats(&mut c);
    assert!(info.contains("errorstat_WRONGTYPE:count=2\r\n"), "{info}");
    assert!(info.contains("errorstat_MY_CODE:count=1\r\n"), "{info}");
    // The unknown command and the empty error_reply.
    assert!(info.contains("errorstat_ERR:count=2\r\n"), "{info}");
    let stats: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(stats.contains("total_error_replies:5\r"), "{stats}");
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
    assert!(!errorstats(&mut c).contains("errorstat_"));
}
