//! The command table and the command families.
//!
//! Every command is declared once, as a [`CommandSpec`] in its family's file
//! (as Redis declares them in `commands/*.json`). The table drives arity
//! checks, unknown-command errors, `COMMAND` introspection and
//! `docs/commands.md`. A family file turns arguments into an [`Op`] (a write,
//! replicated through the log) or a [`Query`] (a read), and turns the
//! state's [`Outcome`] into the reply its command owes.
//!
//! Commands answered by the server itself (connection state, INFO, CONFIG)
//! are declared here too, with [`Exec::Local`]; the server executes them.

/// Declares one row of a family's command table.
macro_rules! command_spec {
    ($group:ident, $name:literal, $arity:expr, $flags:expr, $keys:expr, $since:literal,
     $syntax:literal, $summary:literal, $exec:expr $(, $subs:expr)?) => {
        $crate::command::CommandSpec {
            name: $name,
            arity: $arity,
            flags: $flags,
            keys: $keys,
            group: $crate::command::Group::$group,
            summary: $summary,
            syntax: $syntax,
            since: $since,
            exec: $exec,
            subcommands: command_spec!(@subcommands $($subs)?),
        }
    };
    (@subcommands) => { &[] };
    (@subcommands $subs:expr) => { $subs };
}

/// Declares a command the server answers itself: no keys, `Exec::Local`.
macro_rules! local_spec {
    ($group:ident, $name:literal, $arity:expr, $flags:expr, $since:literal, $syntax:literal,
     $summary:literal $(, $subs:expr)?) => {
        command_spec!($group, $name, $arity, $flags, $crate::command::KeyPositions::NONE, $since,
            $syntax, $summary, $crate::command::Exec::Local $(, $subs)?)
    };
}

pub mod acl;
mod args;
pub mod breakers;
pub mod cluster;
pub mod connection;
pub mod docs;
mod error;
pub mod geo;
pub mod hashes;
pub mod hll;
pub mod keys;
pub mod lists;
pub mod locks;
pub mod pubsub;
pub mod queues;
pub mod ratelimit;
pub mod registry;
pub mod scripting;
pub mod server;
pub mod sessions;
pub mod sets;
pub mod streams;
pub mod strings;
pub mod transactions;
pub mod zsets;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use bytes::Bytes;

pub use args::{is, Args};
pub use error::CommandError;

use crate::resp::Reply;
use crate::state::{Op, OpResult, Outcome, Query, StateError};

/// Command flags, as `COMMAND INFO` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flag {
    Write,
    ReadOnly,
    DenyOom,
    Admin,
    PubSub,
    NoScript,
    Blocking,
    Loading,
    Stale,
    Fast,
    NoAuth,
    MayReplicate,
    AllowBusy,
    /// Refused inside MULTI (the transaction is then aborted).
    NoMulti,
}

impl Flag {
    pub fn as_str(self) -> &'static str {
        match self {
            Flag::Write => "write",
            Flag::ReadOnly => "readonly",
            Flag::DenyOom => "denyoom",
            Flag::Admin => "admin",
            Flag::PubSub => "pubsub",
            Flag::NoScript => "noscript",
            Flag::Blocking => "blocking",
            Flag::Loading => "loading",
            Flag::Stale => "stale",
            Flag::Fast => "fast",
            Flag::NoAuth => "no_auth",
            Flag::MayReplicate => "may_replicate",
            Flag::AllowBusy => "allow_busy",
            Flag::NoMulti => "no_multi",
        }
    }
}

/// Whether a command may grow the dataset, and so is refused with OOM
/// while the dataset is over `maxmemory` and nothing can be evicted: the
/// `denyoom` commands, and the scripts that may write (EVAL, EVALSHA,
/// FCALL; their `_RO` forms cannot), as Redis refuses them.
pub fn denied_when_out_of_memory(spec: &CommandSpec) -> bool {
    spec.has(Flag::DenyOom) || matches!(spec.name, "eval" | "evalsha" | "fcall")
}

