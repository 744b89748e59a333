//! What survives: a clean restart (on SIGTERM or SHUTDOWN), a restart after
//! snapshots compacted the log (on their own or by SAVE), and `kill -9` in
//! the middle of concurrent acknowledged writes.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_for, Server};
use redis::Commands;

#[test]
fn sigterm_exits_cleanly_and_a_restart_keeps_everything() {
    let mut server = Server::start();
    {
        let mut c = server.client();
        for i in 0..200 {
            let _: () = c.set(format!("k{i}"), i).unwrap();
        }
        let _: () = c.hset("h", "f", "v").unwrap();
        let _: () = redis::cmd("SET")
            .arg("ttl")
            .arg("v")
            .arg("EX")
            .arg(1000)
            .query(&mut c)
            .unwrap();
    }
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    server.boot();
    let mut c = server.client();
    for i in 0..200 {
        assert_eq!(c.get::<_, i64>(format!("k{i}")).unwrap(), i);
    }
    assert_eq!(c.hget::<_, _, String>("h", "f").unwrap(), "v");
    let ttl: i64 = c.ttl("ttl").unwrap();
    assert!(ttl > 900 && ttl <= 1000, "the deadline survives: {ttl}");
}

fn snapshots_taken(c: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("concord_snapshots:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO persistence reports concord_snapshots")
}

#[test]
fn save_snapshots_and_shutdown_stops_the_node_without_a_reply() {
    let mut server = Server::start();
    {
        let mut c = server.client();
        for i in 0..50 {
            let _: () = c.set(format!("k{i}"), i).unwrap();
        }
        let before = snapshots_taken(&mut c);
        let ok: String = redis::cmd("SAVE").query(&mut c).unwrap();
        assert_eq!(ok, "OK");
        assert_eq!(snapshots_taken(&mut c), before + 1);
        let _: () = c.set("after_save", 1).unwrap();
        let started: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
        assert_eq!(started, "Background saving started");
        wait_for("BGSAVE's snapshot", Duration::from_secs(10), || {
            (snapshots_taken(&mut c) > before + 1).then_some(())
        });

        // Neither may run inside MULTI; trying aborts the transaction.
        let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
        let _: () = redis::cmd("SET")
            .arg("k0")
            .arg("changed")
            .query(&mut c)
            .unwrap();
        for refused in ["SAVE", "SHUTDOWN"] {
            let e = redis::cmd(refused).query::<()>(&mut c).unwrap_err();
            assert_eq!(
                e.detail(),
                Some("Command not allowed inside a transaction"),
                "{refused}"
            );
        }
        let e = redis::cmd("EXEC").query::<()>(&mut c).unwrap_err();
        assert_eq!(e.code(), Some("EXECABORT"));
        assert_eq!(c.get::<_, i64>("k0").unwrap(), 0);

        let e = redis::cmd("SHUTDOWN")
            .arg("ABORT")
            .query::<()>(&mut c)
            .unwrap_err();
        assert_eq!(e.detail(), Some("No shutdown in progress."));
        let e = redis::cmd("SHUTDOWN")
            .arg("LATER")
            .query::<()>(&mut c)
            .unwrap_err();
        assert_eq!(e.detail(), Some("syntax error"));
    }
    let mut raw = server.raw();
    raw.write_all(b"SET last write\r\nSHUTDOWN SAVE NOW\r\n")
        .unwrap();
    let mut answer = Vec::new();
    raw.read_to_end(&mut answer).unwrap();
    assert_eq!(answer, b"+OK\r\n", "SHUTDOWN itself answers nothing");
    let status = server.wait_exit();
    assert!(status.success(), "exit status {status}");
    server.boot();
    let mut c = server.client();
    assert_eq!(c.get::<_, String>("last").unwrap(), "write");
    assert_eq!(c.get::<_, i64>("k49").unwrap(), 49);
}

#[test]
fn snapshots_compact_the_log_and_restart_restores_them() {
    let mut server = Server::start_with(&["--snapshot-entries", "50"]);
    {
        let mut c = server.client();
        for i in 0..500 {
            let _: () = c.set(format!("k{i}"), i).unwrap();
        }
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
        let snapshots: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("concord_snapshots:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!(
            snapshots >= 5,
            "500 entries at 50 per snapshot took {snapshots} snapshots"
        );
    }
    server.kill9();
    server.boot();
    let mut c = server.client();
    for i in 0..500 {
        assert_eq!(c.get::<_, i64>(format!("k{i}")).unwrap(), i, "k{i}");
    }
    let n: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 500);
}

#[test]
fn kill_9_during_concurrent_writes_loses_no_acknowledged_write() {
    let mut server = Server::start_with(&["--snapshot-entries", "300"]);
    let url = server.url();
    let stop = Arc::new(AtomicBool::new(false));
    // Each writer records the keys the server acknowledged, and the last
    // acknowledged value of its counter.
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let counters: Arc<Mutex<Vec<(String, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (url, stop, acked, counters) =
            (url.clone(), stop.clone(), acked.clone(), counters.clone());
        writers.push(std::thread::spawn(move || {
            let client = redis::Client::open(url).unwrap();
            let Ok(mut c) = client.get_connection() else {
                return;
            };
            let counter = format!("counter:{w}");
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w}:{i}");
                match c.set::<_, _, ()>(&key, i) {
                    Ok(()) => acked.lock().unwrap().push((key, i)),
                    Err(_) => return,
                }
                match c.incr::<_, _, i64>(&counter, 1) {
                    Ok(v) => counters.lock().unwrap().push((counter.clone(), v)),
                    Err(_) => return,
                }
                i += 1;
            }
        }));
    }
    wait_for(
        "writers to get 2000 acknowledgements",
        Duration::from_secs(60),
        || (acked.lock().unwrap().len() >= 2000).then_some(()),
    );
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    server.boot();
    let mut c = server.client();
    let acked = acked.lock().unwrap();
    for (key, value) in acked.iter() {
        let got: Option<i64> = c.get(key).unwrap();
        assert_eq!(got, Some(*value), "acknowledged write {key} lost");
    }
    let counters = counters.lock().unwrap();
    for w in 0..8 {
        let counter = format!("counter:{w}");
        let last_acked = counters
            .iter()
            .filter(|(k, _)| *k == counter)
            .map(|(_, v)| *v)
            .max();
        if let Some(last) = last_acked {
            let now: i64 = c.get(&counter).unwrap();
            assert!(now >= last, "{counter} went back from {last} to {now}");
        }
    }
}
