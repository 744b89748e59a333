//! The admin port: `/health`, `/ready` and `/metrics` over HTTP/1.1, in
//! the clear or over TLS (`--admin-tls`), with an optional bearer token.
//!
//! Three read-only endpoints do not justify an HTTP stack: this answers one
//! request per connection and closes. Metrics are rendered in Prometheus
//! text format by [`crate::metrics`].

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
    } else if path == "/metrics" {
        ("200 OK", metrics(shared).await)
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
        _ => ("404 Not Found", "try /health, /ready or /metrics\n".into()),
    }
}

/// Everything `/metrics` shows: the live series kept by the driver, the
/// WAL thread and the transport, and the scraped ones filled here (see
/// [`crate::metrics`]).
async fn metrics(shared: &Shared) -> String {
    use crate::metrics::{micros_histogram, Value};
    // The mesh series come from the driver's state; a node whose driver
    // stopped still shows the rest.
    let mesh = shared.node.mesh_stats().await.ok();
    let s = shared.node.status();
    s.metrics.render(|m| {
        let leader = s.leader();
        m.set("concord_raft_has_leader", (leader != 0) as u8 as f64);
        m.set(
            "concord_raft_is_leader",
            (s.role() == Role::Leader) as u8 as f64,
        );
        m.set("concord_raft_leader_id", leader as f64);
        m.set("concord_raft_term", s.term() as f64);
        m.set("concord_raft_commit_index", s.commit_index() as f64);
        m.set("concord_raft_applied_index", s.applied_index() as f64);
        m.set("concord_raft_snapshot_index", s.snapshot_index() as f64);
        m.set(
            "concord_raft_proposals_pending",
            s.proposals_pending() as f64,
        );
        m.set("concord_snapshots", s.snapshots_taken() as f64);
        m.set(
            "concord_wal_fsyncs",
            s.wal.syncs.load(Ordering::Relaxed) as f64,
        );
        m.set(
            "concord_wal_records",
            s.wal.records.load(Ordering::Relaxed) as f64,
        );
        m.set(
            "concord_wal_bytes",
            s.wal.bytes.load(Ordering::Relaxed) as f64,
        );
        let (keys, volatile) = s.keys();
        m.set("concord_keys", keys as f64);
        m.set("concord_keys_volatile", volatile as f64);
        let st = &shared.stats;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed) as f64;
        m.set("concord_commands_processed", load(&st.commands_processed));
        m.set("concord_connections", load(&st.connections_received));
        m.set(
            "concord_connected_clients",
            shared.clients.lock().expect("clients lock").len() as f64,
        );
        m.set("concord_protocol_errors", load(&st.protocol_errors));
        for (name, calls, usec, rejected, failed) in st.calls.called() {
            let label = || vec![("command", name.to_owned())];
            m.labelled(
                "concord_command_calls",
                label(),
                Value::Number(calls as f64),
            );
            m.labelled(
                "concord_command_failed",
                label(),
                Value::Number(failed as f64),
            );
            m.labelled(
                "concord_command_rejected",
                label(),
                Value::Number(rejected as f64),
            );
            if let Some(stat) = st.calls.get(name) {
                m.labelled(
                    "concord_command_duration_seconds",
                    label(),
                    micros_histogram(&stat.latency.counts(), usec),
                );
            }
        }
        for (code, n) in st.error_codes.counts() {
            m.labelled(
                "concord_error_replies",
                vec![("code", code)],
                Value::Number(n as f64),
            );
        }
        if let Some(mesh) = mesh {
            mesh_series(m, mesh);
        }
    })
}

/// The mesh series: the same on every node that applied the same entries.
fn mesh_series(m: &mut crate::metrics::Scrape, mesh: crate::state::mesh::MeshStats) {
    use crate::metrics::Value::Number;
    let n = |v: u64| Number(v as f64);
    for (breaker, state) in mesh.breakers {
        m.labelled(
            "concord_breaker_state",
            vec![("breaker", breaker)],
            n(state as u64),
        );
    }
    for (breaker, to, times) in mesh.breaker_transitions {
        m.labelled(
            "concord_breaker_transitions",
            vec![("breaker", breaker), ("to", to.to_owned())],
            n(times),
        );
    }
    for (service, instances) in mesh.services {
        let healthy = instances.iter().filter(|(_, h)| *h).count() as u64;
        m.labelled(
            "concord_registry_instances",
            vec![("service", service.clone())],
            n(instances.len() as u64),
        );
        m.labelled(
            "concord_registry_instances_healthy",
            vec![("service", service.clone())],
            n(healthy),
        );
        for (id, h) in instances {
            // `id`, not `instance`: Prometheus gives every scraped series
            // an `instance` label of its own (the node).
            m.labelled(
                "concord_registry_instance_healthy",
                vec![("service", service.clone()), ("id", id)],
                n(h as u64),
            );
        }
    }
    for (service, id, to, times) in mesh.health_transitions {
        m.labelled(
            "concord_registry_health_transitions",
            vec![("service", service), ("id", id), ("to", to.to_owned())],
            n(times),
        );
    }
    for (service, id, seconds) in mesh.check_latencies {
        m.labelled(
            "concord_registry_check_latency_seconds",
            vec![("service", service), ("id", id)],
            Number(seconds),
        );
    }
    for (service, strategy, picks) in mesh.picks {
        m.labelled(
            "concord_registry_picks",
            vec![("service", service), ("strategy", strategy.to_owned())],
            n(picks),
        );
    }
    for (class, allowed, denied) in mesh.rate_limits {
        m.labelled(
            "concord_ratelimit_allowed",
            vec![("class", class.clone())],
            n(allowed),
        );
        m.labelled(
            "concord_ratelimit_denied",
            vec![("class", class)],
            n(denied),
        );
    }
    m.set("concord_lock_grants", mesh.lock_grants as f64);
    m.set("concord_lock_waits", mesh.lock_waits as f64);
    for (outcome, count) in [
        ("applied", mesh.fenced_applied),
        ("refused", mesh.fenced_refused),
    ] {
        m.labelled(
            "concord_lock_fenced_writes",
            vec![("outcome", outcome.to_owned())],
            n(count),
        );
    }
    m.set("concord_locks_held", mesh.locks_held as f64);
    for (queue, ready, inflight, delayed, dead) in mesh.queues {
        for (state, count) in [
            ("ready", ready),
            ("inflight", inflight),
            ("delayed", delayed),
            ("dead", dead),
        ] {
            m.labelled(
                "concord_queue_jobs",
                vec![("queue", queue.clone()), ("state", state.to_owned())],
                n(count),
            );
        }
    }
    m.set("concord_sessions_live", mesh.sessions_live as f64);
    m.set("concord_sessions_expired", mesh.sessions_expired as f64);
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
