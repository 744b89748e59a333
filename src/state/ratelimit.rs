//! Rate limits: fixed window, sliding log and token bucket (GCRA).
//!
//! A decision is one replicated write, so it is exact however many clients
//! on however many nodes ask at once: every replica counts the same
//! requests at the same entry times. Each answer is four integers, as
//! redis-cell's `CL.THROTTLE` gives them: allowed (1/0), remaining, the
//! milliseconds until a denied request of the same cost would be allowed
//! (-1 when allowed), and the milliseconds until the limiter is back to its
//! initial state (nothing counted, bucket full).
//!
//! A key remembers the algorithm, limit and window it was last used with;
//! asking with different ones starts the key afresh, so a deploy that
//! changes a limit never inherits counts measured against the old one.
//!
//! A limiter that is back to its initial state is indistinguishable from a
//! missing one, so a `Timer::Limiter` forgets it at exactly that time:
//! idle keys cost no memory.
//!
//! No floats anywhere: the token bucket counts time in units of
//! `1/limit` ms (u128), in which one token takes exactly `window` units to
//! refill, so every replica computes the same answers bit for bit.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU64;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::timers::Timer;
use super::{OpResult, Outcome, State};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// A count per window, windows aligned to multiples of the window on
    /// the state's clock.
    Fixed,
    /// Every accepted request of the last window, with its cost.
    Sliding,
    /// A token bucket of `limit` tokens refilling `limit` per window.
    Bucket,
}

