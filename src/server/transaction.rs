//! MULTI/EXEC/WATCH on a connection.
//!
//! Between MULTI and EXEC the connection only checks each command's name
//! and arity (as Redis does at queue time: an unknown command or a wrong
//! argument count dooms the transaction) and answers QUEUED. EXEC parses
//! them and sends them as one [`Op::Exec`] entry, so the whole transaction
//! applies at one point of the log on every replica; a command whose
//! arguments do not parse answers its error in place, as Redis reports
//! errors found while executing.
//!
//! WATCH reads a fingerprint of each key through the connection's read
//! barrier; EXEC carries them and aborts (nil) if any key's fingerprint
//! differs when the entry applies (see `state::transactions`). Commands the
//! node answers itself (PING, ECHO, CLIENT …) run when EXEC is received and
//! take their place among the results.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::connection::Conn;
use super::local::{self, LaterReply, Local};
use super::Shared;
use crate::command::{self, CommandError, Flag, ReplyFn, Request};
use crate::raft::Answer;
use crate::resp::Reply;
use crate::state::transactions::{Queued, Transaction};
use crate::state::{Op, Outcome, Query};

/// The commands queued since MULTI.
#[derive(Default)]
pub(super) struct Queue {
    commands: Vec<Vec<Bytes>>,
    /// A command was refused while queueing: EXEC will answer EXECABORT.
    pub(super) failed: bool,
}

/// The commands the connection queued since MULTI (none outside one).
pub(super) fn queued(conn: &Conn) -> &[Vec<Bytes>] {
    conn.tx.as_ref().map_or(&[], |tx| &tx.commands)
}

/// The fingerprints one WATCH read, once its answer arrived; `Err` if the
/// read failed (EXEC then aborts, since nothing was watched for sure).
pub(super) type WatchCell = Arc<Mutex<Option<Result<Vec<(Bytes, u64)>, ()>>>>;

/// The keys a connection watches.
#[derive(Default)]
pub(super) struct Watches {
    /// Each WATCH's answer, with the database it watched in.
    cells: Vec<(u32, WatchCell)>,
}

