//! SLOWLOG and LATENCY, as Redis answers them, for this node.
//!
//! What counts as a command's duration: the time its answer added to the
//! client's wait once the connection handed its batch to the raft driver
//! (for the first command of a batch that includes the raft round of a
//! write or the read barrier of a read; a command pipelined behind it and
//! answered by the same round adds little). Redis times the execution
//! alone; in concord the consensus round is what a slow command is made
//! of, so it is counted. Blocking commands (BLPOP, QUEUE.CLAIM BLOCK, ...)
//! are left out: their time is mostly the wait they asked for.
//!
//! The latency monitor itself ([`crate::metrics::LatencyMonitor`]) is
//! shared with the WAL thread and the driver, which report `wal-fsync`
//! and `snapshot`; commands report `command` and `fast-command`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use super::local::help;
use super::Shared;
use crate::command::{CommandError, CommandSpec, Flag};
use crate::resp::Reply;

/// Arguments kept per entry, and bytes per argument, as Redis keeps.
const MAX_ARGS: usize = 32;
const MAX_ARG_BYTES: usize = 128;

/// The slow log of this node.
pub struct SlowLog {
    /// `slowlog-log-slower-than` in microseconds; negative: off.
    threshold_us: AtomicI64,
    /// `slowlog-max-len`.
    max_len: AtomicU64,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<Entry>>,
}

struct Entry {
    id: u64,
    unix_s: u64,
    micros: u64,
    argv: Vec<Bytes>,
    addr: String,
    name: String,
}

impl Default for SlowLog {
    fn default() -> Self {
        SlowLog {
            threshold_us: AtomicI64::new(10_000),
            max_len: AtomicU64::new(128),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(VecDeque::new()),
        }
    }
}

impl SlowLog {
    pub fn set_threshold_us(&self, us: i64) {
        self.threshold_us.store(us, Ordering::Relaxed);
    }

    pub fn set_max_len(&self, n: u64) {
        self.max_len.store(n, Ordering::Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.truncate(n as usize);
    }

    /// Whether commands are to be kept with their arguments at all.
    pub fn enabled(&self) -> bool {
        self.threshold_us.load(Ordering::Relaxed) >= 0
    }

    /// A threshold of 0 logs every command, the ones answered at once
    /// included (Redis logs PING then).
    pub fn logs_everything(&self) -> bool {
        self.threshold_us.load(Ordering::Relaxed) == 0
    }

    /// Command `name` (as in the table) that took `took`, with its
    /// request while the slow log is on: logged if it reached the
    /// threshold, and reported to the latency monitor if it reached its
    /// own. Costs two atomic loads when it reached neither.
    pub fn record(
        &self,
        shared: &Shared,
        client: u64,
        name: &str,
        argv: Option<&[Bytes]>,
        took: Duration,
    ) {
        let micros = took.as_micros() as u64;
        let threshold = self.threshold_us.load(Ordering::Relaxed);
        let slow = argv.is_some() && threshold >= 0 && micros as i64 >= threshold;
        let monitor = &shared.node.status().metrics.latency;
        let monitored = monitor.threshold_ms() > 0 && micros / 1000 >= monitor.threshold_ms();
        if !slow && !monitored {
            return;
        }
        let Some(spec) = crate::command::all()
            .flat_map(|s| std::iter::once(s).chain(s.subcommands.iter()))
            .find(|s| s.name == name)
        else {
            return;
        };
        if spec.has(Flag::Blocking) {
            return;
        }
        if monitored {
            let event = if spec.has(Flag::Fast) {
                "fast-command"
            } else {
                "command"
            };
            monitor.record(event, took);
        }
        let Some(argv) = argv.filter(|_| slow) else {
            return;
        };
        let (addr, client_name) = shared
            .clients
            .lock()
            .expect("clients lock")
            .get(&client)
            .map(|c| (c.addr.clone(), c.name.clone()))
            .unwrap_or_default();
        let entry = Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            micros,
            argv: kept_args(spec, argv),
            addr,
            name: client_name,
        };
        let max = self.max_len.load(Ordering::Relaxed) as usize;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.push_front(entry);
        entries.truncate(max);
    }
}

