//! Keys and expiry: DEL, EXISTS, TYPE, KEYS, SCAN, RENAME, COPY, the EXPIRE
//! and TTL families, PERSIST, RANDOMKEY, DBSIZE and FLUSHALL.
//!
//! Deadlines are absolute unix milliseconds. A relative EXPIRE travels in the
//! op as a duration and becomes absolute here, against the entry's time, so
//! every replica computes the same deadline (and the same overflow error).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{Db, Value};
use super::memory;
use super::rdb::{self, RestoredValue};
use super::sort::{self, Sort};
use super::{glob, OpResult, Outcome, StateError};

/// The NX / XX / GT / LT options of the EXPIRE family. The command layer
/// rejects the combinations Redis rejects; XX may go with GT or LT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpireFlags {
    /// Only when the key has no deadline.
    pub nx: bool,
    /// Only when the key has a deadline.
    pub xx: bool,
    /// Only when the new deadline is later (no deadline counts as infinite).
    pub gt: bool,
    /// Only when the new deadline is earlier (no deadline counts as infinite).
    pub lt: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyOp {
    /// DEL and UNLINK. Outcome: the number of keys removed.
    Del { keys: Vec<Bytes> },
    /// RENAME (outcome OK) and RENAMENX (outcome 1/0). The deadline moves
    /// with the value. Error: no such key.
    Rename { from: Bytes, to: Bytes, nx: bool },
    /// COPY within database 0, deadline included. Outcome: 1 if copied.
    /// The command layer rejects `from == to`.
    Copy {
        from: Bytes,
        to: Bytes,
        replace: bool,
    },
    /// EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT. `when` is in milliseconds:
    /// after the entry's time when `relative`, else a unix time. A deadline
    /// at or before the entry's time deletes the key. Outcome: 1/0.
    Expire {
        key: Bytes,
        when: i64,
        relative: bool,
        flags: ExpireFlags,
    },
    /// Outcome: 1 if a deadline was removed, else 0.
    Persist { key: Bytes },
    /// FLUSHDB and FLUSHALL. Outcome: OK.
    FlushAll,
    /// SORT ... STORE destination: see [`super::sort::store`].
    SortStore { sort: Sort, destination: Bytes },
    /// RESTORE: stores a value the command layer decoded from a DUMP
    /// payload. `ttl_ms` 0 is no deadline; otherwise it is after the
    /// entry's time, or a unix time when `absttl`. A deadline already
    /// past stores nothing (and deletes the key under `replace`), as Redis
    /// does. Outcome: OK. Error: BUSYKEY when the key exists and not
    /// `replace`.
    Restore {
        key: Bytes,
        value: RestoredValue,
        ttl_ms: i64,
        absttl: bool,
        replace: bool,
        access: RestoredAccess,
    },
    /// FLUSHDB: the current database alone (`FlushAll` empties every
    /// database). Outcome: OK.
    FlushDb,
    /// MOVE: the key goes to database `db` unless it exists there.
    /// Outcome: 1 if it moved. Error: `db` is the current database.
    Move { key: Bytes, db: u32 },
    /// SWAPDB. Outcome: OK.
    SwapDb { a: u32, b: u32 },
    /// COPY ... DB: as `Copy`, into database `db`.
    CopyToDb {
        from: Bytes,
        to: Bytes,
        db: u32,
        replace: bool,
    },
}

/// RESTORE's IDLETIME or FREQ: the access record the key starts with on
/// each node (see [`super::memory::Access::restore`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoredAccess {
    /// Accessed now, as any new key.
    #[default]
    Fresh,
    /// Last accessed this many seconds ago (under an LRU policy).
    IdleSeconds(u64),
    /// This LFU counter (under an LFU policy).
    Freq(u8),
}

