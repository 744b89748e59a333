//! Sorted sets: members with scores, ordered by score then member bytes.
//!
//! A set lives twice, as Redis keeps a dict beside its skiplist: a
//! [`ScanMap`] from member to score answers ZSCORE in one probe and gives
//! ZSCAN the keyspace's cursor scheme, and an ordered index of
//! `(score, member)` answers every range. The index is a `BTreeSet`, which
//! has no rank: ZRANK and rank ranges walk it, O(rank) where Redis's
//! skiplist is O(log n). Coordination state holds small sets, and a walk is
//! what a replica can do without a second structure to keep consistent.
//! Lexicographic ranges walk the index too, as Redis's listpack encoding
//! does, so sets whose scores differ get the same (documented as undefined)
//! answers as a small Redis set.
//!
//! Scores are never NaN: commands reject NaN arguments, ZADD INCR and
//! ZINCRBY refuse a NaN result, and ZUNIONSTORE's arithmetic turns NaN into
//! 0 as Redis does. That makes the index's order total; `-0` and `0` rank
//! equal (ties go to the member bytes) but each keeps its sign, as in Redis.
//!
//! BZPOPMIN and BZPOPMAX wait when all their keys are empty. Each key has a
//! queue of waiting tickets, first come first served across clients; after
//! every applied op the state looks at the keys someone waits on, and for
//! each that now holds a non-empty sorted set it runs the waiters' pops
//! again in queue order, as Redis re-executes a blocked command when its key
//! becomes ready. So whatever fills a key (ZADD, ZUNIONSTORE, RENAME, a
//! guarded write) serves its waiters in the same op, on every replica.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{Db, ScanMap, SeededRng, Value};
use super::geo::{self, GeoQuery, GeoSearch, StoreTo};
use super::hashes::random_picks;
use super::keys::scan_reply;
use super::timers::{self, KeyWaiters, Ticket, Timer, WaitsOnKeys};
use super::{glob, notify, Op, OpResult, Outcome, State, StateError};

/// A score in the index: ordered numerically, `-0` equal to `0`. Never NaN.
#[derive(Clone, Copy, Debug)]
struct Score(f64);

impl Score {
    /// The value compared: `-0` folded into `0`.
    fn key(self) -> f64 {
        if self.0 == 0.0 {
            0.0
        } else {
            self.0
        }
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().total_cmp(&other.key())
    }
}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Score {}

/// A member's place in the index.
type IndexEntry = (Score, Bytes);

/// One sorted set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ZSet {
    scores: ScanMap<f64>,
    index: BTreeSet<IndexEntry>,
}

/// A member and its score, as ranges and pops return them.
type Scored = (Bytes, f64);

impl ZSet {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    /// Members to scores, in scan order (snapshots, ZSCAN, random picks).
    pub fn scores(&self) -> &ScanMap<f64> {
        &self.scores
    }

    pub fn score(&self, member: &Bytes) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Sets `member`'s score (`score` is not NaN); returns the old one.
    pub fn insert(&mut self, member: Bytes, score: f64) -> Option<f64> {
        let old = self.scores.insert(member.clone(), score);
        if let Some(old) = old {
            self.index.remove(&(Score(old), member.clone()));
        }
        // The score index shares the map's own copy of the member: the
        // caller's is a slice of the buffer the op came in, which it
        // would otherwise hold whole.
        let (stored, _) = self
            .scores
            .get_key_value(&member)
            .expect("the member was just inserted");
        self.index.insert((Score(score), stored.clone()));
        old
    }

    pub fn remove(&mut self, member: &Bytes) -> Option<f64> {
        let old = self.scores.remove(member)?;
        self.index.remove(&(Score(old), member.clone()));
        Some(old)
    }

    /// Every member with its score, lowest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> {
        self.index.iter().map(|(s, m)| (m, s.0))
    }

    /// The members whose score is in `range`, lowest first.
    pub(super) fn by_score(
        &self,
        range: &ScoreRange,
    ) -> impl DoubleEndedIterator<Item = (&Bytes, f64)> {
        let bounds = if range.is_empty() {
            None
        } else {
            Some(range.index_bounds())
        };
        bounds
            .into_iter()
            .flat_map(move |bounds| self.index.range(bounds))
            .map(|(s, m)| (m, s.0))
    }

    /// The 0-based position of `member`, lowest score first, and its score.
    fn rank(&self, member: &Bytes) -> Option<(usize, f64)> {
        let score = self.score(member)?;
        let below = self.index.range(..(Score(score), member.clone())).count();
        Some((below, score))
    }

    /// Removes and returns the lowest (or, with `max`, highest) member.
    fn pop(&mut self, max: bool) -> Option<Scored> {
        let (score, member) = if max {
            self.index.pop_last()?
        } else {
            self.index.pop_first()?
        };
        self.scores.remove(&member);
        Some((member, score.0))
    }
}

/// A score interval, `(` bounds exclusive. Neither end is NaN.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScoreRange {
    pub min: f64,
    pub min_exclusive: bool,
    pub max: f64,
    pub max_exclusive: bool,
}

impl ScoreRange {
    /// True when no score can be inside (Redis's test, before any lookup).
    fn is_empty(&self) -> bool {
        self.min > self.max || (self.min == self.max && (self.min_exclusive || self.max_exclusive))
    }

    /// Index bounds covering exactly the range's scores; the range must not
    /// be empty. An exclusive minimum starts at the next double up, an
    /// inclusive maximum stops before it: the empty member sorts first
    /// among equal scores, so `(score, "")` bounds every member of `score`.
    fn index_bounds(&self) -> (Bound<IndexEntry>, Bound<IndexEntry>) {
        let at = |score: f64| (Score(score), Bytes::new());
        let start = if !self.min_exclusive {
            Bound::Included(at(self.min))
        } else if self.min == f64::INFINITY {
            Bound::Excluded(at(f64::INFINITY))
        } else {
            Bound::Included(at(self.min.next_up()))
        };
        let end = if self.max_exclusive {
            Bound::Excluded(at(self.max))
        } else if self.max == f64::INFINITY {
            Bound::Unbounded
        } else {
            Bound::Excluded(at(self.max.next_up()))
        };
        (start, end)
    }
}

