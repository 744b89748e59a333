//! Locks with fencing tokens.
//!
//! A lock is held by an owner (a name the client chooses) until it is
//! released, its TTL lapses, or the session it is bound to ends. Every grant
//! hands out a fencing token from the state's one counter, so a token is
//! larger than every token granted before it, on any lock, across leader
//! changes: a resource that remembers the largest token it has seen can
//! refuse a write from a holder whose lock has since moved on, and
//! `LOCK.GUARD` does that check on the server itself, atomically with the
//! write.
//!
//! Acquiring a held lock with WAIT queues the caller (FIFO); the waiter is
//! answered when the lock is granted to it or its wait runs out. A retried
//! acquire by the holder gets its token back (its TTL renewed), and a
//! retried wait takes over the earlier wait's place in the queue, so a lost
//! reply never leaves an owner waiting behind itself.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::timers::{self, Ticket, Timer};
use super::{sessions, Op, OpResult, Outcome, State, StateError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LockOp {
    /// Outcome: the fencing token, nil (not granted, no wait) or Blocked.
    Acquire {
        name: Bytes,
        owner: Bytes,
        /// 0 only with a session: held until released or the session ends.
        ttl_ms: u64,
        /// None: do not wait. Some(0): wait without a limit.
        wait_ms: Option<u64>,
        session: Option<u64>,
        ticket: Ticket,
    },
    /// Outcome: 1 if `token` held the lock.
    Release { name: Bytes, token: u64 },
    /// Outcome: 1 if `token` holds the lock (its TTL is now `ttl_ms`).
    Extend {
        name: Bytes,
        token: u64,
        ttl_ms: u64,
    },
    /// Applies `op` only while `token` holds the lock; else FENCED.
    Guard {
        name: Bytes,
        token: u64,
        op: Box<Op>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LockQuery {
    Info { name: Bytes },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Locks {
    by_name: BTreeMap<Bytes, Lock>,
}

impl Locks {
    /// Locks held now.
    pub fn held(&self) -> u64 {
        self.by_name.values().filter(|l| l.holder.is_some()).count() as u64
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// A lock with a holder, waiters, or both; removed when it has neither.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Lock {
    holder: Option<Holder>,
    waiters: VecDeque<Waiter>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Holder {
    owner: Bytes,
    token: u64,
    ttl_ms: u64,
    /// None when the lock lives as long as its session.
    deadline: Option<u64>,
    session: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Waiter {
    ticket: Ticket,
    owner: Bytes,
    ttl_ms: u64,
    session: Option<u64>,
    /// When the waiter gives up; None waits without a limit.
    gives_up: Option<u64>,
}

pub fn apply(state: &mut State, now: u64, op: &LockOp) -> OpResult {
    match op {
        LockOp::Acquire {
            name,
            owner,
            ttl_ms,
            wait_ms,
            session,
            ticket,
        } => acquire(
            state, now, name, owner, *ttl_ms, *wait_ms, *session, *ticket,
        ),
        LockOp::Release { name, token } => {
            if holder_token(state, name) != Some(*token) {
                return Ok(Outcome::Int(0));
            }
            release(state, now, name);
            Ok(Outcome::Int(1))
        }
        LockOp::Extend {
            name,
            token,
            ttl_ms,
        } => {
            let coord = &mut state.coord;
            let Some(holder) = coord
                .locks
                .by_name
                .get_mut(name)
                .and_then(|l| l.holder.as_mut())
                .filter(|h| h.token == *token)
            else {
                return Ok(Outcome::Int(0));
            };
            let old = holder.deadline;
            holder.ttl_ms = *ttl_ms;
            holder.deadline = Some(timers::deadline(now, *ttl_ms));
            coord
                .timers
                .reschedule(Timer::Lock(name.clone()), old, holder.deadline);
            Ok(Outcome::Int(1))
        }
        LockOp::Guard { name, token, op } => {
            if holder_token(state, name) != Some(*token) {
                state.mesh.fenced_refused += 1;
                return Err(StateError::Fenced {
                    lock: String::from_utf8_lossy(name).into_owned(),
                    token: *token,
                });
            }
            state.mesh.fenced_applied += 1;
            state.apply_at(now, op)
        }
    }
}

pub fn read(state: &State, now: u64, query: &LockQuery) -> OpResult {
    let LockQuery::Info { name } = query;
    let Some(lock) = state.coord.locks.by_name.get(name) else {
        return Ok(Outcome::Nil);
    };
    let Some(holder) = &lock.holder else {
        return Ok(Outcome::Nil);
    };
    let field = |name: &'static str| Outcome::Bulk(Bytes::from_static(name.as_bytes()));
    let ttl = holder
        .deadline
        .map_or(-1, |d| timers::remaining(d, now) as i64);
    Ok(Outcome::Map(vec![
        (field("owner"), Outcome::Bulk(holder.owner.clone())),
        (field("token"), Outcome::Int(holder.token as i64)),
        (field("ttl"), Outcome::Int(ttl)),
        (field("waiters"), Outcome::Int(lock.waiters.len() as i64)),
        (
            field("session"),
            holder
                .session
                .map_or(Outcome::Nil, |s| Outcome::Int(s as i64)),
        ),
    ]))
}

fn holder_token(state: &State, name: &Bytes) -> Option<u64> {
    state
        .coord
        .locks
        .by_name
        .get(name)
        .and_then(|l| l.holder.as_ref())
        .map(|h| h.token)
}

#[allow(clippy::too_many_arguments)]
fn acquire(
    state: &mut State,
    now: u64,
    name: &Bytes,
    owner: &Bytes,
    ttl_ms: u64,
    wait_ms: Option<u64>,
    session: Option<u64>,
    ticket: Ticket,
) -> OpResult {
    sessions::check(state, session)?;
    let coord = &mut state.coord;
    let lock = coord.locks.by_name.entry(name.clone()).or_default();
    if let Some(holder) = lock.holder.as_mut() {
        if holder.owner == *owner {
            // A retry by the holder: same token, TTL renewed.
            let old = holder.deadline;
            holder.ttl_ms = ttl_ms;
            holder.deadline = (ttl_ms > 0).then(|| timers::deadline(now, ttl_ms));
            let token = holder.token;
            coord
                .timers
                .reschedule(Timer::Lock(name.clone()), old, holder.deadline);
            return Ok(Outcome::Int(token as i64));
        }
        let Some(wait_ms) = wait_ms.filter(|_| ticket.is_assigned()) else {
            return Ok(Outcome::Nil);
        };
        let gives_up = (wait_ms > 0).then(|| timers::deadline(now, wait_ms));
        if let Some(earlier) = lock.waiters.iter_mut().find(|w| w.owner == *owner) {
            // A retried wait takes over the earlier one's place; the earlier
            // caller (most likely gone) is told it was not granted.
            let replaced = std::mem::replace(
                earlier,
                Waiter {
                    ticket,
                    owner: owner.clone(),
                    ttl_ms,
                    session,
                    gives_up,
                },
            );
            forget_wait(state, name, &replaced);
            state.wake(replaced.ticket, Outcome::Nil);
        } else {
            lock.waiters.push_back(Waiter {
                ticket,
                owner: owner.clone(),
                ttl_ms,
                session,
                gives_up,
            });
        }
        if let Some(at) = gives_up {
            state
                .coord
                .timers
                .schedule(Timer::LockWait(name.clone(), ticket), at);
        }
        if let Some(s) = session.and_then(|s| state.coord.sessions.get_mut(s)) {
            s.waits.insert((name.clone(), ticket));
        }
        state.mesh.lock_waits += 1;
        return Ok(Outcome::Blocked {
            ticket,
            timeout_ms: wait_ms,
        });
    }
    let token = grant(state, now, name, owner.clone(), ttl_ms, session);
    Ok(Outcome::Int(token as i64))
}

/// Makes `owner` the holder of the free lock `name`; returns its token.
fn grant(
    state: &mut State,
    now: u64,
    name: &Bytes,
    owner: Bytes,
    ttl_ms: u64,
    session: Option<u64>,
) -> u64 {
    state.mesh.lock_grants += 1;
    let coord = &mut state.coord;
    let token = coord.next_fence();
    let deadline = (ttl_ms > 0).then(|| timers::deadline(now, ttl_ms));
    if let Some(at) = deadline {
        coord.timers.schedule(Timer::Lock(name.clone()), at);
    }
    if let Some(s) = session.and_then(|s| coord.sessions.get_mut(s)) {
        s.locks.insert(name.clone());
    }
    let lock = coord.locks.by_name.entry(name.clone()).or_default();
    debug_assert!(lock.holder.is_none());
    lock.holder = Some(Holder {
        owner,
        token,
        ttl_ms,
        deadline,
        session,
    });
    token
}

/// Frees the lock (its timer still scheduled) and grants it to the next
/// waiter.
fn release(state: &mut State, now: u64, name: &Bytes) {
    let coord = &mut state.coord;
    let Some(holder) = coord
        .locks
        .by_name
        .get_mut(name)
        .and_then(|l| l.holder.take())
    else {
        return;
    };
    if let Some(at) = holder.deadline {
        coord.timers.cancel(Timer::Lock(name.clone()), at);
    }
    after_release(state, now, name, holder);
}

/// The lock lost `holder` (its timer already gone): unbind it from its
/// session and hand the lock to the first waiter.
fn after_release(state: &mut State, now: u64, name: &Bytes, holder: Holder) {
    if let Some(s) = holder.session.and_then(|s| state.coord.sessions.get_mut(s)) {
        s.locks.remove(name);
    }
    let next = state
        .coord
        .locks
        .by_name
        .get_mut(name)
        .and_then(|l| l.waiters.pop_front());
    match next {
        Some(waiter) => {
            forget_wait(state, name, &waiter);
            let token = grant(
                state,
                now,
                name,
                waiter.owner,
                waiter.ttl_ms,
                waiter.session,
            );
            state.wake(waiter.ticket, Outcome::Int(token as i64));
        }
        None => {
            state.coord.locks.by_name.remove(name);
        }
    }
}

/// Removes what a waiter left outside its lock's queue: its give-up timer
/// and its session's record of the wait.
fn forget_wait(state: &mut State, name: &Bytes, waiter: &Waiter) {
    let coord = &mut state.coord;
    if let Some(at) = waiter.gives_up {
        coord
            .timers
            .cancel(Timer::LockWait(name.clone(), waiter.ticket), at);
    }
    if let Some(s) = waiter.session.and_then(|s| coord.sessions.get_mut(s)) {
        s.waits.remove(&(name.clone(), waiter.ticket));
    }
}

/// The holder's TTL lapsed (its timer already fired).
pub(super) fn expire(state: &mut State, now: u64, name: &Bytes) {
    let Some(holder) = state
        .coord
        .locks
        .by_name
        .get_mut(name)
        .and_then(|l| l.holder.take())
    else {
        return;
    };
    after_release(state, now, name, holder);
}

/// A waiter's wait ran out (its timer already fired): it gets nil.
pub(super) fn give_up(state: &mut State, name: &Bytes, ticket: Ticket) {
    if let Some(waiter) = take_waiter(state, name, ticket) {
        if let Some(s) = waiter.session.and_then(|s| state.coord.sessions.get_mut(s)) {
            s.waits.remove(&(name.clone(), ticket));
        }
        state.wake(ticket, Outcome::Nil);
    }
}

fn take_waiter(state: &mut State, name: &Bytes, ticket: Ticket) -> Option<Waiter> {
    let locks = &mut state.coord.locks.by_name;
    let lock = locks.get_mut(name)?;
    let at = lock.waiters.iter().position(|w| w.ticket == ticket)?;
    let waiter = lock.waiters.remove(at);
    if lock.holder.is_none() && lock.waiters.is_empty() {
        locks.remove(name);
    }
    waiter
}

/// The waiter's session ended: its place is dropped, and it hears nil.
pub(super) fn drop_waiter(state: &mut State, name: &Bytes, ticket: Ticket) {
    if let Some(waiter) = take_waiter(state, name, ticket) {
        if let Some(at) = waiter.gives_up {
            state
                .coord
                .timers
                .cancel(Timer::LockWait(name.clone(), ticket), at);
        }
        state.wake(ticket, Outcome::Nil);
    }
}

/// The session `id` ended: the lock is released if that session holds it.
pub(super) fn release_for_session(state: &mut State, now: u64, name: &Bytes, id: u64) {
    let held = state
        .coord
        .locks
        .by_name
        .get(name)
        .and_then(|l| l.holder.as_ref())
        .is_some_and(|h| h.session == Some(id));
    if held {
        release(state, now, name);
    }
}

pub(super) fn is_waiting(state: &State, ticket: Ticket) -> bool {
    waiting_on(state, ticket).is_some()
}

/// The lock `ticket` waits for, if it waits.
pub(super) fn waiting_on(state: &State, ticket: Ticket) -> Option<Bytes> {
    state
        .coord
        .locks
        .by_name
        .iter()
        .find(|(_, l)| l.waiters.iter().any(|w| w.ticket == ticket))
        .map(|(name, _)| name.clone())
}

/// The client behind `ticket` left: drop its wait without an answer.
/// True if it was waiting for a lock.
pub(super) fn unblock(state: &mut State, ticket: Ticket) -> bool {
    let Some(name) = waiting_on(state, ticket) else {
        return false;
    };
    if let Some(waiter) = take_waiter(state, &name, ticket) {
        forget_wait(state, &name, &waiter);
    }
    true
}

/// A new leader's grace: lock deadlines move to at least `ms` past `now`.
pub(super) fn grace(state: &mut State, now: u64, ms: u64) {
    let coord = &mut state.coord;
    for (name, lock) in coord.locks.by_name.iter_mut() {
        let Some(holder) = lock.holder.as_mut() else {
            continue;
        };
        let Some(old) = holder.deadline else {
            continue;
        };
        holder.deadline = Some(old.max(now).saturating_add(ms));
        coord
            .timers
            .reschedule(Timer::Lock(name.clone()), Some(old), holder.deadline);
    }
}
