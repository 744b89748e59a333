//! The admin port: `/health`, `/ready` and `/metrics` over HTTP/1.1, in
//! the clear or over TLS (`--admin-tls`), with an optional bearer token.
//!
//! Three read-only endpoints do not justify an HTTP stack: this answers one
//! request per connection and closes. Metrics are rendered in Prometheus
//! text format straight from the counters the node already keeps.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Shared;
use crate::raft::Role;

/// Serves the admin port until shutdown; over TLS when `tls` is given
/// (the node's certificate, no client certificate asked: probes and
/// scrapers rarely have one), and asking for the bearer token of
/// `--admin-token-file` on everything but `/health`.
pub async fn serve_admin(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    tls: Option<Arc<crate::tls::TlsFiles>>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((socket, _)) = accepted else { continue };
                let shared = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let timeout = std::time::Duration::from_secs(5);
                    match tls {
                        None => answer(socket, &shared).await,
                        Some(files) => {
                            if let Ok(Ok(stream)) = tokio::time::timeout(timeout, files.admin_acceptor().accept(socket)).await {
                                answer(stream, &shared).await;
                            }
                        }
                    }
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Reads one request, answers it, closes.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut socket: S, shared: &Shared) {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    // Until the end of the headers (or the buffer is full).
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
        match tokio::time::timeout(
            std::time::Duration::from_secs(5),
            socket.read(&mut buf[n..]),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(read)) => n += read,
        }
    }
    let request = String::from_utf8_lossy(&buf[..n]);
    let path = request.split_whitespace().nth(1).unwrap_or("/");
    let (status, body) = if path != "/health" && !authorized(shared, &request) {
        (
            "401 Unauthorized",
            "a bearer token is required (--admin-token-file)\n".to_owned(),
        )
    } else {
        respond(shared, path)
    };
    let challenge = if status.starts_with("401") {
        "WWW-Authenticate: Bearer realm=\"concord\"\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status}\r\n{challenge}Content-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// The request carries `Authorization: Bearer <token>` with the node's
/// token (compared in constant time), or the node has none.
fn authorized(shared: &Shared, request: &str) -> bool {
    let Some(token) = shared.config.admin_token.as_deref() else {
        return true;
    };
    let given = request
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
        .and_then(|(_, value)| value.trim().strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Entries a node may have left to apply and still be ready: what one busy
/// second of batched applies can leave behind, far less than a node that
/// restarts or catches up from a snapshot lags by.
const READY_LAG: u64 = 1000;

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
            let (leader, commit, applied) = (
                status.leader(),
                status.commit_index(),
                status.applied_index(),
            );
            if leader == 0 {
                ("503 Service Unavailable", "no leader\n".into())
            } else if applied + READY_LAG < commit {
                (
                    "503 Service Unavailable",
                    format!("catching up: applied {applied} of {commit} committed\n"),
                )
            } else {
                (
                    "200 OK",
                    format!("ready: leader {leader}, applied {applied} of {commit} committed\n"),
                )
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

/// GETs `path` from an admin port (`concord health`): the status code and
/// body. With `tls`, the certificate is not verified: the probe runs on the
/// node's own host, against an address it was given.
pub async fn probe(
    addr: &str,
    path: &str,
    tls: bool,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
    let mut response = Vec::new();
    if tls {
        let connector = crate::tls::insecure_connector();
        let name =
            rustls::pki_types::ServerName::try_from("concord.invalid").expect("a valid name");
        let mut stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.read_to_end(&mut response).await;
    } else {
        let mut stream = tcp;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| e.to_string())?;
    }
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((status, body))
}
