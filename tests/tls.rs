//! TLS for clients and the admin port on a real node: handshakes with and
//! without client certificates, and certificates replaced while the node
//! runs (CONFIG SET tls-cert-file, SIGHUP).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::certs::{Ca, Issued};
use common::{free_port, wait_for, Server};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A TLS client trusting `ca`, presenting `cert` when given.
fn connector(ca: &Path, cert: Option<&Issued>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in concord::tls::read_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match cert {
        Some(c) => {
            let chain = concord::tls::read_certs(&c.cert).unwrap();
            let key = PrivateKeyDer::from_pem_file(&c.key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Sends `request` over TLS to `port`; the reply's first bytes and the
/// certificate the server presented, or the error.
fn exchange(
    connector: &tokio_rustls::TlsConnector,
    port: u16,
    request: &[u8],
) -> Result<(Vec<u8>, CertificateDer<'static>), String> {
    runtime().block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let cert = tls.get_ref().1.peer_certificates().unwrap()[0]
            .clone()
            .into_owned();
        tls.write_all(request).await.map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.truncate(n);
        Ok((buf, cert))
    })
}

fn start(ca: &Ca, server: &Issued, auth: &str) -> (Server, u16, u16) {
    let (tls_port, admin_port) = (free_port(), free_port());
    let args = [
        "--tls-listen".to_owned(),
        format!("127.0.0.1:{tls_port}"),
        "--tls-cert-file".into(),
        server.cert.display().to_string(),
        "--tls-key-file".into(),
        server.key.display().to_string(),
        "--tls-ca-cert-file".into(),
        ca.pem.display().to_string(),
        "--tls-auth-clients".into(),
        auth.into(),
        "--admin-listen".into(),
        format!("127.0.0.1:{admin_port}"),
        "--admin-tls".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Server::start_with(&args), tls_port, admin_port)
}

#[test]
fn clients_need_a_certificate_of_the_ca_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "ca");
    let server_cert = ca.issue("server", None);
    let client = ca.issue("client", None);
    let other = Ca::new(tmp.path(), "other");
    let stranger = other.issue("stranger", None);
    let (_server, port, admin) = start(&ca, &server_cert, "yes");

    let (reply, _) = exchange(&connector(&ca.pem, Some(&client)), port, b"PING\r\n").unwrap();
    assert_eq!(reply, b"+PONG\r\n");
    // No certificate, or one of another CA: no session (TLS 1.3 reports
    // the refusal on the first read).
    assert!(exchange(&connector(&ca.pem, None), port, b"PING\r\n").is_err());
    assert!(exchange(&connector(&ca.pem, Some(&stranger)), port, b"PING\r\n").is_err());
    // A client that does not trust the node's CA refuses it.
    assert!(exchange(&connector(&other.pem, Some(&client)), port, b"PING\r\n").is_err());
    // The admin port speaks TLS without asking for a client certificate.
    let (reply, _) = exchange(
        &connector(&ca.pem, None),
        admin,
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    assert!(
        reply.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&reply)
    );
    // `concord health`, the probe containers run, speaks it too.
    let probe = std::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(["health", "--admin", &format!("127.0.0.1:{admin}"), "--tls"])
        .output()
        .unwrap();
    assert!(probe.status.success(), "{probe:?}");
    let plain = std::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .args([
            "health",
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--timeout",
            "2",
        ])
        .output()
        .unwrap();
    assert!(
        !plain.status.success(),
        "plain HTTP against a TLS admin port answered"
    );
}

#[test]
fn certificates_are_replaced_without_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "ca");
    let first = ca.issue("first", None);
    let (server, port, _) = start(&ca, &first, "no");
    let client = connector(&ca.pem, None);
    let (_, presented) = exchange(&client, port, b"PING\r\n").unwrap();
    let first_der = presented.clone();

    // CONFIG SET tls-cert-file and tls-key-file together.
    let second = ca.issue("second", None);
    let mut con = server.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-cert-file")
        .arg(second.cert.display().to_string())
        .arg("tls-key-file")
        .arg(second.key.display().to_string())
        .query(&mut con)
        .unwrap();
    let (reply, presented) = exchange(&client, port, b"PING\r\n").unwrap();
    assert_eq!(reply, b"+PONG\r\n");
    assert_ne!(
        presented, first_der,
        "CONFIG SET did not change the certificate"
    );
    // A file that is not a certificate is refused and changes nothing.
    std::fs::write(tmp.path().join("junk.pem"), "not a certificate").unwrap();
    let bad: redis::RedisResult<()> = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-cert-file")
        .arg(tmp.path().join("junk.pem").display().to_string())
        .query(&mut con);
    assert!(bad.unwrap_err().to_string().contains("tls-cert-file"));
    let (_, still) = exchange(&client, port, b"PING\r\n").unwrap();
    assert_eq!(still, presented);

    // SIGHUP reads the files again: the second certificate's files now
    // hold a third one.
    let third = ca.issue("third", None);
    std::fs::copy(&third.cert, &second.cert).unwrap();
    std::fs::copy(&third.key, &second.key).unwrap();
    // SAFETY: kill(2) with a pid we own and a valid signal number.
    unsafe {
        libc::kill(server.pid() as i32, libc::SIGHUP);
    }
    wait_for(
        "SIGHUP to reload the certificate",
        Duration::from_secs(10),
        || {
            let (_, now) = exchange(&client, port, b"PING\r\n").ok()?;
            (now != presented && now != first_der).then_some(())
        },
    );
}

#[test]
fn the_admin_port_asks_for_its_token_except_on_health() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, "s3cr3t-admin-token-0123\n").unwrap();
    let admin = free_port();
    let _server = Server::start_with(&[
        "--admin-listen",
        &format!("127.0.0.1:{admin}"),
        "--admin-token-file",
        token_file.to_str().unwrap(),
    ]);
    let get = |path: &str, auth: Option<&str>| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).unwrap();
        let header = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n{header}\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(get("/health", None).starts_with("HTTP/1.1 200"));
    assert!(get("/metrics", None).starts_with("HTTP/1.1 401"));
    assert!(get("/ready", Some("wrong")).starts_with("HTTP/1.1 401"));
    let metrics = get("/metrics", Some("s3cr3t-admin-token-0123"));
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
}
