//! Golden tests: scripts of commands with their exact replies, run through
//! the real command table (`command::prepare`, the spec's reply function)
//! against a [`State`], as the server will run them.
//!
//! Script format (`tests/golden/*.txt`), one item per line:
//!
//! ```text
//! # a comment
//! @time 1700000000000   set the clock (entry time of writes, `now` of reads)
//! @advance 100          move the clock forward
//! @seed 7               the seed of RANDOMKEY / HRANDFIELD / SRANDMEMBER /
//!                       SPOP / ZRANDMEMBER from now on
//! @sweep                apply the leader's expiry op for every expired key
//! @tick                 apply the leader's timer op (fires due primitives)
//! @grace 2000           apply a new leader's grace op
//! @unblock 1            apply the op that drops waiting command 1
//! @interrupt 1 error 1  apply CLIENT UNBLOCK's op to waiting command 1
//!                       (timeout or error); it must answer 1 (or 0)
//! > SET k "a b" PX 100  a command; the next line is its exact reply
//! OK
//! ~> KEYS *             the same, with every array sorted (order-free)
//! ["a", "b"]
//! > LOCK.ACQUIRE l o 100 WAIT 0
//! (blocked 1)           the command waits: it is waiting command 1
//! < 1                   waiting command 1 was answered; its reply follows
//! (integer) 3
//! ```
//!
//! `> SELECT n` changes the database the next commands run in, as a
//! connection's SELECT does (their ops and reads are wrapped for it).
//!
//! Every answer to a waiting command must be checked with a `<` line before
//! the script ends.
//!
//! Replies render compactly: `OK` (status), `(error) ERR ...`,
//! `(integer) 3`, `"bulk"` (escaped), `(nil)`, `[a, b]`, `{k: v}`.
//! Arguments split on spaces; `"..."` quotes, with `\"`, `\\`, `\n`, `\r`,
//! `\t` and `\xHH` escapes inside.

use bytes::Bytes;

use std::collections::{BTreeMap, HashMap};

use super::sets::SetOp;
use super::{Op, Outcome, State, Ticket};
use crate::command::{prepare, ReplyFn, Request};
use crate::resp::Reply;

/// A state driven like the server drives it: writes get increasing log
/// indexes and the harness's clock as their entry time.
pub(crate) struct Harness {
    pub state: State,
    pub index: u64,
    pub now: u64,
    /// Replaces the caller-drawn seed of random reads, for exact answers.
    pub seed: Option<u64>,
    /// Tickets handed to waiting commands so far.
    tickets: u64,
    /// How each waiting command renders its answer, by ticket number.
    waiting: HashMap<u64, (&'static str, ReplyFn)>,
    /// Answers to waiting commands not yet checked, by ticket number.
    pub answered: BTreeMap<u64, Reply>,
    /// The database SELECTed.
    pub db: u32,
}

impl Harness {
    pub fn new(now: u64) -> Self {
        let mut state = State::new();
        state.set_script_host(crate::script::host());
        Harness {
            state,
            index: 0,
            now,
            seed: None,
            tickets: 0,
            waiting: HashMap::new(),
            answered: BTreeMap::new(),
            db: 0,
        }
    }

    /// Applies `op` as the next entry and collects the answers it gives
    /// waiting commands.
    pub fn apply(&mut self, op: &Op) -> super::OpResult {
        self.index += 1;
        let result = self.state.apply(self.index, self.now, op);
        for wakeup in self.state.take_wakeups() {
            let seq = wakeup.ticket.seq;
            let (name, reply) = self
                .waiting
                .remove(&seq)
                .unwrap_or_else(|| panic!("wake-up for unknown ticket {seq}"));
            self.answered.insert(seq, reply(name, Ok(wakeup.outcome)));
        }
        result
    }

