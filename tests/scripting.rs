//! Lua scripts in a real 3-node cluster: the script cache is replicated
//! (SCRIPT LOAD through one node, EVALSHA through another), a script's
//! writes land identically on every replica, a runaway script ends with an
//! error while the cluster goes on serving, the release script of
//! redis-py's Lock works through every node, and an EVALSHA, FCALL or EVAL
//! (of a cached body) whose run writes nothing is served as a read, and
//! FUNCTION RESTORE of a payload Redis dumped reaches every replica.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{wait_for, Server};
use redis::Commands;

const RELEASE: &str = r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#;

#[test]
fn a_script_loaded_through_the_leader_runs_through_a_follower_with_identical_writes() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut l = cluster.client(leader);
    let sha = load(
        &mut l,
        "redis.call('set', KEYS[1], ARGV[1]); redis.call('rpush', KEYS[2], ARGV[1], ARGV[2]); return redis.call('llen', KEYS[2])",
    );
    let mut f = cluster.client(follower);
    let len: i64 = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(2)
        .arg("k")
        .arg("list")
        .arg("a")
        .arg("b")
        .query(&mut f)
        .unwrap();
    assert_eq!(len, 2);
    let exists: Vec<i64> = redis::cmd("SCRIPT")
        .arg("EXISTS")
        .arg(&sha)
        .arg("0000000000000000000000000000000000000000")
        .query(&mut f)
        .unwrap();
    assert_eq!(exists, [1, 0]);
    // Random numbers and random commands inside a script are the same on
    // every replica: the digest covers what SPOP left behind.
    let _: i64 = l.sadd("s", &["a", "b", "c", "d", "e"]).unwrap();
    let popped: String = redis::cmd("EVAL")
        .arg("redis.call('set', 'r', tostring(math.random())); return redis.call('spop', KEYS[1])")
        .arg(1)
        .arg("s")
        .query(&mut f)
        .unwrap();
    assert!(!popped.is_empty());
    let digest = cluster.converged(&[1, 2, 3]);
    assert!(!digest.is_empty());
    for id in [1, 2, 3] {
        let mut c = cluster.client(id);
        let _: () = redis::cmd("READMODE").arg("STALE").query(&mut c).unwrap();
        assert_eq!(c.get::<_, String>("k").unwrap(), "a");
        assert_eq!(
            c.lrange::<_, Vec<String>>("list", 0, -1).unwrap(),
            ["a", "b"]
        );
        assert_eq!(c.scard::<_, i64>("s").unwrap(), 4);
        // Every replica's INFO counts the replicated cache: the loaded
        // script and the EVAL's.
        wait_for(
            "INFO to count two cached scripts",
            Duration::from_secs(20),
            || {
                let memory: String = redis::cmd("INFO").arg("memory").query(&mut c).unwrap();
                memory
                    .contains("number_of_cached_scripts:2\r\n")
                    .then_some(())
            },
        );
    }
}

#[test]
fn a_runaway_script_ends_with_an_error_and_the_cluster_keeps_serving() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut f = cluster.client(follower);
    let err = redis::cmd("EVAL")
        .arg("local i = 0 while true do i = i + 1 end")
        .arg(0)
        .query::<()>(&mut f)
        .unwrap_err();
    assert!(
        err.to_string().contains("instruction limit"),
        "unexpected error: {err}"
    );
    // A write through every node still goes through.
    for id in [1, 2, 3] {
        let mut c = cluster.client(id);
        let _: () = c.set(format!("after{id}"), id).unwrap();
    }
    cluster.converged(&[1, 2, 3]);
}

#[test]
fn the_redis_py_lock_release_script_works_through_every_node() {
    let mut cluster = Cluster::start(3, &["--snapshot-entries", "20"]);
    let mut clients: Vec<redis::Connection> = (1..=3).map(|id| cluster.client(id)).collect();
    let release = redis::Script::new(RELEASE);
    for (i, c) in clients.iter_mut().enumerate() {
        let token = format!("token{i}");
        let acquired: Option<String> = redis::cmd("SET")
            .arg("lock")
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(10_000)
            .query(c)
            .unwrap();
        assert_eq!(acquired.as_deref(), Some("OK"));
        // The wrong token releases nothing; the right one releases.
        let wrong: i64 = release.key("lock").arg("not-mine").invoke(c).unwrap();
        assert_eq!(wrong, 0);
        let right: i64 = release.key("lock").arg(&token).invoke(c).unwrap();
        assert_eq!(right, 1);
    }
    // Enough entries for snapshots; a restarted node still knows the
    // script (from its snapshot or its log).
    for i in 0..40 {
        let _: () = clients[0].set(format!("fill{i}"), i).unwrap();
    }
    let sha = release.get_hash().to_owned();
    let victim = cluster.followers(cluster.leader())[0];
    drop(clients);
    cluster.kill9(victim);
    cluster.restart(victim);
    let mut c = cluster.client(victim);
    let answer: i64 = wait_for(
        "the restarted node to answer",
        Duration::from_secs(20),
        || {
            redis::cmd("EVALSHA")
                .arg(&sha)
                .arg(1)
                .arg("lock")
                .arg("x")
                .query(&mut c)
                .ok()
        },
    );
    assert_eq!(answer, 0);
    cluster.converged(&[1, 2, 3]);
}

