//! One client connection: read, parse, submit, answer in order.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{oneshot, watch};

use super::transaction::{self, Control, Route};
use super::{local, ClientInfo, Shared};
use crate::command::{self, CommandError, Flag, ReplyFn, Request};
use crate::raft::backlog::Backlog;
use crate::raft::{Answer, BatchReceiver, NodeError, ReadMode, Role, Submit};
use crate::resp::{encode, Limits, Protocol, Reply, RequestParser};
use crate::state::scripts::{sha1hex, ScriptOp, ScriptQuery};
use crate::state::{Op, Query};

/// Requests submitted before their answers are awaited: bounds the memory
/// one pipelining client can pin.
const MAX_PIPELINE: usize = 16 * 1024;

/// What one read asks the socket for, at first and at most. A client that
/// keeps its socket full (a deep pipeline: `redis-cli --pipe`, a bulk
/// load) fills every read, and each read's requests make one round (one
/// batch into the log, one wait for its commit): 16 KiB is about 130 SETs
/// of 100 bytes per round, and the rounds' latency then sets the load
/// rate. Reads that come back full double the next read, up to
/// [`READ_MAX`]; reads that come back mostly empty halve it again, so an
/// ordinary client keeps a small buffer.
const READ_MIN: usize = 16 * 1024;
const READ_MAX: usize = 1024 * 1024;

/// While a blocking command waits, bytes the client sends meanwhile are
/// buffered up to this much (then the socket is only watched for EOF once
/// the buffer drains).
const BLOCKED_READ_AHEAD: usize = 1024 * 1024;

/// The per-connection state that commands can change.
pub(super) struct Conn {
    pub id: u64,
    pub protocol: Protocol,
    pub read_mode: ReadMode,
    /// Set by QUIT: close once the replies so far are written.
    pub closing: bool,
    /// Channels, patterns and shard channels listened to, once the
    /// connection has subscribed.
    pub subs: Option<super::pubsub::Subscriptions>,
    /// The commands queued since MULTI.
    pub tx: Option<transaction::Queue>,
    pub watches: transaction::Watches,
    /// CLIENT REPLY: whether replies are written.
    pub replies: Replies,
    /// The ACL user, and whether the connection authenticated.
    pub principal: super::acl::Principal,
    /// The database SELECTed: every op and read is wrapped for it.
    pub db: u32,
    /// MONITOR's feed, once the connection asked for it.
    pub monitor: Option<super::monitor::Feed>,
}

/// CLIENT REPLY's modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Replies {
    On,
    Off,
    /// Silences the replies of this many more commands, then turns on.
    Skip(u8),
}

impl Replies {
    /// Whether the reply of the command just dispatched is silenced.
    fn silence_next(&mut self) -> bool {
        match *self {
            Replies::On => false,
            Replies::Off => true,
            Replies::Skip(n) => {
                *self = if n <= 1 {
                    Replies::On
                } else {
                    Replies::Skip(n - 1)
                };
                true
            }
        }
    }
}

/// A reply, or the promise of one.
enum Pending {
    Ready(Reply),
    Waiting {
        rx: oneshot::Receiver<Answer>,
        name: &'static str,
        reply: ReplyFn,
    },
    /// The next answer of `batches[batch]` (see [`Submissions`]).
    Submitted {
        batch: usize,
        name: &'static str,
        reply: ReplyFn,
    },
    Later(local::LaterReply),
    /// WATCH: records the fingerprints its read returns.
    Watch {
        batch: usize,
        keys: Vec<Bytes>,
        cell: transaction::WatchCell,
    },
    /// EXEC: renders each result of the transaction's entry.
    Exec {
        batch: usize,
        replies: Vec<transaction::TxReply>,
        /// Transactions wrapped around it for watches in other databases.
        nesting: usize,
    },
    /// CLIENT REPLY OFF or SKIP: resolved in order, never written.
    Silent(Box<Pending>),
}

fn reply_to(answer: Answer, name: &'static str, reply: ReplyFn) -> Reply {
    match answer {
        Ok(result) => reply(name, result),
        Err(e) => Reply::error(e.to_string()),
    }
}

impl Pending {
    /// The driver batch whose answer this waits for, if any.
    fn batch(&self) -> Option<usize> {
        match self {
            Pending::Submitted { batch, .. }
            | Pending::Watch { batch, .. }
            | Pending::Exec { batch, .. } => Some(*batch),
            Pending::Silent(inner) => inner.batch(),
            Pending::Ready(_) | Pending::Waiting { .. } | Pending::Later(_) => None,
        }
    }

