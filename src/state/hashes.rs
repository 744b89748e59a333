//! Hashes: HSET and friends, the HINCRBY family, HSCAN and HRANDFIELD.
//!
//! A hash is modified in place (never cloned on write) and never exists
//! empty: every write that removes its last field deletes the key, and a
//! write that created a hash and then failed leaves nothing behind.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{Db, ScanMap, SeededRng, Value};
use super::keys::scan_reply;
use super::packed::{self, PackedPairs};
use super::strings::{add_float, format_i64, parse_i64};
use super::{glob, OpResult, Outcome, StateError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HashOp {
    /// HSET and HMSET. Outcome: the number of fields added.
    Set {
        key: Bytes,
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// Outcome: 1 if the field was set, 0 if it existed.
    SetNx {
        key: Bytes,
        field: Bytes,
        value: Bytes,
    },
    /// Outcome: the number of fields removed.
    Del { key: Bytes, fields: Vec<Bytes> },
    /// Outcome: the new value.
    IncrBy {
        key: Bytes,
        field: Bytes,
        delta: i64,
    },
    /// Outcome: the new value as a bulk string. `delta` is finite.
    IncrByFloat {
        key: Bytes,
        field: Bytes,
        delta: f64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HashQuery {
    Get {
        key: Bytes,
        field: Bytes,
    },
    MGet {
        key: Bytes,
        fields: Vec<Bytes>,
    },
    /// Outcome: a map of fields to values, in scan order.
    GetAll {
        key: Bytes,
    },
    Exists {
        key: Bytes,
        field: Bytes,
    },
    Len {
        key: Bytes,
    },
    Keys {
        key: Bytes,
    },
    Vals {
        key: Bytes,
    },
    StrLen {
        key: Bytes,
        field: Bytes,
    },
    /// One HSCAN step: `[next cursor, [field, value, ...]]`, fields only
    /// with `novalues`.
    Scan {
        key: Bytes,
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        novalues: bool,
    },
    /// HRANDFIELD. Without `count`: one field or nil. With a count: up to
    /// `count` distinct fields, or exactly `-count` fields with repeats when
    /// it is negative; `with_values` pairs each field with its value.
    RandField {
        key: Bytes,
        count: Option<i64>,
        with_values: bool,
        seed: u64,
    },
}

/// A hash value: packed while it is small, a table once it is not.
///
/// A new hash starts [packed](super::packed) and moves to a [`ScanMap`]
/// the first time it holds more than [`packed::MAX_PAIRS`] fields or a
/// field or value longer than [`packed::MAX_ITEM`] bytes, and stays there,
/// as Redis converts a listpack to a hashtable and never back. The layout
/// is visible (HGETALL's order, HSCAN's cursor, OBJECT ENCODING), so it is
/// decided by the log alone, with fixed limits rather than this node's
/// `hash-max-listpack-*` settings, and a snapshot records it.
#[derive(Clone, PartialEq)]
pub struct Hash(Layout);

#[derive(Clone, PartialEq)]
enum Layout {
    Packed(PackedPairs),
    Table(Box<ScanMap<Bytes>>),
}

impl Default for Hash {
    fn default() -> Self {
        Hash(Layout::Packed(PackedPairs::new()))
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Layout::Packed(p) => p.fmt(f),
            Layout::Table(t) => t.fmt(f),
        }
    }
}

impl Hash {
    /// A hash of `pairs`, packed when they fit and `packed` asks for it (a
    /// snapshot says which layout the hash had).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Bytes, Bytes)>, packed: bool) -> Self {
        let mut hash = if packed {
            Hash::default()
        } else {
            Hash(Layout::Table(Box::default()))
        };
        for (f, v) in pairs {
            hash.insert(&f, &v);
        }
        hash
    }

    /// True while the hash is packed (OBJECT ENCODING's `listpack`).
    pub fn is_packed(&self) -> bool {
        matches!(self.0, Layout::Packed(_))
    }

    pub fn len(&self) -> usize {
        match &self.0 {
            Layout::Packed(p) => p.len(),
            Layout::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, field: &Bytes) -> Option<&[u8]> {
        match &self.0 {
            Layout::Packed(p) => p.get(field),
            Layout::Table(t) => t.get(field).map(|v| &v[..]),
        }
    }

    /// The value of `field` as a reply holds it: a reference to a table's
    /// value, a copy of a packed one (at most 64 bytes).
    pub fn get_bytes(&self, field: &Bytes) -> Option<Bytes> {
        match &self.0 {
            Layout::Packed(p) => p.get(field).map(Bytes::copy_from_slice),
            Layout::Table(t) => t.get(field).cloned(),
        }
    }

    pub fn contains(&self, field: &Bytes) -> bool {
        match &self.0 {
            Layout::Packed(p) => p.contains(field),
            Layout::Table(t) => t.contains(field),
        }
    }

    /// Sets `field` to `value`; true when the field is new.
    pub fn insert(&mut self, field: &Bytes, value: &Bytes) -> bool {
        if let Layout::Packed(p) = &mut self.0 {
            let grows = !p.contains(field);
            if PackedPairs::fits(field, value) && (!grows || p.len() < packed::MAX_PAIRS) {
                return p.insert(field, value);
            }
            let mut table = ScanMap::with_capacity(p.len() + 1);
            for (f, v) in p.iter() {
                table.insert(Bytes::copy_from_slice(f), Bytes::copy_from_slice(v));
            }
            self.0 = Layout::Table(Box::new(table));
        }
        let Layout::Table(t) = &mut self.0 else {
            unreachable!("moved to a table above")
        };
        t.insert(field.clone(), value.clone()).is_none()
    }

    /// Removes `field`; true when it was there.
    pub fn remove(&mut self, field: &Bytes) -> bool {
        match &mut self.0 {
            Layout::Packed(p) => p.remove(field),
            Layout::Table(t) => t.remove(field).is_some(),
        }
    }

    /// The pairs, in the hash's order: insertion order while packed, scan
    /// order in a table.
    pub fn iter(&self) -> Box<dyn Iterator<Item = (&[u8], &[u8])> + '_> {
        match &self.0 {
            Layout::Packed(p) => Box::new(p.iter()),
            Layout::Table(t) => Box::new(t.iter().map(|(f, v)| (&f[..], &v[..]))),
        }
    }

    /// The pairs as replies hold them (see [`Hash::get_bytes`]).
    pub fn pairs(&self) -> Box<dyn Iterator<Item = (Bytes, Bytes)> + '_> {
        match &self.0 {
            Layout::Packed(p) => Box::new(
                p.iter()
                    .map(|(f, v)| (Bytes::copy_from_slice(f), Bytes::copy_from_slice(v))),
            ),
            Layout::Table(t) => Box::new(t.iter().map(|(f, v)| (f.clone(), v.clone()))),
        }
    }

    /// One HSCAN step. A packed hash is returned whole with cursor 0, as
    /// Redis returns a listpack.
    pub fn scan(&self, cursor: u64, count: usize) -> (Vec<(Bytes, Bytes)>, u64) {
        match &self.0 {
            Layout::Packed(_) => (self.pairs().collect(), 0),
            Layout::Table(t) => {
                let (visited, next) = t.scan(cursor, count);
                let pairs = visited
                    .into_iter()
                    .map(|(f, v)| (f.clone(), v.clone()))
                    .collect();
                (pairs, next)
            }
        }
    }

    /// The hash's layout, for the code that costs its memory
    /// ([`memory`](super::memory)).
    pub(super) fn layout(&self) -> HashLayout<'_> {
        match &self.0 {
            Layout::Packed(p) => HashLayout::Packed(p),
            Layout::Table(t) => HashLayout::Table(t),
        }
    }
}

