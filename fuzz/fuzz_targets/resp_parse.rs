//! The RESP request parser (`concord::resp::RequestParser`) on arbitrary
//! bytes, checked against the `redis-protocol` crate's RESP2 decoder.
//!
//! Input: one config byte, then the bytes a client sends.
//! * config bit 0: small limits (so the limit paths are reached), bit 1: an
//!   unauthenticated connection; the rest seeds where the stream is cut
//!   into reads.
//!
//! Checks:
//! 1. No panic, no hang; every request consumes bytes; the same outcome
//!    whether the bytes arrive at once, a byte at a time or in random reads.
//! 2. For each complete multibulk frame the oracle decodes, the parser
//!    agrees: the same argv and the same bytes consumed, or a skip for
//!    `*0`/`*-1`. Where Redis refuses what the oracle accepts (a length
//!    not in canonical form such as `+3` or `03`, a null or non-bulk
//!    element, a length over the parser's limits) the parser must refuse
//!    too, with an error and not by waiting for more bytes.
//! 3. Where the oracle wants more bytes or refuses, a request the parser
//!    takes anyway must owe it to the leniency Redis has (bytes after a
//!    `\r` or after bulk data skipped unread): its strict encoding is not
//!    what was consumed.

#![no_main]

use bytes::{Bytes, BytesMut};
use concord::resp::{Limits, ProtocolError, RequestParser};
use libfuzzer_sys::fuzz_target;
use redis_protocol::resp2::types::OwnedFrame;

type Outcome = (Vec<Vec<Bytes>>, Result<(), ProtocolError>);

fn parse_chunked(limits: Limits, input: &[u8], cuts: &[usize]) -> Outcome {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    for cut in cuts {
        buf.extend_from_slice(&input[fed..cut]);
        fed = cut;
        loop {
            let before = buf.len();
            match parser.next_request(&mut buf) {
                Ok(Some(argv)) => {
                    assert!(buf.len() < before, "a request consumed no bytes");
                    assert!(!argv.is_empty(), "an empty request");
                    out.push(argv);
                }
                Ok(None) => break,
                Err(e) => return (out, Err(e)),
            }
        }
    }
    (out, Ok(()))
}

/// What the parser must do with one complete frame the oracle decoded.
#[derive(Debug)]
enum Expect {
    Request(Vec<Bytes>),
    /// `*0` or `*-1`: nothing to run.
    Skip,
    /// Redis refuses it (or it is over the limits).
    Refuse,
}

/// Redis's `string2ll` accepts only the canonical spelling.
fn canonical(text: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(text).ok()?;
    let v: i64 = s.parse().ok()?;
    (v.to_string() == s).then_some(v)
}

/// Index of the first `\r\n` at or after `from`.
fn crlf(frame: &[u8], from: usize) -> usize {
    from + frame[from..]
        .windows(2)
        .position(|w| w == b"\r\n")
        .expect("the oracle decoded a header line")
}

/// Walks the bytes of a frame the oracle decoded (`wire`, exactly its
/// bytes) as Redis reads a request.
fn expect(wire: &[u8], frame: &OwnedFrame, limits: &Limits) -> Expect {
    let cr = crlf(wire, 0);
    if cr > limits.max_inline_len {
        return Expect::Refuse;
    }
    let Some(count) = canonical(&wire[1..cr]) else {
        return Expect::Refuse;
    };
    if count > 0 && count as u64 > limits.max_multibulk_len as u64 {
        return Expect::Refuse;
    }
    if limits.unauthenticated && count > 10 {
        return Expect::Refuse;
    }
    let elements = match frame {
        OwnedFrame::Null => return Expect::Skip,
        OwnedFrame::Array(elements) if elements.is_empty() => return Expect::Skip,
        OwnedFrame::Array(elements) => elements,
        other => panic!("a frame starting with '*' decoded as {other:?}"),
    };
    let mut p = cr + 2;
    let mut argv = Vec::new();
    for element in elements {
        if wire[p] != b'$' {
            return Expect::Refuse;
        }
        let cr = crlf(wire, p);
        if cr - p > limits.max_inline_len {
            return Expect::Refuse;
        }
        let Some(len) = canonical(&wire[p + 1..cr]) else {
            return Expect::Refuse;
        };
        if len < 0 || len as u64 > limits.max_bulk_len as u64 {
            return Expect::Refuse;
        }
        if limits.unauthenticated && len > 16 * 1024 {
            return Expect::Refuse;
        }
        let OwnedFrame::BulkString(data) = element else {
            panic!("'${len}' decoded as {element:?}");
        };
        argv.push(Bytes::copy_from_slice(data));
        p = cr + 2 + len as usize + 2;
    }
    assert_eq!(p, wire.len(), "frame walk and oracle disagree on its end");
    Expect::Request(argv)
}