    /// Whether resolving this may take any time, when `before` is the
    /// request pending ahead of it: a ready reply does not, nor does a
    /// later answer of a driver batch an earlier request already waited
    /// for (the driver answers a batch whole).
    fn may_wait(&self, before: Option<&Pending>) -> bool {
        match self {
            Pending::Ready(_) => false,
            Pending::Silent(inner) => inner.may_wait(before),
            Pending::Waiting { .. } | Pending::Later(_) => true,
            _ => before.and_then(Pending::batch) != self.batch(),
        }
    }

    async fn resolve(self, submissions: &mut Submissions) -> Reply {
        match self {
            Pending::Ready(reply) => reply,
            Pending::Waiting { rx, name, reply } => {
                reply_to(crate::raft::answer(rx).await, name, reply)
            }
            Pending::Submitted { batch, name, reply } => {
                reply_to(submissions.next_answer(batch).await, name, reply)
            }
            Pending::Later(future) => future.await,
            Pending::Watch { batch, keys, cell } => {
                transaction::watched(submissions.next_answer(batch).await, keys, &cell)
            }
            Pending::Exec {
                batch,
                replies,
                nesting,
            } => {
                let answer = transaction::unnest(submissions.next_answer(batch).await, nesting);
                transaction::executed(answer, replies).await
            }
            Pending::Silent(inner) => {
                Box::pin(inner.resolve(submissions)).await;
                Reply::Frames(Vec::new())
            }
        }
    }
}

/// The reads and writes of a connection on their way to the driver. Requests
/// parsed from one read of the socket are handed over together, as one batch
/// (one inbox message, one wake-up when all are answered), just before the
/// connection waits for answers or runs a local command (which may talk to
/// the driver itself and must not overtake them).
#[derive(Default)]
struct Submissions {
    queued: Vec<Submit>,
    batches: Vec<Batch>,
}

enum Batch {
    One(oneshot::Receiver<Answer>),
    Many(BatchReceiver),
    Answered(std::vec::IntoIter<Answer>),
}

impl Submissions {
    /// Queues a request; returns the batch it will belong to.
    fn queue(&mut self, request: Submit) -> usize {
        self.queued.push(request);
        self.batches.len()
    }

    /// Hands the queued requests to the driver.
    fn flush(&mut self, shared: &Shared) {
        let batch = match self.queued.len() {
            0 => return,
            1 => {
                let rx = match self.queued.pop().expect("one request") {
                    Submit::Write(op) => shared.node.write(op),
                    Submit::Read(query, mode) => shared.node.read(query, mode),
                };
                Batch::One(rx)
            }
            _ => Batch::Many(shared.node.submit_batch(std::mem::take(&mut self.queued))),
        };
        self.batches.push(batch);
    }

    /// The next answer of batch `index`: answers are taken in submission
    /// order, as pending replies are resolved.
    async fn next_answer(&mut self, index: usize) -> Answer {
        let batch = &mut self.batches[index];
        match batch {
            Batch::One(rx) => rx.await.unwrap_or(Err(NodeError::ShuttingDown)),
            Batch::Many(_) => {
                let Batch::Many(receiver) =
                    std::mem::replace(batch, Batch::Answered(Vec::new().into_iter()))
                else {
                    unreachable!("matched above")
                };
                let mut answers = receiver.answers().await.into_iter();
                let answer = answers.next();
                *batch = Batch::Answered(answers);
                answer.expect("a batch answers every request")
            }
            Batch::Answered(answers) => answers.next().expect("a batch answers every request"),
        }
    }
}

/// Tells a client it cannot be served, then hangs up.
pub(super) async fn reject<S: AsyncWrite + Unpin>(mut socket: S, text: &str) {
    let mut out = BytesMut::new();
    encode(&Reply::error(text), Protocol::Resp2, &mut out);
    let _ = socket.write_all(&out).await;
}

