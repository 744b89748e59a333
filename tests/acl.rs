//! One ACL for the whole cluster, on real processes: users made through
//! any node are in force on every node, permissions are checked on the
//! node a client is connected to (inside MULTI and LOCK.GUARD too), and
//! passwords survive restarts without ever being stored in clear.

mod common;

use std::time::Duration;

use common::cluster::Cluster;
use common::wait_for;
use redis::{Connection, RedisResult, Value};

fn as_user(cluster: &Cluster, id: u64, user: &str, pass: &str) -> RedisResult<Connection> {
    let port = cluster.nodes[&id].port;
    let client = redis::Client::open(format!("redis://{user}:{pass}@127.0.0.1:{port}/"))?;
    let con = client.get_connection_with_timeout(Duration::from_secs(10))?;
    con.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(con)
}

fn err_text<T: std::fmt::Debug>(r: RedisResult<T>) -> String {
    let e = r.expect_err("an error");
    format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or(""))
}

#[test]
fn users_are_one_acl_for_the_whole_cluster() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let followers = cluster.followers(leader);
    let mut admin_f = cluster.client(followers[0]);

    // Created through a follower: in force on the leader at once.
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "alice",
            "on",
            ">s3cret",
            "~app:*",
            "+@read",
            "+@write",
            "+@transaction",
            "-flushall",
        ])
        .query(&mut admin_f)
        .unwrap();
    let mut alice =
        as_user(&cluster, leader, "alice", "s3cret").expect("alice logs in on the leader");
    let _: () = redis::cmd("SET")
        .arg("app:1")
        .arg("v")
        .query(&mut alice)
        .unwrap();
    let text = err_text(
        redis::cmd("SET")
            .arg("other")
            .arg("v")
            .query::<()>(&mut alice),
    );
    assert!(text.contains("NOPERM") && text.contains("keys"), "{text}");
    let text = err_text(redis::cmd("FLUSHALL").query::<()>(&mut alice));
    assert!(
        text.contains("NOPERM") && text.contains("'flushall'"),
        "{text}"
    );
    assert!(as_user(&cluster, leader, "alice", "wrong").is_err());

    // The stored user holds the hash, never the password.
    let list: Vec<String> = redis::cmd("ACL").arg("LIST").query(&mut admin_f).unwrap();
    let line = list.iter().find(|l| l.starts_with("user alice")).unwrap();
    assert!(!line.contains("s3cret") && line.contains('#'), "{line}");

    // NOPERM inside MULTI fails the transaction; nothing of it applies.
    let _: () = redis::cmd("MULTI").query(&mut alice).unwrap();
    let _: () = redis::cmd("SET")
        .arg("app:2")
        .arg("x")
        .query(&mut alice)
        .unwrap();
    let text = err_text(
        redis::cmd("SET")
            .arg("forbidden")
            .arg("x")
            .query::<()>(&mut alice),
    );
    assert!(text.contains("NOPERM"), "{text}");
    let text = err_text(redis::cmd("EXEC").query::<Value>(&mut alice));
    assert!(text.contains("EXECABORT"), "{text}");
    let two: Option<String> = redis::cmd("GET").arg("app:2").query(&mut alice).unwrap();
    assert_eq!(two, None);

    // LOCK.GUARD's inner command is checked as a command of its own.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "alice", "+@lock"])
        .query(&mut admin_f)
        .unwrap();
    let token: i64 = redis::cmd("LOCK.ACQUIRE")
        .arg("app:lock")
        .arg("alice")
        .arg(30_000)
        .query(&mut alice)
        .unwrap();
    let text = err_text(
        redis::cmd("LOCK.GUARD")
            .arg("app:lock")
            .arg(token)
            .arg("SET")
            .arg("outside")
            .arg("x")
            .query::<()>(&mut alice),
    );
    assert!(text.contains("NOPERM"), "{text}");
    let _: () = redis::cmd("LOCK.GUARD")
        .arg("app:lock")
        .arg(token)
        .arg("SET")
        .arg("app:guarded")
        .arg("x")
        .query(&mut alice)
        .unwrap();

    // Disabled through the leader: refused on the other follower at the
    // next command (a read waits for its barrier, which covers the change).
    let mut alice_f = as_user(&cluster, followers[1], "alice", "s3cret").unwrap();
    let got: Option<String> = redis::cmd("GET").arg("app:1").query(&mut alice_f).unwrap();
    assert_eq!(got.as_deref(), Some("v"));
    let mut admin_l = cluster.client(leader);
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "alice", "off"])
        .query(&mut admin_l)
        .unwrap();
    let next: RedisResult<Option<String>> = redis::cmd("GET").arg("app:1").query(&mut alice_f);
    assert!(next.is_err(), "a disabled user was served: {next:?}");
    assert!(as_user(&cluster, followers[1], "alice", "s3cret").is_err());

    // Deleted: gone on every node.
    let n: i64 = redis::cmd("ACL")
        .arg("DELUSER")
        .arg("alice")
        .query(&mut admin_l)
        .unwrap();
    assert_eq!(n, 1);
    for id in cluster.running() {
        wait_for("the deletion everywhere", Duration::from_secs(10), || {
            let mut c = cluster.client(id);
            let users: Vec<String> = redis::cmd("ACL").arg("USERS").query(&mut c).ok()?;
            (!users.contains(&"alice".to_owned())).then_some(())
        });
    }
}

