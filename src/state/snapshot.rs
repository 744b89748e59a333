//! Snapshot encoding of the state: a format version byte, then postcard.
//!
//! The encoder walks the live maps (no intermediate copy of the keyspace);
//! the decoder rebuilds the maps and the deadline index, so a restored state
//! is equal to the one that was encoded, field for field.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use super::acl::Acl;
use super::db::{Db, ScanMap, Value};
use super::lists::List;
use super::scripts::ScriptCache;
use super::streams::Stream;
use super::zsets::ZSet;
use super::{Coord, State};

/// Bumped whenever the encoding changes; a node refuses snapshots of a
/// version it does not know rather than misreading them.
/// Format 2 appends the coordination primitives to format 1's body; a
/// format 1 snapshot restores with none.
/// Format 3 appends the Lua script cache, the clients waiting on streams and
/// the later primitives' state (keyspace notification flags, BZMPOP counts)
/// after the primitives; formats 1 and 2 restore with none of them. (Format 2
/// also reads stream values: their variant comes last in the value enum.)
/// Format 4 appends the ACL user table after format 3's body; formats 1 to
/// 3 restore with the first user table (`default` alone, `on nopass ~* &*
/// +@all`, never seeded).
pub const SNAPSHOT_FORMAT: u8 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is empty")]
    Empty,
    #[error("snapshot format {0} is not supported (this build reads {SNAPSHOT_FORMAT})")]
    UnknownFormat(u8),
    #[error("snapshot cannot be decoded: {0}")]
    Decode(#[from] postcard::Error),
}

#[derive(Serialize, Deserialize)]
enum StoredValue<S, H, M, L, Z, X> {
    String(S),
    Hash(H),
    Set(M),
    List(L),
    /// Member/score pairs.
    ZSet(Z),
    Stream(X),
}

/// Serializes a [`ScanMap`] as a sequence of pairs.
struct PairsRef<'a, V>(&'a ScanMap<V>);

impl<V: Serialize> Serialize for PairsRef<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for pair in self.0.iter() {
            seq.serialize_element(&pair)?;
        }
        seq.end()
    }
}

/// Serializes the members of a set as a sequence.
struct MembersRef<'a>(&'a ScanMap<()>);

impl Serialize for MembersRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.keys())
    }
}

struct DbRef<'a>(&'a Db);

impl Serialize for DbRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (key, entry) in self.0.iter() {
            let value = match &entry.value {
                Value::String(v) => StoredValue::String(v),
                Value::Hash(h) => StoredValue::Hash(PairsRef(h)),
                Value::Set(m) => StoredValue::Set(MembersRef(m)),
                Value::List(l) => StoredValue::List(l.as_ref()),
                Value::ZSet(z) => StoredValue::ZSet(PairsRef(z.scores())),
                Value::Stream(x) => StoredValue::Stream(x.as_ref()),
            };
            seq.serialize_element(&(key, value, entry.expires_at()))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct StateRef<'a> {
    clock_ms: u64,
    applied_index: u64,
    members: &'a BTreeMap<u64, String>,
    db: DbRef<'a>,
}

/// One decoded key: name, value, deadline.
type StoredEntry = (
    Bytes,
    StoredValue<Bytes, Vec<(Bytes, Bytes)>, Vec<Bytes>, List, Vec<(Bytes, f64)>, Stream>,
    Option<u64>,
);

#[derive(Deserialize)]
struct StoredState {
    clock_ms: u64,
    applied_index: u64,
    members: BTreeMap<u64, String>,
    db: Vec<StoredEntry>,
}

impl State {
    /// Encodes the whole state.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let body = StateRef {
            clock_ms: self.clock_ms,
            applied_index: self.applied_index,
            members: &self.members,
            db: DbRef(&self.db),
        };
        let mut out = vec![SNAPSHOT_FORMAT];
        // Serializing into a Vec cannot fail: every type here is plain data.
        out.extend(postcard::to_stdvec(&body).expect("state serializes"));
        out.extend(postcard::to_stdvec(&self.coord).expect("primitives serialize"));
        out.extend(postcard::to_stdvec(&self.scripts).expect("scripts serialize"));
        out.extend(postcard::to_stdvec(&self.coord.stream_waiters).expect("waiters serialize"));
        out.extend(postcard::to_stdvec(&self.coord.ext).expect("primitives serialize"));
        out.extend(postcard::to_stdvec(&self.acl).expect("users serialize"));
        out.extend(postcard::to_stdvec(&self.coord.ext.checks).expect("checks serialize"));
        out
    }

    /// Rebuilds a state from [`State::encode_snapshot`]'s bytes.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<State, SnapshotError> {
        let (&format, body) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        if !(1..=SNAPSHOT_FORMAT).contains(&format) {
            return Err(SnapshotError::UnknownFormat(format));
        }
        let (stored, rest): (StoredState, _) = postcard::take_from_bytes(body)?;
        let (coord, scripts, acl) = match format {
            1 => (Coord::default(), ScriptCache::default(), Acl::default()),
            2 => (
                postcard::from_bytes(rest)?,
                ScriptCache::default(),
                Acl::default(),
            ),
            _ => {
                let (mut coord, rest): (Coord, _) = postcard::take_from_bytes(rest)?;
                let (scripts, rest) = postcard::take_from_bytes(rest)?;
                let (waiters, rest) = postcard::take_from_bytes(rest)?;
                coord.stream_waiters = waiters;
                let (ext, rest) = postcard::take_from_bytes(rest)?;
                coord.ext = ext;
                let acl = match format {
                    3 => Acl::default(),
                    4 => postcard::from_bytes(rest)?,
                    _ => {
                        let (acl, rest) = postcard::take_from_bytes(rest)?;
                        coord.ext.checks = postcard::from_bytes(rest)?;
                        acl
                    }
                };
                (coord, scripts, acl)
            }
        };
        let mut db = Db::new();
        for (key, value, deadline) in stored.db {
            let value = match value {
                StoredValue::String(s) => Value::String(s),
                StoredValue::Hash(pairs) => {
                    let mut map = ScanMap::new();
                    for (f, v) in pairs {
                        map.insert(f, v);
                    }
                    Value::Hash(Box::new(map))
                }
                StoredValue::Set(members) => {
                    let mut set = ScanMap::new();
                    for m in members {
                        set.insert(m, ());
                    }
                    Value::Set(Box::new(set))
                }
                StoredValue::List(l) => Value::List(Box::new(l)),
                StoredValue::ZSet(pairs) => {
                    let mut zset = ZSet::default();
                    for (member, score) in pairs {
                        zset.insert(member, score);
                    }
                    Value::ZSet(Box::new(zset))
                }
                StoredValue::Stream(x) => Value::Stream(Box::new(x)),
            };
            db.insert(key, value, deadline);
        }
        Ok(State {
            db,
            clock_ms: stored.clock_ms,
            applied_index: stored.applied_index,
            members: stored.members,
            coord,
            wakeups: Vec::new(),
            deliveries: Vec::new(),
            ready_lists: Vec::new(),
            scripts,
            script_host: Default::default(),
            acl,
            mesh: Default::default(),
            evicted_keys: Default::default(),
            caller: None,
        })
    }
}
