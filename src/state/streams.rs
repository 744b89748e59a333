//! Streams: append-only logs of field/value entries with consumer groups,
//! as Redis 7.0 serves them (XADD, XRANGE, XREAD, XREADGROUP, XACK,
//! XPENDING, XCLAIM, XAUTOCLAIM, XINFO, XSETID, XGROUP).
//!
//! A stream is an ordered map from entry ID `(ms, seq)` to its fields, with
//! the counters Redis 7.0 keeps beside it (last generated ID, entries
//! added, largest deleted ID) so that XINFO and the consumer-group lag come
//! out as Redis computes them. Every map is ordered (`BTreeMap`), so every
//! replica walks groups, consumers and pending lists alike.
//!
//! Time is the log's: an automatic ID (`*`) takes the entry's time, never a
//! clock, and delivery times in the pending lists are entry times. Idle
//! times are computed against the entry time for writes and the reader's
//! `now` for reads.
//!
//! Redis stores entries in radix-tree nodes of up to 100 entries and
//! `MAXLEN ~` / `MINID ~` only ever drop whole nodes. To keep the counts
//! Redis answers, each entry remembers the node it was appended to (a new
//! node starts after 100 appends, or when the tail node was emptied), and
//! approximate trimming drops whole nodes the same way. Node bytes
//! (`stream-node-max-bytes`) are not modelled, so streams of very large
//! entries trim more finely than Redis would.
//!
//! XREAD BLOCK and XREADGROUP BLOCK wait like BLPOP: a ticket stands in the
//! line of each of its keys, and after every applied op the state looks at
//! the keys somebody waits on. A plain reader is served once its key holds
//! an entry past its ID; a group reader once the group has undelivered
//! entries, and it hears an error when its key is deleted, changes type or
//! loses its group (as Redis 7.0's XREADGROUP does). A waiter is served
//! with the one key that became ready, longest waiting first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{Db, Value};
use super::strings::parse_i64;
use super::timers::{self, KeyWaiters, Ticket, Timer, WaitsOnKeys};
use super::{OpResult, Outcome, State, StateError};

/// Entries per radix-tree node, Redis's `stream-node-max-entries` default.
const NODE_MAX_ENTRIES: u32 = 100;

/// The default LIMIT of approximate trimming: 100 nodes' worth.
pub const APPROX_TRIM_LIMIT: u64 = 100 * NODE_MAX_ENTRIES as u64;

/// A stream entry ID: milliseconds and a sequence number.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> Self {
        StreamId { ms, seq }
    }

    /// The next ID up; None past the last possible one.
    pub fn next(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The next ID down; None below 0-0.
    pub fn prev(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    fn bulk(self) -> Outcome {
        Outcome::Bulk(Bytes::from(self.to_string()))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// The stream errors, with Redis 7.0's texts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StreamError {
    #[error("ERR Invalid stream ID specified as stream command argument")]
    InvalidId,
    #[error("ERR The ID specified in XADD is equal or smaller than the target stream top item")]
    AddIdTooSmall,
    /// What Redis 7.0 answers when `ms-*` has no sequence left.
    #[error("ERR Elements are too large to be stored")]
    TooLarge,
    #[error("ERR The ID specified in XADD must be greater than 0-0")]
    AddIdZero,
    #[error("ERR The stream has exhausted the last possible ID, unable to add more items")]
    Exhausted,
    #[error("ERR invalid start ID for the interval")]
    InvalidStart,
    #[error("ERR invalid end ID for the interval")]
    InvalidEnd,
    #[error(
        "NOGROUP No such key '{key}' or consumer group '{group}' in XREADGROUP with GROUP option"
    )]
    NoGroupRead { key: String, group: String },
    #[error("NOGROUP No such key '{key}' or consumer group '{group}'")]
    NoKeyOrGroup { key: String, group: String },
    #[error("NOGROUP No such consumer group '{group}' for key name '{key}'")]
    NoGroupForKey { key: String, group: String },
    #[error("ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.")]
    GroupNeedsKey,
    #[error("BUSYGROUP Consumer Group name already exists")]
    BusyGroup,
    #[error("NOGROUP the consumer group this client was blocked on no longer exists")]
    GroupGone,
    #[error("UNBLOCKED the stream key no longer exists")]
    KeyGone,
    #[error("ERR The ID specified in XSETID is smaller than the target stream top item")]
    SetIdBelowTop,
    #[error("ERR The entries_added specified in XSETID is smaller than the target stream length")]
    EntriesAddedBelowLength,
    #[error("ERR Invalid min-idle-time argument for XCLAIM")]
    ClaimMinIdle,
    #[error("ERR Invalid IDLE option argument for XCLAIM")]
    ClaimIdle,
    #[error("ERR Invalid TIME option argument for XCLAIM")]
    ClaimTime,
    #[error("ERR Invalid RETRYCOUNT option argument for XCLAIM")]
    ClaimRetryCount,
    #[error("ERR Unrecognized XCLAIM option '{0}'")]
    ClaimOption(String),
    #[error("ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.")]
    GreaterOutsideGroup,
    #[error("ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.")]
    LastInGroup,
    #[error(
        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {command} HELP."
    )]
    SubcommandSyntax { command: String, sub: String },
}

fn text(bytes: &Bytes) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// An unsigned 64-bit number as Redis's `string2ull` reads it.
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// How an argument may spell an ID.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IdForm {
    /// `-` and `+` allowed (XRANGE, XGROUP SETID).
    Loose,
    /// Only `ms[-seq]`.
    Strict,
}

/// `ms-seq`, `ms` (the sequence is `missing_seq`), and with
/// [`IdForm::Loose`] `-` and `+`.
fn parse_id_with(arg: &[u8], missing_seq: u64, form: IdForm) -> Result<StreamId, StreamError> {
    if arg.len() > 127 {
        return Err(StreamError::InvalidId);
    }
    match arg {
        b"-" if form == IdForm::Loose => return Ok(StreamId::MIN),
        b"+" if form == IdForm::Loose => return Ok(StreamId::MAX),
        _ => {}
    }
    let (ms, seq) = match arg.iter().position(|&b| b == b'-') {
        Some(dash) => (&arg[..dash], Some(&arg[dash + 1..])),
        None => (arg, None),
    };
    let ms = parse_u64(ms).ok_or(StreamError::InvalidId)?;
    let seq = match seq {
        Some(seq) => parse_u64(seq).ok_or(StreamError::InvalidId)?,
        None => missing_seq,
    };
    Ok(StreamId::new(ms, seq))
}

/// A complete ID argument (`ms-seq` or `ms`, which means `ms-0`).
pub fn parse_id(arg: &[u8]) -> Result<StreamId, StreamError> {
    parse_id_with(arg, 0, IdForm::Strict)
}

/// An ID that may be `-` or `+` (XGROUP SETID).
pub fn parse_loose_id(arg: &[u8]) -> Result<StreamId, StreamError> {
    parse_id_with(arg, 0, IdForm::Loose)
}

/// One end of an XRANGE / XPENDING interval: `-`, `+`, `ms[-seq]` (the
/// missing sequence is the lowest for a start, the highest for an end) or
/// an exclusive `(ms[-seq]`.
pub fn parse_bound(arg: &[u8], end: bool) -> Result<StreamId, StreamError> {
    let missing_seq = if end { u64::MAX } else { 0 };
    if arg.len() > 1 && arg[0] == b'(' {
        let id = parse_id_with(&arg[1..], missing_seq, IdForm::Strict)?;
        return if end {
            id.prev().ok_or(StreamError::InvalidEnd)
        } else {
            id.next().ok_or(StreamError::InvalidStart)
        };
    }
    parse_id_with(arg, missing_seq, IdForm::Loose)
}

/// The ID XADD asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AddId {
    /// `*`: the entry's time, or past the last ID.
    Auto,
    /// `ms-*`: the next sequence within `ms`.
    AutoSeq(u64),
    Explicit(StreamId),
}

impl AddId {
    pub fn parse(arg: &[u8]) -> Result<AddId, StreamError> {
        if arg == b"*" {
            return Ok(AddId::Auto);
        }
        if let Some(ms) = arg.strip_suffix(b"-*") {
            if arg.len() <= 127 {
                return parse_u64(ms)
                    .map(AddId::AutoSeq)
                    .ok_or(StreamError::InvalidId);
            }
        }
        parse_id(arg).map(AddId::Explicit)
    }
}

