//! Property tests of the state machine.
//!
//! 1. Random sequences of commands run through the command table against a
//!    [`State`] and against a deliberately simple model (a `HashMap` of
//!    values and deadlines, written from Redis's documented behaviour, not
//!    from the state's code); every reply and, after every step, what GET,
//!    HGETALL, TYPE, TTL, PTTL, EXISTS, KEYS and DBSIZE report must agree.
//! 2. A snapshot decodes to an equal state that answers every read the same
//!    way and keeps doing so under further writes.
//! 3. A snapshot encoded a chunk at a time while writes apply decodes to
//!    the state as it was when the snapshot began, and the writes land on
//!    the live state as they would without a snapshot.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use proptest::prelude::*;

use super::golden::{render, Harness};
use super::State;
use crate::resp::Reply;

const KEYS: [&str; 4] = ["a", "b", "c", "d"];
const FIELDS: [&str; 3] = ["f", "g", "h"];
const VALUES: [&str; 7] = ["1", "-7", "0", "x", "", "9223372036854775800", "hello"];
const START: u64 = 1_700_000_000_000;

const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

#[derive(Clone, Debug)]
enum Step {
    Set {
        key: usize,
        value: usize,
        px: Option<u64>,
    },
    Del {
        keys: Vec<usize>,
    },
    IncrBy {
        key: usize,
        delta: i64,
    },
    Append {
        key: usize,
        value: usize,
    },
    /// EXPIRE (seconds) or PEXPIRE (`ms`).
    Expire {
        key: usize,
        amount: i64,
        ms: bool,
    },
    Persist {
        key: usize,
    },
    HSet {
        key: usize,
        pairs: Vec<(usize, usize)>,
    },
    HDel {
        key: usize,
        fields: Vec<usize>,
    },
    HIncrBy {
        key: usize,
        field: usize,
        delta: i64,
    },
    FlushAll,
    Advance(u64),
    /// The leader's expiry timer: deletes every key whose deadline passed.
    Sweep,
}

fn delta() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -10i64..10,
        1 => Just(i64::MAX),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX - 5),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let key = 0..KEYS.len();
    let value = 0..VALUES.len();
    let field = 0..FIELDS.len();
    prop_oneof![
        4 => (key.clone(), value.clone(), prop::option::of(1u64..300))
            .prop_map(|(key, value, px)| Step::Set { key, value, px }),
        2 => prop::collection::vec(key.clone(), 1..4).prop_map(|keys| Step::Del { keys }),
        3 => (key.clone(), delta()).prop_map(|(key, delta)| Step::IncrBy { key, delta }),
        2 => (key.clone(), value.clone()).prop_map(|(key, value)| Step::Append { key, value }),
        2 => (key.clone(), -2i64..4).prop_map(|(key, amount)| Step::Expire { key, amount, ms: false }),
        3 => (key.clone(), -50i64..300).prop_map(|(key, amount)| Step::Expire { key, amount, ms: true }),
        1 => key.clone().prop_map(|key| Step::Persist { key }),
        4 => (key.clone(), prop::collection::vec((field.clone(), value), 1..4))
            .prop_map(|(key, pairs)| Step::HSet { key, pairs }),
        2 => (key.clone(), prop::collection::vec(field.clone(), 1..4))
            .prop_map(|(key, fields)| Step::HDel { key, fields }),
        3 => (key, field, delta()).prop_map(|(key, field, delta)| Step::HIncrBy { key, field, delta }),
        1 => Just(Step::FlushAll),
        4 => (0u64..250).prop_map(Step::Advance),
        1 => Just(Step::Sweep),
    ]
}