/// The arguments an entry keeps: secrets redacted, at most [`MAX_ARGS`]
/// (the last one saying how many more there were), each cut at
/// [`MAX_ARG_BYTES`] (saying how many more bytes it had).
fn kept_args(spec: &CommandSpec, argv: &[Bytes]) -> Vec<Bytes> {
    let redacted = |i: usize, arg: &Bytes| -> bool {
        match spec.name {
            "auth" => i >= 1,
            "hello" => argv
                .iter()
                .position(|a| a.eq_ignore_ascii_case(b"AUTH"))
                .is_some_and(|at| i > at && i <= at + 2),
            "acl|setuser" => i >= 3 && matches!(arg.first(), Some(b'>' | b'<' | b'#' | b'!')),
            "config|set" => {
                i >= 3
                    && i % 2 == 1
                    && ["requirepass", "masterauth"]
                        .iter()
                        .any(|s| argv[i - 1].eq_ignore_ascii_case(s.as_bytes()))
            }
            _ => false,
        }
    };
    let shown = if argv.len() > MAX_ARGS {
        MAX_ARGS - 1
    } else {
        argv.len()
    };
    let mut out: Vec<Bytes> = argv[..shown]
        .iter()
        .enumerate()
        .map(|(i, arg)| {
            if redacted(i, arg) {
                Bytes::from_static(b"(redacted)")
            } else if arg.len() > MAX_ARG_BYTES {
                let mut cut = arg[..MAX_ARG_BYTES].to_vec();
                cut.extend_from_slice(
                    format!("... ({} more bytes)", arg.len() - MAX_ARG_BYTES).as_bytes(),
                );
                Bytes::from(cut)
            } else {
                // A copy: the argument is a slice of the connection's read
                // buffer (up to 1 MiB), which a kept entry would otherwise
                // hold for as long as it stays in the log. Under a bulk
                // load 128 entries kept up to 128 such buffers alive.
                Bytes::copy_from_slice(arg)
            }
        })
        .collect();
    if argv.len() > MAX_ARGS {
        out.push(Bytes::from(format!(
            "... ({} more arguments)",
            argv.len() - shown
        )));
    }
    out
}

fn bulk(s: impl Into<String>) -> Reply {
    Reply::Bulk(Bytes::from(s.into()))
}

/// SLOWLOG and LATENCY subcommands (`name` as in the table).
pub(super) fn execute(name: &str, argv: &[Bytes], shared: &Shared) -> Reply {
    let slowlog = &shared.slowlog;
    match name {
        "slowlog|get" => {
            let count = match argv.get(2) {
                None => 10,
                Some(n) => match std::str::from_utf8(n).ok().and_then(|s| s.parse::<i64>().ok())
                {
                    Some(-1) => i64::MAX,
                    Some(n) if n >= 0 => n,
                    _ => {
                        return Reply::error("ERR count should be greater than or equal to -1")
                    }
                },
            };
            let entries = slowlog.entries.lock().unwrap_or_else(|e| e.into_inner());
            Reply::Array(
                entries
                    .iter()
                    .take(usize::try_from(count).unwrap_or(usize::MAX))
                    .map(|e| {
                        Reply::Array(vec![
                            Reply::Int(e.id as i64),
                            Reply::Int(e.unix_s as i64),
                            Reply::Int(e.micros as i64),
                            Reply::Array(e.argv.iter().cloned().map(Reply::Bulk).collect()),
                            bulk(e.addr.clone()),
                            bulk(e.name.clone()),
                        ])
                    })
                    .collect(),
            )
        }
        "slowlog|len" => Reply::Int(
            slowlog
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len() as i64,
        ),
        "slowlog|reset" => {
            slowlog
                .entries
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            Reply::ok()
        }
        "slowlog" | "slowlog|help" => help(&[
            "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET [<count>]",
            "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
            "    Entries are made of:",
            "    id, timestamp, time in microseconds, arguments array, client IP and port,",
            "    client name",
            "LEN",
            "    Return the length of the slowlog.",
            "RESET",
            "    Reset the slowlog.",
            "HELP",
            "    Print this help.",
        ]),
        "latency|latest" => {
            let events = shared.node.status().metrics.latency.events();
            Reply::Array(
                events
                    .iter()
                    .filter_map(|(event, s)| {
                        let (at, ms) = *s.samples.back()?;
                        Some(Reply::Array(vec![
                            bulk(*event),
                            Reply::Int(at as i64),
                            Reply::Int(ms as i64),
                            Reply::Int(s.max_ms as i64),
                        ]))
                    })
                    .collect(),
            )
        }
        "latency|history" => {
            let event = String::from_utf8_lossy(&argv[2]).to_ascii_lowercase();
            let events = shared.node.status().metrics.latency.events();
            Reply::Array(events.get(event.as_str()).map_or(Vec::new(), |s| {
                s.samples
                    .iter()
                    .map(|(at, ms)| Reply::Array(vec![Reply::Int(*at as i64), Reply::Int(*ms as i64)]))
                    .collect()
            }))
        }
        "latency|reset" => {
            let names: Vec<String> = argv[2..]
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Reply::Int(shared.node.status().metrics.latency.reset(&names) as i64)
        }
        "latency|graph" => {
            let event = String::from_utf8_lossy(&argv[2]).to_ascii_lowercase();
            let events = shared.node.status().metrics.latency.events();
            match events.get(event.as_str()) {
                Some(s) if !s.samples.is_empty() => Reply::Verbatim {
                    format: *b"txt",
                    text: Bytes::from(graph(&event, s)),
                },
                _ => Reply::error(format!("ERR No samples available for event '{event}'")),
            }
        }
        "latency|doctor" => Reply::Verbatim {
            format: *b"txt",
            text: Bytes::from(doctor(shared)),
        },
        "latency|histogram" => histogram(&argv[2..], shared),
        "latency" | "latency|help" => help(&[
            "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "DOCTOR",
            "    Return a human readable latency analysis report.",
            "GRAPH <event>",
            "    Return an ASCII latency graph for the <event> class.",
            "HISTORY <event>",
            "    Return time-latency samples for the <event> class.",
            "LATEST",
            "    Return the latest latency samples for all events.",
            "RESET [<event> ...]",
            "    Reset latency data of one or more <event> classes.",
            "    (default: reset all data for all event classes)",
            "HISTOGRAM [COMMAND ...]",
            "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
            "    If no commands are specified then all histograms are replied.",
            "HELP",
            "    Print this help.",
        ]),
        other => Reply::error(
            CommandError::UnknownSubcommand {
                command: other.to_ascii_uppercase(),
                sub: String::new(),
            }
            .to_string(),
        ),
    }
}