/// What a trim keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Threshold {
    /// At most this many entries.
    MaxLen(u64),
    /// No entry below this ID.
    MinId(StreamId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trim {
    pub threshold: Threshold,
    /// `~`: only whole nodes go.
    pub approx: bool,
    /// The most entries one trim removes; 0 for no limit.
    pub limit: u64,
}

/// Where XREADGROUP reads a key from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadId {
    /// `>`: the group's undelivered entries.
    New,
    /// The consumer's pending entries after this ID.
    After(StreamId),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StreamOp {
    /// XADD. Outcome: the new ID, or nil with NOMKSTREAM and no stream.
    Add {
        key: Bytes,
        no_mkstream: bool,
        trim: Option<Trim>,
        id: AddId,
        fields: Vec<Bytes>,
    },
    /// XTRIM. Outcome: the number of entries removed.
    Trim { key: Bytes, trim: Trim },
    /// XDEL: IDs are checked once the stream is found, as Redis does.
    Del { key: Bytes, ids: Vec<Bytes> },
    /// XGROUP CREATE. `id` None is `$`; `entries_read` -1 is unknown.
    GroupCreate {
        key: Bytes,
        group: Bytes,
        id: Bytes,
        mkstream: bool,
        entries_read: i64,
    },
    /// XGROUP SETID.
    GroupSetId {
        key: Bytes,
        group: Bytes,
        id: Bytes,
        entries_read: i64,
    },
    /// XGROUP DESTROY. Outcome: 1 or 0.
    GroupDestroy { key: Bytes, group: Bytes },
    /// XGROUP CREATECONSUMER. Outcome: 1 if created.
    CreateConsumer {
        key: Bytes,
        group: Bytes,
        consumer: Bytes,
    },
    /// XGROUP DELCONSUMER. Outcome: its pending count.
    DelConsumer {
        key: Bytes,
        group: Bytes,
        consumer: Bytes,
    },
    /// XREAD with BLOCK (without, it is a query). Outcome: a map of keys
    /// to entries, the null array, or Blocked.
    Read {
        keys: Vec<Bytes>,
        ids: Vec<Bytes>,
        count: u64,
        /// 0 waits without a limit.
        block_ms: u64,
        ticket: Ticket,
    },
    /// XREADGROUP. `ids` are checked in order with the keys' types.
    ReadGroup {
        group: Bytes,
        consumer: Bytes,
        keys: Vec<Bytes>,
        ids: Vec<Bytes>,
        count: u64,
        noack: bool,
        block_ms: Option<u64>,
        ticket: Ticket,
    },
    /// XACK: IDs checked once the group is found.
    Ack {
        key: Bytes,
        group: Bytes,
        ids: Vec<Bytes>,
    },
    /// XCLAIM: everything after the consumer, checked once the group is
    /// found (`min-idle-time id [id ...] [options]`).
    Claim {
        key: Bytes,
        group: Bytes,
        consumer: Bytes,
        args: Vec<Bytes>,
    },
    /// XAUTOCLAIM, arguments already checked.
    AutoClaim {
        key: Bytes,
        group: Bytes,
        consumer: Bytes,
        min_idle: u64,
        start: StreamId,
        count: u64,
        justid: bool,
    },
    /// XSETID, arguments already checked.
    SetId {
        key: Bytes,
        id: StreamId,
        entries_added: Option<u64>,
        max_deleted: Option<StreamId>,
    },
}

/// XPENDING's extended form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingRange {
    pub min_idle: i64,
    pub start: StreamId,
    pub end: StreamId,
    pub count: u64,
    pub consumer: Option<Bytes>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StreamQuery {
    Len {
        key: Bytes,
    },
    /// XRANGE / XREVRANGE: `start` and `end` inclusive, low to high.
    Range {
        key: Bytes,
        start: StreamId,
        end: StreamId,
        /// None: all.
        count: Option<u64>,
        rev: bool,
    },
    /// XREAD without BLOCK.
    Read {
        keys: Vec<Bytes>,
        ids: Vec<Bytes>,
        count: u64,
    },
    Pending {
        key: Bytes,
        group: Bytes,
        range: Option<PendingRange>,
    },
    /// XINFO STREAM, its options checked once the stream is found.
    InfoStream {
        key: Bytes,
        /// The subcommand as the client spelled it, for the syntax error.
        sub: Bytes,
        options: Vec<Bytes>,
    },
    InfoGroups {
        key: Bytes,
    },
    InfoConsumers {
        key: Bytes,
        group: Bytes,
    },
    /// XGROUP HELP and XINFO HELP: these lines as status replies.
    Help(Vec<String>),
}

/// One entry: its fields and the node it was appended to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct StreamEntry {
    fields: Vec<Bytes>,
    node: u64,
}

/// A pending (delivered, unacknowledged) entry of a group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Nack {
    consumer: Bytes,
    delivery_time: u64,
    delivery_count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Consumer {
    seen_time: u64,
    pending: BTreeSet<StreamId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Group {
    last_id: StreamId,
    /// The logical read counter; -1 when unknown.
    entries_read: i64,
    pending: BTreeMap<StreamId, Nack>,
    consumers: BTreeMap<Bytes, Consumer>,
}

/// One stream.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stream {
    entries: BTreeMap<StreamId, StreamEntry>,
    last_id: StreamId,
    max_deleted: StreamId,
    entries_added: u64,
    groups: BTreeMap<Bytes, Group>,
    /// The node appends go to, and how many it has taken.
    tail_node: u64,
    tail_count: u32,
}

impl Stream {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `group` has a consumer named `consumer` (keyspace events
    /// tell consumers created or deleted by a command).
    pub fn has_consumer(&self, group: &Bytes, consumer: &Bytes) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| g.consumers.contains_key(consumer))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn first_id(&self) -> StreamId {
        self.entries
            .first_key_value()
            .map_or(StreamId::MIN, |(id, _)| *id)
    }

    /// The last entry still present (Redis's `streamLastValidID`).
    fn last_valid_id(&self) -> Option<StreamId> {
        self.entries.last_key_value().map(|(id, _)| *id)
    }

    fn append(&mut self, id: StreamId, fields: Vec<Bytes>) {
        let tail_in_use = self
            .entries
            .last_key_value()
            .is_some_and(|(_, e)| e.node == self.tail_node);
        if !tail_in_use || self.tail_count >= NODE_MAX_ENTRIES {
            self.tail_node += 1;
            self.tail_count = 0;
        }
        self.tail_count += 1;
        let node = self.tail_node;
        self.entries.insert(id, StreamEntry { fields, node });
        self.last_id = id;
        self.entries_added += 1;
    }

    fn delete(&mut self, id: StreamId) -> bool {
        if self.entries.remove(&id).is_none() {
            return false;
        }
        self.max_deleted = self.max_deleted.max(id);
        true
    }

    /// Removes entries from the head as `trim` says; returns how many.
    fn trim(&mut self, trim: &Trim) -> u64 {
        let mut deleted = 0u64;
        loop {
            let len = self.entries.len() as u64;
            if let Threshold::MaxLen(max) = trim.threshold {
                if len <= max {
                    break;
                }
            }
            let Some((_, head)) = self.entries.first_key_value() else {
                break;
            };
            let node = head.node;
            let ids: Vec<StreamId> = self
                .entries
                .iter()
                .take_while(|(_, e)| e.node == node)
                .map(|(id, _)| *id)
                .collect();
            let count = ids.len() as u64;
            if trim.limit > 0 && deleted + count > trim.limit {
                break;
            }
            let whole = match trim.threshold {
                Threshold::MaxLen(max) => len - count >= max,
                Threshold::MinId(min) => ids.last().is_some_and(|last| *last < min),
            };
            if whole {
                for id in &ids {
                    self.entries.remove(id);
                }
                deleted += count;
                continue;
            }
            if trim.approx {
                break;
            }
            for id in ids {
                let done = match trim.threshold {
                    Threshold::MaxLen(max) => self.entries.len() as u64 <= max,
                    Threshold::MinId(min) => id >= min,
                };
                if done {
                    break;
                }
                self.entries.remove(&id);
                deleted += 1;
            }
            break;
        }
        deleted
    }

    /// Redis's `streamRangeHasTombstones` from `start` to the end.
    fn has_tombstones_from(&self, start: StreamId) -> bool {
        if self.entries.is_empty() || self.max_deleted.is_zero() {
            return false;
        }
        if self.first_id() > self.max_deleted {
            return false;
        }
        start <= self.max_deleted
    }

    /// Redis's `streamEstimateDistanceFromFirstEverEntry`: the read
    /// counter of `id`, or -1 when it cannot be known.
    fn estimate_read_counter(&self, id: StreamId) -> i64 {
        let added = self.entries_added as i64;
        if self.entries_added == 0 {
            return 0;
        }
        if self.entries.is_empty() && id <= self.last_id {
            return added;
        }
        if id == self.last_id {
            return added;
        }
        if id > self.last_id {
            return -1;
        }
        let first = self.first_id();
        if self.max_deleted.is_zero() || self.max_deleted < first {
            let len = self.entries.len() as i64;
            if id < first {
                return added - len;
            }
            if id == first {
                return added - len + 1;
            }
        }
        -1
    }

