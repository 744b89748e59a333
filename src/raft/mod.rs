//! The node driver: the one task that owns `raft::RawNode`.
//!
//! It runs on the same current-thread tokio runtime as the client
//! connections, so handing it a request and getting the answer back crosses
//! no thread; only fsyncs leave the runtime, on the WAL thread.
//!
//! Clients never touch raft. They send a write ([`Op`]) or a read ([`Query`])
//! into the driver's inbox with a oneshot for the answer, and await it; the
//! driver does everything else in raft-rs's documented Ready order:
//!
//! - **Batching.** Each turn of the loop drains the whole inbox, so every
//!   write that arrived meanwhile becomes one log entry ([`payload`]), and
//!   every read that arrived joins one ReadIndex round. A round starts when
//!   the previous one returns.
//! - **Group commit off the loop.** Entries are appended to the in-memory
//!   [`LogStore`] at once and handed to the WAL thread
//!   (`storage::WalWriter`), which fsyncs many Readies at a time while the
//!   loop gathers the next batch (`advance_append_async` /
//!   `on_persist_ready`). A leader sends appends to followers before its own
//!   fsync; a follower's replies wait for it.
//! - **Answers by position.** A proposal is remembered by the (index, term)
//!   raft gave it. When that index is applied with that term, the stored ops
//!   are applied and each client gets its outcome; if another entry lands
//!   there, the proposal was lost and the client is told to retry.
//! - **Time.** The leader stamps each batch with its wall clock; the state
//!   machine only ever sees that stamp. Keys whose deadline passed are
//!   deleted by leader proposals, a bounded batch at a time.
//!
//! Nothing here knows about RESP, commands or sockets.

pub mod backlog;
mod check_owners;
pub mod cluster;
mod driver;
mod eviction;
mod log_store;
mod node;
mod one_in_flight;
mod own_snapshot;
pub mod payload;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crate::state::evict::Policy;
use crate::state::memory::AccessMode;
use std::time::Duration;

pub use log_store::LogStore;
pub use node::{answer, now_ms, start, BatchReceiver, NodeConfig, NodeHandle, Submit};

use crate::state::{OpResult, Ticket};
use crate::storage::{StorageError, WalStats};

/// How a read is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// ReadIndex through the leader: never stale.
    #[default]
    Linearizable,
    /// Served by the leader from its state without a quorum round, relying
    /// on its lease (check_quorum makes a cut-off leader step down within an
    /// election timeout). Elsewhere, as linearizable.
    Lease,
    /// Served from this node's state as it is: may lag the leader.
    Stale,
}

/// Why a request got no outcome from the state machine.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("CLUSTERDOWN no leader was elected within {0:?}; try again later")]
    NoLeader(Duration),
    #[error("TRYAGAIN the request timed out after {0:?} waiting for the cluster")]
    Timeout(Duration),
    #[error("TRYAGAIN leadership changed before the write was committed; it was not applied")]
    ProposalDropped,
    #[error("TRYAGAIN the write was not confirmed in time (leadership changed or no quorum); its outcome is unknown")]
    OutcomeUnknown,
    #[error("ERR concord is shutting down")]
    ShuttingDown,
    #[error("ERR node stopped: {0}")]
    Storage(#[from] StorageError),
    #[error("ERR node stopped: {0}")]
    Raft(#[from] raft::Error),
    #[error("ERR data directory cannot be used: {0}")]
    Recovery(String),
    /// The data directory belongs to another node or cluster.
    #[error("{0}")]
    Identity(#[from] crate::storage::IdentityError),
    /// An admin request the leader refused.
    #[error("ERR {0}")]
    Rejected(String),
    /// The leader's error for a relayed request, as it worded it.
    #[error("{0}")]
    Remote(String),
}

/// What a client waits for.
pub type Answer = Result<OpResult, NodeError>;

/// Raft roles, as reported by INFO and ROLE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower = 0,
    Candidate = 1,
    PreCandidate = 2,
    Leader = 3,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::PreCandidate => "precandidate",
            Role::Leader => "leader",
        }
    }

    fn from_raft(role: raft::StateRole) -> Role {
        match role {
            raft::StateRole::Follower => Role::Follower,
            raft::StateRole::Candidate => Role::Candidate,
            raft::StateRole::PreCandidate => Role::PreCandidate,
            raft::StateRole::Leader => Role::Leader,
        }
    }
}

