//! The admin port: `/health`, `/ready` and `/metrics` over plain HTTP/1.1.
//!
//! Three read-only endpoints do not justify an HTTP stack: this answers one
//! request per connection and closes. Metrics are rendered in Prometheus
//! text format straight from the counters the node already keeps.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Shared;
use crate::raft::Role;

pub async fn serve_admin(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut socket, _)) = accepted else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let n = match tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut buf)).await {
                        Ok(Ok(n)) => n,
                        _ => return,
                    };
                    let request = String::from_utf8_lossy(&buf[..n]);
                    let path = request.split_whitespace().nth(1).unwrap_or("/");
                    let (status, body) = respond(&shared, path);
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

fn respond(shared: &Shared, path: &str) -> (&'static str, String) {
    let status = shared.node.status();
    match path {
        "/health" => {
            if shared.node.is_running() {
                ("200 OK", "ok\n".into())
            } else {
                ("503 Service Unavailable", "raft driver stopped\n".into())
            }
        }
        "/ready" => {
            if status.leader() != 0 {
                ("200 OK", format!("ready: leader {}\n", status.leader()))
            } else {
                ("503 Service Unavailable", "no leader\n".into())
            }
        }
        "/metrics" => ("200 OK", metrics(shared)),
        _ => ("404 Not Found", "try /health, /ready or /metrics\n".into()),
    }
}

fn metrics(shared: &Shared) -> String {
    let s = shared.node.status();
    let (keys, volatile) = s.keys();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    gauge("concord_raft_term", "Current raft term.", "gauge", s.term());
    gauge(
        "concord_raft_is_leader",
        "1 on the leader.",
        "gauge",
        (s.role() == Role::Leader) as u64,
    );
    gauge(
        "concord_raft_leader_id",
        "Known leader id, 0 if none.",
        "gauge",
        s.leader(),
    );
    gauge(
        "concord_raft_commit_index",
        "Commit index.",
        "gauge",
        s.commit_index(),
    );
    gauge(
        "concord_raft_applied_index",
        "Applied index.",
        "gauge",
        s.applied_index(),
    );
    gauge(
        "concord_raft_snapshot_index",
        "Index of the newest snapshot.",
        "gauge",
        s.snapshot_index(),
    );
    gauge(
        "concord_snapshots_total",
        "Snapshots taken.",
        "counter",
        s.snapshots_taken(),
    );
    gauge(
        "concord_wal_fsyncs_total",
        "WAL fdatasync calls.",
        "counter",
        s.wal.syncs.load(Ordering::Relaxed),
    );
    gauge(
        "concord_wal_records_total",
        "WAL records written.",
        "counter",
        s.wal.records.load(Ordering::Relaxed),
    );
    gauge(
        "concord_wal_bytes_total",
        "WAL bytes written.",
        "counter",
        s.wal.bytes.load(Ordering::Relaxed),
    );
    gauge("concord_keys", "Keys in the keyspace.", "gauge", keys);
    gauge(
        "concord_keys_volatile",
        "Keys with a deadline.",
        "gauge",
        volatile,
    );
    let st = &shared.stats;
    gauge(
        "concord_commands_total",
        "Commands processed.",
        "counter",
        st.commands_processed.load(Ordering::Relaxed),
    );
    gauge(
        "concord_connections_total",
        "Connections accepted.",
        "counter",
        st.connections_received.load(Ordering::Relaxed),
    );
    gauge(
        "concord_connected_clients",
        "Open client connections.",
        "gauge",
        shared.clients.lock().expect("clients lock").len() as u64,
    );
    gauge(
        "concord_protocol_errors_total",
        "Connections closed for protocol errors.",
        "counter",
        st.protocol_errors.load(Ordering::Relaxed),
    );
    out
}