    /// A group's lag, or None when Redis answers null.
    fn lag(&self, group: &Group) -> Option<i64> {
        let added = self.entries_added as i64;
        if self.entries_added == 0 {
            return Some(0);
        }
        if group.entries_read != -1 && !self.has_tombstones_from(group.last_id) {
            return Some(added - group.entries_read);
        }
        match self.estimate_read_counter(group.last_id) {
            -1 => None,
            read => Some(added - read),
        }
    }

    fn entry_reply(&self, id: StreamId) -> Option<Outcome> {
        self.entries.get(&id).map(|e| entry_outcome(id, e))
    }

    /// The entries from `start` to `end` inclusive (`count` 0: all).
    fn range(&self, start: StreamId, end: StreamId, count: u64, rev: bool) -> Vec<Outcome> {
        if start > end {
            return Vec::new();
        }
        let limit = if count == 0 {
            usize::MAX
        } else {
            usize::try_from(count).unwrap_or(usize::MAX)
        };
        let range = self.entries.range(start..=end);
        let entries: Box<dyn Iterator<Item = (&StreamId, &StreamEntry)>> = if rev {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        entries
            .take(limit)
            .map(|(id, e)| entry_outcome(*id, e))
            .collect()
    }

    /// The nodes holding entries (XINFO's radix-tree-keys).
    fn node_count(&self) -> usize {
        let mut nodes = 0;
        let mut last = None;
        for entry in self.entries.values() {
            if last != Some(entry.node) {
                nodes += 1;
                last = Some(entry.node);
            }
        }
        nodes
    }
}

fn entry_outcome(id: StreamId, entry: &StreamEntry) -> Outcome {
    Outcome::Array(vec![
        id.bulk(),
        Outcome::Array(entry.fields.iter().cloned().map(Outcome::Bulk).collect()),
    ])
}

impl Group {
    fn new(last_id: StreamId, entries_read: i64) -> Self {
        Group {
            last_id,
            entries_read,
            pending: BTreeMap::new(),
            consumers: BTreeMap::new(),
        }
    }

    /// The consumer `name`, created if new; its seen time becomes `now`.
    fn touch(&mut self, name: &Bytes, now: u64) -> &mut Consumer {
        let consumer = self
            .consumers
            .entry(name.clone())
            .or_insert_with(|| Consumer {
                seen_time: now,
                pending: BTreeSet::new(),
            });
        consumer.seen_time = now;
        consumer
    }

    /// Drops `id` from the group's and its owner's pending lists.
    fn forget_pending(&mut self, id: StreamId) -> bool {
        let Some(nack) = self.pending.remove(&id) else {
            return false;
        };
        if let Some(owner) = self.consumers.get_mut(&nack.consumer) {
            owner.pending.remove(&id);
        }
        true
    }

    /// Makes `consumer` the owner of the pending entry `id`.
    fn assign(&mut self, id: StreamId, consumer: &Bytes) {
        let Some(nack) = self.pending.get_mut(&id) else {
            return;
        };
        if nack.consumer != *consumer {
            let old = std::mem::replace(&mut nack.consumer, consumer.clone());
            if let Some(owner) = self.consumers.get_mut(&old) {
                owner.pending.remove(&id);
            }
        }
        if let Some(owner) = self.consumers.get_mut(consumer) {
            owner.pending.insert(id);
        }
    }
}

/// Delivers the entries after the group's last ID (up to `count`, 0: all)
/// to `consumer`, as XREADGROUP `>` does.
fn deliver_new(
    stream: &mut Stream,
    group_name: &Bytes,
    consumer: &Bytes,
    count: u64,
    noack: bool,
    now: u64,
) -> Vec<Outcome> {
    let Some(group) = stream.groups.get(group_name) else {
        return Vec::new();
    };
    let Some(start) = group.last_id.next() else {
        return Vec::new();
    };
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count).unwrap_or(usize::MAX)
    };
    let ids: Vec<StreamId> = stream
        .entries
        .range(start..)
        .take(limit)
        .map(|(id, _)| *id)
        .collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let valid_counter =
            stream.groups[group_name].entries_read != -1 && !stream.has_tombstones_from(id);
        let estimate = stream.estimate_read_counter(id);
        let added = stream.entries_added;
        if let Some(reply) = stream.entry_reply(id) {
            out.push(reply);
        }
        let Some(group) = stream.groups.get_mut(group_name) else {
            break;
        };
        if id > group.last_id {
            if valid_counter {
                group.entries_read += 1;
            } else if added > 0 {
                group.entries_read = estimate;
            }
            group.last_id = id;
        }
        if noack {
            continue;
        }
        let nack = Nack {
            consumer: consumer.clone(),
            delivery_time: now,
            delivery_count: 1,
        };
        // A pending entry with this ID (after SETID moved the group back)
        // changes owner.
        if let Some(old) = group.pending.insert(id, nack) {
            if old.consumer != *consumer {
                if let Some(c) = group.consumers.get_mut(&old.consumer) {
                    c.pending.remove(&id);
                }
            }
        }
        if let Some(c) = group.consumers.get_mut(consumer) {
            c.pending.insert(id);
        }
    }
    out
}

/// Re-delivers `consumer`'s pending entries from `start` (XREADGROUP with
/// an ID): a deleted entry comes back as `[id, nil]`.
fn deliver_history(
    stream: &mut Stream,
    group_name: &Bytes,
    consumer: &Bytes,
    start: StreamId,
    count: u64,
    now: u64,
) -> Vec<Outcome> {
    let Some(group) = stream.groups.get(group_name) else {
        return Vec::new();
    };
    let Some(owner) = group.consumers.get(consumer) else {
        return Vec::new();
    };
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count).unwrap_or(usize::MAX)
    };
    let ids: Vec<StreamId> = owner.pending.range(start..).take(limit).copied().collect();
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        match stream.entry_reply(id) {
            Some(reply) => {
                out.push(reply);
                if let Some(nack) = stream
                    .groups
                    .get_mut(group_name)
                    .and_then(|g| g.pending.get_mut(&id))
                {
                    nack.delivery_time = now;
                    nack.delivery_count += 1;
                }
            }
            None => out.push(Outcome::Array(vec![id.bulk(), Outcome::NilArray])),
        }
    }
    out
}

/// The stream at `key` for a read: None when absent, WRONGTYPE otherwise.
pub(super) fn stream<'a>(
    db: &'a Db,
    key: &Bytes,
    now: u64,
) -> Result<Option<&'a Stream>, StateError> {
    match db.get(key, now).map(|e| &e.value) {
        None => Ok(None),
        Some(Value::Stream(s)) => Ok(Some(s)),
        Some(_) => Err(StateError::WrongType),
    }
}

/// The stream at `key` for a write (an expired key is purged first).
fn stream_mut<'a>(
    db: &'a mut Db,
    key: &Bytes,
    now: u64,
) -> Result<Option<&'a mut Stream>, StateError> {
    match db.get_mut(key, now) {
        None => Ok(None),
        Some(Value::Stream(s)) => Ok(Some(s)),
        Some(_) => Err(StateError::WrongType),
    }
}

fn new_stream(db: &mut Db, key: &Bytes) {
    db.insert(key.clone(), Value::Stream(Box::default()), None);
}

/// The group `group` of the stream at `key`, for commands whose error
/// for a missing key or group is `NOGROUP No such key ... or consumer group`.
fn group_mut<'a>(
    db: &'a mut Db,
    key: &Bytes,
    group: &Bytes,
    now: u64,
) -> Result<&'a mut Stream, StateError> {
    match stream_mut(db, key, now)? {
        Some(s) if s.groups.contains_key(group) => Ok(s),
        _ => Err(StreamError::NoKeyOrGroup {
            key: text(key),
            group: text(group),
        }
        .into()),
    }
}

fn ids_of(args: &[Bytes]) -> Result<Vec<StreamId>, StateError> {
    args.iter()
        .map(|a| parse_id(a).map_err(StateError::from))
        .collect()
}

