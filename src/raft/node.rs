//! Starting a node and talking to it: [`NodeConfig`], [`start`] and the
//! [`NodeHandle`] clients and the transport use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use raft::eraftpb::{Message, Snapshot};
use raft::RawNode;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::sync::{oneshot, watch};

use super::cluster::{AdminOp, RaftInfo};
use super::driver::Driver;
use super::log_store::LogStore;
use super::{Answer, NodeError, NodeStatus, ReadMode, Role};
use crate::state::pubsub::Delivery;
use crate::state::{Op, Query, State};
use crate::storage::{
    Persisted, SnapshotReader, SnapshotStore, StorageError, Wal, WalOptions, WalStats, WalWriter,
    WrittenSnapshot,
};
use crate::transport::{Inbound, Transport};

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    /// The voters of a brand-new cluster, used only when the data directory
    /// is empty; afterwards membership comes from the log. Empty for a node
    /// that joins an existing cluster: it waits to be added.
    pub initial_voters: Vec<u64>,
    /// Peer addresses this node was configured with. They take precedence
    /// over addresses learned through membership changes.
    pub peers: BTreeMap<u64, String>,
    pub data_dir: PathBuf,
    /// The cluster's name; the data directory records it (with the node
    /// id) at its first start and refuses to start under another.
    pub cluster_id: String,
    /// Where clients reach this node; replicated so every node can name
    /// the leader's client address (ROLE, INFO). Empty: not advertised.
    pub client_addr: String,
    /// One raft tick.
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Append messages in flight to one follower (raft-rs's
    /// `max_inflight_msgs`). See `--raft-max-inflight`.
    pub max_inflight_msgs: usize,
    /// How long a request may wait for a leader, a commit or a read round.
    pub request_timeout: Duration,
    /// How long a new member may take to catch up before promotion.
    pub catch_up_timeout: Duration,
    /// Snapshot when this many entries accumulated since the last one...
    pub snapshot_entries: u64,
    /// ...or when the entries since the last one hold this many bytes.
    pub snapshot_log_bytes: u64,
    pub wal_segment_bytes: u64,
    /// The largest log entry proposed (`--max-entry-bytes`).
    pub max_entry_bytes: u64,
    /// Keys deleted per expiry proposal.
    pub expiry_batch: usize,
    /// Runs Lua scripts when their entries apply; installed in every
    /// state this node builds (at start and from a leader's snapshot).
    pub script_host: crate::state::scripts::HostSlot,
    /// Where the driver, the WAL thread and the transport count what they
    /// do (`/metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl NodeConfig {
    pub fn new(id: u64, data_dir: PathBuf) -> Self {
        NodeConfig {
            id,
            initial_voters: vec![id],
            peers: BTreeMap::new(),
            data_dir,
            cluster_id: "concord".into(),
            client_addr: String::new(),
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_inflight_msgs: 1,
            request_timeout: Duration::from_secs(5),
            catch_up_timeout: Duration::from_secs(60),
            snapshot_entries: 100_000,
            snapshot_log_bytes: 64 * 1024 * 1024,
            wal_segment_bytes: 64 * 1024 * 1024,
            max_entry_bytes: 64 * 1024 * 1024,
            expiry_batch: 512,
            script_host: Default::default(),
            metrics: Default::default(),
        }
    }
}

/// Where an answer goes: a client of this node, one request of a client's
/// batch, or a follower that relayed the request.
pub(crate) enum Responder {
    Local(oneshot::Sender<Answer>),
    Batch(BatchSlot),
    Remote {
        peer: u64,
        id: u64,
    },
    /// Write `index` of the [`Relayed::Writes`](super::cluster::Relayed)
    /// `id` from `peer`.
    RemoteItem {
        peer: u64,
        id: u64,
        index: u32,
    },
}

/// Where a relayed request's answer goes: the follower `peer`, for its
/// request `id` (and the write `index` of it, for a batch).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RemoteReply {
    pub peer: u64,
    pub id: u64,
    pub index: Option<u32>,
}