/// `maxmemory`, `maxmemory-policy`, `maxmemory-samples`, `lfu-log-factor`
/// and `lfu-decay-time` of this node: set from its flags, changed by
/// CONFIG SET, read by the driver (eviction, access recording) and by
/// connections (the OOM check). The leader's values decide eviction for
/// the cluster; give every node the same ones.
pub struct MemoryLimit {
    max_bytes: AtomicU64,
    policy: AtomicU8,
    samples: AtomicU8,
    lfu_log_factor: AtomicU32,
    lfu_decay_minutes: AtomicU32,
}

impl Default for MemoryLimit {
    fn default() -> Self {
        MemoryLimit {
            max_bytes: AtomicU64::new(0),
            policy: AtomicU8::new(0),
            samples: AtomicU8::new(5),
            lfu_log_factor: AtomicU32::new(10),
            lfu_decay_minutes: AtomicU32::new(1),
        }
    }
}

impl MemoryLimit {
    /// The limit in bytes; 0: none.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes.load(Ordering::Relaxed)
    }

    pub fn set_max_bytes(&self, bytes: u64) {
        self.max_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn policy(&self) -> Policy {
        Policy::ALL[usize::from(self.policy.load(Ordering::Relaxed)) % Policy::ALL.len()]
    }

    pub fn set_policy(&self, policy: Policy) {
        let at = Policy::ALL.iter().position(|p| *p == policy).unwrap_or(0);
        self.policy.store(at as u8, Ordering::Relaxed);
    }

    pub fn samples(&self) -> usize {
        usize::from(self.samples.load(Ordering::Relaxed)).max(1)
    }

    pub fn set_samples(&self, samples: u8) {
        self.samples.store(samples.max(1), Ordering::Relaxed);
    }

    pub fn set_lfu_log_factor(&self, log_factor: u32) {
        self.lfu_log_factor.store(log_factor, Ordering::Relaxed);
    }

    pub fn set_lfu_decay_minutes(&self, decay_minutes: u32) {
        self.lfu_decay_minutes
            .store(decay_minutes, Ordering::Relaxed);
    }

    /// How accesses are recorded under these settings.
    pub fn access_mode(&self) -> AccessMode {
        AccessMode {
            lfu: self.policy().lfu(),
            lfu_log_factor: self.lfu_log_factor.load(Ordering::Relaxed),
            lfu_decay_minutes: self.lfu_decay_minutes.load(Ordering::Relaxed),
        }
    }
}

/// Figures the driver publishes after every turn, for INFO, ROLE and
/// metrics, readable without a round trip to the driver.
pub struct NodeStatus {
    pub id: u64,
    /// This run of the node: pub/sub subscribers are named by it.
    pub boot: u64,
    role: AtomicU8,
    leader: AtomicU64,
    term: AtomicU64,
    commit: AtomicU64,
    applied: AtomicU64,
    last_index: AtomicU64,
    snapshot_index: AtomicU64,
    /// Keys and keys with a deadline, by database.
    keys: [AtomicU64; crate::state::DATABASES as usize],
    /// See [`Status::set_paused_until`].
    paused_until_ms: AtomicU64,
    volatile_keys: [AtomicU64; crate::state::DATABASES as usize],
    /// The dataset's size (what `maxmemory` limits) and the keys evicted
    /// by this replica, as of the last applied entry.
    dataset_bytes: AtomicU64,
    evicted_keys: AtomicU64,
    /// `maxmemory` and its policy on this node.
    pub memory: MemoryLimit,
    /// Scripts in the replicated script cache (SCRIPT LOAD, EVAL).
    cached_scripts: AtomicU64,
    snapshots_taken: AtomicU64,
    voters: AtomicU64,
    /// Clients of this node waiting in a blocking command.
    blocked: AtomicU64,
    /// Connections of this node that subscribed to pub/sub.
    subscribers: AtomicU64,
    pub wal: Arc<WalStats>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Writes proposed and not yet applied, waiting for a leader, or
    /// relayed to it and not yet answered.
    pending: AtomicU64,
    /// Client addresses the nodes advertised through the log.
    client_addrs: std::sync::Mutex<BTreeMap<u64, String>>,
    /// The last ticket handed to a waiting command of this node.
    last_ticket: AtomicU64,
    /// The user table as this node last applied it; replaced (never
    /// changed in place) by the driver after every entry that changed it,
    /// before that entry's client is answered.
    acl: std::sync::RwLock<Arc<crate::state::acl::Acl>>,
    acl_generation: AtomicU64,
    /// Tells the server the table changed (its generation), so it can
    /// close the connections of users deleted or disabled.
    acl_changed: tokio::sync::watch::Sender<u64>,
}