/// A hash's layout, for the code that costs its memory.
pub(super) enum HashLayout<'a> {
    Packed(&'a PackedPairs),
    Table(&'a ScanMap<Bytes>),
}

/// The most picks a negative HRANDFIELD count may ask for. Redis has no
/// such bound (it streams the reply until the client goes away); a reply
/// built in memory needs one, and the command layer refuses larger counts.
pub const MAX_RANDOM_REPEATS: u64 = 1 << 24;

/// The hash at `key` for a read: None when absent, WRONGTYPE for another type.
fn hash<'a>(db: &'a Db, key: &Bytes, now: u64) -> Result<Option<&'a Hash>, StateError> {
    match db.get(key, now).map(|e| &e.value) {
        None => Ok(None),
        Some(Value::Hash(h)) => Ok(Some(h)),
        Some(_) => Err(StateError::WrongType),
    }
}

/// Runs `f` on the hash at `key`, modified in place. An absent key is
/// created empty when `create`, else `f` is not called and the result is
/// `absent`. Whatever `f` returns, a hash it left empty is deleted.
fn with_hash<R>(
    db: &mut Db,
    key: &Bytes,
    now: u64,
    create: bool,
    absent: R,
    f: impl FnOnce(&mut Hash) -> Result<R, StateError>,
) -> Result<R, StateError> {
    match db.get(key, now).map(|e| &e.value) {
        Some(Value::Hash(_)) => {}
        Some(_) => return Err(StateError::WrongType),
        None if create => {
            db.purge_if_expired(key, now);
            db.insert(key.clone(), Value::Hash(Hash::default()), None);
        }
        None => {
            db.purge_if_expired(key, now);
            return Ok(absent);
        }
    }
    let result = match db.get_mut(key, now) {
        Some(Value::Hash(h)) => f(h),
        _ => Ok(absent),
    };
    db.remove_if_empty(key);
    result
}

