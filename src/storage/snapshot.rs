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
use std::io::{BufWriter, Read, Write};
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
#[derive(Clone, Debug)]
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

/// The membership from the header's four id lists (voters, learners,
/// outgoing voters, next learners) and its auto-leave byte.
fn conf_state(lists: [Vec<u64>; 4], auto_leave: u8) -> Result<ConfState, String> {
    let auto_leave = match auto_leave {
        0 => false,
        1 => true,
        other => return Err(format!("bad auto_leave flag {other}")),
    };
    let [voters, learners, voters_outgoing, learners_next] = lists;
    Ok(ConfState {
        voters,
        learners,
        voters_outgoing,
        learners_next,
        auto_leave,
        ..Default::default()
    })
}

fn encode(w: &mut impl Write, snapshot: &Snapshot) -> std::io::Result<()> {
    let meta = snapshot.get_metadata();
    encode_head(w, meta.index, meta.term, meta.get_conf_state())?;
    w.write_all(&(snapshot.data.len() as u64).to_le_bytes())?;
    w.write_all(&snapshot.data)
}

/// Everything before `data_len`.
fn encode_head(w: &mut impl Write, index: u64, term: u64, conf: &ConfState) -> std::io::Result<()> {
    w.write_all(MAGIC)?;
    w.write_all(&[VERSION])?;
    w.write_all(&index.to_le_bytes())?;
    w.write_all(&term.to_le_bytes())?;
    write_ids(w, &conf.voters)?;
    write_ids(w, &conf.learners)?;
    write_ids(w, &conf.voters_outgoing)?;
    write_ids(w, &conf.learners_next)?;
    w.write_all(&[u8::from(conf.auto_leave)])
}

/// A snapshot file being written a chunk at a time, as the state is
/// encoded (the data's length is only known at the end). Dropped before
/// [`SnapshotFile::finish`], it removes its temp file.
#[derive(Debug)]
pub struct SnapshotFile {
    tmp: PathBuf,
    path: PathBuf,
    index: u64,
    term: u64,
    head: Vec<u8>,
    out: Option<BufWriter<File>>,
    data_crc: crc32fast::Hasher,
    data_len: u64,
    /// Bytes written since the file was last synced.
    unsynced: u64,
}

/// A snapshot being written is synced every this many bytes. Left to the
/// final fsync, a gigabyte of dirty pages goes to the disk at once, and
/// every fsync of the WAL meanwhile (on the same disk) waits behind it:
/// appends are acknowledged late, and at 10M keys a follower fell silent
/// for longer than an election timeout. Synced as it goes, a WAL fsync
/// waits for at most this much of someone else's writeback.
const SYNC_EVERY: u64 = 16 << 20;

/// A snapshot file written and fsynced under its temp name, ready for
/// [`SnapshotStore::install`].
#[derive(Debug, Clone)]
pub struct WrittenSnapshot {
    pub index: u64,
    pub term: u64,
    tmp: PathBuf,
    path: PathBuf,
    /// The whole file's size.
    pub bytes: u64,
}

impl WrittenSnapshot {
    /// A file received from a peer at `tmp` (complete and fsynced), to be
    /// installed in `store` as the snapshot at (index, term).
    pub fn received(store: &SnapshotStore, tmp: PathBuf, index: u64, term: u64) -> Self {
        let bytes = fs::metadata(&tmp).map_or(0, |m| m.len());
        WrittenSnapshot {
            index,
            term,
            tmp,
            path: store.dir.join(file_name(index)),
            bytes,
        }
    }

    /// Removes the file of a snapshot that will not be installed.
    pub fn discard(self) {
        if let Err(e) = fs::remove_file(&self.tmp) {
            tracing::warn!(path = %self.tmp.display(), error = %e, "cannot remove a snapshot file");
        }
    }
}