/// The command's family, as `COMMAND DOCS` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    Connection,
    Server,
    String,
    Generic,
    Hash,
    Set,
    List,
    SortedSet,
    Cluster,
    Lock,
    Session,
    PubSub,
    Registry,
    RateLimit,
    Breaker,
    Queue,
    Transactions,
    Scripting,
    Stream,
    HyperLogLog,
    Geo,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Connection => "connection",
            Group::Server => "server",
            Group::String => "string",
            Group::Generic => "generic",
            Group::Hash => "hash",
            Group::Set => "set",
            Group::List => "list",
            Group::SortedSet => "sorted-set",
            Group::Cluster => "cluster",
            Group::Lock => "lock",
            Group::PubSub => "pubsub",
            Group::Session => "session",
            Group::Registry => "registry",
            Group::RateLimit => "ratelimit",
            Group::Breaker => "breaker",
            Group::Queue => "queue",
            Group::Transactions => "transactions",
            Group::Scripting => "scripting",
            Group::Stream => "stream",
            Group::HyperLogLog => "hyperloglog",
            Group::Geo => "geo",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Group::Connection => "Connection",
            Group::Server => "Server",
            Group::String => "Strings and counters",
            Group::Generic => "Keys and expiry",
            Group::Hash => "Hashes",
            Group::Set => "Sets",
            Group::List => "Lists",
            Group::SortedSet => "Sorted sets",
            Group::Cluster => "Cluster",
            Group::Lock => "Locks (native)",
            Group::PubSub => "Pub/sub",
            Group::Session => "Sessions (native)",
            Group::Registry => "Service registry (native)",
            Group::RateLimit => "Rate limits (native)",
            Group::Breaker => "Circuit breakers (native)",
            Group::Queue => "Work queues (native)",
            Group::Transactions => "Transactions",
            Group::Scripting => "Scripting (Lua)",
            Group::Stream => "Streams",
            Group::HyperLogLog => "HyperLogLog",
            Group::Geo => "Geospatial indexes",
        }
    }
}

/// Where the keys are, in Redis's legacy (first, last, step) form; last -1
/// means "to the end", -2 "all but the last argument". Commands whose keys
/// are counted by an argument (ZUNIONSTORE dest numkeys key ...) also name
/// that argument's position: COMMAND reports them as `movablekeys`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPositions {
    pub first: i32,
    pub last: i32,
    pub step: i32,
    /// The argument holding how many keys follow it; 0 when none.
    pub numkeys_at: i32,
}

impl KeyPositions {
    pub const NONE: KeyPositions = KeyPositions::range(0, 0, 0);
    pub const FIRST: KeyPositions = KeyPositions::range(1, 1, 1);
    pub const ALL: KeyPositions = KeyPositions::range(1, -1, 1);
    pub const FIRST_TWO: KeyPositions = KeyPositions::range(1, 2, 1);
    pub const PAIRS: KeyPositions = KeyPositions::range(1, -1, 2);

    pub const fn range(first: i32, last: i32, step: i32) -> KeyPositions {
        KeyPositions {
            first,
            last,
            step,
            numkeys_at: 0,
        }
    }

    /// These positions, plus the keys counted by the argument at `at`.
    pub const fn with_numkeys(self, at: i32) -> KeyPositions {
        KeyPositions {
            numkeys_at: at,
            ..self
        }
    }

    /// The key arguments of `argv` (argv[0] is the name). A count that is
    /// not a number, or larger than what follows, yields what is there.
    pub fn keys<'a>(&self, argv: &'a [Bytes]) -> Vec<&'a Bytes> {
        self.iter(argv).collect()
    }

    /// [`KeyPositions::keys`] without collecting them.
    pub fn iter<'a>(&self, argv: &'a [Bytes]) -> impl Iterator<Item = &'a Bytes> + 'a {
        let fixed = if self.first > 0 {
            let last = if self.last < 0 {
                argv.len() as i32 + self.last
            } else {
                self.last.min(argv.len() as i32 - 1)
            };
            self.first..=last
        } else {
            #[allow(clippy::reversed_empty_ranges)]
            {
                1..=0
            }
        };
        let step = self.step.max(1) as usize;
        let counted = if self.numkeys_at > 0 {
            let at = self.numkeys_at as usize;
            let count = argv
                .get(at)
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            argv.iter().skip(at + 1).take(count)
        } else {
            argv.iter().skip(argv.len()).take(0)
        };
        fixed
            .step_by(step)
            .filter_map(move |i| argv.get(i as usize))
            .chain(counted)
    }
}

