//! Hashes: parsing and replies. Semantics live in `state::hashes`.

use bytes::Bytes;

use super::keys::{parse_cursor, parse_scan_options};
use super::{is, standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::resp::Reply;
use crate::state::hashes::{HashOp, HashQuery, MAX_RANDOM_REPEATS};
use crate::state::{Op, OpResult, Outcome, Query};

const WF: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const WF_NOOOM: &[Flag] = &[Flag::Write, Flag::Fast];
const R: &[Flag] = &[Flag::ReadOnly];
const RF: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $($rest:tt)*) => {
        command_spec!(Hash, $name, $arity, $flags, KeyPositions::FIRST, $($rest)*)
    };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("hset", -4, WF, "2.0.0", "key field value [field value ...]",
        "Creates or modifies the value of a field in a hash.",
        Exec::Write(parse_hset, standard_reply)),
    spec!("hsetnx", 4, WF, "2.0.0", "key field value",
        "Sets the value of a field in a hash only when the field doesn't exist.",
        Exec::Write(parse_hsetnx, standard_reply)),
    spec!("hmset", -4, WF, "2.0.0", "key field value [field value ...]",
        "Sets the values of multiple fields.",
        Exec::Write(parse_hmset, ok_reply)),
    spec!("hget", 3, RF, "2.0.0", "key field",
        "Returns the value of a field in a hash.",
        Exec::Read(parse_hget, standard_reply)),
    spec!("hmget", -3, RF, "2.0.0", "key field [field ...]",
        "Returns the values of all fields in a hash.",
        Exec::Read(parse_hmget, standard_reply)),
    spec!("hgetall", 2, R, "2.0.0", "key",
        "Returns all fields and values in a hash.",
        Exec::Read(parse_hgetall, standard_reply)),
    spec!("hdel", -3, WF_NOOOM, "2.0.0", "key field [field ...]",
        "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.",
        Exec::Write(parse_hdel, standard_reply)),
    spec!("hexists", 3, RF, "2.0.0", "key field",
        "Determines whether a field exists in a hash.",
        Exec::Read(parse_hexists, standard_reply)),
    spec!("hlen", 2, RF, "2.0.0", "key",
        "Returns the number of fields in a hash.",
        Exec::Read(parse_hlen, standard_reply)),
    spec!("hkeys", 2, R, "2.0.0", "key",
        "Returns all fields in a hash.",
        Exec::Read(parse_hkeys, standard_reply)),
    spec!("hvals", 2, R, "2.0.0", "key",
        "Returns all values in a hash.",
        Exec::Read(parse_hvals, standard_reply)),
    spec!("hstrlen", 3, RF, "3.2.0", "key field",
        "Returns the length of the value of a field.",
        Exec::Read(parse_hstrlen, standard_reply)),
    spec!("hincrby", 4, WF, "2.0.0", "key field increment",
        "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.",
        Exec::Write(parse_hincrby, standard_reply)),
    spec!("hincrbyfloat", 4, WF, "2.6.0", "key field increment",
        "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.",
        Exec::Write(parse_hincrbyfloat, standard_reply)),
    spec!("hscan", -3, R, "2.8.0", "key cursor [MATCH pattern] [COUNT count] [NOVALUES]",
        "Iterates over fields and values of a hash. NOVALUES (from Redis 7.4) returns the fields only.",
        Exec::Read(parse_hscan, standard_reply)),
    spec!("hrandfield", -2, R, "6.2.0", "key [count [WITHVALUES]]",
        "Returns one or more random fields from a hash. A negative count may repeat fields and is limited to 16777216.",
        Exec::Read(parse_hrandfield, standard_reply)),
];

fn write(op: HashOp) -> Result<Op, CommandError> {
    Ok(Op::Hash(op))
}

fn read(query: HashQuery) -> Result<Query, CommandError> {
    Ok(Query::Hash(query))
}

/// HMSET answers OK where HSET answers the number of fields added.
fn ok_reply(name: &'static str, result: OpResult) -> Reply {
    match result {
        Ok(Outcome::Int(_)) => Reply::ok(),
        other => standard_reply(name, other),
    }
}

