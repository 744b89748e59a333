//! A 3-node cluster of real processes: replication, relaying from
//! followers, failover, catch-up by log and by snapshot, membership, and
//! garbage on the peer port.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::Cluster;
use common::wait_for;
use redis::{Commands, Value};

#[test]
fn every_node_serves_reads_and_writes() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    for id in 1..=3u64 {
        let mut c = cluster.client(id);
        let _: () = c.set(format!("from:{id}"), id).unwrap();
        let n: i64 = c.incr("counter", 1).unwrap();
        assert!(n >= 1);
    }
    for id in 1..=3u64 {
        let mut c = cluster.client(id);
        let got: Vec<Option<u64>> = c.mget(&["from:1", "from:2", "from:3"]).unwrap();
        assert_eq!(got, vec![Some(1), Some(2), Some(3)], "reads on node {id}");
        assert_eq!(
            c.get::<_, i64>("counter").unwrap(),
            3,
            "node {id} sees every increment"
        );
    }
    let follower = (1..=3u64).find(|id| *id != leader).unwrap();
    let mut c = cluster.client(follower);
    let mut pipe = redis::pipe();
    for i in 0..50 {
        pipe.cmd("SET").arg("pipelined").arg(i).ignore();
        pipe.cmd("GET").arg("pipelined");
    }
    let seen: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(
        seen,
        (0..50).collect::<Vec<_>>(),
        "a follower reads its own pipelined writes in order"
    );
    // ROLE and INFO name the leader's client address (advertised through
    // the log), as Redis's replicas name their master's.
    let leader_port = cluster.nodes[&leader].port as i64;
    let role = wait_for("ROLE to name the leader", Duration::from_secs(10), || {
        let role: Value = redis::cmd("ROLE").query(&mut c).ok()?;
        let Value::Array(role) = role else {
            return None;
        };
        (role.get(2) == Some(&Value::Int(leader_port))).then_some(role)
    });
    assert_eq!(role[0], Value::BulkString(b"slave".to_vec()));
    assert_eq!(role[1], Value::BulkString(b"127.0.0.1".to_vec()));
    let info: String = redis::cmd("INFO").arg("replication").query(&mut c).unwrap();
    assert!(
        info.contains(&format!("master_port:{leader_port}\r\n")),
        "{info}"
    );
    let mut l = cluster.client(leader);
    let role = wait_for(
        "the leader's ROLE to list both replicas",
        Duration::from_secs(10),
        || {
            let role: Value = redis::cmd("ROLE").query(&mut l).ok()?;
            let Value::Array(items) = role else {
                return None;
            };
            let Value::Array(replicas) = items.get(2)? else {
                return None;
            };
            let ports: Vec<Value> = replicas
                .iter()
                .filter_map(|r| match r {
                    Value::Array(r) => r.get(1).cloned(),
                    _ => None,
                })
                .collect();
            let expected: Vec<Value> = (1..=3u64)
                .filter(|id| *id != leader)
                .map(|id| Value::BulkString(cluster.nodes[&id].port.to_string().into_bytes()))
                .collect();
            (ports == expected).then_some(items)
        },
    );
    assert_eq!(role[0], Value::BulkString(b"master".to_vec()));
    cluster.converged(&[1, 2, 3]);
}

/// A follower relays the writes of a deep pipeline as batches, one peer
/// message per driver turn: every write is answered, once and in order.
/// (Relayed one message per write, a pipeline deeper than the peer link's
/// queue lost writes past it, and their clients waited for TRYAGAIN.)
#[test]
fn a_deep_pipeline_through_a_follower_is_answered_in_order() {
    const N: i64 = 40_000;
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = (1..=3u64).find(|id| *id != leader).unwrap();
    let mut c = cluster.client(follower);
    let mut pipe = redis::pipe();
    for i in 0..N {
        pipe.cmd("RPUSH").arg("deep").arg(i);
    }
    let lengths: Vec<i64> = pipe.query(&mut c).unwrap();
    assert_eq!(lengths, (1..=N).collect::<Vec<_>>());
    let mut l = cluster.client(leader);
    let ends: Vec<i64> = redis::cmd("LRANGE")
        .arg("deep")
        .arg(N - 2)
        .arg(N - 1)
        .query(&mut l)
        .unwrap();
    assert_eq!(ends, vec![N - 2, N - 1]);
    cluster.converged(&[1, 2, 3]);
}

