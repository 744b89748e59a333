//! The driver loop. See the module docs of `raft` for the why.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, ReadState, StateRole};
use tokio::sync::oneshot;

use super::log_store::LogStore;
use super::payload;
use super::{Answer, NodeError, NodeStatus, ReadMode, Role};
use crate::state::{Op, Query, State};
use crate::storage::{
    Record, SnapshotStore, StorageError, Wal, WalJob, WalOptions, WalStats, WalWriter,
};
use crate::transport::Transport;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub id: u64,
    /// The voters of a brand-new cluster. Used only when the data directory
    /// is empty; afterwards membership comes from the log.
    pub initial_voters: Vec<u64>,
    pub data_dir: PathBuf,
    /// One raft tick.
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// How long a request may wait for a leader, a commit or a read round.
    pub request_timeout: Duration,
    /// Snapshot when this many entries accumulated since the last one...
    pub snapshot_entries: u64,
    /// ...or when the entries since the last one hold this many bytes.
    pub snapshot_log_bytes: u64,
    pub wal_segment_bytes: u64,
    /// Keys deleted per expiry proposal.
    pub expiry_batch: usize,
}

impl NodeConfig {
    pub fn new(id: u64, data_dir: PathBuf) -> Self {
        NodeConfig {
            id,
            initial_voters: vec![id],
            data_dir,
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 2,
            request_timeout: Duration::from_secs(5),
            snapshot_entries: 100_000,
            snapshot_log_bytes: 64 * 1024 * 1024,
            wal_segment_bytes: 64 * 1024 * 1024,
            expiry_batch: 512,
        }
    }
}

type Responder = oneshot::Sender<Answer>;

pub(crate) enum Inbox {
    Write(Op, Responder),
    Read(Query, ReadMode, Responder),
    Peer(Box<Message>),
    Unreachable(u64),
    Persisted(Result<u64, StorageError>),
    Snapshot(oneshot::Sender<Result<u64, NodeError>>),
    Shutdown,
}

/// The client side of a running node: cheap to clone, safe from any thread.
#[derive(Clone)]
pub struct NodeHandle {
    inbox: Sender<Inbox>,
    status: Arc<NodeStatus>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

/// Resolves to the answer, or to ShuttingDown if the driver is gone.
pub async fn answer(rx: oneshot::Receiver<Answer>) -> Answer {
    rx.await.unwrap_or(Err(NodeError::ShuttingDown))
}

impl NodeHandle {
    /// Submits a write; the receiver resolves once it is applied.
    pub fn write(&self, op: Op) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inbox.send(Inbox::Write(op, tx));
        rx
    }

