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
    /// The largest raft log entry: a write that would need a bigger one is
    /// refused before the log (every peer sends an entry in one piece,
    /// heartbeats queued behind it). 64 MiB by default, 64 KiB at least.
    #[arg(long, env = "CONCORD_MAX_ENTRY_BYTES")]
    pub max_entry_bytes: Option<u64>,
    /// The dataset's ceiling, with Redis's units (`64mb`, `1gb`; 0: none).
    /// Past it the leader evicts keys by --maxmemory-policy through the
    /// log, or writes get OOM. Counts the dataset as every replica sizes it
    /// (MEMORY USAGE), not the process's memory.
    #[arg(long, env = "CONCORD_MAXMEMORY")]
    pub maxmemory: Option<String>,
    /// What goes when the dataset is over --maxmemory: noeviction (the
    /// default: writes get OOM), allkeys-lru, allkeys-lfu, allkeys-random,
    /// volatile-lru, volatile-lfu, volatile-random or volatile-ttl.
    #[arg(long, env = "CONCORD_MAXMEMORY_POLICY")]
    pub maxmemory_policy: Option<String>,
    /// Keys sampled per eviction round by the LRU and LFU policies (5).
    #[arg(long, env = "CONCORD_MAXMEMORY_SAMPLES")]
    pub maxmemory_samples: Option<u8>,
    /// Most client connections at once.
    #[arg(long, env = "CONCORD_MAX_CLIENTS")]
    pub max_clients: Option<u64>,
    /// Largest bulk string a client may send, in bytes.
    #[arg(long, env = "CONCORD_PROTO_MAX_BULK_LEN")]
    pub proto_max_bulk_len: Option<u64>,
    /// The `default` user's password, as Redis's requirepass: clients must
    /// AUTH. Seeds a new cluster's ACL; on a running cluster this node
    /// makes it the default user's only password when it starts.
    #[arg(long, env = "CONCORD_REQUIREPASS", hide_env_values = true)]
    pub requirepass: Option<String>,
    /// An ACL file (`user <name> <rules>` lines, as Redis's aclfile) that
    /// seeds a new cluster's users; ACL LOAD and ACL SAVE read and write it.
    #[arg(long, env = "CONCORD_ACLFILE")]
    pub aclfile: Option<PathBuf>,
    /// Refuse clients from other hosts while no password is set (Redis's
    /// protected mode); `no` to serve them anyway.
    #[arg(long, env = "CONCORD_PROTECTED_MODE", value_parser = parse_yes_no)]
    pub protected_mode: Option<bool>,
    /// Address for Redis clients over TLS (beside or instead of --listen).
    #[arg(long, env = "CONCORD_TLS_LISTEN")]
    pub tls_listen: Option<String>,
    /// This node's certificate (PEM, with its chain) for clients, peers and
    /// the admin port.
    #[arg(long, env = "CONCORD_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "CONCORD_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// The CA (PEM) that signs client certificates and every peer's.
    #[arg(long, env = "CONCORD_TLS_CA_CERT_FILE")]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// Whether TLS clients must present a certificate signed by the CA.
    #[arg(long, env = "CONCORD_TLS_AUTH_CLIENTS", value_enum)]
    pub tls_auth_clients: Option<crate::tls::AuthClients>,
    /// Mutual TLS on every peer link (certificate, key and CA as above).
    #[arg(long, env = "CONCORD_PEER_TLS", num_args = 0..=1, default_missing_value = "true")]
    pub peer_tls: Option<bool>,
    /// A file holding the secret the nodes prove to each other (HMAC
    /// challenge-response) when a peer link opens; at least 16 bytes.
    #[arg(long, env = "CONCORD_PEER_SECRET_FILE")]
    pub peer_secret_file: Option<PathBuf>,
    /// Listen for peers on a non-loopback address without TLS or a secret.
    #[arg(long, env = "CONCORD_INSECURE_PEERS", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_peers: Option<bool>,
    /// Serve the admin port over TLS (with --tls-cert-file/--tls-key-file).
    #[arg(long, env = "CONCORD_ADMIN_TLS", num_args = 0..=1, default_missing_value = "true")]
    pub admin_tls: Option<bool>,
    /// A file holding a bearer token the admin port asks for on everything
    /// but /health.
    #[arg(long, env = "CONCORD_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
}