pub fn apply(state: &mut State, now: u64, op: &StreamOp) -> OpResult {
    let db = &mut state.db;
    match op {
        StreamOp::Add {
            key,
            no_mkstream,
            trim,
            id,
            fields,
        } => {
            if *id == AddId::Explicit(StreamId::MIN) {
                return Err(StreamError::AddIdZero.into());
            }
            if stream_mut(db, key, now)?.is_none() {
                if *no_mkstream {
                    return Ok(Outcome::Nil);
                }
                new_stream(db, key);
            }
            let Some(s) = stream_mut(db, key, now)? else {
                return Ok(Outcome::Nil);
            };
            if s.last_id == StreamId::MAX {
                return Err(StreamError::Exhausted.into());
            }
            let new_id = match *id {
                AddId::Auto => {
                    if now > s.last_id.ms {
                        StreamId::new(now, 0)
                    } else {
                        s.last_id.next().ok_or(StreamError::Exhausted)?
                    }
                }
                AddId::AutoSeq(ms) if ms == s.last_id.ms => {
                    if s.last_id.seq == u64::MAX {
                        return Err(StreamError::TooLarge.into());
                    }
                    StreamId::new(ms, s.last_id.seq + 1)
                }
                AddId::AutoSeq(ms) => StreamId::new(ms, 0),
                AddId::Explicit(id) => id,
            };
            if new_id <= s.last_id {
                return Err(StreamError::AddIdTooSmall.into());
            }
            // Copies: the op's fields are slices of the buffer it came in.
            s.append(
                new_id,
                fields.iter().map(|f| Bytes::copy_from_slice(f)).collect(),
            );
            if let Some(trim) = trim {
                s.trim(trim);
            }
            Ok(new_id.bulk())
        }
        StreamOp::Trim { key, trim } => Ok(Outcome::Int(
            stream_mut(db, key, now)?.map_or(0, |s| s.trim(trim)) as i64,
        )),
        StreamOp::Del { key, ids } => {
            let Some(s) = stream_mut(db, key, now)? else {
                return Ok(Outcome::Int(0));
            };
            let ids = ids_of(ids)?;
            let deleted = ids.into_iter().filter(|id| s.delete(*id)).count();
            Ok(Outcome::Int(deleted as i64))
        }
        StreamOp::GroupCreate {
            key,
            group,
            id,
            mkstream,
            entries_read,
        } => {
            let exists = stream_mut(db, key, now)?.is_some();
            if !exists && !mkstream {
                return Err(StreamError::GroupNeedsKey.into());
            }
            let last = stream(db, key, now)?.map_or(StreamId::MIN, |s| s.last_id);
            let start = if id.as_ref() == b"$" {
                last
            } else {
                parse_id(id)?
            };
            if !exists {
                new_stream(db, key);
            }
            let Some(s) = stream_mut(db, key, now)? else {
                return Err(StreamError::GroupNeedsKey.into());
            };
            if s.groups.contains_key(group) {
                return Err(StreamError::BusyGroup.into());
            }
            s.groups
                .insert(group.clone(), Group::new(start, *entries_read));
            Ok(Outcome::Ok)
        }
        StreamOp::GroupSetId {
            key,
            group,
            id,
            entries_read,
        } => {
            let s = existing_group(db, key, group, now)?;
            let last_id = if id.as_ref() == b"$" {
                s.last_id
            } else {
                parse_loose_id(id)?
            };
            if let Some(g) = s.groups.get_mut(group) {
                g.last_id = last_id;
                g.entries_read = *entries_read;
            }
            Ok(Outcome::Ok)
        }
        StreamOp::GroupDestroy { key, group } => {
            let Some(s) = stream_mut(db, key, now)? else {
                return Err(StreamError::GroupNeedsKey.into());
            };
            Ok(Outcome::bool(s.groups.remove(group).is_some()))
        }
        StreamOp::CreateConsumer {
            key,
            group,
            consumer,
        } => {
            let s = existing_group(db, key, group, now)?;
            let Some(g) = s.groups.get_mut(group) else {
                return Ok(Outcome::Int(0));
            };
            if g.consumers.contains_key(consumer) {
                return Ok(Outcome::Int(0));
            }
            g.touch(consumer, now);
            Ok(Outcome::Int(1))
        }
        StreamOp::DelConsumer {
            key,
            group,
            consumer,
        } => {
            let s = existing_group(db, key, group, now)?;
            let Some(g) = s.groups.get_mut(group) else {
                return Ok(Outcome::Int(0));
            };
            let Some(c) = g.consumers.remove(consumer) else {
                return Ok(Outcome::Int(0));
            };
            for id in &c.pending {
                g.pending.remove(id);
            }
            Ok(Outcome::Int(c.pending.len() as i64))
        }
        StreamOp::Read {
            keys,
            ids,
            count,
            block_ms,
            ticket,
        } => {
            let resolved = resolve_read_ids(&state.db, now, keys, ids)?;
            let served = read_plain(&state.db, now, keys, &resolved, *count);
            if !served.is_empty() {
                return Ok(Outcome::Map(served));
            }
            let waiter = Waiter {
                keys: keys.clone(),
                ids: resolved,
                group: None,
                count: *count,
                gives_up: None,
            };
            Ok(block(state, now, waiter, *block_ms, *ticket))
        }
        StreamOp::ReadGroup {
            group,
            consumer,
            keys,
            ids,
            count,
            noack,
            block_ms,
            ticket,
        } => read_group(
            state,
            now,
            ReadGroupArgs {
                group,
                consumer,
                keys,
                ids,
                count: *count,
                noack: *noack,
            },
            *block_ms,
            *ticket,
        ),
        StreamOp::Ack { key, group, ids } => {
            let g = match stream_mut(db, key, now)? {
                Some(s) => s.groups.get_mut(group),
                None => None,
            };
            let Some(g) = g else {
                return Ok(Outcome::Int(0));
            };
            let ids = ids_of(ids)?;
            let acked = ids.into_iter().filter(|id| g.forget_pending(*id)).count();
            Ok(Outcome::Int(acked as i64))
        }
        StreamOp::Claim {
            key,
            group,
            consumer,
            args,
        } => {
            let s = group_mut(db, key, group, now)?;
            claim(s, group, consumer, args, now)
        }
        StreamOp::AutoClaim {
            key,
            group,
            consumer,
            min_idle,
            start,
            count,
            justid,
        } => {
            let s = group_mut(db, key, group, now)?;
            Ok(auto_claim(
                s, group, consumer, *min_idle, *start, *count, *justid, now,
            ))
        }
        StreamOp::SetId {
            key,
            id,
            entries_added,
            max_deleted,
        } => {
            let Some(s) = stream_mut(db, key, now)? else {
                return Err(StateError::NoSuchKey);
            };
            if let Some(top) = s.last_valid_id() {
                if *id < top {
                    return Err(StreamError::SetIdBelowTop.into());
                }
                if entries_added.is_some_and(|added| (s.len() as u64) > added) {
                    return Err(StreamError::EntriesAddedBelowLength.into());
                }
            }
            s.last_id = *id;
            if let Some(added) = entries_added {
                s.entries_added = *added;
            }
            if let Some(max) = max_deleted.filter(|m| !m.is_zero()) {
                s.max_deleted = max;
            }
            Ok(Outcome::Ok)
        }
    }
}

/// The stream at `key` with its group `group`, for XGROUP's subcommands
/// that need both.
fn existing_group<'a>(
    db: &'a mut Db,
    key: &Bytes,
    group: &Bytes,
    now: u64,
) -> Result<&'a mut Stream, StateError> {
    let Some(s) = stream_mut(db, key, now)? else {
        return Err(StreamError::GroupNeedsKey.into());
    };
    if !s.groups.contains_key(group) {
        return Err(StreamError::NoGroupForKey {
            key: text(key),
            group: text(group),
        }
        .into());
    }
    Ok(s)
}

/// XREAD's IDs, `$` resolved against the streams as they are now; the
/// keys' types are checked in order as the IDs are.
fn resolve_read_ids(
    db: &Db,
    now: u64,
    keys: &[Bytes],
    ids: &[Bytes],
) -> Result<Vec<StreamId>, StateError> {
    keys.iter()
        .zip(ids)
        .map(|(key, id)| {
            let s = stream(db, key, now)?;
            match id.as_ref() {
                b"$" => Ok(s.map_or(StreamId::MIN, |s| s.last_id)),
                b">" => Err(StateError::from(StreamError::GreaterOutsideGroup)),
                _ => Ok(parse_id(id)?),
            }
        })
        .collect()
}

/// What XREAD has for its keys now: `(key, entries)` for each key with
/// entries past its ID.
fn read_plain(
    db: &Db,
    now: u64,
    keys: &[Bytes],
    ids: &[StreamId],
    count: u64,
) -> Vec<(Outcome, Outcome)> {
    let mut served = Vec::new();
    for (key, after) in keys.iter().zip(ids) {
        let Ok(Some(s)) = stream(db, key, now) else {
            continue;
        };
        if s.last_valid_id().is_none_or(|last| last <= *after) {
            continue;
        }
        let Some(start) = after.next() else {
            continue;
        };
        let entries = s.range(start, StreamId::MAX, count, false);
        served.push((Outcome::Bulk(key.clone()), Outcome::Array(entries)));
    }
    served
}

struct ReadGroupArgs<'a> {
    group: &'a Bytes,
    consumer: &'a Bytes,
    keys: &'a [Bytes],
    ids: &'a [Bytes],
    count: u64,
    noack: bool,
}