/// One end of a lexicographic range.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LexBound {
    /// `-`: below every member.
    Min,
    /// `+`: above every member.
    Max,
    /// `[member`
    Inclusive(Bytes),
    /// `(member`
    Exclusive(Bytes),
}

impl LexBound {
    /// Where the bound sits: `-1` below everything, `1` above, else 0 and
    /// the bytes it compares with.
    fn position(&self) -> (i8, &[u8]) {
        match self {
            LexBound::Min => (-1, b""),
            LexBound::Max => (1, b""),
            LexBound::Inclusive(m) | LexBound::Exclusive(m) => (0, m),
        }
    }

    fn is_exclusive(&self) -> bool {
        !matches!(self, LexBound::Inclusive(_))
    }

    /// `member` compared with the bound.
    fn compare(&self, member: &[u8]) -> Ordering {
        match self.position() {
            (-1, _) => Ordering::Greater,
            (1, _) => Ordering::Less,
            (_, bytes) => member.cmp(bytes),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

impl LexRange {
    fn is_empty(&self) -> bool {
        let order = self.min.position().cmp(&self.max.position());
        order == Ordering::Greater
            || (order == Ordering::Equal && (self.min.is_exclusive() || self.max.is_exclusive()))
    }

    fn above_min(&self, member: &[u8]) -> bool {
        match self.min.compare(member) {
            Ordering::Greater => true,
            Ordering::Equal => !self.min.is_exclusive(),
            Ordering::Less => false,
        }
    }

    fn below_max(&self, member: &[u8]) -> bool {
        match self.max.compare(member) {
            Ordering::Less => true,
            Ordering::Equal => !self.max.is_exclusive(),
            Ordering::Greater => false,
        }
    }
}

/// What a range selects.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RangeBy {
    /// Positions, negative from the end, both ends included.
    Rank {
        start: i64,
        end: i64,
    },
    Score(ScoreRange),
    Lex(LexRange),
}

/// ZRANGE's arguments after parsing: the bounds are always (min, max),
/// whatever order REV took them in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RangeSpec {
    pub by: RangeBy,
    pub rev: bool,
    /// LIMIT offset count: a negative offset selects nothing, a negative
    /// count everything after the offset (score and lex ranges only).
    pub offset: i64,
    pub count: i64,
}

impl RangeSpec {
    /// A range without LIMIT.
    pub fn new(by: RangeBy, rev: bool) -> Self {
        RangeSpec {
            by,
            rev,
            offset: 0,
            count: -1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Aggregate {
    Sum,
    Min,
    Max,
}

/// ZUNION, ZINTER and ZDIFF (and their STORE forms) over `keys`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Combine {
    pub op: SetOp,
    pub keys: Vec<Bytes>,
    /// One per key; empty means every weight is 1.
    pub weights: Vec<f64>,
    pub aggregate: Aggregate,
}

/// ZADD's options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AddOptions {
    /// Only add new members.
    pub nx: bool,
    /// Only update existing members.
    pub xx: bool,
    /// Only update when the new score is greater.
    pub gt: bool,
    /// Only update when the new score is less.
    pub lt: bool,
    /// Count changed members as well as added ones.
    pub ch: bool,
    /// Add the score to the current one and answer the result.
    pub incr: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ZSetOp {
    /// ZADD and ZINCRBY. Outcome: members added (or changed, with `ch`);
    /// with `incr` the new score, or nil when the options skipped it.
    Add {
        key: Bytes,
        pairs: Vec<(f64, Bytes)>,
        options: AddOptions,
    },
    /// Outcome: the number of members removed.
    Rem { key: Bytes, members: Vec<Bytes> },
    /// ZREMRANGEBY*. Outcome: the number of members removed.
    RemRange { key: Bytes, by: RangeBy },
    /// ZPOPMIN / ZPOPMAX. Without a count: `[member, score]` or an empty
    /// array; with one, member/score pairs.
    Pop {
        key: Bytes,
        max: bool,
        count: Option<u64>,
    },
    /// BZPOPMIN / BZPOPMAX. Outcome: `[key, member, score]` from the first
    /// non-empty key, Blocked, or nil (the wait ran out, or nobody can wait).
    BlockingPop {
        keys: Vec<Bytes>,
        max: bool,
        /// 0 waits without a limit.
        timeout_ms: u64,
        ticket: Ticket,
    },
    /// ZUNIONSTORE / ZINTERSTORE / ZDIFFSTORE. Outcome: the result's size.
    Store { dest: Bytes, combine: Combine },
    /// ZRANGESTORE. Outcome: the number of members stored.
    RangeStore {
        dest: Bytes,
        src: Bytes,
        spec: RangeSpec,
    },
    /// ZMPOP (no timeout) and BZMPOP: up to `count` members from the first
    /// non-empty key. Outcome: `[key, [[member, score] ...]]`, Blocked, or
    /// nil (nothing to pop and no wait, or the wait ran out).
    MultiPop {
        keys: Vec<Bytes>,
        max: bool,
        count: u64,
        /// Some for BZMPOP: 0 waits without a limit.
        timeout_ms: Option<u64>,
        ticket: Ticket,
    },
    /// GEORADIUS* with STORE / STOREDIST, and GEOSEARCHSTORE. Outcome: the
    /// number of members stored.
    GeoStore { search: GeoSearch, to: StoreTo },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ZSetQuery {
    Score {
        key: Bytes,
        member: Bytes,
    },
    MScore {
        key: Bytes,
        members: Vec<Bytes>,
    },
    Card {
        key: Bytes,
    },
    Count {
        key: Bytes,
        range: ScoreRange,
    },
    LexCount {
        key: Bytes,
        range: LexRange,
    },
    /// ZRANK / ZREVRANK. With `with_score`: `[rank, score]`, or an empty
    /// array for a missing member (the reply is a null array).
    Rank {
        key: Bytes,
        member: Bytes,
        rev: bool,
        with_score: bool,
    },
    /// ZRANGE and its older forms. With scores: member/score pairs.
    Range {
        key: Bytes,
        spec: RangeSpec,
        with_scores: bool,
    },
    /// ZUNION / ZINTER / ZDIFF, lowest score first.
    Combine {
        combine: Combine,
        with_scores: bool,
    },
    /// ZINTERCARD: the intersection's size, counting stops at `limit`
    /// (0: no limit).
    InterCard {
        keys: Vec<Bytes>,
        limit: u64,
    },
    /// ZRANDMEMBER, with HRANDFIELD's count rules.
    RandMember {
        key: Bytes,
        count: Option<i64>,
        with_scores: bool,
        seed: u64,
    },
    /// One ZSCAN step: `[next cursor, [member, score, ...]]`, the scores
    /// as doubles (Redis sends them as bulk strings: the reply's job).
    Scan {
        key: Bytes,
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
    },
    /// GEOPOS, GEOHASH, GEODIST and the geo searches.
    Geo(GeoQuery),
}

/// Clients blocked in BZPOPMIN / BZPOPMAX.
pub type Waiters = KeyWaiters<Waiter>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waiter {
    /// The command's keys, in its order (repeats included).
    keys: Vec<Bytes>,
    max: bool,
    /// When the wait runs out; None waits without a limit.
    gives_up: Option<u64>,
}

impl WaitsOnKeys for Waiter {
    fn keys(&self) -> &[Bytes] {
        &self.keys
    }
}

/// The sorted set at `key` for a read: None when absent, WRONGTYPE for
/// another type.
fn zset<'a>(db: &'a Db, key: &Bytes, now: u64) -> Result<Option<&'a ZSet>, StateError> {
    match db.get(key, now).map(|e| &e.value) {
        None => Ok(None),
        Some(Value::ZSet(z)) => Ok(Some(z)),
        Some(_) => Err(StateError::WrongType),
    }
}

/// An input of ZUNION, ZINTER, ZDIFF and their STORE forms: a sorted set,
/// or a plain set whose members all score 1 (as Redis allows); absent keys
/// are empty.
fn source<'a>(db: &'a Db, key: &Bytes, now: u64) -> Result<Cow<'a, ZSet>, StateError> {
    match db.get(key, now).map(|e| &e.value) {
        None => Ok(Cow::Owned(ZSet::default())),
        Some(Value::ZSet(z)) => Ok(Cow::Borrowed(z)),
        Some(Value::Set(members)) => {
            let mut z = ZSet::default();
            for member in members.keys() {
                z.insert(member.clone(), 1.0);
            }
            Ok(Cow::Owned(z))
        }
        Some(_) => Err(StateError::WrongType),
    }
}