#[test]
fn evalsha_ro_is_a_read_served_by_the_node_it_reaches() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut l = cluster.client(leader);
    let sha = load(&mut l, "return redis.call('get', KEYS[1])");
    let mut f = cluster.client(follower);
    cluster.converged(&[1, 2, 3]);
    let before = log_position(&cluster, leader);
    for i in 0..20 {
        // Linearizable: a write acknowledged through the leader is seen
        // by the next read through the follower.
        let _: () = l.set("k", i).unwrap();
        let after_write = log_position(&cluster, leader);
        let seen: i64 = redis::cmd("EVALSHA_RO")
            .arg(&sha)
            .arg(1)
            .arg("k")
            .query(&mut f)
            .unwrap();
        assert_eq!(seen, i);
        // ... and the read itself added nothing to the log.
        assert_no_entry_since(&cluster, leader, after_write);
    }
    assert_ne!(log_position(&cluster, leader).1, before.1);
    let refused: redis::RedisResult<()> = redis::cmd("EVALSHA_RO")
        .arg(load(&mut l, "return redis.call('set', 'x', '1')"))
        .arg(0)
        .query(&mut f);
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("Write commands are not allowed from read-only scripts"));
}

#[test]
fn an_evalsha_that_writes_nothing_is_a_read_and_one_that_writes_goes_through_the_log() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut l = cluster.client(leader);
    let mut f = cluster.client(follower);
    let release = load(&mut l, RELEASE);
    let evalsha = |c: &mut redis::Connection, key: &str, token: &str| -> i64 {
        redis::cmd("EVALSHA")
            .arg(&release)
            .arg(1)
            .arg(key)
            .arg(token)
            .query(c)
            .unwrap()
    };
    for i in 0..10 {
        let token = format!("t{i}");
        let _: () = l.set("lock", &token).unwrap();
        let after_write = log_position(&cluster, leader);
        // A release by a non-owner, through either node: it sees the
        // write acknowledged just before (linearizable), answers 0, and
        // adds nothing to the log.
        let stale_token = format!("t{}", i + 100);
        assert_eq!(evalsha(&mut f, "lock", &stale_token), 0);
        assert_eq!(evalsha(&mut l, "lock", &stale_token), 0);
        assert_no_entry_since(&cluster, leader, after_write);
        // The owner's release writes: through the log, seen everywhere.
        let owner = if i % 2 == 0 { &mut f } else { &mut l };
        assert_eq!(evalsha(owner, "lock", &token), 1);
        assert_ne!(log_position(&cluster, leader).1, after_write.1);
        assert_eq!(l.get::<_, Option<String>>("lock").unwrap(), None);
        assert_eq!(f.get::<_, Option<String>>("lock").unwrap(), None);
    }
    // In a pipeline, what follows an EVALSHA sees what it did, on the
    // leader and on a follower alike (scripts with requests behind them go
    // through the log; see the next test).
    for c in [&mut l, &mut f] {
        let _: () = c.set("held", "me").unwrap();
        let (released, after, set, released_again, exists): (
            i64,
            Option<String>,
            String,
            i64,
            i64,
        ) = redis::pipe()
            .cmd("EVALSHA")
            .arg(&release)
            .arg(1)
            .arg("held")
            .arg("me")
            .cmd("GET")
            .arg("held")
            .cmd("SET")
            .arg("held")
            .arg("again")
            .cmd("EVALSHA")
            .arg(&release)
            .arg(1)
            .arg("held")
            .arg("again")
            .cmd("EXISTS")
            .arg("held")
            .query(c)
            .unwrap();
        assert_eq!(
            (released, after, set.as_str(), released_again, exists),
            (1, None, "OK", 1, 0)
        );
    }
    // A script that wrote on every call lately goes to the log without a
    // try as a read; a call of it that writes nothing answers the same.
    let counter = load(
        &mut l,
        "if ARGV[1] == 'bump' then return redis.call('incr', KEYS[1]) end return tonumber(redis.call('get', KEYS[1]))",
    );
    for c in [&mut l, &mut f] {
        let _: () = c.del("count").unwrap();
        for expected in 1..=20 {
            let count: i64 = redis::cmd("EVALSHA")
                .arg(&counter)
                .arg(1)
                .arg("count")
                .arg("bump")
                .query(c)
                .unwrap();
            assert_eq!(count, expected);
        }
        let peek: i64 = redis::cmd("EVALSHA")
            .arg(&counter)
            .arg(1)
            .arg("count")
            .arg("peek")
            .query(c)
            .unwrap();
        assert_eq!(peek, 20);
    }
    // A write the script swallows with pcall is still made, on every node.
    let swallow = load(
        &mut l,
        "pcall(redis.call, 'set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])",
    );
    let written: String = redis::cmd("EVALSHA")
        .arg(&swallow)
        .arg(1)
        .arg("caught")
        .arg("made")
        .query(&mut f)
        .unwrap();
    assert_eq!(written, "made");
    cluster.converged(&[1, 2, 3]);
    for id in [1, 2, 3] {
        let mut c = cluster.client(id);
        let _: () = redis::cmd("READMODE").arg("STALE").query(&mut c).unwrap();
        assert_eq!(c.get::<_, String>("caught").unwrap(), "made");
    }
}