/// The samples of an event as rows of `#`, the longest the worst.
fn graph(event: &str, s: &crate::metrics::LatencySeries) -> String {
    let low = s.samples.iter().map(|(_, ms)| *ms).min().unwrap_or(0);
    let high = s.samples.iter().map(|(_, ms)| *ms).max().unwrap_or(0);
    let mut out = format!(
        "{event} - high {high} ms, low {low} ms (all time high {} ms)\n",
        s.max_ms
    );
    out.push_str(&"-".repeat(80));
    out.push('\n');
    for (at, ms) in &s.samples {
        let width = if high == 0 {
            0
        } else {
            (ms * 60).div_ceil(high)
        };
        out.push_str(&format!(
            "{at:>10} {ms:>6} ms {}\n",
            "#".repeat(width as usize)
        ));
    }
    out
}

/// A short reading of the latency events, with what to look at first.
fn doctor(shared: &Shared) -> String {
    let monitor = &shared.node.status().metrics.latency;
    let events = monitor.events();
    if monitor.threshold_ms() == 0 {
        return "I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this concord node. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it.\n".into();
    }
    if events.is_empty() {
        return "Dave, no latency spike was observed during the lifetime of this concord node.\n"
            .into();
    }
    let mut out = String::from("Dave, I have observed latency spikes in this concord node.\n\n");
    for (i, (event, s)) in events.iter().enumerate() {
        let n = s.samples.len() as u64;
        let avg = s.samples.iter().map(|(_, ms)| *ms).sum::<u64>() / n.max(1);
        out.push_str(&format!(
            "{}. {event}: {n} latency spikes (average {avg}ms, worst {}ms).\n",
            i + 1,
            s.max_ms
        ));
    }
    out.push_str("\nI have a few advices for you:\n\n");
    for event in events.keys() {
        let advice = match *event {
            "wal-fsync" => "- wal-fsync: the disk under --data-dir is slow to sync. Put the data directory on a local SSD, away from other write-heavy processes; every write waits for this sync on a majority of nodes.",
            "snapshot" => "- snapshot: snapshots take long with this keyspace. Raise --snapshot-entries / --snapshot-log-bytes so they come less often.",
            "command" => "- command: slow commands; SLOWLOG GET shows which. Commands over large collections (KEYS, SMEMBERS, LRANGE 0 -1 on big values) cost in proportion to their size.",
            "fast-command" => "- fast-command: commands that should be O(1) were slow: check the raft round trip (concord_peer_round_trip_seconds) and the WAL fsync time.",
            _ => continue,
        };
        out.push_str(advice);
        out.push('\n');
    }
    out
}