#[test]
fn wait_counts_the_replicas_that_hold_the_writes() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = (1..=3u64).find(|id| *id != leader).unwrap();
    let mut l = cluster.client(leader);
    let _: () = redis::cmd("SET").arg("w").arg(1).query(&mut l).unwrap();
    // Both followers match the leader's log well within the timeout.
    let held: i64 = redis::cmd("WAIT").arg(2).arg(10_000).query(&mut l).unwrap();
    assert_eq!(held, 2);
    let aof: Vec<i64> = redis::cmd("WAITAOF")
        .arg(1)
        .arg(2)
        .arg(10_000)
        .query(&mut l)
        .unwrap();
    assert_eq!(aof, vec![1, 2]);
    // More than exist: the timeout ends the wait with the true count.
    let held: i64 = redis::cmd("WAIT").arg(5).arg(100).query(&mut l).unwrap();
    assert_eq!(held, 2);
    // A follower vouches for the majority its applied entries are on.
    let mut f = cluster.client(follower);
    let held: i64 = redis::cmd("WAIT").arg(1).arg(0).query(&mut f).unwrap();
    assert_eq!(held, 1);
    // With the other follower gone, a new write reaches one replica only.
    let gone = (1..=3u64)
        .find(|id| *id != leader && *id != follower)
        .unwrap();
    cluster.kill9(gone);
    let _: () = redis::cmd("SET").arg("w").arg(2).query(&mut l).unwrap();
    let held: i64 = redis::cmd("WAIT").arg(2).arg(300).query(&mut l).unwrap();
    assert_eq!(held, 1);
}

#[test]
fn killing_the_leader_loses_no_acknowledged_write_and_it_catches_up() {
    let mut cluster = Cluster::start(3, &["--snapshot-entries", "200"]);
    let leader = cluster.leader();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..6u64 {
        let urls: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
        let (stop, acked) = (stop.clone(), acked.clone());
        writers.push(std::thread::spawn(move || {
            let mut i = 0u64;
            let mut node = (w % 3) as usize;
            while !stop.load(Ordering::Relaxed) {
                let Ok(client) = redis::Client::open(urls[node].as_str()) else {
                    continue;
                };
                let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
                    node = (node + 1) % 3;
                    continue;
                };
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("w{w}:{i}");
                    match c.set::<_, _, ()>(&key, i) {
                        Ok(()) => acked.lock().unwrap().push((key, i)),
                        Err(_) => {
                            node = (node + 1) % 3;
                            break;
                        }
                    }
                    i += 1;
                }
            }
        }));
    }
    wait_for("1000 acknowledged writes", Duration::from_secs(60), || {
        (acked.lock().unwrap().len() >= 1000).then_some(())
    });
    cluster.kill9(leader);
    let survivors: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let new_leader = cluster.leader_among(&survivors);
    assert_ne!(new_leader, leader);
    let before = acked.lock().unwrap().len();
    wait_for(
        "writes to succeed through the survivors",
        Duration::from_secs(30),
        || (acked.lock().unwrap().len() >= before + 500).then_some(()),
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let mut c = cluster.client(survivors[0]);
    for (key, value) in &acked {
        assert_eq!(
            c.get::<_, Option<u64>>(key).unwrap(),
            Some(*value),
            "acknowledged {key} lost"
        );
    }
    // The old leader comes back, far enough behind that the log it missed
    // was compacted: it catches up by snapshot.
    cluster.restart(leader);
    let digest = cluster.converged(&[1, 2, 3]);
    assert!(!digest.is_empty());
    let mut old = cluster.client(leader);
    for (key, value) in acked.iter().step_by(97) {
        assert_eq!(old.get::<_, Option<u64>>(key).unwrap(), Some(*value));
    }
}