pub fn apply(db: &mut Db, now: u64, op: &HashOp) -> OpResult {
    match op {
        HashOp::Set { key, pairs } => with_hash(db, key, now, true, Outcome::Int(0), |h| {
            let added = pairs.iter().filter(|(f, v)| h.insert(f, v)).count();
            Ok(Outcome::Int(added as i64))
        }),
        HashOp::SetNx { key, field, value } => {
            with_hash(db, key, now, true, Outcome::Int(0), |h| {
                if h.contains(field) {
                    return Ok(Outcome::Int(0));
                }
                h.insert(field, value);
                Ok(Outcome::Int(1))
            })
        }
        HashOp::Del { key, fields } => with_hash(db, key, now, false, Outcome::Int(0), |h| {
            let removed = fields.iter().filter(|f| h.remove(f)).count();
            Ok(Outcome::Int(removed as i64))
        }),
        HashOp::IncrBy { key, field, delta } => {
            with_hash(db, key, now, true, Outcome::Int(0), |h| {
                let current = match h.get(field) {
                    Some(v) => parse_i64(v).ok_or(StateError::HashNotInteger)?,
                    None => 0,
                };
                let next = current.checked_add(*delta).ok_or(StateError::Overflow)?;
                h.insert(field, &format_i64(next));
                Ok(Outcome::Int(next))
            })
        }
        HashOp::IncrByFloat { key, field, delta } => {
            with_hash(db, key, now, true, Outcome::Nil, |h| {
                let text = add_float(h.get(field), *delta, StateError::HashNotFloat)?;
                h.insert(field, &text);
                Ok(Outcome::Bulk(text))
            })
        }
    }
}

