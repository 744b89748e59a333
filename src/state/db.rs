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

use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::mem::size_of;

use bytes::Bytes;

use super::capture::Capture;
use super::memory::{self, Access, AccessMode, Noise};
use super::slot_index::SlotIndex;
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

    /// A key whose stable hash is known already.
    pub(super) fn from_parts(hash: u64, bytes: Bytes) -> Self {
        ScanKey { hash, bytes }
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
/// Entries live in one dense vector of slots (key, value, stable hash).
/// Point lookups go through a hash table of slot numbers (keyed SipHash,
/// so clients cannot aim keys at one bucket): 4 bytes a bucket, where a
/// `HashMap` of keys and values spent the key's handle and the whole value
/// on every bucket, half of them empty. The scan order is an ordered map
/// from stable hash to the first slot with that hash; the rare keys that
/// share a stable hash are chained from it in byte order, so the order is
/// a function of the keys alone, the same on every replica. A removal
/// moves the last slot into the hole and repoints its two references.
#[derive(Clone)]
pub struct ScanMap<V> {
    slots: Slots<V>,
    index: SlotIndex,
    order: BTreeMap<u64, u32>,
}

/// One entry of a [`ScanMap`].
#[derive(Clone)]
struct Slot<V> {
    /// The key's [`stable_hash`]: its place in the scan order.
    hash: u64,
    /// The next slot with the same stable hash, in byte order ([`NONE`]).
    next: u32,
    key: Bytes,
    value: V,
}

/// The end of a chain of slots.
const NONE: u32 = u32::MAX;

/// Slots per chunk of a [`Slots`] past its first: 4096 (about 450 KiB of
/// keyspace slots).
const CHUNK_SHIFT: u32 = 12;
const CHUNK: usize = 1 << CHUNK_SHIFT;
pub(super) const SLOT_CHUNK: usize = CHUNK;

/// The slot vector of a [`ScanMap`], in chunks of [`CHUNK`] slots.
///
/// One vector that doubles would hold up to twice the memory its slots
/// need, and growing a keyspace of a million keys would copy 112 MB at
/// once, on the driver, between two batches. The first chunk grows as a
/// vector does, so a small hash or set pays for what it holds; later
/// chunks are allocated whole, one at a time, and never move.
#[derive(Clone)]
struct Slots<V> {
    chunks: Vec<Vec<Slot<V>>>,
    len: usize,
}

impl<V> Slots<V> {
    fn with_capacity(n: usize) -> Self {
        Slots {
            chunks: vec![Vec::with_capacity(n.min(CHUNK))],
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, slot: Slot<V>) {
        let last = self.chunks.last_mut().expect("one chunk at least");
        if last.len() < CHUNK {
            last.push(slot);
        } else {
            let mut chunk = Vec::with_capacity(CHUNK);
            chunk.push(slot);
            self.chunks.push(chunk);
        }
        self.len += 1;
    }

    /// Removes slot `i`, moving the last slot into its place.
    fn swap_remove(&mut self, i: usize) -> Slot<V> {
        let last = self
            .chunks
            .last_mut()
            .and_then(Vec::pop)
            .expect("a slot to remove");
        self.len -= 1;
        if self.chunks.len() > 1 && self.chunks.last().is_some_and(Vec::is_empty) {
            self.chunks.pop();
        }
        if i == self.len {
            return last;
        }
        std::mem::replace(&mut self[i], last)
    }

    /// Gives back the first chunk's room once three quarters of it are
    /// unused (later chunks are freed as they empty).
    fn trim(&mut self) {
        if let [only] = &mut self.chunks[..] {
            if only.capacity() > 64 && only.len() < only.capacity() / 4 {
                only.shrink_to(only.len() * 2);
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Slot<V>> {
        self.chunks.iter().flatten()
    }
}

impl<V> std::ops::Index<usize> for Slots<V> {
    type Output = Slot<V>;

    fn index(&self, i: usize) -> &Slot<V> {
        &self.chunks[i >> CHUNK_SHIFT][i & (CHUNK - 1)]
    }
}

impl<V> std::ops::IndexMut<usize> for Slots<V> {
    fn index_mut(&mut self, i: usize) -> &mut Slot<V> {
        &mut self.chunks[i >> CHUNK_SHIFT][i & (CHUNK - 1)]
    }
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

impl<V: PartialEq> PartialEq for ScanMap<V> {
    /// The same keys with equal values, whatever order they came in.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .slots
                .iter()
                .all(|s| other.get(&s.key) == Some(&s.value))
    }
}

impl<V> ScanMap<V> {
    pub fn new() -> Self {
        ScanMap::with_capacity(0)
    }

    /// Room for `n` entries without growing (a snapshot being loaded).
    pub fn with_capacity(n: usize) -> Self {
        ScanMap {
            slots: Slots::with_capacity(n),
            index: SlotIndex::with_capacity(n),
            order: BTreeMap::new(),
        }
    }

    /// The bytes one entry takes in the slot vector (memory accounting).
    pub(super) fn slot_size() -> usize {
        size_of::<Slot<V>>()
    }

    /// Builds a map from entries whose scan keys come mostly in scan order
    /// (a snapshot's): the scan order is sorted once and built in one
    /// pass, not by one tree insert per key. A key given twice keeps its
    /// last value.
    pub fn from_entries(entries: impl Iterator<Item = (Bytes, V)>, capacity: usize) -> Self {
        let mut map = ScanMap::with_capacity(capacity);
        for (key, value) in entries {
            if let Some(i) = map.find(&key) {
                map.slots[i as usize].value = value;
                continue;
            }
            map.push(key, value);
        }
        let slots = &mut map.slots;
        let mut sorted: Vec<u32> = (0..slots.len() as u32).collect();
        sorted.sort_by(|&a, &b| {
            let (a, b) = (&slots[a as usize], &slots[b as usize]);
            (a.hash, &a.key).cmp(&(b.hash, &b.key))
        });
        let mut heads = Vec::with_capacity(sorted.len());
        for pair in sorted.windows(2) {
            if slots[pair[0] as usize].hash == slots[pair[1] as usize].hash {
                slots[pair[0] as usize].next = pair[1];
            }
        }
        let mut previous = None;
        for &i in &sorted {
            let hash = slots[i as usize].hash;
            if previous != Some(hash) {
                heads.push((hash, i));
                previous = Some(hash);
            }
        }
        map.order = heads.into_iter().collect();
        map
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot holding `key`.
    fn find(&self, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.index.hash(key), |i| slots[i as usize].key[..] == *key)
    }

    pub fn get(&self, key: &Bytes) -> Option<&V> {
        self.find(key).map(|i| &self.slots[i as usize].value)
    }

    pub fn get_mut(&mut self, key: &Bytes) -> Option<&mut V> {
        self.find(key).map(|i| &mut self.slots[i as usize].value)
    }

    pub fn contains(&self, key: &Bytes) -> bool {
        self.find(key).is_some()
    }

    /// Appends a new key's slot and enters it in the index; the caller
    /// links it into the scan order (or builds the order whole).
    fn push(&mut self, key: Bytes, value: V) -> u32 {
        let i = u32::try_from(self.slots.len())
            .ok()
            .filter(|&i| i != NONE)
            .expect("fewer than 2^32 - 1 entries in one map");
        let hash = self.index.hash(&key);
        self.slots.push(Slot {
            hash: stable_hash(&key),
            next: NONE,
            // A key of its own, of its exact size: the caller's is usually
            // a clone of an op's, whose shared header (24 bytes) would
            // otherwise stay with the key for its whole life.
            key: Bytes::copy_from_slice(&key),
            value,
        });
        let slots = &self.slots;
        self.index
            .insert(hash, i, slots.len(), |j| &slots[j as usize].key[..]);
        i
    }

    /// Enters slot `i` in the scan order, in byte order among the slots
    /// that share its stable hash.
    fn link(&mut self, i: u32) {
        let slots = &mut self.slots;
        let hash = slots[i as usize].hash;
        match self.order.entry(hash) {
            btree_map::Entry::Vacant(e) => {
                e.insert(i);
            }
            btree_map::Entry::Occupied(mut e) => {
                let head = *e.get();
                if slots[i as usize].key < slots[head as usize].key {
                    slots[i as usize].next = head;
                    *e.get_mut() = i;
                    return;
                }
                let mut p = head;
                loop {
                    let next = slots[p as usize].next;
                    if next == NONE || slots[next as usize].key > slots[i as usize].key {
                        break;
                    }
                    p = next;
                }
                slots[i as usize].next = slots[p as usize].next;
                slots[p as usize].next = i;
            }
        }
    }

    /// Takes slot `i` out of the scan order.
    fn unlink(&mut self, i: u32) {
        let slots = &mut self.slots;
        let (hash, next) = (slots[i as usize].hash, slots[i as usize].next);
        let head = self.order.get_mut(&hash).expect("a slot is in the order");
        if *head == i {
            if next == NONE {
                self.order.remove(&hash);
            } else {
                *head = next;
            }
        } else {
            let mut p = *head;
            while slots[p as usize].next != i {
                p = slots[p as usize].next;
            }
            slots[p as usize].next = next;
        }
        slots[i as usize].next = NONE;
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, key: Bytes, value: V) -> Option<V> {
        if let Some(i) = self.find(&key) {
            return Some(std::mem::replace(&mut self.slots[i as usize].value, value));
        }
        let i = self.push(key, value);
        self.link(i);
        None
    }

    /// Changes the value at `key` in place (`f(Some(value))`, which returns
    /// None), or inserts what `f(None)` returns: one lookup for a present
    /// key, where `insert` would need the new value first.
    pub fn upsert(&mut self, key: &Bytes, f: impl FnOnce(Option<&mut V>) -> Option<V>) {
        match self.find(key) {
            Some(i) => {
                f(Some(&mut self.slots[i as usize].value));
            }
            None => {
                if let Some(value) = f(None) {
                    let i = self.push(key.clone(), value);
                    self.link(i);
                }
            }
        }
    }

    pub fn remove(&mut self, key: &Bytes) -> Option<V> {
        let slots = &self.slots;
        let i = self
            .index
            .remove(self.index.hash(key), |i| slots[i as usize].key == key)?;
        self.unlink(i);
        let last = (self.slots.len() - 1) as u32;
        if i != last {
            // The last slot moves into the hole: repoint the index and the
            // scan order at it.
            let slots = &self.slots;
            let moved = &slots[last as usize];
            self.index
                .repoint(self.index.hash(&moved.key), last, i, |j| {
                    // Slot `last` is about to be `i`'s: the key it will hold.
                    let j = if j == i { last } else { j };
                    &slots[j as usize].key[..]
                });
            let head = self
                .order
                .get_mut(&moved.hash)
                .expect("every slot is in the order");
            if *head == last {
                *head = i;
            } else {
                let mut p = *head;
                while self.slots[p as usize].next != last {
                    p = self.slots[p as usize].next;
                }
                self.slots[p as usize].next = i;
            }
        }
        let slot = self.slots.swap_remove(i as usize);
        // Give back room once three quarters of it are unused.
        self.slots.trim();
        let slots = &self.slots;
        self.index
            .removed(slots.len(), |j| &slots[j as usize].key[..]);
        Some(slot.value)
    }

    /// The slots in scan order from the heads `heads` yields.
    fn walk<'a>(
        &'a self,
        heads: impl Iterator<Item = &'a u32> + 'a,
    ) -> Walk<'a, V, impl Iterator<Item = &'a u32> + 'a> {
        Walk {
            slots: &self.slots,
            heads,
            next: NONE,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &V)> {
        self.walk(self.order.values()).map(|s| (&s.key, &s.value))
    }

    pub fn keys(&self) -> impl Iterator<Item = &Bytes> {
        self.walk(self.order.values()).map(|s| &s.key)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// The stored key and value at `key`.
    pub fn get_key_value(&self, key: &Bytes) -> Option<(&Bytes, &V)> {
        self.find(key).map(|i| {
            let s = &self.slots[i as usize];
            (&s.key, &s.value)
        })
    }

    /// The first entry at or after `hash` in scan order, wrapping around to
    /// the first one: with a uniformly drawn `hash`, a random entry in
    /// O(log n).
    pub fn at_or_after(&self, hash: u64) -> Option<(&Bytes, &V)> {
        let (_, &head) = self
            .order
            .range(hash..)
            .next()
            .or_else(|| self.order.iter().next())?;
        let s = &self.slots[head as usize];
        Some((&s.key, &s.value))
    }

    /// The entries after `cursor` in scan order (all of them for None),
    /// with their stable hashes: a walk that can stop and resume.
    pub(super) fn after<'a>(
        &'a self,
        cursor: Option<&'a ScanKey>,
    ) -> impl Iterator<Item = (u64, &'a Bytes, &'a V)> + 'a {
        let from = cursor.map_or(0, |c| c.hash);
        self.walk(self.order.range(from..).map(|(_, head)| head))
            .filter(move |s| cursor.is_none_or(|c| (s.hash, &s.key) > (c.hash, &c.bytes)))
            .map(|s| (s.hash, &s.key, &s.value))
    }

    /// The entry at position `n` in scan order (used for random picks; O(n)).
    pub fn nth(&self, n: usize) -> Option<(&Bytes, &V)> {
        self.iter().nth(n)
    }

    /// Visits at least `count` entries (fewer only at the end) starting at
    /// `cursor`, always finishing the run of entries that share the last
    /// visited hash so the next cursor moves strictly forward. Returns the
    /// visited entries and the next cursor (0 when the walk is complete).
    pub fn scan(&self, cursor: u64, count: usize) -> (Vec<(&Bytes, &V)>, u64) {
        let count = count.max(1);
        let mut out = Vec::with_capacity(count.min(1024));
        for (&hash, &head) in self.order.range(cursor..) {
            if out.len() >= count {
                return (out, hash);
            }
            let mut i = head;
            while i != NONE {
                let s = &self.slots[i as usize];
                out.push((&s.key, &s.value));
                i = s.next;
            }
        }
        (out, 0)
    }
}

/// Slots in scan order: each head, then the chain behind it.
struct Walk<'a, V, H> {
    slots: &'a Slots<V>,
    heads: H,
    next: u32,
}

impl<'a, V, H: Iterator<Item = &'a u32>> Iterator for Walk<'a, V, H> {
    type Item = &'a Slot<V>;

    fn next(&mut self) -> Option<&'a Slot<V>> {
        if self.next == NONE {
            self.next = *self.heads.next()?;
        }
        let slot = &self.slots[self.next as usize];
        self.next = slot.next;
        Some(slot)
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
    /// The database index the snapshot being encoded knows this keyspace
    /// by: the one it had when the snapshot began (SWAPDB may move it).
    capture_label: u32,
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
    pub(super) fn begin_capture(&mut self, label: u32) -> u64 {
        let keys = self.entries.len() as u64;
        self.capture = Some(Box::new(Capture::new(keys)));
        self.capture_label = label;
        keys
    }

    /// The keys the running capture holds (0 without one).
    pub(super) fn capture_keys(&self) -> u64 {
        self.capture.as_ref().map_or(0, |c| c.expected())
    }

    /// The label the running capture was begun with; None without one.
    pub(super) fn capture_label(&self) -> Option<u32> {
        self.capture.as_ref().map(|_| self.capture_label)
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
            // A copy: the caller's key is a slice of the buffer its op
            // came in, which the index would hold whole for the key's life.
            self.deadlines.insert((at, Bytes::copy_from_slice(&key)));
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
            self.deadlines.insert((at, Bytes::copy_from_slice(key)));
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

    /// Undoes `z ^= z >> shift`.
    fn unxorshift(z: u64, shift: u32) -> u64 {
        let mut y = z;
        for _ in 0..64 / shift + 1 {
            y = z ^ (y >> shift);
        }
        y
    }

    /// The multiplicative inverse of an odd number modulo 2^64.
    fn inverse(c: u64) -> u64 {
        let mut x = c;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(c.wrapping_mul(x)));
        }
        x
    }

    /// The word `mix` maps to `z`.
    fn unmix(z: u64) -> u64 {
        let z = unxorshift(z, 31).wrapping_mul(inverse(0x94d0_49bb_1331_11eb));
        let z = unxorshift(z, 27).wrapping_mul(inverse(0xbf58_476d_1ce4_e5b9));
        unxorshift(z, 30)
    }

    /// `n` different 16-byte keys with one stable hash: the second word of
    /// each cancels what its first word did to the running hash.
    /// The index resizes a few slots per operation (`slot_index`): while
    /// a map grows to 20,000 keys and shrinks back, every key stays
    /// reachable through each resize and the scan order stays whole.
    #[test]
    fn a_scan_map_finds_every_key_while_its_index_resizes() {
        let key = |i: usize| b(&format!("key:{i}"));
        let mut map = ScanMap::new();
        let (mut resizing_seen, mut resizes) = (0usize, 0usize);
        let mut was_resizing = false;
        let check = |map: &ScanMap<usize>, live: std::ops::Range<usize>| {
            for i in live.clone().step_by(7) {
                assert_eq!(map.get(&key(i)), Some(&i), "key {i} lost");
            }
            assert_eq!(map.len(), live.len());
            assert_eq!(map.iter().count(), live.len());
        };
        for i in 0..20_000 {
            assert_eq!(map.insert(key(i), i), None);
            let resizing = map.index.resizing();
            resizing_seen += usize::from(resizing);
            resizes += usize::from(resizing && !was_resizing);
            was_resizing = resizing;
            if resizing || i % 1000 == 0 {
                check(&map, 0..i + 1);
            }
        }
        // Doublings from 8 up to 20,000 entries; each moved a few slots per
        // insert, so the index was mid-resize for many inserts.
        assert!(resizes >= 10, "{resizes} resizes");
        assert!(resizing_seen > 5_000, "{resizing_seen} inserts mid-resize");
        let mut shrinks = 0;
        for i in 0..19_990 {
            assert_eq!(map.remove(&key(i)), Some(i));
            let resizing = map.index.resizing();
            shrinks += usize::from(resizing && !was_resizing);
            was_resizing = resizing;
            if resizing || i % 1000 == 0 {
                check(&map, i + 1..20_000);
            }
            assert_eq!(map.get(&key(i)), None);
        }
        assert!(shrinks >= 5, "{shrinks} shrinks");
        check(&map, 19_990..20_000);
    }

    fn colliding_keys(n: u64) -> Vec<Bytes> {
        let h0 = 0x9e37_79b9_7f4a_7c15 ^ 16u64.wrapping_mul(0xff51_afd7_ed55_8ccd);
        let after_first = |w: u64| {
            (h0 ^ mix(w))
                .rotate_left(27)
                .wrapping_mul(0x94d0_49bb_1331_11eb)
        };
        let target = after_first(0) ^ mix(0);
        (0..n)
            .map(|w1| {
                let w2 = unmix(after_first(w1) ^ target);
                let mut key = w1.to_le_bytes().to_vec();
                key.extend_from_slice(&w2.to_le_bytes());
                Bytes::from(key)
            })
            .collect()
    }

    #[test]
    fn colliding_keys_collide() {
        assert_eq!(mix(unmix(12345)), 12345);
        let keys = colliding_keys(5);
        let hash = stable_hash(&keys[0]);
        assert!(keys.iter().all(|k| stable_hash(k) == hash));
        assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 5);
    }

    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum MapStep {
        Insert(usize, u8),
        Remove(usize),
    }

    proptest! {
        /// A ScanMap against a BTreeMap ordered by (stable hash, bytes),
        /// with keys of which a third share one stable hash, so the chains
        /// of equal hashes are built, walked and unlinked too.
        #[test]
        fn a_scan_map_keeps_the_scan_order_of_a_model(
            steps in proptest::collection::vec(
                prop_oneof![
                    (0usize..24, any::<u8>()).prop_map(|(k, v)| MapStep::Insert(k, v)),
                    (0usize..24).prop_map(MapStep::Remove),
                ],
                0..120,
            ),
            reload in any::<bool>(),
        ) {
            let colliding = colliding_keys(8);
            let keys: Vec<Bytes> = (0..24)
                .map(|i| if i % 3 == 0 { colliding[i / 3].clone() } else { b(&format!("key:{i}")) })
                .collect();
            let mut map = ScanMap::new();
            let mut model: BTreeMap<ScanKey, u8> = BTreeMap::new();
            for step in steps {
                match step {
                    MapStep::Insert(k, v) => {
                        let key = keys[k].clone();
                        let old = model.insert(ScanKey::new(key.clone()), v);
                        prop_assert_eq!(map.insert(key, v), old);
                    }
                    MapStep::Remove(k) => {
                        let old = model.remove(&ScanKey::new(keys[k].clone()));
                        prop_assert_eq!(map.remove(&keys[k]), old);
                    }
                }
                if reload {
                    // A map built in one pass, as a snapshot load builds it.
                    let entries = map.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>();
                    let rebuilt = ScanMap::from_entries(entries.into_iter().rev(), 0);
                    prop_assert!(rebuilt == map);
                    map = rebuilt;
                }
                prop_assert_eq!(map.len(), model.len());
                let listed: Vec<(Bytes, u8)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
                let expected: Vec<(Bytes, u8)> =
                    model.iter().map(|(k, v)| (k.bytes().clone(), *v)).collect();
                prop_assert_eq!(&listed, &expected);
                for key in &keys {
                    prop_assert_eq!(map.get(key), model.get(&ScanKey::new(key.clone())));
                }
                // A walk resumed after any key goes on with the next one.
                for (i, (key, _)) in model.iter().enumerate() {
                    let next = map.after(Some(key)).next().map(|(_, k, _)| k.clone());
                    let want = model.keys().nth(i + 1).map(|k| k.bytes().clone());
                    prop_assert_eq!(next, want);
                }
                // SCAN visits every key once, in order.
                let mut cursor = 0;
                let mut scanned = Vec::new();
                loop {
                    let (batch, next) = map.scan(cursor, 2);
                    scanned.extend(batch.into_iter().map(|(k, v)| (k.clone(), *v)));
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                prop_assert_eq!(scanned, expected);
            }
        }
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