impl NodeStatus {
    fn new(id: u64, boot: u64, wal: Arc<WalStats>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        NodeStatus {
            id,
            boot,
            role: AtomicU8::new(Role::Follower as u8),
            leader: AtomicU64::new(0),
            term: AtomicU64::new(0),
            commit: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            last_index: AtomicU64::new(0),
            snapshot_index: AtomicU64::new(0),
            keys: Default::default(),
            paused_until_ms: AtomicU64::new(0),
            volatile_keys: Default::default(),
            dataset_bytes: AtomicU64::new(0),
            evicted_keys: AtomicU64::new(0),
            memory: MemoryLimit::default(),
            cached_scripts: AtomicU64::new(0),
            snapshots_taken: AtomicU64::new(0),
            voters: AtomicU64::new(0),
            blocked: AtomicU64::new(0),
            subscribers: AtomicU64::new(0),
            wal,
            metrics,
            pending: AtomicU64::new(0),
            client_addrs: std::sync::Mutex::new(BTreeMap::new()),
            // Above every ticket an earlier run of this node handed out
            // (fewer than a thousand a millisecond), so a waiter of that
            // run still in the state is never mistaken for one of ours.
            last_ticket: AtomicU64::new(now_ms().saturating_mul(1000)),
            acl: std::sync::RwLock::new(Arc::default()),
            acl_generation: AtomicU64::new(0),
            acl_changed: tokio::sync::watch::channel(0).0,
        }
    }

    /// The user table this node applied last.
    pub fn acl(&self) -> Arc<crate::state::acl::Acl> {
        self.acl.read().expect("acl lock").clone()
    }

    /// The generation of [`NodeStatus::acl`]: one atomic load, for the
    /// check every command makes.
    pub fn acl_generation(&self) -> u64 {
        self.acl_generation.load(Ordering::Acquire)
    }

