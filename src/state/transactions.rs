//! MULTI/EXEC as one log entry, and the fingerprints behind WATCH.
//!
//! A client's queued commands travel as one [`Transaction`] op, so every
//! replica applies them back to back at the same point of the log: nothing
//! interleaves, whichever nodes the other clients write through.
//!
//! WATCH cannot keep per-connection state in the replicated state (a
//! connection lives on one node), so it reads a fingerprint of each watched
//! key instead: a hash of the value and its deadline, 0 for a missing or
//! expired key. EXEC carries those fingerprints, and the entry aborts when a
//! key's fingerprint at apply time differs. That is decided from replicated
//! data alone, so every replica decides alike, and it catches a change made
//! through any node. Unlike Redis, a key rewritten to exactly what it held
//! (or deleted and recreated the same) does not abort: the transaction's
//! reads are then still true when it applies, so the outcome is the same as
//! if it had run just before the rewrite.
//!
//! Inside a transaction a blocking command does not block (as in Redis): it
//! answers at once what it would answer on timeout.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::db::{stable_hash, Db, Entry, Value};
use super::lists::ListOp;
use super::locks::LockOp;
use super::queues::QueueOp;
use super::zsets::ZSetOp;
use super::{Op, OpResult, Outcome, Query, State, Ticket};

/// One queued command of a transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Queued {
    Write(Op),
    Read(Query),
    /// A command the node answers itself (PING, ECHO, …) or one whose
    /// arguments failed to parse at EXEC: it holds a place in the results,
    /// which the node fills in.
    Local,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// Watched keys and their fingerprints when WATCH read them.
    pub watched: Vec<(Bytes, u64)>,
    pub commands: Vec<Queued>,
}

/// The fingerprint of `key` at `now`: 0 when it is missing or expired.
pub fn fingerprint(db: &Db, key: &Bytes, now: u64) -> u64 {
    db.get(key, now).map_or(0, entry_fingerprint)
}

/// A hash of an entry's value, type and deadline; never 0.
pub(super) fn entry_fingerprint(entry: &Entry) -> u64 {
    let mut h = stable_hash(b"concord-entry");
    mix_entry(entry, &mut |bytes| {
        h = stable_hash(&[h.to_le_bytes().as_slice(), bytes].concat());
    });
    h.max(1)
}

/// Feeds an entry's deadline, type and contents, in a fixed order, to `mix`
/// (the keyspace digest and the WATCH fingerprint share it).
pub(super) fn mix_entry(entry: &Entry, mix: &mut dyn FnMut(&[u8])) {
    mix(&entry.expires_at().unwrap_or(0).to_le_bytes());
    match &entry.value {
        Value::String(s) => mix(s),
        Value::Hash(fields) => {
            for (f, v) in fields.iter() {
                mix(f);
                mix(v);
            }
        }
        Value::Set(members) => {
            mix(b"set");
            for (m, ()) in members.iter() {
                mix(m);
            }
        }
        Value::List(elements) => {
            mix(b"list");
            for e in elements.iter() {
                mix(e);
            }
        }
        Value::ZSet(members) => {
            mix(b"zset");
            for (m, score) in members.iter() {
                mix(m);
                mix(&score.to_bits().to_le_bytes());
            }
        }
        Value::Stream(stream) => {
            mix(b"stream");
            mix(&postcard::to_stdvec(stream).expect("streams serialize"));
        }
    }
}

/// Applies a transaction: the null array if a watched key changed, else one
/// result per queued command (errors in place, as Redis's EXEC answers).
pub(super) fn apply(state: &mut State, now: u64, tx: &Transaction) -> OpResult {
    if tx
        .watched
        .iter()
        .any(|(key, seen)| fingerprint(&state.db, key, now) != *seen)
    {
        return Ok(Outcome::NilArray);
    }
    let results = tx
        .commands
        .iter()
        .map(|queued| {
            let result = match queued {
                Queued::Write(op) => match state.apply_at(now, op) {
                    Ok(Outcome::Blocked { ticket, .. }) => Ok(time_out_now(state, op, ticket)),
                    other => other,
                },
                Queued::Read(query) => state.read(query, now),
                Queued::Local => Ok(Outcome::Nil),
            };
            result.unwrap_or_else(Outcome::Error)
        })
        .collect();
    Ok(Outcome::Array(results))
}