fn read_group(
    state: &mut State,
    now: u64,
    args: ReadGroupArgs<'_>,
    block_ms: Option<u64>,
    ticket: Ticket,
) -> OpResult {
    let ReadGroupArgs {
        group,
        consumer,
        keys,
        ids,
        count,
        noack,
    } = args;
    let mut starts = Vec::with_capacity(keys.len());
    for (key, id) in keys.iter().zip(ids) {
        let has_group = stream(&state.db, key, now)?.is_some_and(|s| s.groups.contains_key(group));
        if !has_group {
            return Err(StreamError::NoGroupRead {
                key: text(key),
                group: text(group),
            }
            .into());
        }
        starts.push(match id.as_ref() {
            b"$" => return Err(StreamError::LastInGroup.into()),
            b">" => ReadId::New,
            _ => match parse_id(id)? {
                // The last possible ID is how Redis spells `>` inside.
                StreamId::MAX => ReadId::New,
                after => ReadId::After(after),
            },
        });
    }
    let mut served = Vec::new();
    for (key, start) in keys.iter().zip(&starts) {
        let Ok(Some(s)) = stream_mut(&mut state.db, key, now) else {
            continue;
        };
        let Some(g) = s.groups.get(group) else {
            continue;
        };
        let ready = match start {
            ReadId::After(_) => true,
            ReadId::New => s.last_valid_id().is_some_and(|last| last > g.last_id),
        };
        if !ready {
            continue;
        }
        // As in Redis 7.0, a consumer comes to be when it is served.
        if let Some(g) = s.groups.get_mut(group) {
            g.touch(consumer, now);
        }
        let entries = match start {
            ReadId::After(after) => {
                let from = after.next().unwrap_or(StreamId::MAX);
                deliver_history(s, group, consumer, from, count, now)
            }
            ReadId::New => deliver_new(s, group, consumer, count, noack, now),
        };
        served.push((Outcome::Bulk(key.clone()), Outcome::Array(entries)));
    }
    if !served.is_empty() {
        return Ok(Outcome::Map(served));
    }
    let Some(block_ms) = block_ms else {
        return Ok(Outcome::NilArray);
    };
    let waiter = Waiter {
        keys: keys.to_vec(),
        ids: vec![StreamId::MAX; keys.len()],
        group: Some(GroupRead {
            group: group.clone(),
            consumer: consumer.clone(),
            noack,
        }),
        count,
        gives_up: None,
    };
    Ok(block(state, now, waiter, block_ms, ticket))
}

/// XCLAIM, once the group is known to exist.
fn claim(s: &mut Stream, group: &Bytes, consumer: &Bytes, args: &[Bytes], now: u64) -> OpResult {
    let (min_idle, args) = args.split_first().ok_or(StateError::Syntax)?;
    let min_idle = parse_i64(min_idle).ok_or(StreamError::ClaimMinIdle)?.max(0) as u64;
    let mut ids = Vec::new();
    let mut rest = args.iter().peekable();
    while let Some(arg) = rest.peek() {
        match parse_id(arg) {
            Ok(id) => {
                ids.push(id);
                rest.next();
            }
            Err(_) => break,
        }
    }
    let mut delivery: Option<i64> = None;
    let mut retry_count: i64 = -1;
    let mut force = false;
    let mut justid = false;
    let mut last_id = StreamId::MIN;
    let now_i = i64::try_from(now).unwrap_or(i64::MAX);
    let options: Vec<&Bytes> = rest.collect();
    let mut i = 0;
    while i < options.len() {
        let opt = options[i];
        let value = options.get(i + 1);
        let upper = opt.to_ascii_uppercase();
        match (upper.as_slice(), value) {
            (b"FORCE", _) => force = true,
            (b"JUSTID", _) => justid = true,
            (b"IDLE", Some(v)) => {
                let idle = parse_i64(v).ok_or(StreamError::ClaimIdle)?;
                delivery = Some(now_i.saturating_sub(idle));
                i += 1;
            }
            (b"TIME", Some(v)) => {
                delivery = Some(parse_i64(v).ok_or(StreamError::ClaimTime)?);
                i += 1;
            }
            (b"RETRYCOUNT", Some(v)) => {
                retry_count = parse_i64(v).ok_or(StreamError::ClaimRetryCount)?;
                i += 1;
            }
            (b"LASTID", Some(v)) => {
                last_id = parse_id(v)?;
                i += 1;
            }
            _ => return Err(StreamError::ClaimOption(text(opt)).into()),
        }
        i += 1;
    }
    let delivery_time = match delivery {
        Some(t) if (0..=now_i).contains(&t) => t as u64,
        _ => now,
    };
    let exists: Vec<bool> = ids.iter().map(|id| s.entries.contains_key(id)).collect();
    let replies: Vec<Option<Outcome>> = ids.iter().map(|id| s.entry_reply(*id)).collect();
    let Some(g) = s.groups.get_mut(group) else {
        return Ok(Outcome::Array(Vec::new()));
    };
    if last_id > g.last_id {
        g.last_id = last_id;
    }
    let mut out = Vec::new();
    let mut touched = false;
    for ((id, exists), reply) in ids.into_iter().zip(exists).zip(replies) {
        if !exists {
            g.forget_pending(id);
            continue;
        }
        let mut forced = false;
        if force && !g.pending.contains_key(&id) {
            g.pending.insert(
                id,
                Nack {
                    consumer: Bytes::new(),
                    delivery_time: now,
                    delivery_count: 1,
                },
            );
            forced = true;
        }
        let Some(nack) = g.pending.get(&id) else {
            continue;
        };
        if !forced && min_idle > 0 && now.saturating_sub(nack.delivery_time) < min_idle {
            continue;
        }
        if !touched {
            g.touch(consumer, now);
            touched = true;
        }
        g.assign(id, consumer);
        if let Some(nack) = g.pending.get_mut(&id) {
            nack.delivery_time = delivery_time;
            if retry_count >= 0 {
                nack.delivery_count = retry_count as u64;
            } else if !justid {
                nack.delivery_count += 1;
            }
        }
        out.push(if justid {
            id.bulk()
        } else {
            reply.unwrap_or(Outcome::Nil)
        });
    }
    Ok(Outcome::Array(out))
}

#[allow(clippy::too_many_arguments)]
fn auto_claim(
    s: &mut Stream,
    group: &Bytes,
    consumer: &Bytes,
    min_idle: u64,
    start: StreamId,
    count: u64,
    justid: bool,
    now: u64,
) -> Outcome {
    let mut attempts = count.saturating_mul(10);
    let mut count = count;
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let mut cursor = Some(start);
    let mut touched = false;
    while attempts > 0 && count > 0 {
        attempts -= 1;
        let Some(from) = cursor else {
            break;
        };
        let Some(g) = s.groups.get_mut(group) else {
            break;
        };
        let Some((&id, nack)) = g.pending.range(from..).next() else {
            cursor = None;
            break;
        };
        cursor = id.next();
        if !s.entries.contains_key(&id) {
            g.forget_pending(id);
            deleted.push(id.bulk());
            count -= 1;
            continue;
        }
        if min_idle > 0 && now.saturating_sub(nack.delivery_time) < min_idle {
            continue;
        }
        if !touched {
            g.touch(consumer, now);
            touched = true;
        }
        g.assign(id, consumer);
        if let Some(nack) = g.pending.get_mut(&id) {
            nack.delivery_time = now;
            if !justid {
                nack.delivery_count += 1;
            }
        }
        claimed.push(if justid {
            id.bulk()
        } else {
            s.entry_reply(id).unwrap_or(Outcome::Nil)
        });
        count -= 1;
    }
    let next = cursor
        .and_then(|from| {
            s.groups
                .get(group)
                .and_then(|g| g.pending.range(from..).next().map(|(id, _)| *id))
        })
        .unwrap_or(StreamId::MIN);
    Outcome::Array(vec![
        next.bulk(),
        Outcome::Array(claimed),
        Outcome::Array(deleted),
    ])
}

