//! What a node exports on `/metrics`, declared once here.
//!
//! Two kinds of series, told apart by who updates them:
//!
//! - **Live** series are updated where the event happens: a WAL fsync, an
//!   apply batch, a snapshot, a proposal, a peer's bytes and heartbeat
//!   round trips. They are `prometheus-client` counters and histograms,
//!   fields of [`Metrics`], shared by the WAL thread, the driver and the
//!   transport.
//! - **Scraped** series are values the node already keeps (raft status,
//!   connection counts, per-command counters) or computes on demand (the
//!   process's CPU and memory, the mesh series derived from the replicated
//!   state). Keeping a second copy of them up to date would cost on every
//!   command; instead the admin port fills a [`Scrape`] when it is asked
//!   and a collector encodes it. Every scraped name is declared in
//!   [`CATALOG`], with its type and help: a name missing from it is a bug
//!   caught by the tests (`debug_assert`).
//!
//! `prometheus-client` (the Prometheus project's own Rust client) was chosen
//! over `metrics` + its exporter for its collectors: the mesh series are
//! families whose label sets come and go with the state (a breaker deleted
//! is a series gone), which a collector encodes from the state as it is at
//! scrape time, with no stale series to expire.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// A series labelled by the peer node's id.
pub type PeerLabel = [(&'static str, u64); 1];
/// A series labelled by why something failed.
pub type ReasonLabel = [(&'static str, &'static str); 1];

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets for durations from 100 µs to 10 s (fsync, apply, round trips).
fn duration_buckets() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        5.0, 10.0,
    ])
}

/// Buckets for snapshots: 1 ms to 5 minutes.
fn snapshot_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}

/// The node's metrics: the live series, and the registry that renders them
/// with the scraped ones.
pub struct Metrics {
    registry: Registry,
    /// LATENCY's events (wal-fsync, snapshot, command, fast-command).
    pub latency: LatencyMonitor,
    /// What the scrape in progress filled; one scrape at a time.
    scrape: Arc<Mutex<Scrape>>,
    pub leader_changes: Counter,
    pub proposals: Counter,
    pub proposals_failed: Family<ReasonLabel, Counter>,
    pub apply_duration: Histogram,
    pub snapshot_duration: Histogram,
    pub fsync_duration: Histogram,
    pub peer_round_trip: HistogramFamily<PeerLabel>,
    pub peer_sent_bytes: Family<PeerLabel, Counter>,
    pub peer_received_bytes: Family<PeerLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let scrape = Arc::new(Mutex::new(Scrape::default()));
        let mut m = Metrics {
            registry: Registry::default(),
            latency: LatencyMonitor::default(),
            scrape: scrape.clone(),
            leader_changes: Counter::default(),
            proposals: Counter::default(),
            proposals_failed: Family::default(),
            apply_duration: duration_buckets(),
            snapshot_duration: snapshot_buckets(),
            fsync_duration: duration_buckets(),
            peer_round_trip: Family::new_with_constructor(duration_buckets),
            peer_sent_bytes: Family::default(),
            peer_received_bytes: Family::default(),
        };
        let r = &mut m.registry;
        r.register(
            "concord_raft_leader_changes",
            "Times this node saw the leader change to another node",
            m.leader_changes.clone(),
        );
        r.register(
            "concord_raft_proposals",
            "Log entries this node proposed as leader",
            m.proposals.clone(),
        );
        r.register(
            "concord_raft_proposals_failed",
            "Writes that failed: dropped (no leader to take them) or unknown (the leader may or may not have applied them)",
            m.proposals_failed.clone(),
        );
        r.register(
            "concord_raft_apply_duration_seconds",
            "Time to apply one batch of committed entries",
            m.apply_duration.clone(),
        );
        r.register(
            "concord_snapshot_duration_seconds",
            "Time to encode and save a snapshot",
            m.snapshot_duration.clone(),
        );
        r.register(
            "concord_wal_fsync_duration_seconds",
            "Time of one WAL fdatasync (one group commit)",
            m.fsync_duration.clone(),
        );
        r.register(
            "concord_peer_round_trip_seconds",
            "Leader heartbeat to the peer's answer, as the driver sees it",
            m.peer_round_trip.clone(),
        );
        r.register(
            "concord_peer_sent_bytes",
            "Bytes written to the peer's link",
            m.peer_sent_bytes.clone(),
        );
        r.register(
            "concord_peer_received_bytes",
            "Bytes read from the peer's link",
            m.peer_received_bytes.clone(),
        );
        r.register_collector(Box::new(ScrapeCollector(scrape)));
        // Every reason shows from the start, at 0: a rate over a series
        // that appears only with its first failure would miss it.
        for reason in ["dropped", "unknown"] {
            let _ = m.proposals_failed.get_or_create(&[("reason", reason)]);
        }
        m
    }

    /// Renders every series in Prometheus text format (0.0.4), after `fill`
    /// put the scraped values in place.
    pub fn render(&self, fill: impl FnOnce(&mut Scrape)) -> String {
        let mut scrape = self.scrape.lock().unwrap_or_else(|e| e.into_inner());
        *scrape = Scrape::default();
        fill(&mut scrape);
        process(&mut scrape);
        drop(scrape);
        let mut out = String::new();
        // Only a formatting error of a `String` could fail, and it cannot.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    pub fn failed(&self, reason: &'static str) {
        self.proposals_failed
            .get_or_create(&[("reason", reason)])
            .inc();
    }
}

