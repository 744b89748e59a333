//! `concord ctl` against real clusters: status, health, members, leader
//! transfer, passwords and TLS, and a backup restored into a new cluster.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::certs::Ca;
use common::cluster::{Cluster, CONVERGE_TIMEOUT};
use common::{free_port, ping, wait_for, Server, START_TIMEOUT};
use serde_json::Value as Json;

/// Runs `concord ctl ARGS` with a clean environment for its options.
fn ctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_concord"))
        .arg("ctl")
        .args(args)
        .env_remove("CONCORD_ENDPOINTS")
        .env_remove("CONCORD_USER")
        .env_remove("CONCORD_PASSWORD")
        .stdin(Stdio::null())
        .output()
        .expect("run concord ctl")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `concord ctl ARGS`, which must succeed; its stdout.
fn ctl_ok(args: &[&str]) -> String {
    let out = ctl(args);
    assert!(
        out.status.success(),
        "concord ctl {args:?} failed: {}",
        text(&out)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn json(stdout: &str) -> Json {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn endpoints(cluster: &Cluster) -> String {
    cluster
        .nodes
        .values()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect::<Vec<_>>()
        .join(",")
}

/// The member ids of `members list --json` with their roles.
fn members(eps: &str) -> Vec<(u64, String)> {
    let list = json(&ctl_ok(&["--endpoints", eps, "--json", "members", "list"]));
    list["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().expect("id"),
                m["role"].as_str().expect("role").to_owned(),
            )
        })
        .collect()
}

#[test]
fn status_shows_every_node_and_one_leader() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let eps = endpoints(&cluster);

    let rows = json(&ctl_ok(&["--endpoints", &eps, "--json", "status"]));
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 3, "{rows:?}");
    let leaders: Vec<u64> = rows
        .iter()
        .filter(|r| r["role"] == "leader")
        .map(|r| r["id"].as_u64().unwrap())
        .collect();
    assert_eq!(leaders, vec![leader], "{rows:?}");
    for (row, node) in rows.iter().zip(cluster.nodes.values()) {
        assert_eq!(row["endpoint"], format!("127.0.0.1:{}", node.port));
        assert_eq!(row["id"].as_u64(), Some(node.id));
        assert_eq!(row["leader"].as_u64(), Some(leader));
        assert!(row["term"].as_u64().unwrap() >= 1);
        assert_eq!(row["version"], env!("CARGO_PKG_VERSION"));
        let lag = row["commit_index"].as_u64().unwrap() - row["applied_index"].as_u64().unwrap();
        assert_eq!(row["lag"].as_u64(), Some(lag));
    }

    // The table: a header and one aligned row per endpoint.
    let table = ctl_ok(&["--endpoints", &eps, "status"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("ENDPOINT"), "{table}");
    let role_at = lines[0].find("ROLE").unwrap();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l[role_at..].starts_with("leader"))
            .count(),
        1,
        "{table}"
    );

    // An endpoint nobody listens on is a row with its error, and exit 1.
    let dead = format!("127.0.0.1:{}", free_port());
    let with_dead = format!("{eps},{dead}");
    let out = ctl(&["--endpoints", &with_dead, "--json", "status"]);
    assert!(!out.status.success(), "{}", text(&out));
    let rows = json(&String::from_utf8_lossy(&out.stdout));
    let last = &rows.as_array().unwrap()[3];
    assert_eq!(last["endpoint"], dead.as_str());
    assert!(
        last["error"].as_str().unwrap().contains("connect"),
        "{last}"
    );
    let out = ctl(&["--endpoints", &with_dead, "status"]);
    assert!(!out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&dead) && l.contains("refused")),
        "{table}"
    );
}

