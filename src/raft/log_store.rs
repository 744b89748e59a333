//! The in-memory view of the log that raft-rs reads through its `Storage`
//! trait: the latest snapshot, the entries after it, the hard state.
//!
//! The WAL (`storage::Wal`) is the durable copy; this is what raft reads from.
//! Entries are appended here *before* they are handed to the WAL thread, as
//! raft-rs's asynchronous persistence requires (`advance_append_async`);
//! raft's own notion of what is persisted advances only when the WAL thread
//! reports the fsync (`on_persist_ready`).
//!
//! Unlike raft-rs's `MemStorage` this keeps the snapshot's data, so a
//! lagging follower can be sent the real state.

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

#[derive(Default)]
pub struct LogStore {
    hard_state: HardState,
    snapshot: Snapshot,
    /// Contiguous entries; the first has index `snapshot index + 1`.
    entries: Vec<Entry>,
}

impl LogStore {
    /// A store recovered from disk. `entries` must start right after the
    /// snapshot (the WAL's recovery guarantees it).
    pub fn new(hard_state: HardState, snapshot: Snapshot, entries: Vec<Entry>) -> Self {
        let mut store = LogStore {
            hard_state,
            snapshot,
            entries: Vec::new(),
        };
        let first = store.snapshot_index() + 1;
        store.entries = entries.into_iter().filter(|e| e.index >= first).collect();
        // A snapshot holds only applied, hence committed, entries.
        if store.hard_state.commit < store.snapshot_index() {
            store.hard_state.commit = store.snapshot_index();
        }
        store
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn snapshot_ref(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        self.snapshot.get_metadata().get_conf_state()
    }

    pub fn first(&self) -> u64 {
        self.snapshot_index() + 1
    }

    pub fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    /// Number of entries held after the snapshot.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Appends entries from a Ready, replacing any conflicting suffix.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first_new) = entries.first().map(|e| e.index) else {
            return;
        };
        assert!(
            first_new > self.snapshot_index(),
            "append at {first_new} below snapshot {}",
            self.snapshot_index()
        );
        assert!(
            first_new <= self.last() + 1,
            "append at {first_new} leaves a gap after {}",
            self.last()
        );
        let keep = (first_new - self.first()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// Replaces everything with a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        if self.hard_state.commit < meta.index {
            self.hard_state.commit = meta.index;
        }
        if self.hard_state.term < meta.term {
            self.hard_state.term = meta.term;
        }
        self.entries.clear();
        self.snapshot = snapshot;
    }

    /// Installs a snapshot of our own state at an index we already hold and
    /// drops the entries it covers.
    pub fn compact_to(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        assert!(
            index <= self.last(),
            "snapshot {index} beyond log end {}",
            self.last()
        );
        if index <= self.snapshot_index() {
            return;
        }
        let drop = (index - self.snapshot_index()) as usize;
        self.entries.drain(..drop.min(self.entries.len()));
        self.snapshot = snapshot;
    }

    /// The term of the entry at `index`, if it is held.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index() {
            return Some(self.snapshot.get_metadata().term);
        }
        if index < self.first() || index > self.last() {
            return None;
        }
        Some(self.entries[(index - self.first()) as usize].term)
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state: self.conf_state().clone(),
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.first()) as usize;
        let hi = (high - self.first()) as usize;
        let mut out = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_at(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    /// The newest snapshot, unless it does not name `to`: raft-rs would
    /// send it, the peer would ignore it ("not in the ConfState") after
    /// receiving and decoding all of it, and it would be sent again. The
    /// driver takes a snapshot naming every member (`maybe_snapshot`);
    /// until it is saved, raft is told to ask again later.
    fn snapshot(&self, _request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let conf = self.conf_state();
        let named = conf.voters.contains(&to)
            || conf.learners.contains(&to)
            || conf.voters_outgoing.contains(&to)
            || conf.learners_next.contains(&to);
        if !named {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            ..Default::default()
        }
    }

    #[test]
    fn append_replaces_a_conflicting_suffix() {
        let mut s = LogStore::default();
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        s.append(&[entry(2, 2)]);
        assert_eq!(s.last(), 2);
        assert_eq!(s.term_at(2), Some(2));
        assert_eq!(s.term_at(3), None);
    }

    #[test]
    fn a_snapshot_that_does_not_name_the_peer_is_not_handed_out() {
        let mut s = LogStore::default();
        s.append(&(1..=4).map(|i| entry(i, 1)).collect::<Vec<_>>());
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 3;
        snap.mut_metadata().term = 1;
        snap.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        snap.mut_metadata().mut_conf_state().learners = vec![5];
        s.compact_to(snap);
        for named in [1, 2, 3, 5] {
            assert_eq!(s.snapshot(0, named).unwrap().get_metadata().index, 3);
        }
        assert!(matches!(
            s.snapshot(0, 4),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
    }

    #[test]
    fn compaction_keeps_later_entries_readable() {
        let mut s = LogStore::default();
        s.append(&(1..=10).map(|i| entry(i, 1)).collect::<Vec<_>>());
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 6;
        snap.mut_metadata().term = 1;
        s.compact_to(snap);
        assert_eq!(s.first(), 7);
        assert_eq!(s.term(6).unwrap(), 1);
        assert!(matches!(
            s.term(5),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        let got = s
            .entries(7, 11, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![7, 8, 9, 10]
        );
        assert!(s
            .entries(5, 8, None, GetEntriesContext::empty(false))
            .is_err());
    }
}
