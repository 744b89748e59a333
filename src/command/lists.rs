//! Lists: parsing and replies. Semantics, and the serving of blocked
//! clients, live in `state::lists`.
//!
//! Arguments are checked in Redis's order, which decides which error a
//! command with several bad arguments gets: LRANGE parses its indexes
//! before it looks at the key, LINDEX and LSET only after finding the list
//! (so their index travels as "maybe an integer").

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::args::MAX_MILLIS;
use super::{is, standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::state::lists::{End, ListOp, ListQuery};
use crate::state::strings::{parse_f64, parse_i64};
use crate::state::{Op, Query, Ticket};

const WF: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const W_FAST: &[Flag] = &[Flag::Write, Flag::Fast];
const WD: &[Flag] = &[Flag::Write, Flag::DenyOom];
const W: &[Flag] = &[Flag::Write];
const WB: &[Flag] = &[Flag::Write, Flag::Blocking];
const WDB: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Blocking];
const R: &[Flag] = &[Flag::ReadOnly];
const RF: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

/// BLPOP key [key ...] timeout: every argument but the last is a key.
const ALL_BUT_LAST: KeyPositions = KeyPositions::range(1, -2, 1);

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $($rest:tt)*) => {
        command_spec!(List, $name, $arity, $flags, $keys, $($rest)*)
    };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("lpush", -3, WF, KeyPositions::FIRST, "1.0.0", "key element [element ...]",
        "Prepends one or more elements to a list. Creates the key if it doesn't exist.",
        Exec::Write(parse_lpush, standard_reply)),
    spec!("rpush", -3, WF, KeyPositions::FIRST, "1.0.0", "key element [element ...]",
        "Appends one or more elements to a list. Creates the key if it doesn't exist.",
        Exec::Write(parse_rpush, standard_reply)),
    spec!("lpushx", -3, WF, KeyPositions::FIRST, "2.2.0", "key element [element ...]",
        "Prepends one or more elements to a list only when the list exists.",
        Exec::Write(parse_lpushx, standard_reply)),
    spec!("rpushx", -3, WF, KeyPositions::FIRST, "2.2.0", "key element [element ...]",
        "Appends an element to a list only when the list exists.",
        Exec::Write(parse_rpushx, standard_reply)),
    spec!("lpop", -2, W_FAST, KeyPositions::FIRST, "1.0.0", "key [count]",
        "Returns the first elements in a list after removing it. Deletes the list if the last element was popped.",
        Exec::Write(parse_lpop, standard_reply)),
    spec!("rpop", -2, W_FAST, KeyPositions::FIRST, "1.0.0", "key [count]",
        "Returns and removes the last elements of a list. Deletes the list if the last element was popped.",
        Exec::Write(parse_rpop, standard_reply)),
    spec!("llen", 2, RF, KeyPositions::FIRST, "1.0.0", "key",
        "Returns the length of a list.",
        Exec::Read(parse_llen, standard_reply)),
    spec!("lrange", 4, R, KeyPositions::FIRST, "1.0.0", "key start stop",
        "Returns a range of elements from a list.",
        Exec::Read(parse_lrange, standard_reply)),
    spec!("lindex", 3, R, KeyPositions::FIRST, "1.0.0", "key index",
        "Returns an element from a list by its index.",
        Exec::Read(parse_lindex, standard_reply)),
    spec!("lset", 4, WD, KeyPositions::FIRST, "1.0.0", "key index element",
        "Sets the value of an element in a list by its index.",
        Exec::Write(parse_lset, standard_reply)),
    spec!("linsert", 5, WD, KeyPositions::FIRST, "2.2.0", "key <BEFORE | AFTER> pivot element",
        "Inserts an element before or after another element in a list.",
        Exec::Write(parse_linsert, standard_reply)),
    spec!("lrem", 4, W, KeyPositions::FIRST, "1.0.0", "key count element",
        "Removes elements from a list. Deletes the list if the last element was removed.",
        Exec::Write(parse_lrem, standard_reply)),
    spec!("ltrim", 4, W, KeyPositions::FIRST, "1.0.0", "key start stop",
        "Removes elements from both ends a list. Deletes the list if all elements were trimmed.",
        Exec::Write(parse_ltrim, standard_reply)),
    spec!("lpos", -3, R, KeyPositions::FIRST, "6.0.6",
        "key element [RANK rank] [COUNT num-matches] [MAXLEN len]",
        "Returns the index of matching elements in a list.",
        Exec::Read(parse_lpos, standard_reply)),
    spec!("lmove", 5, WD, KeyPositions::FIRST_TWO, "6.2.0",
        "source destination <LEFT | RIGHT> <LEFT | RIGHT>",
        "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.",
        Exec::Write(parse_lmove, standard_reply)),
    spec!("rpoplpush", 3, WD, KeyPositions::FIRST_TWO, "1.2.0", "source destination",
        "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.",
        Exec::Write(parse_rpoplpush, standard_reply)),
    spec!("lmpop", -4, W, KeyPositions::NONE.with_numkeys(1), "7.0.0",
        "numkeys key [key ...] <LEFT | RIGHT> [COUNT count]",
        "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.",
        Exec::Write(parse_lmpop, standard_reply)),
    spec!("blpop", -3, WB, ALL_BUT_LAST, "2.0.0", "key [key ...] timeout",
        "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped. The timeout is in seconds (0: no limit); a wait runs at most 100 years.",
        Exec::Write(parse_blpop, standard_reply)),
    spec!("brpop", -3, WB, ALL_BUT_LAST, "2.0.0", "key [key ...] timeout",
        "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped. The timeout is in seconds (0: no limit); a wait runs at most 100 years.",
        Exec::Write(parse_brpop, standard_reply)),
    spec!("blmove", 6, WDB, KeyPositions::FIRST_TWO, "6.2.0",
        "source destination <LEFT | RIGHT> <LEFT | RIGHT> timeout",
        "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.",
        Exec::Write(parse_blmove, standard_reply)),
    spec!("brpoplpush", 4, WDB, KeyPositions::FIRST_TWO, "2.2.0", "source destination timeout",
        "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.",
        Exec::Write(parse_brpoplpush, standard_reply)),
    spec!("blmpop", -5, WB, KeyPositions::NONE.with_numkeys(2), "7.0.0",
        "timeout numkeys key [key ...] <LEFT | RIGHT> [COUNT count]",
        "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.",
        Exec::Write(parse_blmpop, standard_reply)),
];