/// How the connection must treat a request, given its transaction state.
pub(super) enum Route {
    /// Not a transaction matter: the usual path.
    Normal,
    /// Inside MULTI: queue it.
    Queue,
    /// MULTI, EXEC, DISCARD, WATCH or UNWATCH, arity checked.
    Control(&'static str),
}

pub(super) fn route(conn: &Conn, argv: &[Bytes]) -> Route {
    let spec = argv.first().and_then(|name| command::lookup(name));
    let control = spec
        .filter(|spec| spec.arity_ok(argv.len()))
        .map(|spec| spec.name)
        .filter(|name| match *name {
            "multi" | "exec" | "discard" | "watch" => true,
            // Inside MULTI, UNWATCH is queued like any command (as Redis).
            "unwatch" => conn.tx.is_none(),
            _ => false,
        });
    match (control, &conn.tx) {
        (Some(name), _) => Route::Control(name),
        // QUIT and RESET act at once even inside MULTI.
        (None, Some(_)) if !matches!(spec.map(|s| s.name), Some("quit" | "reset")) => Route::Queue,
        _ => Route::Normal,
    }
}

/// Queues a command after checking its name and arity.
/// `out_of_memory`: the node refuses writes that may grow the dataset
/// (see [`command::denied_when_out_of_memory`]); such a command is refused
/// here and the transaction aborts, as in Redis.
pub(super) fn queue(conn: &mut Conn, argv: &[Bytes], out_of_memory: bool) -> Reply {
    let tx = conn.tx.get_or_insert_with(Queue::default);
    let checked = match command::lookup(&argv[0]) {
        None => Err(CommandError::unknown_command(argv)),
        Some(spec) if !spec.arity_ok(argv.len()) => {
            Err(CommandError::WrongArity(spec.name.to_owned()))
        }
        Some(spec) => command::resolve_subcommand(spec, argv).and_then(|spec| {
            if spec.has(Flag::NoMulti) {
                Err(CommandError::InvalidArgument(
                    "Command not allowed inside a transaction".to_owned(),
                ))
            } else if out_of_memory && command::denied_when_out_of_memory(spec) {
                Err(CommandError::OutOfMemory)
            } else {
                Ok(())
            }
        }),
    };
    match checked {
        Ok(()) => {
            tx.commands.push(argv.to_vec());
            Reply::Simple("QUEUED".into())
        }
        Err(e) => {
            tx.failed = true;
            Reply::error(e.to_string())
        }
    }
}

/// True while a WATCH's answer has not arrived: EXEC must wait for it.
pub(super) fn watch_unresolved(conn: &Conn) -> bool {
    conn.watches
        .cells
        .iter()
        .any(|(_, cell)| cell.lock().expect("watch cell").is_none())
}

/// What a control command needs from the connection's submission path.
pub(super) enum Control {
    Reply(Reply),
    /// A read to submit; its answer fills the cell and WATCH answers OK.
    Watch {
        query: Query,
        keys: Vec<Bytes>,
        cell: WatchCell,
    },
    /// The transaction's entry to submit; its answer is rendered with
    /// `replies`.
    Exec {
        op: Op,
        replies: Vec<TxReply>,
        /// Transactions wrapped around it (see [`unnest`]).
        nesting: usize,
    },
}

/// How one result of EXEC's array is rendered.
pub(super) enum TxReply {
    Command(&'static str, ReplyFn),
    Local(LaterReply),
}

pub(super) fn control(
    conn: &mut Conn,
    name: &'static str,
    argv: &[Bytes],
    shared: &Shared,
) -> Control {
    match name {
        "multi" if conn.tx.is_some() => {
            Control::Reply(Reply::error("ERR MULTI calls can not be nested".to_owned()))
        }
        "multi" => {
            conn.tx = Some(Queue::default());
            Control::Reply(Reply::ok())
        }
        "discard" => match conn.tx.take() {
            None => Control::Reply(Reply::error("ERR DISCARD without MULTI".to_owned())),
            Some(_) => {
                conn.watches.cells.clear();
                Control::Reply(Reply::ok())
            }
        },
        "unwatch" => {
            conn.watches.cells.clear();
            Control::Reply(Reply::ok())
        }
        "watch" if conn.tx.is_some() => Control::Reply(Reply::error(
            "ERR WATCH inside MULTI is not allowed".to_owned(),
        )),
        "watch" => {
            let keys = argv[1..].to_vec();
            let cell = WatchCell::default();
            conn.watches.cells.push((conn.db, cell.clone()));
            Control::Watch {
                query: Query::in_db(conn.db, Query::Fingerprints(keys.clone())),
                keys,
                cell,
            }
        }
        _ => exec(conn, shared),
    }
}

fn exec(conn: &mut Conn, shared: &Shared) -> Control {
    let Some(tx) = conn.tx.take() else {
        return Control::Reply(Reply::error("ERR EXEC without MULTI".to_owned()));
    };
    let cells = std::mem::take(&mut conn.watches.cells);
    if tx.failed {
        return Control::Reply(Reply::error(
            "EXECABORT Transaction discarded because of previous errors.".to_owned(),
        ));
    }
    // Queued before the dataset went over `maxmemory`: refused now, as
    // Redis refuses an EXEC whose commands may grow it.
    if shared.node.status().out_of_memory()
        && tx.commands.iter().any(|argv| {
            command::lookup(&argv[0])
                .and_then(|spec| command::resolve_subcommand(spec, argv).ok())
                .is_some_and(command::denied_when_out_of_memory)
        })
    {
        // As Redis aborts it: EXECABORT, then the reason without its dash.
        return Control::Reply(Reply::error(format!(
            "EXECABORT Transaction discarded because of: {}",
            CommandError::OutOfMemory
        )));
    }
    // The watched keys by database.
    let mut watched: BTreeMap<u32, Vec<(Bytes, u64)>> = BTreeMap::new();
    for (db, cell) in cells {
        match cell.lock().expect("watch cell").take() {
            Some(Ok(pairs)) => watched.entry(db).or_default().extend(pairs),
            // A WATCH that could not read its keys watched nothing for
            // sure: abort, as if they changed.
            _ => return Control::Reply(Reply::NilArray),
        }
    }
    if tx.commands.is_empty() && watched.is_empty() {
        return Control::Reply(Reply::Array(Vec::new()));
    }
    // The transaction applies in the database of its first watches (or
    // the connection's, without any); its commands name their own
    // database where it differs, as a SELECT queued among them changes it.
    let mut watched = watched.into_iter();
    let (outer, first) = watched.next().unwrap_or((conn.db, Vec::new()));
    let wrap = |db: u32, op: Op| {
        if db == outer {
            op
        } else {
            Op::InDb {
                db,
                op: Box::new(op),
            }
        }
    };
    let wrap_query = |db: u32, query: Query| {
        if db == outer {
            query
        } else {
            Query::InDb {
                db,
                query: Box::new(query),
            }
        }
    };
    let mut commands = Vec::with_capacity(tx.commands.len());
    let mut replies = Vec::with_capacity(tx.commands.len());
    for argv in &tx.commands {
        let (queued, reply) = match command::prepare(argv) {
            Ok(Request::Write(op, spec, reply)) => (
                Queued::Write(wrap(conn.db, conn.principal.wrap_op(op))),
                TxReply::Command(spec.name, reply),
            ),
            Ok(Request::Read(query, spec, reply)) => (
                Queued::Read(wrap_query(conn.db, conn.principal.wrap_query(query))),
                TxReply::Command(spec.name, reply),
            ),
            Ok(Request::Local(spec)) => (
                Queued::Local,
                TxReply::Local(later(local::execute(conn, spec, argv, shared))),
            ),
            Err(e) => {
                let reply = Reply::error(e.to_string());
                (
                    Queued::Local,
                    TxReply::Local(Box::pin(async move { reply })),
                )
            }
        };
        commands.push(queued);
        replies.push(reply);
    }
    let mut op = Op::Exec(Transaction {
        watched: first,
        commands,
    });
    // Keys watched in other databases: each database's check wraps the
    // transaction in one more, whose single result is the inner one's.
    // Inside another database's check the inner one's database is named
    // even when it is 0.
    let mut op_db = outer;
    let mut nesting = 0;
    for (db, keys) in watched {
        let inner = Op::InDb {
            db: op_db,
            op: Box::new(op),
        };
        op = Op::Exec(Transaction {
            watched: keys,
            commands: vec![Queued::Write(inner)],
        });
        op_db = db;
        nesting += 1;
    }
    let op = Op::in_db(op_db, op);
    Control::Exec {
        op,
        replies,
        nesting,
    }
}

fn later(local: Local) -> LaterReply {
    match local {
        Local::Now(reply) => Box::pin(async move { reply }),
        Local::Wait(rx) => Box::pin(async move {
            match crate::raft::answer(rx).await {
                Ok(result) => command::standard_reply("exec", result),
                Err(e) => Reply::error(e.to_string()),
            }
        }),
        Local::Later(future) => future,
    }
}

/// WATCH's reply, once its read is answered: records the fingerprints.
pub(super) fn watched(answer: Answer, keys: Vec<Bytes>, cell: &WatchCell) -> Reply {
    let (recorded, reply) = match answer {
        Ok(Ok(Outcome::Array(prints))) if prints.len() == keys.len() => {
            let pairs = keys
                .into_iter()
                .zip(prints)
                .map(|(key, print)| match print {
                    Outcome::Int(print) => (key, print as u64),
                    _ => (key, 0),
                })
                .collect();
            (Ok(pairs), Reply::ok())
        }
        Ok(Err(e)) => (Err(()), Reply::error(e.to_string())),
        Err(e) => (Err(()), Reply::error(e.to_string())),
        Ok(Ok(_)) => (Err(()), Reply::error("ERR WATCH could not read its keys")),
    };
    *cell.lock().expect("watch cell") = Some(recorded);
    reply
}

/// The answer of the transaction inside `nesting` others, each of which
/// checked the keys watched in one more database: the null array if one
/// of them aborted.
pub(super) fn unnest(mut answer: Answer, nesting: usize) -> Answer {
    for _ in 0..nesting {
        answer = match answer {
            Ok(Ok(Outcome::Array(mut results))) if results.len() == 1 => {
                match results.pop().expect("one result") {
                    Outcome::Error(e) => Ok(Err(e)),
                    inner => Ok(Ok(inner)),
                }
            }
            other => return other,
        };
    }
    answer
}

/// EXEC's reply: each result rendered by its command, or nil if aborted.
pub(super) async fn executed(answer: Answer, replies: Vec<TxReply>) -> Reply {
    let results = match answer {
        Ok(Ok(Outcome::Array(results))) if results.len() == replies.len() => results,
        Ok(Ok(Outcome::NilArray)) => return Reply::NilArray,
        Ok(Ok(_)) => return Reply::error("ERR EXEC answer does not match its commands"),
        Ok(Err(e)) => return Reply::error(e.to_string()),
        Err(e) => return Reply::error(e.to_string()),
    };
    let mut out = Vec::with_capacity(replies.len());
    for (result, reply) in results.into_iter().zip(replies) {
        out.push(match reply {
            TxReply::Command(name, render) => render(
                name,
                match result {
                    Outcome::Error(e) => Err(e),
                    other => Ok(other),
                },
            ),
            TxReply::Local(future) => future.await,
        });
    }
    Reply::Array(out)
}
