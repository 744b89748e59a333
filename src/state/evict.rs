//! Which keys to evict when the dataset is over `maxmemory`.
//!
//! Eviction is decided once, by the leader, and applied through the log as
//! an [`super::Op::Evict`] naming the victims: replicas never evict on their
//! own, so they all delete the same keys at the same point of the log. The
//! choice itself depends on this node's access records (LRU clocks, LFU
//! counters: see [`super::memory`]) and on random draws, neither of which
//! is replicated; that is why it is made in one place and its result is
//! what gets replicated.
//!
//! The sampling is Redis's: the random policies draw keys at random; the
//! LRU and LFU policies draw `maxmemory-samples` keys per round into a
//! pool of the [`POOL_SIZE`] best candidates seen so far (kept between
//! rounds, as Redis keeps its pool) and evict the best of the pool.
//! `volatile-ttl` needs no sampling: the keyspace keeps deadlines in
//! order, so the soonest ones are taken exactly.
//!
//! A random key is drawn in O(log n) by picking a random point of the
//! 64-bit scan-order hash space and taking the next key; a random volatile
//! key, by picking a random time between the earliest and the latest
//! deadline and taking the next deadline.

use std::collections::HashSet;

use bytes::Bytes;

use super::db::{Db, Entry, SeededRng};

/// Candidates the LRU/LFU pool keeps (Redis's `EVPOOL_SIZE`).
pub const POOL_SIZE: usize = 16;

/// The most keys one eviction proposal names.
pub const MAX_VICTIMS: usize = 8192;

/// `maxmemory-policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    NoEviction,
    AllKeysLru,
    AllKeysLfu,
    AllKeysRandom,
    VolatileLru,
    VolatileLfu,
    VolatileRandom,
    VolatileTtl,
}

impl Policy {
    pub const ALL: [Policy; 8] = [
        Policy::NoEviction,
        Policy::AllKeysLru,
        Policy::AllKeysLfu,
        Policy::AllKeysRandom,
        Policy::VolatileLru,
        Policy::VolatileLfu,
        Policy::VolatileRandom,
        Policy::VolatileTtl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Policy::NoEviction => "noeviction",
            Policy::AllKeysLru => "allkeys-lru",
            Policy::AllKeysLfu => "allkeys-lfu",
            Policy::AllKeysRandom => "allkeys-random",
            Policy::VolatileLru => "volatile-lru",
            Policy::VolatileLfu => "volatile-lfu",
            Policy::VolatileRandom => "volatile-random",
            Policy::VolatileTtl => "volatile-ttl",
        }
    }

    pub fn parse(name: &str) -> Option<Policy> {
        Policy::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// Only keys with a deadline may go.
    pub fn volatile_only(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }

    /// Access is counted (LFU) rather than timed (LRU).
    pub fn lfu(self) -> bool {
        matches!(self, Policy::AllKeysLfu | Policy::VolatileLfu)
    }

    /// Whether the policy can free anything in `db`: false for
    /// `noeviction`, an empty keyspace, or a volatile policy with no key
    /// that has a deadline. A write that would grow the dataset past the
    /// limit is then refused with OOM.
    pub fn can_evict(self, keys: usize, volatile_keys: usize) -> bool {
        match self {
            Policy::NoEviction => false,
            p if p.volatile_only() => volatile_keys > 0,
            _ => keys > 0,
        }
    }
}

/// The LRU/LFU candidates kept between rounds: `(score, key)`, the best
/// (highest score: idlest, or least frequently used) last.
#[derive(Debug, Default)]
pub struct Pool {
    candidates: Vec<(u64, Bytes)>,
}

impl Pool {
    fn offer(&mut self, score: u64, key: &Bytes) {
        if self.candidates.iter().any(|(_, k)| k == key) {
            return;
        }
        if self.candidates.len() == POOL_SIZE {
            if self.candidates[0].0 >= score {
                return;
            }
            self.candidates.remove(0);
        }
        let at = self.candidates.partition_point(|(s, _)| *s < score);
        self.candidates.insert(at, (score, key.clone()));
    }