/// How TTL-style queries report the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtlForm {
    /// Milliseconds (PTTL, PEXPIRETIME) rather than rounded seconds.
    pub ms: bool,
    /// The unix time of the deadline (EXPIRETIME) rather than what is left.
    pub absolute: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KeyQuery {
    /// EXISTS and TOUCH: live keys among `keys`, repeats counted.
    Exists { keys: Vec<Bytes> },
    /// Outcome: a status, "none" when absent.
    Type { key: Bytes },
    /// Live keys matching a glob, in scan order.
    Keys { pattern: Bytes },
    /// One SCAN step: `[next cursor, [keys]]`.
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        type_name: Option<Bytes>,
    },
    /// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 absent, -1 no deadline.
    Ttl { key: Bytes, form: TtlForm },
    /// A live key picked with the caller's `seed`; nil when there is none.
    RandomKey { seed: u64 },
    /// Keys stored, counting expired ones the log has not deleted yet.
    DbSize,
    /// OBJECT ENCODING, REFCOUNT, IDLETIME, FREQ: nil when absent.
    Object { key: Bytes, field: ObjectField },
    /// MEMORY USAGE: an estimate of the bytes the key and its value take,
    /// nil when absent.
    MemoryUsage { key: Bytes, samples: usize },
    /// SORT without STORE, and SORT_RO: see [`super::sort::read`].
    Sort(Sort),
    /// DUMP: the value in Redis's RDB form ([`super::rdb::encode`]), nil
    /// when absent.
    Dump { key: Bytes },
    /// A RESTORE whose TTL or payload the command layer refused: BUSYKEY
    /// if the key exists and not `replace` (Redis looks at the key
    /// first), else `error`, the refusal's full text.
    RestoreRefused {
        key: Bytes,
        replace: bool,
        error: String,
    },
}

/// What OBJECT reports of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectField {
    /// The encoding Redis would use for the value under these limits.
    Encoding(EncodingLimits),
    /// 2147483647 for the small integers Redis shares, else 1.
    RefCount,
    /// Seconds since the last access, as this node recorded it.
    IdleTime,
    /// The LFU access counter, as this node recorded it (under an LFU
    /// `maxmemory-policy`).
    Freq,
}

/// The sizes up to which Redis keeps a value in a compact encoding: its
/// `hash-max-listpack-*`, `set-max-intset-entries` and
/// `zset-max-listpack-*` parameters. concord stores every value one way;
/// OBJECT ENCODING answers what Redis would have chosen, so tools and tests
/// that look at it see the familiar names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncodingLimits {
    pub hash_entries: u64,
    pub hash_value: u64,
    pub set_intset_entries: u64,
    pub zset_entries: u64,
    pub zset_value: u64,
}

impl Default for EncodingLimits {
    /// Redis 7.0's defaults.
    fn default() -> Self {
        EncodingLimits {
            hash_entries: 128,
            hash_value: 64,
            set_intset_entries: 512,
            zset_entries: 128,
            zset_value: 64,
        }
    }
}

/// Strings of at most this many bytes Redis stores with their header
/// (`embstr`); longer ones are `raw`.
const EMBSTR_MAX: usize = 44;

/// Redis shares one object for each integer below this (`OBJ_SHARED_INTEGERS`).
const SHARED_INTEGERS: i64 = 10_000;

/// The reference count Redis reports for a shared object.
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

/// The integer a string holds, if Redis would store it as one: the
/// canonical decimal form of an i64, at most 20 bytes.
pub(super) fn as_stored_integer(s: &[u8]) -> Option<i64> {
    if s.len() > 20 {
        return None;
    }
    let n: i64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    (n.to_string().as_bytes() == s).then_some(n)
}

/// The encoding name Redis 7.0 would report for `value`.
pub fn encoding(value: &Value, limits: &EncodingLimits) -> &'static str {
    match value {
        Value::String(s) if as_stored_integer(s).is_some() => "int",
        Value::String(s) if s.len() <= EMBSTR_MAX => "embstr",
        Value::String(_) => "raw",
        Value::Hash(h) => {
            // A hash in a table stays there, as Redis's never converts back.
            let fits = h.is_packed()
                && h.len() as u64 <= limits.hash_entries
                && h.iter()
                    .all(|(f, v)| f.len().max(v.len()) as u64 <= limits.hash_value);
            if fits {
                "listpack"
            } else {
                "hashtable"
            }
        }
        Value::Set(s) => {
            let intset = s.len() as u64 <= limits.set_intset_entries
                && s.keys().all(|m| as_stored_integer(m).is_some());
            if intset {
                "intset"
            } else {
                "hashtable"
            }
        }
        Value::List(_) => "quicklist",
        Value::Stream(_) => "stream",
        Value::ZSet(z) => {
            let fits = z.len() as u64 <= limits.zset_entries
                && z.iter().all(|(m, _)| m.len() as u64 <= limits.zset_value);
            if fits {
                "listpack"
            } else {
                "skiplist"
            }
        }
    }
}

