//! Property tests, with the `redis-protocol` crate as the oracle.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use redis_protocol::resp2::types::{BytesFrame as Resp2Bytes, OwnedFrame as Resp2};
use redis_protocol::resp3::types::{FrameMap, FrameSet, OwnedFrame as Resp3, VerbatimStringFormat};

use super::{
    encode, format_double, format_human_double, Limits, Protocol, ProtocolError, Reply,
    RequestParser,
};

/// What parsing a byte stream gave: the requests, then how it stopped (`Ok`: needs more).
type Outcome = (Vec<Vec<Bytes>>, Result<(), ProtocolError>);

/// Feeds `input` to a fresh parser in chunks ending at `cuts` (sorted or not, clamped),
/// calling `next_request` until it asks for more after each chunk.
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
                    // Every request consumes bytes, so the loop cannot spin.
                    assert!(buf.len() < before);
                    assert!(!argv.is_empty());
                    out.push(argv);
                }
                Ok(None) => break,
                Err(e) => return (out, Err(e)),
            }
        }
    }
    (out, Ok(()))
}

fn resp2_multibulk(argv: &[Vec<u8>], out: &mut BytesMut) {
    let frame = Resp2Bytes::Array(
        argv.iter()
            .map(|a| Resp2Bytes::BulkString(Bytes::copy_from_slice(a)))
            .collect(),
    );
    redis_protocol::resp2::encode::extend_encode(out, &frame, false).expect("oracle encodes");
}

fn small_limits() -> Limits {
    Limits {
        max_bulk_len: 8,
        max_multibulk_len: 4,
        max_inline_len: 16,
        unauthenticated: false,
    }
}

/// Bytes that look like protocol more often than uniform random bytes would.
fn protocol_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        Just(b"*".to_vec()),
        Just(b"$".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"'".to_vec()),
        Just(b"\\".to_vec()),
        Just(b"\\x4".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"-1".to_vec()),
        (0u32..20).prop_map(|n| n.to_string().into_bytes()),
        Just(b"PING".to_vec()),
    ];
    vec(token, 0..80).prop_map(|t| t.concat())
}

fn sanitize(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// Scalars; all of them may be map keys and set members for the oracle (which hashes them).
fn scalar() -> impl Strategy<Value = Reply> {
    prop_oneof![
        ".{0,12}".prop_map(|s: String| Reply::Simple(s.into())),
        ".{0,12}".prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Int),
        vec(any::<u8>(), 0..24).prop_map(|v| Reply::Bulk(v.into())),
        Just(Reply::Nil),
        Just(Reply::NilArray),
        any::<f64>()
            .prop_filter("NaN never compares equal", |v| !v.is_nan())
            .prop_map(Reply::Double),
        any::<bool>().prop_map(Reply::Bool),
        "-?[1-9][0-9]{0,40}".prop_map(Reply::BigNumber),
        (
            prop_oneof![Just(*b"txt"), Just(*b"mkd")],
            vec(any::<u8>(), 0..24)
        )
            .prop_map(|(format, text)| Reply::Verbatim {
                format,
                text: text.into()
            }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    scalar().prop_recursive(3, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Reply::Array),
            vec((scalar(), inner.clone()), 0..4).prop_map(|pairs| Reply::Map(distinct_keys(pairs))),
            vec(scalar(), 0..6).prop_map(Reply::Set),
            vec((scalar(), inner.clone()), 0..4).prop_map(Reply::Pairs),
            vec(inner.clone(), 0..6).prop_map(Reply::Push),
            vec((scalar(), inner), 0..4).prop_map(|pairs| Reply::KeyedArrays(distinct_keys(pairs))),
        ]
    })
}

/// Drops pairs whose key encodes (in RESP3) like an earlier key: a map with duplicate keys
/// has no meaning, and the oracle decodes it into a hash map.
fn distinct_keys(pairs: Vec<(Reply, Reply)>) -> Vec<(Reply, Reply)> {
    let mut seen = std::collections::HashSet::new();
    pairs
        .into_iter()
        .filter(|(k, _)| {
            let mut key = BytesMut::new();
            encode(k, Protocol::Resp3, &mut key);
            seen.insert(key)
        })
        .collect()
}

/// The RESP2 frame a RESP2 client must see for `r`.
fn as_resp2(r: &Reply) -> Resp2 {
    match r {
        Reply::Simple(s) => Resp2::SimpleString(sanitize(s).into_bytes()),
        Reply::Error(s) => Resp2::Error(sanitize(s)),
        Reply::Int(n) => Resp2::Integer(*n),
        Reply::Bulk(b) => Resp2::BulkString(b.to_vec()),
        Reply::Nil | Reply::NilArray => Resp2::Null,
        Reply::Array(v) | Reply::Set(v) | Reply::Push(v) => {
            Resp2::Array(v.iter().map(as_resp2).collect())
        }
        Reply::Map(pairs) | Reply::Pairs(pairs) => Resp2::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [as_resp2(k), as_resp2(v)])
                .collect(),
        ),
        Reply::Double(d) => Resp2::BulkString(format_double(*d).into_bytes()),
        Reply::HumanDouble(d) => Resp2::BulkString(format_human_double(*d).into_bytes()),
        Reply::Bool(b) => Resp2::Integer(i64::from(*b)),
        Reply::BigNumber(s) => Resp2::BulkString(s.clone().into_bytes()),
        Reply::Verbatim { text, .. } => Resp2::BulkString(text.to_vec()),
        Reply::KeyedArrays(pairs) => Resp2::Array(
            pairs
                .iter()
                .map(|(k, v)| Resp2::Array(vec![as_resp2(k), as_resp2(v)]))
                .collect(),
        ),
        Reply::Frames(_) => panic!("the strategy makes single frames"),
    }
}

