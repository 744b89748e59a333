//! Sets: SADD and friends, the set algebra (SINTER, SUNION, SDIFF and their
//! STORE forms, SINTERCARD), SPOP and SRANDMEMBER, SSCAN.
//!
//! A set is a [`ScanMap`] of members to nothing, so SSCAN shares the
//! keyspace's cursor scheme and every replica walks members in one order.
//! Like a hash, a set is modified in place and never exists empty: a write
//! that removes its last member deletes the key, and a STORE whose result
//! is empty deletes the destination instead of writing an empty set.
//!
//! The random commands expand a seed drawn by the command layer (SPOP's
//! seed travels in the op), so every replica pops the same members.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{Db, ScanMap, SeededRng, Value};
use super::hashes::MAX_RANDOM_REPEATS;
use super::keys::scan_reply;
use super::{glob, OpResult, Outcome, StateError};

/// The members of a set.
pub type Members = ScanMap<()>;

/// How a multi-key command combines its sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Combine {
    /// Members of every set; a missing key makes the result empty.
    Inter,
    /// Members of any set.
    Union,
    /// Members of the first set that are in none of the others.
    Diff,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SetOp {
    /// Outcome: the number of members added.
    Add { key: Bytes, members: Vec<Bytes> },
    /// Outcome: the number of members removed.
    Rem { key: Bytes, members: Vec<Bytes> },
    /// SPOP. Without `count`: one member or nil. With a count: up to
    /// `count` distinct members, as a set.
    Pop {
        key: Bytes,
        count: Option<u64>,
        seed: u64,
    },
    /// SMOVE. Outcome: 1 if the member moved (or, when both keys are the
    /// same set, is there), else 0.
    Move {
        source: Bytes,
        destination: Bytes,
        member: Bytes,
    },
    /// SINTERSTORE, SUNIONSTORE, SDIFFSTORE: replaces `destination`,
    /// whatever it held, with the result (deleting it when the result is
    /// empty). Outcome: the result's size.
    Store {
        combine: Combine,
        destination: Bytes,
        keys: Vec<Bytes>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SetQuery {
    Members {
        key: Bytes,
    },
    IsMember {
        key: Bytes,
        member: Bytes,
    },
    MIsMember {
        key: Bytes,
        members: Vec<Bytes>,
    },
    Card {
        key: Bytes,
    },
    /// SRANDMEMBER. Without `count`: one member or nil. With a count: up
    /// to `count` distinct members, or exactly `-count` members with
    /// repeats when it is negative.
    RandMember {
        key: Bytes,
        count: Option<i64>,
        seed: u64,
    },
    /// SINTER, SUNION, SDIFF.
    Combine {
        combine: Combine,
        keys: Vec<Bytes>,
    },
    /// SINTERCARD: the size of the intersection, counting stops at `limit`.
    InterCard {
        keys: Vec<Bytes>,
        limit: Option<u64>,
    },
    /// One SSCAN step: `[next cursor, [member, ...]]`. `bad_option` is
    /// the error for options that did not parse, answered only when the
    /// key holds a set (a missing key scans empty first, as in Redis).
    Scan {
        key: Bytes,
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        bad_option: Option<StateError>,
    },
}

/// The set at `key` for a read: None when absent, WRONGTYPE for another type.
fn set<'a>(db: &'a Db, key: &Bytes, now: u64) -> Result<Option<&'a Members>, StateError> {
    match db.get(key, now).map(|e| &e.value) {
        None => Ok(None),
        Some(Value::Set(s)) => Ok(Some(s)),
        Some(_) => Err(StateError::WrongType),
    }
}

/// Runs `f` on the set at `key`, modified in place. An absent key is
/// created empty when `create`, else `f` is not called and the result is
/// `absent`. A set `f` leaves empty is deleted.
fn with_set<R>(
    db: &mut Db,
    key: &Bytes,
    now: u64,
    create: bool,
    absent: R,
    f: impl FnOnce(&mut Members) -> R,
) -> Result<R, StateError> {
    match db.live(key, now).map(|e| &e.value) {
        Some(Value::Set(_)) => {}
        Some(_) => return Err(StateError::WrongType),
        None if create => db.insert(key.clone(), Value::Set(Box::default()), None),
        None => return Ok(absent),
    }
    let result = match db.get_mut(key, now) {
        Some(Value::Set(s)) => f(s),
        _ => absent,
    };
    db.remove_if_empty(key);
    Ok(result)
}

