//! The keyspace: one ordered map of keys to values with optional deadlines.
//!
//! Keys are ordered by a fixed 64-bit hash of their bytes (then by the bytes),
//! not by the bytes themselves. That order is what SCAN's integer cursor walks:
//! the cursor is the hash of the next key to visit, so a scan survives inserts
//! and deletes between calls (every key present for the whole scan is returned
//! at least once, as Redis promises) and the cursor is meaningful on every
//! replica. The hash is our own (not `std`'s unspecified SipHash) so it never
//! changes between builds. Point lookups do not walk that order: they use a
//! hash table beside it (see [`ScanMap`]).
//!
//! Deadlines live twice: on the entry, and in an index ordered by time that
//! lets the leader find expired keys without a scan of the keyspace.

use std::collections::{hash_map, BTreeSet, HashMap};

use bytes::Bytes;

use super::capture::Capture;
use super::memory::{self, Access, AccessMode, Noise};
use super::zsets::ZSet;

/// A key in a [`ScanMap`]: ordered by `(hash, bytes)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ScanKey {
    hash: u64,
    bytes: Bytes,
}

impl ScanKey {
    pub fn new(bytes: Bytes) -> Self {
        ScanKey {
            hash: stable_hash(&bytes),
            bytes,
        }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The smallest key with the given hash: where a scan at cursor `hash` starts.
    fn first_with_hash(hash: u64) -> Self {
        ScanKey {
            hash,
            bytes: Bytes::new(),
        }
    }
}

/// A 64-bit hash that is the same on every build and every node, never 0
/// (0 is the cursor that means "start" and "done").
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = SEED ^ (bytes.len() as u64).wrapping_mul(0xff51_afd7_ed55_8ccd);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunk of 8"));
        h = (h ^ mix(word))
            .rotate_left(27)
            .wrapping_mul(0x94d0_49bb_1331_11eb);
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    h ^= mix(u64::from_le_bytes(tail));
    let h = mix(h);
    if h == 0 {
        1
    } else {
        h
    }
}

/// splitmix64's finalizer: a full avalanche of one word.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A map whose iteration order is the scan order: used for the keyspace and for
/// the fields of a hash, so SCAN and HSCAN share one cursor scheme.
///
/// Point lookups go through a hash table (keyed SipHash, so clients cannot
/// aim keys at one bucket); the scan order is kept beside it as an ordered
/// set of `(stable hash, key)`. A lookup is one hash probe instead of a walk
/// down a B-tree of 100k keys, which was the largest single cost of a GET.
/// Keys are `Bytes`, so the second copy of each is a reference count.
#[derive(Clone, PartialEq)]
pub struct ScanMap<V> {
    values: HashMap<Bytes, V>,
    order: BTreeSet<ScanKey>,
}

