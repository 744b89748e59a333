//! Lists: pushes and pops at both ends, positional reads and edits, moves
//! between lists, and the blocking pops.
//!
//! A list is a `VecDeque` modified in place and never exists empty: a write
//! that removes its last element deletes the key.
//!
//! A blocking pop (BLPOP, BRPOP, BLMPOP, BLMOVE, BRPOPLPUSH) that finds every
//! key empty waits. Each key has a FIFO line of the tickets waiting on it,
//! and each ticket remembers its command. When a write leaves a list at a
//! key with a line (a push, a move, a rename onto it), the same op serves
//! the line as Redis 7.2 does, once the op has applied whole (so a
//! transaction that pushes and then deletes wakes nobody): the writer's own
//! reply is computed first, then each waiter present when the key became ready, longest waiting
//! first, re-runs its command while the key still holds elements. A re-run
//! walks the waiter's keys in argument order, so a waiter blocked on two
//! keys takes from the first that holds elements; a BLMOVE waiter's pop and
//! push happen there and then, and its destination becomes ready in turn,
//! within the same op. A waiter whose wait runs out gets the null reply of
//! its command; one whose client left is dropped without an answer.

use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{Db, Value};
use super::keys::KeyOp;
use super::timers::{self, KeyWaiters, Ticket, Timer, WaitsOnKeys};
use super::{notify, Op, OpResult, Outcome, State, StateError};

/// The elements of a list, head first.
pub type List = VecDeque<Bytes>;

/// An end of a list: LEFT is the head, RIGHT the tail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum End {
    Left,
    Right,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ListOp {
    /// LPUSH, RPUSH, and with `only_if_exists` LPUSHX, RPUSHX. Outcome: the
    /// length after the push (0 when `only_if_exists` found no list).
    Push {
        key: Bytes,
        elements: Vec<Bytes>,
        end: End,
        only_if_exists: bool,
    },
    /// LPOP and RPOP. Without `count`: one element or nil. With it: up to
    /// `count` elements in pop order, or a null array when there is no list.
    Pop {
        key: Bytes,
        end: End,
        count: Option<u64>,
    },
    /// LMPOP: `[key, [elements]]` from the first key holding a list, or a
    /// null array.
    MultiPop {
        keys: Vec<Bytes>,
        end: End,
        count: u64,
    },
    /// LSET. `index` is None when the argument was not an integer: Redis
    /// reports that only once the list is found.
    Set {
        key: Bytes,
        index: Option<i64>,
        element: Bytes,
    },
    /// LINSERT. Outcome: the new length, -1 without the pivot, 0 without
    /// the list.
    Insert {
        key: Bytes,
        after: bool,
        pivot: Bytes,
        element: Bytes,
    },
    /// LREM: `count` > 0 removes from the head, < 0 from the tail, 0 all.
    Remove {
        key: Bytes,
        count: i64,
        element: Bytes,
    },
    /// LTRIM, with LRANGE's index rules. Outcome: OK.
    Trim { key: Bytes, start: i64, stop: i64 },
    /// LMOVE and RPOPLPUSH. Outcome: the moved element, or nil.
    Move {
        source: Bytes,
        destination: Bytes,
        from: End,
        to: End,
    },
    /// BLPOP and BRPOP (`count` None: `[key, element]`) and BLMPOP (`count`
    /// Some: `[key, [elements]]`). Outcome: that, or Blocked.
    BlockingPop {
        keys: Vec<Bytes>,
        end: End,
        count: Option<u64>,
        /// 0 waits without a limit.
        timeout_ms: u64,
        ticket: Ticket,
    },
    /// BLMOVE and BRPOPLPUSH. Outcome: the moved element, or Blocked.
    BlockingMove {
        source: Bytes,
        destination: Bytes,
        from: End,
        to: End,
        /// 0 waits without a limit.
        timeout_ms: u64,
        ticket: Ticket,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ListQuery {
    Len {
        key: Bytes,
    },
    Range {
        key: Bytes,
        start: i64,
        stop: i64,
    },
    /// LINDEX. `index` is None when the argument was not an integer: Redis
    /// reports that only once the list is found.
    Index {
        key: Bytes,
        index: Option<i64>,
    },
    /// LPOS. `rank` is never 0 (negative: from the tail); with `count` the
    /// outcome is an array of up to `count` indexes (0: all), else one
    /// index or nil. `max_len` 0 scans the whole list.
    Pos {
        key: Bytes,
        element: Bytes,
        rank: i64,
        count: Option<u64>,
        max_len: u64,
    },
}

/// The clients waiting in blocking pops, replicated with the primitives.
pub type ListWaiters = KeyWaiters<Waiter>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Waiter {
    command: Blocked,
    /// When the waiter gives up; None waits without a limit.
    gives_up: Option<u64>,
}

impl WaitsOnKeys for Waiter {
    fn keys(&self) -> &[Bytes] {
        self.command.keys()
    }
}

/// The command a waiter re-runs when one of its keys becomes ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Blocked {
    Pop {
        keys: Vec<Bytes>,
        end: End,
        count: Option<u64>,
    },
    Move {
        source: Bytes,
        destination: Bytes,
        from: End,
        to: End,
    },
}

impl Blocked {
    /// The command as the op that would run it now (for its keyspace
    /// events when a later op serves it).
    fn as_op(&self) -> Op {
        Op::List(match self {
            Blocked::Pop { keys, end, count } => ListOp::MultiPop {
                keys: keys.clone(),
                end: *end,
                count: count.unwrap_or(1),
            },
            Blocked::Move {
                source,
                destination,
                from,
                to,
            } => ListOp::Move {
                source: source.clone(),
                destination: destination.clone(),
                from: *from,
                to: *to,
            },
        })
    }

    /// The keys whose lines the waiter stands in.
    fn keys(&self) -> &[Bytes] {
        match self {
            Blocked::Pop { keys, .. } => keys,
            Blocked::Move { source, .. } => std::slice::from_ref(source),
        }
    }

    /// What the waiter hears when its wait runs out.
    fn timed_out(&self) -> Outcome {
        match self {
            Blocked::Pop { .. } => Outcome::NilArray,
            Blocked::Move { .. } => Outcome::Nil,
        }
    }
}

/// The list at `key` for a read: None when absent, WRONGTYPE for another type.
fn list<'a>(db: &'a Db, key: &Bytes, now: u64) -> Result<Option<&'a List>, StateError> {
    match db.get(key, now).map(|e| &e.value) {
        None => Ok(None),
        Some(Value::List(l)) => Ok(Some(l)),
        Some(_) => Err(StateError::WrongType),
    }
}

