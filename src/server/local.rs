//! Commands answered by the server from connection and node state, without
//! going through raft: connection handling, INFO, CONFIG, COMMAND, TIME, ROLE.

use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::connection::Conn;
use super::{info, Shared};
use crate::command::docs::{command_docs, command_info};
use crate::command::{self, is, CommandError, CommandSpec};
use crate::raft::{ReadMode, Role};
use crate::resp::{Protocol, Reply};
use crate::state::strings::parse_i64;
use crate::state::{glob, Op};

pub use crate::REDIS_VERSION;

fn bulk(s: impl AsRef<[u8]>) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(s.as_ref()))
}

fn err(e: CommandError) -> Reply {
    Reply::error(e.to_string())
}

/// A reply computed later, off the connection's task.
pub(super) type LaterReply = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>;

/// What a local command answers: now, when the driver answers, or later.
pub(super) enum Local {
    Now(Reply),
    Wait(tokio::sync::oneshot::Receiver<crate::raft::Answer>),
    Later(LaterReply),
}

pub(super) fn execute(
    conn: &mut Conn,
    spec: &'static CommandSpec,
    argv: &[Bytes],
    shared: &Shared,
) -> Local {
    match spec.name {
        name if name.starts_with("raft.") => super::cluster::execute(conn, name, argv, shared),
        "subscribe" | "psubscribe" | "ssubscribe" | "unsubscribe" | "punsubscribe"
        | "sunsubscribe" => super::pubsub::execute(conn, spec.name, argv, shared),
        "readmode" | "readonly" | "readwrite" => {
            Local::Now(super::cluster::read_mode(conn, spec.name, argv))
        }
        name if name.starts_with("acl|") => super::acl::execute(conn, name, argv, shared),
        name if name.starts_with("slowlog") || name.starts_with("latency") => {
            Local::Now(super::slowlog::execute(name, argv, shared))
        }
        "config|get" => super::params::config_get(conn, &argv[2..], shared),
        "config|set" => super::params::config_set(&argv[2..], shared),
        "client|unblock" => client_unblock(argv, shared),
        "client|pause" => Local::Now(client_pause(argv, shared)),
        "monitor" => {
            conn.monitor = Some(shared.monitor.subscribe());
            Local::Now(Reply::ok())
        }
        "client|unpause" => {
            shared.pause.unpause();
            shared.node.status().set_paused_until(0);
            Local::Now(Reply::ok())
        }
        "save" => super::cluster::snapshot(shared, |_| Reply::ok()),
        "auth" => match &argv[1..] {
            [pass] => super::acl::auth(conn, None, pass, shared),
            [user, pass] => super::acl::auth(conn, Some(user), pass, shared),
            _ => Local::Now(err(CommandError::Syntax)),
        },
        "hello" => hello(conn, argv, shared),
        "bgsave" => bgsave(argv, shared),
        "shutdown" => shutdown(conn, argv, shared),
        "object|encoding" | "object|idletime" | "object|freq" => {
            object(conn, spec.name, &argv[2], shared)
        }
        // Ten million elements through two HLLs: a second or so of CPU,
        // kept off the connection's task.
        "pfselftest" => Local::Later(Box::pin(async move {
            let seed = rand::random::<u64>();
            match tokio::task::spawn_blocking(move || crate::state::hll::self_test(seed)).await {
                Ok(Ok(())) => Reply::ok(),
                Ok(Err(e)) => Reply::error(e),
                Err(e) => Reply::error(format!("ERR PFSELFTEST did not finish: {e}")),
            }
        })),
        "wait" | "waitaof" => wait(argv, shared),
        "role" if shared.node.status().role() == Role::Leader => {
            let node = shared.node.clone();
            Local::Later(Box::pin(async move {
                match node.info().await {
                    Ok(info) => leader_role(&node, &info),
                    Err(e) => Reply::error(e.to_string()),
                }
            }))
        }
        _ => Local::Now(execute_now(conn, spec, argv, shared)),
    }
}

