//! Hashes: parsing and replies (stub: filled in by the hashes family).
use bytes::Bytes;

use super::{standard_reply, CommandError, CommandSpec, Exec, Flag, Group, KeyPositions};
use crate::state::hashes::{HashOp, HashQuery};
use crate::state::{Op, Query};

pub const SPECS: &[CommandSpec] = &[
    CommandSpec {
        name: "hset",
        arity: -4,
        flags: &[Flag::Write, Flag::DenyOom, Flag::Fast],
        keys: KeyPositions::FIRST,
        group: Group::Hash,
        summary: "Creates or modifies the value of a field in a hash.",
        syntax: "key field value [field value ...]",
        since: "2.0.0",
        exec: Exec::Write(parse_hset, standard_reply),
        subcommands: &[],
    },
    CommandSpec {
        name: "hget",
        arity: 3,
        flags: &[Flag::ReadOnly, Flag::Fast],
        keys: KeyPositions::FIRST,
        group: Group::Hash,
        summary: "Returns the value of a field in a hash.",
        syntax: "key field",
        since: "2.0.0",
        exec: Exec::Read(parse_hget, standard_reply),
        subcommands: &[],
    },
];

fn parse_hset(argv: &[Bytes]) -> Result<Op, CommandError> {
    if argv.len() % 2 != 0 {
        return Err(CommandError::WrongArity("hset".to_owned()));
    }
    let pairs = argv[2..]
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    Ok(Op::Hash(HashOp::HSet {
        key: argv[1].clone(),
        pairs,
    }))
}

fn parse_hget(argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Hash(HashQuery::HGet {
        key: argv[1].clone(),
        field: argv[2].clone(),
    }))
}
