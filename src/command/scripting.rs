//! Lua scripting commands: EVAL, EVALSHA, their read-only forms, SCRIPT.
//!
//! A script runs at apply time on every replica (see `state::scripts`), so
//! every one of these that runs or caches a script parses to an op for the
//! log: EVALSHA carries only the sha, EVAL its body. EVALSHA_RO and
//! FCALL_RO cannot write and are reads, served like GET. The connection
//! then tries EVALSHA, FCALL, and EVAL or EVAL_RO of a cached body as
//! reads first (`ScriptQuery::EvalShaFirst`), and the node sends to the
//! log only a run that reaches a write, or an EVAL whose body every
//! replica must cache.

use bytes::Bytes;

use super::{is, standard_reply, CommandError, CommandSpec, Exec, Flag, KeyPositions, ReplyFn};
use crate::state::rdb;
use crate::state::scripts::{RestorePolicy, Run, ScriptOp, ScriptQuery};
use crate::state::{Op, Query};

const EVAL: &[Flag] = &[Flag::NoScript, Flag::MayReplicate, Flag::Stale];
const EVAL_RO: &[Flag] = &[
    Flag::NoScript,
    Flag::ReadOnly,
    Flag::MayReplicate,
    Flag::Stale,
];
const KEYS: KeyPositions = KeyPositions::NONE.with_numkeys(2);
const REPLY: ReplyFn = standard_reply;