/// Runs `f` on the sorted set at `key`, modified in place. An absent key
/// is created empty when `create`, else `f` is not called and the result
/// is `absent`. A set `f` leaves empty is deleted.
fn with_zset<R>(
    db: &mut Db,
    key: &Bytes,
    now: u64,
    create: bool,
    absent: R,
    f: impl FnOnce(&mut ZSet) -> Result<R, StateError>,
) -> Result<R, StateError> {
    let exists = zset(db, key, now)?.is_some();
    if !exists {
        db.purge_if_expired(key, now);
        if !create {
            return Ok(absent);
        }
        db.insert(key.clone(), Value::ZSet(Box::default()), None);
    }
    let result = match db.get_mut(key, now) {
        Some(Value::ZSet(z)) => f(z),
        _ => Ok(absent),
    };
    db.remove_if_empty(key);
    result
}

/// Replaces `dest` with `result`, or deletes it when the result is empty;
/// answers the result's size (the STORE commands' reply).
pub(super) fn store(db: &mut Db, now: u64, dest: &Bytes, result: ZSet) -> Outcome {
    let len = result.len();
    db.purge_if_expired(dest, now);
    if result.is_empty() {
        db.remove(dest);
    } else {
        db.insert(dest.clone(), Value::ZSet(Box::new(result)), None);
    }
    Outcome::Int(len as i64)
}

fn member_score(member: &Bytes, score: f64) -> [Outcome; 2] {
    [Outcome::Bulk(member.clone()), Outcome::Double(score)]
}

/// Members alone, or member/score pairs.
fn scored_reply(items: Vec<Scored>, with_scores: bool) -> Outcome {
    if with_scores {
        Outcome::Pairs(
            items
                .into_iter()
                .map(|(m, s)| (Outcome::Bulk(m), Outcome::Double(s)))
                .collect(),
        )
    } else {
        Outcome::Array(items.into_iter().map(|(m, _)| Outcome::Bulk(m)).collect())
    }
}