/// A snapshot file opened for reading its data as a stream: the state is
/// decoded from it without holding the file in memory. Every byte read
/// goes into the checksum, which [`SnapshotReader::finish`] compares with
/// the file's: a state decoded from a file that then fails it must not be
/// used.
pub struct SnapshotReader {
    /// Index, term and membership; the data is not loaded.
    pub meta: Snapshot,
    /// Bytes of data (the encoded state).
    pub data_len: u64,
    path: PathBuf,
    inner: std::io::BufReader<File>,
    crc: crc32fast::Hasher,
    data_left: u64,
}

impl SnapshotReader {
    pub fn open(path: &Path) -> Result<SnapshotReader, StorageError> {
        let corrupt = |reason: String| StorageError::CorruptSnapshot {
            path: path.to_path_buf(),
            reason,
        };
        let file = File::open(path).map_err(io_ctx(format!("reading {}", path.display())))?;
        let size = file
            .metadata()
            .map_err(io_ctx(format!("reading {}", path.display())))?
            .len();
        let mut r = SnapshotReader {
            meta: Snapshot::default(),
            data_len: 0,
            path: path.to_path_buf(),
            inner: std::io::BufReader::with_capacity(1 << 20, file),
            crc: crc32fast::Hasher::new(),
            data_left: 0,
        };
        let mut fixed = [0u8; MAGIC.len() + 1 + 16];
        r.read_hashed(&mut fixed)
            .map_err(|e| corrupt(e.to_string()))?;
        let mut head = Reader { buf: &fixed };
        if head.bytes(MAGIC.len()).map_err(corrupt)? != MAGIC {
            return Err(corrupt("not a concord snapshot (bad magic)".into()));
        }
        let version = head.u8().map_err(corrupt)?;
        if version != VERSION {
            return Err(corrupt(format!("unsupported format version {version}")));
        }
        let index = head.u64().map_err(corrupt)?;
        let term = head.u64().map_err(corrupt)?;
        let mut lists = Vec::new();
        for _ in 0..4 {
            let mut count = [0u8; 4];
            r.read_hashed(&mut count)
                .map_err(|e| corrupt(e.to_string()))?;
            let count = u32::from_le_bytes(count) as u64;
            if count > size / 8 {
                return Err(corrupt(format!(
                    "node id list of {count} entries exceeds the file"
                )));
            }
            let mut ids = vec![0u8; count as usize * 8];
            r.read_hashed(&mut ids)
                .map_err(|e| corrupt(e.to_string()))?;
            lists.push(
                ids.chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect::<Vec<u64>>(),
            );
        }
        let mut tail = [0u8; 9];
        r.read_hashed(&mut tail)
            .map_err(|e| corrupt(e.to_string()))?;
        let data_len = u64::from_le_bytes(tail[1..].try_into().expect("8 bytes"));
        let head_len =
            (fixed.len() + 16 + 9) as u64 + 8 * lists.iter().map(|l| l.len() as u64).sum::<u64>();
        if head_len
            .checked_add(data_len)
            .and_then(|n| n.checked_add(4))
            != Some(size)
        {
            return Err(corrupt(format!(
                "the header says {data_len} bytes of data, the file is {size} bytes"
            )));
        }
        let lists: [Vec<u64>; 4] = lists.try_into().expect("4 lists");
        let conf = conf_state(lists, tail[0]).map_err(corrupt)?;
        let meta = r.meta.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf);
        r.data_len = data_len;
        r.data_left = data_len;
        Ok(r)
    }

    fn read_hashed(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact(buf)?;
        self.crc.update(buf);
        Ok(())
    }

    /// Reads what is left of the data, then the checksum, and compares.
    pub fn finish(mut self) -> Result<(), StorageError> {
        let path = self.path.clone();
        let corrupt = |reason: String| StorageError::CorruptSnapshot {
            path: path.clone(),
            reason,
        };
        let mut rest = vec![0u8; 64 * 1024];
        while self.data_left > 0 {
            let n = self.data_left.min(rest.len() as u64) as usize;
            self.read_exact(&mut rest[..n])
                .map_err(|e| corrupt(e.to_string()))?;
        }
        let mut crc = [0u8; 4];
        self.inner
            .read_exact(&mut crc)
            .map_err(|e| corrupt(format!("no checksum: {e}")))?;
        if self.crc.clone().finalize() != u32::from_le_bytes(crc) {
            return Err(corrupt("checksum mismatch".into()));
        }
        let mut extra = [0u8; 1];
        if self
            .inner
            .read(&mut extra)
            .map_err(|e| corrupt(e.to_string()))?
            != 0
        {
            return Err(corrupt("bytes after the checksum".into()));
        }
        Ok(())
    }
}