fn bulks<'a>(members: impl Iterator<Item = &'a Bytes>) -> Vec<Outcome> {
    members.map(|m| Outcome::Bulk(m.clone())).collect()
}

pub fn apply(db: &mut Db, now: u64, op: &SetOp) -> OpResult {
    match op {
        SetOp::Add { key, members } => {
            let added = with_set(db, key, now, !members.is_empty(), 0, |s| {
                members
                    .iter()
                    .filter(|m| s.insert((*m).clone(), ()).is_none())
                    .count()
            })?;
            Ok(Outcome::Int(added as i64))
        }
        SetOp::Rem { key, members } => {
            let removed = with_set(db, key, now, false, 0, |s| {
                members.iter().filter(|m| s.remove(m).is_some()).count()
            })?;
            Ok(Outcome::Int(removed as i64))
        }
        SetOp::Pop { key, count, seed } => {
            let mut rng = SeededRng::new(*seed);
            let Some(count) = count else {
                return with_set(db, key, now, false, Outcome::Nil, |s| {
                    let picked = s.nth(rng.below(s.len())).map(|(m, ())| m.clone());
                    if let Some(m) = &picked {
                        s.remove(m);
                    }
                    Outcome::bulk_or_nil(picked)
                });
            };
            with_set(db, key, now, false, Outcome::Set(Vec::new()), |s| {
                let picked = distinct_picks(s, *count, &mut rng);
                for m in &picked {
                    s.remove(m);
                }
                Outcome::Set(bulks(picked.iter()))
            })
        }
        SetOp::Move {
            source,
            destination,
            member,
        } => {
            let Some(from) = set(db, source, now)? else {
                return Ok(Outcome::Int(0));
            };
            set(db, destination, now)?;
            if source == destination {
                return Ok(Outcome::bool(from.contains(member)));
            }
            let removed = with_set(db, source, now, false, false, |s| {
                s.remove(member).is_some()
            })?;
            if removed {
                with_set(db, destination, now, true, (), |s| {
                    s.insert(member.clone(), ());
                })?;
            }
            Ok(Outcome::bool(removed))
        }
        SetOp::Store {
            combine: how,
            destination,
            keys,
        } => {
            let result = combine(db, now, *how, keys)?;
            let len = result.len();
            if result.is_empty() {
                db.remove(destination);
            } else {
                db.insert(destination.clone(), Value::Set(Box::new(result)), None);
            }
            Ok(Outcome::Int(len as i64))
        }
    }
}

pub fn read(db: &Db, now: u64, query: &SetQuery) -> OpResult {
    match query {
        SetQuery::Members { key } => Ok(Outcome::Set(
            set(db, key, now)?.map_or_else(Vec::new, |s| bulks(in_redis_order(s).into_iter())),
        )),
        SetQuery::IsMember { key, member } => Ok(Outcome::bool(
            set(db, key, now)?.is_some_and(|s| s.contains(member)),
        )),
        SetQuery::MIsMember { key, members } => {
            let s = set(db, key, now)?;
            Ok(Outcome::Array(
                members
                    .iter()
                    .map(|m| Outcome::bool(s.is_some_and(|s| s.contains(m))))
                    .collect(),
            ))
        }
        SetQuery::Card { key } => Ok(Outcome::Int(
            set(db, key, now)?.map_or(0, |s| s.len()) as i64
        )),
        SetQuery::RandMember { key, count, seed } => {
            let s = set(db, key, now)?;
            Ok(rand_member(s, *count, *seed))
        }
        SetQuery::Combine { combine: how, keys } => {
            Ok(Outcome::Set(bulks(combine(db, now, *how, keys)?.keys())))
        }
        SetQuery::InterCard { keys, limit } => {
            let sets = lookup(db, now, keys)?;
            let limit = limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
            Ok(Outcome::Int(intersection(&sets).take(limit).count() as i64))
        }
        SetQuery::Scan {
            key,
            cursor,
            pattern,
            count,
            bad_option,
        } => {
            let Some(s) = set(db, key, now)? else {
                return Ok(scan_reply(0, Vec::new()));
            };
            if let Some(err) = bad_option {
                return Err(err.clone());
            }
            let matches = |m: &&Bytes| pattern.as_ref().is_none_or(|p| glob::matches(p, m));
            // Redis answers a set it keeps as an intset whole, in order,
            // in one call (whatever COUNT asks).
            if *cursor == 0 {
                if let Some(ints) = as_intset(s) {
                    return Ok(scan_reply(0, bulks(ints.into_iter().filter(matches))));
                }
            }
            let (visited, next) = s.scan(*cursor, *count);
            let matching = visited.into_iter().map(|(m, ())| m).filter(matches);
            Ok(scan_reply(next, bulks(matching)))
        }
    }
}