#[test]
fn pipelined_scripts_that_write_share_log_entries() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let counter = load(
        &mut cluster.client(leader),
        "return redis.call('incr', KEYS[1])",
    );
    for id in [leader, follower] {
        let mut c = cluster.client(id);
        let _: () = c.del("count").unwrap();
        let before = log_position(&cluster, leader);
        // 32 scripts in one pipeline, then a read of what they did. Tried
        // as reads, each would wait for the one before it and take a log
        // entry of its own.
        let mut pipe = redis::pipe();
        for _ in 0..32 {
            pipe.cmd("EVALSHA").arg(&counter).arg(1).arg("count");
        }
        pipe.cmd("GET").arg("count");
        let answers: Vec<redis::Value> = pipe.query(&mut c).unwrap();
        let counts: Vec<i64> = answers[..32]
            .iter()
            .map(|v| redis::from_redis_value(v).unwrap())
            .collect();
        assert_eq!(counts, (1..=32).collect::<Vec<i64>>(), "through node {id}");
        let last: String = redis::from_redis_value(&answers[32]).unwrap();
        assert_eq!(last, "32");
        let after = log_position(&cluster, leader);
        if after.0 == before.0 {
            assert!(
                after.1 - before.1 < 16,
                "32 pipelined scripts took {} log entries through node {id}",
                after.1 - before.1
            );
        }
    }
}

#[test]
fn an_fcall_that_writes_nothing_is_a_read_and_one_that_writes_goes_through_the_log() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut l = cluster.client(leader);
    let mut f = cluster.client(follower);
    let library = "#!lua name=locks\nredis.register_function('release', function(KEYS, ARGV) if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0 end)";
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(library)
        .query(&mut l)
        .unwrap();
    let fcall = |c: &mut redis::Connection, token: &str| -> i64 {
        redis::cmd("FCALL")
            .arg("release")
            .arg(1)
            .arg("lock")
            .arg(token)
            .query(c)
            .unwrap()
    };
    for c in [&mut f, &mut l] {
        let _: () = c.set("lock", "mine").unwrap();
        let after_write = log_position(&cluster, leader);
        assert_eq!(fcall(c, "theirs"), 0);
        assert_no_entry_since(&cluster, leader, after_write);
        assert_eq!(fcall(c, "mine"), 1);
        assert_ne!(log_position(&cluster, leader).1, after_write.1);
        assert_eq!(c.get::<_, Option<String>>("lock").unwrap(), None);
    }
    cluster.converged(&[1, 2, 3]);
}

