//! `concord ctl`: the admin client, with the habits of etcdctl and
//! redis-cli. It speaks RESP2 to the nodes' client ports (TCP or TLS,
//! AUTH with a password or an ACL user) and turns RAFT.* answers into
//! tables or JSON:
//!
//! - `status`: every endpoint's raft view, one row each (unreachable ones
//!   too, with their error; exit 1 then);
//! - `health`: PING and a known leader on every endpoint (exit 1 if any
//!   fails);
//! - `members list | add | remove | promote`, `leader transfer`: through
//!   the leader (RAFT.INFO, RAFT.MEMBER, RAFT.TRANSFER);
//! - `snapshot save` (RAFT.BACKUP: a consistent snapshot file from the
//!   leader), `snapshot restore` (a new data directory from that file, for
//!   a new cluster) and `snapshot status` (what a file holds).

mod client;
mod restore;

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::json;

use client::{Conn, Connector, TlsOptions, Value};

const DEFAULT_ENDPOINTS: &str = "127.0.0.1:6379,127.0.0.1:6380,127.0.0.1:6381";

#[derive(Args, Debug)]
pub struct CtlArgs {
    #[command(flatten)]
    pub global: Box<Global>,
    #[command(subcommand)]
    pub verb: Verb,
}

/// Options of every verb: where the nodes are and how to log in.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// The nodes' client addresses (host:port), comma-separated.
    #[arg(long, global = true, env = "CONCORD_ENDPOINTS", value_delimiter = ',',
        default_value = DEFAULT_ENDPOINTS, value_name = "HOST:PORT,...")]
    pub endpoints: Vec<String>,
    /// The ACL user to log in as (AUTH user password); the default user without it.
    #[arg(long, global = true, env = "CONCORD_USER")]
    pub user: Option<String>,
    /// The password (AUTH). The environment variable keeps it out of `ps`.
    #[arg(long, global = true, env = "CONCORD_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Connect over TLS (the nodes' --tls-listen ports).
    #[arg(long, global = true)]
    pub tls: bool,
    /// The CA certificate (PEM) that signed the nodes' certificates. Implies --tls.
    #[arg(long, global = true, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// A client certificate (PEM), for nodes with --tls-auth-clients yes; with --key. Implies --tls.
    #[arg(long, global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM). Implies --tls.
    #[arg(long, global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Accept any server certificate (for tests; the connection is
    /// encrypted but the node is not authenticated). Implies --tls.
    #[arg(long, global = true)]
    pub insecure_skip_verify: bool,
    /// Print JSON instead of tables and sentences.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for a connection and for each answer (5s, 500ms,
    /// 2m; a bare number is seconds). Default 5s, except for the verbs
    /// that wait for the cluster: `members add` 90s (the new member
    /// catches up first), `members remove` and `leader transfer` 30s,
    /// `snapshot save` 5m.
    #[arg(long, global = true, value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Every endpoint's raft view: node id, address, role, term, leader,
    /// commit and applied index, lag (commit - applied), version. An
    /// endpoint that cannot be reached is a row with its error, and the
    /// exit code is 1.
    Status,
    /// PINGs every endpoint and checks it knows a leader; exit code 1 if
    /// any endpoint is unhealthy.
    Health,
    /// The cluster's members, as the leader sees them, and changes to them.
    #[command(subcommand)]
    Members(MembersVerb),
    /// Leadership.
    #[command(subcommand)]
    Leader(LeaderVerb),
    /// Backups: save a consistent snapshot of the cluster to a file,
    /// restore one into a new data directory, or describe a file.
    #[command(subcommand)]
    Snapshot(SnapshotVerb),
}

