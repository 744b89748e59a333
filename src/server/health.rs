//! The prober: runs the HTTP and TCP health checks this node owns (see
//! `state::checks`) and proposes their results through the log.
//!
//! It lives beside the client connections, never on the raft driver: it
//! asks the driver for the checks this node owns (every 100 ms, a local
//! read of the applied state), runs each one on its interval as a task of
//! its own, at most [`MAX_PROBES`] at once and each within its timeout, and
//! writes a result only when it moves the instance's streak
//! ([`worth_recording`]). A probe never follows a redirect: a 3xx answer is
//! a status like any other, judged by the check's EXPECT range, so a check
//! can never be steered to an address it was not given.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::Shared;
use crate::state::checks::{parse_http_url, worth_recording, OwnedCheck, Probe};
use crate::state::registry::RegistryOp;
use crate::state::Op;

/// Probes running at once on one node.
pub const MAX_PROBES: usize = 64;

/// The most of an HTTP answer read to find its status line.
const MAX_HEAD: usize = 8 * 1024;

/// What one probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub ok: bool,
    pub detail: String,
    pub latency: Duration,
}

type Key = (Bytes, Bytes);

pub async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let me = shared.node.status().id;
    let mut every = tokio::time::interval(Duration::from_millis(100));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut owned: HashMap<Key, OwnedCheck> = HashMap::new();
    let mut next_probe: HashMap<Key, Instant> = HashMap::new();
    let mut running: HashSet<Key> = HashSet::new();
    let mut probes: JoinSet<(Key, Finding)> = JoinSet::new();
    loop {
        tokio::select! {
            _ = every.tick() => {}
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                let Ok((key, finding)) = done else { continue };
                running.remove(&key);
                // Judged against the state as it is now, not as it was when
                // the probe started.
                if let Some(check) = owned.get(&key) {
                    if worth_recording(check, finding.ok) {
                        record(&shared, me, check, &finding);
                    }
                }
                continue;
            }
            _ = shutdown.changed() => return,
        }
        let Ok(checks) = shared.node.owned_checks().await else {
            return;
        };
        owned = checks
            .into_iter()
            .map(|c| ((c.service.clone(), c.id.clone()), c))
            .collect();
        next_probe.retain(|key, _| owned.contains_key(key));
        let now = Instant::now();
        for (key, check) in &owned {
            if running.contains(key) || running.len() >= MAX_PROBES {
                continue;
            }
            let due = next_probe.entry(key.clone()).or_insert(now);
            if *due > now {
                continue;
            }
            *due = now + Duration::from_millis(check.spec.interval_ms);
            running.insert(key.clone());
            let (key, probe) = (key.clone(), check.spec.probe.clone());
            let timeout = Duration::from_millis(check.spec.timeout_ms);
            probes.spawn(async move { (key, probe_once(&probe, timeout).await) });
        }
    }
}

/// Proposes a result; its answer is not waited for (the next probe, or the
/// next owner, follows up on a result that did not make it).
fn record(shared: &Shared, me: u64, check: &OwnedCheck, finding: &Finding) {
    let op = Op::Registry(RegistryOp::CheckResult {
        service: check.service.clone(),
        id: check.id.clone(),
        owner: me,
        ok: finding.ok,
        detail: Bytes::from(finding.detail.clone()),
        latency_us: finding.latency.as_micros().min(u128::from(u64::MAX)) as u64,
    });
    tracing::debug!(
        service = %String::from_utf8_lossy(&check.service),
        id = %String::from_utf8_lossy(&check.id),
        ok = finding.ok,
        detail = %finding.detail,
        "health check result"
    );
    let rx = shared.node.write(op);
    tokio::spawn(async move {
        let _ = crate::raft::answer(rx).await;
    });
}

/// Runs one probe within `timeout`.
pub async fn probe_once(probe: &Probe, timeout: Duration) -> Finding {
    let started = Instant::now();
    let outcome = tokio::time::timeout(timeout, attempt(probe)).await;
    let latency = started.elapsed();
    let (ok, detail) = match outcome {
        Ok(Ok((ok, detail))) => (ok, detail),
        Ok(Err(e)) => (false, describe(&e)),
        Err(_) => (false, "timeout".to_owned()),
    };
    Finding {
        ok,
        detail,
        latency,
    }
}

async fn attempt(probe: &Probe) -> std::io::Result<(bool, String)> {
    match probe {
        Probe::Tcp { addr } => {
            let addr = String::from_utf8_lossy(addr).into_owned();
            TcpStream::connect(addr.as_str()).await?;
            Ok((true, "connected".to_owned()))
        }
        Probe::Http { url, expect } => {
            let url = String::from_utf8_lossy(url).into_owned();
            let (host, port, path) = parse_http_url(&url).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid url")
            })?;
            let mut stream = TcpStream::connect((host.as_str(), port)).await?;
            let request = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: concord-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await?;
            let status = read_status(&mut stream).await?;
            let ok = (expect.0..=expect.1).contains(&status);
            Ok((ok, format!("HTTP {status}")))
        }
        Probe::Ttl => Ok((false, "a TTL check is not probed".to_owned())),
    }
}

/// The status code of an HTTP/1.x answer.
async fn read_status(stream: &mut TcpStream) -> std::io::Result<u16> {
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&head[..end]).into_owned();
            return parse_status_line(&line).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not an HTTP answer: {line:.60}"),
                )
            });
        }
        if head.len() >= MAX_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "no HTTP status line",
            ));
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before an HTTP answer",
            ));
        }
        head.extend_from_slice(&buf[..n]);
    }
}

fn parse_status_line(line: &str) -> Option<u16> {
    let mut parts = line.split(' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code: u16 = parts.next()?.parse().ok()?;
    (100..=599).contains(&code).then_some(code)
}

/// A failure as a probe's detail: the short words an operator expects.
fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        std::io::ErrorKind::TimedOut => "timeout".to_owned(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line("HTTP/1.1 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(parse_status_line("HTTP/1.0 200"), Some(200));
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line("HTTP/1.1 999 x"), None);
    }
}
