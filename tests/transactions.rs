//! MULTI/EXEC/WATCH through real clients against real processes: queueing
//! and its errors, EXEC as one entry, WATCH aborting on a change made
//! through another node, and optimistic increments from every node of a
//! cluster adding up exactly.

mod common;

use std::thread;

use common::cluster::Cluster;
use common::Server;
use redis::{Commands, Value};

/// The raw reply, errors nested in arrays included.
fn cmd(c: &mut redis::Connection, args: &[&str]) -> Value {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    redis::ConnectionLike::req_packed_command(c, &command.get_packed_command())
        .unwrap_or_else(|e| Value::SimpleString(format!("error: {e}")))
}

fn ok(c: &mut redis::Connection, args: &[&str]) {
    assert_eq!(cmd(c, args), Value::Okay, "{args:?}");
}

fn queued(c: &mut redis::Connection, args: &[&str]) {
    assert_eq!(
        cmd(c, args),
        Value::SimpleString("QUEUED".into()),
        "{args:?}"
    );
}

fn error_text(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut command = redis::cmd(args[0]);
    for arg in &args[1..] {
        command.arg(*arg);
    }
    let err = command
        .query::<Value>(c)
        .expect_err("the command answers an error");
    err.to_string()
}

#[test]
fn transactions_through_a_client() {
    let server = Server::start();
    let mut c = server.client();

    // A pipelined transaction, as clients send it.
    let (n, value): (i64, String) = redis::pipe()
        .atomic()
        .incr("counter", 5)
        .set("name", "concord")
        .ignore()
        .get("name")
        .query(&mut c)
        .unwrap();
    assert_eq!((n, value.as_str()), (5, "concord"));

    // Errors found while queueing doom the transaction.
    ok(&mut c, &["MULTI"]);
    queued(&mut c, &["SET", "a", "1"]);
    assert!(error_text(&mut c, &["NOSUCHCOMMAND"]).contains("unknown command"));
    assert!(error_text(&mut c, &["GET"]).contains("wrong number of arguments"));
    let abort = error_text(&mut c, &["EXEC"]);
    assert!(abort.contains("Transaction discarded"), "{abort}");
    assert_eq!(c.exists::<_, i64>("a").unwrap(), 0);

    // Errors found while executing answer in place; the rest applies.
    ok(&mut c, &["MULTI"]);
    queued(&mut c, &["SET", "b", "1", "NOSUCHOPTION"]);
    queued(&mut c, &["LPUSH", "name", "x"]);
    queued(&mut c, &["INCR", "b2"]);
    queued(&mut c, &["PING"]);
    let Value::Array(results) = cmd(&mut c, &["EXEC"]) else {
        panic!("EXEC answers an array")
    };
    assert!(matches!(&results[0], Value::ServerError(e) if e.code() == "ERR"));
    assert!(matches!(&results[1], Value::ServerError(e) if e.code() == "WRONGTYPE"));
    assert_eq!(results[2], Value::Int(1));
    assert_eq!(results[3], Value::SimpleString("PONG".into()));

    // Control errors.
    assert!(error_text(&mut c, &["EXEC"]).contains("EXEC without MULTI"));
    assert!(error_text(&mut c, &["DISCARD"]).contains("DISCARD without MULTI"));
    ok(&mut c, &["MULTI"]);
    assert!(error_text(&mut c, &["MULTI"]).contains("can not be nested"));
    assert!(error_text(&mut c, &["WATCH", "x"]).contains("inside MULTI"));
    queued(&mut c, &["INCR", "discarded"]);
    ok(&mut c, &["DISCARD"]);
    assert_eq!(c.exists::<_, i64>("discarded").unwrap(), 0);

    // A blocking command inside MULTI answers at once, as on timeout.
    ok(&mut c, &["MULTI"]);
    queued(&mut c, &["BLPOP", "nothing", "0"]);
    queued(&mut c, &["BRPOPLPUSH", "nothing", "elsewhere", "0"]);
    queued(&mut c, &["BZPOPMIN", "nothing", "0"]);
    assert_eq!(
        cmd(&mut c, &["EXEC"]),
        Value::Array(vec![Value::Nil, Value::Nil, Value::Nil])
    );
    // Nobody is left waiting on those keys.
    let _: i64 = c.lpush("nothing", "x").unwrap();
    assert_eq!(c.llen::<_, i64>("nothing").unwrap(), 1);

    // WATCH: a change by another client aborts; UNWATCH forgets.
    let mut other = server.client();
    let _: () = c.set("w", "1").unwrap();
    ok(&mut c, &["WATCH", "w", "unrelated"]);
    let _: () = other.set("w", "2").unwrap();
    ok(&mut c, &["MULTI"]);
    queued(&mut c, &["SET", "w", "from-tx"]);
    assert_eq!(cmd(&mut c, &["EXEC"]), Value::Nil);
    assert_eq!(c.get::<_, String>("w").unwrap(), "2");
    ok(&mut c, &["WATCH", "w"]);
    let _: () = other.set("w", "3").unwrap();
    ok(&mut c, &["UNWATCH"]);
    ok(&mut c, &["MULTI"]);
    queued(&mut c, &["SET", "w", "from-tx"]);
    assert_eq!(cmd(&mut c, &["EXEC"]), Value::Array(vec![Value::Okay]));

    // A deadline change is a change; a key that stays missing is not.
    ok(&mut c, &["WATCH", "w", "missing"]);
    let _: bool = other.expire("w", 100).unwrap();
    ok(&mut c, &["MULTI"]);
    queued(&mut c, &["PING"]);
    assert_eq!(cmd(&mut c, &["EXEC"]), Value::Nil);
    ok(&mut c, &["WATCH", "missing"]);
    let _: i64 = other.del("missing").unwrap();
    ok(&mut c, &["MULTI"]);
    queued(&mut c, &["PING"]);
    assert_eq!(
        cmd(&mut c, &["EXEC"]),
        Value::Array(vec![Value::SimpleString("PONG".into())])
    );
}