#[test]
fn a_follower_that_missed_compacted_log_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(3, &["--snapshot-entries", "50"]);
    let leader = cluster.leader();
    let lagging = (1..=3u64).find(|id| *id != leader).unwrap();
    cluster.kill9(lagging);
    let mut c = cluster.client(leader);
    for i in 0..400 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    cluster.restart(lagging);
    cluster.converged(&[1, 2, 3]);
    wait_for(
        "the lagging node to log the snapshot it installed",
        Duration::from_secs(10),
        || {
            cluster
                .log(lagging)
                .contains("installed the leader's snapshot")
                .then_some(())
        },
    );
    // It came as a file, decoded off the driver before the switch, and
    // the leader sent it from disk.
    assert!(cluster.log(lagging).contains("decoded a leader's snapshot"));
    assert!(cluster.log(leader).contains("snapshot sent"));
    let mut lc = cluster.client(lagging);
    assert_eq!(lc.get::<_, i64>("k399").unwrap(), 399);
    // The received file became the node's newest snapshot: it restarts
    // from it.
    cluster.kill9(lagging);
    cluster.restart(lagging);
    let mut lc = cluster.client(lagging);
    assert_eq!(lc.get::<_, i64>("k399").unwrap(), 399);
}

#[test]
fn members_join_and_leave_while_writes_run() {
    let mut cluster = Cluster::start(3, &["--snapshot-entries", "100"]);
    let leader = cluster.leader();
    let mut c = cluster.client(leader);
    for i in 0..300 {
        let _: () = c.set(format!("before:{i}"), i).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, stop) = (cluster.url(leader), stop.clone());
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _: () = c.incr("during", 1).unwrap();
                n += 1;
            }
            n
        })
    };
    cluster.start_joining(4);
    let follower = (1..=3u64).find(|id| *id != leader).unwrap();
    let addr = format!("127.0.0.1:{}", cluster.nodes[&4].peer_port);
    let mut fc = cluster.client(follower);
    let _: () = redis::cmd("RAFT.MEMBER")
        .arg("ADD")
        .arg(4)
        .arg(&addr)
        .query(&mut fc)
        .unwrap();
    let info: Value = redis::cmd("RAFT.INFO").query(&mut c).unwrap();
    let text = format!("{info:?}");
    assert!(text.contains("voters"), "{text}");
    wait_for("node 4 to be a voter", Duration::from_secs(30), || {
        let voters: Value = redis::cmd("RAFT.INFO").query(&mut c).ok()?;
        let Value::Array(items) = voters else {
            return None;
        };
        let pos = items
            .iter()
            .position(|v| *v == Value::BulkString(b"voters".to_vec()))?;
        let Value::Array(ids) = &items[pos + 1] else {
            return None;
        };
        ids.contains(&Value::Int(4)).then_some(())
    });
    // Every member, the new one included, counts the same four voters: a
    // joiner that never learned the founders would count itself alone.
    for id in [1, 2, 3, 4] {
        wait_for(
            &format!("node {id} to count four voters"),
            Duration::from_secs(30),
            || (cluster.raft_field(id, "raft_voters")? == "4").then_some(()),
        );
    }
    let removed = (1..=3u64)
        .find(|id| *id != leader && *id != follower)
        .unwrap();
    let _: () = redis::cmd("RAFT.MEMBER")
        .arg("REMOVE")
        .arg(removed)
        .query(&mut c)
        .unwrap();
    cluster.kill9(removed);
    stop.store(true, Ordering::Relaxed);
    let increments = writer.join().unwrap();
    let remaining: Vec<u64> = [leader, follower, 4].into();
    cluster.converged(&remaining);
    let mut c4 = cluster.client(4);
    assert_eq!(c4.get::<_, u64>("during").unwrap(), increments);
    assert_eq!(c4.get::<_, i64>("before:299").unwrap(), 299);
    let _: () = c4.set("after", "membership").unwrap();
    assert_eq!(c.get::<_, String>("after").unwrap(), "membership");
}