    /// Submits a read under `mode`.
    pub fn read(&self, query: Query, mode: ReadMode) -> oneshot::Receiver<Answer> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inbox.send(Inbox::Read(query, mode, tx));
        rx
    }

    /// Hands a message from a peer to raft.
    pub fn step(&self, message: Message) {
        let _ = self.inbox.send(Inbox::Peer(Box::new(message)));
    }

    /// Tells raft a peer could not be reached.
    pub fn report_unreachable(&self, peer: u64) {
        let _ = self.inbox.send(Inbox::Unreachable(peer));
    }

    /// Takes a snapshot now; resolves to its index.
    pub async fn snapshot(&self) -> Result<u64, NodeError> {
        let (tx, rx) = oneshot::channel();
        let _ = self.inbox.send(Inbox::Snapshot(tx));
        rx.await.unwrap_or(Err(NodeError::ShuttingDown))
    }

    pub fn status(&self) -> &NodeStatus {
        &self.status
    }

    /// Stops the driver after everything already submitted was handled and
    /// the WAL was flushed; blocks until the thread has exited.
    pub fn shutdown(&self) {
        let _ = self.inbox.send(Inbox::Shutdown);
        self.join();
    }

    /// Waits for the driver thread to exit (on shutdown or a fatal error).
    pub fn join(&self) {
        let handle = self.thread.lock().expect("join lock").take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// True while the driver thread runs.
    pub fn is_running(&self) -> bool {
        self.thread
            .lock()
            .expect("join lock")
            .as_ref()
            .is_some_and(|h| !h.is_finished())
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Opens (or creates) the node's data directory, recovers the state, and
/// starts the driver and WAL threads.
pub fn start(config: NodeConfig, transport: Box<dyn Transport>) -> Result<NodeHandle, NodeError> {
    let snaps = SnapshotStore::open(&config.data_dir.join("snap"))?;
    let (wal, recovered) = Wal::open(
        &config.data_dir.join("wal"),
        WalOptions {
            segment_bytes: config.wal_segment_bytes,
        },
    )?;
    if let Some(torn) = &recovered.torn_tail {
        tracing::warn!(path = %torn.path.display(), offset = torn.offset, bytes = torn.bytes_dropped,
            "WAL had a torn tail (a write cut short by a crash); truncated");
    }
    let snapshot = match snaps.load_latest()? {
        Some(s) => s,
        None if recovered.hard_state.is_some() || !recovered.entries.is_empty() => {
            return Err(NodeError::Recovery(
                "the WAL has entries but there is no snapshot file (not even the bootstrap one)"
                    .into(),
            ));
        }
        None => {
            let snap = bootstrap_snapshot(&config.initial_voters);
            snaps.save(&snap)?;
            tracing::info!(voters = ?config.initial_voters, "bootstrapped a new cluster member");
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
    let state = State::decode_snapshot(&snapshot.data)
        .map_err(|e| NodeError::Recovery(format!("snapshot at {snap_index}: {e}")))?;
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
        max_inflight_msgs: 256,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    let logger = slog::Logger::root(tracing_slog::TracingSlogDrain, slog::o!());
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

    let (inbox_tx, inbox_rx) = mpsc::channel();
    let wal_stats = Arc::new(WalStats::default());
    let persisted_tx = inbox_tx.clone();
    let writer = WalWriter::spawn(
        wal,
        wal_stats.clone(),
        Box::new(move |result| {
            let _ = persisted_tx.send(Inbox::Persisted(result));
        }),
    );
    let status = Arc::new(NodeStatus::new(config.id, wal_stats));
    let driver = Driver {
        raw,
        state,
        inbox: inbox_rx,
        wal: Some(writer),
        snaps,
        transport,
        status: status.clone(),
        batch: Vec::new(),
        batch_replies: Vec::new(),
        in_flight: BTreeMap::new(),
        waiting: VecDeque::new(),
        read_queue: Vec::new(),
        read_round: None,
        next_read_ctx: 1,
        readable: Vec::new(),
        persisted_messages: VecDeque::new(),
        last_submitted: 0,
        expiry_in_flight: None,
        next_expiry_check: Instant::now(),
        conf_state,
        log_bytes_since_snapshot: 0,
        next_tick: Instant::now() + config.tick,
        config,
    };
    driver.publish_status();
    let thread = std::thread::Builder::new()
        .name("concord-raft".into())
        .spawn(move || driver.run())
        .map_err(|e| StorageError::Io {
            context: "spawning the raft thread".into(),
            source: e,
        })?;
    Ok(NodeHandle {
        inbox: inbox_tx,
        status,
        thread: Arc::new(std::sync::Mutex::new(Some(thread))),
    })
}

/// The snapshot a new member starts from: an empty state at index 0 with
/// the initial voters.
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

/// A write waiting for its entry to be applied.
struct InFlight {
    term: u64,
    time_ms: u64,
    ops: Vec<Op>,
    /// One per op; None for the leader's own proposals (expiry).
    replies: Vec<Option<Responder>>,
}

/// A request that arrived while no leader was known.
enum Waiting {
    Write(Op, Responder),
    Read(Query, ReadMode, Responder),
}

struct PendingRead {
    query: Query,
    /// The read must see at least this index: everything proposed before it
    /// arrived, so a pipelined `SET k v; GET k` reads its own write.
    min_index: u64,
    deadline: Instant,
    reply: Responder,
}

struct ReadRound {
    ctx: u64,
    started: Instant,
    reads: Vec<PendingRead>,
}

struct Driver {
    raw: RawNode<LogStore>,
    state: State,
    inbox: Receiver<Inbox>,
    /// Taken on shutdown to flush and join.
    wal: Option<WalWriter>,
    snaps: SnapshotStore,
    transport: Box<dyn Transport>,
    status: Arc<NodeStatus>,
    config: NodeConfig,

    batch: Vec<Op>,
    batch_replies: Vec<Option<Responder>>,
    in_flight: BTreeMap<u64, InFlight>,
    waiting: VecDeque<(Instant, Waiting)>,

    read_queue: Vec<PendingRead>,
    read_round: Option<ReadRound>,
    next_read_ctx: u64,
    /// Reads whose read index is known, waiting for apply to reach it.
    readable: Vec<(u64, PendingRead)>,

    /// Messages of Ready `n` that may leave only once `n` is persisted.
    persisted_messages: VecDeque<(u64, Vec<Message>)>,
    last_submitted: u64,

    expiry_in_flight: Option<u64>,
    next_expiry_check: Instant,

    conf_state: ConfState,
    log_bytes_since_snapshot: u64,
    next_tick: Instant,
}

impl Driver {
    fn run(mut self) {
        loop {
            let timeout = self.next_tick.saturating_duration_since(Instant::now());
            let first = match self.inbox.recv_timeout(timeout) {
                Ok(msg) => Some(msg),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut stop = false;
            if let Some(msg) = first {
                stop |= self.handle(msg);
            }
            while let Ok(msg) = self.inbox.try_recv() {
                stop |= self.handle(msg);
            }
            if stop {
                self.stop();
                return;
            }
            let now = Instant::now();
            if now >= self.next_tick {
                self.raw.tick();
                self.next_tick = now + self.config.tick;
                self.expire_waiting(now);
            }
            self.maybe_propose_expiry(now);
            self.flush_proposals();
            self.flush_reads(now);
            self.handle_ready();
            self.publish_status();
        }
        self.stop();
    }

    /// Handles one inbox message; true means stop.
    fn handle(&mut self, msg: Inbox) -> bool {
        match msg {
            Inbox::Write(op, reply) => self.accept_write(op, reply),
            Inbox::Read(query, mode, reply) => self.accept_read(query, mode, reply),
            Inbox::Peer(m) => {
                if let Err(e) = self.raw.step(*m) {
                    tracing::debug!(error = %e, "raft rejected a peer message");
                }
            }
            Inbox::Unreachable(peer) => self.raw.report_unreachable(peer),
            Inbox::Persisted(Ok(number)) => self.on_persisted(number),
            Inbox::Persisted(Err(e)) => {
                // A failed fsync cannot be retried safely: the page cache may
                // have dropped the dirty pages. Stop serving.
                tracing::error!(error = %e, "WAL write failed; stopping the node");
                self.fail_everything(|| NodeError::ShuttingDown);
                std::process::exit(70);
            }
            Inbox::Snapshot(reply) => {
                let _ = reply.send(self.take_snapshot().map_err(NodeError::from));
            }
            Inbox::Shutdown => return true,
        }
        false
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    fn leader_known(&self) -> bool {
        self.raw.raft.leader_id != raft::INVALID_ID
    }

    fn accept_write(&mut self, op: Op, reply: Responder) {
        if self.is_leader() {
            self.batch.push(op);
            self.batch_replies.push(Some(reply));
        } else {
            let deadline = Instant::now() + self.config.request_timeout;
            self.waiting
                .push_back((deadline, Waiting::Write(op, reply)));
        }
    }

    fn accept_read(&mut self, query: Query, mode: ReadMode, reply: Responder) {
        match mode {
            ReadMode::Stale => {
                let _ = reply.send(Ok(self.state.read(&query, now_ms())));
                return;
            }
            ReadMode::Lease if self.is_leader() && self.raw.raft.commit_to_current_term() => {
                self.flush_proposals();
                let min_index = self.raw.raft.raft_log.last_index();
                let read = PendingRead {
                    query,
                    min_index,
                    deadline: Instant::now() + self.config.request_timeout,
                    reply,
                };
                self.readable.push((min_index, read));
                self.serve_reads();
                return;
            }
            _ => {}
        }
        if !self.is_leader() && !self.leader_known() {
            let deadline = Instant::now() + self.config.request_timeout;
            self.waiting
                .push_back((deadline, Waiting::Read(query, mode, reply)));
            return;
        }
        // Writes queued before this read must be in the log before its read
        // index is taken.
        self.flush_proposals();
        self.read_queue.push(PendingRead {
            query,
            min_index: self.raw.raft.raft_log.last_index(),
            deadline: Instant::now() + self.config.request_timeout,
            reply,
        });
    }

    /// Proposes the gathered writes as one entry.
    fn flush_proposals(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.batch);
        let replies = std::mem::take(&mut self.batch_replies);
        self.propose(ops, replies);
    }

    fn propose(&mut self, ops: Vec<Op>, replies: Vec<Option<Responder>>) -> Option<u64> {
        let time_ms = now_ms().max(self.state.clock_ms());
        let data = payload::encode(time_ms, &ops);
        let before = self.raw.raft.raft_log.last_index();
        match self.raw.propose(Vec::new(), data) {
            Ok(()) if self.raw.raft.raft_log.last_index() > before => {
                let index = self.raw.raft.raft_log.last_index();
                let term = self.raw.raft.term;
                self.in_flight.insert(
                    index,
                    InFlight {
                        term,
                        time_ms,
                        ops,
                        replies,
                    },
                );
                Some(index)
            }
            _ => {
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(NodeError::ProposalDropped));
                }
                None
            }
        }
    }

    /// Starts a ReadIndex round for the queued reads when none is running;
    /// retries a round that got no answer (raft drops read requests it
    /// cannot serve, e.g. before the new leader committed in its term).
    fn flush_reads(&mut self, now: Instant) {
        let retry_after = self.config.tick * self.config.election_ticks as u32;
        if let Some(round) = &self.read_round {
            if now.duration_since(round.started) < retry_after {
                return;
            }
            let round = self.read_round.take().expect("round present");
            let mut reads = round.reads;
            reads.append(&mut self.read_queue);
            self.read_queue = reads;
        }
        self.read_queue.retain(|r| !r.reply.is_closed());
        let (expired, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.read_queue)
            .into_iter()
            .partition(|r| r.deadline <= now);
        for r in expired {
            let _ = r
                .reply
                .send(Err(NodeError::Timeout(self.config.request_timeout)));
        }
        self.read_queue = live;
        if self.read_queue.is_empty() || !self.leader_known() {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        self.read_round = Some(ReadRound {
            ctx,
            started: now,
            reads: std::mem::take(&mut self.read_queue),
        });
    }

    fn on_read_state(&mut self, rs: ReadState) {
        let Some(round) = &self.read_round else {
            return;
        };
        if rs.request_ctx != round.ctx.to_be_bytes() {
            return;
        }
        let round = self.read_round.take().expect("round present");
        for read in round.reads {
            let index = rs.index.max(read.min_index);
            self.readable.push((index, read));
        }
    }

    /// Answers the reads whose index has been applied.
    fn serve_reads(&mut self) {
        if self.readable.is_empty() {
            return;
        }
        let applied = self.state.applied_index();
        let now = now_ms();
        let mut i = 0;
        while i < self.readable.len() {
            if self.readable[i].0 <= applied {
                let (_, read) = self.readable.swap_remove(i);
                let _ = read.reply.send(Ok(self.state.read(&read.query, now)));
            } else {
                i += 1;
            }
        }
    }

    /// Requests that waited for a leader: re-route those that can go now,
    /// time out those past their deadline.
    fn expire_waiting(&mut self, now: Instant) {
        if self.waiting.is_empty() {
            return;
        }
        let waiting = std::mem::take(&mut self.waiting);
        for (deadline, request) in waiting {
            match request {
                _ if deadline <= now => {
                    let err = NodeError::NoLeader(self.config.request_timeout);
                    match request {
                        Waiting::Write(_, r) | Waiting::Read(_, _, r) => {
                            let _ = r.send(Err(err));
                        }
                    }
                }
                Waiting::Write(op, r) if self.is_leader() => {
                    self.batch.push(op);
                    self.batch_replies.push(Some(r));
                }
                Waiting::Read(q, mode, r) if self.leader_known() => self.accept_read(q, mode, r),
                other => self.waiting.push_back((deadline, other)),
            }
        }
        self.readable.retain(|(_, r)| !r.reply.is_closed());
    }

    /// The leader deletes keys whose deadline passed, through the log.
    fn maybe_propose_expiry(&mut self, now: Instant) {
        if !self.is_leader() || self.expiry_in_flight.is_some() || now < self.next_expiry_check {
            return;
        }
        self.next_expiry_check = now + self.config.tick;
        let keys = self.state.expired_keys(now_ms(), self.config.expiry_batch);
        if keys.is_empty() {
            return;
        }
        self.flush_proposals();
        self.expiry_in_flight = self.propose(vec![Op::ExpireKeys(keys)], vec![None]);
    }

    fn handle_ready(&mut self) {
        if !self.raw.has_ready() {
            return;
        }
        let mut rd = self.raw.ready();
        if !rd.messages().is_empty() {
            self.transport.send(rd.take_messages());
        }
        if !rd.snapshot().is_empty() {
            let snapshot = rd.snapshot().clone();
            if let Err(e) = self.install_snapshot(snapshot) {
                tracing::error!(error = %e, "cannot install the leader's snapshot; stopping");
                std::process::exit(70);
            }
        }
        let committed = rd.take_committed_entries();
        self.apply(committed);
        if let Some(ss) = rd.ss() {
            self.on_soft_state(ss.raft_state, ss.leader_id);
        }
        for rs in rd.take_read_states() {
            self.on_read_state(rs);
        }
        self.serve_reads();
        let entries = rd.take_entries();
        let hard_state = rd.hs().cloned();
        let persisted = rd.take_persisted_messages();
        let must_persist = !entries.is_empty() || hard_state.is_some() || !rd.snapshot().is_empty();
        if must_persist || !persisted.is_empty() {
            let mut records = Vec::with_capacity(entries.len() + 1);
            if !entries.is_empty() {
                self.raw.mut_store().append(&entries);
                records.extend(entries.into_iter().map(Record::Entry));
            }
            if let Some(hs) = hard_state {
                self.raw.mut_store().set_hard_state(hs.clone());
                records.push(Record::HardState(hs));
            }
            let number = rd.number();
            self.submit(WalJob {
                number,
                records,
                compact_upto: None,
            });
            if !persisted.is_empty() {
                self.persisted_messages.push_back((number, persisted));
            }
        }
        self.raw.advance_append_async(rd);
    }

    fn submit(&mut self, job: WalJob) {
        self.last_submitted = self.last_submitted.max(job.number);
        if let Some(wal) = &self.wal {
            wal.submit(job);
        }
    }

    fn on_persisted(&mut self, number: u64) {
        self.raw.on_persist_ready(number);
        while let Some((n, _)) = self.persisted_messages.front() {
            if *n > number {
                break;
            }
            let (_, msgs) = self.persisted_messages.pop_front().expect("front exists");
            self.transport.send(msgs);
        }
    }

    fn on_soft_state(&mut self, role: StateRole, leader: u64) {
        let was_leader = self.status.role() == Role::Leader;
        self.status
            .role
            .store(Role::from_raft(role) as u8, Ordering::Relaxed);
        self.status.leader.store(leader, Ordering::Relaxed);
        if role == StateRole::Leader && !was_leader {
            tracing::info!(term = self.raw.raft.term, "became leader");
            self.next_expiry_check = Instant::now();
            self.expire_waiting(Instant::now());
        } else if role != StateRole::Leader && was_leader {
            tracing::info!(term = self.raw.raft.term, leader, "stepped down");
            self.expiry_in_flight = None;
            // Writes gathered but not proposed wait for the next leader.
            let deadline = Instant::now() + self.config.request_timeout;
            for (op, reply) in std::mem::take(&mut self.batch)
                .into_iter()
                .zip(std::mem::take(&mut self.batch_replies))
            {
                if let Some(reply) = reply {
                    self.waiting
                        .push_back((deadline, Waiting::Write(op, reply)));
                }
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        for entry in entries {
            self.log_bytes_since_snapshot += entry.data.len() as u64;
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(entry),
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&entry.data)
                        .expect("a committed ConfChange decodes");
                    let result = self.raw.apply_conf_change(&cc);
                    self.after_conf_change(entry.index, result);
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&entry.data)
                        .expect("a committed ConfChangeV2 decodes");
                    let result = self.raw.apply_conf_change(&cc);
                    self.after_conf_change(entry.index, result);
                }
            }
        }
        self.raw.advance_apply_to(last);
        self.serve_reads();
        self.maybe_snapshot();
    }

    fn after_conf_change(&mut self, index: u64, result: raft::Result<ConfState>) {
        match result {
            Ok(cs) => {
                tracing::info!(?cs, index, "membership changed");
                self.conf_state = cs;
            }
            Err(e) => tracing::warn!(error = %e, index, "membership change rejected"),
        }
        self.state.observe(index, 0);
        self.resolve_foreign(index);
    }

    fn apply_normal(&mut self, entry: Entry) {
        let index = entry.index;
        let ours = match self.in_flight.remove(&index) {
            Some(f) if f.term == entry.term => Some(f),
            Some(f) => {
                for reply in f.replies.into_iter().flatten() {
                    let _ = reply.send(Err(NodeError::ProposalDropped));
                }
                None
            }
            None => None,
        };
        if self.expiry_in_flight == Some(index) {
            self.expiry_in_flight = None;
        }
        if entry.data.is_empty() {
            // A new leader's empty entry.
            self.state.observe(index, 0);
            return;
        }
        let (time_ms, ops, replies) = match ours {
            Some(f) => (f.time_ms, f.ops, f.replies),
            None => {
                let batch = payload::decode(&entry.data).unwrap_or_else(|e| {
                    // Every replica would fail the same way; applying
                    // anything else would diverge. Stop.
                    panic!("entry {index} cannot be applied: {e}")
                });
                let n = batch.ops.len();
                (batch.time_ms, batch.ops, (0..n).map(|_| None).collect())
            }
        };
        for (op, reply) in ops.iter().zip(replies) {
            let result = self.state.apply(index, time_ms, op);
            if let Some(reply) = reply {
                let _ = reply.send(Ok(result));
            }
        }
    }

    /// An entry that is not ours landed at `index`: a proposal waiting
    /// there was lost.
    fn resolve_foreign(&mut self, index: u64) {
        if let Some(f) = self.in_flight.remove(&index) {
            for reply in f.replies.into_iter().flatten() {
                let _ = reply.send(Err(NodeError::ProposalDropped));
            }
        }
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        let meta = snapshot.get_metadata().clone();
        let state = State::decode_snapshot(&snapshot.data)
            .map_err(|e| NodeError::Recovery(format!("leader snapshot at {}: {e}", meta.index)))?;
        self.snaps.save(&snapshot)?;
        self.state = state;
        self.state.observe(meta.index, 0);
        self.conf_state = meta.get_conf_state().clone();
        self.raw.mut_store().apply_snapshot(snapshot);
        // Proposals at or below the snapshot may or may not be in it.
        let covered: Vec<u64> = self
            .in_flight
            .range(..=meta.index)
            .map(|(i, _)| *i)
            .collect();
        for index in covered {
            if let Some(f) = self.in_flight.remove(&index) {
                for reply in f.replies.into_iter().flatten() {
                    let _ = reply.send(Err(NodeError::OutcomeUnknown));
                }
            }
        }
        let hs = self.raw.store().hard_state().clone();
        self.submit(WalJob {
            number: self.last_submitted,
            records: vec![
                Record::SnapshotMark {
                    index: meta.index,
                    term: meta.term,
                },
                Record::HardState(hs),
            ],
            compact_upto: Some(meta.index),
        });
        self.log_bytes_since_snapshot = 0;
        self.serve_reads();
        tracing::info!(
            index = meta.index,
            term = meta.term,
            "installed the leader's snapshot"
        );
        Ok(())
    }

    fn maybe_snapshot(&mut self) {
        let entries = self.raw.store().len() as u64;
        if entries >= self.config.snapshot_entries
            || self.log_bytes_since_snapshot >= self.config.snapshot_log_bytes
        {
            if let Err(e) = self.take_snapshot() {
                tracing::error!(error = %e, "snapshot failed; stopping");
                std::process::exit(70);
            }
        }
    }

    /// Snapshots the applied state, then compacts the in-memory log and the
    /// WAL behind it. The file is durable before anything is compacted.
    fn take_snapshot(&mut self) -> Result<u64, StorageError> {
        let index = self.state.applied_index();
        if index <= self.raw.store().snapshot_index() {
            return Ok(self.raw.store().snapshot_index());
        }
        let term = self
            .raw
            .store()
            .term_at(index)
            .expect("an applied entry is in the log store");
        let started = Instant::now();
        let mut snap = Snapshot {
            data: self.state.encode_snapshot().into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(self.conf_state.clone());
        let bytes = snap.data.len();
        self.snaps.save(&snap)?;
        self.raw.mut_store().compact_to(snap);
        self.submit(WalJob {
            number: self.last_submitted,
            records: vec![Record::SnapshotMark { index, term }],
            compact_upto: Some(index),
        });
        self.log_bytes_since_snapshot = 0;
        self.status.snapshots_taken.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            index,
            term,
            bytes,
            took_ms = started.elapsed().as_millis() as u64,
            "snapshot taken"
        );
        Ok(index)
    }

    fn publish_status(&self) {
        let s = &self.status;
        let store = self.raw.store();
        s.term.store(self.raw.raft.term, Ordering::Relaxed);
        s.commit
            .store(self.raw.raft.raft_log.committed, Ordering::Relaxed);
        s.applied
            .store(self.state.applied_index(), Ordering::Relaxed);
        s.last_index
            .store(self.raw.raft.raft_log.last_index(), Ordering::Relaxed);
        s.snapshot_index
            .store(store.snapshot_index(), Ordering::Relaxed);
        s.keys
            .store(self.state.db().len() as u64, Ordering::Relaxed);
        s.volatile_keys
            .store(self.state.db().volatile_len() as u64, Ordering::Relaxed);
        s.leader.store(self.raw.raft.leader_id, Ordering::Relaxed);
        s.role.store(
            Role::from_raft(self.raw.raft.state) as u8,
            Ordering::Relaxed,
        );
    }

    fn fail_everything(&mut self, err: impl Fn() -> NodeError) {
        for reply in std::mem::take(&mut self.batch_replies)
            .into_iter()
            .flatten()
        {
            let _ = reply.send(Err(err()));
        }
        self.batch.clear();
        for (_, f) in std::mem::take(&mut self.in_flight) {
            for reply in f.replies.into_iter().flatten() {
                let _ = reply.send(Err(err()));
            }
        }
        for (_, w) in std::mem::take(&mut self.waiting) {
            match w {
                Waiting::Write(_, r) | Waiting::Read(_, _, r) => {
                    let _ = r.send(Err(err()));
                }
            }
        }
        let round = self.read_round.take().map(|r| r.reads).unwrap_or_default();
        for r in round
            .into_iter()
            .chain(std::mem::take(&mut self.read_queue))
        {
            let _ = r.reply.send(Err(err()));
        }
        for (_, r) in std::mem::take(&mut self.readable) {
            let _ = r.reply.send(Err(err()));
        }
    }

    /// Shutdown: finish what is already proposed as far as one more round of
    /// persistence allows, answer the rest, flush the WAL.
    fn stop(&mut self) {
        self.flush_proposals();
        self.handle_ready();
        self.fail_everything(|| NodeError::ShuttingDown);
        if let Some(wal) = self.wal.take() {
            if let Err(e) = wal.shutdown() {
                tracing::error!(error = %e, "WAL flush at shutdown failed");
            }
        }
        tracing::info!(applied = self.state.applied_index(), "raft driver stopped");
    }
}
