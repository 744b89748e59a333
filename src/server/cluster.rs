//! Cluster commands answered by this node: RAFT.* administration and
//! introspection, and the connection's read mode.

use bytes::Bytes;

use super::connection::Conn;
use super::local::Local;
use super::Shared;
use crate::command::{is, CommandError};
use crate::raft::cluster::{AdminOp, RaftInfo};
use crate::raft::ReadMode;
use crate::resp::Reply;
use crate::state::strings::parse_i64;

fn bulk(s: impl AsRef<[u8]>) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_ref()))
}

fn node_id(arg: &[u8]) -> Result<u64, Reply> {
    match parse_i64(arg) {
        Some(id) if id > 0 => Ok(id as u64),
        _ => Err(Reply::error("ERR node id must be a positive integer")),
    }
}

pub(super) fn execute(conn: &mut Conn, name: &str, argv: &[Bytes], shared: &Shared) -> Local {
    let _ = conn;
    let node = shared.node.clone();
    match name {
        "raft.info" => Local::Later(Box::pin(async move {
            match node.info().await {
                Ok(info) => info_reply(&info),
                Err(e) => Reply::error(e.to_string()),
            }
        })),
        "raft.snapshot" => snapshot(shared, |index| Reply::Int(index as i64)),
        "raft.backup" => backup(shared),
        "raft.transfer" => match node_id(&argv[1]) {
            Ok(id) => Local::Wait(node.admin(AdminOp::TransferLeader { id })),
            Err(e) => Local::Now(e),
        },
        "raft.member" => member(argv, shared),
        other => Local::Now(Reply::error(format!(
            "ERR command '{other}' is not served by this node"
        ))),
    }
}

/// Takes a snapshot of this node now (RAFT.SNAPSHOT, SAVE); `done` turns
/// its index into the reply.
pub(super) fn snapshot(shared: &Shared, done: fn(u64) -> Reply) -> Local {
    let node = shared.node.clone();
    Local::Later(Box::pin(async move {
        match node.snapshot().await {
            Ok(index) => done(index),
            Err(e) => Reply::error(e.to_string()),
        }
    }))
}

