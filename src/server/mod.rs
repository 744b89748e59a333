//! The only place with client sockets.
//!
//! One task per connection reads whatever the socket has, parses every
//! complete request in it, submits them all (writes join the driver's next
//! batch, reads its next ReadIndex round), then awaits the answers in order
//! and writes them back with one syscall. A pipeline of N commands therefore
//! costs one read, one write and one raft round, not N.
//!
//! Connection-level commands (HELLO, CLIENT, INFO, CONFIG, ...) are answered
//! here from [`Shared`] without touching raft.

pub mod acl;
mod admin;
mod cluster;
mod connection;
pub mod health;
mod info;
mod local;
pub mod monitor;
pub mod params;
pub mod pause;
mod pubsub;
mod slowlog;
mod transaction;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use admin::{probe, serve_admin};

use crate::config::Config;
use crate::raft::NodeHandle;

/// Counters for INFO stats.
#[derive(Default)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub commands_processed: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub errors_replied: AtomicU64,
    /// Clients closed past their output buffer limit.
    pub output_limit_disconnections: AtomicU64,
    /// Clients closed past the query buffer limit.
    pub query_limit_disconnections: AtomicU64,
    /// Clients closed because all clients together went past
    /// `maxmemory-clients`.
    pub evicted_clients: AtomicU64,
    /// Error replies by code (INFO errorstats).
    pub error_codes: ErrorCodes,
    /// Calls of each command (INFO commandstats).
    pub calls: CommandCalls,
}

/// Error replies counted by their code, the first word of the text
/// (`ERR`, `WRONGTYPE`, a script's own `MY_CODE`), as Redis counts them for
/// INFO errorstats. Only errors answered to a client count: not the ones
/// inside an EXEC's or a script's array.
#[derive(Default)]
pub struct ErrorCodes(Mutex<BTreeMap<String, u64>>);

impl ErrorCodes {
    /// Codes tracked at most, as in Redis: scripts can make up codes, and
    /// each one tracked is a line of INFO. Past this, new codes are not
    /// tracked (total_error_replies still counts them).
    const MAX_CODES: usize = 128;

    pub fn count(&self, text: &str) {
        let code = error_code(text);
        let mut codes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = codes.get_mut(code) {
            *n += 1;
        } else if codes.len() < Self::MAX_CODES {
            codes.insert(code.to_owned(), 1);
        }
    }

    /// Every code with its count, in code order.
    pub fn counts(&self) -> Vec<(String, u64)> {
        let codes = self.0.lock().unwrap_or_else(|e| e.into_inner());
        codes.iter().map(|(code, n)| (code.clone(), *n)).collect()
    }

