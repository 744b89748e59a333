//! What a key costs in memory, and how recently and how often it was used.
//!
//! **Cost.** `maxmemory` limits the dataset, and eviction must be decided
//! from a figure every replica computes alike: a node's allocator or RSS
//! also holds the raft log, client buffers and allocator slack, which
//! differ from node to node and have nothing to do with what eviction can
//! free. So each entry's cost is an estimate computed from the entry
//! alone, by [`entry_cost`], from the sizes of the structures that really
//! hold it (the keyspace's hash table slot and scan-order node, the key and
//! value allocations, a collection's per-element slots). The keyspace keeps
//! the sum up to date as entries change ([`super::Db::dataset_bytes`]).
//! A collection's cost samples its first [`ACCOUNT_SAMPLES`] elements in
//! its own order and scales by its length, as Redis's `MEMORY USAGE` does,
//! so one write to a million-element hash never walks the hash.
//! `tests/memory_cost.rs` checks these estimates against what the
//! allocator really hands out.
//!
//! **Access.** LRU and LFU eviction need to know when a key was last used
//! and how often. That is not replicated state: reads are served by one
//! node, and the leader's view is the one eviction uses (it alone picks
//! victims, and proposes their deletion through the log). Each entry holds
//! one atomic word, written on access with relaxed ordering from `&self`
//! reads, and ignored by equality, snapshots and digests. Its layout is
//! Redis's, but for the LRU clock's unit: under an LRU policy the
//! milliseconds clock of the last access (wrapping every 49 days, so an
//! idle time is exact up to that; Redis counts seconds, which cannot tell
//! apart the keys of one busy second); under an LFU policy the minutes clock of the last decrement (16 bits)
//! and a logarithmic counter (8 bits), incremented with probability
//! `1 / ((counter - 5) * lfu-log-factor + 1)` and decremented by one per
//! `lfu-decay-time` minutes without access.

use std::mem::size_of;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;

use super::db::{mix, ScanMap, Value, SLOT_CHUNK};
use super::hashes::HashLayout;
use super::keys::RestoredAccess;
use super::zsets::ZSet;

/// Elements of a collection sampled for its accounted cost.
pub const ACCOUNT_SAMPLES: usize = 16;

/// The counter a new key starts with under LFU (Redis's `LFU_INIT_VAL`), so
/// a key just written is not the first victim.
pub const LFU_INIT: u32 = 5;

/// How the access word is kept: chosen by the node's `maxmemory-policy`,
/// `lfu-log-factor` and `lfu-decay-time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessMode {
    pub lfu: bool,
    pub lfu_log_factor: u32,
    pub lfu_decay_minutes: u32,
}

impl Default for AccessMode {
    fn default() -> Self {
        AccessMode {
            lfu: false,
            lfu_log_factor: 10,
            lfu_decay_minutes: 1,
        }
    }
}

/// The access word of one entry: see the module docs. Equal to every
/// other, so two replicas that applied the same log compare equal.
#[derive(Default)]
pub struct Access(AtomicU32);

impl Access {
    /// A new key's word, written at `now` (ms).
    pub fn new(mode: &AccessMode, now: u64) -> Self {
        Access(AtomicU32::new(Self::fresh(mode, now)))
    }

    fn fresh(mode: &AccessMode, now: u64) -> u32 {
        if mode.lfu {
            (minutes(now) << 8) | LFU_INIT
        } else {
            millis(now)
        }
    }

    /// Records one access at `now` (ms). `noise` is any 64-bit value that
    /// differs between calls (the LFU increment is probabilistic).
    pub fn touch(&self, mode: &AccessMode, now: u64, noise: u64) {
        let word = if mode.lfu {
            let counter = self.decayed_counter(mode, now);
            let counter = log_incr(counter, mode.lfu_log_factor, noise);
            (minutes(now) << 8) | counter
        } else {
            millis(now)
        };
        self.0.store(word, Ordering::Relaxed);
    }

    /// Milliseconds since the last access, under LRU: eviction's score.
    pub fn idle_ms(&self, now: u64) -> u64 {
        let last = self.0.load(Ordering::Relaxed);
        u64::from(millis(now).wrapping_sub(last))
    }

    /// Seconds since the last access (OBJECT IDLETIME), under LRU.
    pub fn idle_seconds(&self, now: u64) -> u64 {
        self.idle_ms(now) / 1000
    }

    /// The LFU counter as of `now`, decay applied (OBJECT FREQ).
    pub fn frequency(&self, mode: &AccessMode, now: u64) -> u32 {
        self.decayed_counter(mode, now)
    }

    fn decayed_counter(&self, mode: &AccessMode, now: u64) -> u32 {
        let word = self.0.load(Ordering::Relaxed);
        let counter = word & 0xff;
        let last = (word >> 8) & 0xffff;
        let elapsed = (minutes(now) + 0x1_0000 - last) & 0xffff;
        let periods = elapsed.checked_div(mode.lfu_decay_minutes).unwrap_or(0);
        counter.saturating_sub(periods)
    }