fn field_pairs(argv: &[Bytes], command: &str) -> Result<Vec<(Bytes, Bytes)>, CommandError> {
    if !argv.len().is_multiple_of(2) {
        return Err(CommandError::WrongArity(command.to_owned()));
    }
    Ok(argv[2..]
        .chunks_exact(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect())
}

fn parse_hset(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(HashOp::Set {
        key: argv[1].clone(),
        pairs: field_pairs(argv, "hset")?,
    })
}

fn parse_hmset(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(HashOp::Set {
        key: argv[1].clone(),
        pairs: field_pairs(argv, "hmset")?,
    })
}

fn parse_hsetnx(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(HashOp::SetNx {
        key: argv[1].clone(),
        field: argv[2].clone(),
        value: argv[3].clone(),
    })
}

fn parse_hget(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(HashQuery::Get {
        key: argv[1].clone(),
        field: argv[2].clone(),
    })
}

fn parse_hmget(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(HashQuery::MGet {
        key: argv[1].clone(),
        fields: argv[2..].to_vec(),
    })
}

fn parse_hgetall(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(HashQuery::GetAll {
        key: argv[1].clone(),
    })
}

fn parse_hdel(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(HashOp::Del {
        key: argv[1].clone(),
        fields: argv[2..].to_vec(),
    })
}

fn parse_hexists(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(HashQuery::Exists {
        key: argv[1].clone(),
        field: argv[2].clone(),
    })
}

fn parse_hlen(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(HashQuery::Len {
        key: argv[1].clone(),
    })
}

fn parse_hkeys(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(HashQuery::Keys {
        key: argv[1].clone(),
    })
}

fn parse_hvals(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(HashQuery::Vals {
        key: argv[1].clone(),
    })
}

fn parse_hstrlen(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(HashQuery::StrLen {
        key: argv[1].clone(),
        field: argv[2].clone(),
    })
}

fn parse_hincrby(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let field = args.bytes()?;
    let delta = args.i64()?;
    write(HashOp::IncrBy { key, field, delta })
}

fn parse_hincrbyfloat(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let field = args.bytes()?;
    let delta = args.f64()?;
    if !delta.is_finite() {
        return Err(CommandError::InvalidArgument(
            "value is NaN or Infinity".to_owned(),
        ));
    }
    write(HashOp::IncrByFloat { key, field, delta })
}

fn parse_hscan(argv: &[Bytes]) -> Result<Query, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let cursor = parse_cursor(&args.bytes()?)?;
    let options = parse_scan_options(&mut args, true)?;
    read(HashQuery::Scan {
        key,
        cursor,
        pattern: options.pattern,
        count: options.count,
        novalues: options.novalues,
    })
}

fn parse_hrandfield(argv: &[Bytes]) -> Result<Query, CommandError> {
    let (count, with_values) = parse_random_count(argv, "WITHVALUES")?;
    read(HashQuery::RandField {
        key: argv[1].clone(),
        count,
        with_values,
        seed: rand::random(),
    })
}

/// The `[count [WITH...]]` of HRANDFIELD and ZRANDMEMBER, with Redis's
/// checks in its order: the count's range, the `with` word, then the
/// halved range when values double the reply. Answers the count and
/// whether the word was given.
pub(super) fn parse_random_count(
    argv: &[Bytes],
    with: &str,
) -> Result<(Option<i64>, bool), CommandError> {
    let mut args = Args::new(argv);
    args.bytes()?;
    if args.is_empty() {
        return Ok((None, false));
    }
    let n = args.i64()?;
    if n == i64::MIN {
        return Err(CommandError::InvalidArgument(format!(
            "value is out of range, value must between {} and {}",
            -i64::MAX,
            i64::MAX
        )));
    }
    let mut with_values = false;
    match argv.len() {
        3 => {}
        4 if is(&argv[3], with) => {
            with_values = true;
            if !(-i64::MAX / 2..=i64::MAX / 2).contains(&n) {
                return Err(CommandError::InvalidArgument(
                    "value is out of range".to_owned(),
                ));
            }
        }
        _ => return Err(CommandError::Syntax),
    }
    if n < 0 && n.unsigned_abs() > MAX_RANDOM_REPEATS {
        return Err(CommandError::InvalidArgument(
            "value is out of range".to_owned(),
        ));
    }
    Ok((Some(n), with_values))
}
