//! `concord dev`: a local cluster in one command.
//!
//! Starts N `concord serve` processes on 127.0.0.1 (client ports from
//! `--base-port`, peer ports 10000 above, data under `--dir`), streams their
//! logs with a node prefix, prints the addresses and the leader once one is
//! elected, and stops them all with SIGTERM on Ctrl-C or SIGTERM. A node
//! killed by hand stays down (that is how failover is tried out); `concord
//! dev` exits when every node has.
//!
//! The stop signals are caught before the first node starts: a signal that
//! arrives while the cluster is still electing its leader stops the nodes
//! too, rather than killing `concord dev` and orphaning them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGINT or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_signal: libc::c_int) {
    // An atomic store is all a signal handler may safely do here.
    STOP.store(true, Ordering::SeqCst);
}

fn catch_stop_signals() {
    let handler = request_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

#[derive(Clone, Debug, clap::Args)]
pub struct DevArgs {
    /// Client port of node 1; node i listens on base-port + i - 1.
    #[arg(long, default_value_t = 6379)]
    pub base_port: u16,
    /// Peer port of node 1 (default: base-port + 10000).
    #[arg(long)]
    pub peer_base_port: Option<u16>,
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: u16,
    /// Where the nodes keep their data (node-1, node-2, ...).
    #[arg(long, default_value = "concord-dev")]
    pub dir: PathBuf,
    /// Delete the data directory first.
    #[arg(long)]
    pub fresh: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("--nodes must be between 1 and 9")]
    Nodes,
    #[error("ports out of range")]
    Ports,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("no leader was elected within {0:?}; see the node logs above")]
    NoLeader(Duration),
}

struct Node {
    id: u16,
    port: u16,
    child: Child,
}

pub fn run(args: DevArgs) -> Result<(), DevError> {
    if args.nodes == 0 || args.nodes > 9 {
        return Err(DevError::Nodes);
    }
    let peer_base = match args.peer_base_port {
        Some(p) => p,
        None => args.base_port.checked_add(10_000).ok_or(DevError::Ports)?,
    };
    if args.base_port.checked_add(args.nodes).is_none()
        || peer_base.checked_add(args.nodes).is_none()
    {
        return Err(DevError::Ports);
    }
    if args.fresh && args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    std::fs::create_dir_all(&args.dir)?;
    catch_stop_signals();
    let exe = std::env::current_exe()?;
    let cluster: Vec<String> = (1..=args.nodes)
        .map(|i| format!("{i}=127.0.0.1:{}", peer_base + i - 1))
        .collect();
    let cluster = cluster.join(",");
    let mut nodes = Vec::new();
    for i in 1..=args.nodes {
        let port = args.base_port + i - 1;
        let mut child = Command::new(&exe)
            .arg("serve")
            .args(["--node-id", &i.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--peer-listen", &format!("127.0.0.1:{}", peer_base + i - 1)])
            .arg("--data-dir")
            .arg(args.dir.join(format!("node-{i}")))
            .args(["--initial-cluster", &cluster])
            .env(
                "CONCORD_LOG",
                std::env::var("CONCORD_LOG").unwrap_or_else(|_| "info,slog=warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            std::thread::spawn(move || prefix_lines(i, stream));
        }
        nodes.push(Node { id: i, port, child });
    }
    let timeout = Duration::from_secs(30);
    let leader = wait_for_leader(&nodes, timeout);
    if stop_requested() {
        stop_all(&mut nodes);
        return Ok(());
    }
    match leader {
        Some(leader) => {
            println!("\nconcord dev: {} nodes up", nodes.len());
            for n in &nodes {
                let role = if n.id == leader { "leader" } else { "follower" };
                println!("  node {}  127.0.0.1:{}  ({role})", n.id, n.port);
            }
            println!(
                "  connect: redis-cli -p {}    stop: Ctrl-C\n",
                args.base_port
            );
        }
        None => {
            stop_all(&mut nodes);
            return Err(DevError::NoLeader(timeout));
        }
    }
    wait_for_signal_or_exit(&mut nodes);
    stop_all(&mut nodes);
    Ok(())
}

fn prefix_lines(id: u16, stream: Box<dyn Read + Send>) {
    let reader = BufReader::new(stream);
    let stdout = std::io::stdout();
    for line in reader.lines() {
        let Ok(line) = line else { break };
        let mut out = stdout.lock();
        let _ = writeln!(out, "[node {id}] {line}");
    }
}

/// Asks a node for its raft role with a bare RESP exchange.
fn role_of(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"INFO raft\r\n").ok()?;
    let mut buf = vec![0u8; 4096];
    let mut text = String::new();
    while !text.contains("raft_voters") {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("raft_role:"))
        .map(|r| r.trim().to_owned())
}

fn wait_for_leader(nodes: &[Node], timeout: Duration) -> Option<u16> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline && !stop_requested() {
        for n in nodes {
            if role_of(n.port).as_deref() == Some("leader") {
                return Some(n.id);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Returns on SIGINT or SIGTERM, or once every node has exited.
fn wait_for_signal_or_exit(nodes: &mut [Node]) {
    while !stop_requested() {
        let mut running = 0;
        for n in nodes.iter_mut() {
            match n.child.try_wait() {
                Ok(None) => running += 1,
                Ok(Some(status)) => {
                    if n.port != 0 {
                        println!("concord dev: node {} exited ({status})", n.id);
                        n.port = 0;
                    }
                }
                Err(_) => {}
            }
        }
        if running == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_all(nodes: &mut [Node]) {
    for n in nodes.iter() {
        // SAFETY: kill(2) on a child we spawned, with a valid signal.
        unsafe {
            libc::kill(n.child.id() as i32, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in nodes.iter_mut() {
        while Instant::now() < deadline {
            if let Ok(Some(_)) = n.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = n.child.try_wait() {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
    println!("concord dev: all nodes stopped");
}
