//! SLOWLOG and LATENCY against a real process, as Redis's clients and
//! tools read them: entries with their arguments (secrets redacted), the
//! client's address and name, the length bound, and the latency monitor's
//! events and histograms.

mod common;

use common::Server;
use redis::{Connection, Value};

fn cmd(c: &mut Connection, args: &[&str]) -> Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        Value::Int(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn items(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Map(m) => m.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect(),
        other => panic!("not an array: {other:?}"),
    }
}

#[test]
fn slowlog_keeps_commands_with_their_arguments_and_no_secrets() {
    let server = Server::start();
    let mut c = server.client();
    cmd(&mut c, &["CLIENT", "SETNAME", "tester"]);
    cmd(&mut c, &["SLOWLOG", "RESET"]);
    cmd(&mut c, &["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    cmd(&mut c, &["SET", "k", "v"]);
    cmd(
        &mut c,
        &["ACL", "SETUSER", "alice", "on", ">s3cret", "~*", "+get"],
    );
    let long = "x".repeat(300);
    cmd(&mut c, &["SET", "big", &long]);

    let entries = items(&cmd(&mut c, &["SLOWLOG", "GET", "-1"]));
    let as_args = |e: &Value| -> Vec<String> { items(&items(e)[3]).iter().map(text).collect() };
    // Newest first: SET big, ACL SETUSER, SET k (then CONFIG SET itself).
    let set_big = as_args(&entries[0]);
    assert_eq!(set_big[..2], ["SET".to_owned(), "big".to_owned()]);
    assert_eq!(set_big[2], format!("{}... (172 more bytes)", &long[..128]));
    let setuser = as_args(&entries[1]);
    assert_eq!(
        setuser,
        ["ACL", "SETUSER", "alice", "on", "(redacted)", "~*", "+get"]
    );
    assert!(!format!("{entries:?}").contains("s3cret"));
    assert_eq!(as_args(&entries[2]), ["SET", "k", "v"]);
    let first = items(&entries[0]);
    let (Value::Int(id0), Value::Int(id1)) = (&first[0], &items(&entries[1])[0]) else {
        panic!("{first:?}")
    };
    assert!(id0 > id1, "newest first: {id0} {id1}");
    assert!(matches!(first[2], Value::Int(us) if us >= 0));
    assert!(text(&first[4]).starts_with("127.0.0.1:"), "{first:?}");
    assert_eq!(text(&first[5]), "tester");

    // GET's count, the length bound, RESET, off.
    let one = cmd(&mut c, &["SLOWLOG", "GET", "1"]);
    assert_eq!(items(&one).len(), 1, "{one:?}");
    let err = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg("-2")
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string().contains("greater than or equal to -1"),
        "{err}"
    );
    cmd(&mut c, &["CONFIG", "SET", "slowlog-max-len", "2"]);
    for i in 0..5 {
        cmd(&mut c, &["SET", &format!("k{i}"), "v"]);
    }
    assert_eq!(cmd(&mut c, &["SLOWLOG", "LEN"]), Value::Int(2));
    cmd(&mut c, &["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
    cmd(&mut c, &["SLOWLOG", "RESET"]);
    cmd(&mut c, &["SET", "after", "v"]);
    assert_eq!(cmd(&mut c, &["SLOWLOG", "LEN"]), Value::Int(0));

    // A blocking command's wait is not counted as slowness.
    cmd(&mut c, &["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    cmd(&mut c, &["SLOWLOG", "RESET"]);
    cmd(&mut c, &["BLPOP", "empty", "0.05"]);
    let logged = items(&cmd(&mut c, &["SLOWLOG", "GET", "-1"]));
    assert!(
        logged
            .iter()
            .all(|e| !as_args(e).contains(&"BLPOP".to_owned())),
        "{logged:?}"
    );
}

#[test]
fn the_latency_monitor_reports_slow_commands_and_histograms() {
    let server = Server::start();
    let mut c = server.client();
    // Off by default, as in Redis.
    assert_eq!(cmd(&mut c, &["LATENCY", "LATEST"]), Value::Array(vec![]));
    assert!(text(&cmd(&mut c, &["LATENCY", "DOCTOR"])).contains("disabled"));
    cmd(&mut c, &["CONFIG", "SET", "latency-monitor-threshold", "1"]);
    // A script that loops: well over 1 ms on any machine.
    cmd(
        &mut c,
        &[
            "EVAL",
            "local n = 0 for i = 1, 5000000 do n = n + i end return n",
            "0",
        ],
    );
    let latest = items(&cmd(&mut c, &["LATENCY", "LATEST"]));
    let command = latest
        .iter()
        .map(items)
        .find(|e| text(&e[0]) == "command")
        .unwrap_or_else(|| panic!("no command event in {latest:?}"));
    let (Value::Int(latest_ms), Value::Int(max_ms)) = (&command[2], &command[3]) else {
        panic!("{command:?}")
    };
    assert!(*latest_ms >= 1 && max_ms >= latest_ms, "{command:?}");
    assert!(!items(&cmd(&mut c, &["LATENCY", "HISTORY", "command"])).is_empty());
    assert!(text(&cmd(&mut c, &["LATENCY", "GRAPH", "command"])).starts_with("command - high"));
    assert!(text(&cmd(&mut c, &["LATENCY", "DOCTOR"])).contains("command:"));
    let err = redis::cmd("LATENCY")
        .arg("GRAPH")
        .arg("nothing")
        .query::<Value>(&mut c)
        .unwrap_err();
    assert!(err.to_string().contains("No samples"), "{err}");
    let Value::Int(reset) = cmd(&mut c, &["LATENCY", "RESET", "command"]) else {
        panic!()
    };
    assert_eq!(reset, 1);
    assert!(items(&cmd(&mut c, &["LATENCY", "HISTORY", "command"])).is_empty());

    // Per-command histograms, cumulative, in power-of-two microseconds.
    cmd(&mut c, &["SET", "a", "1"]);
    cmd(&mut c, &["SET", "b", "2"]);
    let h = items(&cmd(&mut c, &["LATENCY", "HISTOGRAM", "set"]));
    assert_eq!(text(&h[0]), "set");
    let fields = items(&h[1]);
    assert_eq!(text(&fields[0]), "calls");
    assert_eq!(fields[1], Value::Int(2));
    assert_eq!(text(&fields[2]), "histogram_usec");
    let buckets = items(&fields[3]);
    let counts: Vec<i64> = buckets
        .chunks(2)
        .map(|kv| match (&kv[0], &kv[1]) {
            (Value::Int(bound), Value::Int(n)) => {
                assert!(bound.count_ones() == 1, "{bound}");
                *n
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert_eq!(*counts.last().unwrap(), 2);
    cmd(&mut c, &["CONFIG", "SET", "latency-tracking", "no"]);
    assert!(items(&cmd(&mut c, &["LATENCY", "HISTOGRAM"])).is_empty());
}
