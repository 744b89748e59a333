//! The driver loop: the one owner of `RawNode`. See the module docs of
//! `raft` for the design.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeSingle, ConfChangeType, ConfChangeV2, ConfState, Entry, EntryType,
    Message, MessageType, Snapshot,
};
use raft::{RawNode, ReadState, Ready, SnapshotStatus, StateRole};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, WeakUnboundedSender};
use tokio::sync::oneshot;

use super::cluster::{self, AdminOp, PeerProgress, RaftInfo, Relayed, RelayedAnswer};
use super::log_store::LogStore;
use super::node::{after, now_ms, Inbox, NodeConfig, RemoteReply, Responder, Submit};
use super::own_snapshot::{OwnSnapshot, Stage, Written};
use super::payload;
use super::{Answer, NodeError, NodeStatus, ReadMode, Role};
use crate::state::pubsub::{Delivery, PubSubOp};
use crate::state::{Op, OpResult, Outcome, Query, State, StateError, Ticket, Wakeup};
use crate::storage::{
    Persisted, Record, SnapshotJob, SnapshotStore, StorageError, WalJob, WalWriter, WrittenSnapshot,
};
use crate::transport::Transport;

/// The wall clock for reads served as they arrive, read at most once for
/// the requests handled together (all of which arrived before it is read).
#[derive(Default)]
struct ReadClock(Option<u64>);

impl ReadClock {
    fn now_ms(&mut self) -> u64 {
        *self.0.get_or_insert_with(now_ms)
    }
}

/// A write waiting for its entry to be applied.
struct InFlight {
    term: u64,
    time_ms: u64,
    /// Past this, its clients are told the outcome is unknown (a leader cut
    /// off from the majority cannot commit, and must not leave them hanging).
    deadline: Instant,
    ops: Vec<Op>,
    /// One per op; None for the leader's own proposals (expiry).
    replies: Vec<Option<Responder>>,
}

/// A request that arrived while no leader was known.
enum Waiting {
    Write(Op, Responder),
    Read(Query, ReadMode, Responder),
    Admin(AdminOp, Responder),
}

impl Waiting {
    fn responder(self) -> Responder {
        match self {
            Waiting::Write(_, r) | Waiting::Read(_, _, r) | Waiting::Admin(_, r) => r,
        }
    }
}

/// A driver turn longer than this is logged with where its time went: a
/// turn is time in which this node sends no heartbeat and answers none,
/// and a few in a row cost a leader its quorum.
const SLOW_TURN: Duration = Duration::from_millis(150);

/// A request this follower relayed to the leader.
struct Forward {
    request: Relayed,
    /// Who waits: one per write of a [`Relayed::Writes`], else one.
    responders: Vec<Responder>,
    deadline: Instant,
    /// The leader it was sent to.
    leader: u64,
}

impl Forward {
    /// The requests with their responders, one by one.
    fn split(self) -> Vec<(Relayed, Responder)> {
        match self.request {
            Relayed::Writes(ops) => ops
                .into_iter()
                .map(Relayed::Write)
                .zip(self.responders)
                .collect(),
            request => vec![request].into_iter().zip(self.responders).collect(),
        }
    }
}

/// The answers a leader gathers for one [`Relayed::Writes`].
struct RelayedBatch {
    answers: Vec<Option<RelayedAnswer>>,
    missing: usize,
    /// Past it the follower gave up on the batch (its request timeout), and
    /// the leader forgets it.
    deadline: Instant,
}

/// Read-first EVALSHAs whose last tries as reads on this node all reached
/// a write, by sha. A script that wrote every time lately (a lock's extend)
/// is likely to write again, and its first run then costs a partial run
/// and a Lua error for nothing, so after [`WritingScripts::TRUST_AFTER`]
/// such tries in a row it goes to the log directly, except every
/// [`WritingScripts::RETRY_EVERY`]th call, which tries it as a read again.
/// A try that writes nothing forgets the script, so one that writes only
/// sometimes (a release by the owner, then by others) keeps being tried.
/// Either path answers the same: this only decides which is tried first.
#[derive(Default)]
struct WritingScripts {
    scripts: HashMap<String, Writes>,
}

#[derive(Default)]
struct Writes {
    in_a_row: u32,
    skipped: u32,
}

impl WritingScripts {
    const TRUST_AFTER: u32 = 4;
    const RETRY_EVERY: u32 = 8;
    /// Scripts remembered at most; past it the memory starts over.
    const CAPACITY: usize = 4096;

    /// True when `sha` should skip its try as a read this time.
    fn likely(&mut self, sha: &str) -> bool {
        match self.scripts.get_mut(sha) {
            Some(writes) if writes.in_a_row >= Self::TRUST_AFTER => {
                writes.skipped += 1;
                writes.skipped % Self::RETRY_EVERY != 0
            }
            _ => false,
        }
    }

    fn record(&mut self, sha: &str, wrote: bool) {
        if !wrote {
            self.scripts.remove(sha);
            return;
        }
        if !self.scripts.contains_key(sha) && self.scripts.len() >= Self::CAPACITY {
            self.scripts.clear();
        }
        self.scripts.entry(sha.to_owned()).or_default().in_a_row += 1;
    }
}

struct PendingRead {
    query: Query,
    /// The read must see at least this index: everything proposed before it
    /// arrived, so a pipelined `SET k v; GET k` reads its own write.
    min_index: u64,
    deadline: Instant,
    reply: Responder,
    first_run: Option<FirstRun>,
}

/// A read-first script's run as the read arrived, and the state it ran
/// against (known by the applied index: every change to the state is an
/// applied entry). If the state is still that one once the read barrier is
/// passed, the run is the read's answer, and the script does not run again.
struct FirstRun {
    applied: u64,
    answer: OpResult,
}

struct ReadRound {
    ctx: u64,
    started: Instant,
    reads: Vec<PendingRead>,
}

/// Where an AddMember/RemoveMember stands.
enum MemberStage {
    /// Waiting for the AddLearnerNode entry to apply.
    AddingLearner,
    /// The learner is replicating; promote it once it has caught up.
    CatchingUp,
    /// Waiting for the AddNode (promotion) entry to apply.
    Promoting,
    /// Waiting for the RemoveNode entry to apply.
    Removing,
}

struct MemberChange {
    id: u64,
    addr: String,
    stage: MemberStage,
    responder: Responder,
    deadline: Instant,
}

/// A client of this node waiting for a wake-up (a lock wait, a blocking
/// claim). The state answers it, or times it out, through the log; the
/// backstop only catches a node that can no longer hear the log.
struct Held {
    responder: Responder,
    /// Past this the client is told the outcome is unknown.
    backstop: Instant,
    /// Whether the ticket was seen missing from the state at the last check
    /// (an answer may have been lost when a snapshot replaced the log).
    missing_once: bool,
}

/// The context of a ReadIndex round: this node's id, then the round's
/// number. The leader keeps pending rounds by context and ignores one
/// whose context is already pending, so contexts must differ across the
/// nodes: with the number alone, two nodes' first rounds (both 1) met on
/// the leader and one waited out a retry (an election timeout).
fn read_ctx(node: u64, round: u64) -> Vec<u8> {
    [node.to_be_bytes(), round.to_be_bytes()].concat()
}

/// How often held clients are checked against the state.
const HELD_CHECK: Duration = Duration::from_secs(5);

struct Transfer {
    target: u64,
    responder: Responder,
    deadline: Instant,
}

pub(crate) struct Driver {
    raw: RawNode<LogStore>,
    state: State,
    inbox: UnboundedReceiver<Inbox>,
    /// Taken on shutdown to flush and join.
    wal: Option<WalWriter>,
    transport: Box<dyn Transport>,
    status: Arc<NodeStatus>,
    config: NodeConfig,

    batch: Vec<Op>,
    batch_replies: Vec<Option<Responder>>,
    in_flight: BTreeMap<u64, InFlight>,
    waiting: VecDeque<(Instant, Waiting)>,
    forwards: HashMap<u64, Forward>,
    /// Writes taken in this turn for the leader: relayed together at the
    /// end of the turn.
    relays: Vec<(Op, Responder, Instant)>,
    /// On the leader: the answers gathered for followers' relayed batches,
    /// by (follower, request id).
    relayed_batches: HashMap<(u64, u64), RelayedBatch>,
    next_forward_id: u64,

    read_queue: Vec<PendingRead>,
    read_round: Option<ReadRound>,
    next_read_ctx: u64,
    /// When the last heartbeat went to each peer: its answer gives the
    /// peer round-trip time (`/metrics`).
    heartbeats_sent: HashMap<u64, Instant>,
    /// Reads whose read index is known, waiting for apply to reach it.
    readable: Vec<(u64, PendingRead)>,

    /// Messages of Ready `n` that may leave only once `n` is persisted.
    persisted_messages: VecDeque<(u64, Vec<Message>)>,
    /// Which read-first scripts wrote when last tried as reads.
    script_writes: WritingScripts,
    last_submitted: u64,

    expiry_in_flight: Option<u64>,
    next_expiry_check: Instant,
    /// `maxmemory`: the leader's eviction proposals.
    eviction: super::eviction::Eviction,
    /// Which node probes which health check: the leader's proposals.
    check_owners: super::check_owners::CheckOwners,

    /// The leader's Tick or Grace proposal not yet applied: one at a time.
    timer_in_flight: Option<u64>,
    /// This node just became leader and owes the grace op.
    grace_due: bool,
    /// Clients of this node waiting for a wake-up, by ticket.
    held: HashMap<Ticket, Held>,
    /// Wake-ups for this node's tickets that came before the relayed
    /// answer saying the request waits (a follower can apply the grant
    /// before the leader's answer arrives).
    early_wakeups: HashMap<Ticket, (Instant, Outcome)>,
    next_held_check: Instant,
    /// When this node may next propose its client address, while the
    /// state does not hold it yet.
    next_advertise: Instant,
    /// Where each subscribed connection of this node gets its messages.
    /// This node's subscriber connections: where their messages go, and
    /// what they have not written yet.
    subscribers: HashMap<u64, (UnboundedSender<Delivery>, Arc<super::backlog::Backlog>)>,
    /// When this node may next announce its run to pub/sub, while the
    /// state does not know it yet.
    next_reboot_notice: Instant,

