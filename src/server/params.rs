//! The node's parameters as CONFIG GET and CONFIG SET see them: one table,
//! one row per parameter (as Redis's `config.c`), saying what CONFIG SET
//! does with it.
//!
//! Nothing here pretends. A parameter is either
//! - **live**: CONFIG SET changes what the node does from the next
//!   connection or command on (the code that honours it reads the value
//!   from [`Shared::params`]);
//! - **replicated**: CONFIG SET goes through the log and is in force on
//!   every node (`notify-keyspace-events`, `requirepass`);
//! - **reload**: CONFIG SET reads the TLS files again;
//! - **immutable**: set at startup by a flag, refused by CONFIG SET as Redis
//!   refuses its immutable ones;
//! - **fixed**: a Redis parameter whose behaviour concord has in one form
//!   only (persistence is always the fsync'd raft log, there is one
//!   database...). CONFIG GET reports the truth and CONFIG SET accepts
//!   that value alone, refusing any other with an error that names it;
//! - **encoding**: a Redis encoding threshold (listpack sizes and the
//!   like). concord reports the encoding Redis would choose from them
//!   (OBJECT ENCODING), so they are stored and read, but a layout is
//!   replicated state and follows fixed limits on every node (small hashes
//!   are packed up to Redis's defaults): docs/configuration.md says so.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::connection::Conn;
use super::local::Local;
use super::Shared;
use crate::command::CommandError;
use crate::config::Config;
use crate::resp::Reply;
use crate::state::glob;

/// What CONFIG SET does with a parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    Live,
    Replicated,
    Reload,
    Immutable,
    Fixed,
    Encoding,
}

/// How a value is written and checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// An integer within bounds.
    Int {
        min: i64,
        max: i64,
    },
    /// A byte count with Redis's units (`100mb`), stored in bytes.
    Memory {
        min: u64,
    },
    /// A byte count, or a percentage (`10%`) of something else (Redis's
    /// `maxmemory-clients`, a share of `maxmemory`).
    MemoryOrPercent,
    /// `yes` or `no`.
    Bool,
    /// One of the words.
    Enum(&'static [&'static str]),
    Text,
}

pub struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub apply: Apply,
    /// The value at startup.
    pub default: fn(&Config) -> String,
    /// Redis's older name, if it has one (`hash-max-ziplist-entries`).
    pub alias: Option<&'static str>,
}

macro_rules! param {
    ($name:literal, $kind:expr, $apply:ident, $default:expr) => {
        Param {
            name: $name,
            kind: $kind,
            apply: Apply::$apply,
            default: $default,
            alias: None,
        }
    };
    ($name:literal, $kind:expr, $apply:ident, $default:expr, $alias:literal) => {
        Param {
            name: $name,
            kind: $kind,
            apply: Apply::$apply,
            default: $default,
            alias: Some($alias),
        }
    };
}

const INT: Kind = Kind::Int {
    min: 0,
    max: i64::MAX,
};
const YES: fn(&Config) -> String = |_| "yes".into();
const NO: fn(&Config) -> String = |_| "no".into();
const ZERO: fn(&Config) -> String = |_| "0".into();
const EMPTY: fn(&Config) -> String = |_| String::new();

fn listen_part(config: &Config, host: bool) -> String {
    let (h, p) = super::split_addr(&config.listen);
    if host {
        h
    } else {
        p
    }
}

