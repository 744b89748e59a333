//! `/metrics` on a real 3-node cluster: every series the Grafana dashboard
//! and the Prometheus alert rules under deploy/ query exists, the values
//! mean what they say, and the mesh series are the same on every node.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::cluster::Cluster;
use common::python::python_with;
use common::{free_port, wait_for};

fn get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("admin port");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The value of the sample line that starts with `series` (name and
/// labels, exactly as rendered).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let rest = l.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// Whether a sample of metric `name` is there (for a histogram, its count).
fn has_sample(metrics: &str, name: &str) -> bool {
    metrics.lines().filter(|l| !l.starts_with('#')).any(|l| {
        [name.to_owned(), format!("{name}_count")].iter().any(|n| {
            l.strip_prefix(n.as_str())
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
    })
}

/// The mesh lines of a render, for comparing nodes.
fn mesh_lines(metrics: &str) -> Vec<String> {
    let mesh = [
        "concord_breaker_",
        "concord_registry_",
        "concord_ratelimit_",
        "concord_lock",
        "concord_queue_",
        "concord_sessions_",
    ];
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && mesh.iter().any(|p| l.starts_with(p)))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let admin: BTreeMap<u64, u16> = (1..=3).map(|id| (id, free_port())).collect();
    let cluster = Cluster::start_each(3, &[], |id| {
        vec!["--admin-listen".into(), format!("127.0.0.1:{}", admin[&id])]
    });
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut c = cluster.client(follower);
    let cmd = |c: &mut redis::Connection, args: &[&str]| -> redis::Value {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    };
    cmd(&mut c, &["SET", "k", "v"]);
    cmd(&mut c, &["GET", "k"]);
    let _ = redis::cmd("GET").arg("k").arg("extra").query::<()>(&mut c);
    cmd(
        &mut c,
        &[
            "BREAKER.CONFIG",
            "payments",
            "FAILURES",
            "2",
            "WINDOW",
            "60000",
            "COOLDOWN",
            "600000",
        ],
    );
    cmd(&mut c, &["BREAKER.RECORD", "payments", "FAILURE"]);
    cmd(&mut c, &["BREAKER.RECORD", "payments", "FAILURE"]);
    cmd(
        &mut c,
        &["REGISTRY.REGISTER", "api", "a", "10.0.0.1:80", "600000"],
    );
    cmd(
        &mut c,
        &["REGISTRY.REGISTER", "api", "b", "10.0.0.2:80", "600000"],
    );
    cmd(&mut c, &["REGISTRY.CONFIG", "api", "UNHEALTHY", "1"]);
    cmd(&mut c, &["REGISTRY.HEALTH", "api", "b", "probe", "DOWN"]);
    cmd(&mut c, &["REGISTRY.PICK", "api", "ROUND_ROBIN"]);
    for _ in 0..3 {
        cmd(
            &mut c,
            &["RATELIMIT.ACQUIRE", "rl:login:alice", "FIXED", "2", "60000"],
        );
    }
    let token = cmd(&mut c, &["LOCK.ACQUIRE", "jobs", "w1", "600000"]);
    let redis::Value::Int(token) = token else {
        panic!("{token:?}")
    };
    cmd(
        &mut c,
        &[
            "LOCK.GUARD",
            "jobs",
            &token.to_string(),
            "SET",
            "guarded",
            "1",
        ],
    );
    let _ = redis::cmd("LOCK.GUARD")
        .arg("jobs")
        .arg(token + 1)
        .arg(&["SET", "guarded", "2"])
        .query::<()>(&mut c);
    cmd(&mut c, &["QUEUE.PUSH", "mail", "hello"]);
    cmd(&mut c, &["QUEUE.PUSH", "mail", "later", "DELAY", "600000"]);
    cmd(&mut c, &["SESSION.CREATE", "600000"]);

    let names = std::process::Command::new(python_with(&[("yaml", "pyyaml")]))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana/check.py"
        ))
        .arg("--metrics")
        .output()
        .expect("python3 runs deploy/grafana/check.py");
    assert!(
        names.status.success(),
        "{}",
        String::from_utf8_lossy(&names.stderr)
    );
    let names = String::from_utf8(names.stdout).unwrap();
    let names: Vec<&str> = names.lines().filter(|l| !l.is_empty()).collect();
    assert!(names.len() > 40, "{names:?}");

    // The leader has seen heartbeat answers (round trips) and every kind
    // of write; the follower has applied them all.
    let leader_metrics = wait_for(
        "every queried series on the leader",
        Duration::from_secs(20),
        || {
            let m = get(admin[&leader], "/metrics");
            names.iter().all(|n| has_sample(&m, n)).then_some(m)
        },
    );
    for n in &names {
        assert!(
            has_sample(&leader_metrics, n),
            "{n} missing:\n{leader_metrics}"
        );
    }

    // Values mean what they say.
    let m = &leader_metrics;
    assert_eq!(value(m, "concord_raft_has_leader"), Some(1.0));
    assert_eq!(value(m, "concord_raft_is_leader"), Some(1.0));
    assert_eq!(value(m, "concord_raft_leader_id"), Some(leader as f64));
    assert_eq!(
        value(m, "concord_breaker_state{breaker=\"payments\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(
            m,
            "concord_breaker_transitions_total{breaker=\"payments\",to=\"open\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(m, "concord_registry_instances{service=\"api\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(m, "concord_registry_instances_healthy{service=\"api\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(
            m,
            "concord_registry_instance_healthy{service=\"api\",id=\"b\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            m,
            "concord_registry_picks_total{service=\"api\",strategy=\"round_robin\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(m, "concord_ratelimit_allowed_total{class=\"rl:login\"}"),
        Some(2.0)
    );
    assert_eq!(
        value(m, "concord_ratelimit_denied_total{class=\"rl:login\"}"),
        Some(1.0)
    );
    assert_eq!(value(m, "concord_lock_grants_total"), Some(1.0));
    assert_eq!(value(m, "concord_locks_held"), Some(1.0));
    assert_eq!(
        value(m, "concord_lock_fenced_writes_total{outcome=\"applied\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(m, "concord_lock_fenced_writes_total{outcome=\"refused\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(m, "concord_queue_jobs{queue=\"mail\",state=\"ready\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(m, "concord_queue_jobs{queue=\"mail\",state=\"delayed\"}"),
        Some(1.0)
    );
    assert_eq!(value(m, "concord_sessions_live"), Some(1.0));
    assert!(value(m, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(value(m, "process_open_fds").unwrap() > 3.0);
    assert!(value(m, "concord_wal_fsync_duration_seconds_count").unwrap() > 0.0);
    assert!(value(m, "concord_raft_proposals_total").unwrap() > 0.0);

    // The follower served the commands: its per-command series count them.
    let fm = get(admin[&follower], "/metrics");
    assert!(value(&fm, "concord_command_calls_total{command=\"set\"}").unwrap() >= 1.0);
    assert!(
        value(&fm, "concord_command_rejected_total{command=\"get\"}").unwrap() >= 1.0,
        "{}",
        fm.lines()
            .filter(|l| l.contains("get"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        value(
            &fm,
            "concord_command_duration_seconds_count{command=\"get\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(value(&fm, "concord_raft_is_leader"), Some(0.0));

    // The mesh series are decided once and the same on every node.
    let expected = mesh_lines(&leader_metrics);
    for id in cluster.running() {
        wait_for(
            &format!("node {id}'s mesh series to equal the leader's"),
            Duration::from_secs(10),
            || (mesh_lines(&get(admin[&id], "/metrics")) == expected).then_some(()),
        );
    }
}
