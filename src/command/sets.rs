//! Sets: parsing and replies. Semantics live in `state::sets`.

use bytes::Bytes;

use super::keys::{parse_cursor, parse_scan_options};
use super::{standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::state::hashes::MAX_RANDOM_REPEATS;
use crate::state::sets::{Combine, SetOp, SetQuery};
use crate::state::strings::parse_i64;
use crate::state::{Op, Query, StateError};

const WF: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const WF_NOOOM: &[Flag] = &[Flag::Write, Flag::Fast];
const W_OOM: &[Flag] = &[Flag::Write, Flag::DenyOom];
const R: &[Flag] = &[Flag::ReadOnly];
const RF: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $($rest:tt)*) => {
        command_spec!(Set, $name, $arity, $flags, $keys, $($rest)*)
    };
}

const FIRST: KeyPositions = KeyPositions::FIRST;
const ALL: KeyPositions = KeyPositions::range(1, -1, 1);

pub const SPECS: &[CommandSpec] = &[
    spec!("sadd", -3, WF, FIRST, "1.0.0", "key member [member ...]",
        "Adds one or more members to a set. Creates the key if it doesn't exist.",
        Exec::Write(parse_sadd, standard_reply)),
    spec!("srem", -3, WF_NOOOM, FIRST, "1.0.0", "key member [member ...]",
        "Removes one or more members from a set. Deletes the set if the last member was removed.",
        Exec::Write(parse_srem, standard_reply)),
    spec!("smembers", 2, R, FIRST, "1.0.0", "key",
        "Returns all members of a set.",
        Exec::Read(parse_smembers, standard_reply)),
    spec!("sismember", 3, RF, FIRST, "1.0.0", "key member",
        "Determines whether a member belongs to a set.",
        Exec::Read(parse_sismember, standard_reply)),
    spec!("smismember", -3, RF, FIRST, "6.2.0", "key member [member ...]",
        "Determines whether multiple members belong to a set.",
        Exec::Read(parse_smismember, standard_reply)),
    spec!("scard", 2, RF, FIRST, "1.0.0", "key",
        "Returns the number of members in a set.",
        Exec::Read(parse_scard, standard_reply)),
    spec!("spop", -2, WF_NOOOM, FIRST, "1.0.0", "key [count]",
        "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.",
        Exec::Write(parse_spop, standard_reply)),
    spec!("srandmember", -2, R, FIRST, "1.0.0", "key [count]",
        "Gets one or multiple random members from a set. A negative count may repeat members and is limited to 16777216.",
        Exec::Read(parse_srandmember, standard_reply)),
    spec!("smove", 4, WF_NOOOM, KeyPositions::FIRST_TWO, "1.0.0", "source destination member",
        "Moves a member from one set to another.",
        Exec::Write(parse_smove, standard_reply)),
    spec!("sinter", -2, R, ALL, "1.0.0", "key [key ...]",
        "Returns the intersect of multiple sets.",
        Exec::Read(parse_sinter, standard_reply)),
    spec!("sintercard", -3, R, KeyPositions::NONE.with_numkeys(1), "7.0.0",
        "numkeys key [key ...] [LIMIT limit]",
        "Returns the number of members of the intersect of multiple sets.",
        Exec::Read(parse_sintercard, standard_reply)),
    spec!("sunion", -2, R, ALL, "1.0.0", "key [key ...]",
        "Returns the union of multiple sets.",
        Exec::Read(parse_sunion, standard_reply)),
    spec!("sdiff", -2, R, ALL, "1.0.0", "key [key ...]",
        "Returns the difference of multiple sets.",
        Exec::Read(parse_sdiff, standard_reply)),
    spec!("sinterstore", -3, W_OOM, ALL, "1.0.0", "destination key [key ...]",
        "Stores the intersect of multiple sets in a key, replacing any value; deletes it when the result is empty.",
        Exec::Write(parse_sinterstore, standard_reply)),
    spec!("sunionstore", -3, W_OOM, ALL, "1.0.0", "destination key [key ...]",
        "Stores the union of multiple sets in a key, replacing any value; deletes it when the result is empty.",
        Exec::Write(parse_sunionstore, standard_reply)),
    spec!("sdiffstore", -3, W_OOM, ALL, "1.0.0", "destination key [key ...]",
        "Stores the difference of multiple sets in a key, replacing any value; deletes it when the result is empty.",
        Exec::Write(parse_sdiffstore, standard_reply)),
    spec!("sscan", -3, R, FIRST, "2.8.0", "key cursor [MATCH pattern] [COUNT count]",
        "Iterates over members of a set.",
        Exec::Read(parse_sscan, standard_reply)),
];

fn write(op: SetOp) -> Result<Op, CommandError> {
    Ok(Op::Set(op))
}

fn read(query: SetQuery) -> Result<Query, CommandError> {
    Ok(Query::Set(query))
}

fn parse_sadd(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(SetOp::Add {
        key: argv[1].clone(),
        members: argv[2..].to_vec(),
    })
}

fn parse_srem(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(SetOp::Rem {
        key: argv[1].clone(),
        members: argv[2..].to_vec(),
    })
}

fn parse_smembers(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(SetQuery::Members {
        key: argv[1].clone(),
    })
}

fn parse_sismember(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(SetQuery::IsMember {
        key: argv[1].clone(),
        member: argv[2].clone(),
    })
}

fn parse_smismember(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(SetQuery::MIsMember {
        key: argv[1].clone(),
        members: argv[2..].to_vec(),
    })
}