/// The most members a set Redis keeps as an intset holds: the default
/// `set-max-intset-entries`.
const INTSET_ENTRIES: usize = 512;

/// The members of a set Redis would keep as an intset (at most
/// [`INTSET_ENTRIES`] integers in canonical form) in the ascending order
/// of its intset; None for any other set.
fn as_intset(s: &Members) -> Option<Vec<&Bytes>> {
    if s.len() > INTSET_ENTRIES {
        return None;
    }
    let mut ints = s
        .keys()
        .map(|m| super::keys::as_stored_integer(m).map(|n| (n, m)))
        .collect::<Option<Vec<_>>>()?;
    ints.sort_unstable_by_key(|(n, _)| *n);
    Some(ints.into_iter().map(|(_, m)| m).collect())
}

/// The members in the order Redis answers them (SMEMBERS): an intset's
/// ascending, any other set's in scan order.
fn in_redis_order(s: &Members) -> Vec<&Bytes> {
    as_intset(s).unwrap_or_else(|| s.keys().collect())
}

/// The sets at `keys`, None for a missing key. Any key of another type is
/// WRONGTYPE, wherever it stands (as Redis checks every key first).
fn lookup<'a>(
    db: &'a Db,
    now: u64,
    keys: &[Bytes],
) -> Result<Vec<Option<&'a Members>>, StateError> {
    keys.iter().map(|k| set(db, k, now)).collect()
}

/// The members of every set, walking the smallest; nothing when a set is
/// missing.
fn intersection<'a>(sets: &[Option<&'a Members>]) -> impl Iterator<Item = &'a Bytes> + 'a {
    let mut present: Vec<&'a Members> = sets.iter().flatten().copied().collect();
    if present.len() < sets.len() {
        present.clear();
    }
    present.sort_by_key(|s| s.len());
    let (smallest, others) = match present.split_first() {
        Some((first, rest)) => (Some(*first), rest.to_vec()),
        None => (None, Vec::new()),
    };
    smallest
        .into_iter()
        .flat_map(|s| s.keys())
        .filter(move |m| others.iter().all(|o| o.contains(m)))
}

/// SINTER, SUNION or SDIFF of the sets at `keys`.
fn combine(db: &Db, now: u64, how: Combine, keys: &[Bytes]) -> Result<Members, StateError> {
    let sets = lookup(db, now, keys)?;
    let mut out = Members::new();
    let mut add = |m: &Bytes| {
        out.insert(m.clone(), ());
    };
    match how {
        Combine::Inter => intersection(&sets).for_each(&mut add),
        Combine::Union => sets.iter().flatten().flat_map(|s| s.keys()).for_each(add),
        Combine::Diff => {
            if let Some((Some(first), rest)) = sets.split_first() {
                first
                    .keys()
                    .filter(|m| !rest.iter().flatten().any(|s| s.contains(m)))
                    .for_each(add);
            }
        }
    }
    Ok(out)
}

/// Up to `count` distinct members in random order; asking for at least the
/// whole set returns it in scan order, as Redis returns a set it does not
/// need to sample.
fn distinct_picks(s: &Members, count: u64, rng: &mut SeededRng) -> Vec<Bytes> {
    let members: Vec<&Bytes> = s.keys().collect();
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    if n >= members.len() {
        return members.into_iter().cloned().collect();
    }
    // A partial Fisher-Yates shuffle: the first `n` slots.
    let mut order: Vec<usize> = (0..members.len()).collect();
    for i in 0..n {
        let j = i + rng.below(order.len() - i);
        order.swap(i, j);
    }
    order[..n].iter().map(|&i| members[i].clone()).collect()
}