/// A memory value as Redis reads one: digits and an optional unit, `k`
/// `m` `g` for powers of 1000 and `kb` `mb` `gb` for powers of 1024.
pub fn memory_value(text: &str) -> Option<u64> {
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

/// `yes`/`no` as Redis writes booleans (also `true`/`false`).
pub fn parse_yes_no(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        _ => Err(format!("'{text}' is not yes or no")),
    }
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
            max_entry_bytes: self.max_entry_bytes.or(other.max_entry_bytes),
            maxmemory: self.maxmemory.or(other.maxmemory),
            maxmemory_policy: self.maxmemory_policy.or(other.maxmemory_policy),
            maxmemory_samples: self.maxmemory_samples.or(other.maxmemory_samples),
            max_clients: self.max_clients.or(other.max_clients),
            proto_max_bulk_len: self.proto_max_bulk_len.or(other.proto_max_bulk_len),
            requirepass: self.requirepass.or(other.requirepass),
            aclfile: self.aclfile.or(other.aclfile),
            protected_mode: self.protected_mode.or(other.protected_mode),
            tls_listen: self.tls_listen.or(other.tls_listen),
            tls_cert_file: self.tls_cert_file.or(other.tls_cert_file),
            tls_key_file: self.tls_key_file.or(other.tls_key_file),
            tls_ca_cert_file: self.tls_ca_cert_file.or(other.tls_ca_cert_file),
            tls_auth_clients: self.tls_auth_clients.or(other.tls_auth_clients),
            peer_tls: self.peer_tls.or(other.peer_tls),
            peer_secret_file: self.peer_secret_file.or(other.peer_secret_file),
            insecure_peers: self.insecure_peers.or(other.insecure_peers),
            admin_tls: self.admin_tls.or(other.admin_tls),
            admin_token_file: self.admin_token_file.or(other.admin_token_file),
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
    pub max_entry_bytes: u64,
    /// `--maxmemory` in bytes; 0: none.
    pub maxmemory: u64,
    pub maxmemory_policy: crate::state::evict::Policy,
    pub maxmemory_samples: u8,
    pub max_clients: u64,
    pub proto_max_bulk_len: u64,
    pub requirepass: Option<String>,
    pub aclfile: Option<PathBuf>,
    pub protected_mode: bool,
    pub tls_listen: Option<String>,
    /// Certificate, key, CA and client-certificate policy, when any TLS is on.
    pub tls: Option<crate::tls::TlsPaths>,
    pub peer_tls: bool,
    /// The peer secret, read from --peer-secret-file.
    pub peer_secret: Option<Vec<u8>>,
    pub insecure_peers: bool,
    pub admin_tls: bool,
    pub admin_token: Option<String>,
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
        let max_entry_bytes = s.max_entry_bytes.unwrap_or(64 * 1024 * 1024);
        if max_entry_bytes < 64 * 1024 {
            return Err(ConfigError::Invalid(
                "--max-entry-bytes must be at least 65536".into(),
            ));
        }
        let maxmemory = match s.maxmemory.as_deref() {
            None => 0,
            Some(text) => memory_value(text).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "--maxmemory '{text}' is not a size (digits and an optional unit: b, k, kb, m, mb, g, gb)"
                ))
            })?,
        };
        let maxmemory_policy = match s.maxmemory_policy.as_deref() {
            None => crate::state::evict::Policy::NoEviction,
            Some(text) => crate::state::evict::Policy::parse(text).ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "--maxmemory-policy '{text}' is not one of noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl"
                ))
            })?,
        };
        let maxmemory_samples = s.maxmemory_samples.unwrap_or(5);
        if !(1..=64).contains(&maxmemory_samples) {
            return Err(ConfigError::Invalid(
                "--maxmemory-samples must be between 1 and 64".into(),
            ));
        }
        let listen = s.listen.unwrap_or_else(|| "127.0.0.1:6379".into());
        let peer_tls = s.peer_tls.unwrap_or(false);
        let admin_tls = s.admin_tls.unwrap_or(false);
        let tls = match (s.tls_cert_file, s.tls_key_file) {
            (Some(cert), Some(key)) => Some(crate::tls::TlsPaths {
                cert,
                key,
                ca: s.tls_ca_cert_file,
                auth_clients: s.tls_auth_clients.unwrap_or_default(),
            }),
            (None, None) if s.tls_listen.is_none() && !peer_tls && !admin_tls => None,
            _ => {
                return Err(ConfigError::Invalid(
                    "--tls-listen, --peer-tls and --admin-tls need both --tls-cert-file and --tls-key-file".into(),
                ))
            }
        };
        if peer_tls && tls.as_ref().is_some_and(|t| t.ca.is_none()) {
            return Err(ConfigError::Invalid(
                "--peer-tls needs --tls-ca-cert-file: the CA that signs every node's certificate"
                    .into(),
            ));
        }
        let peer_secret = match &s.peer_secret_file {
            Some(path) => Some(read_secret(path, "--peer-secret-file")?),
            None => None,
        };
        let admin_token = match &s.admin_token_file {
            Some(path) => Some(
                String::from_utf8(read_secret(path, "--admin-token-file")?).map_err(|_| {
                    ConfigError::Invalid("--admin-token-file is not UTF-8 text".into())
                })?,
            ),
            None => None,
        };
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
            max_entry_bytes,
            maxmemory,
            maxmemory_policy,
            maxmemory_samples,
            max_clients: s.max_clients.unwrap_or(10_000),
            proto_max_bulk_len: s.proto_max_bulk_len.unwrap_or(512 * 1024 * 1024),
            requirepass: s.requirepass.filter(|p| !p.is_empty()),
            aclfile: s.aclfile,
            protected_mode: s.protected_mode.unwrap_or(true),
            tls_listen: s.tls_listen,
            tls,
            peer_tls,
            peer_secret,
            insecure_peers: s.insecure_peers.unwrap_or(false),
            admin_tls,
            admin_token,
        })
    }

    /// Whether `addr` (host:port) listens beyond this host: anything but a
    /// loopback address or `localhost`.
    pub fn is_public(addr: &str) -> bool {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let host = host.trim_matches(['[', ']']);
        if host.eq_ignore_ascii_case("localhost") {
            return false;
        }
        match host.parse::<std::net::IpAddr>() {
            Ok(ip) => !ip.is_loopback(),
            Err(_) => true,
        }
    }
}

/// A secret from a file, without its trailing newline; at least 16 bytes.
fn read_secret(path: &Path, flag: &str) -> Result<Vec<u8>, ConfigError> {
    let mut bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.len() < 16 {
        return Err(ConfigError::Invalid(format!(
            "{flag} {}: the secret must be at least 16 bytes",
            path.display()
        )));
    }
    Ok(bytes)
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