fn write(op: ListOp) -> Result<Op, CommandError> {
    Ok(Op::List(op))
}

fn read(query: ListQuery) -> Result<Query, CommandError> {
    Ok(Query::List(query))
}

fn error(text: &str) -> CommandError {
    CommandError::InvalidArgument(text.to_owned())
}

/// LEFT or RIGHT, case-insensitively.
fn end(arg: &[u8]) -> Result<End, CommandError> {
    if is(arg, "LEFT") {
        Ok(End::Left)
    } else if is(arg, "RIGHT") {
        Ok(End::Right)
    } else {
        Err(CommandError::Syntax)
    }
}

/// An integer in `min..=i64::MAX`; `message` is the whole error for
/// anything else, as Redis's range-checked arguments answer.
fn at_least(arg: &[u8], min: i64, message: &str) -> Result<i64, CommandError> {
    parse_i64(arg)
        .filter(|v| *v >= min)
        .ok_or_else(|| error(message))
}

/// A blocking timeout in seconds (a float, as Redis reads it, hexadecimal
/// integers included) as milliseconds rounded up; 0 waits without a limit.
/// Redis's limits apply; a wait longer than [`MAX_MILLIS`] is cut to it,
/// which no client can tell from the wait it asked for.
fn timeout(arg: &[u8]) -> Result<u64, CommandError> {
    let seconds = parse_f64(arg)
        .or_else(|| parse_hex(arg))
        .ok_or_else(|| error("timeout is not a float or out of range"))?;
    let ms = (seconds * 1000.0).ceil();
    if ms > i64::MAX as f64 {
        return Err(error("timeout is out of range"));
    }
    if ms < 0.0 {
        return Err(error("timeout is negative"));
    }
    let ms = ms as i64;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if ms > i64::MAX - now {
        return Err(error("timeout is out of range"));
    }
    Ok((ms as u64).min(MAX_MILLIS))
}

