//! Our own snapshots, from the moment one begins until the log is compacted
//! behind it.
//!
//! A snapshot of a large keyspace takes about a second of CPU per million
//! keys to encode and as long again to write. Neither may stall the driver,
//! which also serves every read and write of the node (and, on a leader,
//! the whole cluster's). So:
//!
//! 1. **Encoding**: the state begins a snapshot (a copy-on-write view, see
//!    `state::capture`) and the driver encodes a chunk of it per turn of its
//!    loop, between the batches it applies, whenever the writer has room
//!    for one. A turn's chunk is [`CHUNK`] bytes, well under a millisecond.
//! 2. **Writing**: a thread of the snapshot's own writes the chunks to a
//!    temp file as they come, then its length and checksum, and fsyncs it.
//! 3. **Saving**: the WAL thread moves the file into place and appends the
//!    snapshot mark, in order with the log records (a mark is never durable
//!    before its file). Then the in-memory log is compacted behind it.
//!
//! A leader's snapshot installed meanwhile abandons ours: its temp file is
//! removed, and RAFT.SNAPSHOT callers are told.

use std::time::Instant;

use raft::eraftpb::{ConfState, Snapshot};
use tokio::sync::{mpsc, oneshot};

use super::NodeError;
use crate::state::State;
use crate::storage::{SnapshotStore, StorageError, WrittenSnapshot};

/// Bytes of snapshot the driver encodes per turn of its loop.
pub(super) const CHUNK: usize = 256 * 1024;

/// Chunks the writer may hold before the driver waits for it: the disk's
/// pace sets the encoding's, and memory stays bounded.
const QUEUE: usize = 4;

pub(super) enum Piece {
    Data(Vec<u8>),
    /// The last chunk: then finish the file.
    Last(Vec<u8>),
}

/// A snapshot file written and fsynced.
#[derive(Debug)]
pub(crate) struct Written {
    pub file: WrittenSnapshot,
}

pub(super) enum Stage {
    Encoding(mpsc::Sender<Piece>),
    Writing,
    Saving(Snapshot),
}

pub(super) struct OwnSnapshot {
    pub index: u64,
    pub term: u64,
    conf: ConfState,
    pub stage: Stage,
    pub started: Instant,
    /// The file's size, once written.
    pub bytes: u64,
    /// Taken because the log grew: failing to save it stops the node.
    pub automatic: bool,
    /// RAFT.SNAPSHOT callers, answered with its index once it is saved.
    pub waiters: Vec<oneshot::Sender<Result<u64, NodeError>>>,
}

impl OwnSnapshot {
    /// Begins a snapshot of `state` at (index, term): the state's view
    /// starts now, the writer thread with it. `report` runs on that thread
    /// once the file is written (or could not be).
    pub fn begin(
        state: &mut State,
        store: &SnapshotStore,
        (index, term): (u64, u64),
        conf: ConfState,
        report: impl FnOnce(Result<Written, StorageError>) + Send + 'static,
    ) -> OwnSnapshot {
        let head = state.begin_snapshot();
        let (tx, rx) = mpsc::channel(QUEUE);
        tx.try_send(Piece::Data(head))
            .unwrap_or_else(|_| unreachable!("a new channel has room"));
        let store = store.clone();
        let conf_for_file = conf.clone();
        std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || {
                if let Some(result) = write(&store, index, term, &conf_for_file, rx) {
                    report(result);
                }
            })
            .expect("spawning the snapshot writer thread");
        OwnSnapshot {
            index,
            term,
            conf,
            stage: Stage::Encoding(tx),
            started: Instant::now(),
            bytes: 0,
            automatic: true,
            waiters: Vec::new(),
        }
    }

    /// The channel to the writer while encoding goes on.
    pub fn encoder(&self) -> Option<mpsc::Sender<Piece>> {
        match &self.stage {
            Stage::Encoding(tx) => Some(tx.clone()),
            _ => None,
        }
    }

    /// Encodes one chunk if the writer has room for it. When the last is
    /// out, the writer is told to finish and the stage moves on.
    pub fn step(&mut self, state: &mut State) {
        let Stage::Encoding(tx) = &self.stage else {
            return;
        };
        let done = match tx.try_reserve() {
            Ok(permit) => {
                let mut chunk = Vec::with_capacity(CHUNK + CHUNK / 4);
                let done = state.snapshot_chunk(&mut chunk, CHUNK);
                permit.send(if done {
                    Piece::Last(chunk)
                } else {
                    Piece::Data(chunk)
                });
                done
            }
            Err(mpsc::error::TrySendError::Full(())) => false,
            // The writer failed: its report is on the way.
            Err(mpsc::error::TrySendError::Closed(())) => {
                state.abort_snapshot();
                true
            }
        };
        if done {
            self.stage = Stage::Writing;
        }
    }

    /// The file is durable under its temp name: the WAL thread is to move
    /// it into place. Keeps the snapshot raft's log store will hold: the
    /// metadata only, since peers are sent the file from disk.
    pub fn written(&mut self, bytes: u64) {
        self.bytes = bytes;
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.index = self.index;
        meta.term = self.term;
        meta.set_conf_state(self.conf.clone());
        self.stage = Stage::Saving(snap);
    }

    pub fn is(&self, index: u64, term: u64) -> bool {
        self.index == index && self.term == term
    }

    /// True before the WAL thread has the file: abandoning it is safe.
    pub fn abandonable(&self) -> bool {
        !matches!(self.stage, Stage::Saving(_))
    }
}

/// The writer thread: chunks to a temp file until the last. None
/// when the driver dropped the channel first (the snapshot was abandoned;
/// the temp file goes with the `SnapshotFile`).
fn write(
    store: &SnapshotStore,
    index: u64,
    term: u64,
    conf: &ConfState,
    mut rx: mpsc::Receiver<Piece>,
) -> Option<Result<Written, StorageError>> {
    let mut file = match store.begin(index, term, conf) {
        Ok(file) => file,
        Err(e) => return Some(Err(e)),
    };
    loop {
        match rx.blocking_recv() {
            Some(Piece::Data(chunk)) => {
                if let Err(e) = file.write(&chunk) {
                    return Some(Err(e));
                }
            }
            Some(Piece::Last(chunk)) => {
                let finished = file.write(&chunk).and_then(|()| file.finish());
                return Some(finished.map(|file| Written { file }));
            }
            None => return None,
        }
    }
}
