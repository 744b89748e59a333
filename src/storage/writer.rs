//! The group-commit thread.
//!
//! One OS thread ("concord-wal") owns the [`Wal`]. It blocks for a job, then
//! drains every job already queued, appends them all with one write, fdatasyncs
//! once and reports the highest job number through `on_persisted`. Jobs that
//! arrive during the sync form the next round, so under load one fsync covers
//! many Ready batches, and the async Raft loop never waits on the disk.
//!
//! Snapshot files are written here too (a job may carry one): saved and
//! fsynced before the round's records are appended, so a snapshot mark in the
//! WAL never precedes its file, and the raft loop never runs an fsync itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use ::raft::eraftpb::Snapshot;

use super::snapshot::WrittenSnapshot;
use super::{Record, SnapshotStore, StorageError, Wal};

/// One unit of work: records to persist, in order, and optionally a
/// compaction to run once they are durable.
#[derive(Debug, Clone)]
pub struct WalJob {
    /// Reported back through `on_persisted` once durable; should increase.
    pub number: u64,
    /// A snapshot file to save (durably) before the records are appended.
    /// If the save fails, this job's records and compaction are skipped and
    /// the failure is reported in [`Persisted::snapshots`]; the writer goes on.
    pub snapshot: Option<SnapshotJob>,
    pub records: Vec<Record>,
    /// Run [`Wal::compact`] with this after the sync.
    pub compact_upto: Option<u64>,
    /// The records may be reported persisted once written, before a sync:
    /// a HardState that only moves the commit index. A crash may lose it;
    /// the commit index then restarts lower and the leader tells the node
    /// again (Raft needs term and vote durable, not the commit index). The
    /// next sync makes it durable. Saves an fdatasync per such round.
    pub deferrable: bool,
}

/// A snapshot file a job makes durable before its records.
#[derive(Debug, Clone)]
pub enum SnapshotJob {
    /// Write this snapshot (a leader's, received whole).
    Save(Snapshot),
    /// Move this file, written and fsynced already, into place.
    Install(WrittenSnapshot),
}

impl SnapshotJob {
    fn index_term(&self) -> (u64, u64) {
        match self {
            SnapshotJob::Save(s) => (s.get_metadata().index, s.get_metadata().term),
            SnapshotJob::Install(w) => (w.index, w.term),
        }
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct WalStats {
    /// Group commits that synced (rounds with at least one record).
    pub syncs: AtomicU64,
    pub records: AtomicU64,
    /// Encoded bytes appended, framing included.
    pub bytes: AtomicU64,
    pub jobs: AtomicU64,
    /// Rounds that wrote only deferrable records and skipped the sync.
    pub deferred: AtomicU64,
    /// Where each sync's duration goes (`/metrics`, LATENCY), if anywhere.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// What one group commit made durable.
#[derive(Debug)]
pub struct Persisted {
    /// The highest job number of the round.
    pub number: u64,
    /// The snapshot files the round saved, by (index, term), with the error
    /// for one that could not be saved.
    pub snapshots: Vec<(u64, u64, Result<(), StorageError>)>,
}

type OnPersisted = Box<dyn Fn(Result<Persisted, StorageError>) + Send>;

/// Handle to the WAL thread. Dropping it without [`WalWriter::shutdown`] lets
/// the thread finish the queued jobs and exit on its own.
pub struct WalWriter {
    tx: Option<Sender<WalJob>>,
    thread: Option<JoinHandle<Result<(), StorageError>>>,
}

impl std::fmt::Debug for WalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalWriter").finish_non_exhaustive()
    }
}

impl WalWriter {
    /// Spawns a named OS thread ("concord-wal") owning the Wal (and the
    /// snapshot directory, if given). It blocks for a job, then drains EVERY
    /// job already queued, saves the snapshot files they carry, appends all
    /// their records, fdatasyncs ONCE, then calls `on_persisted(Ok(..))` with
    /// the highest job number. Compaction requests run after the sync. On any
    /// WAL IO error it calls `on_persisted(Err(e))` and stops (the node must
    /// stop: a failed fsync cannot be retried safely).
    ///
    /// # Panics
    /// If the OS refuses to create a thread.
    pub fn spawn(
        wal: Wal,
        snaps: Option<SnapshotStore>,
        stats: Arc<WalStats>,
        on_persisted: OnPersisted,
    ) -> WalWriter {
        Self::spawn_gated(wal, snaps, stats, on_persisted, None)
    }