/// The list at `key` for a write (an expired key is purged first).
fn list_mut<'a>(db: &'a mut Db, key: &Bytes, now: u64) -> Result<Option<&'a mut List>, StateError> {
    match db.get_mut(key, now) {
        None => Ok(None),
        Some(Value::List(l)) => Ok(Some(l)),
        Some(_) => Err(StateError::WrongType),
    }
}

/// Runs `f` on the list at `key`, then deletes the key if `f` emptied it.
/// Without a list, `f` is not called and the result is `absent`.
fn edit<R>(
    db: &mut Db,
    key: &Bytes,
    now: u64,
    absent: R,
    f: impl FnOnce(&mut List) -> Result<R, StateError>,
) -> Result<R, StateError> {
    let Some(l) = list_mut(db, key, now)? else {
        return Ok(absent);
    };
    let result = f(l);
    db.remove_if_empty(key);
    result
}

fn push(l: &mut List, end: End, element: Bytes) {
    match end {
        End::Left => l.push_front(element),
        End::Right => l.push_back(element),
    }
}

/// Pops up to `count` elements from `end`, in pop order.
fn pop_many(l: &mut List, end: End, count: u64) -> Vec<Bytes> {
    let n = usize::try_from(count).unwrap_or(usize::MAX).min(l.len());
    match end {
        End::Left => l.drain(..n).collect(),
        End::Right => l.drain(l.len() - n..).rev().collect(),
    }
}

fn bulks(elements: Vec<Bytes>) -> Outcome {
    Outcome::Array(elements.into_iter().map(Outcome::Bulk).collect())
}

/// The inclusive positions LRANGE and LTRIM select, None when empty.
fn range(len: usize, start: i64, stop: i64) -> Option<(usize, usize)> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let start = if start < 0 { len + start } else { start }.max(0);
    let stop = if stop < 0 { len + stop } else { stop };
    if start > stop || start >= len {
        return None;
    }
    Some((start as usize, stop.min(len - 1) as usize))
}