#[test]
fn requirepass_is_the_default_user_s_password_everywhere_and_survives_restarts() {
    let mut cluster = Cluster::start(3, &["--requirepass", "hunter22"]);
    let port = cluster.nodes[&1].port;
    let anonymous = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut con = anonymous.get_connection().unwrap();
    let text = err_text(redis::cmd("GET").arg("k").query::<Option<String>>(&mut con));
    assert!(text.contains("NOAUTH"), "{text}");
    let text = err_text(redis::cmd("AUTH").arg("nope").query::<()>(&mut con));
    assert!(text.contains("WRONGPASS"), "{text}");
    let _: () = redis::cmd("AUTH").arg("hunter22").query(&mut con).unwrap();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    // HELLO 3 AUTH, as RESP3 clients log in.
    let mut raw = as_user(&cluster, 2, "default", "hunter22").unwrap();
    let hello: Value = redis::cmd("HELLO")
        .arg(3)
        .arg("AUTH")
        .arg("default")
        .arg("hunter22")
        .query(&mut raw)
        .unwrap();
    assert!(matches!(hello, Value::Map(_)), "{hello:?}");

    // The seed reached the replicated table: a new password through one
    // node is the password of every node.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("correct-horse")
        .query(&mut con)
        .unwrap();
    cluster.password = Some("correct-horse".into());
    let leader = cluster.leader_among(&[1, 2, 3]);
    cluster.kill9(leader);
    cluster.restart(leader);
    for id in [1, 2, 3] {
        wait_for(
            "the new password on every node",
            Duration::from_secs(20),
            || as_user(&cluster, id, "default", "correct-horse").ok(),
        );
        assert!(as_user(&cluster, id, "default", "hunter22").is_err());
    }
}

#[test]
fn scripts_run_with_their_caller_s_permissions_on_every_replica() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut admin = cluster.client(leader);
    let _: () = redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "bob",
            "on",
            ">pw",
            "~b:*",
            "+@scripting",
            "+set",
            "+get",
        ])
        .query(&mut admin)
        .unwrap();
    let mut bob = as_user(&cluster, follower, "bob", "pw").unwrap();
    // Allowed: a key of his, a command of his.
    let ok: String = redis::cmd("EVAL")
        .arg("return redis.call('SET', KEYS[1], 'x')")
        .arg(1)
        .arg("b:1")
        .query(&mut bob)
        .unwrap();
    assert_eq!(ok, "OK");
    // A key outside his pattern, and a command outside his rules.
    let text = err_text(
        redis::cmd("EVAL")
            .arg("return redis.call('SET', KEYS[1], 'x')")
            .arg(1)
            .arg("other")
            .query::<String>(&mut bob),
    );
    assert!(text.contains("NOPERM"), "{text}");
    let text = err_text(
        redis::cmd("EVAL")
            .arg("return redis.call('DEL', 'b:1')")
            .arg(0)
            .query::<i64>(&mut bob),
    );
    assert!(text.contains("NOPERM") && text.contains("'del'"), "{text}");
    // acl_check_cmd answers for the caller without running anything.
    let checks: Vec<Option<i64>> = redis::cmd("EVAL")
        .arg("return {redis.acl_check_cmd('set','b:2','v') and 1 or 0, redis.acl_check_cmd('del','b:1') and 1 or 0}")
        .arg(0)
        .query(&mut bob)
        .unwrap();
    assert_eq!(checks, vec![Some(1), Some(0)]);
    // The refused write left nothing anywhere; the allowed one is everywhere.
    let digest = cluster.converged(&cluster.running());
    assert!(!digest.is_empty());
    let other: Option<String> = redis::cmd("GET").arg("other").query(&mut admin).unwrap();
    assert_eq!(other, None);
}

