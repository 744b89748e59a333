//! CLIENT PAUSE and CLIENT UNPAUSE: this node holds its clients' commands
//! back for a while, all of them (`ALL`) or those that may write (`WRITE`),
//! as Redis does before a failover or an upgrade.
//!
//! A pause is this node's, like Redis's is one server's: the clients of
//! other nodes go on. A held command waits before it is proposed or read,
//! after the replies of what the client sent before it; nothing the client
//! sent after it runs first. Commands that fail their arity check are
//! answered at once, and those queued inside MULTI are held at EXEC (only
//! if the transaction writes, in `WRITE` mode). While this node leads, it
//! also proposes no expiry and no eviction during a pause: keys whose time
//! has passed read as missing, but are deleted (and counted in
//! `expired_keys`) only once the pause ends, as in Redis.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::command::{self, CommandSpec, Flag};

/// A pause in force.
#[derive(Clone, Copy, Debug)]
struct Paused {
    until: Instant,
    /// `ALL`: every command is held; otherwise only those that may write.
    all: bool,
}

#[derive(Default)]
pub struct Pause {
    current: Mutex<Option<Paused>>,
    /// Whether `current` may hold a pause: every command asks, so the
    /// lock is taken only while one may be in force.
    set: AtomicBool,
    /// Notified when a pause is lifted early (CLIENT UNPAUSE).
    lifted: Notify,
    /// Commands waiting for the pause to end (INFO's blocked_clients).
    waiting: AtomicU64,
}

impl Pause {
    /// CLIENT PAUSE: as in Redis, a pause only ever grows until it is
    /// lifted: the later end and the stricter mode of the two win.
    pub fn pause(&self, until: Instant, all: bool) {
        let mut current = self.current.lock().expect("pause lock");
        let now = Instant::now();
        *current = Some(match *current {
            Some(p) if p.until > now => Paused {
                until: p.until.max(until),
                all: p.all || all,
            },
            _ => Paused { until, all },
        });
        self.set.store(true, Ordering::Release);
    }

    /// CLIENT UNPAUSE.
    pub fn unpause(&self) {
        *self.current.lock().expect("pause lock") = None;
        self.set.store(false, Ordering::Release);
        self.lifted.notify_waiters();
    }

    /// When the pause that holds a command back ends; None if nothing
    /// holds it (`writes`: the command may write).
    fn holding(&self, writes: bool) -> Option<Instant> {
        let current = *self.current.lock().expect("pause lock");
        current
            .filter(|p| p.until > Instant::now() && (p.all || writes))
            .map(|p| p.until)
    }

    /// Whether a pause is in force (expiry and eviction wait for its end).
    pub fn active(&self) -> bool {
        self.holding(false).is_some() || self.holding(true).is_some()
    }

    /// The unix time in milliseconds the pause in force ends at; 0 without one.
    pub fn until_unix_ms(&self) -> u64 {
        let Some(until) = self.holding(true) else {
            return 0;
        };
        let left = until.saturating_duration_since(Instant::now());
        crate::raft::now_ms() + left.as_millis() as u64
    }

    /// Waits until no pause holds a command that `writes` or not.
    pub async fn wait(&self, writes: bool) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        loop {
            let lifted = self.lifted.notified();
            tokio::pin!(lifted);
            lifted.as_mut().enable();
            let Some(until) = self.holding(writes) else {
                break;
            };
            let left = until.saturating_duration_since(Instant::now());
            tokio::select! {
                () = lifted => {}
                () = tokio::time::sleep(left + Duration::from_millis(1)) => {}
            }
        }
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Commands waiting for a pause to end.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether a pause holds back `argv` (spec `spec`), given the commands
    /// a transaction queued (for EXEC). False when nothing is paused.
    pub fn holds(&self, spec: &CommandSpec, argv: &[Bytes], queued: &[Vec<Bytes>]) -> bool {
        if !self.set.load(Ordering::Acquire) {
            return false;
        }
        let mut current = self.current.lock().expect("pause lock");
        let Some(paused) = current.filter(|p| p.until > Instant::now()) else {
            // Lapsed: later commands need not take the lock.
            *current = None;
            self.set.store(false, Ordering::Release);
            return false;
        };
        drop(current);
        if paused.all {
            return true;
        }
        if spec.name == "exec" {
            return queued.iter().any(|argv| {
                command::lookup(&argv[0])
                    .and_then(|spec| command::resolve_subcommand(spec, argv).ok())
                    .is_some_and(|spec| may_write(spec, argv))
            });
        }
        may_write(spec, argv)
    }
}