impl<V> Default for ScanMap<V> {
    fn default() -> Self {
        ScanMap::new()
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for ScanMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> ScanMap<V> {
    pub fn new() -> Self {
        ScanMap {
            values: HashMap::new(),
            order: BTreeSet::new(),
        }
    }

    /// Builds a map from entries whose scan keys come mostly in scan order
    /// (a snapshot's): the scan order is built in one pass, not by one
    /// B-tree insert per key. A key given twice keeps its last value.
    pub fn from_entries(entries: impl Iterator<Item = (Bytes, V)>, capacity: usize) -> Self {
        let mut values = HashMap::with_capacity(capacity);
        let mut order = Vec::with_capacity(capacity);
        for (key, value) in entries {
            if values.insert(key.clone(), value).is_none() {
                order.push(ScanKey::new(key));
            }
        }
        ScanMap {
            values,
            order: order.into_iter().collect(),
        }
    }

    /// Room for `n` entries without rehashing (a snapshot being loaded).
    pub fn with_capacity(n: usize) -> Self {
        ScanMap {
            values: HashMap::with_capacity(n),
            order: BTreeSet::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn get(&self, key: &Bytes) -> Option<&V> {
        self.values.get(key)
    }

    pub fn get_mut(&mut self, key: &Bytes) -> Option<&mut V> {
        self.values.get_mut(key)
    }

    pub fn contains(&self, key: &Bytes) -> bool {
        self.values.contains_key(key)
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: Bytes, value: V) -> Option<V> {
        match self.values.entry(key) {
            hash_map::Entry::Occupied(mut slot) => Some(slot.insert(value)),
            hash_map::Entry::Vacant(slot) => {
                self.order.insert(ScanKey::new(slot.key().clone()));
                slot.insert(value);
                None
            }
        }
    }

    /// Changes the value at `key` in place (`f(Some(value))`, which returns
    /// None), or inserts what `f(None)` returns: one lookup for a present
    /// key, where `insert` would need the new value first.
    pub fn upsert(&mut self, key: &Bytes, f: impl FnOnce(Option<&mut V>) -> Option<V>) {
        match self.values.get_mut(key) {
            Some(value) => {
                f(Some(value));
            }
            None => {
                if let Some(value) = f(None) {
                    self.insert(key.clone(), value);
                }
            }
        }
    }

    pub fn remove(&mut self, key: &Bytes) -> Option<V> {
        let value = self.values.remove(key)?;
        self.order.remove(&ScanKey::new(key.clone()));
        Some(value)
    }

    /// The entry of a key taken from `order`.
    fn entry<'a>(&'a self, key: &'a ScanKey) -> (&'a Bytes, &'a V) {
        let value = self
            .values
            .get(&key.bytes)
            .expect("every key in the scan order has a value");
        (&key.bytes, value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &V)> {
        self.order.iter().map(|k| self.entry(k))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.order.iter().map(|k| &k.bytes)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// The stored key and value at `key`.
    pub fn get_key_value(&self, key: &Bytes) -> Option<(&Bytes, &V)> {
        self.values.get_key_value(key)
    }

    /// The first entry at or after `hash` in scan order, wrapping around to
    /// the first one: with a uniformly drawn `hash`, a random entry in
    /// O(log n).
    pub fn at_or_after(&self, hash: u64) -> Option<(&Bytes, &V)> {
        let key = self
            .order
            .range(ScanKey::first_with_hash(hash)..)
            .next()
            .or_else(|| self.order.iter().next())?;
        Some(self.entry(key))
    }

    /// The entries after `cursor` in scan order (all of them for None),
    /// with their scan keys: a walk that can stop and resume.
    pub(super) fn after<'a>(
        &'a self,
        cursor: Option<&ScanKey>,
    ) -> impl Iterator<Item = (&'a ScanKey, &'a V)> + 'a {
        use std::ops::Bound;
        let from = match cursor {
            Some(c) => Bound::Excluded(c.clone()),
            None => Bound::Unbounded,
        };
        self.order
            .range((from, Bound::Unbounded))
            .map(|k| (k, self.entry(k).1))
    }

    /// The entry at position `n` in scan order (used for random picks; O(n)).
    pub fn nth(&self, n: usize) -> Option<(&Bytes, &V)> {
        self.order.iter().nth(n).map(|k| self.entry(k))
    }

    /// Visits at least `count` entries (fewer only at the end) starting at
    /// `cursor`, always finishing the run of entries that share the last
    /// visited hash so the next cursor moves strictly forward. Returns the
    /// visited entries and the next cursor (0 when the walk is complete).
    pub fn scan(&self, cursor: u64, count: usize) -> (Vec<(&Bytes, &V)>, u64) {
        let count = count.max(1);
        let mut out = Vec::with_capacity(count.min(1024));
        let mut last_hash = None;
        for k in self.order.range(ScanKey::first_with_hash(cursor)..) {
            if out.len() >= count && last_hash != Some(k.hash) {
                return (out, k.hash);
            }
            last_hash = Some(k.hash);
            out.push(self.entry(k));
        }
        (out, 0)
    }
}

/// A small deterministic generator (splitmix64) for the seeded random picks
/// of RANDOMKEY and HRANDFIELD: the caller draws the seed, the state only
/// expands it, so a replayed query gives the same answer.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        SeededRng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// A number in `0..n` (`n` > 0), without modulo bias worth the name.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

/// One value in the keyspace.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(Bytes),
    /// Packed or a boxed table: no larger than a string's handle, so every
    /// entry (and every bucket of the keyspace's table) stays small.
    Hash(super::hashes::Hash),
    /// A set: members only, in the same scan order (SSCAN's cursor).
    Set(Box<ScanMap<()>>),
    /// Boxed like a hash.
    List(Box<super::lists::List>),
    ZSet(Box<ZSet>),
    /// Boxed like a hash. Kept when its last entry goes, as in Redis.
    Stream(Box<super::streams::Stream>),
}

impl Value {
    /// True for a container with no elements: such a value must never stay
    /// in the keyspace (Redis deletes a hash when its last field goes).
    pub fn is_empty_container(&self) -> bool {
        match self {
            Value::String(_) => false,
            Value::Hash(h) => h.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::List(l) => l.is_empty(),
            Value::ZSet(z) => z.is_empty(),
            Value::Stream(_) => false,
        }
    }

    /// The name TYPE reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::String(_) => "string",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::List(_) => "list",
            Value::ZSet(_) => "zset",
            Value::Stream(_) => "stream",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub value: Value,
    expires_at: Option<u64>,
    /// When and how often the entry was used: this node's view, for
    /// eviction (see [`memory`]).
    access: Access,
    /// What the entry adds to [`Db::dataset_bytes`], in units of
    /// [`COST_UNIT`] bytes: the figure last accounted for it.
    cost: u32,
}

/// The unit entry costs are kept in: 8 bytes, so a `u32` covers 32 GiB.
const COST_UNIT: u64 = 8;

fn cost_units(bytes: u64) -> u32 {
    bytes.div_ceil(COST_UNIT).min(u64::from(u32::MAX)) as u32
}

impl Entry {
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    /// True when the deadline is at or before `now`: the entry is logically
    /// gone, though the log may not have deleted it yet.
    pub fn is_expired(&self, now: u64) -> bool {
        matches!(self.expires_at, Some(at) if at <= now)
    }

    /// This node's access record of the entry.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// What the entry counts for in [`Db::dataset_bytes`].
    pub fn cost(&self) -> u64 {
        u64::from(self.cost) * COST_UNIT
    }
}

/// The keyspace of database 0.
///
/// Beside the entries it keeps the dataset's size as every replica
/// computes it: the sum of the entries' costs ([`memory::entry_cost`]),
/// what `maxmemory` limits. Inserts and removals adjust it at once; a
/// value changed in place through [`Db::get_mut`] is re-costed when the op
/// that changed it has applied ([`Db::settle`]), once however many times
/// the op touched it.
#[derive(Clone, Debug, Default)]
pub struct Db {
    entries: ScanMap<Entry>,
    /// `(deadline ms, key)` for every key with a deadline.
    deadlines: BTreeSet<(u64, Bytes)>,
    /// The sum of the entries' `cost`, in [`COST_UNIT`]s.
    used: u64,
    /// Keys handed out by `get_mut` since the last `settle`.
    touched: Vec<Bytes>,
    /// The time of the entry being applied: new entries' access time.
    clock: u64,
    /// How access is recorded (this node's `maxmemory-policy`).
    mode: AccessMode,
    noise: Noise,
    /// The view of a snapshot being encoded, while one is (see
    /// [`capture`](super::capture)).
    capture: Option<Box<Capture>>,
}

impl PartialEq for Db {
    /// The entries and their deadlines; the rest derives from them or is
    /// this node's own.
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries && self.deadlines == other.deadlines
    }
}

impl Db {
    pub fn new() -> Self {
        Db::default()
    }