/// SRANDMEMBER's picks.
fn rand_member(s: Option<&Members>, count: Option<i64>, seed: u64) -> Outcome {
    let mut rng = SeededRng::new(seed);
    let Some(count) = count else {
        return Outcome::bulk_or_nil(
            s.and_then(|s| s.nth(rng.below(s.len())))
                .map(|(m, ())| m.clone()),
        );
    };
    let Some(s) = s.filter(|s| !s.is_empty() && count != 0) else {
        return Outcome::Array(Vec::new());
    };
    if count > 0 {
        return Outcome::Array(bulks(distinct_picks(s, count as u64, &mut rng).iter()));
    }
    let members: Vec<&Bytes> = s.keys().collect();
    let n = count.unsigned_abs().min(MAX_RANDOM_REPEATS);
    Outcome::Array(
        (0..n)
            .map(|_| Outcome::Bulk(members[rng.below(members.len())].clone()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashSet};

    use proptest::prelude::*;

    use super::*;
    use crate::resp::Reply;
    use crate::state::golden::{render, Harness};
    use crate::state::State;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn big_set(n: usize) -> Db {
        let mut db = Db::new();
        let members = (0..n).map(|i| b(&format!("m:{i}"))).collect();
        let op = SetOp::Add {
            key: b("s"),
            members,
        };
        assert_eq!(apply(&mut db, 0, &op), Ok(Outcome::Int(n as i64)));
        db
    }

    fn strings(outcome: &Outcome) -> Vec<Bytes> {
        let (Outcome::Array(items) | Outcome::Set(items)) = outcome else {
            panic!("not a list: {outcome:?}");
        };
        items
            .iter()
            .map(|o| match o {
                Outcome::Bulk(b) => b.clone(),
                other => panic!("not a bulk: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn sscan_visits_every_member_once() {
        let db = big_set(1500);
        let mut seen = HashSet::new();
        let mut cursor = 0;
        loop {
            let query = SetQuery::Scan {
                key: b("s"),
                cursor,
                pattern: Some(b("m:1*")),
                count: 9,
                bad_option: None,
            };
            let Ok(Outcome::Array(reply)) = read(&db, 0, &query) else {
                panic!("not an array");
            };
            for member in strings(&reply[1]) {
                assert!(seen.insert(member.clone()), "{member:?} twice");
            }
            let next = strings(&Outcome::Array(vec![reply[0].clone()]))[0].clone();
            cursor = std::str::from_utf8(&next).unwrap().parse().unwrap();
            if cursor == 0 {
                break;
            }
        }
        let expected: HashSet<Bytes> = (0..1500)
            .filter(|i| i.to_string().starts_with('1'))
            .map(|i| b(&format!("m:{i}")))
            .collect();
        assert_eq!(seen, expected);
    }

    fn rand(db: &Db, count: Option<i64>, seed: u64) -> Outcome {
        let query = SetQuery::RandMember {
            key: b("s"),
            count,
            seed,
        };
        read(db, 0, &query).unwrap()
    }

    #[test]
    fn srandmember_picks_follow_the_count_rules() {
        let db = big_set(50);
        for seed in 0..50 {
            let picks = strings(&rand(&db, Some(20), seed));
            assert_eq!(picks.len(), 20);
            assert_eq!(picks.iter().collect::<HashSet<_>>().len(), 20);
            let picks = strings(&rand(&db, Some(-120), seed));
            assert_eq!(picks.len(), 120);
            let picks = strings(&rand(&db, Some(60), seed));
            assert_eq!(picks.iter().collect::<HashSet<_>>().len(), 50);
            assert_eq!(rand(&db, Some(7), seed), rand(&db, Some(7), seed));
            assert!(matches!(rand(&db, None, seed), Outcome::Bulk(_)));
        }
        let firsts: HashSet<_> = (0..100)
            .map(|seed| strings(&rand(&db, Some(3), seed))[0].clone())
            .collect();
        assert!(firsts.len() > 20, "picks are spread: {}", firsts.len());
    }

    #[test]
    fn spop_removes_exactly_what_it_returns() {
        for seed in 0..30 {
            let mut db = big_set(40);
            let pop = SetOp::Pop {
                key: b("s"),
                count: Some(15),
                seed,
            };
            let popped = strings(&apply(&mut db, 0, &pop).unwrap());
            assert_eq!(popped.iter().collect::<HashSet<_>>().len(), 15);
            let left = strings(&read(&db, 0, &SetQuery::Members { key: b("s") }).unwrap());
            assert_eq!(left.len(), 25);
            assert!(popped.iter().all(|m| !left.contains(m)));
            let one = SetOp::Pop {
                key: b("s"),
                count: None,
                seed,
            };
            let Ok(Outcome::Bulk(m)) = apply(&mut db, 0, &one) else {
                panic!("SPOP pops a member");
            };
            assert!(left.contains(&m));
            let card = read(&db, 0, &SetQuery::Card { key: b("s") });
            assert_eq!(card, Ok(Outcome::Int(24)));
        }
    }

    #[test]
    fn an_empty_sadd_creates_nothing() {
        let mut db = Db::new();
        let add = SetOp::Add {
            key: b("s"),
            members: Vec::new(),
        };
        assert_eq!(apply(&mut db, 0, &add), Ok(Outcome::Int(0)));
        assert!(db.is_empty());
    }

    const KEYS: [&str; 4] = ["a", "b", "c", "str"];
    const MEMBERS: [&str; 4] = ["x", "y", "z", ""];
    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    #[derive(Clone, Debug)]
    enum Step {
        Add(usize, Vec<usize>),
        Rem(usize, Vec<usize>),
        Move(usize, usize, usize),
        Store(Combine, usize, Vec<usize>),
    }

    fn step() -> impl Strategy<Value = Step> {
        let key = 0..KEYS.len();
        let members = prop::collection::vec(0..MEMBERS.len(), 1..4);
        let keys = prop::collection::vec(0..KEYS.len(), 1..4);
        prop_oneof![
            4 => (key.clone(), members.clone()).prop_map(|(k, m)| Step::Add(k, m)),
            2 => (key.clone(), members).prop_map(|(k, m)| Step::Rem(k, m)),
            1 => (key.clone(), key.clone(), 0..MEMBERS.len())
                .prop_map(|(s, d, m)| Step::Move(s, d, m)),
            2 => (combine(), key, keys).prop_map(|(c, d, k)| Step::Store(c, d, k)),
        ]
    }

    fn combine() -> impl Strategy<Value = Combine> {
        prop_oneof![
            Just(Combine::Inter),
            Just(Combine::Union),
            Just(Combine::Diff)
        ]
    }

    fn name(how: Combine) -> &'static str {
        match how {
            Combine::Inter => "SINTER",
            Combine::Union => "SUNION",
            Combine::Diff => "SDIFF",
        }
    }

    fn words(indexes: &[usize], from: &[&str]) -> String {
        let quoted: Vec<String> = indexes
            .iter()
            .map(|&i| format!("\"{}\"", from[i]))
            .collect();
        quoted.join(" ")
    }

    /// Sets by key, written from Redis's documentation; `str` holds a
    /// string until a STORE replaces it.
    #[derive(Default)]
    struct Model {
        sets: BTreeMap<&'static str, BTreeSet<&'static str>>,
        string_key: bool,
    }

    impl Model {
        fn is_string(&self, key: usize) -> bool {
            self.string_key && KEYS[key] == "str"
        }

        fn combine(&self, how: Combine, keys: &[usize]) -> Result<BTreeSet<&'static str>, ()> {
            if keys.iter().any(|&k| self.is_string(k)) {
                return Err(());
            }
            let get = |k: usize| self.sets.get(KEYS[k]).cloned().unwrap_or_default();
            let mut out = get(keys[0]);
            for &k in &keys[1..] {
                let other = get(k);
                match how {
                    Combine::Inter => out.retain(|m| other.contains(m)),
                    Combine::Union => out.extend(other),
                    Combine::Diff => out.retain(|m| !other.contains(m)),
                }
            }
            Ok(out)
        }

        /// The command line of `step` and the reply Redis gives, applied.
        fn apply(&mut self, step: &Step) -> (String, Reply) {
            let wrongtype = || Reply::Error(WRONGTYPE.to_owned());
            match step {
                Step::Add(k, members) => {
                    let line = format!("SADD {} {}", KEYS[*k], words(members, &MEMBERS));
                    if self.is_string(*k) {
                        return (line, wrongtype());
                    }
                    let set = self.sets.entry(KEYS[*k]).or_default();
                    let added = members.iter().filter(|&&m| set.insert(MEMBERS[m])).count();
                    (line, Reply::Int(added as i64))
                }
                Step::Rem(k, members) => {
                    let line = format!("SREM {} {}", KEYS[*k], words(members, &MEMBERS));
                    if self.is_string(*k) {
                        return (line, wrongtype());
                    }
                    let Some(set) = self.sets.get_mut(KEYS[*k]) else {
                        return (line, Reply::Int(0));
                    };
                    let removed = members.iter().filter(|&&m| set.remove(MEMBERS[m])).count();
                    if set.is_empty() {
                        self.sets.remove(KEYS[*k]);
                    }
                    (line, Reply::Int(removed as i64))
                }
                Step::Move(from, to, m) => {
                    let line = format!("SMOVE {} {} \"{}\"", KEYS[*from], KEYS[*to], MEMBERS[*m]);
                    let member = MEMBERS[*m];
                    if !self.is_string(*from) && !self.sets.contains_key(KEYS[*from]) {
                        return (line, Reply::Int(0));
                    }
                    if self.is_string(*from) || self.is_string(*to) {
                        return (line, wrongtype());
                    }
                    let set = self.sets.get_mut(KEYS[*from]).expect("checked");
                    if from == to {
                        return (line, Reply::Int(set.contains(member) as i64));
                    }
                    if !set.remove(member) {
                        return (line, Reply::Int(0));
                    }
                    if set.is_empty() {
                        self.sets.remove(KEYS[*from]);
                    }
                    self.sets.entry(KEYS[*to]).or_default().insert(member);
                    (line, Reply::Int(1))
                }
                Step::Store(how, dst, keys) => {
                    let line = format!("{}STORE {} {}", name(*how), KEYS[*dst], words(keys, &KEYS));
                    let Ok(result) = self.combine(*how, keys) else {
                        return (line, wrongtype());
                    };
                    if self.is_string(*dst) {
                        self.string_key = false;
                    }
                    let len = result.len() as i64;
                    if result.is_empty() {
                        self.sets.remove(KEYS[*dst]);
                    } else {
                        self.sets.insert(KEYS[*dst], result);
                    }
                    (line, Reply::Int(len))
                }
            }
        }
    }

    fn set_reply(members: &BTreeSet<&str>) -> Reply {
        Reply::Set(members.iter().map(|m| Reply::Bulk(b(m))).collect())
    }

    fn run_model(steps: &[Step], queries: &[(Combine, Vec<usize>)]) -> Result<(), TestCaseError> {
        let mut state = Harness::new(1_700_000_000_000);
        state.run_line("SET str v");
        let mut model = Model {
            string_key: true,
            ..Model::default()
        };
        for (i, step) in steps.iter().enumerate() {
            let (line, expected) = model.apply(step);
            let got = state.run_line(&line);
            prop_assert_eq!(
                render(&got, true),
                render(&expected, true),
                "step {}: {}",
                i,
                line
            );
            for (k, key) in KEYS.iter().enumerate() {
                let expected = if model.is_string(k) {
                    Reply::Error(WRONGTYPE.to_owned())
                } else {
                    set_reply(&model.sets.get(key).cloned().unwrap_or_default())
                };
                let got = state.run_line(&format!("SMEMBERS {key}"));
                prop_assert_eq!(
                    render(&got, true),
                    render(&expected, true),
                    "after step {}",
                    i
                );
            }
            let (how, keys) = &queries[i % queries.len()];
            let expected = model.combine(*how, keys);
            let line = format!("{} {}", name(*how), words(keys, &KEYS));
            let got = state.run_line(&line);
            let reply = expected
                .as_ref()
                .map_or_else(|()| Reply::Error(WRONGTYPE.to_owned()), set_reply);
            prop_assert_eq!(render(&got, true), render(&reply, true), "{}", line);
            let line = format!("SINTERCARD {} {}", keys.len(), words(keys, &KEYS));
            let got = state.run_line(&line);
            let count = model.combine(Combine::Inter, keys);
            let reply = count.map_or_else(
                |()| Reply::Error(WRONGTYPE.to_owned()),
                |s| Reply::Int(s.len() as i64),
            );
            prop_assert_eq!(got, reply, "{}", line);
        }
        let restored = State::decode_snapshot(&state.state.encode_snapshot()).expect("decodes");
        prop_assert!(
            restored == state.state,
            "the snapshot restores an equal state"
        );
        prop_assert_eq!(restored.digest(), state.state.digest());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn sets_agree_with_a_btreeset_model(
            steps in prop::collection::vec(step(), 1..40),
            queries in prop::collection::vec((combine(), prop::collection::vec(0..KEYS.len(), 1..4)), 1..8),
        ) {
            run_model(&steps, &queries)?;
        }
    }
}