/// Whether a command may write, for a `WRITE` pause: writes, and the
/// commands Redis flags `may_replicate` (PUBLISH, PFCOUNT, EVAL, FCALL),
/// except the `_RO` scripts, an EVAL whose shebang declares `no-writes` and
/// SCRIPT LOAD (it stores a script, no key).
fn may_write(spec: &CommandSpec, argv: &[Bytes]) -> bool {
    match spec.name {
        "eval" => !argv.get(1).is_some_and(|body| declares_no_writes(body)),
        // Read-only runs, and a script stored without running.
        "eval_ro" | "evalsha_ro" | "fcall_ro" | "script|load" => false,
        _ => spec.has(Flag::Write) || spec.has(Flag::MayReplicate),
    }
}

/// True for a script body whose `#!` line has `no-writes` among its flags.
fn declares_no_writes(body: &[u8]) -> bool {
    let Some(line) = body.strip_prefix(b"#!") else {
        return false;
    };
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    line.split(|&b| b == b' ')
        .filter_map(|word| word.strip_prefix(b"flags="))
        .any(|flags| flags.split(|&b| b == b',').any(|f| f == b"no-writes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str]) -> (&'static CommandSpec, Vec<Bytes>) {
        let argv: Vec<Bytes> = argv.iter().map(|a| Bytes::from(a.to_string())).collect();
        let spec = command::lookup(&argv[0]).expect("known");
        let spec = command::resolve_subcommand(spec, &argv).expect("resolves");
        (spec, argv)
    }

    #[test]
    fn a_write_pause_holds_writes_and_may_replicate_commands_only() {
        let pause = Pause::default();
        let (set, set_argv) = spec(&["SET", "k", "v"]);
        let (get, get_argv) = spec(&["GET", "k"]);
        assert!(!pause.holds(set, &set_argv, &[]));
        pause.pause(Instant::now() + Duration::from_secs(60), false);
        assert!(pause.holds(set, &set_argv, &[]));
        assert!(!pause.holds(get, &get_argv, &[]));
        for held in [
            &["PUBLISH", "c", "m"][..],
            &["PFCOUNT", "h"],
            &["EVAL", "return 1", "0"],
            &["EVAL", "#!lua\nreturn 1", "0"],
        ] {
            let (s, a) = spec(held);
            assert!(pause.holds(s, &a, &[]), "{held:?}");
        }
        for free in [
            &["EVAL", "#!lua flags=no-writes\nreturn 1", "0"][..],
            &["EVAL_RO", "return 1", "0"],
            &["PING"],
            &["SCRIPT", "LOAD", "return 1"],
        ] {
            let (s, a) = spec(free);
            assert!(!pause.holds(s, &a, &[]), "{free:?}");
        }
        // EXEC is held when what it queued writes.
        let (exec, exec_argv) = spec(&["EXEC"]);
        assert!(!pause.holds(exec, &exec_argv, std::slice::from_ref(&get_argv)));
        assert!(pause.holds(exec, &exec_argv, &[get_argv, set_argv.clone()]));
        // A pause only grows: ALL wins over WRITE, the later end wins.
        pause.pause(Instant::now() + Duration::from_secs(1), true);
        assert!(pause.holds(get, &[Bytes::from("GET"), Bytes::from("k")], &[]));
        pause.unpause();
        assert!(!pause.holds(set, &set_argv, &[]));
        assert!(!pause.active());
    }

    #[test]
    fn a_lapsed_pause_holds_nothing() {
        let pause = Pause::default();
        pause.pause(Instant::now() - Duration::from_millis(1), true);
        let (set, argv) = spec(&["SET", "k", "v"]);
        assert!(!pause.holds(set, &argv, &[]));
        assert_eq!(pause.until_unix_ms(), 0);
    }

    #[tokio::test]
    async fn waiting_ends_when_the_pause_is_lifted() {
        let pause = std::sync::Arc::new(Pause::default());
        pause.pause(Instant::now() + Duration::from_secs(3600), false);
        let waiter = tokio::spawn({
            let pause = pause.clone();
            async move { pause.wait(true).await }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while pause.waiting() == 0 {
            assert!(Instant::now() < deadline, "the waiter never waited");
            tokio::task::yield_now().await;
        }
        pause.unpause();
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the wait ends when the pause is lifted")
            .expect("the waiter ran");
        assert_eq!(pause.waiting(), 0);
    }
}
