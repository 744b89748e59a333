//! A consistent view of the keyspace for a snapshot that is encoded a
//! chunk at a time while the state machine goes on applying.
//!
//! Encoding a million keys takes about a second of CPU. Done in one go on
//! the thread that applies the log, it stalled every client of the node
//! (and, on a leader, every follower's reads) for that long, and at ten
//! million keys it outlasted the election timeout. So the keyspace is
//! walked in scan order a chunk at a time, between log entries, and the
//! view stays the one of the moment the snapshot began by copying on write
//! at the granularity of a key:
//!
//! * a key the walk has already passed (at or before `cursor` in scan
//!   order) may change freely: its value at the start is already out;
//! * the first change to a key the walk has not reached saves the key's
//!   encoded entry as it was (or notes that it did not exist) in `saved`;
//!   the walk skips such keys and the saved entries go out at the end;
//! * `FLUSHALL`/`FLUSHDB` detach the whole old map into the capture, which
//!   finishes its walk over that map instead of the live one.
//!
//! Every key present at the start therefore goes out exactly once, with its
//! value at the start, and no key created later does; the count written up
//! front is the keyspace's length at the start. Only [`Db`](super::db::Db)
//! mutates entries, and every one of its mutating methods calls
//! [`Capture::preserve`] (or [`Capture::detach`]) before it changes
//! anything. The cost while no snapshot runs is one `is_some` test per
//! write; while one runs, one hash of the key per write, and one copy of
//! each changed key that the walk had not reached.

use std::collections::HashMap;

use bytes::Bytes;

use super::db::{Entry, ScanKey, ScanMap};
use super::snapshot::write_entry;

#[derive(Clone, Debug, Default)]
pub struct Capture {
    /// The last key emitted, in scan order; None before the first.
    cursor: Option<ScanKey>,
    /// Keys changed since the start before the walk reached them: their
    /// encoded entry at the start, or None for a key created since.
    saved: HashMap<Bytes, Option<Vec<u8>>>,
    /// The keyspace as it was when a flush emptied the live one.
    detached: Option<ScanMap<Entry>>,
    /// Keys at the start: how many entries the snapshot holds.
    expected: u64,
    emitted: u64,
}

impl Capture {
    pub fn new(expected: u64) -> Self {
        Capture {
            expected,
            ..Capture::default()
        }
    }

    /// The keys the view holds.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// Called before `key` changes in `live`: keeps its entry as it was at
    /// the start if the walk still has to emit it.
    pub fn preserve(&mut self, key: &Bytes, live: &ScanMap<Entry>) {
        if self.detached.is_some() || self.saved.contains_key(key) {
            return;
        }
        if let Some(cursor) = &self.cursor {
            if ScanKey::new(key.clone()) <= *cursor {
                return;
            }
        }
        let frame = live.get(key).map(|entry| {
            let mut out = Vec::new();
            write_entry(&mut out, key, entry);
            out
        });
        self.saved.insert(key.clone(), frame);
    }

    /// Called before a flush replaces the live keyspace with an empty one:
    /// the rest of the walk reads `old`. A second flush changes nothing.
    pub fn detach(&mut self, old: ScanMap<Entry>) {
        if self.detached.is_none() {
            self.detached = Some(old);
        }
    }

    /// Appends entries to `out` until it holds at least `budget` bytes or
    /// every entry is out; true when every entry is out.
    pub fn step(&mut self, live: &ScanMap<Entry>, out: &mut Vec<u8>, budget: usize) -> bool {
        let Capture {
            cursor,
            saved,
            detached,
            emitted,
            ..
        } = self;
        let source = detached.as_ref().unwrap_or(live);
        let mut last = None;
        for (hash, key, entry) in source.after(cursor.as_ref()) {
            last = Some((hash, key));
            if !saved.contains_key(key) {
                write_entry(out, key, entry);
                *emitted += 1;
            }
            if out.len() >= budget {
                break;
            }
        }
        let walked_all = match last {
            // Nothing after the cursor.
            None => true,
            // Stopped on the budget, or the last key was the map's last.
            Some((hash, key)) => {
                let key = ScanKey::from_parts(hash, key.clone());
                let more = source.after(Some(&key)).next().is_some();
                *cursor = Some(key);
                !more
            }
        };
        if !walked_all {
            return false;
        }
        // The saved entries of keys that existed at the start.
        for frame in std::mem::take(saved).into_values().flatten() {
            out.extend_from_slice(&frame);
            *emitted += 1;
        }
        debug_assert_eq!(
            *emitted, self.expected,
            "a snapshot emits each key present at its start once"
        );
        true
    }
}