#[test]
fn members_add_list_remove_and_promote() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader();
    let eps = endpoints(&cluster);
    let mut ids: Vec<u64> = members(&eps).into_iter().map(|(id, _)| id).collect();
    ids.sort();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(members(&eps).iter().all(|(_, role)| role == "voter"));

    cluster.start_joining(4);
    let peer = format!("127.0.0.1:{}", cluster.nodes[&4].peer_port);
    let out = ctl_ok(&["--endpoints", &eps, "members", "add", "4", &peer]);
    assert!(out.contains("node 4"), "{out}");
    let list = members(&eps);
    assert!(list.contains(&(4, "voter".into())), "{list:?}");
    let table = ctl_ok(&["--endpoints", &eps, "members", "list"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("4 ") && l.contains("voter") && l.contains(&peer)),
        "{table}"
    );

    // Adding it again is refused with the server's reason.
    let out = ctl(&["--endpoints", &eps, "members", "add", "4", &peer]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already a voting member"),
        "{}",
        text(&out)
    );

    // There is no separate promotion: an error that says why.
    let out = ctl(&["--endpoints", &eps, "members", "promote", "4"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("members add 4"), "{err}");

    ctl_ok(&["--endpoints", &eps, "members", "remove", "4"]);
    let list = members(&eps);
    assert!(!list.iter().any(|(id, _)| *id == 4), "{list:?}");
    let out = ctl(&["--endpoints", &eps, "members", "remove", "4"]);
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn leader_transfer_moves_leadership() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let eps = endpoints(&cluster);
    let target = cluster.followers(leader)[0];
    let out = ctl_ok(&[
        "--endpoints",
        &eps,
        "--json",
        "leader",
        "transfer",
        &target.to_string(),
    ]);
    let moved = json(&out);
    assert_eq!(moved["from"].as_u64(), Some(leader));
    assert_eq!(moved["to"].as_u64(), Some(target));
    assert_eq!(cluster.leader(), target);
    // To a node that is not a member: the server's refusal, exit 1.
    let out = ctl(&["--endpoints", &eps, "leader", "transfer", "9"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a voting member"),
        "{}",
        text(&out)
    );
}

#[test]
fn health_fails_when_a_node_is_down() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let eps = endpoints(&cluster);
    let out = ctl_ok(&["--endpoints", &eps, "health"]);
    assert_eq!(
        out.lines().filter(|l| l.contains("is healthy")).count(),
        3,
        "{out}"
    );

    let victim = cluster.followers(leader)[0];
    let victim_ep = format!("127.0.0.1:{}", cluster.nodes[&victim].port);
    cluster.kill9(victim);
    let out = ctl(&["--endpoints", &eps, "health"]);
    assert!(!out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&format!("{victim_ep} is unhealthy"))),
        "{stdout}"
    );
    let out = ctl(&["--endpoints", &eps, "--json", "health"]);
    assert!(!out.status.success());
    let rows = json(&String::from_utf8_lossy(&out.stdout));
    let healthy: Vec<bool> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["healthy"].as_bool().unwrap())
        .collect();
    assert_eq!(healthy.iter().filter(|h| **h).count(), 2, "{rows}");

    // The two that are left still pass on their own.
    let alive: Vec<String> = cluster
        .running()
        .iter()
        .map(|id| format!("127.0.0.1:{}", cluster.nodes[id].port))
        .collect();
    ctl_ok(&["--endpoints", &alive.join(","), "health"]);
}