/// Serves one client over `socket` (TCP, or TLS on TCP); `laddr` is the
/// local address it was accepted on.
pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    peer: SocketAddr,
    laddr: String,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let id = shared.next_client_id();
    let now = Instant::now();
    let kill = Arc::new(tokio::sync::Notify::new());
    let mem = Arc::new(super::ClientMemory::default());
    shared.clients.lock().expect("clients lock").insert(
        id,
        ClientInfo {
            id,
            addr: peer.to_string(),
            laddr,
            name: String::new(),
            lib_name: String::new(),
            lib_ver: String::new(),
            resp: 2,
            created: now,
            last_active: now,
            last_command: "NULL".into(),
            blocked_on: None,
            user: crate::state::acl::DEFAULT_USER.to_owned(),
            kill: kill.clone(),
            mem: mem.clone(),
            no_evict: false,
            db: 0,
        },
    );
    let limits = Limits {
        max_bulk_len: shared.param_u64("proto-max-bulk-len", shared.config.proto_max_bulk_len)
            as usize,
        ..Limits::default()
    };
    let mut parser = RequestParser::new(limits);
    let mut conn = Conn {
        id,
        protocol: Protocol::Resp2,
        read_mode: ReadMode::default(),
        replies: Replies::On,
        closing: false,
        subs: None,
        tx: None,
        watches: transaction::Watches::default(),
        principal: super::acl::Principal::new(&shared),
        db: 0,
        monitor: None,
    };
    let peer_addr = peer.to_string();
    let mut rbuf = BytesMut::with_capacity(READ_MIN);
    let mut read_size = READ_MIN;
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut pending: Vec<(Protocol, Pending, Called)> = Vec::new();
    // The pending requests' arguments while the slow log is on, one after
    // the other: kept without an allocation per request.
    let mut pending_args: Vec<Bytes> = Vec::new();
    // One argument vector for every request (swapped with the parser's).
    let mut argv: Vec<Bytes> = Vec::new();
    let mut submissions = Submissions::default();
    let mut last_command: &'static str = "NULL";
    // When the client last completed a request (`timeout`).
    let mut last_request = Instant::now();
    // A request CLIENT PAUSE holds back: it runs first once the pause ends.
    let mut paused_request: Option<Vec<Bytes>> = None;
    'connection: loop {
        if paused_request.is_some() {
            // Watch the socket meanwhile, as a blocked client does.
            let wait = shared.pause.wait(true);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    read = socket.read_buf(&mut rbuf), if rbuf.len() < BLOCKED_READ_AHEAD => {
                        if matches!(read, Ok(0) | Err(_)) {
                            break 'connection;
                        }
                    }
                    _ = shutdown.changed() => break 'connection,
                    _ = kill.notified() => break 'connection,
                }
            }
        }
        // What arrived counts before it is parsed: a client whose request
        // is growing past `maxmemory-clients` is closed before it runs.
        let held = (rbuf.len() + parser.held_bytes()) as u64;
        if held > super::CLIENT_CHECK_BYTES {
            mem.query.store(held, Ordering::Relaxed);
            mem.query_free
                .store((rbuf.capacity() - rbuf.len()) as u64, Ordering::Relaxed);
            if super::enforce_clients_memory(&shared, Some(id)) {
                break 'connection;
            }
        }
        let mut more_buffered = false;
        // Reads submitted since answers were last collected: a write must
        // not be submitted behind them, or they could observe it.
        let mut unanswered_reads = false;
        // Writes likewise: on a follower a relayed write is not in the local
        // log yet, so a read behind it waits for its answer (after which the
        // read's ReadIndex round covers it). On the leader the driver orders
        // them itself.
        let mut unanswered_writes = false;
        // A read-first EVALSHA may become a write when it is served, after
        // requests behind it were: nothing behind it goes out until it is
        // answered.
        let mut unanswered_read_first = false;
        let mut blocked = false;
        loop {
            if pending.len() >= MAX_PIPELINE {
                more_buffered = true;
                break;
            }
            parser.set_unauthenticated(!conn.principal.authenticated);
            let next = match paused_request.take() {
                Some(request) => {
                    argv = request;
                    Ok(true)
                }
                None => parser.next_request_into(&mut rbuf, &mut argv),
            };
            match next {
                Ok(true) => {
                    // Authentication and permissions, before the command
                    // is proposed, relayed or answered.
                    let checked = match super::acl::gate(&mut conn, &argv, &shared) {
                        Ok(spec) => spec,
                        Err(refusal) => {
                            let name = super::acl::resolve(&argv).map_or("", |s| s.name);
                            pending.push((
                                conn.protocol,
                                Pending::Ready(refusal),
                                Called::rejected(name),
                            ));
                            if conn.closing {
                                break;
                            }
                            continue;
                        }
                    };
                    let route = if listening(&conn) {
                        Route::Normal
                    } else {
                        transaction::route(&conn, &argv)
                    };
                    // A script is tried as a read only when nothing is
                    // pipelined behind it: what follows a read-first script
                    // waits for its answer, which would cost a pipeline of
                    // scripts that write one log round each instead of one
                    // for all.
                    let pipelined = !rbuf.is_empty();
                    let request = match route {
                        // The gate already found a restricted user's spec.
                        Route::Normal => Some(
                            match checked {
                                Some(spec) => command::parse_resolved(spec, &argv),
                                None => command::prepare(&argv),
                            }
                            .map(|request| {
                                // A restricted user's script goes through the
                                // log, where its calls are checked.
                                if pipelined || conn.principal.restricted() {
                                    request
                                } else {
                                    read_first(request)
                                }
                            }),
                        ),
                        Route::Queue | Route::Control(_) => None,
                    };
                    // What is about to run: the request's command, or the
                    // transaction command (and, for MONITOR, what MULTI
                    // queues).
                    let monitoring = shared.monitor.active();
                    let running = match (&route, &request) {
                        (
                            Route::Normal,
                            Some(Ok(
                                Request::Write(_, spec, _)
                                | Request::Read(_, spec, _)
                                | Request::Local(spec),
                            )),
                        ) => Some(*spec),
                        (Route::Control(_), _) => lookup_resolved(&argv),
                        (Route::Queue, _) if monitoring => lookup_resolved(&argv),
                        _ => None,
                    };
                    // CLIENT PAUSE holds back what it covers, after the
                    // replies of what came before (an arity error is
                    // answered at once, and what MULTI queues waits for
                    // its EXEC).
                    let paused = match (&route, running) {
                        (Route::Normal, Some(spec)) => shared.pause.holds(spec, &argv, &[]),
                        (Route::Control(_), Some(spec)) => {
                            shared.pause.holds(spec, &argv, transaction::queued(&conn))
                        }
                        _ => false,
                    };
                    if paused {
                        paused_request = Some(std::mem::take(&mut argv));
                        more_buffered = true;
                        break;
                    }
                    if let Some(spec) = running.filter(|_| monitoring) {
                        shared.monitor.feed(spec, conn.db, &peer_addr, &argv);
                    }
                    // A write too big for one log entry is refused here,
                    // before it is proposed or relayed; so is one that may
                    // grow a dataset over `maxmemory` with nothing to evict.
                    let request = match request {
                        Some(Ok(Request::Write(_, spec, _))) => {
                            let bytes: u64 = argv.iter().map(|a| a.len() as u64).sum();
                            let limit = shared.config.max_entry_bytes;
                            if bytes > limit {
                                Some(Err(CommandError::EntryTooLarge { bytes, limit }))
                            } else if command::denied_when_out_of_memory(spec)
                                && shared.node.status().out_of_memory()
                            {
                                Some(Err(CommandError::OutOfMemory))
                            } else {
                                request
                            }
                        }
                        Some(Ok(Request::Read(ref query, spec, _)))
                            if query.may_write()
                                && command::denied_when_out_of_memory(spec)
                                && shared.node.status().out_of_memory() =>
                        {
                            Some(Err(CommandError::OutOfMemory))
                        }
                        other => other,
                    };
                    let is_read_first = matches!(
                        &request,
                        Some(Ok(Request::Read(query, ..))) if query.may_write()
                    );
                    // A read-first request waits for reads before it as a
                    // write does, and for writes before it as a read does.
                    let is_write = matches!(request, Some(Ok(Request::Write(..))))
                        || matches!(route, Route::Control("exec"))
                        || is_read_first;
                    let mut request = request;
                    let blocks = matches!(&request, Some(Ok(Request::Write(_, spec, _))) if spec.has(Flag::Blocking));
                    if let Some(Ok(Request::Write(op, ..))) = request.as_mut().filter(|_| blocks) {
                        // Named here, so CLIENT UNBLOCK can end the wait.
                        if let Some(ticket) = op.ticket_mut() {
                            *ticket = shared.node.status().new_ticket();
                            let ticket = *ticket;
                            local::set_client(&shared, id, |c| c.blocked_on = Some(ticket));
                        }
                    }
                    let is_read = matches!(request, Some(Ok(Request::Read(..))))
                        || matches!(route, Route::Control("watch"));
                    let follower = shared.node.status().role() != Role::Leader;
                    // EXEC needs what its WATCHes read (a WATCH is a read, so
                    // the first rule already waits for it).
                    let exec_waits = matches!(route, Route::Control("exec"))
                        && transaction::watch_unresolved(&conn);
                    if exec_waits
                        || (unanswered_reads && is_write)
                        || (unanswered_writes && is_read && follower)
                        || (unanswered_read_first && (is_read || is_write))
                    {
                        resolve_into(
                            &mut pending,
                            &mut pending_args,
                            &mut submissions,
                            &mut wbuf,
                            &shared,
                            conn.principal.fence(),
                            conn.id,
                        )
                        .await;
                        unanswered_reads = false;
                        unanswered_writes = false;
                        unanswered_read_first = false;
                    }
                    unanswered_reads |= is_read;
                    unanswered_writes |= is_write;
                    unanswered_read_first |= is_read_first;
                    // Wrong arity is refused before the command runs, as
                    // Redis counts it (rejected_calls); other argument
                    // errors are failed calls.
                    let refused = matches!(
                        &request,
                        Some(Err(CommandError::WrongArity(_)
                            | CommandError::EntryTooLarge { .. }
                            | CommandError::OutOfMemory))
                    );
                    // CLIENT LIST names a command while it runs: the
                    // local ones (CLIENT LIST itself) and those that wait.
                    if let Some(Ok(Request::Local(spec))) = &request {
                        touch(&shared, id, spec.name);
                    } else if let Some(Ok(Request::Write(_, spec, _))) = &request {
                        if blocks {
                            touch(&shared, id, spec.name);
                        }
                    }
                    let (item, name) = match (route, request) {
                        (Route::Queue, _) => (
                            Pending::Ready(transaction::queue(
                                &mut conn,
                                &argv,
                                shared.node.status().out_of_memory(),
                            )),
                            "multi",
                        ),
                        (Route::Control(name), _) => (
                            control(&mut conn, name, &argv, &shared, &mut submissions),
                            name,
                        ),
                        (Route::Normal, Some(request)) => {
                            dispatch(&mut conn, request, &argv, &shared, &mut submissions)
                        }
                        (Route::Normal, None) => unreachable!("a normal route is prepared"),
                    };
                    last_command = name;
                    // Subscription confirmations are pushes: never silenced.
                    let push = name.ends_with("subscribe");
                    let item = if conn.replies.silence_next() && !push {
                        Pending::Silent(Box::new(item))
                    } else {
                        item
                    };
                    let called = if refused {
                        Called::rejected(name)
                    } else {
                        // Only a request that may wait can be slow: keep
                        // the arguments of those alone (one per round of a
                        // pipeline, not one per request), unless every
                        // command is to be logged.
                        let before = pending.last().map(|(_, p, _)| p);
                        let keep = shared.slowlog.enabled()
                            && (item.may_wait(before) || shared.slowlog.logs_everything());
                        Called::run(name, keep.then_some(argv.as_slice()), &mut pending_args)
                    };
                    pending.push((conn.protocol, item, called));
                    if conn.closing {
                        break;
                    }
                    // As in Redis, nothing after a blocking command runs
                    // before it is answered; nor after an AUTH waiting for
                    // its read barrier (what follows runs as the user it
                    // logs in).
                    if blocks || conn.principal.awaiting() {
                        blocked = true;
                        more_buffered = true;
                        break;
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    shared.stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(client = id, error = %e, "protocol error; closing");
                    pending.push((
                        conn.protocol,
                        Pending::Ready(Reply::error(format!("ERR {e}"))),
                        Called::rejected(""),
                    ));
                    conn.closing = true;
                    break;
                }
            }
        }
        if !pending.is_empty() {
            last_request = Instant::now();
        }
        // What the connection holds of a request still arriving (the
        // buffer left after parsing and the arguments parsed out of it):
        // past client-query-buffer-limit the client is closed, as Redis
        // closes it, and what it held freed.
        let held = (rbuf.len() + parser.held_bytes()) as u64;
        mem.query.store(held, Ordering::Relaxed);
        mem.query_free
            .store((rbuf.capacity() - rbuf.len()) as u64, Ordering::Relaxed);
        let limit = shared.query_buffer_limit.load(Ordering::Relaxed);
        if held > limit {
            shared
                .stats
                .query_limit_disconnections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                client = id,
                bytes = held,
                limit,
                "closing a client that reached client-query-buffer-limit"
            );
            break 'connection;
        }
        if blocked {
            // Waiting may take long: watch the socket meanwhile, so a client
            // that leaves gives up its place (its answer's receiver drops).
            let resolve = resolve_into(
                &mut pending,
                &mut pending_args,
                &mut submissions,
                &mut wbuf,
                &shared,
                conn.principal.fence(),
                conn.id,
            );
            tokio::pin!(resolve);
            loop {
                tokio::select! {
                    () = &mut resolve => break,
                    read = socket.read_buf(&mut rbuf), if rbuf.len() < BLOCKED_READ_AHEAD => {
                        if matches!(read, Ok(0) | Err(_)) {
                            break 'connection;
                        }
                    }
                    _ = shutdown.changed() => break 'connection,
                    _ = kill.notified() => break 'connection,
                }
            }
            local::set_client(&shared, id, |c| c.blocked_on = None);
            last_request = Instant::now();
        } else {
            resolve_into(
                &mut pending,
                &mut pending_args,
                &mut submissions,
                &mut wbuf,
                &shared,
                conn.principal.fence(),
                conn.id,
            )
            .await;
        }
        if !wbuf.is_empty() {
            // A normal client's replies are held to the `normal` class of
            // client-output-buffer-limit (none by default). A round's
            // replies are written before the next round is read, so the
            // soft limit counts only with 0 seconds.
            if !conn.subs.as_ref().is_some_and(|s| s.active()) {
                let (over, _) = shared.output_limits.normal.exceeded(
                    wbuf.len() as u64,
                    0,
                    crate::raft::now_ms(),
                );
                if over {
                    shared
                        .stats
                        .output_limit_disconnections
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        client = id,
                        bytes = wbuf.len(),
                        "closing a client past its output buffer limit"
                    );
                    break 'connection;
                }
            }
            let backlog = conn.subs.as_ref().map(|s| s.backlog.clone());
            if let Some(backlog) = &backlog {
                let _ = mem.backlog.set(backlog.clone());
            }
            mem.output.store(wbuf.len() as u64, Ordering::Relaxed);
            if !write_out(&mut socket, &wbuf, backlog.as_deref(), &shared).await {
                break 'connection;
            }
            wbuf.clear();
            mem.output.store(0, Ordering::Relaxed);
            // A slow answer is not idleness: `timeout` counts from here.
            last_request = Instant::now();
            touch(&shared, id, last_command);
        }
        if conn.closing {
            break;
        }
        if more_buffered {
            continue;
        }
        if *shutdown.borrow() {
            break;
        }
        // `timeout`: an idle client is closed, counting from its last
        // complete request (a half-sent one is idle); never a subscriber
        // (a blocked client waits above, not here).
        let idle_limit = shared.idle_timeout_s.load(Ordering::Relaxed);
        let subscriber = conn.subs.as_ref().is_some_and(|s| s.active());
        let sub_backlog = conn.subs.as_ref().map(|s| s.backlog.clone());
        if let Some(backlog) = &sub_backlog {
            let _ = mem.backlog.set(backlog.clone());
        }
        let idle = async {
            if idle_limit == 0 || subscriber {
                std::future::pending::<()>().await;
            }
            match last_request.checked_add(Duration::from_secs(idle_limit)) {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        rbuf.reserve(read_size);
        let room = rbuf.capacity() - rbuf.len();
        tokio::select! {
            read = socket.read_buf(&mut rbuf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if n == room {
                        read_size = (read_size * 2).min(READ_MAX);
                    } else if n < read_size / 4 {
                        read_size = (read_size / 2).max(READ_MIN);
                    }
                }
            },
            () = idle => {
                tracing::debug!(client = id, "closing an idle client (timeout)");
                break;
            }
            line = next_monitored(&mut conn.monitor) => {
                // Whatever else is waiting goes in the same write.
                let mut next = Some(line);
                while let Some(line) = next {
                    match line {
                        Ok(line) => {
                            wbuf.extend_from_slice(b"+");
                            wbuf.extend_from_slice(&line);
                            wbuf.extend_from_slice(b"\r\n");
                        }
                        Err(missed) => {
                            tracing::debug!(client = id, missed, "a monitor fell behind");
                        }
                    }
                    next = conn.monitor.as_mut().and_then(|feed| match feed.lines.try_recv() {
                        Ok(line) => Some(Ok(line)),
                        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => Some(Err(n)),
                        Err(_) => None,
                    });
                }
                mem.output.store(wbuf.len() as u64, Ordering::Relaxed);
                if !write_out(&mut socket, &wbuf, None, &shared).await {
                    break 'connection;
                }
                wbuf.clear();
                mem.output.store(0, Ordering::Relaxed);
            }
            Some(delivery) = next_delivery(&mut conn.subs) => {
                // Whatever else arrived meanwhile goes in the same write.
                let mut next = Some(delivery);
                let mut taken = 0;
                while let Some(delivery) = next {
                    taken += Backlog::cost_of(&delivery);
                    if let Some(push) = conn.subs.as_ref().and_then(|s| s.push_for(delivery)) {
                        encode(&push, conn.protocol, &mut wbuf);
                    }
                    next = conn.subs.as_mut().and_then(|s| s.messages.try_recv().ok());
                }
                let backlog = conn.subs.as_ref().map(|s| s.backlog.clone());
                mem.output.store(wbuf.len() as u64, Ordering::Relaxed);
                if !wbuf.is_empty() && !write_out(&mut socket, &wbuf, backlog.as_deref(), &shared).await {
                    break 'connection;
                }
                wbuf.clear();
                mem.output.store(0, Ordering::Relaxed);
                if let Some(backlog) = backlog {
                    backlog.written(taken);
                }
            }
            () = overflowed(sub_backlog.as_deref()) => {
                shared.stats.output_limit_disconnections.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = id, "closing a subscriber past its output buffer limit");
                break;
            }
            _ = shutdown.changed() => break,
            _ = kill.notified() => break,
        }
    }
    super::pubsub::leave(&mut conn, &shared);
    let _ = socket.shutdown().await;
    shared.clients.lock().expect("clients lock").remove(&id);
}

