//! Peers prove who they are: a process without the cluster's secret (or a
//! certificate of its CA) cannot step a node, relay a request or join, and
//! a data directory refuses to start under another node or cluster.
//!
//! Every attack here is a real socket against a real node's peer port; the
//! test then checks that voters, term and leader are what they were and
//! that the node logged the attempt.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use common::certs::Ca;
use common::cluster::Cluster;
use common::{free_port, wait_for};
use concord::transport::wire::{Frame, NONCE, PROOF};
use protobuf::Message as _;

fn info(cluster: &Cluster, id: u64, field: &str) -> String {
    cluster
        .raft_field(id, field)
        .unwrap_or_else(|| panic!("node {id} answers INFO raft {field}"))
}

/// term, leader and voters as node `id` reports them.
fn view(cluster: &Cluster, id: u64) -> (String, String, String) {
    (
        info(cluster, id, "raft_term"),
        info(cluster, id, "raft_leader_id"),
        info(cluster, id, "raft_voters"),
    )
}

fn cluster_hash(name: &str) -> u64 {
    let settings = concord::config::Settings {
        cluster_id: Some(name.into()),
        ..Default::default()
    };
    concord::config::Config::resolve(settings)
        .expect("config")
        .cluster_hash()
}

fn send(stream: &mut TcpStream, frames: &[Frame]) {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf);
    }
    // The node may already have hung up: that is the point.
    let _ = stream.write_all(&buf);
}

/// Reads until the node closes the connection (or 10 s pass); returns
/// whether it closed.
fn closed_by_node(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A heartbeat from `from` at a term far above the cluster's: stepped,
/// it would make the leader step down.
fn forged_heartbeat(from: u64, to: u64, term: u64) -> Frame {
    let mut m = raft::eraftpb::Message::default();
    m.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = term;
    Frame::Raft(m.write_to_bytes().expect("encode").into())
}

/// A relayed `RAFT.MEMBER REMOVE`-shaped forward frame: any body, since it
/// must never be decoded from an unauthenticated link.
fn forged_forward() -> Frame {
    Frame::Forward {
        id: 1,
        body: bytes::Bytes::from_static(&[9, 3, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0]),
    }
}

fn write_secret(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, secret).expect("secret");
    path.display().to_string()
}

#[test]
fn without_the_secret_the_peer_port_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = write_secret(tmp.path(), "secret", "0123456789abcdef-cluster-secret\n");
    let cluster = Cluster::start(3, &["--peer-secret-file", &secret]);
    let leader = cluster.leader();
    let before = view(&cluster, leader);
    let peer_port = cluster.nodes[&leader].peer_port;
    let follower = cluster.followers(leader)[0];
    let connect = || TcpStream::connect(("127.0.0.1", peer_port)).expect("peer port");

    // Plaintext garbage.
    let mut s = connect();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(closed_by_node(&mut s), "garbage was not refused");

    // The old handshake: a bare hello, then a heartbeat at a higher term.
    let mut s = connect();
    let mut old = BytesMut::new();
    old.extend_from_slice(&[0, 0, 0, 30, 1]);
    old.extend_from_slice(b"CNCD");
    old.extend_from_slice(&[1]);
    old.extend_from_slice(&cluster_hash("concord").to_be_bytes());
    old.extend_from_slice(&follower.to_be_bytes());
    old.extend_from_slice(&leader.to_be_bytes());
    let _ = s.write_all(&old);
    send(&mut s, &[forged_heartbeat(follower, leader, 1_000)]);
    assert!(closed_by_node(&mut s), "the old hello was accepted");

    // A well-formed hello, a proof made up, then a heartbeat and a relayed
    // request: the node must close the link at the proof.
    let mut s = connect();
    send(
        &mut s,
        &[Frame::Hello {
            cluster: cluster_hash("concord"),
            from: follower,
            to: leader,
            nonce: [7; NONCE],
        }],
    );
    let mut buf = BytesMut::new();
    let challenge = wait_for("the node's challenge", Duration::from_secs(10), || {
        let mut chunk = [0u8; 256];
        let n = s.read(&mut chunk).ok()?;
        buf.extend_from_slice(&chunk[..n]);
        Frame::decode(&mut buf).ok().flatten()
    });
    assert!(
        matches!(challenge, Frame::Challenge { .. }),
        "{challenge:?}"
    );
    send(
        &mut s,
        &[
            Frame::Proof([0; PROOF]),
            forged_heartbeat(follower, leader, 1_000),
            forged_forward(),
        ],
    );
    assert!(closed_by_node(&mut s), "a made-up proof was accepted");

    // Skipping the proof altogether.
    let mut s = connect();
    send(
        &mut s,
        &[
            Frame::Hello {
                cluster: cluster_hash("concord"),
                from: follower,
                to: leader,
                nonce: [8; NONCE],
            },
            forged_heartbeat(follower, leader, 1_000),
            forged_forward(),
        ],
    );
    assert!(
        closed_by_node(&mut s),
        "a link without a proof was accepted"
    );

    // The cluster is as it was, and still serves writes.
    let mut con = cluster.client(leader);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    for id in cluster.running() {
        assert_eq!(view(&cluster, id), before, "node {id} moved");
    }
    let log = cluster.log(leader);
    assert!(
        log.contains("does not verify") && log.contains("handshake did not follow"),
        "the attempts are not logged:\n{log}"
    );
}

