//! What nodes say to each other beyond raft messages: client requests a
//! follower relays to the leader, the leader's answers, and membership
//! administration.
//!
//! Only writes and admin operations are relayed. Linearizable reads on a
//! follower are served locally after a ReadIndex round through the leader
//! (raft-rs forwards the MsgReadIndex): same guarantee, and the leader does
//! not execute them.

use serde::{Deserialize, Serialize};

use crate::state::{Op, OpResult};

/// Cluster administration, executed by the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminOp {
    /// Adds `id` as a learner, waits until it caught up, promotes it.
    AddMember {
        id: u64,
        addr: String,
    },
    RemoveMember {
        id: u64,
    },
    /// Hands leadership to `id` and waits until it has it.
    TransferLeader {
        id: u64,
    },
}

/// A request relayed from a follower to the leader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Relayed {
    Write(Op),
    Admin(AdminOp),
    /// The writes a follower took in during one driver turn, in the order
    /// it took them: one peer message for a whole pipeline, answered by
    /// [`RelayedAnswer::Each`]. (A message per write filled the peer
    /// link's queue under a deep pipeline, and what it dropped was never
    /// answered.)
    Writes(Vec<Op>),
}

/// The leader's answer to a relayed request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RelayedAnswer {
    Done(OpResult),
    /// The request was not executed because the receiver is not the
    /// leader: safe to send again.
    NotLeader,
    /// It failed with this error text (its outcome is whatever the text says).
    Failed(String),
    /// One answer per write of a [`Relayed::Writes`], in its order.
    Each(Vec<RelayedAnswer>),
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("relayed values serialize")
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    postcard::from_bytes(bytes).ok()
}

/// A peer's replication progress, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerProgress {
    pub id: u64,
    pub voter: bool,
    pub matched: u64,
    pub next: u64,
    pub state: String,
    pub recent_active: bool,
    pub addr: String,
}

/// What RAFT.INFO reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftInfo {
    pub id: u64,
    pub role: &'static str,
    pub term: u64,
    pub leader: u64,
    pub commit: u64,
    pub applied: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// Filled on the leader only: followers do not track progress.
    pub peers: Vec<PeerProgress>,
}