/// `[+-]0x<hex digits>`, which Redis's strtold accepts as a number.
fn parse_hex(arg: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(arg).ok()?;
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = rest
        .strip_prefix("0x")
        .or_else(|| rest.strip_prefix("0X"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = digits.bytes().fold(0.0, |acc, b| {
        acc * 16.0 + f64::from((b as char).to_digit(16).unwrap_or(0))
    });
    Some(if negative { -value } else { value })
}

fn push(argv: &[Bytes], end: End, only_if_exists: bool) -> Result<Op, CommandError> {
    write(ListOp::Push {
        key: argv[1].clone(),
        elements: argv[2..].to_vec(),
        end,
        only_if_exists,
    })
}

fn parse_lpush(argv: &[Bytes]) -> Result<Op, CommandError> {
    push(argv, End::Left, false)
}

fn parse_rpush(argv: &[Bytes]) -> Result<Op, CommandError> {
    push(argv, End::Right, false)
}

fn parse_lpushx(argv: &[Bytes]) -> Result<Op, CommandError> {
    push(argv, End::Left, true)
}

fn parse_rpushx(argv: &[Bytes]) -> Result<Op, CommandError> {
    push(argv, End::Right, true)
}

fn pop(argv: &[Bytes], end: End, name: &str) -> Result<Op, CommandError> {
    let count = match argv {
        [_, _] => None,
        [_, _, count] => {
            let n = at_least(count, 0, "value is out of range, must be positive")?;
            Some(n as u64)
        }
        _ => return Err(CommandError::WrongArity(name.to_owned())),
    };
    write(ListOp::Pop {
        key: argv[1].clone(),
        end,
        count,
    })
}

fn parse_lpop(argv: &[Bytes]) -> Result<Op, CommandError> {
    pop(argv, End::Left, "lpop")
}

fn parse_rpop(argv: &[Bytes]) -> Result<Op, CommandError> {
    pop(argv, End::Right, "rpop")
}

fn parse_llen(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(ListQuery::Len {
        key: argv[1].clone(),
    })
}

/// LRANGE and LTRIM: `key start stop`, indexes parsed first.
fn span(argv: &[Bytes]) -> Result<(Bytes, i64, i64), CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let start = args.i64()?;
    let stop = args.i64()?;
    Ok((key, start, stop))
}

fn parse_lrange(argv: &[Bytes]) -> Result<Query, CommandError> {
    let (key, start, stop) = span(argv)?;
    read(ListQuery::Range { key, start, stop })
}

fn parse_ltrim(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (key, start, stop) = span(argv)?;
    write(ListOp::Trim { key, start, stop })
}

fn parse_lindex(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(ListQuery::Index {
        key: argv[1].clone(),
        index: parse_i64(&argv[2]),
    })
}

fn parse_lset(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(ListOp::Set {
        key: argv[1].clone(),
        index: parse_i64(&argv[2]),
        element: argv[3].clone(),
    })
}

fn parse_linsert(argv: &[Bytes]) -> Result<Op, CommandError> {
    let after = if is(&argv[2], "AFTER") {
        true
    } else if is(&argv[2], "BEFORE") {
        false
    } else {
        return Err(CommandError::Syntax);
    };
    write(ListOp::Insert {
        key: argv[1].clone(),
        after,
        pivot: argv[3].clone(),
        element: argv[4].clone(),
    })
}

fn parse_lrem(argv: &[Bytes]) -> Result<Op, CommandError> {
    let count = parse_i64(&argv[2]).ok_or(CommandError::NotInteger)?;
    write(ListOp::Remove {
        key: argv[1].clone(),
        count,
        element: argv[3].clone(),
    })
}

/// Options in any order, each at most as often as Redis's loop allows
/// (a repeated option wins with its last value), checked as they come.
fn parse_lpos(argv: &[Bytes]) -> Result<Query, CommandError> {
    let mut rank = 1;
    let mut count = None;
    let mut max_len = 0;
    let mut options = argv[3..].iter();
    while let Some(option) = options.next() {
        let Some(value) = options.next() else {
            return Err(CommandError::Syntax);
        };
        if is(option, "RANK") {
            rank = parse_i64(value).ok_or(CommandError::NotInteger)?;
            if rank == i64::MIN {
                return Err(error(&format!(
                    "value is out of range, value must between {} and {}",
                    -i64::MAX,
                    i64::MAX
                )));
            }
            if rank == 0 {
                return Err(error(
                    "RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if is(option, "COUNT") {
            count = Some(at_least(value, 0, "COUNT can't be negative")? as u64);
        } else if is(option, "MAXLEN") {
            max_len = at_least(value, 0, "MAXLEN can't be negative")? as u64;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    read(ListQuery::Pos {
        key: argv[1].clone(),
        element: argv[2].clone(),
        rank,
        count,
        max_len,
    })
}

fn parse_lmove(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(ListOp::Move {
        source: argv[1].clone(),
        destination: argv[2].clone(),
        from: end(&argv[3])?,
        to: end(&argv[4])?,
    })
}

fn parse_rpoplpush(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(ListOp::Move {
        source: argv[1].clone(),
        destination: argv[2].clone(),
        from: End::Right,
        to: End::Left,
    })
}

/// LMPOP's and BLMPOP's `numkeys key [key ...] <LEFT | RIGHT> [COUNT count]`
/// starting at `argv[at]`; ZMPOP's and BZMPOP's too, with `side` reading
/// MIN | MAX instead.
pub(super) fn multi_pop_args<S>(
    argv: &[Bytes],
    at: usize,
    side: fn(&[u8]) -> Result<S, CommandError>,
) -> Result<(Vec<Bytes>, S, u64), CommandError> {
    let numkeys = at_least(&argv[at], 1, "numkeys should be greater than 0")?;
    let where_at = usize::try_from(numkeys)
        .ok()
        .and_then(|n| n.checked_add(at + 1))
        .filter(|w| *w < argv.len())
        .ok_or(CommandError::Syntax)?;
    let end = side(&argv[where_at])?;
    let mut count = None;
    let mut options = argv[where_at + 1..].iter();
    while let Some(option) = options.next() {
        match options.next() {
            Some(value) if count.is_none() && is(option, "COUNT") => {
                count = Some(at_least(value, 1, "count should be greater than 0")? as u64);
            }
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok((argv[at + 1..where_at].to_vec(), end, count.unwrap_or(1)))
}

fn parse_lmpop(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (keys, end, count) = multi_pop_args(argv, 1, end)?;
    write(ListOp::MultiPop { keys, end, count })
}

fn blocking_pop(argv: &[Bytes], end: End) -> Result<Op, CommandError> {
    let (timeout_arg, keys) = argv[1..].split_last().ok_or(CommandError::Syntax)?;
    write(ListOp::BlockingPop {
        keys: keys.to_vec(),
        end,
        count: None,
        timeout_ms: timeout(timeout_arg)?,
        ticket: Ticket::default(),
    })
}

fn parse_blpop(argv: &[Bytes]) -> Result<Op, CommandError> {
    blocking_pop(argv, End::Left)
}

fn parse_brpop(argv: &[Bytes]) -> Result<Op, CommandError> {
    blocking_pop(argv, End::Right)
}

/// The positions come before the timeout, as Redis checks them.
fn parse_blmove(argv: &[Bytes]) -> Result<Op, CommandError> {
    let from = end(&argv[3])?;
    let to = end(&argv[4])?;
    write(ListOp::BlockingMove {
        source: argv[1].clone(),
        destination: argv[2].clone(),
        from,
        to,
        timeout_ms: timeout(&argv[5])?,
        ticket: Ticket::default(),
    })
}

fn parse_brpoplpush(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(ListOp::BlockingMove {
        source: argv[1].clone(),
        destination: argv[2].clone(),
        from: End::Right,
        to: End::Left,
        timeout_ms: timeout(&argv[3])?,
        ticket: Ticket::default(),
    })
}

/// Everything after the timeout is checked before the timeout itself.
fn parse_blmpop(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (keys, end, count) = multi_pop_args(argv, 2, end)?;
    write(ListOp::BlockingPop {
        keys,
        end,
        count: Some(count),
        timeout_ms: timeout(&argv[1])?,
        ticket: Ticket::default(),
    })
}
