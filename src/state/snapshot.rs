//! Snapshot encoding of the state: a format version byte, then postcard.
//!
//! Formats 6 and 7 (written since the keyspace is encoded a chunk at a
//! time, see [`capture`](super::capture)) put everything but the keyspace
//! first and the keyspace last, every part behind its length:
//!
//! ```text
//! 7 | section(header) | section(primitives) | section(scripts)
//!   | section(stream waiters) | section(later primitives) | section(users)
//!   | section(health checks) | keys u64 | keys × section(key, value, deadline)
//! section = len u64 LE | postcard bytes
//! ```
//!
//! Format 9 replaces the keys at the end by every database's:
//!
//! ```text
//! 9 | … as 7 … | section(health checks) | section(other databases' waiters)
//!   | databases u32 | databases × (index u32 | keys u64 | keys × section(…))
//! ```
//!
//! so the small parts can be written when a snapshot begins, the keys as
//! the walk reaches them, and a reader can decode entry by entry from a
//! file without holding it whole. The decoder rebuilds the maps and the
//! deadline index, so a restored state is equal to the one that was
//! encoded, field for field. Formats 1 to 5 (one postcard body with the
//! keyspace in the middle) still decode.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::Bytes;
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use super::acl::Acl;
use super::db::{Db, Entry, ScanMap, Value};
use super::hashes::Hash;
use super::lists::List;
use super::scripts::{ScriptCache, ScriptCacheV1};
use super::streams::Stream;
use super::zsets::ZSet;
use super::{Coord, DbWaiters, Parked, State};

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
/// Format 5 appends the health checks. Format 6 is the sectioned layout of
/// the module docs. Format 7 has format 6's layout and adds the value
/// variant of a packed hash; a format 6 snapshot holds hashes in tables.
/// Format 8 has format 7's layout; its script cache keeps each function's
/// description and flags (FUNCTION LIST), where format 7 kept `no-writes`
/// alone.
/// Format 9 adds the other databases: after the health checks, a section
/// of their waiters, then the number of databases and, for each, its index
/// and its keys (format 8 holds database 0's keys alone).
pub const SNAPSHOT_FORMAT: u8 = 9;

/// True for the formats with the sectioned layout.
fn sectioned(format: u8) -> bool {
    (6..=SNAPSHOT_FORMAT).contains(&format)
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is empty")]
    Empty,
    #[error("snapshot format {0} is not supported (this build reads {SNAPSHOT_FORMAT})")]
    UnknownFormat(u8),
    #[error("snapshot cannot be decoded: {0}")]
    Decode(#[from] postcard::Error),
    #[error("snapshot is cut short: {0}")]
    Truncated(String),
    #[error("snapshot cannot be read: {0}")]
    Io(#[from] std::io::Error),
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
    /// A hash in its packed layout, pairs in their order (format 7). `Hash`
    /// is a hash in a table.
    PackedHash(H),
}

/// Serializes a [`Hash`]'s pairs as a sequence of byte-string pairs.
struct HashRef<'a>(&'a Hash);

impl Serialize for HashRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (f, v) in self.0.iter() {
            seq.serialize_element(&(RawBytes(f), RawBytes(v)))?;
        }
        seq.end()
    }
}

/// A byte string serialized as `Bytes` is, so either decodes it.
struct RawBytes<'a>(&'a [u8]);

impl Serialize for RawBytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
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
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for member in self.0.keys() {
            seq.serialize_element(member)?;
        }
        seq.end()
    }
}

/// One decoded value.
type StoredValueOwned =
    StoredValue<Bytes, Vec<(Bytes, Bytes)>, Vec<Bytes>, List, Vec<(Bytes, f64)>, Stream>;

/// One decoded key: name, value, deadline.
type StoredEntry = (Bytes, StoredValueOwned, Option<u64>);