pub fn read(db: &Db, now: u64, query: &HashQuery) -> OpResult {
    match query {
        HashQuery::Get { key, field } => Ok(Outcome::bulk_or_nil(
            hash(db, key, now)?.and_then(|h| h.get_bytes(field)),
        )),
        HashQuery::MGet { key, fields } => {
            let h = hash(db, key, now)?;
            Ok(Outcome::Array(
                fields
                    .iter()
                    .map(|f| Outcome::bulk_or_nil(h.and_then(|h| h.get_bytes(f))))
                    .collect(),
            ))
        }
        HashQuery::GetAll { key } => Ok(Outcome::Map(
            hash(db, key, now)?
                .map(|h| {
                    h.pairs()
                        .map(|(f, v)| (Outcome::Bulk(f), Outcome::Bulk(v)))
                        .collect()
                })
                .unwrap_or_default(),
        )),
        HashQuery::Exists { key, field } => Ok(Outcome::bool(
            hash(db, key, now)?.is_some_and(|h| h.contains(field)),
        )),
        HashQuery::Len { key } => Ok(Outcome::Int(
            hash(db, key, now)?.map_or(0, |h| h.len()) as i64
        )),
        HashQuery::Keys { key } => Ok(Outcome::Array(
            hash(db, key, now)?
                .map(|h| h.pairs().map(|(f, _)| Outcome::Bulk(f)).collect())
                .unwrap_or_default(),
        )),
        HashQuery::Vals { key } => Ok(Outcome::Array(
            hash(db, key, now)?
                .map(|h| h.pairs().map(|(_, v)| Outcome::Bulk(v)).collect())
                .unwrap_or_default(),
        )),
        HashQuery::StrLen { key, field } => Ok(Outcome::Int(
            hash(db, key, now)?
                .and_then(|h| h.get(field))
                .map_or(0, |v| v.len()) as i64,
        )),
        HashQuery::Scan {
            key,
            cursor,
            pattern,
            count,
            novalues,
        } => {
            let Some(h) = hash(db, key, now)? else {
                return Ok(scan_reply(0, Vec::new()));
            };
            let (visited, next) = h.scan(*cursor, *count);
            let mut out = Vec::with_capacity(visited.len() * 2);
            for (f, v) in visited {
                if pattern.as_ref().is_some_and(|p| !glob::matches(p, &f)) {
                    continue;
                }
                out.push(Outcome::Bulk(f));
                if !novalues {
                    out.push(Outcome::Bulk(v));
                }
            }
            Ok(scan_reply(next, out))
        }
        HashQuery::RandField {
            key,
            count,
            with_values,
            seed,
        } => {
            let h = hash(db, key, now)?;
            Ok(rand_field(h, *count, *with_values, *seed))
        }
    }
}

/// Positions (in `0..len`, `len` > 0) picked by `seed` under
/// HRANDFIELD's and ZRANDMEMBER's count rules: a negative count picks
/// exactly `-count` (at most [`MAX_RANDOM_REPEATS`]) with repeats, a
/// positive one distinct positions in random order, or all of them in
/// order when it is at least `len`.
pub(super) fn random_picks(len: usize, count: i64, seed: u64) -> Vec<usize> {
    let mut rng = SeededRng::new(seed);
    if count < 0 {
        let n = count.unsigned_abs().min(MAX_RANDOM_REPEATS) as usize;
        return (0..n).map(|_| rng.below(len)).collect();
    }
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    if n >= len {
        return (0..len).collect();
    }
    // A partial Fisher-Yates shuffle: the first `n` slots.
    let mut order: Vec<usize> = (0..len).collect();
    for i in 0..n {
        let j = i + rng.below(len - i);
        order.swap(i, j);
    }
    order.truncate(n);
    order
}