/// How a scraped series is typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// One scraped series' declaration. Counter names are given without the
/// `_total` the encoder appends.
pub struct Desc {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

const fn gauge(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        kind: Kind::Gauge,
        help,
    }
}

const fn counter(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        kind: Kind::Counter,
        help,
    }
}

const fn histogram(name: &'static str, help: &'static str) -> Desc {
    Desc {
        name,
        kind: Kind::Histogram,
        help,
    }
}

/// Every scraped series, in the order they are rendered.
pub const CATALOG: &[Desc] = &[
    gauge("concord_raft_has_leader", "1 when this node knows a leader"),
    gauge("concord_raft_is_leader", "1 on the leader"),
    gauge("concord_raft_leader_id", "The leader's node id, 0 if none is known"),
    gauge("concord_raft_term", "Current raft term"),
    gauge("concord_raft_commit_index", "Highest log index known committed"),
    gauge("concord_raft_applied_index", "Highest log index applied to the state"),
    gauge("concord_raft_snapshot_index", "Index of the newest snapshot"),
    gauge(
        "concord_raft_proposals_pending",
        "Proposals in the log not yet applied, and writes waiting for a leader or relayed to it",
    ),
    counter("concord_snapshots", "Snapshots taken"),
    counter("concord_wal_fsyncs", "WAL group commits that synced"),
    counter("concord_wal_records", "WAL records written"),
    counter("concord_wal_bytes", "WAL bytes written"),
    gauge("concord_keys", "Keys in the keyspace"),
    gauge("concord_keys_volatile", "Keys with a deadline"),
    counter("concord_commands_processed", "Commands processed"),
    counter("concord_connections", "Client connections accepted"),
    gauge("concord_connected_clients", "Open client connections"),
    counter(
        "concord_protocol_errors",
        "Connections closed for protocol errors",
    ),
    counter("concord_command_calls", "Calls of a command that ran"),
    counter("concord_command_failed", "Calls of a command that answered an error"),
    counter(
        "concord_command_rejected",
        "Calls refused before running (arity, NOAUTH, NOPERM)",
    ),
    histogram(
        "concord_command_duration_seconds",
        "From handing a command's batch to the raft driver until the batch was answered",
    ),
    counter("concord_error_replies", "Error replies by error code"),
    counter("process_cpu_seconds", "User and system CPU time spent"),
    gauge("process_resident_memory_bytes", "Resident memory size"),
    gauge("process_virtual_memory_bytes", "Virtual memory size"),
    gauge("process_open_fds", "Open file descriptors"),
    gauge("process_max_fds", "Limit of open file descriptors"),
    gauge("process_threads", "Threads of the process"),
    gauge(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch",
    ),
    gauge(
        "concord_breaker_state",
        "A circuit breaker's state: 0 closed, 1 open, 2 half-open (the same on every node)",
    ),
    counter(
        "concord_breaker_transitions",
        "A breaker's changes of state, by the state it went to (applied on this node since it started)",
    ),
    gauge("concord_registry_instances", "Instances registered for a service"),
    gauge(
        "concord_registry_instances_healthy",
        "Instances of a service that are healthy",
    ),
    gauge(
        "concord_registry_instance_healthy",
        "1 when an instance is healthy, 0 when not",
    ),
    counter(
        "concord_registry_health_transitions",
        "An instance's health flips, by the health it turned to (applied on this node since it started)",
    ),
    gauge(
        "concord_registry_check_latency_seconds",
        "How long an instance's health check's last recorded probe took",
    ),
    counter(
        "concord_registry_picks",
        "Instances picked for a service, by strategy",
    ),
    counter(
        "concord_ratelimit_allowed",
        "Rate-limit acquisitions allowed, by class (the key up to its last ':')",
    ),
    counter(
        "concord_ratelimit_denied",
        "Rate-limit acquisitions denied, by class (the key up to its last ':')",
    ),
    counter("concord_lock_grants", "Locks granted"),
    counter("concord_lock_waits", "Lock requests that had to wait"),
    counter(
        "concord_lock_fenced_writes",
        "LOCK.GUARD writes, applied or refused for a stale token",
    ),
    gauge("concord_locks_held", "Locks held now"),
    gauge("concord_queue_jobs", "Jobs of a queue by state: ready, inflight, delayed, dead"),
    gauge("concord_sessions_live", "Sessions alive"),
    counter("concord_sessions_expired", "Sessions that expired"),
];

