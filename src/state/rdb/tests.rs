use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;

use super::*;
use crate::state::db::ScanMap;
use crate::state::hashes::Hash;
use crate::state::zsets::ZSet;

/// Payloads DUMP answered in redis-server 7.0.15 (see the file's header).
const REDIS_DUMPS: &str = include_str!("../../../tests/rdb/redis-7.0-dumps.txt");

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn redis_dumps() -> BTreeMap<&'static str, (&'static str, Vec<u8>)> {
    REDIS_DUMPS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let mut parts = l.split(' ');
            let key = parts.next().expect("key");
            let encoding = parts.next().expect("encoding");
            (key, (encoding, unhex(parts.next().expect("payload"))))
        })
        .collect()
}

/// The value each captured key was given (see the capture script in
/// the test below's comment).
fn expected(key: &str) -> RestoredValue {
    let strings = |v: Vec<String>| v.into_iter().map(Bytes::from).collect::<Vec<_>>();
    match key {
        "s_int8" => RestoredValue::String(b("12")),
        "s_int16" => RestoredValue::String(b("-1234")),
        "s_int32" => RestoredValue::String(b("123456789")),
        "s_i64" => RestoredValue::String(b("12345678901234")),
        "s_raw" => RestoredValue::String(b("hello world")),
        "s_lzf" => RestoredValue::String(Bytes::from("abcdefghij".repeat(20))),
        "s_empty" => RestoredValue::String(Bytes::new()),
        "list" => RestoredValue::List(vec![
            b("a"),
            b("b"),
            b("1234"),
            b("-70000"),
            Bytes::from("x".repeat(100)),
            b("12345678901234"),
        ]),
        "list_big" => RestoredValue::List(strings(
            (0..1000).map(|i| format!("e{i}").repeat(3)).collect(),
        )),
        "hash_small" => RestoredValue::Hash(vec![
            (b("f1"), b("v1")),
            (b("f2"), b("2")),
            (b("n"), b("-300")),
        ]),
        "hash_big" => RestoredValue::Hash(
            (0..200)
                .map(|i| {
                    (
                        Bytes::from(format!("field{i}")),
                        Bytes::from(format!("value{i}")),
                    )
                })
                .collect(),
        ),
        "hash_table" => RestoredValue::Hash(
            (0..600)
                .map(|i| (Bytes::from(format!("f{i}")), Bytes::from(format!("v{i}"))))
                .collect(),
        ),
        "hash_longval" => RestoredValue::Hash(vec![
            (b("f"), Bytes::from("v".repeat(100))),
            (b("g"), b("w")),
        ]),
        "set_int" => RestoredValue::Set(strings(
            ["-5", "1", "2", "3", "100000", "5000000000"]
                .map(String::from)
                .to_vec(),
        )),
        "set_int16" => RestoredValue::Set(vec![b("1"), b("300")]),
        "set_str" => RestoredValue::Set(vec![b("a"), b("b"), b("c")]),
        "set_big" => RestoredValue::Set(strings((0..300).map(|i| format!("m{i}")).collect())),
        "set_bigint" => RestoredValue::Set(strings((0..1000).map(|i| i.to_string()).collect())),
        "zset_small" => RestoredValue::ZSet(vec![
            (-2.0, b("b")),
            (1.5, b("a")),
            (7.0, b("12")),
            (3e10, b("c")),
        ]),
        "zset_big" => RestoredValue::ZSet(
            (0..200)
                .map(|i| (f64::from(i) / 4.0, Bytes::from(format!("m{i}"))))
                .collect(),
        ),
        "zset_inf" => {
            RestoredValue::ZSet(vec![(f64::NEG_INFINITY, b("y")), (f64::INFINITY, b("x"))])
        }
        other => panic!("no expected value for {other}"),
    }
}

/// Order-free form of a decoded value, for the types whose order a
/// hash table decides.
fn normalized(value: RestoredValue) -> RestoredValue {
    match value {
        RestoredValue::Set(mut m) => {
            m.sort();
            RestoredValue::Set(m)
        }
        RestoredValue::Hash(mut p) => {
            p.sort();
            RestoredValue::Hash(p)
        }
        RestoredValue::ZSet(mut z) => {
            z.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            RestoredValue::ZSet(z)
        }
        other => other,
    }
}

