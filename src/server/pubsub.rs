//! The subscribe family on a connection.
//!
//! A connection's subscriptions live twice: here, as the sets that decide
//! what the client is sent and what the confirmations count, and in the
//! replicated state, which routes each published message to the nodes
//! whose clients listen and counts receivers for PUBLISH. A SUBSCRIBE is
//! confirmed once its entry is applied, so every message published after
//! that reaches the client; an UNSUBSCRIBE takes effect here at once, so no
//! message for the channel follows its confirmation, even one already on
//! its way.

use std::collections::BTreeSet;

use bytes::Bytes;
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::connection::Conn;
use super::local::Local;
use super::Shared;
use crate::raft::answer;
use crate::resp::Reply;
use crate::state::pubsub::{Delivery, Kind, PubSubOp, Push, Subscriber};
use crate::state::Op;

/// What one connection listens to, and where its messages arrive.
pub(super) struct Subscriptions {
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    shards: BTreeSet<Bytes>,
    pub messages: UnboundedReceiver<Delivery>,
    /// What the driver queued and this connection has not written yet.
    pub backlog: std::sync::Arc<crate::raft::backlog::Backlog>,
}

impl Subscriptions {
    fn set(&mut self, kind: Kind) -> &mut BTreeSet<Bytes> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shards,
        }
    }

    /// The count Redis puts in a confirmation: channels and patterns
    /// together, shard channels on their own.
    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Channel | Kind::Pattern => self.channels.len() + self.patterns.len(),
            Kind::Shard => self.shards.len(),
        }
    }

    /// True while the connection listens to anything: in RESP2 it may then
    /// only (un)subscribe, PING, QUIT or RESET.
    pub fn active(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shards.is_empty())
    }

    /// The push frame for a delivery, if the connection still listens to
    /// what it was sent for.
    pub fn push_for(&self, delivery: Delivery) -> Option<Reply> {
        let payload = Reply::Bulk(delivery.payload);
        let frame = match delivery.push {
            Push::Message { channel } if self.channels.contains(&channel) => {
                vec![Reply::bulk("message"), Reply::Bulk(channel), payload]
            }
            Push::PMessage { pattern, channel } if self.patterns.contains(&pattern) => vec![
                Reply::bulk("pmessage"),
                Reply::Bulk(pattern),
                Reply::Bulk(channel),
                payload,
            ],
            Push::SMessage { channel } if self.shards.contains(&channel) => {
                vec![Reply::bulk("smessage"), Reply::Bulk(channel), payload]
            }
            _ => return None,
        };
        Some(Reply::Push(frame))
    }
}

/// Whether a command may run on a RESP2 connection that listens.
pub(super) fn allowed_while_subscribed(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "psubscribe"
            | "ssubscribe"
            | "unsubscribe"
            | "punsubscribe"
            | "sunsubscribe"
            | "ping"
            | "quit"
            | "reset"
    )
}

fn who(conn: &Conn, shared: &Shared) -> Subscriber {
    let status = shared.node.status();
    Subscriber {
        node: status.id,
        boot: status.boot,
        client: conn.id,
    }
}

/// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their UNSUBSCRIBE forms: one
/// confirmation per name, sent once the change is applied.
pub(super) fn execute(
    conn: &mut Conn,
    name: &'static str,
    argv: &[Bytes],
    shared: &Shared,
) -> Local {
    let (kind, subscribing) = match name {
        "subscribe" => (Kind::Channel, true),
        "psubscribe" => (Kind::Pattern, true),
        "ssubscribe" => (Kind::Shard, true),
        "unsubscribe" => (Kind::Channel, false),
        "punsubscribe" => (Kind::Pattern, false),
        _ => (Kind::Shard, false),
    };
    let me = who(conn, shared);
    let subs = conn.subs.get_or_insert_with(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        let backlog = crate::raft::backlog::Backlog::new(shared.output_limits.pubsub.clone());
        shared
            .node
            .register_subscriber(me.client, tx, backlog.clone());
        Subscriptions {
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shards: BTreeSet::new(),
            messages: rx,
            backlog,
        }
    });
    let confirm = |subs: &Subscriptions, target: Option<&Bytes>| {
        Reply::Push(vec![
            Reply::bulk(name),
            target.map_or(Reply::Nil, |t| Reply::Bulk(t.clone())),
            Reply::Int(subs.count(kind) as i64),
        ])
    };
    let mut frames = Vec::new();
    let mut changed = Vec::new();
    if subscribing {
        for target in &argv[1..] {
            if subs.set(kind).insert(target.clone()) {
                changed.push(target.clone());
            }
            frames.push(confirm(subs, Some(target)));
        }
    } else {
        let targets: Vec<Bytes> = if argv.len() > 1 {
            argv[1..].to_vec()
        } else {
            subs.set(kind).iter().cloned().collect()
        };
        if targets.is_empty() {
            frames.push(confirm(subs, None));
        }
        for target in &targets {
            if subs.set(kind).remove(target) {
                changed.push(target.clone());
            }
            frames.push(confirm(subs, Some(target)));
        }
    }
    if changed.is_empty() {
        return Local::Now(Reply::Frames(frames));
    }
    let op = if subscribing {
        PubSubOp::Subscribe {
            who: me,
            kind,
            names: changed,
        }
    } else {
        PubSubOp::Unsubscribe {
            who: me,
            kind,
            names: changed,
        }
    };
    let applied = shared.node.write(Op::PubSub(op));
    Local::Later(Box::pin(async move {
        match answer(applied).await {
            Ok(Ok(_)) => Reply::Frames(frames),
            Ok(Err(e)) => Reply::error(e.to_string()),
            Err(e) => Reply::error(e.to_string()),
        }
    }))
}

/// The connection closed or was RESET: its subscriptions end everywhere.
pub(super) fn leave(conn: &mut Conn, shared: &Shared) {
    if conn.subs.take().is_some() {
        shared.node.unregister_subscriber(conn.id);
        let me = who(conn, shared);
        // Nobody waits for the answer.
        drop(shared.node.write(Op::PubSub(PubSubOp::Leave { who: me })));
    }
}