/// A scraped value.
#[derive(Clone, Debug)]
pub enum Value {
    Number(f64),
    /// Observations per bucket by upper bound (the last one +Inf; the
    /// encoder makes them cumulative), their sum and their count.
    Histogram {
        buckets: Vec<(f64, u64)>,
        sum: f64,
        count: u64,
    },
}

/// A sample's labels, in order.
pub type Labels = Vec<(&'static str, String)>;

/// The scraped series of one render, by name.
#[derive(Default, Debug)]
pub struct Scrape {
    series: BTreeMap<&'static str, Vec<(Labels, Value)>>,
}

impl Scrape {
    /// Sets an unlabelled series.
    pub fn set(&mut self, name: &'static str, value: f64) {
        self.labelled(name, Vec::new(), Value::Number(value));
    }

    /// Adds one labelled sample of series `name`.
    pub fn labelled(&mut self, name: &'static str, labels: Labels, value: Value) {
        debug_assert!(
            CATALOG.iter().any(|d| d.name == name),
            "{name} is not declared in metrics::CATALOG"
        );
        self.series.entry(name).or_default().push((labels, value));
    }
}

#[derive(Debug)]
struct ScrapeCollector(Arc<Mutex<Scrape>>);

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let scrape = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for desc in CATALOG {
            let Some(samples) = scrape.series.get(desc.name) else {
                continue;
            };
            let kind = match desc.kind {
                Kind::Gauge => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut metric = encoder.encode_descriptor(desc.name, desc.help, None, kind)?;
            for (labels, value) in samples {
                let mut family = metric.encode_family(labels)?;
                match (desc.kind, value) {
                    (Kind::Gauge, Value::Number(v)) => ConstGauge::new(*v).encode(family)?,
                    (Kind::Counter, Value::Number(v)) => ConstCounter::new(*v).encode(family)?,
                    (
                        Kind::Histogram,
                        Value::Histogram {
                            buckets,
                            sum,
                            count,
                        },
                    ) => family.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?,
                    _ => debug_assert!(false, "{} got a value of the wrong kind", desc.name),
                }
            }
        }
        Ok(())
    }
}