#[test]
fn nodes_with_different_secrets_never_link() {
    let tmp = tempfile::tempdir().unwrap();
    let good = write_secret(tmp.path(), "good", "the-right-secret-for-everyone");
    let bad = write_secret(tmp.path(), "bad", "a-wrong-secret-of-node-three!");
    let cluster = Cluster::start_each(3, &[], |id| {
        let file = if id == 3 { &bad } else { &good };
        vec!["--peer-secret-file".into(), file.clone()]
    });
    let leader = cluster.leader_among(&[1, 2]);
    let mut con = cluster.client(leader);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    wait_for(
        "node 3 to log the refused links",
        Duration::from_secs(20),
        || cluster.log(3).contains("does not verify").then_some(()),
    );
    // Node 3 never learns a leader or the write.
    assert_eq!(info(&cluster, 3, "raft_leader_id"), "0");
}

fn tls_args(ca: &Ca, cert: &common::certs::Issued) -> Vec<String> {
    vec![
        "--peer-tls".into(),
        "--tls-cert-file".into(),
        cert.cert.display().to_string(),
        "--tls-key-file".into(),
        cert.key.display().to_string(),
        "--tls-ca-cert-file".into(),
        ca.pem.display().to_string(),
    ]
}

#[test]
fn peer_tls_links_members_and_refuses_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "cluster");
    let certs: Vec<_> = (1..=3)
        .map(|id| ca.issue(&format!("node-{id}"), Some(id)))
        .collect();
    // Node 3 presents node 2's certificate: it claims to be 3, the
    // certificate says 2.
    let cluster = Cluster::start_each(3, &[], |id| {
        let cert = if id == 3 {
            &certs[1]
        } else {
            &certs[id as usize - 1]
        };
        tls_args(&ca, cert)
    });
    let leader = cluster.leader_among(&[1, 2]);
    let before = view(&cluster, leader);
    let mut con = cluster.client(leader);
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    wait_for(
        "the impostor's links to be refused",
        Duration::from_secs(20),
        || {
            [1, 2]
                .iter()
                .any(|id| cluster.log(*id).contains("certificate names node 2"))
                .then_some(())
        },
    );
    assert_eq!(info(&cluster, 3, "raft_leader_id"), "0");

    // Plaintext on a TLS peer port, and a client certificate of another CA.
    let peer_port = cluster.nodes[&leader].peer_port;
    let mut s = TcpStream::connect(("127.0.0.1", peer_port)).unwrap();
    send(
        &mut s,
        &[
            Frame::Hello {
                cluster: cluster_hash("concord"),
                from: 2,
                to: leader,
                nonce: [1; NONCE],
            },
            forged_heartbeat(2, leader, 1_000),
        ],
    );
    assert!(closed_by_node(&mut s));
    let other = Ca::new(tmp.path(), "other");
    let stranger = other.issue("stranger", Some(2));
    let stranger_config = concord::tls::TlsFiles::load(concord::tls::TlsPaths {
        cert: stranger.cert.clone(),
        key: stranger.key.clone(),
        ca: Some(ca.pem.clone()),
        auth_clients: concord::tls::AuthClients::Yes,
    })
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refused = runtime.block_on(async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", peer_port))
            .await
            .unwrap();
        let connector = stranger_config.peer_connector().unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        match connector.connect(name, tcp).await {
            Err(_) => true,
            Ok(mut tls) => {
                // TLS 1.3 reports a refused client certificate on the
                // first read after the handshake.
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = BytesMut::new();
                Frame::Hello {
                    cluster: cluster_hash("concord"),
                    from: 2,
                    to: leader,
                    nonce: [2; NONCE],
                }
                .encode(&mut buf);
                let _ = tls.write_all(&buf).await;
                let mut out = [0u8; 64];
                matches!(tls.read(&mut out).await, Err(_) | Ok(0))
            }
        }
    });
    assert!(refused, "a certificate of another CA opened a peer link");
    for id in [1, 2] {
        assert_eq!(view(&cluster, id), before, "node {id} moved");
    }
}

#[test]
fn a_public_peer_port_needs_authentication() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_concord"))
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--peer-listen", &format!("0.0.0.0:{}", free_port())])
        .arg("--data-dir")
        .arg(tmp.path().join("d"))
        .stdin(Stdio::null())
        .output()
        .expect("run concord");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--peer-secret-file") && stderr.contains("--insecure-peers"),
        "{stderr}"
    );
}

#[test]
fn a_data_dir_refuses_another_node_or_cluster() {
    let mut server = common::Server::start_with(&["--node-id", "1"]);
    server.terminate();
    let dir = server.data_dir().to_owned();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_concord"))
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--peer-listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(&dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run concord");
        assert!(!out.status.success(), "started with {args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run(&["--node-id", "2", "--initial-cluster", "2=127.0.0.1:1"]);
    assert!(stderr.contains("belongs to node 1, not node 2"), "{stderr}");
    let stderr = run(&["--node-id", "1", "--cluster-id", "other"]);
    assert!(
        stderr.contains("belongs to cluster 'concord', not 'other'"),
        "{stderr}"
    );
    server.boot();
    let mut con = server.client();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}