#[derive(Deserialize)]
struct StoredState {
    clock_ms: u64,
    applied_index: u64,
    members: BTreeMap<u64, String>,
    db: Vec<StoredEntry>,
}

/// The keyspace as formats 1 to 5 laid it out: one sequence inside the
/// body. Kept to test that those formats still decode.
#[cfg(test)]
struct DbRef<'a>(&'a Db);

#[cfg(test)]
impl Serialize for DbRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for (key, entry) in self.0.iter() {
            seq.serialize_element(&(key, value_ref(&entry.value), entry.expires_at()))?;
        }
        seq.end()
    }
}

#[cfg(test)]
#[derive(Serialize)]
struct StateRef<'a> {
    clock_ms: u64,
    applied_index: u64,
    members: &'a BTreeMap<u64, String>,
    db: DbRef<'a>,
}

#[cfg(test)]
impl State {
    /// The state in format 5, as builds before format 6 wrote it.
    pub(crate) fn encode_snapshot_v5(&self) -> Vec<u8> {
        let body = StateRef {
            clock_ms: self.clock_ms,
            applied_index: self.applied_index,
            members: &self.members,
            db: DbRef(&self.db),
        };
        let mut out = vec![5];
        out.extend(postcard::to_stdvec(&body).expect("state serializes"));
        out.extend(postcard::to_stdvec(&self.coord).expect("primitives serialize"));
        let scripts = super::scripts::ScriptCacheV1::from(&self.scripts);
        out.extend(postcard::to_stdvec(&scripts).expect("scripts serialize"));
        out.extend(postcard::to_stdvec(&self.coord.stream_waiters).expect("waiters serialize"));
        out.extend(postcard::to_stdvec(&self.coord.ext).expect("primitives serialize"));
        out.extend(postcard::to_stdvec(&self.acl).expect("users serialize"));
        out.extend(postcard::to_stdvec(&self.coord.ext.checks).expect("checks serialize"));
        out
    }
}

/// The parts of format 6 before the keyspace.
#[derive(Serialize)]
struct HeaderRef<'a> {
    clock_ms: u64,
    applied_index: u64,
    members: &'a BTreeMap<u64, String>,
}

#[derive(Deserialize)]
struct StoredHeader {
    clock_ms: u64,
    applied_index: u64,
    members: BTreeMap<u64, String>,
}

/// Appends `value` as a section: its postcard length, then its bytes.
fn write_section<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    // Serializing into a Vec cannot fail: every type here is plain data.
    let mut buf = postcard::to_extend(value, std::mem::take(out)).expect("state serializes");
    let len = (buf.len() - start - 8) as u64;
    buf[start..start + 8].copy_from_slice(&len.to_le_bytes());
    *out = buf;
}

/// Appends one key of the keyspace as a section.
pub(super) fn write_entry(out: &mut Vec<u8>, key: &Bytes, entry: &Entry) {
    write_section(out, &(key, value_ref(&entry.value), entry.expires_at()));
}

/// A value as it is encoded, borrowed from the keyspace.
type StoredValueRef<'a> =
    StoredValue<&'a Bytes, HashRef<'a>, MembersRef<'a>, &'a List, PairsRef<'a, f64>, &'a Stream>;

fn value_ref(value: &Value) -> StoredValueRef<'_> {
    match value {
        Value::String(v) => StoredValue::String(v),
        Value::Hash(h) if h.is_packed() => StoredValue::PackedHash(HashRef(h)),
        Value::Hash(h) => StoredValue::Hash(HashRef(h)),
        Value::Set(m) => StoredValue::Set(MembersRef(m)),
        Value::List(l) => StoredValue::List(l.as_ref()),
        Value::ZSet(z) => StoredValue::ZSet(PairsRef(z.scores())),
        Value::Stream(x) => StoredValue::Stream(x.as_ref()),
    }
}

