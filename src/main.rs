//! The `concord` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio::sync::watch;

use concord::config::{Config, LogFormat, Settings};
use concord::raft::{self, NodeConfig};
use concord::server::{self, Shared};
use concord::transport::TcpTransport;

/// mimalloc instead of glibc's malloc. Every stored key and value is a
/// small allocation of its own, freed when it is overwritten; under that
/// churn glibc spent a quarter of a node's CPU in `_int_malloc`,
/// `malloc_consolidate` and `free` (its fast bins are consolidated whenever
/// a larger buffer is allocated, and connection read buffers are).
/// Wrapped to count the bytes it hands out (INFO's `used_memory`).
#[global_allocator]
static GLOBAL: concord::alloc::Counting<mimalloc::MiMalloc> =
    concord::alloc::Counting(mimalloc::MiMalloc);

#[derive(Parser)]
#[command(
    name = "concord",
    version,
    about = "A Raft-replicated coordination server that speaks the Redis protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one node.
    Serve {
        /// A TOML file with the same settings as the flags (kebab-case keys).
        #[arg(long, env = "CONCORD_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Runs a local cluster (3 nodes on 127.0.0.1:6379-6381 by default) until Ctrl-C.
    Dev(concord::dev::DevArgs),
    /// Administers a running cluster over its client ports: status, health,
    /// members, leader transfer, snapshot save and restore (etcdctl-like).
    Ctl(concord::ctl::CtlArgs),
    /// Asks a node's admin port for /health (or /ready): exit 0 when it
    /// answers 200, 1 otherwise. For container health checks, where the
    /// image has no shell or curl.
    Health(HealthArgs),
}

#[derive(clap::Args)]
struct HealthArgs {
    /// The node's --admin-listen address.
    #[arg(long, env = "CONCORD_HEALTH_ADMIN", default_value = "127.0.0.1:8080")]
    admin: String,
    /// Ask /ready instead of /health.
    #[arg(long)]
    ready: bool,
    /// The admin port speaks TLS (--admin-tls); its certificate is not
    /// verified (the probe runs beside the node).
    #[arg(long, env = "CONCORD_HEALTH_TLS")]
    tls: bool,
    /// A file with the bearer token (--admin-token-file), for --ready.
    #[arg(long, env = "CONCORD_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

fn main() -> ExitCode {
    concord::alloc::mark_installed();
    let cli = Cli::parse();
    match cli.command {
        Command::Health(args) => health(args),
        Command::Ctl(args) => concord::ctl::run(args),
        Command::Dev(args) => match concord::dev::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        Command::Serve { config, settings } => {
            let file = match config.as_deref().map(Settings::from_file).transpose() {
                Ok(file) => file.unwrap_or_default(),
                Err(e) => return fail(&e),
            };
            let config = match Config::resolve(settings.or(file)) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            init_logging(&config);
            // One thread for the clients, the peer links and the raft driver
            // (see raft::start); the WAL thread fsyncs beside it.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name("concord-io")
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&e),
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    fail(&e)
                }
            }
        }
    }
}

fn health(args: HealthArgs) -> ExitCode {
    let path = if args.ready { "/ready" } else { "/health" };
    let token = match args
        .token_file
        .as_deref()
        .map(std::fs::read_to_string)
        .transpose()
    {
        Ok(t) => t.map(|t| t.trim().to_owned()),
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let timeout = std::time::Duration::from_secs(args.timeout);
    let answer = runtime.block_on(async {
        tokio::time::timeout(
            timeout,
            concord::server::probe(&args.admin, path, args.tls, token.as_deref()),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
    });
    match answer {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprint!("concord: {path} answered {status}: {body}");
            ExitCode::FAILURE
        }
        Err(e) => fail(&format!("{path} on {}: {e}", args.admin)),
    }
}

fn fail(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("concord: {e}");
    ExitCode::FAILURE
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Human => builder.init(),
    }
}

#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Node(#[from] raft::NodeError),
    #[error("the raft driver stopped unexpectedly")]
    DriverStopped,
    #[error("{0}")]
    Tls(#[from] concord::tls::TlsError),
    #[error("{0}")]
    Acl(String),
    #[error("--peer-listen {0} is reachable from other hosts, but peers are not authenticated: give --peer-tls or --peer-secret-file (or --insecure-peers on a network nobody else reaches)")]
    InsecurePeers(String),
}

async fn listen(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Listen {
            addr: addr.to_owned(),
            source,
        })
}

