//! The service registry: instances of services, their liveness and health,
//! and load balancing decided on the server.
//!
//! An instance (service, id) is registered with an address, optional JSON
//! metadata and a TTL, a session, or both. It lives until it is
//! deregistered, its TTL lapses without a heartbeat (the lapse goes
//! through the log as a timer, like every other deadline), or its session
//! ends (in the same op that ends the session).
//!
//! Liveness and health are separate: a live instance may be unhealthy.
//! Health comes from reports by probes anywhere in the mesh; the reports of
//! all reporters form one streak, and an instance flips only after a
//! service's threshold of consecutive opposite reports, as Kubernetes probes
//! do, so one flaky probe does not take an instance out.
//!
//! Picking is a replicated write so every client, on every node, shares one
//! round-robin cursor and one count of outstanding least-connections picks.
//! Consistent hashing is rendezvous hashing over the healthy instances: a
//! key stays with its instance unless that instance leaves, and a new
//! instance takes only the keys it now wins.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::checks::{Check, CheckSpec, OwnedCheck, Probe, ProbeResult};
use super::db::stable_hash;
use super::timers::{self, Timer};
use super::{sessions, OpResult, Outcome, State, StateError};

/// Consecutive DOWN reports that make a healthy instance unhealthy, unless
/// the service is configured otherwise (Kubernetes' failureThreshold).
pub const DEFAULT_UNHEALTHY: u64 = 3;
/// Consecutive UP reports that make an unhealthy instance healthy again
/// (Kubernetes' successThreshold).
pub const DEFAULT_HEALTHY: u64 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RegistryOp {
    /// Outcome: 1 for a new instance, 0 when an existing one was replaced.
    Register {
        service: Bytes,
        id: Bytes,
        registration: Registration,
    },
    /// Outcome: 1 if the instance exists (its TTL starts again).
    Heartbeat { service: Bytes, id: Bytes },
    /// Outcome: 1 if the instance existed.
    Deregister { service: Bytes, id: Bytes },
    /// Outcome: [id, address] of the chosen healthy instance, or nil.
    Pick { service: Bytes, strategy: Strategy },
    /// Outcome: 1 if an outstanding least-connections pick was returned.
    Done { service: Bytes, id: Bytes },
    /// Outcome: the instance's healthy flag after the report.
    Health { service: Bytes, id: Bytes, up: bool },
    /// Outcome: OK. A threshold left out keeps its current value.
    Config {
        service: Bytes,
        unhealthy: Option<u64>,
        healthy: Option<u64>,
    },
    /// REGISTRY.CHECK: sets (or replaces) the instance's health check; a
    /// probed check is unassigned until the leader gives it an owner.
    /// Outcome: OK, or -ERR no such instance.
    Check {
        service: Bytes,
        id: Bytes,
        spec: CheckSpec,
    },
    /// REGISTRY.UNCHECK. Outcome: 1 if there was a check.
    Uncheck { service: Bytes, id: Bytes },
    /// The leader gives checks to nodes: (service, id, owner). Outcome:
    /// how many changed owner.
    AssignChecks(Vec<(Bytes, Bytes, u64)>),
    /// A probe's result from the node that owns the check; counted into the
    /// instance's streak as a report. Ignored (outcome 0) if `owner` no
    /// longer owns it; else 1.
    CheckResult {
        service: Bytes,
        id: Bytes,
        owner: u64,
        ok: bool,
        detail: Bytes,
        latency_us: u64,
    },
}

/// What REGISTER sets, replacing an earlier registration's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub address: Bytes,
    /// JSON, checked by the command layer, stored as given.
    pub meta: Option<Bytes>,
    /// 0 only with a session: the instance lives as long as it.
    pub ttl_ms: u64,
    pub session: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Strategy {
    RoundRobin,
    LeastConnections,
    ConsistentHash { key: Bytes },
}

