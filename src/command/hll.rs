//! HyperLogLog: PFADD, PFCOUNT, PFMERGE and the debugging commands.
//! Registers, encodings and the estimator live in `state::hll`.

use bytes::Bytes;

use super::{is, standard_reply, CommandError, CommandSpec, Exec, Flag, KeyPositions, Parsed};
use crate::state::strings::{StringOp, StringQuery};
use crate::state::{Op, Query};

const WF: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const W: &[Flag] = &[Flag::Write, Flag::DenyOom];
const R: &[Flag] = &[Flag::ReadOnly, Flag::MayReplicate];
const DEBUG: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Admin];
const TEST: &[Flag] = &[Flag::Admin];

macro_rules! spec {
    ($($row:tt)*) => { command_spec!(HyperLogLog, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("pfadd", -2, WF, KeyPositions::FIRST, "2.8.9", "key [element [element ...]]",
        "Adds elements to a HyperLogLog key. Creates the key if it doesn't exist.",
        Exec::Write(parse_pfadd, standard_reply)),
    spec!("pfcount", -2, R, KeyPositions::ALL, "2.8.9", "key [key ...]",
        "Returns the approximated cardinality of the set(s) observed by the HyperLogLog key(s). Unlike Redis, the estimate is not written back into the key's header cache: PFCOUNT is a read on any node.",
        Exec::Read(parse_pfcount, standard_reply)),
    spec!("pfmerge", -2, W, KeyPositions::ALL, "2.8.9", "destkey [sourcekey [sourcekey ...]]",
        "Merges one or more HyperLogLog values into a single key.",
        Exec::Write(parse_pfmerge, standard_reply)),
    spec!("pfdebug", 3, DEBUG, KeyPositions::range(2, 2, 1), "2.8.9", "subcommand key",
        "Internal commands for debugging HyperLogLog values: GETREG, DECODE, ENCODING, TODENSE.",
        Exec::Either(parse_pfdebug, standard_reply)),
    local_spec!(HyperLogLog, "pfselftest", 1, TEST, "2.8.9", "",
        "An internal command for testing HyperLogLog values."),
];

fn parse_pfadd(argv: &[Bytes]) -> Result<Op, CommandError> {
    Ok(Op::String(StringOp::PfAdd {
        key: argv[1].clone(),
        elements: argv[2..].to_vec(),
    }))
}

fn parse_pfcount(argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::String(StringQuery::PfCount {
        keys: argv[1..].to_vec(),
    }))
}

fn parse_pfmerge(argv: &[Bytes]) -> Result<Op, CommandError> {
    Ok(Op::String(StringOp::PfMerge {
        dest: argv[1].clone(),
        sources: argv[2..].to_vec(),
    }))
}

/// GETREG and TODENSE may turn the value dense, so they go through the
/// log; DECODE and ENCODING only look.
fn parse_pfdebug(argv: &[Bytes]) -> Result<Parsed, CommandError> {
    let key = argv[2].clone();
    let sub = &argv[1];
    Ok(if is(sub, "GETREG") || is(sub, "TODENSE") {
        Parsed::Write(Op::String(StringOp::PfDebug {
            key,
            registers: is(sub, "GETREG"),
        }))
    } else if is(sub, "DECODE") || is(sub, "ENCODING") {
        Parsed::Read(Query::String(StringQuery::PfDebug {
            key,
            decode: is(sub, "DECODE"),
        }))
    } else {
        return Err(CommandError::InvalidArgument(format!(
            "Unknown PFDEBUG subcommand '{}'",
            String::from_utf8_lossy(sub)
        )));
    })
}