pub fn apply(db: &mut Db, now: u64, op: &KeyOp) -> OpResult {
    match op {
        KeyOp::Del { keys } => Ok(Outcome::Int(
            keys.iter()
                .filter(|k| {
                    db.purge_if_expired(k, now);
                    db.remove(k).is_some()
                })
                .count() as i64,
        )),
        KeyOp::Rename { from, to, nx } => {
            if db.get(from, now).is_none() {
                return Err(StateError::NoSuchKey);
            }
            if from == to {
                return Ok(if *nx { Outcome::Int(0) } else { Outcome::Ok });
            }
            if *nx && db.get(to, now).is_some() {
                return Ok(Outcome::Int(0));
            }
            db.rename(from, to, now);
            Ok(if *nx { Outcome::Int(1) } else { Outcome::Ok })
        }
        KeyOp::Copy { from, to, replace } => {
            let Some(entry) = db.get(from, now) else {
                return Ok(Outcome::Int(0));
            };
            let (value, deadline) = (entry.value.clone(), entry.expires_at());
            if db.get(to, now).is_some() && !replace {
                return Ok(Outcome::Int(0));
            }
            db.insert(to.clone(), value, deadline);
            Ok(Outcome::Int(1))
        }
        KeyOp::Expire {
            key,
            when,
            relative,
            flags,
        } => {
            let base = if *relative { now as i128 } else { 0 };
            let when = *when as i128 + base;
            if when > i64::MAX as i128 {
                return Err(StateError::InvalidExpireTime);
            }
            let Some(entry) = db.get(key, now) else {
                db.purge_if_expired(key, now);
                return Ok(Outcome::Int(0));
            };
            let current = entry.expires_at().map(|at| at as i128);
            let refused = (flags.nx && current.is_some())
                || (flags.xx && current.is_none())
                || (flags.gt && current.is_none_or(|at| when <= at))
                || (flags.lt && current.is_some_and(|at| when >= at));
            if refused {
                return Ok(Outcome::Int(0));
            }
            if when <= now as i128 {
                db.remove(key);
            } else {
                db.set_deadline(key, Some(when as u64));
            }
            Ok(Outcome::Int(1))
        }
        KeyOp::Persist { key } => {
            let had_deadline = db.get(key, now).is_some_and(|e| e.expires_at().is_some());
            if had_deadline {
                db.set_deadline(key, None);
            } else {
                db.purge_if_expired(key, now);
            }
            Ok(Outcome::bool(had_deadline))
        }
        KeyOp::FlushAll | KeyOp::FlushDb => {
            db.clear();
            Ok(Outcome::Ok)
        }
        // Across databases: applied by the state (`State::apply_op`).
        KeyOp::Move { .. } | KeyOp::SwapDb { .. } | KeyOp::CopyToDb { .. } => {
            unreachable!("applied by the state")
        }
        KeyOp::SortStore { sort, destination } => sort::store(db, now, sort, destination),
        KeyOp::Restore {
            key,
            value,
            ttl_ms,
            absttl,
            replace,
            access,
        } => {
            let exists = db.live(key, now).is_some();
            if exists && !replace {
                return Err(StateError::BusyKey);
            }
            if exists {
                db.remove(key);
            }
            let deadline = match (*ttl_ms, *absttl) {
                (0, _) => None,
                (at, true) => Some(at),
                (ttl, false) => Some((now as i64).saturating_add(ttl)),
            };
            if deadline.is_some_and(|at| at <= now as i64) {
                return Ok(Outcome::Ok);
            }
            db.insert(
                key.clone(),
                value.clone().into_value(),
                deadline.map(|at| at as u64),
            );
            if let Some(entry) = db.peek(key, now) {
                entry.access().restore(db.access_mode(), now, *access);
            }
            Ok(Outcome::Ok)
        }
    }
}