    /// Runs one command through the command table and returns its reply.
    pub fn run(&mut self, argv: &[Bytes]) -> Reply {
        if argv.len() == 2 && argv[0].eq_ignore_ascii_case(b"select") {
            let index = std::str::from_utf8(&argv[1])
                .ok()
                .and_then(|s| s.parse().ok());
            return match index.map(crate::command::keys::database) {
                None => Reply::error("ERR value is not an integer or out of range".to_owned()),
                Some(Err(e)) => Reply::error(e.to_string()),
                Some(Ok(db)) => {
                    self.db = db;
                    Reply::ok()
                }
            };
        }
        match prepare(argv) {
            Err(err) => Reply::error(err.to_string()),
            Ok(Request::Write(mut op, spec, reply)) => {
                if let Some(seed) = self.seed {
                    set_op_seed(&mut op, seed);
                }
                if let Some(ticket) = op.ticket_mut() {
                    self.tickets += 1;
                    *ticket = Ticket {
                        node: 1,
                        seq: self.tickets,
                    };
                    self.waiting.insert(self.tickets, (spec.name, reply));
                }
                match self.apply(&Op::in_db(self.db, op)) {
                    Ok(Outcome::Blocked { ticket, .. }) => {
                        Reply::Simple(format!("(blocked {})", ticket.seq).into())
                    }
                    result => reply(spec.name, result),
                }
            }
            Ok(Request::Read(mut query, spec, reply)) => {
                if let Some(seed) = self.seed {
                    query.set_seed(seed);
                }
                let query = super::Query::in_db(self.db, query);
                reply(spec.name, self.state.read(&query, self.now))
            }
            Ok(Request::Local(spec)) => {
                Reply::error(format!("(local command '{}' is not run here)", spec.name))
            }
        }
    }

    /// Splits `line` into arguments and runs it.
    pub fn run_line(&mut self, line: &str) -> Reply {
        let argv = split_args(line).unwrap_or_else(|e| panic!("bad command line {line:?}: {e}"));
        self.run(&argv)
    }

    /// What the leader's expiry timer does: one op deleting every key whose
    /// deadline has passed.
    pub fn sweep(&mut self) {
        for (db, expired) in self.state.expired_keys(self.now, usize::MAX) {
            self.apply(&Op::in_db(db, Op::ExpireKeys(expired)))
                .expect("expiry applies");
        }
    }
}

fn set_op_seed(op: &mut Op, value: u64) {
    if let Op::Set(SetOp::Pop { seed, .. }) = op {
        *seed = value;
    }
}

/// Splits a command line into arguments (see the module doc).
pub(crate) fn split_args(line: &str) -> Result<Vec<Bytes>, String> {
    let mut args = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b' ' {
            i += 1;
            continue;
        }
        let mut arg = Vec::new();
        if bytes[i] == b'"' {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err("unterminated quote".into()),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let (byte, used) = unescape(&bytes[i + 1..])?;
                        arg.push(byte);
                        i += 1 + used;
                    }
                    Some(&c) => {
                        arg.push(c);
                        i += 1;
                    }
                }
            }
            if i < bytes.len() && bytes[i] != b' ' {
                return Err("a closing quote must end the argument".into());
            }
        } else {
            while i < bytes.len() && bytes[i] != b' ' {
                arg.push(bytes[i]);
                i += 1;
            }
        }
        args.push(Bytes::from(arg));
    }
    Ok(args)
}

/// The byte an escape after `\` stands for, and how many bytes it used.
fn unescape(rest: &[u8]) -> Result<(u8, usize), String> {
    match rest {
        [b'"', ..] => Ok((b'"', 1)),
        [b'\\', ..] => Ok((b'\\', 1)),
        [b'n', ..] => Ok((b'\n', 1)),
        [b'r', ..] => Ok((b'\r', 1)),
        [b't', ..] => Ok((b'\t', 1)),
        [b'x', h, l, ..] => {
            let hex = std::str::from_utf8(&[*h, *l])
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or("bad \\x escape")?;
            Ok((hex, 3))
        }
        _ => Err("unknown escape".into()),
    }
}