/// Every parameter, by name.
pub const PARAMS: &[Param] = &[
    // Live: read where they act.
    param!(
        "maxclients",
        Kind::Int {
            min: 1,
            max: i64::MAX
        },
        Live,
        |c| c.max_clients.to_string()
    ),
    param!(
        "proto-max-bulk-len",
        Kind::Memory { min: 1024 * 1024 },
        Live,
        |c| c.proto_max_bulk_len.to_string()
    ),
    param!(
        "protected-mode",
        Kind::Bool,
        Live,
        |c| if c.protected_mode {
            "yes".into()
        } else {
            "no".into()
        }
    ),
    // Replicated: through the log, the same on every node.
    param!("notify-keyspace-events", Kind::Text, Replicated, EMPTY),
    param!("requirepass", Kind::Text, Replicated, |c| c
        .requirepass
        .clone()
        .unwrap_or_default()),
    // TLS: read again on CONFIG SET.
    param!("tls-cert-file", Kind::Text, Reload, |c| tls_path(c, |t| &t
        .cert)),
    param!("tls-key-file", Kind::Text, Reload, |c| tls_path(c, |t| &t
        .key)),
    param!("tls-ca-cert-file", Kind::Text, Reload, |c| c
        .tls
        .as_ref()
        .and_then(|t| t.ca.as_ref())
        .map(|p| p.display().to_string())
        .unwrap_or_default()),
    param!(
        "tls-auth-clients",
        Kind::Enum(&["yes", "no", "optional"]),
        Reload,
        |c| c
            .tls
            .as_ref()
            .map(|t| t.auth_clients.to_string())
            .unwrap_or_else(|| "yes".into())
    ),
    // Immutable: flags at startup.
    param!("port", INT, Immutable, |c| listen_part(c, false)),
    param!("bind", Kind::Text, Immutable, |c| listen_part(c, true)),
    param!("tls-port", INT, Immutable, |c| c
        .tls_listen
        .as_deref()
        .map(|a| super::split_addr(a).1)
        .unwrap_or_else(|| "0".into())),
    param!("dir", Kind::Text, Immutable, |c| c
        .data_dir
        .display()
        .to_string()),
    param!("aclfile", Kind::Text, Immutable, |c| c
        .aclfile
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()),
    param!("concord-node-id", INT, Immutable, |c| c.node_id.to_string()),
    param!("concord-peer-listen", Kind::Text, Immutable, |c| c
        .peer_listen
        .clone()),
    param!("concord-data-dir", Kind::Text, Immutable, |c| c
        .data_dir
        .display()
        .to_string()),
    param!("concord-request-timeout-ms", INT, Immutable, |c| c
        .request_timeout
        .as_millis()
        .to_string()),
    param!("concord-tick-ms", INT, Immutable, |c| c
        .tick
        .as_millis()
        .to_string()),
    param!(
        "concord-peer-tls",
        Kind::Bool,
        Immutable,
        |c| if c.peer_tls {
            "yes".into()
        } else {
            "no".into()
        }
    ),
    param!("io-threads", INT, Immutable, |_| "1".into()),
    param!("enable-debug-command", Kind::Text, Immutable, |_| "yes"
        .into()),
    param!("enable-protected-configs", Kind::Text, Immutable, NO),
    param!("enable-module-command", Kind::Text, Immutable, NO),
    param!("cluster-enabled", Kind::Bool, Immutable, NO),
    // Fixed: concord behaves one way; the truth is reported and accepted.
    param!("databases", INT, Fixed, |_| crate::state::DATABASES
        .to_string()),
    param!("appendonly", Kind::Bool, Fixed, YES),
    param!(
        "appendfsync",
        Kind::Enum(&["always", "everysec", "no"]),
        Fixed,
        |_| "always".into()
    ),
    param!("save", Kind::Text, Fixed, EMPTY),
    param!("maxmemory", Kind::Memory { min: 0 }, Live, |c| c
        .maxmemory
        .to_string()),
    param!(
        "maxmemory-policy",
        Kind::Enum(&[
            "noeviction",
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl"
        ]),
        Live,
        |c| c.maxmemory_policy.name().into()
    ),
    param!(
        "maxmemory-samples",
        Kind::Int { min: 1, max: 64 },
        Live,
        |c| c.maxmemory_samples.to_string()
    ),
    param!("maxmemory-clients", Kind::MemoryOrPercent, Live, ZERO),
    param!("timeout", INT, Live, ZERO),
    param!("tcp-keepalive", INT, Live, |_| "300".into()),
    param!("client-output-buffer-limit", Kind::Text, Live, |_| {
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60".into()
    }),
    param!(
        "client-query-buffer-limit",
        Kind::Memory { min: 1024 * 1024 },
        Live,
        |c| c.proto_max_bulk_len.max(1 << 30).to_string()
    ),
    param!("min-replicas-to-write", INT, Fixed, ZERO),
    param!("min-replicas-max-lag", INT, Fixed, |_| "10".into()),
    param!("hz", Kind::Int { min: 1, max: 500 }, Fixed, |_| "10".into()),
    param!("dynamic-hz", Kind::Bool, Fixed, NO),
    param!(
        "loglevel",
        Kind::Enum(&["debug", "verbose", "notice", "warning", "nothing"]),
        Fixed,
        |_| "notice".into()
    ),
    param!("lua-time-limit", INT, Fixed, ZERO),
    param!("busy-reply-threshold", INT, Fixed, ZERO),
    param!(
        "slowlog-log-slower-than",
        Kind::Int {
            min: -1,
            max: i64::MAX
        },
        Live,
        |_| "10000".into()
    ),
    param!("slowlog-max-len", INT, Live, |_| "128".into()),
    param!("latency-tracking", Kind::Bool, Live, YES),
    param!("latency-monitor-threshold", INT, Live, ZERO),
    param!("replica-read-only", Kind::Bool, Fixed, YES),
    param!("replica-serve-stale-data", Kind::Bool, Fixed, YES),
    param!("repl-backlog-size", Kind::Memory { min: 0 }, Fixed, ZERO),
    param!("repl-diskless-sync", Kind::Bool, Fixed, NO),
    param!("rdbcompression", Kind::Bool, Fixed, NO),
    param!("dbfilename", Kind::Text, Fixed, EMPTY),
    param!("appendfilename", Kind::Text, Fixed, EMPTY),
    param!("aof-use-rdb-preamble", Kind::Bool, Fixed, NO),
    param!("auto-aof-rewrite-percentage", INT, Fixed, ZERO),
    param!(
        "auto-aof-rewrite-min-size",
        Kind::Memory { min: 0 },
        Fixed,
        ZERO
    ),
    param!("no-appendfsync-on-rewrite", Kind::Bool, Fixed, NO),
    param!("stop-writes-on-bgsave-error", Kind::Bool, Fixed, NO),
    param!("activedefrag", Kind::Bool, Fixed, NO),
    param!(
        "active-expire-effort",
        Kind::Int { min: 1, max: 10 },
        Fixed,
        |_| "1".into()
    ),
    param!("lfu-log-factor", INT, Live, |_| "10".into()),
    param!("lfu-decay-time", INT, Live, |_| "1".into()),
    param!("close-on-oom", Kind::Bool, Fixed, NO),
    param!("oom-score-adj", Kind::Text, Fixed, NO),
    param!("crash-log-enabled", Kind::Bool, Fixed, NO),
    param!("set-proc-title", Kind::Bool, Fixed, NO),
    param!("lua-replicate-commands", Kind::Bool, Fixed, YES),
    // New ACL users start without channels, as Redis 7's default.
    param!(
        "acl-pubsub-default",
        Kind::Enum(&["resetchannels", "allchannels"]),
        Fixed,
        |_| "resetchannels".into()
    ),
    param!(
        "sanitize-dump-payload",
        Kind::Enum(&["no", "yes", "clients"]),
        Fixed,
        NO
    ),
    param!("tracking-table-max-keys", INT, Fixed, ZERO),
    param!("lazyfree-lazy-eviction", Kind::Bool, Fixed, NO),
    param!("lazyfree-lazy-expire", Kind::Bool, Fixed, NO),
    param!("lazyfree-lazy-server-del", Kind::Bool, Fixed, NO),
    param!("lazyfree-lazy-user-del", Kind::Bool, Fixed, NO),
    param!("lazyfree-lazy-user-flush", Kind::Bool, Fixed, NO),
    // Encoding thresholds: OBJECT ENCODING answers from them.
    param!(
        "hash-max-listpack-entries",
        INT,
        Encoding,
        |_| "128".into(),
        "hash-max-ziplist-entries"
    ),
    param!(
        "hash-max-listpack-value",
        INT,
        Encoding,
        |_| "64".into(),
        "hash-max-ziplist-value"
    ),
    param!("set-max-intset-entries", INT, Encoding, |_| "512".into()),
    param!("set-max-listpack-entries", INT, Encoding, |_| "128".into()),
    param!("set-max-listpack-value", INT, Encoding, |_| "64".into()),
    param!(
        "zset-max-listpack-entries",
        INT,
        Encoding,
        |_| "128".into(),
        "zset-max-ziplist-entries"
    ),
    param!(
        "zset-max-listpack-value",
        INT,
        Encoding,
        |_| "64".into(),
        "zset-max-ziplist-value"
    ),
    param!(
        "list-max-listpack-size",
        Kind::Int {
            min: -5,
            max: i64::MAX
        },
        Encoding,
        |_| "-2".into(),
        "list-max-ziplist-size"
    ),
    param!("list-compress-depth", INT, Encoding, ZERO),
    param!(
        "stream-node-max-bytes",
        Kind::Memory { min: 0 },
        Encoding,
        |_| "4096".into()
    ),
    param!("stream-node-max-entries", INT, Encoding, |_| "100".into()),
    // Unlike the thresholds above, this one shapes bytes a client reads
    // (GET of an HLL): one value on every node, Redis's default.
    param!(
        "hll-sparse-max-bytes",
        Kind::Memory { min: 0 },
        Fixed,
        |_| "3000".into()
    ),
    param!("activerehashing", Kind::Bool, Encoding, YES),
];