impl std::io::Read for SnapshotReader {
    /// The data, and nothing past it.
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let max = buf
            .len()
            .min(self.data_left.min(usize::MAX as u64) as usize);
        if max == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the snapshot file ends inside its data",
            ));
        }
        self.crc.update(&buf[..n]);
        self.data_left -= n as u64;
        Ok(n)
    }
}

impl SnapshotFile {
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), StorageError> {
        let out = self.out.as_mut().expect("written only before finish");
        out.write_all(chunk)
            .map_err(io_ctx(format!("writing snapshot {}", self.tmp.display())))?;
        self.data_crc.update(chunk);
        self.data_len += chunk.len() as u64;
        self.unsynced += chunk.len() as u64;
        if self.unsynced >= SYNC_EVERY {
            self.unsynced = 0;
            out.flush()
                .and_then(|()| out.get_ref().sync_data())
                .map_err(io_ctx(format!("fsync of {}", self.tmp.display())))?;
        }
        Ok(())
    }

    /// Writes the data's length and the checksum and fsyncs the file.
    pub fn finish(mut self) -> Result<WrittenSnapshot, StorageError> {
        let ctx = format!("writing snapshot {}", self.tmp.display());
        let mut out = self.out.take().expect("finished once");
        let len_at = self.head.len() as u64;
        let len = self.data_len.to_le_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.head);
        crc.update(&len);
        crc.combine(&self.data_crc);
        out.write_all(&crc.finalize().to_le_bytes())
            .map_err(io_ctx(ctx.clone()))?;
        let mut file = out
            .into_inner()
            .map_err(|e| io_ctx(ctx.clone())(e.into_error()))?;
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(len_at))
            .and_then(|_| file.write_all(&len))
            .map_err(io_ctx(ctx.clone()))?;
        file.sync_all()
            .map_err(io_ctx(format!("fsync of {}", self.tmp.display())))?;
        let bytes = len_at + 8 + self.data_len + 4;
        Ok(WrittenSnapshot {
            index: self.index,
            term: self.term,
            tmp: std::mem::take(&mut self.tmp),
            path: std::mem::take(&mut self.path),
            bytes,
        })
    }
}

impl Drop for SnapshotFile {
    fn drop(&mut self) {
        if self.out.is_some() {
            drop(self.out.take());
            let _ = fs::remove_file(&self.tmp);
        }
    }
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
    let lists = [
        read_ids(&mut r)?,
        read_ids(&mut r)?,
        read_ids(&mut r)?,
        read_ids(&mut r)?,
    ];
    let conf = conf_state(lists, r.u8()?)?;
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