    pub fn reset(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The code of an error text: its first word, if a space ends it within
/// 32 bytes; `ERR` otherwise (Redis's rule).
fn error_code(text: &str) -> &str {
    match text.bytes().take(32).position(|b| b == b' ') {
        Some(end) if end > 0 => &text[..end],
        _ => "ERR",
    }
}

/// INFO commandstats: per command of the table, by its name (`config|get`
/// for a subcommand): built once, so recording is a few atomic adds.
pub struct CommandCalls(std::collections::HashMap<&'static str, CommandStat>);

/// One command's counters.
#[derive(Default)]
pub struct CommandStat {
    pub calls: AtomicU64,
    /// Microseconds from its batch being handed to the driver until the
    /// whole batch was answered, summed.
    pub usec: AtomicU64,
    /// Refused before running (arity, NOAUTH, NOPERM).
    pub rejected: AtomicU64,
    /// Ran and answered an error.
    pub failed: AtomicU64,
    /// The calls' durations (`usec` one by one), for `/metrics` and
    /// LATENCY HISTOGRAM.
    pub latency: crate::metrics::LatencyBuckets,
}

impl Default for CommandCalls {
    fn default() -> Self {
        let names = crate::command::all()
            .flat_map(|spec| std::iter::once(spec).chain(spec.subcommands.iter()))
            .map(|spec| (spec.name, CommandStat::default()));
        CommandCalls(names.collect())
    }
}

impl CommandCalls {
    /// One answered request of `name`, its batch answered `micros` after
    /// it was handed over.
    pub fn record(&self, name: &str, micros: u64, rejected: bool, failed: bool) {
        if let Some(stat) = self.0.get(name) {
            if rejected {
                stat.rejected.fetch_add(1, Ordering::Relaxed);
                return;
            }
            stat.calls.fetch_add(1, Ordering::Relaxed);
            stat.usec.fetch_add(micros, Ordering::Relaxed);
            stat.latency.record(micros);
            if failed {
                stat.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters of command `name` (`config|get` for a subcommand).
    pub fn get(&self, name: &str) -> Option<&CommandStat> {
        self.0.get(name)
    }

    /// The commands called or refused at least once, by name: (name,
    /// calls, usec, rejected, failed).
    pub fn called(&self) -> Vec<(&'static str, u64, u64, u64, u64)> {
        let mut out: Vec<_> = self
            .0
            .iter()
            .map(|(name, s)| {
                (
                    *name,
                    s.calls.load(Ordering::Relaxed),
                    s.usec.load(Ordering::Relaxed),
                    s.rejected.load(Ordering::Relaxed),
                    s.failed.load(Ordering::Relaxed),
                )
            })
            .filter(|(_, calls, _, rejected, _)| *calls > 0 || *rejected > 0)
            .collect();
        out.sort_unstable();
        out
    }

    pub fn reset(&self) {
        for s in self.0.values() {
            for counter in [&s.calls, &s.usec, &s.rejected, &s.failed] {
                counter.store(0, Ordering::Relaxed);
            }
            s.latency.reset();
        }
    }
}

/// What CLIENT LIST shows of a connection; updated by its task.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub name: String,
    pub lib_name: String,
    pub lib_ver: String,
    pub resp: u8,
    pub created: Instant,
    pub last_active: Instant,
    pub last_command: String,
    /// The ticket of the blocking command this client waits in, if any
    /// (CLIENT UNBLOCK ends that wait).
    pub blocked_on: Option<crate::state::Ticket>,
    /// The ACL user the connection is authenticated as.
    pub user: String,
    /// CLIENT KILL, or the connection's user deleted or disabled: the
    /// connection closes at once.
    pub kill: Arc<tokio::sync::Notify>,
    /// What the connection's buffers hold, kept up to date by it.
    pub mem: Arc<ClientMemory>,
    /// CLIENT NO-EVICT: never closed for `maxmemory-clients`.
    pub no_evict: bool,
    /// The database the connection SELECTed.
    pub db: u32,
}

/// What one connection holds in memory, for CLIENT LIST (`qbuf`, `omem`,
/// `tot-mem`), INFO's `mem_clients_normal` and `maxmemory-clients`.
#[derive(Default)]
pub struct ClientMemory {
    /// Bytes of requests read and not yet parsed and run.
    pub query: AtomicU64,
    /// Room allocated in the read buffer beyond that (`qbuf-free`).
    pub query_free: AtomicU64,
    /// Bytes of replies encoded and not yet written to the socket.
    pub output: AtomicU64,
    /// A subscriber's messages queued and not yet encoded (its backlog).
    pub backlog: std::sync::OnceLock<Arc<crate::raft::backlog::Backlog>>,
}

impl std::fmt::Debug for ClientMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ClientMemory(query {}, output {})",
            self.query_bytes(),
            self.output_bytes()
        )
    }
}

impl ClientMemory {
    pub fn query_bytes(&self) -> u64 {
        self.query.load(Ordering::Relaxed)
    }

    pub fn output_bytes(&self) -> u64 {
        self.output.load(Ordering::Relaxed) + self.backlog.get().map_or(0, |b| b.bytes())
    }

    pub fn query_free_bytes(&self) -> u64 {
        self.query_free.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.query_bytes() + self.query_free_bytes() + self.output_bytes()
    }
}

/// Closes the biggest clients (never one marked NO-EVICT) until the rest
/// hold no more than `maxmemory-clients` together. Run every 100 ms, and by
/// a connection whose buffers just grew past [`CLIENT_CHECK_BYTES`], so a
/// client sending a huge request is closed while it sends, as Redis does.
/// Returns true if the client `me` was among those closed.
pub fn enforce_clients_memory(shared: &Shared, me: Option<u64>) -> bool {
    let limit = shared.clients_memory_limit();
    if limit == 0 {
        return false;
    }
    let mut sizes: Vec<(u64, Arc<tokio::sync::Notify>, u64)> = {
        let clients = shared.clients.lock().expect("clients lock");
        clients
            .values()
            .filter(|c| !c.no_evict)
            .map(|c| (c.mem.total(), c.kill.clone(), c.id))
            .collect()
    };
    let mut total: u64 = sizes.iter().map(|(m, ..)| m).sum();
    sizes.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut closed_me = false;
    for (size, kill, id) in sizes {
        if total <= limit || size == 0 {
            break;
        }
        tracing::info!(
            client = id,
            bytes = size,
            limit,
            "closing a client for maxmemory-clients"
        );
        kill.notify_one();
        shared.stats.evicted_clients.fetch_add(1, Ordering::Relaxed);
        closed_me |= Some(id) == me;
        total -= size;
    }
    closed_me
}

/// A connection holding more than this checks `maxmemory-clients` itself.
pub const CLIENT_CHECK_BYTES: u64 = 32 * 1024;

/// `maxmemory-clients`: while the clients of this node together hold more
/// than the limit, the biggest are closed first (never one marked CLIENT
/// NO-EVICT), as Redis 7 evicts clients. Checked every 100 ms.
pub async fn evict_clients(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(std::time::Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = shutdown.changed() => return,
        }
        enforce_clients_memory(&shared, None);
    }
}

/// State shared by every connection of this node.
pub struct Shared {
    pub node: NodeHandle,
    pub config: Config,
    /// CONFIG SET values, by lower-case name.
    pub params: RwLock<BTreeMap<String, String>>,
    pub stats: Stats,
    pub clients: Mutex<BTreeMap<u64, ClientInfo>>,
    next_client_id: AtomicU64,
    pub started: Instant,
    pub started_at: SystemTime,
    pub run_id: String,
    pub tcp_port: u16,
    /// Notified by SHUTDOWN: the process stops as on SIGTERM.
    pub shutdown_requested: std::sync::Arc<tokio::sync::Notify>,
    /// The TLS material of the client port, peer links and admin port,
    /// reloaded by SIGHUP and `CONFIG SET tls-*`.
    pub tls: Option<Arc<crate::tls::TlsFiles>>,
    /// ACL refusals and failed logins on this node (ACL LOG).
    pub acl_log: Arc<acl::AclLog>,
    /// The commands each restricted user may run, per table generation.
    pub acl_commands: acl::CommandCache,
    /// SLOWLOG of this node.
    pub slowlog: slowlog::SlowLog,
    /// `timeout`: seconds a client may stay idle (0: forever).
    pub idle_timeout_s: AtomicU64,
    /// `tcp-keepalive`: seconds of silence before a client socket is
    /// probed (0: no keepalive).
    pub tcp_keepalive_s: AtomicU64,
    /// `client-output-buffer-limit`, by client class.
    pub output_limits: OutputLimits,
    /// `client-query-buffer-limit`: bytes a connection may hold unparsed.
    pub query_buffer_limit: AtomicU64,
    /// CLIENT PAUSE on this node.
    pub pause: pause::Pause,
    /// MONITOR's feed.
    pub monitor: monitor::Monitor,
}

/// `client-output-buffer-limit` by class. `replica` is kept for CONFIG
/// GET/SET only: no Redis replica ever connects to concord.
#[derive(Default)]
pub struct OutputLimits {
    pub normal: Arc<crate::raft::backlog::OutputLimit>,
    pub pubsub: Arc<crate::raft::backlog::OutputLimit>,
    pub replica: Arc<crate::raft::backlog::OutputLimit>,
}

impl Shared {
    pub fn new(
        node: NodeHandle,
        config: Config,
        tcp_port: u16,
        tls: Option<Arc<crate::tls::TlsFiles>>,
    ) -> Shared {
        let shared = Shared {
            tls,
            slowlog: slowlog::SlowLog::default(),
            idle_timeout_s: AtomicU64::new(0),
            tcp_keepalive_s: AtomicU64::new(300),
            output_limits: OutputLimits::default(),
            query_buffer_limit: AtomicU64::new(1 << 30),
            pause: pause::Pause::default(),
            monitor: monitor::Monitor::default(),
            acl_log: Arc::default(),
            acl_commands: acl::CommandCache::default(),
            node,
            params: RwLock::new(params::defaults(&config)),
            config,
            stats: Stats::default(),
            clients: Mutex::new(BTreeMap::new()),
            next_client_id: AtomicU64::new(1),
            started: Instant::now(),
            started_at: SystemTime::now(),
            run_id: random_hex(40),
            tcp_port,
            shutdown_requested: std::sync::Arc::new(tokio::sync::Notify::new()),
        };
        let values: Vec<(String, String)> = shared
            .params
            .read()
            .expect("params lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, value) in values {
            params::apply_live(&shared, &name, &value);
        }
        shared
    }