/// The position LINDEX and LSET address (negative from the tail).
fn position(len: usize, index: i64) -> Option<usize> {
    let len = i64::try_from(len).unwrap_or(i64::MAX);
    let at = if index < 0 { len + index } else { index };
    (0..len).contains(&at).then_some(at as usize)
}

pub fn apply(state: &mut State, now: u64, op: &ListOp) -> OpResult {
    let db = &mut state.db;
    match op {
        ListOp::Push {
            key,
            elements,
            end,
            only_if_exists,
        } => {
            let len = match list_mut(db, key, now)? {
                Some(l) => {
                    elements.iter().for_each(|e| push(l, *end, e.clone()));
                    l.len()
                }
                None if *only_if_exists || elements.is_empty() => return Ok(Outcome::Int(0)),
                None => {
                    let mut l = List::with_capacity(elements.len());
                    elements.iter().for_each(|e| push(&mut l, *end, e.clone()));
                    let len = l.len();
                    db.insert(key.clone(), Value::List(Box::new(l)), None);
                    len
                }
            };
            mark_ready(state, key);
            Ok(Outcome::Int(len as i64))
        }
        ListOp::Pop { key, end, count } => {
            let absent = match count {
                None => Outcome::Nil,
                Some(_) => Outcome::NilArray,
            };
            edit(db, key, now, absent, |l| {
                Ok(match count {
                    None => Outcome::bulk_or_nil(pop_many(l, *end, 1).pop()),
                    Some(n) => bulks(pop_many(l, *end, *n)),
                })
            })
        }
        ListOp::MultiPop { keys, end, count } => {
            Ok(pop_first(db, now, keys, *end, Some(*count))?.unwrap_or(Outcome::NilArray))
        }
        ListOp::Set {
            key,
            index,
            element,
        } => {
            let l = list_mut(db, key, now)?.ok_or(StateError::NoSuchKey)?;
            let index = index.ok_or(StateError::NotInteger)?;
            let at = position(l.len(), index).ok_or(StateError::IndexOutOfRange)?;
            l[at] = element.clone();
            Ok(Outcome::Ok)
        }
        ListOp::Insert {
            key,
            after,
            pivot,
            element,
        } => {
            let Some(l) = list_mut(db, key, now)? else {
                return Ok(Outcome::Int(0));
            };
            let Some(at) = l.iter().position(|e| e == pivot) else {
                return Ok(Outcome::Int(-1));
            };
            l.insert(at + usize::from(*after), element.clone());
            Ok(Outcome::Int(l.len() as i64))
        }
        ListOp::Remove {
            key,
            count,
            element,
        } => edit(db, key, now, Outcome::Int(0), |l| {
            let limit = match count.unsigned_abs() {
                0 => usize::MAX,
                n => usize::try_from(n).unwrap_or(usize::MAX),
            };
            let mut removed = 0;
            let mut keep = |e: &Bytes| {
                let drop = removed < limit && e == element;
                removed += usize::from(drop);
                !drop
            };
            if *count < 0 {
                let mut kept: Vec<Bytes> = l.iter().rev().filter(|e| keep(e)).cloned().collect();
                kept.reverse();
                *l = kept.into();
            } else {
                l.retain(|e| keep(e));
            }
            Ok(Outcome::Int(removed as i64))
        }),
        ListOp::Trim { key, start, stop } => edit(db, key, now, Outcome::Ok, |l| {
            match range(l.len(), *start, *stop) {
                Some((first, last)) => {
                    l.truncate(last + 1);
                    l.drain(..first);
                }
                None => l.clear(),
            }
            Ok(Outcome::Ok)
        }),
        ListOp::Move {
            source,
            destination,
            from,
            to,
        } => {
            let moved = move_one(db, now, source, destination, *from, *to)?;
            if moved.is_some() {
                mark_ready(state, destination);
            }
            Ok(Outcome::bulk_or_nil(moved))
        }
        ListOp::BlockingPop {
            keys,
            end,
            count,
            timeout_ms,
            ticket,
        } => {
            if let Some(popped) = pop_first(db, now, keys, *end, *count)? {
                return Ok(popped);
            }
            let command = Blocked::Pop {
                keys: keys.clone(),
                end: *end,
                count: *count,
            };
            Ok(block(state, now, command, *timeout_ms, *ticket))
        }
        ListOp::BlockingMove {
            source,
            destination,
            from,
            to,
            timeout_ms,
            ticket,
        } => {
            if list(db, source, now)?.is_some() {
                let moved = move_one(db, now, source, destination, *from, *to)?;
                mark_ready(state, destination);
                return Ok(Outcome::bulk_or_nil(moved));
            }
            let command = Blocked::Move {
                source: source.clone(),
                destination: destination.clone(),
                from: *from,
                to: *to,
            };
            Ok(block(state, now, command, *timeout_ms, *ticket))
        }
    }
}