/// Turns the state's answer into the command's reply. The name is the
/// command's, for the errors whose text names it.
pub type ReplyFn = fn(&'static str, OpResult) -> Reply;

pub enum Exec {
    /// A write: parsed to an op that goes through the log.
    Write(fn(&[Bytes]) -> Result<Op, CommandError>, ReplyFn),
    /// A read: parsed to a query served after the read barrier.
    Read(fn(&[Bytes]) -> Result<Query, CommandError>, ReplyFn),
    /// Answered by the server from connection and node state.
    Local,
    /// Wraps the write command that starts at argument `inner_at` (its
    /// name): the wrapper's parse turns the inner command's op into the
    /// op that is replicated; the reply is the inner command's.
    Wrap {
        inner_at: usize,
        wrap: fn(&[Bytes], Op) -> Result<Op, CommandError>,
    },
    /// A read or a write depending on the arguments: XREAD is a read, and
    /// a write with BLOCK (it waits in line through the log).
    Either(fn(&[Bytes]) -> Result<Parsed, CommandError>, ReplyFn),
}

/// What an [`Exec::Either`] command parses to.
pub enum Parsed {
    Write(Op),
    Read(Query),
}

pub struct CommandSpec {
    /// Lower case, as `COMMAND` reports it; `parent|sub` for subcommands.
    pub name: &'static str,
    /// Redis's convention: n means exactly n arguments including the name,
    /// -n means at least n.
    pub arity: i32,
    pub flags: &'static [Flag],
    pub keys: KeyPositions,
    pub group: Group,
    pub summary: &'static str,
    /// The arguments after the name, for documentation.
    pub syntax: &'static str,
    /// The Redis version that introduced it, or "concord" for native commands.
    pub since: &'static str,
    pub exec: Exec,
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    pub fn has(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i32;
        if self.arity >= 0 {
            argc == self.arity
        } else {
            argc >= -self.arity
        }
    }

    /// The display name used in errors: `config|get` for subcommands.
    pub fn full_name(&self) -> &'static str {
        self.name
    }

    /// The subcommand named by `arg`, if this command has subcommands.
    pub fn subcommand(&self, arg: &[u8]) -> Option<&'static CommandSpec> {
        let suffix = |s: &'static CommandSpec| s.name.rsplit('|').next().unwrap_or(s.name);
        self.subcommands
            .iter()
            .find(|s| suffix(s).as_bytes().eq_ignore_ascii_case(arg))
    }
}

/// Every family's specs, in documentation order.
pub fn families() -> [&'static [CommandSpec]; 21] {
    [
        connection::SPECS,
        server::SPECS,
        cluster::SPECS,
        strings::SPECS,
        hll::SPECS,
        keys::SPECS,
        hashes::SPECS,
        sets::SPECS,
        lists::SPECS,
        zsets::SPECS,
        geo::SPECS,
        streams::SPECS,
        pubsub::SPECS,
        transactions::SPECS,
        scripting::SPECS,
        locks::SPECS,
        sessions::SPECS,
        registry::SPECS,
        ratelimit::SPECS,
        breakers::SPECS,
        queues::SPECS,
    ]
}

pub fn all() -> impl Iterator<Item = &'static CommandSpec> {
    families().into_iter().flatten()
}

/// The command table by name, hashed with FNV-1a: the keys are the
/// command names fixed at build time, so a keyed hash (std's SipHash)
/// defends against nothing here, and it cost more than the rest of the
/// lookup (every request and every `redis.call` goes through it).
type NameTable = HashMap<&'static str, &'static CommandSpec, BuildHasherDefault<NameHasher>>;

/// FNV-1a, for maps keyed by command names (here, and the ACL's sets of
/// allowed commands).
pub struct NameHasher(u64);

impl Default for NameHasher {
    fn default() -> Self {
        NameHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for NameHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

fn table() -> &'static NameTable {
    static TABLE: OnceLock<NameTable> = OnceLock::new();
    TABLE.get_or_init(|| all().map(|spec| (spec.name, spec)).collect())
}

/// Looks a command up by name, case-insensitively.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    let mut buf = [0u8; 32];
    if name.len() > buf.len() {
        return None;
    }
    let lower = &mut buf[..name.len()];
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    table().get(std::str::from_utf8(lower).ok()?).copied()
}