    /// A keyspace loaded from a snapshot's entries (key, value, deadline).
    pub fn from_entries(
        entries: impl Iterator<Item = (Bytes, Value, Option<u64>)>,
        capacity: usize,
    ) -> Self {
        let mut db = Db::default();
        let mut deadlines = Vec::new();
        let mut used = 0u64;
        let access = Access::new(&db.mode, db.clock);
        let loaded = entries.map(|(key, value, expires_at)| {
            if let Some(at) = expires_at {
                deadlines.push((at, key.clone()));
            }
            let cost = cost_units(memory::entry_cost(&key, &value));
            used += u64::from(cost);
            let entry = Entry {
                value,
                expires_at,
                access: access.carry(),
                cost,
            };
            (key, entry)
        });
        db.entries = ScanMap::from_entries(loaded, capacity);
        db.deadlines = deadlines.into_iter().collect();
        db.used = used;
        db
    }

    /// The dataset's size in bytes: the figure `maxmemory` limits, the same
    /// on every replica that applied the same entries.
    pub fn dataset_bytes(&self) -> u64 {
        self.used * COST_UNIT
    }

    /// Re-costs the values changed in place since the last call. Called
    /// when an op has applied.
    pub fn settle(&mut self) {
        for key in std::mem::take(&mut self.touched) {
            if let Some(entry) = self.entries.get_mut(&key) {
                let units = cost_units(memory::entry_cost(&key, &entry.value));
                self.used = self.used - u64::from(entry.cost) + u64::from(units);
                entry.cost = units;
            }
        }
    }