/// The command line a step sends, or None for clock and expiry steps.
fn command(step: &Step) -> Option<Vec<Bytes>> {
    let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let mut argv = Vec::new();
    match step {
        Step::Set { key, value, px } => {
            argv.extend([b("SET"), b(KEYS[*key]), b(VALUES[*value])]);
            if let Some(px) = px {
                argv.extend([b("PX"), b(&px.to_string())]);
            }
        }
        Step::Del { keys } => {
            argv.push(b("DEL"));
            argv.extend(keys.iter().map(|k| b(KEYS[*k])));
        }
        Step::IncrBy { key, delta } => {
            argv.extend([b("INCRBY"), b(KEYS[*key]), b(&delta.to_string())]);
        }
        Step::Append { key, value } => {
            argv.extend([b("APPEND"), b(KEYS[*key]), b(VALUES[*value])]);
        }
        Step::Expire { key, amount, ms } => {
            let name = if *ms { "PEXPIRE" } else { "EXPIRE" };
            argv.extend([b(name), b(KEYS[*key]), b(&amount.to_string())]);
        }
        Step::Persist { key } => argv.extend([b("PERSIST"), b(KEYS[*key])]),
        Step::HSet { key, pairs } => {
            argv.extend([b("HSET"), b(KEYS[*key])]);
            for (f, v) in pairs {
                argv.extend([b(FIELDS[*f]), b(VALUES[*v])]);
            }
        }
        Step::HDel { key, fields } => {
            argv.extend([b("HDEL"), b(KEYS[*key])]);
            argv.extend(fields.iter().map(|f| b(FIELDS[*f])));
        }
        Step::HIncrBy { key, field, delta } => {
            argv.extend([
                b("HINCRBY"),
                b(KEYS[*key]),
                b(FIELDS[*field]),
                b(&delta.to_string()),
            ]);
        }
        Step::FlushAll => argv.push(b("FLUSHALL")),
        Step::Advance(_) | Step::Sweep => return None,
    }
    Some(argv)
}

#[derive(Clone, Debug)]
enum MValue {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
}

/// Redis reads an integer only in its canonical spelling ("01", "+1",
/// "-0" and " 1" are not integers), which makes the check a round trip.
fn canonical_i64(s: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(s).ok()?;
    let value: i64 = text.parse().ok()?;
    (value.to_string() == text).then_some(value)
}

fn int(i: i64) -> Reply {
    Reply::Int(i)
}

fn err(text: &str) -> Reply {
    Reply::Error(text.to_owned())
}

fn bulk(bytes: &[u8]) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(bytes))
}

/// The model: values and absolute deadlines, with expired entries treated
/// as absent whenever they are looked at.
#[derive(Default)]
struct Model {
    now: u64,
    map: HashMap<Vec<u8>, (MValue, Option<u64>)>,
    /// True when the state holds no expired key: right after a sweep or a
    /// flush, until the clock moves. Only then can DBSIZE be predicted.
    swept: bool,
}

impl Model {
    fn live(&mut self, key: &str) -> Option<&mut (MValue, Option<u64>)> {
        let now = self.now;
        if matches!(self.map.get(key.as_bytes()), Some((_, Some(at))) if *at <= now) {
            self.map.remove(key.as_bytes());
        }
        self.map.get_mut(key.as_bytes())
    }

    fn live_keys(&mut self) -> Vec<String> {
        KEYS.iter()
            .filter(|k| self.live(k).is_some())
            .map(|k| k.to_string())
            .collect()
    }

