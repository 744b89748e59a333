//! Durable storage for the Raft log, the hard state and snapshots.
//!
//! # Why our own WAL
//!
//! concord acknowledges a write only after a majority has it fsync'd in the Raft
//! log, so the log must mean what it says: when [`Wal::sync`] returns, everything
//! appended before it survives a crash. We therefore keep the log in a small,
//! segmented write-ahead log of our own (like etcd's `wal`), not in an embedded
//! database whose flush is not an fsync.
//!
//! # Record format
//!
//! A WAL directory holds segment files named `<sequence>.wal` with a 16-digit,
//! zero-padded sequence number (`0000000000000001.wal`, ...), so lexical order is
//! log order. Segments hold back-to-back records, each framed as
//!
//! ```text
//! [len u32 LE][crc32 u32 LE][kind u8][payload ...]
//! ```
//!
//! where `len` counts `kind` and `payload` and the CRC (crc32fast, IEEE) covers
//! `kind` and `payload`. Payloads are a fixed little-endian layout (no protobuf):
//!
//! * `1` Entry: `entry_type u8, term u64, index u64, data_len u32, data, context_len u32, context`
//! * `2` HardState: `term u64, vote u64, commit u64`
//! * `3` SnapshotMark: `index u64, term u64` (everything `<= index` lives in a snapshot)
//!
//! # Recovery: torn versus corrupt
//!
//! Records are replayed in order. An entry whose index is not above the last one
//! replaces the suffix from that index on (Raft overwrote a conflicting tail); an
//! entry that leaves a gap is corruption; entries covered by the latest
//! snapshot mark are dropped.
//!
//! A segment may end in zeros: the part of a zero-filled segment (below) that
//! no record reached yet. A frame that fails to parse where only zeros follow
//! is the end of the segment's records, in any segment.
//!
//! A crash during an append can leave half a record at the end of the log. Such
//! a *torn tail* was never acknowledged (it was not synced), so it is truncated
//! away with a warning and the node carries on. Anything else that fails to
//! decode is *corruption*, and [`Wal::open`] refuses with
//! [`StorageError::Corrupt`] naming the file and offset:
//!
//! * a bad or short record (other than the zeros above) in any segment but
//!   the last one: every segment
//!   except the last was fdatasync'd in full before its successor was created,
//!   so it cannot be torn;
//! * a bad record in the last segment that is followed by a valid record (found
//!   by scanning forward byte by byte): acknowledged data lies behind the damage;
//! * a record whose checksum is valid but whose content is not (unknown kind,
//!   wrong length, gap in entry indexes), or a missing segment number.
//!
//! A torn write that persisted a later page of one unsynced write but not an
//! earlier one looks like the second case; refusing to start is the safe answer
//! there, since we cannot prove that nothing acknowledged is lost.
//!
//! # Group commit
//!
//! fdatasync costs about as much for one record as for a thousand, so the WAL
//! is written by one dedicated OS thread ([`WalWriter`]) that takes every job
//! queued since its last round, appends them all, syncs once and then reports
//! the highest job number as persisted. While it syncs, the Raft loop keeps
//! gathering the next batch; fsync never runs on a tokio worker.
//!
//! # Zero-filled segments
//!
//! Appending to a file changes its size, and fdatasync must then commit the
//! filesystem's journal as well as the data: on this project's ext4 test
//! machine an append-and-fdatasync of 4 KiB takes about 280 µs, an overwrite
//! of blocks that already exist about 160 µs. So a background thread writes
//! the next segment full of zeros (`spare-*.tmp`, fsync'd) while the current
//! one fills; at a roll it is renamed into place and records are written into
//! it at their offsets. A fresh WAL starts on an empty file and moves to the
//! first spare as soon as it is ready. Spares are never recycled from old
//! segments: stale records behind the end would read as valid ones. Unused
//! spares are deleted on open. `WalOptions::preallocate` turns this off.
//!
//! Snapshots live beside the WAL in their own files ([`SnapshotStore`]): written
//! to a temporary file, fsync'd, renamed into place, directory fsync'd.

use std::fs::File;
use std::path::{Path, PathBuf};

pub mod identity;
pub mod snapshot;
pub mod wal;
pub mod writer;

pub use identity::{Identity, IdentityError};
pub use snapshot::{SnapshotFile, SnapshotReader, SnapshotStore, WrittenSnapshot};
pub use wal::{Record, Recovered, TornTail, Wal, WalOptions};
pub use writer::{Persisted, SnapshotJob, WalJob, WalStats, WalWriter};

/// Everything that can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system IO error; `context` says what we were doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The WAL cannot be trusted: the node must not start on it.
    #[error("WAL corrupt in {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A snapshot file failed its checks.
    #[error("snapshot file {path} is corrupt: {reason}")]
    CorruptSnapshot { path: PathBuf, reason: String },
    /// Another process (or another `Wal` in this one) holds the directory lock.
    #[error("WAL directory {path} is locked by another process")]
    Locked { path: PathBuf },
    /// A record does not fit the format's 32-bit length fields.
    #[error("record of {len} bytes is too large for the WAL")]
    RecordTooLarge { len: usize },
    /// An earlier write or sync failed; the WAL refuses further use because a
    /// failed fsync cannot be retried safely.
    #[error("WAL is unusable after an earlier IO error")]
    Poisoned,
    /// The WAL writer thread stopped after an error it already reported through
    /// its `on_persisted` callback (or it panicked).
    #[error("WAL writer stopped: {reason}")]
    WriterStopped { reason: String },
}

/// Builds a `map_err` adapter that wraps an `io::Error` with context.
pub(crate) fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

/// fsyncs a directory so that creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_ctx(format!("fsync of directory {}", dir.display())))
}

/// Creates `dir` (and its parents) if missing, fsyncing the parent of every
/// directory it creates so the new entries are durable.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StorageError> {
    let mut missing = Vec::new();
    let mut cur = dir;
    while !cur.exists() {
        missing.push(cur);
        match cur.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => cur = parent,
            _ => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .map_err(io_ctx(format!("creating directory {}", dir.display())))?;
    for created in missing {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

/// Bounds-checked little-endian reader over a payload.
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "payload too short: wanted {n} more bytes, {} left",
                self.buf.len()
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(a))
    }
}
