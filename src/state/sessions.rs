//! Sessions: a liveness lease that other state hangs on.
//!
//! A client creates a session with a TTL and keeps it alive; locks, lock
//! waits, registry instances and attached keys can be bound to it. When the
//! session ends (destroyed, or its TTL lapses without a keepalive) all of
//! them end with it, in the same op, so no replica ever sees a lock whose
//! session is gone. Ids come from a counter in the state and are never
//! reused, so a stale id can never name a newer session.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::timers::{self, Ticket, Timer};
use super::{locks, registry, OpResult, Outcome, State, StateError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SessionOp {
    /// Outcome: the new session's id.
    Create { ttl_ms: u64, name: Option<Bytes> },
    /// Outcome: the TTL the session was renewed for.
    KeepAlive { id: u64 },
    /// Outcome: 1 if the session existed.
    Destroy { id: u64 },
    /// Outcome: the number of keys newly attached.
    Attach { id: u64, keys: Vec<Bytes> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SessionQuery {
    Info { id: u64 },
    List,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sessions {
    by_id: BTreeMap<u64, Session>,
    last_id: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    name: Option<Bytes>,
    ttl_ms: u64,
    created_ms: u64,
    deadline: u64,
    /// Locks this session holds.
    pub(super) locks: BTreeSet<Bytes>,
    /// Lock waits made under this session.
    pub(super) waits: BTreeSet<(Bytes, Ticket)>,
    /// Keys deleted when the session ends.
    keys: BTreeSet<Bytes>,
    /// Registry instances (service, id) bound to this session.
    pub(super) instances: BTreeSet<(Bytes, Bytes)>,
}

impl Sessions {
    pub fn exists(&self, id: u64) -> bool {
        self.by_id.contains_key(&id)
    }

    pub(super) fn get_mut(&mut self, id: u64) -> Option<&mut Session> {
        self.by_id.get_mut(&id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Fails with NOSESSION unless `id` (when given) names a live session.
pub(super) fn check(state: &State, id: Option<u64>) -> Result<(), StateError> {
    match id {
        Some(id) if !state.coord.sessions.exists(id) => Err(StateError::NoSession(id)),
        _ => Ok(()),
    }
}

/// The live session `id`, or NOSESSION.
fn live(sessions: &mut Sessions, id: u64) -> Result<&mut Session, StateError> {
    sessions.by_id.get_mut(&id).ok_or(StateError::NoSession(id))
}

pub fn apply(state: &mut State, now: u64, op: &SessionOp) -> OpResult {
    match op {
        SessionOp::Create { ttl_ms, name } => {
            let sessions = &mut state.coord.sessions;
            sessions.last_id += 1;
            let id = sessions.last_id;
            let deadline = timers::deadline(now, *ttl_ms);
            sessions.by_id.insert(
                id,
                Session {
                    name: name.clone(),
                    ttl_ms: *ttl_ms,
                    created_ms: now,
                    deadline,
                    locks: BTreeSet::new(),
                    waits: BTreeSet::new(),
                    keys: BTreeSet::new(),
                    instances: BTreeSet::new(),
                },
            );
            state.coord.timers.schedule(Timer::Session(id), deadline);
            Ok(Outcome::Int(id as i64))
        }
        SessionOp::KeepAlive { id } => {
            let session = live(&mut state.coord.sessions, *id)?;
            let old = session.deadline;
            session.deadline = timers::deadline(now, session.ttl_ms);
            let (new, ttl) = (session.deadline, session.ttl_ms);
            state
                .coord
                .timers
                .reschedule(Timer::Session(*id), Some(old), Some(new));
            Ok(Outcome::Int(ttl as i64))
        }
        SessionOp::Destroy { id } => {
            let Some(session) = state.coord.sessions.by_id.get(id) else {
                return Ok(Outcome::Int(0));
            };
            let deadline = session.deadline;
            state.coord.timers.cancel(Timer::Session(*id), deadline);
            end(state, now, *id);
            Ok(Outcome::Int(1))
        }
        SessionOp::Attach { id, keys } => {
            let session = live(&mut state.coord.sessions, *id)?;
            let added = keys.iter().filter(|k| session.keys.insert((*k).clone()));
            Ok(Outcome::Int(added.count() as i64))
        }
    }
}

pub fn read(state: &State, now: u64, query: &SessionQuery) -> OpResult {
    let sessions = &state.coord.sessions;
    match query {
        SessionQuery::Info { id } => Ok(sessions
            .by_id
            .get(id)
            .map_or(Outcome::Nil, |s| info(*id, s, now))),
        SessionQuery::List => Ok(Outcome::Array(
            sessions
                .by_id
                .iter()
                .map(|(id, s)| {
                    Outcome::Array(vec![
                        Outcome::Int(*id as i64),
                        Outcome::bulk_or_nil(s.name.clone()),
                        Outcome::Int(timers::remaining(s.deadline, now) as i64),
                    ])
                })
                .collect(),
        )),
    }
}

fn info(id: u64, s: &Session, now: u64) -> Outcome {
    let field = |name: &'static str| Outcome::Bulk(Bytes::from_static(name.as_bytes()));
    let bulks = |items: Vec<Bytes>| Outcome::Array(items.into_iter().map(Outcome::Bulk).collect());
    let instances = s
        .instances
        .iter()
        .map(|(service, id)| {
            let mut label = service.to_vec();
            label.push(b'/');
            label.extend_from_slice(id);
            Bytes::from(label)
        })
        .collect();
    Outcome::Map(vec![
        (field("id"), Outcome::Int(id as i64)),
        (field("name"), Outcome::bulk_or_nil(s.name.clone())),
        (field("ttl"), Outcome::Int(s.ttl_ms as i64)),
        (
            field("remaining"),
            Outcome::Int(timers::remaining(s.deadline, now) as i64),
        ),
        (field("created"), Outcome::Int(s.created_ms as i64)),
        (field("locks"), bulks(s.locks.iter().cloned().collect())),
        (field("keys"), bulks(s.keys.iter().cloned().collect())),
        (field("instances"), bulks(instances)),
    ])
}

/// The session's TTL lapsed (its timer already fired).
pub(super) fn expire(state: &mut State, now: u64, id: u64) {
    if state.coord.sessions.by_id.contains_key(&id) {
        state.mesh.sessions_expired += 1;
    }
    end(state, now, id);
}

/// Ends a session whose timer is no longer scheduled: everything bound to
/// it ends too.
fn end(state: &mut State, now: u64, id: u64) {
    let Some(session) = state.coord.sessions.by_id.remove(&id) else {
        return;
    };
    for (lock, ticket) in &session.waits {
        locks::drop_waiter(state, lock, *ticket);
    }
    for lock in &session.locks {
        locks::release_for_session(state, now, lock, id);
    }
    for key in &session.keys {
        state.db.remove(key);
    }
    for (service, instance) in &session.instances {
        registry::end_session(state, service, instance, id);
    }
}

/// A new leader's grace: deadlines move to at least `ms` past `now`.
pub(super) fn grace(state: &mut State, now: u64, ms: u64) {
    let coord = &mut state.coord;
    for (id, session) in coord.sessions.by_id.iter_mut() {
        let old = session.deadline;
        session.deadline = old.max(now).saturating_add(ms);
        coord
            .timers
            .reschedule(Timer::Session(*id), Some(old), Some(session.deadline));
    }
}