    /// The reply Redis gives to `step`, applied to the model.
    fn apply(&mut self, step: &Step) -> Option<Reply> {
        let now = self.now;
        Some(match step {
            Step::Set { key, value, px } => {
                let entry = (MValue::Str(VALUES[*value].into()), px.map(|p| now + p));
                self.map.insert(KEYS[*key].into(), entry);
                Reply::ok()
            }
            Step::Del { keys } => {
                let mut removed = 0;
                for k in keys {
                    if self.live(KEYS[*k]).is_some() {
                        self.map.remove(KEYS[*k].as_bytes());
                        removed += 1;
                    }
                }
                int(removed)
            }
            Step::IncrBy { key, delta } => {
                let (current, deadline) = match self.live(KEYS[*key]) {
                    None => (0, None),
                    Some((MValue::Hash(_), _)) => return Some(err(WRONGTYPE)),
                    Some((MValue::Str(s), at)) => match canonical_i64(s) {
                        Some(v) => (v, *at),
                        None => return Some(err("ERR value is not an integer or out of range")),
                    },
                };
                let Some(next) = current.checked_add(*delta) else {
                    return Some(err("ERR increment or decrement would overflow"));
                };
                let entry = (MValue::Str(next.to_string().into()), deadline);
                self.map.insert(KEYS[*key].into(), entry);
                int(next)
            }
            Step::Append { key, value } => {
                let tail = VALUES[*value].as_bytes();
                match self.live(KEYS[*key]) {
                    None => {
                        self.map
                            .insert(KEYS[*key].into(), (MValue::Str(tail.to_vec()), None));
                        int(tail.len() as i64)
                    }
                    Some((MValue::Hash(_), _)) => err(WRONGTYPE),
                    Some((MValue::Str(s), _)) => {
                        s.extend_from_slice(tail);
                        int(s.len() as i64)
                    }
                }
            }
            Step::Expire { key, amount, ms } => {
                let when = now as i64 + amount * if *ms { 1 } else { 1000 };
                match self.live(KEYS[*key]) {
                    None => int(0),
                    Some(_) if when <= now as i64 => {
                        self.map.remove(KEYS[*key].as_bytes());
                        int(1)
                    }
                    Some((_, at)) => {
                        *at = Some(when as u64);
                        int(1)
                    }
                }
            }
            Step::Persist { key } => match self.live(KEYS[*key]) {
                Some((_, at)) if at.is_some() => {
                    *at = None;
                    int(1)
                }
                _ => int(0),
            },
            Step::HSet { key, pairs } => {
                if matches!(self.live(KEYS[*key]), Some((MValue::Str(_), _))) {
                    return Some(err(WRONGTYPE));
                }
                let empty = (MValue::Hash(BTreeMap::new()), None);
                let (MValue::Hash(hash), _) = self.map.entry(KEYS[*key].into()).or_insert(empty)
                else {
                    unreachable!("checked above");
                };
                let added = pairs
                    .iter()
                    .filter(|(f, v)| hash.insert(FIELDS[*f].into(), VALUES[*v].into()).is_none())
                    .count();
                int(added as i64)
            }
            Step::HDel { key, fields } => {
                let Some((value, _)) = self.live(KEYS[*key]) else {
                    return Some(int(0));
                };
                let MValue::Hash(hash) = value else {
                    return Some(err(WRONGTYPE));
                };
                let removed = fields
                    .iter()
                    .filter(|f| hash.remove(FIELDS[**f].as_bytes()).is_some())
                    .count();
                if hash.is_empty() {
                    self.map.remove(KEYS[*key].as_bytes());
                }
                int(removed as i64)
            }
            Step::HIncrBy { key, field, delta } => {
                let field = FIELDS[*field].as_bytes();
                let current = match self.live(KEYS[*key]) {
                    Some((MValue::Str(_), _)) => return Some(err(WRONGTYPE)),
                    Some((MValue::Hash(h), _)) => h.get(field).cloned(),
                    None => None,
                };
                let current = match current {
                    None => 0,
                    Some(v) => match canonical_i64(&v) {
                        Some(v) => v,
                        None => return Some(err("ERR hash value is not an integer")),
                    },
                };
                let Some(next) = current.checked_add(*delta) else {
                    return Some(err("ERR increment or decrement would overflow"));
                };
                let empty = (MValue::Hash(BTreeMap::new()), None);
                let (MValue::Hash(hash), _) = self.map.entry(KEYS[*key].into()).or_insert(empty)
                else {
                    unreachable!("checked above");
                };
                hash.insert(field.to_vec(), next.to_string().into());
                int(next)
            }
            Step::FlushAll => {
                self.map.clear();
                self.swept = true;
                Reply::ok()
            }
            Step::Advance(ms) => {
                self.now += ms;
                self.swept = false;
                return None;
            }
            Step::Sweep => {
                self.swept = true;
                return None;
            }
        })
    }