    member_change: Option<MemberChange>,
    transfer: Option<Transfer>,

    conf_state: ConfState,
    log_bytes_since_snapshot: u64,
    own_snapshot: Option<OwnSnapshot>,
    /// A leader's snapshot received and decoded, for raft to hand over.
    received_snapshot: Option<(WrittenSnapshot, Box<State>)>,
    /// Where our own snapshots are written.
    snaps: SnapshotStore,
    /// The inbox, for reports from threads the driver starts (never kept
    /// alive by the driver itself: the inbox closing stops it).
    inbox_tx: WeakUnboundedSender<Inbox>,
    next_tick: Instant,
}

impl Driver {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        raw: RawNode<LogStore>,
        state: State,
        inbox: UnboundedReceiver<Inbox>,
        wal: WalWriter,
        transport: Box<dyn Transport>,
        status: Arc<NodeStatus>,
        conf_state: ConfState,
        config: NodeConfig,
        (snaps, inbox_tx): (SnapshotStore, WeakUnboundedSender<Inbox>),
    ) -> Driver {
        let driver = Driver {
            raw,
            state,
            inbox,
            wal: Some(wal),
            transport,
            status,
            batch: Vec::new(),
            batch_replies: Vec::new(),
            in_flight: BTreeMap::new(),
            waiting: VecDeque::new(),
            forwards: HashMap::new(),
            relays: Vec::new(),
            relayed_batches: HashMap::new(),
            next_forward_id: 1,
            read_queue: Vec::new(),
            read_round: None,
            // Above any round an earlier run of this node may have left
            // pending on the leader.
            next_read_ctx: now_ms(),
            heartbeats_sent: HashMap::new(),
            readable: Vec::new(),
            persisted_messages: VecDeque::new(),
            script_writes: WritingScripts::default(),
            last_submitted: 0,
            expiry_in_flight: None,
            next_expiry_check: Instant::now(),
            eviction: super::eviction::Eviction::new(now_ms() ^ config.id.rotate_left(32)),
            check_owners: super::check_owners::CheckOwners::new(),
            timer_in_flight: None,
            grace_due: false,
            held: HashMap::new(),
            early_wakeups: HashMap::new(),
            next_held_check: Instant::now() + HELD_CHECK,
            next_advertise: Instant::now(),
            subscribers: HashMap::new(),
            next_reboot_notice: Instant::now(),
            member_change: None,
            transfer: None,
            conf_state,
            log_bytes_since_snapshot: 0,
            own_snapshot: None,
            received_snapshot: None,
            snaps,
            inbox_tx,
            next_tick: Instant::now() + config.tick,
            config,
        };
        driver.publish_status();
        driver.publish_client_addrs();
        driver
    }

    /// The loop, as a task on the runtime that also serves the clients.
    /// Every turn handles what the inbox holds: the requests of every client
    /// task that ran since the last turn, so they make one batch, handed over
    /// without waking another thread. The loop never blocks: fsyncs happen on
    /// the WAL thread.
    pub(crate) async fn run(mut self) {
        let tick = tokio::time::sleep_until(self.next_tick.into());
        tokio::pin!(tick);
        loop {
            // While a snapshot is being encoded, room at its writer wakes
            // the loop too (an idle node would otherwise encode a chunk
            // per tick); a busy one encodes a chunk per turn below.
            let encoder = self.own_snapshot.as_ref().and_then(OwnSnapshot::encoder);
            let encoding = encoder.is_some();
            let first = tokio::select! {
                biased;
                msg = self.inbox.recv() => match msg {
                    Some(msg) => Some(msg),
                    None => break,
                },
                () = &mut tick => None,
                _room = async move { encoder?.reserve_owned().await.ok() }, if encoding => None,
            };
            let turn = Instant::now();
            let mut stop = false;
            let mut handled = 0usize;
            if let Some(msg) = first {
                stop |= self.handle(msg);
                handled += 1;
            }
            while let Ok(msg) = self.inbox.try_recv() {
                stop |= self.handle(msg);
                handled += 1;
            }
            let t_inbox = turn.elapsed();
            if stop {
                break;
            }
            let now = Instant::now();
            if now >= self.next_tick {
                self.raw.tick();
                self.next_tick = now + self.config.tick;
                tick.as_mut().reset(self.next_tick.into());
                self.on_tick(now);
            }
            self.maybe_propose_expiry(now);
            self.maybe_propose_eviction();
            self.maybe_assign_checks(now);
            self.maybe_propose_timers();
            self.flush_relays();
            self.flush_proposals();
            self.flush_reads(now);
            let t_flush = turn.elapsed();
            self.handle_ready();
            // A new leader routes the writes that waited for one.
            self.flush_relays();
            let t_ready = turn.elapsed();
            self.publish_status();
            let took = turn.elapsed();
            if took > SLOW_TURN {
                tracing::warn!(
                    handled,
                    inbox_ms = t_inbox.as_millis() as u64,
                    flush_ms = (t_flush - t_inbox).as_millis() as u64,
                    ready_ms = (t_ready - t_flush).as_millis() as u64,
                    total_ms = took.as_millis() as u64,
                    "slow driver turn"
                );
            }
            if let Some(own) = &mut self.own_snapshot {
                if own.encoder().is_some() {
                    own.step(&mut self.state);
                    // Encoding never starves the clients on this thread.
                    tokio::task::yield_now().await;
                }
            }
        }
        self.stop().await;
    }

    /// Handles one inbox message; true means stop.
    fn handle(&mut self, msg: Inbox) -> bool {
        match msg {
            Inbox::Batch(requests) => {
                let deadline = after(self.config.request_timeout);
                // Every request of the batch arrived before this clock is read.
                let mut clock = ReadClock::default();
                for (request, reply) in requests.into_requests() {
                    match request {
                        Submit::Write(op) => self.accept_write(op, reply, deadline),
                        Submit::Read(query, mode) => {
                            self.accept_read(query, mode, reply, &mut clock)
                        }
                    }
                }
            }
            Inbox::Write(op, reply) => {
                self.accept_write(op, reply, after(self.config.request_timeout))
            }
            Inbox::Read(query, mode, reply) => {
                self.accept_read(query, mode, reply, &mut ReadClock::default())
            }
            Inbox::Admin(op, reply) => {
                self.accept_admin(op, reply, after(self.config.request_timeout))
            }
            Inbox::SnapshotReceived {
                message,
                file,
                state,
            } => {
                if let Some((old, _)) = self.received_snapshot.replace((file, state)) {
                    old.discard();
                }
                return self.handle(Inbox::Peer(message));
            }
            Inbox::Peer(m) => {
                self.check_owners.heard(m.from, Instant::now());
                // A leader's heartbeat carries min(what this node
                // acknowledged, the commit index): above our last entry, it
                // means this node lost entries it acknowledged (its data
                // directory was wiped or replaced). raft-rs would panic on
                // it; voting or serving as the member it was would be worse.
                let last = self.raw.raft.raft_log.last_index();
                if m.get_msg_type() == MessageType::MsgHeartbeat && m.commit > last {
                    self.lost_data(m.from, m.commit, last);
                }
                if m.get_msg_type() == MessageType::MsgHeartbeatResponse {
                    if let Some(sent) = self.heartbeats_sent.remove(&m.from) {
                        self.status
                            .metrics
                            .peer_round_trip
                            .get_or_create(&[("peer", m.from)])
                            .observe(sent.elapsed().as_secs_f64());
                    }
                }
                // A new member's progress: promote it on the answer that
                // shows it caught up, not at the next tick.
                let from_new_member = m.get_msg_type() == MessageType::MsgAppendResponse
                    && self.member_change.as_ref().is_some_and(|c| {
                        c.id == m.from && matches!(c.stage, MemberStage::CatchingUp)
                    });
                if let Err(e) = self.raw.step(*m) {
                    tracing::debug!(error = %e, "raft rejected a peer message");
                }
                if from_new_member {
                    self.advance_member_change(Instant::now());
                }
            }
            Inbox::Relayed { from, id, body } => self.accept_relayed(from, id, &body),
            Inbox::RelayedAnswer { id, body } => self.accept_relayed_answer(id, &body),
            Inbox::Unreachable(peer) => self.raw.report_unreachable(peer),
            Inbox::SnapshotSent { peer, delivered } => {
                let status = if delivered {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.raw.report_snapshot(peer, status);
            }
            Inbox::Persisted(Ok(persisted)) => self.on_persisted(persisted),
            Inbox::Persisted(Err(e)) => {
                // A failed fsync cannot be retried safely: the page cache may
                // have dropped the dirty pages. Stop serving.
                tracing::error!(error = %e, "WAL write failed; stopping the node");
                self.fail_everything(|| NodeError::ShuttingDown);
                std::process::exit(70);
            }
            Inbox::Snapshot(reply) => self.take_snapshot(Some(reply)),
            Inbox::SnapshotWritten {
                index,
                term,
                result,
            } => self.snapshot_written(index, term, result),
            Inbox::OwnedChecks(reply) => {
                let _ = reply.send(self.state.owned_checks(self.config.id));
            }
            Inbox::Mesh(reply) => {
                let now = now_ms().max(self.state.clock_ms());
                let _ = reply.send(self.state.mesh_stats(now));
            }
            Inbox::Info(reply) => {
                let _ = reply.send(self.info());
            }
            Inbox::Subscriber { client, messages } => match messages {
                Some(tx) => {
                    self.subscribers.insert(client, tx);
                }
                None => {
                    self.subscribers.remove(&client);
                }
            },
            Inbox::Shutdown => return true,
        }
        false
    }

    fn respond(&mut self, responder: Responder, answer: Answer) {
        match &answer {
            Err(NodeError::ProposalDropped) => self.status.metrics.failed("dropped"),
            Err(NodeError::OutcomeUnknown) => self.status.metrics.failed("unknown"),
            _ => {}
        }
        if let Ok(Ok(Outcome::Blocked { ticket, timeout_ms })) = &answer {
            if !responder.is_remote() {
                return self.hold(responder, *ticket, *timeout_ms);
            }
        }
        // A relayed request's answer goes back to the follower.
        if let Some((to, answer)) = responder.send_local(answer) {
            let body = match answer {
                Ok(result) => RelayedAnswer::Done(result),
                // Not applied: the follower may send it again.
                Err(NodeError::ProposalDropped) => RelayedAnswer::NotLeader,
                Err(e) => RelayedAnswer::Failed(e.to_string()),
            };
            self.answer_remote(to, body);
        }
    }

    /// Sends a relayed request's answer back, or keeps it with its batch
    /// until the batch's last write is answered.
    fn answer_remote(&mut self, to: RemoteReply, body: RelayedAnswer) {
        let Some(index) = to.index else {
            self.transport
                .forward_reply(to.peer, to.id, cluster::encode(&body));
            return;
        };
        let key = (to.peer, to.id);
        let Some(batch) = self.relayed_batches.get_mut(&key) else {
            return;
        };
        let Some(slot) = batch.answers.get_mut(index as usize) else {
            return;
        };
        if slot.replace(body).is_none() {
            batch.missing -= 1;
        }
        if batch.missing == 0 {
            let batch = self.relayed_batches.remove(&key).expect("present");
            let answers = batch.answers.into_iter().flatten().collect();
            self.transport.forward_reply(
                to.peer,
                to.id,
                cluster::encode(&RelayedAnswer::Each(answers)),
            );
        }
    }

    /// Keeps a waiting client's responder until its wake-up.
    fn hold(&mut self, responder: Responder, ticket: Ticket, timeout_ms: u64) {
        if let Some((_, outcome)) = self.early_wakeups.remove(&ticket) {
            return self.respond(responder, Ok(Ok(outcome)));
        }
        let far = Duration::from_secs(100 * 365 * 24 * 3600);
        let wait = if timeout_ms == 0 {
            far
        } else {
            Duration::from_millis(timeout_ms)
        };
        let backstop = Instant::now() + wait + self.config.request_timeout;
        self.held.insert(
            ticket,
            Held {
                responder,
                backstop,
                missing_once: false,
            },
        );
    }

    /// Answers this node's waiting clients that the applied op woke.
    fn deliver(&mut self, wakeups: Vec<Wakeup>) {
        for Wakeup { ticket, outcome } in wakeups {
            if ticket.node != self.config.id {
                continue;
            }
            match self.held.remove(&ticket) {
                Some(held) => self.respond(held.responder, Ok(Ok(outcome))),
                None => {
                    self.early_wakeups.insert(ticket, (Instant::now(), outcome));
                }
            }
        }
    }

    /// Held clients: those that left give up their place (through the
    /// log), those past their backstop or no longer known to the state
    /// hear that the outcome is unknown; stale early wake-ups are dropped.
    fn check_held(&mut self, now: Instant) {
        let left: Vec<Ticket> = self
            .held
            .iter()
            .filter(|(_, h)| h.responder.is_closed())
            .map(|(t, _)| *t)
            .collect();
        for ticket in left {
            self.held.remove(&ticket);
            self.unblock(ticket);
        }
        let keep = self.config.request_timeout * 2;
        self.early_wakeups
            .retain(|_, (at, _)| now.duration_since(*at) < keep);
        if now < self.next_held_check {
            return;
        }
        self.next_held_check = now + HELD_CHECK;
        let mut lost = Vec::new();
        for (ticket, held) in self.held.iter_mut() {
            if held.backstop <= now {
                lost.push(*ticket);
            } else if self.state.is_waiting(*ticket) {
                held.missing_once = false;
            } else if held.missing_once {
                lost.push(*ticket);
            } else {
                held.missing_once = true;
            }
        }
        for ticket in lost {
            if let Some(held) = self.held.remove(&ticket) {
                self.respond(held.responder, Err(NodeError::OutcomeUnknown));
            }
        }
    }

    /// Gives up a departed client's place in a queue, through the log.
    fn unblock(&mut self, ticket: Ticket) {
        self.write_unanswered(Op::Unblock(ticket));
    }

    /// Proposes this node's client address until the state holds it, so
    /// every node can tell clients where the leader is.
    fn maybe_advertise(&mut self, now: Instant) {
        let addr = &self.config.client_addr;
        if addr.is_empty()
            || now < self.next_advertise
            || self.state.client_addrs().get(&self.config.id) == Some(addr)
        {
            return;
        }
        self.next_advertise = now + self.config.request_timeout;
        let op = Op::Advertise {
            node: self.config.id,
            addr: addr.clone(),
        };
        self.write_unanswered(op);
    }

    /// Tells pub/sub which run of this node is current, so subscriptions
    /// of earlier runs (whose connection ids this run reuses) end.
    fn maybe_announce_boot(&mut self, now: Instant) {
        let boot = self.status.boot;
        if now < self.next_reboot_notice || self.state.pubsub().boot(self.config.id) == Some(boot) {
            return;
        }
        self.next_reboot_notice = now + self.config.request_timeout;
        let op = Op::PubSub(PubSubOp::Rebooted {
            node: self.config.id,
            boot,
        });
        self.write_unanswered(op);
    }

    /// Hands this node's subscribers the messages the applied op published.
    fn deliver_messages(&mut self, deliveries: Vec<Delivery>) {
        let (id, boot) = (self.config.id, self.status.boot);
        let now = now_ms();
        for delivery in deliveries {
            let to = delivery.to;
            if to.node != id || to.boot != boot {
                continue;
            }
            let Some((tx, backlog)) = self.subscribers.get(&to.client) else {
                continue;
            };
            let cost = super::backlog::Backlog::cost_of(&delivery);
            // Past its output limit: nothing more is queued, and the
            // connection, woken, closes and frees what was.
            let gone = !backlog.queue(cost, now) || tx.send(delivery).is_err();
            if gone {
                self.subscribers.remove(&to.client);
            }
        }
    }

    /// A write nobody waits for: proposed, or relayed to the leader.
    fn write_unanswered(&mut self, op: Op) {
        if self.is_leader() {
            self.batch.push(op);
            self.batch_replies.push(None);
        } else if self.leader().is_some() {
            // Nobody waits for the answer: a receiver dropped at once.
            let (tx, _) = oneshot::channel();
            self.relays
                .push((op, Responder::Local(tx), after(self.config.request_timeout)));
        }
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    fn leader(&self) -> Option<u64> {
        let leader = self.raw.raft.leader_id;
        (leader != raft::INVALID_ID).then_some(leader)
    }

    fn accept_write(&mut self, mut op: Op, reply: Responder, deadline: Instant) {
        if !reply.is_remote() {
            if let Some(ticket) = op.ticket_mut().filter(|t| !t.is_assigned()) {
                *ticket = self.status.new_ticket();
            }
        }
        if self.is_leader() {
            self.batch.push(op);
            self.batch_replies.push(Some(reply));
        } else if self.leader().is_some() && !reply.is_remote() {
            self.relays.push((op, reply, deadline));
        } else if let Some(to) = reply.remote() {
            // Relayed to a node that is not (or no longer) the leader: say
            // so, and the follower will try the leader it knows next.
            self.answer_remote(to, RelayedAnswer::NotLeader);
        } else {
            self.waiting
                .push_back((deadline, Waiting::Write(op, reply)));
        }
    }

    /// Relays an admin request to the leader.
    fn relay(&mut self, request: Relayed, responder: Responder, deadline: Instant) {
        self.send_forward(request, vec![responder], deadline);
    }

    /// Relays the writes taken in this turn, in one message.
    fn flush_relays(&mut self) {
        if self.relays.is_empty() {
            return;
        }
        let relays = std::mem::take(&mut self.relays);
        if self.is_leader() || self.leader().is_none() {
            // Leadership moved within the turn: this node proposes them,
            // or they wait for a leader.
            for (op, responder, deadline) in relays {
                self.accept_write(op, responder, deadline);
            }
            return;
        }
        let deadline = relays
            .iter()
            .map(|(_, _, deadline)| *deadline)
            .min()
            .expect("not empty");
        let (ops, responders): (Vec<Op>, Vec<Responder>) =
            relays.into_iter().map(|(op, r, _)| (op, r)).unzip();
        self.send_forward(Relayed::Writes(ops), responders, deadline);
    }

    /// Sends a request to the leader and remembers who waits for it. With
    /// no leader, or no room on the link to it, the request waits (and
    /// is routed again at the next tick).
    fn send_forward(&mut self, request: Relayed, responders: Vec<Responder>, deadline: Instant) {
        let id = self.next_forward_id;
        let sent = self.leader().filter(|&leader| {
            self.transport
                .forward(leader, id, cluster::encode(&request))
        });
        let forward = Forward {
            request,
            responders,
            deadline,
            leader: sent.unwrap_or(raft::INVALID_ID),
        };
        let Some(_) = sent else {
            for (request, responder) in forward.split() {
                self.wait_for_leader(request, responder, deadline);
            }
            return;
        };
        self.next_forward_id += 1;
        self.forwards.insert(id, forward);
    }

    fn wait_for_leader(&mut self, request: Relayed, responder: Responder, deadline: Instant) {
        let waiting = match request {
            Relayed::Write(op) => Waiting::Write(op, responder),
            Relayed::Admin(op) => Waiting::Admin(op, responder),
            Relayed::Writes(_) => unreachable!("split before it waits"),
        };
        self.waiting.push_back((deadline, waiting));
    }

    fn accept_relayed(&mut self, from: u64, id: u64, body: &[u8]) {
        let responder = Responder::Remote { peer: from, id };
        match cluster::decode::<Relayed>(body) {
            Some(Relayed::Write(op)) => {
                self.accept_write(op, responder, after(self.config.request_timeout))
            }
            Some(Relayed::Writes(ops)) => {
                if !self.is_leader() {
                    // None of it runs here: the follower routes it again.
                    return self.answer_remote(
                        RemoteReply {
                            peer: from,
                            id,
                            index: None,
                        },
                        RelayedAnswer::NotLeader,
                    );
                }
                if ops.is_empty() {
                    let answer = RelayedAnswer::Each(Vec::new());
                    return self
                        .transport
                        .forward_reply(from, id, cluster::encode(&answer));
                }
                let deadline = after(self.config.request_timeout);
                self.relayed_batches.insert(
                    (from, id),
                    RelayedBatch {
                        answers: (0..ops.len()).map(|_| None).collect(),
                        missing: ops.len(),
                        deadline,
                    },
                );
                for (index, op) in ops.into_iter().enumerate() {
                    let index = index as u32;
                    let responder = Responder::RemoteItem {
                        peer: from,
                        id,
                        index,
                    };
                    self.accept_write(op, responder, deadline);
                }
            }
            Some(Relayed::Admin(op)) => {
                self.accept_admin(op, responder, after(self.config.catch_up_timeout))
            }
            None => {
                tracing::warn!(from, "undecodable relayed request");
                let answer =
                    RelayedAnswer::Failed("ERR relayed request could not be decoded".into());
                self.transport
                    .forward_reply(from, id, cluster::encode(&answer));
            }
        }
    }

    fn accept_relayed_answer(&mut self, id: u64, body: &[u8]) {
        let Some(forward) = self.forwards.remove(&id) else {
            return;
        };
        let deadline = forward.deadline;
        let batch = matches!(forward.request, Relayed::Writes(_));
        let answer = cluster::decode::<RelayedAnswer>(body);
        let requests = forward.split();
        match answer {
            Some(RelayedAnswer::Each(answers)) if batch && answers.len() == requests.len() => {
                for ((request, responder), answer) in requests.into_iter().zip(answers) {
                    self.settle(request, responder, answer, deadline);
                }
            }
            // One answer for the whole request: a single one's, or a
            // batch's that was not run at all (not the leader, undecodable).
            Some(answer @ (RelayedAnswer::NotLeader | RelayedAnswer::Failed(_))) => {
                for (request, responder) in requests {
                    self.settle(request, responder, answer.clone(), deadline);
                }
            }
            Some(answer @ RelayedAnswer::Done(_)) if !batch => {
                for (request, responder) in requests {
                    self.settle(request, responder, answer.clone(), deadline);
                }
            }
            _ => {
                for (_, responder) in requests {
                    self.respond(responder, Err(NodeError::OutcomeUnknown));
                }
            }
        }
    }

    /// One relayed request's answer, for its client.
    fn settle(
        &mut self,
        request: Relayed,
        responder: Responder,
        answer: RelayedAnswer,
        deadline: Instant,
    ) {
        match answer {
            RelayedAnswer::Done(result) => self.respond(responder, Ok(result)),
            RelayedAnswer::Failed(text) => self.respond(responder, Err(NodeError::Remote(text))),
            RelayedAnswer::NotLeader => self.wait_for_leader(request, responder, deadline),
            RelayedAnswer::Each(_) => self.respond(responder, Err(NodeError::OutcomeUnknown)),
        }
    }

    fn accept_read(
        &mut self,
        query: Query,
        mode: ReadMode,
        reply: Responder,
        clock: &mut ReadClock,
    ) {
        // A read-first script's run against the state as it is now.
        let mut first_run = None;
        if let Some(script) = query.read_first_script() {
            if self.script_writes.likely(&script) {
                return self.resubmit_as_write(query, reply);
            }
            // A script that writes goes to the log now, without waiting
            // for a read barrier it would not use; one that does not is
            // answered once the barrier is passed, by this run if the state
            // is still the one it saw, else by a run then.
            let answer = self.state.read(&query, clock.now_ms());
            let wrote = answer == Err(StateError::ScriptWrites);
            self.script_writes.record(&script, wrote);
            if wrote {
                return self.resubmit_as_write(query, reply);
            }
            first_run = Some(FirstRun {
                applied: self.state.applied_index(),
                answer,
            });
        }
        if mode == ReadMode::Stale {
            return self.serve_read(query, reply, clock.now_ms(), first_run);
        }
        if self.reads_without_round(mode) {
            // Writes queued before this read must be in the log first, and
            // applied before it is served.
            self.flush_proposals();
            let min_index = self.raw.raft.raft_log.last_index();
            if min_index <= self.state.applied_index() {
                self.serve_read(query, reply, clock.now_ms(), first_run);
            } else {
                let read = PendingRead {
                    query,
                    min_index,
                    deadline: after(self.config.request_timeout),
                    reply,
                    first_run,
                };
                self.readable.push((min_index, read));
            }
            return;
        }
        if self.leader().is_none() {
            let deadline = after(self.config.request_timeout);
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
            deadline: after(self.config.request_timeout),
            reply,
            first_run,
        });
    }

    /// Answers a read from the applied state (by a read-first script's
    /// first run, if nothing was applied since it); a read-first script
    /// that reached a write goes to the log instead.
    fn serve_read(
        &mut self,
        query: Query,
        reply: Responder,
        now: u64,
        first_run: Option<FirstRun>,
    ) {
        let answer = match first_run {
            Some(run) if run.applied == self.state.applied_index() => run.answer,
            _ => self.state.read(&query, now),
        };
        match answer {
            Err(StateError::ScriptWrites) => self.resubmit_as_write(query, reply),
            answer => self.respond(reply, Ok(answer)),
        }
    }

    /// A read-first script's op, submitted as any write is. The client's
    /// connection sends nothing behind it until it is answered, so nothing
    /// it sent later can be served or applied ahead of it.
    fn resubmit_as_write(&mut self, query: Query, reply: Responder) {
        match query.into_op() {
            Some(op) => self.accept_write(op, reply, after(self.config.request_timeout)),
            None => self.respond(reply, Ok(Err(StateError::ScriptWrites))),
        }
    }

    /// True when this node may serve a read of `mode` from its own state,
    /// once it has applied everything proposed before the read, without a
    /// ReadIndex round: as leader that has committed in its term, under a
    /// lease, or - linearizable - when it is the only voter. A single voter's
    /// commit index is the cluster's (no other node can commit or lead
    /// without a configuration change it would apply first), which is why
    /// raft-rs answers such a ReadIndex at once with it; answering here saves
    /// the Ready round trip. Clusters keep the ReadIndex round.
    fn reads_without_round(&self, mode: ReadMode) -> bool {
        let raft = &self.raw.raft;
        let confirmed = self.is_leader() && raft.commit_to_current_term();
        match mode {
            ReadMode::Stale => true,
            ReadMode::Lease => confirmed,
            ReadMode::Linearizable => confirmed && raft.prs().is_singleton(),
        }
    }

    fn reject(&mut self, responder: Responder, text: impl Into<String>) {
        self.respond(responder, Err(NodeError::Rejected(text.into())));
    }

    fn accept_admin(&mut self, op: AdminOp, reply: Responder, deadline: Instant) {
        if !self.is_leader() {
            if let Responder::Remote { peer, id } = reply {
                self.transport
                    .forward_reply(peer, id, cluster::encode(&RelayedAnswer::NotLeader));
            } else if self.leader().is_some() {
                self.relay(Relayed::Admin(op), reply, deadline);
            } else {
                self.waiting
                    .push_back((deadline, Waiting::Admin(op, reply)));
            }
            return;
        }
        let voters = self.conf_state.voters.clone();
        let learners = self.conf_state.learners.clone();
        match op {
            AdminOp::AddMember { id, addr } => {
                if self.member_change.is_some() {
                    return self.reject(reply, "a membership change is already in progress");
                }
                if voters.contains(&id) {
                    return self.reject(reply, format!("node {id} is already a voting member"));
                }
                let stage = if learners.contains(&id) {
                    MemberStage::CatchingUp
                } else {
                    if let Err(e) =
                        self.propose_conf_change(id, ConfChangeType::AddLearnerNode, &addr)
                    {
                        return self.respond(reply, Err(e));
                    }
                    MemberStage::AddingLearner
                };
                self.transport.set_peer(id, Some(self.peer_addr(id, &addr)));
                self.member_change = Some(MemberChange {
                    id,
                    addr,
                    stage,
                    responder: reply,
                    deadline: after(self.config.catch_up_timeout),
                });
            }
            AdminOp::RemoveMember { id } => {
                if self.member_change.is_some() {
                    return self.reject(reply, "a membership change is already in progress");
                }
                if !voters.contains(&id) && !learners.contains(&id) {
                    return self.reject(reply, format!("node {id} is not a member"));
                }
                if voters == [id] {
                    return self.reject(reply, "cannot remove the last voting member");
                }
                if let Err(e) = self.propose_conf_change(id, ConfChangeType::RemoveNode, "") {
                    return self.respond(reply, Err(e));
                }
                self.member_change = Some(MemberChange {
                    id,
                    addr: String::new(),
                    stage: MemberStage::Removing,
                    responder: reply,
                    deadline: after(self.config.catch_up_timeout),
                });
            }
            AdminOp::TransferLeader { id } => {
                if id == self.config.id {
                    return self.respond(reply, Ok(Ok(crate::state::Outcome::Ok)));
                }
                if !voters.contains(&id) {
                    return self.reject(reply, format!("node {id} is not a voting member"));
                }
                if self.transfer.is_some() {
                    return self.reject(reply, "a leadership transfer is already in progress");
                }
                self.raw.transfer_leader(id);
                let election = self.config.tick * (2 * self.config.election_ticks) as u32;
                self.transfer = Some(Transfer {
                    target: id,
                    responder: reply,
                    deadline: after(election),
                });
            }
        }
    }

    /// The address to dial for `id`: configured addresses win over learned ones.
    fn peer_addr(&self, id: u64, learned: &str) -> String {
        self.config
            .peers
            .get(&id)
            .cloned()
            .unwrap_or_else(|| learned.to_owned())
    }

    fn propose_conf_change(
        &mut self,
        id: u64,
        kind: ConfChangeType,
        addr: &str,
    ) -> Result<u64, NodeError> {
        let mut change = ConfChangeSingle::default();
        change.set_change_type(kind);
        change.node_id = id;
        let mut cc = ConfChangeV2::default();
        cc.mut_changes().push(change);
        let before = self.raw.raft.raft_log.last_index();
        self.raw.propose_conf_change(addr.as_bytes().to_vec(), cc)?;
        let index = self.raw.raft.raft_log.last_index();
        if index == before {
            return Err(NodeError::Rejected(
                "the membership change was not accepted (a previous one is still pending)".into(),
            ));
        }
        Ok(index)
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

    fn propose(&mut self, mut ops: Vec<Op>, mut replies: Vec<Option<Responder>>) -> Option<u64> {
        let time_ms = now_ms().max(self.state.clock_ms());
        let data = payload::encode(time_ms, &ops);
        if data.len() as u64 > self.config.max_entry_bytes {
            // Writes gathered together may not fit one entry: halves go
            // as entries of their own. A single op too big for one (one
            // the server could not size up front, a script's) is refused
            // before the log.
            // An expiry of many keys is split by its keys: it must never be
            // refused, or the same earliest keys would be tried forever.
            if let [op] = ops.as_mut_slice() {
                if let Some(rest) = split_deletion(op) {
                    ops.push(rest);
                    replies.push(None);
                }
            }
            if ops.len() > 1 {
                let rest_ops = ops.split_off(ops.len() / 2);
                let rest_replies = replies.split_off(replies.len() / 2);
                let first = self.propose(ops, replies);
                let second = self.propose(rest_ops, rest_replies);
                return second.or(first);
            }
            let text = format!(
                "the write needs a log entry of {} bytes, over the largest this cluster takes (--max-entry-bytes {})",
                data.len(),
                self.config.max_entry_bytes
            );
            for reply in replies.into_iter().flatten() {
                self.respond(reply, Err(NodeError::Rejected(text.clone())));
            }
            return None;
        }
        let before = self.raw.raft.raft_log.last_index();
        match self.raw.propose(Vec::new(), data) {
            Ok(()) if self.raw.raft.raft_log.last_index() > before => {
                self.status.metrics.proposals.inc();
                let index = self.raw.raft.raft_log.last_index();
                let term = self.raw.raft.term;
                self.in_flight.insert(
                    index,
                    InFlight {
                        term,
                        time_ms,
                        deadline: after(self.config.request_timeout),
                        ops,
                        replies,
                    },
                );
                Some(index)
            }
            _ => {
                for reply in replies.into_iter().flatten() {
                    self.respond(reply, Err(NodeError::ProposalDropped));
                }
                None
            }
        }
    }

    /// Starts a ReadIndex round for the queued reads when none is running;
    /// retries a round that got no answer (raft drops read requests it
    /// cannot serve, e.g. before a new leader committed in its term).
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
            self.respond(
                r.reply,
                Err(NodeError::Timeout(self.config.request_timeout)),
            );
        }
        self.read_queue = live;
        if self.read_queue.is_empty() || self.leader().is_none() {
            return;
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        self.raw.read_index(read_ctx(self.config.id, ctx));
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
        if rs.request_ctx != read_ctx(self.config.id, round.ctx) {
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
                self.serve_read(read.query, read.reply, now, read.first_run);
            } else {
                i += 1;
            }
        }
    }

    /// Periodic work: requests waiting for a leader or a relayed answer,
    /// reads stuck behind a lagging apply, membership progress, the
    /// allocator's tidying of this thread's heap.
    fn on_tick(&mut self, now: Instant) {
        crate::alloc::collect(now);
        self.route_waiting(now);
        self.check_held(now);
        self.maybe_advertise(now);
        self.maybe_announce_boot(now);
        let expired: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(f) = self.forwards.remove(&id) {
                // The leader may or may not have applied it.
                for responder in f.responders {
                    self.respond(responder, Err(NodeError::OutcomeUnknown));
                }
            }
        }
        // A batch whose follower has given up (a write of it was lost in
        // the leader's hands) is forgotten; the follower answered its
        // clients "outcome unknown" at its own deadline.
        self.relayed_batches
            .retain(|_, batch| batch.deadline + self.config.request_timeout > now);
        let mut overdue = Vec::new();
        for f in self.in_flight.values_mut() {
            if f.deadline <= now {
                overdue.extend(f.replies.iter_mut().filter_map(Option::take));
            }
        }
        for reply in overdue {
            self.respond(reply, Err(NodeError::OutcomeUnknown));
        }
        let (expired, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.readable)
            .into_iter()
            .partition(|(_, r)| r.deadline <= now || r.reply.is_closed());
        self.readable = live;
        for (_, r) in expired {
            self.respond(
                r.reply,
                Err(NodeError::Timeout(self.config.request_timeout)),
            );
        }
        self.advance_member_change(now);
        if let Some(t) = &self.transfer {
            if t.deadline <= now {
                let t = self.transfer.take().expect("present");
                self.reject(
                    t.responder,
                    format!("node {} did not take over leadership in time", t.target),
                );
            }
        }
    }

    /// Requests that waited for a leader: route those that can go now, time
    /// out those past their deadline.
    fn route_waiting(&mut self, now: Instant) {
        if self.waiting.is_empty() {
            return;
        }
        let can_route = self.leader().is_some();
        let waiting = std::mem::take(&mut self.waiting);
        for (deadline, request) in waiting {
            if deadline <= now {
                let err = NodeError::NoLeader(self.config.request_timeout);
                self.respond(request.responder(), Err(err));
            } else if !can_route {
                self.waiting.push_back((deadline, request));
            } else {
                match request {
                    Waiting::Write(op, r) => self.accept_write(op, r, deadline),
                    Waiting::Read(q, mode, r) => {
                        self.accept_read(q, mode, r, &mut ReadClock::default())
                    }
                    Waiting::Admin(op, r) => self.accept_admin(op, r, deadline),
                }
            }
        }
    }

    /// Promotes a caught-up learner; gives up past the deadline.
    fn advance_member_change(&mut self, now: Instant) {
        let Some(change) = &self.member_change else {
            return;
        };
        if !self.is_leader() {
            let change = self.member_change.take().expect("present");
            return self.respond(change.responder, Err(NodeError::OutcomeUnknown));
        }
        if change.deadline <= now {
            let change = self.member_change.take().expect("present");
            let text = format!(
                "node {} did not catch up in time; it stays a learner",
                change.id
            );
            return self.reject(change.responder, text);
        }
        if !matches!(change.stage, MemberStage::CatchingUp) {
            return;
        }
        let id = change.id;
        let committed = self.raw.raft.raft_log.committed;
        let caught_up = self.raw.raft.prs().get(id).is_some_and(|p| {
            p.matched + 100 >= committed && p.matched > 0 || p.matched == committed
        });
        if !caught_up {
            return;
        }
        let addr = change.addr.clone();
        match self.propose_conf_change(id, ConfChangeType::AddNode, &addr) {
            Ok(_) => {
                if let Some(c) = self.member_change.as_mut() {
                    c.stage = MemberStage::Promoting;
                }
            }
            Err(e) => tracing::debug!(error = %e, id, "promotion not proposed yet"),
        }
    }

    /// The leader deletes keys whose deadline passed, through the log.
    fn maybe_propose_expiry(&mut self, now: Instant) {
        // Nothing of a new term before its Grace: an expiry would fire the
        // primitives' timers ahead of it.
        if !self.is_leader()
            || self.grace_due
            || self.expiry_in_flight.is_some()
            || now < self.next_expiry_check
            || self.status.paused()
        {
            return;
        }
        self.next_expiry_check = now + self.config.tick;
        let keys = self.state.expired_keys(now_ms(), self.config.expiry_batch);
        if keys.is_empty() {
            return;
        }
        self.flush_proposals();
        let ops: Vec<Op> = keys
            .into_iter()
            .map(|(db, keys)| Op::in_db(db, Op::ExpireKeys(keys)))
            .collect();
        let replies = ops.iter().map(|_| None).collect();
        self.expiry_in_flight = self.propose(ops, replies);
    }

    /// The leader deletes keys chosen for eviction through the log when the
    /// dataset is over `maxmemory` (see [`super::eviction`]).
    fn maybe_propose_eviction(&mut self) {
        self.eviction.sync(&self.status.memory, &mut self.state);
        if !self.is_leader() || self.grace_due || self.status.paused() {
            return;
        }
        let Some(keys) = self
            .eviction
            .due(&self.status.memory, &self.state, now_ms())
        else {
            return;
        };
        self.flush_proposals();
        let mut by_db: BTreeMap<u32, Vec<Bytes>> = BTreeMap::new();
        for (db, key) in keys {
            by_db.entry(db).or_default().push(key);
        }
        let ops: Vec<Op> = by_db
            .into_iter()
            .map(|(db, keys)| Op::in_db(db, Op::Evict(keys)))
            .collect();
        let replies = ops.iter().map(|_| None).collect();
        let index = self.propose(ops, replies);
        self.eviction.in_flight.proposed(index);
    }

    /// The leader gives health checks whose owner stopped answering (or
    /// that have none) to live nodes, through the log.
    fn maybe_assign_checks(&mut self, now: Instant) {
        if !self.is_leader() || self.grace_due {
            return;
        }
        // Two election timeouts: a node that missed one (a stall, a slow
        // disk) keeps its checks; one that is gone loses them in about two
        // seconds with the default tick.
        let live_for = self.config.tick * self.config.election_ticks as u32 * 2;
        let Some(moves) = self.check_owners.due(
            &self.state,
            self.config.id,
            self.raw.raft.term,
            &self.conf_state.voters,
            now,
            live_for,
            self.config.tick,
        ) else {
            return;
        };
        self.flush_proposals();
        let op = Op::Registry(crate::state::registry::RegistryOp::AssignChecks(moves));
        let index = self.propose(vec![op], vec![None]);
        self.check_owners.in_flight.proposed(index);
    }

    /// The leader's primitive timers: a new leader's grace first, then a
    /// Tick whenever a deadline has passed and no other write is about to
    /// fire it.
    fn maybe_propose_timers(&mut self) {
        if !self.is_leader() || self.timer_in_flight.is_some() {
            return;
        }
        if self.grace_due {
            self.grace_due = false;
            // The longest randomized election timeout: as long as a
            // leaderless gap that ends in this election can last.
            let ms = (self.config.tick * self.config.election_ticks as u32 * 2).as_millis() as u64;
            // Proposed before the gathered writes: nothing of this term
            // may fire a timer ahead of it.
            self.timer_in_flight = self.propose(vec![Op::Grace { ms }], vec![None]);
            return;
        }
        let due = self.state.next_timer().is_some_and(|at| at <= now_ms());
        if due && self.batch.is_empty() {
            self.timer_in_flight = self.propose(vec![Op::Tick], vec![None]);
        }
    }

    fn handle_ready(&mut self) {
        if !self.raw.has_ready() {
            return;
        }
        let mut rd = self.raw.ready();
        if !rd.messages().is_empty() {
            let messages = rd.take_messages();
            let now = Instant::now();
            for m in &messages {
                if m.get_msg_type() == MessageType::MsgHeartbeat {
                    self.heartbeats_sent.insert(m.to, now);
                }
            }
            self.transport.send(messages);
        }
        if !rd.snapshot().is_empty() {
            let snapshot = rd.snapshot().clone();
            if let Err(e) = self.install_snapshot(snapshot) {
                tracing::error!(error = %e, "cannot install the leader's snapshot; stopping");
                std::process::exit(70);
            }
        }
        self.persist_ready(&mut rd);
        // The Ready is handed back before anything below runs: applying,
        // a new role and served reads may propose (a leader routes the
        // requests that waited for it, a read flushes the writes queued
        // before it), and raft-rs requires that nothing is appended to its
        // log between `ready()` and `advance_append_async`. Its entries are
        // in the log store already, so handing it back loses nothing.
        let committed = rd.take_committed_entries();
        let soft_state = rd.ss().map(|ss| (ss.raft_state, ss.leader_id));
        let read_states = rd.take_read_states();
        self.raw.advance_append_async(rd);
        // Applying comes after the new entries went to the WAL thread, so
        // their fsync runs while this thread applies and answers: on a
        // follower the append's acknowledgement, and with it the commit, no
        // longer waits for the previous batch's apply.
        self.apply(committed);
        if let Some((role, leader)) = soft_state {
            self.on_soft_state(role, leader);
        }
        for rs in read_states {
            self.on_read_state(rs);
        }
        self.serve_reads();
    }

    /// Hands the Ready's new entries and hard state to the WAL thread, and
    /// keeps the messages that may leave only once they are durable.
    fn persist_ready(&mut self, rd: &mut Ready) {
        let entries = rd.take_entries();
        let hard_state = rd.hs().cloned();
        // raft-rs holds every message of a non-leader until its Ready is
        // durable. A heartbeat's answer claims nothing about this node's
        // log or vote (it tells the leader it is heard, and confirms its
        // term for a ReadIndex round; a vote or an append answer still
        // waits), so it leaves now, as etcd's raft sends it: held behind an
        // fsync that a large snapshot's writeback slows past an election
        // timeout, it cost a loaded leader its quorum.
        let (heartbeat_answers, persisted): (Vec<_>, Vec<_>) = rd
            .take_persisted_messages()
            .into_iter()
            .partition(|m| m.get_msg_type() == MessageType::MsgHeartbeatResponse);
        if !heartbeat_answers.is_empty() {
            self.transport.send(heartbeat_answers);
        }
        let must_persist = !entries.is_empty() || hard_state.is_some() || !rd.snapshot().is_empty();
        if must_persist || !persisted.is_empty() {
            // Only the commit index moved: nothing Raft's safety rests on.
            let deferrable = entries.is_empty()
                && rd.snapshot().is_empty()
                && persisted.is_empty()
                && hard_state.as_ref().is_some_and(|hs| {
                    let before = self.raw.store().hard_state();
                    hs.term == before.term && hs.vote == before.vote
                });
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
                snapshot: None,
                records,
                compact_upto: None,
                deferrable,
            });
            if !persisted.is_empty() {
                self.persisted_messages.push_back((number, persisted));
            }
        }
    }

    fn submit(&mut self, job: WalJob) {
        self.last_submitted = self.last_submitted.max(job.number);
        if let Some(wal) = &self.wal {
            wal.submit(job);
        }
    }

    fn on_persisted(&mut self, persisted: Persisted) {
        let number = persisted.number;
        self.raw.on_persist_ready(number);
        for (index, term, result) in persisted.snapshots {
            self.snapshot_saved(index, term, result);
        }
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
        if leader != raft::INVALID_ID && leader != self.status.leader() {
            self.status.metrics.leader_changes.inc();
        }
        self.status
            .role
            .store(Role::from_raft(role) as u8, Ordering::Relaxed);
        self.status.leader.store(leader, Ordering::Relaxed);
        if let Some(t) = &self.transfer {
            if leader == t.target {
                let t = self.transfer.take().expect("present");
                self.respond(t.responder, Ok(Ok(crate::state::Outcome::Ok)));
            }
        }
        if role == StateRole::Leader && !was_leader {
            tracing::info!(term = self.raw.raft.term, "became leader");
            self.next_expiry_check = Instant::now();
            self.grace_due = true;
            self.timer_in_flight = None;
            // The Grace goes first in the new term, before the requests
            // that waited for a leader are routed below: any other op
            // fires the timers that ran out while there was none.
            self.maybe_propose_timers();
        } else if role != StateRole::Leader && was_leader {
            tracing::info!(term = self.raw.raft.term, leader, "stepped down");
            self.expiry_in_flight = None;
            self.eviction.in_flight.stepped_down();
            self.check_owners.in_flight.stepped_down();
            self.timer_in_flight = None;
            self.grace_due = false;
            // Writes gathered but not proposed go to the next leader.
            let deadline = after(self.config.request_timeout);
            let ops = std::mem::take(&mut self.batch);
            let replies = std::mem::take(&mut self.batch_replies);
            for (op, reply) in ops.into_iter().zip(replies) {
                if let Some(reply) = reply {
                    self.waiting
                        .push_back((deadline, Waiting::Write(op, reply)));
                }
            }
        }
        if leader != raft::INVALID_ID {
            self.abandon_forwards_to_others(leader);
            self.route_waiting(Instant::now());
        }
    }

    /// A new leader is known: requests relayed to an earlier one will most
    /// likely never be answered (it died or was cut off). Their outcome is
    /// unknown; saying so now lets clients retry through the new leader
    /// instead of waiting out the deadline (a session's keepalive, say).
    fn abandon_forwards_to_others(&mut self, leader: u64) {
        let stale: Vec<u64> = self
            .forwards
            .iter()
            .filter(|(_, f)| f.leader != leader)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(f) = self.forwards.remove(&id) {
                for responder in f.responders {
                    self.respond(responder, Err(NodeError::OutcomeUnknown));
                }
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let Some(last) = entries.last().map(|e| e.index) else {
            return;
        };
        let started = Instant::now();
        for entry in entries {
            self.log_bytes_since_snapshot += entry.data.len() as u64;
            match entry.get_entry_type() {
                EntryType::EntryNormal => self.apply_normal(entry),
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&entry.data)
                        .expect("a committed ConfChange decodes");
                    let result = self.raw.apply_conf_change(&cc);
                    self.after_conf_change(
                        entry.index,
                        result,
                        &[(cc.node_id, cc.get_change_type())],
                        proposal_context(&entry, &cc.context),
                    );
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&entry.data)
                        .expect("a committed ConfChangeV2 decodes");
                    let result = self.raw.apply_conf_change(&cc);
                    let changes: Vec<(u64, ConfChangeType)> = cc
                        .get_changes()
                        .iter()
                        .map(|c| (c.node_id, c.get_change_type()))
                        .collect();
                    self.after_conf_change(
                        entry.index,
                        result,
                        &changes,
                        proposal_context(&entry, &cc.context),
                    );
                }
            }
        }
        self.raw.advance_apply_to(last);
        self.status
            .metrics
            .apply_duration
            .observe(started.elapsed().as_secs_f64());
        self.serve_reads();
        self.maybe_snapshot();
    }

    fn after_conf_change(
        &mut self,
        index: u64,
        result: raft::Result<ConfState>,
        changes: &[(u64, ConfChangeType)],
        context: &Bytes,
    ) {
        match result {
            Ok(cs) => {
                tracing::info!(voters = ?cs.voters, learners = ?cs.learners, index, "membership changed");
                self.conf_state = cs;
                let addr = String::from_utf8_lossy(context).into_owned();
                for &(id, kind) in changes {
                    match kind {
                        ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                            if !addr.is_empty() {
                                self.state.set_member(id, addr.clone());
                            }
                            if id != self.config.id {
                                let dial = self.peer_addr(id, &addr);
                                if !dial.is_empty() {
                                    self.transport.set_peer(id, Some(dial));
                                }
                            }
                        }
                        ConfChangeType::RemoveNode => {
                            self.state.remove_member(id);
                            self.state.forget_subscribers_of(id);
                            if id == self.config.id {
                                tracing::warn!("this node was removed from the cluster");
                            } else {
                                self.transport.set_peer(id, None);
                            }
                        }
                    }
                    self.member_change_applied(id, kind);
                }
            }
            Err(e) => tracing::warn!(error = %e, index, "membership change rejected"),
        }
        self.state.observe(index, 0);
        self.resolve_foreign(index);
    }

    /// Moves a pending AddMember/RemoveMember on when its entry applied.
    fn member_change_applied(&mut self, id: u64, kind: ConfChangeType) {
        let Some(change) = self.member_change.as_mut() else {
            return;
        };
        if change.id != id {
            return;
        }
        match (&change.stage, kind) {
            (MemberStage::AddingLearner, ConfChangeType::AddLearnerNode) => {
                change.stage = MemberStage::CatchingUp;
            }
            (MemberStage::Promoting, ConfChangeType::AddNode)
            | (MemberStage::Removing, ConfChangeType::RemoveNode) => {
                let change = self.member_change.take().expect("present");
                self.respond(change.responder, Ok(Ok(crate::state::Outcome::Ok)));
            }
            _ => {}
        }
    }

    /// This node lost acknowledged entries: say how to bring it back,
    /// mark the data directory so it never starts as that member again,
    /// and stop.
    fn lost_data(&mut self, leader: u64, acknowledged: u64, last: u64) {
        let text = super::node::lost_data_text(self.config.id, leader, acknowledged, last);
        tracing::error!("{text}");
        if let Err(e) = std::fs::write(self.config.data_dir.join(super::node::LOST_MARKER), &text) {
            tracing::error!(error = %e, "could not mark the data directory as lost");
        }
        self.fail_everything(|| NodeError::ShuttingDown);
        std::process::exit(78);
    }

    fn apply_normal(&mut self, entry: Entry) {
        let index = entry.index;
        let ours = match self.in_flight.remove(&index) {
            Some(f) if f.term == entry.term => Some(f),
            Some(f) => {
                for reply in f.replies.into_iter().flatten() {
                    self.respond(reply, Err(NodeError::ProposalDropped));
                }
                None
            }
            None => None,
        };
        if self.expiry_in_flight == Some(index) {
            self.expiry_in_flight = None;
        }
        self.eviction.in_flight.applied(index);
        self.check_owners.in_flight.applied(index);
        if self.timer_in_flight == Some(index) {
            self.timer_in_flight = None;
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
            if self.state.acl().generation != self.status.acl_generation() {
                // In force on this node before the writer hears OK.
                self.status.set_acl(self.state.acl());
            }
            if let Some(reply) = reply {
                self.respond(reply, Ok(result));
            }
            let wakeups = self.state.take_wakeups();
            if !wakeups.is_empty() {
                self.deliver(wakeups);
            }
            if matches!(op, Op::Advertise { .. }) {
                self.publish_client_addrs();
            }
            let deliveries = self.state.take_deliveries();
            if !deliveries.is_empty() {
                self.deliver_messages(deliveries);
            }
        }
    }

    /// An entry that is not ours landed at `index`: a proposal waiting
    /// there was lost.
    fn resolve_foreign(&mut self, index: u64) {
        if let Some(f) = self.in_flight.remove(&index) {
            for reply in f.replies.into_iter().flatten() {
                self.respond(reply, Err(NodeError::ProposalDropped));
            }
        }
    }

    /// Installs a leader's snapshot. Its file is saved by the WAL thread
    /// ahead of this Ready's own persistence, so raft learns it is persisted
    /// (and the follower answers the leader) only once the file is durable.
    fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), NodeError> {
        let meta = snapshot.get_metadata().clone();
        // Decoded from its file before raft saw the message, so the switch
        // is all this node's clients wait for. A snapshot that came inline
        // (from a node that sends the data in the message) is decoded here.
        let (mut state, file) = match self.received_snapshot.take() {
            Some((file, state)) if file.index == meta.index && file.term == meta.term => {
                (*state, SnapshotJob::Install(file))
            }
            other => {
                if let Some((stale, _)) = other {
                    stale.discard();
                }
                let state = State::decode_snapshot(&snapshot.data).map_err(|e| {
                    NodeError::Recovery(format!("leader snapshot at {}: {e}", meta.index))
                })?;
                (state, SnapshotJob::Save(snapshot.clone()))
            }
        };
        state.set_script_host(self.state.script_host().clone());
        let mut snapshot = snapshot;
        // The log store keeps the metadata; the file is on disk.
        snapshot.data = Bytes::new();
        // Ours, if one is being encoded or written, describes a state that
        // is gone; the leader's covers more.
        if self
            .own_snapshot
            .as_ref()
            .is_some_and(OwnSnapshot::abandonable)
        {
            let own = self.own_snapshot.take().expect("checked above");
            for waiter in own.waiters {
                let _ = waiter.send(Err(NodeError::Rejected(format!(
                    "the leader's snapshot at {} replaced this node's state first",
                    meta.index
                ))));
            }
        }
        self.state = state;
        self.eviction.state_replaced(&mut self.state);
        self.state.observe(meta.index, 0);
        self.publish_client_addrs();
        self.status.set_acl(self.state.acl());
        self.conf_state = meta.get_conf_state().clone();
        let members: Vec<(u64, String)> = self
            .state
            .members()
            .iter()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect();
        for (id, addr) in members {
            if id != self.config.id {
                let dial = self.peer_addr(id, &addr);
                self.transport.set_peer(id, Some(dial));
            }
        }
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
                    self.respond(reply, Err(NodeError::OutcomeUnknown));
                }
            }
        }
        let hs = self.raw.store().hard_state().clone();
        self.submit(WalJob {
            number: self.last_submitted,
            snapshot: Some(file),
            records: vec![
                Record::SnapshotMark {
                    index: meta.index,
                    term: meta.term,
                },
                Record::HardState(hs),
            ],
            compact_upto: Some(meta.index),
            deferrable: false,
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
        if self.own_snapshot.is_some() {
            return;
        }
        // The founding membership is only in each founder's bootstrap
        // snapshot (index 0), not in the log. A member added later must
        // therefore start from a snapshot, never from entry 1, or it would
        // apply the membership changes without the voters they change (and
        // count itself the only voter). Leaving index 0 behind as soon as
        // an entry applied makes every leader send new members a snapshot.
        if self.raw.store().snapshot_index() == 0 && self.state.applied_index() > 0 {
            self.take_snapshot(None);
            return;
        }
        // For the same reason a member must be named in the snapshot it
        // starts from: raft-rs ignores one whose ConfState leaves it out
        // ("not in the ConfState"). A learner added since the last
        // snapshot would otherwise be sent that one again and again until
        // enough entries made a new one (never, in an idle cluster).
        let snap = self.raw.store().conf_state();
        let named = |id: &u64| {
            snap.voters.contains(id)
                || snap.learners.contains(id)
                || snap.voters_outgoing.contains(id)
        };
        let unnamed = self
            .conf_state
            .voters
            .iter()
            .chain(&self.conf_state.learners)
            .any(|id| !named(id));
        if unnamed && self.state.applied_index() > self.raw.store().snapshot_index() {
            self.take_snapshot(None);
            return;
        }
        let entries = self.raw.store().len() as u64;
        if entries >= self.config.snapshot_entries
            || self.log_bytes_since_snapshot >= self.config.snapshot_log_bytes
        {
            self.take_snapshot(None);
        }
    }

    /// Snapshots the applied state and hands the file to the WAL thread; the
    /// in-memory log and the WAL behind it are compacted once the file is
    /// durable ([`Driver::snapshot_saved`]). `waiter` (RAFT.SNAPSHOT) gets
    /// the index then; without one the snapshot is automatic.
    fn take_snapshot(&mut self, waiter: Option<oneshot::Sender<Result<u64, NodeError>>>) {
        if let Some(own) = &mut self.own_snapshot {
            // One is being saved already: it answers this caller too.
            own.waiters.extend(waiter);
            return;
        }
        let index = self.state.applied_index();
        if index <= self.raw.store().snapshot_index() {
            if let Some(waiter) = waiter {
                let _ = waiter.send(Ok(self.raw.store().snapshot_index()));
            }
            return;
        }
        let term = self
            .raw
            .store()
            .term_at(index)
            .expect("an applied entry is in the log store");
        let inbox = self.inbox_tx.clone();
        let mut own = OwnSnapshot::begin(
            &mut self.state,
            &self.snaps,
            (index, term),
            self.conf_state.clone(),
            move |result| {
                if let Some(inbox) = inbox.upgrade() {
                    let _ = inbox.send(Inbox::SnapshotWritten {
                        index,
                        term,
                        result,
                    });
                }
            },
        );
        own.automatic = waiter.is_none();
        own.waiters.extend(waiter);
        self.log_bytes_since_snapshot = 0;
        self.own_snapshot = Some(own);
    }

    /// The snapshot thread wrote (or failed to write) the file of our
    /// snapshot at (index, term): the WAL thread moves it into place.
    fn snapshot_written(&mut self, index: u64, term: u64, result: Result<Written, StorageError>) {
        let ours = self
            .own_snapshot
            .as_ref()
            .is_some_and(|o| o.is(index, term));
        match result {
            Ok(written) if ours => {
                let own = self.own_snapshot.as_mut().expect("checked above");
                own.written(written.file.bytes);
                self.submit(WalJob {
                    number: self.last_submitted,
                    snapshot: Some(SnapshotJob::Install(written.file)),
                    records: vec![Record::SnapshotMark { index, term }],
                    compact_upto: Some(index),
                    deferrable: false,
                });
            }
            // Abandoned for a leader's snapshot meanwhile.
            Ok(written) => written.file.discard(),
            Err(e) if ours => {
                self.state.abort_snapshot();
                self.snapshot_saved(index, term, Err(e));
            }
            Err(e) => tracing::warn!(error = %e, index, "an abandoned snapshot failed"),
        }
    }

    /// The WAL thread saved (or failed to save) the snapshot file at
    /// (index, term).
    fn snapshot_saved(&mut self, index: u64, term: u64, result: Result<(), StorageError>) {
        let ours = self
            .own_snapshot
            .as_ref()
            .is_some_and(|o| o.is(index, term));
        if !ours {
            // A leader's snapshot this node installed.
            if let Err(e) = result {
                tracing::error!(error = %e, index, "cannot save the leader's snapshot; stopping");
                std::process::exit(70);
            }
            return;
        }
        let own = self.own_snapshot.take().expect("checked above");
        match result {
            Ok(()) => {
                let Stage::Saving(snapshot) = own.stage else {
                    unreachable!("only a snapshot being saved is reported saved");
                };
                let bytes = own.bytes;
                let took = own.started.elapsed();
                self.status
                    .metrics
                    .snapshot_duration
                    .observe(took.as_secs_f64());
                self.status.metrics.latency.record("snapshot", took);
                self.raw.mut_store().compact_to(snapshot);
                self.status.snapshots_taken.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    index,
                    term,
                    bytes,
                    took_ms = own.started.elapsed().as_millis() as u64,
                    "snapshot taken"
                );
                for waiter in own.waiters {
                    let _ = waiter.send(Ok(index));
                }
                // A membership change may have applied while this one was
                // being saved: it may need a newer one (see maybe_snapshot).
                self.maybe_snapshot();
            }
            Err(e) if own.automatic => {
                tracing::error!(error = %e, "snapshot failed; stopping");
                std::process::exit(70);
            }
            Err(e) => {
                tracing::error!(error = %e, index, "snapshot failed");
                let text = e.to_string();
                let mut error = Some(NodeError::Storage(e));
                for waiter in own.waiters {
                    let e = error
                        .take()
                        .unwrap_or_else(|| NodeError::Rejected(text.clone()));
                    let _ = waiter.send(Err(e));
                }
            }
        }
    }

    fn info(&self) -> RaftInfo {
        let status = &self.status;
        let mut peers = Vec::new();
        if self.is_leader() {
            for (id, progress) in self.raw.raft.prs().iter() {
                if *id == self.config.id {
                    continue;
                }
                let learned = self.state.members().get(id).cloned().unwrap_or_default();
                peers.push(PeerProgress {
                    id: *id,
                    voter: self.conf_state.voters.contains(id),
                    matched: progress.matched,
                    next: progress.next_idx,
                    state: format!("{:?}", progress.state),
                    recent_active: progress.recent_active,
                    addr: self.peer_addr(*id, &learned),
                });
            }
            peers.sort_by_key(|p| p.id);
        }
        RaftInfo {
            id: self.config.id,
            role: status.role().as_str(),
            term: self.raw.raft.term,
            leader: self.raw.raft.leader_id,
            commit: self.raw.raft.raft_log.committed,
            applied: self.state.applied_index(),
            last_index: self.raw.raft.raft_log.last_index(),
            snapshot_index: self.raw.store().snapshot_index(),
            voters: self.conf_state.voters.clone(),
            learners: self.conf_state.learners.clone(),
            peers,
        }
    }

    fn publish_client_addrs(&self) {
        self.status
            .set_client_addrs(self.state.client_addrs().clone());
    }

    fn publish_status(&self) {
        let s = &self.status;
        s.blocked.store(self.held.len() as u64, Ordering::Relaxed);
        s.subscribers
            .store(self.subscribers.len() as u64, Ordering::Relaxed);
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
        s.set_databases(&self.state);
        s.dataset_bytes
            .store(self.state.dataset_bytes(), Ordering::Relaxed);
        s.evicted_keys
            .store(self.state.evicted_keys(), Ordering::Relaxed);
        s.cached_scripts
            .store(self.state.scripts().len() as u64, Ordering::Relaxed);
        s.leader.store(self.raw.raft.leader_id, Ordering::Relaxed);
        s.role.store(
            Role::from_raft(self.raw.raft.state) as u8,
            Ordering::Relaxed,
        );
        s.voters
            .store(self.conf_state.voters.len() as u64, Ordering::Relaxed);
        let proposed: usize = self.in_flight.values().map(|f| f.replies.len()).sum();
        let relayed: usize = self.forwards.values().map(|f| f.responders.len()).sum();
        let pending =
            proposed + self.batch.len() + self.waiting.len() + relayed + self.relays.len();
        s.pending.store(pending as u64, Ordering::Relaxed);
    }

    fn fail_everything(&mut self, err: impl Fn() -> NodeError) {
        let mut responders: Vec<Responder> = std::mem::take(&mut self.batch_replies)
            .into_iter()
            .flatten()
            .collect();
        self.batch.clear();
        for (_, f) in std::mem::take(&mut self.in_flight) {
            responders.extend(f.replies.into_iter().flatten());
        }
        responders.extend(
            std::mem::take(&mut self.waiting)
                .into_iter()
                .map(|(_, w)| w.responder()),
        );
        responders.extend(
            std::mem::take(&mut self.relays)
                .into_iter()
                .map(|(_, r, _)| r),
        );
        responders.extend(
            std::mem::take(&mut self.forwards)
                .into_values()
                .flat_map(|f| f.responders),
        );
        let round = self.read_round.take().map(|r| r.reads).unwrap_or_default();
        responders.extend(
            round
                .into_iter()
                .chain(std::mem::take(&mut self.read_queue))
                .map(|r| r.reply),
        );
        responders.extend(
            std::mem::take(&mut self.readable)
                .into_iter()
                .map(|(_, r)| r.reply),
        );
        if let Some(c) = self.member_change.take() {
            responders.push(c.responder);
        }
        if let Some(t) = self.transfer.take() {
            responders.push(t.responder);
        }
        responders.extend(
            std::mem::take(&mut self.held)
                .into_values()
                .map(|h| h.responder),
        );
        for r in responders {
            self.respond(r, Err(err()));
        }
    }

    /// Shutdown: finish what is already proposed as far as one more round of
    /// persistence allows, answer the rest, flush the WAL.
    async fn stop(&mut self) {
        self.flush_proposals();
        self.handle_ready();
        self.fail_everything(|| NodeError::ShuttingDown);
        if let Some(wal) = self.wal.take() {
            // Joining the WAL thread waits for its last fsync: not on the
            // runtime's thread.
            let flushed = tokio::task::spawn_blocking(move || wal.shutdown()).await;
            match flushed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "WAL flush at shutdown failed"),
                Err(e) => tracing::error!(error = %e, "WAL flush at shutdown failed"),
            }
        }
        tracing::info!(applied = self.state.applied_index(), "raft driver stopped");
    }
}