pub fn read(db: &Db, now: u64, query: &ListQuery) -> OpResult {
    match query {
        ListQuery::Len { key } => Ok(Outcome::Int(
            list(db, key, now)?.map_or(0, |l| l.len()) as i64
        )),
        ListQuery::Range { key, start, stop } => {
            let Some(l) = list(db, key, now)? else {
                return Ok(Outcome::Array(Vec::new()));
            };
            Ok(match range(l.len(), *start, *stop) {
                Some((first, last)) => bulks(l.range(first..=last).cloned().collect()),
                None => Outcome::Array(Vec::new()),
            })
        }
        ListQuery::Index { key, index } => {
            let Some(l) = list(db, key, now)? else {
                return Ok(Outcome::Nil);
            };
            let index = index.ok_or(StateError::NotInteger)?;
            Ok(Outcome::bulk_or_nil(
                position(l.len(), index).map(|at| l[at].clone()),
            ))
        }
        ListQuery::Pos {
            key,
            element,
            rank,
            count,
            max_len,
        } => {
            let Some(l) = list(db, key, now)? else {
                return Ok(match count {
                    Some(_) => Outcome::Array(Vec::new()),
                    None => Outcome::Nil,
                });
            };
            Ok(positions(l, element, *rank, *count, *max_len))
        }
    }
}

/// LPOS: skips the first `|rank| - 1` matches, scanning from the tail when
/// `rank` is negative and at most `max_len` elements (0: all).
fn positions(l: &List, element: &Bytes, rank: i64, count: Option<u64>, max_len: u64) -> Outcome {
    let skip = rank.unsigned_abs().saturating_sub(1);
    let scan = match max_len {
        0 => usize::MAX,
        n => usize::try_from(n).unwrap_or(usize::MAX),
    };
    let indexes = l.iter().enumerate();
    let scanned: Box<dyn Iterator<Item = (usize, &Bytes)>> = if rank < 0 {
        Box::new(indexes.rev().take(scan))
    } else {
        Box::new(indexes.take(scan))
    };
    let mut found = scanned
        .filter(|(_, e)| *e == element)
        .map(|(i, _)| i)
        .skip(usize::try_from(skip).unwrap_or(usize::MAX));
    match count {
        None => found
            .next()
            .map_or(Outcome::Nil, |i| Outcome::Int(i as i64)),
        Some(n) => {
            let limit = match n {
                0 => usize::MAX,
                n => usize::try_from(n).unwrap_or(usize::MAX),
            };
            Outcome::Array(found.take(limit).map(|i| Outcome::Int(i as i64)).collect())
        }
    }
}

/// Pops from the first of `keys` that holds a list, as BLPOP (`count`
/// None: `[key, element]`) or LMPOP (`[key, [elements]]`) answers. None
/// when every key is empty; WRONGTYPE for a key of another type met first.
fn pop_first(
    db: &mut Db,
    now: u64,
    keys: &[Bytes],
    end: End,
    count: Option<u64>,
) -> Result<Option<Outcome>, StateError> {
    for key in keys {
        let popped = edit(db, key, now, None, |l| {
            Ok(Some(pop_many(l, end, count.unwrap_or(1))))
        })?;
        let Some(mut popped) = popped else {
            continue;
        };
        let name = Outcome::Bulk(key.clone());
        let reply = match count {
            None => vec![name, Outcome::bulk_or_nil(popped.pop())],
            Some(_) => vec![name, bulks(popped)],
        };
        return Ok(Some(Outcome::Array(reply)));
    }
    Ok(None)
}