macro_rules! spec {
    ($($row:tt)*) => { command_spec!(Scripting, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("eval", -3, EVAL, KEYS, "2.6.0", "script numkeys [key [key ...]] [arg [arg ...]]",
        "Runs a Lua script atomically on every replica, at its place in the log. The script is cached as SCRIPT LOAD would.",
        Exec::Write(parse_eval, REPLY)),
    spec!("evalsha", -3, EVAL, KEYS, "2.6.0", "sha1 numkeys [key [key ...]] [arg [arg ...]]",
        "Runs a cached Lua script by its SHA1 digest; the cache is replicated, so any node knows a script loaded through another.",
        Exec::Write(parse_evalsha, REPLY)),
    spec!("eval_ro", -3, EVAL_RO, KEYS, "7.0.0", "script numkeys [key [key ...]] [arg [arg ...]]",
        "Runs a read-only Lua script: write commands inside it are refused. Still one log entry.",
        Exec::Write(parse_eval_ro, REPLY)),
    spec!("evalsha_ro", -3, EVAL_RO, KEYS, "7.0.0", "sha1 numkeys [key [key ...]] [arg [arg ...]]",
        "Runs a cached read-only Lua script by its SHA1 digest, as a read (linearizable by default, on the node it reaches, not through the log); write commands inside it are refused.",
        Exec::Read(parse_evalsha_ro, REPLY)),
    spec!("script", -2, &[], KeyPositions::NONE, "2.6.0", "subcommand [argument ...]",
        "A container for Lua script cache commands.", Exec::Local, SCRIPT_SUBCOMMANDS),
    spec!("fcall", -3, EVAL, KEYS, "7.0.0", "function numkeys [key [key ...]] [arg [arg ...]]",
        "Runs a function of a loaded library, atomically on every replica, at its place in the log.",
        Exec::Write(parse_fcall, REPLY)),
    spec!("fcall_ro", -3, EVAL_RO, KEYS, "7.0.0", "function numkeys [key [key ...]] [arg [arg ...]]",
        "Runs a function declared no-writes, as a read (not through the log); write commands inside it are refused.",
        Exec::Read(parse_fcall_ro, REPLY)),
    spec!("function", -2, &[], KeyPositions::NONE, "7.0.0", "subcommand [argument ...]",
        "A container for function library commands (LOAD, DELETE, FLUSH, LIST, DUMP, RESTORE...).", Exec::Local,
        FUNCTION_SUBCOMMANDS),
];

const FUNCTION_SUBCOMMANDS: &[CommandSpec] = &[
    spec!("function|load", -3, &[Flag::NoScript, Flag::Write, Flag::DenyOom], KeyPositions::NONE,
        "7.0.0", "[REPLACE] function-code",
        "Loads a library (`#!lua name=<lib>`) whose code registers functions with redis.register_function; replicated like the script cache.",
        Exec::Write(parse_function_load, REPLY)),
    spec!("function|delete", 3, &[Flag::NoScript, Flag::Write], KeyPositions::NONE, "7.0.0",
        "library-name", "Deletes a library and its functions.",
        Exec::Write(parse_function_delete, REPLY)),
    spec!("function|flush", -2, &[Flag::NoScript, Flag::Write], KeyPositions::NONE, "7.0.0",
        "[ASYNC | SYNC]", "Deletes all libraries.", Exec::Write(parse_function_flush, REPLY)),
    spec!("function|list", -2, &[Flag::NoScript], KeyPositions::NONE, "7.0.0",
        "[LIBRARYNAME library-name-pattern] [WITHCODE]",
        "Returns information about all libraries: their functions' names, descriptions and flags, and with WITHCODE their code.",
        Exec::Read(parse_function_list, REPLY)),
    spec!("function|stats", 2, &[Flag::NoScript, Flag::AllowBusy], KeyPositions::NONE, "7.0.0", "",
        "Returns how many libraries and functions are loaded. No function is ever seen running: every replica runs one within a single entry's apply.",
        Exec::Read(parse_function_stats, REPLY)),
    spec!("function|dump", 2, &[Flag::NoScript], KeyPositions::NONE, "7.0.0", "",
        "Returns every library's code in Redis's serialized form (RDB version 10), for FUNCTION RESTORE here or in Redis 7.0 and later.",
        Exec::Read(parse_function_dump, REPLY)),
    spec!("function|restore", -3, &[Flag::NoScript, Flag::Write, Flag::DenyOom], KeyPositions::NONE,
        "7.0.0", "serialized-value [FLUSH | APPEND | REPLACE]",
        "Loads the libraries of a FUNCTION DUMP payload (concord's or Redis's), all or none: APPEND (the default) refuses a library that exists, REPLACE replaces it, FLUSH deletes all libraries first.",
        Exec::Write(parse_function_restore, REPLY)),
    spec!("function|kill", 2, &[Flag::NoScript, Flag::AllowBusy], KeyPositions::NONE, "7.0.0", "",
        "Answers NOTBUSY: no function runs long enough to be killed (see SCRIPT KILL).",
        Exec::Read(parse_function_kill, REPLY)),
];

const SCRIPT_SUBCOMMANDS: &[CommandSpec] = &[
    spec!("script|load", 3, &[Flag::NoScript, Flag::MayReplicate, Flag::Stale], KeyPositions::NONE,
        "2.6.0", "script",
        "Compiles a script and adds it to the replicated cache; answers its SHA1 digest.",
        Exec::Write(parse_load, REPLY)),
    spec!("script|exists", -3, &[Flag::NoScript, Flag::Stale], KeyPositions::NONE, "2.6.0",
        "sha1 [sha1 ...]", "Answers 1 or 0 for each SHA1: whether the cache holds it.",
        Exec::Read(parse_exists, REPLY)),
    spec!("script|flush", -2, &[Flag::NoScript, Flag::MayReplicate], KeyPositions::NONE, "2.6.0",
        "[ASYNC | SYNC]", "Empties the replicated script cache on every node.",
        Exec::Write(parse_flush, REPLY)),
    spec!("script|kill", 2, &[Flag::NoScript, Flag::AllowBusy], KeyPositions::NONE, "2.6.0", "",
        "Answers NOTBUSY: a script runs within one apply step and is ended by its instruction limit, never by a client.",
        Exec::Read(parse_kill, REPLY)),
];

/// The keys and arguments after `numkeys` (argv[2]), with Redis's checks.
fn run_args(argv: &[Bytes], read_only: bool) -> Result<Run, CommandError> {
    let numkeys: i64 = std::str::from_utf8(&argv[2])
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or(CommandError::NotInteger)?;
    if numkeys < 0 {
        return Err(CommandError::InvalidArgument(
            "Number of keys can't be negative".into(),
        ));
    }
    let rest = &argv[3..];
    if numkeys as u64 > rest.len() as u64 {
        return Err(CommandError::InvalidArgument(
            "Number of keys can't be greater than number of args".into(),
        ));
    }
    let (keys, args) = rest.split_at(numkeys as usize);
    Ok(Run {
        keys: keys.to_vec(),
        args: args.to_vec(),
        read_only,
        seed: rand::random(),
    })
}

fn eval(argv: &[Bytes], read_only: bool) -> Result<Op, CommandError> {
    Ok(Op::Script(ScriptOp::Eval {
        body: argv[1].clone(),
        run: run_args(argv, read_only)?,
    }))
}

/// The sha of EVALSHA and EVALSHA_RO, which Redis matches in any case.
fn sha_arg(argv: &[Bytes]) -> String {
    String::from_utf8_lossy(&argv[1]).to_ascii_lowercase()
}

fn parse_eval(argv: &[Bytes]) -> Result<Op, CommandError> {
    eval(argv, false)
}

fn parse_eval_ro(argv: &[Bytes]) -> Result<Op, CommandError> {
    eval(argv, true)
}

fn parse_evalsha(argv: &[Bytes]) -> Result<Op, CommandError> {
    Ok(Op::Script(ScriptOp::EvalSha {
        sha: sha_arg(argv),
        run: run_args(argv, false)?,
    }))
}

fn parse_evalsha_ro(argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Script(ScriptQuery::EvalSha {
        sha: sha_arg(argv),
        run: run_args(argv, true)?,
    }))
}

fn parse_load(argv: &[Bytes]) -> Result<Op, CommandError> {
    Ok(Op::Script(ScriptOp::Load(argv[2].clone())))
}

fn parse_exists(argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Script(ScriptQuery::Exists(argv[2..].to_vec())))
}

