//! A node's life in the cluster, on real processes: losing its disk.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::wait_for;

/// A follower whose data directory is wiped and that restarts under its
/// old id must not serve or vote as the member it was (raft-rs would
/// panic on the leader's first heartbeat): it stops, says how to come
/// back, and refuses to start until its directory is emptied. The way
/// back it names (remove, empty, --join, add) brings it back with every
/// key.
#[test]
fn a_node_that_lost_its_disk_stops_and_comes_back_as_a_new_incarnation() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let mut con = cluster.client(leader);
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    let victim = cluster.followers(leader)[0];
    cluster.converged(&cluster.running());
    cluster.kill9(victim);
    let dir = cluster.nodes[&victim].dir.clone();
    std::fs::remove_dir_all(&dir).unwrap();

    // Restarted as it was: it stops at the leader's first heartbeat.
    cluster.spawn_only(victim);
    let status = cluster.wait_exit(victim);
    assert_eq!(status.code(), Some(78), "{}", cluster.log(victim));
    let log = cluster.log(victim);
    assert!(
        log.contains("lost raft entries it had acknowledged") && log.contains("RAFT.MEMBER REMOVE"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // And again at once, from the mark it left.
    cluster.spawn_only(victim);
    assert!(!cluster.wait_exit(victim).success());
    // The others never noticed.
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("loss")
        .query(&mut con)
        .unwrap();

    // The way back.
    let peer_addr = format!("127.0.0.1:{}", cluster.nodes[&victim].peer_port);
    let _: () = redis::cmd("RAFT.MEMBER")
        .arg("REMOVE")
        .arg(victim)
        .query(&mut con)
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    cluster.set_join(victim, true);
    cluster.restart(victim);
    let _: () = redis::cmd("RAFT.MEMBER")
        .arg("ADD")
        .arg(victim)
        .arg(&peer_addr)
        .query(&mut con)
        .unwrap();
    let digest = cluster.converged(&cluster.running());
    assert!(!digest.is_empty());
    let mut back = cluster.client(victim);
    let v: String = wait_for(
        "the new incarnation to serve",
        Duration::from_secs(30),
        || redis::cmd("GET").arg("k199").query(&mut back).ok(),
    );
    assert_eq!(v, "199");
    // Promoted once caught up: three voters again.
    wait_for(
        "the new incarnation to be a voter",
        Duration::from_secs(30),
        || (cluster.raft_field(leader, "raft_voters")? == "3").then_some(()),
    );
}

/// SIGTERM on the leader hands leadership to a follower before the node
/// stops: the survivors agree on the node it named.
#[test]
fn a_leader_stopped_by_sigterm_hands_over_first() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let mut con = cluster.client(leader);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    drop(con);
    assert!(cluster.terminate(leader).success());
    let log = cluster.log(leader);
    let line = log
        .lines()
        .find(|l| l.contains("handed leadership over before stopping"))
        .unwrap_or_else(|| panic!("no hand-over logged:\n{log}"));
    let named: u64 = line
        .split("new_leader=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no new_leader in {line}"));
    let survivors = cluster.running();
    assert!(survivors.contains(&named));
    assert_eq!(cluster.leader_among(&survivors), named);
    let mut con = cluster.client(named);
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");
}