    /// Like `spawn`; with a gate, the thread waits for it (a message or its
    /// sender being dropped) before taking its first job.
    fn spawn_gated(
        wal: Wal,
        snaps: Option<SnapshotStore>,
        stats: Arc<WalStats>,
        on_persisted: OnPersisted,
        gate: Option<Receiver<()>>,
    ) -> WalWriter {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("concord-wal".to_string())
            .spawn(move || {
                if let Some(gate) = gate {
                    let _ = gate.recv();
                }
                run(wal, snaps.as_ref(), &rx, &stats, &*on_persisted)
            })
            .expect("cannot spawn the concord-wal thread");
        WalWriter {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Queues a job; never blocks on IO. A job submitted after the thread
    /// stopped on an error is dropped (the error was already reported).
    pub fn submit(&self, job: WalJob) {
        if let Some(tx) = &self.tx {
            if tx.send(job).is_err() {
                tracing::debug!("WAL writer has stopped; job dropped");
            }
        }
    }

    /// Flushes everything submitted, syncs, and joins the thread. Returns an
    /// error if the thread had stopped on an error (already reported through
    /// `on_persisted`) or panicked.
    pub fn shutdown(mut self) -> Result<(), StorageError> {
        // Closing the channel ends the thread once the queue is drained.
        drop(self.tx.take());
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(StorageError::WriterStopped {
                reason: "the WAL thread panicked".to_string(),
            }),
            None => Ok(()),
        }
    }
}

fn run(
    mut wal: Wal,
    snaps: Option<&SnapshotStore>,
    rx: &Receiver<WalJob>,
    stats: &WalStats,
    on_persisted: &(dyn Fn(Result<Persisted, StorageError>) + Send),
) -> Result<(), StorageError> {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        jobs.extend(rx.try_iter());
        let snapshots = save_snapshots(snaps, &mut jobs);
        match commit(&mut wal, &jobs, stats) {
            Ok(number) => on_persisted(Ok(Persisted { number, snapshots })),
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %e, "WAL write failed; the WAL thread stops");
                on_persisted(Err(e));
                return Err(StorageError::WriterStopped { reason });
            }
        }
    }
    Ok(())
}

/// Saves the snapshot files the jobs carry, in order. A job whose snapshot
/// could not be saved loses its records and compaction (a snapshot mark must
/// never be durable without its file).
fn save_snapshots(
    snaps: Option<&SnapshotStore>,
    jobs: &mut [WalJob],
) -> Vec<(u64, u64, Result<(), StorageError>)> {
    let mut saved = Vec::new();
    for job in jobs.iter_mut() {
        let Some(snapshot) = job.snapshot.take() else {
            continue;
        };
        let (index, term) = snapshot.index_term();
        let result = match (snaps, &snapshot) {
            (Some(snaps), SnapshotJob::Save(s)) => snaps.save(s),
            (Some(snaps), SnapshotJob::Install(w)) => snaps.install(w),
            (None, _) => Err(StorageError::WriterStopped {
                reason: "this WAL writer has no snapshot directory".to_string(),
            }),
        };
        if result.is_err() {
            job.records.clear();
            job.compact_upto = None;
        }
        saved.push((index, term, result));
    }
    saved
}