/// How a key is limited; validated by the command layer (limit and cost
/// positive, cost at most limit, window positive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub algorithm: Algorithm,
    pub limit: NonZeroU64,
    pub window_ms: NonZeroU64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RateLimitOp {
    /// Outcome: [allowed, remaining, retry-after-ms, reset-after-ms].
    Acquire { key: Bytes, limit: Limit, cost: u64 },
    /// Outcome: 1 if anything was counted for the key.
    Reset { key: Bytes },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RateLimitQuery {
    /// What `Acquire` would answer now, consuming nothing.
    Peek { key: Bytes, limit: Limit, cost: u64 },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limiters {
    by_key: BTreeMap<Bytes, Limiter>,
}

impl Limiters {
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// A key with something counted; removed (by its timer) at `forget_at`,
/// when nothing is counted any more.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Limiter {
    limit: Limit,
    counts: Counts,
    forget_at: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Counts {
    Fixed {
        window_start: u64,
        used: u64,
    },
    /// Accepted requests (time, cost), oldest first, one entry per time:
    /// each costs at least 1 and they sum to at most the limit, so there
    /// are never more than `limit` entries.
    Sliding {
        log: VecDeque<(u64, u64)>,
        /// The sum of the log's costs.
        used: u64,
    },
    /// The theoretical arrival time of GCRA in units of `1/limit` ms: the
    /// bucket is full from then on, and each token taken moves it
    /// `window` units later.
    Bucket {
        tat: u128,
    },
}

/// One decision, before it is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Decision {
    allowed: bool,
    remaining: u64,
    /// Set when denied.
    retry_after: Option<u64>,
    reset_after: u64,
}

impl Decision {
    fn outcome(self) -> Outcome {
        let retry = self.retry_after.map_or(-1, |ms| saturate(ms as u128));
        Outcome::Array(vec![
            Outcome::bool(self.allowed),
            Outcome::Int(saturate(self.remaining as u128)),
            Outcome::Int(retry),
            Outcome::Int(saturate(self.reset_after as u128)),
        ])
    }
}

fn saturate(value: u128) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `numerator / denominator` rounded up, as milliseconds.
fn ceil_div(numerator: u128, denominator: u128) -> u64 {
    u64::try_from(numerator.div_ceil(denominator)).unwrap_or(u64::MAX)
}

impl Counts {
    fn initial(algorithm: Algorithm) -> Counts {
        match algorithm {
            Algorithm::Fixed => Counts::Fixed {
                window_start: 0,
                used: 0,
            },
            Algorithm::Sliding => Counts::Sliding {
                log: VecDeque::new(),
                used: 0,
            },
            Algorithm::Bucket => Counts::Bucket { tat: 0 },
        }
    }

    /// Drops what no longer counts at `now` (a past window, requests older
    /// than the window), so the counts are as of `now`.
    fn age(&mut self, limit: &Limit, now: u64) {
        let window = limit.window_ms.get();
        match self {
            Counts::Fixed { window_start, used } => {
                let current = now - now % window;
                if *window_start != current {
                    *window_start = current;
                    *used = 0;
                }
            }
            Counts::Sliding { log, used } => {
                while let Some(&(at, cost)) = log.front() {
                    if at.saturating_add(window) > now {
                        break;
                    }
                    log.pop_front();
                    *used -= cost;
                }
            }
            Counts::Bucket { .. } => {}
        }
    }

    /// Decides a request of `cost` at `now` (counts aged to `now`) and, if
    /// allowed and `take`, counts it. Also returns when the counts will be
    /// back to their initial state.
    fn decide(&mut self, limit: &Limit, now: u64, cost: u64, take: bool) -> (Decision, u64) {
        let (capacity, window) = (limit.limit.get(), limit.window_ms.get());
        match self {
            Counts::Fixed { window_start, used } => {
                let window_end = window_start.saturating_add(window);
                let until_next = window_end - now;
                let allowed = used.saturating_add(cost) <= capacity;
                let after = if allowed { *used + cost } else { *used };
                if allowed && take {
                    *used = after;
                }
                let decision = Decision {
                    allowed,
                    remaining: capacity.saturating_sub(after),
                    retry_after: (!allowed).then_some(until_next),
                    reset_after: until_next,
                };
                (decision, window_end)
            }
            Counts::Sliding { log, used } => {
                let allowed = used.saturating_add(cost) <= capacity;
                let retry_after = (!allowed).then(|| {
                    // The oldest requests must leave the window until `cost` fits.
                    let mut to_free = *used + cost - capacity;
                    let mut at = now;
                    for &(time, c) in log.iter() {
                        at = time.saturating_add(window);
                        to_free = to_free.saturating_sub(c);
                        if to_free == 0 {
                            break;
                        }
                    }
                    at - now
                });
                let after = if allowed { *used + cost } else { *used };
                if allowed && take {
                    *used = after;
                    match log.back_mut() {
                        Some((at, c)) if *at == now => *c += cost,
                        _ => log.push_back((now, cost)),
                    }
                }
                let newest = if allowed {
                    Some(now)
                } else {
                    log.back().map(|&(at, _)| at)
                };
                let empty_at = newest.map_or(now, |at| at.saturating_add(window));
                let decision = Decision {
                    allowed,
                    remaining: capacity.saturating_sub(after),
                    retry_after,
                    reset_after: empty_at - now,
                };
                (decision, empty_at)
            }
            Counts::Bucket { tat } => {
                let units_per_ms = capacity as u128;
                let now_units = now as u128 * units_per_ms;
                let token = window as u128;
                let full = token * units_per_ms;
                let start = (*tat).max(now_units);
                let new_tat = start + token * cost as u128;
                let allowed = new_tat - now_units <= full;
                let after = if allowed { new_tat } else { start };
                if allowed && take {
                    *tat = new_tat;
                }
                let missing = after - now_units;
                let decision = Decision {
                    allowed,
                    remaining: u64::try_from(full.saturating_sub(missing) / token)
                        .unwrap_or(u64::MAX),
                    retry_after: (!allowed)
                        .then(|| ceil_div(new_tat - full - now_units, units_per_ms)),
                    reset_after: ceil_div(missing, units_per_ms),
                };
                (decision, ceil_div(after, units_per_ms))
            }
        }
    }
}

pub fn apply(state: &mut State, now: u64, op: &RateLimitOp) -> OpResult {
    match op {
        RateLimitOp::Acquire { key, limit, cost } => {
            let coord = &mut state.coord;
            let old = coord.limiters.by_key.remove(key);
            let (mut counts, old_deadline) = match old {
                Some(l) if l.limit == *limit => (l.counts, Some(l.forget_at)),
                other => (Counts::initial(limit.algorithm), other.map(|l| l.forget_at)),
            };
            counts.age(limit, now);
            let (decision, forget_at) = counts.decide(limit, now, *cost, true);
            let timer = Timer::Limiter(key.clone());
            if forget_at > now {
                coord.limiters.by_key.insert(
                    key.clone(),
                    Limiter {
                        limit: *limit,
                        counts,
                        forget_at,
                    },
                );
                coord
                    .timers
                    .reschedule(timer, old_deadline, Some(forget_at));
            } else {
                coord.timers.reschedule(timer, old_deadline, None);
            }
            state.mesh.rate_limit(key, decision.allowed);
            Ok(decision.outcome())
        }
        RateLimitOp::Reset { key } => {
            let coord = &mut state.coord;
            let Some(limiter) = coord.limiters.by_key.remove(key) else {
                return Ok(Outcome::Int(0));
            };
            coord
                .timers
                .cancel(Timer::Limiter(key.clone()), limiter.forget_at);
            Ok(Outcome::Int(1))
        }
    }
}

pub fn read(state: &State, now: u64, query: &RateLimitQuery) -> OpResult {
    let RateLimitQuery::Peek { key, limit, cost } = query;
    let mut counts = match state.coord.limiters.by_key.get(key) {
        Some(l) if l.limit == *limit => l.counts.clone(),
        _ => Counts::initial(limit.algorithm),
    };
    counts.age(limit, now);
    let (decision, _) = counts.decide(limit, now, *cost, false);
    Ok(decision.outcome())
}

/// The limiter is back to its initial state (its timer already fired).
pub(super) fn forget(state: &mut State, key: &Bytes) {
    state.coord.limiters.by_key.remove(key);
}

/// Random sequences of requests against deliberately simple models: a map
/// of fixed windows to counts, and a token bucket that drips `limit` units
/// in per millisecond where a token is `window` units (so it needs no
/// floats either, but shares nothing with GCRA's arithmetic).
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::super::golden::Harness;
    use super::super::{Op, State};
    use crate::resp::Reply;

    const START: u64 = 1_700_000_000_007;

    type Answer = [i64; 4];

    fn answer(reply: Reply) -> Answer {
        let Reply::Array(items) = reply else {
            panic!("not an array: {reply:?}")
        };
        let ints: Vec<i64> = items
            .iter()
            .map(|r| match r {
                Reply::Int(i) => *i,
                other => panic!("not an integer: {other:?}"),
            })
            .collect();
        ints.try_into().expect("four integers")
    }

    struct Fixed {
        limit: u64,
        window: u64,
        used: BTreeMap<u64, u64>,
    }

    impl Fixed {
        fn acquire(&mut self, now: u64, cost: u64) -> Answer {
            let used = self.used.entry(now / self.window).or_default();
            let until_next = (self.window - now % self.window) as i64;
            let allowed = *used + cost <= self.limit;
            if allowed {
                *used += cost;
            }
            let retry = if allowed { -1 } else { until_next };
            [
                allowed as i64,
                (self.limit - *used) as i64,
                retry,
                until_next,
            ]
        }
    }

    struct Bucket {
        limit: u64,
        window: u64,
        units: u64,
        at: u64,
    }

    impl Bucket {
        fn acquire(&mut self, now: u64, cost: u64) -> Answer {
            let full = self.limit * self.window;
            self.units = full.min(self.units + (now - self.at) * self.limit);
            self.at = now;
            let needed = cost * self.window;
            let allowed = self.units >= needed;
            let retry = if allowed {
                -1
            } else {
                (needed - self.units).div_ceil(self.limit) as i64
            };
            if allowed {
                self.units -= needed;
            }
            let remaining = (self.units / self.window) as i64;
            let reset = (full - self.units).div_ceil(self.limit) as i64;
            [allowed as i64, remaining, retry, reset]
        }
    }

    /// Runs the steps as PEEK then ACQUIRE at each time; checks that they
    /// agree and returns (time, cost, answer) of every ACQUIRE.
    fn run(
        harness: &mut Harness,
        algorithm: &str,
        limit: u64,
        window: u64,
        steps: &[(u64, u64)],
    ) -> Vec<(u64, u64, Answer)> {
        let mut out = Vec::new();
        for &(advance, cost) in steps {
            harness.now += advance;
            let cost = cost.min(limit);
            let args = format!("k {algorithm} {limit} {window} COST {cost}");
            let peek = answer(harness.run_line(&format!("RATELIMIT.PEEK {args}")));
            let acquired = answer(harness.run_line(&format!("RATELIMIT.ACQUIRE {args}")));
            assert_eq!(peek, acquired, "PEEK foretold ACQUIRE at {}", harness.now);
            out.push((harness.now, cost, acquired));
        }
        out
    }

    /// The limiter survives a snapshot, and nothing is left of it once
    /// everything counted has run out.
    fn assert_forgotten(harness: &mut Harness, window: u64) {
        let restored = State::decode_snapshot(&harness.state.encode_snapshot());
        assert!(restored.expect("the snapshot decodes") == harness.state);
        harness.now += window;
        harness.apply(&Op::Tick).expect("tick applies");
        assert!(harness.state.coord.limiters.is_empty());
        assert!(harness.state.coord.timers.is_empty());
    }

    fn steps() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((prop_oneof![Just(0u64), 0..60u64], 1..=6u64), 1..60)
    }

    proptest! {
        #[test]
        fn fixed_windows_match_the_model(limit in 1..=6u64, window in 1..=50u64, steps in steps()) {
            let mut harness = Harness::new(START);
            let mut model = Fixed { limit, window, used: BTreeMap::new() };
            let answers = run(&mut harness, "FIXED", limit, window, &steps);
            let mut per_window: BTreeMap<u64, u64> = BTreeMap::new();
            for &(now, cost, got) in &answers {
                prop_assert_eq!(got, model.acquire(now, cost), "at {}", now);
                if got[0] == 1 {
                    *per_window.entry(now / window).or_default() += cost;
                }
            }
            prop_assert!(per_window.values().all(|&n| n <= limit));
            assert_forgotten(&mut harness, window);
        }

        #[test]
        fn buckets_match_the_model(limit in 1..=6u64, window in 1..=50u64, steps in steps()) {
            let mut harness = Harness::new(START);
            let mut model = Bucket { limit, window, units: limit * window, at: START };
            let answers = run(&mut harness, "BUCKET", limit, window, &steps);
            for &(now, cost, got) in &answers {
                prop_assert_eq!(got, model.acquire(now, cost), "at {}", now);
            }
            // Over any stretch of time, no more than a full bucket plus
            // what refilled meanwhile.
            let allowed: Vec<(u64, u64)> = answers
                .iter()
                .filter(|(_, _, a)| a[0] == 1)
                .map(|&(now, cost, _)| (now, cost))
                .collect();
            for (i, &(from, _)) in allowed.iter().enumerate() {
                let mut taken = 0;
                for &(to, cost) in &allowed[i..] {
                    taken += cost;
                    prop_assert!(taken <= limit + (to - from) * limit / window);
                }
            }
            assert_forgotten(&mut harness, window);
        }

        #[test]
        fn sliding_windows_count_exactly_the_last_window(
            limit in 1..=6u64,
            window in 1..=50u64,
            steps in steps(),
        ) {
            let mut harness = Harness::new(START);
            let answers = run(&mut harness, "SLIDING", limit, window, &steps);
            for (i, &(now, cost, got)) in answers.iter().enumerate() {
                let counted: u64 = answers[..i]
                    .iter()
                    .filter(|(at, _, a)| a[0] == 1 && at + window > now)
                    .map(|(_, cost, _)| cost)
                    .sum();
                let allowed = counted + cost <= limit;
                let after = if allowed { counted + cost } else { counted };
                prop_assert_eq!(got[0] == 1, allowed, "at {}", now);
                prop_assert_eq!(got[1], (limit - after) as i64, "at {}", now);
            }
            assert_forgotten(&mut harness, window);
        }
    }
}
