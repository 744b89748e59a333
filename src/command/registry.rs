//! The service registry: parsing and replies. Semantics live in
//! `state::registry`.
//!
//! META is checked to be JSON here, once, where the client can be told;
//! the state stores it as given, byte for byte.

use bytes::Bytes;

use super::{standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
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
        "The service's healthy instances (every live one with ALL) in id order, each as a map of id, address, meta (nil if none), healthy (1/0), active (outstanding LEAST_CONNECTIONS picks), last-heartbeat-age (ms) and session (nil if none).",
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
];

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
