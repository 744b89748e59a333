//! Commands answered by the server from connection and node state, without
//! going through raft: connection handling, INFO, CONFIG, COMMAND, TIME, ROLE.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::connection::Conn;
use super::{info, Shared};
use crate::command::docs::{command_docs, command_info};
use crate::command::{self, is, CommandError, CommandSpec};
use crate::config::Config;
use crate::raft::{ReadMode, Role};
use crate::resp::{Protocol, Reply};
use crate::state::strings::parse_i64;
use crate::state::{glob, Op};

/// The Redis version concord reports: client libraries gate features on it.
pub const REDIS_VERSION: &str = "7.2.4";

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
        "config|get" => config_get(conn, &argv[2..], shared),
        "config|set" => config_set(&argv[2..], shared),
        "client|unblock" => client_unblock(argv, shared),
        "save" => super::cluster::snapshot(shared, |_| Reply::ok()),
        "bgsave" => bgsave(argv, shared),
        "shutdown" => shutdown(conn, argv, shared),
        "object|encoding" | "object|idletime" | "object|freq" => {
            object(conn, spec.name, &argv[2], shared)
        }
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
        "hello" => hello(conn, argv, shared),
        "auth" => match &argv[1..] {
            [pass] => super::acl::auth(conn, None, pass, shared),
            [user, pass] => super::acl::auth(conn, Some(user), pass, shared),
            _ => err(CommandError::Syntax),
        },
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
            set_client(shared, conn.id, |c| {
                c.name.clear();
                c.resp = 2;
            });
            Reply::Simple("RESET".into())
        }
        "select" => match parse_i64(&argv[1]) {
            None => err(CommandError::NotInteger),
            Some(0) => Reply::ok(),
            Some(_) => Reply::error("ERR DB index is out of range (concord has database 0 only)"),
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
            "    Return the access frequency index of the key (0: concord tracks none).",
            "HELP",
            "    Print this help.",
            "IDLETIME <key>",
            "    Return the idle time of the key (0: concord tracks no access times).",
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
    let query = crate::state::Query::Key(KeyQuery::Object {
        key: key.clone(),
        field,
    });
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

fn hello(conn: &mut Conn, argv: &[Bytes], shared: &Shared) -> Reply {
    let mut protocol = conn.protocol;
    let mut name = None;
    let mut auth = None;
    let mut i = 1;
    if let Some(ver) = argv.get(1) {
        protocol = match parse_i64(ver) {
            Some(2) => Protocol::Resp2,
            Some(3) => Protocol::Resp3,
            Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
            None => return Reply::error("ERR Protocol version is not an integer or out of range"),
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
                return Reply::error(
                    "ERR Client names cannot contain spaces, newlines or special characters.",
                );
            }
            name = Some(String::from_utf8_lossy(&argv[i + 1]).into_owned());
            i += 2;
        } else {
            return Reply::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&argv[i])
            ));
        }
    }
    if let Some((user, pass)) = auth {
        if let Reply::Error(e) = super::acl::auth(conn, Some(&user), &pass, shared) {
            return Reply::Error(e);
        }
    } else if !conn.principal.authenticated {
        return Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
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
    Reply::Map(vec![
        (bulk("server"), bulk("redis")),
        (bulk("version"), bulk(REDIS_VERSION)),
        (bulk("proto"), Reply::Int(resp as i64)),
        (bulk("id"), Reply::Int(conn.id as i64)),
        (bulk("mode"), bulk("standalone")),
        (bulk("role"), bulk(role)),
        (bulk("modules"), Reply::Array(Vec::new())),
    ])
}

