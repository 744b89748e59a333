//! The point-lookup index of a [`ScanMap`](super::db::ScanMap): a hash
//! table of slot numbers that resizes a few entries at a time.
//!
//! A hash table that grows all at once rehashes every entry in one call.
//! For the keyspace that call runs on the raft driver, on every replica at
//! about the same key count: measured at 280 ms for 0.9M keys and 1.1 s for
//! 1.8M on this project's 2-core machine, long enough for a bulk load to
//! cost the leader its quorum (followers stop answering heartbeats for an
//! election timeout, all at once). So, as Redis's `dict` does, a resize
//! starts a second table and every later insert or removal moves
//! [`STEP`] slots from the old one into it; lookups probe the new table,
//! then the old one while it holds anything.
//!
//! The move walks slot numbers upwards (`moved` is the next slot to look
//! at), so it needs no cursor into the old table. A slot moved by the
//! caller's swap-removal is re-entered in the new table wherever it was,
//! and new slots always go to the new table, so once `moved` passes the
//! last slot the old table is empty. The new table is sized so that it
//! cannot fill before the move ends: growth doubles the capacity and each
//! insert moves [`STEP`] slots, so the move ends within a quarter of the old
//! capacity's inserts.
//!
//! Both tables hash with the same keyed SipHash, so a key is hashed once
//! per operation whichever table it is in.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

/// Slots moved from the old table per insert or removal while resizing.
const STEP: u32 = 4;

/// Tables smaller than this never shrink.
const MIN_SHRINK: usize = 64;

#[derive(Clone)]
pub(super) struct SlotIndex {
    /// Takes every new entry.
    table: HashTable<u32>,
    /// The table being emptied into `table` (empty when not resizing).
    old: HashTable<u32>,
    /// The next slot number to move out of `old`.
    moved: u32,
    hasher: RandomState,
}

impl SlotIndex {
    pub(super) fn with_capacity(n: usize) -> Self {
        SlotIndex {
            table: HashTable::with_capacity(n),
            old: HashTable::new(),
            moved: 0,
            hasher: RandomState::new(),
        }
    }

    pub(super) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// True while a resize is under way (tests).
    #[cfg(test)]
    pub(super) fn resizing(&self) -> bool {
        !self.old.is_empty()
    }

    /// The slot with `hash` for which `is` holds.
    pub(super) fn find(&self, hash: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        if let Some(&i) = self.table.find(hash, |&i| is(i)) {
            return Some(i);
        }
        if self.old.is_empty() {
            return None;
        }
        self.old.find(hash, |&i| is(i)).copied()
    }

    /// Enters new slot `slot` (hash `hash`). `key_of` gives any slot's key;
    /// `len` is the number of slots, `slot` included.
    pub(super) fn insert<'k>(
        &mut self,
        hash: u64,
        slot: u32,
        len: usize,
        key_of: impl Fn(u32) -> &'k [u8],
    ) {
        // hashbrown's capacity is what can be inserted before it would
        // rehash by itself (its tombstones count against it): a resize
        // starts first, to twice the live entries.
        if self.old.is_empty() && self.table.len() == self.table.capacity() {
            self.start((self.table.len() * 2).max(8));
        }
        self.step(len, &key_of);
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, slot, |&j| hasher.hash_one(key_of(j)));
    }

    /// Takes out the slot with `hash` for which `is` holds.
    pub(super) fn remove(&mut self, hash: u64, is: impl Fn(u32) -> bool) -> Option<u32> {
        if let Ok(found) = self.table.find_entry(hash, |&i| is(i)) {
            return Some(found.remove().0);
        }
        if self.old.is_empty() {
            return None;
        }
        let found = self.old.find_entry(hash, |&i| is(i)).ok()?;
        Some(found.remove().0)
    }

    /// Slot `from` (hash `hash`) now lives at `to`: it is entered in the
    /// new table, wherever it was.
    pub(super) fn repoint<'k>(
        &mut self,
        hash: u64,
        from: u32,
        to: u32,
        key_of: impl Fn(u32) -> &'k [u8],
    ) {
        if let Ok(found) = self.table.find_entry(hash, |&i| i == from) {
            *found.into_mut() = to;
            return;
        }
        let found = self
            .old
            .find_entry(hash, |&i| i == from)
            .expect("every slot is indexed");
        found.remove();
        let hasher = &self.hasher;
        self.table
            .insert_unique(hash, to, |&j| hasher.hash_one(key_of(j)));
    }

    /// After a removal: shrinks once three quarters of the room are
    /// unused, and moves on with a resize under way. `len` is the number
    /// of slots left.
    pub(super) fn removed<'k>(&mut self, len: usize, key_of: impl Fn(u32) -> &'k [u8]) {
        let capacity = self.table.capacity();
        if self.old.is_empty() && capacity > MIN_SHRINK && len < capacity / 4 {
            self.start(len * 2);
        }
        self.step(len, &key_of);
    }

    /// Starts a resize into a table with room for `capacity` entries.
    fn start(&mut self, capacity: usize) {
        self.old = std::mem::replace(&mut self.table, HashTable::with_capacity(capacity));
        self.moved = 0;
    }

    /// Moves up to [`STEP`] slots from the old table; ends the resize once
    /// every slot was looked at.
    fn step<'k>(&mut self, len: usize, key_of: &impl Fn(u32) -> &'k [u8]) {
        if self.old.is_empty() {
            return;
        }
        let end = (self.moved as usize).saturating_add(STEP as usize).min(len) as u32;
        while self.moved < end {
            let slot = self.moved;
            self.moved += 1;
            let hash = self.hasher.hash_one(key_of(slot));
            if let Ok(found) = self.old.find_entry(hash, |&i| i == slot) {
                found.remove();
                let hasher = &self.hasher;
                self.table
                    .insert_unique(hash, slot, |&j| hasher.hash_one(key_of(j)));
            }
        }
        if self.moved as usize >= len || self.old.is_empty() {
            debug_assert!(self.old.is_empty(), "every slot below len was moved");
            // Its room is given back now, not at the next resize.
            self.old = HashTable::new();
            self.moved = 0;
        }
    }
}
