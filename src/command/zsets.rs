//! Sorted sets: parsing and replies. Semantics live in `state::zsets`.
//!
//! Options are checked in Redis's order, so a command with two mistakes
//! names the one Redis names. The one difference: the STORE and numkeys
//! commands check their options before their keys' types (Redis looks the
//! keys up first), because the state only sees a parsed command.

use bytes::Bytes;

use super::args::MAX_MILLIS;
use super::hashes::parse_random_count;
use super::keys::{parse_cursor, parse_scan_options};
use super::lists::multi_pop_args;
use super::{is, standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::resp::{format_double, Reply};
use crate::state::strings::{parse_f64, parse_i64};
use crate::state::zsets::{
    AddOptions, Aggregate, Combine, LexBound, LexRange, RangeBy, RangeSpec, ScoreRange, SetOp,
    ZSetOp, ZSetQuery,
};
use crate::state::{Op, OpResult, Outcome, Query, Ticket};

const WF: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const W_FAST: &[Flag] = &[Flag::Write, Flag::Fast];
const WD: &[Flag] = &[Flag::Write, Flag::DenyOom];
const W: &[Flag] = &[Flag::Write];
const WB: &[Flag] = &[Flag::Write, Flag::NoScript, Flag::Blocking, Flag::Fast];
const R: &[Flag] = &[Flag::ReadOnly];
const RF: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

const NUMKEYS_STORE: KeyPositions = KeyPositions::FIRST.with_numkeys(2);
const NUMKEYS: KeyPositions = KeyPositions::NONE.with_numkeys(1);
const ALL_BUT_TIMEOUT: KeyPositions = KeyPositions::range(1, -2, 1);

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $($rest:tt)*) => {
        command_spec!(SortedSet, $name, $arity, $flags, $keys, $($rest)*)
    };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("zadd", -4, WF, KeyPositions::FIRST, "1.2.0",
        "key [NX | XX] [GT | LT] [CH] [INCR] score member [score member ...]",
        "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.",
        Exec::Write(parse_zadd, standard_reply)),
    spec!("zincrby", 4, WF, KeyPositions::FIRST, "1.2.0", "key increment member",
        "Increments the score of a member in a sorted set.",
        Exec::Write(parse_zincrby, standard_reply)),
    spec!("zrem", -3, W_FAST, KeyPositions::FIRST, "1.2.0", "key member [member ...]",
        "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.",
        Exec::Write(parse_zrem, standard_reply)),
    spec!("zscore", 3, RF, KeyPositions::FIRST, "1.2.0", "key member",
        "Returns the score of a member in a sorted set.",
        Exec::Read(parse_zscore, standard_reply)),
    spec!("zmscore", -3, RF, KeyPositions::FIRST, "6.2.0", "key member [member ...]",
        "Returns the score of one or more members in a sorted set.",
        Exec::Read(parse_zmscore, standard_reply)),
    spec!("zcard", 2, RF, KeyPositions::FIRST, "1.2.0", "key",
        "Returns the number of members in a sorted set.",
        Exec::Read(parse_zcard, standard_reply)),
    spec!("zcount", 4, RF, KeyPositions::FIRST, "2.0.0", "key min max",
        "Returns the count of members in a sorted set that have scores within a range.",
        Exec::Read(parse_zcount, standard_reply)),
    spec!("zlexcount", 4, RF, KeyPositions::FIRST, "2.8.9", "key min max",
        "Returns the number of members in a sorted set within a lexicographical range.",
        Exec::Read(parse_zlexcount, standard_reply)),
    spec!("zrank", -3, RF, KeyPositions::FIRST, "2.0.0", "key member [WITHSCORE]",
        "Returns the index of a member in a sorted set ordered by ascending scores.",
        Exec::Read(parse_zrank, rank_reply)),
    spec!("zrevrank", -3, RF, KeyPositions::FIRST, "2.0.0", "key member [WITHSCORE]",
        "Returns the index of a member in a sorted set ordered by descending scores.",
        Exec::Read(parse_zrevrank, rank_reply)),
    spec!("zrange", -4, R, KeyPositions::FIRST, "1.2.0",
        "key start stop [BYSCORE | BYLEX] [REV] [LIMIT offset count] [WITHSCORES]",
        "Returns members in a sorted set within a range of indexes, scores or lexicographical values.",
        Exec::Read(parse_zrange, standard_reply)),
    spec!("zrangestore", -5, WD, KeyPositions::FIRST_TWO, "6.2.0",
        "dst src min max [BYSCORE | BYLEX] [REV] [LIMIT offset count]",
        "Stores a range of members from a sorted set in a key.",
        Exec::Write(parse_zrangestore, standard_reply)),
    spec!("zrevrange", -4, R, KeyPositions::FIRST, "1.2.0", "key start stop [WITHSCORES]",
        "Returns members in a sorted set within a range of indexes, highest score first.",
        Exec::Read(parse_zrevrange, standard_reply)),
    spec!("zrangebyscore", -4, R, KeyPositions::FIRST, "1.0.5",
        "key min max [WITHSCORES] [LIMIT offset count]",
        "Returns members in a sorted set within a range of scores.",
        Exec::Read(parse_zrangebyscore, standard_reply)),
    spec!("zrevrangebyscore", -4, R, KeyPositions::FIRST, "2.2.0",
        "key max min [WITHSCORES] [LIMIT offset count]",
        "Returns members in a sorted set within a range of scores, highest first.",
        Exec::Read(parse_zrevrangebyscore, standard_reply)),
    spec!("zrangebylex", -4, R, KeyPositions::FIRST, "2.8.9",
        "key min max [LIMIT offset count]",
        "Returns members in a sorted set within a lexicographical range.",
        Exec::Read(parse_zrangebylex, standard_reply)),
    spec!("zrevrangebylex", -4, R, KeyPositions::FIRST, "2.8.9",
        "key max min [LIMIT offset count]",
        "Returns members in a sorted set within a lexicographical range, in reverse order.",
        Exec::Read(parse_zrevrangebylex, standard_reply)),
    spec!("zremrangebyscore", 4, W, KeyPositions::FIRST, "1.2.0", "key min max",
        "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.",
        Exec::Write(parse_zremrangebyscore, standard_reply)),
    spec!("zremrangebyrank", 4, W, KeyPositions::FIRST, "2.0.0", "key start stop",
        "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.",
        Exec::Write(parse_zremrangebyrank, standard_reply)),
    spec!("zremrangebylex", 4, W, KeyPositions::FIRST, "2.8.9", "key min max",
        "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.",
        Exec::Write(parse_zremrangebylex, standard_reply)),
    spec!("zpopmin", -2, W_FAST, KeyPositions::FIRST, "5.0.0", "key [count]",
        "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.",
        Exec::Write(parse_zpopmin, standard_reply)),
    spec!("zpopmax", -2, W_FAST, KeyPositions::FIRST, "5.0.0", "key [count]",
        "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.",
        Exec::Write(parse_zpopmax, standard_reply)),
    spec!("bzpopmin", -3, WB, ALL_BUT_TIMEOUT, "5.0.0", "key [key ...] timeout",
        "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.",
        Exec::Write(parse_bzpopmin, blocking_pop_reply)),
    spec!("bzpopmax", -3, WB, ALL_BUT_TIMEOUT, "5.0.0", "key [key ...] timeout",
        "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.",
        Exec::Write(parse_bzpopmax, blocking_pop_reply)),
    spec!("zmpop", -4, W, KeyPositions::NONE.with_numkeys(1), "7.0.0",
        "numkeys key [key ...] <MIN | MAX> [COUNT count]",
        "Returns the highest- or lowest-scoring members from the first non-empty sorted set after removing them. Deletes the sorted set if the last member was popped.",
        Exec::Write(parse_zmpop, blocking_pop_reply)),
    spec!("bzmpop", -5, WB, KeyPositions::NONE.with_numkeys(2), "7.0.0",
        "timeout numkeys key [key ...] <MIN | MAX> [COUNT count]",
        "Removes and returns members by score from the first non-empty sorted set. Blocks until a member is available otherwise. Deletes the sorted set if the last member was popped.",
        Exec::Write(parse_bzmpop, blocking_pop_reply)),
    spec!("zunionstore", -4, WD, NUMKEYS_STORE, "2.0.0",
        "destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM | MIN | MAX]",
        "Stores the union of multiple sorted sets in a key.",
        Exec::Write(parse_zunionstore, standard_reply)),
    spec!("zinterstore", -4, WD, NUMKEYS_STORE, "2.0.0",
        "destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM | MIN | MAX]",
        "Stores the intersect of multiple sorted sets in a key.",
        Exec::Write(parse_zinterstore, standard_reply)),
    spec!("zdiffstore", -4, WD, NUMKEYS_STORE, "6.2.0", "destination numkeys key [key ...]",
        "Stores the difference of multiple sorted sets in a key.",
        Exec::Write(parse_zdiffstore, standard_reply)),
    spec!("zunion", -3, R, NUMKEYS, "6.2.0",
        "numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM | MIN | MAX] [WITHSCORES]",
        "Returns the union of multiple sorted sets.",
        Exec::Read(parse_zunion, standard_reply)),
    spec!("zinter", -3, R, NUMKEYS, "6.2.0",
        "numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM | MIN | MAX] [WITHSCORES]",
        "Returns the intersect of multiple sorted sets.",
        Exec::Read(parse_zinter, standard_reply)),
    spec!("zdiff", -3, R, NUMKEYS, "6.2.0", "numkeys key [key ...] [WITHSCORES]",
        "Returns the difference between multiple sorted sets.",
        Exec::Read(parse_zdiff, standard_reply)),
    spec!("zintercard", -3, R, NUMKEYS, "7.0.0", "numkeys key [key ...] [LIMIT limit]",
        "Returns the number of members of the intersect of multiple sorted sets.",
        Exec::Read(parse_zintercard, standard_reply)),
    spec!("zrandmember", -2, R, KeyPositions::FIRST, "6.2.0", "key [count [WITHSCORES]]",
        "Returns one or more random members from a sorted set. A negative count may repeat members and is limited to 16777216.",
        Exec::Read(parse_zrandmember, standard_reply)),
    spec!("zscan", -3, R, KeyPositions::FIRST, "2.8.0", "key cursor [MATCH pattern] [COUNT count]",
        "Iterates over members and scores of a sorted set.",
        Exec::Read(parse_zscan, scan_reply)),
];