/// A batch on its way to the driver. Dropped undelivered (the driver
/// stopped), every request is answered "shutting down".
pub(crate) struct BatchRequests {
    requests: Vec<Submit>,
    batch: Arc<BatchAnswers>,
}

impl BatchRequests {
    /// The requests, in order, each with the responder for its answer.
    pub(crate) fn into_requests(mut self) -> BatchIter {
        BatchIter {
            requests: std::mem::take(&mut self.requests).into_iter(),
            batch: self.batch.clone(),
            next: 0,
        }
    }
}

/// The requests of a batch with their responders; those it never yields
/// (dropped early) are answered "shutting down".
pub(crate) struct BatchIter {
    requests: std::vec::IntoIter<Submit>,
    batch: Arc<BatchAnswers>,
    next: usize,
}

impl Iterator for BatchIter {
    type Item = (Submit, Responder);

    fn next(&mut self) -> Option<(Submit, Responder)> {
        let request = self.requests.next()?;
        let slot = BatchSlot {
            batch: self.batch.clone(),
            index: self.next,
            answered: false,
        };
        self.next += 1;
        Some((request, Responder::Batch(slot)))
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        for _ in self.requests.by_ref() {
            self.batch.put(self.next, Err(NodeError::ShuttingDown));
            self.next += 1;
        }
    }
}

impl Drop for BatchRequests {
    fn drop(&mut self) {
        for index in 0..self.requests.len() {
            self.batch.put(index, Err(NodeError::ShuttingDown));
        }
    }
}

impl Responder {
    /// True when nobody waits for the answer any more.
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Responder::Local(tx) => tx.is_closed(),
            Responder::Batch(slot) => slot.batch.is_closed(),
            Responder::Remote { .. } | Responder::RemoteItem { .. } => false,
        }
    }

    /// True for a request relayed by a follower: its answer goes back over
    /// the peer link, and it is never relayed again from here.
    pub(crate) fn is_remote(&self) -> bool {
        self.remote().is_some()
    }

    /// Where the answer goes, for a relayed request.
    pub(crate) fn remote(&self) -> Option<RemoteReply> {
        match *self {
            Responder::Remote { peer, id } => Some(RemoteReply {
                peer,
                id,
                index: None,
            }),
            Responder::RemoteItem { peer, id, index } => Some(RemoteReply {
                peer,
                id,
                index: Some(index),
            }),
            Responder::Local(_) | Responder::Batch(_) => None,
        }
    }

    /// Delivers the answer to a client of this node; a relayed request's
    /// answer comes back (the driver sends it to the follower).
    pub(crate) fn send_local(self, answer: Answer) -> Option<(RemoteReply, Answer)> {
        match self {
            Responder::Local(tx) => {
                let _ = tx.send(answer);
                None
            }
            Responder::Batch(slot) => {
                slot.answer(answer);
                None
            }
            remote @ (Responder::Remote { .. } | Responder::RemoteItem { .. }) => {
                Some((remote.remote().expect("a relayed request"), answer))
            }
        }
    }
}

/// A request a connection submits as part of a batch.
pub enum Submit {
    Write(Op),
    Read(Query, ReadMode),
}

/// The answers to one batch of a connection's requests, filled in by the
/// driver. The connection waits for all of them at once: one inbox message
/// and one wake-up per batch instead of one channel per request.
pub(crate) struct BatchAnswers {
    state: std::sync::Mutex<BatchState>,
}

struct BatchState {
    answers: Vec<Option<Answer>>,
    missing: usize,
    /// Told when the last answer is in; dropped by a connection that left.
    done: Option<oneshot::Sender<()>>,
    closed: bool,
}

impl BatchAnswers {
    fn put(&self, index: usize, answer: Answer) {
        let mut state = self.state.lock().expect("batch lock");
        if state.answers[index].replace(answer).is_none() {
            state.missing -= 1;
        }
        if state.missing == 0 {
            if let Some(done) = state.done.take() {
                let _ = done.send(());
            }
        }
    }

    fn is_closed(&self) -> bool {
        let mut state = self.state.lock().expect("batch lock");
        if !state.closed {
            state.closed = state.done.as_ref().is_none_or(|done| done.is_closed());
        }
        state.closed
    }
}

