//! Keyspace notifications (`notify-keyspace-events`), as Redis sends them.
//!
//! A notification is a PUBLISH on `__keyspace@0__:<key>` (message: the
//! event) and/or `__keyevent@0__:<event>` (message: the key). Here they are
//! made while an op is applied, inside the state machine, so every replica
//! records the same deliveries in the same place of the log, and each node
//! hands them to its own subscribers like any other message. The flags are
//! replicated too: CONFIG SET of `notify-keyspace-events` is an op.
//!
//! The events are derived around the op, not inside every family: before
//! it, the keys it names are looked at (live, or present but expired);
//! after it, its outcome says what the command did. That gives Redis's
//! order: `expired` for a key the op found dead, `new` for a key it
//! created, the command's own events, then `del` for a key it emptied.
//! With notifications off (the default) nothing of this runs.

use bytes::Bytes;

use super::bits::FieldAction;
use super::keys::KeyOp;
use super::lists::{End, ListOp};
use super::pubsub::publish;
use super::sets::{Combine, SetOp};
use super::streams::{self, StreamOp};
use super::strings::{Condition, Deadline, GetExDeadline, StringOp};
use super::zsets::{RangeBy, ZSetOp};
use super::{hashes::HashOp, Op, OpResult, Outcome, State};

/// Redis's event classes, as its `NOTIFY_*` bits.
pub const KEYSPACE: u32 = 1 << 0;
pub const KEYEVENT: u32 = 1 << 1;
pub const GENERIC: u32 = 1 << 2;
pub const STRING: u32 = 1 << 3;
pub const LIST: u32 = 1 << 4;
pub const SET: u32 = 1 << 5;
pub const HASH: u32 = 1 << 6;
pub const ZSET: u32 = 1 << 7;
pub const EXPIRED: u32 = 1 << 8;
pub const EVICTED: u32 = 1 << 9;
pub const STREAM: u32 = 1 << 10;
pub const KEY_MISS: u32 = 1 << 11;
pub const MODULE: u32 = 1 << 12;
pub const NEW: u32 = 1 << 13;
/// What `A` stands for.
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// The letters of the classes after `A`, in the order Redis prints them.
const LETTERS: &[(char, u32)] = &[
    ('g', GENERIC),
    ('$', STRING),
    ('l', LIST),
    ('s', SET),
    ('h', HASH),
    ('z', ZSET),
    ('x', EXPIRED),
    ('e', EVICTED),
    ('t', STREAM),
    ('d', MODULE),
];

/// Parses a `notify-keyspace-events` value; None for an unknown letter.
pub fn parse_flags(text: &[u8]) -> Option<u32> {
    let mut flags = 0;
    for &c in text {
        flags |= match c {
            b'A' => ALL,
            b'K' => KEYSPACE,
            b'E' => KEYEVENT,
            b'm' => KEY_MISS,
            b'n' => NEW,
            _ => LETTERS.iter().find(|(l, _)| *l as u8 == c)?.1,
        };
    }
    Some(flags)
}

/// The flags as CONFIG GET shows them: `A` when every class of it is on.
pub fn flags_text(flags: u32) -> String {
    let mut out = String::new();
    if flags & ALL == ALL {
        out.push('A');
    } else {
        out.extend(
            LETTERS
                .iter()
                .filter(|(_, bit)| flags & bit != 0)
                .map(|(l, _)| *l),
        );
    }
    for (letter, bit) in [
        ('K', KEYSPACE),
        ('E', KEYEVENT),
        ('m', KEY_MISS),
        ('n', NEW),
    ] {
        if flags & bit != 0 {
            out.push(letter);
        }
    }
    out
}

/// What the op's keys were before it ran.
pub(super) struct Before {
    /// How many deliveries were recorded before the op: a blocked client
    /// the op serves sends its events after the op's own, as in Redis.
    mark: usize,
    keys: Vec<(Bytes, Seen)>,
    /// ZADD: the members' scores before, to tell whether any changed.
    scores: Vec<Option<f64>>,
    /// Stream commands, per key: the stream's length and whether the
    /// command's consumer was in its group.
    streams: Vec<StreamBefore>,
    /// BITFIELD: the string before, to tell whether a write changed it.
    string: Option<Bytes>,
}

#[derive(Clone, Copy, Default)]
struct StreamBefore {
    len: usize,
    had_consumer: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    Absent,
    /// Still stored, but its deadline has passed.
    Expired,
    Live,
}

