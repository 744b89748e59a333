//! Snapshot files.
//!
//! One file per snapshot, named by its index (`00000000000000000042.snap`,
//! 20 digits) so the newest is the largest name. Layout, little-endian:
//!
//! ```text
//! magic "CNCDSNAP" | version u8 | index u64 | term u64
//! | voters | learners | voters_outgoing | learners_next   (each: count u32, ids u64...)
//! | auto_leave u8 | data_len u64 | data | crc32 u32 of everything before
//! ```
//!
//! A save writes `<name>.tmp`, fsyncs it, renames it into place and fsyncs the
//! directory, so a crash leaves either the old set of snapshots or the new one,
//! plus perhaps a temp file that the next [`SnapshotStore::open`] removes. The
//! newest two snapshots are kept. A corrupt newest snapshot is an error, not a
//! reason to fall back silently: the WAL may already be compacted past the
//! older one, so restarting from it could lose entries.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ::raft::eraftpb::{ConfState, Snapshot};
use bytes::Bytes;

use super::{ensure_dir, io_ctx, sync_dir, Reader, StorageError};

const MAGIC: &[u8; 8] = b"CNCDSNAP";
const VERSION: u8 = 1;
const EXT: &str = "snap";
const TMP_SUFFIX: &str = ".tmp";
const INDEX_DIGITS: usize = 20;
/// How many snapshot files survive a save.
const KEEP: usize = 2;

/// The directory of snapshot files.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
}

fn file_name(index: u64) -> String {
    format!("{index:0width$}.{EXT}", width = INDEX_DIGITS)
}

fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(EXT)?.strip_suffix('.')?;
    if stem.len() != INDEX_DIGITS || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// A writer that feeds everything it writes into a CRC.
struct Hashing<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_ids(w: &mut impl Write, ids: &[u64]) -> std::io::Result<()> {
    let count = u32::try_from(ids.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "too many node ids"))?;
    w.write_all(&count.to_le_bytes())?;
    for id in ids {
        w.write_all(&id.to_le_bytes())?;
    }
    Ok(())
}

fn read_ids(r: &mut Reader<'_>) -> Result<Vec<u64>, String> {
    let count = r.u32()? as usize;
    if count > r.buf.len() / 8 {
        return Err(format!("node id list of {count} entries exceeds the file"));
    }
    (0..count).map(|_| r.u64()).collect()
}

fn encode(w: &mut impl Write, snapshot: &Snapshot) -> std::io::Result<()> {
    let meta = snapshot.get_metadata();
    let conf = meta.get_conf_state();
    w.write_all(MAGIC)?;
    w.write_all(&[VERSION])?;
    w.write_all(&meta.index.to_le_bytes())?;
    w.write_all(&meta.term.to_le_bytes())?;
    write_ids(w, &conf.voters)?;
    write_ids(w, &conf.learners)?;
    write_ids(w, &conf.voters_outgoing)?;
    write_ids(w, &conf.learners_next)?;
    w.write_all(&[u8::from(conf.auto_leave)])?;
    w.write_all(&(snapshot.data.len() as u64).to_le_bytes())?;
    w.write_all(&snapshot.data)
}

fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    if bytes.len() < MAGIC.len() + 1 + 4 {
        return Err(format!("file too short ({} bytes)", bytes.len()));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != stored {
        return Err("checksum mismatch".to_string());
    }
    let mut r = Reader { buf: body };
    if r.bytes(MAGIC.len())? != MAGIC {
        return Err("not a concord snapshot (bad magic)".to_string());
    }
    let version = r.u8()?;
    if version != VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    let index = r.u64()?;
    let term = r.u64()?;
    let voters = read_ids(&mut r)?;
    let learners = read_ids(&mut r)?;
    let voters_outgoing = read_ids(&mut r)?;
    let learners_next = read_ids(&mut r)?;
    let auto_leave = match r.u8()? {
        0 => false,
        1 => true,
        other => return Err(format!("bad auto_leave flag {other}")),
    };
    let conf = ConfState {
        voters,
        learners,
        voters_outgoing,
        learners_next,
        auto_leave,
        ..Default::default()
    };
    let data_len = usize::try_from(r.u64()?).map_err(|_| "data length overflows".to_string())?;
    let data = Bytes::copy_from_slice(r.bytes(data_len)?);
    if !r.buf.is_empty() {
        return Err(format!("{} unexpected bytes after the data", r.buf.len()));
    }
    let mut snapshot = Snapshot::default();
    let meta = snapshot.mut_metadata();
    meta.index = index;
    meta.term = term;
    meta.set_conf_state(conf);
    snapshot.data = data;
    Ok(snapshot)
}

