//! Publish/subscribe across the cluster.
//!
//! PUBLISH goes through the log like any write, so every message has one
//! place in one total order, the same on every node. Subscriptions go
//! through the log too: a SUBSCRIBE is answered once its entry is applied,
//! and from then on every message published after it reaches the client,
//! whichever node the publisher used. Because every replica knows every
//! subscription, PUBLISH answers with the number of receivers cluster-wide
//! and PUBSUB NUMSUB/CHANNELS describe the whole cluster.
//!
//! Applying a PUBLISH records one [`Delivery`] per receiving subscription
//! (a client subscribed to the channel and to two matching patterns gets
//! three, as in Redis); every replica records the same ones, and each node
//! hands its own clients theirs. A subscriber is named by its node, that
//! node's run (`boot`) and its connection id: connection ids restart with
//! the process, so a node that comes back first forgets the subscriptions
//! of its earlier runs through the log, and deliveries to another run are
//! never handed to a new connection that reuses an id.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::glob::matches as glob_match;
use super::{OpResult, Outcome, State};

/// One client connection somewhere in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Subscriber {
    pub node: u64,
    pub boot: u64,
    pub client: u64,
}

/// The three namespaces: channels, patterns over channels, and shard
/// channels (SSUBSCRIBE/SPUBLISH; one shard holds them all here).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PubSubOp {
    /// Outcome: OK.
    Subscribe {
        who: Subscriber,
        kind: Kind,
        names: Vec<Bytes>,
    },
    /// Outcome: OK. No names: every subscription of that kind.
    Unsubscribe {
        who: Subscriber,
        kind: Kind,
        names: Vec<Bytes>,
    },
    /// The connection closed. Outcome: OK.
    Leave { who: Subscriber },
    /// Outcome: the number of receiving subscriptions.
    Publish {
        shard: bool,
        channel: Bytes,
        message: Bytes,
    },
    /// Node `node` runs as `boot` now: drop its subscribers of earlier runs.
    Rebooted { node: u64, boot: u64 },
    /// CONFIG SET notify-keyspace-events: the classes of keyspace
    /// notifications to send, as `notify` parses them. Outcome: OK.
    NotifyKeyspaceEvents { flags: u32 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PubSubQuery {
    /// Active channels (or shard channels), optionally matching a pattern.
    Channels { shard: bool, pattern: Option<Bytes> },
    /// Subscriber counts of each channel (or shard channel).
    NumSub { shard: bool, channels: Vec<Bytes> },
    /// The number of patterns subscribed to.
    NumPat,
    /// CONFIG GET notify-keyspace-events: the flags as Redis prints them.
    NotifyKeyspaceEvents,
}

/// What a subscriber receives, as RESP names it.
#[derive(Clone, Debug, PartialEq)]
pub enum Push {
    Message { channel: Bytes },
    PMessage { pattern: Bytes, channel: Bytes },
    SMessage { channel: Bytes },
}

/// A message for one subscription, recorded while a PUBLISH is applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub to: Subscriber,
    pub push: Push,
    pub payload: Bytes,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PubSub {
    channels: BTreeMap<Bytes, BTreeSet<Subscriber>>,
    patterns: BTreeMap<Bytes, BTreeSet<Subscriber>>,
    shards: BTreeMap<Bytes, BTreeSet<Subscriber>>,
    /// The current run of each node, as it last announced it.
    boots: BTreeMap<u64, u64>,
}

impl PubSub {
    fn table(&mut self, kind: Kind) -> &mut BTreeMap<Bytes, BTreeSet<Subscriber>> {
        match kind {
            Kind::Channel => &mut self.channels,
            Kind::Pattern => &mut self.patterns,
            Kind::Shard => &mut self.shards,
        }
    }

    /// The run node `node` last announced.
    pub fn boot(&self, node: u64) -> Option<u64> {
        self.boots.get(&node).copied()
    }

    /// Drops every subscription `keep` says no to.
    fn retain(&mut self, keep: impl Fn(&Subscriber) -> bool) {
        for table in [&mut self.channels, &mut self.patterns, &mut self.shards] {
            table.retain(|_, subs| {
                subs.retain(&keep);
                !subs.is_empty()
            });
        }
    }

    /// A node left the cluster: its subscribers go with it.
    pub fn forget_node(&mut self, node: u64) {
        self.retain(|s| s.node != node);
        self.boots.remove(&node);
    }
}

pub fn apply(state: &mut State, op: &PubSubOp) -> OpResult {
    let pubsub = &mut state.coord.pubsub;
    match op {
        PubSubOp::Subscribe { who, kind, names } => {
            let table = pubsub.table(*kind);
            for name in names {
                table.entry(name.clone()).or_default().insert(*who);
            }
            Ok(Outcome::Ok)
        }
        PubSubOp::Unsubscribe { who, kind, names } => {
            let table = pubsub.table(*kind);
            if names.is_empty() {
                table.retain(|_, subs| {
                    subs.remove(who);
                    !subs.is_empty()
                });
            }
            for name in names {
                if let Some(subs) = table.get_mut(name) {
                    subs.remove(who);
                    if subs.is_empty() {
                        table.remove(name);
                    }
                }
            }
            Ok(Outcome::Ok)
        }
        PubSubOp::Leave { who } => {
            pubsub.retain(|s| s != who);
            Ok(Outcome::Ok)
        }
        PubSubOp::Rebooted { node, boot } => {
            pubsub.retain(|s| s.node != *node || s.boot == *boot);
            pubsub.boots.insert(*node, *boot);
            Ok(Outcome::Ok)
        }
        PubSubOp::Publish {
            shard,
            channel,
            message,
        } => Ok(Outcome::Int(publish(state, *shard, channel, message))),
        PubSubOp::NotifyKeyspaceEvents { flags } => {
            state.coord.ext.notify = *flags;
            Ok(Outcome::Ok)
        }
    }
}

/// Records a message for every subscription that receives it (a client
/// subscribed to the channel and to two matching patterns gets three);
/// answers how many.
pub(super) fn publish(state: &mut State, shard: bool, channel: &Bytes, message: &Bytes) -> i64 {
    let pubsub = &state.coord.pubsub;
    let mut deliveries = Vec::new();
    let direct = if shard {
        &pubsub.shards
    } else {
        &pubsub.channels
    };
    if let Some(subs) = direct.get(channel) {
        let push = if shard {
            Push::SMessage {
                channel: channel.clone(),
            }
        } else {
            Push::Message {
                channel: channel.clone(),
            }
        };
        deliveries.extend(subs.iter().map(|to| Delivery {
            to: *to,
            push: push.clone(),
            payload: message.clone(),
        }));
    }
    if !shard {
        for (pattern, subs) in &pubsub.patterns {
            if !glob_match(pattern, channel) {
                continue;
            }
            deliveries.extend(subs.iter().map(|to| Delivery {
                to: *to,
                push: Push::PMessage {
                    pattern: pattern.clone(),
                    channel: channel.clone(),
                },
                payload: message.clone(),
            }));
        }
    }
    let receivers = deliveries.len() as i64;
    state.deliveries.extend(deliveries);
    receivers
}

pub fn read(state: &State, query: &PubSubQuery) -> OpResult {
    let pubsub = &state.coord.pubsub;
    let table = |shard: bool| {
        if shard {
            &pubsub.shards
        } else {
            &pubsub.channels
        }
    };
    match query {
        PubSubQuery::Channels { shard, pattern } => Ok(Outcome::Array(
            table(*shard)
                .keys()
                .filter(|c| pattern.as_ref().is_none_or(|p| glob_match(p, c)))
                .map(|c| Outcome::Bulk(c.clone()))
                .collect(),
        )),
        // A flat array in RESP3 too, as Redis answers (clients parse it so).
        PubSubQuery::NumSub { shard, channels } => Ok(Outcome::Array(
            channels
                .iter()
                .flat_map(|c| {
                    let n = table(*shard).get(c).map_or(0, BTreeSet::len);
                    [Outcome::Bulk(c.clone()), Outcome::Int(n as i64)]
                })
                .collect(),
        )),
        PubSubQuery::NumPat => Ok(Outcome::Int(pubsub.patterns.len() as i64)),
        PubSubQuery::NotifyKeyspaceEvents => Ok(Outcome::Bulk(Bytes::from(
            super::notify::flags_text(state.coord.ext.notify),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Op;

    fn who(node: u64, boot: u64, client: u64) -> Subscriber {
        Subscriber { node, boot, client }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn apply(state: &mut State, index: &mut u64, op: PubSubOp) -> Outcome {
        *index += 1;
        state
            .apply(*index, 1_000, &Op::PubSub(op))
            .expect("pub/sub ops do not fail")
    }

    fn subscribe(state: &mut State, index: &mut u64, w: Subscriber, kind: Kind, names: &[&str]) {
        let names = names.iter().map(|n| b(n)).collect();
        apply(
            state,
            index,
            PubSubOp::Subscribe {
                who: w,
                kind,
                names,
            },
        );
    }

    fn publish(state: &mut State, index: &mut u64, channel: &str) -> (Outcome, Vec<Delivery>) {
        let outcome = apply(
            state,
            index,
            PubSubOp::Publish {
                shard: false,
                channel: b(channel),
                message: b("hi"),
            },
        );
        (outcome, state.take_deliveries())
    }

    #[test]
    fn a_publish_reaches_channel_and_pattern_subscribers_on_every_node() {
        let (mut state, mut i) = (State::new(), 0);
        let (a, c) = (who(1, 7, 1), who(3, 9, 4));
        subscribe(&mut state, &mut i, a, Kind::Channel, &["news", "other"]);
        subscribe(&mut state, &mut i, a, Kind::Pattern, &["n*"]);
        subscribe(&mut state, &mut i, c, Kind::Pattern, &["*s", "x*"]);
        let (receivers, deliveries) = publish(&mut state, &mut i, "news");
        assert_eq!(receivers, Outcome::Int(3));
        let got: Vec<(Subscriber, Push)> = deliveries.into_iter().map(|d| (d.to, d.push)).collect();
        assert_eq!(
            got,
            vec![
                (a, Push::Message { channel: b("news") }),
                // Patterns in byte order, the same on every replica.
                (
                    c,
                    Push::PMessage {
                        pattern: b("*s"),
                        channel: b("news"),
                    },
                ),
                (
                    a,
                    Push::PMessage {
                        pattern: b("n*"),
                        channel: b("news"),
                    },
                ),
            ]
        );
        let (receivers, deliveries) = publish(&mut state, &mut i, "nobody-listening");
        assert_eq!(receivers, Outcome::Int(1), "only the n* pattern");
        assert_eq!(deliveries.len(), 1);
    }

    #[test]
    fn unsubscribing_leaving_and_rebooting_drop_subscriptions() {
        let (mut state, mut i) = (State::new(), 0);
        let (a, old, new) = (who(1, 7, 1), who(2, 5, 1), who(2, 6, 1));
        subscribe(&mut state, &mut i, a, Kind::Channel, &["c1", "c2"]);
        subscribe(&mut state, &mut i, old, Kind::Channel, &["c1"]);
        subscribe(&mut state, &mut i, new, Kind::Channel, &["c1"]);
        assert_eq!(publish(&mut state, &mut i, "c1").0, Outcome::Int(3));
        apply(&mut state, &mut i, PubSubOp::Rebooted { node: 2, boot: 6 });
        assert_eq!(publish(&mut state, &mut i, "c1").0, Outcome::Int(2));
        apply(
            &mut state,
            &mut i,
            PubSubOp::Unsubscribe {
                who: a,
                kind: Kind::Channel,
                names: vec![b("c1")],
            },
        );
        assert_eq!(publish(&mut state, &mut i, "c1").0, Outcome::Int(1));
        assert_eq!(publish(&mut state, &mut i, "c2").0, Outcome::Int(1));
        apply(&mut state, &mut i, PubSubOp::Leave { who: a });
        assert_eq!(publish(&mut state, &mut i, "c2").0, Outcome::Int(0));
        let channels = read(
            &state,
            &PubSubQuery::Channels {
                shard: false,
                pattern: None,
            },
        );
        assert_eq!(channels, Ok(Outcome::Array(vec![Outcome::Bulk(b("c1"))])));
        state.coord.pubsub.forget_node(2);
        assert_eq!(publish(&mut state, &mut i, "c1").0, Outcome::Int(0));
        let snapshot = State::decode_snapshot(&state.encode_snapshot()).expect("decodes");
        assert!(snapshot == state);
    }

    #[test]
    fn shard_channels_are_their_own_namespace() {
        let (mut state, mut i) = (State::new(), 0);
        let a = who(1, 7, 1);
        subscribe(&mut state, &mut i, a, Kind::Shard, &["orders"]);
        subscribe(&mut state, &mut i, a, Kind::Pattern, &["*"]);
        let sharded = apply(
            &mut state,
            &mut i,
            PubSubOp::Publish {
                shard: true,
                channel: b("orders"),
                message: b("m"),
            },
        );
        assert_eq!(
            sharded,
            Outcome::Int(1),
            "patterns do not see shard channels"
        );
        let deliveries = state.take_deliveries();
        assert_eq!(
            deliveries[0].push,
            Push::SMessage {
                channel: b("orders")
            }
        );
        let numsub = read(
            &state,
            &PubSubQuery::NumSub {
                shard: true,
                channels: vec![b("orders"), b("x")],
            },
        );
        assert_eq!(
            numsub,
            Ok(Outcome::Array(vec![
                Outcome::Bulk(b("orders")),
                Outcome::Int(1),
                Outcome::Bulk(b("x")),
                Outcome::Int(0),
            ]))
        );
        assert_eq!(read(&state, &PubSubQuery::NumPat), Ok(Outcome::Int(1)));
    }
}