/// What a request turns into after the table's checks.
pub enum Request {
    Write(Op, &'static CommandSpec, ReplyFn),
    Read(Query, &'static CommandSpec, ReplyFn),
    Local(&'static CommandSpec),
}

/// Finds the spec, checks arity (of the subcommand too), and parses.
pub fn prepare(argv: &[Bytes]) -> Result<Request, CommandError> {
    let name = argv.first().ok_or(CommandError::Syntax)?;
    let spec = lookup(name).ok_or_else(|| CommandError::unknown_command(argv))?;
    if !spec.arity_ok(argv.len()) {
        return Err(CommandError::WrongArity(spec.name.to_owned()));
    }
    let spec = resolve_subcommand(spec, argv)?;
    parse_resolved(spec, argv)
}

/// [`prepare`] past the checks: `spec` is the (sub)command's own spec,
/// already found and arity-checked for `argv`.
pub fn parse_resolved(spec: &'static CommandSpec, argv: &[Bytes]) -> Result<Request, CommandError> {
    match &spec.exec {
        Exec::Write(parse, reply) => Ok(Request::Write(parse(argv)?, spec, *reply)),
        Exec::Read(parse, reply) => Ok(Request::Read(parse(argv)?, spec, *reply)),
        Exec::Local => Ok(Request::Local(spec)),
        Exec::Either(parse, reply) => Ok(match parse(argv)? {
            Parsed::Write(op) => Request::Write(op, spec, *reply),
            Parsed::Read(query) => Request::Read(query, spec, *reply),
        }),
        Exec::Wrap { inner_at, wrap } => {
            let inner = &argv[*inner_at..];
            let outer = spec.name.to_ascii_uppercase();
            match prepare(inner)? {
                Request::Write(_, inner_spec, _) if inner_spec.has(Flag::Blocking) => {
                    Err(CommandError::InvalidArgument(format!(
                        "{outer} cannot wrap a blocking command"
                    )))
                }
                Request::Write(op, inner_spec, reply) => {
                    Ok(Request::Write(wrap(argv, op)?, inner_spec, reply))
                }
                _ => Err(CommandError::InvalidArgument(format!(
                    "{outer} wraps write commands only"
                ))),
            }
        }
    }
}

/// For a command with subcommands, the subcommand's spec (arity-checked).
pub fn resolve_subcommand(
    spec: &'static CommandSpec,
    argv: &[Bytes],
) -> Result<&'static CommandSpec, CommandError> {
    if spec.subcommands.is_empty() {
        return Ok(spec);
    }
    let Some(sub_name) = argv.get(1) else {
        return Ok(spec);
    };
    let sub = spec
        .subcommand(sub_name)
        .ok_or_else(|| CommandError::UnknownSubcommand {
            command: spec.name.to_ascii_uppercase(),
            sub: String::from_utf8_lossy(sub_name).into_owned(),
        })?;
    if !sub.arity_ok(argv.len()) {
        return Err(CommandError::WrongArity(sub.name.to_owned()));
    }
    Ok(sub)
}

/// The reply for most commands: the outcome as it is, errors as their text.
pub fn standard_reply(name: &'static str, result: OpResult) -> Reply {
    match result {
        Ok(outcome) => outcome_reply(outcome),
        Err(err) => state_error_reply(name, &err),
    }
}

pub fn state_error_reply(name: &'static str, err: &StateError) -> Reply {
    match err {
        StateError::InvalidExpireTime => {
            Reply::error(CommandError::InvalidExpireTime(name).to_string())
        }
        other => Reply::error(other.to_string()),
    }
}

pub fn outcome_reply(outcome: Outcome) -> Reply {
    match outcome {
        Outcome::Ok => Reply::ok(),
        Outcome::Status(s) => Reply::Simple(s.into()),
        Outcome::Nil => Reply::Nil,
        Outcome::NilArray => Reply::NilArray,
        Outcome::Int(i) => Reply::Int(i),
        Outcome::Bulk(b) => Reply::Bulk(b),
        Outcome::Double(d) => Reply::Double(d),
        Outcome::Array(items) => Reply::Array(items.into_iter().map(outcome_reply).collect()),
        Outcome::Map(pairs) => Reply::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (outcome_reply(k), outcome_reply(v)))
                .collect(),
        ),
        Outcome::Set(items) => Reply::Set(items.into_iter().map(outcome_reply).collect()),
        Outcome::Pairs(pairs) => Reply::Pairs(
            pairs
                .into_iter()
                .map(|(k, v)| (outcome_reply(k), outcome_reply(v)))
                .collect(),
        ),
        Outcome::Error(err) => Reply::error(err.to_string()),
        // The node holds a waiting client's reply until its wake-up; this
        // is only reached if a waiting op were relayed back unanswered.
        Outcome::Blocked { .. } => Reply::error("ERR the request is still waiting"),
    }
}