#[test]
fn an_acl_file_seeds_a_new_cluster_and_acl_save_and_load_use_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("users.acl");
    std::fs::write(
        &file,
        "user default on nopass ~* &* +@all\nuser alice on >alice-pw ~a:* +@string\n",
    )
    .unwrap();
    let server = common::Server::start_with(&["--aclfile", file.to_str().unwrap()]);
    let port = server.port;
    let login = |user: &str, pass: &str| {
        let client =
            redis::Client::open(format!("redis://{user}:{pass}@127.0.0.1:{port}/")).unwrap();
        client.get_connection_with_timeout(Duration::from_secs(10))
    };
    let mut alice = wait_for("the seed to apply", Duration::from_secs(20), || {
        login("alice", "alice-pw").ok()
    });
    let _: () = redis::cmd("SET")
        .arg("a:1")
        .arg("x")
        .query(&mut alice)
        .unwrap();
    // The file holds the clear password; the cluster only its hash.
    let mut admin = server.client();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "bob", "on", ">bob-pw", "+@read", "~*"])
        .query(&mut admin)
        .unwrap();
    let _: () = redis::cmd("ACL").arg("SAVE").query(&mut admin).unwrap();
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(
        saved.contains("user bob on #") && !saved.contains("bob-pw"),
        "{saved}"
    );
    // ACL LOAD replaces every user with the file's.
    std::fs::write(
        &file,
        "user default on nopass ~* &* +@all\nuser carol on >carol-pw +@all ~*\n",
    )
    .unwrap();
    let _: () = redis::cmd("ACL").arg("LOAD").query(&mut admin).unwrap();
    let users: Vec<String> = redis::cmd("ACL").arg("USERS").query(&mut admin).unwrap();
    assert_eq!(users, vec!["carol".to_owned(), "default".to_owned()]);
    assert!(login("carol", "carol-pw").is_ok());
    assert!(login("alice", "alice-pw").is_err());
    // A bad file changes nothing and says which line.
    std::fs::write(&file, "user dave on +nosuchcommand\n").unwrap();
    let text = err_text(redis::cmd("ACL").arg("LOAD").query::<()>(&mut admin));
    assert!(
        text.contains("nosuchcommand") || text.contains("line 1"),
        "{text}"
    );
    let users: Vec<String> = redis::cmd("ACL").arg("USERS").query(&mut admin).unwrap();
    assert_eq!(users, vec!["carol".to_owned(), "default".to_owned()]);
}

/// The address of this host on its first non-loopback interface, if any.
fn outside_address() -> std::net::IpAddr {
    // Connecting a UDP socket sends nothing; it picks the route's source.
    let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    s.connect("192.0.2.1:9")
        .expect("a route off this host (protected-mode test)");
    let ip = s.local_addr().unwrap().ip();
    assert!(
        !ip.is_loopback(),
        "no non-loopback address to test protected mode from"
    );
    ip
}

#[test]
fn protected_mode_refuses_other_hosts_until_a_password_is_set() {
    let ip = outside_address();
    let port = common::free_port();
    let tmp = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_concord"))
        .arg("serve")
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .args([
            "--peer-listen",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .arg("--data-dir")
        .arg(tmp.path().join("d"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut child);
    wait_for("the node to answer", Duration::from_secs(20), || {
        common::ping(port).then_some(())
    });
    let talk = |line: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect((ip, port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut buf = vec![0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(
        talk("PING\r\n").starts_with("-DENIED"),
        "protected mode is off"
    );
    // Loopback clients are served, and can set a password.
    let local = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut con = local.get_connection().unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("pw-for-outside")
        .query(&mut con)
        .unwrap();
    assert!(talk("PING\r\n").starts_with("-NOAUTH"));
    assert!(talk("AUTH pw-for-outside\r\n").starts_with("+OK"));
}

/// INFO commandstats measures: time until the answer, refusals before a
/// command ran (ACL) apart from errors it answered.
#[test]
fn commandstats_count_time_refusals_and_failures() {
    let server = common::Server::start();
    let mut admin = server.client();
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "eve", "on", ">pw", "~e:*", "+@all"])
        .query(&mut admin)
        .unwrap();
    let port = server.port;
    let client = redis::Client::open(format!("redis://eve:pw@127.0.0.1:{port}/")).unwrap();
    let mut eve = client.get_connection().unwrap();
    for i in 0..5 {
        let _: () = redis::cmd("SET")
            .arg(format!("e:{i}"))
            .arg(i)
            .query(&mut eve)
            .unwrap();
    }
    assert!(redis::cmd("SET")
        .arg("x")
        .arg(1)
        .query::<()>(&mut eve)
        .is_err());
    assert!(redis::cmd("LPUSH")
        .arg("e:1")
        .arg(1)
        .query::<()>(&mut eve)
        .is_err());
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut admin)
        .unwrap();
    let line = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {info}"))
            .to_owned()
    };
    let field = |line: &str, key: &str| -> f64 {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    let set = line("set");
    assert_eq!(field(&set, "calls"), 5.0, "{set}");
    assert!(field(&set, "usec") > 0.0, "{set}");
    assert_eq!(field(&set, "rejected_calls"), 1.0, "{set}");
    let lpush = line("lpush");
    assert_eq!(field(&lpush, "failed_calls"), 1.0, "{lpush}");
}

/// Before it authenticates, a connection may send only small requests: a
/// stranger cannot make a node buffer a large one (Redis's limits).
#[test]
fn unauthenticated_requests_are_held_to_small_limits() {
    use std::io::{Read, Write};
    let server = common::Server::start_with(&["--requirepass", "pw"]);
    for request in [&b"*100\r\n"[..], &b"*1\r\n$100000000\r\n"[..]] {
        let mut s = server.raw();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(
            out.starts_with("-ERR Protocol error: unauthenticated"),
            "{out:?}"
        );
    }
    // After AUTH the usual limits apply.
    let mut s = server.raw();
    let mut request = b"AUTH pw\r\n*12\r\n$3\r\nDEL\r\n".to_vec();
    for i in 0..11 {
        request.extend_from_slice(format!("$3\r\nk{i:02}\r\n").as_bytes());
    }
    s.write_all(&request).unwrap();
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.ends_with(b"+OK\r\n:0\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}