    /// `maxmemory-clients` in bytes (0: none); a percentage is of
    /// `maxmemory`, as Redis reads it.
    pub fn clients_memory_limit(&self) -> u64 {
        let value = self
            .params
            .read()
            .expect("params lock")
            .get("maxmemory-clients")
            .cloned()
            .unwrap_or_default();
        match value.strip_suffix('%') {
            Some(pct) => {
                let pct: u64 = pct.parse().unwrap_or(0);
                self.node.status().memory.max_bytes() * pct / 100
            }
            None => crate::config::memory_value(&value).unwrap_or(0),
        }
    }

    /// Protected mode is in force: on, and no password anywhere (the
    /// default user needs none and this node was started without
    /// --requirepass).
    pub fn protected(&self) -> bool {
        let on = self
            .params
            .read()
            .expect("params lock")
            .get("protected-mode")
            .map_or(self.config.protected_mode, |v| v == "yes");
        on && self.requirepass().is_none()
            && self
                .node
                .status()
                .acl()
                .user(crate::state::acl::DEFAULT_USER)
                .is_some_and(|u| u.enabled && u.nopass)
    }

    /// The password this node asks of the default user while the
    /// cluster's default user has none (`--requirepass`, or CONFIG SET
    /// requirepass on this node); None when empty.
    pub fn requirepass(&self) -> Option<String> {
        self.params
            .read()
            .expect("params lock")
            .get("requirepass")
            .filter(|v| !v.is_empty())
            .cloned()
    }