/// Ends the wait a blocking command inside a transaction just began, as if
/// its timeout passed now; returns its timeout answer. (Its give-up timer,
/// if it had one, later finds nobody waiting and does nothing.)
fn time_out_now(state: &mut State, op: &Op, ticket: Ticket) -> Outcome {
    let mark = state.wakeups.len();
    if let Op::InDb { db, op } = op {
        let (db, op) = (*db, op.as_ref());
        let now = state.clock_ms;
        return state.in_db(db, now, |state| time_out_now(state, op, ticket));
    }
    match op {
        Op::List(ListOp::BlockingPop { .. } | ListOp::BlockingMove { .. }) => {
            super::lists::give_up(state, ticket)
        }
        Op::ZSet(ZSetOp::BlockingPop { .. }) => super::zsets::give_up(state, ticket),
        Op::Lock(LockOp::Acquire { name, .. }) => super::locks::give_up(state, name, ticket),
        Op::Queue(QueueOp::Claim { queue, .. }) => super::queues::give_up(state, queue, ticket),
        _ => {}
    }
    let at = state.wakeups[mark..]
        .iter()
        .position(|w| w.ticket == ticket)
        .map(|i| mark + i);
    at.map_or(Outcome::Nil, |i| state.wakeups.remove(i).outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{prepare, Request};
    use crate::state::StateError;

    fn queued(line: &str) -> Queued {
        let argv: Vec<Bytes> = line
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        match prepare(&argv) {
            Ok(Request::Write(op, ..)) => Queued::Write(op),
            Ok(Request::Read(query, ..)) => Queued::Read(query),
            Ok(Request::Local(_)) | Err(_) => Queued::Local,
        }
    }

    fn write(state: &mut State, index: &mut u64, now: u64, line: &str) -> OpResult {
        let Queued::Write(op) = queued(line) else {
            panic!("{line} is not a write")
        };
        *index += 1;
        state.apply(*index, now, &op)
    }

    fn exec(state: &mut State, index: &mut u64, now: u64, tx: Transaction) -> OpResult {
        *index += 1;
        state.apply(*index, now, &Op::Exec(tx))
    }

    #[test]
    fn fingerprints_follow_value_type_and_deadline() {
        let mut state = State::new();
        let mut index = 0;
        let key = Bytes::from("k");
        assert_eq!(fingerprint(&state.db, &key, 1000), 0);
        write(&mut state, &mut index, 1000, "SET k v").unwrap();
        let first = fingerprint(&state.db, &key, 1000);
        assert_ne!(first, 0);
        write(&mut state, &mut index, 1001, "SET k v").unwrap();
        assert_eq!(fingerprint(&state.db, &key, 1001), first, "same value");
        write(&mut state, &mut index, 1002, "PEXPIRE k 100").unwrap();
        let with_deadline = fingerprint(&state.db, &key, 1002);
        assert_ne!(with_deadline, first);
        assert_eq!(fingerprint(&state.db, &key, 1102), 0, "expired");
        write(&mut state, &mut index, 1200, "RPUSH k v").unwrap();
        assert_ne!(fingerprint(&state.db, &key, 1200), first, "a list of v");
    }

    #[test]
    fn a_changed_watch_aborts_and_errors_answer_in_place() {
        let mut state = State::new();
        let mut index = 0;
        write(&mut state, &mut index, 1000, "SET k 1").unwrap();
        let seen = fingerprint(&state.db, &Bytes::from("k"), 1000);
        let tx = Transaction {
            watched: vec![(Bytes::from("k"), seen)],
            commands: vec![
                queued("INCR k"),
                queued("LPUSH k x"),
                queued("GET k"),
                queued("PING"),
            ],
        };
        write(&mut state, &mut index, 1001, "SET k 2").unwrap();
        assert_eq!(
            exec(&mut state, &mut index, 1002, tx.clone()),
            Ok(Outcome::NilArray)
        );
        assert_eq!(
            state.db().get(&Bytes::from("k"), 1002).unwrap().value,
            Value::String("2".into())
        );

        let seen = fingerprint(&state.db, &Bytes::from("k"), 1002);
        let tx = Transaction {
            watched: vec![(Bytes::from("k"), seen)],
            ..tx
        };
        let Ok(Outcome::Array(results)) = exec(&mut state, &mut index, 1003, tx) else {
            panic!("the transaction applies")
        };
        assert_eq!(results[0], Outcome::Int(3));
        assert!(matches!(results[1], Outcome::Error(StateError::WrongType)));
        assert_eq!(results[2], Outcome::Bulk("3".into()));
        assert_eq!(results[3], Outcome::Nil, "a local command's placeholder");
    }

    #[test]
    fn waiters_are_served_after_the_whole_transaction() {
        let mut state = State::new();
        let mut index = 0;
        let blpop = |state: &mut State, index: &mut u64, ticket: u64| {
            let Queued::Write(mut op) = queued("BLPOP list 0") else {
                panic!("BLPOP is a write")
            };
            *op.ticket_mut().expect("BLPOP waits") = Ticket {
                node: 1,
                seq: ticket,
            };
            *index += 1;
            state.apply(*index, 1000, &op)
        };
        assert!(matches!(
            blpop(&mut state, &mut index, 1),
            Ok(Outcome::Blocked { .. })
        ));
        // Pushed and deleted within one transaction: nobody wakes.
        let tx = Transaction {
            watched: Vec::new(),
            commands: vec![queued("LPUSH list a"), queued("DEL list")],
        };
        exec(&mut state, &mut index, 1001, tx).unwrap();
        assert!(state.take_wakeups().is_empty());
        // Three pushes in one transaction: the waiter sees their end state.
        let tx = Transaction {
            watched: Vec::new(),
            commands: vec![
                queued("LPUSH list a"),
                queued("LPUSH list b"),
                queued("LPUSH list c"),
            ],
        };
        exec(&mut state, &mut index, 1002, tx).unwrap();
        let wakeups = state.take_wakeups();
        assert_eq!(wakeups.len(), 1);
        assert_eq!(
            wakeups[0].outcome,
            Outcome::Array(vec![
                Outcome::Bulk("list".into()),
                Outcome::Bulk("c".into())
            ])
        );
    }

    #[test]
    fn blocking_commands_answer_at_once_and_leave_nobody_waiting() {
        let mut state = State::new();
        let mut index = 0;
        let tx = Transaction {
            watched: Vec::new(),
            commands: vec![
                queued("BLPOP a b 0"),
                queued("BLMOVE a b LEFT RIGHT 5"),
                queued("BZPOPMAX z 0"),
                queued("QUEUE.CLAIM q worker 1000 BLOCK 0"),
            ],
        };
        let Ok(Outcome::Array(results)) = exec(&mut state, &mut index, 1000, tx) else {
            panic!("the transaction applies")
        };
        assert_eq!(
            results,
            vec![
                Outcome::NilArray,
                Outcome::Nil,
                Outcome::Nil,
                Outcome::Array(Vec::new())
            ]
        );
        assert!(state.take_wakeups().is_empty(), "no answer is owed later");
        assert!(!state.is_waiting(Ticket::default()));
        write(&mut state, &mut index, 1001, "RPUSH a x").unwrap();
        assert_eq!(
            state
                .db()
                .get(&Bytes::from("a"), 1001)
                .map(|e| e.value.type_name()),
            Some("list")
        );
    }
}