#[test]
fn an_eval_of_a_cached_body_that_writes_nothing_is_a_read() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut l = cluster.client(leader);
    let mut f = cluster.client(follower);
    let eval = |c: &mut redis::Connection, token: &str| -> i64 {
        redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg("lock")
            .arg(token)
            .query(c)
            .unwrap()
    };
    // The first EVAL of a body goes through the log, even though it writes
    // nothing: every replica must cache the body for EVALSHA.
    let _: () = l.set("lock", "mine").unwrap();
    let before_first = log_position(&cluster, leader);
    assert_eq!(eval(&mut f, "theirs"), 0);
    assert_ne!(log_position(&cluster, leader).1, before_first.1);
    cluster.converged(&[1, 2, 3]);
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(RELEASE)
        .query(&mut l)
        .unwrap();
    for id in [1, 2, 3] {
        let exists: Vec<i64> = redis::cmd("SCRIPT")
            .arg("EXISTS")
            .arg(&sha)
            .query(&mut cluster.client(id))
            .unwrap();
        assert_eq!(exists, vec![1], "node {id} caches the EVAL's body");
    }
    // Cached now: a release by a non-owner, through either node, adds no
    // entry and sees the write acknowledged just before; the owner's
    // release goes through the log.
    for i in 0..4 {
        let c = if i % 2 == 0 { &mut f } else { &mut l };
        let token = format!("t{i}");
        let _: () = c.set("lock", &token).unwrap();
        let after_write = log_position(&cluster, leader);
        assert_eq!(eval(c, "someone else"), 0);
        assert_no_entry_since(&cluster, leader, after_write);
        assert_eq!(eval(c, &token), 1);
        assert_ne!(log_position(&cluster, leader).1, after_write.1);
        assert_eq!(c.get::<_, Option<String>>("lock").unwrap(), None);
    }
    // EVAL_RO of the cached body is a read too, and still refuses writes.
    let _: () = l.set("lock", "mine").unwrap();
    let after_write = log_position(&cluster, leader);
    let read_only: i64 = redis::cmd("EVAL_RO")
        .arg("return redis.call('exists', KEYS[1])")
        .arg(1)
        .arg("lock")
        .query(&mut f)
        .unwrap();
    assert_eq!(read_only, 1);
    // The follower answers once the leader applied the caching entry; a
    // try before the follower applied it too would find no body there and
    // go through the log again.
    cluster.converged(&[1, 2, 3]);
    let cached_after = log_position(&cluster, leader);
    let again: i64 = redis::cmd("EVAL_RO")
        .arg("return redis.call('exists', KEYS[1])")
        .arg(1)
        .arg("lock")
        .query(&mut f)
        .unwrap();
    assert_eq!(again, 1);
    assert_no_entry_since(&cluster, leader, cached_after);
    assert_ne!(
        cached_after.1, after_write.1,
        "the first EVAL_RO caches its body"
    );
    let refused = redis::cmd("EVAL_RO")
        .arg(RELEASE)
        .arg(1)
        .arg("lock")
        .arg("mine")
        .query::<i64>(&mut f)
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("Write commands are not allowed from read-only scripts"),
        "{refused}"
    );
    assert_eq!(
        l.get::<_, Option<String>>("lock").unwrap().as_deref(),
        Some("mine")
    );
    cluster.converged(&[1, 2, 3]);
}

#[test]
fn a_single_node_serves_an_evalsha_that_writes_nothing_without_a_log_entry() {
    let server = Server::start();
    let mut c = server.client();
    let release = load(&mut c, RELEASE);
    let last_index = |c: &mut redis::Connection| -> String {
        let info: String = redis::cmd("INFO").arg("raft").query(c).unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix("raft_last_index:"))
            .expect("INFO raft has the last index")
            .to_owned()
    };
    for mode in ["LINEARIZABLE", "LEASE", "STALE"] {
        let _: () = redis::cmd("READMODE").arg(mode).query(&mut c).unwrap();
        // One entry per round: the owner's release; the other EVALSHA is a
        // read. A fresh node also writes its own notices (its address, its
        // boot) on its first ticks, which may land inside a round: a round
        // that shows exactly one entry is the proof, and a node that sent
        // both EVALSHAs through the log could never show one.
        let mut entries_per_round = Vec::new();
        for _ in 0..5 {
            let _: () = c.set("lock", "mine").unwrap();
            let before: u64 = last_index(&mut c).parse().unwrap();
            // One request at a time: a script with requests pipelined
            // behind it goes through the log (see
            // pipelined_scripts_that_write_share_log_entries).
            let mut evalsha = |token: &str| -> i64 {
                redis::cmd("EVALSHA")
                    .arg(&release)
                    .arg(1)
                    .arg("lock")
                    .arg(token)
                    .query(&mut c)
                    .unwrap()
            };
            let not_owner = evalsha("theirs");
            let owner = evalsha("mine");
            let after: Option<String> = c.get("lock").unwrap();
            assert_eq!((not_owner, owner, after), (0, 1, None), "{mode}");
            let after_index: u64 = last_index(&mut c).parse().unwrap();
            entries_per_round.push(after_index - before);
            if after_index == before + 1 {
                break;
            }
        }
        assert_eq!(
            entries_per_round.last(),
            Some(&1),
            "{mode}: {entries_per_round:?}"
        );
    }
}

