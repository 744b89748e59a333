//! Real client libraries against a real 3-node cluster: redis-py 8 (RESP3)
//! Lock across a leader kill, its pipelines and transactions, pub/sub
//! across nodes; the `limits` library's three window strategies; an RQ
//! worker processing jobs enqueued through another node.
//!
//! Each scenario is a Python script under `tests/clients/` that asserts
//! every step itself and exits non-zero on a surprise; the packages go into
//! a virtualenv under `target/` on first use.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::cluster::Cluster;
use common::python::python_with;
use common::wait_for;

const REDIS_PY: (&str, &str) = ("redis", "redis>=8");

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn spawn(packages: &[(&str, &str)], script: &str, args: &[String]) -> Child {
    spawn_with(packages, script, args, &[])
}

fn spawn_with(
    packages: &[(&str, &str)],
    script: &str,
    args: &[String],
    env: &[(&str, String)],
) -> Child {
    Command::new(python_with(packages))
        .arg(scripts().join(script))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .env("PYTHONPATH", scripts())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python")
}

/// Waits for the script (killing it past the deadline) and checks it
/// printed OK and exited cleanly.
fn finish(mut child: Child, what: &str) {
    let status = wait_for(what, Duration::from_secs(180), || {
        child.try_wait().expect("poll python")
    });
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        std::io::Read::read_to_string(&mut stdout, &mut out).ok();
    }
    if let Some(mut stderr) = child.stderr.take() {
        std::io::Read::read_to_string(&mut stderr, &mut err).ok();
    }
    assert!(
        status.success() && out.lines().any(|l| l == "OK"),
        "{what} failed ({status}):\n{out}\n{err}"
    );
}

fn urls(cluster: &Cluster, ids: &[u64]) -> Vec<String> {
    ids.iter().map(|&id| cluster.url(id)).collect()
}

#[test]
fn redis_py_lock_is_held_across_a_leader_kill() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let followers = cluster.followers(leader);
    let urls = urls(&cluster, &followers);
    lock_across_a_leader_kill(cluster, leader, urls, &[]);
}

/// The same, over TLS (client certificates required) as an ACL user whose
/// permissions are restricted: redis-py's Lock scripts run with them.
#[test]
fn redis_py_with_a_user_over_tls_holds_a_lock_across_a_leader_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = common::certs::Ca::new(tmp.path(), "clients");
    let server = ca.issue("server", None);
    let client = ca.issue("client", None);
    let tls_ports: std::collections::BTreeMap<u64, u16> =
        (1..=3).map(|id| (id, common::free_port())).collect();
    let cluster = Cluster::start_each(3, &[], |id| {
        vec![
            "--tls-listen".into(),
            format!("127.0.0.1:{}", tls_ports[&id]),
            "--tls-cert-file".into(),
            server.cert.display().to_string(),
            "--tls-key-file".into(),
            server.key.display().to_string(),
            "--tls-ca-cert-file".into(),
            ca.pem.display().to_string(),
        ]
    });
    let leader = cluster.leader();
    let mut admin = cluster.client(leader);
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "app",
            "on",
            ">app-pass",
            "~orders*",
            "+@all",
            "-@dangerous",
        ])
        .query(&mut admin)
        .unwrap();
    let followers = cluster.followers(leader);
    let urls = followers
        .iter()
        .map(|id| format!("rediss://app:app-pass@127.0.0.1:{}/", tls_ports[id]))
        .collect();
    let env = [
        ("CONCORD_TEST_CA", ca.pem.display().to_string()),
        ("CONCORD_TEST_CERT", client.cert.display().to_string()),
        ("CONCORD_TEST_KEY", client.key.display().to_string()),
    ];
    lock_across_a_leader_kill(cluster, leader, urls, &env);
}

fn lock_across_a_leader_kill(
    mut cluster: Cluster,
    leader: u64,
    urls: Vec<String>,
    env: &[(&str, String)],
) {
    let mut child = spawn_with(
        &[REDIS_PY],
        "redis_py.py",
        &{
            let mut args = vec!["lock".to_owned()];
            args.extend(urls);
            args
        },
        env,
    );
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read the script");
    if line.trim() != "ACQUIRED" {
        child.stdout = Some(stdout.into_inner());
        finish(child, "redis-py Lock before the kill");
        panic!("the script stopped before acquiring: {line}");
    }
    cluster.kill9(leader);
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"KILLED\n")
        .expect("tell the script");
    child.stdout = Some(stdout.into_inner());
    finish(child, "redis-py Lock across a leader kill");
}

#[test]
fn redis_py_transactions_and_pipelines_from_every_node() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader();
    let mut args = vec!["transactions".to_owned()];
    args.extend(urls(&cluster, &cluster.running()));
    finish(
        spawn(&[REDIS_PY], "redis_py.py", &args),
        "redis-py transactions",
    );
}

#[test]
fn redis_py_pubsub_across_nodes() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader();
    let mut args = vec!["pubsub".to_owned()];
    args.extend(urls(&cluster, &cluster.running()));
    finish(spawn(&[REDIS_PY], "redis_py.py", &args), "redis-py pub/sub");
}

#[test]
fn limits_windows_admit_exactly_the_limit_across_nodes() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader();
    let args = urls(&cluster, &cluster.running());
    finish(
        spawn(
            &[REDIS_PY, ("limits", "limits>=5")],
            "limits_windows.py",
            &args,
        ),
        "limits windows",
    );
}

#[test]
fn rq_worker_runs_jobs_enqueued_through_another_node() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader();
    let args = urls(&cluster, &cluster.running());
    finish(
        spawn(&[REDIS_PY, ("rq", "rq>=2")], "rq_jobs.py", &args),
        "RQ worker",
    );
}