    /// Keeps `key`'s entry as it is for the snapshot being encoded, if one
    /// is and it has not passed `key` yet. Called by every method that
    /// changes an entry, before it does.
    fn preserve(&mut self, key: &Bytes) {
        if let Some(capture) = &mut self.capture {
            capture.preserve(key, &self.entries);
        }
    }

    /// Starts a snapshot's view of the keyspace as it is now; returns the
    /// number of keys it will hold. Replaces a view already running.
    pub(super) fn begin_capture(&mut self) -> u64 {
        let keys = self.entries.len() as u64;
        self.capture = Some(Box::new(Capture::new(keys)));
        keys
    }

    /// Encodes the next entries of the view into `out`, until it holds
    /// `budget` bytes; true (and the view ends) when every entry is out.
    /// Nothing is written without a view.
    pub(super) fn capture_step(&mut self, out: &mut Vec<u8>, budget: usize) -> bool {
        let Some(capture) = &mut self.capture else {
            return true;
        };
        let done = capture.step(&self.entries, out, budget);
        if done {
            self.capture = None;
        }
        done
    }

    /// Drops the view of a snapshot that will not be finished.
    pub(super) fn end_capture(&mut self) {
        self.capture = None;
    }

    pub(super) fn capturing(&self) -> bool {
        self.capture.is_some()
    }

    /// The time new entries are stamped with: the applying entry's.
    pub fn set_clock(&mut self, now: u64) {
        self.clock = now;
    }

    /// How accesses are recorded from now on.
    pub fn set_access_mode(&mut self, mode: AccessMode) {
        self.mode = mode;
    }

    pub fn access_mode(&self) -> &AccessMode {
        &self.mode
    }

    fn new_entry(
        &self,
        key: &Bytes,
        value: Value,
        expires_at: Option<u64>,
        access: Access,
    ) -> Entry {
        let cost = cost_units(memory::entry_cost(key, &value));
        Entry {
            value,
            expires_at,
            access,
            cost,
        }
    }

    /// The access word a write leaves on a replaced entry: LFU counts carry
    /// over (as Redis keeps them), an LRU clock restarts now.
    fn next_access(&self, old: Option<&Entry>) -> Access {
        match old {
            Some(old) if self.mode.lfu => old.access.carry(),
            _ => Access::new(&self.mode, self.clock),
        }
    }