/// Hands over what is queued, awaits every pending reply, in order, and
/// encodes it into `out`.
/// What INFO commandstats counts of one request: the command, and whether
/// it was refused before it ran (arity, ACL) or ran.
struct Called {
    name: &'static str,
    rejected: bool,
    /// Where the request is in the pending arguments, kept for the slow
    /// log while it is on.
    args: Option<std::ops::Range<usize>>,
}

impl Called {
    fn run(name: &'static str, argv: Option<&[Bytes]>, kept: &mut Vec<Bytes>) -> Called {
        let args = argv.map(|argv| {
            let start = kept.len();
            kept.extend_from_slice(argv);
            start..kept.len()
        });
        Called {
            name,
            rejected: false,
            args,
        }
    }

    fn rejected(name: &'static str) -> Called {
        Called {
            name,
            rejected: true,
            args: None,
        }
    }
}

async fn resolve_into(
    pending: &mut Vec<(Protocol, Pending, Called)>,
    pending_args: &mut Vec<Bytes>,
    submissions: &mut Submissions,
    out: &mut BytesMut,
    shared: &Shared,
    fence: super::acl::Fence,
    client: u64,
) {
    submissions.flush(shared);
    if pending.is_empty() {
        return;
    }
    shared
        .stats
        .commands_processed
        .fetch_add(pending.len() as u64, Ordering::Relaxed);
    let mut errors = 0;
    // The time a command took is from its batch being handed to the driver
    // (just above) until the whole batch was answered: what a client
    // waiting on it, or on its pipeline, waited beyond parsing.
    let started = Instant::now();
    let mut last = started;
    let mut outcomes: Vec<(Called, bool)> = Vec::with_capacity(pending.len());
    for (protocol, item, called) in pending.drain(..) {
        let submitted = matches!(item, Pending::Submitted { .. });
        let mut reply = item.resolve(submissions).await;
        // What this answer added to the wait (SLOWLOG, LATENCY).
        let now = Instant::now();
        if !called.rejected {
            let args = called.args.clone().map(|r| &pending_args[r]);
            shared
                .slowlog
                .record(shared, client, called.name, args, now - last);
        }
        last = now;
        // A read is answered after its read barrier: if the user was
        // deleted or disabled by an entry the barrier covers, the read
        // must not be answered (see server::acl).
        if submitted
            && fence.revoked(shared)
            && command::lookup(called.name.as_bytes())
                .is_some_and(|s| matches!(s.exec, command::Exec::Read(..)))
        {
            reply = Reply::error(super::acl::NOAUTH);
        }
        let failed = matches!(reply, Reply::Error(_));
        if let Reply::Error(text) = &reply {
            errors += 1;
            shared.stats.error_codes.count(text);
        }
        outcomes.push((called, failed));
        encode(&reply, protocol, out);
    }
    let micros = started.elapsed().as_micros() as u64;
    for (called, failed) in outcomes {
        shared
            .stats
            .calls
            .record(called.name, micros, called.rejected, failed);
    }
    if errors > 0 {
        shared
            .stats
            .errors_replied
            .fetch_add(errors, Ordering::Relaxed);
    }
    submissions.batches.clear();
    pending_args.clear();
}