/// RAFT.BACKUP: a read barrier (so the backup holds every write
/// acknowledged before it, whichever node took it), a snapshot of this
/// node's state, and that snapshot file's bytes as one bulk string, for
/// `concord ctl snapshot save`. The file is what the node itself would
/// start from; `concord ctl snapshot restore` turns it into a new data
/// directory. Bounded by proto-max-bulk-len: a larger state is refused
/// rather than sent.
fn backup(shared: &Shared) -> Local {
    let node = shared.node.clone();
    let dir = shared.config.data_dir.join("snap");
    let limit = shared.param_u64("proto-max-bulk-len", shared.config.proto_max_bulk_len);
    Local::Later(Box::pin(async move {
        let barrier = node.read(
            crate::state::Query::Fingerprints(Vec::new()),
            ReadMode::Linearizable,
        );
        if let Err(e) = crate::raft::answer(barrier).await {
            return Reply::error(e.to_string());
        }
        // The snapshot file can be replaced under us (a newer snapshot
        // removes the oldest of three) or, right after a leader's snapshot
        // was installed here, not be written yet: ask again.
        let mut last_error = String::new();
        for _ in 0..20 {
            let index = match node.snapshot().await {
                Ok(index) => index,
                Err(e) => return Reply::error(e.to_string()),
            };
            let path = crate::storage::snapshot::file_path(&dir, index);
            let read = tokio::task::spawn_blocking(move || std::fs::read(&path)).await;
            match read {
                Ok(Ok(bytes)) if bytes.len() as u64 > limit => {
                    return Reply::error(format!(
                        "ERR the snapshot is {} bytes, more than proto-max-bulk-len ({limit}): raise it with CONFIG SET proto-max-bulk-len, or copy a stopped node's data directory",
                        bytes.len()
                    ));
                }
                Ok(Ok(bytes)) => return Reply::Bulk(Bytes::from(bytes)),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    last_error = format!("snapshot file at index {index} is gone");
                }
                Ok(Err(e)) => return Reply::error(format!("ERR reading the snapshot: {e}")),
                Err(e) => return Reply::error(format!("ERR reading the snapshot: {e}")),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Reply::error(format!("ERR no snapshot file to send: {last_error}"))
    }))
}

fn member(argv: &[Bytes], shared: &Shared) -> Local {
    let node = &shared.node;
    match argv {
        [_, verb, id, addr] if is(verb, "ADD") => match node_id(id) {
            Ok(id) => {
                let addr = String::from_utf8_lossy(addr).into_owned();
                if !addr.contains(':') {
                    return Local::Now(Reply::error("ERR peer address must be HOST:PORT"));
                }
                Local::Wait(node.admin(AdminOp::AddMember { id, addr }))
            }
            Err(e) => Local::Now(e),
        },
        [_, verb, id] if is(verb, "REMOVE") => match node_id(id) {
            Ok(id) => Local::Wait(node.admin(AdminOp::RemoveMember { id })),
            Err(e) => Local::Now(e),
        },
        _ => Local::Now(Reply::error(CommandError::Syntax.to_string())),
    }
}

fn info_reply(info: &RaftInfo) -> Reply {
    let ids = |v: &[u64]| Reply::Array(v.iter().map(|id| Reply::Int(*id as i64)).collect());
    let peers = info
        .peers
        .iter()
        .map(|p| {
            Reply::Map(vec![
                (bulk("id"), Reply::Int(p.id as i64)),
                (bulk("addr"), bulk(&p.addr)),
                (bulk("voter"), Reply::Bool(p.voter)),
                (bulk("match_index"), Reply::Int(p.matched as i64)),
                (bulk("next_index"), Reply::Int(p.next as i64)),
                (
                    bulk("lag"),
                    Reply::Int(info.commit.saturating_sub(p.matched) as i64),
                ),
                (bulk("state"), bulk(&p.state)),
                (bulk("recent_active"), Reply::Bool(p.recent_active)),
            ])
        })
        .collect();
    Reply::Map(vec![
        (bulk("id"), Reply::Int(info.id as i64)),
        (bulk("role"), bulk(info.role)),
        (bulk("term"), Reply::Int(info.term as i64)),
        (bulk("leader"), Reply::Int(info.leader as i64)),
        (bulk("commit_index"), Reply::Int(info.commit as i64)),
        (bulk("applied_index"), Reply::Int(info.applied as i64)),
        (bulk("last_index"), Reply::Int(info.last_index as i64)),
        (
            bulk("snapshot_index"),
            Reply::Int(info.snapshot_index as i64),
        ),
        (bulk("voters"), ids(&info.voters)),
        (bulk("learners"), ids(&info.learners)),
        (bulk("peers"), Reply::Array(peers)),
    ])
}

/// READMODE LINEARIZABLE|LEASE|STALE, and Redis Cluster's READONLY /
/// READWRITE (stale reads from this node / back to linearizable).
pub(super) fn read_mode(conn: &mut Conn, name: &str, argv: &[Bytes]) -> Reply {
    let mode = match name {
        "readonly" => ReadMode::Stale,
        "readwrite" => ReadMode::Linearizable,
        _ => {
            let Some(arg) = argv.get(1) else {
                let current = match conn.read_mode {
                    ReadMode::Linearizable => "linearizable",
                    ReadMode::Lease => "lease",
                    ReadMode::Stale => "stale",
                };
                return bulk(current);
            };
            if is(arg, "LINEARIZABLE") {
                ReadMode::Linearizable
            } else if is(arg, "LEASE") {
                ReadMode::Lease
            } else if is(arg, "STALE") {
                ReadMode::Stale
            } else {
                return Reply::error("ERR read mode must be LINEARIZABLE, LEASE or STALE");
            }
        }
    };
    conn.read_mode = mode;
    Reply::ok()
}