/// SCRIPT FLUSH and FUNCTION FLUSH take an optional ASYNC or SYNC (both
/// flush at once: the flush is one log entry either way).
fn flush_mode(argv: &[Bytes], error: &str) -> Result<(), CommandError> {
    match argv.get(2) {
        None => Ok(()),
        Some(mode) if argv.len() == 3 && (is(mode, "async") || is(mode, "sync")) => Ok(()),
        Some(_) => Err(CommandError::InvalidArgument(error.into())),
    }
}

fn parse_flush(argv: &[Bytes]) -> Result<Op, CommandError> {
    flush_mode(argv, "SCRIPT FLUSH only support SYNC|ASYNC option")?;
    Ok(Op::Script(ScriptOp::Flush))
}

fn parse_kill(_: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Script(ScriptQuery::Kill))
}

fn parse_fcall(argv: &[Bytes]) -> Result<Op, CommandError> {
    Ok(Op::Script(ScriptOp::FCall {
        function: argv[1].clone(),
        run: fcall_args(argv, false)?,
    }))
}

fn parse_fcall_ro(argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Script(ScriptQuery::FCall {
        function: argv[1].clone(),
        run: fcall_args(argv, true)?,
    }))
}

/// As EVAL's, but FCALL words a numkeys that is not a number its own way.
fn fcall_args(argv: &[Bytes], read_only: bool) -> Result<Run, CommandError> {
    run_args(argv, read_only).map_err(|e| match e {
        CommandError::NotInteger => {
            CommandError::InvalidArgument("Bad number of keys provided".into())
        }
        e => e,
    })
}

fn parse_function_load(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (code, options) = argv[2..]
        .split_last()
        .ok_or_else(|| CommandError::WrongArity("function|load".into()))?;
    let mut replace = false;
    for option in options {
        if !is(option, "replace") {
            return Err(CommandError::InvalidArgument(format!(
                "Unknown option given: {}",
                String::from_utf8_lossy(option)
            )));
        }
        replace = true;
    }
    Ok(Op::Script(ScriptOp::LoadLibrary {
        code: code.clone(),
        replace,
    }))
}

fn parse_function_delete(argv: &[Bytes]) -> Result<Op, CommandError> {
    Ok(Op::Script(ScriptOp::DeleteLibrary(argv[2].clone())))
}

fn parse_function_list(argv: &[Bytes]) -> Result<Query, CommandError> {
    let (mut pattern, mut with_code) = (None, false);
    let mut args = argv[2..].iter();
    while let Some(arg) = args.next() {
        if !with_code && is(arg, "WITHCODE") {
            with_code = true;
        } else if pattern.is_none() && is(arg, "LIBRARYNAME") {
            let Some(p) = args.next() else {
                return Err(CommandError::InvalidArgument(
                    "library name argument was not given".into(),
                ));
            };
            pattern = Some(p.clone());
        } else {
            return Err(CommandError::InvalidArgument(format!(
                "Unknown argument {}",
                String::from_utf8_lossy(arg)
            )));
        }
    }
    Ok(Query::Script(ScriptQuery::ListLibraries {
        pattern,
        with_code,
    }))
}

fn parse_function_stats(_argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Script(ScriptQuery::FunctionStats))
}

fn parse_function_kill(_argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Script(ScriptQuery::Kill))
}

fn parse_function_flush(argv: &[Bytes]) -> Result<Op, CommandError> {
    if argv.len() > 3 {
        return Err(subcommand_syntax(argv));
    }
    flush_mode(argv, "FUNCTION FLUSH only supports SYNC|ASYNC option")?;
    Ok(Op::Script(ScriptOp::FlushLibraries))
}

/// Redis's `addReplySubcommandSyntaxError`: too many arguments for a
/// FUNCTION subcommand, named as the client spelled it.
fn subcommand_syntax(argv: &[Bytes]) -> CommandError {
    CommandError::InvalidArgument(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
        String::from_utf8_lossy(&argv[1])
    ))
}

fn parse_function_dump(_argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Script(ScriptQuery::DumpLibraries))
}

/// FUNCTION RESTORE payload [FLUSH | APPEND | REPLACE], checked in Redis's
/// order: the argument count, the policy, then the payload (footer, then
/// each entry). Loading the codes is the op's, at apply time.
fn parse_function_restore(argv: &[Bytes]) -> Result<Op, CommandError> {
    if argv.len() > 4 {
        return Err(subcommand_syntax(argv));
    }
    let policy = match argv.get(3) {
        None => RestorePolicy::Append,
        Some(p) if is(p, "append") => RestorePolicy::Append,
        Some(p) if is(p, "replace") => RestorePolicy::Replace,
        Some(p) if is(p, "flush") => RestorePolicy::Flush,
        Some(_) => {
            return Err(CommandError::InvalidArgument(
                "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."
                    .into(),
            ))
        }
    };
    let codes = rdb::decode_functions(&argv[2])?;
    Ok(Op::Script(ScriptOp::RestoreLibraries { codes, policy }))
}
