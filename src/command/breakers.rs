//! Circuit breakers: parsing and replies. Semantics live in
//! `state::breakers`.

use bytes::Bytes;

use super::{standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::state::breakers::{BreakerConfig, BreakerOp, BreakerQuery};
use crate::state::{Op, Query};

const W: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const R: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

macro_rules! spec {
    ($($row:tt)*) => { command_spec!(Breaker, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("breaker.config", -8, W, KeyPositions::NONE, "concord",
        "name FAILURES n WINDOW ms COOLDOWN ms [PROBES k]",
        "Creates a CLOSED breaker, or reconfigures one keeping its state. n failures within WINDOW ms open it; after COOLDOWN ms it is HALF_OPEN and admits k probes (default 1); k recorded successes close it, a failure opens it again. Options in any order.",
        Exec::Write(parse_config, standard_reply)),
    spec!("breaker.allow", 2, W, KeyPositions::NONE, "concord", "name",
        "Asks to make a call: [allowed 1/0, state]. CLOSED allows, OPEN refuses; once the cooldown has passed the breaker turns HALF_OPEN here and admits its probes, then refuses until their results close or reopen it. Probes still unanswered a cooldown after the last was admitted are admitted again.",
        Exec::Write(parse_allow, standard_reply)),
    spec!("breaker.record", 3, W, KeyPositions::NONE, "concord", "name SUCCESS|FAILURE",
        "Records a call's result and returns the state after it. Results recorded while OPEN are ignored (those calls began before it opened); while HALF_OPEN every result counts as a probe's.",
        Exec::Write(parse_record, standard_reply)),
    spec!("breaker.state", 2, R, KeyPositions::NONE, "concord", "name",
        "The breaker as of now: state, failures (within the window), opened-at (ms, nil when CLOSED), probes-left and cooldown-left (ms). Shows HALF_OPEN as soon as the cooldown has passed.",
        Exec::Read(parse_state, standard_reply)),
    spec!("breaker.reset", 2, W, KeyPositions::NONE, "concord", "name",
        "Closes the breaker and clears what it recorded; its configuration stays.",
        Exec::Write(parse_reset, standard_reply)),
];

fn name(argv: &[Bytes]) -> Bytes {
    argv[1].clone()
}

fn parse_config(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let name = args.bytes()?;
    let (mut failures, mut window_ms, mut cooldown_ms, mut probes) = (None, None, None, None);
    while !args.is_empty() {
        match args.keyword()?.as_str() {
            "FAILURES" if failures.is_none() => failures = Some(args.positive("FAILURES")?),
            "WINDOW" if window_ms.is_none() => window_ms = Some(args.millis("WINDOW", false)?),
            "COOLDOWN" if cooldown_ms.is_none() => {
                cooldown_ms = Some(args.millis("COOLDOWN", false)?)
            }
            "PROBES" if probes.is_none() => probes = Some(args.positive("PROBES")?),
            _ => return Err(CommandError::Syntax),
        }
    }
    let (Some(failures), Some(window_ms), Some(cooldown_ms)) = (failures, window_ms, cooldown_ms)
    else {
        return Err(CommandError::InvalidArgument(
            "FAILURES, WINDOW and COOLDOWN are required".into(),
        ));
    };
    let config = BreakerConfig {
        failures,
        window_ms,
        cooldown_ms,
        probes: probes.unwrap_or(1),
    };
    Ok(Op::Breaker(BreakerOp::Config { name, config }))
}

fn parse_allow(argv: &[Bytes]) -> Result<Op, CommandError> {
    Ok(Op::Breaker(BreakerOp::Allow { name: name(argv) }))
}

fn parse_record(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let name = args.bytes()?;
    let success = match args.keyword()?.as_str() {
        "SUCCESS" => true,
        "FAILURE" => false,
        _ => return Err(CommandError::Syntax),
    };
    Ok(Op::Breaker(BreakerOp::Record { name, success }))
}

fn parse_state(argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Breaker(BreakerQuery::State { name: name(argv) }))
}

fn parse_reset(argv: &[Bytes]) -> Result<Op, CommandError> {
    Ok(Op::Breaker(BreakerOp::Reset { name: name(argv) }))
}
