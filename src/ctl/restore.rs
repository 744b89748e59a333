//! `concord ctl snapshot restore` and `snapshot status`: a backup file
//! (RAFT.BACKUP's bytes, a node's own snapshot file) read back, and turned
//! into the data directory of a member of a new cluster.
//!
//! What a restored directory holds, and why:
//!
//! - `snap/`: the backup's snapshot at its own index and term, with the
//!   membership replaced by the new `--initial-cluster` voters, and the
//!   peer and client addresses the old cluster learned through its log
//!   forgotten (the new members are named by their configuration and
//!   advertise their client addresses again).
//! - `wal/`: a hard state at the snapshot's term, committed up to its
//!   index, and a snapshot mark. Without it the node would start at term 0
//!   under a log whose last entry has the backup's term, and the first
//!   leader's entries would carry a lower term than the entries before
//!   them, which raft's log comparison cannot tell apart safely.
//! - `identity`: the new node id and cluster id (with a new UUID), written
//!   last, so that a restore cut short leaves a directory `concord serve`
//!   refuses (a WAL without a snapshot) or one that is complete but for it.

use std::fs;
use std::path::{Path, PathBuf};

use ::raft::eraftpb::{ConfState, HardState, Snapshot};

use crate::config::parse_initial_cluster;
use crate::state::State;
use crate::storage::snapshot::from_bytes;
use crate::storage::{identity, Record, SnapshotStore, Wal, WalOptions};

/// What a backup file holds.
pub struct Summary {
    pub index: u64,
    pub term: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    pub bytes: u64,
    pub keys: u64,
}

/// Reads and checks a backup file: checksum, format, and that its state
/// decodes.
pub fn read(file: &Path) -> Result<(Snapshot, State, u64), String> {
    let bytes = fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let snapshot = from_bytes(&bytes)
        .map_err(|e| format!("{} is not a usable concord snapshot: {e}", file.display()))?;
    let state = State::decode_snapshot(&snapshot.data)
        .map_err(|e| format!("{}: the state in it does not decode: {e}", file.display()))?;
    let index = snapshot.get_metadata().index;
    if state.applied_index() != index {
        return Err(format!(
            "{}: the snapshot says index {index} but its state was applied to {}",
            file.display(),
            state.applied_index()
        ));
    }
    Ok((snapshot, state, bytes.len() as u64))
}

pub fn summary(snapshot: &Snapshot, state: &State, bytes: u64) -> Summary {
    let meta = snapshot.get_metadata();
    Summary {
        index: meta.index,
        term: meta.term,
        voters: meta.get_conf_state().voters.clone(),
        learners: meta.get_conf_state().learners.clone(),
        bytes,
        keys: state.key_count(),
    }
}

/// Where and as whom to restore.
pub struct Target<'a> {
    pub data_dir: &'a Path,
    pub node_id: u64,
    pub initial_cluster: &'a str,
    pub cluster_id: &'a str,
}