/// LMOVE: pops from `source` and pushes onto `destination`, which must be
/// absent or a list (checked before anything moves). None without a source.
fn move_one(
    db: &mut Db,
    now: u64,
    source: &Bytes,
    destination: &Bytes,
    from: End,
    to: End,
) -> Result<Option<Bytes>, StateError> {
    if list_mut(db, source, now)?.is_none() {
        return Ok(None);
    }
    list_mut(db, destination, now)?;
    let Some(Value::List(l)) = db.get_mut(source, now) else {
        return Ok(None);
    };
    let Some(element) = pop_many(l, from, 1).pop() else {
        return Ok(None);
    };
    match list_mut(db, destination, now)? {
        Some(l) => push(l, to, element.clone()),
        None => {
            let l = List::from([element.clone()]);
            db.insert(destination.clone(), Value::List(Box::new(l)), None);
        }
    }
    db.remove_if_empty(source);
    Ok(Some(element))
}

/// Queues `ticket` on each of the command's keys. An unassigned ticket (a
/// client that cannot wait) hears the timeout's answer at once.
fn block(
    state: &mut State,
    now: u64,
    command: Blocked,
    timeout_ms: u64,
    ticket: Ticket,
) -> Outcome {
    if !ticket.is_assigned() {
        return command.timed_out();
    }
    // A retried request takes over the earlier one's place.
    forget(state, ticket);
    let gives_up = (timeout_ms > 0).then(|| timers::deadline(now, timeout_ms));
    // A key named twice holds one place.
    state
        .coord
        .list_waiters
        .insert(ticket, Waiter { command, gives_up });
    if let Some(at) = gives_up {
        state.coord.timers.schedule(Timer::ListWait(ticket), at);
    }
    Outcome::Blocked { ticket, timeout_ms }
}

/// Removes `ticket`'s wait and its give-up timer.
fn forget(state: &mut State, ticket: Ticket) -> Option<Waiter> {
    let waiter = state.coord.list_waiters.remove(ticket)?;
    if let Some(at) = waiter.gives_up {
        state.coord.timers.cancel(Timer::ListWait(ticket), at);
    }
    Some(waiter)
}

/// True when `key` holds a list a waiter can take from.
fn is_ready(db: &Db, key: &Bytes, now: u64) -> bool {
    matches!(db.get(key, now).map(|e| &e.value), Some(Value::List(_)))
}

/// Notes that a write left a list at `key`: its waiters are served once the
/// whole op (a transaction: every command of it) has applied, as Redis
/// serves blocked clients after the command or EXEC that readied their key.
pub(super) fn mark_ready(state: &mut State, key: &Bytes) {
    if state.coord.list_waiters.is_empty() || state.ready_lists.contains(key) {
        return;
    }
    state.ready_lists.push(key.clone());
}

/// Serves the waiters on the keys readied by the op just applied, in the
/// order they became ready, and on every key their moves fill in turn: each
/// waiter in line re-runs its command, in line order, while the key still
/// holds a list.
pub(super) fn serve_waiters(state: &mut State, now: u64) {
    if state.ready_lists.is_empty() {
        return;
    }
    let mut ready = VecDeque::from(std::mem::take(&mut state.ready_lists));
    while let Some(key) = ready.pop_front() {
        for ticket in state.coord.list_waiters.line(&key) {
            if !is_ready(&state.db, &key, now) {
                break;
            }
            let Some(waiter) = forget(state, ticket) else {
                continue;
            };
            let as_op = notify::enabled(state).then(|| waiter.command.as_op());
            let outcome = notify::serving(state, now, as_op.as_ref(), |state| {
                let outcome = match waiter.command {
                    Blocked::Pop { keys, end, count } => {
                        pop_first(&mut state.db, now, &keys, end, count)
                            .map(|popped| popped.unwrap_or(Outcome::NilArray))
                    }
                    Blocked::Move {
                        source,
                        destination,
                        from,
                        to,
                    } => {
                        let moved = move_one(&mut state.db, now, &source, &destination, from, to);
                        if matches!(moved, Ok(Some(_))) && !ready.contains(&destination) {
                            ready.push_back(destination);
                        }
                        moved.map(Outcome::bulk_or_nil)
                    }
                };
                outcome.unwrap_or_else(Outcome::Error)
            });
            state.wake(ticket, outcome);
        }
    }
}

/// After RENAME, COPY or SORT ... STORE: the key written may now hold a
/// list with waiters.
pub(super) fn after_key_op(state: &mut State, op: &KeyOp) {
    if let KeyOp::Rename { to, .. }
    | KeyOp::Copy { to, .. }
    | KeyOp::Restore { key: to, .. }
    | KeyOp::SortStore {
        destination: to, ..
    } = op
    {
        mark_ready(state, to);
    }
}

