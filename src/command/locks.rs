//! Locks with fencing tokens: parsing and replies. Semantics live in
//! `state::locks`.

use bytes::Bytes;

use super::{standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::state::locks::{LockOp, LockQuery};
use crate::state::{Op, Query, Ticket};

const W: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const WB: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Blocking];
const R: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

macro_rules! spec {
    ($($row:tt)*) => { command_spec!(Lock, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("lock.acquire", -4, WB, KeyPositions::NONE, "concord",
        "name owner ttl-ms [WAIT ms] [SESSION session-id]",
        "Acquires a lock for `owner` and returns its fencing token, larger than every token granted before. Nil when the lock is held and WAIT was not given or ran out; WAIT queues the caller (FIFO, 0 waits without a limit) and answers when the lock is granted. The holder acquiring again gets its token back with the TTL renewed. With SESSION the lock also ends with the session, and ttl-ms may be 0 (no TTL of its own).",
        Exec::Write(parse_acquire, standard_reply)),
    spec!("lock.release", 3, W, KeyPositions::NONE, "concord", "name token",
        "Releases the lock if `token` holds it (1), else 0. The next waiter, if any, is granted the lock.",
        Exec::Write(parse_release, standard_reply)),
    spec!("lock.extend", 4, W, KeyPositions::NONE, "concord", "name token ttl-ms",
        "Sets the lock's TTL to ttl-ms from now if `token` holds it (1), else 0.",
        Exec::Write(parse_extend, standard_reply)),
    spec!("lock.info", 2, R, KeyPositions::NONE, "concord", "name",
        "The holder of a lock: owner, token, ttl (ms left, -1 when bound to a session only), waiters, session; nil when the lock is free.",
        Exec::Read(parse_info, standard_reply)),
    spec!("lock.guard", -4, &[Flag::Write, Flag::DenyOom], KeyPositions::NONE, "concord",
        "name token command [arg ...]",
        "Runs a write command atomically only while `token` holds the lock; otherwise fails with -FENCED and writes nothing. The reply is the command's.",
        Exec::Wrap { inner_at: 3, wrap: wrap_guard }),
];

fn write(op: LockOp) -> Result<Op, CommandError> {
    Ok(Op::Lock(op))
}

fn parse_acquire(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let name = args.bytes()?;
    let owner = args.bytes()?;
    let ttl_ms = args.millis("TTL", true)?;
    let mut wait_ms = None;
    let mut session = None;
    while !args.is_empty() {
        match args.keyword()?.as_str() {
            "WAIT" if wait_ms.is_none() => wait_ms = Some(args.millis("WAIT timeout", true)?),
            "SESSION" if session.is_none() => session = Some(args.positive("session id")?),
            _ => return Err(CommandError::Syntax),
        }
    }
    if ttl_ms == 0 && session.is_none() {
        return Err(CommandError::InvalidArgument(
            "invalid TTL: 0 is only allowed with SESSION".into(),
        ));
    }
    write(LockOp::Acquire {
        name,
        owner,
        ttl_ms,
        wait_ms,
        session,
        ticket: Ticket::default(),
    })
}

fn parse_release(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let name = args.bytes()?;
    let token = args.positive("token")?;
    write(LockOp::Release { name, token })
}

fn parse_extend(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let name = args.bytes()?;
    let token = args.positive("token")?;
    let ttl_ms = args.millis("TTL", false)?;
    write(LockOp::Extend {
        name,
        token,
        ttl_ms,
    })
}

fn parse_info(argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Lock(LockQuery::Info {
        name: argv[1].clone(),
    }))
}

fn wrap_guard(argv: &[Bytes], op: Op) -> Result<Op, CommandError> {
    let mut args = Args::new(&argv[..3]);
    let name = args.bytes()?;
    let token = args.positive("token")?;
    write(LockOp::Guard {
        name,
        token,
        op: Box::new(op),
    })
}