/// A bulk string as the scripts write it: quoted, with escapes.
fn quote(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

/// Renders a reply on one line; `sorted` sorts every array, set and map.
pub(crate) fn render(reply: &Reply, sorted: bool) -> String {
    let list = |items: Vec<String>| {
        let mut items = items;
        if sorted {
            items.sort();
        }
        items.join(", ")
    };
    match reply {
        Reply::Simple(s) => s.to_string(),
        Reply::Error(e) => format!("(error) {e}"),
        Reply::Int(i) => format!("(integer) {i}"),
        Reply::Bulk(b) => quote(b),
        Reply::Nil | Reply::NilArray => "(nil)".to_owned(),
        Reply::Array(items) => format!(
            "[{}]",
            list(items.iter().map(|r| render(r, sorted)).collect())
        ),
        Reply::Set(items) => format!(
            "~[{}]",
            list(items.iter().map(|r| render(r, sorted)).collect())
        ),
        Reply::Frames(replies) => format!(
            "frames[{}]",
            replies
                .iter()
                .map(|r| render(r, sorted))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Reply::Push(items) => format!(
            ">[{}]",
            list(items.iter().map(|r| render(r, sorted)).collect())
        ),
        Reply::Map(pairs) | Reply::KeyedArrays(pairs) => format!(
            "{{{}}}",
            list(
                pairs
                    .iter()
                    .map(|(k, v)| format!("{}: {}", render(k, sorted), render(v, sorted)))
                    .collect()
            )
        ),
        Reply::Pairs(pairs) => format!(
            "[{}]",
            list(
                pairs
                    .iter()
                    .flat_map(|(k, v)| [render(k, sorted), render(v, sorted)])
                    .collect()
            )
        ),
        Reply::Double(d) => format!("(double) {}", crate::resp::format_double(*d)),
        Reply::HumanDouble(d) => format!("(double) {}", crate::resp::format_human_double(*d)),
        Reply::Bool(b) => format!("({b})"),
        Reply::BigNumber(n) => format!("(big number) {n}"),
        Reply::Verbatim { text, .. } => quote(text),
    }
}

/// Runs a script; returns how many commands ran and one message per reply
/// that differs.
pub(crate) fn run_script(name: &str, script: &str) -> (usize, Vec<String>) {
    let mut harness = Harness::new(0);
    let mut failures = Vec::new();
    let mut commands = 0;
    let mut lines = script
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end()))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    while let Some((line_no, line)) = lines.next() {
        let at = format!("{name}:{line_no}");
        if let Some(directive) = line.strip_prefix('@') {
            let mut words = directive.split_whitespace();
            let number = |w: Option<&str>| -> u64 {
                w.and_then(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("{at}: directive needs a number"))
            };
            match words.next() {
                Some("time") => harness.now = number(words.next()),
                Some("advance") => harness.now += number(words.next()),
                Some("seed") => harness.seed = Some(number(words.next())),
                Some("sweep") => harness.sweep(),
                Some("tick") => {
                    harness.apply(&Op::Tick).expect("tick applies");
                }
                Some("grace") => {
                    let ms = number(words.next());
                    harness.apply(&Op::Grace { ms }).expect("grace applies");
                }
                Some("unblock") => {
                    let seq = number(words.next());
                    harness
                        .apply(&Op::Unblock(Ticket { node: 1, seq }))
                        .expect("unblock applies");
                }
                Some("interrupt") => {
                    let seq = number(words.next());
                    let error = match words.next() {
                        Some("timeout") => false,
                        Some("error") => true,
                        other => panic!("{at}: interrupt with timeout or error, not {other:?}"),
                    };
                    let expected = number(words.next()) as i64;
                    let ticket = Ticket { node: 1, seq };
                    let outcome = harness.apply(&Op::Interrupt { ticket, error });
                    assert_eq!(outcome, Ok(Outcome::Int(expected)), "{at}: {line}");
                }
                _ => panic!("{at}: unknown directive {line:?}"),
            }
            continue;
        }
        if let Some(seq) = line.strip_prefix("< ") {
            let seq: u64 = seq
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{at}: bad ticket"));
            let Some((_, expected)) = lines.next() else {
                panic!("{at}: answer check without an expected reply");
            };
            commands += 1;
            let got = harness
                .answered
                .remove(&seq)
                .map_or_else(|| "(still waiting)".to_owned(), |r| render(&r, false));
            if got != expected {
                failures.push(format!(
                    "{at}: answer to waiting command {seq}\n    expected: {expected}\n    got:      {got}"
                ));
            }
            continue;
        }
        let (sorted, command) = if let Some(c) = line.strip_prefix("~> ") {
            (true, c)
        } else if let Some(c) = line.strip_prefix("> ") {
            (false, c)
        } else {
            panic!("{at}: expected a command or a directive, found {line:?}");
        };
        let Some((_, expected)) = lines.next() else {
            panic!("{at}: command without an expected reply");
        };
        commands += 1;
        let got = render(&harness.run_line(command), sorted);
        // Script lines lose trailing blanks; some replies end in one.
        if got.trim_end() != expected {
            failures.push(format!(
                "{at}: {command}\n    expected: {expected}\n    got:      {got}"
            ));
        }
    }
    for (seq, reply) in &harness.answered {
        failures.push(format!(
            "{name}: waiting command {seq} was answered {} but the script never checks it",
            render(reply, false)
        ));
    }
    (commands, failures)
}