/// The process series, from `/proc/self` (Linux); absent elsewhere.
fn process(scrape: &mut Scrape) {
    // Clock ticks per second and page size, as the kernel reports them.
    // SAFETY: sysconf only reads configuration values.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // The fields after the command name, which is in parentheses and may
        // hold spaces: state is field 3, utime 14, stime 15, threads 20,
        // starttime 22, vsize 23, rss 24.
        if let Some((_, rest)) = stat.rsplit_once(") ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i - 3).and_then(|s| s.parse::<f64>().ok());
            if let (Some(u), Some(s)) = (num(14), num(15)) {
                if ticks > 0 {
                    scrape.set("process_cpu_seconds", (u + s) / ticks as f64);
                }
            }
            if let Some(t) = num(20) {
                scrape.set("process_threads", t);
            }
            if let Some(v) = num(23) {
                scrape.set("process_virtual_memory_bytes", v);
            }
            if let Some(r) = num(24) {
                scrape.set("process_resident_memory_bytes", r * page as f64);
            }
            if let (Some(start), Some(boot)) = (num(22), boot_time()) {
                if ticks > 0 {
                    scrape.set("process_start_time_seconds", boot + start / ticks as f64);
                }
            }
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        scrape.set("process_open_fds", dir.count() as f64);
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        scrape.set("process_max_fds", limit.rlim_cur as f64);
    }
}

/// The system's boot time (`btime` of /proc/stat), in seconds.
fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|s| s.trim().parse().ok())
}

/// A histogram of power-of-two microsecond buckets ([`LatencyBuckets`]),
/// in seconds for Prometheus.
pub fn micros_histogram(counts: &[u64], sum_micros: u64) -> Value {
    let buckets = counts
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let bound = if i + 1 == counts.len() {
                f64::INFINITY
            } else {
                (1u64 << i) as f64 / 1e6
            };
            (bound, *n)
        })
        .collect();
    Value::Histogram {
        buckets,
        sum: sum_micros as f64 / 1e6,
        count: counts.iter().sum(),
    }
}

/// A lock-free latency histogram for hot paths: bucket `i` counts
/// durations of at most 2^i µs (the last one everything longer), the
/// buckets Redis's LATENCY HISTOGRAM reports.
pub struct LatencyBuckets([std::sync::atomic::AtomicU64; LATENCY_BUCKETS]);

/// 1 µs to 2^24 µs (16.8 s), then the rest.
pub const LATENCY_BUCKETS: usize = 26;

impl Default for LatencyBuckets {
    fn default() -> Self {
        LatencyBuckets(std::array::from_fn(|_| Default::default()))
    }
}