pub fn apply(state: &mut State, now: u64, op: &ZSetOp) -> OpResult {
    let db = &mut state.db;
    match op {
        ZSetOp::Add {
            key,
            pairs,
            options,
        } => add(db, now, key, pairs, *options),
        ZSetOp::Rem { key, members } => with_zset(db, key, now, false, Outcome::Int(0), |z| {
            let removed = members.iter().filter(|m| z.remove(m).is_some()).count();
            Ok(Outcome::Int(removed as i64))
        }),
        ZSetOp::RemRange { key, by } => with_zset(db, key, now, false, Outcome::Int(0), |z| {
            let doomed = select(z, &RangeSpec::new(by.clone(), false));
            for (member, _) in &doomed {
                z.remove(member);
            }
            Ok(Outcome::Int(doomed.len() as i64))
        }),
        ZSetOp::Pop { key, max, count } => {
            let empty = || match count {
                Some(_) => Outcome::Pairs(Vec::new()),
                None => Outcome::Array(Vec::new()),
            };
            with_zset(db, key, now, false, empty(), |z| {
                let Some(count) = count else {
                    return Ok(z
                        .pop(*max)
                        .map_or_else(empty, |(m, s)| Outcome::Array(member_score(&m, s).into())));
                };
                let popped = (0..*count).map_while(|_| z.pop(*max)).collect();
                Ok(scored_reply(popped, true))
            })
        }
        ZSetOp::BlockingPop {
            keys,
            max,
            timeout_ms,
            ticket,
        } => {
            if let Some(popped) = pop_first_ready(db, now, keys, *max, None)? {
                return Ok(popped);
            }
            if !ticket.is_assigned() {
                return Ok(Outcome::Nil);
            }
            block(state, now, keys, *max, *timeout_ms, *ticket);
            Ok(Outcome::Blocked {
                ticket: *ticket,
                timeout_ms: *timeout_ms,
            })
        }
        ZSetOp::MultiPop {
            keys,
            max,
            count,
            timeout_ms,
            ticket,
        } => {
            if let Some(popped) = pop_first_ready(db, now, keys, *max, Some(*count))? {
                return Ok(popped);
            }
            let Some(timeout_ms) = timeout_ms.filter(|_| ticket.is_assigned()) else {
                return Ok(Outcome::Nil);
            };
            block(state, now, keys, *max, timeout_ms, *ticket);
            state.coord.ext.zset_pop_counts.insert(*ticket, *count);
            Ok(Outcome::Blocked {
                ticket: *ticket,
                timeout_ms,
            })
        }
        ZSetOp::Store { dest, combine } => {
            let result = combined(db, now, combine, None)?;
            Ok(store(db, now, dest, result))
        }
        ZSetOp::RangeStore { dest, src, spec } => {
            let mut result = ZSet::default();
            for (member, score) in zset(db, src, now)?
                .map(|z| select(z, spec))
                .unwrap_or_default()
            {
                result.insert(member, score);
            }
            Ok(store(db, now, dest, result))
        }
        ZSetOp::GeoStore { search, to } => geo::store(db, now, search, to),
    }
}

fn add(
    db: &mut Db,
    now: u64,
    key: &Bytes,
    pairs: &[(f64, Bytes)],
    options: AddOptions,
) -> OpResult {
    let absent = if options.incr {
        Outcome::Nil
    } else {
        Outcome::Int(0)
    };
    with_zset(db, key, now, !options.xx, absent, |z| {
        let (mut added, mut updated, mut processed) = (0, 0, 0);
        let mut last = 0.0;
        for (score, member) in pairs {
            let mut score = *score;
            match z.score(member) {
                Some(current) => {
                    if options.nx {
                        continue;
                    }
                    if options.incr {
                        score += current;
                        if score.is_nan() {
                            return Err(StateError::ScoreNan);
                        }
                    }
                    if (options.lt && score >= current) || (options.gt && score <= current) {
                        continue;
                    }
                    if score != current {
                        z.insert(member.clone(), score);
                        updated += 1;
                    }
                }
                None if options.xx => continue,
                None => {
                    z.insert(member.clone(), score);
                    added += 1;
                }
            }
            processed += 1;
            last = score;
        }
        Ok(match (options.incr, processed) {
            (true, 0) => Outcome::Nil,
            (true, _) => Outcome::Double(last),
            (false, _) if options.ch => Outcome::Int(added + updated),
            (false, _) => Outcome::Int(added),
        })
    })
}

/// The members `spec` selects, in the order it asks for.
fn select(z: &ZSet, spec: &RangeSpec) -> Vec<Scored> {
    let owned = |(m, s): (&Bytes, f64)| (m.clone(), s);
    match &spec.by {
        RangeBy::Rank { start, end } => {
            let len = z.len() as i64;
            let start = if *start < 0 { len + start } else { *start }.max(0);
            let end = if *end < 0 { len + end } else { *end };
            if start > end || start >= len {
                return Vec::new();
            }
            let take = (end.min(len - 1) - start + 1) as usize;
            let skip = start as usize;
            if spec.rev {
                z.iter().rev().skip(skip).take(take).map(owned).collect()
            } else {
                z.iter().skip(skip).take(take).map(owned).collect()
            }
        }
        RangeBy::Score(range) => {
            if spec.offset > 0 && spec.offset >= z.len() as i64 {
                return Vec::new();
            }
            let found: Box<dyn Iterator<Item = (&Bytes, f64)>> = if spec.rev {
                Box::new(z.by_score(range).rev())
            } else {
                Box::new(z.by_score(range))
            };
            limit(found, spec).map(owned).collect()
        }
        RangeBy::Lex(range) => {
            if range.is_empty() {
                return Vec::new();
            }
            let found: Box<dyn Iterator<Item = (&Bytes, f64)>> = if spec.rev {
                Box::new(
                    z.iter()
                        .rev()
                        .skip_while(|(m, _)| !range.below_max(m))
                        .take_while(|(m, _)| range.above_min(m)),
                )
            } else {
                Box::new(
                    z.iter()
                        .skip_while(|(m, _)| !range.above_min(m))
                        .take_while(|(m, _)| range.below_max(m)),
                )
            };
            limit(found, spec).map(owned).collect()
        }
    }
}

/// LIMIT's offset and count applied to `found`.
fn limit<'a, I>(found: I, spec: &RangeSpec) -> impl Iterator<Item = I::Item> + 'a
where
    I: Iterator + 'a,
{
    let (skip, take) = if spec.offset < 0 {
        (0, 0)
    } else {
        let take = usize::try_from(spec.count).unwrap_or(usize::MAX);
        (usize::try_from(spec.offset).unwrap_or(usize::MAX), take)
    };
    found.skip(skip).take(take)
}