    fn next_client_id(&self) -> u64 {
        self.next_client_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The leader's client address as (host, port), as this node knows it
    /// (("", "0") while no leader is known or it has not advertised one).
    pub fn leader_addr(&self) -> (String, String) {
        split_addr(&self.client_addr(self.node.status().leader()))
    }

    /// The client address node `id` advertised through the log.
    pub fn client_addr(&self, id: u64) -> String {
        self.node.status().client_addr(id).unwrap_or_default()
    }

    /// A numeric parameter from CONFIG, falling back to `default`.
    pub fn param_u64(&self, name: &str, default: u64) -> u64 {
        self.params
            .read()
            .expect("params lock")
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

fn random_hex(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).expect("hex digit"))
        .collect()
}

/// How long a TLS client may take to finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `tcp-keepalive` on a client socket, as Redis sets it: probes after
/// `secs` of silence, then every third of that, dropped after 3 unanswered
/// (so a peer that vanished is noticed within about twice `secs`).
fn set_keepalive(socket: &tokio::net::TcpStream, secs: u64) {
    use std::os::fd::AsRawFd;
    if secs == 0 {
        return;
    }
    let fd = socket.as_raw_fd();
    let set = |level: libc::c_int, name: libc::c_int, value: libc::c_int| {
        // SAFETY: setsockopt reads an int of the given size from a live
        // descriptor this socket owns.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "setting tcp-keepalive");
        }
    };
    let idle = secs.min(i32::MAX as u64) as libc::c_int;
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, (idle / 3).max(1));
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3);
}