/// For commands answering 1/0 where the op's outcome is OK/nil (SETNX).
pub fn ok_as_int_reply(name: &'static str, result: OpResult) -> Reply {
    match result {
        Ok(Outcome::Ok) => Reply::Int(1),
        Ok(Outcome::Nil) => Reply::Int(0),
        other => standard_reply(name, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_declared_once_with_a_sane_spec() {
        let mut seen = std::collections::HashSet::new();
        for spec in all() {
            assert!(seen.insert(spec.name), "{} declared twice", spec.name);
            assert_eq!(spec.name, spec.name.to_ascii_lowercase());
            assert!(spec.arity != 0, "{} has arity 0", spec.name);
            assert!(!spec.summary.is_empty(), "{} has no summary", spec.name);
            let writes = spec.has(Flag::Write);
            assert!(
                !(writes && spec.has(Flag::ReadOnly)),
                "{} is both write and readonly",
                spec.name
            );
            match spec.exec {
                // PUBLISH goes through the log without writing the keyspace:
                // Redis flags it may_replicate.
                Exec::Write(..) => assert!(
                    writes || spec.has(Flag::MayReplicate),
                    "{} writes but lacks the write flag",
                    spec.name
                ),
                Exec::Read(..) => assert!(!writes, "{} reads but has the write flag", spec.name),
                Exec::Wrap { .. } => assert!(
                    writes,
                    "{} wraps writes but lacks the write flag",
                    spec.name
                ),
                Exec::Local | Exec::Either(..) => {}
            }
            for sub in spec.subcommands {
                assert!(sub.name.starts_with(&format!("{}|", spec.name)));
            }
        }
    }

    #[test]
    fn key_positions_find_fixed_and_counted_keys() {
        let argv: Vec<Bytes> = "ZUNIONSTORE dest 2 a b WEIGHTS 1 2"
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let keys = KeyPositions::FIRST.with_numkeys(2).keys(&argv);
        assert_eq!(keys, vec!["dest", "a", "b"]);
        let sintercard: Vec<Bytes> = ["SINTERCARD", "2", "a", "b", "LIMIT", "1"]
            .map(Bytes::from)
            .to_vec();
        let keys = KeyPositions::NONE.with_numkeys(1).keys(&sintercard);
        assert_eq!(keys, vec!["a", "b"]);
        let blpop: Vec<Bytes> = ["BLPOP", "a", "b", "0"].map(Bytes::from).to_vec();
        assert_eq!(KeyPositions::range(1, -2, 1).keys(&blpop), vec!["a", "b"]);
        let short: Vec<Bytes> = ["X", "9", "a"].map(Bytes::from).to_vec();
        assert_eq!(KeyPositions::NONE.with_numkeys(1).keys(&short), vec!["a"]);
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(lookup(b"GeT").map(|s| s.name), Some("get"));
        assert!(lookup(b"nosuchcommand").is_none());
        assert!(lookup(&[b'a'; 100]).is_none());
    }

    #[test]
    fn unknown_and_arity_errors_use_redis_wording() {
        let argv = |s: &str| {
            s.split(' ')
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect::<Vec<_>>()
        };
        let err = prepare(&argv("FOO a b")).err().unwrap();
        assert_eq!(
            err.to_string(),
            "ERR unknown command 'FOO', with args beginning with: 'a' 'b' "
        );
        let err = prepare(&argv("GET")).err().unwrap();
        assert_eq!(
            err.to_string(),
            "ERR wrong number of arguments for 'get' command"
        );
    }
}
