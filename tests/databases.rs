//! The sixteen databases against real processes: a SELECTed connection's
//! writes and reads on any node, blocking pops, transactions and WATCH per
//! database, keyspace events on `__keyspace@N__`, INFO keyspace, and the
//! databases surviving a snapshot and a restart.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{exchange, wait_for};

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

fn select(con: &mut redis::Connection, db: u32) {
    let _: () = redis::cmd("SELECT").arg(db).query(con).unwrap();
}

fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(con).unwrap()
}

#[test]
fn each_database_is_its_own_keyspace_on_every_node() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let followers = cluster.followers(leader);
    let mut on_follower = cluster.client(followers[0]);
    let mut on_leader = cluster.client(leader);

    // Written through a follower in database 3, read on the leader there.
    select(&mut on_follower, 3);
    let _: () = redis::cmd("SET")
        .arg(&["k", "three"])
        .query(&mut on_follower)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(&["k", "zero"])
        .query(&mut on_leader)
        .unwrap();
    assert_eq!(get(&mut on_leader, "k").as_deref(), Some("zero"));
    select(&mut on_leader, 3);
    assert_eq!(get(&mut on_leader, "k").as_deref(), Some("three"));
    select(&mut on_leader, 4);
    assert_eq!(get(&mut on_leader, "k"), None);
    let err = redis::cmd("SELECT")
        .arg(16)
        .query::<()>(&mut on_leader)
        .unwrap_err();
    assert!(
        err.to_string().contains("DB index is out of range"),
        "{err}"
    );

    // MOVE and SWAPDB through a follower.
    let moved: i64 = redis::cmd("MOVE")
        .arg(&["k", "7"])
        .query(&mut on_follower)
        .unwrap();
    assert_eq!(moved, 1);
    let _: () = redis::cmd("SWAPDB")
        .arg(&["7", "8"])
        .query(&mut on_follower)
        .unwrap();
    select(&mut on_leader, 8);
    assert_eq!(get(&mut on_leader, "k").as_deref(), Some("three"));

    // INFO keyspace names each database that holds keys.
    let info: String = redis::cmd("INFO")
        .arg("keyspace")
        .query(&mut on_leader)
        .unwrap();
    assert!(info.contains("db0:keys=1,expires=0"), "{info}");
    assert!(info.contains("db8:keys=1,expires=0"), "{info}");
    assert!(!info.contains("db3:"), "{info}");

    // A snapshot holds every database; a restarted follower loads it.
    let _: () = redis::cmd("RAFT.SNAPSHOT").query(&mut on_leader).unwrap();
    let restarted = followers[1];
    let _: () = redis::cmd("RAFT.SNAPSHOT")
        .query(&mut cluster.client(restarted))
        .unwrap();
    cluster.terminate(restarted);
    cluster.restart(restarted);
    let digest = cluster.converged(&cluster.running());
    assert!(!digest.is_empty());
    let mut again = cluster.client(restarted);
    select(&mut again, 8);
    let _: () = redis::cmd("READMODE")
        .arg("STALE")
        .query(&mut again)
        .unwrap();
    assert_eq!(get(&mut again, "k").as_deref(), Some("three"));
    select(&mut again, 0);
    assert_eq!(get(&mut again, "k").as_deref(), Some("zero"));
}

