//! `redis.call` / `redis.pcall`: one command from a script, run through the
//! command table against the state, at the entry's time.

use bytes::Bytes;
use mlua::{MultiValue, Value};

use crate::command::{self, Flag, Request};
use crate::resp::Reply;
use crate::state::scripts::Access;
use crate::state::sets::SetOp;
use crate::state::streams::StreamOp;
use crate::state::Op;

/// The state a script's commands run against.
pub(super) struct Ctx<'a> {
    pub state: Access<'a>,
    pub now: u64,
    pub read_only: bool,
    pub seed: u64,
    /// Commands run so far: each random command gets its own seed.
    pub calls: u64,
}

impl Ctx<'_> {
    /// Runs the command in `args`. `Err` is a script-level refusal (the
    /// text of the error table), `Ok` the command's own reply, which may be
    /// an error reply.
    pub fn dispatch(&mut self, args: &MultiValue) -> Result<Reply, String> {
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
        if self.read_only && (spec.has(Flag::Write) || spec.has(Flag::MayReplicate)) {
            return Err(READ_ONLY.into());
        }
        let seed = mix(self.seed, self.calls);
        match command::prepare(&argv) {
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
                let result = state.apply_nested(self.now, &op);
                Ok(reply(spec.name, result))
            }
            Ok(Request::Read(mut query, spec, reply)) => {
                query.set_seed(seed);
                Ok(reply(spec.name, self.state.state().read(&query, self.now)))
            }
            Ok(Request::Local(spec)) => self.local(spec.name, &argv),
        }
    }

    /// The few server-answered commands that make sense in a script.
    fn local(&self, name: &str, argv: &[Bytes]) -> Result<Reply, String> {
        match name {
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

/// The arguments of a redis.call: strings as they are, numbers as `%.17g`
/// (as Redis formats them), anything else refused.
fn to_argv(args: &MultiValue) -> Result<Vec<Bytes>, String> {
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
