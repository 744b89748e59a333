//! Health checks that the cluster runs on registered instances.
//!
//! A check is replicated state attached to a registry instance: what to
//! probe (an HTTP URL, a TCP address, or a TTL within which the instance
//! must report itself), how often, and its last recorded result. Probing is
//! IO, so it happens outside the state machine, on one node at a time:
//! each HTTP or TCP check has an *owner*, a node id assigned through the
//! log by the leader (spread evenly, moved when the owner stops answering).
//! The owner probes on the interval and proposes a result only when it
//! moves the instance's streak (see [`worth_recording`]), so a steady
//! cluster writes nothing. A result from a node that no longer owns the
//! check is ignored as it applies, so a check that moved is never counted
//! twice. Results count into the instance's health streak exactly as
//! REGISTRY.HEALTH reports do, with the service's thresholds.
//!
//! A TTL check needs no prober: its deadline is a timer of the state,
//! fired through the log like every other deadline; each lapse counts as
//! a failed probe and the next TTL starts, and an UP report from the
//! instance starts it again.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// What a check probes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// GET the URL (`http://host:port/path`); healthy when the status is
    /// within `expect` (inclusive).
    Http { url: Bytes, expect: (u16, u16) },
    /// Open a TCP connection to `host:port`.
    Tcp { addr: Bytes },
    /// The instance itself must report UP (REGISTRY.HEALTH) within the TTL
    /// (the check's interval).
    Ttl,
}

impl Probe {
    pub fn kind(&self) -> &'static str {
        match self {
            Probe::Http { .. } => "http",
            Probe::Tcp { .. } => "tcp",
            Probe::Ttl => "ttl",
        }
    }

    /// Probed by a node (HTTP, TCP), rather than by the state's timers.
    pub fn needs_prober(&self) -> bool {
        !matches!(self, Probe::Ttl)
    }
}

/// REGISTRY.CHECK's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub probe: Probe,
    /// Between probes; for a TTL check, the TTL.
    pub interval_ms: u64,
    /// How long one probe may take before it counts as failed.
    pub timeout_ms: u64,
}

/// One probe's recorded result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub ok: bool,
    /// Why it failed (`connection refused`, `timeout`, `HTTP 503`), or what
    /// it saw when it passed (`HTTP 200`, `connected`).
    pub detail: Bytes,
    pub latency_us: u64,
    /// The entry time it was recorded at.
    pub at: u64,
}

/// A check and what the cluster knows of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub spec: CheckSpec,
    /// The node that probes it; 0 while unassigned (and for TTL checks).
    pub owner: u64,
    pub last: Option<ProbeResult>,
    /// When the TTL of a TTL check runs out.
    pub ttl_deadline: Option<u64>,
}

/// Every check, by (service, instance id).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    pub(super) by_instance: BTreeMap<(Bytes, Bytes), Check>,
}

impl Checks {
    pub fn get(&self, service: &Bytes, id: &Bytes) -> Option<&Check> {
        self.by_instance.get(&(service.clone(), id.clone()))
    }

    pub(super) fn get_mut(&mut self, service: &Bytes, id: &Bytes) -> Option<&mut Check> {
        self.by_instance.get_mut(&(service.clone(), id.clone()))
    }

    pub fn len(&self) -> usize {
        self.by_instance.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_instance.is_empty()
    }

    /// The probed checks whose owner is not among `live` (unassigned ones
    /// included), each given to the live node that owns the fewest, ties
    /// to the lowest id: what the leader proposes. Empty when `live` is.
    pub fn assignments(&self, live: &[u64]) -> Vec<(Bytes, Bytes, u64)> {
        if live.is_empty() {
            return Vec::new();
        }
        let mut load: BTreeMap<u64, usize> = live.iter().map(|id| (*id, 0)).collect();
        for check in self.by_instance.values() {
            if let Some(n) = load.get_mut(&check.owner) {
                *n += 1;
            }
        }
        let mut out = Vec::new();
        for ((service, id), check) in &self.by_instance {
            if !check.spec.probe.needs_prober() || load.contains_key(&check.owner) {
                continue;
            }
            let (&node, _) = load
                .iter()
                .min_by_key(|(node, n)| (**n, **node))
                .expect("live is not empty");
            *load.get_mut(&node).expect("a live node") += 1;
            out.push((service.clone(), id.clone(), node));
        }
        out
    }
}