/// The driver's handle on one request of a batch. Dropped unanswered (the
/// driver stopped), it answers "shutting down", as a dropped oneshot does.
pub(crate) struct BatchSlot {
    batch: Arc<BatchAnswers>,
    index: usize,
    answered: bool,
}

impl BatchSlot {
    fn answer(mut self, answer: Answer) {
        self.answered = true;
        self.batch.put(self.index, answer);
    }
}

impl Drop for BatchSlot {
    fn drop(&mut self) {
        if !self.answered {
            self.batch.put(self.index, Err(NodeError::ShuttingDown));
        }
    }
}

/// What a connection holds for a submitted batch.
pub struct BatchReceiver {
    batch: Arc<BatchAnswers>,
    done: oneshot::Receiver<()>,
}

impl BatchReceiver {
    /// Every answer of the batch, in submission order.
    pub async fn answers(self) -> Vec<Answer> {
        // An error means every slot was dropped or answered and the sender
        // went with the last one: the answers are in either way.
        let _ = self.done.await;
        let mut state = self.batch.state.lock().expect("batch lock");
        std::mem::take(&mut state.answers)
            .into_iter()
            .map(|a| a.unwrap_or(Err(NodeError::ShuttingDown)))
            .collect()
    }
}

pub(crate) enum Inbox {
    /// A connection's requests, in order; answered through the batch.
    Batch(BatchRequests),
    Write(Op, Responder),
    Read(Query, ReadMode, Responder),
    Admin(AdminOp, Responder),
    Peer(Box<Message>),
    Relayed {
        from: u64,
        id: u64,
        body: Bytes,
    },
    RelayedAnswer {
        id: u64,
        body: Bytes,
    },
    Unreachable(u64),
    SnapshotSent {
        peer: u64,
        delivered: bool,
    },
    Persisted(Result<Persisted, StorageError>),
    Snapshot(oneshot::Sender<Result<u64, NodeError>>),
    /// A leader's snapshot, received and decoded: the message to step and
    /// the state to switch to when raft hands the snapshot over.
    SnapshotReceived {
        message: Box<Message>,
        file: WrittenSnapshot,
        state: Box<State>,
    },
    /// The snapshot thread finished our snapshot's file at (index, term).
    SnapshotWritten {
        index: u64,
        term: u64,
        result: Result<super::own_snapshot::Written, StorageError>,
    },
    Info(oneshot::Sender<RaftInfo>),
    Mesh(oneshot::Sender<crate::state::mesh::MeshStats>),
    /// The health checks this node probes.
    OwnedChecks(oneshot::Sender<Vec<crate::state::checks::OwnedCheck>>),
    /// A connection of this node that subscribes (Some) or left (None).
    Subscriber {
        client: u64,
        messages: Option<(UnboundedSender<Delivery>, Arc<super::backlog::Backlog>)>,
    },
    Shutdown,
}

/// The client side of a running node: cheap to clone, safe from any thread.
#[derive(Clone)]
pub struct NodeHandle {
    inbox: UnboundedSender<Inbox>,
    /// The snapshot directory: the transport sends files from it and
    /// receives them into it.
    snaps: SnapshotStore,
    status: Arc<NodeStatus>,
    /// Closed (its sender dropped) when the driver task ends, however it ends.
    running: watch::Receiver<()>,
}

/// Resolves to the answer, or to ShuttingDown if the driver is gone.
pub async fn answer(rx: oneshot::Receiver<Answer>) -> Answer {
    rx.await.unwrap_or(Err(NodeError::ShuttingDown))
}