/// Writes a new data directory for `target` from the backup `file`.
pub fn restore(file: &Path, target: &Target<'_>) -> Result<Summary, String> {
    let peers = parse_initial_cluster(target.initial_cluster).map_err(|e| e.to_string())?;
    if !peers.iter().any(|p| p.id == target.node_id) {
        return Err(format!(
            "--node-id {} is not in --initial-cluster {}",
            target.node_id, target.initial_cluster
        ));
    }
    let dir = target.data_dir;
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(format!(
                    "{} is not empty: restore writes a new data directory, it never overwrites one",
                    dir.display()
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    }
    let (backup, mut state, bytes) = read(file)?;
    let meta = backup.get_metadata();
    let (index, term) = (meta.index, meta.term);
    state.forget_members();
    let mut snapshot = Snapshot {
        data: state.encode_snapshot().into(),
        ..Default::default()
    };
    let new_meta = snapshot.mut_metadata();
    new_meta.index = index;
    new_meta.term = term;
    new_meta.set_conf_state(ConfState {
        voters: peers.iter().map(|p| p.id).collect(),
        ..Default::default()
    });

    let storage = |e: crate::storage::StorageError| {
        format!(
            "{e} (the restore into {} is incomplete: remove the directory and run it again)",
            dir.display()
        )
    };
    let (mut wal, _) = Wal::open(
        &dir.join("wal"),
        WalOptions {
            preallocate: false,
            ..WalOptions::default()
        },
    )
    .map_err(storage)?;
    let hard_state = HardState {
        term,
        vote: 0,
        commit: index,
        ..Default::default()
    };
    wal.append(&[
        Record::HardState(hard_state),
        Record::SnapshotMark { index, term },
    ])
    .map_err(storage)?;
    wal.sync().map_err(storage)?;
    drop(wal);
    SnapshotStore::open(&dir.join("snap"))
        .and_then(|store| store.save(&snapshot))
        .map_err(storage)?;
    identity::check_or_create(dir, target.node_id, target.cluster_id).map_err(|e| e.to_string())?;
    Ok(summary(&snapshot, &state, bytes))
}

/// The `concord serve` flags that start the restored node, for the
/// message that ends a restore.
pub fn serve_hint(target: &Target<'_>) -> String {
    let mut hint = format!(
        "concord serve --node-id {} --data-dir {} --initial-cluster {}",
        target.node_id,
        PathBuf::from(target.data_dir).display(),
        target.initial_cluster
    );
    if target.cluster_id != "concord" {
        hint.push_str(&format!(" --cluster-id {}", target.cluster_id));
    }
    hint
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Op;

    fn backup(dir: &Path) -> PathBuf {
        let mut state = State::new();
        let op = Op::String(crate::state::strings::StringOp::MSet {
            pairs: vec![(
                bytes::Bytes::from_static(b"k"),
                bytes::Bytes::from_static(b"v"),
            )],
        });
        let _ = state.apply(7, 1_000, &op);
        state.set_member(9, "old-host:7379".into());
        let mut snapshot = Snapshot {
            data: state.encode_snapshot().into(),
            ..Default::default()
        };
        snapshot.mut_metadata().index = 7;
        snapshot.mut_metadata().term = 3;
        snapshot.mut_metadata().mut_conf_state().voters = vec![1, 2, 9];
        let store_dir = dir.join("old-snap");
        let store = SnapshotStore::open(&store_dir).unwrap();
        store.save(&snapshot).unwrap();
        let file = crate::storage::snapshot::file_path(&store_dir, 7);
        let copy = dir.join("backup.snap");
        fs::copy(file, &copy).unwrap();
        copy
    }

    #[test]
    fn a_restored_directory_starts_at_the_backup_with_the_new_members() {
        let tmp = tempfile::tempdir().unwrap();
        let file = backup(tmp.path());
        let dir = tmp.path().join("new");
        let target = Target {
            data_dir: &dir,
            node_id: 2,
            initial_cluster: "1=a:1,2=b:2,3=c:3",
            cluster_id: "restored",
        };
        let summary = restore(&file, &target).unwrap();
        assert_eq!((summary.index, summary.term, summary.keys), (7, 3, 1));
        assert_eq!(summary.voters, vec![1, 2, 3]);

        let snap = SnapshotStore::open(&dir.join("snap"))
            .unwrap()
            .load_latest()
            .unwrap()
            .unwrap();
        assert_eq!(snap.get_metadata().index, 7);
        assert_eq!(snap.get_metadata().term, 3);
        assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
        let state = State::decode_snapshot(&snap.data).unwrap();
        assert!(state.members().is_empty());
        assert_eq!(state.db().len(), 1);

        let (_, recovered) = Wal::open(&dir.join("wal"), WalOptions::default()).unwrap();
        let hs = recovered.hard_state.unwrap();
        assert_eq!((hs.term, hs.commit, hs.vote), (3, 7, 0));
        assert_eq!(recovered.snapshot_mark, Some((7, 3)));

        let id = identity::check_or_create(&dir, 2, "restored").unwrap();
        assert_eq!(id.node_id, 2);
        assert!(identity::check_or_create(&dir, 1, "restored").is_err());
    }

    #[test]
    fn restore_refuses_what_it_should() {
        let tmp = tempfile::tempdir().unwrap();
        let file = backup(tmp.path());
        let dir = tmp.path().join("new");
        let target = |node_id, cluster: &'static str| Target {
            data_dir: &dir,
            node_id,
            initial_cluster: cluster,
            cluster_id: "concord",
        };
        let err = restore(&file, &target(4, "1=a:1,2=b:2")).err().unwrap();
        assert!(err.contains("not in --initial-cluster"), "{err}");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("x"), b"").unwrap();
        let err = restore(&file, &target(1, "1=a:1")).err().unwrap();
        assert!(err.contains("not empty"), "{err}");
        fs::remove_file(dir.join("x")).unwrap();
        let mut bytes = fs::read(&file).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 0xff;
        let bad = tmp.path().join("bad.snap");
        fs::write(&bad, &bytes).unwrap();
        let err = restore(&bad, &target(1, "1=a:1")).err().unwrap();
        assert!(err.contains("checksum"), "{err}");
        // An empty directory (a mount point) is fine.
        restore(&file, &target(1, "1=a:1")).unwrap();
    }
}