/// LATENCY HISTOGRAM: per command, its calls and the cumulative count of
/// calls at most 2^i µs, from the first bucket with a call to the last.
fn histogram(names: &[Bytes], shared: &Shared) -> Reply {
    if shared
        .params
        .read()
        .expect("params lock")
        .get("latency-tracking")
        .is_some_and(|v| v == "no")
    {
        return Reply::Map(Vec::new());
    }
    let wanted: Vec<&'static str> = if names.is_empty() {
        shared
            .stats
            .calls
            .called()
            .into_iter()
            .filter(|c| c.1 > 0)
            .map(|c| c.0)
            .collect()
    } else {
        names
            .iter()
            .filter_map(|n| {
                let lower = String::from_utf8_lossy(n).to_ascii_lowercase();
                crate::command::all()
                    .flat_map(|s| std::iter::once(s).chain(s.subcommands.iter()))
                    .find(|s| s.name == lower)
                    .map(|s| s.name)
            })
            .collect()
    };
    let mut out = Vec::new();
    for name in wanted {
        let Some(stat) = shared.stats.calls.get(name) else {
            continue;
        };
        let calls = stat.calls.load(Ordering::Relaxed);
        if calls == 0 {
            continue;
        }
        let counts = stat.latency.counts();
        let first = counts.iter().position(|n| *n > 0).unwrap_or(0);
        let last = counts.iter().rposition(|n| *n > 0).unwrap_or(0);
        let mut total = counts[..first].iter().sum::<u64>();
        let buckets = (first..=last)
            .map(|i| {
                total += counts[i];
                (Reply::Int(1i64 << i.min(62)), Reply::Int(total as i64))
            })
            .collect();
        out.push((
            bulk(name),
            Reply::Map(vec![
                (bulk("calls"), Reply::Int(calls as i64)),
                (bulk("histogram_usec"), Reply::Map(buckets)),
            ]),
        ));
    }
    Reply::Map(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry never shares the buffer its arguments were parsed from.
    #[test]
    fn entries_do_not_hold_the_read_buffer() {
        let spec = crate::command::lookup(b"set").unwrap();
        let buffer = Bytes::from(vec![b'k'; 1 << 20]);
        let argv = vec![
            Bytes::from("SET"),
            buffer.slice(10..20),
            buffer.slice(30..40),
        ];
        let range = buffer.as_ptr_range();
        for arg in kept_args(spec, &argv) {
            assert!(
                !range.contains(&arg.as_ptr()),
                "an argument points into the buffer"
            );
        }
    }

    #[test]
    fn entries_keep_32_arguments_of_128_bytes_and_no_secrets() {
        let spec = crate::command::lookup(b"rpush").unwrap();
        let argv: Vec<Bytes> = (0..40)
            .map(|i| {
                Bytes::from(if i == 2 {
                    "x".repeat(200)
                } else {
                    i.to_string()
                })
            })
            .collect();
        let kept = kept_args(spec, &argv);
        assert_eq!(kept.len(), 32);
        assert_eq!(kept[31], Bytes::from("... (9 more arguments)"));
        assert!(kept[2].ends_with(b"... (72 more bytes)"));
        assert_eq!(kept[2].len(), 128 + "... (72 more bytes)".len());

        let auth = crate::command::lookup(b"auth").unwrap();
        let kept = kept_args(
            auth,
            &[Bytes::from("AUTH"), Bytes::from("u"), Bytes::from("p")],
        );
        assert_eq!(kept[1], Bytes::from("(redacted)"));
        assert_eq!(kept[2], Bytes::from("(redacted)"));
        let hello = crate::command::lookup(b"hello").unwrap();
        let argv: Vec<Bytes> = ["HELLO", "3", "AUTH", "u", "p", "SETNAME", "n"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        let kept = kept_args(hello, &argv);
        assert_eq!(&kept[3][..], b"(redacted)");
        assert_eq!(&kept[4][..], b"(redacted)");
        assert_eq!(&kept[6][..], b"n");
    }
}