fn seen(state: &State, key: &Bytes, now: u64) -> Seen {
    // Time 0 sees every stored key, expired or not. Peeks: looking is
    // not an access (it would reset RESTORE's IDLETIME).
    match (state.db.peek(key, now), state.db.peek(key, 0)) {
        (Some(_), _) => Seen::Live,
        (None, Some(_)) => Seen::Expired,
        (None, None) => Seen::Absent,
    }
}

/// The keys an op names, where keyspace events may happen.
fn keys_of(op: &Op) -> Vec<&Bytes> {
    match op {
        Op::String(op) => match op {
            StringOp::MSet { pairs } | StringOp::MSetNx { pairs } => {
                pairs.iter().map(|(k, _)| k).collect()
            }
            StringOp::Set { key, .. }
            | StringOp::Append { key, .. }
            | StringOp::SetRange { key, .. }
            | StringOp::IncrBy { key, .. }
            | StringOp::IncrByFloat { key, .. }
            | StringOp::GetDel { key }
            | StringOp::GetEx { key, .. }
            | StringOp::SetBit { key, .. } => vec![key],
            StringOp::BitOp { dest, .. } => vec![dest],
            StringOp::BitField { key, .. } => vec![key],
            StringOp::PfAdd { key, .. } | StringOp::PfDebug { key, .. } => vec![key],
            StringOp::PfMerge { dest, .. } => vec![dest],
        },
        Op::Key(op) => match op {
            KeyOp::Del { keys } => keys.iter().collect(),
            KeyOp::Rename { from, to, .. } | KeyOp::Copy { from, to, .. } => vec![from, to],
            KeyOp::Expire { key, .. } | KeyOp::Persist { key } => vec![key],
            KeyOp::SortStore { destination, .. } => vec![destination],
            KeyOp::Restore { key, .. } => vec![key],
            KeyOp::Move { key, .. } => vec![key],
            KeyOp::CopyToDb { from, .. } => vec![from],
            KeyOp::FlushAll | KeyOp::FlushDb | KeyOp::SwapDb { .. } => Vec::new(),
        },
        Op::Hash(op) => match op {
            HashOp::Set { key, .. }
            | HashOp::SetNx { key, .. }
            | HashOp::Del { key, .. }
            | HashOp::IncrBy { key, .. }
            | HashOp::IncrByFloat { key, .. } => vec![key],
        },
        Op::Set(op) => match op {
            SetOp::Add { key, .. } | SetOp::Rem { key, .. } | SetOp::Pop { key, .. } => vec![key],
            SetOp::Move {
                source,
                destination,
                ..
            } => vec![source, destination],
            SetOp::Store { destination, .. } => vec![destination],
        },
        Op::List(op) => match op {
            ListOp::Push { key, .. }
            | ListOp::Pop { key, .. }
            | ListOp::Set { key, .. }
            | ListOp::Insert { key, .. }
            | ListOp::Remove { key, .. }
            | ListOp::Trim { key, .. } => vec![key],
            ListOp::MultiPop { keys, .. } | ListOp::BlockingPop { keys, .. } => {
                keys.iter().collect()
            }
            ListOp::Move {
                source,
                destination,
                ..
            }
            | ListOp::BlockingMove {
                source,
                destination,
                ..
            } => vec![source, destination],
        },
        Op::ZSet(op) => match op {
            ZSetOp::Add { key, .. }
            | ZSetOp::Rem { key, .. }
            | ZSetOp::RemRange { key, .. }
            | ZSetOp::Pop { key, .. } => vec![key],
            ZSetOp::BlockingPop { keys, .. } | ZSetOp::MultiPop { keys, .. } => {
                keys.iter().collect()
            }
            ZSetOp::Store { dest, .. } | ZSetOp::RangeStore { dest, .. } => vec![dest],
            ZSetOp::GeoStore { to, .. } => vec![&to.dest],
        },
        Op::ExpireKeys(keys) | Op::Evict(keys) => keys.iter().collect(),
        Op::Stream(op) => match op {
            StreamOp::Add { key, .. }
            | StreamOp::Trim { key, .. }
            | StreamOp::Del { key, .. }
            | StreamOp::GroupCreate { key, .. }
            | StreamOp::GroupSetId { key, .. }
            | StreamOp::GroupDestroy { key, .. }
            | StreamOp::CreateConsumer { key, .. }
            | StreamOp::DelConsumer { key, .. }
            | StreamOp::Claim { key, .. }
            | StreamOp::AutoClaim { key, .. }
            | StreamOp::SetId { key, .. } => vec![key],
            StreamOp::ReadGroup { keys, .. } => keys.iter().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Looks at the op's keys before it runs; None when notifications are off
/// or the op names no key.
pub(super) fn before(state: &State, now: u64, op: &Op) -> Option<Before> {
    if state.coord.ext.notify == 0 {
        return None;
    }
    let keys = keys_of(op);
    if keys.is_empty() {
        return None;
    }
    let scores = match op {
        Op::ZSet(ZSetOp::Add { key, pairs, .. }) => {
            let z = match state.db.get(key, now).map(|e| &e.value) {
                Some(super::Value::ZSet(z)) => Some(z),
                _ => None,
            };
            pairs
                .iter()
                .map(|(_, m)| z.and_then(|z| z.score(m)))
                .collect()
        }
        _ => Vec::new(),
    };
    let streams = match op {
        Op::Stream(op) => keys
            .iter()
            .map(|key| stream_facts(state, now, key, consumer_of(op)))
            .collect(),
        _ => Vec::new(),
    };
    Some(Before {
        mark: state.deliveries.len(),
        keys: keys
            .into_iter()
            .map(|k| (k.clone(), seen(state, k, now)))
            .collect(),
        scores,
        streams,
        string: match op {
            Op::String(StringOp::BitField { key, .. }) => {
                super::strings::get_string(&state.db, key, now)
                    .ok()
                    .flatten()
                    .cloned()
            }
            _ => None,
        },
    })
}

/// The group and consumer a stream command may create or delete.
fn consumer_of(op: &StreamOp) -> Option<(&Bytes, &Bytes)> {
    match op {
        StreamOp::CreateConsumer {
            group, consumer, ..
        }
        | StreamOp::DelConsumer {
            group, consumer, ..
        }
        | StreamOp::ReadGroup {
            group, consumer, ..
        }
        | StreamOp::Claim {
            group, consumer, ..
        }
        | StreamOp::AutoClaim {
            group, consumer, ..
        } => Some((group, consumer)),
        _ => None,
    }
}

fn stream_facts(
    state: &State,
    now: u64,
    key: &Bytes,
    consumer: Option<(&Bytes, &Bytes)>,
) -> StreamBefore {
    let Ok(Some(stream)) = streams::stream(&state.db, key, now) else {
        return StreamBefore::default();
    };
    StreamBefore {
        len: stream.len(),
        had_consumer: consumer.is_some_and(|(g, c)| stream.has_consumer(g, c)),
    }
}

/// Redis's stream events: the command's own, and a consumer created or
/// deleted on the way (XREADGROUP, XCLAIM and XAUTOCLAIM create theirs).
fn stream_events(
    state: &State,
    now: u64,
    op: &StreamOp,
    outcome: &Outcome,
    before: &Before,
) -> Vec<(u32, &'static str, Bytes)> {
    let positive = matches!(outcome, Outcome::Int(n) if *n > 0);
    let consumer = consumer_of(op);
    let mut events = Vec::new();
    for ((key, _), was) in before.keys.iter().zip(&before.streams) {
        let after = stream_facts(state, now, key, consumer);
        let mut push = |event| events.push((STREAM, event, key.clone()));
        match op {
            StreamOp::Add { .. } if !matches!(outcome, Outcome::Nil) => {
                push("xadd");
                if after.len < was.len + 1 {
                    push("xtrim");
                }
            }
            StreamOp::Trim { .. } if positive => push("xtrim"),
            StreamOp::Del { .. } if positive => push("xdel"),
            StreamOp::GroupCreate { .. } => push("xgroup-create"),
            StreamOp::GroupSetId { .. } => push("xgroup-setid"),
            StreamOp::GroupDestroy { .. } if positive => push("xgroup-destroy"),
            StreamOp::SetId { .. } => push("xsetid"),
            StreamOp::DelConsumer { .. } if was.had_consumer && !after.had_consumer => {
                push("xgroup-delconsumer")
            }
            _ if !was.had_consumer && after.had_consumer => push("xgroup-createconsumer"),
            _ => {}
        }
    }
    events
}

/// The op's own events: (class, event, key), in Redis's order.
fn command_events(
    state: &State,
    now: u64,
    op: &Op,
    outcome: &Outcome,
    before: &Before,
) -> Vec<(u32, &'static str, Bytes)> {
    let was_live = |key: &Bytes| {
        before
            .keys
            .iter()
            .any(|(k, s)| k == key && *s == Seen::Live)
    };
    let is_live = |key: &Bytes| state.db.get(key, now).is_some();
    let positive = matches!(outcome, Outcome::Int(n) if *n > 0);
    let popped = !matches!(
        outcome,
        Outcome::Nil | Outcome::NilArray | Outcome::Blocked { .. }
    ) && !matches!(outcome, Outcome::Array(a) if a.is_empty())
        && !matches!(outcome, Outcome::Pairs(p) if p.is_empty());
    let popped_from = || match outcome {
        Outcome::Array(items) => match items.first() {
            Some(Outcome::Bulk(key)) => Some(key.clone()),
            _ => None,
        },
        _ => None,
    };
    let pop_name = |end: &End| match end {
        End::Left => "lpop",
        End::Right => "rpop",
    };
    let push_name = |end: &End| match end {
        End::Left => "lpush",
        End::Right => "rpush",
    };
    let one = |class, event, key: &Bytes| vec![(class, event, key.clone())];
    match op {
        Op::String(op) => match op {
            StringOp::Set {
                key,
                condition,
                deadline,
                ..
            } => {
                let done = match condition {
                    Condition::Always => true,
                    Condition::IfAbsent => !was_live(key),
                    Condition::IfPresent => was_live(key),
                };
                let mut events = Vec::new();
                if done {
                    events.push((STRING, "set", key.clone()));
                    if matches!(deadline, Deadline::After(_) | Deadline::At(_)) {
                        events.push((GENERIC, "expire", key.clone()));
                    }
                }
                events
            }
            StringOp::MSet { pairs } => pairs
                .iter()
                .map(|(k, _)| (STRING, "set", k.clone()))
                .collect(),
            StringOp::MSetNx { pairs } if positive => pairs
                .iter()
                .map(|(k, _)| (STRING, "set", k.clone()))
                .collect(),
            StringOp::MSetNx { .. } => Vec::new(),
            StringOp::Append { key, .. } => one(STRING, "append", key),
            StringOp::SetRange { key, value, .. } if !value.is_empty() => {
                one(STRING, "setrange", key)
            }
            StringOp::SetRange { .. } => Vec::new(),
            StringOp::IncrBy { key, .. } => one(STRING, "incrby", key),
            StringOp::IncrByFloat { key, .. } => one(STRING, "incrbyfloat", key),
            StringOp::GetDel { .. } => Vec::new(),
            StringOp::GetEx { key, deadline } if is_live(key) => match deadline {
                GetExDeadline::Unchanged => Vec::new(),
                GetExDeadline::Persist => one(GENERIC, "persist", key),
                GetExDeadline::Set(_) => one(GENERIC, "expire", key),
            },
            StringOp::GetEx { .. } => Vec::new(),
            StringOp::SetBit { key, .. } => one(STRING, "setbit", key),
            StringOp::BitOp { dest, .. } if is_live(dest) => one(STRING, "set", dest),
            StringOp::BitOp { .. } => Vec::new(),
            StringOp::PfAdd { key, .. } if positive => one(STRING, "pfadd", key),
            StringOp::PfAdd { .. } | StringOp::PfDebug { .. } => Vec::new(),
            StringOp::PfMerge { dest, .. } => one(STRING, "pfadd", dest),
            // Redis counts a change when a write ran (not stopped by
            // OVERFLOW FAIL) and the string is not what it was.
            StringOp::BitField { key, fields } => {
                let wrote = match outcome {
                    Outcome::Array(answers) => fields
                        .iter()
                        .zip(answers)
                        .any(|(f, a)| f.action != FieldAction::Get && !matches!(a, Outcome::Nil)),
                    _ => false,
                };
                let after = super::strings::get_string(&state.db, key, now)
                    .ok()
                    .flatten();
                if wrote && after != before.string.as_ref() {
                    one(STRING, "setbit", key)
                } else {
                    Vec::new()
                }
            }
        },
        Op::Key(op) => match op {
            KeyOp::Rename { from, to, .. } if from != to && !matches!(outcome, Outcome::Int(0)) => {
                vec![
                    (GENERIC, "rename_from", from.clone()),
                    (GENERIC, "rename_to", to.clone()),
                ]
            }
            KeyOp::Copy { to, .. } if positive => one(GENERIC, "copy_to", to),
            KeyOp::Move { key, .. } if positive => one(GENERIC, "move_from", key),
            KeyOp::Expire { key, .. } if positive && is_live(key) => one(GENERIC, "expire", key),
            KeyOp::Persist { key } if positive => one(GENERIC, "persist", key),
            KeyOp::SortStore { destination, .. } if positive => one(LIST, "sortstore", destination),
            KeyOp::Restore { key, .. } if state.db.peek(key, now).is_some() => {
                one(GENERIC, "restore", key)
            }
            _ => Vec::new(),
        },
        Op::Hash(op) => match op {
            HashOp::Set { key, .. } => one(HASH, "hset", key),
            HashOp::SetNx { key, .. } if positive => one(HASH, "hset", key),
            HashOp::Del { key, .. } if positive => one(HASH, "hdel", key),
            HashOp::IncrBy { key, .. } => one(HASH, "hincrby", key),
            HashOp::IncrByFloat { key, .. } => one(HASH, "hincrbyfloat", key),
            _ => Vec::new(),
        },
        Op::Set(op) => match op {
            SetOp::Add { key, .. } if positive => one(SET, "sadd", key),
            SetOp::Rem { key, .. } if positive => one(SET, "srem", key),
            SetOp::Pop { key, .. } if popped => one(SET, "spop", key),
            SetOp::Move {
                source,
                destination,
                ..
            } if positive => vec![
                (SET, "srem", source.clone()),
                (SET, "sadd", destination.clone()),
            ],
            SetOp::Store {
                combine,
                destination,
                ..
            } if is_live(destination) => {
                let event = match combine {
                    Combine::Inter => "sinterstore",
                    Combine::Union => "sunionstore",
                    Combine::Diff => "sdiffstore",
                };
                one(SET, event, destination)
            }
            _ => Vec::new(),
        },
        Op::List(op) => match op {
            ListOp::Push { key, end, .. } if positive => one(LIST, push_name(end), key),
            ListOp::Pop { key, end, .. } if popped => one(LIST, pop_name(end), key),
            ListOp::MultiPop { end, .. } | ListOp::BlockingPop { end, .. } if popped => {
                popped_from().map_or_else(Vec::new, |key| one(LIST, pop_name(end), &key))
            }
            ListOp::Set { key, .. } => one(LIST, "lset", key),
            ListOp::Insert { key, .. } if positive => one(LIST, "linsert", key),
            ListOp::Remove { key, .. } if positive => one(LIST, "lrem", key),
            ListOp::Trim { key, .. } if was_live(key) => one(LIST, "ltrim", key),
            ListOp::Move {
                source,
                destination,
                from,
                to,
            }
            | ListOp::BlockingMove {
                source,
                destination,
                from,
                to,
                ..
            } if popped => vec![
                (LIST, push_name(to), destination.clone()),
                (LIST, pop_name(from), source.clone()),
            ],
            _ => Vec::new(),
        },
        Op::ZSet(op) => match op {
            ZSetOp::Add {
                key,
                pairs,
                options,
            } => {
                let z = match state.db.get(key, now).map(|e| &e.value) {
                    Some(super::Value::ZSet(z)) => Some(z),
                    _ => None,
                };
                let changed = pairs
                    .iter()
                    .zip(&before.scores)
                    .any(|((_, m), old)| z.and_then(|z| z.score(m)) != *old);
                match (changed, options.incr) {
                    (false, _) => Vec::new(),
                    (true, true) => one(ZSET, "zincr", key),
                    (true, false) => one(ZSET, "zadd", key),
                }
            }
            ZSetOp::Rem { key, .. } if positive => one(ZSET, "zrem", key),
            ZSetOp::RemRange { key, by } if positive => {
                let event = match by {
                    RangeBy::Rank { .. } => "zremrangebyrank",
                    RangeBy::Score(_) => "zremrangebyscore",
                    RangeBy::Lex(_) => "zremrangebylex",
                };
                one(ZSET, event, key)
            }
            ZSetOp::Pop { key, max, .. } if popped => {
                one(ZSET, if *max { "zpopmax" } else { "zpopmin" }, key)
            }
            ZSetOp::BlockingPop { max, .. } | ZSetOp::MultiPop { max, .. } if popped => {
                popped_from().map_or_else(Vec::new, |key| {
                    one(ZSET, if *max { "zpopmax" } else { "zpopmin" }, &key)
                })
            }
            ZSetOp::Store { dest, combine } if is_live(dest) => {
                let event = match combine.op {
                    super::zsets::SetOp::Union => "zunionstore",
                    super::zsets::SetOp::Inter => "zinterstore",
                    super::zsets::SetOp::Diff => "zdiffstore",
                };
                one(ZSET, event, dest)
            }
            ZSetOp::RangeStore { dest, .. } if is_live(dest) => one(ZSET, "zrangestore", dest),
            ZSetOp::GeoStore { to, .. } if is_live(&to.dest) => {
                let event = if to.geosearch {
                    "geosearchstore"
                } else {
                    "georadiusstore"
                };
                one(ZSET, event, &to.dest)
            }
            _ => Vec::new(),
        },
        Op::Stream(op) => stream_events(state, now, op, outcome, before),
        _ => Vec::new(),
    }
}

/// Publishes the events of an applied op.
pub(super) fn after(state: &mut State, now: u64, op: &Op, result: &OpResult, before: Before) {
    let mut events: Vec<(u32, &'static str, Bytes)> = Vec::new();
    let mut deleted = Vec::new();
    // RENAME moves the value: the source is not deleted, it is renamed.
    let moved = matches!(op, Op::Key(KeyOp::Rename { .. } | KeyOp::Move { .. }));
    let evicted = matches!(op, Op::Evict(_));
    for (key, was) in &before.keys {
        let now_seen = seen(state, key, now);
        match (was, now_seen) {
            // Found dead and taken away (or replaced): it expired.
            (Seen::Expired, Seen::Absent | Seen::Live) => {
                events.push((EXPIRED, "expired", key.clone()))
            }
            (Seen::Live, Seen::Absent) if evicted => events.push((EVICTED, "evicted", key.clone())),
            (Seen::Live, Seen::Absent | Seen::Expired) if !moved => {
                deleted.push((GENERIC, "del", key.clone()))
            }
            _ => {}
        }
        if *was != Seen::Live && now_seen == Seen::Live {
            events.push((NEW, "new", key.clone()));
        }
    }
    if let Ok(outcome) = result {
        events.extend(command_events(state, now, op, outcome, &before));
    }
    events.extend(deleted);
    events.dedup();
    // Deliveries recorded while the op ran (for the waiters it served)
    // go after its own.
    let served = state
        .deliveries
        .split_off(before.mark.min(state.deliveries.len()));
    for (class, event, key) in events {
        publish_event(state, class, event, key);
    }
    state.deliveries.extend(served);
}

/// Publishes one keyspace event of the current database, if its class is on.
fn publish_event(state: &mut State, class: u32, event: &'static str, key: Bytes) {
    let flags = state.coord.ext.notify;
    if flags & class == 0 {
        return;
    }
    let db = state.current_db();
    if flags & KEYSPACE != 0 {
        let channel = [format!("__keyspace@{db}__:").as_bytes(), &key].concat();
        publish(
            state,
            false,
            &Bytes::from(channel),
            &Bytes::from_static(event.as_bytes()),
        );
    }
    if flags & KEYEVENT != 0 {
        let channel = format!("__keyevent@{db}__:{event}");
        publish(state, false, &Bytes::from(channel), &key);
    }
}

/// The events of a key that MOVE or COPY ... DB wrote into the current
/// database (the source's come from the op, in its database).
pub(super) fn arrived(state: &mut State, key: &Bytes, event: &'static str, created: bool) {
    if created {
        publish_event(state, NEW, "new", key.clone());
    }
    publish_event(state, GENERIC, event, key.clone());
}

/// True when keyspace notifications are on.
pub(super) fn enabled(state: &State) -> bool {
    state.coord.ext.notify != 0
}

/// Runs the command of a waiting client that a later op serves, with the
/// events it sends as if it ran then; `op` is that command as an op, given
/// only when notifications are on.
pub(super) fn serving(
    state: &mut State,
    now: u64,
    op: Option<&Op>,
    run: impl FnOnce(&mut State) -> Outcome,
) -> Outcome {
    let before = op.and_then(|op| before(state, now, op));
    let outcome = run(state);
    if let (Some(op), Some(before)) = (op, before) {
        after(state, now, op, &Ok(outcome.clone()), before);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::golden::Harness;
    use crate::state::pubsub::{Kind, PubSubOp, Push, Subscriber};

    /// A harness with one client subscribed to `*` and the given flags:
    /// returns it and a function listing the messages since the last call
    /// as `channel message`.
    fn listening(flags: &str) -> Harness {
        let mut h = Harness::new(1_000);
        let who = Subscriber {
            node: 1,
            boot: 1,
            client: 1,
        };
        let subscribe = PubSubOp::Subscribe {
            who,
            kind: Kind::Pattern,
            names: vec![Bytes::from_static(b"*")],
        };
        h.apply(&Op::PubSub(subscribe)).expect("subscribes");
        let flags = parse_flags(flags.as_bytes()).expect("valid flags");
        h.apply(&Op::PubSub(PubSubOp::NotifyKeyspaceEvents { flags }))
            .expect("sets the flags");
        h
    }

    fn heard(h: &mut Harness) -> Vec<String> {
        h.state
            .take_deliveries()
            .into_iter()
            .map(|d| {
                let Push::PMessage { channel, .. } = d.push else {
                    panic!("a pattern subscriber hears pmessages");
                };
                format!(
                    "{} {}",
                    String::from_utf8_lossy(&channel),
                    String::from_utf8_lossy(&d.payload)
                )
            })
            .collect()
    }

    fn run(h: &mut Harness, lines: &[&str]) -> Vec<String> {
        for line in lines {
            h.run_line(line);
        }
        heard(h)
    }

    #[test]
    fn commands_send_redis_event_names_on_both_channels() {
        let mut h = listening("KEA");
        assert_eq!(
            run(&mut h, &["SET foo bar"]),
            ["__keyspace@0__:foo set", "__keyevent@0__:set foo"]
        );
        let mut h = listening("Kl");
        assert_eq!(
            run(
                &mut h,
                &["SET foo bar", "LPUSH l a", "RPUSH l b", "RPOP l", "LPOP l"]
            ),
            [
                "__keyspace@0__:l lpush",
                "__keyspace@0__:l rpush",
                "__keyspace@0__:l rpop",
                "__keyspace@0__:l lpop",
            ]
        );
        let mut h = listening("Kg");
        assert_eq!(
            run(
                &mut h,
                &["SET foo bar", "EXPIRE foo 10", "DEL foo", "DEL foo"]
            ),
            ["__keyspace@0__:foo expire", "__keyspace@0__:foo del"]
        );
    }

    #[test]
    fn restore_sends_restore_new_and_del() {
        // DUMP of the string "hello".
        let payload = r#""\x00\x05hello\n\x00cr\xdfve4 \n""#;
        let mut h = listening("Kgn");
        assert_eq!(
            run(
                &mut h,
                &[
                    &format!("RESTORE r 0 {payload}"),
                    &format!("RESTORE r 0 {payload}"),
                    &format!("RESTORE r 0 {payload} REPLACE"),
                    &format!("RESTORE r 1 {payload} REPLACE ABSTTL"),
                    &format!("RESTORE r 1 {payload} ABSTTL"),
                ]
            ),
            [
                "__keyspace@0__:r new",
                "__keyspace@0__:r restore",
                "__keyspace@0__:r restore",
                "__keyspace@0__:r del",
            ]
        );
    }

    #[test]
    fn sort_store_sends_sortstore_or_del_for_its_destination() {
        let mut h = listening("Kgl");
        assert_eq!(
            run(
                &mut h,
                &[
                    "RPUSH l 2 1",
                    "SORT l STORE d",
                    "SORT l",
                    "SORT nothing STORE d",
                    "SORT nothing STORE d",
                ]
            ),
            [
                "__keyspace@0__:l rpush",
                "__keyspace@0__:d sortstore",
                "__keyspace@0__:d del",
            ]
        );
    }

    #[test]
    fn stream_commands_send_their_events_and_consumers_made_on_the_way() {
        // Redis 7.0's "stream events test", then trimming and deleting.
        let mut h = listening("Kt");
        let said = run(
            &mut h,
            &[
                "XGROUP CREATE s g $ MKSTREAM",
                "XGROUP CREATECONSUMER s g Bob",
                "XGROUP CREATECONSUMER s g Bob",
                "XADD s 1 f A",
                "XREADGROUP GROUP g Alice STREAMS s >",
                "XCLAIM s g Mike 0 1-0 FORCE",
                "XGROUP DELCONSUMER s g Lee",
                "XAUTOCLAIM s g Bob 0 1-0",
                "XGROUP DELCONSUMER s g Bob",
                "XADD s MAXLEN 1 2 f B",
                "XTRIM s MAXLEN 5",
                "XDEL s 9-9",
                "XDEL s 2-0",
                "XSETID s 5-0",
                "XGROUP SETID s g 0",
                "XGROUP DESTROY s nope",
                "XGROUP DESTROY s g",
            ],
        );
        assert_eq!(
            said,
            [
                "__keyspace@0__:s xgroup-create",
                "__keyspace@0__:s xgroup-createconsumer",
                "__keyspace@0__:s xadd",
                "__keyspace@0__:s xgroup-createconsumer",
                "__keyspace@0__:s xgroup-createconsumer",
                "__keyspace@0__:s xgroup-delconsumer",
                "__keyspace@0__:s xadd",
                "__keyspace@0__:s xtrim",
                "__keyspace@0__:s xdel",
                "__keyspace@0__:s xsetid",
                "__keyspace@0__:s xgroup-setid",
                "__keyspace@0__:s xgroup-destroy",
            ]
        );
    }

    #[test]
    fn geo_writes_fire_what_redis_fires() {
        // Recorded from Redis 7.0.15 with notify-keyspace-events KEA.
        let mut h = listening("Kgz$");
        let said = run(
            &mut h,
            &[
                "GEOADD g 1 1 a 2 2 b",
                "GEOADD g 1 1 a",
                "GEOADD g XX 3 3 c",
                "GEORADIUS g 1 1 500 km STORE d",
                "GEORADIUS g 1 1 500 km STOREDIST d",
                "GEOSEARCHSTORE e g FROMLONLAT 1 1 BYRADIUS 500 km",
                "GEORADIUS g 50 50 1 km STORE d",
                "GEOSEARCHSTORE e nokey FROMMEMBER a BYRADIUS 1 km",
                "SET s x",
                "GEORADIUS g 1 1 500 km STORE s",
                "GEOSEARCHSTORE n g FROMLONLAT 1 1 BYRADIUS 1 km",
                "GEORADIUS g 1 1 500 km STORE d WITHDIST",
            ],
        );
        assert_eq!(
            said,
            [
                "__keyspace@0__:g zadd",
                "__keyspace@0__:d georadiusstore",
                "__keyspace@0__:d georadiusstore",
                "__keyspace@0__:e geosearchstore",
                "__keyspace@0__:d del",
                "__keyspace@0__:e del",
                "__keyspace@0__:s set",
                "__keyspace@0__:s georadiusstore",
                "__keyspace@0__:n geosearchstore",
            ]
        );
    }

    #[test]
    fn only_changes_are_notified() {
        let mut h = listening("Ksz");
        let said = run(
            &mut h,
            &[
                "SADD s a b",
                "SREM s x",
                "SADD s a",
                "SREM s a b",
                "ZADD z 1 a",
                "ZADD z 1 a",
                "ZADD z 2 a",
                "ZINCRBY z 1 a",
                "ZREM z x",
            ],
        );
        assert_eq!(
            said,
            [
                "__keyspace@0__:s sadd",
                "__keyspace@0__:s srem",
                "__keyspace@0__:z zadd",
                "__keyspace@0__:z zadd",
                "__keyspace@0__:z zincr",
            ]
        );
    }

    #[test]
    fn new_del_and_expired_follow_the_key() {
        let mut h = listening("Egxn");
        let said = run(
            &mut h,
            &["SET foo bar", "SET foo baz", "HSET h f v", "HDEL h f"],
        );
        assert_eq!(
            said,
            [
                "__keyevent@0__:new foo",
                "__keyevent@0__:new h",
                "__keyevent@0__:del h",
            ]
        );
        h.run_line("SET t v PX 100");
        heard(&mut h);
        h.now += 100;
        h.sweep();
        assert_eq!(heard(&mut h), ["__keyevent@0__:expired t"]);
    }

    #[test]
    fn a_served_waiter_sends_its_events_after_the_serving_op() {
        let mut h = listening("Klz");
        let said = run(
            &mut h,
            &["BLPOP l 0", "LPUSH l a", "BZPOPMIN z 0", "ZADD z 1 m"],
        );
        assert_eq!(
            said,
            [
                "__keyspace@0__:l lpush",
                "__keyspace@0__:l lpop",
                "__keyspace@0__:z zadd",
                "__keyspace@0__:z zpopmin",
            ]
        );
    }

    #[test]
    fn nothing_is_sent_when_off() {
        let mut h = listening("");
        assert!(run(&mut h, &["SET foo bar", "DEL foo"]).is_empty());
    }

    #[test]
    fn flags_read_and_print_as_redis_does() {
        let text = |s: &str| flags_text(parse_flags(s.as_bytes()).expect("valid flags"));
        assert_eq!(text("gKE"), "gKE");
        assert_eq!(text("$lshzxeKE"), "$lshzxeKE");
        assert_eq!(text("KA"), "AK");
        assert_eq!(text("EA"), "AE");
        assert_eq!(text(""), "");
        assert_eq!(text("Kn"), "Kn");
        assert!(parse_flags(b"Kq").is_none());
    }
}
