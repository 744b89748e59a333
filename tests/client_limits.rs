//! Client limits against a real process: `timeout` closes a client that
//! sent nothing (or only half a request) for that long, never a subscriber
//! or a blocked client; `tcp-keepalive` arms the kernel's keepalive timer
//! on client sockets; the `normal` class of `client-output-buffer-limit`
//! closes a client whose replies pass it. (The `pubsub` class is in
//! tests/pubsub.rs.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{wait_for, Server};
use redis::Commands;

/// Reads until the server closes the socket (true) or `limit` passes.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

#[test]
fn idle_clients_are_closed_but_subscribers_and_blocked_clients_stay() {
    let server = Server::start();
    let mut admin = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "timeout", "1"])
        .query(&mut admin)
        .unwrap();

    // A subscriber and a blocked client, older than the idle ones.
    let mut subscriber = server.client();
    let mut pubsub = subscriber.as_pubsub();
    pubsub.subscribe("news").unwrap();
    let port = server.port;
    let blocked = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let got: Option<(String, String)> = redis::cmd("BLPOP")
            .arg("jobs")
            .arg(0)
            .query(&mut c)
            .unwrap();
        got
    });
    wait_for("the client to block", Duration::from_secs(10), || {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).ok()?;
        list.contains("flags=b").then_some(())
    });

    let started = Instant::now();
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.write_all(b"PING\r\n").unwrap();
    let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.write_all(b"*2\r\n$3\r\nGET\r\n$1").unwrap();
    assert!(closed_within(&mut idle, Duration::from_secs(10)));
    assert!(closed_within(&mut half, Duration::from_secs(10)));
    assert!(started.elapsed() >= Duration::from_secs(1));

    // Idle longer than the idle clients were: both still served (through
    // a new connection: the first one was idle too, and closed).
    let mut admin = server.client();
    let _: i64 = admin.publish("news", "still here").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let msg = pubsub.get_message().unwrap();
    assert_eq!(msg.get_payload::<String>().unwrap(), "still here");
    let _: i64 = admin.lpush("jobs", "j1").unwrap();
    assert_eq!(
        blocked.join().unwrap(),
        Some(("jobs".to_owned(), "j1".to_owned()))
    );
}

/// The server side of the connection from local port `client_port` to
/// `server_port`, as /proc/net/tcp shows it: its timer kind (2 is
/// keepalive).
fn server_socket_timer(server_port: u16, client_port: u16) -> Option<u8> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
        (port(f[1])? == server_port && port(f[2])? == client_port)
            .then(|| f[5].split(':').next()?.parse().ok())
            .flatten()
    })
}

#[test]
fn client_sockets_get_tcp_keepalive() {
    let server = Server::start();
    let mut c = server.client();
    let value: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "tcp-keepalive"])
        .query(&mut c)
        .unwrap();
    assert_eq!(value, ["tcp-keepalive", "300"]);
    let s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let client_port = s.local_addr().unwrap().port();
    wait_for(
        "the keepalive timer on the server's socket",
        Duration::from_secs(10),
        || (server_socket_timer(server.port, client_port)? == 2).then_some(()),
    );

    // Off: new sockets get none.
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "tcp-keepalive", "0"])
        .query(&mut c)
        .unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.write_all(b"PING\r\n").unwrap();
    let mut pong = [0u8; 7];
    s.read_exact(&mut pong).unwrap();
    let client_port = s.local_addr().unwrap().port();
    assert_eq!(server_socket_timer(server.port, client_port), Some(0));
}

#[test]
fn a_reply_past_the_normal_output_limit_closes_the_client() {
    let server = Server::start();
    let mut c = server.client();
    let big = "v".repeat(2 * 1024 * 1024);
    let _: () = c.set("big", &big).unwrap();
    let got: String = c.get("big").unwrap();
    assert_eq!(got.len(), big.len(), "no limit by default");
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "client-output-buffer-limit", "normal 1mb 0 0"])
        .query(&mut c)
        .unwrap();
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.write_all(b"GET big\r\n").unwrap();
    let mut got = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.read_to_end(&mut got).unwrap();
    assert!(got.is_empty(), "{} bytes answered", got.len());
    // Small replies still go out, on a new connection.
    let mut c = server.client();
    let _: () = c.set("small", "x").unwrap();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(
        info.contains("client_output_buffer_limit_disconnections:1"),
        "{info}"
    );
}