async fn serve(config: Config) -> Result<(), ServeError> {
    if Config::is_public(&config.peer_listen) && !config.peer_tls && config.peer_secret.is_none() {
        if !config.insecure_peers {
            return Err(ServeError::InsecurePeers(config.peer_listen.clone()));
        }
        tracing::warn!(peer_listen = %config.peer_listen,
            "--insecure-peers: anyone who reaches the peer port can act as a member of this cluster");
    }
    let tls = config
        .tls
        .clone()
        .map(concord::tls::TlsFiles::load)
        .transpose()?
        .map(Arc::new);
    let peer_auth = concord::transport::tcp::PeerAuth {
        key: config
            .peer_secret
            .clone()
            .unwrap_or_else(|| config.cluster_id.as_bytes().to_vec()),
        tls: tls.clone().filter(|_| config.peer_tls),
    };
    let seed = server::acl::seed(&config).map_err(ServeError::Acl)?;
    let listener = listen(&config.listen).await?;
    let tls_listener = match &config.tls_listen {
        Some(addr) => Some(listen(addr).await?),
        None => None,
    };
    let peer_listener = listen(&config.peer_listen).await?;
    let admin = match &config.admin_listen {
        Some(addr) => Some(listen(addr).await?),
        None => None,
    };
    let mut node_config = NodeConfig::new(config.node_id, config.data_dir.clone());
    let metrics = node_config.metrics.clone();
    node_config.cluster_id = config.cluster_id.clone();
    node_config.initial_voters = if config.join {
        Vec::new()
    } else {
        config.initial_cluster.iter().map(|p| p.id).collect()
    };
    node_config.peers = config
        .initial_cluster
        .iter()
        .filter(|p| p.id != config.node_id)
        .map(|p| (p.id, p.addr.clone()))
        .collect();
    node_config.client_addr = config.advertise.clone();
    node_config.script_host = concord::script::host();
    node_config.tick = config.tick;
    node_config.request_timeout = config.request_timeout;
    node_config.max_inflight_msgs = config.raft_max_inflight;
    node_config.snapshot_entries = config.snapshot_entries;
    node_config.snapshot_log_bytes = config.snapshot_log_bytes;
    node_config.wal_segment_bytes = config.wal_segment_bytes;
    node_config.max_entry_bytes = config.max_entry_bytes;
    let peers: Vec<(u64, String)> = node_config
        .peers
        .iter()
        .map(|(id, a)| (*id, a.clone()))
        .collect();
    let transport = TcpTransport::new(
        config.node_id,
        config.cluster_hash(),
        peer_auth,
        tokio::runtime::Handle::current(),
        &peers,
        metrics,
    );
    let binder = transport.binder();
    let node = tokio::task::spawn_blocking(move || raft::start(node_config, Box::new(transport)))
        .await
        .expect("start task")?;
    binder.bind(Arc::new(node.clone()));
    tokio::spawn(binder.serve(peer_listener));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    tracing::info!(
        node = config.node_id,
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        peer_listen = %config.peer_listen,
        data_dir = %config.data_dir.display(),
        "concord is ready to accept connections"
    );
    let config_admin_tls = config.admin_tls;
    let shared = Arc::new(Shared::new(node.clone(), config, port, tls.clone()));
    tokio::spawn(server::acl::close_revoked(shared.clone()));
    if let Some(op) = seed {
        tokio::spawn(server::acl::propose_seed(shared.clone(), op));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(admin) = admin {
        let admin_tls = tls.clone().filter(|_| config_admin_tls);
        tokio::spawn(server::serve_admin(
            admin,
            shared.clone(),
            stop_rx.clone(),
            admin_tls,
        ));
    }
    let tls_server = tls_listener.map(|l| {
        tokio::spawn(server::serve(
            l,
            shared.clone(),
            stop_rx.clone(),
            tls.clone(),
        ))
    });
    if let Some(files) = tls.clone() {
        tokio::spawn(reload_on_sighup(files));
    }
    tokio::spawn(server::evict_clients(shared.clone(), stop_rx.clone()));
    tokio::spawn(server::health::run(shared.clone(), stop_rx.clone()));
    let server = tokio::spawn(server::serve(listener, shared.clone(), stop_rx, None));
    let driver = node.join();
    let outcome = tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down: no new connections, finishing replies in flight");
            Ok(())
        }
        _ = shared.shutdown_requested.notified() => {
            tracing::info!("shutting down on SHUTDOWN: no new connections, finishing replies in flight");
            Ok(())
        }
        _ = driver => Err(ServeError::DriverStopped),
    };
    if outcome.is_ok() {
        if let Some(new_leader) = node.hand_off().await {
            tracing::info!(new_leader, "handed leadership over before stopping");
        }
    }
    let _ = stop_tx.send(true);
    let _ = server.await;
    if let Some(tls_server) = tls_server {
        let _ = tls_server.await;
    }
    node.shutdown().await;
    tracing::info!("bye");
    outcome
}

/// SIGHUP reads the TLS files again: new connections and peer links get
/// the new certificate, open ones keep theirs.
async fn reload_on_sighup(files: Arc<concord::tls::TlsFiles>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match files.reload(|_| {}) {
            Ok(()) => tracing::info!("SIGHUP: TLS certificates reloaded"),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP: TLS certificates not reloaded; the old ones stay in force")
            }
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