fn execute_now(
    conn: &mut Conn,
    spec: &'static CommandSpec,
    argv: &[Bytes],
    shared: &Shared,
) -> Reply {
    match spec.name {
        // A RESP2 connection that listens answers PING as a message.
        "ping"
            if argv.len() <= 2
                && conn.protocol == Protocol::Resp2
                && conn.subs.as_ref().is_some_and(|s| s.active()) =>
        {
            let text = argv.get(1).cloned().unwrap_or_default();
            Reply::Array(vec![Reply::bulk("pong"), Reply::Bulk(text)])
        }
        "ping" => match argv.len() {
            1 => Reply::Simple("PONG".into()),
            2 => Reply::Bulk(argv[1].clone()),
            _ => err(CommandError::WrongArity("ping".into())),
        },
        "echo" => Reply::Bulk(argv[1].clone()),
        "cluster" => Reply::error("ERR This instance has cluster support disabled"),

        "quit" => {
            conn.closing = true;
            Reply::ok()
        }
        "reset" => {
            super::pubsub::leave(conn, shared);
            conn.tx = None;
            conn.watches = Default::default();
            conn.protocol = Protocol::Resp2;
            conn.read_mode = ReadMode::default();
            conn.db = 0;
            conn.monitor = None;
            set_client(shared, conn.id, |c| {
                c.name.clear();
                c.resp = 2;
                c.db = 0;
            });
            Reply::Simple("RESET".into())
        }
        "select" => match parse_i64(&argv[1]).map(crate::command::keys::database) {
            None => err(CommandError::NotInteger),
            Some(Err(e)) => err(e),
            Some(Ok(db)) => {
                conn.db = db;
                set_client(shared, conn.id, |c| c.db = db);
                Reply::ok()
            }
        },
        "client" => client_help(),
        "acl" => super::acl::help(),
        name if name.starts_with("client|") => client(conn, name, argv, shared),
        "info" => info::render(shared, &argv[1..], conn.protocol),
        "config" => config_help(),
        "debug" => help(&[
            "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DIGEST",
            "    Return a digest of the keyspace.",
        ]),
        "config|resetstat" => {
            for counter in [
                &shared.stats.commands_processed,
                &shared.stats.connections_received,
                &shared.stats.rejected_connections,
                &shared.stats.protocol_errors,
                &shared.stats.errors_replied,
            ] {
                counter.store(0, Ordering::Relaxed);
            }
            shared.stats.error_codes.reset();
            shared.stats.calls.reset();
            Reply::ok()
        }
        "config|rewrite" => Reply::ok(),
        "config|help" => config_help(),
        "command" => Reply::Array(command::all().map(command_info).collect()),
        "command|count" => Reply::Int(command::all().count() as i64),
        "command|info" => {
            if argv.len() == 2 {
                return Reply::Array(command::all().map(command_info).collect());
            }
            Reply::Array(
                argv[2..]
                    .iter()
                    .map(|name| command::lookup(name).map_or(Reply::NilArray, command_info))
                    .collect(),
            )
        }
        "command|docs" => {
            let specs: Vec<&CommandSpec> = if argv.len() == 2 {
                command::all().collect()
            } else {
                argv[2..]
                    .iter()
                    .filter_map(|n| command::lookup(n))
                    .collect()
            };
            Reply::Map(specs.into_iter().map(command_docs).collect())
        }
        "command|list" => command_list(&argv[2..]),
        "command|getkeys" => command_getkeys(&argv[2..]),
        "command|help" => help(&[
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands.",
            "INFO [<command-name> ...]",
            "    Return details about the named commands.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about the named commands.",
            "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
            "    Return a list of command names.",
            "GETKEYS <full-command>",
            "    Return the keys from a full command.",
            "HELP",
            "    Print this help.",
        ]),
        "lolwut" => lolwut(argv),
        "time" => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            Reply::Array(vec![
                bulk(now.as_secs().to_string()),
                bulk(now.subsec_micros().to_string()),
            ])
        }
        "role" => role(shared),
        "object" | "object|help" => help(&[
            "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "ENCODING <key>",
            "    Return the kind of internal representation Redis would use for the value.",
            "FREQ <key>",
            "    Return the access frequency index of the key (under an LFU maxmemory-policy).",
            "HELP",
            "    Print this help.",
            "IDLETIME <key>",
            "    Return the idle time of the key (under an LRU or random maxmemory-policy).",
            "REFCOUNT <key>",
            "    Return the number of references of the value associated with the key.",
        ]),
        "memory" | "memory|help" => help(&[
            "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "USAGE <key> [SAMPLES <count>]",
            "    Return an estimate of the memory usage of the key and its value.",
            "HELP",
            "    Print this help.",
        ]),
        other => Reply::error(format!(
            "ERR command '{other}' is declared but not served by this node"
        )),
    }
}

