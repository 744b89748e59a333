//! Deadlines of the coordination primitives, and the wake-ups of clients
//! that wait on them.
//!
//! Locks, sessions, registry instances, queue leases and blocked waiters
//! all end at a time. The state machine has no clock of its own: a deadline
//! falls due when an entry stamped at or after it is applied. Before any op
//! is applied, every timer due at the entry's time fires (in deadline order,
//! then timer order: the same on every replica), so each op sees the state
//! as of its own time. When nothing else is written, the leader proposes an
//! empty [`Op::Tick`](super::Op::Tick) once the next deadline has passed, so
//! expiries still happen through the log.
//!
//! A client that waits (a lock acquire with WAIT, a blocking queue claim)
//! holds a [`Ticket`]: its node and a sequence number, chosen by the node the
//! client is connected to before the op is replicated. When the state
//! grants what the ticket waits for, it records a [`Wakeup`]; every replica
//! records the same ones, and only the node named in the ticket answers its
//! client. That is why a waiter is answered on whichever node it is
//! connected to, across leader changes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Outcome;

/// Names one waiting client: the node it is connected to and a number that
/// node never hands out twice. `node == 0` means "not assigned yet".
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct Ticket {
    pub node: u64,
    pub seq: u64,
}

impl Ticket {
    pub fn is_assigned(&self) -> bool {
        self.node != 0
    }
}

/// The answer a waiting client gets, recorded while an entry is applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Wakeup {
    pub ticket: Ticket,
    pub outcome: Outcome,
}

/// What falls due at a deadline.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timer {
    /// A session's TTL lapsed without a keepalive.
    Session(u64),
    /// A lock's TTL lapsed.
    Lock(Bytes),
    /// A waiter for a lock gave up.
    LockWait(Bytes, Ticket),
    /// A registry instance's TTL lapsed without a heartbeat.
    Instance { service: Bytes, id: Bytes },
    /// A rate limiter is back to its initial state: forget it.
    Limiter(Bytes),
    /// A queue job's claim lapsed: (queue, job id).
    JobLease(Bytes, u64),
    /// A delayed queue job is due: (queue, job id).
    JobDelay(Bytes, u64),
    /// A blocked queue claimer gave up.
    ClaimWait(Bytes, Ticket),
    /// A client blocked in a list pop (BLPOP, BLMOVE...) gave up.
    ListWait(Ticket),
    /// A client blocked in BZPOPMIN / BZPOPMAX gave up.
    ZSetPopWait(Ticket),
    /// A client blocked in XREAD / XREADGROUP gave up.
    StreamWait(Ticket),
    /// A TTL health check's instance did not report within the TTL.
    CheckTtl { service: Bytes, id: Bytes },
}

/// Every pending deadline, ordered by time. Each owner keeps its own
/// deadline beside the timer and moves it with [`Timers::reschedule`], so a
/// timer is here exactly once while it is pending.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timers {
    due: BTreeSet<(u64, Timer)>,
}

impl Timers {
    /// Moves `timer` from `old` to `new` (either may be none).
    pub fn reschedule(&mut self, timer: Timer, old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        match (old, new) {
            (Some(old), Some(new)) => {
                let removed = self.due.remove(&(old, timer.clone()));
                debug_assert!(removed, "timer {timer:?} was not scheduled at {old}");
                self.due.insert((new, timer));
            }
            (Some(old), None) => {
                let removed = self.due.remove(&(old, timer.clone()));
                debug_assert!(removed, "timer {timer:?} was not scheduled at {old}");
            }
            (None, Some(new)) => {
                self.due.insert((new, timer));
            }
            (None, None) => {}
        }
    }

    pub fn schedule(&mut self, timer: Timer, at: u64) {
        self.due.insert((at, timer));
    }

    pub fn cancel(&mut self, timer: Timer, at: u64) {
        self.due.remove(&(at, timer));
    }

    /// The earliest pending deadline.
    pub fn next(&self) -> Option<u64> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, Timer)> {
        if self.next()? > now {
            return None;
        }
        self.due.pop_first()
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

/// What a client blocked on keys (BLPOP, BZPOPMIN, ...) waits for.
pub trait WaitsOnKeys {
    /// The keys it waits on, in the command's order (repeats allowed).
    fn keys(&self) -> &[Bytes];
}

/// Clients blocked on keys: per key a first-come line of tickets, per
/// ticket what it waits for. A ticket stands once in the line of each
/// distinct key it names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyWaiters<W> {
    by_key: BTreeMap<Bytes, VecDeque<Ticket>>,
    by_ticket: BTreeMap<Ticket, W>,
}

impl<W> Default for KeyWaiters<W> {
    fn default() -> Self {
        KeyWaiters {
            by_key: BTreeMap::new(),
            by_ticket: BTreeMap::new(),
        }
    }
}

impl<W: WaitsOnKeys> KeyWaiters<W> {
    pub fn len(&self) -> usize {
        self.by_ticket.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ticket.is_empty()
    }

    pub fn contains(&self, ticket: Ticket) -> bool {
        self.by_ticket.contains_key(&ticket)
    }

    /// What `ticket` waits for.
    pub fn get(&self, ticket: Ticket) -> Option<&W> {
        self.by_ticket.get(&ticket)
    }

    /// Puts `ticket` at the end of the line of each of its keys.
    pub fn insert(&mut self, ticket: Ticket, waiter: W) {
        for key in waiter.keys() {
            let line = self.by_key.entry(key.clone()).or_default();
            if !line.contains(&ticket) {
                line.push_back(ticket);
            }
        }
        self.by_ticket.insert(ticket, waiter);
    }

    /// Takes `ticket` out of every line it stands in.
    pub fn remove(&mut self, ticket: Ticket) -> Option<W> {
        let waiter = self.by_ticket.remove(&ticket)?;
        for key in waiter.keys() {
            if let Some(line) = self.by_key.get_mut(key) {
                line.retain(|t| *t != ticket);
                if line.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
        Some(waiter)
    }

    /// The tickets waiting on `key`, longest waiting first.
    pub fn line(&self, key: &Bytes) -> Vec<Ticket> {
        self.by_key
            .get(key)
            .map(|line| line.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The ticket that has waited on `key` longest.
    pub fn front(&self, key: &Bytes) -> Option<Ticket> {
        self.by_key.get(key).and_then(|line| line.front().copied())
    }

    /// The keys somebody waits on.
    pub fn waited_keys(&self) -> impl Iterator<Item = &Bytes> {
        self.by_key.keys()
    }
}

/// `now + ttl`, saturating: a TTL is validated by the command layer, but a
/// deadline must never wrap around.
pub fn deadline(now: u64, ttl_ms: u64) -> u64 {
    now.saturating_add(ttl_ms)
}

/// What is left of a deadline at `now`, in milliseconds.
pub fn remaining(deadline: u64, now: u64) -> u64 {
    deadline.saturating_sub(now)
}