fn write(op: ZSetOp) -> Result<Op, CommandError> {
    Ok(Op::ZSet(op))
}

fn read(query: ZSetQuery) -> Result<Query, CommandError> {
    Ok(Query::ZSet(query))
}

fn invalid(text: &str) -> CommandError {
    CommandError::InvalidArgument(text.to_owned())
}

/// ZRANK WITHSCORE of a missing member answers a null array.
fn rank_reply(name: &'static str, result: OpResult) -> Reply {
    match result {
        Ok(Outcome::Array(items)) if items.is_empty() => Reply::NilArray,
        other => standard_reply(name, other),
    }
}

/// A blocking pop that timed out (or could not wait) answers a null array.
fn blocking_pop_reply(name: &'static str, result: OpResult) -> Reply {
    match result {
        Ok(Outcome::Nil) => Reply::NilArray,
        other => standard_reply(name, other),
    }
}

/// ZSCAN sends scores as bulk strings, in RESP3 too.
fn scan_reply(name: &'static str, result: OpResult) -> Reply {
    match result {
        Ok(Outcome::Array(mut parts)) if parts.len() == 2 => {
            if let Outcome::Array(items) = &mut parts[1] {
                for item in items.iter_mut() {
                    if let Outcome::Double(score) = *item {
                        *item = Outcome::Bulk(Bytes::from(format_double(score)));
                    }
                }
            }
            standard_reply(name, Ok(Outcome::Array(parts)))
        }
        other => standard_reply(name, other),
    }
}