fn check(name: &str, script: &str) {
    let (commands, failures) = run_script(name, script);
    assert!(commands > 0, "{name} has no commands");
    assert!(
        failures.is_empty(),
        "{} golden line(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn golden_strings() {
    check(
        "strings.txt",
        include_str!("../../tests/golden/strings.txt"),
    );
}

#[test]
fn golden_keys() {
    check("keys.txt", include_str!("../../tests/golden/keys.txt"));
}

#[test]
fn golden_dump() {
    check("dump.txt", include_str!("../../tests/golden/dump.txt"));
}

#[test]
fn golden_databases() {
    check(
        "databases.txt",
        include_str!("../../tests/golden/databases.txt"),
    );
}

#[test]
fn golden_sort() {
    check("sort.txt", include_str!("../../tests/golden/sort.txt"));
}

#[test]
fn golden_hashes() {
    check("hashes.txt", include_str!("../../tests/golden/hashes.txt"));
}

#[test]
fn golden_sets() {
    check("sets.txt", include_str!("../../tests/golden/sets.txt"));
}

#[test]
fn golden_lists() {
    check("lists.txt", include_str!("../../tests/golden/lists.txt"));
}

#[test]
fn golden_zsets() {
    check("zsets.txt", include_str!("../../tests/golden/zsets.txt"));
}

#[test]
fn golden_hyperloglog() {
    check(
        "hyperloglog.txt",
        include_str!("../../tests/golden/hyperloglog.txt"),
    );
}

#[test]
fn golden_locks() {
    check("locks.txt", include_str!("../../tests/golden/locks.txt"));
}

#[test]
fn golden_sessions() {
    check(
        "sessions.txt",
        include_str!("../../tests/golden/sessions.txt"),
    );
}

#[test]
fn golden_registry() {
    check(
        "registry.txt",
        include_str!("../../tests/golden/registry.txt"),
    );
}

#[test]
fn golden_ratelimit() {
    check(
        "ratelimit.txt",
        include_str!("../../tests/golden/ratelimit.txt"),
    );
}

#[test]
fn golden_breakers() {
    check(
        "breakers.txt",
        include_str!("../../tests/golden/breakers.txt"),
    );
}

#[test]
fn golden_queues() {
    check("queues.txt", include_str!("../../tests/golden/queues.txt"));
}

#[test]
fn the_harness_reports_a_wrong_line() {
    let (commands, failures) = run_script("inline", "> SET k v\nOK\n> GET k\n\"w\"\n");
    assert_eq!(commands, 2);
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].starts_with("inline:3: GET k"),
        "{}",
        failures[0]
    );
}

#[test]
fn arguments_split_with_quotes_and_escapes() {
    let args = split_args(r#"SET "a b" "\x00\"\\" x"#).unwrap();
    assert_eq!(
        args,
        vec![
            Bytes::from_static(b"SET"),
            Bytes::from_static(b"a b"),
            Bytes::from_static(b"\0\"\\"),
            Bytes::from_static(b"x"),
        ]
    );
    assert_eq!(quote(b"\0\"\\a"), r#""\x00\"\\a""#);
    assert!(split_args(r#"GET "open"#).is_err());
}

#[test]
fn golden_scripting() {
    check(
        "scripting.txt",
        include_str!("../../tests/golden/scripting.txt"),
    );
}

#[test]
fn golden_streams() {
    check(
        "streams.txt",
        include_str!("../../tests/golden/streams.txt"),
    );
}