    /// Records an access of `entry` (the random draw of an LFU increment
    /// only under LFU: an LRU touch is one relaxed store).
    fn touch(&self, entry: &Entry, key: &Bytes, now: u64) {
        let noise = if self.mode.lfu {
            self.noise.next(key.len() as u64 ^ now)
        } else {
            0
        };
        entry.access.touch(&self.mode, now, noise);
    }

    /// The live entry at `key` without recording an access (OBJECT, MEMORY
    /// USAGE, eviction's sampling).
    pub fn peek(&self, key: &Bytes, now: u64) -> Option<&Entry> {
        self.entries.get(key).filter(|e| !e.is_expired(now))
    }

    /// Number of keys, counting keys whose deadline passed but that the log
    /// has not deleted yet (as Redis's DBSIZE does).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of keys with a deadline.
    pub fn volatile_len(&self) -> usize {
        self.deadlines.len()
    }

    /// The live entry at `key`, treating an expired one as absent; records
    /// the access.
    pub fn get(&self, key: &Bytes, now: u64) -> Option<&Entry> {
        let entry = self.peek(key, now)?;
        self.touch(entry, key, now);
        Some(entry)
    }

    /// The live value at `key` for a write. An expired entry is deleted here,
    /// which is deterministic because `now` is the log entry's time. The
    /// value is re-costed at the next [`Db::settle`].
    pub fn get_mut(&mut self, key: &Bytes, now: u64) -> Option<&mut Value> {
        self.purge_if_expired(key, now);
        self.preserve(key);
        let entry = self.entries.get_mut(key)?;
        let noise = if self.mode.lfu {
            self.noise.next(key.len() as u64 ^ now)
        } else {
            0
        };
        entry.access.touch(&self.mode, now, noise);
        // A loop over one key (a script, a transaction) is listed once.
        if self.touched.last() != Some(key) {
            self.touched.push(key.clone());
        }
        Some(&mut entry.value)
    }

    /// The live entry at `key` for a write: an expired one is deleted first
    /// (deterministic, `now` being the log entry's time). One lookup unless
    /// it deletes. What `purge_if_expired` then `get` would answer.
    pub fn live(&mut self, key: &Bytes, now: u64) -> Option<&Entry> {
        if self.purge_if_expired(key, now) {
            return None;
        }
        self.entries.get(key)
    }

    /// Deletes `key` if its deadline is at or before `now`; true if it did.
    pub fn purge_if_expired(&mut self, key: &Bytes, now: u64) -> bool {
        // Nothing is expired while the soonest deadline is still ahead
        // (the common case: the leader deletes expired keys promptly, and
        // many keyspaces have no deadlines): no lookup then.
        if self.deadlines.first().is_none_or(|(at, _)| *at > now) {
            return false;
        }
        let expired = matches!(self.entries.get(key), Some(e) if e.is_expired(now));
        if expired {
            self.remove(key);
        }
        expired
    }

    /// Stores `value` at `key` with the given deadline, replacing whatever was
    /// there (value and deadline).
    pub fn insert(&mut self, key: Bytes, value: Value, expires_at: Option<u64>) {
        self.preserve(&key);
        if let Some(at) = expires_at {
            self.deadlines.insert((at, key.clone()));
        }
        let access = self.next_access(self.entries.get(&key));
        let entry = self.new_entry(&key, value, expires_at, access);
        self.used += u64::from(entry.cost);
        if let Some(old) = self.entries.insert(key.clone(), entry) {
            self.used -= u64::from(old.cost);
            if let Some(old_at) = old.expires_at {
                if Some(old_at) != expires_at {
                    self.deadlines.remove(&(old_at, key));
                }
            }
        }
    }

    /// Replaces the value at `key` and keeps its deadline (KEEPTTL, and every
    /// in-place modification such as APPEND or HSET).
    pub fn insert_keep_ttl(&mut self, key: Bytes, value: Value, now: u64) {
        self.purge_if_expired(&key, now);
        self.replace_live(&key, value);
    }