fn parse_zadd(argv: &[Bytes]) -> Result<Op, CommandError> {
    add_op(argv, false)
}

/// ZINCRBY is ZADD with INCR, options and all (as in Redis).
fn parse_zincrby(argv: &[Bytes]) -> Result<Op, CommandError> {
    add_op(argv, true)
}

fn add_op(argv: &[Bytes], incr: bool) -> Result<Op, CommandError> {
    let mut options = AddOptions {
        incr,
        ..AddOptions::default()
    };
    let mut at = 2;
    while let Some(arg) = argv.get(at) {
        let flag = if is(arg, "NX") {
            &mut options.nx
        } else if is(arg, "XX") {
            &mut options.xx
        } else if is(arg, "CH") {
            &mut options.ch
        } else if is(arg, "INCR") {
            &mut options.incr
        } else if is(arg, "GT") {
            &mut options.gt
        } else if is(arg, "LT") {
            &mut options.lt
        } else {
            break;
        };
        *flag = true;
        at += 1;
    }
    let rest = &argv[at..];
    if rest.is_empty() || !rest.len().is_multiple_of(2) {
        return Err(CommandError::Syntax);
    }
    if options.nx && options.xx {
        return Err(invalid(
            "XX and NX options at the same time are not compatible",
        ));
    }
    if (options.nx && (options.gt || options.lt)) || (options.gt && options.lt) {
        return Err(invalid(
            "GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if options.incr && rest.len() > 2 {
        return Err(invalid(
            "INCR option supports a single increment-element pair",
        ));
    }
    let pairs = rest
        .chunks_exact(2)
        .map(|p| {
            Ok((
                parse_f64(&p[0]).ok_or(CommandError::NotFloat)?,
                p[1].clone(),
            ))
        })
        .collect::<Result<_, CommandError>>()?;
    write(ZSetOp::Add {
        key: argv[1].clone(),
        pairs,
        options,
    })
}

fn parse_zrem(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(ZSetOp::Rem {
        key: argv[1].clone(),
        members: argv[2..].to_vec(),
    })
}

fn parse_zscore(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(ZSetQuery::Score {
        key: argv[1].clone(),
        member: argv[2].clone(),
    })
}

fn parse_zmscore(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(ZSetQuery::MScore {
        key: argv[1].clone(),
        members: argv[2..].to_vec(),
    })
}

fn parse_zcard(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(ZSetQuery::Card {
        key: argv[1].clone(),
    })
}

fn parse_zcount(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(ZSetQuery::Count {
        key: argv[1].clone(),
        range: score_range(&argv[2], &argv[3])?,
    })
}

fn parse_zlexcount(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(ZSetQuery::LexCount {
        key: argv[1].clone(),
        range: lex_range(&argv[2], &argv[3])?,
    })
}

/// One end of a score range: a double, `(` before it for an open end.
/// As Redis (strtod), leading blanks are skipped and an empty number is 0.
fn score_bound(arg: &[u8]) -> Option<(f64, bool)> {
    let (exclusive, number) = match arg.strip_prefix(b"(") {
        Some(rest) => (true, rest),
        None => (false, arg),
    };
    if number.is_empty() {
        return Some((0.0, exclusive));
    }
    let text = std::str::from_utf8(number).ok()?;
    let value: f64 = text
        .trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c'])
        .parse()
        .ok()?;
    (!value.is_nan()).then_some((value, exclusive))
}

fn score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, CommandError> {
    let not_float = || invalid("min or max is not a float");
    let (min, min_exclusive) = score_bound(min).ok_or_else(not_float)?;
    let (max, max_exclusive) = score_bound(max).ok_or_else(not_float)?;
    Ok(ScoreRange {
        min,
        min_exclusive,
        max,
        max_exclusive,
    })
}

/// One end of a lexicographic range: `-`, `+`, `[member` or `(member`.
fn lex_bound(arg: &Bytes) -> Option<LexBound> {
    match arg.first()? {
        b'-' if arg.len() == 1 => Some(LexBound::Min),
        b'+' if arg.len() == 1 => Some(LexBound::Max),
        b'[' => Some(LexBound::Inclusive(arg.slice(1..))),
        b'(' => Some(LexBound::Exclusive(arg.slice(1..))),
        _ => None,
    }
}

fn lex_range(min: &Bytes, max: &Bytes) -> Result<LexRange, CommandError> {
    let not_valid = || invalid("min or max not valid string range item");
    Ok(LexRange {
        min: lex_bound(min).ok_or_else(not_valid)?,
        max: lex_bound(max).ok_or_else(not_valid)?,
    })
}

fn integer(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotInteger)
}

fn rank_query(argv: &[Bytes], rev: bool) -> Result<Query, CommandError> {
    let with_score = match argv.len() {
        3 => false,
        4 if is(&argv[3], "WITHSCORE") => true,
        4 => return Err(CommandError::Syntax),
        _ => return Err(CommandError::WrongArity(command_name(argv))),
    };
    read(ZSetQuery::Rank {
        key: argv[1].clone(),
        member: argv[2].clone(),
        rev,
        with_score,
    })
}

/// The command's name as Redis quotes it in errors: lower case.
fn command_name(argv: &[Bytes]) -> String {
    String::from_utf8_lossy(&argv[0]).to_ascii_lowercase()
}

fn parse_zrank(argv: &[Bytes]) -> Result<Query, CommandError> {
    rank_query(argv, false)
}

fn parse_zrevrank(argv: &[Bytes]) -> Result<Query, CommandError> {
    rank_query(argv, true)
}

/// What a range command ranges over before its options say.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Auto,
    Rank,
    Score,
    Lex,
}