fn parse_scard(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(SetQuery::Card {
        key: argv[1].clone(),
    })
}

/// The optional count of SPOP and SRANDMEMBER: more than one argument
/// after the key is a syntax error before the count is looked at.
fn optional_count(argv: &[Bytes]) -> Result<Option<&Bytes>, CommandError> {
    match argv.len() {
        2 => Ok(None),
        3 => Ok(Some(&argv[2])),
        _ => Err(CommandError::Syntax),
    }
}

/// SPOP's count: Redis answers a negative count and one that is not a
/// number alike.
fn parse_spop(argv: &[Bytes]) -> Result<Op, CommandError> {
    let count = match optional_count(argv)? {
        None => None,
        Some(arg) => match parse_i64(arg) {
            Some(n) if n >= 0 => Some(n as u64),
            _ => return Err(CommandError::NotPositive("value")),
        },
    };
    write(SetOp::Pop {
        key: argv[1].clone(),
        count,
        seed: rand::random(),
    })
}

fn parse_srandmember(argv: &[Bytes]) -> Result<Query, CommandError> {
    let count = match optional_count(argv)? {
        None => None,
        Some(arg) => {
            let n = parse_i64(arg).ok_or(CommandError::NotInteger)?;
            if n == i64::MIN {
                return Err(CommandError::InvalidArgument(format!(
                    "value is out of range, value must between {} and {}",
                    -i64::MAX,
                    i64::MAX
                )));
            }
            if n < 0 && n.unsigned_abs() > MAX_RANDOM_REPEATS {
                return Err(CommandError::InvalidArgument(
                    "value is out of range".to_owned(),
                ));
            }
            Some(n)
        }
    };
    read(SetQuery::RandMember {
        key: argv[1].clone(),
        count,
        seed: rand::random(),
    })
}

fn parse_smove(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(SetOp::Move {
        source: argv[1].clone(),
        destination: argv[2].clone(),
        member: argv[3].clone(),
    })
}

fn combine_query(combine: Combine, argv: &[Bytes]) -> Result<Query, CommandError> {
    read(SetQuery::Combine {
        combine,
        keys: argv[1..].to_vec(),
    })
}

fn parse_sinter(argv: &[Bytes]) -> Result<Query, CommandError> {
    combine_query(Combine::Inter, argv)
}

fn parse_sunion(argv: &[Bytes]) -> Result<Query, CommandError> {
    combine_query(Combine::Union, argv)
}

fn parse_sdiff(argv: &[Bytes]) -> Result<Query, CommandError> {
    combine_query(Combine::Diff, argv)
}

fn store_op(combine: Combine, argv: &[Bytes]) -> Result<Op, CommandError> {
    write(SetOp::Store {
        combine,
        destination: argv[1].clone(),
        keys: argv[2..].to_vec(),
    })
}

fn parse_sinterstore(argv: &[Bytes]) -> Result<Op, CommandError> {
    store_op(Combine::Inter, argv)
}

fn parse_sunionstore(argv: &[Bytes]) -> Result<Op, CommandError> {
    store_op(Combine::Union, argv)
}

fn parse_sdiffstore(argv: &[Bytes]) -> Result<Op, CommandError> {
    store_op(Combine::Diff, argv)
}

/// Redis's checks, in its order: numkeys (any bad value gets the same
/// text), numkeys against what follows, then the options.
fn parse_sintercard(argv: &[Bytes]) -> Result<Query, CommandError> {
    let numkeys = match parse_i64(&argv[1]) {
        Some(n) if n >= 1 => n as u64,
        _ => {
            return Err(CommandError::InvalidArgument(
                "numkeys should be greater than 0".to_owned(),
            ))
        }
    };
    let available = argv.len() - 2;
    if numkeys > available as u64 {
        return Err(CommandError::InvalidArgument(
            "Number of keys can't be greater than number of args".to_owned(),
        ));
    }
    let numkeys = numkeys as usize;
    let keys = argv[2..2 + numkeys].to_vec();
    let mut args = Args::new(&argv[1 + numkeys..]);
    let mut limit = None;
    while !args.is_empty() {
        let word = args.keyword()?;
        if word != "LIMIT" || args.is_empty() {
            return Err(CommandError::Syntax);
        }
        limit = match parse_i64(&args.bytes()?) {
            Some(0) => None,
            Some(n) if n > 0 => Some(n as u64),
            _ => {
                return Err(CommandError::InvalidArgument(
                    "LIMIT can't be negative".to_owned(),
                ))
            }
        };
    }
    read(SetQuery::InterCard { keys, limit })
}

/// SSCAN takes MATCH and COUNT: neither SCAN's TYPE nor HSCAN's NOVALUES.
/// Redis reads the options only once it has found a set, so a bad option
/// travels to the state as the error it will answer for an existing set.
fn parse_sscan(argv: &[Bytes]) -> Result<Query, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let cursor = parse_cursor(&args.bytes()?)?;
    let (pattern, count, bad_option) = match parse_scan_options(&mut args, false) {
        Ok(options) if options.type_name.is_none() => (options.pattern, options.count, None),
        Ok(_) | Err(CommandError::Syntax) => (None, 0, Some(StateError::Syntax)),
        Err(_) => (None, 0, Some(StateError::NotInteger)),
    };
    read(SetQuery::Scan {
        key,
        cursor,
        pattern,
        count,
        bad_option,
    })
}
