//! `redis.call` / `redis.pcall`: one command from a script, run through the
//! command table against the state, at the entry's time.

use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use bytes::Bytes;
use mlua::{MultiValue, Value};

use crate::command::{self, Flag, Request};
use crate::resp::Reply;
use crate::state::scripts::Access;
use crate::state::sets::SetOp;
use crate::state::streams::StreamOp;
use crate::state::Op;

/// Where `redis.call` and `redis.pcall` find the run they serve.
///
/// The two functions are made once per interpreter: making them for every
/// run, as scoped callbacks that borrow the run's state, cost about a
/// sixth of a short script's run. A run's [`Ctx`] borrows the state for
/// that run only, so the slot holds a pointer to it with the lifetime
/// erased: [`CurrentRun::bind`] sets it for one run and the guard it
/// returns clears it on drop. The guard holds the `Ctx`'s mutable borrow,
/// so nothing else touches the `Ctx` while the pointer is out.
#[derive(Default)]
pub(super) struct CurrentRun {
    ctx: AtomicPtr<()>,
}

/// The binding of one run's [`Ctx`] to a [`CurrentRun`]; unbinds on drop.
pub(super) struct Bound<'r, 'c> {
    slot: &'r CurrentRun,
    _ctx: PhantomData<&'r mut Ctx<'c>>,
}

impl Drop for Bound<'_, '_> {
    fn drop(&mut self) {
        self.slot.ctx.store(ptr::null_mut(), Ordering::Release);
    }
}

impl CurrentRun {
    pub fn bind<'r, 'c>(&'r self, ctx: &'r mut Ctx<'c>) -> Bound<'r, 'c> {
        let erased: *mut Ctx<'c> = ctx;
        self.ctx.store(erased.cast(), Ordering::Release);
        Bound {
            slot: self,
            _ctx: PhantomData,
        }
    }

    /// Runs `f` with the bound run's context: `None` when no run is bound
    /// (a library's top level as it loads) or when a call is already in
    /// progress (the pointer is taken out of the slot while `f` runs).
    pub fn with<R>(&self, f: impl FnOnce(&mut Ctx<'_>) -> R) -> Option<R> {
        let taken = self.ctx.swap(ptr::null_mut(), Ordering::Acquire);
        if taken.is_null() {
            return None;
        }
        // SAFETY: a non-null pointer was stored by `bind` from a live
        // `&mut Ctx` whose `Bound` has not dropped yet (dropping it nulls
        // the slot), and `Bound` keeps that borrow for as long as it
        // lives, so the Ctx and the state it borrows are alive and no one
        // else holds them. Swapping null in makes this the only reference
        // until it is put back below, and `f`'s higher-ranked lifetime
        // keeps it from leaving `f`.
        let ctx = unsafe { &mut *taken.cast::<Ctx<'_>>() };
        let result = f(ctx);
        self.ctx.store(taken, Ordering::Release);
        Some(result)
    }
}

/// The state a script's commands run against.
pub(super) struct Ctx<'a> {
    pub state: Access<'a>,
    pub now: u64,
    pub read_only: bool,
    pub seed: u64,
    /// Commands run so far: each random command gets its own seed.
    pub calls: u64,
    /// A run tried as a read ([`Access::ReadFirst`]) reached a write
    /// command: it must go through the log, and what it answers is moot.
    pub reached_write: bool,
    /// The restricted ACL user the script runs for ([`Op::AsUser`]).
    pub caller: Option<String>,
    /// The database its commands run in: the caller's, until the script
    /// SELECTs another (which does not change the caller's, as in Redis 7).
    pub db: u32,
}

impl Ctx<'_> {
    /// Runs the command in `args`, unless a read-first run reached a
    /// write: then the run must stop and go through the log.
    pub fn dispatch(&mut self, args: &MultiValue) -> Dispatched {
        if self.reached_write {
            return Dispatched::ReachedWrite;
        }
        match self.run_command(args) {
            Err(_) if self.reached_write => Dispatched::ReachedWrite,
            done => Dispatched::Done(done),
        }
    }