/// The peer address a membership change was proposed with. raft-rs's
/// `propose_conf_change(context, cc)` puts `context` on the log entry, not
/// in the change's own context field, which stays empty; entries of other
/// origins may carry it there.
fn proposal_context<'a>(entry: &'a Entry, cc_context: &'a Bytes) -> &'a Bytes {
    if entry.context.is_empty() {
        cc_context
    } else {
        &entry.context
    }
}

/// Splits an expiry or eviction of many keys (in any database) in two:
/// it must never be refused as too big for one entry, or the same keys
/// would be tried forever. Returns the second half; None for any other op.
fn split_deletion(op: &mut Op) -> Option<Op> {
    match op {
        Op::ExpireKeys(keys) if keys.len() > 1 => {
            Some(Op::ExpireKeys(keys.split_off(keys.len() / 2)))
        }
        Op::Evict(keys) if keys.len() > 1 => Some(Op::Evict(keys.split_off(keys.len() / 2))),
        Op::InDb { db, op } => split_deletion(op).map(|rest| Op::in_db(*db, rest)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::WritingScripts;

    #[test]
    fn a_script_that_wrote_every_time_skips_its_read_try_but_every_eighth_call() {
        let mut scripts = WritingScripts::default();
        assert!(!scripts.likely("a"), "unknown scripts are tried as reads");
        for _ in 0..WritingScripts::TRUST_AFTER {
            assert!(!scripts.likely("a"));
            scripts.record("a", true);
        }
        let skipped: Vec<bool> = (0..16).map(|_| scripts.likely("a")).collect();
        let tried = skipped.iter().filter(|skip| !**skip).count();
        assert_eq!(tried, 2, "{skipped:?}");
        assert!(!skipped[7] && !skipped[15]);
        // A try that wrote nothing forgets the script; others are apart.
        scripts.record("a", false);
        assert!(!scripts.likely("a"));
        // Writing now and then (a lock released by its owner between
        // releases by others) never stops the tries.
        for _ in 0..10 {
            scripts.record("b", true);
            assert!(!scripts.likely("b"));
            scripts.record("b", false);
        }
    }

    #[test]
    fn the_memory_of_writing_scripts_is_bounded() {
        let mut scripts = WritingScripts::default();
        for i in 0..=WritingScripts::CAPACITY {
            for _ in 0..WritingScripts::TRUST_AFTER {
                scripts.record(&format!("{i:040}"), true);
            }
        }
        assert!(scripts.scripts.len() <= WritingScripts::CAPACITY);
        assert!(scripts.likely(&format!("{:040}", WritingScripts::CAPACITY)));
    }
}