#[derive(Subcommand, Debug)]
pub enum MembersVerb {
    /// Lists the members from the leader's RAFT.INFO: id, voter or
    /// learner, peer address, matched index, lag, replication state.
    List,
    /// Adds node ID, reachable by its peers at PEER_ADDR (its
    /// --peer-listen), started beforehand with --join (RAFT.MEMBER ADD).
    /// It joins as a learner, catches up (from a snapshot if need be) and
    /// is promoted to voter; this answers once it votes. Run again for a
    /// learner whose earlier add timed out: it resumes and promotes it.
    Add {
        id: u64,
        #[arg(value_name = "PEER_ADDR")]
        peer_addr: String,
    },
    /// Removes node ID through the log (RAFT.MEMBER REMOVE); stop its
    /// process afterwards.
    Remove { id: u64 },
    /// There is no separate promotion in concord: `members add` adds a
    /// learner and promotes it itself once it has caught up, and running
    /// `members add ID PEER_ADDR` again for a learner whose add timed out
    /// resumes that. This verb only says so, and exits 1.
    Promote { id: u64 },
}

#[derive(Subcommand, Debug)]
pub enum LeaderVerb {
    /// Hands leadership to voting member ID and waits until it has taken
    /// over (RAFT.TRANSFER).
    Transfer { id: u64 },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotVerb {
    /// Saves a consistent snapshot of the cluster to FILE: RAFT.BACKUP on
    /// the leader, which answers a snapshot holding every write
    /// acknowledged before the call. The file is checked (checksum) and
    /// written with mode 0600 (it holds the ACL users' password hashes).
    /// The whole state travels in one reply: the nodes' proto-max-bulk-len
    /// bounds it, and it must fit in this process's memory.
    Save { file: PathBuf },
    /// Writes a NEW data directory for one member of a new cluster from a
    /// snapshot file: the snapshot at its own index and term, the members
    /// replaced by --initial-cluster, an identity for --node-id and
    /// --cluster-id. Run it once per member (each into its own directory,
    /// with the same --initial-cluster), then start every member with
    /// `concord serve` and the same --node-id, --data-dir, --initial-cluster
    /// and --cluster-id. Needs no running node.
    Restore {
        file: PathBuf,
        /// The new data directory (missing or empty).
        #[arg(long)]
        data_dir: PathBuf,
        /// The id of the member this directory is for.
        #[arg(long)]
        node_id: u64,
        /// The new cluster's voters: 1=host:port,2=host:port,... (peer addresses).
        #[arg(long)]
        initial_cluster: String,
        /// The new cluster's --cluster-id.
        #[arg(long, default_value = "concord")]
        cluster_id: String,
    },
    /// Describes a snapshot file: index, term, members, size and keys;
    /// checks its checksum and that its state decodes.
    Status { file: PathBuf },
}

/// Runs one `concord ctl` command; the exit code says whether it worked.
pub fn run(args: CtlArgs) -> ExitCode {
    let CtlArgs { global, verb } = args;
    let result = match verb {
        Verb::Snapshot(SnapshotVerb::Restore {
            file,
            data_dir,
            node_id,
            initial_cluster,
            cluster_id,
        }) => snapshot_restore(
            &global,
            &file,
            &restore::Target {
                data_dir: &data_dir,
                node_id,
                initial_cluster: &initial_cluster,
                cluster_id: &cluster_id,
            },
        ),
        Verb::Snapshot(SnapshotVerb::Status { file }) => snapshot_status(&global, &file),
        Verb::Members(MembersVerb::Promote { id }) => Err(format!(
            "concord has no separate promotion: `concord ctl members add {id} PEER_ADDR` adds a learner and promotes it to voter once it has caught up, and run again for a learner whose add timed out it resumes the catch-up and promotes it"
        )),
        verb => online(*global, verb),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("concord ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The verbs that talk to nodes. Ok(false): done, but something is
/// unhealthy or unreachable (already printed).
fn online(global: Global, verb: Verb) -> Result<bool, String> {
    if global.endpoints.iter().all(|e| e.trim().is_empty()) {
        return Err("no --endpoints given".into());
    }
    let default_timeout = match &verb {
        Verb::Members(MembersVerb::Add { .. }) => Duration::from_secs(90),
        Verb::Members(MembersVerb::Remove { .. }) | Verb::Leader(_) => Duration::from_secs(30),
        Verb::Snapshot(SnapshotVerb::Save { .. }) => Duration::from_secs(300),
        _ => Duration::from_secs(5),
    };
    let wait = global.timeout.unwrap_or(default_timeout);
    let connector = Arc::new(connector(&global)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let ctl = Ctl {
        endpoints: global
            .endpoints
            .iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect(),
        connector,
        json: global.json,
        wait,
    };
    runtime.block_on(async move {
        match verb {
            Verb::Status => ctl.status().await,
            Verb::Health => ctl.health().await,
            Verb::Members(MembersVerb::List) => ctl.members_list().await,
            Verb::Members(MembersVerb::Add { id, peer_addr }) => {
                ctl.members_add(id, &peer_addr).await
            }
            Verb::Members(MembersVerb::Remove { id }) => ctl.members_remove(id).await,
            Verb::Leader(LeaderVerb::Transfer { id }) => ctl.leader_transfer(id).await,
            Verb::Snapshot(SnapshotVerb::Save { file }) => ctl.snapshot_save(&file).await,
            Verb::Members(MembersVerb::Promote { .. })
            | Verb::Snapshot(SnapshotVerb::Restore { .. } | SnapshotVerb::Status { .. }) => {
                unreachable!("answered without a connection")
            }
        }
    })
}

fn connector(global: &Global) -> Result<Connector, String> {
    let tls = global.tls
        || global.cacert.is_some()
        || global.cert.is_some()
        || global.key.is_some()
        || global.insecure_skip_verify;
    let tls = if tls {
        Some(
            TlsOptions {
                cacert: global.cacert.clone(),
                cert: global.cert.clone(),
                key: global.key.clone(),
                skip_verify: global.insecure_skip_verify,
            }
            .connector()?,
        )
    } else {
        None
    };
    Ok(Connector {
        tls,
        user: global.user.clone(),
        password: global.password.clone(),
        // Connecting and quick questions; long waits pass their own.
        timeout: global.timeout.unwrap_or(Duration::from_secs(5)),
    })
}

/// `5s`, `500ms`, `2m`, `1h`, or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (5s, 500ms, 2m)"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("'{unit}' is not a unit: use ms, s, m or h")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("'{text}' must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// One RAFT.INFO answer.
#[derive(Clone, Debug, Default)]
struct RaftView {
    id: u64,
    role: String,
    term: u64,
    leader: u64,
    commit: u64,
    applied: u64,
    last_index: u64,
    voters: Vec<u64>,
    learners: Vec<u64>,
    peers: Vec<PeerView>,
}

#[derive(Clone, Debug, Default)]
struct PeerView {
    id: u64,
    addr: String,
    voter: bool,
    matched: u64,
    lag: u64,
    state: String,
    active: bool,
}

fn uint(v: &Value, key: &str) -> u64 {
    v.field(key).and_then(Value::int).unwrap_or(0).max(0) as u64
}

fn ids(v: &Value, key: &str) -> Vec<u64> {
    v.field(key)
        .map(|ids| {
            ids.items()
                .iter()
                .filter_map(Value::int)
                .map(|i| i as u64)
                .collect()
        })
        .unwrap_or_default()
}

impl RaftView {
    fn parse(v: &Value) -> Result<RaftView, String> {
        if let Value::Error(e) = v {
            return Err(format!("RAFT.INFO: {e}"));
        }
        if v.field("role").is_none() {
            return Err(format!("RAFT.INFO answered {v:?}"));
        }
        let text = |key: &str| v.field(key).and_then(Value::text).unwrap_or_default();
        Ok(RaftView {
            id: uint(v, "id"),
            role: text("role"),
            term: uint(v, "term"),
            leader: uint(v, "leader"),
            commit: uint(v, "commit_index"),
            applied: uint(v, "applied_index"),
            last_index: uint(v, "last_index"),
            voters: ids(v, "voters"),
            learners: ids(v, "learners"),
            peers: v
                .field("peers")
                .map(|p| p.items().iter().map(PeerView::parse).collect())
                .unwrap_or_default(),
        })
    }
}

impl PeerView {
    fn parse(v: &Value) -> PeerView {
        let text = |key: &str| v.field(key).and_then(Value::text).unwrap_or_default();
        PeerView {
            id: uint(v, "id"),
            addr: text("addr"),
            voter: uint(v, "voter") == 1,
            matched: uint(v, "match_index"),
            lag: uint(v, "lag"),
            state: text("state"),
            active: uint(v, "recent_active") == 1,
        }
    }
}

/// An error reply as an error, anything else as itself.
fn ok(v: Value, what: &str) -> Result<Value, String> {
    match v {
        Value::Error(e) => Err(format!("{what}: {e}")),
        v => Ok(v),
    }
}

async fn raft_info(conn: &mut Conn) -> Result<RaftView, String> {
    RaftView::parse(&conn.cmd(&["RAFT.INFO"]).await?)
}

/// Aligned columns, two spaces apart (the last one unpadded).
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    };
    line(&mut out, &mut headers.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("JSON values serialize")
    );
}

struct Ctl {
    endpoints: Vec<String>,
    connector: Arc<Connector>,
    json: bool,
    /// How long the verb's main request may take.
    wait: Duration,
}

/// A connection to the leader and what it said.
struct AtLeader {
    endpoint: String,
    conn: Conn,
    view: RaftView,
}

impl Ctl {
    /// Runs `task` against every endpoint at once; the answers in
    /// endpoint order.
    async fn each<T, F, Fut>(&self, task: F) -> Vec<Result<T, String>>
    where
        T: Send + 'static,
        F: Fn(Arc<Connector>, String) -> Fut,
        Fut: Future<Output = Result<T, String>> + Send + 'static,
    {
        let handles: Vec<_> = self
            .endpoints
            .iter()
            .map(|e| tokio::spawn(task(self.connector.clone(), e.clone())))
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            out.push(handle.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        out
    }

    /// Connects to the leader: the endpoint that says it leads (at the
    /// highest term), or else the leader's client address as a follower
    /// names it (ROLE), for a leader missing from --endpoints.
    async fn leader(&self) -> Result<AtLeader, String> {
        let answers = self
            .each(|connector, endpoint| async move {
                let mut conn = connector.connect(&endpoint).await?;
                let view = raft_info(&mut conn).await?;
                Ok((endpoint, conn, view))
            })
            .await;
        let mut errors = Vec::new();
        let mut best: Option<AtLeader> = None;
        let mut followers = Vec::new();
        for (endpoint, answer) in self.endpoints.iter().zip(answers) {
            match answer {
                Ok((endpoint, conn, view)) if view.role == "leader" => {
                    if best.as_ref().is_none_or(|b| b.view.term < view.term) {
                        best = Some(AtLeader {
                            endpoint,
                            conn,
                            view,
                        });
                    }
                }
                Ok((_, conn, view)) => followers.push((conn, view)),
                Err(e) => errors.push(format!("{endpoint}: {e}")),
            }
        }
        if let Some(best) = best {
            return Ok(best);
        }
        for (mut conn, view) in followers {
            if view.leader == 0 {
                continue;
            }
            let Ok(role) = conn.cmd(&["ROLE"]).await else {
                continue;
            };
            let (Some(host), Some(port)) = (
                role.items().get(1).and_then(Value::text),
                role.items().get(2).and_then(Value::int),
            ) else {
                continue;
            };
            if host.is_empty() || port <= 0 {
                continue;
            }
            let endpoint = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            match self.connector.connect(&endpoint).await {
                Ok(mut conn) => match raft_info(&mut conn).await {
                    Ok(view) if view.role == "leader" => {
                        return Ok(AtLeader {
                            endpoint,
                            conn,
                            view,
                        })
                    }
                    Ok(_) => errors.push(format!("{endpoint} (named leader): no longer leads")),
                    Err(e) => errors.push(format!("{endpoint} (named leader): {e}")),
                },
                Err(e) => errors.push(format!("{endpoint} (named leader): {e}")),
            }
        }
        let mut text = "no leader among the endpoints".to_owned();
        if !errors.is_empty() {
            text.push_str(": ");
            text.push_str(&errors.join("; "));
        }
        Err(text)
    }

    async fn status(&self) -> Result<bool, String> {
        let answers = self
            .each(|connector, endpoint| async move {
                let mut conn = connector.connect(&endpoint).await?;
                let view = raft_info(&mut conn).await?;
                let info = ok(conn.cmd(&["INFO", "server"]).await?, "INFO")?;
                let version = info
                    .text()
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("concord_version:"))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default();
                Ok((view, version))
            })
            .await;
        let all_ok = answers.iter().all(Result::is_ok);
        if self.json {
            let rows: Vec<serde_json::Value> = self
                .endpoints
                .iter()
                .zip(&answers)
                .map(|(endpoint, answer)| match answer {
                    Ok((v, version)) => json!({
                        "endpoint": endpoint,
                        "id": v.id,
                        "role": v.role,
                        "term": v.term,
                        "leader": v.leader,
                        "commit_index": v.commit,
                        "applied_index": v.applied,
                        "lag": v.commit.saturating_sub(v.applied),
                        "version": version,
                    }),
                    Err(e) => json!({ "endpoint": endpoint, "error": e }),
                })
                .collect();
            print_json(&serde_json::Value::Array(rows));
        } else {
            let rows: Vec<Vec<String>> = self
                .endpoints
                .iter()
                .zip(&answers)
                .map(|(endpoint, answer)| match answer {
                    Ok((v, version)) => vec![
                        endpoint.clone(),
                        v.id.to_string(),
                        v.role.clone(),
                        v.term.to_string(),
                        v.leader.to_string(),
                        v.commit.to_string(),
                        v.applied.to_string(),
                        v.commit.saturating_sub(v.applied).to_string(),
                        version.clone(),
                        String::new(),
                    ],
                    Err(e) => {
                        let mut row = vec![endpoint.clone()];
                        row.extend(std::iter::repeat_n("-".to_owned(), 8));
                        row.push(e.clone());
                        row
                    }
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "ENDPOINT", "ID", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "LAG",
                        "VERSION", "ERROR"
                    ],
                    &rows
                )
            );
        }
        Ok(all_ok)
    }

    async fn health(&self) -> Result<bool, String> {
        let answers = self
            .each(|connector, endpoint| async move {
                let started = Instant::now();
                let mut conn = connector.connect(&endpoint).await?;
                let pong = conn.cmd(&["PING"]).await?;
                if pong != Value::Simple("PONG".into()) {
                    return Err(format!("PING answered {pong:?}"));
                }
                let took = started.elapsed();
                let view = raft_info(&mut conn).await?;
                Ok((took, view.leader))
            })
            .await;
        let healthy = |a: &Result<(Duration, u64), String>| matches!(a, Ok((_, l)) if *l != 0);
        let all = answers.iter().all(healthy);
        if self.json {
            let rows: Vec<serde_json::Value> = self
                .endpoints
                .iter()
                .zip(&answers)
                .map(|(endpoint, answer)| match answer {
                    Ok((took, leader)) => json!({
                        "endpoint": endpoint,
                        "healthy": *leader != 0,
                        "took_ms": took.as_secs_f64() * 1000.0,
                        "leader": leader,
                        "error": if *leader == 0 { Some("no leader known") } else { None },
                    }),
                    Err(e) => json!({ "endpoint": endpoint, "healthy": false, "error": e }),
                })
                .collect();
            print_json(&serde_json::Value::Array(rows));
        } else {
            for (endpoint, answer) in self.endpoints.iter().zip(&answers) {
                match answer {
                    Ok((took, leader)) if *leader != 0 => println!(
                        "{endpoint} is healthy: PONG in {:.1}ms, leader is node {leader}",
                        took.as_secs_f64() * 1000.0
                    ),
                    Ok((took, _)) => println!(
                        "{endpoint} is unhealthy: PONG in {:.1}ms, but it knows no leader",
                        took.as_secs_f64() * 1000.0
                    ),
                    Err(e) => println!("{endpoint} is unhealthy: {e}"),
                }
            }
        }
        Ok(all)
    }

    async fn members_list(&self) -> Result<bool, String> {
        let mut at = self.leader().await?;
        // The leader's own peer address is not in its progress table.
        let own = match at.conn.cmd(&["CONFIG", "GET", "concord-peer-listen"]).await {
            Ok(v) => v.items().get(1).and_then(Value::text).unwrap_or_default(),
            Err(_) => String::new(),
        };
        let view = &at.view;
        let mut members = vec![PeerView {
            id: view.id,
            addr: own,
            voter: view.voters.contains(&view.id),
            matched: view.last_index,
            lag: 0,
            state: "Leader".into(),
            active: true,
        }];
        members.extend(view.peers.iter().cloned());
        members.sort_by_key(|m| m.id);
        let role = |m: &PeerView| {
            if m.voter {
                "voter"
            } else if view.learners.contains(&m.id) {
                "learner"
            } else {
                "leaving"
            }
        };
        if self.json {
            let rows: Vec<serde_json::Value> = members
                .iter()
                .map(|m| {
                    json!({
                        "id": m.id,
                        "role": role(m),
                        "peer_addr": m.addr,
                        "matched": m.matched,
                        "lag": m.lag,
                        "state": m.state,
                        "active": m.active,
                        "leader": m.id == view.id,
                    })
                })
                .collect();
            print_json(&json!({
                "leader": view.id,
                "endpoint": at.endpoint,
                "term": view.term,
                "commit_index": view.commit,
                "members": rows,
            }));
        } else {
            let rows: Vec<Vec<String>> = members
                .iter()
                .map(|m| {
                    vec![
                        m.id.to_string(),
                        role(m).into(),
                        if m.addr.is_empty() {
                            "-".into()
                        } else {
                            m.addr.clone()
                        },
                        m.matched.to_string(),
                        m.lag.to_string(),
                        m.state.clone(),
                        if m.active { "yes" } else { "no" }.into(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "ID",
                        "ROLE",
                        "PEER-ADDR",
                        "MATCHED",
                        "LAG",
                        "STATE",
                        "ACTIVE"
                    ],
                    &rows
                )
            );
        }
        Ok(true)
    }

    /// Runs an admin command on the leader, waiting up to the verb's
    /// timeout; returns the leader's endpoint and view.
    async fn admin(&self, args: &[&str]) -> Result<AtLeader, String> {
        let mut at = self.leader().await?;
        let bytes: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        ok(
            at.conn.call_within(&bytes, self.wait).await?,
            &args.join(" "),
        )?;
        Ok(at)
    }

    fn done(&self, value: serde_json::Value, text: String) -> Result<bool, String> {
        if self.json {
            print_json(&value);
        } else {
            println!("{text}");
        }
        Ok(true)
    }

    async fn members_add(&self, id: u64, peer_addr: &str) -> Result<bool, String> {
        if !peer_addr.contains(':') {
            return Err(format!("peer address '{peer_addr}' must be HOST:PORT"));
        }
        let at = self
            .admin(&["RAFT.MEMBER", "ADD", &id.to_string(), peer_addr])
            .await?;
        self.done(
            json!({ "added": id, "peer_addr": peer_addr, "voter": true, "via": at.endpoint }),
            format!("node {id} ({peer_addr}) added: it caught up and is a voting member"),
        )
    }

    async fn members_remove(&self, id: u64) -> Result<bool, String> {
        let at = self
            .admin(&["RAFT.MEMBER", "REMOVE", &id.to_string()])
            .await?;
        self.done(
            json!({ "removed": id, "via": at.endpoint }),
            format!("node {id} removed from the cluster; stop its process"),
        )
    }

    async fn leader_transfer(&self, id: u64) -> Result<bool, String> {
        let at = self.admin(&["RAFT.TRANSFER", &id.to_string()]).await?;
        let from = at.view.id;
        self.done(
            json!({ "from": from, "to": id }),
            if from == id {
                format!("node {id} leads already")
            } else {
                format!("leadership moved from node {from} to node {id}")
            },
        )
    }

    async fn snapshot_save(&self, file: &Path) -> Result<bool, String> {
        let mut at = self.leader().await?;
        let reply = ok(
            at.conn.call_within(&[b"RAFT.BACKUP"], self.wait).await?,
            "RAFT.BACKUP",
        )?;
        let Value::Bulk(bytes) = reply else {
            return Err(format!("RAFT.BACKUP answered {reply:?}"));
        };
        let snapshot = crate::storage::snapshot::from_bytes(&bytes)
            .map_err(|e| format!("the snapshot from {} is damaged: {e}", at.endpoint))?;
        write_private(file, &bytes)?;
        let meta = snapshot.get_metadata();
        self.done(
            json!({
                "file": file.display().to_string(),
                "index": meta.index,
                "term": meta.term,
                "bytes": bytes.len(),
                "node": at.view.id,
                "endpoint": at.endpoint,
            }),
            format!(
                "saved the snapshot at index {} (term {}, {} bytes) from node {} ({}) to {}",
                meta.index,
                meta.term,
                bytes.len(),
                at.view.id,
                at.endpoint,
                file.display()
            ),
        )
    }
}

/// Writes `bytes` to `path` readable by its owner only: a temp file beside
/// it, fsync'd, renamed into place, the directory fsync'd.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} is not a file name", path.display()))?;
    let mut tmp_name = name.to_owned();
    tmp_name.push(".part");
    let tmp = path.with_file_name(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

fn summary_json(s: &restore::Summary) -> serde_json::Value {
    json!({
        "index": s.index,
        "term": s.term,
        "voters": s.voters,
        "learners": s.learners,
        "bytes": s.bytes,
        "keys": s.keys,
    })
}

fn snapshot_status(global: &Global, file: &Path) -> Result<bool, String> {
    let (snapshot, state, bytes) = restore::read(file)?;
    let s = restore::summary(&snapshot, &state, bytes);
    if global.json {
        print_json(&summary_json(&s));
    } else {
        let list = |ids: &[u64]| {
            if ids.is_empty() {
                "-".to_owned()
            } else {
                ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
            }
        };
        print!(
            "{}",
            table(
                &["INDEX", "TERM", "VOTERS", "LEARNERS", "BYTES", "KEYS"],
                &[vec![
                    s.index.to_string(),
                    s.term.to_string(),
                    list(&s.voters),
                    list(&s.learners),
                    s.bytes.to_string(),
                    s.keys.to_string(),
                ]]
            )
        );
    }
    Ok(true)
}

fn snapshot_restore(
    global: &Global,
    file: &Path,
    target: &restore::Target<'_>,
) -> Result<bool, String> {
    let s = restore::restore(file, target)?;
    let hint = restore::serve_hint(target);
    if global.json {
        let mut value = summary_json(&s);
        value["data_dir"] = json!(target.data_dir.display().to_string());
        value["node_id"] = json!(target.node_id);
        value["cluster_id"] = json!(target.cluster_id);
        value["serve"] = json!(hint);
        print_json(&value);
    } else {
        println!(
            "restored the snapshot at index {} (term {}, {} keys) into {} as node {} of cluster '{}'; start it with\n  {hint}",
            s.index,
            s.term,
            s.keys,
            target.data_dir.display(),
            target.node_id,
            target.cluster_id
        );
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_have_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        for bad in ["", "0", "-1s", "5x", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tables_align_columns() {
        let out = table(
            &["ID", "ROLE", "ERROR"],
            &[
                vec!["1".into(), "leader".into(), String::new()],
                vec!["12".into(), "-".into(), "refused".into()],
            ],
        );
        assert_eq!(out, "ID  ROLE    ERROR\n1   leader\n12  -       refused\n");
    }
}