#[test]
fn a_connection_past_the_query_buffer_limit_is_closed() {
    let server = Server::start();
    let mut c = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "client-query-buffer-limit", "1mb"])
        .query(&mut c)
        .unwrap();
    // Each sends the header of a 4 MiB value and 2 MiB of it.
    let body = vec![b'x'; 2 << 20];
    let senders: Vec<_> = (0..20)
        .map(|_| {
            let port = server.port;
            let body = body.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                // Refused writes (the server closed first) are fine.
                let _ = s
                    .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4194304\r\n")
                    .and_then(|()| s.write_all(&body));
                let mut rest = Vec::new();
                // The end, or a reset: closed either way, never answered.
                match s.read_to_end(&mut rest) {
                    Ok(_) => assert!(rest.is_empty(), "answered {} bytes", rest.len()),
                    Err(e) => assert!(
                        matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                        ),
                        "{e}"
                    ),
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
    assert!(
        info.contains("client_query_buffer_limit_disconnections:20"),
        "{info}"
    );
    // A value under the limit still goes through.
    let value = "v".repeat(512 * 1024);
    let _: () = c.set("fits", &value).unwrap();
    assert_eq!(c.strlen::<_, usize>("fits").unwrap(), value.len());
}

#[test]
fn a_write_too_big_for_one_log_entry_is_refused_before_the_log() {
    // The default: 64 MiB. A 65 MiB value is refused, naming the limit.
    let server = Server::start();
    let mut c = server.client();
    let err = c
        .set::<_, _, ()>("huge", vec![b'x'; 65 << 20])
        .unwrap_err()
        .to_string();
    assert!(err.contains("--max-entry-bytes 67108864"), "{err}");
    assert_eq!(c.exists::<_, i64>("huge").unwrap(), 0);
    drop(server);

    let server = Server::start_with(&["--max-entry-bytes", "1048576"]);
    let mut c = server.client();
    // What the WAL has written: a refused write adds nothing, where the
    // 2 MiB entry would add its size. (Counting commits instead raced with
    // the node's own small entries, its address and its boot notice.)
    let wal_bytes = |c: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("persistence").query(c).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("concord_wal_bytes:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let _: () = c.set("before", 1).unwrap();
    let before = wal_bytes(&mut c);
    let err = c
        .set::<_, _, ()>("big", vec![b'x'; 2 << 20])
        .unwrap_err()
        .to_string();
    assert!(err.contains("over the largest log entry"), "{err}");
    let _: () = c.set("after", 1).unwrap();
    let grew = wal_bytes(&mut c) - before;
    assert!(
        grew < 64 * 1024,
        "nothing went to the log, yet it grew by {grew} bytes"
    );
    assert_eq!(c.exists::<_, i64>("big").unwrap(), 0);
    // Writes that fit one by one but not together: each still lands.
    let value = vec![b'v'; 400 * 1024];
    let mut pipe = redis::pipe();
    for i in 0..4 {
        pipe.set(format!("part{i}"), &value).ignore();
    }
    let _: () = pipe.query(&mut c).unwrap();
    for i in 0..4 {
        assert_eq!(
            c.strlen::<_, usize>(format!("part{i}")).unwrap(),
            value.len()
        );
    }
}

/// The `qbuf` (or `tot-mem`) CLIENT LIST reports for the client on `port`.
fn client_list_field(admin: &mut redis::Connection, port: u16, field: &str) -> Option<u64> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(admin).ok()?;
    let line = list
        .lines()
        .find(|l| l.contains(&format!("addr=127.0.0.1:{port} ")))?;
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(&format!("{field}=")))?
        .parse()
        .ok()
}

#[test]
fn client_list_shows_buffers_and_maxmemory_clients_closes_the_biggest_first() {
    let server = Server::start();
    let mut admin = server.client();
    let _: () = redis::cmd("CLIENT")
        .arg(&["NO-EVICT", "on"])
        .query(&mut admin)
        .unwrap();

    // Three clients each holding part of a 2 MB value: 100, 400 and 1500
    // KB (their read buffers' capacities, counted as qbuf-free, differ in
    // the same order).
    let mut held = Vec::new();
    for kb in [100, 400, 1500] {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.write_all(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$2000000\r\n")
            .unwrap();
        s.write_all(&vec![b'x'; kb * 1000]).unwrap();
        let port = s.local_addr().unwrap().port();
        held.push((kb, s, port));
    }
    for (kb, _, port) in &held {
        let qbuf = wait_for(
            "CLIENT LIST to show the query buffer",
            Duration::from_secs(10),
            || client_list_field(&mut admin, *port, "qbuf").filter(|q| *q >= *kb as u64 * 1000),
        );
        let total = client_list_field(&mut admin, *port, "tot-mem").unwrap();
        assert!(total >= qbuf, "tot-mem {total} < qbuf {qbuf}");
    }
    let info: String = redis::cmd("INFO").arg("memory").query(&mut admin).unwrap();
    let clients: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("mem_clients_normal:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(clients >= 2_000_000, "mem_clients_normal {clients}");

    // A limit that the two smaller ones together pass: the biggest goes,
    // then the middle one; the smallest stays.
    let sizes: Vec<u64> = held
        .iter()
        .map(|(_, _, port)| client_list_field(&mut admin, *port, "tot-mem").unwrap())
        .collect();
    assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2], "{sizes:?}");
    let limit = sizes[0] + sizes[1] - 1;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-clients")
        .arg(limit)
        .query(&mut admin)
        .unwrap();
    let (_, mut big, _) = held.pop().unwrap();
    let (_, mut middle, _) = held.pop().unwrap();
    let (_, mut small, small_port) = held.pop().unwrap();
    assert!(closed_within(&mut big, Duration::from_secs(10)));
    assert!(closed_within(&mut middle, Duration::from_secs(10)));
    assert!(client_list_field(&mut admin, small_port, "qbuf").is_some());
    let info: String = redis::cmd("INFO").arg("stats").query(&mut admin).unwrap();
    assert!(info.contains("evicted_clients:2"), "{info}");
    // The one left can finish its request once the limit is lifted.
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "maxmemory-clients", "0"])
        .query(&mut admin)
        .unwrap();
    small.write_all(&vec![b'x'; 1_900_000]).unwrap();
    small.write_all(b"\r\n").unwrap();
    let mut reply = [0u8; 5];
    small
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    small.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"+OK\r\n");
}
