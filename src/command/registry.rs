//! The service registry: parsing and replies. Semantics live in
//! `state::registry`.
//!
//! META is checked to be JSON here, once, where the client can be told;
//! the state stores it as given, byte for byte.

use bytes::Bytes;

use super::{standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::state::checks::{CheckSpec, Probe};
use crate::state::registry::{Registration, RegistryOp, RegistryQuery, Strategy};
use crate::state::{Op, Query};

const W: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const R: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

macro_rules! spec {
    ($($row:tt)*) => { command_spec!(Registry, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("registry.register", -5, W, KeyPositions::NONE, "concord",
        "service id address ttl-ms [META json] [SESSION session-id]",
        "Registers an instance of a service: 1 when new, 0 when it replaced an earlier registration (address, META, TTL and SESSION all replaced, heartbeat refreshed; health and outstanding picks kept). The instance goes when ttl-ms passes without a heartbeat; with SESSION it also goes when the session ends, and ttl-ms may be 0 (no TTL of its own). META must be valid JSON and is stored as given.",
        Exec::Write(parse_register, standard_reply)),
    spec!("registry.heartbeat", 3, W, KeyPositions::NONE, "concord", "service id",
        "Starts the instance's TTL again: 1, or 0 if it is not registered.",
        Exec::Write(parse_heartbeat, standard_reply)),
    spec!("registry.deregister", 3, W, KeyPositions::NONE, "concord", "service id",
        "Removes the instance: 1, or 0 if it was not registered.",
        Exec::Write(parse_deregister, standard_reply)),
    spec!("registry.list", -2, R, KeyPositions::NONE, "concord", "service [ALL]",
        "The service's healthy instances (every live one with ALL) in id order, each as a map of id, address, meta (nil if none), healthy (1/0), active (outstanding LEAST_CONNECTIONS picks), last-heartbeat-age (ms), session (nil if none) and check (nil if none; else type, target, interval-ms, timeout-ms, owner node, and the last recorded result: last-ok, last-detail, last-latency-us, last-age in ms).",
        Exec::Read(parse_list, standard_reply)),
    spec!("registry.services", 1, R, KeyPositions::NONE, "concord", "",
        "Every service as [name, healthy instances, instances].",
        Exec::Read(parse_services, standard_reply)),
    spec!("registry.pick", -3, W, KeyPositions::NONE, "concord",
        "service ROUND_ROBIN|LEAST_CONNECTIONS|CONSISTENT_HASH [KEY key]",
        "Chooses a healthy instance and returns [id, address], or nil when there is none. ROUND_ROBIN takes the next healthy instance in id order after the last one picked, shared by every client on every node. LEAST_CONNECTIONS takes the one with the fewest outstanding picks (ties by id) and counts the pick until REGISTRY.DONE. CONSISTENT_HASH (KEY required) takes the instance that rendezvous hashing gives the key, so a key moves only when its instance leaves or a joining instance wins it.",
        Exec::Write(parse_pick, standard_reply)),
    spec!("registry.done", 3, W, KeyPositions::NONE, "concord", "service id",
        "Returns a LEAST_CONNECTIONS pick of the instance: 1, or 0 if it has none outstanding or is not registered.",
        Exec::Write(parse_done, standard_reply)),
    spec!("registry.health", 5, W, KeyPositions::NONE, "concord", "service id reporter UP|DOWN",
        "Reports a probe's result and returns the instance's healthy flag after it (1/0); -ERR no such instance if it is not registered. Reports from every reporter form one streak, which an opposite report restarts: a healthy instance turns unhealthy after the service's UNHEALTHY consecutive DOWN reports, an unhealthy one healthy after HEALTHY consecutive UP reports. The reporter names the probe; reports count alike whoever sends them.",
        Exec::Write(parse_health, standard_reply)),
    spec!("registry.config", -4, W, KeyPositions::NONE, "concord",
        "service [UNHEALTHY n] [HEALTHY m]",
        "Sets the service's health thresholds (defaults UNHEALTHY 3, HEALTHY 1, as Kubernetes probes); a threshold left out keeps its value. They apply from the next report and are kept while the service has no instances.",
        Exec::Write(parse_config, standard_reply)),
    spec!("registry.check", -5, W, KeyPositions::NONE, "concord",
        "service id HTTP url [INTERVAL ms] [TIMEOUT ms] [EXPECT lo-hi] | service id TCP host:port [INTERVAL ms] [TIMEOUT ms] | service id TTL ms",
        "Sets the instance's health check, run by the cluster: OK, or -ERR no such instance. HTTP GETs the url (http:// only; redirects are not followed, a 3xx counts by EXPECT) and passes on a status within EXPECT (default 200-399); TCP passes when a connection opens; both every INTERVAL ms (default 10000) within TIMEOUT ms (default 2000, at most the interval). Each probed check is owned by one live node, assigned through the log and moved when that node stops answering. TTL passes while the instance reports UP (REGISTRY.HEALTH) at least every ms; each TTL without a report is a failed probe. Results count toward the service's UNHEALTHY/HEALTHY thresholds like reports; a result is written to the log only when it moves a streak, and health flips are published on __registry__:health as `service id up|down`. The check goes with the instance.",
        Exec::Write(parse_check, standard_reply)),
    spec!("registry.uncheck", 3, W, KeyPositions::NONE, "concord", "service id",
        "Removes the instance's health check: 1, or 0 if it had none. Its health stays as it was.",
        Exec::Write(parse_uncheck, standard_reply)),
];

/// Between probes when INTERVAL is not given (Consul's default).
pub const DEFAULT_CHECK_INTERVAL_MS: u64 = 10_000;
/// How long a probe may take when TIMEOUT is not given.
pub const DEFAULT_CHECK_TIMEOUT_MS: u64 = 2_000;
/// The shortest interval: a check is not a load generator.
pub const MIN_CHECK_INTERVAL_MS: u64 = 100;

fn parse_check(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let (service, id) = instance(&mut args)?;
    let invalid = |text: &str| CommandError::InvalidArgument(text.to_owned());
    let kind = args.keyword()?;
    let (probe, ttl) = match kind.as_str() {
        "HTTP" => {
            let url = args.bytes()?;
            let text = std::str::from_utf8(&url).map_err(|_| invalid("invalid url"))?;
            if !text.starts_with("http://") {
                return Err(invalid(
                    "the url must start with http:// (https is not probed; use a TCP check for a TLS port)",
                ));
            }
            if crate::state::checks::parse_http_url(text).is_none() {
                return Err(invalid("invalid url: expected http://host:port/path"));
            }
            (
                Probe::Http {
                    url,
                    expect: (200, 399),
                },
                None,
            )
        }
        "TCP" => {
            let addr = args.bytes()?;
            let ok = std::str::from_utf8(&addr)
                .ok()
                .and_then(|a| a.rsplit_once(':'))
                .is_some_and(|(host, port)| {
                    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                });
            if !ok {
                return Err(invalid("invalid address: expected host:port"));
            }
            (Probe::Tcp { addr }, None)
        }
        "TTL" => (Probe::Ttl, Some(args.millis("TTL", false)?)),
        _ => return Err(CommandError::Syntax),
    };
    let mut probe = probe;
    let mut interval = None;
    let mut timeout = None;
    while !args.is_empty() {
        match (args.keyword()?.as_str(), &mut probe) {
            ("INTERVAL", Probe::Http { .. } | Probe::Tcp { .. }) if interval.is_none() => {
                interval = Some(args.millis("INTERVAL", false)?)
            }
            ("TIMEOUT", Probe::Http { .. } | Probe::Tcp { .. }) if timeout.is_none() => {
                timeout = Some(args.millis("TIMEOUT", false)?)
            }
            ("EXPECT", Probe::Http { expect, .. }) => {
                let range = args.bytes()?;
                let parsed = std::str::from_utf8(&range).ok().and_then(|r| {
                    let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                    let (lo, hi) = (lo.parse::<u16>().ok()?, hi.parse::<u16>().ok()?);
                    ((100..=599).contains(&lo) && lo <= hi && hi <= 599).then_some((lo, hi))
                });
                *expect = parsed.ok_or_else(|| {
                    invalid("invalid EXPECT: expected a status or lo-hi within 100-599")
                })?;
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    let interval_ms = ttl.or(interval).unwrap_or(DEFAULT_CHECK_INTERVAL_MS);
    if interval_ms < MIN_CHECK_INTERVAL_MS {
        return Err(invalid("invalid INTERVAL: at least 100 ms"));
    }
    let timeout_ms = timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT_MS.min(interval_ms));
    if timeout_ms > interval_ms {
        return Err(invalid("invalid TIMEOUT: at most the INTERVAL"));
    }
    write(RegistryOp::Check {
        service,
        id,
        spec: CheckSpec {
            probe,
            interval_ms,
            timeout_ms,
        },
    })
}

fn parse_uncheck(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let (service, id) = instance(&mut args)?;
    write(RegistryOp::Uncheck { service, id })
}

fn write(op: RegistryOp) -> Result<Op, CommandError> {
    Ok(Op::Registry(op))
}

/// The (service, id) pair most commands start with.
fn instance(args: &mut Args) -> Result<(Bytes, Bytes), CommandError> {
    Ok((args.bytes()?, args.bytes()?))
}

fn parse_register(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let (service, id) = instance(&mut args)?;
    let address = args.bytes()?;
    let ttl_ms = args.millis("TTL", true)?;
    let mut meta = None;
    let mut session = None;
    while !args.is_empty() {
        match args.keyword()?.as_str() {
            "META" if meta.is_none() => meta = Some(json(args.bytes()?)?),
            "SESSION" if session.is_none() => session = Some(args.positive("session id")?),
            _ => return Err(CommandError::Syntax),
        }
    }
    if ttl_ms == 0 && session.is_none() {
        return Err(CommandError::InvalidArgument(
            "invalid TTL: 0 is only allowed with SESSION".into(),
        ));
    }
    write(RegistryOp::Register {
        service,
        id,
        registration: Registration {
            address,
            meta,
            ttl_ms,
            session,
        },
    })
}

fn json(meta: Bytes) -> Result<Bytes, CommandError> {
    match serde_json::from_slice::<serde::de::IgnoredAny>(&meta) {
        Ok(_) => Ok(meta),
        Err(_) => Err(CommandError::InvalidArgument(
            "META is not valid JSON".into(),
        )),
    }
}

fn parse_heartbeat(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (service, id) = instance(&mut Args::new(argv))?;
    write(RegistryOp::Heartbeat { service, id })
}

fn parse_deregister(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (service, id) = instance(&mut Args::new(argv))?;
    write(RegistryOp::Deregister { service, id })
}

fn parse_done(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (service, id) = instance(&mut Args::new(argv))?;
    write(RegistryOp::Done { service, id })
}

fn parse_list(argv: &[Bytes]) -> Result<Query, CommandError> {
    let mut args = Args::new(argv);
    let service = args.bytes()?;
    let all = match args.remaining() {
        0 => false,
        1 if args.keyword()? == "ALL" => true,
        _ => return Err(CommandError::Syntax),
    };
    Ok(Query::Registry(RegistryQuery::List { service, all }))
}

fn parse_services(_argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Registry(RegistryQuery::Services))
}

fn parse_pick(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let service = args.bytes()?;
    let strategy = args.keyword()?;
    let key = match args.remaining() {
        0 => None,
        2 if args.keyword()? == "KEY" => Some(args.bytes()?),
        _ => return Err(CommandError::Syntax),
    };
    let strategy = match (strategy.as_str(), key) {
        ("ROUND_ROBIN", None) => Strategy::RoundRobin,
        ("LEAST_CONNECTIONS", None) => Strategy::LeastConnections,
        ("CONSISTENT_HASH", Some(key)) => Strategy::ConsistentHash { key },
        ("CONSISTENT_HASH", None) => {
            return Err(CommandError::InvalidArgument(
                "CONSISTENT_HASH needs KEY".into(),
            ))
        }
        ("ROUND_ROBIN" | "LEAST_CONNECTIONS", Some(_)) => {
            return Err(CommandError::InvalidArgument(
                "KEY is only used by CONSISTENT_HASH".into(),
            ))
        }
        _ => {
            return Err(CommandError::InvalidArgument(
                "unknown strategy, expected ROUND_ROBIN, LEAST_CONNECTIONS or CONSISTENT_HASH"
                    .into(),
            ))
        }
    };
    write(RegistryOp::Pick { service, strategy })
}

fn parse_health(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let (service, id) = instance(&mut args)?;
    // Reports count alike whoever sends them: the reporter is named for
    // whoever reads the command stream, not kept.
    args.bytes()?;
    let up = match args.keyword()?.as_str() {
        "UP" => true,
        "DOWN" => false,
        _ => {
            return Err(CommandError::InvalidArgument(
                "health must be UP or DOWN".into(),
            ))
        }
    };
    write(RegistryOp::Health { service, id, up })
}

fn parse_config(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let service = args.bytes()?;
    let mut unhealthy = None;
    let mut healthy = None;
    while !args.is_empty() {
        match args.keyword()?.as_str() {
            "UNHEALTHY" if unhealthy.is_none() => {
                unhealthy = Some(args.positive("UNHEALTHY threshold")?)
            }
            "HEALTHY" if healthy.is_none() => healthy = Some(args.positive("HEALTHY threshold")?),
            _ => return Err(CommandError::Syntax),
        }
    }
    write(RegistryOp::Config {
        service,
        unhealthy,
        healthy,
    })
}