/// BGSAVE [SCHEDULE]: SAVE's snapshot, answered before it is taken.
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
        if argv.len() % 2 != 0 {
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
        "    Accepted; concord never evicts clients.",
        "NO-TOUCH (ON|OFF)",
        "    Accepted; concord keeps no access times.",
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

pub(super) fn client_line(c: &super::ClientInfo, now: std::time::Instant) -> String {
    format!(
        "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 multi=-1 \
         qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r \
         cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
        c.id,
        c.addr,
        c.laddr,
        c.name,
        now.duration_since(c.created).as_secs(),
        now.duration_since(c.last_active).as_secs(),
        if c.blocked_on.is_some() { "b" } else { "N" },
        c.last_command,
        c.user,
        c.resp,
        c.lib_name,
        c.lib_ver,
    )
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
        "client|no-evict" | "client|no-touch" => {
            if is(&argv[2], "ON") || is(&argv[2], "OFF") {
                Reply::ok()
            } else {
                err(CommandError::Syntax)
            }
        }
        "client|help" => client_help(),
        "client|kill" => client_kill(conn, argv, shared),
        other => Reply::error(format!(
            "ERR command '{other}' is declared but not served by this node"
        )),
    }
}

/// How a configuration parameter behaves under CONFIG SET.
enum ParamKind {
    /// Read by concord at runtime; validated as a positive integer.
    Integer { min: u64 },
    /// A byte count, written as Redis writes memory values (`100mb`);
    /// stored in bytes, as CONFIG GET then shows it.
    Memory { min: u64 },
    /// Set at startup; CONFIG SET refuses it, as Redis does.
    Immutable,
    /// A Redis tuning knob with no meaning here: accepted and remembered,
    /// so clients and tools that set it keep working.
    Accepted,
}

fn param_kind(name: &str) -> Option<ParamKind> {
    Some(match name {
        "maxclients" => ParamKind::Integer { min: 1 },
        "proto-max-bulk-len" => ParamKind::Memory { min: 1024 * 1024 },
        "maxmemory" => ParamKind::Memory { min: 0 },
        "port"
        | "bind"
        | "dir"
        | "databases"
        | "concord-node-id"
        | "concord-peer-listen"
        | "concord-data-dir"
        | "concord-request-timeout-ms"
        | "concord-tick-ms" => ParamKind::Immutable,
        _ if ACCEPTED_PARAMS.contains(&name) => ParamKind::Accepted,
        _ => return None,
    })
}

/// Redis parameters accepted for compatibility; they change nothing.
const ACCEPTED_PARAMS: &[&str] = &[
    "appendonly",
    "appendfsync",
    "save",
    "maxmemory-policy",
    "maxmemory-samples",
    "timeout",
    "hz",
    "dynamic-hz",
    "tcp-keepalive",
    "notify-keyspace-events",
    "lua-time-limit",
    "busy-reply-threshold",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "latency-tracking",
    "latency-monitor-threshold",
    "activedefrag",
    "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire",
    "lazyfree-lazy-server-del",
    "lazyfree-lazy-user-del",
    "lazyfree-lazy-user-flush",
    "list-max-listpack-size",
    "list-max-ziplist-size",
    "list-compress-depth",
    "hash-max-listpack-entries",
    "hash-max-listpack-value",
    "hash-max-ziplist-entries",
    "hash-max-ziplist-value",
    "set-max-intset-entries",
    "set-max-listpack-entries",
    "set-max-listpack-value",
    "zset-max-listpack-entries",
    "zset-max-listpack-value",
    "zset-max-ziplist-entries",
    "zset-max-ziplist-value",
    "stream-node-max-bytes",
    "stream-node-max-entries",
    "requirepass",
    "protected-mode",
    "loglevel",
    "client-output-buffer-limit",
    "min-replicas-to-write",
    "min-replicas-max-lag",
    "repl-backlog-size",
    "repl-diskless-sync",
    "active-expire-effort",
    "maxmemory-clients",
    "lfu-log-factor",
    "lfu-decay-time",
    "close-on-oom",
    "io-threads",
    "enable-debug-command",
    "activerehashing",
    "rdbcompression",
    "appendfilename",
    "dbfilename",
    "aof-use-rdb-preamble",
    "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size",
    "no-appendfsync-on-rewrite",
    "stop-writes-on-bgsave-error",
    "replica-read-only",
    "replica-serve-stale-data",
    "cluster-enabled",
    "tracking-table-max-keys",
    "oom-score-adj",
    "crash-log-enabled",
    "set-proc-title",
    "hll-sparse-max-bytes",
    "lua-replicate-commands",
    "enable-protected-configs",
    "enable-module-command",
    "sanitize-dump-payload",
];

