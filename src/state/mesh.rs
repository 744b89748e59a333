//! What the mesh primitives did, for `/metrics`: breaker transitions,
//! picks, rate-limit decisions, lock grants and waits, fenced writes,
//! expired sessions; and [`MeshStats`], everything the mesh series show,
//! taken from the state at one applied index.
//!
//! The counters count the ops this replica applied since it started (or
//! installed a snapshot): every replica applies the same entries, so after
//! the same index they agree, and a restart starts them again from zero as
//! Prometheus expects of a counter. They are not replicated and not in
//! snapshots: two states equal in what they hold may have counted
//! differently, so they take no part in `State`'s equality.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Rate-limit classes counted separately; past this, decisions of new
/// classes are counted under [`OTHER_CLASS`] (a key per user with no ':'
/// must not grow a series per user).
const MAX_CLASSES: usize = 256;
pub const OTHER_CLASS: &str = "(other)";

#[derive(Clone, Debug, Default)]
pub(crate) struct MeshCounters {
    /// By (breaker, state it went to).
    pub breaker_transitions: BTreeMap<(Bytes, &'static str), u64>,
    /// By (service, strategy).
    pub picks: BTreeMap<(Bytes, &'static str), u64>,
    /// (allowed, denied) by class.
    pub rate_limits: BTreeMap<Bytes, (u64, u64)>,
    pub lock_grants: u64,
    pub lock_waits: u64,
    pub fenced_applied: u64,
    pub fenced_refused: u64,
    pub sessions_expired: u64,
    /// Health flips by (service, instance, healthy after).
    pub health_transitions: BTreeMap<(Bytes, Bytes, bool), u64>,
}

impl PartialEq for MeshCounters {
    /// Observations, not state: see the module doc.
    fn eq(&self, _: &MeshCounters) -> bool {
        true
    }
}

impl MeshCounters {
    pub fn transition(&mut self, breaker: &Bytes, to: &'static str) {
        *self
            .breaker_transitions
            .entry((breaker.clone(), to))
            .or_default() += 1;
    }

    pub fn health_transition(&mut self, service: &Bytes, id: &Bytes, healthy: bool) {
        *self
            .health_transitions
            .entry((service.clone(), id.clone(), healthy))
            .or_default() += 1;
    }

    pub fn pick(&mut self, service: &Bytes, strategy: &'static str) {
        *self.picks.entry((service.clone(), strategy)).or_default() += 1;
    }

    /// A rate-limit decision for `key`, counted under its class: the key up
    /// to its last ':' (`rl:api:user42` is class `rl:api`), the whole key
    /// if it has none.
    pub fn rate_limit(&mut self, key: &Bytes, allowed: bool) {
        let class = match key.iter().rposition(|b| *b == b':') {
            Some(i) => key.slice(..i),
            None => key.clone(),
        };
        let class = if self.rate_limits.contains_key(&class) || self.rate_limits.len() < MAX_CLASSES
        {
            class
        } else {
            Bytes::from_static(OTHER_CLASS.as_bytes())
        };
        let counts = self.rate_limits.entry(class).or_default();
        if allowed {
            counts.0 += 1;
        } else {
            counts.1 += 1;
        }
    }
}

/// The mesh series at one applied index, by name; label values are the
/// state's keys as (lossy) UTF-8.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MeshStats {
    /// (breaker, 0 closed / 1 open / 2 half-open).
    pub breakers: Vec<(String, u8)>,
    /// (breaker, state it went to, times).
    pub breaker_transitions: Vec<(String, &'static str, u64)>,
    /// (service, [(instance id, healthy)]).
    pub services: Vec<(String, Vec<(String, bool)>)>,
    /// (service, strategy, picks).
    pub picks: Vec<(String, &'static str, u64)>,
    /// (class, allowed, denied).
    pub rate_limits: Vec<(String, u64, u64)>,
    pub lock_grants: u64,
    pub lock_waits: u64,
    pub fenced_applied: u64,
    pub fenced_refused: u64,
    pub locks_held: u64,
    /// (queue, ready, in flight, delayed, dead).
    pub queues: Vec<(String, u64, u64, u64, u64)>,
    pub sessions_live: u64,
    pub sessions_expired: u64,
    /// (service, instance, "up"/"down", times it turned so).
    pub health_transitions: Vec<(String, String, &'static str, u64)>,
    /// (service, instance, last probe latency in seconds) of the checks
    /// with a recorded result.
    pub check_latencies: Vec<(String, String, f64)>,
}

pub(crate) fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl super::State {
    /// The mesh series as of the last applied entry, at `now` (a breaker
    /// whose open period ran out reads as half-open, as BREAKER.STATE
    /// answers).
    pub fn mesh_stats(&self, now: u64) -> MeshStats {
        let c = &self.coord;
        let m = &self.mesh;
        MeshStats {
            breakers: c.breakers.states(now),
            breaker_transitions: m
                .breaker_transitions
                .iter()
                .map(|((b, to), n)| (text(b), *to, *n))
                .collect(),
            services: c.registry.health(),
            picks: m
                .picks
                .iter()
                .map(|((s, strategy), n)| (text(s), *strategy, *n))
                .collect(),
            rate_limits: m
                .rate_limits
                .iter()
                .map(|(class, (a, d))| (text(class), *a, *d))
                .collect(),
            lock_grants: m.lock_grants,
            lock_waits: m.lock_waits,
            fenced_applied: m.fenced_applied,
            fenced_refused: m.fenced_refused,
            locks_held: c.locks.held(),
            queues: c.queues.counts(),
            sessions_live: c.sessions.len() as u64,
            sessions_expired: m.sessions_expired,
            health_transitions: m
                .health_transitions
                .iter()
                .map(|((s, i, up), n)| (text(s), text(i), if *up { "up" } else { "down" }, *n))
                .collect(),
            check_latencies: c
                .ext
                .checks
                .by_instance
                .iter()
                .filter_map(|((s, i), check)| {
                    let last = check.last.as_ref()?;
                    Some((text(s), text(i), last.latency_us as f64 / 1e6))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_classes_are_key_prefixes_and_bounded() {
        let mut m = MeshCounters::default();
        m.rate_limit(&Bytes::from("rl:api:user1"), true);
        m.rate_limit(&Bytes::from("rl:api:user2"), false);
        m.rate_limit(&Bytes::from("plain"), true);
        assert_eq!(m.rate_limits[&Bytes::from("rl:api")], (1, 1));
        assert_eq!(m.rate_limits[&Bytes::from("plain")], (1, 0));
        for i in 0..MAX_CLASSES * 2 {
            m.rate_limit(&Bytes::from(format!("user{i}")), true);
        }
        assert_eq!(m.rate_limits.len(), MAX_CLASSES + 1);
        assert!(m.rate_limits[&Bytes::from(OTHER_CLASS)].0 > 0);
    }
}