    /// Starts a snapshot file at (index, term) under a temp name, for data
    /// that arrives a chunk at a time.
    pub fn begin(
        &self,
        index: u64,
        term: u64,
        conf: &ConfState,
    ) -> Result<SnapshotFile, StorageError> {
        let path = self.dir.join(file_name(index));
        let tmp = self.dir.join(format!("{}{TMP_SUFFIX}", file_name(index)));
        let ctx = || format!("writing snapshot {}", tmp.display());
        let mut head = Vec::new();
        encode_head(&mut head, index, term, conf).map_err(io_ctx(ctx()))?;
        let file = File::create(&tmp).map_err(io_ctx(ctx()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        // The data's length is written over these zeros at the end.
        out.write_all(&head)
            .and_then(|()| out.write_all(&[0; 8]))
            .map_err(io_ctx(ctx()))?;
        Ok(SnapshotFile {
            tmp,
            path,
            index,
            term,
            head,
            out: Some(out),
            data_crc: crc32fast::Hasher::new(),
            data_len: 0,
            unsynced: 0,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest complete snapshot file: (index, path).
    pub fn latest(&self) -> Result<Option<(u64, PathBuf)>, StorageError> {
        Ok(self.list()?.into_iter().next())
    }

    /// Where a snapshot file arriving from a peer is written: a temp name
    /// (removed by the next [`SnapshotStore::open`] if it is left behind)
    /// unique to this transfer.
    pub fn incoming_path(&self, index: u64, from: u64, transfer: u64) -> PathBuf {
        self.dir.join(format!(
            "{}.from-{from}-{transfer}{TMP_SUFFIX}",
            file_name(index)
        ))
    }

    /// Moves a written snapshot file into place (durably) and deletes the
    /// older ones beyond the newest two.
    pub fn install(&self, written: &WrittenSnapshot) -> Result<(), StorageError> {
        fs::rename(&written.tmp, &written.path).map_err(io_ctx(format!(
            "renaming {} to {}",
            written.tmp.display(),
            written.path.display()
        )))?;
        sync_dir(&self.dir)?;
        self.prune()
    }

    fn prune(&self) -> Result<(), StorageError> {
        let old = self.list()?;
        if old.len() > KEEP {
            for (_, stale) in &old[KEEP..] {
                fs::remove_file(stale).map_err(io_ctx(format!("removing {}", stale.display())))?;
            }
            sync_dir(&self.dir)?;
        }
        Ok(())
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
        self.prune()
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
    fn a_file_written_in_chunks_is_the_file_save_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        // Past two of the syncs made on the way.
        let len = 2 * SYNC_EVERY as u32 + 100_000;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let s = snap(9, 3, &data);
        let meta = s.get_metadata();
        let mut file = store.begin(9, 3, meta.get_conf_state()).unwrap();
        for chunk in data.chunks(65_537) {
            file.write(chunk).unwrap();
        }
        let written = file.finish().unwrap();
        // Durable under its temp name, not yet in place.
        assert_eq!(store.load_latest().unwrap(), None);
        store.install(&written).unwrap();
        assert_eq!(store.load_latest().unwrap(), Some(s.clone()));
        let chunked = fs::read(dir.path().join(file_name(9))).unwrap();
        assert_eq!(written.bytes, chunked.len() as u64);
        let other = tempfile::tempdir().unwrap();
        SnapshotStore::open(other.path()).unwrap().save(&s).unwrap();
        assert_eq!(fs::read(other.path().join(file_name(9))).unwrap(), chunked);
    }

    #[test]
    fn a_file_read_as_a_stream_checks_its_length_and_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let s = snap(12, 4, &data);
        store.save(&s).unwrap();
        let path = file_path(dir.path(), 12);
        let mut reader = SnapshotReader::open(&path).unwrap();
        assert_eq!(reader.meta.get_metadata(), s.get_metadata());
        assert_eq!(reader.data_len, data.len() as u64);
        let mut read = Vec::new();
        reader.read_to_end(&mut read).unwrap();
        assert_eq!(read, data);
        reader.finish().unwrap();
        // Stopping early still checks the whole file.
        SnapshotReader::open(&path).unwrap().finish().unwrap();

        let good = fs::read(&path).unwrap();
        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 1;
        fs::write(&path, &flipped).unwrap();
        let err = SnapshotReader::open(&path).unwrap().finish().unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        for cut in [good.len() - 1, good.len() / 2, 40, 3] {
            fs::write(&path, &good[..cut]).unwrap();
            let refused = SnapshotReader::open(&path).and_then(SnapshotReader::finish);
            assert!(refused.is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn an_unfinished_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::open(dir.path()).unwrap();
        let mut file = store.begin(5, 1, &ConfState::default()).unwrap();
        file.write(b"half a state").unwrap();
        assert_eq!(snap_files(dir.path()).len(), 1);
        drop(file);
        assert!(snap_files(dir.path()).is_empty());
        let written = store
            .begin(6, 1, &ConfState::default())
            .unwrap()
            .finish()
            .unwrap();
        written.discard();
        assert!(snap_files(dir.path()).is_empty());
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
