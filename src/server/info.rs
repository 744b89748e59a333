//! INFO: Redis's sections with the fields client libraries and tools read
//! (`redis_version`, `arch_bits`, `cluster_enabled`, `role`, `db0:keys=`),
//! plus a `raft` section.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::local::REDIS_VERSION;
use super::Shared;
use crate::raft::Role;
use crate::resp::{Protocol, Reply};

/// The sections in Redis's order, each with whether INFO without
/// arguments (or with `default`) shows it; `all` and `everything` show
/// every one.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
    ("raft", true),
];

pub(super) fn render(shared: &Shared, args: &[Bytes], _protocol: Protocol) -> Reply {
    let wanted: Vec<String> = args
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = wanted.iter().any(|w| w == "all" || w == "everything");
    let default = wanted.is_empty() || wanted.iter().any(|w| w == "default");
    let mut out = String::new();
    for (section, in_default) in SECTIONS {
        let shown = all || (default && *in_default) || wanted.iter().any(|w| w == section);
        if !shown {
            continue;
        }
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        let mut title = section.to_string();
        title[..1].make_ascii_uppercase();
        let _ = write!(out, "# {title}\r\n");
        let body = match *section {
            "server" => server(shared),
            "clients" => clients(shared),
            "memory" => memory(shared),
            "persistence" => persistence(shared),
            "stats" => stats(shared),
            "replication" => replication(shared),
            "cpu" => cpu(),
            // No Redis Cluster: one raft group holds every key, and any node
            // answers for all of them. Tools read this field before they
            // decide how to talk to a server.
            "cluster" => vec![("cluster_enabled", "0".into())],
            "keyspace" => keyspace(shared),
            // Command and error stats are written below from their
            // counters; concord keeps no latency histograms.
            "commandstats" | "errorstats" | "latencystats" => Vec::new(),
            _ => raft(shared),
        };
        for (k, v) in body {
            let _ = write!(out, "{k}:{v}\r\n");
        }
        if *section == "errorstats" {
            for (code, count) in shared.stats.error_codes.counts() {
                let _ = write!(out, "errorstat_{code}:count={count}\r\n");
            }
        }
        if *section == "commandstats" {
            for (name, calls, usec, rejected, failed) in shared.stats.calls.called() {
                let per_call = if calls > 0 {
                    usec as f64 / calls as f64
                } else {
                    0.0
                };
                let _ = write!(
                    out,
                    "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},rejected_calls={rejected},failed_calls={failed}\r\n"
                );
            }
        }
    }
    Reply::Verbatim {
        format: *b"txt",
        text: Bytes::from(out),
    }
}

type Fields = Vec<(&'static str, String)>;

fn server(shared: &Shared) -> Fields {
    let uptime = shared.started.elapsed().as_secs();
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    vec![
        ("redis_version", REDIS_VERSION.into()),
        ("redis_git_sha1", "00000000".into()),
        ("redis_git_dirty", "0".into()),
        ("redis_build_id", "0".into()),
        ("redis_mode", "standalone".into()),
        ("concord_version", env!("CARGO_PKG_VERSION").into()),
        ("os", std::env::consts::OS.into()),
        ("arch_bits", (usize::BITS).to_string()),
        ("monotonic_clock", "POSIX clock_gettime".into()),
        ("multiplexing_api", "epoll".into()),
        ("process_id", std::process::id().to_string()),
        ("run_id", shared.run_id.clone()),
        ("tcp_port", shared.tcp_port.to_string()),
        ("server_time_usec", now_us.to_string()),
        ("uptime_in_seconds", uptime.to_string()),
        ("uptime_in_days", (uptime / 86_400).to_string()),
        ("hz", "10".into()),
        ("configured_hz", "10".into()),
        (
            "executable",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("config_file", String::new()),
    ]
}

fn clients(shared: &Shared) -> Fields {
    let connected = shared.clients.lock().expect("clients lock").len();
    let status = shared.node.status();
    vec![
        ("connected_clients", connected.to_string()),
        ("cluster_connections", "0".into()),
        (
            "maxclients",
            shared
                .param_u64("maxclients", shared.config.max_clients)
                .to_string(),
        ),
        (
            "blocked_clients",
            (status.blocked_clients() + shared.pause.waiting()).to_string(),
        ),
        ("tracking_clients", "0".into()),
        ("pubsub_clients", status.pubsub_clients().to_string()),
    ]
}

/// Resident memory from /proc, where there is one.
fn rss_bytes() -> u64 {
    let page = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * page)
}

fn human(bytes: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < units.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2}{}", units[unit])
}