/// WATCH on a follower sees a change made through the leader; an
/// unchanged watch lets the follower's EXEC apply on every node.
#[test]
fn watch_sees_changes_made_through_other_nodes() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut on_leader = cluster.client(leader);
    let mut on_follower = cluster.client(follower);

    let _: () = on_leader.set("balance", 100).unwrap();
    ok(&mut on_follower, &["WATCH", "balance"]);
    let _: i64 = on_leader.incr("balance", 1).unwrap();
    ok(&mut on_follower, &["MULTI"]);
    queued(&mut on_follower, &["SET", "balance", "0"]);
    assert_eq!(cmd(&mut on_follower, &["EXEC"]), Value::Nil);

    ok(&mut on_follower, &["WATCH", "balance"]);
    let seen: i64 = on_follower.get("balance").unwrap();
    assert_eq!(seen, 101);
    ok(&mut on_follower, &["MULTI"]);
    queued(&mut on_follower, &["SET", "balance", "90"]);
    queued(&mut on_follower, &["RPUSH", "ledger", "-11"]);
    assert_eq!(
        cmd(&mut on_follower, &["EXEC"]),
        Value::Array(vec![Value::Okay, Value::Int(1)])
    );
    cluster.converged(&cluster.running());
    for id in cluster.running() {
        let mut c = cluster.client(id);
        assert_eq!(c.get::<_, i64>("balance").unwrap(), 90, "node {id}");
    }
}

/// Clients on all three nodes add to one counter with WATCH/GET/MULTI/SET
/// retry loops: every successful EXEC must count exactly once.
#[test]
fn optimistic_increments_from_every_node_add_up() {
    const PER_CLIENT: i64 = 25;
    let cluster = Cluster::start(3, &[]);
    cluster.leader();
    let workers: Vec<_> = cluster
        .running()
        .into_iter()
        .flat_map(|id| [cluster.url(id), cluster.url(id)])
        .map(|url| {
            thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut aborted = 0;
                let mut done = 0;
                while done < PER_CLIENT {
                    ok(&mut c, &["WATCH", "counter"]);
                    let current: Option<i64> = c.get("counter").unwrap();
                    ok(&mut c, &["MULTI"]);
                    let next = (current.unwrap_or(0) + 1).to_string();
                    queued(&mut c, &["SET", "counter", &next]);
                    match cmd(&mut c, &["EXEC"]) {
                        Value::Array(results) => {
                            assert_eq!(results, vec![Value::Okay]);
                            done += 1;
                        }
                        Value::Nil => aborted += 1,
                        other => panic!("EXEC answered {other:?}"),
                    }
                }
                aborted
            })
        })
        .collect();
    let clients = workers.len() as i64;
    let aborted: i64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let mut c = cluster.client(cluster.leader());
    assert_eq!(
        c.get::<_, i64>("counter").unwrap(),
        clients * PER_CLIENT,
        "{aborted} aborted attempts"
    );
}
