//! Who a data directory belongs to.
//!
//! A data directory holds one node's raft log: its votes, its acknowledged
//! entries. Started under another node id, the node would vote twice in a
//! term under two names, or present another node's log as its own; started
//! under another cluster id, it would mix two clusters' histories. Both
//! break raft's safety without any error at the moment they happen, so the
//! directory records at its first start the node id, the cluster id, and a
//! random UUID for this incarnation of the directory (a directory wiped and
//! made anew gets a new one), and every later start compares.
//!
//! The file is `identity`, plain `key = value` lines, written to a temp
//! file, fsync'd, renamed and the directory fsync'd, like snapshots.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::StorageError;

const FILE: &str = "identity";

/// What the directory records about its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub node_id: u64,
    pub cluster_id: String,
    /// Random at the directory's creation: tells incarnations apart.
    pub uuid: String,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "data directory {dir} belongs to node {found}, not node {wanted}: start it with --node-id {found}, or give node {wanted} a data directory of its own"
    )]
    NodeId {
        dir: PathBuf,
        found: u64,
        wanted: u64,
    },
    #[error(
        "data directory {dir} belongs to cluster '{found}', not '{wanted}': start it with --cluster-id {found}, or give this node an empty data directory"
    )]
    Cluster {
        dir: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("{path} is not a valid identity file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Checks the identity recorded in `dir` against `node_id` and `cluster_id`,
/// recording them (with a new UUID) if the directory has none yet.
pub fn check_or_create(
    dir: &Path,
    node_id: u64,
    cluster_id: &str,
) -> Result<Identity, IdentityError> {
    let path = dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found = parse(&text).map_err(|reason| IdentityError::Malformed {
                path: path.clone(),
                reason,
            })?;
            if found.node_id != node_id {
                return Err(IdentityError::NodeId {
                    dir: dir.to_owned(),
                    found: found.node_id,
                    wanted: node_id,
                });
            }
            if found.cluster_id != cluster_id {
                return Err(IdentityError::Cluster {
                    dir: dir.to_owned(),
                    found: found.cluster_id,
                    wanted: cluster_id.to_owned(),
                });
            }
            Ok(found)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = Identity {
                node_id,
                cluster_id: cluster_id.to_owned(),
                uuid: new_uuid(),
            };
            write(dir, &identity)?;
            Ok(identity)
        }
        Err(source) => Err(StorageError::Io {
            context: format!("reading {}", path.display()),
            source,
        }
        .into()),
    }
}

fn parse(text: &str) -> Result<Identity, String> {
    let (mut node_id, mut cluster_id, mut uuid) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line '{line}' is not key = value"))?;
        let value = value.trim().to_owned();
        match key.trim() {
            "node_id" => {
                node_id = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("node_id '{value}' is not a number"))?,
                )
            }
            "cluster_id" => cluster_id = Some(value),
            "uuid" => uuid = Some(value),
            other => return Err(format!("unknown key '{other}'")),
        }
    }
    Ok(Identity {
        node_id: node_id.ok_or("node_id is missing")?,
        cluster_id: cluster_id.ok_or("cluster_id is missing")?,
        uuid: uuid.ok_or("uuid is missing")?,
    })
}

fn write(dir: &Path, identity: &Identity) -> Result<(), StorageError> {
    let io = |context: String| move |source| StorageError::Io { context, source };
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(format!("{FILE}.tmp"));
    let text = format!(
        "# Written by concord at this directory's first start; do not edit.\nnode_id = {}\ncluster_id = {}\nuuid = {}\n",
        identity.node_id, identity.cluster_id, identity.uuid
    );
    let mut file = fs::File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    let path = dir.join(FILE);
    fs::rename(&tmp, &path).map_err(io(format!("renaming to {}", path.display())))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("syncing {}", dir.display())))
}

/// A random version-4 UUID in its usual text form.
fn new_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_remembers_its_node_and_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let first = check_or_create(dir.path(), 2, "prod").unwrap();
        assert_eq!(first.uuid.len(), 36);
        assert_eq!(check_or_create(dir.path(), 2, "prod").unwrap(), first);
        let err = check_or_create(dir.path(), 3, "prod").unwrap_err();
        assert!(matches!(
            err,
            IdentityError::NodeId {
                found: 2,
                wanted: 3,
                ..
            }
        ));
        assert!(err.to_string().contains("--node-id 2"), "{err}");
        let err = check_or_create(dir.path(), 2, "staging").unwrap_err();
        assert!(matches!(err, IdentityError::Cluster { .. }));
        assert!(err.to_string().contains("cluster 'prod'"), "{err}");
    }

    #[test]
    fn a_damaged_identity_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "node_id = x\ncluster_id = a\nuuid = u\n",
            "node_id = 1\n",
            "junk\n",
        ] {
            fs::write(dir.path().join(FILE), bad).unwrap();
            assert!(matches!(
                check_or_create(dir.path(), 1, "a"),
                Err(IdentityError::Malformed { .. })
            ));
        }
    }
}