/// Where the snapshot file at `index` lives in the snapshot directory `dir`.
pub fn file_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(file_name(index))
}

/// Decodes a snapshot file's bytes and checks them (magic, version,
/// checksum): for a backup taken with RAFT.BACKUP.
pub fn from_bytes(bytes: &[u8]) -> Result<Snapshot, String> {
    decode(bytes)
}

impl SnapshotStore {
    /// Opens (creating if missing) the snapshot directory and removes temp
    /// files left by a crash during a save.
    pub fn open(dir: &Path) -> Result<SnapshotStore, StorageError> {
        ensure_dir(dir)?;
        let ctx = || format!("listing snapshot directory {}", dir.display());
        let mut removed = false;
        for item in fs::read_dir(dir).map_err(io_ctx(ctx()))? {
            let path = item.map_err(io_ctx(ctx()))?.path();
            let is_tmp = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(TMP_SUFFIX));
            if is_tmp {
                tracing::info!(path = %path.display(), "removing an unfinished snapshot file");
                fs::remove_file(&path).map_err(io_ctx(format!("removing {}", path.display())))?;
                removed = true;
            }
        }
        if removed {
            sync_dir(dir)?;
        }
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
        })
    }

    /// Complete snapshot files, newest (highest index) first.
    fn list(&self) -> Result<Vec<(u64, PathBuf)>, StorageError> {
        let ctx = || format!("listing snapshot directory {}", self.dir.display());
        let mut found = Vec::new();
        for item in fs::read_dir(&self.dir).map_err(io_ctx(ctx()))? {
            let item = item.map_err(io_ctx(ctx()))?;
            if let Some(index) = item.file_name().to_str().and_then(parse_name) {
                found.push((index, item.path()));
            }
        }
        found.sort_by_key(|(index, _)| std::cmp::Reverse(*index));
        Ok(found)
    }

    /// Saves metadata (index, term, conf_state) and data with a crc; durable on
    /// return. Older snapshots beyond the newest two are deleted.
    pub fn save(&self, snapshot: &Snapshot) -> Result<(), StorageError> {
        let index = snapshot.get_metadata().index;
        let path = self.dir.join(file_name(index));
        let tmp = self.dir.join(format!("{}{TMP_SUFFIX}", file_name(index)));
        let ctx = || format!("writing snapshot {}", tmp.display());

        let file = File::create(&tmp).map_err(io_ctx(ctx()))?;
        let mut w = Hashing {
            inner: BufWriter::new(file),
            crc: crc32fast::Hasher::new(),
        };
        encode(&mut w, snapshot).map_err(io_ctx(ctx()))?;
        let crc = w.crc.finalize();
        let mut inner = w.inner;
        inner.write_all(&crc.to_le_bytes()).map_err(io_ctx(ctx()))?;
        let file = inner
            .into_inner()
            .map_err(|e| io_ctx(ctx())(e.into_error()))?;
        file.sync_all()
            .map_err(io_ctx(format!("fsync of {}", tmp.display())))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_ctx(format!(
            "renaming {} to {}",
            tmp.display(),
            path.display()
        )))?;
        sync_dir(&self.dir)?;

        let old = self.list()?;
        if old.len() > KEEP {
            for (_, stale) in &old[KEEP..] {
                fs::remove_file(stale).map_err(io_ctx(format!("removing {}", stale.display())))?;
            }
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// The newest snapshot, or `None` if there is none. A corrupt newest
    /// snapshot is an error ([`StorageError::CorruptSnapshot`]); we do not fall
    /// back to an older one.
    pub fn load_latest(&self) -> Result<Option<Snapshot>, StorageError> {
        let Some((index, path)) = self.list()?.into_iter().next() else {
            return Ok(None);
        };
        let bytes = fs::read(&path).map_err(io_ctx(format!("reading {}", path.display())))?;
        let corrupt = |reason: String| StorageError::CorruptSnapshot {
            path: path.clone(),
            reason,
        };
        let snapshot = decode(&bytes).map_err(corrupt)?;
        let stored = snapshot.get_metadata().index;
        if stored != index {
            return Err(corrupt(format!(
                "file name says index {index} but the file holds index {stored}"
            )));
        }
        Ok(Some(snapshot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(index: u64, term: u64, data: &[u8]) -> Snapshot {
        let conf = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
            voters_outgoing: vec![1, 2, 5],
            learners_next: vec![6, 7],
            auto_leave: true,
            ..Default::default()
        };
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().set_conf_state(conf);
        s.data = Bytes::copy_from_slice(data);
        s
    }

    fn snap_files(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn empty_store_has_no_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(&dir.path().join("snap")).unwrap();
        assert_eq!(store.load_latest().unwrap(), None);
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let s = snap(42, 7, b"state machine bytes");
        store.save(&s).unwrap();
        let loaded = store.load_latest().unwrap().unwrap();
        assert_eq!(loaded, s);
        assert_eq!(snap_files(dir.path()), vec!["00000000000000000042.snap"]);

        let mut empty = Snapshot::default();
        empty.mut_metadata().index = 43;
        empty.mut_metadata().set_conf_state(ConfState::default());
        store.save(&empty).unwrap();
        assert_eq!(
            SnapshotStore::open(dir.path())
                .unwrap()
                .load_latest()
                .unwrap(),
            Some(empty)
        );
    }

    #[test]
    fn newest_wins_and_two_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        // Save out of order: the highest index is the newest.
        for (index, term) in [(10, 1), (30, 2), (20, 2), (100, 3)] {
            store
                .save(&snap(index, term, format!("at {index}").as_bytes()))
                .unwrap();
        }
        let latest = store.load_latest().unwrap().unwrap();
        assert_eq!(latest.get_metadata().index, 100);
        assert_eq!(latest.data.as_ref(), b"at 100");
        assert_eq!(
            snap_files(dir.path()),
            vec!["00000000000000000030.snap", "00000000000000000100.snap"]
        );
    }

    #[test]
    fn corrupt_newest_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        store.save(&snap(5, 1, b"older")).unwrap();
        store.save(&snap(9, 1, b"newest")).unwrap();
        let path = dir.path().join("00000000000000000009.snap");
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 8] ^= 1; // inside the data
        fs::write(&path, &bytes).unwrap();
        match store.load_latest().unwrap_err() {
            StorageError::CorruptSnapshot { path: p, reason } => {
                assert_eq!(p, path);
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected CorruptSnapshot, got {other}"),
        }
        // Truncated file: also corrupt.
        fs::write(&path, &bytes[..n / 2]).unwrap();
        assert!(matches!(
            store.load_latest(),
            Err(StorageError::CorruptSnapshot { .. })
        ));
        // A file renamed to the wrong index is caught.
        fs::remove_file(&path).unwrap();
        fs::copy(
            dir.path().join("00000000000000000005.snap"),
            dir.path().join("00000000000000000006.snap"),
        )
        .unwrap();
        let err = store.load_latest().unwrap_err();
        assert!(err.to_string().contains("holds index 5"), "{err}");
    }

    #[test]
    fn temp_files_from_a_crashed_save_are_ignored_and_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        store.save(&snap(5, 1, b"good")).unwrap();
        // A crash mid-save of snapshot 8 left a half-written temp file.
        let tmp = dir.path().join("00000000000000000008.snap.tmp");
        fs::write(&tmp, b"CNCDSNAP\x01 half").unwrap();
        assert_eq!(
            store.load_latest().unwrap().unwrap().get_metadata().index,
            5
        );
        let reopened = SnapshotStore::open(dir.path()).unwrap();
        assert!(!tmp.exists());
        assert_eq!(reopened.load_latest().unwrap(), Some(snap(5, 1, b"good")));
        // Saving the same index again replaces it cleanly.
        reopened.save(&snap(8, 2, b"retry")).unwrap();
        assert_eq!(reopened.load_latest().unwrap(), Some(snap(8, 2, b"retry")));
    }
}
