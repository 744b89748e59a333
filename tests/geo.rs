//! Geo commands against real processes: the wire shapes Redis 7.0 sends
//! (coordinates as 17-decimal strings or RESP3 doubles, distances as
//! 4-decimal strings), geo values being sorted sets, searches served on a
//! follower, the STORE forms relayed from a follower to the leader, and
//! the keyspace events they fire. The replies were recorded from
//! redis-server 7.0.15.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::{exchange, Server};
use redis::Value;

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Sends `request` (inline) and checks the reply is exactly `reply`.
fn check(s: &mut std::net::TcpStream, request: &str, reply: &str) {
    let got = exchange(s, format!("{request}\r\n").as_bytes(), reply.len());
    assert_eq!(text(got), reply, "{request}");
}

const SICILY: &str = "GEOADD Sicily 13.361389 38.115556 Palermo 15.087269 37.502669 Catania";

#[test]
fn replies_are_byte_identical_to_redis_in_resp2_and_resp3() {
    let server = Server::start();
    let mut s = server.raw();
    check(&mut s, SICILY, ":2\r\n");
    check(
        &mut s,
        "GEOPOS Sicily Palermo nosuch",
        "*2\r\n*2\r\n$20\r\n13.36138933897018433\r\n$20\r\n38.11555639549629859\r\n*-1\r\n",
    );
    check(
        &mut s,
        "GEODIST Sicily Palermo Catania",
        "$11\r\n166274.1516\r\n",
    );
    check(
        &mut s,
        "GEODIST Sicily Palermo Catania km",
        "$8\r\n166.2742\r\n",
    );
    check(&mut s, "GEODIST nokey a b", "$-1\r\n");
    check(
        &mut s,
        "GEOHASH Sicily Palermo Catania nosuch",
        "*3\r\n$11\r\nsqc8b49rny0\r\n$11\r\nsqdtr74hyu0\r\n$-1\r\n",
    );
    check(
        &mut s,
        "GEORADIUS Sicily 15 37 200 km WITHDIST WITHCOORD WITHHASH",
        "*2\r\n*4\r\n$7\r\nPalermo\r\n$8\r\n190.4424\r\n:3479099956230698\r\n\
         *2\r\n$20\r\n13.36138933897018433\r\n$20\r\n38.11555639549629859\r\n\
         *4\r\n$7\r\nCatania\r\n$7\r\n56.4413\r\n:3479447370796909\r\n\
         *2\r\n$20\r\n15.08726745843887329\r\n$20\r\n37.50266842333162032\r\n",
    );
    check(
        &mut s,
        "GEOSEARCH Sicily FROMLONLAT 15 37 BYBOX 400 400 km ASC",
        "*2\r\n$7\r\nCatania\r\n$7\r\nPalermo\r\n",
    );
    check(&mut s, "TYPE Sicily", "+zset\r\n");
    check(
        &mut s,
        "ZRANGE Sicily 0 -1 WITHSCORES",
        "*4\r\n$7\r\nPalermo\r\n$16\r\n3479099956230698\r\n$7\r\nCatania\r\n$16\r\n3479447370796909\r\n",
    );
    check(
        &mut s,
        "GEOADD Sicily 200 100 Nowhere",
        "-ERR invalid longitude,latitude pair 200.000000,100.000000\r\n",
    );
    check(&mut s, "GEOADD Sicily XX NX 1 1 x", "-ERR syntax error\r\n");
    check(
        &mut s,
        "GEORADIUSBYMEMBER Sicily nosuch 1 km",
        "-ERR could not decode requested zset member\r\n",
    );
    check(
        &mut s,
        "GEORADIUS Sicily 15 37 1 km STORE d WITHDIST",
        "-ERR STORE option in GEORADIUS is not compatible with WITHDIST, WITHHASH and WITHCOORD options\r\n",
    );
    check(&mut s, "SET str x", "+OK\r\n");
    check(
        &mut s,
        "GEOSEARCH str FROMMEMBER x BYRADIUS -1 km",
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
    );
    check(
        &mut s,
        "GEORADIUS Sicily 15 37 1 km COUNT 0",
        "-ERR COUNT must be > 0\r\n",
    );

    // RESP3: coordinates are doubles with the same text.
    let mut hello = exchange(&mut s, b"HELLO 3\r\n", 1);
    while !hello.ends_with(b"modules\r\n*0\r\n") {
        hello.extend(exchange(&mut s, b"", 1));
    }
    assert!(hello.starts_with(b"%"));
    check(
        &mut s,
        "GEOPOS Sicily Palermo nosuch",
        "*2\r\n*2\r\n,13.36138933897018433\r\n,38.11555639549629859\r\n_\r\n",
    );
    check(
        &mut s,
        "GEORADIUS Sicily 15 37 100 km WITHDIST WITHCOORD",
        "*1\r\n*3\r\n$7\r\nCatania\r\n$7\r\n56.4413\r\n*2\r\n,15.08726745843887329\r\n,37.50266842333162032\r\n",
    );
    check(&mut s, "GEODIST Sicily Palermo nosuch", "_\r\n");
}