/// Redis's aggregation of a member's weighted scores: a NaN sum is 0.
fn aggregate(target: &mut f64, value: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *target += value;
            if target.is_nan() {
                *target = 0.0;
            }
        }
        Aggregate::Min => {
            if value < *target {
                *target = value;
            }
        }
        Aggregate::Max => {
            if value > *target {
                *target = value;
            }
        }
    }
}

/// A weighted score: 0 where the product is NaN (0 times infinity).
fn weighted(score: f64, weight: f64) -> f64 {
    let product = score * weight;
    if product.is_nan() {
        0.0
    } else {
        product
    }
}

/// The union, intersection or difference of the sorted sets at `keys`
/// (absent keys are empty sets). With `stop_at`, an intersection stops
/// once it holds that many members.
fn combined(db: &Db, now: u64, c: &Combine, stop_at: Option<usize>) -> Result<ZSet, StateError> {
    let mut sources = Vec::with_capacity(c.keys.len());
    for (i, key) in c.keys.iter().enumerate() {
        let weight = c.weights.get(i).copied().unwrap_or(1.0);
        sources.push((source(db, key, now)?, weight));
    }
    let mut result = ZSet::default();
    match c.op {
        SetOp::Diff => {
            let Some(((first, _), others)) = sources.split_first() else {
                return Ok(result);
            };
            for (member, score) in first.iter() {
                if others.iter().all(|(z, _)| z.score(member).is_none()) {
                    result.insert(member.clone(), score);
                }
            }
        }
        SetOp::Inter => {
            // Smallest first, as Redis orders them: fewer lookups, and the
            // same order of additions.
            sources.sort_by_key(|(z, _)| z.len());
            let Some(((first, weight), others)) = sources.split_first() else {
                return Ok(result);
            };
            'members: for (member, score) in first.iter() {
                let mut total = weighted(score, *weight);
                for (z, w) in others {
                    let Some(other) = z.score(member) else {
                        continue 'members;
                    };
                    aggregate(&mut total, other * w, c.aggregate);
                }
                result.insert(member.clone(), total);
                if stop_at.is_some_and(|n| result.len() >= n) {
                    break;
                }
            }
        }
        SetOp::Union => {
            sources.sort_by_key(|(z, _)| z.len());
            let mut totals: HashMap<&Bytes, f64> = HashMap::new();
            for (z, weight) in &sources {
                for (member, score) in z.iter() {
                    let value = weighted(score, *weight);
                    totals
                        .entry(member)
                        .and_modify(|total| aggregate(total, value, c.aggregate))
                        .or_insert(value);
                }
            }
            for (member, total) in totals {
                result.insert(member.clone(), total);
            }
        }
    }
    Ok(result)
}

/// The first of `keys` holding a non-empty sorted set gives up its lowest
/// (highest) member: `[key, member, score]`; or, given a count (BZMPOP),
/// up to that many: `[key, [[member, score] ...]]`. None when all are
/// empty; WRONGTYPE when a key before that holds another type.
fn pop_first_ready(
    db: &mut Db,
    now: u64,
    keys: &[Bytes],
    max: bool,
    count: Option<u64>,
) -> Result<Option<Outcome>, StateError> {
    for key in keys {
        if zset(db, key, now)?.is_none_or(ZSet::is_empty) {
            continue;
        }
        let n = count.unwrap_or(1);
        let popped: Vec<Scored> = with_zset(db, key, now, false, Vec::new(), |z| {
            Ok((0..n).map_while(|_| z.pop(max)).collect())
        })?;
        let key = Outcome::Bulk(key.clone());
        return Ok(match (count, popped.first()) {
            (_, None) => None,
            (None, Some((member, score))) => {
                let [m, s] = member_score(member, *score);
                Some(Outcome::Array(vec![key, m, s]))
            }
            (Some(_), Some(_)) => {
                let pairs = popped
                    .iter()
                    .map(|(m, s)| Outcome::Array(member_score(m, *s).into()))
                    .collect();
                Some(Outcome::Array(vec![key, Outcome::Array(pairs)]))
            }
        });
    }
    Ok(None)
}

/// Queues `ticket` on each of its keys.
fn block(state: &mut State, now: u64, keys: &[Bytes], max: bool, timeout_ms: u64, ticket: Ticket) {
    let coord = &mut state.coord;
    let gives_up = (timeout_ms > 0).then(|| timers::deadline(now, timeout_ms));
    coord.zset_waiters.insert(
        ticket,
        Waiter {
            keys: keys.to_vec(),
            max,
            gives_up,
        },
    );
    if let Some(at) = gives_up {
        coord.timers.schedule(Timer::ZSetPopWait(ticket), at);
    }
}

/// Removes `ticket`'s wait from every queue and cancels its timer.
fn take_waiter(state: &mut State, ticket: Ticket) -> Option<Waiter> {
    let coord = &mut state.coord;
    coord.ext.zset_pop_counts.remove(&ticket);
    let waiter = coord.zset_waiters.remove(ticket)?;
    if let Some(at) = waiter.gives_up {
        coord.timers.cancel(Timer::ZSetPopWait(ticket), at);
    }
    Some(waiter)
}

