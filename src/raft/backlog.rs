//! A subscriber's backlog: the messages the driver handed to a pub/sub
//! connection and the connection has not written to its socket yet, in
//! bytes, held to the `pubsub` class of `client-output-buffer-limit`.
//!
//! The driver never waits for a connection, so a subscriber that stops
//! reading would otherwise grow its queue without bound (one stuck
//! WebSocket server behind a broadcast channel would take the node's
//! memory). The driver adds each message's size as it queues it and the
//! connection takes it off once written; the driver stops queueing for a
//! client past its hard limit, or past its soft limit for longer than the
//! soft seconds, and wakes the connection, which closes and frees the rest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::state::pubsub::{Delivery, Push};

/// One client class's limits: hard bytes, soft bytes, soft seconds; 0
/// means none. Changed at run time (`CONFIG SET`), read on every message.
#[derive(Debug, Default)]
pub struct OutputLimit {
    hard: AtomicU64,
    soft: AtomicU64,
    soft_secs: AtomicU64,
}

impl OutputLimit {
    pub fn set(&self, hard: u64, soft: u64, soft_secs: u64) {
        self.hard.store(hard, Ordering::Relaxed);
        self.soft.store(soft, Ordering::Relaxed);
        self.soft_secs.store(soft_secs, Ordering::Relaxed);
    }

    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.hard.load(Ordering::Relaxed),
            self.soft.load(Ordering::Relaxed),
            self.soft_secs.load(Ordering::Relaxed),
        )
    }

    /// Whether `bytes` is past the limit at `now_ms`, given since when the
    /// client has been over its soft limit (`soft_since_ms`, 0: it was
    /// not); returns the new `soft_since_ms` beside the verdict.
    pub fn exceeded(&self, bytes: u64, soft_since_ms: u64, now_ms: u64) -> (bool, u64) {
        let (hard, soft, secs) = self.get();
        if hard > 0 && bytes >= hard {
            return (true, soft_since_ms);
        }
        if soft == 0 || bytes < soft {
            return (false, 0);
        }
        let since = if soft_since_ms == 0 {
            now_ms.max(1)
        } else {
            soft_since_ms
        };
        (
            now_ms.saturating_sub(since) >= secs.saturating_mul(1000),
            since,
        )
    }
}

/// A subscriber connection's unwritten messages.
#[derive(Debug)]
pub struct Backlog {
    limit: Arc<OutputLimit>,
    bytes: AtomicU64,
    soft_since_ms: AtomicU64,
    overflowed: AtomicBool,
    wake: Notify,
}

impl Backlog {
    pub fn new(limit: Arc<OutputLimit>) -> Arc<Backlog> {
        Arc::new(Backlog {
            limit,
            bytes: AtomicU64::new(0),
            soft_since_ms: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    /// What a message costs while queued: its names and payload, and
    /// about what its push frame and bookkeeping add.
    pub fn cost_of(delivery: &Delivery) -> u64 {
        let names = match &delivery.push {
            Push::Message { channel } | Push::SMessage { channel } => channel.len(),
            Push::PMessage { pattern, channel } => pattern.len() + channel.len(),
        };
        (names + delivery.payload.len() + 48) as u64
    }

    /// Queues `n` more bytes (the driver): false when this puts the client
    /// past its limit, in which case it is marked and woken to close, and
    /// nothing more may be queued for it.
    pub fn queue(&self, n: u64, now_ms: u64) -> bool {
        if self.overflowed.load(Ordering::Relaxed) {
            return false;
        }
        let bytes = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        let (over, since) =
            self.limit
                .exceeded(bytes, self.soft_since_ms.load(Ordering::Relaxed), now_ms);
        self.soft_since_ms.store(since, Ordering::Relaxed);
        if over {
            self.overflowed.store(true, Ordering::Relaxed);
            self.wake.notify_one();
        }
        !over
    }

    /// `n` queued bytes were written to the client (the connection).
    /// Back under the soft limit, the soft limit's clock stops: a client
    /// that keeps up is never closed for having been over it once.
    pub fn written(&self, n: u64) {
        let before = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(n))
            })
            .unwrap_or(0);
        let (_, soft, _) = self.limit.get();
        if before.saturating_sub(n) < soft {
            self.soft_since_ms.store(0, Ordering::Relaxed);
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn is_overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Resolves once the client went past its limit.
    pub async fn overflowed(&self) {
        loop {
            let woken = self.wake.notified();
            if self.is_overflowed() {
                return;
            }
            woken.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hard_limit_at_once_soft_limit_after_its_seconds() {
        let limit = Arc::new(OutputLimit::default());
        limit.set(1000, 100, 2);
        let b = Backlog::new(limit.clone());
        assert!(b.queue(50, 10_000));
        assert!(b.queue(60, 10_000), "over soft, for 0 s");
        assert!(b.queue(10, 11_999), "over soft, for 1.999 s");
        b.written(100);
        assert!(b.queue(10, 12_500), "back under soft: the clock restarts");
        b.written(30);
        assert!(
            b.queue(300, 14_000),
            "drained, then over soft again: from 14 s"
        );
        assert!(b.queue(1, 15_500));
        b.written(301);
        b.written(0);
        assert!(b.queue(200, 13_000));
        assert!(!b.queue(1, 15_000), "over soft for 2 s");
        assert!(b.is_overflowed());
        assert!(!b.queue(1, 15_000));

        let b = Backlog::new(limit);
        assert!(!b.queue(1000, 1), "the hard limit at once");
    }

    #[test]
    fn zero_means_no_limit() {
        let b = Backlog::new(Arc::new(OutputLimit::default()));
        assert!(b.queue(u64::MAX / 2, 1));
        assert!(b.queue(1, u64::MAX / 2));
    }
}
