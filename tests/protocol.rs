//! The wire: RESP2/RESP3, inline commands, pipelining, and what happens to
//! malformed and oversized input — against a real process.

mod common;

use common::{closed, exchange, Server};

#[test]
fn inline_and_multibulk_requests_are_answered_in_order() {
    let server = Server::start();
    let mut s = server.raw();
    let mut request = Vec::new();
    for i in 0..100 {
        request.extend_from_slice(format!("SET k{i} v{i}\r\n").as_bytes());
    }
    for i in 0..100 {
        let key = format!("k{i}");
        request.extend_from_slice(
            format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
        );
    }
    let mut expected = "+OK\r\n".repeat(100).into_bytes();
    for i in 0..100 {
        let v = format!("v{i}");
        expected.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    let got = exchange(&mut s, &request, expected.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&expected)
    );
}

#[test]
fn a_pipeline_reads_its_own_writes() {
    let server = Server::start();
    let mut con = server.client();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("INCR").arg("counter");
        pipe.cmd("GET").arg("counter");
        let _ = i;
    }
    let replies: Vec<i64> = pipe.query(&mut con).unwrap();
    let expected: Vec<i64> = (1..=500).flat_map(|i| [i, i]).collect();
    assert_eq!(replies, expected);
}

#[test]
fn resp3_after_hello_and_resp2_before() {
    let server = Server::start();
    let mut s = server.raw();
    let setup = exchange(&mut s, b"HSET h f v\r\n", 4);
    assert_eq!(setup, b":1\r\n");
    let resp2 = exchange(&mut s, b"HGETALL h\r\n", 18);
    assert_eq!(
        String::from_utf8_lossy(&resp2),
        "*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    let hello = exchange(&mut s, b"HELLO 3\r\n", 1);
    assert!(
        hello.starts_with(b"%"),
        "HELLO 3 answers with a map: {hello:?}"
    );
    // Drain the rest of the HELLO map before the next exchange.
    let mut buf = [0u8; 4096];
    let mut rest = hello;
    while !String::from_utf8_lossy(&rest).contains("modules") {
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        rest.extend_from_slice(&buf[..n]);
    }
    while !rest.ends_with(b"*0\r\n") {
        let n = std::io::Read::read(&mut s, &mut buf).unwrap();
        rest.extend_from_slice(&buf[..n]);
    }
    let map = exchange(&mut s, b"HGETALL h\r\n", 18);
    assert_eq!(
        String::from_utf8_lossy(&map),
        "%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    let nil = exchange(&mut s, b"GET missing\r\n", 3);
    assert_eq!(nil, b"_\r\n");
    let reset = exchange(&mut s, b"RESET\r\nGET missing\r\n", 13);
    assert_eq!(String::from_utf8_lossy(&reset), "+RESET\r\n$-1\r\n");
}

#[test]
fn hello_rejects_unknown_protocols() {
    let server = Server::start();
    let mut s = server.raw();
    let got = exchange(&mut s, b"HELLO 4\r\n", 39);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-NOPROTO unsupported protocol version\r\n"
    );
}

fn protocol_error(request: &[u8], message: &str) {
    let server = Server::start();
    let mut s = server.raw();
    let expected = format!("-ERR Protocol error: {message}\r\n");
    let got = exchange(&mut s, request, expected.len());
    assert_eq!(String::from_utf8_lossy(&got), expected);
    assert!(
        closed(&mut s),
        "the connection is closed after a protocol error"
    );
    assert!(common::ping(server.port), "the server still serves others");
}

#[test]
fn a_bad_multibulk_length_is_a_protocol_error() {
    protocol_error(b"*abc\r\n", "invalid multibulk length");
}

#[test]
fn a_huge_multibulk_count_is_refused_before_allocating() {
    protocol_error(b"*2147483647\r\n", "invalid multibulk length");
}

#[test]
fn a_bulk_longer_than_the_limit_is_refused_before_its_data() {
    protocol_error(b"*1\r\n$536870913\r\n", "invalid bulk length");
}

#[test]
fn a_non_bulk_element_is_a_protocol_error() {
    protocol_error(b"*1\r\n:5\r\n", "expected '$', got ':'");
}

#[test]
fn unbalanced_quotes_in_an_inline_command() {
    protocol_error(b"SET \"abc\r\n", "unbalanced quotes in request");
}

#[test]
fn random_garbage_never_takes_the_server_down() {
    let server = Server::start();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..50 {
        let mut s = server.raw();
        let mut junk = Vec::new();
        for _ in 0..200 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            junk.push(b"*$\r\n0123456789-abcSETGET "[(seed % 25) as usize]);
        }
        use std::io::Write;
        let _ = s.write_all(&junk);
        let _ = s.write_all(b"\r\n");
    }
    assert!(common::ping(server.port));
    let mut con = server.client();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn unknown_commands_and_wrong_arity_get_redis_errors() {
    let server = Server::start();
    let mut s = server.raw();
    let got = exchange(&mut s, b"NOSUCH a b\r\n", 60);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n"
    );
    let got = exchange(&mut s, b"GET\r\n", 50);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    let got = exchange(&mut s, b"SET a b\r\nINCR a\r\n", 50);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "+OK\r\n-ERR value is not an integer or out of range\r\n"
    );
}

#[test]
fn a_large_value_round_trips() {
    let server = Server::start();
    let mut con = server.client();
    let value = vec![b'x'; 8 * 1024 * 1024];
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut con)
        .unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("big").query(&mut con).unwrap();
    assert_eq!(back.len(), value.len());
    assert!(back == value);
}

#[test]
fn quit_answers_then_closes() {
    let server = Server::start();
    let mut s = server.raw();
    let got = exchange(&mut s, b"QUIT\r\nPING\r\n", 5);
    assert_eq!(got, b"+OK\r\n");
    assert!(closed(&mut s));
}