/// OBJECT ENCODING, IDLETIME and FREQ: reads that depend on this node's
/// parameters (the encoding limits, the maxmemory policy).
fn object(conn: &Conn, name: &str, key: &Bytes, shared: &Shared) -> Local {
    use crate::state::keys::{EncodingLimits, KeyQuery, ObjectField};
    let params = shared.params.read().expect("params lock");
    let lfu = params
        .get("maxmemory-policy")
        .is_some_and(|p| p.contains("lfu"));
    let field = match name {
        "object|idletime" if lfu => {
            return Local::Now(Reply::error(
                "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ))
        }
        "object|freq" if !lfu => {
            return Local::Now(Reply::error(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ))
        }
        "object|idletime" => ObjectField::IdleTime,
        "object|freq" => ObjectField::Freq,
        _ => {
            let defaults = EncodingLimits::default();
            let limit = |name: &str, default: u64| {
                params
                    .get(name)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(default)
            };
            ObjectField::Encoding(EncodingLimits {
                hash_entries: limit("hash-max-listpack-entries", defaults.hash_entries),
                hash_value: limit("hash-max-listpack-value", defaults.hash_value),
                set_intset_entries: limit("set-max-intset-entries", defaults.set_intset_entries),
                zset_entries: limit("zset-max-listpack-entries", defaults.zset_entries),
                zset_value: limit("zset-max-listpack-value", defaults.zset_value),
            })
        }
    };
    let query = crate::state::Query::in_db(
        conn.db,
        crate::state::Query::Key(KeyQuery::Object {
            key: key.clone(),
            field,
        }),
    );
    Local::Wait(shared.node.read(query, conn.read_mode))
}

pub(super) fn help(lines: &[&str]) -> Reply {
    Reply::Array(
        lines
            .iter()
            .map(|l| Reply::Simple((*l).to_owned().into()))
            .collect(),
    )
}

pub(super) fn set_client(shared: &Shared, id: u64, f: impl FnOnce(&mut super::ClientInfo)) {
    if let Some(info) = shared.clients.lock().expect("clients lock").get_mut(&id) {
        f(info);
    }
}

fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]. With AUTH, the
/// login may wait for a read barrier (see `acl::auth`); the reply follows it.
fn hello(conn: &mut Conn, argv: &[Bytes], shared: &Shared) -> Local {
    match hello_now(conn, argv, shared) {
        Ok(reply) => Local::Now(reply),
        Err(local) => local,
    }
}

/// HELLO's reply, or (`Err`) the login it must wait for, then its reply.
fn hello_now(conn: &mut Conn, argv: &[Bytes], shared: &Shared) -> Result<Reply, Local> {
    let mut protocol = conn.protocol;
    let mut name = None;
    let mut auth = None;
    let mut i = 1;
    if let Some(ver) = argv.get(1) {
        protocol = match parse_i64(ver) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Ok(Reply::error("NOPROTO unsupported protocol version")),
            None => {
                return Ok(Reply::error(
                    "ERR Protocol version is not an integer or out of range",
                ))
            }
        };
        i = 2;
    }
    while i < argv.len() {
        let more = argv.len() - i - 1;
        if is(&argv[i], "AUTH") && more >= 2 {
            auth = Some((argv[i + 1].clone(), argv[i + 2].clone()));
            i += 3;
        } else if is(&argv[i], "SETNAME") && more >= 1 {
            if !valid_client_name(&argv[i + 1]) {
                return Ok(Reply::error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                ));
            }
            name = Some(String::from_utf8_lossy(&argv[i + 1]).into_owned());
            i += 2;
        } else {
            return Ok(Reply::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&argv[i])
            )));
        }
    }
    let mut login = None;
    if let Some((user, pass)) = auth {
        match super::acl::auth(conn, Some(&user), &pass, shared) {
            Local::Now(Reply::Error(e)) => return Ok(Reply::Error(e)),
            Local::Now(_) => {}
            waiting => login = Some(waiting),
        }
    } else if !conn.principal.authenticated {
        return Ok(Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        ));
    }
    conn.protocol = protocol;
    let resp = if protocol == Protocol::Resp3 { 3 } else { 2 };
    set_client(shared, conn.id, |c| {
        c.resp = resp;
        if let Some(name) = name {
            c.name = name;
        }
    });
    let role = if shared.node.status().role() == Role::Leader {
        "master"
    } else {
        "replica"
    };
    let reply = Reply::Map(vec![
        (bulk("server"), bulk("redis")),
        (bulk("version"), bulk(REDIS_VERSION)),
        (bulk("proto"), Reply::Int(resp as i64)),
        (bulk("id"), Reply::Int(conn.id as i64)),
        (bulk("mode"), bulk("standalone")),
        (bulk("role"), bulk(role)),
        (bulk("modules"), Reply::Array(Vec::new())),
    ]);
    match login {
        None => Ok(reply),
        Some(Local::Later(waiting)) => Err(Local::Later(Box::pin(async move {
            match waiting.await {
                Reply::Error(e) => Reply::Error(e),
                _ => reply,
            }
        }))),
        Some(other) => Err(other),
    }
}

