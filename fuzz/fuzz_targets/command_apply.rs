//! Random command sequences through the command table
//! (`concord::command::prepare`) into the state machine, as the server
//! runs them: writes become ops applied at increasing log indexes with the
//! entry's time, reads are queries answered at the current time.
//!
//! Three states run side by side:
//! * `a` applies each op as parsed;
//! * `b` applies each op after it went through the log's encoding
//!   (`raft::payload::encode`/`decode`), as a follower does, and is
//!   replaced now and then by a state restored from a snapshot of `a`;
//! * a small model of string keys (`mk1`, `mk2`) predicts SET, GET, DEL,
//!   APPEND, INCRBY, STRLEN and EXISTS on them.
//!
//! Checks: no panic; `a` and `b` answer every command and wake every
//! waiter alike and end with the same `digest()`; the model's
//! predictions hold.
//!
//! Input, a byte at a time: `0x00..=0xEF` picks, with the byte after it, a
//! command of the table (a subcommand counts as one), then a count byte
//! and that many argument tokens (see `concord_fuzz::commands::Input`); `0xF0..=0xF3` advance the clock;
//! `0xF4` the leader's expiry sweep; `0xF5` a timer tick; `0xF6` a new
//! leader's grace; `0xF7` and `0xF8` drop or interrupt a waiting command;
//! `0xF9` replaces `b` with a snapshot of `a`; `0xFA..=0xFF` a command on
//! the model's keys (the next byte picks which command and which key).
//!
//! Scripts are not run: the states have no Lua host (EVAL and FCALL
//! answer an error), so no script can loop forever.

#![no_main]

use bytes::Bytes;
use concord::command::{self, Request};
use concord::raft::payload;
use concord::resp::Reply;
use concord::state::sets::SetOp;
use concord::state::{Op, State, Ticket};
use concord_fuzz::commands::{tables, Input};
use libfuzzer_sys::fuzz_target;

const START: u64 = 1_700_000_000_000;
const MODEL_KEYS: [&str; 2] = ["mk1", "mk2"];
/// What the model knows of a key.
#[derive(Clone, Debug, PartialEq)]
enum Known {
    Unknown,
    Absent,
    Str(Vec<u8>),
}

struct Run {
    a: State,
    b: State,
    index: u64,
    now: u64,
    tickets: u64,
    model: [Known; 2],
}

fn canonical_i64(s: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(s).ok()?;
    let v: i64 = text.parse().ok()?;
    (v.to_string() == text).then_some(v)
}

impl Run {
    fn forget(&mut self) {
        self.model = [Known::Unknown, Known::Unknown];
    }

    /// Applies `op` to both states; their results must agree.
    fn apply(&mut self, op: &Op) -> concord::state::OpResult {
        self.index += 1;
        let through_log = payload::decode(&payload::encode(self.now, std::slice::from_ref(op)))
            .expect("an op decodes from its log payload");
        assert_eq!(through_log.ops.len(), 1);
        let ra = self.a.apply(self.index, self.now, op);
        let rb = self
            .b
            .apply(self.index, through_log.time_ms, &through_log.ops[0]);
        assert_eq!(
            format!("{ra:?}"),
            format!("{rb:?}"),
            "replicas answer {op:?} differently"
        );
        let wa = self.a.take_wakeups();
        let wb = self.b.take_wakeups();
        assert_eq!(wa, wb, "replicas wake different waiters for {op:?}");
        assert_eq!(
            format!("{:?}", self.a.take_deliveries()),
            format!("{:?}", self.b.take_deliveries()),
            "replicas deliver different messages for {op:?}"
        );
        ra
    }

    /// Runs a command line on both states; returns A's reply.
    fn run(&mut self, argv: &[Bytes]) -> Reply {
        match command::prepare(argv) {
            Err(e) => Reply::Error(e.to_string()),
            Ok(Request::Write(mut op, spec, reply)) => {
                if let Op::Set(SetOp::Pop { seed, .. }) = &mut op {
                    *seed = 7;
                }
                if let Some(ticket) = op.ticket_mut() {
                    self.tickets += 1;
                    *ticket = Ticket {
                        node: 1,
                        seq: self.tickets,
                    };
                }
                let result = self.apply(&op);
                reply(spec.name, result)
            }
            Ok(Request::Read(mut query, spec, reply)) => {
                query.set_seed(7);
                let ra = reply(spec.name, self.a.read(&query, self.now));
                let rb = reply(spec.name, self.b.read(&query, self.now));
                assert_eq!(ra, rb, "replicas answer {argv:?} differently");
                ra
            }
            Ok(Request::Local(_)) => Reply::Nil,
        }
    }