/// HRANDFIELD's picks. Distinct picks come in random order; asking for at
/// least the whole hash returns it in scan order, as Redis returns a hash
/// it does not need to sample.
fn rand_field(h: Option<&Hash>, count: Option<i64>, with_values: bool, seed: u64) -> Outcome {
    let Some(count) = count else {
        return match h {
            Some(h) if !h.is_empty() => {
                let n = SeededRng::new(seed).below(h.len());
                Outcome::bulk_or_nil(h.pairs().nth(n).map(|(f, _)| f))
            }
            _ => Outcome::Nil,
        };
    };
    let Some(h) = h.filter(|h| !h.is_empty() && count != 0) else {
        return Outcome::Array(Vec::new());
    };
    let entries: Vec<(Bytes, Bytes)> = h.pairs().collect();
    let picks = random_picks(entries.len(), count, seed);
    let field = |i: usize| Outcome::Bulk(entries[i].0.clone());
    if with_values {
        Outcome::Pairs(
            picks
                .into_iter()
                .map(|i| (field(i), Outcome::Bulk(entries[i].1.clone())))
                .collect(),
        )
    } else {
        Outcome::Array(picks.into_iter().map(field).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn big_hash(n: usize) -> Db {
        let mut db = Db::new();
        let pairs = (0..n)
            .map(|i| (b(&format!("field:{i}")), b(&i.to_string())))
            .collect();
        let op = HashOp::Set { key: b("h"), pairs };
        assert_eq!(apply(&mut db, 0, &op), Ok(Outcome::Int(n as i64)));
        db
    }

    fn strings(outcome: &Outcome) -> Vec<Bytes> {
        let items = match outcome {
            Outcome::Array(items) => items.clone(),
            Outcome::Pairs(pairs) => pairs
                .iter()
                .flat_map(|(f, v)| [f.clone(), v.clone()])
                .collect(),
            other => panic!("not a list: {other:?}"),
        };
        items
            .into_iter()
            .map(|o| match o {
                Outcome::Bulk(b) => b,
                other => panic!("not a bulk: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn hscan_visits_every_field_once() {
        let db = big_hash(1500);
        let mut seen = HashSet::new();
        let mut cursor = 0;
        loop {
            let query = HashQuery::Scan {
                key: b("h"),
                cursor,
                pattern: Some(b("field:1*")),
                count: 9,
                novalues: false,
            };
            let Ok(Outcome::Array(reply)) = read(&db, 0, &query) else {
                panic!("not an array");
            };
            let items = strings(&reply[1]);
            for pair in items.chunks(2) {
                let i: usize = std::str::from_utf8(&pair[0][6..]).unwrap().parse().unwrap();
                assert_eq!(pair[1], b(&i.to_string()), "the value follows its field");
                assert!(seen.insert(i), "field {i} twice");
            }
            let next = strings(&Outcome::Array(vec![reply[0].clone()]))[0].clone();
            cursor = std::str::from_utf8(&next).unwrap().parse().unwrap();
            if cursor == 0 {
                break;
            }
        }
        let expected: HashSet<usize> = (0..1500)
            .filter(|i| i.to_string().starts_with('1'))
            .collect();
        assert_eq!(seen, expected);
    }

    fn rand(db: &Db, count: Option<i64>, with_values: bool, seed: u64) -> Outcome {
        let query = HashQuery::RandField {
            key: b("h"),
            count,
            with_values,
            seed,
        };
        read(db, 0, &query).unwrap()
    }

    #[test]
    fn hrandfield_picks_follow_the_count_rules() {
        let db = big_hash(50);
        for seed in 0..50 {
            // A positive count below the size: distinct fields.
            let picks = strings(&rand(&db, Some(20), false, seed));
            assert_eq!(picks.len(), 20);
            assert_eq!(picks.iter().collect::<HashSet<_>>().len(), 20);
            // A negative count: exactly that many, repeats allowed.
            let picks = strings(&rand(&db, Some(-120), true, seed));
            assert_eq!(picks.len(), 240);
            for pair in picks.chunks(2) {
                let i: usize = std::str::from_utf8(&pair[0][6..]).unwrap().parse().unwrap();
                assert_eq!(pair[1], b(&i.to_string()));
            }
            // At least the size: the whole hash.
            let picks = strings(&rand(&db, Some(60), false, seed));
            assert_eq!(picks.iter().collect::<HashSet<_>>().len(), 50);
            // The seed decides.
            assert_eq!(
                rand(&db, Some(7), true, seed),
                rand(&db, Some(7), true, seed)
            );
            assert!(matches!(rand(&db, None, false, seed), Outcome::Bulk(_)));
        }
        let firsts: HashSet<_> = (0..100)
            .map(|seed| strings(&rand(&db, Some(3), false, seed))[0].clone())
            .collect();
        assert!(firsts.len() > 20, "picks are spread: {}", firsts.len());
    }

    fn layout_of(state: &crate::state::State, key: &str) -> (bool, Vec<Bytes>) {
        let Some(Value::Hash(h)) = state.db().get(&b(key), 0).map(|e| &e.value) else {
            panic!("no hash at {key}");
        };
        (h.is_packed(), h.pairs().map(|(f, _)| f).collect())
    }

    #[test]
    fn a_hash_is_packed_until_it_outgrows_the_limits_and_a_snapshot_keeps_its_layout() {
        use crate::state::{Op, State};
        let mut state = State::new();
        let set =
            |key: &str, pairs: Vec<(Bytes, Bytes)>| Op::Hash(HashOp::Set { key: b(key), pairs });
        // 128 fields stay packed, in insertion order; the 129th moves the
        // hash to a table.
        let fields: Vec<Bytes> = (0..129).rev().map(|i| b(&format!("f{i}"))).collect();
        let pairs = |n: usize| fields[..n].iter().map(|f| (f.clone(), b("v"))).collect();
        state
            .apply(1, 0, &set("many", pairs(packed::MAX_PAIRS)))
            .unwrap();
        assert_eq!(layout_of(&state, "many"), (true, fields[..128].to_vec()));
        state.apply(2, 0, &set("many", pairs(129))).unwrap();
        assert!(!layout_of(&state, "many").0);
        // A value of 65 bytes moves it too, and it stays a table once the
        // long value is gone.
        state
            .apply(3, 0, &set("long", vec![(b("a"), b("1"))]))
            .unwrap();
        let long = Bytes::from(vec![b'x'; packed::MAX_ITEM + 1]);
        state
            .apply(4, 0, &set("long", vec![(b("b"), long)]))
            .unwrap();
        let del = Op::Hash(HashOp::Del {
            key: b("long"),
            fields: vec![b("b")],
        });
        state.apply(5, 0, &del).unwrap();
        assert!(!layout_of(&state, "long").0);
        state
            .apply(
                6,
                0,
                &set("small", vec![(b("z"), b("1")), (b("a"), b("2"))]),
            )
            .unwrap();
        // A snapshot keeps each layout, and a packed hash's order.
        let restored = State::decode_snapshot(&state.encode_snapshot()).unwrap();
        assert_eq!(restored, state);
        assert_eq!(restored.digest(), state.digest());
        assert_eq!(layout_of(&restored, "small"), (true, vec![b("z"), b("a")]));
        assert!(!layout_of(&restored, "long").0);
        assert!(!layout_of(&restored, "many").0);
    }

    #[test]
    fn a_failed_write_leaves_no_empty_hash() {
        let mut db = Db::new();
        let op = HashOp::IncrByFloat {
            key: b("h"),
            field: b("f"),
            delta: f64::MAX,
        };
        assert!(apply(&mut db, 0, &op).is_ok());
        assert_eq!(apply(&mut db, 0, &op), Err(StateError::NanOrInfinity));
        let del = HashOp::Del {
            key: b("h"),
            fields: vec![b("f")],
        };
        assert_eq!(apply(&mut db, 0, &del), Ok(Outcome::Int(1)));
        assert!(db.is_empty());
        let set = HashOp::Set {
            key: b("h"),
            pairs: Vec::new(),
        };
        assert_eq!(apply(&mut db, 0, &set), Ok(Outcome::Int(0)));
        assert!(db.is_empty(), "an empty HSET creates nothing");
    }
}
