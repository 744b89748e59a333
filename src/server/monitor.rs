//! MONITOR: every command this node's clients send, as Redis prints it
//! (`+1700000000.123456 [0 127.0.0.1:50000] "set" "k" "v"`), streamed to
//! the connections that asked.
//!
//! A node shows its own clients' commands: a write relayed by a follower
//! shows on the follower, where the client sent it. Commands are shown when
//! they are accepted, before they run, in the order each client sent them;
//! those refused before running (unknown, wrong arity, no permission) are
//! not, nor admin commands, as in Redis. AUTH's and HELLO's credentials are
//! replaced by `(redacted)`. The commands a script calls run inside its log
//! entry on every replica and are not shown. Lines go out through a
//! broadcast channel: a monitor that falls more than [`CAPACITY`] lines
//! behind loses the oldest, and is told how many it missed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::broadcast;

use crate::command::{CommandSpec, Flag};

/// Lines a monitor may fall behind before it loses some.
pub const CAPACITY: usize = 16 * 1024;

pub struct Monitor {
    lines: broadcast::Sender<Bytes>,
    /// Feeds alive: every command asks, and the channel's own count
    /// takes a lock.
    feeds: Arc<AtomicUsize>,
}

impl Default for Monitor {
    fn default() -> Self {
        Monitor {
            lines: broadcast::channel(CAPACITY).0,
            feeds: Arc::default(),
        }
    }
}

/// One monitoring connection's lines; counted while it lives.
pub struct Feed {
    pub lines: broadcast::Receiver<Bytes>,
    feeds: Arc<AtomicUsize>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.feeds.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Monitor {
    /// A new monitor's feed.
    pub fn subscribe(&self) -> Feed {
        self.feeds.fetch_add(1, Ordering::Relaxed);
        Feed {
            lines: self.lines.subscribe(),
            feeds: self.feeds.clone(),
        }
    }

    /// Whether anyone monitors: nothing is formatted otherwise.
    pub fn active(&self) -> bool {
        self.feeds.load(Ordering::Relaxed) > 0
    }

    /// Shows `argv` of the client at `addr`, in database `db`.
    pub fn feed(&self, spec: &CommandSpec, db: u32, addr: &str, argv: &[Bytes]) {
        if !self.active() || spec.has(Flag::Admin) {
            return;
        }
        let _ = self
            .lines
            .send(line(spec.name, db, addr, argv, SystemTime::now()));
    }
}

/// The monitor line of one command (without the leading `+` and CRLF).
fn line(name: &str, db: u32, addr: &str, argv: &[Bytes], at: SystemTime) -> Bytes {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = format!(
        "{}.{:06} [{db} {addr}]",
        since.as_secs(),
        since.subsec_micros()
    )
    .into_bytes();
    let redact_from = redacted_from(name, argv);
    for (i, arg) in argv.iter().enumerate() {
        out.push(b' ');
        if redact_from.is_some_and(|from| i >= from) {
            out.extend_from_slice(b"\"(redacted)\"");
        } else {
            repr(arg, &mut out);
        }
    }
    Bytes::from(out)
}

/// Where the credentials in `argv` start, for the commands that carry them.
fn redacted_from(name: &str, argv: &[Bytes]) -> Option<usize> {
    match name {
        "auth" => Some(1),
        "hello" => argv
            .iter()
            .position(|a| a.eq_ignore_ascii_case(b"AUTH"))
            .map(|i| i + 1),
        "migrate" => argv
            .iter()
            .position(|a| a.eq_ignore_ascii_case(b"AUTH") || a.eq_ignore_ascii_case(b"AUTH2"))
            .map(|i| i + 1),
        _ => None,
    }
}

/// Appends `arg` quoted as Redis's `sdscatrepr` quotes it.
fn repr(arg: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in arg {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn argv(args: &[&str]) -> Vec<Bytes> {
        args.iter().map(|a| Bytes::from(a.to_string())).collect()
    }

    #[test]
    fn lines_read_as_redis_prints_them() {
        let at = UNIX_EPOCH + Duration::from_micros(1_339_518_083_107_412);
        let got = line(
            "set",
            3,
            "127.0.0.1:60866",
            &[
                Bytes::from("SET"),
                Bytes::from("k\"\n"),
                Bytes::from(&b"\x00\xff v"[..]),
            ],
            at,
        );
        assert_eq!(
            &got[..],
            br#"1339518083.107412 [3 127.0.0.1:60866] "SET" "k\"\n" "\x00\xff v""#
        );
    }

    #[test]
    fn credentials_are_redacted() {
        let at = UNIX_EPOCH;
        let auth = line("auth", 0, "a:1", &argv(&["auth", "user", "secret"]), at);
        assert!(
            auth.ends_with(br#""auth" "(redacted)" "(redacted)""#),
            "{auth:?}"
        );
        let hello = line(
            "hello",
            0,
            "a:1",
            &argv(&["hello", "2", "AUTH", "u", "p"]),
            at,
        );
        assert!(
            hello.ends_with(br#""hello" "2" "AUTH" "(redacted)" "(redacted)""#),
            "{hello:?}"
        );
        let get = line("get", 0, "a:1", &argv(&["get", "auth"]), at);
        assert!(get.ends_with(br#""get" "auth""#), "{get:?}");
    }

    #[test]
    fn nothing_is_sent_without_a_monitor_and_admin_commands_are_never() {
        let monitor = Monitor::default();
        assert!(!monitor.active());
        let set = crate::command::lookup(b"set").expect("set");
        monitor.feed(set, 0, "a:1", &argv(&["set", "k", "v"]));
        let mut feed = monitor.subscribe();
        assert!(monitor.active());
        let config = crate::command::lookup(b"config").expect("config");
        let config_get = crate::command::resolve_subcommand(config, &argv(&["config", "get", "x"]))
            .expect("config get");
        monitor.feed(config_get, 0, "a:1", &argv(&["config", "get", "x"]));
        monitor.feed(set, 0, "a:1", &argv(&["set", "k", "v"]));
        let got = feed.lines.try_recv().expect("the set");
        assert!(got.ends_with(br#""set" "k" "v""#), "{got:?}");
        assert!(feed.lines.try_recv().is_err());
        drop(feed);
        assert!(!monitor.active());
    }
}