    /// `Err` is a script-level refusal (the text of the error table), `Ok`
    /// the command's own reply, which may be an error reply.
    fn run_command(&mut self, args: &MultiValue) -> Result<Reply, String> {
        let argv = to_argv(args)?;
        self.calls += 1;
        let spec =
            command::lookup(&argv[0]).ok_or("ERR Unknown Redis command called from script")?;
        if !spec.arity_ok(argv.len()) {
            return Err("ERR Wrong number of args calling Redis command from script".into());
        }
        let spec = match command::resolve_subcommand(spec, &argv) {
            Ok(spec) => spec,
            Err(e) => return Ok(Reply::error(e.to_string())),
        };
        if spec.has(Flag::NoScript) {
            return Err(NOT_ALLOWED.into());
        }
        self.acl_check(spec, &argv)?;
        let writes = spec.has(Flag::Write) || spec.has(Flag::MayReplicate);
        if writes && self.read_only {
            return Err(READ_ONLY.into());
        }
        if writes && matches!(self.state, Access::ReadFirst(..)) {
            self.reached_write = true;
            return Err(REACHED_WRITE.into());
        }
        let seed = mix(self.seed, self.calls);
        match command::parse_resolved(spec, &argv) {
            Err(e) => Ok(Reply::error(e.to_string())),
            Ok(Request::Write(mut op, spec, reply)) => {
                if let Op::Stream(StreamOp::Read { .. } | StreamOp::ReadGroup { .. }) = &op {
                    if op.ticket_mut().is_some() {
                        return Ok(Reply::error(format!(
                            "ERR {} command is not allowed with BLOCK option from scripts",
                            String::from_utf8_lossy(&argv[0])
                        )));
                    }
                }
                if op.ticket_mut().is_some() {
                    // A waiting op would hold the whole log: Redis refuses
                    // blocking commands in scripts too.
                    return Err(NOT_ALLOWED.into());
                }
                if let Op::Set(SetOp::Pop { seed: s, .. }) = &mut op {
                    *s = seed;
                }
                let Some(state) = self.state.state_mut() else {
                    // A read runs read-only: refused above.
                    return Err(READ_ONLY.into());
                };
                let op = if self.db == state.current_db() {
                    op
                } else {
                    Op::InDb {
                        db: self.db,
                        op: Box::new(op),
                    }
                };
                let result = state.apply_nested(self.now, &op);
                Ok(reply(spec.name, result))
            }
            Ok(Request::Read(mut query, spec, reply)) => {
                query.set_seed(seed);
                let state = self.state.state();
                Ok(reply(spec.name, state.read_in(self.db, &query, self.now)))
            }
            Ok(Request::Local(spec)) => self.local(spec.name, &argv),
        }
    }

    /// The script's user may run `argv` (spec `spec`): checked against the
    /// replicated user table as the entry applies, so every replica
    /// decides alike. `Err` is the NOPERM text.
    pub fn acl_check(
        &self,
        spec: &'static command::CommandSpec,
        argv: &[Bytes],
    ) -> Result<(), String> {
        let Some(name) = &self.caller else {
            return Ok(());
        };
        let Some(user) = self.state.state().acl().user(name) else {
            return Err(format!("NOPERM the user '{name}' no longer exists"));
        };
        command::acl::check_user(user, spec, argv).map_err(|refusal| refusal.text())
    }

    /// The few server-answered commands that make sense in a script.
    fn local(&mut self, name: &str, argv: &[Bytes]) -> Result<Reply, String> {
        match name {
            "select" => {
                let index = std::str::from_utf8(&argv[1])
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or("ERR value is not an integer or out of range")?;
                match u32::try_from(index) {
                    Ok(db) if db < crate::state::DATABASES => {
                        self.db = db;
                        Ok(Reply::ok())
                    }
                    _ => Ok(Reply::error("ERR DB index is out of range".to_owned())),
                }
            }
            "ping" => Ok(match argv.get(1) {
                Some(message) => Reply::Bulk(message.clone()),
                None => Reply::simple("PONG"),
            }),
            "echo" => Ok(Reply::Bulk(argv[1].clone())),
            // The entry's time: the same on every replica.
            "time" => Ok(Reply::Array(vec![
                Reply::bulk((self.now / 1000).to_string()),
                Reply::bulk(((self.now % 1000) * 1000).to_string()),
            ])),
            _ => Err(NOT_ALLOWED.into()),
        }
    }
}

const NOT_ALLOWED: &str = "ERR This Redis command is not allowed from script";
const READ_ONLY: &str = "ERR Write commands are not allowed from read-only scripts.";
pub(super) const REACHED_WRITE: &str = "ERR this run was a read and reached a write command";

/// What a `redis.call` came to.
pub(super) enum Dispatched {
    Done(Result<Reply, String>),
    /// A read-first run reached a write command.
    ReachedWrite,
}

/// The arguments of a redis.call: strings as they are, numbers as `%.17g`
/// (as Redis formats them), anything else refused.
pub(super) fn to_argv(args: &MultiValue) -> Result<Vec<Bytes>, String> {
    if args.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call".into());
    }
    args.iter()
        .map(|value| match value {
            Value::String(s) => Ok(Bytes::copy_from_slice(&s.as_bytes())),
            Value::Integer(i) => Ok(Bytes::from(i.to_string())),
            Value::Number(n) => Ok(Bytes::from(format_g17(*n))),
            _ => Err("ERR Lua redis lib command arguments must be strings or integers".into()),
        })
        .collect()
}

/// C's `%.17g`.
pub(super) fn format_g17(n: f64) -> String {
    if n.is_nan() {
        return if n.is_sign_negative() { "-nan" } else { "nan" }.into();
    }
    if n.is_infinite() {
        return if n < 0.0 { "-inf" } else { "inf" }.into();
    }
    if n == 0.0 {
        return if n.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = format!("{n:.16e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..17).contains(&exp) {
        let mantissa = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (16 - exp).max(0) as usize;
        trim_zeros(&format!("{n:.decimals$}")).to_owned()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A seed for the `n`th command of a run (splitmix64).
pub(super) fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
