//! Real multi-node clusters for integration tests.
//!
//! Each node is a `concord serve` process on 127.0.0.1. With proxies, node
//! i reaches node j through its own [`Proxy`] (one per directed link), so a
//! test can cut, drop or delay any link. Every wait polls a condition against
//! a deadline.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::proxy::Proxy;
use super::{free_port, ping, wait_for, START_TIMEOUT};

pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Node {
    pub id: u64,
    pub port: u16,
    pub peer_port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    initial_cluster: String,
    join: bool,
    /// Arguments of this node alone (its own certificate, say).
    pub args: Vec<String>,
}

pub struct Cluster {
    pub nodes: BTreeMap<u64, Node>,
    proxies: HashMap<(u64, u64), Proxy>,
    extra: Vec<String>,
    tmp: tempfile::TempDir,
    /// The default user's password, when the nodes were given one.
    pub password: Option<String>,
}

impl Cluster {
    /// `n` nodes talking to each other directly.
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        Cluster::build(n, extra, false)
    }

    /// `n` nodes whose every peer link goes through a controllable proxy.
    pub fn start_with_proxies(n: u64, extra: &[&str]) -> Cluster {
        Cluster::build(n, extra, true)
    }

    /// `n` nodes, node `id` given `per_node(id)` besides `extra`.
    pub fn start_each(n: u64, extra: &[&str], per_node: impl Fn(u64) -> Vec<String>) -> Cluster {
        Cluster::build_with(n, extra, false, &per_node)
    }

    fn build(n: u64, extra: &[&str], with_proxies: bool) -> Cluster {
        Cluster::build_with(n, extra, with_proxies, &|_| Vec::new())
    }

    fn build_with(
        n: u64,
        extra: &[&str],
        with_proxies: bool,
        per_node: &dyn Fn(u64) -> Vec<String>,
    ) -> Cluster {
        let tmp = tempfile::tempdir().expect("temp dir");
        let ports: BTreeMap<u64, (u16, u16)> =
            (1..=n).map(|id| (id, (free_port(), free_port()))).collect();
        let mut proxies = HashMap::new();
        if with_proxies {
            for i in 1..=n {
                for j in 1..=n {
                    if i != j {
                        let target = format!("127.0.0.1:{}", ports[&j].1).parse().expect("addr");
                        proxies.insert((i, j), Proxy::start(target));
                    }
                }
            }
        }
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            proxies,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tmp,
            password: extra
                .windows(2)
                .find(|w| w[0] == "--requirepass")
                .map(|w| w[1].to_owned()),
        };
        for id in 1..=n {
            let view: Vec<String> = (1..=n)
                .map(|j| format!("{j}={}", cluster.peer_addr(id, j, ports[&j].1)))
                .collect();
            let node = Node {
                id,
                port: ports[&id].0,
                peer_port: ports[&id].1,
                dir: cluster.tmp.path().join(format!("node-{id}")),
                child: None,
                initial_cluster: view.join(","),
                join: false,
                args: per_node(id),
            };
            cluster.nodes.insert(id, node);
        }
        for id in 1..=n {
            cluster.spawn(id);
        }
        for id in 1..=n {
            cluster.wait_up(id);
        }
        cluster
    }

    /// How node `from` reaches node `to`.
    fn peer_addr(&self, from: u64, to: u64, peer_port: u16) -> String {
        match self.proxies.get(&(from, to)) {
            Some(p) => p.addr().to_string(),
            None => format!("127.0.0.1:{peer_port}"),
        }
    }

    pub fn log_path(&self, id: u64) -> PathBuf {
        self.tmp.path().join(format!("node-{id}.log"))
    }

    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    fn spawn(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .expect("log file");
        let node = self.nodes.get_mut(&id).expect("node");
        assert!(node.child.is_none(), "node {id} already running");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_concord"));
        cmd.arg("serve")
            .args(["--node-id", &id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", node.port)])
            .args(["--peer-listen", &format!("127.0.0.1:{}", node.peer_port)])
            .arg("--data-dir")
            .arg(&node.dir)
            .args(["--initial-cluster", &node.initial_cluster])
            .args(&self.extra)
            .args(&node.args)
            .env("CONCORD_LOG", "info,slog=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if node.join {
            cmd.arg("--join");
        }
        node.child = Some(cmd.spawn().expect("spawn concord"));
    }

    fn wait_up(&mut self, id: u64) {
        let port = self.nodes[&id].port;
        let log = self.log_path(id);
        let node = self.nodes.get_mut(&id).expect("node");
        wait_for(&format!("node {id} to answer PING"), START_TIMEOUT, || {
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "node {id} exited with {status}:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            ping(port).then_some(())
        });
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .values()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// The running nodes other than `leader`.
    pub fn followers(&self, leader: u64) -> Vec<u64> {
        self.running()
            .into_iter()
            .filter(|id| *id != leader)
            .collect()
    }

    /// A plain socket to node `id`, for raw RESP.
    pub fn raw(&self, id: u64) -> std::net::TcpStream {
        std::net::TcpStream::connect(("127.0.0.1", self.nodes[&id].port)).expect("connect")
    }

    pub fn url(&self, id: u64) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.nodes[&id].port),
            None => format!("redis://127.0.0.1:{}/", self.nodes[&id].port),
        }
    }

    pub fn client(&self, id: u64) -> redis::Connection {
        let client = redis::Client::open(self.url(id)).expect("client");
        let con = client.get_connection().expect("connect");
        con.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        con
    }

    /// A field of INFO raft on node `id`, if it answers.
    pub fn raft_field(&self, id: u64, field: &str) -> Option<String> {
        let client = redis::Client::open(self.url(id)).ok()?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .ok()?;
        con.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let info: String = redis::cmd("INFO").arg("raft").query(&mut con).ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_owned())
    }

    /// The leader that every running node in `among` agrees on.
    pub fn leader_among(&self, among: &[u64]) -> u64 {
        wait_for(
            &format!("nodes {among:?} to agree on a leader"),
            CONVERGE_TIMEOUT,
            || {
                let mut leader = None;
                for id in among {
                    let l: u64 = self.raft_field(*id, "raft_leader_id")?.parse().ok()?;
                    if l == 0 || leader.is_some_and(|x| x != l) {
                        return None;
                    }
                    leader = Some(l);
                }
                let l = leader?;
                (self.raft_field(l, "raft_role")?.as_str() == "leader").then_some(l)
            },
        )
    }

    pub fn leader(&self) -> u64 {
        self.leader_among(&self.running())
    }

    pub fn kill9(&mut self, id: u64) {
        if let Some(mut child) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        let node = self.nodes.get_mut(&id).expect("node");
        let mut child = node.child.take().expect("running");
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        wait_for(
            &format!("node {id} to exit after SIGTERM"),
            Duration::from_secs(30),
            || child.try_wait().expect("wait"),
        )
    }

    /// Starts node `id`'s process without waiting for it to serve.
    pub fn spawn_only(&mut self, id: u64) {
        self.spawn(id);
    }

    /// Waits for node `id`'s process to exit by itself.
    pub fn wait_exit(&mut self, id: u64) -> std::process::ExitStatus {
        let node = self.nodes.get_mut(&id).expect("node");
        let mut child = node.child.take().expect("running");
        wait_for(
            &format!("node {id} to exit"),
            Duration::from_secs(30),
            || child.try_wait().expect("wait"),
        )
    }

    /// Whether node `id` starts with `--join` from now on.
    pub fn set_join(&mut self, id: u64, join: bool) {
        self.nodes.get_mut(&id).expect("node").join = join;
    }

    pub fn restart(&mut self, id: u64) {
        self.spawn(id);
        self.wait_up(id);
    }

    /// Cuts every link between `side` and the other nodes, both ways.
    pub fn partition(&self, side: &[u64]) {
        for ((from, to), proxy) in &self.proxies {
            if side.contains(from) != side.contains(to) {
                proxy.cut();
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for proxy in self.proxies.values() {
            proxy.heal();
        }
    }

    pub fn proxy(&self, from: u64, to: u64) -> &Proxy {
        &self.proxies[&(from, to)]
    }

    /// Waits until the nodes in `ids` have applied the same index and hold
    /// the same keyspace; returns the digest.
    pub fn converged(&self, ids: &[u64]) -> String {
        wait_for(
            &format!("nodes {ids:?} to converge"),
            CONVERGE_TIMEOUT,
            || {
                let mut applied = None;
                let mut digest = None;
                for id in ids {
                    let a: u64 = self.raft_field(*id, "raft_applied_index")?.parse().ok()?;
                    if applied.is_some_and(|x| x != a) {
                        return None;
                    }
                    applied = Some(a);
                    let client = redis::Client::open(self.url(*id)).ok()?;
                    let mut con = client
                        .get_connection_with_timeout(Duration::from_secs(2))
                        .ok()?;
                    let _: () = redis::cmd("READMODE").arg("STALE").query(&mut con).ok()?;
                    let d: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut con).ok()?;
                    if digest.as_ref().is_some_and(|x: &String| *x != d) {
                        return None;
                    }
                    digest = Some(d);
                }
                // Still the same index after reading the digests: nothing moved.
                let again: u64 = self
                    .raft_field(ids[0], "raft_applied_index")?
                    .parse()
                    .ok()?;
                (Some(again) == applied).then_some(()).and(digest)
            },
        )
    }

    /// Starts node `id` empty with `--join`; it knows the others directly.
    pub fn start_joining(&mut self, id: u64) {
        let (port, peer_port) = (free_port(), free_port());
        let mut members: Vec<String> = self
            .nodes
            .values()
            .map(|n| format!("{}=127.0.0.1:{}", n.id, n.peer_port))
            .collect();
        members.push(format!("{id}=127.0.0.1:{peer_port}"));
        let node = Node {
            id,
            port,
            peer_port,
            dir: self.tmp.path().join(format!("node-{id}")),
            child: None,
            initial_cluster: members.join(","),
            join: true,
            args: Vec::new(),
        };
        self.nodes.insert(id, node);
        self.spawn(id);
        self.wait_up(id);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
