//! Work queues: parsing and replies. Semantics live in `state::queues`.

use bytes::Bytes;

use super::{standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::state::queues::{QueueOp, QueueQuery};
use crate::state::{Op, Query, Ticket};

const W: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const WB: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Blocking];
const R: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

/// How many dead jobs QUEUE.DEAD lists without COUNT.
const DEFAULT_DEAD_COUNT: u64 = 10;

macro_rules! spec {
    ($($row:tt)*) => { command_spec!(Queue, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("queue.push", -3, W, KeyPositions::NONE, "concord",
        "queue payload [DELAY ms] [MAXTRIES n]",
        "Adds a job and returns its id: a per-queue counter from 1, never reused. DELAY keeps it from being claimed for ms. MAXTRIES (0, the default: unlimited) is how many claims it gets before a lapsed lease or a NACK moves it to the dead list.",
        Exec::Write(parse_push, standard_reply)),
    spec!("queue.claim", -4, WB, KeyPositions::NONE, "concord",
        "queue worker lease-ms [COUNT n] [BLOCK ms]",
        "Claims up to COUNT (default 1) ready jobs, oldest ready first, each for lease-ms, as [id, payload, attempt, claim-token]. Claim tokens come from the counter that fences locks, so each is larger than every token before it. An empty array when nothing is ready; with BLOCK the caller waits (FIFO, 0 waits without a limit) for a job to become ready and gets an empty array if the wait runs out. A job whose lease lapses is delivered again, or goes to the dead list after MAXTRIES claims.",
        Exec::Write(parse_claim, standard_reply)),
    spec!("queue.ack", 4, W, KeyPositions::NONE, "concord", "queue id token",
        "Finishes job `id` if `token` holds its current claim (1), else 0: a worker whose lease lapsed is fenced off.",
        Exec::Write(parse_ack, standard_reply)),
    spec!("queue.nack", -4, W, KeyPositions::NONE, "concord", "queue id token [DELAY ms]",
        "Gives job `id` back if `token` holds its current claim (1), else 0. It is ready again (after DELAY ms, if given), or dead if it used up its MAXTRIES.",
        Exec::Write(parse_nack, standard_reply)),
    spec!("queue.extend", 5, W, KeyPositions::NONE, "concord", "queue id token lease-ms",
        "Sets the lease of job `id` to lease-ms from now if `token` holds its current claim (1), else 0.",
        Exec::Write(parse_extend, standard_reply)),
    spec!("queue.stats", 2, R, KeyPositions::NONE, "concord", "queue",
        "How many jobs are ready, delayed, inflight (claimed) and dead, how many were pushed and acked since the queue was first pushed to, and how many claimers are waiting (BLOCK).",
        Exec::Read(parse_stats, standard_reply)),
    spec!("queue.dead", -2, R, KeyPositions::NONE, "concord", "queue [COUNT n]",
        "Up to COUNT (default 10) dead jobs, oldest first, as [id, payload, attempts].",
        Exec::Read(parse_dead, standard_reply)),
];

fn write(op: QueueOp) -> Result<Op, CommandError> {
    Ok(Op::Queue(op))
}

fn job_id(args: &mut Args) -> Result<u64, CommandError> {
    args.positive("job id")
}

fn token(args: &mut Args) -> Result<u64, CommandError> {
    args.positive("token")
}

fn lease(args: &mut Args) -> Result<u64, CommandError> {
    args.millis("lease", false)
}

fn delay(args: &mut Args) -> Result<u64, CommandError> {
    args.millis("DELAY", true)
}

/// A retry limit: 0 (unlimited) or more.
fn tries(args: &mut Args) -> Result<u64, CommandError> {
    let invalid = || CommandError::InvalidArgument("invalid MAXTRIES".into());
    match args.i64() {
        Ok(n) => u64::try_from(n).map_err(|_| invalid()),
        Err(CommandError::NotInteger) => Err(invalid()),
        Err(other) => Err(other),
    }
}

fn parse_push(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let queue = args.bytes()?;
    let payload = args.bytes()?;
    let mut delay_ms = None;
    let mut max_tries = None;
    while !args.is_empty() {
        match args.keyword()?.as_str() {
            "DELAY" if delay_ms.is_none() => delay_ms = Some(delay(&mut args)?),
            "MAXTRIES" if max_tries.is_none() => max_tries = Some(tries(&mut args)?),
            _ => return Err(CommandError::Syntax),
        }
    }
    write(QueueOp::Push {
        queue,
        payload,
        delay_ms: delay_ms.unwrap_or(0),
        max_tries: max_tries.unwrap_or(0),
    })
}

fn parse_claim(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let queue = args.bytes()?;
    let worker = args.bytes()?;
    let lease_ms = lease(&mut args)?;
    let mut count = None;
    let mut block_ms = None;
    while !args.is_empty() {
        match args.keyword()?.as_str() {
            "COUNT" if count.is_none() => count = Some(args.positive("COUNT")?),
            "BLOCK" if block_ms.is_none() => block_ms = Some(args.millis("BLOCK timeout", true)?),
            _ => return Err(CommandError::Syntax),
        }
    }
    write(QueueOp::Claim {
        queue,
        worker,
        lease_ms,
        count: count.unwrap_or(1),
        block_ms,
        ticket: Ticket::default(),
    })
}

fn parse_ack(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let queue = args.bytes()?;
    let id = job_id(&mut args)?;
    let token = token(&mut args)?;
    write(QueueOp::Ack { queue, id, token })
}

fn parse_nack(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let queue = args.bytes()?;
    let id = job_id(&mut args)?;
    let token = token(&mut args)?;
    let mut delay_ms = None;
    while !args.is_empty() {
        match args.keyword()?.as_str() {
            "DELAY" if delay_ms.is_none() => delay_ms = Some(delay(&mut args)?),
            _ => return Err(CommandError::Syntax),
        }
    }
    write(QueueOp::Nack {
        queue,
        id,
        token,
        delay_ms: delay_ms.unwrap_or(0),
    })
}

fn parse_extend(argv: &[Bytes]) -> Result<Op, CommandError> {
    let mut args = Args::new(argv);
    let queue = args.bytes()?;
    let id = job_id(&mut args)?;
    let token = token(&mut args)?;
    let lease_ms = lease(&mut args)?;
    write(QueueOp::Extend {
        queue,
        id,
        token,
        lease_ms,
    })
}

fn parse_stats(argv: &[Bytes]) -> Result<Query, CommandError> {
    Ok(Query::Queue(QueueQuery::Stats {
        queue: argv[1].clone(),
    }))
}

fn parse_dead(argv: &[Bytes]) -> Result<Query, CommandError> {
    let mut args = Args::new(argv);
    let queue = args.bytes()?;
    let mut count = None;
    while !args.is_empty() {
        match args.keyword()?.as_str() {
            "COUNT" if count.is_none() => count = Some(args.positive("COUNT")?),
            _ => return Err(CommandError::Syntax),
        }
    }
    Ok(Query::Queue(QueueQuery::Dead {
        queue,
        count: count.unwrap_or(DEFAULT_DEAD_COUNT),
    }))
}