#[test]
fn leadership_moves_on_request() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let target = (1..=3u64).find(|id| *id != leader).unwrap();
    let mut c = cluster.client(leader);
    let _: () = redis::cmd("RAFT.TRANSFER")
        .arg(target)
        .query(&mut c)
        .unwrap();
    assert_eq!(cluster.leader(), target);
    let _: () = c.set("after-transfer", 1).unwrap();
}

#[test]
fn garbage_and_strangers_on_the_peer_port_are_refused() {
    let cluster = Cluster::start(3, &[]);
    let node = &cluster.nodes[&1];
    let mut s = TcpStream::connect(("127.0.0.1", node.peer_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 16];
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "garbage closes the connection"
    );
    // A well-formed hello from another cluster.
    let mut hello = Vec::new();
    hello.extend_from_slice(&30u32.to_be_bytes());
    hello.push(1);
    hello.extend_from_slice(b"CNCD");
    hello.push(1);
    hello.extend_from_slice(&0xdead_beefu64.to_be_bytes());
    hello.extend_from_slice(&2u64.to_be_bytes());
    hello.extend_from_slice(&1u64.to_be_bytes());
    let mut s = TcpStream::connect(("127.0.0.1", node.peer_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&hello).unwrap();
    assert!(
        matches!(s.read(&mut buf), Ok(0) | Err(_)),
        "a stranger's hello closes the connection"
    );
    wait_for("the refusals to be logged", Duration::from_secs(10), || {
        let log = cluster.log(1);
        (log.contains("peer connection closed") && log.contains("cluster")).then_some(())
    });
    let mut c = cluster.client(1);
    let _: () = c.set("still", "fine").unwrap();
    cluster.converged(&[1, 2, 3]);
}

/// Requests that reach a new cluster before its first election wait for a
/// leader; the node that wins routes them at once: a waiting write joins
/// the next proposal, and a waiting read behind it proposes that batch
/// before its read index is taken. That routing ran inside a raft Ready
/// cycle once, appending to the log between `ready()` and its hand-back,
/// which raft-rs stops the process for. Every node must survive it and
/// answer. (The write and the read go on two connections, the write sent
/// first, so both wait in that order on every node.)
#[test]
fn requests_sent_before_the_first_election_are_answered() {
    for round in 0..3 {
        let cluster = Cluster::start(3, &[]);
        let mut sockets = Vec::new();
        for id in 1..=3u64 {
            let mut writer = cluster.raw(id);
            writer
                .write_all(format!("SET k{id} {id}\r\n").as_bytes())
                .unwrap();
            let mut reader = cluster.raw(id);
            reader
                .write_all(format!("GET k{id}\r\n").as_bytes())
                .unwrap();
            sockets.push((id, writer, reader));
        }
        for (id, mut writer, mut reader) in sockets {
            for s in [&writer, &reader] {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            }
            let mut buf = [0u8; 5];
            writer.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"+OK\r\n", "round {round}, node {id}");
            // The read may have been served before or after the write.
            let mut got = Vec::new();
            let mut byte = [0u8; 1];
            while !got.ends_with(b"\r\n") || got.starts_with(b"$1\r\n") && got.len() < 7 {
                reader.read_exact(&mut byte).unwrap();
                got.push(byte[0]);
            }
            let expected = format!("$1\r\n{id}\r\n");
            assert!(
                got == b"$-1\r\n" || got == expected.as_bytes(),
                "round {round}, node {id}: {}",
                String::from_utf8_lossy(&got)
            );
        }
        for id in 1..=3u64 {
            let mut c = cluster.client(id);
            let got: u64 = c.get(format!("k{id}")).unwrap();
            assert_eq!(got, id, "round {round}, node {id}");
        }
    }
}