fn touch(shared: &Shared, id: u64, command: &str) {
    if let Some(info) = shared.clients.lock().expect("clients lock").get_mut(&id) {
        info.last_active = Instant::now();
        if info.last_command != command {
            info.last_command = command.to_owned();
        }
    }
}

/// True while a RESP2 connection listens for messages: only (un)subscribe
/// commands, PING, QUIT and RESET run.
fn listening(conn: &Conn) -> bool {
    conn.protocol == Protocol::Resp2 && conn.subs.as_ref().is_some_and(|s| s.active())
}

/// Runs MULTI, EXEC, DISCARD, WATCH or UNWATCH.
fn control(
    conn: &mut Conn,
    name: &'static str,
    argv: &[Bytes],
    shared: &Shared,
    submissions: &mut Submissions,
) -> Pending {
    // EXEC runs the transaction's local commands: after what came before.
    submissions.flush(shared);
    match transaction::control(conn, name, argv, shared) {
        Control::Reply(reply) => Pending::Ready(reply),
        Control::Watch { query, keys, cell } => Pending::Watch {
            batch: submissions.queue(Submit::Read(query, conn.read_mode)),
            keys,
            cell,
        },
        Control::Exec {
            op,
            replies,
            nesting,
        } => Pending::Exec {
            batch: submissions.queue(Submit::Write(op)),
            replies,
            nesting,
        },
    }
}