    /// RESTORE's IDLETIME or FREQ, as Redis's `objectSetLRUOrLFU` sets
    /// them: under LFU a FREQ becomes the counter (decayed from now on);
    /// under LRU an IDLETIME dates the last access that many seconds back
    /// (at most 2^32 ms, about 49 days, the span of the LRU clock kept
    /// here). The option of the other policy is ignored, as in Redis.
    pub fn restore(&self, mode: &AccessMode, now: u64, access: RestoredAccess) {
        let word = match access {
            RestoredAccess::Freq(freq) if mode.lfu => (minutes(now) << 8) | u32::from(freq),
            RestoredAccess::IdleSeconds(idle) if !mode.lfu => {
                let idle_ms = idle.saturating_mul(1000).min(u64::from(u32::MAX)) as u32;
                millis(now).wrapping_sub(idle_ms)
            }
            _ => return,
        };
        self.0.store(word, Ordering::Relaxed);
    }

    /// The word to keep when a write replaces an entry's value: its history
    /// stays (Redis keeps the LRU/LFU data of an overwritten key).
    pub fn carry(&self) -> Access {
        Access(AtomicU32::new(self.0.load(Ordering::Relaxed)))
    }
}

impl Clone for Access {
    fn clone(&self) -> Self {
        self.carry()
    }
}

impl PartialEq for Access {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Access({})", self.0.load(Ordering::Relaxed))
    }
}

fn millis(now_ms: u64) -> u32 {
    now_ms as u32
}

fn minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & 0xffff) as u32
}

/// Redis's `LFULogIncr`: the counter grows logarithmically with accesses.
fn log_incr(counter: u32, factor: u32, noise: u64) -> u32 {
    if counter >= 255 {
        return 255;
    }
    let base = counter.saturating_sub(LFU_INIT) as f64;
    let p = 1.0 / (base * factor as f64 + 1.0);
    let r = (mix(noise) >> 11) as f64 / (1u64 << 53) as f64;
    if r < p {
        counter + 1
    } else {
        counter
    }
}

/// A source of the `noise` [`Access::touch`] wants: a counter mixed with
/// the caller's key hash. Shared by `&self` reads, hence atomic.
#[derive(Default)]
pub struct Noise(AtomicU64);

impl Noise {
    pub fn next(&self, salt: u64) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed) ^ salt.rotate_left(17)
    }
}

impl Clone for Noise {
    fn clone(&self) -> Self {
        Noise(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}

impl std::fmt::Debug for Noise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Noise")
    }
}

/// A count kept by one replica (keys evicted since it started): not part
/// of the replicated state, so equal to every other.
#[derive(Clone, Debug, Default)]
pub struct Counter(pub u64);

