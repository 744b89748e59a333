//! Streams: parsing and replies. Semantics, consumer groups and the
//! serving of blocked readers live in `state::streams`.
//!
//! Arguments are checked in Redis 7.0's order. Where Redis looks the key
//! up before it checks the rest (XDEL's and XACK's IDs, XCLAIM's options,
//! XINFO STREAM's options, XREAD's IDs, which it checks key by key with
//! the keys' types), the arguments travel raw and the state checks them
//! in that order, so a command with two mistakes names the one Redis
//! names.
//!
//! XREAD is a read; with BLOCK it is a write, so that it takes its place in
//! line through the log and `$` means the last ID when it is applied.
//! XREADGROUP always writes (it moves the group's cursor and pending list).

use bytes::Bytes;

use super::args::MAX_MILLIS;
use super::{is, standard_reply, CommandError, CommandSpec, Exec, Flag, KeyPositions, Parsed};
use crate::resp::Reply;
use crate::state::streams::{
    parse_bound, parse_id, AddId, PendingRange, StreamId, StreamOp, StreamQuery, Threshold, Trim,
    APPROX_TRIM_LIMIT,
};
use crate::state::strings::parse_i64;
use crate::state::{Op, OpResult, Outcome, Query, Ticket};

const WDF: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const WF: &[Flag] = &[Flag::Write, Flag::Fast];
const WD: &[Flag] = &[Flag::Write, Flag::DenyOom];
const W: &[Flag] = &[Flag::Write];
const R: &[Flag] = &[Flag::ReadOnly];
const RF: &[Flag] = &[Flag::ReadOnly, Flag::Fast];
const RB: &[Flag] = &[Flag::ReadOnly, Flag::Blocking];
const WB: &[Flag] = &[Flag::Write, Flag::Blocking];
const HELP: &[Flag] = &[Flag::Loading, Flag::Stale];

/// XREAD's and XREADGROUP's keys follow STREAMS: COMMAND reports them as
/// movable, which these positions cannot describe.
const MOVABLE: KeyPositions = KeyPositions::NONE;

