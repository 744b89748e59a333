//! Pub/sub through real processes: Redis's exact subscribe-mode bytes in
//! RESP2 and RESP3, and messages published through any node of a cluster
//! reaching subscribers on every node, once, in publish order.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::cluster::Cluster;
use common::{exchange, wait_for, Server};

fn raw(server: &Server) -> TcpStream {
    let stream = server.raw();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// Sends `request`, then reads until what arrived ends with `suffix`.
fn read_until(stream: &mut TcpStream, request: &[u8], suffix: &[u8]) -> Vec<u8> {
    let mut out = exchange(stream, request, 1);
    while !out.ends_with(suffix) {
        out.extend(exchange(stream, b"", 1));
    }
    out
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

fn publish(c: &mut redis::Connection, channel: &str, message: &str) -> i64 {
    redis::cmd("PUBLISH")
        .arg(channel)
        .arg(message)
        .query(c)
        .unwrap()
}

#[test]
fn subscribe_mode_speaks_redis_resp2() {
    let server = Server::start();
    let mut sub = raw(&server);
    let confirm =
        "*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nc2\r\n:2\r\n";
    let got = exchange(&mut sub, b"SUBSCRIBE c1 c2\r\n", confirm.len());
    assert_eq!(text(got), confirm);
    let confirm = "*3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:3\r\n";
    assert_eq!(
        text(exchange(&mut sub, b"PSUBSCRIBE c*\r\n", confirm.len())),
        confirm
    );
    let mut c = server.client();
    let info: String = redis::cmd("INFO").arg("clients").query(&mut c).unwrap();
    assert!(info.contains("pubsub_clients:1\r\n"), "{info}");
    assert_eq!(publish(&mut c, "c1", "hello"), 2, "c1 and the c* pattern");
    let messages = "*3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$5\r\nhello\r\n\
                    *4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nc1\r\n$5\r\nhello\r\n";
    assert_eq!(text(exchange(&mut sub, b"", messages.len())), messages);
    let pong = "*2\r\n$4\r\npong\r\n$0\r\n\r\n";
    assert_eq!(text(exchange(&mut sub, b"PING\r\n", pong.len())), pong);
    let refused = "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n";
    assert_eq!(
        text(exchange(&mut sub, b"GET k\r\n", refused.len())),
        refused
    );
    let numsub: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("c1")
        .arg("nobody")
        .query(&mut c)
        .unwrap();
    assert_eq!(
        numsub,
        vec![
            redis::Value::BulkString(b"c1".to_vec()),
            redis::Value::Int(1),
            redis::Value::BulkString(b"nobody".to_vec()),
            redis::Value::Int(0),
        ]
    );
    let numpat: i64 = redis::cmd("PUBSUB").arg("NUMPAT").query(&mut c).unwrap();
    assert_eq!(numpat, 1);
    let mut channels: Vec<String> = redis::cmd("PUBSUB").arg("CHANNELS").query(&mut c).unwrap();
    channels.sort();
    assert_eq!(channels, vec!["c1", "c2"]);
    let confirm = "*3\r\n$11\r\nunsubscribe\r\n$2\r\nc1\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$2\r\nc2\r\n:1\r\n";
    assert_eq!(
        text(exchange(&mut sub, b"UNSUBSCRIBE\r\n", confirm.len())),
        confirm
    );
    assert_eq!(publish(&mut c, "c1", "again"), 1, "only the pattern now");
    // The pattern's message of "again" comes first.
    let expected = "*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nc1\r\n$5\r\nagain\r\n\
                    *3\r\n$12\r\npunsubscribe\r\n$2\r\nc*\r\n:0\r\n";
    assert_eq!(
        text(exchange(&mut sub, b"PUNSUBSCRIBE\r\n", expected.len())),
        expected
    );
    // Out of subscribe mode, commands run again.
    assert_eq!(text(exchange(&mut sub, b"PING\r\n", 7)), "+PONG\r\n");
    let none = "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n";
    assert_eq!(
        text(exchange(&mut sub, b"UNSUBSCRIBE\r\n", none.len())),
        none
    );
}

#[test]
fn resp3_subscribers_get_push_frames_and_keep_running_commands() {
    let server = Server::start();
    let mut sub = raw(&server);
    // HELLO's map is long; a PING after it marks where it ends.
    let hello = read_until(&mut sub, b"HELLO 3\r\nPING\r\n", b"+PONG\r\n");
    assert_eq!(hello[0], b'%');
    let confirm = ">3\r\n$10\r\nssubscribe\r\n$6\r\norders\r\n:1\r\n";
    assert_eq!(
        text(exchange(&mut sub, b"SSUBSCRIBE orders\r\n", confirm.len())),
        confirm
    );
    let mut c = server.client();
    let receivers: i64 = redis::cmd("SPUBLISH")
        .arg("orders")
        .arg("o-1")
        .query(&mut c)
        .unwrap();
    assert_eq!(receivers, 1);
    let push = ">3\r\n$8\r\nsmessage\r\n$6\r\norders\r\n$3\r\no-1\r\n";
    assert_eq!(text(exchange(&mut sub, b"", push.len())), push);
    assert_eq!(
        text(exchange(&mut sub, b"SET k v\r\n", 5)),
        "+OK\r\n",
        "RESP3 connections run any command while subscribed"
    );
}

#[test]
fn messages_reach_subscribers_on_every_node_once_in_publish_order() {
    let cluster = Cluster::start(3, &[]);
    let mut subscribers = Vec::new();
    let (subscribed_tx, subscribed) = std::sync::mpsc::channel();
    for id in 1..=3u64 {
        let mut con = cluster.client(id);
        con.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let subscribed_tx = subscribed_tx.clone();
        subscribers.push(std::thread::spawn(move || {
            let mut pubsub = con.as_pubsub();
            pubsub.subscribe("events").unwrap();
            subscribed_tx.send(()).unwrap();
            let mut got = Vec::new();
            while got.len() < 30 {
                let msg = pubsub.get_message().expect("a message");
                got.push(msg.get_payload::<String>().unwrap());
            }
            got
        }));
    }
    for _ in 1..=3 {
        subscribed
            .recv_timeout(Duration::from_secs(20))
            .expect("every subscriber confirmed");
    }
    let mut publishers: Vec<redis::Connection> = (1..=3).map(|id| cluster.client(id)).collect();
    let mut order = Vec::new();
    for i in 0..30 {
        let node = i % 3;
        let message = format!("m{i}");
        let receivers = publish(&mut publishers[node], "events", &message);
        assert_eq!(receivers, 3, "every node's subscriber counts");
        order.push(message);
    }
    for s in subscribers {
        assert_eq!(
            s.join().unwrap(),
            order,
            "each subscriber sees every message once, in order"
        );
    }
    // The subscribers are gone: their subscriptions end through the log.
    wait_for(
        "the departed subscribers to be forgotten",
        Duration::from_secs(10),
        || (publish(&mut publishers[0], "events", "late") == 0).then_some(()),
    );
    cluster.converged(&[1, 2, 3]);
}

/// Keyspace notifications are made while the log is applied: flags set
/// through one node hold on every node, and a subscriber on a follower
/// hears about a write made through the leader, in Redis's words.
#[test]
fn keyspace_notifications_follow_the_log_to_every_node() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let other = cluster.followers(leader)[1];
    let mut admin = cluster.client(other);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("KEA")
        .query(&mut admin)
        .unwrap();
    let mut reader = cluster.client(follower);
    let flags: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query(&mut reader)
        .unwrap();
    assert_eq!(flags, ["notify-keyspace-events", "AKE"]);
    let mut sub = cluster.raw(follower);
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let confirm = "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n";
    assert_eq!(
        text(exchange(&mut sub, b"PSUBSCRIBE *\r\n", confirm.len())),
        confirm
    );
    let mut writer = cluster.client(leader);
    let _: () = redis::cmd("SET")
        .arg("foo")
        .arg("bar")
        .query(&mut writer)
        .unwrap();
    let expected = "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$18\r\n__keyspace@0__:foo\r\n$3\r\nset\r\n\
                    *4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$18\r\n__keyevent@0__:set\r\n$3\r\nfoo\r\n";
    assert_eq!(
        text(read_until(&mut sub, b"", expected.as_bytes())),
        expected
    );
    let bad: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Kq")
        .query(&mut admin);
    assert!(bad
        .unwrap_err()
        .to_string()
        .contains("Invalid event class character"));
}

/// CLIENT REPLY OFF silences replies until ON; SKIP silences its own and
/// the next command's.
#[test]
fn client_reply_silences_replies() {
    let server = Server::start();
    let mut c = raw(&server);
    let got = exchange(
        &mut c,
        b"CLIENT REPLY OFF\r\nSET a 1\r\nGET a\r\nCLIENT REPLY ON\r\n",
        5,
    );
    assert_eq!(text(got), "+OK\r\n");
    let got = exchange(&mut c, b"CLIENT REPLY SKIP\r\nGET a\r\nECHO x\r\n", 7);
    assert_eq!(text(got), "$1\r\nx\r\n");
    let mut client = server.client();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut client)
        .unwrap();
    assert!(info.contains("cmdstat_set:calls=1,"), "{info}");
    assert!(info.contains("cmdstat_client|reply:calls=3,"), "{info}");
}