    /// Replaces the value at `key`, keeping its deadline, or adds the key
    /// without one: `insert_keep_ttl` for a caller that has just purged
    /// `key` (with [`Db::live`]). One lookup when the key exists.
    pub fn replace_live(&mut self, key: &Bytes, value: Value) {
        self.preserve(key);
        let units = cost_units(memory::entry_cost(key, &value));
        let mut value = Some(value);
        let mut freed = 0;
        let (mode, clock) = (self.mode, self.clock);
        self.entries.upsert(key, |entry| match entry {
            Some(entry) => {
                entry.value = value.take().expect("used once");
                freed = std::mem::replace(&mut entry.cost, units);
                if !mode.lfu {
                    entry.access = Access::new(&mode, clock);
                }
                None
            }
            None => Some(Entry {
                value: value.take().expect("used once"),
                expires_at: None,
                access: Access::new(&mode, clock),
                cost: units,
            }),
        });
        self.used = self.used - u64::from(freed) + u64::from(units);
    }

    pub fn remove(&mut self, key: &Bytes) -> Option<Entry> {
        self.preserve(key);
        let entry = self.entries.remove(key)?;
        self.used -= u64::from(entry.cost);
        if let Some(at) = entry.expires_at {
            self.deadlines.remove(&(at, key.clone()));
        }
        Some(entry)
    }

    /// Deletes `key` if it holds an empty container (after an in-place
    /// modification removed its last element); true if it did.
    pub fn remove_if_empty(&mut self, key: &Bytes) -> bool {
        let empty = matches!(self.entries.get(key), Some(e) if e.value.is_empty_container());
        if empty {
            self.remove(key);
        }
        empty
    }

    /// Moves the live entry at `from` to `to` with its deadline, replacing
    /// whatever `to` held; false (and no change) when `from` is absent.
    pub fn rename(&mut self, from: &Bytes, to: &Bytes, now: u64) -> bool {
        self.purge_if_expired(from, now);
        let Some(entry) = self.remove(from) else {
            return false;
        };
        self.remove(to);
        self.insert(to.clone(), entry.value, entry.expires_at);
        true
    }

    /// A live key picked by `seed`: the walk starts at a seeded position and
    /// skips keys whose deadline passed. None when no key is live.
    pub fn random_key(&self, seed: u64, now: u64) -> Option<&Bytes> {
        let len = self.entries.len();
        if len == 0 {
            return None;
        }
        let start = SeededRng::new(seed).below(len);
        self.entries
            .iter()
            .skip(start)
            .chain(self.entries.iter().take(start))
            .find(|(_, e)| !e.is_expired(now))
            .map(|(k, _)| k)
    }

    /// Sets or clears the deadline of an existing key; false if there is none.
    pub fn set_deadline(&mut self, key: &Bytes, deadline: Option<u64>) -> bool {
        self.preserve(key);
        let Some(entry) = self.entries.get_mut(key) else {
            return false;
        };
        let old = std::mem::replace(&mut entry.expires_at, deadline);
        if let Some(at) = old {
            self.deadlines.remove(&(at, key.clone()));
        }
        if let Some(at) = deadline {
            self.deadlines.insert((at, key.clone()));
        }
        true
    }

    pub fn clear(&mut self) {
        let old = std::mem::take(&mut self.entries);
        if let Some(capture) = &mut self.capture {
            capture.detach(old);
        }
        self.deadlines.clear();
        self.used = 0;
        self.touched.clear();
    }