pub fn read(db: &Db, now: u64, query: &StreamQuery) -> OpResult {
    match query {
        StreamQuery::Len { key } => Ok(Outcome::Int(
            stream(db, key, now)?.map_or(0, |s| s.len() as i64),
        )),
        StreamQuery::Range {
            key,
            start,
            end,
            count,
            rev,
        } => {
            if *count == Some(0) {
                return Ok(Outcome::NilArray);
            }
            let Some(s) = stream(db, key, now)? else {
                return Ok(Outcome::Array(Vec::new()));
            };
            Ok(Outcome::Array(s.range(
                *start,
                *end,
                count.unwrap_or(0),
                *rev,
            )))
        }
        StreamQuery::Read { keys, ids, count } => {
            let resolved = resolve_read_ids(db, now, keys, ids)?;
            let served = read_plain(db, now, keys, &resolved, *count);
            Ok(if served.is_empty() {
                Outcome::NilArray
            } else {
                Outcome::Map(served)
            })
        }
        StreamQuery::Pending { key, group, range } => {
            let g = stream(db, key, now)?.and_then(|s| s.groups.get(group));
            let Some(g) = g else {
                return Err(StreamError::NoKeyOrGroup {
                    key: text(key),
                    group: text(group),
                }
                .into());
            };
            Ok(match range {
                None => pending_summary(g),
                Some(range) => pending_range(g, range, now),
            })
        }
        StreamQuery::Help(lines) => Ok(Outcome::Array(
            lines.iter().map(|l| Outcome::Status(l.clone())).collect(),
        )),
        StreamQuery::InfoStream { key, sub, options } => {
            let s = stream(db, key, now)?.ok_or(StateError::NoSuchKey)?;
            let syntax = || StreamError::SubcommandSyntax {
                command: "XINFO".to_owned(),
                sub: text(sub),
            };
            let full = match options.as_slice() {
                [] => None,
                [f] if f.eq_ignore_ascii_case(b"FULL") => Some(10),
                [f, c, n]
                    if f.eq_ignore_ascii_case(b"FULL") && c.eq_ignore_ascii_case(b"COUNT") =>
                {
                    let n = parse_i64(n).ok_or(StateError::NotInteger)?;
                    Some(if n < 0 { 10 } else { n as u64 })
                }
                _ => return Err(syntax().into()),
            };
            Ok(match full {
                None => info_stream(s),
                Some(count) => info_stream_full(s, count),
            })
        }
        StreamQuery::InfoGroups { key } => {
            let s = stream(db, key, now)?.ok_or(StateError::NoSuchKey)?;
            let groups = s
                .groups
                .iter()
                .map(|(name, g)| {
                    Outcome::Map(vec![
                        field("name", Outcome::Bulk(name.clone())),
                        field("consumers", Outcome::Int(g.consumers.len() as i64)),
                        field("pending", Outcome::Int(g.pending.len() as i64)),
                        field("last-delivered-id", g.last_id.bulk()),
                        field("entries-read", entries_read(g)),
                        field("lag", s.lag(g).map_or(Outcome::Nil, Outcome::Int)),
                    ])
                })
                .collect();
            Ok(Outcome::Array(groups))
        }
        StreamQuery::InfoConsumers { key, group } => {
            let s = stream(db, key, now)?.ok_or(StateError::NoSuchKey)?;
            let g = s
                .groups
                .get(group)
                .ok_or_else(|| StreamError::NoGroupForKey {
                    key: text(key),
                    group: text(group),
                })?;
            let consumers = g
                .consumers
                .iter()
                .map(|(name, c)| {
                    Outcome::Map(vec![
                        field("name", Outcome::Bulk(name.clone())),
                        field("pending", Outcome::Int(c.pending.len() as i64)),
                        field("idle", Outcome::Int(idle(now, c.seen_time))),
                    ])
                })
                .collect();
            Ok(Outcome::Array(consumers))
        }
    }
}

fn idle(now: u64, since: u64) -> i64 {
    i64::try_from(now.saturating_sub(since)).unwrap_or(i64::MAX)
}

fn field(name: &'static str, value: Outcome) -> (Outcome, Outcome) {
    (Outcome::Bulk(Bytes::from_static(name.as_bytes())), value)
}

fn entries_read(g: &Group) -> Outcome {
    if g.entries_read == -1 {
        Outcome::Nil
    } else {
        Outcome::Int(g.entries_read)
    }
}

fn pending_summary(g: &Group) -> Outcome {
    let (Some((first, _)), Some((last, _))) =
        (g.pending.first_key_value(), g.pending.last_key_value())
    else {
        return Outcome::Array(vec![
            Outcome::Int(0),
            Outcome::Nil,
            Outcome::Nil,
            Outcome::NilArray,
        ]);
    };
    let consumers = g
        .consumers
        .iter()
        .filter(|(_, c)| !c.pending.is_empty())
        .map(|(name, c)| {
            Outcome::Array(vec![
                Outcome::Bulk(name.clone()),
                Outcome::Bulk(Bytes::from(c.pending.len().to_string())),
            ])
        })
        .collect();
    Outcome::Array(vec![
        Outcome::Int(g.pending.len() as i64),
        first.bulk(),
        last.bulk(),
        Outcome::Array(consumers),
    ])
}

fn pending_range(g: &Group, range: &PendingRange, now: u64) -> Outcome {
    let ids: Box<dyn Iterator<Item = StreamId> + '_> = match &range.consumer {
        Some(name) => match g.consumers.get(name) {
            Some(c) if range.start <= range.end => {
                Box::new(c.pending.range(range.start..=range.end).copied())
            }
            _ => return Outcome::Array(Vec::new()),
        },
        None if range.start <= range.end => {
            Box::new(g.pending.range(range.start..=range.end).map(|(id, _)| *id))
        }
        None => return Outcome::Array(Vec::new()),
    };
    let limit = usize::try_from(range.count).unwrap_or(usize::MAX);
    let out = ids
        .filter_map(|id| g.pending.get(&id).map(|nack| (id, nack)))
        .filter(|(_, nack)| range.min_idle <= 0 || idle(now, nack.delivery_time) >= range.min_idle)
        .take(limit)
        .map(|(id, nack)| {
            Outcome::Array(vec![
                id.bulk(),
                Outcome::Bulk(nack.consumer.clone()),
                Outcome::Int(idle(now, nack.delivery_time)),
                Outcome::Int(i64::try_from(nack.delivery_count).unwrap_or(i64::MAX)),
            ])
        })
        .collect();
    Outcome::Array(out)
}

fn info_header(s: &Stream) -> Vec<(Outcome, Outcome)> {
    let keys = s.node_count();
    vec![
        field("length", Outcome::Int(s.len() as i64)),
        field("radix-tree-keys", Outcome::Int(keys as i64)),
        field("radix-tree-nodes", Outcome::Int(keys as i64 + 1)),
        field("last-generated-id", s.last_id.bulk()),
        field("max-deleted-entry-id", s.max_deleted.bulk()),
        field(
            "entries-added",
            Outcome::Int(i64::try_from(s.entries_added).unwrap_or(i64::MAX)),
        ),
        field("recorded-first-entry-id", s.first_id().bulk()),
    ]
}

fn info_stream(s: &Stream) -> Outcome {
    let mut map = info_header(s);
    map.push(field("groups", Outcome::Int(s.groups.len() as i64)));
    let first = s.entries.keys().next().and_then(|id| s.entry_reply(*id));
    let last = s
        .entries
        .keys()
        .next_back()
        .and_then(|id| s.entry_reply(*id));
    map.push(field("first-entry", first.unwrap_or(Outcome::Nil)));
    map.push(field("last-entry", last.unwrap_or(Outcome::Nil)));
    Outcome::Map(map)
}

fn info_stream_full(s: &Stream, count: u64) -> Outcome {
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count).unwrap_or(usize::MAX)
    };
    let mut map = info_header(s);
    map.push(field(
        "entries",
        Outcome::Array(s.range(StreamId::MIN, StreamId::MAX, count, false)),
    ));
    let time = |t: u64| Outcome::Int(i64::try_from(t).unwrap_or(i64::MAX));
    let groups = s
        .groups
        .iter()
        .map(|(name, g)| {
            let pending = g
                .pending
                .iter()
                .take(limit)
                .map(|(id, nack)| {
                    Outcome::Array(vec![
                        id.bulk(),
                        Outcome::Bulk(nack.consumer.clone()),
                        time(nack.delivery_time),
                        time(nack.delivery_count),
                    ])
                })
                .collect();
            let consumers = g
                .consumers
                .iter()
                .map(|(cname, c)| {
                    let pending = c
                        .pending
                        .iter()
                        .take(limit)
                        .filter_map(|id| g.pending.get(id).map(|nack| (id, nack)))
                        .map(|(id, nack)| {
                            Outcome::Array(vec![
                                id.bulk(),
                                time(nack.delivery_time),
                                time(nack.delivery_count),
                            ])
                        })
                        .collect();
                    Outcome::Map(vec![
                        field("name", Outcome::Bulk(cname.clone())),
                        field("seen-time", time(c.seen_time)),
                        field("pel-count", Outcome::Int(c.pending.len() as i64)),
                        field("pending", Outcome::Array(pending)),
                    ])
                })
                .collect();
            Outcome::Map(vec![
                field("name", Outcome::Bulk(name.clone())),
                field("last-delivered-id", g.last_id.bulk()),
                field("entries-read", entries_read(g)),
                field("lag", s.lag(g).map_or(Outcome::Nil, Outcome::Int)),
                field("pel-count", Outcome::Int(g.pending.len() as i64)),
                field("pending", Outcome::Array(pending)),
                field("consumers", Outcome::Array(consumers)),
            ])
        })
        .collect();
    map.push(field("groups", Outcome::Array(groups)));
    Outcome::Map(map)
}