#[test]
fn a_follower_searches_and_relays_stores_and_events_reach_every_node() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let followers = cluster.followers(leader);
    let mut writer = cluster.client(leader);
    let added: i64 = redis::cmd("GEOADD")
        .arg(&[
            "nyc",
            "-73.9454966",
            "40.747533",
            "lic market",
            "-73.9733487",
            "40.7648057",
            "central park n/q/r",
            "-73.9903085",
            "40.7362513",
            "union square",
            "-74.0131604",
            "40.7126674",
            "wtc one",
            "-73.7858139",
            "40.6428986",
            "jfk",
            "-73.9375699",
            "40.7498929",
            "q4",
            "-73.9564142",
            "40.7480973",
            "4545",
        ])
        .query(&mut writer)
        .unwrap();
    assert_eq!(added, 7);

    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "notify-keyspace-events", "Kz"])
        .query(&mut writer)
        .unwrap();
    let mut sub = cluster.raw(followers[1]);
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let confirm = "*3\r\n$10\r\npsubscribe\r\n$16\r\n__keyspace@0__:*\r\n:1\r\n";
    assert_eq!(
        text(exchange(
            &mut sub,
            b"PSUBSCRIBE __keyspace@0__:*\r\n",
            confirm.len()
        )),
        confirm
    );

    let mut reader = cluster.client(followers[0]);
    // Read-your-writes: the follower's linearizable read sees the GEOADD.
    let near: Vec<String> = redis::cmd("GEORADIUS")
        .arg(&["nyc", "-73.9798091", "40.7598464", "3", "km", "ASC"])
        .query(&mut reader)
        .unwrap();
    assert_eq!(near, ["central park n/q/r", "4545", "union square"]);
    let with_dist: Value = redis::cmd("GEORADIUSBYMEMBER")
        .arg(&["nyc", "wtc one", "7", "km", "WITHDIST"])
        .query(&mut reader)
        .unwrap();
    let pair = |m: &str, d: &str| Value::Array(vec![bulk(m), bulk(d)]);
    assert_eq!(
        with_dist,
        Value::Array(vec![
            pair("wtc one", "0.0000"),
            pair("union square", "3.2544"),
            pair("central park n/q/r", "6.7000"),
            pair("4545", "6.1975"),
            pair("lic market", "6.8969"),
        ])
    );
    let any: Vec<String> = redis::cmd("GEORADIUS")
        .arg(&[
            "nyc",
            "-73.9798091",
            "40.7598464",
            "10",
            "km",
            "COUNT",
            "3",
            "ANY",
        ])
        .query(&mut reader)
        .unwrap();
    assert_eq!(any, ["wtc one", "union square", "central park n/q/r"]);

    // STORE through the follower goes through the log.
    let stored: i64 = redis::cmd("GEORADIUS")
        .arg(&[
            "nyc",
            "-73.9798091",
            "40.7598464",
            "3",
            "km",
            "STOREDIST",
            "near",
        ])
        .query(&mut reader)
        .unwrap();
    assert_eq!(stored, 3);
    let stored: i64 = redis::cmd("GEOSEARCHSTORE")
        .arg(&[
            "box",
            "nyc",
            "FROMMEMBER",
            "wtc one",
            "BYBOX",
            "14",
            "14",
            "km",
            "COUNT",
            "2",
        ])
        .query(&mut reader)
        .unwrap();
    assert_eq!(stored, 2);
    let in_box: Vec<String> = redis::cmd("ZRANGE")
        .arg(&["box", "0", "-1"])
        .query(&mut writer)
        .unwrap();
    assert_eq!(in_box, ["wtc one", "union square"]);
    let dists: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(&["near", "0", "-1", "WITHSCORES"])
        .query(&mut writer)
        .unwrap();
    assert_eq!(dists.len(), 3);
    assert!((dists[0].1 - 0.775).abs() < 0.001, "{dists:?}");
    // Nothing found: the destination is deleted.
    let stored: i64 = redis::cmd("GEORADIUS")
        .arg(&["nyc", "0", "0", "1", "km", "STORE", "near"])
        .query(&mut reader)
        .unwrap();
    assert_eq!(stored, 0);
    let exists: i64 = redis::cmd("EXISTS").arg("near").query(&mut writer).unwrap();
    assert_eq!(exists, 0);

    let event = |key: &str, name: &str| {
        let channel = format!("__keyspace@0__:{key}");
        format!(
            "*4\r\n$8\r\npmessage\r\n$16\r\n__keyspace@0__:*\r\n${}\r\n{channel}\r\n${}\r\n{name}\r\n",
            channel.len(),
            name.len()
        )
    };
    let expected = [
        event("near", "georadiusstore"),
        event("box", "geosearchstore"),
    ]
    .concat();
    assert_eq!(
        text(exchange(&mut sub, b"", expected.len())),
        expected,
        "the stores' events"
    );

    // Wrong types and bad arguments, through the follower.
    let _: () = redis::cmd("SET")
        .arg(&["str", "x"])
        .query(&mut writer)
        .unwrap();
    let err = redis::cmd("GEOPOS")
        .arg(&["str", "a"])
        .query::<Value>(&mut reader)
        .unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"));
    let err = redis::cmd("GEORADIUS")
        .arg(&["str", "0", "0", "1", "km", "STORE", "d"])
        .query::<Value>(&mut reader)
        .unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"));
    let err = redis::cmd("GEOSEARCH")
        .arg(&["nyc", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km", "ANY"])
        .query::<Value>(&mut reader)
        .unwrap_err();
    assert!(
        err.to_string().contains("the ANY argument requires COUNT"),
        "{err}"
    );
    // Huge COUNT and extreme radii answer, they do not fail.
    let all: Vec<String> = redis::cmd("GEOSEARCH")
        .arg(&[
            "nyc",
            "FROMLONLAT",
            "0",
            "0",
            "BYRADIUS",
            "inf",
            "km",
            "COUNT",
            "9223372036854775807",
        ])
        .query(&mut reader)
        .unwrap();
    assert_eq!(all.len(), 7);
}

#[test]
fn command_getkeys_finds_the_store_destinations() {
    let server = Server::start();
    let mut c = server.client();
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["GEORADIUS", "src", "1", "2", "3", "km", "STORE", "dst"],
            &["src", "dst"],
        ),
        (
            &[
                "GEORADIUSBYMEMBER",
                "src",
                "STORE",
                "3",
                "km",
                "STOREDIST",
                "d",
            ],
            &["src", "d"],
        ),
        (&["GEORADIUS_RO", "src", "1", "2", "3", "km"], &["src"]),
        (
            &[
                "GEOSEARCHSTORE",
                "dst",
                "src",
                "FROMMEMBER",
                "m",
                "BYRADIUS",
                "1",
                "m",
            ],
            &["dst", "src"],
        ),
    ];
    for (argv, keys) in cases {
        let got: Vec<String> = redis::cmd("COMMAND")
            .arg("GETKEYS")
            .arg(argv)
            .query(&mut c)
            .unwrap();
        assert_eq!(got, keys, "{argv:?}");
    }
}