/// Submits one checked and parsed request; returns its pending reply and
/// the command name (for CLIENT LIST).
/// EVALSHA, FCALL and EVAL as reads first ([`ScriptQuery::EvalShaFirst`]):
/// a run that writes nothing then costs no log entry, no fsync and no run
/// on every replica; one that writes, or an EVAL of a body not cached yet,
/// is sent through the log by the node. Only for a script that is the last
/// request the client has sent so far (see the caller).
fn read_first(request: Request) -> Request {
    match request {
        Request::Write(Op::Script(ScriptOp::Eval { body, run }), spec, reply) => Request::Read(
            Query::Script(ScriptQuery::EvalFirst {
                sha: sha1hex(&body),
                body,
                run,
            }),
            spec,
            reply,
        ),
        Request::Write(Op::Script(ScriptOp::EvalSha { sha, run }), spec, reply) => Request::Read(
            Query::Script(ScriptQuery::EvalShaFirst { sha, run }),
            spec,
            reply,
        ),
        Request::Write(Op::Script(ScriptOp::FCall { function, run }), spec, reply) => {
            Request::Read(
                Query::Script(ScriptQuery::FCallFirst { function, run }),
                spec,
                reply,
            )
        }
        other => other,
    }
}

fn dispatch(
    conn: &mut Conn,
    request: Result<Request, CommandError>,
    argv: &[Bytes],
    shared: &Shared,
    submissions: &mut Submissions,
) -> (Pending, &'static str) {
    if listening(conn) {
        if let Ok(Request::Write(_, spec, _) | Request::Read(_, spec, _) | Request::Local(spec)) =
            &request
        {
            if !super::pubsub::allowed_while_subscribed(spec.name) {
                let text = format!(
                    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
                    spec.name
                );
                return (Pending::Ready(Reply::error(text)), spec.name);
            }
        }
    }
    match request {
        Err(e) => {
            // The (sub)command it was meant for, if the name is known.
            let spec = argv.first().and_then(|n| command::lookup(n));
            let name = spec.map_or("NULL", |spec| match &e {
                CommandError::WrongArity(n) => spec
                    .subcommands
                    .iter()
                    .find(|s| s.name == n)
                    .map_or(spec.name, |s| s.name),
                _ => super::acl::resolve(argv).map_or(spec.name, |s| s.name),
            });
            (Pending::Ready(Reply::error(e.to_string())), name)
        }
        Ok(Request::Write(op, spec, reply)) => (
            Pending::Submitted {
                batch: submissions.queue(Submit::Write(Op::in_db(
                    conn.db,
                    conn.principal.wrap_op(op),
                ))),
                name: spec.name,
                reply,
            },
            spec.name,
        ),
        Ok(Request::Read(query, spec, reply)) => (
            Pending::Submitted {
                batch: submissions.queue(Submit::Read(
                    Query::in_db(conn.db, conn.principal.wrap_query(query)),
                    conn.read_mode,
                )),
                name: spec.name,
                reply,
            },
            spec.name,
        ),
        Ok(Request::Local(spec)) => {
            // Whatever it does, it comes after the requests before it.
            submissions.flush(shared);
            let pending = match local::execute(conn, spec, argv, shared) {
                local::Local::Now(reply) => Pending::Ready(reply),
                local::Local::Wait(rx) => Pending::Waiting {
                    rx,
                    name: spec.name,
                    reply: command::standard_reply,
                },
                local::Local::Later(future) => Pending::Later(future),
            };
            (pending, spec.name)
        }
    }
}