/// Accepts clients until `shutdown` turns true, then waits for every
/// connection to finish the replies it owes. With `tls`, every connection
/// is a TLS server session with the certificate current at its accept.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<Arc<crate::tls::TlsFiles>>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors and the like: back off briefly
                        // rather than spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = socket.set_nodelay(true);
                set_keepalive(&socket, shared.tcp_keepalive_s.load(Ordering::Relaxed));
                let laddr = socket.local_addr().map(|a| a.to_string()).unwrap_or_default();
                shared.stats.connections_received.fetch_add(1, Ordering::Relaxed);
                let open = shared.clients.lock().expect("clients lock").len() as u64;
                let max = shared.param_u64("maxclients", shared.config.max_clients);
                let shared = shared.clone();
                let shutdown = shutdown.clone();
                let refusal = if open >= max {
                    shared.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                    Some("ERR max number of clients reached")
                } else if !peer.ip().is_loopback() && shared.protected() {
                    shared.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                    Some(acl::DENIED)
                } else {
                    None
                };
                match tls.as_ref().map(|t| t.client_acceptor()) {
                    None => {
                        match refusal {
                            Some(text) => tasks.spawn(connection::reject(socket, text)),
                            None => tasks.spawn(connection::run(socket, peer, laddr, shared, shutdown)),
                        };
                    }
                    Some(acceptor) => {
                        tasks.spawn(async move {
                            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await;
                            let stream = match handshake {
                                Ok(Ok(stream)) => stream,
                                Ok(Err(e)) => {
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    tracing::debug!(%peer, "TLS handshake timed out");
                                    return;
                                }
                            };
                            match refusal {
                                Some(text) => connection::reject(stream, text).await,
                                None => connection::run(stream, peer, laddr, shared, shutdown).await,
                            }
                        });
                    }
                }
            }
            _ = shutdown.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// `host:port` as (host, port); ("", "0") when it has no port.
pub fn split_addr(addr: &str) -> (String, String) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.to_owned()),
        None => (String::new(), "0".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::{error_code, ErrorCodes};

    #[test]
    fn an_error_s_code_is_its_first_word_or_err() {
        assert_eq!(error_code("WRONGTYPE Operation against a key"), "WRONGTYPE");
        assert_eq!(error_code("MY_CODE x"), "MY_CODE");
        assert_eq!(error_code("ERR"), "ERR");
        assert_eq!(error_code(""), "ERR");
        assert_eq!(error_code(" leading space"), "ERR");
        // No space within 32 bytes: not a code.
        assert_eq!(error_code(&format!("{} tail", "X".repeat(40))), "ERR");
        assert_eq!(error_code("ÉCHEC ünïcode"), "ÉCHEC");
    }

    #[test]
    fn codes_past_the_bound_are_not_tracked() {
        let codes = ErrorCodes::default();
        for i in 0..200 {
            codes.count(&format!("CODE{i} text"));
        }
        codes.count("CODE0 again");
        let counts = codes.counts();
        assert_eq!(counts.len(), ErrorCodes::MAX_CODES);
        assert!(counts.contains(&("CODE0".to_owned(), 2)));
        codes.reset();
        assert!(codes.counts().is_empty());
    }
}