/// `used_memory` is what the allocator handed out (see [`crate::alloc`];
/// RSS in a process that does not count, such as a unit test);
/// `used_memory_dataset` is the dataset as every replica sizes it, the
/// figure `maxmemory` limits.
fn memory(shared: &Shared) -> Fields {
    let status = shared.node.status();
    let rss = rss_bytes();
    let used = crate::alloc::allocated_bytes().unwrap_or(rss);
    let dataset = status.dataset_bytes();
    let max = status.memory.max_bytes();
    let scripts = status.cached_scripts();
    let clients = super::local::clients_memory(shared);
    let fragmentation = if used == 0 {
        0.0
    } else {
        rss as f64 / used as f64
    };
    vec![
        ("used_memory", used.to_string()),
        ("used_memory_human", human(used)),
        ("used_memory_rss", rss.to_string()),
        ("used_memory_rss_human", human(rss)),
        ("used_memory_dataset", dataset.to_string()),
        ("used_memory_dataset_human", human(dataset)),
        (
            "used_memory_dataset_perc",
            format!(
                "{:.2}%",
                if used == 0 {
                    0.0
                } else {
                    dataset as f64 * 100.0 / used as f64
                }
            ),
        ),
        ("mem_clients_normal", clients.to_string()),
        ("maxmemory", max.to_string()),
        ("maxmemory_human", human(max)),
        ("maxmemory_policy", status.memory.policy().name().into()),
        ("mem_fragmentation_ratio", format!("{fragmentation:.2}")),
        ("mem_allocator", "mimalloc".into()),
        // Values are freed where the op that removes them applies, never
        // handed to a background thread: nothing is ever pending.
        ("lazyfree_pending_objects", "0".into()),
        ("lazyfreed_objects", "0".into()),
        ("number_of_cached_scripts", scripts.to_string()),
    ]
}

fn persistence(shared: &Shared) -> Fields {
    let status = shared.node.status();
    let wal = &status.wal;
    vec![
        ("loading", "0".into()),
        ("async_loading", "0".into()),
        ("rdb_changes_since_last_save", "0".into()),
        ("rdb_bgsave_in_progress", "0".into()),
        ("rdb_last_bgsave_status", "ok".into()),
        ("aof_enabled", "1".into()),
        ("aof_rewrite_in_progress", "0".into()),
        ("aof_last_write_status", "ok".into()),
        (
            "concord_wal_fsyncs",
            wal.syncs.load(Ordering::Relaxed).to_string(),
        ),
        (
            "concord_wal_unsynced_rounds",
            wal.deferred.load(Ordering::Relaxed).to_string(),
        ),
        (
            "concord_wal_records",
            wal.records.load(Ordering::Relaxed).to_string(),
        ),
        (
            "concord_wal_bytes",
            wal.bytes.load(Ordering::Relaxed).to_string(),
        ),
        (
            "concord_wal_batches",
            wal.jobs.load(Ordering::Relaxed).to_string(),
        ),
        ("concord_snapshots", status.snapshots_taken().to_string()),
        (
            "concord_snapshot_index",
            status.snapshot_index().to_string(),
        ),
    ]
}

