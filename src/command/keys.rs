//! Keys and expiry: parsing and replies (stub: filled in by the keys family).
use bytes::Bytes;

use super::{standard_reply, CommandError, CommandSpec, Exec, Flag, Group, KeyPositions};
use crate::state::keys::{KeyOp, KeyQuery};
use crate::state::{Op, Query};

pub const SPECS: &[CommandSpec] = &[
    CommandSpec {
        name: "del",
        arity: -2,
        flags: &[Flag::Write],
        keys: KeyPositions::ALL,
        group: Group::Generic,
        summary: "Deletes one or more keys.",
        syntax: "key [key ...]",
        since: "1.0.0",
        exec: Exec::Write(parse_del, standard_reply),
        subcommands: &[],
    },
    CommandSpec {
        name: "exists",
        arity: -2,
        flags: &[Flag::ReadOnly, Flag::Fast],
        keys: KeyPositions::ALL,
        group: Group::Generic,
        summary: "Determines whether one or more keys exist.",
        syntax: "key [key ...]",
        since: "1.0.0",
        exec: Exec::Read(parse_exists, standard_reply),
        subcommands: &[],
    },
];

fn parse_del(argv: &[Bytes]) -> Result<Op, CommandError> {
    Ok(Op::Key(KeyOp::Del {
        keys: argv[1..].to_vec(),
    }))
}

fn parse_exists(argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Key(KeyQuery::Exists {
        keys: argv[1..].to_vec(),
    }))
}