    /// What each observation command must answer now.
    fn observe(&mut self, key: &str) -> Vec<(String, Reply)> {
        let now = self.now;
        let entry = self.live(key).cloned();
        let (get, hgetall, type_name) = match &entry {
            None => (Reply::Nil, Reply::Map(Vec::new()), "none"),
            Some((MValue::Str(s), _)) => (bulk(s), err(WRONGTYPE), "string"),
            Some((MValue::Hash(h), _)) => (
                err(WRONGTYPE),
                Reply::Map(h.iter().map(|(f, v)| (bulk(f), bulk(v))).collect()),
                "hash",
            ),
        };
        let (pttl, ttl) = match &entry {
            None => (-2, -2),
            Some((_, None)) => (-1, -1),
            Some((_, Some(at))) => {
                let left = (at - now) as i64;
                (left, (left + 500) / 1000)
            }
        };
        vec![
            (format!("GET {key}"), get),
            (format!("HGETALL {key}"), hgetall),
            (
                format!("TYPE {key}"),
                Reply::Simple(type_name.to_owned().into()),
            ),
            (format!("PTTL {key}"), int(pttl)),
            (format!("TTL {key}"), int(ttl)),
        ]
    }
}

fn run_model(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut state = Harness::new(START);
    let mut model = Model {
        now: START,
        ..Model::default()
    };
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Advance(ms) => state.now += ms,
            Step::Sweep => state.sweep(),
            _ => {}
        }
        let expected = model.apply(step);
        if let (Some(argv), Some(expected)) = (command(step), expected) {
            let got = state.run(&argv);
            prop_assert_eq!(
                render(&got, false),
                render(&expected, false),
                "step {}: {:?}",
                i,
                step
            );
        }
        for key in KEYS {
            for (line, expected) in model.observe(key) {
                let got = state.run_line(&line);
                prop_assert_eq!(
                    render(&got, true),
                    render(&expected, true),
                    "after step {} ({:?}): {}",
                    i,
                    step,
                    line
                );
            }
        }
        let live = model.live_keys();
        let got = state.run_line("EXISTS a b c d");
        prop_assert_eq!(got, int(live.len() as i64), "after step {}: EXISTS", i);
        let keys = Reply::Array(live.iter().map(|k| bulk(k.as_bytes())).collect());
        let got = state.run_line("KEYS *");
        prop_assert_eq!(render(&got, true), render(&keys, true), "after step {}", i);
        if model.swept {
            let got = state.run_line("DBSIZE");
            prop_assert_eq!(got, int(live.len() as i64), "after step {}: DBSIZE", i);
        }
    }
    Ok(())
}

/// Every read the families offer, over every key of the pool.
fn read_battery() -> Vec<String> {
    let mut lines = vec![
        "KEYS *".to_owned(),
        "DBSIZE".to_owned(),
        "EXISTS a b c d".to_owned(),
        "SCAN 0 COUNT 1000".to_owned(),
        "SCAN 0 COUNT 2".to_owned(),
        "SCAN 0 COUNT 1000 TYPE hash".to_owned(),
        "SCAN 0 COUNT 1000 MATCH [ab]".to_owned(),
    ];
    for seed in 0..4 {
        lines.push(format!("RANDOMKEY @{seed}"));
    }
    for key in KEYS {
        for read in [
            "GET",
            "STRLEN",
            "TYPE",
            "TTL",
            "PTTL",
            "EXPIRETIME",
            "PEXPIRETIME",
            "HGETALL",
            "HKEYS",
            "HVALS",
            "HLEN",
        ] {
            lines.push(format!("{read} {key}"));
        }
        lines.push(format!("GETRANGE {key} 1 -1"));
        lines.push(format!("HSCAN {key} 0 COUNT 1"));
        lines.push(format!("HSCAN {key} 0 COUNT 100"));
        lines.push(format!("HRANDFIELD {key} @3"));
        lines.push(format!("HRANDFIELD {key} -5 WITHVALUES @1"));
        lines.push(format!("HRANDFIELD {key} 2 @2"));
        for field in FIELDS {
            lines.push(format!("HGET {key} {field}"));
            lines.push(format!("HSTRLEN {key} {field}"));
        }
    }
    lines
}

