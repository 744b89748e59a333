//! Rate limits: parsing and replies. Semantics live in `state::ratelimit`.

use std::num::NonZeroU64;

use bytes::Bytes;

use super::{standard_reply, Args, CommandError, CommandSpec, Exec, Flag, KeyPositions};
use crate::state::ratelimit::{Algorithm, Limit, RateLimitOp, RateLimitQuery};
use crate::state::{Op, Query};

const W: &[Flag] = &[Flag::Write, Flag::DenyOom, Flag::Fast];
const R: &[Flag] = &[Flag::ReadOnly, Flag::Fast];

macro_rules! spec {
    ($($row:tt)*) => { command_spec!(RateLimit, $($row)*) };
}

pub const SPECS: &[CommandSpec] = &[
    spec!("ratelimit.acquire", -5, W, KeyPositions::NONE, "concord",
        "key FIXED|SLIDING|BUCKET limit window-ms [COST n]",
        "Takes `cost` (default 1, at most `limit`) from the key's limit and answers [allowed 1/0, remaining, retry-after ms (-1 when allowed), reset-after ms (until nothing is counted)]. FIXED counts per window aligned to multiples of window-ms; SLIDING counts the requests accepted in the last window-ms exactly; BUCKET is a token bucket (GCRA) of `limit` tokens refilling `limit` per window-ms, and retry-after is when `cost` tokens will be there. A denied request takes nothing. Exact across the cluster: each decision is one replicated write. Using a key with another algorithm, limit or window starts it afresh.",
        Exec::Write(parse_acquire, standard_reply)),
    spec!("ratelimit.peek", -5, R, KeyPositions::NONE, "concord",
        "key FIXED|SLIDING|BUCKET limit window-ms [COST n]",
        "What RATELIMIT.ACQUIRE with the same arguments would answer now, taking nothing.",
        Exec::Read(parse_peek, standard_reply)),
    spec!("ratelimit.reset", 2, W, KeyPositions::NONE, "concord", "key",
        "Forgets everything counted for the key: 1, or 0 if nothing was counted.",
        Exec::Write(parse_reset, standard_reply)),
];

/// The arguments ACQUIRE and PEEK share.
fn parse_limit(argv: &[Bytes]) -> Result<(Bytes, Limit, u64), CommandError> {
    let mut args = Args::new(argv);
    let key = args.bytes()?;
    let algorithm = match args.keyword()?.as_str() {
        "FIXED" => Algorithm::Fixed,
        "SLIDING" => Algorithm::Sliding,
        "BUCKET" => Algorithm::Bucket,
        _ => return Err(CommandError::Syntax),
    };
    let limit = nonzero(args.positive("limit")?);
    let window_ms = nonzero(args.millis("window", false)?);
    let mut cost = None;
    while !args.is_empty() {
        match args.keyword()?.as_str() {
            "COST" if cost.is_none() => cost = Some(args.positive("COST")?),
            _ => return Err(CommandError::Syntax),
        }
    }
    let cost = cost.unwrap_or(1);
    if cost > limit.get() {
        return Err(CommandError::InvalidArgument(
            "COST exceeds the limit".into(),
        ));
    }
    let limit = Limit {
        algorithm,
        limit,
        window_ms,
    };
    Ok((key, limit, cost))
}

/// `Args::positive` and `Args::millis(_, false)` never return zero.
fn nonzero(value: u64) -> NonZeroU64 {
    NonZeroU64::new(value).unwrap_or(NonZeroU64::MIN)
}

fn parse_acquire(argv: &[Bytes]) -> Result<Op, CommandError> {
    let (key, limit, cost) = parse_limit(argv)?;
    Ok(Op::RateLimit(RateLimitOp::Acquire { key, limit, cost }))
}

fn parse_peek(argv: &[Bytes]) -> Result<Query, CommandError> {
    let (key, limit, cost) = parse_limit(argv)?;
    Ok(Query::RateLimit(RateLimitQuery::Peek { key, limit, cost }))
}

fn parse_reset(argv: &[Bytes]) -> Result<Op, CommandError> {
    Ok(Op::RateLimit(RateLimitOp::Reset {
        key: argv[1].clone(),
    }))
}
