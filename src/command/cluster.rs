//! Cluster commands: Raft administration and the connection's read mode.
//! Answered by the server (`server::cluster`); declared here.

use super::{CommandSpec, Flag};

macro_rules! local {
    ($($row:tt)*) => { local_spec!(Cluster, $($row)*) };
}

const ADMIN: &[Flag] = &[Flag::Admin, Flag::NoScript];
const CONN: &[Flag] = &[Flag::Loading, Flag::Stale, Flag::Fast];

pub const SPECS: &[CommandSpec] = &[
    local!("raft.info", 1, &[Flag::Loading, Flag::Stale], "concord", "",
        "Returns this node's raft view: role, term, leader, commit and applied index, members, and on the leader each peer's match index and lag."),
    local!("raft.member", -3, ADMIN, "concord", "ADD id peer-addr | REMOVE id",
        "Adds a node (as a learner that is promoted to voter once it has caught up) or removes one, through the log. Waits until the change is applied."),
    local!("raft.transfer", 2, ADMIN, "concord", "id",
        "Hands leadership to a voting member and waits until it has taken over."),
    local!("raft.snapshot", 1, ADMIN, "concord", "",
        "Takes a snapshot of this node's state now and compacts its log; returns the snapshot's index."),
    local!("raft.backup", 1, ADMIN, "concord", "",
        "Takes a snapshot after a read barrier (it holds every write acknowledged before the call) and returns the snapshot file as one bulk string: a backup for `concord ctl snapshot save`, restored with `concord ctl snapshot restore`. The whole state travels in one reply: bounded by proto-max-bulk-len (a larger one is refused) and by the client's memory. It holds ACL users and their password hashes: keep it as secret as the data."),
    local!("readmode", -1, CONN, "concord", "[LINEARIZABLE | LEASE | STALE]",
        "Sets how this connection's reads are served: linearizable (ReadIndex, the default), lease (leader-local, relies on the leader lease) or stale (this node's state, may lag). Without an argument, returns the current mode."),
    local!("readonly", 1, CONN, "3.0.0", "",
        "Redis Cluster's replica reads: this connection's reads are served from this node's state and may lag (READMODE STALE)."),
    local!("readwrite", 1, CONN, "3.0.0", "",
        "Ends READONLY: reads are linearizable again."),
    local!("cluster", -2, &[Flag::NoScript, Flag::Loading, Flag::Stale], "3.0.0",
        "subcommand [argument ...]",
        "Redis Cluster's sharding commands. concord replicates one keyspace on every node rather than sharding it, so it answers as a standalone Redis does: cluster support disabled. Clients that probe for a cluster fall back to one connection."),
];