/// A waiter's wait ran out (its timer already fired).
pub(super) fn give_up(state: &mut State, ticket: Ticket) {
    if let Some(waiter) = state.coord.list_waiters.remove(ticket) {
        state.wake(ticket, waiter.command.timed_out());
    }
}

pub(super) fn is_waiting(state: &State, ticket: Ticket) -> bool {
    state.coord.list_waiters.contains(ticket)
}

/// The client behind `ticket` left: drop its wait without an answer.
/// True if it was waiting in a blocking pop.
pub(super) fn unblock(state: &mut State, ticket: Ticket) -> bool {
    forget(state, ticket).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Op;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn blpop(key: &str, seq: u64, timeout_ms: u64) -> Op {
        Op::List(ListOp::BlockingPop {
            keys: vec![b(key)],
            end: End::Left,
            count: None,
            timeout_ms,
            ticket: Ticket { node: 1, seq },
        })
    }

    fn rpush(key: &str, element: &str) -> Op {
        Op::List(ListOp::Push {
            key: b(key),
            elements: vec![b(element)],
            end: End::Right,
            only_if_exists: false,
        })
    }

    #[test]
    fn lists_and_waiters_survive_a_snapshot() {
        let mut state = State::new();
        state.apply(1, 10, &rpush("l", "a")).unwrap();
        state.apply(2, 10, &blpop("waited", 1, 500)).unwrap();
        let restored = State::decode_snapshot(&state.encode_snapshot()).unwrap();
        assert_eq!(restored, state);
        assert_eq!(restored.digest(), state.digest());
        assert!(restored.is_waiting(Ticket { node: 1, seq: 1 }));
    }

    #[test]
    fn a_retried_wait_keeps_one_place_and_one_timer() {
        let mut state = State::new();
        let ticket = Ticket { node: 1, seq: 7 };
        let blocked = Outcome::Blocked {
            ticket,
            timeout_ms: 100,
        };
        assert_eq!(state.apply(1, 10, &blpop("k", 7, 100)), Ok(blocked.clone()));
        assert_eq!(state.apply(2, 20, &blpop("k", 7, 100)), Ok(blocked));
        assert_eq!(state.coord.list_waiters.len(), 1);
        assert_eq!(state.coord.timers.len(), 1);
        state.apply(3, 120, &Op::Tick).unwrap();
        let wakeups = state.take_wakeups();
        assert_eq!(wakeups.len(), 1);
        assert_eq!(wakeups[0].outcome, Outcome::NilArray);
        assert!(state.coord.list_waiters.is_empty());
        assert!(state.coord.timers.is_empty());
    }

    #[test]
    fn a_wait_without_a_ticket_answers_at_once() {
        let mut state = State::new();
        let op = Op::List(ListOp::BlockingMove {
            source: b("empty"),
            destination: b("d"),
            from: End::Left,
            to: End::Right,
            timeout_ms: 0,
            ticket: Ticket::default(),
        });
        assert_eq!(state.apply(1, 10, &op), Ok(Outcome::Nil));
        assert!(state.coord.list_waiters.is_empty());
    }

    #[test]
    fn huge_indexes_and_counts_neither_panic_nor_wrap() {
        let mut state = State::new();
        for e in ["a", "b", "c"] {
            state.apply(1, 0, &rpush("l", e)).unwrap();
        }
        let db = &state.db;
        let range = |start, stop| {
            read(
                db,
                0,
                &ListQuery::Range {
                    key: b("l"),
                    start,
                    stop,
                },
            )
            .unwrap()
        };
        assert_eq!(
            range(i64::MIN, i64::MAX),
            bulks(vec![b("a"), b("b"), b("c")])
        );
        assert_eq!(range(i64::MAX, i64::MIN), Outcome::Array(Vec::new()));
        let index = ListQuery::Index {
            key: b("l"),
            index: Some(i64::MIN),
        };
        assert_eq!(read(db, 0, &index), Ok(Outcome::Nil));
        let pop = Op::List(ListOp::Pop {
            key: b("l"),
            end: End::Right,
            count: Some(u64::MAX),
        });
        assert_eq!(
            state.apply(2, 0, &pop),
            Ok(bulks(vec![b("c"), b("b"), b("a")]))
        );
        assert!(state.db.is_empty());
    }
}