macro_rules! spec {
    ($name:literal, $arity:expr, $flags:expr, $keys:expr, $($rest:tt)*) => {
        command_spec!(Stream, $name, $arity, $flags, $keys, $($rest)*)
    };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("xadd", -5, WDF, KeyPositions::FIRST, "5.0.0",
        "key [NOMKSTREAM] [<MAXLEN | MINID> [= | ~] threshold [LIMIT count]] <* | id> field value [field value ...]",
        "Appends a new entry to a stream, creating the key if needed. `*` takes the log entry's time as the ID's milliseconds.",
        Exec::Write(parse_xadd, standard_reply)),
    spec!("xlen", 2, RF, KeyPositions::FIRST, "5.0.0", "key",
        "Returns the number of entries in a stream.",
        Exec::Read(parse_xlen, standard_reply)),
    spec!("xrange", -4, R, KeyPositions::FIRST, "5.0.0", "key start end [COUNT count]",
        "Returns the entries of a stream within a range of IDs.",
        Exec::Read(parse_xrange, standard_reply)),
    spec!("xrevrange", -4, R, KeyPositions::FIRST, "5.0.0", "key end start [COUNT count]",
        "Returns the entries of a stream within a range of IDs, in reverse order.",
        Exec::Read(parse_xrevrange, standard_reply)),
    spec!("xdel", -3, WF, KeyPositions::FIRST, "5.0.0", "key id [id ...]",
        "Returns the number of entries deleted from a stream.",
        Exec::Write(parse_xdel, standard_reply)),
    spec!("xtrim", -4, W, KeyPositions::FIRST, "5.0.0",
        "key <MAXLEN | MINID> [= | ~] threshold [LIMIT count]",
        "Deletes entries from the start of a stream. `~` drops whole nodes of 100 entries, as Redis does.",
        Exec::Write(parse_xtrim, standard_reply)),
    spec!("xread", -4, RB, MOVABLE, "5.0.0",
        "[COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]",
        "Returns entries from one or more streams with IDs greater than the ones given. With BLOCK, waits (on any node) for entries to arrive; `$` is the stream's last ID when the command reaches the log.",
        Exec::Either(parse_xread, xread_reply)),
    spec!("xreadgroup", -7, WB, MOVABLE, "5.0.0",
        "GROUP group consumer [COUNT count] [BLOCK milliseconds] [NOACK] STREAMS key [key ...] id [id ...]",
        "Returns new or historical entries from streams for a consumer in a group, moving the group's cursor and pending list. With BLOCK, waits on any node.",
        Exec::Write(parse_xreadgroup, xread_reply)),
    spec!("xgroup", -2, &[], KeyPositions::NONE, "5.0.0", "subcommand [argument ...]",
        "A container for consumer group commands.", Exec::Local, XGROUP_SUBCOMMANDS),
    spec!("xack", -4, WF, KeyPositions::FIRST, "5.0.0", "key group id [id ...]",
        "Returns the number of entries acknowledged (removed from the group's pending list).",
        Exec::Write(parse_xack, standard_reply)),
    spec!("xpending", -3, R, KeyPositions::FIRST, "5.0.0",
        "key group [[IDLE min-idle-time] start end count [consumer]]",
        "Returns the pending entries of a consumer group: a summary, or the entries in a range with their idle times and delivery counts.",
        Exec::Read(parse_xpending, standard_reply)),
    spec!("xclaim", -6, WF, KeyPositions::FIRST, "5.0.0",
        "key group consumer min-idle-time id [id ...] [IDLE ms] [TIME unix-time-milliseconds] [RETRYCOUNT count] [FORCE] [JUSTID] [LASTID lastid]",
        "Changes, or acquires, ownership of pending entries in a consumer group, as if they were delivered to the consumer.",
        Exec::Write(parse_xclaim, standard_reply)),
    spec!("xautoclaim", -6, WF, KeyPositions::FIRST, "6.2.0",
        "key group consumer min-idle-time start [COUNT count] [JUSTID]",
        "Changes the ownership of pending entries idle for long enough, scanning the pending list from a cursor. Returns the next cursor, the claimed entries and the IDs of deleted entries dropped from the list.",
        Exec::Write(parse_xautoclaim, standard_reply)),
    spec!("xinfo", -2, &[], KeyPositions::NONE, "5.0.0", "subcommand [argument ...]",
        "A container for stream introspection commands.", Exec::Local, XINFO_SUBCOMMANDS),
    spec!("xsetid", -3, WDF, KeyPositions::FIRST, "5.0.0",
        "key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]",
        "Sets the last generated ID of a stream, and optionally its entries-added counter and largest deleted ID.",
        Exec::Write(parse_xsetid, standard_reply)),
];

const XGROUP_SUBCOMMANDS: &[CommandSpec] = &[
    spec!(
        "xgroup|create",
        -5,
        WD,
        KeyPositions::range(2, 2, 1),
        "5.0.0",
        "key group <id | $> [MKSTREAM] [ENTRIESREAD entries-read]",
        "Creates a consumer group.",
        Exec::Write(parse_group_create, standard_reply)
    ),
    spec!(
        "xgroup|setid",
        -5,
        W,
        KeyPositions::range(2, 2, 1),
        "5.0.0",
        "key group <id | $> [ENTRIESREAD entries-read]",
        "Sets the last delivered ID of a consumer group.",
        Exec::Write(parse_group_setid, standard_reply)
    ),
    spec!(
        "xgroup|destroy",
        4,
        W,
        KeyPositions::range(2, 2, 1),
        "5.0.0",
        "key group",
        "Destroys a consumer group; its blocked readers hear NOGROUP.",
        Exec::Write(parse_group_destroy, standard_reply)
    ),
    spec!(
        "xgroup|createconsumer",
        5,
        WD,
        KeyPositions::range(2, 2, 1),
        "6.2.0",
        "key group consumer",
        "Creates a consumer in a consumer group.",
        Exec::Write(parse_create_consumer, standard_reply)
    ),
    spec!(
        "xgroup|delconsumer",
        5,
        W,
        KeyPositions::range(2, 2, 1),
        "5.0.0",
        "key group consumer",
        "Deletes a consumer from a consumer group; returns how many entries it had pending.",
        Exec::Write(parse_del_consumer, standard_reply)
    ),
    spec!(
        "xgroup|help",
        2,
        HELP,
        KeyPositions::NONE,
        "5.0.0",
        "",
        "Returns helpful text about the different subcommands.",
        Exec::Read(parse_group_help, standard_reply)
    ),
];