impl LatencyBuckets {
    pub fn record(&self, micros: u64) {
        let i = if micros <= 1 {
            0
        } else {
            (64 - (micros - 1).leading_zeros() as usize).min(LATENCY_BUCKETS - 1)
        };
        self.0[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts per bucket (not cumulative).
    pub fn counts(&self) -> [u64; LATENCY_BUCKETS] {
        std::array::from_fn(|i| self.0[i].load(std::sync::atomic::Ordering::Relaxed))
    }

    pub fn reset(&self) {
        for b in &self.0 {
            b.store(0, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Redis's latency monitor: for each event, the worst duration of every
/// second it went over `latency-monitor-threshold` (the latest
/// [`LatencyMonitor::SAMPLES`] such seconds), and the worst ever. Off at
/// threshold 0, as in Redis; cheap when off (one atomic load).
#[derive(Default)]
pub struct LatencyMonitor {
    threshold_ms: std::sync::atomic::AtomicU64,
    events: Mutex<BTreeMap<&'static str, LatencySeries>>,
}

/// One event's history: (unix seconds, worst ms that second), oldest
/// first; the worst ever.
#[derive(Clone, Debug, Default)]
pub struct LatencySeries {
    pub samples: std::collections::VecDeque<(u64, u64)>,
    pub max_ms: u64,
}

impl LatencyMonitor {
    /// Samples kept per event, as Redis keeps.
    pub const SAMPLES: usize = 160;

    pub fn set_threshold_ms(&self, ms: u64) {
        self.threshold_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn threshold_ms(&self) -> u64 {
        self.threshold_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// An occurrence of `event` that took `duration`: kept if it reached
    /// the threshold.
    pub fn record(&self, event: &'static str, duration: std::time::Duration) {
        let threshold = self.threshold_ms();
        let ms = duration.as_millis() as u64;
        if threshold == 0 || ms < threshold {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let series = events.entry(event).or_default();
        series.max_ms = series.max_ms.max(ms);
        match series.samples.back_mut() {
            Some((at, worst)) if *at == now => *worst = (*worst).max(ms),
            _ => {
                series.samples.push_back((now, ms));
                if series.samples.len() > Self::SAMPLES {
                    series.samples.pop_front();
                }
            }
        }
    }

    /// Every event with its history.
    pub fn events(&self) -> BTreeMap<&'static str, LatencySeries> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets the named events (all with none named); how many there were.
    pub fn reset(&self, names: &[String]) -> usize {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if names.is_empty() {
            let n = events.len();
            events.clear();
            return n;
        }
        let before = events.len();
        events.retain(|name, _| !names.iter().any(|n| n.eq_ignore_ascii_case(name)));
        before - events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_monitor_keeps_the_worst_of_each_second_over_the_threshold() {
        let m = LatencyMonitor::default();
        m.record("wal-fsync", std::time::Duration::from_millis(50));
        assert!(m.events().is_empty(), "off at threshold 0");
        m.set_threshold_ms(10);
        m.record("wal-fsync", std::time::Duration::from_millis(5));
        m.record("wal-fsync", std::time::Duration::from_millis(20));
        m.record("wal-fsync", std::time::Duration::from_millis(15));
        let events = m.events();
        let s = &events["wal-fsync"];
        assert!(s.samples.len() <= 2);
        assert_eq!(s.max_ms, 20);
        assert!(s.samples.iter().any(|(_, ms)| *ms == 20));
        assert_eq!(m.reset(&["WAL-FSYNC".into()]), 1);
        assert!(m.events().is_empty());
    }

    #[test]
    fn latency_buckets_hold_powers_of_two_micros() {
        let b = LatencyBuckets::default();
        for us in [0, 1, 2, 3, 4, 5, 1000, 1024, 1025, u64::MAX] {
            b.record(us);
        }
        let c = b.counts();
        assert_eq!(c[0], 2); // 0 and 1
        assert_eq!(c[1], 1); // 2
        assert_eq!(c[2], 2); // 3, 4
        assert_eq!(c[3], 1); // 5
        assert_eq!(c[10], 2); // 1000, 1024
        assert_eq!(c[11], 1); // 1025
        assert_eq!(c[LATENCY_BUCKETS - 1], 1);
    }

    #[test]
    fn a_render_has_live_scraped_and_process_series() {
        let m = Metrics::new();
        m.leader_changes.inc();
        m.fsync_duration.observe(0.002);
        m.peer_sent_bytes.get_or_create(&[("peer", 2)]).inc_by(10);
        let text = m.render(|s| {
            s.set("concord_raft_term", 7.0);
            s.labelled(
                "concord_breaker_state",
                vec![("breaker", "pay\"ments".into())],
                Value::Number(1.0),
            );
            let b = LatencyBuckets::default();
            b.record(3);
            s.labelled(
                "concord_command_duration_seconds",
                vec![("command", "get".into())],
                micros_histogram(&b.counts(), 3),
            );
        });
        for line in [
            "concord_raft_leader_changes_total 1",
            "concord_wal_fsync_duration_seconds_count 1",
            "concord_peer_sent_bytes_total{peer=\"2\"} 10",
            "concord_raft_term 7.0",
            "concord_breaker_state{breaker=\"pay\\\"ments\"} 1",
            "concord_command_duration_seconds_bucket{command=\"get\",le=\"4e-06\"} 1",
            "concord_command_duration_seconds_bucket{command=\"get\",le=\"+Inf\"} 1",
            "concord_command_duration_seconds_count{command=\"get\"} 1",
            "# TYPE process_cpu_seconds_total counter",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }
}