impl NodeHandle {
    fn submit(&self, make: impl FnOnce(Responder) -> Inbox) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inbox.send(make(Responder::Local(tx)));
        rx
    }

    /// Submits a write; the receiver resolves once it is applied.
    pub fn write(&self, op: Op) -> oneshot::Receiver<Answer> {
        self.submit(|r| Inbox::Write(op, r))
    }

    /// Submits a read under `mode`.
    pub fn read(&self, query: Query, mode: ReadMode) -> oneshot::Receiver<Answer> {
        self.submit(|r| Inbox::Read(query, mode, r))
    }

    /// Submits a connection's requests together, in order (the driver
    /// handles them as if they had been submitted one by one).
    pub fn submit_batch(&self, requests: Vec<Submit>) -> BatchReceiver {
        let (tx, rx) = oneshot::channel();
        let n = requests.len();
        let batch = Arc::new(BatchAnswers {
            state: std::sync::Mutex::new(BatchState {
                answers: (0..n).map(|_| None).collect(),
                missing: n,
                done: Some(tx),
                closed: false,
            }),
        });
        if n == 0 {
            batch.state.lock().expect("batch lock").done.take();
        }
        let requests = BatchRequests {
            requests,
            batch: batch.clone(),
        };
        let _ = self.inbox.send(Inbox::Batch(requests));
        BatchReceiver { batch, done: rx }
    }

    /// Registers where connection `client`'s pub/sub messages go; before
    /// its first SUBSCRIBE is submitted, so no message can miss it.
    pub fn register_subscriber(
        &self,
        client: u64,
        messages: UnboundedSender<Delivery>,
        backlog: Arc<super::backlog::Backlog>,
    ) {
        let _ = self.inbox.send(Inbox::Subscriber {
            client,
            messages: Some((messages, backlog)),
        });
    }

    /// The connection left: no more messages for it.
    pub fn unregister_subscriber(&self, client: u64) {
        let _ = self.inbox.send(Inbox::Subscriber {
            client,
            messages: None,
        });
    }

    /// Submits a membership or leadership change (relayed to the leader).
    pub fn admin(&self, op: AdminOp) -> oneshot::Receiver<Answer> {
        self.submit(|r| Inbox::Admin(op, r))
    }

    /// Takes a snapshot now; resolves to its index.
    pub async fn snapshot(&self) -> Result<u64, NodeError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inbox.send(Inbox::Snapshot(tx));
        rx.await.unwrap_or(Err(NodeError::ShuttingDown))
    }

    /// Before this node stops: if it leads, hands leadership to the voter
    /// that holds the most of the log (and answered recently), and waits
    /// until that one took over, so a rolling restart costs no election
    /// timeout. Answers the new leader, or None when this node did not lead
    /// or the transfer did not complete (the cluster then elects one itself).
    pub async fn hand_off(&self) -> Option<u64> {
        if self.status.role() != Role::Leader {
            return None;
        }
        let info = self.info().await.ok()?;
        let target = info
            .peers
            .iter()
            .filter(|p| p.voter && p.recent_active && p.id != self.status.id)
            .max_by_key(|p| p.matched)?
            .id;
        match answer(self.admin(AdminOp::TransferLeader { id: target })).await {
            Ok(Ok(_)) => Some(target),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, target, "leadership transfer before stopping failed");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, target, "leadership transfer before stopping failed");
                None
            }
        }
    }

    /// The node's raft view, with per-peer progress on the leader.
    pub async fn info(&self) -> Result<RaftInfo, NodeError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inbox.send(Inbox::Info(tx));
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// The mesh series of the state as this node applied it (`/metrics`).
    pub async fn mesh_stats(&self) -> Result<crate::state::mesh::MeshStats, NodeError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inbox.send(Inbox::Mesh(tx));
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// The health checks this node owns, as it applied them: what its
    /// prober runs.
    pub async fn owned_checks(&self) -> Result<Vec<crate::state::checks::OwnedCheck>, NodeError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inbox.send(Inbox::OwnedChecks(tx));
        rx.await.map_err(|_| NodeError::ShuttingDown)
    }

    pub fn status(&self) -> &NodeStatus {
        &self.status
    }

    /// Stops the driver after everything already submitted was handled and
    /// the WAL was flushed; resolves once the driver has exited.
    pub async fn shutdown(&self) {
        let _ = self.inbox.send(Inbox::Shutdown);
        self.join().await;
    }

    /// Resolves once the driver has exited (on shutdown or a fatal error).
    pub async fn join(&self) {
        let mut running = self.running.clone();
        // Nothing is ever sent: this returns when the driver drops the sender.
        while running.changed().await.is_ok() {}
    }

    /// True while the driver runs.
    pub fn is_running(&self) -> bool {
        self.running.has_changed().is_ok()
    }
}