/// Clients blocked in XREAD BLOCK / XREADGROUP BLOCK.
pub type Waiters = KeyWaiters<Waiter>;

/// The group side of a blocked XREADGROUP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct GroupRead {
    group: Bytes,
    consumer: Bytes,
    noack: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waiter {
    keys: Vec<Bytes>,
    /// Per key, the ID a plain reader waits to see passed.
    ids: Vec<StreamId>,
    group: Option<GroupRead>,
    count: u64,
    /// When the wait runs out; None waits without a limit.
    gives_up: Option<u64>,
}

impl WaitsOnKeys for Waiter {
    fn keys(&self) -> &[Bytes] {
        &self.keys
    }
}

/// Queues `ticket` on each of its keys. An unassigned ticket (a client
/// that cannot wait) hears the timeout's answer at once.
fn block(
    state: &mut State,
    now: u64,
    mut waiter: Waiter,
    block_ms: u64,
    ticket: Ticket,
) -> Outcome {
    if !ticket.is_assigned() {
        return Outcome::NilArray;
    }
    forget(state, ticket);
    waiter.gives_up = (block_ms > 0).then(|| timers::deadline(now, block_ms));
    if let Some(at) = waiter.gives_up {
        state.coord.timers.schedule(Timer::StreamWait(ticket), at);
    }
    state.coord.stream_waiters.insert(ticket, waiter);
    Outcome::Blocked {
        ticket,
        timeout_ms: block_ms,
    }
}

/// Removes `ticket`'s wait and its give-up timer.
fn forget(state: &mut State, ticket: Ticket) -> Option<Waiter> {
    let waiter = state.coord.stream_waiters.remove(ticket)?;
    if let Some(at) = waiter.gives_up {
        state.coord.timers.cancel(Timer::StreamWait(ticket), at);
    }
    Some(waiter)
}

/// True when `waiter` has an answer from `key` now: entries past its ID
/// (or its group's cursor), or, for a group reader, an error because the
/// key or the group went.
fn is_ready(db: &Db, now: u64, key: &Bytes, waiter: &Waiter) -> bool {
    let s = match stream(db, key, now) {
        Ok(Some(s)) => s,
        _ => return waiter.group.is_some(),
    };
    let after = match &waiter.group {
        None => match waiter.keys.iter().position(|k| k == key) {
            Some(at) => waiter.ids[at],
            None => return false,
        },
        Some(read) => match s.groups.get(&read.group) {
            Some(g) => g.last_id,
            None => return true,
        },
    };
    s.last_valid_id().is_some_and(|last| last > after)
}

/// Serves a waiter that [`is_ready`] on `key`.
fn serve_one(state: &mut State, now: u64, key: &Bytes, waiter: &Waiter) -> Outcome {
    let Some(read) = &waiter.group else {
        let at = waiter.keys.iter().position(|k| k == key).unwrap_or(0);
        let start = waiter.ids.get(at).and_then(|id| id.next());
        let entries = match (stream(&state.db, key, now), start) {
            (Ok(Some(s)), Some(start)) => s.range(start, StreamId::MAX, waiter.count, false),
            _ => Vec::new(),
        };
        return Outcome::Map(vec![(Outcome::Bulk(key.clone()), Outcome::Array(entries))]);
    };
    let s = match stream_mut(&mut state.db, key, now) {
        Ok(Some(s)) => s,
        _ => return Outcome::Error(StreamError::KeyGone.into()),
    };
    let Some(g) = s.groups.get_mut(&read.group) else {
        return Outcome::Error(StreamError::GroupGone.into());
    };
    g.touch(&read.consumer, now);
    let entries = deliver_new(
        s,
        &read.group,
        &read.consumer,
        waiter.count,
        read.noack,
        now,
    );
    Outcome::Map(vec![(Outcome::Bulk(key.clone()), Outcome::Array(entries))])
}

/// Serves the waiters of every waited key that has something for them,
/// longest waiting first. Run after each op; a waiter is only looked at
/// (never copied) until it is ready.
pub(super) fn serve_waiters(state: &mut State, now: u64) {
    if state.coord.stream_waiters.is_empty() {
        return;
    }
    let keys: Vec<Bytes> = state.coord.stream_waiters.waited_keys().cloned().collect();
    for key in keys {
        for ticket in state.coord.stream_waiters.line(&key) {
            let ready = state
                .coord
                .stream_waiters
                .get(ticket)
                .is_some_and(|w| is_ready(&state.db, now, &key, w));
            if !ready {
                continue;
            }
            if let Some(waiter) = forget(state, ticket) {
                let outcome = serve_one(state, now, &key, &waiter);
                state.wake(ticket, outcome);
            }
        }
    }
}

/// A waiter's wait ran out (or a transaction cannot wait): it hears the
/// null array. Records the answer as a wake-up.
pub(super) fn give_up(state: &mut State, ticket: Ticket) {
    if forget(state, ticket).is_some() {
        state.wake(ticket, Outcome::NilArray);
    }
}

pub(super) fn is_waiting(state: &State, ticket: Ticket) -> bool {
    state.coord.stream_waiters.contains(ticket)
}