    /// A command on the model's keys, with its reply checked.
    fn model_step(&mut self, kind: u8, input: &mut Input) {
        let k = usize::from(input.byte().unwrap_or(0) & 1);
        let key = Bytes::from_static(MODEL_KEYS[k].as_bytes());
        let value = input.token();
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        let known = self.model[k].clone();
        let string = |s: &[u8]| Reply::Bulk(Bytes::copy_from_slice(s));
        match kind % 7 {
            0 => {
                let r = self.run(&[b("SET"), key, value.clone()]);
                assert_eq!(r, Reply::Simple("OK".into()));
                self.model[k] = Known::Str(value.to_vec());
            }
            1 => {
                let r = self.run(&[b("GET"), key]);
                match known {
                    Known::Absent => assert_eq!(r, Reply::Nil),
                    Known::Str(s) => assert_eq!(r, string(&s)),
                    Known::Unknown => {}
                }
            }
            2 => {
                let r = self.run(&[b("DEL"), key]);
                match known {
                    Known::Absent => assert_eq!(r, Reply::Int(0)),
                    Known::Str(_) => assert_eq!(r, Reply::Int(1)),
                    Known::Unknown => {}
                }
                self.model[k] = Known::Absent;
            }
            3 => {
                let r = self.run(&[b("APPEND"), key, value.clone()]);
                let mut s = match known {
                    Known::Absent => Vec::new(),
                    Known::Str(s) => s,
                    Known::Unknown => return,
                };
                s.extend_from_slice(&value);
                assert_eq!(r, Reply::Int(s.len() as i64));
                self.model[k] = Known::Str(s);
            }
            4 => {
                let r = self.run(&[b("INCRBY"), key, value.clone()]);
                let current = match &known {
                    Known::Absent => Some(0),
                    Known::Str(s) => canonical_i64(s),
                    Known::Unknown => return,
                };
                match current
                    .zip(canonical_i64(&value))
                    .and_then(|(c, d)| c.checked_add(d))
                {
                    Some(n) => {
                        assert_eq!(r, Reply::Int(n));
                        self.model[k] = Known::Str(n.to_string().into_bytes());
                    }
                    None => assert!(matches!(r, Reply::Error(_)), "INCRBY gave {r:?}"),
                }
            }
            5 => {
                let r = self.run(&[b("STRLEN"), key]);
                match known {
                    Known::Absent => assert_eq!(r, Reply::Int(0)),
                    Known::Str(s) => assert_eq!(r, Reply::Int(s.len() as i64)),
                    Known::Unknown => {}
                }
            }
            _ => {
                let r = self.run(&[b("EXISTS"), key]);
                match known {
                    Known::Absent => assert_eq!(r, Reply::Int(0)),
                    Known::Str(_) => assert_eq!(r, Reply::Int(1)),
                    Known::Unknown => {}
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let tables = tables();
    let mut input = Input(data);
    let mut run = Run {
        a: State::new(),
        b: State::new(),
        index: 0,
        now: START,
        tickets: 0,
        model: [Known::Absent, Known::Absent],
    };
    let mut steps = 0;
    while let Some(b) = input.byte() {
        steps += 1;
        if steps > 200 {
            break;
        }
        match b {
            0x00..=0xEF => {
                let pick = usize::from(b) * 256 + usize::from(input.byte().unwrap_or(0));
                let mut argv = tables.commands[pick % tables.commands.len()].clone();
                let argc = usize::from(input.byte().unwrap_or(0) % 9);
                for _ in 0..argc {
                    argv.push(input.token());
                }
                let _ = run.run(&argv);
                // Anything but the model's own commands may touch its keys.
                run.forget();
            }
            0xF0..=0xF3 => {
                let unit = [1u64, 100, 10_000, 1_000_000][usize::from(b - 0xF0)];
                run.now += unit * u64::from(input.byte().unwrap_or(1));
                run.forget();
            }
            0xF4 => {
                let expired = run.a.expired_keys(run.now, usize::MAX);
                assert_eq!(expired, run.b.expired_keys(run.now, usize::MAX));
                for (db, keys) in expired {
                    let _ = run.apply(&Op::in_db(db, Op::ExpireKeys(keys)));
                }
                run.forget();
            }
            0xF5 => {
                let _ = run.apply(&Op::Tick);
                run.forget();
            }
            0xF6 => {
                let ms = 100 * u64::from(input.byte().unwrap_or(0));
                let _ = run.apply(&Op::Grace { ms });
                run.forget();
            }
            0xF7 | 0xF8 => {
                let seq = u64::from(input.byte().unwrap_or(0)) % (run.tickets + 1);
                let ticket = Ticket { node: 1, seq };
                let op = if b == 0xF7 {
                    Op::Unblock(ticket)
                } else {
                    Op::Interrupt {
                        ticket,
                        error: seq % 2 == 0,
                    }
                };
                let _ = run.apply(&op);
                run.forget();
            }
            0xF9 => {
                let snapshot = run.a.encode_snapshot();
                run.b = State::decode_snapshot(&snapshot).expect("a snapshot decodes");
                assert_eq!(run.a.digest(), run.b.digest(), "a restored state differs");
            }
            _ => run.model_step(
                (b - 0xFA).wrapping_add(input.byte().unwrap_or(0)),
                &mut input,
            ),
        }
    }
    assert_eq!(run.a.digest(), run.b.digest(), "replicas diverged");
});