pub fn read(db: &Db, now: u64, query: &KeyQuery) -> OpResult {
    match query {
        KeyQuery::Exists { keys } => Ok(Outcome::Int(
            keys.iter().filter(|k| db.get(k, now).is_some()).count() as i64,
        )),
        KeyQuery::Type { key } => Ok(Outcome::Status(
            db.get(key, now)
                .map_or("none", |e| e.value.type_name())
                .to_owned(),
        )),
        KeyQuery::Keys { pattern } => {
            let all = pattern.as_ref() == b"*";
            Ok(Outcome::Array(
                db.iter()
                    .filter(|(k, e)| !e.is_expired(now) && (all || glob::matches(pattern, k)))
                    .map(|(k, _)| Outcome::Bulk(k.clone()))
                    .collect(),
            ))
        }
        KeyQuery::Scan {
            cursor,
            pattern,
            count,
            type_name,
        } => {
            let (visited, next) = db.scan(*cursor, *count, now);
            let keys = visited
                .into_iter()
                .filter(|(k, e)| {
                    pattern.as_ref().is_none_or(|p| glob::matches(p, k))
                        && type_name
                            .as_ref()
                            .is_none_or(|t| t.eq_ignore_ascii_case(e.value.type_name().as_bytes()))
                })
                .map(|(k, _)| Outcome::Bulk(k.clone()))
                .collect();
            Ok(scan_reply(next, keys))
        }
        KeyQuery::Ttl { key, form } => {
            let Some(entry) = db.get(key, now) else {
                return Ok(Outcome::Int(-2));
            };
            let Some(at) = entry.expires_at() else {
                return Ok(Outcome::Int(-1));
            };
            let ms = if form.absolute {
                at as i64
            } else {
                at.saturating_sub(now) as i64
            };
            Ok(Outcome::Int(if form.ms { ms } else { (ms + 500) / 1000 }))
        }
        KeyQuery::RandomKey { seed } => {
            Ok(Outcome::bulk_or_nil(db.random_key(*seed, now).cloned()))
        }
        KeyQuery::DbSize => Ok(Outcome::Int(db.len() as i64)),
        KeyQuery::Object { key, field } => {
            let Some(entry) = db.peek(key, now) else {
                return Ok(Outcome::Nil);
            };
            Ok(match field {
                ObjectField::Encoding(limits) => Outcome::Bulk(Bytes::from_static(
                    encoding(&entry.value, limits).as_bytes(),
                )),
                ObjectField::RefCount => Outcome::Int(match &entry.value {
                    Value::String(s)
                        if as_stored_integer(s)
                            .is_some_and(|n| (0..SHARED_INTEGERS).contains(&n)) =>
                    {
                        SHARED_REFCOUNT
                    }
                    _ => 1,
                }),
                ObjectField::IdleTime => Outcome::Int(entry.access().idle_seconds(now) as i64),
                ObjectField::Freq => {
                    Outcome::Int(i64::from(entry.access().frequency(db.access_mode(), now)))
                }
            })
        }
        KeyQuery::MemoryUsage { key, samples } => Ok(match db.peek(key, now) {
            Some(entry) => Outcome::Int(memory::memory_usage(key, &entry.value, *samples) as i64),
            None => Outcome::Nil,
        }),
        KeyQuery::Sort(query) => sort::read(db, now, query),
        KeyQuery::Dump { key } => match db.get(key, now) {
            Some(entry) => rdb::encode(&entry.value)
                .map(|payload| Outcome::Bulk(Bytes::from(payload)))
                .map_err(|rdb::CannotDump(kind)| StateError::CannotDump(kind.to_owned())),
            None => Ok(Outcome::Nil),
        },
        KeyQuery::RestoreRefused {
            key,
            replace,
            error,
        } => Err(if !replace && db.peek(key, now).is_some() {
            StateError::BusyKey
        } else {
            StateError::Argument(error.clone())
        }),
    }
}