fn tls_path(config: &Config, f: fn(&crate::tls::TlsPaths) -> &std::path::PathBuf) -> String {
    config
        .tls
        .as_ref()
        .map(|t| f(t).display().to_string())
        .unwrap_or_default()
}

/// The row of a parameter, by its name or Redis's older alias.
pub fn find(name: &str) -> Option<&'static Param> {
    PARAMS
        .iter()
        .find(|p| p.name == name || p.alias == Some(name))
}

/// Every parameter's startup value.
pub fn defaults(config: &Config) -> BTreeMap<String, String> {
    PARAMS
        .iter()
        .map(|p| (p.name.to_owned(), (p.default)(config)))
        .collect()
}

fn failed(name: &str, why: impl std::fmt::Display) -> Reply {
    Reply::error(format!(
        "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
    ))
}

/// `client-output-buffer-limit`'s `<class> <hard> <soft> <seconds>`
/// groups, class names as stored (`replica` as `slave`, as Redis shows it).
fn output_limits(text: &str) -> Result<Vec<(&'static str, u64, u64, u64)>, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    words
        .chunks(4)
        .map(|g| {
            let class = match g[0].to_ascii_lowercase().as_str() {
                "normal" => "normal",
                "pubsub" => "pubsub",
                "slave" | "replica" => "slave",
                _ => {
                    return Err(
                        "Invalid client class specified in buffer limit configuration.".into(),
                    )
                }
            };
            let (Some(hard), Some(soft), Ok(secs)) = (
                crate::config::memory_value(g[1]),
                crate::config::memory_value(g[2]),
                g[3].parse::<u64>(),
            ) else {
                return Err(
                    "Error in hard, soft or soft_seconds setting in buffer limit configuration."
                        .into(),
                );
            };
            Ok((class, hard, soft, secs))
        })
        .collect()
}