impl State {
    /// Encodes the whole state at once (format 6): what
    /// [`State::begin_snapshot`] and [`State::snapshot_chunk`] produce
    /// without writes in between.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let dbs: Vec<(u32, &Db)> = self
            .databases()
            .filter(|(index, db)| *index == 0 || !db.is_empty())
            .collect();
        let mut out = self.snapshot_head(dbs.len() as u32);
        for (index, db) in dbs {
            out.extend_from_slice(&index.to_le_bytes());
            out.extend_from_slice(&(db.len() as u64).to_le_bytes());
            for (key, entry) in db.iter() {
                write_entry(&mut out, key, entry);
            }
        }
        out
    }

    /// Starts a snapshot of the state as it is now, to be encoded a chunk
    /// at a time while entries go on applying: returns its first bytes
    /// (everything but the keys), then [`State::snapshot_chunk`] gives the
    /// keys. A snapshot already under way is abandoned.
    pub fn begin_snapshot(&mut self) -> Vec<u8> {
        debug_assert_eq!(self.current, 0, "snapshots begin between entries");
        self.abort_snapshot();
        let mut labels = Vec::new();
        self.db.begin_capture(0);
        labels.push(0);
        for (index, parked) in self.parked.iter_mut() {
            if !parked.db.is_empty() {
                parked.db.begin_capture(*index);
                labels.push(*index);
            }
        }
        let head = self.snapshot_head(labels.len() as u32);
        self.snapshot_dbs = labels;
        self.snapshot_db_begun = false;
        head
    }

    /// The keyspace whose capture carries `label`.
    fn captured(&mut self, label: u32) -> Option<&mut Db> {
        if self.db.capture_label() == Some(label) {
            return Some(&mut self.db);
        }
        self.parked
            .values_mut()
            .map(|parked| &mut parked.db)
            .find(|db| db.capture_label() == Some(label))
    }

    /// Appends the next keys of the snapshot begun by
    /// [`State::begin_snapshot`] to `out`, until it holds at least `budget`
    /// bytes; true when the snapshot is complete.
    pub fn snapshot_chunk(&mut self, out: &mut Vec<u8>, budget: usize) -> bool {
        while let Some(&label) = self.snapshot_dbs.first() {
            let begun = self.snapshot_db_begun;
            let Some(db) = self.captured(label) else {
                // Aborted meanwhile: nothing more comes.
                self.snapshot_dbs.clear();
                break;
            };
            if !begun {
                out.extend_from_slice(&label.to_le_bytes());
                out.extend_from_slice(&db.capture_keys().to_le_bytes());
            }
            let done = db.capture_step(out, budget);
            self.snapshot_db_begun = !done;
            if !done {
                return false;
            }
            self.snapshot_dbs.remove(0);
            if out.len() >= budget && !self.snapshot_dbs.is_empty() {
                return false;
            }
        }
        // Databases kept only because the snapshot still had to encode them.
        self.tidy();
        true
    }

    /// Abandons the snapshot under way, if any.
    pub fn abort_snapshot(&mut self) {
        self.db.end_capture();
        for parked in self.parked.values_mut() {
            parked.db.end_capture();
        }
        self.snapshot_dbs.clear();
        self.snapshot_db_begun = false;
    }

    /// True while a snapshot begun by [`State::begin_snapshot`] has keys
    /// left to encode.
    pub fn snapshot_in_progress(&self) -> bool {
        !self.snapshot_dbs.is_empty()
    }

    fn snapshot_head(&self, databases: u32) -> Vec<u8> {
        let mut out = vec![SNAPSHOT_FORMAT];
        write_section(
            &mut out,
            &HeaderRef {
                clock_ms: self.clock_ms,
                applied_index: self.applied_index,
                members: &self.members,
            },
        );
        write_section(&mut out, &self.coord);
        write_section(&mut out, &self.scripts);
        write_section(&mut out, &self.coord.stream_waiters);
        write_section(&mut out, &self.coord.ext);
        write_section(&mut out, &self.acl);
        write_section(&mut out, &self.coord.ext.checks);
        let waiters: Vec<(u32, &DbWaiters)> = self
            .parked
            .iter()
            .filter(|(_, parked)| !parked.waiters.is_empty())
            .map(|(index, parked)| (*index, &parked.waiters))
            .collect();
        write_section(&mut out, &waiters);
        out.extend_from_slice(&databases.to_le_bytes());
        out
    }

    /// Rebuilds a state from [`State::encode_snapshot`]'s bytes (or an
    /// earlier format's).
    pub fn decode_snapshot(bytes: &[u8]) -> Result<State, SnapshotError> {
        let (&format, body) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        match format {
            1..=5 => State::decode_legacy(format, body),
            6..=SNAPSHOT_FORMAT => State::read_snapshot(bytes, bytes.len() as u64),
            _ => Err(SnapshotError::UnknownFormat(format)),
        }
    }

    /// Decodes a snapshot of `len` bytes from `reader` (a file): format 6
    /// a section at a time, earlier formats (one body) read whole first.
    pub fn decode_snapshot_from(mut reader: impl Read, len: u64) -> Result<State, SnapshotError> {
        let mut format = [0u8; 1];
        if len == 0 {
            return Err(SnapshotError::Empty);
        }
        reader.read_exact(&mut format)?;
        if sectioned(format[0]) {
            return State::read_snapshot(std::io::Cursor::new(format).chain(reader), len);
        }
        let mut bytes = vec![format[0]];
        reader.take(len - 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != len {
            return Err(SnapshotError::Truncated(format!(
                "{} of {len} bytes",
                bytes.len()
            )));
        }
        State::decode_snapshot(&bytes)
    }

    /// Reads a format 6 snapshot of `len` bytes from `reader` (a file),
    /// holding one section at a time besides the state it builds.
    pub fn read_snapshot(reader: impl Read, len: u64) -> Result<State, SnapshotError> {
        let mut r = Sections {
            reader,
            left: len,
            buf: Vec::new(),
        };
        let format = r.byte()?;
        if !sectioned(format) {
            return Err(SnapshotError::UnknownFormat(format));
        }
        let header: StoredHeader = r.section()?;
        let mut coord: Coord = r.section()?;
        let scripts = if format >= 8 {
            r.section::<ScriptCache>()?
        } else {
            ScriptCache::from(r.section::<ScriptCacheV1>()?)
        };
        coord.stream_waiters = r.section()?;
        coord.ext = r.section()?;
        let acl: Acl = r.section()?;
        coord.ext.checks = r.section()?;
        let mut waiters: BTreeMap<u32, DbWaiters> = BTreeMap::new();
        let count = if format >= 9 {
            for (index, w) in r.section::<Vec<(u32, DbWaiters)>>()? {
                if index == 0 || index >= super::DATABASES {
                    return Err(SnapshotError::Truncated(format!(
                        "waiters of database {index}"
                    )));
                }
                waiters.insert(index, w);
            }
            r.u32()?
        } else {
            1
        };
        let mut dbs = BTreeMap::new();
        for _ in 0..count {
            let index = if format >= 9 { r.u32()? } else { 0 };
            if index >= super::DATABASES || dbs.contains_key(&index) {
                return Err(SnapshotError::Truncated(format!(
                    "database {index} out of place"
                )));
            }
            dbs.insert(index, r.keyspace()?);
        }
        let db = dbs.remove(&0).unwrap_or_default();
        if r.left != 0 {
            return Err(SnapshotError::Truncated(format!(
                "{} bytes after the last key",
                r.left
            )));
        }
        let mut state = State::restored(
            db,
            header.clock_ms,
            header.applied_index,
            header.members,
            coord,
            scripts,
            acl,
        );
        for (index, db) in dbs {
            let waiters = waiters.remove(&index).unwrap_or_default();
            state.parked.insert(index, Parked { db, waiters });
        }
        for (index, waiters) in waiters {
            state.parked.insert(
                index,
                Parked {
                    db: Db::default(),
                    waiters,
                },
            );
        }
        Ok(state)
    }

    fn restored(
        db: Db,
        clock_ms: u64,
        applied_index: u64,
        members: BTreeMap<u64, String>,
        coord: Coord,
        scripts: ScriptCache,
        acl: Acl,
    ) -> State {
        State {
            db,
            current: 0,
            parked: BTreeMap::new(),
            snapshot_dbs: Vec::new(),
            snapshot_db_begun: false,
            clock_ms,
            applied_index,
            members,
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
        }
    }

    /// Formats 1 to 5: one postcard body, the keyspace inside it.
    fn decode_legacy(format: u8, body: &[u8]) -> Result<State, SnapshotError> {
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
                let (scripts, rest): (ScriptCacheV1, _) = postcard::take_from_bytes(rest)?;
                let scripts = ScriptCache::from(scripts);
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
            db.insert(key, stored_value(value), deadline);
        }
        Ok(State::restored(
            db,
            stored.clock_ms,
            stored.applied_index,
            stored.members,
            coord,
            scripts,
            acl,
        ))
    }
}