    /// Up to `limit` keys whose deadline is at or before `now`, oldest first:
    /// what the leader proposes to delete.
    pub fn expired_keys(&self, now: u64, limit: usize) -> Vec<Bytes> {
        self.deadlines
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// Keys with a deadline, soonest first (`volatile-ttl`).
    pub fn by_deadline(&self) -> impl Iterator<Item = &Bytes> {
        self.deadlines.iter().map(|(_, k)| k)
    }

    /// The live entry at `key` and the key as stored, without recording an
    /// access.
    pub fn peek_entry(&self, key: &Bytes, now: u64) -> Option<(&Bytes, &Entry)> {
        self.entries
            .get_key_value(key)
            .filter(|(_, e)| !e.is_expired(now))
    }

    /// A random entry (eviction's sampling), expired or not.
    pub fn random_entry(&self, rng: &mut SeededRng) -> Option<(&Bytes, &Entry)> {
        self.entries.at_or_after(rng.next_u64())
    }

    /// A random entry with a deadline: the first deadline at or after a
    /// random time between the earliest and the latest one.
    pub fn random_volatile(&self, rng: &mut SeededRng) -> Option<(&Bytes, &Entry)> {
        let first = self.deadlines.first()?.0;
        let last = self.deadlines.last()?.0;
        let at = first + rng.next_u64() % (last - first + 1);
        let (_, key) = self.deadlines.range((at, Bytes::new())..).next()?;
        self.entries.get_key_value(key)
    }

    /// The earliest deadline in the keyspace.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.iter().next().map(|(at, _)| *at)
    }

    /// All entries in scan order, expired ones included.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.entries.iter()
    }

    /// One SCAN step over live keys: see [`ScanMap::scan`].
    pub fn scan(&self, cursor: u64, count: usize, now: u64) -> (Vec<(&Bytes, &Entry)>, u64) {
        let (visited, next) = self.entries.scan(cursor, count);
        let live = visited
            .into_iter()
            .filter(|(_, e)| !e.is_expired(now))
            .collect();
        (live, next)
    }

    /// The entry at scan position `n`, expired or not.
    pub fn nth(&self, n: usize) -> Option<(&Bytes, &Entry)> {
        self.entries.nth(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn deadlines_follow_overwrites_and_removals() {
        let mut db = Db::new();
        db.insert(b("a"), Value::String(b("1")), Some(100));
        db.insert(b("a"), Value::String(b("2")), Some(200));
        assert_eq!(db.expired_keys(150, 10), Vec::<Bytes>::new());
        assert_eq!(db.expired_keys(200, 10), vec![b("a")]);
        db.insert(b("a"), Value::String(b("3")), None);
        assert_eq!(db.volatile_len(), 0);
        db.insert(b("b"), Value::String(b("1")), Some(5));
        db.remove(&b("b"));
        assert_eq!(db.volatile_len(), 0);
    }

    #[test]
    fn expired_entries_are_absent_to_reads_and_purged_by_writes() {
        let mut db = Db::new();
        db.insert(b("k"), Value::String(b("v")), Some(10));
        assert!(db.get(&b("k"), 9).is_some());
        assert!(db.get(&b("k"), 10).is_none());
        assert_eq!(db.len(), 1);
        assert!(db.get_mut(&b("k"), 10).is_none());
        assert_eq!(db.len(), 0);
        assert_eq!(db.volatile_len(), 0);
    }

    #[test]
    fn a_full_scan_returns_every_key_once_when_nothing_changes() {
        let mut db = Db::new();
        for i in 0..1000 {
            db.insert(b(&format!("key:{i}")), Value::String(b("x")), None);
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        loop {
            let (batch, next) = db.scan(cursor, 7, 0);
            for (k, _) in batch {
                assert!(seen.insert(k.clone()), "duplicate {k:?}");
            }
            if next == 0 {
                break;
            }
            assert!(next > cursor);
            cursor = next;
        }
        assert_eq!(seen.len(), 1000);
    }

    #[test]
    fn the_hash_is_stable() {
        assert_eq!(stable_hash(b""), stable_hash(b""));
        assert_ne!(stable_hash(b"a"), stable_hash(b"b"));
        assert_ne!(stable_hash(b"key:1"), stable_hash(b"key:10"));
    }
}