/// `current` with the classes `update` gives replaced, in Redis's order.
fn merged_output_limits(current: &str, update: &str) -> Result<String, String> {
    let mut classes = output_limits(current).unwrap_or_default();
    for new in output_limits(update)? {
        match classes.iter_mut().find(|c| c.0 == new.0) {
            Some(c) => *c = new,
            None => classes.push(new),
        }
    }
    Ok(["normal", "slave", "pubsub"]
        .iter()
        .filter_map(|name| classes.iter().find(|c| c.0 == *name))
        .map(|(c, h, s, t)| format!("{c} {h} {s} {t}"))
        .collect::<Vec<_>>()
        .join(" "))
}

/// The value as it is stored: checked against the kind, memory values in
/// bytes, words in lower case.
fn normalize(param: &Param, value: &str) -> Result<String, Reply> {
    let name = param.name;
    match param.kind {
        Kind::Int { min, max } => match value.parse::<i64>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v.to_string()),
            Ok(_) => Err(failed(
                name,
                format!("argument must be between {min} and {max} inclusive"),
            )),
            Err(_) => Err(failed(name, "argument couldn't be parsed into an integer")),
        },
        Kind::Memory { min } => match crate::config::memory_value(value) {
            Some(bytes) if bytes >= min => Ok(bytes.to_string()),
            Some(_) => Err(failed(name, format!("argument must be at least {min}"))),
            None => Err(failed(name, "argument must be a memory value")),
        },
        Kind::MemoryOrPercent => match value.strip_suffix('%') {
            Some(pct) => match pct.parse::<u64>() {
                Ok(pct) if pct <= 100 => Ok(format!("{pct}%")),
                _ => Err(failed(name, "argument must be a memory or percent value")),
            },
            None => match crate::config::memory_value(value) {
                Some(bytes) => Ok(bytes.to_string()),
                None => Err(failed(name, "argument must be a memory or percent value")),
            },
        },
        Kind::Bool => match value.to_ascii_lowercase().as_str() {
            "yes" => Ok("yes".into()),
            "no" => Ok("no".into()),
            _ => Err(failed(name, "argument must be 'yes' or 'no'")),
        },
        Kind::Enum(words) => {
            let lower = value.to_ascii_lowercase();
            if words.contains(&lower.as_str()) {
                Ok(lower)
            } else {
                Err(failed(
                    name,
                    "argument(s) must be one of the following: ".to_owned() + &words.join(", "),
                ))
            }
        }
        Kind::Text => Ok(value.to_owned()),
    }
}