impl Inbound for NodeHandle {
    fn raft(&self, message: Message) {
        let _ = self.inbox.send(Inbox::Peer(Box::new(message)));
    }

    fn forward(&self, from: u64, id: u64, body: Bytes) {
        let _ = self.inbox.send(Inbox::Relayed { from, id, body });
    }

    fn forward_reply(&self, _from: u64, id: u64, body: Bytes) {
        let _ = self.inbox.send(Inbox::RelayedAnswer { id, body });
    }

    fn unreachable(&self, peer: u64) {
        let _ = self.inbox.send(Inbox::Unreachable(peer));
    }

    fn snapshot_sent(&self, peer: u64, delivered: bool) {
        let _ = self.inbox.send(Inbox::SnapshotSent { peer, delivered });
    }

    fn snapshot_file(&self, index: u64) -> PathBuf {
        crate::storage::snapshot::file_path(self.snaps.dir(), index)
    }

    fn incoming_snapshot_path(&self, index: u64, from: u64, transfer: u64) -> PathBuf {
        self.snaps.incoming_path(index, from, transfer)
    }

    /// Decodes the state from the received file on a thread of its own,
    /// then hands the message and the state to the driver: the node's
    /// clients are served from the state it has until the switch.
    fn snapshot(&self, message: Message, file: PathBuf, taken: Box<dyn FnOnce(bool) + Send>) {
        let inbox = self.inbox.clone();
        let snaps = self.snaps.clone();
        let spawned = std::thread::Builder::new()
            .name("snapshot-load".into())
            .spawn(move || {
                let meta = message.get_snapshot().get_metadata();
                let (index, term) = (meta.index, meta.term);
                let started = std::time::Instant::now();
                match load_snapshot(&file, index, term) {
                    Ok(state) => {
                        let file = WrittenSnapshot::received(&snaps, file, index, term);
                        tracing::info!(index, term, bytes = file.bytes,
                            took_ms = started.elapsed().as_millis() as u64,
                            "decoded a leader's snapshot");
                        let _ = inbox.send(Inbox::SnapshotReceived {
                            message: Box::new(message),
                            file,
                            state: Box::new(state),
                        });
                        taken(true);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, index, "a received snapshot is unusable; the leader will send it again");
                        let _ = std::fs::remove_file(&file);
                        taken(false);
                    }
                }
            });
        if let Err(e) = spawned {
            // The closure (and `taken` in it) is gone: the sender sees the
            // link close and raft sends the snapshot again.
            tracing::error!(error = %e, "cannot start a thread to load a snapshot");
        }
    }
}

