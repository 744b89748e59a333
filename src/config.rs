//! Node configuration: command-line flags, `CONCORD_*` environment variables
//! and a TOML file, in that order of precedence, over built-in defaults.
//!
//! clap resolves flags over environment variables; every option is optional
//! there, so a value missing from both falls back to the file, then to the
//! default. Unknown keys in the file are an error: a typo must not silently
//! leave a setting at its default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("--initial-cluster: {0}")]
    InitialCluster(String),
    #[error("{0}")]
    Invalid(String),
}

/// Output format of the logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// Every setting as it may appear in the TOML file or on the command line;
/// `None` means "not given here".
#[derive(Clone, Debug, Default, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    /// This node's id in the cluster (a positive integer).
    #[arg(long, env = "CONCORD_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address for Redis clients.
    #[arg(long, env = "CONCORD_LISTEN")]
    pub listen: Option<String>,
    /// Address clients are told to reach this node at (ROLE, INFO
    /// replication); default: --listen.
    #[arg(long, env = "CONCORD_ADVERTISE")]
    pub advertise: Option<String>,
    /// Address for raft traffic from the other nodes.
    #[arg(long, env = "CONCORD_PEER_LISTEN")]
    pub peer_listen: Option<String>,
    /// Directory for the WAL and snapshots.
    #[arg(long, env = "CONCORD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The founding members, `ID=HOST:PEERPORT,...`; omitted for a one-node cluster.
    #[arg(long, env = "CONCORD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Start as a new member of an existing cluster: bootstrap nothing and
    /// wait for the leader to add this node (`RAFT.MEMBER ADD`).
    #[arg(long, env = "CONCORD_JOIN", num_args = 0..=1, default_missing_value = "true")]
    pub join: Option<bool>,
    /// Name shared by the nodes of one cluster; peers with another name are refused.
    #[arg(long, env = "CONCORD_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Address for /metrics, /health and /ready over HTTP.
    #[arg(long, env = "CONCORD_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Log format.
    #[arg(long, env = "CONCORD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter in tracing's env-filter syntax (e.g. `info,concord=debug`).
    #[arg(long, env = "CONCORD_LOG")]
    pub log: Option<String>,
    /// How long a request may wait for a leader or a commit, in ms.
    #[arg(long, env = "CONCORD_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// One raft tick, in ms (elections take 10 ticks, heartbeats 2).
    #[arg(long, env = "CONCORD_TICK_MS")]
    pub tick_ms: Option<u64>,
    /// Append messages a leader keeps in flight to each follower. One (the
    /// default) makes entries that arrive meanwhile travel together in the
    /// next one; raise it where peers are far apart (round trips much longer
    /// than an fsync).
    #[arg(long, env = "CONCORD_RAFT_MAX_INFLIGHT")]
    pub raft_max_inflight: Option<usize>,
    /// Take a snapshot after this many log entries.
    #[arg(long, env = "CONCORD_SNAPSHOT_ENTRIES")]
    pub snapshot_entries: Option<u64>,
    /// Take a snapshot after this many bytes of log entries.
    #[arg(long, env = "CONCORD_SNAPSHOT_LOG_BYTES")]
    pub snapshot_log_bytes: Option<u64>,
    /// Size at which a WAL segment file is closed and a new one started.
    #[arg(long, env = "CONCORD_WAL_SEGMENT_BYTES")]
    pub wal_segment_bytes: Option<u64>,
    /// Most client connections at once.
    #[arg(long, env = "CONCORD_MAX_CLIENTS")]
    pub max_clients: Option<u64>,
    /// Largest bulk string a client may send, in bytes.
    #[arg(long, env = "CONCORD_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<u64>,
}

impl Settings {
    /// `self` where given, else `other`.
    pub fn or(self, other: Settings) -> Settings {
        Settings {
            node_id: self.node_id.or(other.node_id),
            listen: self.listen.or(other.listen),
            advertise: self.advertise.or(other.advertise),
            peer_listen: self.peer_listen.or(other.peer_listen),
            data_dir: self.data_dir.or(other.data_dir),
            initial_cluster: self.initial_cluster.or(other.initial_cluster),
            join: self.join.or(other.join),
            cluster_id: self.cluster_id.or(other.cluster_id),
            admin_listen: self.admin_listen.or(other.admin_listen),
            log_format: self.log_format.or(other.log_format),
            log: self.log.or(other.log),
            request_timeout_ms: self.request_timeout_ms.or(other.request_timeout_ms),
            tick_ms: self.tick_ms.or(other.tick_ms),
            raft_max_inflight: self.raft_max_inflight.or(other.raft_max_inflight),
            snapshot_entries: self.snapshot_entries.or(other.snapshot_entries),
            snapshot_log_bytes: self.snapshot_log_bytes.or(other.snapshot_log_bytes),
            wal_segment_bytes: self.wal_segment_bytes.or(other.wal_segment_bytes),
            max_clients: self.max_clients.or(other.max_clients),
            proto_max_bulk_len: self.proto_max_bulk_len.or(other.proto_max_bulk_len),
        }
    }

    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

/// A member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub addr: String,
}

/// The resolved configuration of a node.
#[derive(Clone, Debug)]
pub struct Config {
    pub node_id: u64,
    pub listen: String,
    pub advertise: String,
    pub peer_listen: String,
    pub data_dir: PathBuf,
    pub initial_cluster: Vec<Peer>,
    pub join: bool,
    pub cluster_id: String,
    pub admin_listen: Option<String>,
    pub log_format: LogFormat,
    pub log: String,
    pub request_timeout: Duration,
    pub tick: Duration,
    pub raft_max_inflight: usize,
    pub snapshot_entries: u64,
    pub snapshot_log_bytes: u64,
    pub wal_segment_bytes: u64,
    pub max_clients: u64,
    pub proto_max_bulk_len: u64,
}

