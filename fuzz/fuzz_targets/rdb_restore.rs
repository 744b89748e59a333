//! The DUMP payload decoder RESTORE uses (`concord::state::rdb::decode`).
//!
//! Input: one mode byte, then a payload. Mode bit 0 clear: the payload is
//! decoded as it is (the version and checksum checks). Set: the payload
//! lacks its last 8 bytes, the CRC-64, which is computed and appended, so
//! the fuzzer gets past the checksum to the object decoders (listpack,
//! intset, ziplist, LZF, ...).
//!
//! Checks: the decoder answers a value or an error, never panics; a value
//! keeps the promises of `RestoredValue` (collections never empty, no
//! duplicate set members, hash fields or zset members, no NaN score); and
//! DUMP of it (`rdb::encode`) decodes back to the same value.

#![no_main]

use std::collections::BTreeMap;

use bytes::Bytes;
use concord::state::rdb::{self, RestoredValue};
use libfuzzer_sys::fuzz_target;

fn distinct<'a>(items: impl Iterator<Item = &'a Bytes>) -> bool {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().all(|i| seen.insert(i))
}

/// The value with order-free collections sorted, to compare.
fn normal(v: &RestoredValue) -> RestoredValue {
    match v.clone() {
        RestoredValue::Set(mut m) => {
            m.sort();
            RestoredValue::Set(m)
        }
        RestoredValue::Hash(mut p) => {
            p.sort();
            RestoredValue::Hash(p)
        }
        RestoredValue::ZSet(p) => {
            let by_member: BTreeMap<Bytes, f64> = p.into_iter().map(|(s, m)| (m, s)).collect();
            RestoredValue::ZSet(by_member.into_iter().map(|(m, s)| (s, m)).collect())
        }
        other => other,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let payload = if mode & 1 == 1 {
        let mut p = body.to_vec();
        p.extend_from_slice(&rdb::crc64(0, body).to_le_bytes());
        p
    } else {
        body.to_vec()
    };
    let Ok(value) = rdb::decode(&payload) else {
        return;
    };
    match &value {
        RestoredValue::String(_) => {}
        RestoredValue::List(items) => assert!(!items.is_empty(), "empty list"),
        RestoredValue::Set(members) => {
            assert!(!members.is_empty(), "empty set");
            assert!(distinct(members.iter()), "duplicate set members");
        }
        RestoredValue::Hash(pairs) => {
            assert!(!pairs.is_empty(), "empty hash");
            assert!(distinct(pairs.iter().map(|(f, _)| f)), "duplicate fields");
        }
        RestoredValue::ZSet(pairs) => {
            assert!(!pairs.is_empty(), "empty zset");
            assert!(distinct(pairs.iter().map(|(_, m)| m)), "duplicate members");
            assert!(pairs.iter().all(|(s, _)| !s.is_nan()), "NaN score");
        }
    }
    let stored = value.clone().into_value();
    let Ok(dumped) = rdb::encode(&stored) else {
        return;
    };
    let back = rdb::decode(&dumped).expect("DUMP's own payload restores");
    assert_eq!(normal(&back), normal(&value), "DUMP of the value differs");
});