impl PartialEq for Counter {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// What the allocator hands out for a request of `len` bytes: mimalloc
/// rounds small requests up to a multiple of 8 and larger ones to its
/// size classes (four per power of two), so a quarter of the request is
/// the worst it adds; an eighth is what it adds on average.
fn alloc(len: usize) -> u64 {
    match len {
        0 => 0,
        1..=64 => len.next_multiple_of(8) as u64,
        _ => len as u64 + (len as u64 >> 3),
    }
}

/// A `Bytes` held in two places (a sorted set's member, in its map and its
/// score index): its heap bytes, and the shared header that the first
/// clone allocates. Keys, fields and members a [`ScanMap`] holds are copies
/// of their own, without one.
fn shared_bytes(b: &Bytes) -> u64 {
    alloc(b.len()) + 32
}

/// One slot of the keyspace's hash table: the slot and its control byte,
/// at the table's average load (it doubles when 7/8 full, so it is between
/// 7/16 and 7/8 full: about 2/3 on average). The keyspace's table is
/// shared by all keys, so each is charged its average share.
fn table_slot<T>() -> u64 {
    ((size_of::<T>() + 1) * 3 / 2) as u64
}

/// A collection's own hash table of `n` slots of `T`, grown by inserts:
/// a power of two of buckets, at least four, at most 7/8 full.
fn table<T>(n: usize) -> u64 {
    let buckets = (n * 8).div_ceil(7).next_power_of_two().max(4);
    (buckets * (size_of::<T>() + 1) + 16) as u64
}

/// One element of a B-tree set of `T`: 11 per leaf node, nodes about 2/3
/// full when filled in random order, plus the internal nodes above them.
fn tree_slot<T>() -> u64 {
    (size_of::<T>() * 17 / 10) as u64
}

/// A B-tree set of `n` elements of `T`: one leaf node up to 11, then
/// [`tree_slot`] each.
fn tree<T>(n: usize) -> u64 {
    if n <= 11 {
        (11 * size_of::<T>() + 16) as u64
    } else {
        n as u64 * tree_slot::<T>()
    }
}

/// The slots of a [`ScanMap`] of `n` entries: its first chunk grows by
/// doubling (3/4 used on average), later chunks are allocated whole.
fn slots<V>(n: usize) -> u64 {
    let size = ScanMap::<V>::slot_size();
    if n < SLOT_CHUNK {
        (n * size * 4 / 3) as u64
    } else {
        (n * size) as u64
    }
}

/// A [`ScanMap`] of `n` entries beside the keys' and values' own bytes:
/// its slots, its index of slot numbers, its scan order.
fn scan_map<V>(n: usize) -> u64 {
    size_of::<ScanMap<V>>() as u64 + slots::<V>(n) + table::<u32>(n) + tree::<(u64, u32)>(n)
}

/// What one key of the keyspace costs beside its value: its slot (in the
/// whole chunks of a large keyspace), its index bucket, its scan-order
/// slot, the key bytes.
fn key_cost(key: &Bytes) -> u64 {
    ScanMap::<super::db::Entry>::slot_size() as u64
        + table_slot::<u32>()
        + tree_slot::<(u64, u32)>()
        + alloc(key.len())
}

/// The bytes of a collection's `len` elements, from the average of the
/// first `samples` (0: all of them) times `len`, as Redis's MEMORY USAGE
/// samples.
fn scaled<T>(
    len: usize,
    sample: impl Iterator<Item = T>,
    samples: usize,
    each: impl Fn(T) -> u64,
) -> u64 {
    if len == 0 {
        return 0;
    }
    let take = if samples == 0 { len } else { samples.min(len) };
    let mut n = 0u64;
    let mut total = 0u64;
    for item in sample.take(take) {
        n += 1;
        total += each(item);
    }
    match n {
        0 => 0,
        n => total / n * len as u64 + total % n * len as u64 / n,
    }
}

/// The bytes a value takes, sampling `samples` elements of a collection (0:
/// all of them).
pub fn value_cost(value: &Value, samples: usize) -> u64 {
    match value {
        Value::String(s) => alloc(s.len()),
        Value::Hash(h) => match h.layout() {
            HashLayout::Packed(p) => alloc(p.byte_len()),
            HashLayout::Table(t) => {
                let n = t.len();
                scan_map::<Bytes>(n)
                    + scaled(n, t.iter(), samples, |(f, v)| {
                        alloc(f.len()) + alloc(v.len())
                    })
            }
        },
        Value::Set(s) => {
            let n = s.len();
            scan_map::<()>(n) + scaled(n, s.keys(), samples, |m| alloc(m.len()))
        }
        Value::List(l) => {
            // A VecDeque: one slot per element (capacity grows by doubling:
            // 3/4 used on average), and the element bytes.
            let n = l.len();
            (size_of::<super::lists::List>() + n * size_of::<Bytes>() * 4 / 3) as u64
                + scaled(n, l.iter(), samples, |e| alloc(e.len()))
        }
        Value::ZSet(z) => {
            let n = z.len();
            (size_of::<ZSet>() - size_of::<ScanMap<f64>>()) as u64
                + scan_map::<f64>(n)
                + tree::<(f64, Bytes)>(n)
                + scaled(n, z.iter(), samples, |(m, _)| {
                    alloc(m.len()) + shared_bytes(m)
                })
        }
        // Entries of many shapes; their encoded size, doubled for the
        // B-tree and vectors that hold them in memory.
        Value::Stream(stream) => {
            postcard::to_stdvec(stream).map_or(0, |b| b.len() as u64) * 2 + 256
        }
    }
}

/// What one entry of the keyspace costs: the figure `maxmemory` limits.
pub fn entry_cost(key: &Bytes, value: &Value) -> u64 {
    key_cost(key) + value_cost(value, ACCOUNT_SAMPLES)
}

/// MEMORY USAGE key [SAMPLES n]: the entry's cost with `samples` elements
/// of a collection sampled (0: every element).
pub fn memory_usage(key: &Bytes, value: &Value, samples: usize) -> u64 {
    key_cost(key) + value_cost(value, samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_idle_time_counts_seconds_since_the_last_touch() {
        let mode = AccessMode::default();
        let access = Access::new(&mode, 10_000);
        assert_eq!(access.idle_seconds(15_500), 5);
        access.touch(&mode, 20_000, 1);
        assert_eq!(access.idle_seconds(20_999), 0);
    }

    #[test]
    fn lfu_counters_grow_slowly_and_decay_per_period() {
        let mode = AccessMode {
            lfu: true,
            ..AccessMode::default()
        };
        let access = Access::new(&mode, 0);
        assert_eq!(access.frequency(&mode, 0), LFU_INIT);
        for i in 0..1000 {
            access.touch(&mode, 0, i);
        }
        let hot = access.frequency(&mode, 0);
        // 1000 hits at factor 10 reach about 18 in Redis's table.
        assert!((10..40).contains(&hot), "{hot}");
        // Three minutes untouched: three periods of one minute.
        assert_eq!(access.frequency(&mode, 180_000), hot - 3);
    }

    #[test]
    fn a_collection_is_costed_from_a_sample_scaled_by_its_length() {
        let mut h = super::super::hashes::Hash::default();
        for i in 0..1000 {
            h.insert(&Bytes::from(format!("f{i:04}")), &Bytes::from_static(b"v"));
        }
        let value = Value::Hash(h);
        let sampled = value_cost(&value, ACCOUNT_SAMPLES);
        let exact = value_cost(&value, 0);
        assert_eq!(sampled, exact, "fields of one size: the sample is exact");
    }
}