/// BGSAVE [SCHEDULE]: SAVE's snapshot, answered before it is taken.
/// WAIT numreplicas timeout, WAITAOF numlocal numreplicas timeout.
///
/// The writes a client saw acknowledged through this node are applied
/// here, so the mark is this node's applied index when the command came.
/// The leader counts the other voters whose log matches up to the mark,
/// and waits (up to the timeout, 0 meaning no limit) until `numreplicas`
/// do. Any other node can only vouch for what the commit rule gives: an
/// entry it applied is on a majority, so quorum - 1 others hold it; it
/// answers that at once. Every write is fsync'd before it is
/// acknowledged, so WAITAOF's local count is always 1.
fn wait(argv: &[Bytes], shared: &Shared) -> Local {
    let aof = argv.len() == 4;
    let replicas_at = if aof { 2 } else { 1 };
    let Some(wanted) = parse_i64(&argv[replicas_at]) else {
        return Local::Now(err(CommandError::NotInteger));
    };
    if aof && parse_i64(&argv[1]).is_none() {
        return Local::Now(err(CommandError::NotInteger));
    }
    let timeout = match parse_i64(&argv[replicas_at + 1]) {
        None => {
            return Local::Now(Reply::error(
                "ERR timeout is not an integer or out of range",
            ))
        }
        Some(t) if t < 0 => return Local::Now(Reply::error("ERR timeout is negative")),
        Some(t) => t as u64,
    };
    let node = shared.node.clone();
    let mark = node.status().applied_index();
    let deadline = (timeout > 0)
        .then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout));
    let answer = move |replicas: usize| {
        if aof {
            Reply::Array(vec![Reply::Int(1), Reply::Int(replicas as i64)])
        } else {
            Reply::Int(replicas as i64)
        }
    };
    Local::Later(Box::pin(async move {
        loop {
            let status = node.status();
            if status.role() != Role::Leader {
                let quorum = status.voters() / 2 + 1;
                return answer(quorum.saturating_sub(1) as usize);
            }
            let holding = match node.info().await {
                Ok(info) => info
                    .peers
                    .iter()
                    .filter(|p| p.voter && p.matched >= mark)
                    .count(),
                Err(e) => return Reply::error(e.to_string()),
            };
            let expired = deadline.is_some_and(|d| std::time::Instant::now() >= d);
            if holding as i64 >= wanted || expired {
                return answer(holding);
            }
            // Followers answer appends within a heartbeat or two.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }))
}

fn bgsave(argv: &[Bytes], shared: &Shared) -> Local {
    match argv {
        [_] => {}
        [_, schedule] if is(schedule, "SCHEDULE") => {}
        _ => return Local::Now(err(CommandError::Syntax)),
    }
    let node = shared.node.clone();
    tokio::spawn(async move {
        if let Err(e) = node.snapshot().await {
            tracing::warn!(error = %e, "BGSAVE: the snapshot failed");
        }
    });
    Local::Now(Reply::simple("Background saving started"))
}

/// SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT]: stops this node as
/// SIGTERM does. NOW and FORCE change nothing here: no replica is waited
/// for, and the log is durable whatever happens. No reply: the connection
/// closes, as Redis's does.
fn shutdown(conn: &mut Conn, argv: &[Bytes], shared: &Shared) -> Local {
    let (mut save, mut nosave, mut abort) = (false, false, false);
    for option in &argv[1..] {
        if is(option, "SAVE") {
            save = true;
        } else if is(option, "NOSAVE") {
            nosave = true;
        } else if is(option, "ABORT") {
            abort = true;
        } else if !is(option, "NOW") && !is(option, "FORCE") {
            return Local::Now(err(CommandError::Syntax));
        }
    }
    if (save && nosave) || (abort && argv.len() > 2) {
        return Local::Now(err(CommandError::Syntax));
    }
    if abort {
        return Local::Now(Reply::error("ERR No shutdown in progress."));
    }
    conn.closing = true;
    let node = shared.node.clone();
    let stop = shared.shutdown_requested.clone();
    Local::Later(Box::pin(async move {
        if save {
            // Nothing is lost if it fails: the log holds every write.
            if let Err(e) = node.snapshot().await {
                tracing::warn!(error = %e, "SHUTDOWN SAVE: the snapshot failed");
            }
        }
        stop.notify_one();
        Reply::Frames(Vec::new())
    }))
}

/// CLIENT UNBLOCK id [TIMEOUT | ERROR]: a client of this node waiting in
/// a blocking command gets its timeout answer (or an UNBLOCKED error) now.
/// The wait is ended through the log, so its answer is exactly one of the
/// two: served, or unblocked, whichever the log applied first.
fn client_unblock(argv: &[Bytes], shared: &Shared) -> Local {
    let Some(id) = parse_i64(&argv[2]) else {
        return Local::Now(err(CommandError::NotInteger));
    };
    let error = match argv.get(3) {
        None => false,
        Some(reason) if is(reason, "TIMEOUT") && argv.len() == 4 => false,
        Some(reason) if is(reason, "ERROR") && argv.len() == 4 => true,
        Some(_) => {
            return Local::Now(Reply::error(
                "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
            ))
        }
    };
    let waiting = shared
        .clients
        .lock()
        .expect("clients lock")
        .get(&(id as u64))
        .and_then(|c| c.blocked_on);
    match waiting {
        Some(ticket) => Local::Wait(shared.node.write(Op::Interrupt { ticket, error })),
        None => Local::Now(Reply::Int(0)),
    }
}

/// CLIENT KILL addr, or by filters (all must match). The old form answers
/// OK or an error; the filter form the number of connections closed.
fn client_kill(conn: &Conn, argv: &[Bytes], shared: &Shared) -> Reply {
    let old_form = argv.len() == 3;
    let mut id = None;
    let mut user = None;
    let mut addr = if old_form {
        Some(String::from_utf8_lossy(&argv[2]).into_owned())
    } else {
        None
    };
    let mut laddr = None;
    let mut skipme = true;
    let mut kind = None;
    if !old_form {
        if !argv.len().is_multiple_of(2) {
            return err(CommandError::Syntax);
        }
        for pair in argv[2..].chunks_exact(2) {
            let value = String::from_utf8_lossy(&pair[1]).into_owned();
            if is(&pair[0], "ID") {
                match value.parse::<u64>() {
                    Ok(v) if v > 0 => id = Some(v),
                    _ => return Reply::error("ERR client-id should be greater than 0"),
                }
            } else if is(&pair[0], "USER") {
                user = Some(value);
            } else if is(&pair[0], "ADDR") {
                addr = Some(value);
            } else if is(&pair[0], "LADDR") {
                laddr = Some(value);
            } else if is(&pair[0], "TYPE") {
                let v = value.to_ascii_lowercase();
                if !["normal", "master", "slave", "replica", "pubsub"].contains(&v.as_str()) {
                    return Reply::error(format!("ERR Unknown client type '{value}'"));
                }
                kind = Some(v);
            } else if is(&pair[0], "SKIPME") {
                skipme = match value.to_ascii_lowercase().as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return err(CommandError::Syntax),
                };
            } else {
                return err(CommandError::Syntax);
            }
        }
    }
    let killed = kill_clients(shared, |c| {
        id.is_none_or(|i| c.id == i)
            && user.as_ref().is_none_or(|u| &c.user == u)
            && addr.as_ref().is_none_or(|a| &c.addr == a)
            && laddr.as_ref().is_none_or(|a| &c.laddr == a)
            && kind.as_deref().is_none_or(|k| k == "normal")
            && !(skipme && c.id == conn.id && !old_form)
    });
    if old_form {
        if killed == 0 {
            Reply::error("ERR No such client")
        } else {
            Reply::ok()
        }
    } else {
        Reply::Int(killed as i64)
    }
}

/// Closes every connection of this node that `matches`; returns how many.
pub(super) fn kill_clients(shared: &Shared, matches: impl Fn(&super::ClientInfo) -> bool) -> usize {
    let clients = shared.clients.lock().expect("clients lock");
    let mut n = 0;
    for c in clients.values().filter(|c| matches(c)) {
        c.kill.notify_one();
        n += 1;
    }
    n
}

fn client_help() -> Reply {
    help(&[
        "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "ID",
        "    Return the ID of the current connection.",
        "GETNAME",
        "    Return the name of the current connection.",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "LIST [TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID <id> [<id> ...]]",
        "    Return information about client connections.",
        "INFO",
        "    Return information about the current client connection.",
        "SETINFO <option> <value>",
        "    Set client meta attr: LIB-NAME or LIB-VER.",
        "NO-EVICT (ON|OFF)",
        "    Protect the current client connection from maxmemory-clients eviction.",
        "NO-TOUCH (ON|OFF)",
        "    OFF only: every read counts as an access for LRU/LFU eviction.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are: ID, TYPE, USER, ADDR, LADDR, SKIPME.",
        "UNBLOCK <clientid> [TIMEOUT|ERROR]",
        "    Unblock the specified blocked client.",
        "HELP",
        "    Print this help.",
    ])
}

/// What the clients of this node hold in buffers together (INFO's
/// `mem_clients_normal`).
pub(super) fn clients_memory(shared: &Shared) -> u64 {
    shared
        .clients
        .lock()
        .expect("clients lock")
        .values()
        .map(|c| c.mem.total())
        .sum()
}

pub(super) fn client_line(c: &super::ClientInfo, now: std::time::Instant) -> String {
    format!(
        "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi=-1 \
         qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem={} tot-mem={} events=r \
         cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
        c.id,
        c.addr,
        c.laddr,
        c.name,
        now.duration_since(c.created).as_secs(),
        now.duration_since(c.last_active).as_secs(),
        if c.blocked_on.is_some() { "b" } else { "N" },
        c.db,
        c.mem.query_bytes(),
        c.mem.query_free_bytes(),
        c.mem.output_bytes(),
        c.mem.total(),
        c.last_command,
        c.user,
        c.resp,
        c.lib_name,
        c.lib_ver,
    )
}

/// LOLWUT [VERSION v]: a small maze drawn from the clock's nanoseconds
/// (Redis draws art per version too), then the version line.
fn lolwut(argv: &[Bytes]) -> Reply {
    match &argv[1..] {
        [] => {}
        [v, n] if is(v, "VERSION") && parse_i64(n).is_some() => {}
        _ => return err(CommandError::Syntax),
    }
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut art = String::new();
    for _ in 0..8 {
        for _ in 0..40 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            art.push(if seed & 1 == 0 { '╱' } else { '╲' });
        }
        art.push('\n');
    }
    art.push_str(&format!(
        "\nconcord ver. {} (Redis {REDIS_VERSION} compatible)\n",
        env!("CARGO_PKG_VERSION")
    ));
    Reply::Verbatim {
        format: *b"txt",
        text: Bytes::from(art),
    }
}

fn text_reply(text: String) -> Reply {
    Reply::Verbatim {
        format: *b"txt",
        text: Bytes::from(text),
    }
}

fn client(conn: &mut Conn, name: &str, argv: &[Bytes], shared: &Shared) -> Reply {
    match name {
        "client|id" => Reply::Int(conn.id as i64),
        "client|setname" => {
            if !valid_client_name(&argv[2]) {
                return Reply::error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            let name = String::from_utf8_lossy(&argv[2]).into_owned();
            set_client(shared, conn.id, |c| c.name = name);
            Reply::ok()
        }
        "client|getname" => {
            let clients = shared.clients.lock().expect("clients lock");
            match clients.get(&conn.id).map(|c| c.name.clone()) {
                Some(n) if !n.is_empty() => bulk(n),
                _ => Reply::Nil,
            }
        }
        "client|list" => {
            let mut ids: Option<Vec<u64>> = None;
            let mut args = argv[2..].iter();
            while let Some(opt) = args.next() {
                if is(opt, "TYPE") {
                    match args.next() {
                        Some(t) if is(t, "normal") => {}
                        Some(t)
                            if is(t, "master")
                                || is(t, "replica")
                                || is(t, "slave")
                                || is(t, "pubsub") =>
                        {
                            return text_reply(String::new());
                        }
                        Some(t) => {
                            return Reply::error(format!(
                                "ERR Unknown client type '{}'",
                                String::from_utf8_lossy(t)
                            ))
                        }
                        None => return err(CommandError::Syntax),
                    }
                } else if is(opt, "ID") {
                    let mut list = Vec::new();
                    for id in args.by_ref() {
                        match parse_i64(id) {
                            Some(v) if v > 0 => list.push(v as u64),
                            _ => return Reply::error("ERR Invalid client ID"),
                        }
                    }
                    if list.is_empty() {
                        return err(CommandError::Syntax);
                    }
                    ids = Some(list);
                } else {
                    return err(CommandError::Syntax);
                }
            }
            let now = std::time::Instant::now();
            let clients = shared.clients.lock().expect("clients lock");
            let text: String = clients
                .values()
                .filter(|c| ids.as_ref().is_none_or(|ids| ids.contains(&c.id)))
                .map(|c| client_line(c, now) + "\n")
                .collect();
            text_reply(text)
        }
        "client|info" => {
            let clients = shared.clients.lock().expect("clients lock");
            let line = clients
                .get(&conn.id)
                .map(|c| client_line(c, std::time::Instant::now()) + "\n")
                .unwrap_or_default();
            text_reply(line)
        }
        "client|setinfo" => {
            let value = String::from_utf8_lossy(&argv[3]).into_owned();
            if !argv[3].iter().all(|&c| (b'!'..=b'~').contains(&c)) {
                return Reply::error(format!(
                    "ERR {} cannot contain spaces, newlines or special characters.",
                    String::from_utf8_lossy(&argv[2]).to_ascii_lowercase()
                ));
            }
            if is(&argv[2], "LIB-NAME") {
                set_client(shared, conn.id, |c| c.lib_name = value);
            } else if is(&argv[2], "LIB-VER") {
                set_client(shared, conn.id, |c| c.lib_ver = value);
            } else {
                return Reply::error(format!(
                    "ERR Unrecognized option '{}'",
                    String::from_utf8_lossy(&argv[2])
                ));
            }
            Reply::ok()
        }
        "client|reply" => {
            let mode = if is(&argv[2], "ON") {
                super::connection::Replies::On
            } else if is(&argv[2], "OFF") {
                super::connection::Replies::Off
            } else if is(&argv[2], "SKIP") {
                // This command's reply and the next one's.
                super::connection::Replies::Skip(2)
            } else {
                return err(CommandError::Syntax);
            };
            conn.replies = mode;
            Reply::ok()
        }
        "client|no-evict" => {
            let on = is(&argv[2], "ON");
            if on || is(&argv[2], "OFF") {
                set_client(shared, conn.id, |c| c.no_evict = on);
                Reply::ok()
            } else {
                err(CommandError::Syntax)
            }
        }
        // Reads are served by the raft driver, which records the access of
        // every key it reads for LRU/LFU eviction: ON cannot be honoured.
        "client|no-touch" if is(&argv[2], "OFF") => Reply::ok(),
        "client|no-touch" if is(&argv[2], "ON") => Reply::error(
            "ERR CLIENT NO-TOUCH ON is not supported: every read counts as an access for LRU/LFU eviction"
                .to_owned(),
        ),
        "client|no-touch" => err(CommandError::Syntax),
        "client|help" => client_help(),
        "client|kill" => client_kill(conn, argv, shared),
        other => Reply::error(format!(
            "ERR command '{other}' is declared but not served by this node"
        )),
    }
}

fn config_help() -> Reply {
    help(&[
        "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "GET <pattern>",
        "    Return parameters matching the glob-like <pattern> and their values.",
        "SET <directive> <value>",
        "    Set the configuration <directive> to <value>.",
        "RESETSTAT",
        "    Reset statistics reported by the INFO command.",
        "REWRITE",
        "    Accepted; concord never rewrites its configuration file.",
        "HELP",
        "    Print this help.",
    ])
}

fn command_list(args: &[Bytes]) -> Reply {
    let names = command::all().flat_map(|s| std::iter::once(s).chain(s.subcommands.iter()));
    let filtered: Vec<Reply> = match args {
        [] => names.map(|s| bulk(s.name)).collect(),
        [f, kind, value] if is(f, "FILTERBY") => {
            if is(kind, "PATTERN") {
                names
                    .filter(|s| glob::matches(&value.to_ascii_lowercase(), s.name.as_bytes()))
                    .map(|s| bulk(s.name))
                    .collect()
            } else if is(kind, "ACLCAT") {
                let cat = format!("@{}", String::from_utf8_lossy(value).to_ascii_lowercase());
                names
                    .filter(|s| crate::command::docs::acl_categories(s).contains(&cat))
                    .map(|s| bulk(s.name))
                    .collect()
            } else if is(kind, "MODULE") {
                Vec::new()
            } else {
                return err(CommandError::Syntax);
            }
        }
        _ => return err(CommandError::Syntax),
    };
    Reply::Array(filtered)
}

fn command_getkeys(argv: &[Bytes]) -> Reply {
    let Some(spec) = argv.first().and_then(|n| command::lookup(n)) else {
        return Reply::error("ERR Invalid command specified");
    };
    if !spec.arity_ok(argv.len()) {
        return Reply::error("ERR Invalid number of arguments specified for command");
    }
    // GEORADIUS's STORE / STOREDIST name a key anywhere in the options
    // (Redis finds it by keyword); the table's positions hold the source.
    let keys: Vec<&Bytes> = if matches!(spec.name, "georadius" | "georadiusbymember") {
        let mut keys = spec.keys.keys(argv);
        let options_at = if spec.name == "georadius" { 6 } else { 5 };
        let stores = argv
            .windows(2)
            .skip(options_at)
            .filter(|w| command::is(&w[0], "STORE") || command::is(&w[0], "STOREDIST"));
        keys.extend(stores.map(|w| &w[1]));
        keys
    } else {
        spec.keys.keys(argv)
    };
    if keys.is_empty() {
        return Reply::error("ERR The command has no key arguments");
    }
    Reply::Array(keys.into_iter().map(|k| Reply::Bulk(k.clone())).collect())
}

/// ROLE on the leader: Redis's master form, listing each follower's client
/// address and how far it has replicated.
fn leader_role(node: &crate::raft::NodeHandle, info: &crate::raft::cluster::RaftInfo) -> Reply {
    let replicas = info
        .peers
        .iter()
        .map(|p| {
            let addr = node.status().client_addr(p.id).unwrap_or_default();
            let (host, port) = super::split_addr(&addr);
            Reply::Array(vec![bulk(&host), bulk(&port), bulk(p.matched.to_string())])
        })
        .collect();
    Reply::Array(vec![
        bulk("master"),
        Reply::Int(info.applied as i64),
        Reply::Array(replicas),
    ])
}

/// ROLE elsewhere: Redis's replica form, naming the leader's client address.
fn role(shared: &Shared) -> Reply {
    let status = shared.node.status();
    let offset = status.applied_index() as i64;
    let leader = status.leader();
    let (host, port) = shared.leader_addr();
    let state = if leader == 0 { "connect" } else { "connected" };
    Reply::Array(vec![
        bulk("slave"),
        bulk(&host),
        Reply::Int(port.parse().unwrap_or(0)),
        bulk(state),
        Reply::Int(offset),
    ])
}

/// CLIENT PAUSE timeout [WRITE | ALL], with Redis's errors.
fn client_pause(argv: &[Bytes], shared: &Shared) -> Reply {
    let Some(ms) = parse_i64(&argv[2]) else {
        return Reply::error("ERR timeout is not an integer or out of range");
    };
    if ms < 0 {
        return Reply::error("ERR timeout is negative");
    }
    let all = match argv.get(3) {
        None => true,
        Some(mode) if is(mode, "ALL") && argv.len() == 4 => true,
        Some(mode) if is(mode, "WRITE") && argv.len() == 4 => false,
        Some(_) => return err(CommandError::Syntax),
    };
    let until = std::time::Instant::now() + std::time::Duration::from_millis(ms as u64);
    shared.pause.pause(until, all);
    shared
        .node
        .status()
        .set_paused_until(shared.pause.until_unix_ms());
    Reply::ok()
}