impl Config {
    /// The cluster name as the number peers exchange in their handshake.
    pub fn cluster_hash(&self) -> u64 {
        let mut h = crc32fast::Hasher::new();
        h.update(self.cluster_id.as_bytes());
        let low = h.finalize() as u64;
        let mut h = crc32fast::Hasher::new_with_initial(0x636f_6e63);
        h.update(self.cluster_id.as_bytes());
        (h.finalize() as u64) << 32 | low
    }

    pub fn resolve(s: Settings) -> Result<Config, ConfigError> {
        let node_id = s.node_id.unwrap_or(1);
        if node_id == 0 {
            return Err(ConfigError::Invalid(
                "--node-id must be a positive integer".into(),
            ));
        }
        let peer_listen = s.peer_listen.unwrap_or_else(|| "127.0.0.1:7379".into());
        let initial_cluster = match &s.initial_cluster {
            Some(text) => parse_initial_cluster(text)?,
            None => vec![Peer {
                id: node_id,
                addr: peer_listen.clone(),
            }],
        };
        if !initial_cluster.iter().any(|p| p.id == node_id) {
            return Err(ConfigError::InitialCluster(format!(
                "this node's id {node_id} is not among the members"
            )));
        }
        let tick_ms = s.tick_ms.unwrap_or(100);
        if tick_ms == 0 {
            return Err(ConfigError::Invalid("--tick-ms must be positive".into()));
        }
        let raft_max_inflight = s.raft_max_inflight.unwrap_or(1);
        if raft_max_inflight == 0 {
            return Err(ConfigError::Invalid(
                "--raft-max-inflight must be positive".into(),
            ));
        }
        let listen = s.listen.unwrap_or_else(|| "127.0.0.1:6379".into());
        Ok(Config {
            node_id,
            advertise: s.advertise.unwrap_or_else(|| listen.clone()),
            listen,
            peer_listen,
            data_dir: s.data_dir.unwrap_or_else(|| PathBuf::from("concord-data")),
            initial_cluster,
            join: s.join.unwrap_or(false),
            cluster_id: s.cluster_id.unwrap_or_else(|| "concord".into()),
            admin_listen: s.admin_listen,
            log_format: s.log_format.unwrap_or_default(),
            log: s.log.unwrap_or_else(|| "info".into()),
            request_timeout: Duration::from_millis(s.request_timeout_ms.unwrap_or(5000)),
            tick: Duration::from_millis(tick_ms),
            raft_max_inflight,
            snapshot_entries: s.snapshot_entries.unwrap_or(100_000),
            snapshot_log_bytes: s.snapshot_log_bytes.unwrap_or(64 * 1024 * 1024),
            wal_segment_bytes: s.wal_segment_bytes.unwrap_or(64 * 1024 * 1024),
            max_clients: s.max_clients.unwrap_or(10_000),
            proto_max_bulk_len: s.proto_max_bulk_len.unwrap_or(512 * 1024 * 1024),
        })
    }
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_initial_cluster(text: &str) -> Result<Vec<Peer>, ConfigError> {
    let mut peers: Vec<Peer> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| ConfigError::InitialCluster(format!("'{part}' is not ID=HOST:PORT")))?;
        let id: u64 = id.trim().parse().ok().filter(|id| *id > 0).ok_or_else(|| {
            ConfigError::InitialCluster(format!("'{id}' is not a positive node id"))
        })?;
        if !addr.contains(':') {
            return Err(ConfigError::InitialCluster(format!("'{addr}' has no port")));
        }
        if peers.iter().any(|p| p.id == id) {
            return Err(ConfigError::InitialCluster(format!(
                "node id {id} appears twice"
            )));
        }
        peers.push(Peer {
            id,
            addr: addr.trim().to_owned(),
        });
    }
    if peers.is_empty() {
        return Err(ConfigError::InitialCluster("no members given".into()));
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file: Settings = toml::from_str(
            "listen = \"0.0.0.0:7000\"\nnode-id = 2\ninitial-cluster = \"1=a:1,2=b:2\"",
        )
        .unwrap();
        let cli = Settings {
            listen: Some("127.0.0.1:9000".into()),
            ..Default::default()
        };
        let config = Config::resolve(cli.or(file)).unwrap();
        assert_eq!(config.listen, "127.0.0.1:9000");
        assert_eq!(config.node_id, 2);
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.raft_max_inflight, 1);
    }

    #[test]
    fn raft_max_inflight_must_be_positive() {
        let zero = Settings {
            raft_max_inflight: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            Config::resolve(zero),
            Err(ConfigError::Invalid(text)) if text.contains("--raft-max-inflight")
        ));
        let file: Settings = toml::from_str("raft-max-inflight = 8").unwrap();
        assert_eq!(Config::resolve(file).unwrap().raft_max_inflight, 8);
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        assert!(toml::from_str::<Settings>("lisen = \"x\"").is_err());
    }

    #[test]
    fn initial_cluster_is_validated() {
        assert_eq!(
            parse_initial_cluster("1=a:1, 2=b:2").unwrap(),
            vec![
                Peer {
                    id: 1,
                    addr: "a:1".into()
                },
                Peer {
                    id: 2,
                    addr: "b:2".into()
                }
            ]
        );
        for bad in ["", "1", "0=a:1", "x=a:1", "1=a", "1=a:1,1=b:2"] {
            assert!(parse_initial_cluster(bad).is_err(), "{bad}");
        }
        let s = Settings {
            node_id: Some(3),
            initial_cluster: Some("1=a:1,2=b:2".into()),
            ..Default::default()
        };
        assert!(Config::resolve(s).is_err());
    }
}