pub(super) fn default_params(config: &Config) -> BTreeMap<String, String> {
    let (bind, port) = config
        .listen
        .rsplit_once(':')
        .map_or((config.listen.clone(), "6379".to_owned()), |(h, p)| {
            (h.to_owned(), p.to_owned())
        });
    let mut params: BTreeMap<String, String> = [
        ("appendonly", "yes"),
        ("appendfsync", "always"),
        ("save", ""),
        ("databases", "1"),
        ("maxmemory", "0"),
        ("maxmemory-policy", "noeviction"),
        ("maxmemory-samples", "5"),
        ("timeout", "0"),
        ("hz", "10"),
        ("dynamic-hz", "yes"),
        ("tcp-keepalive", "300"),
        ("notify-keyspace-events", ""),
        ("lua-time-limit", "5000"),
        ("busy-reply-threshold", "5000"),
        ("slowlog-log-slower-than", "10000"),
        ("slowlog-max-len", "128"),
        ("latency-tracking", "no"),
        ("requirepass", ""),
        ("protected-mode", "no"),
        ("loglevel", "notice"),
        ("cluster-enabled", "no"),
        ("replica-read-only", "yes"),
        ("min-replicas-to-write", "0"),
        ("io-threads", "1"),
        ("hash-max-listpack-entries", "128"),
        ("hash-max-listpack-value", "64"),
        ("set-max-intset-entries", "512"),
        ("set-max-listpack-entries", "128"),
        ("set-max-listpack-value", "64"),
        ("zset-max-listpack-entries", "128"),
        ("zset-max-listpack-value", "64"),
        ("list-max-listpack-size", "-2"),
        ("list-compress-depth", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    params.insert("port".into(), port);
    params.insert("bind".into(), bind);
    params.insert("dir".into(), config.data_dir.display().to_string());
    params.insert("maxclients".into(), config.max_clients.to_string());
    params.insert(
        "proto-max-bulk-len".into(),
        config.proto_max_bulk_len.to_string(),
    );
    params.insert("concord-node-id".into(), config.node_id.to_string());
    params.insert("concord-peer-listen".into(), config.peer_listen.clone());
    params.insert(
        "concord-data-dir".into(),
        config.data_dir.display().to_string(),
    );
    params.insert(
        "concord-request-timeout-ms".into(),
        config.request_timeout.as_millis().to_string(),
    );
    params.insert(
        "concord-tick-ms".into(),
        config.tick.as_millis().to_string(),
    );
    params
}

/// Redis 7's old names of its listpack parameters: each reads and sets the
/// parameter under its new name.
const ALIASES: &[(&str, &str)] = &[
    ("hash-max-ziplist-entries", "hash-max-listpack-entries"),
    ("hash-max-ziplist-value", "hash-max-listpack-value"),
    ("zset-max-ziplist-entries", "zset-max-listpack-entries"),
    ("zset-max-ziplist-value", "zset-max-listpack-value"),
    ("list-max-ziplist-size", "list-max-listpack-size"),
];

/// The name a parameter is stored under.
fn canonical(name: &str) -> &str {
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, real)| real)
}

/// The parameter kept in the replicated state rather than by the node:
/// every replica must send the same keyspace notifications.
const NOTIFY_PARAM: &str = "notify-keyspace-events";