/// Compares the parser with the oracle frame by frame along `input`.
fn differential(limits: Limits, input: &[u8]) {
    let mut rest = input;
    while rest.first() == Some(&b'*') {
        let decoded = redis_protocol::resp2::decode::decode(rest);
        let mut parser = RequestParser::new(limits);
        match decoded {
            Ok(Some((frame, used))) => {
                let wire = &rest[..used];
                let mut buf = BytesMut::from(wire);
                let got = parser.next_request(&mut buf);
                let consumed = used - buf.len();
                match expect(wire, &frame, &limits) {
                    Expect::Request(want) => {
                        assert_eq!(got, Ok(Some(want)), "frame {wire:?}");
                        assert_eq!(consumed, used, "frame {wire:?}");
                    }
                    Expect::Skip => {
                        assert_eq!(got, Ok(None), "frame {wire:?}");
                        assert_eq!(consumed, used, "frame {wire:?}");
                    }
                    Expect::Refuse => {
                        assert!(got.is_err(), "frame {wire:?}: {got:?}");
                    }
                }
                rest = &rest[used..];
            }
            // Incomplete for the oracle, or refused by it: the parser may
            // still take a request from these bytes only by its leniency
            // (it skips the byte after a header's `\r` and the two after a
            // bulk's data without looking, as Redis does), so what it
            // consumed cannot be the request's strict encoding, which the
            // oracle would have decoded.
            Ok(None) | Err(_) => {
                let mut buf = BytesMut::from(rest);
                if let Ok(Some(argv)) = parser.next_request(&mut buf) {
                    let consumed = &rest[..rest.len() - buf.len()];
                    assert_ne!(
                        consumed,
                        &strict_encoding(&argv)[..],
                        "the oracle refused or wanted more of {rest:?} ({decoded:?}); \
                         the parser took {argv:?}"
                    );
                }
                return;
            }
        }
    }
}

/// `*<n>\r\n` and `$<len>\r\n<data>\r\n` for each argument.
fn strict_encoding(argv: &[Bytes]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", argv.len()).into_bytes();
    for arg in argv {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&config, input)) = data.split_first() else {
        return;
    };
    let mut limits = if config & 1 == 1 {
        Limits {
            max_bulk_len: 8,
            max_multibulk_len: 4,
            max_inline_len: 16,
            unauthenticated: false,
        }
    } else {
        Limits::default()
    };
    limits.unauthenticated = config & 2 == 2;

    // 1. Chunking does not change the outcome.
    let whole = parse_chunked(limits, input, &[]);
    if input.len() <= 512 {
        let bytewise = parse_chunked(limits, input, &(0..input.len()).collect::<Vec<_>>());
        assert_eq!(whole, bytewise, "byte-at-a-time differs");
    }
    let step = usize::from(config >> 2) + 1;
    let cuts: Vec<usize> = (0..input.len()).step_by(step).collect();
    let chunked = parse_chunked(limits, input, &cuts);
    assert_eq!(whole, chunked, "reads of {step} bytes differ");

    // 2, 3. Agreement with the oracle.
    differential(limits, input);
});