/// The next message for a subscribed connection; never, for one that has
/// not subscribed.
/// Writes `buf`, giving up if the subscriber goes past its output limit
/// meanwhile (counted); false when the connection must close.
async fn write_out<S: AsyncWrite + Unpin>(
    socket: &mut S,
    buf: &[u8],
    backlog: Option<&Backlog>,
    shared: &Shared,
) -> bool {
    let Some(backlog) = backlog else {
        return socket.write_all(buf).await.is_ok();
    };
    tokio::select! {
        written = socket.write_all(buf) => written.is_ok(),
        () = backlog.overflowed() => {
            shared
                .stats
                .output_limit_disconnections
                .fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// Resolves when this connection's subscriber backlog went past its limit.
async fn overflowed(backlog: Option<&Backlog>) {
    match backlog {
        Some(backlog) => backlog.overflowed().await,
        None => std::future::pending().await,
    }
}

/// The (sub)command `argv` names, if it is known.
fn lookup_resolved(argv: &[Bytes]) -> Option<&'static command::CommandSpec> {
    command::lookup(&argv[0]).and_then(|spec| command::resolve_subcommand(spec, argv).ok())
}

/// The next line for a monitoring connection (Err: lines it missed);
/// never, for one that is not monitoring.
async fn next_monitored(monitor: &mut Option<super::monitor::Feed>) -> Result<Bytes, u64> {
    use tokio::sync::broadcast::error::RecvError;
    match monitor {
        Some(feed) => match feed.lines.recv().await {
            Ok(line) => Ok(line),
            Err(RecvError::Lagged(n)) => Err(n),
            Err(RecvError::Closed) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

async fn next_delivery(
    subs: &mut Option<super::pubsub::Subscriptions>,
) -> Option<crate::state::pubsub::Delivery> {
    match subs {
        Some(subs) => subs.messages.recv().await,
        None => std::future::pending().await,
    }
}