/// CONFIG GET: the node's parameters, and the replicated
/// `notify-keyspace-events` read as any other key would be.
fn config_get(conn: &Conn, patterns: &[Bytes], shared: &Shared) -> Local {
    let mut pairs = Vec::new();
    let mut notify_at = None;
    {
        let params = shared.params.read().expect("params lock");
        let aliased = ALIASES
            .iter()
            .filter_map(|(alias, real)| params.get(*real).map(|v| (*alias, v)));
        let all: Vec<(&str, &String)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain(aliased)
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for pattern in patterns {
            let pattern = pattern.to_ascii_lowercase();
            for (name, value) in &all {
                if glob::matches(&pattern, name.as_bytes()) && seen.insert(*name) {
                    if *name == NOTIFY_PARAM {
                        notify_at = Some(pairs.len());
                    }
                    pairs.push((bulk(name), bulk(value)));
                }
            }
        }
    }
    let Some(at) = notify_at else {
        return Local::Now(Reply::Map(pairs));
    };
    let query =
        crate::state::Query::PubSub(crate::state::pubsub::PubSubQuery::NotifyKeyspaceEvents);
    let rx = shared.node.read(query, conn.read_mode);
    Local::Later(Box::pin(async move {
        match crate::raft::answer(rx).await {
            Ok(Ok(crate::state::Outcome::Bulk(flags))) => {
                pairs[at].1 = Reply::Bulk(flags);
                Reply::Map(pairs)
            }
            Ok(Ok(_)) => Reply::Map(pairs),
            Ok(Err(e)) => Reply::error(e.to_string()),
            Err(e) => Reply::error(e.to_string()),
        }
    }))
}

/// CONFIG SET: the node's parameters at once; `notify-keyspace-events`
/// through the log, answered once applied.
/// A memory value as Redis reads one: digits and an optional unit, `k`
/// `m` `g` for powers of 1000 and `kb` `mb` `gb` for powers of 1024.
fn memory_value(text: &str) -> Option<u64> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number: u64 = text[..digits].parse().ok()?;
    let unit: u64 = match text[digits..].to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(unit)
}

fn config_set(args: &[Bytes], shared: &Shared) -> Local {
    match config_set_params(args, shared) {
        Ok(None) => Local::Now(Reply::ok()),
        Ok(Some(flags)) => Local::Wait(shared.node.write(crate::state::Op::PubSub(
            crate::state::pubsub::PubSubOp::NotifyKeyspaceEvents { flags },
        ))),
        Err(reply) => Local::Now(reply),
    }
}

/// Checks and stores the parameters; returns the keyspace-event flags to
/// replicate, if they were among them.
fn config_set_params(args: &[Bytes], shared: &Shared) -> Result<Option<u32>, Reply> {
    if !args.len().is_multiple_of(2) {
        return Err(err(CommandError::WrongArity("config|set".into())));
    }
    let mut notify = None;
    let mut updates = Vec::new();
    for pair in args.chunks_exact(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let name = canonical(&name).to_owned();
        let mut value = String::from_utf8_lossy(&pair[1]).into_owned();
        match param_kind(&name) {
            None => {
                return Err(Reply::error(format!(
                    "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
                )))
            }
            Some(ParamKind::Immutable) => {
                return Err(Reply::error(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
                )))
            }
            Some(ParamKind::Integer { min }) => match value.parse::<u64>() {
                Ok(v) if v >= min => {}
                Ok(_) => {
                    return Err(Reply::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be at least {min}"
                    )))
                }
                Err(_) => {
                    return Err(Reply::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - argument couldn't be parsed into an integer"
                    )))
                }
            },
            Some(ParamKind::Memory { min }) => match memory_value(&value) {
                Some(bytes) if bytes >= min => value = bytes.to_string(),
                Some(_) => {
                    return Err(Reply::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be at least {min}"
                    )))
                }
                None => {
                    return Err(Reply::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be a memory value"
                    )))
                }
            },
            Some(ParamKind::Accepted) if name == NOTIFY_PARAM => {
                let flags = crate::state::notify::parse_flags(value.as_bytes()).ok_or_else(|| {
                    Reply::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - Invalid event class character. Use 'Ag$lshzxeKEtmd'."
                    ))
                })?;
                notify = Some(flags);
            }
            Some(ParamKind::Accepted) => {}
        }
        updates.push((name, value));
    }
    let mut params = shared.params.write().expect("params lock");
    for (name, value) in updates {
        params.insert(name, value);
    }
    Ok(notify)
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
    let keys = spec.keys.keys(argv);
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