/// Runs a read line; a trailing `@n` fixes the seed of a random read.
fn read_line(harness: &mut Harness, line: &str) -> Reply {
    match line.rsplit_once(" @") {
        Some((command, seed)) => {
            harness.seed = Some(seed.parse().expect("seed"));
            let reply = harness.run_line(command);
            harness.seed = None;
            reply
        }
        None => harness.run_line(line),
    }
}

fn run_snapshot(steps: &[Step], after: &[Step]) -> Result<(), TestCaseError> {
    let mut original = Harness::new(START);
    for step in steps {
        match step {
            Step::Advance(ms) => original.now += ms,
            Step::Sweep => original.sweep(),
            _ => {
                original.run(&command(step).expect("a command"));
            }
        }
    }
    let bytes = original.state.encode_snapshot();
    let restored = State::decode_snapshot(&bytes).expect("the snapshot decodes");
    prop_assert!(restored == original.state, "restored state differs");
    // The same from a reader (a file), and from the previous format.
    let streamed = State::decode_snapshot_from(&bytes[..], bytes.len() as u64);
    prop_assert!(streamed.expect("decodes from a reader") == original.state);
    let v5 = original.state.encode_snapshot_v5();
    let legacy = State::decode_snapshot_from(&v5[..], v5.len() as u64);
    prop_assert!(legacy.expect("format 5 decodes") == original.state);
    let mut restored = {
        let mut harness = Harness::new(original.now);
        harness.state = restored;
        harness.index = original.index;
        harness
    };
    // The same reads now, a little later, and much later (every deadline
    // passed); then the same writes keep both in step.
    for advance in [0, 150, 10_000] {
        original.now += advance;
        restored.now += advance;
        for line in read_battery() {
            let a = read_line(&mut original, &line);
            let b = read_line(&mut restored, &line);
            prop_assert_eq!(a, b, "{} after {} ms", line, advance);
        }
    }
    for step in after {
        match step {
            Step::Advance(ms) => {
                original.now += ms;
                restored.now += ms;
            }
            Step::Sweep => {
                original.sweep();
                restored.sweep();
            }
            _ => {
                let argv = command(step).expect("a command");
                prop_assert_eq!(original.run(&argv), restored.run(&argv), "{:?}", step);
            }
        }
    }
    prop_assert!(restored.state == original.state, "states diverged");
    Ok(())
}

/// What happens between two chunks of a snapshot being encoded.
#[derive(Clone, Debug)]
enum Turn {
    /// Encode until at least this many more bytes are out.
    Chunk(usize),
    /// Apply a write.
    Write(String),
}

fn turn(keys: usize) -> impl Strategy<Value = Turn> {
    let key = move || (0..keys.max(1)).prop_map(|i| format!("k{i}"));
    prop_oneof![
        3 => (1usize..300).prop_map(Turn::Chunk),
        2 => (key(), "[a-z]{0,12}").prop_map(|(k, v)| Turn::Write(format!("SET {k} x{v}"))),
        1 => key().prop_map(|k| Turn::Write(format!("DEL {k}"))),
        1 => (key(), 0..3usize).prop_map(|(k, f)| Turn::Write(format!("HSET {k} f{f} y"))),
        1 => key().prop_map(|k| Turn::Write(format!("PEXPIRE {k} 50000"))),
        1 => key().prop_map(|k| Turn::Write(format!("PERSIST {k}"))),
        1 => (key(), key()).prop_map(|(a, b)| Turn::Write(format!("RENAME {a} {b}"))),
        1 => key().prop_map(|k| Turn::Write(format!("RPUSH l{k} a b"))),
        1 => key().prop_map(|k| Turn::Write(format!("SADD s{k} m n"))),
        1 => (key(), "[a-z]{1,8}").prop_map(|(k, v)| Turn::Write(format!("SET {v} {k}"))),
        1 => Just(Turn::Write("FLUSHALL".to_owned())),
        1 => Just(Turn::Write("FLUSHDB".to_owned())),
        2 => (0u32..3).prop_map(|d| Turn::Write(format!("SELECT {d}"))),
        1 => (0u32..3, 0u32..3).prop_map(|(a, b)| Turn::Write(format!("SWAPDB {a} {b}"))),
        1 => (key(), 0u32..3).prop_map(|(k, d)| Turn::Write(format!("MOVE {k} {d}"))),
        1 => (key(), 0u32..3).prop_map(|(k, d)| Turn::Write(format!("COPY {k} c{k} DB {d}"))),
    ]
}