#[test]
fn passwords_users_and_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::new(tmp.path(), "ca");
    let server_cert = ca.issue("server", None);
    let client = ca.issue("client", None);
    let tls_port = free_port();
    let args = [
        "--requirepass".to_owned(),
        "s3cret".into(),
        "--tls-listen".into(),
        format!("127.0.0.1:{tls_port}"),
        "--tls-cert-file".into(),
        server_cert.cert.display().to_string(),
        "--tls-key-file".into(),
        server_cert.key.display().to_string(),
        "--tls-ca-cert-file".into(),
        ca.pem.display().to_string(),
        "--tls-auth-clients".into(),
        "yes".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with(&args);
    let plain = format!("127.0.0.1:{}", server.port);
    let tls = format!("127.0.0.1:{tls_port}");
    let status = |extra: &[&str]| {
        let mut all = extra.to_vec();
        all.extend(["--json", "status"]);
        ctl(&all)
    };

    // No password, a wrong one: the node's refusal on the row, exit 1.
    let out = status(&["--endpoints", &plain]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("NOAUTH"),
        "{}",
        text(&out)
    );
    let out = status(&["--endpoints", &plain, "--password", "nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("WRONGPASS"),
        "{}",
        text(&out)
    );
    // The password from the flag, then from the environment.
    let out = status(&["--endpoints", &plain, "--password", "s3cret"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rows[0]["role"], "leader", "{rows}");
    let out = Command::new(env!("CARGO_BIN_EXE_concord"))
        .args(["ctl", "health"])
        .env("CONCORD_ENDPOINTS", &plain)
        .env("CONCORD_PASSWORD", "s3cret")
        .env_remove("CONCORD_USER")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // An ACL user: one with the admin commands, one without.
    let mut admin = redis::Client::open(format!("redis://:s3cret@{plain}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "ops", "on", ">ops-pw", "+@all", "~*"])
        .query(&mut admin)
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "viewer",
            "on",
            ">view-pw",
            "+raft.info",
            "+info",
            "+ping",
        ])
        .query(&mut admin)
        .unwrap();
    let dangerous: Vec<String> = redis::cmd("ACL")
        .arg(&["CAT", "dangerous"])
        .query(&mut admin)
        .unwrap();
    assert!(
        dangerous.iter().any(|c| c == "raft.backup"),
        "{dangerous:?}"
    );
    let out = status(&[
        "--endpoints",
        &plain,
        "--user",
        "ops",
        "--password",
        "ops-pw",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let viewer = [
        "--endpoints",
        plain.as_str(),
        "--user",
        "viewer",
        "--password",
        "view-pw",
    ];
    assert!(status(&viewer).status.success());
    let file = tmp.path().join("backup.snap");
    let mut save = viewer.to_vec();
    save.extend(["snapshot", "save", file.to_str().unwrap()]);
    let out = ctl(&save);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("NOPERM"),
        "{}",
        text(&out)
    );
    assert!(!file.exists());
    let out = ctl(&["--endpoints", &plain, "--user", "ops", "status"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("--password"),
        "{}",
        text(&out)
    );

    // TLS: the CA and a client certificate (the node asks for one).
    let ca_pem = ca.pem.to_str().unwrap();
    let (cert, key) = (client.cert.to_str().unwrap(), client.key.to_str().unwrap());
    let out = status(&[
        "--endpoints",
        &tls,
        "--password",
        "s3cret",
        "--tls",
        "--cacert",
        ca_pem,
        "--cert",
        cert,
        "--key",
        key,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // --cacert alone implies --tls; without a client certificate the node refuses.
    let out = status(&[
        "--endpoints",
        &tls,
        "--password",
        "s3cret",
        "--cacert",
        ca_pem,
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    // Any certificate accepted on request.
    let out = status(&[
        "--endpoints",
        &tls,
        "--password",
        "s3cret",
        "--insecure-skip-verify",
        "--cert",
        cert,
        "--key",
        key,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // A CA that did not sign the node's certificate: refused.
    let other = Ca::new(tmp.path(), "other");
    let out = status(&[
        "--endpoints",
        &tls,
        "--password",
        "s3cret",
        "--cacert",
        other.pem.to_str().unwrap(),
        "--cert",
        cert,
        "--key",
        key,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("TLS"),
        "{}",
        text(&out)
    );
    // --tls with nothing to check the node against: said before connecting.
    let out = ctl(&["--endpoints", &tls, "--tls", "status"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--cacert"),
        "{}",
        text(&out)
    );
    // TLS to the plain port: a handshake error on the row.
    let out = status(&[
        "--endpoints",
        &plain,
        "--password",
        "s3cret",
        "--cacert",
        ca_pem,
    ]);
    assert!(!out.status.success());
}

/// Nodes of a cluster started on data directories made beforehand.
struct Restored {
    children: Vec<Child>,
    ports: Vec<u16>,
    logs: Vec<PathBuf>,
}

impl Restored {
    fn start(dirs: &[PathBuf], ports: &[(u16, u16)], initial: &str, logs: &Path) -> Restored {
        let mut restored = Restored {
            children: Vec::new(),
            ports: ports.iter().map(|p| p.0).collect(),
            logs: Vec::new(),
        };
        for (i, (dir, (port, peer))) in dirs.iter().zip(ports).enumerate() {
            let log_path = logs.join(format!("restored-{}.log", i + 1));
            let log = std::fs::File::create(&log_path).unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_concord"))
                .arg("serve")
                .args(["--node-id", &(i + 1).to_string()])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--peer-listen", &format!("127.0.0.1:{peer}")])
                .arg("--data-dir")
                .arg(dir)
                .args(["--initial-cluster", initial])
                .env("CONCORD_LOG", "info,slog=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn concord");
            restored.children.push(child);
            restored.logs.push(log_path);
        }
        for (i, port) in restored.ports.clone().iter().enumerate() {
            wait_for(
                &format!("restored node {} to answer PING", i + 1),
                START_TIMEOUT,
                || {
                    if let Ok(Some(status)) = restored.children[i].try_wait() {
                        panic!(
                            "restored node {} exited with {status}:\n{}",
                            i + 1,
                            std::fs::read_to_string(&restored.logs[i]).unwrap_or_default()
                        );
                    }
                    ping(*port).then_some(())
                },
            );
        }
        restored
    }

    fn endpoints(&self) -> String {
        self.ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn client(&self, i: usize) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.ports[i]))
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_backup_restores_into_a_new_cluster() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let eps = endpoints(&cluster);
    // Written through a follower: the backup must hold it all the same.
    let mut c = cluster.client(cluster.followers(leader)[0]);
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("key:{i}"))
            .arg(format!("value {i}"))
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("HSET")
        .arg(&["user:1", "name", "ada", "plan", "pro"])
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(&["jobs", "a", "b", "c"])
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("INCRBY")
        .arg(&["visits", "41"])
        .query(&mut c)
        .unwrap();
    let expected = 53u64;

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cluster.snap");
    let out = ctl_ok(&[
        "--endpoints",
        &eps,
        "--json",
        "snapshot",
        "save",
        file.to_str().unwrap(),
    ]);
    let saved = json(&out);
    let (index, term) = (
        saved["index"].as_u64().unwrap(),
        saved["term"].as_u64().unwrap(),
    );
    assert!(index > 0, "{saved}");
    assert_eq!(saved["node"].as_u64(), Some(leader), "{saved}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Written after the backup: not in it.
    let _: () = redis::cmd("SET")
        .arg(&["after", "backup"])
        .query(&mut c)
        .unwrap();

    let status = json(&ctl_ok(&[
        "--json",
        "snapshot",
        "status",
        file.to_str().unwrap(),
    ]));
    assert_eq!(status["keys"].as_u64(), Some(expected), "{status}");
    assert_eq!(status["index"].as_u64(), Some(index));
    assert_eq!(status["voters"], serde_json::json!([1, 2, 3]));

    // A new cluster of three on new ports, each node from the file.
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("{}=127.0.0.1:{peer}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let dirs: Vec<PathBuf> = (1..=3)
        .map(|i| tmp.path().join(format!("new-{i}")))
        .collect();
    for (i, dir) in dirs.iter().enumerate() {
        let out = ctl_ok(&[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            dir.to_str().unwrap(),
            "--node-id",
            &(i + 1).to_string(),
            "--initial-cluster",
            &initial,
        ]);
        assert!(out.contains("concord serve --node-id"), "{out}");
    }
    // A directory is never restored over.
    let out = ctl(&[
        "snapshot",
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        dirs[0].to_str().unwrap(),
        "--node-id",
        "1",
        "--initial-cluster",
        &initial,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not empty"),
        "{}",
        text(&out)
    );
    drop(cluster);

    let restored = Restored::start(&dirs, &ports, &initial, tmp.path());
    let new_eps = restored.endpoints();
    let rows = wait_for(
        "the restored cluster to elect a leader",
        CONVERGE_TIMEOUT,
        || {
            let out = ctl(&["--endpoints", &new_eps, "--json", "status"]);
            if !out.status.success() {
                return None;
            }
            let rows = json(&String::from_utf8_lossy(&out.stdout));
            let list = rows.as_array()?.clone();
            let leader = list[0]["leader"].as_u64()?;
            (leader != 0
                && list.iter().all(|r| r["leader"].as_u64() == Some(leader))
                && list.iter().filter(|r| r["role"] == "leader").count() == 1)
                .then_some(list)
        },
    );
    for row in &rows {
        // Terms go on from the backup's; the log from its index.
        assert!(row["term"].as_u64().unwrap() > term, "{row}");
        assert!(row["commit_index"].as_u64().unwrap() >= index, "{row}");
    }

    for i in 0..3 {
        let mut c = restored.client(i);
        for k in [0, 17, 49] {
            let v: String = redis::cmd("GET")
                .arg(format!("key:{k}"))
                .query(&mut c)
                .unwrap();
            assert_eq!(v, format!("value {k}"));
        }
        let name: String = redis::cmd("HGET")
            .arg(&["user:1", "name"])
            .query(&mut c)
            .unwrap();
        assert_eq!(name, "ada");
        let jobs: Vec<String> = redis::cmd("LRANGE")
            .arg(&["jobs", "0", "-1"])
            .query(&mut c)
            .unwrap();
        assert_eq!(jobs, ["a", "b", "c"]);
        let after: Option<String> = redis::cmd("GET").arg("after").query(&mut c).unwrap();
        assert_eq!(after, None);
        let size: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, expected);
    }
    // The new cluster takes writes, and its members are the new ones.
    let mut c = restored.client(2);
    let visits: i64 = redis::cmd("INCR").arg("visits").query(&mut c).unwrap();
    assert_eq!(visits, 42);
    let list = members(&new_eps);
    let ids: Vec<u64> = list.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, vec![1, 2, 3], "{list:?}");
    let table = ctl_ok(&["--endpoints", &new_eps, "members", "list"]);
    for (_, peer) in &ports {
        if !table.contains(&format!("127.0.0.1:{peer}")) {
            // The leader's row shows its --peer-listen; the others theirs.
            panic!("peer port {peer} missing from\n{table}");
        }
    }
}