    fn take_best(&mut self) -> Option<Bytes> {
        self.candidates.pop().map(|(_, key)| key)
    }

    /// Forgets every candidate (the policy changed, or the keyspace was
    /// replaced).
    pub fn clear(&mut self) {
        self.candidates.clear();
    }
}

/// Picks keys to evict until their costs add up to `need` bytes, at most
/// [`MAX_VICTIMS`]; fewer (or none) when the policy runs out of keys it
/// may evict. `now` is the leader's clock (ms), `samples` is
/// `maxmemory-samples`.
pub fn victims(
    db: &Db,
    policy: Policy,
    samples: usize,
    need: u64,
    now: u64,
    rng: &mut SeededRng,
    pool: &mut Pool,
) -> Vec<Bytes> {
    let mut picked = Picked::default();
    if policy == Policy::VolatileTtl {
        for key in db.by_deadline() {
            if picked.freed >= need || picked.keys.len() >= MAX_VICTIMS {
                break;
            }
            if let Some(entry) = db.peek(key, now) {
                picked.take(key, entry);
            }
        }
        return picked.keys;
    }
    let volatile = policy.volatile_only();
    let draw = |rng: &mut SeededRng| {
        if volatile {
            db.random_volatile(rng)
        } else {
            db.random_entry(rng)
        }
    };
    // Draws that found nothing new in a row: the keyspace (or its volatile
    // part) is smaller than what is asked for, or already all picked.
    let mut misses = 0;
    while picked.freed < need && picked.keys.len() < MAX_VICTIMS && misses < 64 {
        let found = match policy {
            Policy::AllKeysRandom | Policy::VolatileRandom => {
                draw(rng).filter(|(_, e)| !e.is_expired(now))
            }
            _ => {
                for _ in 0..samples.max(1) {
                    if let Some((key, entry)) = draw(rng) {
                        if !entry.is_expired(now) && !picked.set.contains(key) {
                            pool.offer(score(db, policy, entry, now), key);
                        }
                    }
                }
                best_in_pool(db, pool, now, volatile, &picked.set)
            }
        };
        match found {
            Some((key, entry)) if picked.take(key, entry) => misses = 0,
            _ => misses += 1,
        }
    }
    picked.keys
}

/// The victims chosen so far.
#[derive(Default)]
struct Picked {
    set: HashSet<Bytes>,
    keys: Vec<Bytes>,
    freed: u64,
}

impl Picked {
    /// Adds a victim; false if it was picked already.
    fn take(&mut self, key: &Bytes, entry: &Entry) -> bool {
        if !self.set.insert(key.clone()) {
            return false;
        }
        self.freed += entry.cost();
        self.keys.push(key.clone());
        true
    }
}

/// The pool's best candidate that is still there to evict.
fn best_in_pool<'a>(
    db: &'a Db,
    pool: &mut Pool,
    now: u64,
    volatile: bool,
    picked: &HashSet<Bytes>,
) -> Option<(&'a Bytes, &'a Entry)> {
    while let Some(key) = pool.take_best() {
        if picked.contains(&key) {
            continue;
        }
        if let Some((key, entry)) = db.peek_entry(&key, now) {
            if !volatile || entry.expires_at().is_some() {
                return Some((key, entry));
            }
        }
    }
    None
}