    /// Changes of the user table, by generation.
    pub fn acl_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.acl_changed.subscribe()
    }

    pub(crate) fn set_acl(&self, acl: &crate::state::acl::Acl) {
        *self.acl.write().expect("acl lock") = Arc::new(acl.clone());
        self.acl_generation.store(acl.generation, Ordering::Release);
        self.acl_changed.send_replace(acl.generation);
    }

    /// A new ticket for a command of this node that may wait. The
    /// connection takes it before submitting, so CLIENT UNBLOCK can name
    /// the wait; the driver fills in any op that arrives without one.
    pub fn new_ticket(&self) -> Ticket {
        Ticket {
            node: self.id,
            seq: self.last_ticket.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    pub(crate) fn set_client_addrs(&self, addrs: BTreeMap<u64, String>) {
        *self.client_addrs.lock().expect("client addresses lock") = addrs;
    }

    /// The client address node `id` advertised, if it has.
    pub fn client_addr(&self, id: u64) -> Option<String> {
        self.client_addrs
            .lock()
            .expect("client addresses lock")
            .get(&id)
            .cloned()
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Relaxed) {
            3 => Role::Leader,
            2 => Role::PreCandidate,
            1 => Role::Candidate,
            _ => Role::Follower,
        }
    }

    /// The leader's id, 0 when none is known.
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Relaxed)
    }

    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Relaxed)
    }

    pub fn commit_index(&self) -> u64 {
        self.commit.load(Ordering::Relaxed)
    }

    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }

    pub fn last_index(&self) -> u64 {
        self.last_index.load(Ordering::Relaxed)
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index.load(Ordering::Relaxed)
    }

    /// Scripts in the replicated script cache, as of the last applied entry.
    pub fn cached_scripts(&self) -> u64 {
        self.cached_scripts.load(Ordering::Relaxed)
    }

    /// Keys in the keyspace and how many have a deadline, as of the last
    /// applied entry.
    /// Keys and keys with a deadline in every database.
    pub fn keys(&self) -> (u64, u64) {
        self.databases()
            .iter()
            .fold((0, 0), |(k, v), (_, keys, volatile)| {
                (k + keys, v + volatile)
            })
    }

    /// Keys and keys with a deadline of each database that holds any.
    pub fn databases(&self) -> Vec<(u32, u64, u64)> {
        (0..crate::state::DATABASES)
            .map(|db| {
                let i = db as usize;
                (
                    db,
                    self.keys[i].load(Ordering::Relaxed),
                    self.volatile_keys[i].load(Ordering::Relaxed),
                )
            })
            .filter(|(_, keys, _)| *keys > 0)
            .collect()
    }

    /// Records the key counts of the databases as of the last applied entry.
    pub(crate) fn set_databases(&self, state: &crate::state::State) {
        for db in 0..crate::state::DATABASES {
            let (keys, volatile) = state
                .database(db)
                .map_or((0, 0), |d| (d.len() as u64, d.volatile_len() as u64));
            self.keys[db as usize].store(keys, Ordering::Relaxed);
            self.volatile_keys[db as usize].store(volatile, Ordering::Relaxed);
        }
    }

    /// The dataset's size in bytes, as of the last applied entry: the
    /// figure `maxmemory` limits.
    pub fn dataset_bytes(&self) -> u64 {
        self.dataset_bytes.load(Ordering::Relaxed)
    }

    /// Keys this replica deleted by eviction since it started.
    pub fn evicted_keys(&self) -> u64 {
        self.evicted_keys.load(Ordering::Relaxed)
    }

    /// Whether a write that may grow the dataset is refused with OOM: the
    /// dataset is over `maxmemory` and the policy has nothing to evict
    /// (`noeviction`, or a volatile policy and no key with a deadline).
    /// Under a policy that can evict, the leader is freeing memory already
    /// and the write goes ahead, as Redis evicts before it writes.
    pub fn out_of_memory(&self) -> bool {
        let max = self.memory.max_bytes();
        if max == 0 || self.dataset_bytes() <= max {
            return false;
        }
        let (keys, volatile) = self.keys();
        !self
            .memory
            .policy()
            .can_evict(keys as usize, volatile as usize)
    }

    /// Voting members in the applied configuration.
    pub fn voters(&self) -> u64 {
        self.voters.load(Ordering::Relaxed)
    }

    /// Clients of this node waiting in a blocking command (INFO's
    /// blocked_clients).
    /// CLIENT PAUSE on this node: until when (unix ms; 0 for none) its
    /// leader proposes no expiry or eviction.
    pub fn set_paused_until(&self, unix_ms: u64) {
        self.paused_until_ms.store(unix_ms, Ordering::Relaxed);
    }

    /// True while a CLIENT PAUSE of this node is in force.
    pub fn paused(&self) -> bool {
        self.paused_until_ms.load(Ordering::Relaxed) > now_ms()
    }

    pub fn blocked_clients(&self) -> u64 {
        self.blocked.load(Ordering::Relaxed)
    }

    /// Connections of this node subscribed to pub/sub (INFO's
    /// pubsub_clients).
    pub fn pubsub_clients(&self) -> u64 {
        self.subscribers.load(Ordering::Relaxed)
    }

    pub fn snapshots_taken(&self) -> u64 {
        self.snapshots_taken.load(Ordering::Relaxed)
    }

    pub fn proposals_pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }
}