/// One group commit: append all jobs, sync once, then compact. Returns the
/// highest job number.
fn commit(wal: &mut Wal, jobs: &[WalJob], stats: &WalStats) -> Result<u64, StorageError> {
    let records = jobs.iter().flat_map(|j| j.records.iter());
    let count = records.clone().count() as u64;
    if count > 0 {
        let bytes: u64 = records.clone().map(|r| r.encoded_len() as u64).sum();
        wal.append_records(records)?;
        if jobs.iter().any(|j| !j.deferrable && !j.records.is_empty()) {
            let started = std::time::Instant::now();
            wal.sync()?;
            if let Some(m) = &stats.metrics {
                let took = started.elapsed();
                m.fsync_duration.observe(took.as_secs_f64());
                m.latency.record("wal-fsync", took);
            }
            stats.syncs.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.deferred.fetch_add(1, Ordering::Relaxed);
        }
        stats.records.fetch_add(count, Ordering::Relaxed);
        stats.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    if let Some(upto) = jobs.iter().filter_map(|j| j.compact_upto).max() {
        wal.compact(upto)?;
    }
    stats.jobs.fetch_add(jobs.len() as u64, Ordering::Relaxed);
    Ok(jobs.iter().map(|j| j.number).max().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::wal::tests::appending;
    use ::raft::eraftpb::{Entry, HardState};
    use std::sync::Mutex;

    fn entry(index: u64) -> Record {
        Record::Entry(Entry {
            index,
            term: 1,
            data: bytes::Bytes::from(format!("value {index}")),
            ..Default::default()
        })
    }

    type Seen = Arc<Mutex<Vec<Result<u64, String>>>>;

    fn recorder() -> (Seen, OnPersisted) {
        let seen: Seen = Arc::default();
        let s = Arc::clone(&seen);
        let cb: OnPersisted = Box::new(move |r| {
            s.lock()
                .unwrap()
                .push(r.map(|p| p.number).map_err(|e| e.to_string()));
        });
        (seen, cb)
    }

    fn job(number: u64) -> WalJob {
        WalJob {
            number,
            snapshot: None,
            records: vec![entry(number)],
            compact_upto: None,
            deferrable: false,
        }
    }

    /// A writer on a fresh WAL in `dir` that takes no job before the gate
    /// opens.
    fn gated_writer(dir: &std::path::Path) -> (WalWriter, Arc<WalStats>, Seen, mpsc::Sender<()>) {
        let (wal, _) = Wal::open(dir, appending(64 * 1024 * 1024)).unwrap();
        let stats = Arc::new(WalStats::default());
        let (seen, cb) = recorder();
        let (gate_tx, gate_rx) = mpsc::channel();
        let writer = WalWriter::spawn_gated(wal, None, Arc::clone(&stats), cb, Some(gate_rx));
        (writer, stats, seen, gate_tx)
    }

    #[test]
    fn queued_jobs_share_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, stats, seen, gate_tx) = gated_writer(dir.path());
        for n in 1..=50 {
            writer.submit(job(n));
        }
        gate_tx.send(()).unwrap();
        writer.shutdown().unwrap();

        assert_eq!(stats.jobs.load(Ordering::Relaxed), 50);
        assert_eq!(stats.records.load(Ordering::Relaxed), 50);
        assert_eq!(stats.syncs.load(Ordering::Relaxed), 1);
        let expect_bytes: u64 = (1..=50).map(|n| entry(n).encoded_len() as u64).sum();
        assert_eq!(stats.bytes.load(Ordering::Relaxed), expect_bytes);
        assert_eq!(*seen.lock().unwrap(), vec![Ok(50)]);

        let (_, r) = Wal::open(dir.path(), appending(64 * 1024 * 1024)).unwrap();
        let got: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
        assert_eq!(got, (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn commit_index_rounds_skip_the_sync_until_a_durable_record_comes() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, stats, seen, gate_tx) = gated_writer(dir.path());
        let commit = |number: u64, commit: u64| WalJob {
            records: vec![Record::HardState(HardState {
                term: 1,
                vote: 1,
                commit,
                ..Default::default()
            })],
            deferrable: true,
            ..job(number)
        };
        // A round of only commit-index moves: written, reported, not synced.
        writer.submit(commit(1, 1));
        writer.submit(commit(2, 2));
        gate_tx.send(()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.lock().unwrap().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the first round never ended"
            );
            std::thread::yield_now();
        }
        // Then an entry: its round syncs (and with it what came before).
        writer.submit(job(3));
        writer.shutdown().unwrap();
        assert_eq!(stats.deferred.load(Ordering::Relaxed), 1);
        assert_eq!(stats.syncs.load(Ordering::Relaxed), 1);
        assert_eq!(*seen.lock().unwrap(), vec![Ok(2), Ok(3)]);
        let (_, r) = Wal::open(dir.path(), appending(64 * 1024 * 1024)).unwrap();
        assert_eq!(r.hard_state.map(|hs| hs.commit), Some(2));
    }

    #[test]
    fn shutdown_flushes_everything_submitted() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), appending(256)).unwrap();
        let stats = Arc::new(WalStats::default());
        let (seen, cb) = recorder();
        let writer = WalWriter::spawn(wal, None, Arc::clone(&stats), cb);
        for n in 1..=200 {
            writer.submit(job(n));
        }
        let hs = HardState {
            term: 1,
            commit: 200,
            ..Default::default()
        };
        writer.submit(WalJob {
            number: 201,
            snapshot: None,
            records: vec![Record::HardState(hs.clone())],
            compact_upto: None,
            deferrable: false,
        });
        writer.shutdown().unwrap();

        let syncs = stats.syncs.load(Ordering::Relaxed);
        assert!((1..=201).contains(&syncs), "syncs = {syncs}");
        assert_eq!(stats.jobs.load(Ordering::Relaxed), 201);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len() as u64, syncs);
        assert_eq!(seen.last(), Some(&Ok(201)));
        // Reported numbers only grow.
        let numbers: Vec<u64> = seen.iter().map(|r| *r.as_ref().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");

        let (_, r) = Wal::open(dir.path(), appending(64 * 1024 * 1024)).unwrap();
        assert_eq!(r.entries.len(), 200);
        assert_eq!(r.hard_state, Some(hs));
    }

    #[test]
    fn compaction_runs_after_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path(), appending(100)).unwrap();
        let stats = Arc::new(WalStats::default());
        let (seen, cb) = recorder();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let writer = WalWriter::spawn_gated(wal, None, stats, cb, Some(gate_rx));
        for n in 1..=20 {
            writer.submit(job(n));
        }
        // The mark and the compaction arrive in the same round as the entries.
        writer.submit(WalJob {
            number: 21,
            snapshot: None,
            records: vec![Record::SnapshotMark { index: 15, term: 1 }],
            compact_upto: Some(15),
            deferrable: false,
        });
        drop(gate_tx);
        writer.shutdown().unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![Ok(21)]);

        let files = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "wal")
            })
            .count();
        // Two entries per segment: {1,2} .. {19,20}, then {mark}. The seven
        // segments up to {13,14} are covered by the mark; {15,16} on are kept.
        assert_eq!(files, 4);
        let (_, r) = Wal::open(dir.path(), appending(64 * 1024 * 1024)).unwrap();
        assert_eq!(r.snapshot_mark, Some((15, 1)));
        let got: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
        assert_eq!(got, (16..=20).collect::<Vec<_>>());
    }

    fn snapshot(index: u64) -> Snapshot {
        let mut snap = Snapshot {
            data: bytes::Bytes::from(format!("state at {index}")),
            ..Default::default()
        };
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = 1;
        snap
    }

    type SeenFull = Arc<Mutex<Vec<(u64, Vec<(u64, bool)>)>>>;

    fn full_recorder() -> (SeenFull, OnPersisted) {
        let seen: SeenFull = Arc::default();
        let s = Arc::clone(&seen);
        let cb: OnPersisted = Box::new(move |r| {
            let p = r.expect("no WAL error");
            let snaps = p
                .snapshots
                .iter()
                .map(|(i, _, r)| (*i, r.is_ok()))
                .collect();
            s.lock().unwrap().push((p.number, snaps));
        });
        (seen, cb)
    }

    #[test]
    fn snapshot_files_are_saved_before_their_mark() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(&dir.path().join("wal"), appending(100)).unwrap();
        let snaps = SnapshotStore::open(&dir.path().join("snap")).unwrap();
        let (seen, cb) = full_recorder();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let writer = WalWriter::spawn_gated(wal, Some(snaps), Arc::default(), cb, Some(gate_rx));
        for n in 1..=20 {
            writer.submit(job(n));
        }
        writer.submit(WalJob {
            number: 21,
            snapshot: Some(SnapshotJob::Save(snapshot(15))),
            records: vec![Record::SnapshotMark { index: 15, term: 1 }],
            compact_upto: Some(15),
            deferrable: false,
        });
        drop(gate_tx);
        writer.shutdown().unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![(21, vec![(15, true)])]);

        let snaps = SnapshotStore::open(&dir.path().join("snap")).unwrap();
        let saved = snaps.load_latest().unwrap().expect("a snapshot file");
        assert_eq!(saved.get_metadata().index, 15);
        assert_eq!(saved.data, snapshot(15).data);
        let (_, r) = Wal::open(&dir.path().join("wal"), appending(64 * 1024 * 1024)).unwrap();
        assert_eq!(r.snapshot_mark, Some((15, 1)));
    }

    #[test]
    fn a_failed_snapshot_save_skips_its_mark_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(&dir.path().join("wal"), appending(64 * 1024 * 1024)).unwrap();
        let snap_dir = dir.path().join("snap");
        let snaps = SnapshotStore::open(&snap_dir).unwrap();
        let (seen, cb) = full_recorder();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let writer = WalWriter::spawn_gated(wal, Some(snaps), Arc::default(), cb, Some(gate_rx));
        // Saving needs the directory, which is gone.
        std::fs::remove_dir_all(&snap_dir).unwrap();
        writer.submit(job(1));
        writer.submit(WalJob {
            number: 1,
            snapshot: Some(SnapshotJob::Save(snapshot(1))),
            records: vec![Record::SnapshotMark { index: 1, term: 1 }],
            compact_upto: Some(1),
            deferrable: false,
        });
        writer.submit(job(2));
        drop(gate_tx);
        writer.shutdown().unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![(2, vec![(1, false)])]);

        let (_, r) = Wal::open(&dir.path().join("wal"), appending(64 * 1024 * 1024)).unwrap();
        assert_eq!(r.snapshot_mark, None);
        let got: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
        assert_eq!(got, vec![1, 2]);
    }

    #[test]
    fn io_error_is_reported_and_stops_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let (wal, _) = Wal::open(&wal_dir, appending(64)).unwrap();
        let (seen, cb) = recorder();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let writer = WalWriter::spawn_gated(wal, None, Arc::default(), cb, Some(gate_rx));
        // Rolling to a second segment needs the directory, which is gone.
        std::fs::remove_dir_all(&wal_dir).unwrap();
        writer.submit(WalJob {
            number: 1,
            snapshot: None,
            records: vec![entry(1), entry(2)],
            compact_upto: None,
            deferrable: false,
        });
        drop(gate_tx);
        let err = writer.shutdown().unwrap_err();
        assert!(matches!(err, StorageError::WriterStopped { .. }), "{err}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        let msg = seen[0].as_ref().unwrap_err();
        assert!(msg.contains("creating WAL segment"), "{msg}");
    }
}