const XINFO_SUBCOMMANDS: &[CommandSpec] = &[
    spec!("xinfo|consumers", 4, R, KeyPositions::range(2, 2, 1), "5.0.0", "key group",
        "Returns the consumers of a consumer group.",
        Exec::Read(parse_info_consumers, standard_reply)),
    spec!("xinfo|groups", 3, R, KeyPositions::range(2, 2, 1), "5.0.0", "key",
        "Returns the consumer groups of a stream.",
        Exec::Read(parse_info_groups, standard_reply)),
    spec!("xinfo|stream", -3, R, KeyPositions::range(2, 2, 1), "5.0.0",
        "key [FULL [COUNT count]]",
        "Returns information about a stream (with FULL: its entries, groups, pending lists and consumers).",
        Exec::Read(parse_info_stream, standard_reply)),
    spec!("xinfo|help", 2, HELP, KeyPositions::NONE, "5.0.0", "",
        "Returns helpful text about the different subcommands.",
        Exec::Read(parse_info_help, standard_reply)),
];

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

fn write(op: StreamOp) -> Result<Op, CommandError> {
    Ok(Op::Stream(op))
}

fn read(query: StreamQuery) -> Result<Query, CommandError> {
    Ok(Query::Stream(query))
}

fn error(text: &str) -> CommandError {
    CommandError::InvalidArgument(text.to_owned())
}

fn stream_error(err: crate::state::streams::StreamError) -> CommandError {
    // The state's texts carry their code; CommandError adds `ERR `.
    let text = err.to_string();
    CommandError::InvalidArgument(text.strip_prefix("ERR ").unwrap_or(&text).to_owned())
}

fn id(arg: &[u8]) -> Result<StreamId, CommandError> {
    parse_id(arg).map_err(stream_error)
}

fn bound(arg: &[u8], end: bool) -> Result<StreamId, CommandError> {
    parse_bound(arg, end).map_err(stream_error)
}

fn integer(arg: &[u8]) -> Result<i64, CommandError> {
    parse_i64(arg).ok_or(CommandError::NotInteger)
}

/// Redis's `unknown subcommand or wrong number of arguments` for a
/// container command's subcommand, as the client spelled it.
fn subcommand_syntax(argv: &[Bytes]) -> CommandError {
    let command = String::from_utf8_lossy(&argv[0]).to_ascii_uppercase();
    let sub = String::from_utf8_lossy(&argv[1]);
    error(&format!(
        "unknown subcommand or wrong number of arguments for '{sub}'. Try {command} HELP."
    ))
}