/// Node `id`'s raft term and last log index (INFO raft).
/// FUNCTION DUMP of one library, as redis-server 7.0.15 answered it.
const REDIS_FUNCTION_DUMP: &[u8] = b"\xf5@X#!lua name=test\nredis.register_function('test', function(KEYS, ARGV) return 'hello' end)\n\x00d\x9cn\xdb\"\xb8\x80\xe7";

#[test]
fn function_restore_of_a_redis_payload_reaches_every_replica_and_dumps_back_the_same() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut l = cluster.client(leader);
    let mut f = cluster.client(follower);
    let function =
        |c: &mut redis::Connection, args: &[&[u8]]| -> redis::RedisResult<redis::Value> {
            let mut cmd = redis::cmd("FUNCTION");
            for arg in args {
                cmd.arg(*arg);
            }
            cmd.query(c)
        };
    // Redis's payload, restored through a follower.
    let ok = function(&mut f, &[b"RESTORE", REDIS_FUNCTION_DUMP]).unwrap();
    assert_eq!(ok, redis::Value::Okay);
    // A second time, APPEND refuses it with Redis's text; REPLACE takes it.
    let err = function(&mut l, &[b"RESTORE", REDIS_FUNCTION_DUMP, b"APPEND"]).unwrap_err();
    assert!(
        err.to_string().contains("Library test already exists"),
        "{err}"
    );
    function(&mut l, &[b"RESTORE", REDIS_FUNCTION_DUMP, b"REPLACE"]).unwrap();
    cluster.converged(&[1, 2, 3]);
    for id in [1, 2, 3] {
        let mut c = cluster.client(id);
        let _: () = redis::cmd("READMODE").arg("STALE").query(&mut c).unwrap();
        let hello: String = redis::cmd("FCALL")
            .arg("test")
            .arg(0)
            .query(&mut c)
            .unwrap();
        assert_eq!(hello, "hello");
        // Every replica dumps the bytes Redis dumped.
        let dump: Vec<u8> = redis::cmd("FUNCTION").arg("DUMP").query(&mut c).unwrap();
        assert_eq!(dump, REDIS_FUNCTION_DUMP);
    }
    // A bad payload is refused before the log, and FLUSH replaces all.
    let err = function(&mut f, &[b"RESTORE", b"bad_payload"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("payload version or checksum are wrong"),
        "{err}"
    );
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=other\nredis.register_function('other', function() return 1 end)")
        .query(&mut l)
        .unwrap();
    function(&mut f, &[b"RESTORE", REDIS_FUNCTION_DUMP, b"FLUSH"]).unwrap();
    let dump: Vec<u8> = redis::cmd("FUNCTION").arg("DUMP").query(&mut l).unwrap();
    assert_eq!(dump, REDIS_FUNCTION_DUMP);
    cluster.converged(&[1, 2, 3]);
}

fn log_position(cluster: &Cluster, id: u64) -> (u64, u64) {
    let field = |name| {
        cluster
            .raft_field(id, name)
            .expect("INFO raft answers")
            .parse()
            .expect("a number")
    };
    (field("raft_term"), field("raft_last_index"))
}

/// Asserts that node `id` appended no entry since `before`. An election in
/// between (a starved node missing heartbeats while tests share the cores)
/// appends the new leader's empty entry, which no request made; across a
/// change of term there is nothing to compare.
fn assert_no_entry_since(cluster: &Cluster, id: u64, before: (u64, u64)) {
    let now = log_position(cluster, id);
    if now.0 == before.0 {
        assert_eq!(now.1, before.1, "an entry was appended in term {}", now.0);
    }
}

/// SCRIPT LOAD through `c`; answers the sha.
fn load(c: &mut redis::Connection, body: &str) -> String {
    redis::cmd("SCRIPT").arg("LOAD").arg(body).query(c).unwrap()
}