/// Higher is a better victim: idle milliseconds under LRU, 255 minus the
/// counter under LFU.
fn score(db: &Db, policy: Policy, entry: &Entry, now: u64) -> u64 {
    if policy.lfu() {
        255 - u64::from(entry.access().frequency(db.access_mode(), now).min(255))
    } else {
        entry.access().idle_ms(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::AccessMode;
    use crate::state::Value;

    fn b(s: String) -> Bytes {
        Bytes::from(s)
    }

    fn db_of(n: usize, volatile_every: usize) -> Db {
        let mut db = Db::new();
        for i in 0..n {
            let deadline =
                (volatile_every > 0 && i % volatile_every == 0).then_some(1_000_000 + i as u64);
            db.insert(
                b(format!("k{i}")),
                Value::String(Bytes::from_static(b"v")),
                deadline,
            );
        }
        db
    }

    #[test]
    fn victims_cover_what_is_needed_and_no_key_twice() {
        let db = db_of(1000, 1);
        for policy in &Policy::ALL[1..] {
            let need = db.dataset_bytes() / 4;
            let keys = victims(
                &db,
                *policy,
                5,
                need,
                0,
                &mut SeededRng::new(7),
                &mut Pool::default(),
            );
            let unique: HashSet<_> = keys.iter().collect();
            assert_eq!(unique.len(), keys.len(), "{policy:?}");
            let freed: u64 = keys.iter().map(|k| db.peek(k, 0).unwrap().cost()).sum();
            assert!(freed >= need, "{policy:?}: {freed} < {need}");
        }
    }

    #[test]
    fn volatile_policies_take_only_keys_with_a_deadline() {
        let db = db_of(1000, 3);
        for policy in [
            Policy::VolatileLru,
            Policy::VolatileLfu,
            Policy::VolatileRandom,
            Policy::VolatileTtl,
        ] {
            let keys = victims(
                &db,
                policy,
                5,
                u64::MAX,
                0,
                &mut SeededRng::new(1),
                &mut Pool::default(),
            );
            assert!(!keys.is_empty());
            assert!(
                keys.iter()
                    .all(|k| db.peek(k, 0).unwrap().expires_at().is_some()),
                "{policy:?}"
            );
        }
        let none = db_of(10, 0);
        let keys = victims(
            &none,
            Policy::VolatileLru,
            5,
            1,
            0,
            &mut SeededRng::new(1),
            &mut Pool::default(),
        );
        assert!(keys.is_empty());
    }

    #[test]
    fn volatile_ttl_takes_the_soonest_deadlines_first() {
        let db = db_of(100, 1);
        let one = db.peek(&b("k0".into()), 0).unwrap().cost();
        let keys = victims(
            &db,
            Policy::VolatileTtl,
            5,
            one * 3,
            0,
            &mut SeededRng::new(1),
            &mut Pool::default(),
        );
        assert_eq!(keys, vec![b("k0".into()), b("k1".into()), b("k2".into())]);
    }

    #[test]
    fn lru_spares_a_key_just_read() {
        let mut db = Db::new();
        db.set_clock(0);
        for i in 0..200 {
            db.insert(
                b(format!("k{i}")),
                Value::String(Bytes::from_static(b"v")),
                None,
            );
        }
        let hot = b("k17".into());
        db.get(&hot, 100_000);
        let mut pool = Pool::default();
        let mut rng = SeededRng::new(3);
        let mut evicted = Vec::new();
        // Evict half the keys, ten at a time, as rounds of the leader would.
        for _ in 0..10 {
            let one = db.peek(&hot, 100_000).unwrap().cost();
            let keys = victims(
                &db,
                Policy::AllKeysLru,
                5,
                one * 10,
                100_000,
                &mut rng,
                &mut pool,
            );
            for k in &keys {
                db.remove(k);
            }
            evicted.extend(keys);
        }
        assert_eq!(evicted.len(), 100);
        assert!(!evicted.contains(&hot));
    }

    #[test]
    fn lfu_prefers_the_least_used() {
        let mut db = Db::new();
        db.set_access_mode(AccessMode {
            lfu: true,
            ..AccessMode::default()
        });
        for i in 0..50 {
            db.insert(
                b(format!("k{i}")),
                Value::String(Bytes::from_static(b"v")),
                None,
            );
        }
        for i in 0..25 {
            for _ in 0..200 {
                db.get(&b(format!("k{i}")), 0);
            }
        }
        let one = db.peek(&b("k0".into()), 0).unwrap().cost();
        let keys = victims(
            &db,
            Policy::AllKeysLfu,
            10,
            one * 5,
            0,
            &mut SeededRng::new(5),
            &mut Pool::default(),
        );
        assert_eq!(keys.len(), 5);
        for k in keys {
            let i: usize = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
            assert!(i >= 25, "a used key went: {i}");
        }
    }
}