fn value_of(restored: &RestoredValue) -> Value {
    restored.clone().into_value()
}

#[test]
fn crc64_is_redis_jones_variant() {
    assert_eq!(crc64(0, b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    assert_eq!(crc64(0, b""), 0);
}

#[test]
fn decodes_every_payload_redis_7_0_dumped() {
    let dumps = redis_dumps();
    assert_eq!(dumps.len(), 21);
    for (key, (encoding, payload)) in &dumps {
        let decoded = decode(payload).unwrap_or_else(|e| panic!("{key} ({encoding}): {e}"));
        assert_eq!(
            normalized(decoded),
            normalized(expected(key)),
            "{key} ({encoding})"
        );
    }
    // The encodings the capture covers.
    let types: BTreeSet<u8> = dumps.values().map(|(_, p)| p[0]).collect();
    assert_eq!(
        types,
        BTreeSet::from([
            TYPE_STRING,
            TYPE_SET,
            TYPE_HASH,
            TYPE_ZSET_2,
            TYPE_SET_INTSET,
            TYPE_HASH_LISTPACK,
            TYPE_ZSET_LISTPACK,
            TYPE_LIST_QUICKLIST_2
        ])
    );
}

#[test]
fn encodes_small_values_byte_for_byte_as_redis() {
    let dumps = redis_dumps();
    for key in [
        "s_int8",
        "s_int16",
        "s_int32",
        "s_i64",
        "s_raw",
        "s_empty",
        "hash_small",
        // Not set_int: Redis compressed its intset, concord does not.
        "set_int16",
        "zset_small",
        "zset_inf",
    ] {
        let ours = encode(&value_of(&expected(key))).expect("encodes");
        assert_eq!(hex(&ours), hex(&dumps[key].1), "{key}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn concord_payloads_round_trip() {
    let dumps = redis_dumps();
    for key in dumps.keys() {
        let value = expected(key);
        let payload = encode(&value_of(&value)).expect("encodes");
        assert_eq!(payload[payload.len() - 10], RDB_VERSION as u8);
        assert_eq!(
            normalized(decode(&payload).expect(key)),
            normalized(value),
            "{key}"
        );
    }
    // A list long enough for several nodes, with big and integer elements.
    let list: Vec<Bytes> = (0..5000usize)
        .map(|i| match i % 4 {
            0 => Bytes::from(i.to_string()),
            1 => Bytes::from(format!("-{}", i * 100_003)),
            2 => Bytes::from("y".repeat(i % 5000)),
            _ => Bytes::from(format!("{}", i64::MAX - i as i64)),
        })
        .collect();
    let payload = encode(&value_of(&RestoredValue::List(list.clone()))).unwrap();
    assert_eq!(decode(&payload), Ok(RestoredValue::List(list)));
    // Scores that need text.
    let scores = vec![
        (-0.0, b("negzero")),
        (0.1, b("a")),
        (1e-300, b("tiny")),
        (1e300, b("huge")),
        (123456789.125, b("frac")),
        (-9007199254740993.0, b("big")),
    ];
    let payload = encode(&value_of(&RestoredValue::ZSet(scores.clone()))).unwrap();
    let Ok(RestoredValue::ZSet(back)) = decode(&payload) else {
        panic!("a zset")
    };
    let mut want = scores;
    want.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut back = back;
    back.sort_by(|a, b| a.0.total_cmp(&b.0));
    for ((ws, wm), (bs, bm)) in want.iter().zip(&back) {
        assert_eq!(wm, bm);
        assert_eq!(ws, bs, "{wm:?}");
    }
}

/// A payload around `body`, with a valid footer.
fn seal(body: &[u8], version: u16) -> Vec<u8> {
    let mut out = body.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn listpack(items: &[&[u8]]) -> Vec<u8> {
    let mut lp = Listpack::new();
    for item in items {
        lp.push(item);
    }
    lp.finish()
}

fn string_field(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_len(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

#[test]
fn decodes_types_redis_7_0_does_not_emit() {
    // Redis 7.2's listpack set, at RDB version 11.
    let mut body = vec![TYPE_SET_LISTPACK];
    body.extend(string_field(&listpack(&[b"a", b"17", b"-300000"])));
    assert_eq!(
        decode(&seal(&body, 11)),
        Ok(RestoredValue::Set(vec![b("a"), b("17"), b("-300000")]))
    );
    assert_eq!(decode(&seal(&body, 12)), Err(RdbError::VersionOrChecksum));
    // A quicklist with a plain node between packed ones (and an empty
    // packed node, skipped).
    let mut body = vec![TYPE_LIST_QUICKLIST_2, 4, 2];
    body.extend(string_field(&listpack(&[b"x", b"1"])));
    body.push(1);
    body.extend(string_field(b"plain"));
    body.push(2);
    body.extend(string_field(&listpack(&[])));
    body.push(2);
    body.extend(string_field(&listpack(&[b"-5000000000"])));
    assert_eq!(
        decode(&seal(&body, 10)),
        Ok(RestoredValue::List(vec![
            b("x"),
            b("1"),
            b("plain"),
            b("-5000000000")
        ]))
    );
    // The old linked list and the old sorted set with text scores.
    let mut body = vec![TYPE_LIST, 2];
    body.extend(string_field(b"a"));
    body.extend([0xc0, 0xfe]);
    assert_eq!(
        decode(&seal(&body, 9)),
        Ok(RestoredValue::List(vec![b("a"), b("-2")]))
    );
    let mut body = vec![TYPE_ZSET, 2];
    body.extend(string_field(b"m"));
    body.extend(string_field(b"2.5"));
    body.extend(string_field(b"n"));
    body.push(255);
    assert_eq!(
        decode(&seal(&body, 9)),
        Ok(RestoredValue::ZSet(vec![
            (2.5, b("m")),
            (f64::NEG_INFINITY, b("n"))
        ]))
    );
    // Every listpack integer width, and strings of each length form.
    let long = vec![b'z'; 5000];
    let mid = vec![b'q'; 100];
    let items: Vec<&[u8]> = vec![
        b"0",
        b"127",
        b"128",
        b"-4096",
        b"4095",
        b"-32768",
        b"32767",
        b"-8388608",
        b"8388607",
        b"-2147483648",
        b"2147483647",
        b"-9223372036854775808",
        b"9223372036854775807",
        b"007",
        &mid,
        &long,
    ];
    let decoded = listpack_decode(&listpack(&items)).unwrap();
    assert_eq!(
        decoded,
        items
            .iter()
            .map(|i| Bytes::copy_from_slice(i))
            .collect::<Vec<_>>()
    );
}

#[test]
fn refuses_bad_payloads_with_redis_answers() {
    let good = encode(&Value::String(b("hello"))).unwrap();
    assert_eq!(decode(&good), Ok(RestoredValue::String(b("hello"))));
    assert_eq!(decode(b""), Err(RdbError::VersionOrChecksum));
    assert_eq!(decode(&good[..9]), Err(RdbError::VersionOrChecksum));
    let mut bad_crc = good.clone();
    *bad_crc.last_mut().unwrap() ^= 1;
    assert_eq!(decode(&bad_crc), Err(RdbError::VersionOrChecksum));
    // A body that ends early, behind a valid footer.
    assert_eq!(decode(&seal(&good[..3], 10)), Err(RdbError::BadFormat));
    // A forged huge length costs nothing.
    let mut forged = vec![TYPE_SET, 0x81];
    forged.extend(u64::MAX.to_be_bytes());
    assert_eq!(decode(&seal(&forged, 10)), Err(RdbError::BadFormat));
    let forged = [TYPE_STRING, 0x80, 0xff, 0xff, 0xff, 0xff, b'x'];
    assert_eq!(decode(&seal(&forged, 10)), Err(RdbError::BadFormat));
    let forged = [
        TYPE_STRING,
        0xc3,
        0x02,
        0x80,
        0xff,
        0xff,
        0xff,
        0xff,
        0x00,
        b'x',
    ];
    assert_eq!(decode(&seal(&forged, 10)), Err(RdbError::BadFormat));
    // Duplicates and empty collections.
    let mut body = vec![TYPE_SET, 2];
    body.extend(string_field(b"a"));
    body.extend(string_field(b"a"));
    assert_eq!(decode(&seal(&body, 10)), Err(RdbError::BadFormat));
    assert_eq!(decode(&seal(&[TYPE_SET, 0], 10)), Err(RdbError::BadFormat));
    // Unknown and unsupported types.
    assert_eq!(decode(&seal(&[99, 0], 10)), Err(RdbError::BadFormat));
    assert_eq!(
        decode(&seal(&[21, 0], 11)),
        Err(RdbError::Unsupported("stream"))
    );
    assert_eq!(
        decode(&seal(&[7, 0], 10)),
        Err(RdbError::Unsupported("module"))
    );
    // A back reference before the start of the output.
    assert!(lzf_decompress(&[0x20, 0x05], 3).is_err());
    assert_eq!(
        lzf_decompress(&[0x01, b'a', b'b', 0x20, 0x01], 5).unwrap(),
        b"ababa"
    );
}

fn every_payload() -> Vec<Vec<u8>> {
    let dumps = redis_dumps();
    let mut payloads: Vec<Vec<u8>> = dumps.values().map(|(_, p)| p.clone()).collect();
    for key in dumps.keys() {
        payloads.push(encode(&value_of(&expected(key))).unwrap());
    }
    payloads
}

/// Truncations and byte changes of valid payloads never panic, and with
/// the footer recomputed they reach the object decoder.
#[test]
fn truncated_and_damaged_payloads_never_panic() {
    for payload in every_payload().iter().filter(|p| p.len() < 4000) {
        for cut in 0..payload.len() {
            let truncated = &payload[..cut];
            assert!(decode(truncated).is_err());
            if cut > 10 {
                let _ = decode(&seal(&payload[..cut - 10], 10));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn random_flips_never_panic(
        which in 0usize..42,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let payloads = every_payload();
        let payload = &payloads[which % payloads.len()];
        let body_len = payload.len() - 10;
        let mut body = payload[..body_len].to_vec();
        for (at, byte) in flips {
            let i = at.index(body_len);
            body[i] = byte;
        }
        let _ = decode(&seal(&body, 10));
        let mut raw = body.clone();
        raw.extend_from_slice(&payload[body_len..]);
        let _ = decode(&raw);
    }

    #[test]
    fn encode_then_decode_is_identity(
        members in proptest::collection::btree_map(
            proptest::collection::vec(any::<u8>(), 0..80),
            (-1e6f64..1e6f64, proptest::collection::vec(any::<u8>(), 0..80)),
            1..200,
        ),
    ) {
        let mut set = ScanMap::new();
        let mut hash = Hash::default();
        let mut zset = ZSet::default();
        let mut list = VecDeque::new();
        for (m, (score, v)) in &members {
            let (m, v) = (Bytes::copy_from_slice(m), Bytes::copy_from_slice(v));
            set.insert(m.clone(), ());
            hash.insert(&m, &v);
            zset.insert(m.clone(), *score);
            list.push_back(v.clone());
        }
        for value in [
            Value::Set(Box::new(set)),
            Value::Hash(hash),
            Value::ZSet(Box::new(zset)),
            Value::List(Box::new(list)),
        ] {
            let payload = encode(&value).unwrap();
            let back = decode(&payload).unwrap().into_value();
            prop_assert_eq!(back, value);
        }
    }

    #[test]
    fn strings_round_trip(s in proptest::collection::vec(any::<u8>(), 0..300), n in any::<i64>()) {
        for s in [Bytes::from(s), Bytes::from(n.to_string())] {
            let payload = encode(&Value::String(s.clone())).unwrap();
            prop_assert_eq!(decode(&payload), Ok(RestoredValue::String(s)));
        }
    }
}

/// FUNCTION DUMP of one library, as redis-server 7.0.15 answered it.
const REDIS_FUNCTION_DUMP: &[u8] = b"\xf5@X#!lua name=test\nredis.register_function('test', function(KEYS, ARGV) return 'hello' end)\n\x00d\x9cn\xdb\"\xb8\x80\xe7";

/// The same from a library long enough for Redis to compress it (LZF).
const REDIS_FUNCTION_DUMP_LZF: &[u8] = b"\xf5\xc3@yAY\x1f#!lua name=big\nredis.register_fu\x0cnction('f0', \xe0\x00\x0e\x0e) return 0 end)\xe0\x126\x001\xe0\x0c6\x001\xe0\x176\x002\xe0\x0c6\x002\xe0\x176\x003\xe0\x0c6\x003\xe0\x176\x004\xe0\x0c6\x004\xe0\x176\x005\xe0\x0c6\x005@6\x01)\n\n\x00u\xd0Tze\xdc^\xeb";

#[test]
fn function_payloads_are_redis_7_0s() {
    let code: &[u8] =
        b"#!lua name=test\nredis.register_function('test', function(KEYS, ARGV) return 'hello' end)";
    assert_eq!(encode_functions([code]), REDIS_FUNCTION_DUMP);
    assert_eq!(
        decode_functions(REDIS_FUNCTION_DUMP),
        Ok(vec![Bytes::from_static(code)])
    );
    let big: String = (0..6)
        .map(|i| format!("redis.register_function('f{i}', function() return {i} end)\n"))
        .collect();
    let big = format!("#!lua name=big\n{big}");
    assert_eq!(
        decode_functions(REDIS_FUNCTION_DUMP_LZF),
        Ok(vec![Bytes::from(big.clone())])
    );
    // No library: the footer alone.
    assert_eq!(encode_functions([]), b"\n\x00]\x9b\\@\x0f\x7f\xa2\xda");
    assert_eq!(decode_functions(&encode_functions([])), Ok(vec![]));
    let two = encode_functions([code, big.as_bytes()]);
    assert_eq!(
        decode_functions(&two),
        Ok(vec![Bytes::from_static(code), Bytes::from(big)])
    );
    // Redis 7.0-rc's entry: name, engine, description, code.
    let mut old = vec![OPCODE_FUNCTION];
    for field in [&b"lib"[..], b"LUA"] {
        old.extend(string_field(field));
    }
    old.push(1);
    old.extend(string_field(b"about"));
    old.extend(string_field(b"return 1"));
    assert_eq!(
        decode_functions(&seal(&old, 10)),
        Ok(vec![Bytes::from_static(b"#!LUA name=lib\nreturn 1")])
    );
}

#[test]
fn refuses_bad_function_payloads_with_redis_answers() {
    use FunctionPayloadError::*;
    assert_eq!(decode_functions(b"bad_payload"), Err(VersionOrChecksum));
    assert_eq!(decode_functions(b"short"), Err(VersionOrChecksum));
    let mut flipped = REDIS_FUNCTION_DUMP.to_vec();
    flipped[5] ^= 1;
    assert_eq!(decode_functions(&flipped), Err(VersionOrChecksum));
    assert_eq!(
        decode_functions(&seal(
            &REDIS_FUNCTION_DUMP[..REDIS_FUNCTION_DUMP.len() - 10],
            12
        )),
        Err(VersionOrChecksum)
    );
    assert_eq!(decode_functions(&seal(b"\x00\x01x", 10)), Err(NotAFunction));
    assert_eq!(
        decode_functions(&seal(b"\xf5\x40", 10)),
        Err(Truncated("library payload"))
    );
    assert_eq!(
        decode_functions(&seal(b"\xf6\x03lib", 10)),
        Err(Truncated("engine name"))
    );
    // A string may run into the footer, as in Redis: the code then holds
    // footer bytes (and will not load).
    let into_footer = seal(b"\xf5\x05ab", 10);
    let codes = decode_functions(&into_footer).unwrap();
    assert_eq!(codes.len(), 1);
    assert_eq!(&codes[0][..], &into_footer[2..7]);
    // Truncations of valid payloads never panic.
    let two = encode_functions([&b"#!lua name=a\nx"[..], &[b'y'; 300][..]]);
    for cut in 0..two.len() {
        let _ = decode_functions(&two[..cut]);
        if cut > 10 {
            let _ = decode_functions(&seal(&two[..cut - 10], 10));
        }
    }
}