/// The two-element reply of every SCAN-style command: the next cursor as a
/// bulk string, then the elements.
pub(crate) fn scan_reply(next: u64, elements: Vec<Outcome>) -> Outcome {
    Outcome::Array(vec![
        Outcome::Bulk(Bytes::from(next.to_string())),
        Outcome::Array(elements),
    ])
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::state::db::ScanMap;
    use crate::state::hashes::Hash;
    use crate::state::memory::AccessMode;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn encodings_follow_redis_thresholds() {
        let limits = EncodingLimits::default();
        let string = |s: &str| encoding(&Value::String(b(s)), &limits);
        assert_eq!(string("12345"), "int");
        assert_eq!(string("012"), "embstr");
        assert_eq!(string(&"x".repeat(44)), "embstr");
        assert_eq!(string(&"x".repeat(45)), "raw");
        let mut hash = Hash::default();
        hash.insert(&b("f"), &b("v"));
        let hash_value = Value::Hash(hash.clone());
        assert_eq!(encoding(&hash_value, &limits), "listpack");
        let small = EncodingLimits {
            hash_value: 0,
            ..limits
        };
        assert_eq!(encoding(&hash_value, &small), "hashtable");
        // Past the packed limits the hash moves to a table for good.
        hash.insert(&b("long"), &Bytes::from(vec![b'x'; 65]));
        hash.remove(&b("long"));
        assert_eq!(encoding(&Value::Hash(hash), &limits), "hashtable");
        let mut set = ScanMap::new();
        set.insert(b("1"), ());
        set.insert(b("2"), ());
        assert_eq!(
            encoding(&Value::Set(Box::new(set.clone())), &limits),
            "intset"
        );
        set.insert(b("a"), ());
        assert_eq!(encoding(&Value::Set(Box::new(set)), &limits), "hashtable");
        let mut z = super::super::zsets::ZSet::default();
        z.insert(b("m"), 1.0);
        assert_eq!(
            encoding(&Value::ZSet(Box::new(z.clone())), &limits),
            "listpack"
        );
        let tiny = EncodingLimits {
            zset_entries: 0,
            ..limits
        };
        assert_eq!(encoding(&Value::ZSet(Box::new(z)), &tiny), "skiplist");
        assert_eq!(encoding(&Value::List(Box::default()), &limits), "quicklist");
    }

    /// 3000 keys: every third a hash, every seventh expired at time 10.
    fn big_db() -> Db {
        let mut db = Db::new();
        for i in 0..3000usize {
            let key = b(&format!("key:{i}"));
            let value = if i.is_multiple_of(3) {
                let mut h = Hash::default();
                h.insert(&b("f"), &b("v"));
                Value::Hash(h)
            } else {
                Value::String(b("v"))
            };
            let deadline = if i.is_multiple_of(7) {
                Some(10)
            } else {
                Some(1000)
            };
            db.insert(key, value, deadline.filter(|_| i.is_multiple_of(2)));
        }
        db
    }

    /// Runs a whole SCAN; fails on a repeated key or a cursor that does not
    /// move forward.
    fn full_scan(
        db: &Db,
        now: u64,
        count: usize,
        pattern: Option<&str>,
        ty: Option<&str>,
    ) -> HashSet<Bytes> {
        let mut seen = HashSet::new();
        let mut cursor = 0;
        loop {
            let query = KeyQuery::Scan {
                cursor,
                pattern: pattern.map(b),
                count,
                type_name: ty.map(b),
            };
            let Ok(Outcome::Array(reply)) = read(db, now, &query) else {
                panic!("scan reply is not an array");
            };
            let [Outcome::Bulk(next), Outcome::Array(keys)] = &reply[..] else {
                panic!("scan reply has the wrong shape: {reply:?}");
            };
            for key in keys {
                let Outcome::Bulk(key) = key else {
                    panic!("a key is not a bulk string")
                };
                assert!(seen.insert(key.clone()), "{key:?} returned twice");
            }
            let next: u64 = std::str::from_utf8(next).unwrap().parse().unwrap();
            if next == 0 {
                return seen;
            }
            assert!(next > cursor, "the cursor went back");
            cursor = next;
        }
    }

    #[test]
    fn scan_with_match_and_type_returns_every_key_once() {
        let db = big_db();
        let now = 10;
        let live = |i: &usize| !i.is_multiple_of(14);
        let expect = |filter: &dyn Fn(usize) -> bool| -> HashSet<Bytes> {
            (0..3000)
                .filter(live)
                .filter(|i| filter(*i))
                .map(|i| b(&format!("key:{i}")))
                .collect()
        };
        for count in [1, 7, 100, 10_000] {
            assert_eq!(full_scan(&db, now, count, None, None), expect(&|_| true));
            assert_eq!(
                full_scan(&db, now, count, Some("key:1*"), None),
                expect(&|i| i.to_string().starts_with('1'))
            );
            assert_eq!(
                full_scan(&db, now, count, None, Some("hash")),
                expect(&|i| i.is_multiple_of(3))
            );
            assert_eq!(
                full_scan(&db, now, count, Some("key:*5"), Some("string")),
                expect(&|i| !i.is_multiple_of(3) && i % 10 == 5)
            );
        }
        // Before time 10 the expired keys are still there.
        assert_eq!(full_scan(&db, 9, 13, None, None).len(), 3000);
    }

    #[test]
    fn keys_skips_expired_entries_and_dbsize_counts_them() {
        let db = big_db();
        let Ok(Outcome::Array(keys)) = read(&db, 10, &KeyQuery::Keys { pattern: b("*") }) else {
            panic!("keys reply is not an array");
        };
        assert_eq!(keys.len(), 3000 - 215);
        assert_eq!(read(&db, 10, &KeyQuery::DbSize), Ok(Outcome::Int(3000)));
    }

    #[test]
    fn random_key_is_seeded_and_never_expired() {
        let db = big_db();
        let mut picks = HashSet::new();
        for seed in 0..200 {
            let query = KeyQuery::RandomKey { seed };
            let first = read(&db, 10, &query).unwrap();
            assert_eq!(read(&db, 10, &query).unwrap(), first, "same seed, same key");
            let Outcome::Bulk(key) = first else {
                panic!("no key")
            };
            let i: usize = std::str::from_utf8(&key[4..]).unwrap().parse().unwrap();
            assert!(!i.is_multiple_of(14), "{i} is expired");
            picks.insert(i);
        }
        assert!(picks.len() > 150, "picks are spread: {}", picks.len());
    }

    #[test]
    fn rename_and_expire_keep_the_deadline_index_right() {
        let mut db = Db::new();
        db.insert(b("a"), Value::String(b("1")), Some(100));
        let rename = KeyOp::Rename {
            from: b("a"),
            to: b("b"),
            nx: false,
        };
        assert_eq!(apply(&mut db, 0, &rename), Ok(Outcome::Ok));
        assert_eq!(db.expired_keys(100, 10), vec![b("b")]);
        let expire = KeyOp::Expire {
            key: b("b"),
            when: 50,
            relative: true,
            flags: ExpireFlags::default(),
        };
        assert_eq!(apply(&mut db, 0, &expire), Ok(Outcome::Int(1)));
        assert_eq!(db.expired_keys(100, 10), vec![b("b")]);
        assert_eq!(db.next_deadline(), Some(50));
        assert_eq!(db.volatile_len(), 1);
        let persist = KeyOp::Persist { key: b("b") };
        assert_eq!(apply(&mut db, 0, &persist), Ok(Outcome::Int(1)));
        assert_eq!(db.volatile_len(), 0);
    }

    #[test]
    fn restore_honours_idletime_and_freq_under_their_policy() {
        let restore = |key: &str, access| KeyOp::Restore {
            key: b(key),
            value: RestoredValue::String(b("v")),
            ttl_ms: 0,
            absttl: false,
            replace: false,
            access,
        };
        let now = 10_000_000;
        let mut db = Db::new();
        db.set_clock(now);
        let idle = restore("idle", RestoredAccess::IdleSeconds(100));
        assert_eq!(apply(&mut db, now, &idle), Ok(Outcome::Ok));
        let fresh = restore("fresh", RestoredAccess::Freq(200));
        assert_eq!(apply(&mut db, now, &fresh), Ok(Outcome::Ok));
        let seconds = |db: &Db, k: &str| {
            db.peek(&b(k), now + 2000)
                .unwrap()
                .access()
                .idle_seconds(now + 2000)
        };
        assert_eq!(seconds(&db, "idle"), 102);
        // FREQ is ignored under LRU, as in Redis.
        assert_eq!(seconds(&db, "fresh"), 2);
        assert_eq!(apply(&mut db, now, &idle), Err(StateError::BusyKey));

        let mut db = Db::new();
        let lfu = AccessMode {
            lfu: true,
            ..AccessMode::default()
        };
        db.set_access_mode(lfu);
        db.set_clock(now);
        assert_eq!(apply(&mut db, now, &fresh), Ok(Outcome::Ok));
        assert_eq!(apply(&mut db, now, &idle), Ok(Outcome::Ok));
        let freq = |db: &Db, k: &str| db.peek(&b(k), now).unwrap().access().frequency(&lfu, now);
        assert_eq!(freq(&db, "fresh"), 200);
        assert_eq!(freq(&db, "idle"), memory::LFU_INIT);
    }
}