/// The client behind `ticket` left: drop its wait without an answer.
pub(super) fn unblock(state: &mut State, ticket: Ticket) -> bool {
    forget(state, ticket).is_some()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::resp::Reply;
    use crate::state::golden::{render, Harness};
    use crate::state::Op;

    const START: u64 = 1_700_000_000_000;

    fn bulk(s: &str) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    /// The model's entries as XRANGE renders them.
    fn entries(model: &[(StreamId, String)], rev: bool, count: usize) -> String {
        let mut items: Vec<&(StreamId, String)> = model.iter().collect();
        if rev {
            items.reverse();
        }
        let shown: Vec<String> = items
            .into_iter()
            .take(count)
            .map(|(id, v)| format!("[\"{id}\", [\"f\", \"{v}\"]]"))
            .collect();
        format!("[{}]", shown.join(", "))
    }

    #[derive(Clone, Debug)]
    enum Step {
        Add { ms: u64, seq: Option<u64> },
        Del { ms: u64, seq: u64 },
        TrimLen(u64),
        TrimMin(u64),
        Range { rev: bool, count: usize },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u64..20, prop::option::of(0u64..3)).prop_map(|(ms, seq)| Step::Add { ms, seq }),
            2 => (0u64..20, 0u64..3).prop_map(|(ms, seq)| Step::Del { ms, seq }),
            1 => (0u64..6).prop_map(Step::TrimLen),
            1 => (0u64..20).prop_map(Step::TrimMin),
            1 => (any::<bool>(), 1usize..5).prop_map(|(rev, count)| Step::Range { rev, count }),
        ]
    }

    /// XADD, XDEL, XTRIM and XRANGE against a sorted vector.
    fn run_model(steps: &[Step]) -> Result<(), TestCaseError> {
        let mut h = Harness::new(START);
        let mut model: Vec<(StreamId, String)> = Vec::new();
        let mut last = StreamId::MIN;
        let mut added = 0u64;
        let mut exists = false;
        for (n, step) in steps.iter().enumerate() {
            let value = n.to_string();
            let (line, expected) = match step {
                Step::Add { ms, seq } => {
                    let id = match seq {
                        Some(seq) => StreamId::new(*ms, *seq),
                        None if *ms == last.ms => StreamId::new(*ms, last.seq + 1),
                        None => StreamId::new(*ms, 0),
                    };
                    let arg = seq.map_or(format!("{ms}-*"), |seq| format!("{ms}-{seq}"));
                    let expected = if seq.is_some() && id.is_zero() {
                        "(error) ERR The ID specified in XADD must be greater than 0-0".to_owned()
                    } else if id <= last {
                        "(error) ERR The ID specified in XADD is equal or smaller than the target stream top item".to_owned()
                    } else {
                        model.push((id, value.clone()));
                        last = id;
                        added += 1;
                        exists = true;
                        format!("\"{id}\"")
                    };
                    (format!("XADD s {arg} f {value}"), expected)
                }
                Step::Del { ms, seq } => {
                    let id = StreamId::new(*ms, *seq);
                    let before = model.len();
                    model.retain(|(i, _)| *i != id);
                    (
                        format!("XDEL s {id}"),
                        format!("(integer) {}", before - model.len()),
                    )
                }
                Step::TrimLen(max) => {
                    let drop = model.len().saturating_sub(*max as usize);
                    model.drain(..drop);
                    (format!("XTRIM s MAXLEN {max}"), format!("(integer) {drop}"))
                }
                Step::TrimMin(ms) => {
                    let min = StreamId::new(*ms, 0);
                    let before = model.len();
                    model.retain(|(i, _)| *i >= min);
                    (
                        format!("XTRIM s MINID {ms}"),
                        format!("(integer) {}", before - model.len()),
                    )
                }
                Step::Range { rev, count } => {
                    let line = if *rev {
                        format!("XREVRANGE s + - COUNT {count}")
                    } else {
                        format!("XRANGE s - + COUNT {count}")
                    };
                    (line, entries(&model, *rev, *count))
                }
            };
            let got = render(&h.run_line(&line), false);
            prop_assert_eq!(&got, &expected, "{}", line);
            let all = render(&h.run_line("XRANGE s - +"), false);
            prop_assert_eq!(all, entries(&model, false, usize::MAX));
            let len = render(&h.run_line("XLEN s"), false);
            prop_assert_eq!(len, format!("(integer) {}", model.len()));
            if exists {
                let info = h.run_line("XINFO STREAM s");
                let Reply::Map(fields) = info else {
                    return Err(TestCaseError::fail("XINFO STREAM is a map"));
                };
                let get = |name: &str| {
                    fields
                        .iter()
                        .find(|(k, _)| *k == bulk(name))
                        .map(|(_, v)| render(v, false))
                };
                prop_assert_eq!(get("last-generated-id"), Some(format!("\"{last}\"")));
                prop_assert_eq!(get("entries-added"), Some(format!("(integer) {added}")));
            }
        }
        Ok(())
    }

    #[derive(Clone, Debug)]
    enum GroupStep {
        Add,
        Read { consumer: usize, count: u64 },
        Ack { pick: usize },
        Claim { consumer: usize, pick: usize },
    }

    fn group_step() -> impl Strategy<Value = GroupStep> {
        prop_oneof![
            3 => Just(GroupStep::Add),
            3 => (0usize..3, 0u64..3).prop_map(|(consumer, count)| GroupStep::Read { consumer, count }),
            2 => (0usize..8).prop_map(|pick| GroupStep::Ack { pick }),
            1 => (0usize..3, 0usize..8).prop_map(|(consumer, pick)| GroupStep::Claim { consumer, pick }),
        ]
    }

    fn ids_of_reply(reply: &Reply) -> Vec<String> {
        let mut out = Vec::new();
        if let Reply::KeyedArrays(streams) = reply {
            for (_, entries) in streams {
                if let Reply::Array(entries) = entries {
                    for e in entries {
                        if let Reply::Array(parts) = e {
                            if let Some(Reply::Bulk(id)) = parts.first() {
                                out.push(String::from_utf8_lossy(id).into_owned());
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Group delivery: every entry is delivered by `>` exactly once, in
    /// order, and is then pending (with its owner) until acknowledged.
    fn run_group(steps: &[GroupStep]) -> Result<(), TestCaseError> {
        let mut h = Harness::new(START);
        h.run_line("XGROUP CREATE s g $ MKSTREAM");
        let mut added: Vec<String> = Vec::new();
        let mut delivered = 0usize;
        // Pending entries and their owners, in ID order.
        let mut pending: BTreeMap<StreamId, usize> = BTreeMap::new();
        for step in steps {
            h.now += 1;
            match step {
                GroupStep::Add => {
                    let reply = render(&h.run_line("XADD s * f v"), false);
                    added.push(reply.trim_matches('"').to_owned());
                }
                GroupStep::Read { consumer, count } => {
                    let reply = h.run_line(&format!(
                        "XREADGROUP GROUP g c{consumer} COUNT {count} STREAMS s >"
                    ));
                    let got = ids_of_reply(&reply);
                    let take = if *count == 0 {
                        added.len() - delivered
                    } else {
                        (*count as usize).min(added.len() - delivered)
                    };
                    let expected: Vec<String> = added[delivered..delivered + take].to_vec();
                    prop_assert_eq!(&got, &expected);
                    delivered += take;
                    for id in got {
                        let id = parse_id(id.as_bytes())
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                        pending.insert(id, *consumer);
                    }
                }
                GroupStep::Ack { pick } => {
                    let Some(id) = added.get(*pick).cloned() else {
                        continue;
                    };
                    let parsed =
                        parse_id(id.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let was = pending.remove(&parsed).is_some();
                    let reply = render(&h.run_line(&format!("XACK s g {id}")), false);
                    prop_assert_eq!(reply, format!("(integer) {}", was as i64));
                }
                GroupStep::Claim { consumer, pick } => {
                    let Some(id) = added.get(*pick).cloned() else {
                        continue;
                    };
                    let parsed =
                        parse_id(id.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let reply = render(
                        &h.run_line(&format!("XCLAIM s g c{consumer} 0 {id} JUSTID")),
                        false,
                    );
                    if let Some(owner) = pending.get_mut(&parsed) {
                        *owner = *consumer;
                        prop_assert_eq!(reply, format!("[\"{id}\"]"));
                    } else {
                        prop_assert_eq!(reply, "[]");
                    }
                }
            }
            let summary = h.run_line("XPENDING s g");
            let Reply::Array(parts) = summary else {
                return Err(TestCaseError::fail("XPENDING is an array"));
            };
            prop_assert_eq!(&parts[0], &Reply::Int(pending.len() as i64));
            let detail = render(&h.run_line("XPENDING s g - + 100"), false);
            let shown: Vec<String> = pending
                .iter()
                .map(|(id, c)| format!("[\"{id}\", \"c{c}\", "))
                .collect();
            for part in shown {
                prop_assert!(detail.contains(&part), "{} in {}", part, detail);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn a_stream_agrees_with_a_sorted_vector(steps in prop::collection::vec(step(), 1..40)) {
            run_model(&steps)?;
        }

        #[test]
        fn a_group_delivers_every_entry_once(steps in prop::collection::vec(group_step(), 1..40)) {
            run_group(&steps)?;
        }
    }

    #[test]
    fn streams_groups_and_waiters_survive_a_snapshot() {
        let mut h = Harness::new(START);
        for line in [
            "XADD s 1-0 a 1",
            "XADD s 2-0 b 2",
            "XGROUP CREATE s g 0",
            "XREADGROUP GROUP g alice COUNT 1 STREAMS s >",
            "XDEL s 2-0",
            "XREAD BLOCK 500 STREAMS s $",
        ] {
            h.run_line(line);
        }
        let state = &h.state;
        assert!(!state.coord.stream_waiters.is_empty());
        let restored = State::decode_snapshot(&state.encode_snapshot()).unwrap();
        assert_eq!(&restored, state);
        assert_eq!(restored.digest(), state.digest());
    }

    #[test]
    fn a_wait_without_a_ticket_answers_at_once() {
        let mut state = State::new();
        let op = Op::Stream(StreamOp::Read {
            keys: vec![Bytes::from_static(b"s")],
            ids: vec![Bytes::from_static(b"$")],
            count: 0,
            block_ms: 0,
            ticket: Ticket::default(),
        });
        assert_eq!(state.apply(1, 10, &op), Ok(Outcome::NilArray));
        assert!(state.coord.stream_waiters.is_empty());
    }

    #[test]
    fn giving_up_answers_the_null_array_and_cancels_the_timer() {
        let mut state = State::new();
        let ticket = Ticket { node: 1, seq: 1 };
        let op = Op::Stream(StreamOp::Read {
            keys: vec![Bytes::from_static(b"s")],
            ids: vec![Bytes::from_static(b"0")],
            count: 0,
            block_ms: 1000,
            ticket,
        });
        assert!(matches!(
            state.apply(1, 10, &op),
            Ok(Outcome::Blocked { .. })
        ));
        give_up(&mut state, ticket);
        assert!(state.coord.timers.is_empty());
        let wakeups = state.take_wakeups();
        assert_eq!(wakeups.len(), 1);
        assert_eq!(wakeups[0].outcome, Outcome::NilArray);
    }

    #[test]
    fn ids_parse_as_redis_reads_them() {
        assert_eq!(parse_id(b"5"), Ok(StreamId::new(5, 0)));
        assert_eq!(parse_bound(b"5", true), Ok(StreamId::new(5, u64::MAX)));
        assert_eq!(parse_bound(b"(5-0", false), Ok(StreamId::new(5, 1)));
        assert_eq!(parse_bound(b"(5-0", true), Ok(StreamId::new(4, u64::MAX)));
        assert_eq!(parse_bound(b"(-", false), Err(StreamError::InvalidId));
        assert_eq!(parse_id(b"-"), Err(StreamError::InvalidId));
        assert_eq!(parse_loose_id(b"+"), Ok(StreamId::MAX));
        assert_eq!(
            parse_id(b"18446744073709551616"),
            Err(StreamError::InvalidId)
        );
        assert_eq!(AddId::parse(b"7-*"), Ok(AddId::AutoSeq(7)));
        assert_eq!(AddId::parse(b"*-*"), Err(StreamError::InvalidId));
    }
}