/// CONFIG GET: every parameter matching a pattern (aliases included, as
/// Redis answers them), `notify-keyspace-events` read from the state.
pub(super) fn config_get(conn: &Conn, patterns: &[Bytes], shared: &Shared) -> Local {
    let mut pairs = Vec::new();
    let mut notify_at = None;
    {
        let values = shared.params.read().expect("params lock");
        let names = PARAMS
            .iter()
            .flat_map(|p| std::iter::once((p.name, p)).chain(p.alias.map(|a| (a, p))));
        let mut seen = std::collections::BTreeSet::new();
        for pattern in patterns {
            let pattern = pattern.to_ascii_lowercase();
            for (name, param) in names.clone() {
                if glob::matches(&pattern, name.as_bytes()) && seen.insert(name) {
                    let value = values.get(param.name).cloned().unwrap_or_default();
                    if param.name == "notify-keyspace-events" {
                        notify_at = Some(pairs.len());
                    }
                    pairs.push((Reply::bulk(name), Reply::bulk(value)));
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

/// CONFIG SET: all the pairs or none. Live values are stored at once;
/// replicated ones go through the log, and the reply waits for them.
/// Puts a live parameter's value in force where it is read on hot paths
/// (an atomic, not the parameter map).
pub(super) fn apply_live(shared: &Shared, name: &str, value: &str) {
    match name {
        "slowlog-log-slower-than" => shared
            .slowlog
            .set_threshold_us(value.parse().unwrap_or(10_000)),
        "slowlog-max-len" => shared.slowlog.set_max_len(value.parse().unwrap_or(128)),
        "client-query-buffer-limit" => shared
            .query_buffer_limit
            .store(value.parse().unwrap_or(1 << 30), Ordering::Relaxed),
        "timeout" => shared
            .idle_timeout_s
            .store(value.parse().unwrap_or(0), Ordering::Relaxed),
        "tcp-keepalive" => shared
            .tcp_keepalive_s
            .store(value.parse().unwrap_or(300), Ordering::Relaxed),
        "client-output-buffer-limit" => {
            for (class, hard, soft, secs) in output_limits(value).unwrap_or_default() {
                let limit = match class {
                    "normal" => &shared.output_limits.normal,
                    "pubsub" => &shared.output_limits.pubsub,
                    _ => &shared.output_limits.replica,
                };
                limit.set(hard, soft, secs);
            }
        }
        "maxmemory" => shared
            .node
            .status()
            .memory
            .set_max_bytes(crate::config::memory_value(value).unwrap_or(0)),
        "maxmemory-policy" => {
            if let Some(policy) = crate::state::evict::Policy::parse(value) {
                shared.node.status().memory.set_policy(policy);
            }
        }
        "maxmemory-samples" => shared
            .node
            .status()
            .memory
            .set_samples(value.parse().unwrap_or(5)),
        "lfu-log-factor" => shared
            .node
            .status()
            .memory
            .set_lfu_log_factor(value.parse().unwrap_or(10)),
        "lfu-decay-time" => shared
            .node
            .status()
            .memory
            .set_lfu_decay_minutes(value.parse().unwrap_or(1)),
        "latency-monitor-threshold" => shared
            .node
            .status()
            .metrics
            .latency
            .set_threshold_ms(value.parse().unwrap_or(0)),
        _ => {}
    }
}

pub(super) fn config_set(args: &[Bytes], shared: &Shared) -> Local {
    if !args.len().is_multiple_of(2) {
        return Local::Now(Reply::error(
            CommandError::WrongArity("config|set".into()).to_string(),
        ));
    }
    let mut updates: Vec<(&'static Param, String)> = Vec::new();
    for pair in args.chunks_exact(2) {
        let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
        let Some(param) = find(&name) else {
            return Local::Now(Reply::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            )));
        };
        if updates.iter().any(|(p, _)| p.name == param.name) {
            return Local::Now(failed(&name, "duplicate parameter"));
        }
        let value = match normalize(param, &String::from_utf8_lossy(&pair[1])) {
            Ok(v) => v,
            Err(reply) => return Local::Now(reply),
        };
        let value = if param.name == "client-output-buffer-limit" {
            let current = shared
                .params
                .read()
                .expect("params lock")
                .get(param.name)
                .cloned()
                .unwrap_or_default();
            match merged_output_limits(&current, &value) {
                Ok(v) => v,
                Err(why) => return Local::Now(failed(&name, why)),
            }
        } else {
            value
        };
        match param.apply {
            Apply::Immutable => return Local::Now(failed(&name, "can't set immutable config")),
            Apply::Fixed => {
                let current = (param.default)(&shared.config);
                if value != current {
                    return Local::Now(failed(
                        &name,
                        format!("concord does not support changing it (it is always '{current}'; see docs/configuration.md)"),
                    ));
                }
            }
            Apply::Replicated
                if param.name == "notify-keyspace-events"
                    && crate::state::notify::parse_flags(value.as_bytes()).is_none() =>
            {
                return Local::Now(failed(
                    &name,
                    "Invalid event class character. Use 'Ag$lshzxeKEtmd'.",
                ));
            }
            Apply::Reload if shared.tls.is_none() => {
                return Local::Now(failed(
                    &name,
                    "TLS is not enabled on this node (start it with --tls-cert-file and --tls-key-file)",
                ));
            }
            _ => {}
        }
        updates.push((param, value));
    }
    // TLS files are read before anything is stored: a bad file changes
    // nothing.
    if updates.iter().any(|(p, _)| p.apply == Apply::Reload) {
        let files = shared.tls.as_ref().expect("checked above");
        let result = files.reload(|paths| {
            for (p, v) in &updates {
                match p.name {
                    "tls-cert-file" => paths.cert = v.into(),
                    "tls-key-file" => paths.key = v.into(),
                    "tls-ca-cert-file" => paths.ca = (!v.is_empty()).then(|| v.into()),
                    "tls-auth-clients" => paths.auth_clients = v.parse().unwrap_or_default(),
                    _ => {}
                }
            }
        });
        if let Err(e) = result {
            return Local::Now(failed("tls-cert-file", e));
        }
    }
    let mut ops = Vec::new();
    {
        let mut values = shared.params.write().expect("params lock");
        for (param, value) in updates {
            match param.name {
                "notify-keyspace-events" => ops.push(crate::state::Op::PubSub(
                    crate::state::pubsub::PubSubOp::NotifyKeyspaceEvents {
                        flags: crate::state::notify::parse_flags(value.as_bytes())
                            .expect("checked above"),
                    },
                )),
                "requirepass" => ops.push(super::acl::requirepass_op(&value)),
                _ => apply_live(shared, param.name, &value),
            }
            values.insert(param.name.to_owned(), value);
        }
    }
    if ops.is_empty() {
        return Local::Now(Reply::ok());
    }
    let node = shared.node.clone();
    let pending: Vec<_> = ops.into_iter().map(|op| node.write(op)).collect();
    Local::Later(Box::pin(async move {
        for rx in pending {
            match crate::raft::answer(rx).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Reply::error(e.to_string()),
                Err(e) => return Reply::error(e.to_string()),
            }
        }
        // In force here before the client's next command, as on the
        // leader (see acl::applied_here).
        if node.status().role() != crate::raft::Role::Leader {
            let barrier = node.read(
                crate::state::Query::Acl(crate::state::acl::AclQuery::Users),
                crate::raft::ReadMode::Linearizable,
            );
            if let Err(e) = crate::raft::answer(barrier).await {
                return Reply::error(e.to_string());
            }
        }
        Reply::ok()
    }))
}

/// docs/configuration.md, from the table: what CONFIG SET does with each
/// parameter and its value on a node started with default flags.
pub fn render_markdown() -> String {
    let config = Config::resolve(Default::default()).expect("default configuration");
    let mut out = String::from(DOC_HEAD);
    for (apply, title, meaning) in [
        (Apply::Live, "Live", "CONFIG SET changes what this node does from the next connection or command on."),
        (Apply::Replicated, "Replicated", "CONFIG SET goes through the log: in force on every node once applied. `requirepass` sets the default user's password (`ACL SETUSER default resetpass >pass`, or `nopass` for the empty string)."),
        (Apply::Reload, "TLS files", "CONFIG SET reads the TLS files again (as SIGHUP does); a file that does not load changes nothing."),
        (Apply::Immutable, "Immutable", "Set by a flag at startup (`concord serve --help`); CONFIG SET refuses them, as Redis refuses its immutable parameters."),
        (Apply::Fixed, "Fixed", "Redis parameters for behaviour concord has in one form only: every write is in the fsync'd raft log before it is acknowledged (so `appendonly yes`, `appendfsync always`, no RDB `save`), and there are sixteen databases on every node (a script's SELECT must be accepted alike by every replica). CONFIG GET reports the truth; CONFIG SET accepts that value alone and refuses any other with an error naming the parameter."),
        (Apply::Encoding, "Encoding thresholds", "Redis's thresholds for its compact encodings. A layout is part of the replicated state (it decides the order HGETALL answers in), so it cannot follow one node's settings: small hashes are packed, in insertion order, up to Redis's defaults (128 fields, 64 bytes) on every node, and other collections keep one layout. These are stored, and OBJECT ENCODING answers the encoding Redis would use under them, except that a hash once moved to a table answers `hashtable` (as Redis's, which never converts back)."),
    ] {
        out.push_str(&format!("\n## {title}\n\n{meaning}\n\n| parameter | value |\n|---|---|\n"));
        for p in PARAMS.iter().filter(|p| p.apply == apply) {
            let name = match p.alias {
                Some(alias) => format!("`{}` (alias `{alias}`)", p.name),
                None => format!("`{}`", p.name),
            };
            let value = (p.default)(&config);
            let value = if value.is_empty() { "(empty)".to_owned() } else { format!("`{value}`") };
            out.push_str(&format!("| {name} | {value} |\n"));
        }
    }
    out
}

const DOC_HEAD: &str = "# Configuration parameters

<!-- Generated from src/server/params.rs: CONCORD_UPDATE_DOCS=1 cargo test --lib server::params -->

A node is configured by flags, `CONCORD_*` environment variables or a TOML
file (`concord serve --help` lists them; the README has the main ones).
`CONFIG GET` and `CONFIG SET` see the parameters below, each declared once
in `src/server/params.rs`. Nothing is accepted and ignored: a parameter is
honoured, or CONFIG SET refuses it with an error that names it. Values shown
are those of a node started with default flags.

## Limits: what protects against what

| limit | protects against | default | CONFIG SET |
|---|---|---|---|
| `maxmemory` (`--maxmemory 64mb`), `maxmemory-policy`, `maxmemory-samples`, `lfu-log-factor`, `lfu-decay-time` | a dataset (a cache with TTLs) growing until the kernel kills the node. Counts the dataset as every replica sizes it (`used_memory_dataset`, MEMORY USAGE), not RSS. Past it the leader evicts by the policy through the log (every replica deletes the same keys, `evicted` keyspace events), or with `noeviction` (or nothing evictable) `denyoom` commands and writing scripts get `-OOM` on the node that took them. The leader's settings decide eviction: give every node the same. | 0 (none), `noeviction`, 5, 10, 1 | yes |
| `maxmemory-clients` | many clients together holding too much in their buffers: the biggest are closed first (`evicted_clients`), never one marked CLIENT NO-EVICT | 0 (none) | yes |
| `client-output-buffer-limit` | a client that stops reading (a stuck subscriber) growing the node: past the hard limit, or past the soft one for its seconds, it is closed and what it had queued freed | `normal 0 0 0`, `pubsub 32mb 8mb 60` | yes |
| `client-query-buffer-limit` | a connection sending a huge request slowly: what it holds unparsed is capped | 1gb | yes |
| `proto-max-bulk-len` (`--proto-max-bulk-len`) | one argument larger than this, refused while parsing | 512mb | yes |
| `--max-entry-bytes` | a write too big for one raft log entry (it would stall heartbeats and elections): refused before the log | 64 MiB | no (flag) |
| `timeout`, `tcp-keepalive` | idle or half-open connections kept forever (never subscribers or blocked clients) | 0 (off), 300 s | yes |
| `maxclients` (`--max-clients`) | too many connections | 10000 | yes |
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_configuration_md_matches_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let rendered = render_markdown();
        if std::env::var_os("CONCORD_UPDATE_DOCS").is_some() {
            std::fs::write(path, &rendered).expect("write docs/configuration.md");
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/configuration.md is stale: run `CONCORD_UPDATE_DOCS=1 cargo test --lib server::params`"
        );
    }

    #[test]
    fn output_limits_merge_by_class_with_units() {
        let current = "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60";
        assert_eq!(
            merged_output_limits(current, "pubsub 1mb 512kb 5").unwrap(),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 524288 5"
        );
        assert_eq!(
            merged_output_limits(current, "replica 0 0 0 normal 10mb 0 0").unwrap(),
            "normal 10485760 0 0 slave 0 0 0 pubsub 33554432 8388608 60"
        );
        assert!(merged_output_limits(current, "pubsub 1mb").is_err());
        assert!(merged_output_limits(current, "other 1 1 1").is_err());
        assert!(merged_output_limits(current, "pubsub x 1 1").is_err());
    }

    #[test]
    fn every_parameter_is_declared_once() {
        let mut seen = std::collections::HashSet::new();
        for p in PARAMS {
            assert!(seen.insert(p.name), "{} twice", p.name);
            if let Some(a) = p.alias {
                assert!(seen.insert(a), "{a} twice");
            }
        }
    }

    #[test]
    fn security_and_resource_parameters_are_never_encoding_knobs() {
        for name in [
            "requirepass",
            "protected-mode",
            "maxmemory",
            "maxmemory-policy",
            "timeout",
            "tcp-keepalive",
            "client-output-buffer-limit",
            "maxclients",
            "min-replicas-to-write",
        ] {
            let p = find(name).unwrap();
            assert_ne!(p.apply, Apply::Encoding, "{name}");
        }
    }

    #[test]
    fn fixed_defaults_pass_their_own_kind() {
        let config = Config::resolve(Default::default()).unwrap();
        for p in PARAMS {
            let value = (p.default)(&config);
            if p.kind != Kind::Text {
                assert_eq!(
                    normalize(p, &value).ok(),
                    Some(value.clone()),
                    "{} = {value}",
                    p.name
                );
            }
        }
        assert_eq!(crate::config::memory_value("2mb"), Some(2 << 20));
        assert_eq!(crate::config::memory_value("1k"), Some(1000));
        assert_eq!(crate::config::memory_value("x"), None);
    }
}