/// The RESP3 frame a RESP3 client must see for `r`.
fn as_resp3(r: &Reply) -> Resp3 {
    let attributes = None;
    match r {
        Reply::Simple(s) => Resp3::SimpleString {
            data: sanitize(s).into_bytes(),
            attributes,
        },
        Reply::Error(s) => Resp3::SimpleError {
            data: sanitize(s),
            attributes,
        },
        Reply::Int(n) => Resp3::Number {
            data: *n,
            attributes,
        },
        Reply::Bulk(b) => Resp3::BlobString {
            data: b.to_vec(),
            attributes,
        },
        Reply::Nil | Reply::NilArray => Resp3::Null,
        Reply::Array(v) => Resp3::Array {
            data: v.iter().map(as_resp3).collect(),
            attributes,
        },
        Reply::Push(v) => Resp3::Push {
            data: v.iter().map(as_resp3).collect(),
            attributes,
        },
        Reply::Set(v) => Resp3::Set {
            data: v.iter().map(as_resp3).collect::<FrameSet<_>>(),
            attributes,
        },
        Reply::Pairs(pairs) => Resp3::Array {
            data: pairs
                .iter()
                .map(|(k, v)| Resp3::Array {
                    data: vec![as_resp3(k), as_resp3(v)],
                    attributes: None,
                })
                .collect(),
            attributes,
        },
        Reply::Map(pairs) | Reply::KeyedArrays(pairs) => Resp3::Map {
            data: pairs
                .iter()
                .map(|(k, v)| (as_resp3(k), as_resp3(v)))
                .collect::<FrameMap<_, _>>(),
            attributes,
        },
        Reply::Double(d) => Resp3::Double {
            data: *d,
            attributes,
        },
        Reply::HumanDouble(d) => Resp3::Double {
            data: format_human_double(*d).parse().unwrap_or(f64::NAN),
            attributes,
        },
        Reply::Bool(b) => Resp3::Boolean {
            data: *b,
            attributes,
        },
        Reply::BigNumber(s) => Resp3::BigNumber {
            data: s.clone().into_bytes(),
            attributes,
        },
        Reply::Verbatim { format, text } => Resp3::VerbatimString {
            data: text.to_vec(),
            format: if format == b"txt" {
                VerbatimStringFormat::Text
            } else {
                VerbatimStringFormat::Markdown
            },
            attributes,
        },
        Reply::Frames(_) => panic!("the strategy makes single frames"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Binary-safe argv encoded by the oracle parses back identically, whatever the chunking.
    #[test]
    fn oracle_multibulk_roundtrip(
        requests in vec(vec(vec(any::<u8>(), 0..40), 1..6), 1..6),
        cuts in vec(any::<usize>(), 0..8),
    ) {
        let mut wire = BytesMut::new();
        for argv in &requests {
            resp2_multibulk(argv, &mut wire);
        }
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        let (got, end) = parse_chunked(Limits::default(), &wire, &cuts);
        prop_assert_eq!(end, Ok(()));
        let want: Vec<Vec<Bytes>> = requests
            .iter()
            .map(|argv| argv.iter().map(|a| Bytes::copy_from_slice(a)).collect())
            .collect();
        prop_assert_eq!(got, want);
    }

    /// Random input never panics, every call ends in requests, need-more or an error, and
    /// the outcome is the same however the bytes were chunked.
    #[test]
    fn random_bytes_are_handled_the_same_in_any_chunking(
        input in prop_oneof![vec(any::<u8>(), 0..300), protocol_ish()],
        cuts in vec(any::<usize>(), 0..10),
        small in any::<bool>(),
    ) {
        let limits = if small { small_limits() } else { Limits::default() };
        let cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        let whole = parse_chunked(limits, &input, &[]);
        let bytewise = parse_chunked(limits, &input, &(0..input.len()).collect::<Vec<_>>());
        let chunked = parse_chunked(limits, &input, &cuts);
        prop_assert_eq!(&whole, &bytewise);
        prop_assert_eq!(&whole, &chunked);
    }

    /// Every reply decodes with the oracle's RESP2 and RESP3 decoders to the frame a client
    /// of that protocol must see, using exactly the bytes written.
    #[test]
    fn replies_decode_with_the_oracle(reply in reply()) {
        let mut out = BytesMut::new();
        encode(&reply, Protocol::Resp2, &mut out);
        let (frame, used) = redis_protocol::resp2::decode::decode(&out)
            .expect("valid RESP2")
            .expect("complete RESP2");
        prop_assert_eq!(used, out.len());
        prop_assert_eq!(frame, as_resp2(&reply));

        let mut out = BytesMut::new();
        encode(&reply, Protocol::Resp3, &mut out);
        let (frame, used) = redis_protocol::resp3::decode::complete::decode(&out)
            .expect("valid RESP3")
            .expect("complete RESP3");
        prop_assert_eq!(used, out.len());
        prop_assert_eq!(frame, as_resp3(&reply));
    }

    /// Doubles round-trip through their text.
    #[test]
    fn double_text_round_trips(bits in any::<u64>()) {
        let v = f64::from_bits(bits);
        let text = format_double(v);
        let back: f64 = text.parse().unwrap();
        if v.is_nan() {
            prop_assert!(back.is_nan());
            prop_assert_eq!(text, "nan");
        } else {
            prop_assert_eq!(back.to_bits(), v.to_bits(), "{}", text);
        }
    }
}