/// XADD's and XTRIM's options from `argv[2]` on (Redis's
/// `streamParseAddOrTrimArgsOrReply`). Returns the trim, NOMKSTREAM and,
/// for XADD, the position of the ID (`argv.len()` when there is none).
fn add_or_trim_args(
    argv: &[Bytes],
    xadd: bool,
) -> Result<(Option<Trim>, bool, usize), CommandError> {
    let mut threshold = None;
    let mut approx = false;
    let mut limit: Option<i64> = None;
    let mut no_mkstream = false;
    let mut i = 2;
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        let opt = &argv[i];
        if xadd && opt.as_ref() == b"*" {
            break;
        } else if (is(opt, "MAXLEN") || is(opt, "MINID")) && more > 0 {
            if threshold.is_some() {
                return Err(error(
                    "syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            approx = false;
            let next = &argv[i + 1];
            if more >= 2 && next.as_ref() == b"~" {
                approx = true;
                i += 1;
            } else if more >= 2 && next.as_ref() == b"=" {
                i += 1;
            }
            let value = &argv[i + 1];
            threshold = Some(if is(opt, "MAXLEN") {
                let max = integer(value)?;
                if max < 0 {
                    return Err(error("The MAXLEN argument must be >= 0."));
                }
                Threshold::MaxLen(max as u64)
            } else {
                Threshold::MinId(id(value)?)
            });
            i += 1;
        } else if is(opt, "LIMIT") && more > 0 {
            let value = integer(&argv[i + 1])?;
            if value < 0 {
                return Err(error("The LIMIT argument must be >= 0."));
            }
            limit = Some(value);
            i += 1;
        } else if xadd && is(opt, "NOMKSTREAM") {
            no_mkstream = true;
        } else if xadd {
            break;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    if limit.is_some_and(|l| l > 0) && threshold.is_none() {
        return Err(error(
            "syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && threshold.is_none() {
        return Err(error(
            "syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    let limit = match limit {
        Some(_) if !approx => {
            return Err(error(
                "syntax error, LIMIT cannot be used without the special ~ option",
            ))
        }
        Some(limit) => limit as u64,
        None if approx => APPROX_TRIM_LIMIT,
        None => 0,
    };
    let trim = threshold.map(|threshold| Trim {
        threshold,
        approx,
        limit,
    });
    Ok((trim, no_mkstream, i))
}

fn parse_xadd(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (trim, no_mkstream, at) = add_or_trim_args(argv, true)?;
    let fields = argv.get(at + 1..).unwrap_or_default();
    if fields.len() < 2 || !fields.len().is_multiple_of(2) {
        return Err(CommandError::WrongArity("xadd".to_owned()));
    }
    let id = AddId::parse(&argv[at]).map_err(stream_error)?;
    write(StreamOp::Add {
        key: argv[1].clone(),
        no_mkstream,
        trim,
        id,
        fields: fields.to_vec(),
    })
}

fn parse_xtrim(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (trim, _, _) = add_or_trim_args(argv, false)?;
    let trim = trim.ok_or(CommandError::Syntax)?;
    write(StreamOp::Trim {
        key: argv[1].clone(),
        trim,
    })
}

fn parse_xlen(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(StreamQuery::Len {
        key: argv[1].clone(),
    })
}

fn range(argv: &[Bytes], rev: bool) -> Result<Query, CommandError> {
    let (start, end) = if rev {
        (&argv[3], &argv[2])
    } else {
        (&argv[2], &argv[3])
    };
    let start = bound(start, false)?;
    let end = bound(end, true)?;
    let mut count = None;
    let mut j = 4;
    while j < argv.len() {
        if is(&argv[j], "COUNT") && j + 1 < argv.len() {
            count = Some(integer(&argv[j + 1])?.max(0) as u64);
            j += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    read(StreamQuery::Range {
        key: argv[1].clone(),
        start,
        end,
        count,
        rev,
    })
}

fn parse_xrange(argv: &[Bytes]) -> Result<Query, CommandError> {
    range(argv, false)
}

fn parse_xrevrange(argv: &[Bytes]) -> Result<Query, CommandError> {
    range(argv, true)
}

fn parse_xdel(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StreamOp::Del {
        key: argv[1].clone(),
        ids: argv[2..].to_vec(),
    })
}

/// XREAD's and XREADGROUP's arguments.
struct ReadArgs {
    count: u64,
    block_ms: Option<u64>,
    group: Option<(Bytes, Bytes)>,
    noack: bool,
    keys: Vec<Bytes>,
    ids: Vec<Bytes>,
}

/// A BLOCK timeout in milliseconds; 0 waits without a limit. A wait
/// longer than [`MAX_MILLIS`] is cut to it.
fn block_timeout(arg: &[u8]) -> Result<u64, CommandError> {
    let ms = parse_i64(arg).ok_or_else(|| error("timeout is not an integer or out of range"))?;
    if ms < 0 {
        return Err(error("timeout is negative"));
    }
    Ok((ms as u64).min(MAX_MILLIS))
}

fn read_args(argv: &[Bytes], group: bool) -> Result<ReadArgs, CommandError> {
    let name = if group { "XREADGROUP" } else { "XREAD" };
    let mut args = ReadArgs {
        count: 0,
        block_ms: None,
        group: None,
        noack: false,
        keys: Vec::new(),
        ids: Vec::new(),
    };
    let mut streams_at = None;
    let mut i = 1;
    while i < argv.len() {
        let more = argv.len() - 1 - i;
        let opt = &argv[i];
        if is(opt, "BLOCK") && more > 0 {
            i += 1;
            args.block_ms = Some(block_timeout(&argv[i])?);
        } else if is(opt, "COUNT") && more > 0 {
            i += 1;
            args.count = integer(&argv[i])?.max(0) as u64;
        } else if is(opt, "STREAMS") && more > 0 {
            let rest = &argv[i + 1..];
            if !rest.len().is_multiple_of(2) {
                let symbol = if group { '>' } else { '$' };
                return Err(error(&format!(
                    "Unbalanced {name} list of streams: for each stream key an ID or '{symbol}' must be specified."
                )));
            }
            streams_at = Some(i + 1);
            break;
        } else if is(opt, "GROUP") && more >= 2 {
            if !group {
                return Err(error(
                    "The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            args.group = Some((argv[i + 1].clone(), argv[i + 2].clone()));
            i += 2;
        } else if is(opt, "NOACK") {
            if !group {
                return Err(error(
                    "The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            args.noack = true;
        } else {
            return Err(CommandError::Syntax);
        }
        i += 1;
    }
    let Some(at) = streams_at else {
        return Err(CommandError::Syntax);
    };
    if group && args.group.is_none() {
        return Err(error("Missing GROUP option for XREADGROUP"));
    }
    let rest = &argv[at..];
    let (keys, ids) = rest.split_at(rest.len() / 2);
    args.keys = keys.to_vec();
    args.ids = ids.to_vec();
    Ok(args)
}

fn parse_xread(argv: &[Bytes]) -> Result<Parsed, CommandError> {
    let args = read_args(argv, false)?;
    Ok(match args.block_ms {
        Some(block_ms) => Parsed::Write(Op::Stream(StreamOp::Read {
            keys: args.keys,
            ids: args.ids,
            count: args.count,
            block_ms,
            ticket: Ticket::default(),
        })),
        None => Parsed::Read(Query::Stream(StreamQuery::Read {
            keys: args.keys,
            ids: args.ids,
            count: args.count,
        })),
    })
}

fn parse_xreadgroup(argv: &[Bytes]) -> Result<Op, CommandError> {
    let args = read_args(argv, true)?;
    let (group, consumer) = args.group.ok_or(CommandError::Syntax)?;
    write(StreamOp::ReadGroup {
        group,
        consumer,
        keys: args.keys,
        ids: args.ids,
        count: args.count,
        noack: args.noack,
        block_ms: args.block_ms,
        ticket: Ticket::default(),
    })
}

/// XREAD answers a map of streams in RESP3 and an array of
/// `[key, entries]` pairs in RESP2.
fn xread_reply(name: &'static str, result: OpResult) -> Reply {
    match result {
        Ok(Outcome::Map(pairs)) => Reply::KeyedArrays(
            pairs
                .into_iter()
                .map(|(k, v)| (super::outcome_reply(k), super::outcome_reply(v)))
                .collect(),
        ),
        other => standard_reply(name, other),
    }
}

/// XGROUP CREATE's and SETID's options after the ID: MKSTREAM (CREATE
/// only) and ENTRIESREAD. Returns MKSTREAM and the entries read (-1:
/// unknown).
fn group_options(argv: &[Bytes], create: bool) -> Result<(bool, i64), CommandError> {
    let mut mkstream = false;
    let mut entries_read = -1;
    let mut i = 5;
    while i < argv.len() {
        if create && is(&argv[i], "MKSTREAM") {
            mkstream = true;
            i += 1;
        } else if is(&argv[i], "ENTRIESREAD") && i + 1 < argv.len() {
            entries_read = integer(&argv[i + 1])?;
            if entries_read < -1 {
                return Err(error("value for ENTRIESREAD must be positive or -1"));
            }
            i += 2;
        } else {
            return Err(subcommand_syntax(argv));
        }
    }
    Ok((mkstream, entries_read))
}

fn parse_group_create(argv: &[Bytes]) -> Result<Op, CommandError> {
    if argv.len() > 8 {
        return Err(subcommand_syntax(argv));
    }
    let (mkstream, entries_read) = group_options(argv, true)?;
    write(StreamOp::GroupCreate {
        key: argv[2].clone(),
        group: argv[3].clone(),
        id: argv[4].clone(),
        mkstream,
        entries_read,
    })
}

fn parse_group_setid(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (_, entries_read) = group_options(argv, false)?;
    write(StreamOp::GroupSetId {
        key: argv[2].clone(),
        group: argv[3].clone(),
        id: argv[4].clone(),
        entries_read,
    })
}

fn parse_group_destroy(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StreamOp::GroupDestroy {
        key: argv[2].clone(),
        group: argv[3].clone(),
    })
}

fn parse_create_consumer(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StreamOp::CreateConsumer {
        key: argv[2].clone(),
        group: argv[3].clone(),
        consumer: argv[4].clone(),
    })
}

fn parse_del_consumer(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StreamOp::DelConsumer {
        key: argv[2].clone(),
        group: argv[3].clone(),
        consumer: argv[4].clone(),
    })
}

fn help(lines: &[&str]) -> Result<Query, CommandError> {
    read(StreamQuery::Help(
        lines.iter().map(|l| (*l).to_owned()).collect(),
    ))
}

fn parse_group_help(_argv: &[Bytes]) -> Result<Query, CommandError> {
    help(XGROUP_HELP)
}

fn parse_info_help(_argv: &[Bytes]) -> Result<Query, CommandError> {
    help(XINFO_HELP)
}

fn parse_xack(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StreamOp::Ack {
        key: argv[1].clone(),
        group: argv[2].clone(),
        ids: argv[3..].to_vec(),
    })
}

fn parse_xpending(argv: &[Bytes]) -> Result<Query, CommandError> {
    let argc = argv.len();
    if argc != 3 && !(6..=9).contains(&argc) {
        return Err(CommandError::Syntax);
    }
    let mut range = None;
    if argc >= 6 {
        let mut at = 3;
        let mut min_idle = 0;
        if is(&argv[3], "IDLE") {
            min_idle = integer(&argv[4])?;
            if argc < 8 {
                return Err(CommandError::Syntax);
            }
            at += 2;
        }
        let count = integer(&argv[at + 2])?.max(0) as u64;
        let start = bound(&argv[at], false)?;
        let end = bound(&argv[at + 1], true)?;
        range = Some(PendingRange {
            min_idle,
            start,
            end,
            count,
            consumer: argv.get(at + 3).cloned(),
        });
    }
    read(StreamQuery::Pending {
        key: argv[1].clone(),
        group: argv[2].clone(),
        range,
    })
}

fn parse_xclaim(argv: &[Bytes]) -> Result<Op, CommandError> {
    write(StreamOp::Claim {
        key: argv[1].clone(),
        group: argv[2].clone(),
        consumer: argv[3].clone(),
        args: argv[4..].to_vec(),
    })
}

fn parse_xautoclaim(argv: &[Bytes]) -> Result<Op, CommandError> {
    let min_idle = parse_i64(&argv[4])
        .ok_or_else(|| error("Invalid min-idle-time argument for XAUTOCLAIM"))?
        .max(0) as u64;
    let start = bound(&argv[5], false)?;
    let mut count = 100;
    let mut justid = false;
    let mut j = 6;
    while j < argv.len() {
        if is(&argv[j], "COUNT") && j + 1 < argv.len() {
            let max = i64::MAX / 10;
            count = parse_i64(&argv[j + 1])
                .filter(|c| (1..=max).contains(c))
                .ok_or_else(|| error("COUNT must be > 0"))? as u64;
            j += 1;
        } else if is(&argv[j], "JUSTID") {
            justid = true;
        } else {
            return Err(CommandError::Syntax);
        }
        j += 1;
    }
    write(StreamOp::AutoClaim {
        key: argv[1].clone(),
        group: argv[2].clone(),
        consumer: argv[3].clone(),
        min_idle,
        start,
        count,
        justid,
    })
}

fn parse_xsetid(argv: &[Bytes]) -> Result<Op, CommandError> {
    let last = id(&argv[2])?;
    let mut entries_added = None;
    let mut max_deleted = None;
    let mut i = 3;
    while i < argv.len() {
        let more = i + 1 < argv.len();
        if is(&argv[i], "ENTRIESADDED") && more {
            let added = integer(&argv[i + 1])?;
            if added < 0 {
                return Err(error("entries_added must be positive"));
            }
            entries_added = Some(added as u64);
        } else if is(&argv[i], "MAXDELETEDID") && more {
            let max = id(&argv[i + 1])?;
            if last < max {
                return Err(error(
                    "The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
            max_deleted = Some(max);
        } else {
            return Err(CommandError::Syntax);
        }
        i += 2;
    }
    write(StreamOp::SetId {
        key: argv[1].clone(),
        id: last,
        entries_added,
        max_deleted,
    })
}

fn parse_info_consumers(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(StreamQuery::InfoConsumers {
        key: argv[2].clone(),
        group: argv[3].clone(),
    })
}

fn parse_info_groups(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(StreamQuery::InfoGroups {
        key: argv[2].clone(),
    })
}

fn parse_info_stream(argv: &[Bytes]) -> Result<Query, CommandError> {
    read(StreamQuery::InfoStream {
        key: argv[2].clone(),
        sub: argv[1].clone(),
        options: argv[3..].to_vec(),
    })
}