/// `messages` of 1 KiB on channel `ws`, read in full by a subscriber of
/// its own.
fn publish_to_a_reader(
    server: &Server,
    admin: &mut redis::Connection,
    subscribers: i64,
    messages: usize,
) {
    let port = server.port;
    let reader = std::thread::spawn(move || {
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let mut pubsub = c.as_pubsub();
        pubsub.subscribe("ws").unwrap();
        pubsub
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        (0..messages)
            .map(|_| {
                pubsub
                    .get_message()
                    .unwrap()
                    .get_payload::<String>()
                    .unwrap()
            })
            .filter(|p| p.len() == 1024)
            .count()
    });
    wait_for("the subscribers", Duration::from_secs(10), || {
        let n: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg(&["NUMSUB", "ws"])
            .query(admin)
            .ok()?;
        (n[0].1 == subscribers).then_some(())
    });
    let payload = "p".repeat(1024);
    for _ in 0..messages / 500 {
        let mut pipe = redis::pipe();
        for _ in 0..500 {
            pipe.cmd("PUBLISH").arg("ws").arg(&payload).ignore();
        }
        let _: () = pipe.query(admin).unwrap();
    }
    assert_eq!(reader.join().unwrap(), messages);
}

/// A subscriber that stops reading is closed at its output buffer limit
/// (client-output-buffer-limit pubsub) and what was queued for it is
/// freed; another subscriber on the same channel gets every message.
#[test]
fn a_subscriber_that_stops_reading_is_closed_at_its_output_limit() {
    use std::io::{Read, Write};
    let server = Server::start();
    let mut admin = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "client-output-buffer-limit", "pubsub 4mb 1mb 2"])
        .query(&mut admin)
        .unwrap();
    let limits: Vec<String> = redis::cmd("CONFIG")
        .arg(&["GET", "client-output-buffer-limit"])
        .query(&mut admin)
        .unwrap();
    assert_eq!(
        limits[1],
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 4194304 1048576 2"
    );
    // The stuck one: subscribes, then never reads again.
    let mut stuck = server.raw();
    stuck.write_all(b"SUBSCRIBE ws\r\n").unwrap();
    let mut confirm = [0u8; 28];
    stuck.read_exact(&mut confirm).unwrap();
    publish_to_a_reader(&server, &mut admin, 2, 100_000);

    // Closed: what the kernel buffered reads out, then the end. It was
    // cut off at its limit: it got a small part of the 100 MiB published
    // (its socket's buffers and at most its 4 MiB limit).
    stuck
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 16];
    let mut received = 0;
    loop {
        match stuck.read(&mut sink).unwrap() {
            0 => break,
            n => received += n,
        }
    }
    assert!(
        received < 32 << 20,
        "the stuck subscriber got {received} bytes"
    );
    let info: String = redis::cmd("INFO").arg("stats").query(&mut admin).unwrap();
    assert!(
        info.contains("client_output_buffer_limit_disconnections:1"),
        "{info}"
    );
}