#[test]
fn blocking_transactions_and_events_keep_to_their_database() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let followers = cluster.followers(leader);

    // A BLPOP in database 2 is not served by a push to database 0.
    let mut waiter = cluster.raw(followers[0]);
    waiter
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(text(exchange(&mut waiter, b"SELECT 2\r\n", 5)), "+OK\r\n");
    use std::io::Write;
    waiter.write_all(b"BLPOP jobs 0\r\n").unwrap();
    let mut writer = cluster.client(followers[1]);
    wait_for("the pop to wait", Duration::from_secs(10), || {
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut cluster.client(followers[0]))
            .ok()?;
        clients
            .lines()
            .any(|l| l.contains("flags=b") && l.contains("cmd=blpop") && l.contains("db=2"))
            .then_some(())
    });
    let _: i64 = redis::cmd("RPUSH")
        .arg(&["jobs", "in-zero"])
        .query(&mut writer)
        .unwrap();
    select(&mut writer, 2);
    let _: i64 = redis::cmd("RPUSH")
        .arg(&["jobs", "in-two"])
        .query(&mut writer)
        .unwrap();
    let served = "*2\r\n$4\r\njobs\r\n$6\r\nin-two\r\n";
    assert_eq!(text(exchange(&mut waiter, b"", served.len())), served);
    select(&mut writer, 0);
    let left: Vec<String> = redis::cmd("LRANGE")
        .arg(&["jobs", "0", "-1"])
        .query(&mut writer)
        .unwrap();
    assert_eq!(left, ["in-zero"]);

    // Keyspace events carry the database's index.
    let mut admin = cluster.client(leader);
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "notify-keyspace-events", "KA"])
        .query(&mut admin)
        .unwrap();
    let mut sub = cluster.raw(followers[0]);
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let confirm = "*3\r\n$10\r\npsubscribe\r\n$16\r\n__keyspace@5__:*\r\n:1\r\n";
    assert_eq!(
        text(exchange(
            &mut sub,
            b"PSUBSCRIBE __keyspace@5__:*\r\n",
            confirm.len()
        )),
        confirm
    );
    let _: () = redis::cmd("SET")
        .arg(&["e", "0"])
        .query(&mut admin)
        .unwrap();
    select(&mut admin, 5);
    let _: () = redis::cmd("SET")
        .arg(&["e", "5"])
        .query(&mut admin)
        .unwrap();
    let event =
        "*4\r\n$8\r\npmessage\r\n$16\r\n__keyspace@5__:*\r\n$16\r\n__keyspace@5__:e\r\n$3\r\nset\r\n";
    assert_eq!(text(exchange(&mut sub, b"", event.len())), event);

    // A transaction's SELECT changes the database of what follows it,
    // and of the connection after EXEC.
    let mut tx = cluster.client(followers[1]);
    let results: (i64, (), i64) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("n")
        .cmd("SELECT")
        .arg(6)
        .cmd("INCRBY")
        .arg(&["n", "10"])
        .query(&mut tx)
        .unwrap();
    assert_eq!(results, (1, (), 10));
    assert_eq!(get(&mut tx, "n").as_deref(), Some("10"));

    // WATCH in database 6: a write to `n` in database 0 does not abort the
    // transaction, one in database 6 does.
    let _: () = redis::cmd("WATCH").arg("n").query(&mut tx).unwrap();
    let _: i64 = redis::cmd("INCR")
        .arg("n")
        .query(&mut admin_in(&cluster, leader, 0))
        .unwrap();
    let ran = incr_in_transaction(&mut tx);
    assert_eq!(ran, Some(11));
    let _: () = redis::cmd("WATCH").arg("n").query(&mut tx).unwrap();
    let _: i64 = redis::cmd("INCR")
        .arg("n")
        .query(&mut admin_in(&cluster, leader, 6))
        .unwrap();
    let ran = incr_in_transaction(&mut tx);
    assert_eq!(ran, None);

    // Keys watched in two databases: a change in either aborts.
    let _: () = redis::cmd("WATCH").arg("n").query(&mut tx).unwrap();
    select(&mut tx, 0);
    let _: () = redis::cmd("WATCH").arg("n").query(&mut tx).unwrap();
    let ran = incr_in_transaction(&mut tx);
    assert_eq!(ran, Some(3));
    let _: () = redis::cmd("WATCH").arg("n").query(&mut tx).unwrap();
    select(&mut tx, 6);
    let _: () = redis::cmd("WATCH").arg("n").query(&mut tx).unwrap();
    let _: i64 = redis::cmd("INCR")
        .arg("n")
        .query(&mut admin_in(&cluster, leader, 0))
        .unwrap();
    let ran = incr_in_transaction(&mut tx);
    assert_eq!(ran, None);
}

/// A connection to `id` with database `db` selected.
fn admin_in(cluster: &Cluster, id: u64, db: u32) -> redis::Connection {
    let mut con = cluster.client(id);
    select(&mut con, db);
    con
}

/// MULTI, INCR n, EXEC: the new value, or None if a watched key changed.
fn incr_in_transaction(con: &mut redis::Connection) -> Option<i64> {
    let ran: Option<(i64,)> = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("n")
        .query(con)
        .unwrap();
    ran.map(|(n,)| n)
}
