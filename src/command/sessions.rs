//! Sessions: parsing and replies. Semantics live in `state::sessions`.

use bytes::Bytes;

use super::{standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::state::sessions::{SessionOp, SessionQuery};
use crate::state::{Op, Query};

const W: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const R: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

macro_rules! spec {
    ($($row:tt)*) => { command_spec!(Session, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("session.create", -2, W, KeyPositions::NONE, "concord", "ttl-ms [NAME name]",
        "Creates a session that lives ttl-ms past its last keepalive and returns its id. Locks, lock waits, registry instances and keys bound to it end with it.",
        Exec::Write(parse_create, standard_reply)),
    spec!("session.keepalive", 2, W, KeyPositions::NONE, "concord", "session-id",
        "Renews the session for its TTL and returns the TTL; -NOSESSION if it has ended.",
        Exec::Write(parse_keepalive, standard_reply)),
    spec!("session.destroy", 2, W, KeyPositions::NONE, "concord", "session-id",
        "Ends the session and everything bound to it: 1, or 0 if it had already ended.",
        Exec::Write(parse_destroy, standard_reply)),
    spec!("session.attach", -3, W, KeyPositions::range(2, -1, 1), "concord",
        "session-id key [key ...]",
        "Binds keys to the session: they are deleted (whatever they hold then) when it ends. Returns the number of keys newly bound; -NOSESSION if it has ended.",
        Exec::Write(parse_attach, standard_reply)),
    spec!("session.info", 2, R, KeyPositions::NONE, "concord", "session-id",
        "A session's id, name, ttl, remaining ms, creation time and what is bound to it (locks, keys, instances); nil if it has ended.",
        Exec::Read(parse_info, standard_reply)),
    spec!("session.list", 1, R, KeyPositions::NONE, "concord", "",
        "Every live session as [id, name, remaining ms].",
        Exec::Read(parse_list, standard_reply)),
];

fn write(op: SessionOp) -> Result<Op, CommandError> {
    Ok(Op::Session(op))
}

fn session_id(args: &mut Args) -> Result<u64, CommandError> {
    args.positive("session id")
}

fn parse_create(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let ttl_ms = args.millis("TTL", false)?;
    let mut name = None;
    while !args.is_empty() {
        match args.keyword()?.as_str() {
            "NAME" if name.is_none() => name = Some(args.bytes()?),
            _ => return Err(CommandError::Syntax),
        }
    }
    write(SessionOp::Create { ttl_ms, name })
}

fn parse_keepalive(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    write(SessionOp::KeepAlive {
        id: session_id(&mut args)?,
    })
}

fn parse_destroy(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    write(SessionOp::Destroy {
        id: session_id(&mut args)?,
    })
}

fn parse_attach(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let id = session_id(&mut args)?;
    write(SessionOp::Attach {
        id,
        keys: args.rest(),
    })
}

fn parse_info(argv: &[Bytes]) -> Result<Query, CommandError> {
    let mut args = Args::new(argv);
    Ok(Query::Session(SessionQuery::Info {
        id: session_id(&mut args)?,
    }))
}

fn parse_list(_argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Session(SessionQuery::List))
}
