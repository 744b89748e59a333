//! Partitions through fault proxies on every peer link, and a
//! linearizability check of concurrent histories recorded while nodes are
//! cut off, killed and restarted.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::Cluster;
use common::linearizability::{
    check, Counter, CounterInput, Recorder, Register, RegisterInput, RegisterOutput, Verdict,
};
use common::wait_for;
use redis::{Commands, RedisResult};

#[test]
fn a_minority_leader_acknowledges_nothing_and_the_majority_moves_on() {
    let cluster = Cluster::start_with_proxies(3, &["--request-timeout-ms", "2000"]);
    let old = cluster.leader();
    let majority: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    let mut cut_off = cluster.client(old);
    let _: () = cut_off.set("before", "partition").unwrap();
    cluster.partition(&[old]);
    let r: RedisResult<()> = cut_off.set("minority", "lost");
    let err = r.expect_err("a leader without a quorum must not acknowledge a write");
    assert!(
        matches!(err.code(), Some("TRYAGAIN") | Some("CLUSTERDOWN")),
        "{err}"
    );
    let new = cluster.leader_among(&majority);
    assert_ne!(new, old);
    let mut m = cluster.client(new);
    let _: () = m.set("majority", "kept").unwrap();
    let other = majority.iter().copied().find(|id| *id != new).unwrap();
    let mut o = cluster.client(other);
    assert_eq!(o.get::<_, String>("majority").unwrap(), "kept");
    cluster.heal();
    cluster.converged(&[1, 2, 3]);
    for id in 1..=3 {
        let mut c = cluster.client(id);
        assert_eq!(
            c.get::<_, Option<String>>("minority").unwrap(),
            None,
            "node {id}"
        );
        assert_eq!(c.get::<_, String>("majority").unwrap(), "kept", "node {id}");
        assert_eq!(
            c.get::<_, String>("before").unwrap(),
            "partition",
            "node {id}"
        );
    }
}

const REGISTERS: u64 = 3;
const COUNTERS: u64 = 2;

/// One client's loop: random register and counter operations against one
/// node, recorded with invoke and completion times.
fn client_loop(
    client: usize,
    url: String,
    stop: Arc<AtomicBool>,
    registers: Arc<Vec<Recorder<RegisterInput, RegisterOutput>>>,
    counters: Arc<Vec<Recorder<CounterInput, i64>>>,
    ops: Arc<AtomicU64>,
) {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (client as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut written = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Ok(client_handle) = redis::Client::open(url.as_str()) else {
            continue;
        };
        let Ok(mut con) = client_handle.get_connection_with_timeout(Duration::from_millis(500))
        else {
            std::thread::yield_now();
            continue;
        };
        let _ = con.set_read_timeout(Some(Duration::from_secs(5)));
        while !stop.load(Ordering::Relaxed) {
            let r = next();
            let broken = if r % 2 == 0 {
                let key = r / 2 % REGISTERS;
                let rec = &registers[key as usize];
                let name = format!("reg:{key}");
                if r / 8 % 2 == 0 {
                    written += 1;
                    let value = format!("{client}-{written}").into_bytes();
                    let token = rec.invoke(client, RegisterInput::Write(value.clone()));
                    match con.set::<_, _, ()>(&name, value) {
                        Ok(()) => {
                            rec.complete(token, RegisterOutput::Ok);
                            false
                        }
                        Err(_) => {
                            rec.unknown(token);
                            true
                        }
                    }
                } else {
                    let token = rec.invoke(client, RegisterInput::Read);
                    match con.get::<_, Option<Vec<u8>>>(&name) {
                        Ok(v) => {
                            rec.complete(token, RegisterOutput::Value(v));
                            false
                        }
                        Err(_) => {
                            // A failed read has no effect: it may be left out.
                            rec.unknown(token);
                            true
                        }
                    }
                }
            } else {
                let key = r / 2 % COUNTERS;
                let rec = &counters[key as usize];
                let name = format!("ctr:{key}");
                if r / 8 % 2 == 0 {
                    let token = rec.invoke(client, CounterInput::Incr);
                    match con.incr::<_, _, i64>(&name, 1) {
                        Ok(v) => {
                            rec.complete(token, v);
                            false
                        }
                        Err(_) => {
                            rec.unknown(token);
                            true
                        }
                    }
                } else {
                    let token = rec.invoke(client, CounterInput::Read);
                    match con.get::<_, Option<i64>>(&name) {
                        Ok(v) => {
                            rec.complete(token, v.unwrap_or(0));
                            false
                        }
                        Err(_) => {
                            rec.unknown(token);
                            true
                        }
                    }
                }
            };
            ops.fetch_add(1, Ordering::Relaxed);
            if broken {
                break;
            }
        }
    }
}

#[test]
fn concurrent_histories_under_partitions_and_kills_are_linearizable() {
    let mut cluster = Cluster::start_with_proxies(3, &["--request-timeout-ms", "2000"]);
    cluster.leader();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let registers: Arc<Vec<Recorder<RegisterInput, RegisterOutput>>> =
        Arc::new((0..REGISTERS).map(|_| Recorder::new()).collect());
    let counters: Arc<Vec<Recorder<CounterInput, i64>>> =
        Arc::new((0..COUNTERS).map(|_| Recorder::new()).collect());
    let mut clients = Vec::new();
    for client in 0..6usize {
        let url = cluster.url(client as u64 % 3 + 1);
        let (stop, registers, counters, ops) = (
            stop.clone(),
            registers.clone(),
            counters.clone(),
            ops.clone(),
        );
        clients.push(std::thread::spawn(move || {
            client_loop(client, url, stop, registers, counters, ops)
        }));
    }
    let progress = |n: u64, what: &str| {
        let target = ops.load(Ordering::Relaxed) + n;
        wait_for(what, Duration::from_secs(60), || {
            (ops.load(Ordering::Relaxed) >= target).then_some(())
        });
    };
    progress(300, "operations before the faults");
    let leader = cluster.leader();
    cluster.partition(&[leader]);
    let majority: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    cluster.leader_among(&majority);
    progress(200, "operations during the partition");
    cluster.heal();
    progress(200, "operations after healing");
    let victim = cluster.leader();
    cluster.kill9(victim);
    progress(200, "operations with a node down");
    cluster.restart(victim);
    progress(200, "operations after the restart");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    for (key, rec) in registers.iter().enumerate() {
        let history = rec.history();
        let verdict = check(Register::default(), &history, 5_000_000);
        assert!(
            matches!(verdict, Verdict::Linearizable),
            "register {key} ({} ops): {verdict:?}",
            history.len()
        );
    }
    for (key, rec) in counters.iter().enumerate() {
        let history = rec.history();
        let verdict = check(Counter::default(), &history, 5_000_000);
        assert!(
            matches!(verdict, Verdict::Linearizable),
            "counter {key} ({} ops): {verdict:?}",
            history.len()
        );
    }
    cluster.converged(&[1, 2, 3]);
}