fn run_chunked_snapshot(keys: usize, turns: &[Turn]) -> Result<(), TestCaseError> {
    let mut live = Harness::new(START);
    let mut plain = Harness::new(START);
    for i in 0..keys {
        let line = match i % 4 {
            0 => format!("SET k{i} v{i}"),
            1 => format!("HSET k{i} a 1 b 2"),
            2 => format!("SET k{i} v{i} PX 100000"),
            _ => format!("ZADD k{i} 1 a 2 b"),
        };
        // Every third key in database 1 or 2.
        let db = match i % 3 {
            2 => 1 + i % 2,
            _ => 0,
        };
        for h in [&mut live, &mut plain] {
            h.run_line(&format!("SELECT {db}"));
            h.run_line(&line);
            h.run_line("SELECT 0");
        }
    }
    let at_start = live.state.clone();
    let mut bytes = live.state.begin_snapshot();
    let mut done = false;
    for t in turns {
        match t {
            Turn::Chunk(budget) if !done => {
                let mut out = Vec::new();
                done = live.state.snapshot_chunk(&mut out, *budget);
                bytes.extend(out);
            }
            Turn::Chunk(_) => {}
            Turn::Write(line) => {
                let a = live.run_line(line);
                let b = plain.run_line(line);
                prop_assert_eq!(a, b, "{}", line);
            }
        }
    }
    while !done {
        done = live.state.snapshot_chunk(&mut bytes, 1);
    }
    prop_assert!(!live.state.snapshot_in_progress());
    let restored = State::decode_snapshot(&bytes).expect("the snapshot decodes");
    prop_assert!(
        restored == at_start,
        "the snapshot is not the state at its start"
    );
    prop_assert!(
        live.state == plain.state,
        "the snapshot changed the live state"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_snapshot_taken_in_chunks_is_the_state_at_its_start(
        (keys, turns) in (0usize..40).prop_flat_map(|keys| {
            (Just(keys), prop::collection::vec(turn(keys), 0..80))
        }),
    ) {
        run_chunked_snapshot(keys, &turns)?;
    }

    #[test]
    fn the_state_agrees_with_the_model(steps in prop::collection::vec(step(), 1..60)) {
        run_model(&steps)?;
    }

    #[test]
    fn a_snapshot_restores_an_equal_state(
        steps in prop::collection::vec(step(), 0..60),
        after in prop::collection::vec(step(), 0..20),
    ) {
        run_snapshot(&steps, &after)?;
    }
}

#[test]
fn canonical_integers_are_redis_integers() {
    use super::strings::parse_i64;
    for s in [
        "0",
        "-1",
        "12",
        "01",
        "-0",
        "+1",
        " 1",
        "",
        "x",
        "9223372036854775808",
    ] {
        assert_eq!(
            canonical_i64(s.as_bytes()),
            parse_i64(s.as_bytes()),
            "{s:?}"
        );
    }
}

/// Every cut of a snapshot is refused with an error, none decodes to a
/// state or panics; so is any single flipped byte that postcard notices.
#[test]
fn a_cut_snapshot_is_refused() {
    let mut h = Harness::new(START);
    for line in [
        "SET a 1",
        "HSET h f v g w",
        "RPUSH l x y z",
        "SADD s m n",
        "ZADD z 1 a 2 b",
        "SET t v PX 5000",
    ] {
        h.run_line(line);
    }
    let bytes = h.state.encode_snapshot();
    for cut in 0..bytes.len() {
        assert!(
            State::decode_snapshot(&bytes[..cut]).is_err(),
            "a snapshot cut at {cut} of {} decoded",
            bytes.len()
        );
        assert!(State::decode_snapshot_from(&bytes[..cut], bytes.len() as u64).is_err());
    }
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0xff;
        let _ = State::decode_snapshot(&bad);
    }
}