/// `http://host:port/path` as (host, port, path): port 80 when left out,
/// path `/` when empty. None for anything else (a user, a fragment, no
/// host).
pub fn parse_http_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains('#') {
        return None;
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, port.parse::<u16>().ok().filter(|p| *p > 0)?)
        }
        _ => (authority, 80),
    };
    if host.is_empty() || path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return None;
    }
    Some((host.to_owned(), port, path.to_owned()))
}

/// A check owned by one node, with what its prober needs to decide whether
/// a result is worth a log entry.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedCheck {
    pub service: Bytes,
    pub id: Bytes,
    pub spec: CheckSpec,
    /// The instance's health as applied.
    pub healthy: bool,
    /// The outcome of the last recorded result, if any.
    pub last_ok: Option<bool>,
}

/// Whether a probe's outcome is worth proposing: it disagrees with the
/// instance's health (it moves the streak toward a flip), or it differs
/// from the last recorded outcome (it restarts a streak). A result that
/// confirms both is the steady state, and writes nothing.
pub fn worth_recording(check: &OwnedCheck, ok: bool) -> bool {
    ok != check.healthy || check.last_ok != Some(ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(owner: u64) -> Check {
        Check {
            spec: CheckSpec {
                probe: Probe::Tcp {
                    addr: Bytes::from_static(b"127.0.0.1:1"),
                },
                interval_ms: 1000,
                timeout_ms: 500,
            },
            owner,
            last: None,
            ttl_deadline: None,
        }
    }

    #[test]
    fn unowned_checks_go_to_the_least_loaded_live_node() {
        let mut checks = Checks::default();
        for (i, owner) in [(1, 1), (2, 1), (3, 0), (4, 3), (5, 3)] {
            checks.by_instance.insert(
                (Bytes::from_static(b"svc"), Bytes::from(format!("i{i}"))),
                check(owner),
            );
        }
        // Node 3 is gone: its two checks and the unassigned one go to 2
        // (none yet), then spread.
        let moves = checks.assignments(&[1, 2]);
        let owners: Vec<u64> = moves.iter().map(|(_, _, n)| *n).collect();
        assert_eq!(moves.len(), 3);
        assert_eq!(owners, vec![2, 2, 1]);
        assert!(checks.assignments(&[]).is_empty());
    }

    #[test]
    fn checks_survive_a_snapshot() {
        use crate::state::registry::{Registration, RegistryOp};
        use crate::state::{Op, State};
        let mut state = State::new();
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let ops = [
            RegistryOp::Register {
                service: b("svc"),
                id: b("i1"),
                registration: Registration {
                    address: b("10.0.0.1:80"),
                    meta: None,
                    ttl_ms: 60_000,
                    session: None,
                },
            },
            RegistryOp::Check {
                service: b("svc"),
                id: b("i1"),
                spec: check(0).spec,
            },
            RegistryOp::AssignChecks(vec![(b("svc"), b("i1"), 2)]),
            RegistryOp::CheckResult {
                service: b("svc"),
                id: b("i1"),
                owner: 2,
                ok: false,
                detail: b("connection refused"),
                latency_us: 120,
            },
        ];
        for (i, op) in ops.into_iter().enumerate() {
            state.apply(i as u64 + 1, 1000, &Op::Registry(op)).unwrap();
        }
        let restored = State::decode_snapshot(&state.encode_snapshot()).unwrap();
        assert_eq!(restored, state);
        let owned = restored.owned_checks(2);
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].last_ok, Some(false));
        assert!(restored.owned_checks(1).is_empty());
    }

    #[test]
    fn http_urls_are_split_into_host_port_and_path() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/health?x=1"),
            Some(("127.0.0.1".into(), 8080, "/health?x=1".into()))
        );
        assert_eq!(
            parse_http_url("http://svc"),
            Some(("svc".into(), 80, "/".into()))
        );
        assert_eq!(parse_http_url("http://u@h/"), None);
        assert_eq!(parse_http_url("http://h:0/"), None);
        assert_eq!(parse_http_url("http://:80/"), None);
        assert_eq!(parse_http_url("https://h/"), None);
    }

    #[test]
    fn only_results_that_move_a_streak_are_recorded() {
        let mut owned = OwnedCheck {
            service: Bytes::new(),
            id: Bytes::new(),
            spec: check(1).spec,
            healthy: true,
            last_ok: Some(true),
        };
        assert!(!worth_recording(&owned, true));
        assert!(worth_recording(&owned, false));
        owned.last_ok = Some(false);
        // A pass after a failure restarts the streak.
        assert!(worth_recording(&owned, true));
        owned.healthy = false;
        assert!(!worth_recording(&owned, false));
        assert!(worth_recording(&owned, true));
    }
}