/// Serves the waiters of every key that now holds a non-empty sorted set,
/// first come first served, while it stays non-empty. Run after each op.
pub(super) fn serve_waiters(state: &mut State, now: u64) {
    if state.coord.zset_waiters.is_empty() {
        return;
    }
    let ready: Vec<Bytes> = state
        .coord
        .zset_waiters
        .waited_keys()
        .filter(|key| is_ready(&state.db, key, now))
        .cloned()
        .collect();
    for key in ready {
        while is_ready(&state.db, &key, now) {
            let next = state.coord.zset_waiters.front(&key);
            let Some(ticket) = next else {
                break;
            };
            let count = state.coord.ext.zset_pop_counts.get(&ticket).copied();
            let Some(waiter) = take_waiter(state, ticket) else {
                break;
            };
            // The key is non-empty, so the pop finds a member (or meets a
            // key of another type first, which the client hears about).
            let as_op = notify::enabled(state).then(|| {
                Op::ZSet(ZSetOp::MultiPop {
                    keys: waiter.keys.clone(),
                    max: waiter.max,
                    count: count.unwrap_or(1),
                    timeout_ms: None,
                    ticket,
                })
            });
            let outcome = notify::serving(state, now, as_op.as_ref(), |state| {
                let popped = pop_first_ready(&mut state.db, now, &waiter.keys, waiter.max, count);
                match popped {
                    Ok(popped) => popped.unwrap_or(Outcome::Nil),
                    Err(err) => Outcome::Error(err),
                }
            });
            state.wake(ticket, outcome);
        }
    }
}

fn is_ready(db: &Db, key: &Bytes, now: u64) -> bool {
    matches!(db.get(key, now).map(|e| &e.value), Some(Value::ZSet(z)) if !z.is_empty())
}

/// A waiter's time ran out (its timer already fired): it gets nil.
pub(super) fn give_up(state: &mut State, ticket: Ticket) {
    if take_waiter(state, ticket).is_some() {
        state.wake(ticket, Outcome::Nil);
    }
}

pub(super) fn is_waiting(state: &State, ticket: Ticket) -> bool {
    state.coord.zset_waiters.contains(ticket)
}

/// The client behind `ticket` left: drop its wait without an answer.
/// True if it was waiting on a sorted set.
pub(super) fn unblock(state: &mut State, ticket: Ticket) -> bool {
    take_waiter(state, ticket).is_some()
}

pub fn read(db: &Db, now: u64, query: &ZSetQuery) -> OpResult {
    match query {
        ZSetQuery::Score { key, member } => Ok(zset(db, key, now)?
            .and_then(|z| z.score(member))
            .map_or(Outcome::Nil, Outcome::Double)),
        ZSetQuery::MScore { key, members } => {
            let z = zset(db, key, now)?;
            Ok(Outcome::Array(
                members
                    .iter()
                    .map(|m| {
                        z.and_then(|z| z.score(m))
                            .map_or(Outcome::Nil, Outcome::Double)
                    })
                    .collect(),
            ))
        }
        ZSetQuery::Card { key } => {
            Ok(Outcome::Int(zset(db, key, now)?.map_or(0, ZSet::len) as i64))
        }
        ZSetQuery::Count { key, range } => Ok(Outcome::Int(
            zset(db, key, now)?.map_or(0, |z| z.by_score(range).count()) as i64,
        )),
        ZSetQuery::LexCount { key, range } => {
            let spec = RangeSpec::new(RangeBy::Lex(range.clone()), false);
            Ok(Outcome::Int(
                zset(db, key, now)?.map_or(0, |z| select(z, &spec).len()) as i64,
            ))
        }
        ZSetQuery::Rank {
            key,
            member,
            rev,
            with_score,
        } => {
            let found = zset(db, key, now)?.and_then(|z| {
                let (rank, score) = z.rank(member)?;
                Some((if *rev { z.len() - 1 - rank } else { rank }, score))
            });
            Ok(match (found, with_score) {
                (Some((rank, _)), false) => Outcome::Int(rank as i64),
                (Some((rank, score)), true) => {
                    Outcome::Array(vec![Outcome::Int(rank as i64), Outcome::Double(score)])
                }
                (None, false) => Outcome::Nil,
                (None, true) => Outcome::Array(Vec::new()),
            })
        }
        ZSetQuery::Range {
            key,
            spec,
            with_scores,
        } => {
            let items = zset(db, key, now)?
                .map(|z| select(z, spec))
                .unwrap_or_default();
            Ok(scored_reply(items, *with_scores))
        }
        ZSetQuery::Combine {
            combine,
            with_scores,
        } => {
            let result = combined(db, now, combine, None)?;
            let items = result.iter().map(|(m, s)| (m.clone(), s)).collect();
            Ok(scored_reply(items, *with_scores))
        }
        ZSetQuery::InterCard { keys, limit } => {
            let combine = Combine {
                op: SetOp::Inter,
                keys: keys.clone(),
                weights: Vec::new(),
                aggregate: Aggregate::Sum,
            };
            let stop_at = (*limit > 0).then(|| usize::try_from(*limit).unwrap_or(usize::MAX));
            Ok(Outcome::Int(
                combined(db, now, &combine, stop_at)?.len() as i64
            ))
        }
        ZSetQuery::RandMember {
            key,
            count,
            with_scores,
            seed,
        } => Ok(rand_member(
            zset(db, key, now)?,
            *count,
            *with_scores,
            *seed,
        )),
        ZSetQuery::Scan {
            key,
            cursor,
            pattern,
            count,
        } => {
            let Some(z) = zset(db, key, now)? else {
                return Ok(scan_reply(0, Vec::new()));
            };
            // Redis answers a sorted set it keeps as a listpack whole, in
            // score order, in one call (whatever COUNT asks).
            let small = *cursor == 0
                && z.len() <= LISTPACK_ENTRIES
                && z.iter().all(|(m, _)| m.len() <= LISTPACK_VALUE);
            let (visited, next) = if small {
                (z.iter().collect::<Vec<_>>(), 0)
            } else {
                let (visited, next) = z.scores().scan(*cursor, *count);
                (visited.into_iter().map(|(m, s)| (m, *s)).collect(), next)
            };
            let mut out = Vec::with_capacity(visited.len() * 2);
            for (member, score) in visited {
                if pattern.as_ref().is_some_and(|p| !glob::matches(p, member)) {
                    continue;
                }
                out.push(Outcome::Bulk(member.clone()));
                out.push(Outcome::Double(score));
            }
            Ok(scan_reply(next, out))
        }
        ZSetQuery::Geo(query) => geo::read(db, now, query),
    }
}