/// Decodes the state from the snapshot file at `path`, which must hold
/// (index, term), reading it as a stream and checking its checksum.
pub(crate) fn load_snapshot(path: &Path, index: u64, term: u64) -> Result<State, NodeError> {
    let mut reader = SnapshotReader::open(path)?;
    let meta = reader.meta.get_metadata();
    if (meta.index, meta.term) != (index, term) {
        return Err(NodeError::Recovery(format!(
            "snapshot file {} holds ({}, {}), expected ({index}, {term})",
            path.display(),
            meta.index,
            meta.term
        )));
    }
    let len = reader.data_len;
    let state = State::decode_snapshot_from(&mut reader, len)
        .map_err(|e| NodeError::Recovery(format!("snapshot {}: {e}", path.display())))?;
    reader.finish()?;
    Ok(state)
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Opens (or creates) the node's data directory, recovers the state, and
/// starts the WAL thread and the driver.
///
/// The driver is a task on the tokio runtime this is called from, and must
/// be called from within one (it panics otherwise). The server runs it on the
/// current-thread runtime that also runs the client connections: requests
/// and answers then pass between tasks of one thread, without waking
/// another. The driver never blocks that thread: fsyncs (WAL and snapshot
/// files) happen on the WAL thread.
/// raft-rs's own log lines, one level down: its `info` (became follower,
/// pre-candidate, "RawNode created") is for whoever debugs raft, not for an
/// operator, who gets the driver's lines (became leader, stepped down,
/// membership changed) at `info`. Its warnings and errors stay as they are.
struct QuietRaft<D>(D);

impl<D: slog::Drain> slog::Drain for QuietRaft<D> {
    type Ok = D::Ok;
    type Err = D::Err;

    fn log(&self, record: &slog::Record<'_>, values: &slog::OwnedKVList) -> Result<D::Ok, D::Err> {
        if record.level() != slog::Level::Info {
            return self.0.log(record, values);
        }
        let demoted = slog::RecordStatic {
            location: record.location(),
            level: slog::Level::Debug,
            tag: record.tag(),
        };
        self.0.log(
            &slog::Record::new(&demoted, record.msg(), record.kv()),
            values,
        )
    }
}

/// The file that marks a data directory whose node lost acknowledged
/// entries; its content says how to bring the node back.
pub(crate) const LOST_MARKER: &str = "DATA-LOST";

pub(crate) fn lost_data_text(id: u64, leader: u64, acknowledged: u64, last: u64) -> String {
    format!(
        "node {id} lost raft entries it had acknowledged: leader {leader} counts entries up to {acknowledged} as stored here, this data directory's log ends at {last} (it was wiped or replaced). It must not rejoin as the member it was. To bring it back as a new incarnation: on a healthy node run RAFT.MEMBER REMOVE {id}; empty this data directory; start this node with --join; then on a healthy node run RAFT.MEMBER ADD {id} <this node's peer address> (docs/operations.md, \"Lose a disk\")."
    )
}

pub fn start(
    config: NodeConfig,
    mut transport: Box<dyn Transport>,
) -> Result<NodeHandle, NodeError> {
    if let Ok(text) = std::fs::read_to_string(config.data_dir.join(LOST_MARKER)) {
        return Err(NodeError::Recovery(text.trim().to_owned()));
    }
    let identity =
        crate::storage::identity::check_or_create(&config.data_dir, config.id, &config.cluster_id)?;
    tracing::info!(node = identity.node_id, cluster = %identity.cluster_id, uuid = %identity.uuid,
        "data directory identity checked");
    let snaps = SnapshotStore::open(&config.data_dir.join("snap"))?;
    let (wal, recovered) = Wal::open(
        &config.data_dir.join("wal"),
        WalOptions {
            segment_bytes: config.wal_segment_bytes,
            ..WalOptions::default()
        },
    )?;
    if let Some(torn) = &recovered.torn_tail {
        tracing::warn!(path = %torn.path.display(), offset = torn.offset, bytes = torn.bytes_dropped,
            "WAL had a torn tail (a write cut short by a crash); truncated");
    }
    // The newest snapshot's metadata; its state is decoded from the file
    // below, as a stream (raft's log store holds the metadata only: the
    // transport sends the file from disk).
    let latest = match snaps.latest()? {
        Some((_, path)) => {
            let reader = SnapshotReader::open(&path)?;
            Some((reader.meta.clone(), path))
        }
        None => None,
    };
    let mut bootstrap = None;
    let snapshot = match &latest {
        Some((meta, _)) => meta.clone(),
        None if recovered.hard_state.is_some() || !recovered.entries.is_empty() => {
            return Err(NodeError::Recovery(
                "the WAL has entries but there is no snapshot file (not even the bootstrap one)"
                    .into(),
            ));
        }
        None => {
            let snap = bootstrap_snapshot(&config.initial_voters);
            snaps.save(&snap)?;
            bootstrap = Some(snap.data.clone());
            if config.initial_voters.is_empty() {
                tracing::info!("new node: waiting to be added to a cluster");
            } else {
                tracing::info!(voters = ?config.initial_voters, "bootstrapped a new cluster member");
            }
            snap
        }
    };
    let snap_index = snapshot.get_metadata().index;
    if let Some((mark, _)) = recovered.snapshot_mark {
        if mark > snap_index {
            return Err(NodeError::Recovery(format!(
                "the WAL was compacted to index {mark} but the newest snapshot file is at {snap_index}"
            )));
        }
    }
    if let Some(first) = recovered.entries.first() {
        if first.index > snap_index + 1 {
            return Err(NodeError::Recovery(format!(
                "the WAL starts at index {} but the snapshot ends at {snap_index}",
                first.index
            )));
        }
    }
    let started = Instant::now();
    let mut state = match (&latest, bootstrap) {
        (Some((meta, path)), _) => load_snapshot(path, snap_index, meta.get_metadata().term)?,
        (None, Some(data)) => State::decode_snapshot(&data)
            .map_err(|e| NodeError::Recovery(format!("snapshot at {snap_index}: {e}")))?,
        (None, None) => unreachable!("a snapshot was found or bootstrapped"),
    };
    tracing::info!(
        index = snap_index,
        keys = state.key_count(),
        took_ms = started.elapsed().as_millis() as u64,
        "state loaded from the snapshot"
    );
    let mut snapshot = snapshot;
    snapshot.data = Bytes::new();
    state.set_script_host(config.script_host.clone());
    for (id, addr) in state.members() {
        if *id != config.id && !config.peers.contains_key(id) {
            transport.set_peer(*id, Some(addr.clone()));
        }
    }
    let conf_state = snapshot.get_metadata().get_conf_state().clone();
    let store = LogStore::new(
        recovered.hard_state.unwrap_or_default(),
        snapshot,
        recovered.entries,
    );
    let replay = store.last().saturating_sub(snap_index);
    let raft_config = raft::Config {
        id: config.id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        applied: snap_index,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: config.max_inflight_msgs,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    let logger = slog::Logger::root(QuietRaft(tracing_slog::TracingSlogDrain), slog::o!());
    let mut raw = RawNode::new(&raft_config, store, &logger)?;
    tracing::info!(
        id = config.id,
        snapshot = snap_index,
        entries = replay,
        term = raw.raft.term,
        "recovered raft log"
    );
    let single_voter = conf_state.voters == [config.id] && conf_state.learners.is_empty();
    if single_voter {
        // Nobody else can win: skip the randomized election timeout.
        raw.campaign()?;
    }

    let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
    let wal_stats = Arc::new(WalStats {
        metrics: Some(config.metrics.clone()),
        ..WalStats::default()
    });
    let persisted_tx = inbox_tx.clone();
    let snapshot_dir = snaps.clone();
    let snapshot_dir_for_handle = snaps.clone();
    let writer = WalWriter::spawn(
        wal,
        Some(snaps),
        wal_stats.clone(),
        Box::new(move |result| {
            let _ = persisted_tx.send(Inbox::Persisted(result));
        }),
    );
    // This run of the node, for pub/sub subscriber names: above every
    // earlier run's (the clock moves on between runs).
    let boot = now_ms().saturating_mul(1000);
    let status = Arc::new(NodeStatus::new(
        config.id,
        boot,
        wal_stats,
        config.metrics.clone(),
    ));
    status.set_acl(state.acl());
    let driver = Driver::new(
        raw,
        state,
        inbox_rx,
        writer,
        transport,
        status.clone(),
        conf_state,
        config,
        (snapshot_dir, inbox_tx.downgrade()),
    );
    let (stopped, running) = watch::channel(());
    tokio::spawn(async move {
        driver.run().await;
        drop(stopped);
    });
    Ok(NodeHandle {
        inbox: inbox_tx,
        snaps: snapshot_dir_for_handle,
        status,
        running,
    })
}

/// The snapshot a new member starts from: an empty state at index 0 with
/// the initial voters (none for a node that will be added later).
fn bootstrap_snapshot(voters: &[u64]) -> Snapshot {
    let mut snap = Snapshot {
        data: State::new().encode_snapshot().into(),
        ..Default::default()
    };
    let meta = snap.mut_metadata();
    meta.index = 0;
    meta.term = 0;
    meta.mut_conf_state().voters = voters.to_vec();
    snap
}

/// Deadline `d` from now.
pub(crate) fn after(d: Duration) -> Instant {
    Instant::now() + d
}