fn stats(shared: &Shared) -> Fields {
    let s = &shared.stats;
    vec![
        (
            "total_connections_received",
            s.connections_received.load(Ordering::Relaxed).to_string(),
        ),
        (
            "total_commands_processed",
            s.commands_processed.load(Ordering::Relaxed).to_string(),
        ),
        ("instantaneous_ops_per_sec", "0".into()),
        (
            "rejected_connections",
            s.rejected_connections.load(Ordering::Relaxed).to_string(),
        ),
        ("expired_keys", "0".into()),
        (
            "evicted_keys",
            shared.node.status().evicted_keys().to_string(),
        ),
        ("keyspace_hits", "0".into()),
        ("keyspace_misses", "0".into()),
        ("pubsub_channels", "0".into()),
        ("pubsub_patterns", "0".into()),
        // concord has no MIGRATE, so it never caches a connection for one.
        ("migrate_cached_sockets", "0".into()),
        (
            "client_output_buffer_limit_disconnections",
            s.output_limit_disconnections
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "evicted_clients",
            s.evicted_clients.load(Ordering::Relaxed).to_string(),
        ),
        (
            "client_query_buffer_limit_disconnections",
            s.query_limit_disconnections
                .load(Ordering::Relaxed)
                .to_string(),
        ),
        (
            "total_error_replies",
            s.errors_replied.load(Ordering::Relaxed).to_string(),
        ),
        (
            "concord_protocol_errors",
            s.protocol_errors.load(Ordering::Relaxed).to_string(),
        ),
    ]
}

fn replication(shared: &Shared) -> Fields {
    let status = shared.node.status();
    let leader = status.role() == Role::Leader;
    let mut fields: Fields = vec![("role", if leader { "master" } else { "slave" }.into())];
    if leader {
        let followers = status.voters().saturating_sub(1);
        fields.push(("connected_slaves", followers.to_string()));
    } else {
        let leader_id = status.leader();
        let (host, port) = shared.leader_addr();
        fields.push(("master_host", host));
        fields.push(("master_port", port));
        fields.push((
            "master_link_status",
            if leader_id == 0 { "down" } else { "up" }.into(),
        ));
        fields.push(("slave_repl_offset", status.applied_index().to_string()));
        fields.push(("slave_read_only", "0".into()));
    }
    fields.push(("master_failover_state", "no-failover".into()));
    fields.push(("master_replid", shared.run_id.clone()));
    fields.push(("master_repl_offset", status.applied_index().to_string()));
    fields
}

fn cpu() -> Fields {
    // utime and stime from /proc/self/stat, in clock ticks of 1/100 s.
    let (user, sys) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1.to_owned();
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some((
                fields.get(11)?.parse::<f64>().ok()? / 100.0,
                fields.get(12)?.parse::<f64>().ok()? / 100.0,
            ))
        })
        .unwrap_or((0.0, 0.0));
    vec![
        ("used_cpu_sys", format!("{sys:.6}")),
        ("used_cpu_user", format!("{user:.6}")),
    ]
}

fn keyspace(shared: &Shared) -> Fields {
    shared
        .node
        .status()
        .databases()
        .into_iter()
        .map(|(db, keys, expires)| {
            (
                DB_NAMES[db as usize],
                format!("keys={keys},expires={expires},avg_ttl=0"),
            )
        })
        .collect()
}

/// INFO keyspace's field names, one per database.
const DB_NAMES: [&str; crate::state::DATABASES as usize] = [
    "db0", "db1", "db2", "db3", "db4", "db5", "db6", "db7", "db8", "db9", "db10", "db11", "db12",
    "db13", "db14", "db15",
];

fn raft(shared: &Shared) -> Fields {
    let s = shared.node.status();
    vec![
        ("raft_node_id", s.id.to_string()),
        ("raft_role", s.role().as_str().into()),
        ("raft_leader_id", s.leader().to_string()),
        ("raft_term", s.term().to_string()),
        ("raft_commit_index", s.commit_index().to_string()),
        ("raft_applied_index", s.applied_index().to_string()),
        ("raft_last_index", s.last_index().to_string()),
        ("raft_snapshot_index", s.snapshot_index().to_string()),
        ("raft_voters", s.voters().to_string()),
    ]
}