/// The most members, and the longest member, of a sorted set Redis keeps
/// as a listpack: the defaults of `zset-max-listpack-entries` and
/// `zset-max-listpack-value`.
const LISTPACK_ENTRIES: usize = 128;
const LISTPACK_VALUE: usize = 64;

/// ZRANDMEMBER's picks. Asking for at least the whole set returns it in
/// score order, as Redis does.
fn rand_member(z: Option<&ZSet>, count: Option<i64>, with_scores: bool, seed: u64) -> Outcome {
    let Some(count) = count else {
        return match z.filter(|z| !z.is_empty()) {
            Some(z) => {
                let n = SeededRng::new(seed).below(z.len());
                Outcome::bulk_or_nil(z.scores().nth(n).map(|(m, _)| m.clone()))
            }
            None => Outcome::Nil,
        };
    };
    let Some(z) = z.filter(|z| !z.is_empty() && count != 0) else {
        return Outcome::Array(Vec::new());
    };
    let picks = if count > 0 && count as u64 >= z.len() as u64 {
        z.iter().map(|(m, s)| (m.clone(), s)).collect()
    } else {
        let entries: Vec<(&Bytes, &f64)> = z.scores().iter().collect();
        random_picks(entries.len(), count, seed)
            .into_iter()
            .map(|i| (entries[i].0.clone(), *entries[i].1))
            .collect()
    };
    scored_reply(picks, with_scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn set_of(pairs: &[(f64, &str)]) -> ZSet {
        let mut z = ZSet::default();
        for (score, member) in pairs {
            z.insert(b(member), *score);
        }
        z
    }

    fn members(items: &[Scored]) -> Vec<&str> {
        items
            .iter()
            .map(|(m, _)| std::str::from_utf8(m).unwrap())
            .collect()
    }

    fn score_range(min: f64, min_exclusive: bool, max: f64, max_exclusive: bool) -> RangeBy {
        RangeBy::Score(ScoreRange {
            min,
            min_exclusive,
            max,
            max_exclusive,
        })
    }

    #[test]
    fn the_index_orders_by_score_then_member_with_signed_zeros_equal() {
        let z = set_of(&[
            (f64::INFINITY, "top"),
            (0.0, "b"),
            (-0.0, "a"),
            (f64::NEG_INFINITY, "bottom"),
            (-1.5, "c"),
        ]);
        let all: Vec<_> = z.iter().map(|(m, s)| (m.clone(), s)).collect();
        assert_eq!(members(&all), ["bottom", "c", "a", "b", "top"]);
        assert!(all[2].1.is_sign_negative(), "-0 keeps its sign");
        assert_eq!(z.rank(&b("b")), Some((3, 0.0)));
    }

    #[test]
    fn score_bounds_select_exactly_the_interval() {
        let z = set_of(&[
            (1.0, "a"),
            (1.0, "b"),
            (2.0, "c"),
            (3.0, "d"),
            (f64::INFINITY, "e"),
        ]);
        let cases = [
            (score_range(1.0, false, 2.0, false), vec!["a", "b", "c"]),
            (score_range(1.0, true, 2.0, false), vec!["c"]),
            (score_range(1.0, false, 2.0, true), vec!["a", "b"]),
            (score_range(1.0, true, 1.0, false), vec![]),
            (score_range(3.0, false, 1.0, false), vec![]),
            (score_range(3.0, true, f64::INFINITY, false), vec!["e"]),
            (
                score_range(f64::INFINITY, true, f64::INFINITY, false),
                vec![],
            ),
            (
                score_range(f64::NEG_INFINITY, false, f64::INFINITY, true),
                vec!["a", "b", "c", "d"],
            ),
        ];
        for (by, expected) in cases {
            let found = select(&z, &RangeSpec::new(by.clone(), false));
            assert_eq!(members(&found), expected, "{by:?}");
            let mut reversed = select(&z, &RangeSpec::new(by.clone(), true));
            reversed.reverse();
            assert_eq!(members(&reversed), expected, "{by:?} reversed");
        }
    }

    #[test]
    fn score_ranges_at_the_edges_of_the_doubles_match_a_plain_filter() {
        let edges = [
            f64::NEG_INFINITY,
            -f64::MAX,
            -1.0,
            -0.0,
            0.0,
            f64::from_bits(1),
            1.0,
            1.0f64.next_up(),
            f64::MAX,
            f64::INFINITY,
        ];
        let mut z = ZSet::default();
        for (i, score) in edges.iter().enumerate() {
            z.insert(b(&format!("m{i}")), *score);
        }
        for min in edges {
            for max in edges {
                for (min_exclusive, max_exclusive) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let range = ScoreRange {
                        min,
                        min_exclusive,
                        max,
                        max_exclusive,
                    };
                    let inside = |s: f64| {
                        (if min_exclusive { s > min } else { s >= min })
                            && (if max_exclusive { s < max } else { s <= max })
                    };
                    let expected: Vec<f64> =
                        z.iter().map(|(_, s)| s).filter(|s| inside(*s)).collect();
                    let found: Vec<f64> = z.by_score(&range).map(|(_, s)| s).collect();
                    assert_eq!(found, expected, "{range:?}");
                }
            }
        }
    }

    #[test]
    fn limit_skips_and_caps_and_a_negative_offset_selects_nothing() {
        let z = set_of(&[(1.0, "a"), (2.0, "b"), (3.0, "c"), (4.0, "d")]);
        let all = score_range(f64::NEG_INFINITY, false, f64::INFINITY, false);
        let with = |offset, count, rev| {
            let spec = RangeSpec {
                by: all.clone(),
                rev,
                offset,
                count,
            };
            members(&select(&z, &spec))
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(with(1, 2, false), ["b", "c"]);
        assert_eq!(with(1, -1, false), ["b", "c", "d"]);
        assert_eq!(with(1, 2, true), ["c", "b"]);
        assert!(with(-1, 2, false).is_empty());
        assert!(with(4, 2, false).is_empty());
        assert!(with(0, 0, false).is_empty());
    }

    #[test]
    fn rank_ranges_clamp_like_redis() {
        let z = set_of(&[(1.0, "a"), (2.0, "b"), (3.0, "c")]);
        let rank = |start, end, rev| {
            let found = select(&z, &RangeSpec::new(RangeBy::Rank { start, end }, rev));
            members(&found)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(rank(0, -1, false), ["a", "b", "c"]);
        assert_eq!(rank(-100, 100, false), ["a", "b", "c"]);
        assert_eq!(rank(1, 1, true), ["b"]);
        assert_eq!(rank(0, 0, true), ["c"]);
        assert!(rank(2, 1, false).is_empty());
        assert!(rank(3, 5, false).is_empty());
        assert!(rank(i64::MIN, i64::MIN, false).is_empty());
        assert_eq!(rank(i64::MIN, i64::MAX, false), ["a", "b", "c"]);
    }

    #[test]
    fn lex_ranges_respect_open_and_closed_ends() {
        let z = set_of(&[(0.0, "a"), (0.0, "b"), (0.0, "c"), (0.0, "d")]);
        let lex = |min: LexBound, max: LexBound| {
            let found = select(
                &z,
                &RangeSpec::new(RangeBy::Lex(LexRange { min, max }), false),
            );
            members(&found)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        use LexBound::*;
        assert_eq!(lex(Min, Max), ["a", "b", "c", "d"]);
        assert_eq!(lex(Inclusive(b("b")), Exclusive(b("d"))), ["b", "c"]);
        assert_eq!(lex(Exclusive(b("b")), Max), ["c", "d"]);
        assert!(lex(Max, Min).is_empty());
        assert!(lex(Exclusive(b("b")), Inclusive(b("b"))).is_empty());
        assert_eq!(lex(Inclusive(b("b")), Inclusive(b("b"))), ["b"]);
    }

    #[test]
    fn union_aggregates_weighted_scores_and_nan_becomes_zero() {
        let mut db = Db::new();
        db.insert(
            b("x"),
            Value::ZSet(Box::new(set_of(&[(1.0, "a"), (f64::INFINITY, "b")]))),
            None,
        );
        db.insert(
            b("y"),
            Value::ZSet(Box::new(set_of(&[(2.0, "a"), (f64::NEG_INFINITY, "b")]))),
            None,
        );
        let combine = |op, weights: Vec<f64>, aggregate| Combine {
            op,
            keys: vec![b("x"), b("y"), b("missing")],
            weights,
            aggregate,
        };
        let sum = combined(&db, 0, &combine(SetOp::Union, vec![], Aggregate::Sum), None).unwrap();
        assert_eq!(sum.score(&b("a")), Some(3.0));
        assert_eq!(sum.score(&b("b")), Some(0.0), "inf + -inf");
        let zero = combined(
            &db,
            0,
            &combine(SetOp::Union, vec![0.0, 1.0, 1.0], Aggregate::Max),
            None,
        )
        .unwrap();
        assert_eq!(
            zero.score(&b("b")),
            Some(0.0),
            "0 * inf, then max with -inf"
        );
        let inter = combined(&db, 0, &combine(SetOp::Inter, vec![], Aggregate::Sum), None).unwrap();
        assert!(inter.is_empty(), "a missing key empties an intersection");
        let diff = Combine {
            op: SetOp::Diff,
            keys: vec![b("x"), b("missing")],
            weights: vec![],
            aggregate: Aggregate::Sum,
        };
        assert_eq!(combined(&db, 0, &diff, None).unwrap().len(), 2);
    }

    #[test]
    fn a_snapshot_keeps_scores_signs_and_waiters() {
        use super::super::golden::Harness;
        let mut harness = Harness::new(1_000);
        for line in [
            "ZADD z 1.5 a -0 b inf c -inf d",
            "BZPOPMIN w1 w2 10",
            "BZPOPMAX w2 0",
        ] {
            harness.run_line(line);
        }
        let state = &harness.state;
        let restored = State::decode_snapshot(&state.encode_snapshot()).unwrap();
        assert_eq!(&restored, state);
        assert_eq!(restored.digest(), state.digest());
        let Some(Value::ZSet(z)) = restored.db().get(&b("z"), 0).map(|e| &e.value) else {
            panic!("the sorted set is restored");
        };
        assert!(z.score(&b("b")).unwrap().is_sign_negative());
        assert!(restored.is_waiting(Ticket { node: 1, seq: 2 }));
    }

    #[test]
    fn rand_member_picks_follow_the_count_rules() {
        let mut z2 = ZSet::default();
        for i in 0..30 {
            z2.insert(b(&format!("m{i}")), i as f64);
        }
        for seed in 0..20 {
            let Outcome::Array(picks) = rand_member(Some(&z2), Some(10), false, seed) else {
                panic!("an array");
            };
            let distinct: BTreeSet<_> = picks.iter().map(|p| format!("{p:?}")).collect();
            assert_eq!(distinct.len(), 10);
            let Outcome::Pairs(pairs) = rand_member(Some(&z2), Some(-50), true, seed) else {
                panic!("pairs");
            };
            assert_eq!(pairs.len(), 50);
            for (m, s) in pairs {
                let (Outcome::Bulk(m), Outcome::Double(s)) = (m, s) else {
                    panic!("member and score");
                };
                assert_eq!(z2.score(&m), Some(s));
            }
        }
        let Outcome::Array(all) = rand_member(Some(&z2), Some(100), false, 1) else {
            panic!("an array");
        };
        assert_eq!(all[0], Outcome::Bulk(b("m0")), "the whole set, in order");
    }
}