/// The arguments from the source key on, as Redis's zrangeGenericCommand
/// reads them: options first, then the conflicts between them, then the
/// bounds (in max, min order when reversed by score or lex). `rev` is None
/// when REV may be given. Answers the key, the range and WITHSCORES.
fn range_args(
    argv: &[Bytes],
    src_at: usize,
    store: bool,
    mut kind: Kind,
    rev: Option<bool>,
) -> Result<(Bytes, RangeSpec, bool), CommandError> {
    let mut reversed = rev;
    let (mut with_scores, mut offset, mut count) = (false, 0, -1);
    let mut j = src_at + 3;
    while let Some(arg) = argv.get(j) {
        let left = argv.len() - j - 1;
        if !store && is(arg, "WITHSCORES") {
            with_scores = true;
        } else if is(arg, "LIMIT") && left >= 2 {
            offset = integer(&argv[j + 1])?;
            count = integer(&argv[j + 2])?;
            j += 2;
        } else if reversed.is_none() && is(arg, "REV") {
            reversed = Some(true);
        } else if kind == Kind::Auto && is(arg, "BYLEX") {
            kind = Kind::Lex;
        } else if kind == Kind::Auto && is(arg, "BYSCORE") {
            kind = Kind::Score;
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    let rev = reversed.unwrap_or(false);
    if kind == Kind::Auto {
        kind = Kind::Rank;
    }
    if count != -1 && kind == Kind::Rank {
        return Err(invalid(
            "syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if with_scores && kind == Kind::Lex {
        return Err(invalid(
            "syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let (mut low, mut high) = (&argv[src_at + 1], &argv[src_at + 2]);
    if rev && kind != Kind::Rank {
        std::mem::swap(&mut low, &mut high);
    }
    let by = match kind {
        Kind::Score => RangeBy::Score(score_range(low, high)?),
        Kind::Lex => RangeBy::Lex(lex_range(low, high)?),
        Kind::Rank | Kind::Auto => RangeBy::Rank {
            start: integer(low)?,
            end: integer(high)?,
        },
    };
    let spec = RangeSpec {
        by,
        rev,
        offset,
        count,
    };
    Ok((argv[src_at].clone(), spec, with_scores))
}

fn range_query(argv: &[Bytes], kind: Kind, rev: Option<bool>) -> Result<Query, CommandError> {
    let (key, spec, with_scores) = range_args(argv, 1, false, kind, rev)?;
    read(ZSetQuery::Range {
        key,
        spec,
        with_scores,
    })
}

fn parse_zrange(argv: &[Bytes]) -> Result<Query, CommandError> {
    range_query(argv, Kind::Auto, None)
}

fn parse_zrevrange(argv: &[Bytes]) -> Result<Query, CommandError> {
    range_query(argv, Kind::Rank, Some(true))
}

fn parse_zrangebyscore(argv: &[Bytes]) -> Result<Query, CommandError> {
    range_query(argv, Kind::Score, Some(false))
}

fn parse_zrevrangebyscore(argv: &[Bytes]) -> Result<Query, CommandError> {
    range_query(argv, Kind::Score, Some(true))
}

fn parse_zrangebylex(argv: &[Bytes]) -> Result<Query, CommandError> {
    range_query(argv, Kind::Lex, Some(false))
}

fn parse_zrevrangebylex(argv: &[Bytes]) -> Result<Query, CommandError> {
    range_query(argv, Kind::Lex, Some(true))
}

fn parse_zrangestore(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (src, spec, _) = range_args(argv, 2, true, Kind::Auto, None)?;
    write(ZSetOp::RangeStore {
        dest: argv[1].clone(),
        src,
        spec,
    })
}

fn rem_range(argv: &[Bytes], by: RangeBy) -> Result<Op, CommandError> {
    write(ZSetOp::RemRange {
        key: argv[1].clone(),
        by,
    })
}

fn parse_zremrangebyscore(argv: &[Bytes]) -> Result<Op, CommandError> {
    rem_range(argv, RangeBy::Score(score_range(&argv[2], &argv[3])?))
}

fn parse_zremrangebyrank(argv: &[Bytes]) -> Result<Op, CommandError> {
    let start = integer(&argv[2])?;
    let end = integer(&argv[3])?;
    rem_range(argv, RangeBy::Rank { start, end })
}

fn parse_zremrangebylex(argv: &[Bytes]) -> Result<Op, CommandError> {
    rem_range(argv, RangeBy::Lex(lex_range(&argv[2], &argv[3])?))
}

fn pop_op(argv: &[Bytes], max: bool) -> Result<Op, CommandError> {
    let count = match argv.len() {
        2 => None,
        3 => {
            let n = integer(&argv[2])?;
            Some(u64::try_from(n).map_err(|_| CommandError::NotPositive("value"))?)
        }
        _ => return Err(CommandError::Syntax),
    };
    write(ZSetOp::Pop {
        key: argv[1].clone(),
        max,
        count,
    })
}

fn parse_zpopmin(argv: &[Bytes]) -> Result<Op, CommandError> {
    pop_op(argv, false)
}

fn parse_zpopmax(argv: &[Bytes]) -> Result<Op, CommandError> {
    pop_op(argv, true)
}

/// A blocking timeout in seconds (a float; 0 waits forever), as
/// milliseconds rounded up. Waits longer than [`MAX_MILLIS`] are cut to it.
fn timeout_ms(arg: &[u8]) -> Result<u64, CommandError> {
    let seconds =
        parse_f64(arg).ok_or_else(|| invalid("timeout is not a float or out of range"))?;
    let ms = (seconds * 1000.0).ceil();
    if ms > i64::MAX as f64 {
        return Err(invalid("timeout is out of range"));
    }
    if ms < 0.0 {
        return Err(invalid("timeout is negative"));
    }
    Ok((ms as u64).min(MAX_MILLIS))
}

fn blocking_pop(argv: &[Bytes], max: bool) -> Result<Op, CommandError> {
    let (timeout, keys) = argv[1..].split_last().ok_or(CommandError::Syntax)?;
    write(ZSetOp::BlockingPop {
        keys: keys.to_vec(),
        max,
        timeout_ms: timeout_ms(timeout)?,
        ticket: Ticket::default(),
    })
}

fn parse_bzpopmin(argv: &[Bytes]) -> Result<Op, CommandError> {
    blocking_pop(argv, false)
}

fn parse_bzpopmax(argv: &[Bytes]) -> Result<Op, CommandError> {
    blocking_pop(argv, true)
}

/// MIN or MAX: true for MAX.
fn side(arg: &[u8]) -> Result<bool, CommandError> {
    if is(arg, "MIN") {
        Ok(false)
    } else if is(arg, "MAX") {
        Ok(true)
    } else {
        Err(CommandError::Syntax)
    }
}

fn parse_zmpop(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (keys, max, count) = multi_pop_args(argv, 1, side)?;
    write(ZSetOp::MultiPop {
        keys,
        max,
        count,
        timeout_ms: None,
        ticket: Ticket::default(),
    })
}

/// Everything after the timeout is checked before the timeout itself.
fn parse_bzmpop(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (keys, max, count) = multi_pop_args(argv, 2, side)?;
    write(ZSetOp::MultiPop {
        keys,
        max,
        count,
        timeout_ms: Some(timeout_ms(&argv[1])?),
        ticket: Ticket::default(),
    })
}

/// The shape of a numkeys command's options.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE.
    Store,
    /// ZUNION, ZINTER, ZDIFF: WITHSCORES too.
    Read,
    /// ZINTERCARD: LIMIT only.
    Card,
}

/// What a numkeys command asks for after its keys.
struct Combined {
    combine: Combine,
    with_scores: bool,
    limit: u64,
}

/// `numkeys key [key ...]` at `numkeys_at`, then the form's options, in
/// Redis's order of checks.
fn combine_args(
    argv: &[Bytes],
    numkeys_at: usize,
    op: SetOp,
    form: Form,
) -> Result<Combined, CommandError> {
    let numkeys = integer(&argv[numkeys_at])?;
    if numkeys < 1 {
        return Err(CommandError::InvalidArgument(format!(
            "at least 1 input key is needed for '{}' command",
            command_name(argv)
        )));
    }
    let first_key = numkeys_at + 1;
    let available = argv.len() - first_key;
    let numkeys = usize::try_from(numkeys).unwrap_or(usize::MAX);
    if numkeys > available {
        return Err(CommandError::Syntax);
    }
    let mut result = Combined {
        combine: Combine {
            op,
            keys: argv[first_key..first_key + numkeys].to_vec(),
            weights: Vec::new(),
            aggregate: Aggregate::Sum,
        },
        with_scores: false,
        limit: 0,
    };
    let weighable = op != SetOp::Diff && form != Form::Card;
    let mut j = first_key + numkeys;
    while let Some(arg) = argv.get(j) {
        let remaining = argv.len() - j;
        if weighable && remaining > numkeys && is(arg, "WEIGHTS") {
            result.combine.weights = argv[j + 1..=j + numkeys]
                .iter()
                .map(|w| parse_f64(w).ok_or_else(|| invalid("weight value is not a float")))
                .collect::<Result<_, _>>()?;
            j += 1 + numkeys;
        } else if weighable && remaining >= 2 && is(arg, "AGGREGATE") {
            let how = &argv[j + 1];
            result.combine.aggregate = if is(how, "SUM") {
                Aggregate::Sum
            } else if is(how, "MIN") {
                Aggregate::Min
            } else if is(how, "MAX") {
                Aggregate::Max
            } else {
                return Err(CommandError::Syntax);
            };
            j += 2;
        } else if form == Form::Read && is(arg, "WITHSCORES") {
            result.with_scores = true;
            j += 1;
        } else if form == Form::Card && remaining >= 2 && is(arg, "LIMIT") {
            let limit = parse_i64(&argv[j + 1]).and_then(|n| u64::try_from(n).ok());
            result.limit = limit.ok_or_else(|| invalid("LIMIT can't be negative"))?;
            j += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(result)
}

fn store_op(argv: &[Bytes], op: SetOp) -> Result<Op, CommandError> {
    let combined = combine_args(argv, 2, op, Form::Store)?;
    write(ZSetOp::Store {
        dest: argv[1].clone(),
        combine: combined.combine,
    })
}

fn parse_zunionstore(argv: &[Bytes]) -> Result<Op, CommandError> {
    store_op(argv, SetOp::Union)
}

fn parse_zinterstore(argv: &[Bytes]) -> Result<Op, CommandError> {
    store_op(argv, SetOp::Inter)
}

fn parse_zdiffstore(argv: &[Bytes]) -> Result<Op, CommandError> {
    store_op(argv, SetOp::Diff)
}

fn combine_query(argv: &[Bytes], op: SetOp) -> Result<Query, CommandError> {
    let combined = combine_args(argv, 1, op, Form::Read)?;
    read(ZSetQuery::Combine {
        combine: combined.combine,
        with_scores: combined.with_scores,
    })
}

fn parse_zunion(argv: &[Bytes]) -> Result<Query, CommandError> {
    combine_query(argv, SetOp::Union)
}

fn parse_zinter(argv: &[Bytes]) -> Result<Query, CommandError> {
    combine_query(argv, SetOp::Inter)
}

fn parse_zdiff(argv: &[Bytes]) -> Result<Query, CommandError> {
    combine_query(argv, SetOp::Diff)
}

fn parse_zintercard(argv: &[Bytes]) -> Result<Query, CommandError> {
    let combined = combine_args(argv, 1, SetOp::Inter, Form::Card)?;
    read(ZSetQuery::InterCard {
        keys: combined.combine.keys,
        limit: combined.limit,
    })
}

fn parse_zrandmember(argv: &[Bytes]) -> Result<Query, CommandError> {
    let (count, with_scores) = parse_random_count(argv, "WITHSCORES")?;
    read(ZSetQuery::RandMember {
        key: argv[1].clone(),
        count,
        with_scores,
        seed: rand::random(),
    })
}

/// ZSCAN takes MATCH and COUNT (HSCAN's NOVALUES and SCAN's TYPE are
/// syntax errors here, as in Redis 7.2).
fn parse_zscan(argv: &[Bytes]) -> Result<Query, CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let cursor = parse_cursor(&args.bytes()?)?;
    let options = parse_scan_options(&mut args, true)?;
    if options.novalues {
        return Err(CommandError::Syntax);
    }
    read(ZSetQuery::Scan {
        key,
        cursor,
        pattern: options.pattern,
        count: options.count,
    })
}