fn stored_value(value: StoredValueOwned) -> Value {
    match value {
        StoredValue::String(s) => Value::String(s),
        StoredValue::Hash(pairs) => Value::Hash(Hash::from_pairs(pairs, false)),
        StoredValue::PackedHash(pairs) => Value::Hash(Hash::from_pairs(pairs, true)),
        StoredValue::Set(members) => {
            let mut set = ScanMap::with_capacity(members.len());
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
    }
}

/// Reads the sections of a format 6 snapshot, never past its length.
struct Sections<R> {
    reader: R,
    left: u64,
    buf: Vec<u8>,
}

impl<R: Read> Sections<R> {
    fn take(&mut self, n: u64, what: &str) -> Result<(), SnapshotError> {
        if n > self.left {
            return Err(SnapshotError::Truncated(format!(
                "{what} of {n} bytes with {} left",
                self.left
            )));
        }
        self.buf.clear();
        self.buf.resize(n as usize, 0);
        self.reader.read_exact(&mut self.buf)?;
        self.left -= n;
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, SnapshotError> {
        self.take(1, "format byte")?;
        Ok(self.buf[0])
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        self.take(4, "a database header")?;
        Ok(u32::from_le_bytes(
            self.buf[..4].try_into().expect("4 bytes"),
        ))
    }

    /// One database's keys: their count, then each behind its length.
    fn keyspace(&mut self) -> Result<Db, SnapshotError> {
        let keys = self.u64()?;
        // Every key takes more than 16 bytes: a corrupt count cannot make
        // this reserve more than the snapshot's size.
        let capacity = keys.min(self.left / 16) as usize;
        let mut failed = None;
        let entries = (0..keys).map_while(|_| match self.section::<StoredEntry>() {
            Ok((key, value, deadline)) => Some((key, stored_value(value), deadline)),
            Err(e) => {
                failed = Some(e);
                None
            }
        });
        let db = Db::from_entries(entries, capacity);
        match failed {
            Some(e) => Err(e),
            None => Ok(db),
        }
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        self.take(8, "length")?;
        Ok(u64::from_le_bytes(
            self.buf[..8].try_into().expect("8 bytes"),
        ))
    }

    fn section<T: serde::de::DeserializeOwned>(&mut self) -> Result<T, SnapshotError> {
        let len = self.u64()?;
        self.take(len, "section")?;
        let (value, rest) = postcard::take_from_bytes(&self.buf)?;
        if !rest.is_empty() {
            return Err(SnapshotError::Truncated(format!(
                "{} bytes left inside a section",
                rest.len()
            )));
        }
        Ok(value)
    }
}