impl Strategy {
    /// The strategy's name in metric labels.
    pub fn metric_name(&self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::LeastConnections => "least_connections",
            Strategy::ConsistentHash { .. } => "consistent_hash",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RegistryQuery {
    List { service: Bytes, all: bool },
    Services,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    services: BTreeMap<Bytes, Service>,
}

impl Registry {
    /// Every service with its instances and whether each is healthy.
    pub fn health(&self) -> Vec<(String, Vec<(String, bool)>)> {
        self.services
            .iter()
            .map(|(name, s)| {
                let instances = s
                    .instances
                    .iter()
                    .map(|(id, i)| (super::mesh::text(id), i.healthy))
                    .collect();
                (super::mesh::text(name), instances)
            })
            .collect()
    }

    fn instance_mut(&mut self, service: &Bytes, id: &Bytes) -> Option<&mut Instance> {
        self.services.get_mut(service)?.instances.get_mut(id)
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// A service with instances, a configuration of its own, or both; removed
/// when it has neither.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Service {
    instances: BTreeMap<Bytes, Instance>,
    thresholds: Thresholds,
    /// The id round robin picked last: the next pick is the first healthy
    /// instance after it in id order, so joins and leaves do not make the
    /// rotation skip or repeat anyone.
    last_round_robin: Option<Bytes>,
}

impl Service {
    fn is_unused(&self) -> bool {
        self.instances.is_empty() && self.thresholds == Thresholds::default()
    }

    fn healthy(&self) -> impl Iterator<Item = (&Bytes, &Instance)> {
        self.instances.iter().filter(|(_, i)| i.healthy)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Thresholds {
    unhealthy: u64,
    healthy: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            unhealthy: DEFAULT_UNHEALTHY,
            healthy: DEFAULT_HEALTHY,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Instance {
    address: Bytes,
    meta: Option<Bytes>,
    ttl_ms: u64,
    /// None when the instance lives as long as its session.
    deadline: Option<u64>,
    last_heartbeat: u64,
    session: Option<u64>,
    healthy: bool,
    /// The latest run of identical health reports: UP (true) or DOWN, and
    /// how many in a row.
    streak: Option<(bool, u64)>,
    /// Least-connections picks not yet returned with DONE.
    active: u64,
}

pub fn apply(state: &mut State, now: u64, op: &RegistryOp) -> OpResult {
    match op {
        RegistryOp::Register {
            service,
            id,
            registration,
        } => {
            sessions::check(state, registration.session)?;
            let registration = registration.clone();
            Ok(Outcome::bool(register(
                state,
                now,
                service,
                id,
                registration,
            )))
        }
        RegistryOp::Heartbeat { service, id } => {
            let coord = &mut state.coord;
            let Some(instance) = coord.registry.instance_mut(service, id) else {
                return Ok(Outcome::Int(0));
            };
            let old = instance.deadline;
            instance.last_heartbeat = now;
            instance.deadline = lease(now, instance.ttl_ms);
            coord
                .timers
                .reschedule(instance_timer(service, id), old, instance.deadline);
            Ok(Outcome::Int(1))
        }
        RegistryOp::Deregister { service, id } => {
            Ok(Outcome::bool(deregister(state, service, id, None)))
        }
        RegistryOp::Pick { service, strategy } => {
            state.mesh.pick(service, strategy.metric_name());
            Ok(pick(state, service, strategy))
        }
        RegistryOp::Done { service, id } => {
            let instance = state
                .coord
                .registry
                .instance_mut(service, id)
                .filter(|i| i.active > 0);
            Ok(Outcome::bool(instance.is_some_and(|i| {
                i.active -= 1;
                true
            })))
        }
        RegistryOp::Health { service, id, up } => {
            let healthy = record(state, service, id, *up)?;
            // A TTL check's instance reported UP: its TTL starts again.
            if *up {
                restart_ttl(state, now, service, id);
            }
            Ok(Outcome::bool(healthy))
        }
        RegistryOp::Check { service, id, spec } => {
            if state.coord.registry.instance_mut(service, id).is_none() {
                return Err(StateError::NoSuchInstance);
            }
            uncheck(state, service, id);
            let ttl_deadline =
                (spec.probe == Probe::Ttl).then(|| now.saturating_add(spec.interval_ms));
            if let Some(at) = ttl_deadline {
                state.coord.timers.schedule(check_timer(service, id), at);
            }
            state.coord.ext.checks.by_instance.insert(
                (service.clone(), id.clone()),
                Check {
                    spec: spec.clone(),
                    owner: 0,
                    last: None,
                    ttl_deadline,
                },
            );
            Ok(Outcome::Ok)
        }
        RegistryOp::Uncheck { service, id } => Ok(Outcome::bool(uncheck(state, service, id))),
        RegistryOp::AssignChecks(moves) => {
            let mut changed = 0;
            for (service, id, owner) in moves {
                if let Some(check) = state.coord.ext.checks.get_mut(service, id) {
                    if check.spec.probe.needs_prober() && check.owner != *owner {
                        check.owner = *owner;
                        changed += 1;
                    }
                }
            }
            Ok(Outcome::Int(changed))
        }
        RegistryOp::CheckResult {
            service,
            id,
            owner,
            ok,
            detail,
            latency_us,
        } => {
            let Some(check) = state.coord.ext.checks.get_mut(service, id) else {
                return Ok(Outcome::Int(0));
            };
            if check.owner != *owner {
                return Ok(Outcome::Int(0));
            }
            check.last = Some(ProbeResult {
                ok: *ok,
                detail: detail.clone(),
                latency_us: *latency_us,
                at: now,
            });
            record(state, service, id, *ok)?;
            Ok(Outcome::Int(1))
        }
        RegistryOp::Config {
            service,
            unhealthy,
            healthy,
        } => {
            let services = &mut state.coord.registry.services;
            let entry = services.entry(service.clone()).or_default();
            if let Some(n) = unhealthy {
                entry.thresholds.unhealthy = *n;
            }
            if let Some(n) = healthy {
                entry.thresholds.healthy = *n;
            }
            if entry.is_unused() {
                services.remove(service);
            }
            Ok(Outcome::Ok)
        }
    }
}

pub fn read(state: &State, now: u64, query: &RegistryQuery) -> OpResult {
    let services = &state.coord.registry.services;
    match query {
        RegistryQuery::List { service, all } => {
            let name = service;
            let Some(service) = services.get(service) else {
                return Ok(Outcome::Array(Vec::new()));
            };
            Ok(Outcome::Array(
                service
                    .instances
                    .iter()
                    .filter(|(_, i)| *all || i.healthy)
                    .map(|(id, i)| describe(id, i, now, state.coord.ext.checks.get(name, id)))
                    .collect(),
            ))
        }
        RegistryQuery::Services => Ok(Outcome::Array(
            services
                .iter()
                .map(|(name, s)| {
                    Outcome::Array(vec![
                        Outcome::Bulk(name.clone()),
                        Outcome::Int(s.healthy().count() as i64),
                        Outcome::Int(s.instances.len() as i64),
                    ])
                })
                .collect(),
        )),
    }
}

fn describe(id: &Bytes, i: &Instance, now: u64, check: Option<&Check>) -> Outcome {
    let field = |name: &'static str| Outcome::Bulk(Bytes::from_static(name.as_bytes()));
    let check = check.map_or(Outcome::Nil, |c| {
        let target = match &c.spec.probe {
            Probe::Http { url, .. } => Outcome::Bulk(url.clone()),
            Probe::Tcp { addr } => Outcome::Bulk(addr.clone()),
            Probe::Ttl => Outcome::Nil,
        };
        let last = c.last.as_ref();
        Outcome::Map(vec![
            (
                field("type"),
                Outcome::Bulk(Bytes::from_static(c.spec.probe.kind().as_bytes())),
            ),
            (field("target"), target),
            (
                field("interval-ms"),
                Outcome::Int(saturating_i64(c.spec.interval_ms)),
            ),
            (
                field("timeout-ms"),
                Outcome::Int(saturating_i64(c.spec.timeout_ms)),
            ),
            (field("owner"), Outcome::Int(saturating_i64(c.owner))),
            (
                field("last-ok"),
                last.map_or(Outcome::Nil, |r| Outcome::bool(r.ok)),
            ),
            (
                field("last-detail"),
                Outcome::bulk_or_nil(last.map(|r| r.detail.clone())),
            ),
            (
                field("last-latency-us"),
                last.map_or(Outcome::Nil, |r| Outcome::Int(saturating_i64(r.latency_us))),
            ),
            (
                field("last-age"),
                last.map_or(Outcome::Nil, |r| {
                    Outcome::Int(saturating_i64(now.saturating_sub(r.at)))
                }),
            ),
        ])
    });
    Outcome::Map(vec![
        (field("id"), Outcome::Bulk(id.clone())),
        (field("address"), Outcome::Bulk(i.address.clone())),
        (field("meta"), Outcome::bulk_or_nil(i.meta.clone())),
        (field("healthy"), Outcome::bool(i.healthy)),
        (field("active"), Outcome::Int(saturating_i64(i.active))),
        (
            field("last-heartbeat-age"),
            Outcome::Int(saturating_i64(now.saturating_sub(i.last_heartbeat))),
        ),
        (
            field("session"),
            i.session.map_or(Outcome::Nil, |s| Outcome::Int(s as i64)),
        ),
        (field("check"), check),
    ])
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn instance_timer(service: &Bytes, id: &Bytes) -> Timer {
    Timer::Instance {
        service: service.clone(),
        id: id.clone(),
    }
}

/// The deadline of a TTL starting at `now`; none for a session-only
/// instance (TTL 0).
fn lease(now: u64, ttl_ms: u64) -> Option<u64> {
    (ttl_ms > 0).then(|| timers::deadline(now, ttl_ms))
}

/// Registers or replaces the instance; true when it is new. A replaced
/// instance keeps its health and its outstanding picks: it is the same
/// instance, announced again.
fn register(state: &mut State, now: u64, service: &Bytes, id: &Bytes, r: Registration) -> bool {
    let coord = &mut state.coord;
    let deadline = lease(now, r.ttl_ms);
    let entry = coord.registry.services.entry(service.clone()).or_default();
    let (is_new, old_deadline, old_session) = match entry.instances.get_mut(id) {
        Some(instance) => {
            let old = (instance.deadline, instance.session);
            instance.address = r.address;
            instance.meta = r.meta;
            instance.ttl_ms = r.ttl_ms;
            instance.deadline = deadline;
            instance.last_heartbeat = now;
            instance.session = r.session;
            (false, old.0, old.1)
        }
        None => {
            entry.instances.insert(
                id.clone(),
                Instance {
                    address: r.address,
                    meta: r.meta,
                    ttl_ms: r.ttl_ms,
                    deadline,
                    last_heartbeat: now,
                    session: r.session,
                    healthy: true,
                    streak: None,
                    active: 0,
                },
            );
            (true, None, None)
        }
    };
    coord
        .timers
        .reschedule(instance_timer(service, id), old_deadline, deadline);
    if old_session != r.session {
        if let Some(s) = old_session.and_then(|s| coord.sessions.get_mut(s)) {
            s.instances.remove(&(service.clone(), id.clone()));
        }
    }
    if let Some(s) = r.session.and_then(|s| coord.sessions.get_mut(s)) {
        s.instances.insert((service.clone(), id.clone()));
    }
    is_new
}

/// Removes the instance with its timer and its session's record of it.
/// With `only_session`, only if the instance is bound to that session.
/// True if it was removed.
fn deregister(state: &mut State, service: &Bytes, id: &Bytes, only_session: Option<u64>) -> bool {
    let coord = &mut state.coord;
    let Some(entry) = coord.registry.services.get_mut(service) else {
        return false;
    };
    let bound_elsewhere = |i: &Instance| only_session.is_some_and(|s| i.session != Some(s));
    if entry.instances.get(id).is_none_or(bound_elsewhere) {
        return false;
    }
    let Some(instance) = entry.instances.remove(id) else {
        return false;
    };
    if entry.is_unused() {
        coord.registry.services.remove(service);
    }
    if let Some(at) = instance.deadline {
        coord.timers.cancel(instance_timer(service, id), at);
    }
    if let Some(s) = instance.session.and_then(|s| coord.sessions.get_mut(s)) {
        s.instances.remove(&(service.clone(), id.clone()));
    }
    uncheck(state, service, id);
    true
}

/// The instance's TTL lapsed (its timer already fired).
pub(super) fn expire(state: &mut State, service: &Bytes, id: &Bytes) {
    if let Some(instance) = state.coord.registry.instance_mut(service, id) {
        // The timer is gone; deregistering must not cancel it again.
        instance.deadline = None;
    }
    deregister(state, service, id, None);
}

/// The session `session` ended: the instance goes if it is bound to it.
pub(super) fn end_session(state: &mut State, service: &Bytes, id: &Bytes, session: u64) {
    deregister(state, service, id, Some(session));
}

/// The channel health transitions are published on, as
/// `<service> <id> up|down`.
pub const HEALTH_CHANNEL: &[u8] = b"__registry__:health";

/// Counts one report (REGISTRY.HEALTH, or a check's result) into the
/// instance's streak; when it flips the instance's health, publishes the
/// transition on [`HEALTH_CHANNEL`] and counts it. Returns the health after.
fn record(state: &mut State, service: &Bytes, id: &Bytes, up: bool) -> Result<bool, StateError> {
    let entry = state
        .coord
        .registry
        .services
        .get_mut(service)
        .ok_or(StateError::NoSuchInstance)?;
    let thresholds = entry.thresholds.clone();
    let instance = entry
        .instances
        .get_mut(id)
        .ok_or(StateError::NoSuchInstance)?;
    let before = instance.healthy;
    report(instance, &thresholds, up);
    let after = instance.healthy;
    if before != after {
        state.mesh.health_transition(service, id, after);
        let message = [
            service.as_ref(),
            b" ",
            id.as_ref(),
            if after { b" up" } else { b" down" },
        ]
        .concat();
        super::pubsub::publish(
            state,
            false,
            &Bytes::from_static(HEALTH_CHANNEL),
            &Bytes::from(message),
        );
    }
    Ok(after)
}

/// Removes the instance's check (and its TTL timer); true if it had one.
fn uncheck(state: &mut State, service: &Bytes, id: &Bytes) -> bool {
    let Some(check) = state
        .coord
        .ext
        .checks
        .by_instance
        .remove(&(service.clone(), id.clone()))
    else {
        return false;
    };
    if let Some(at) = check.ttl_deadline {
        state.coord.timers.cancel(check_timer(service, id), at);
    }
    true
}

/// Starts a TTL check's TTL again from `now`.
fn restart_ttl(state: &mut State, now: u64, service: &Bytes, id: &Bytes) {
    let coord = &mut state.coord;
    let Some(check) = coord.ext.checks.get_mut(service, id) else {
        return;
    };
    let Some(old) = check.ttl_deadline else {
        return;
    };
    let at = now.saturating_add(check.spec.interval_ms);
    check.ttl_deadline = Some(at);
    coord
        .timers
        .reschedule(check_timer(service, id), Some(old), Some(at));
}

/// A TTL check's TTL ran out (its timer already fired): one failed probe,
/// and the next TTL starts.
pub(super) fn check_lapsed(state: &mut State, now: u64, service: &Bytes, id: &Bytes) {
    let Some(check) = state.coord.ext.checks.get_mut(service, id) else {
        return;
    };
    let at = now.saturating_add(check.spec.interval_ms);
    check.ttl_deadline = Some(at);
    check.last = Some(ProbeResult {
        ok: false,
        detail: Bytes::from_static(b"no report within the TTL"),
        latency_us: 0,
        at: now,
    });
    state.coord.timers.schedule(check_timer(service, id), at);
    let _ = record(state, service, id, false);
}

fn check_timer(service: &Bytes, id: &Bytes) -> Timer {
    Timer::CheckTtl {
        service: service.clone(),
        id: id.clone(),
    }
}

/// The probed checks `owner` owns, with what its prober needs.
pub fn owned_checks(state: &State, owner: u64) -> Vec<OwnedCheck> {
    let registry = &state.coord.registry;
    state
        .coord
        .ext
        .checks
        .by_instance
        .iter()
        .filter(|(_, c)| c.owner == owner && c.spec.probe.needs_prober())
        .filter_map(|((service, id), c)| {
            let instance = registry.services.get(service)?.instances.get(id)?;
            Some(OwnedCheck {
                service: service.clone(),
                id: id.clone(),
                spec: c.spec.clone(),
                healthy: instance.healthy,
                last_ok: c.last.as_ref().map(|r| r.ok),
            })
        })
        .collect()
}

/// Counts one health report into the instance's streak and flips its
/// health when the streak reaches the service's threshold.
fn report(instance: &mut Instance, thresholds: &Thresholds, up: bool) {
    let run = match instance.streak {
        Some((was_up, n)) if was_up == up => n.saturating_add(1),
        _ => 1,
    };
    instance.streak = Some((up, run));
    if up && !instance.healthy && run >= thresholds.healthy {
        instance.healthy = true;
    } else if !up && instance.healthy && run >= thresholds.unhealthy {
        instance.healthy = false;
    }
}

fn pick(state: &mut State, service: &Bytes, strategy: &Strategy) -> Outcome {
    let Some(entry) = state.coord.registry.services.get_mut(service) else {
        return Outcome::Nil;
    };
    let chosen = match strategy {
        Strategy::RoundRobin => {
            let after = entry.last_round_robin.as_ref();
            let next = entry
                .healthy()
                .find(|(id, _)| after.is_some_and(|last| *id > last))
                .or_else(|| entry.healthy().next())
                .map(|(id, _)| id.clone());
            entry.last_round_robin.clone_from(&next);
            next
        }
        Strategy::LeastConnections => {
            let next = entry
                .healthy()
                .min_by_key(|(_, i)| i.active)
                .map(|(id, _)| id.clone());
            if let Some(i) = next.as_ref().and_then(|id| entry.instances.get_mut(id)) {
                i.active = i.active.saturating_add(1);
            }
            next
        }
        Strategy::ConsistentHash { key } => {
            rendezvous(key, entry.healthy().map(|(id, _)| id)).cloned()
        }
    };
    chosen
        .and_then(|id| {
            let address = entry.instances.get(&id)?.address.clone();
            Some(Outcome::Array(vec![
                Outcome::Bulk(id),
                Outcome::Bulk(address),
            ]))
        })
        .unwrap_or(Outcome::Nil)
}

/// Rendezvous (highest random weight) hashing: the candidate whose hash
/// with `key` is largest wins (the first in order on a tie). Removing a
/// candidate moves only the keys it won; adding one moves only the keys it
/// now wins.
fn rendezvous<'a>(key: &[u8], candidates: impl Iterator<Item = &'a Bytes>) -> Option<&'a Bytes> {
    let weight = |id: &[u8]| {
        // The key's length first, so ("ab", "c") and ("a", "bc") differ.
        let mut input = Vec::with_capacity(8 + key.len() + id.len());
        input.extend_from_slice(&(key.len() as u64).to_le_bytes());
        input.extend_from_slice(key);
        input.extend_from_slice(id);
        stable_hash(&input)
    };
    let mut best: Option<(u64, &Bytes)> = None;
    for id in candidates {
        let w = weight(id);
        if best.is_none_or(|(top, _)| w > top) {
            best = Some((w, id));
        }
    }
    best.map(|(_, id)| id)
}

/// A new leader's grace: instance deadlines move to at least `ms` past
/// `now`.
pub(super) fn grace(state: &mut State, now: u64, ms: u64) {
    let coord = &mut state.coord;
    for (name, service) in coord.registry.services.iter_mut() {
        for (id, instance) in service.instances.iter_mut() {
            let Some(old) = instance.deadline else {
                continue;
            };
            instance.deadline = Some(old.max(now).saturating_add(ms));
            coord
                .timers
                .reschedule(instance_timer(name, id), Some(old), instance.deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::golden::render;

    fn ids(n: usize) -> Vec<Bytes> {
        (0..n).map(|i| Bytes::from(format!("node-{i}"))).collect()
    }

    fn owners(keys: &[Bytes], candidates: &[Bytes]) -> Vec<Bytes> {
        keys.iter()
            .map(|k| {
                rendezvous(k, candidates.iter())
                    .expect("a candidate")
                    .clone()
            })
            .collect()
    }

    #[test]
    fn rendezvous_moves_only_the_keys_of_a_leaving_instance() {
        let keys: Vec<Bytes> = (0..10_000)
            .map(|i| Bytes::from(format!("user:{i}")))
            .collect();
        let five = ids(5);
        let before = owners(&keys, &five);
        for id in &five {
            let share = before.iter().filter(|o| *o == id).count();
            assert!(
                (1_500..=2_500).contains(&share),
                "{id:?} owns {share} of 10000 keys"
            );
        }
        let leaving = &five[2];
        let four: Vec<Bytes> = five.iter().filter(|id| *id != leaving).cloned().collect();
        let after = owners(&keys, &four);
        for (old, new) in before.iter().zip(&after) {
            if old == leaving {
                assert_ne!(new, leaving);
            } else {
                assert_eq!(old, new, "a key of a remaining instance moved");
            }
        }
    }

    #[test]
    fn rendezvous_gives_a_joining_instance_only_keys_it_takes() {
        let keys: Vec<Bytes> = (0..10_000).map(|i| Bytes::from(format!("k{i}"))).collect();
        let four = ids(4);
        let five = ids(5);
        let before = owners(&keys, &four);
        let after = owners(&keys, &five);
        let moved = before.iter().zip(&after).filter(|(a, b)| a != b);
        let mut count = 0;
        for (_, new) in moved {
            assert_eq!(*new, five[4], "a key moved between old instances");
            count += 1;
        }
        assert!((1_500..=2_500).contains(&count), "{count} keys moved");
    }

    #[test]
    fn no_timer_outlives_its_instance() {
        let mut h = crate::state::golden::Harness::new(1_000);
        let mut run = |line: &str| render(&h.run_line(line), false);
        assert_eq!(run("SESSION.CREATE 100000"), "(integer) 1");
        for line in [
            "REGISTRY.REGISTER s gone 10.0.0.1:1 5000",
            "REGISTRY.REGISTER s bound 10.0.0.2:1 5000 SESSION 1",
            "REGISTRY.REGISTER s moved 10.0.0.3:1 5000",
        ] {
            assert_eq!(run(line), "(integer) 1");
        }
        assert_eq!(
            run("REGISTRY.REGISTER s moved 10.0.0.3:1 0 SESSION 1"),
            "(integer) 0"
        );
        assert_eq!(run("REGISTRY.DEREGISTER s gone"), "(integer) 1");
        assert_eq!(run("SESSION.DESTROY 1"), "(integer) 1");
        assert_eq!(run("REGISTRY.SERVICES"), "[]");
        assert_eq!(h.state.next_timer(), None);
    }

    #[test]
    fn rendezvous_has_no_winner_without_candidates() {
        assert_eq!(rendezvous(b"k", std::iter::empty()), None);
    }
}
