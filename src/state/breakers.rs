//! Circuit breakers shared by every instance of a service.
//!
//! A breaker is CLOSED while calls go through; `failures` failures within
//! `window_ms` open it. OPEN refuses every call until `cooldown_ms` has
//! passed since it opened; then it is HALF_OPEN and admits `probes` calls.
//! `probes` recorded successes close it; any recorded failure opens it
//! again, its cooldown starting anew.
//!
//! The passing of the cooldown needs no timer: the phase is a function of
//! the stored phase and the time, worked out by every write before it acts
//! (so the first ALLOW after the cooldown is the one that moves the breaker
//! to HALF_OPEN and takes a probe) and by reads for what they show (STATE
//! shows HALF_OPEN as soon as the cooldown has passed).
//!
//! The server cannot tell a probe's result from a straggler's, so in
//! HALF_OPEN every recorded result counts; in OPEN, results are of calls
//! made before the breaker opened and are ignored. A probe whose caller
//! died never reports: when every probe is out and another cooldown passes
//! without a verdict, the missing probes are admitted again, so a lost
//! probe cannot hold the breaker half open forever.
//!
//! Reconfiguring keeps the phase and the recorded failures (at most the
//! new threshold of them), so a shared breaker can be tuned while in use.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::timers;
use super::{OpResult, Outcome, State, StateError};

/// A breaker's settings; validated by the command layer (all positive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerConfig {
    pub failures: u64,
    pub window_ms: u64,
    pub cooldown_ms: u64,
    pub probes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BreakerOp {
    /// Outcome: OK. Creates the breaker CLOSED, or reconfigures it.
    Config { name: Bytes, config: BreakerConfig },
    /// Outcome: [allowed, phase].
    Allow { name: Bytes },
    /// Outcome: the phase after recording.
    Record { name: Bytes, success: bool },
    /// Outcome: OK; the breaker is CLOSED with nothing recorded.
    Reset { name: Bytes },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BreakerQuery {
    State { name: Bytes },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakers {
    by_name: BTreeMap<Bytes, Breaker>,
}

impl Breakers {
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Every breaker with its state at `now` as a gauge: 0 closed, 1 open,
    /// 2 half-open.
    pub fn states(&self, now: u64) -> Vec<(String, u8)> {
        self.by_name
            .iter()
            .map(|(name, b)| {
                let gauge = match b.phase_at(now) {
                    Phase::Closed => 0,
                    Phase::Open { .. } => 1,
                    Phase::HalfOpen { .. } => 2,
                };
                (super::mesh::text(name), gauge)
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Breaker {
    config: BreakerConfig,
    phase: Phase,
    /// Times of the latest failures recorded while CLOSED, oldest first;
    /// at most `config.failures` of them.
    failures: VecDeque<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    Closed,
    Open {
        opened_at: u64,
    },
    HalfOpen {
        opened_at: u64,
        probes_left: u64,
        successes: u64,
        /// When the current allowance of probes was granted.
        probing_since: u64,
    },
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Closed => "CLOSED",
            Phase::Open { .. } => "OPEN",
            Phase::HalfOpen { .. } => "HALF_OPEN",
        }
    }

    /// The state's name in metric labels.
    fn metric_name(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open { .. } => "open",
            Phase::HalfOpen { .. } => "half_open",
        }
    }

    fn outcome(self) -> Outcome {
        Outcome::Bulk(Bytes::from_static(self.name().as_bytes()))
    }
}

impl Breaker {
    fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            phase: Phase::Closed,
            failures: VecDeque::new(),
        }
    }

    fn cooldown_ends(&self, opened_at: u64) -> u64 {
        timers::deadline(opened_at, self.config.cooldown_ms)
    }

    /// The phase at `now`: OPEN becomes HALF_OPEN once the cooldown has
    /// passed; a HALF_OPEN whose probes are all out and unanswered for a
    /// cooldown admits the missing ones again.
    fn phase_at(&self, now: u64) -> Phase {
        match self.phase {
            Phase::Open { opened_at } if now >= self.cooldown_ends(opened_at) => Phase::HalfOpen {
                opened_at,
                probes_left: self.config.probes,
                successes: 0,
                // The allowance starts when a write first sees the
                // cooldown over, which may be long after it ended.
                probing_since: now,
            },
            Phase::HalfOpen {
                opened_at,
                probes_left: 0,
                successes,
                probing_since,
            } if now >= self.cooldown_ends(probing_since) => Phase::HalfOpen {
                opened_at,
                probes_left: self.config.probes.saturating_sub(successes).max(1),
                successes,
                probing_since: now,
            },
            phase => phase,
        }
    }

    /// Failures recorded within the window ending at `now`.
    fn recent_failures(&self, now: u64) -> usize {
        let window = self.config.window_ms;
        self.failures
            .iter()
            .filter(|at| at.saturating_add(window) > now)
            .count()
    }

    fn forget_old_failures(&mut self, now: u64) {
        let window = self.config.window_ms;
        while self
            .failures
            .front()
            .is_some_and(|at| at.saturating_add(window) <= now)
        {
            self.failures.pop_front();
        }
    }

    fn trim_failures(&mut self) {
        while self.failures.len() as u64 > self.config.failures {
            self.failures.pop_front();
        }
    }

    fn open(&mut self, now: u64) {
        self.phase = Phase::Open { opened_at: now };
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.failures.clear();
    }

    fn allow(&mut self) -> bool {
        match &mut self.phase {
            Phase::Closed => true,
            Phase::Open { .. } => false,
            Phase::HalfOpen { probes_left, .. } => {
                let admitted = *probes_left > 0;
                *probes_left = probes_left.saturating_sub(1);
                admitted
            }
        }
    }

    fn record(&mut self, now: u64, success: bool) {
        match &mut self.phase {
            Phase::Closed if success => {}
            Phase::Closed => {
                self.forget_old_failures(now);
                self.failures.push_back(now);
                self.trim_failures();
                if self.failures.len() as u64 >= self.config.failures {
                    self.open(now);
                }
            }
            Phase::Open { .. } => {}
            Phase::HalfOpen { successes, .. } if success => {
                *successes = successes.saturating_add(1);
                if *successes >= self.config.probes {
                    self.close();
                }
            }
            Phase::HalfOpen { .. } => self.open(now),
        }
    }
}

pub fn apply(state: &mut State, now: u64, op: &BreakerOp) -> OpResult {
    let name = match op {
        BreakerOp::Config { name, .. }
        | BreakerOp::Allow { name }
        | BreakerOp::Record { name, .. }
        | BreakerOp::Reset { name } => name,
    };
    let phase = |state: &State| {
        state
            .coord
            .breakers
            .by_name
            .get(name)
            .map(|b| b.phase.metric_name())
    };
    let before = phase(state);
    let result = apply_op(state, now, op);
    if let (Some(before), Some(after)) = (before, phase(state)) {
        if before != after {
            state.mesh.transition(name, after);
        }
    }
    result
}

fn apply_op(state: &mut State, now: u64, op: &BreakerOp) -> OpResult {
    let breakers = &mut state.coord.breakers.by_name;
    match op {
        BreakerOp::Config { name, config } => {
            let breaker = breakers
                .entry(name.clone())
                .or_insert_with(|| Breaker::new(*config));
            breaker.phase = breaker.phase_at(now);
            breaker.config = *config;
            breaker.trim_failures();
            if let Phase::HalfOpen { probes_left, .. } = &mut breaker.phase {
                *probes_left = (*probes_left).min(config.probes);
            }
            Ok(Outcome::Ok)
        }
        BreakerOp::Allow { name } => {
            let breaker = settled(breakers, name, now)?;
            let allowed = breaker.allow();
            Ok(Outcome::Array(vec![
                Outcome::bool(allowed),
                breaker.phase.outcome(),
            ]))
        }
        BreakerOp::Record { name, success } => {
            let breaker = settled(breakers, name, now)?;
            breaker.record(now, *success);
            Ok(breaker.phase.outcome())
        }
        BreakerOp::Reset { name } => {
            settled(breakers, name, now)?.close();
            Ok(Outcome::Ok)
        }
    }
}

/// The breaker `name` with its phase brought to `now`.
fn settled<'a>(
    breakers: &'a mut BTreeMap<Bytes, Breaker>,
    name: &Bytes,
    now: u64,
) -> Result<&'a mut Breaker, StateError> {
    let breaker = breakers
        .get_mut(name)
        .ok_or_else(|| no_such_breaker(name))?;
    breaker.phase = breaker.phase_at(now);
    Ok(breaker)
}

pub fn read(state: &State, now: u64, query: &BreakerQuery) -> OpResult {
    let BreakerQuery::State { name } = query;
    let breaker = state
        .coord
        .breakers
        .by_name
        .get(name)
        .ok_or_else(|| no_such_breaker(name))?;
    let phase = breaker.phase_at(now);
    let (opened_at, probes_left, cooldown_left) = match phase {
        Phase::Closed => (None, 0, 0),
        Phase::Open { opened_at } => (
            Some(opened_at),
            0,
            timers::remaining(breaker.cooldown_ends(opened_at), now),
        ),
        Phase::HalfOpen {
            opened_at,
            probes_left,
            ..
        } => (Some(opened_at), probes_left, 0),
    };
    let field = |name: &'static str| Outcome::Bulk(Bytes::from_static(name.as_bytes()));
    let int = |value: u64| Outcome::Int(i64::try_from(value).unwrap_or(i64::MAX));
    Ok(Outcome::Map(vec![
        (field("state"), phase.outcome()),
        (field("failures"), int(breaker.recent_failures(now) as u64)),
        (field("opened-at"), opened_at.map_or(Outcome::Nil, int)),
        (field("probes-left"), int(probes_left)),
        (field("cooldown-left"), int(cooldown_left)),
    ]))
}

fn no_such_breaker(name: &Bytes) -> StateError {
    StateError::NoSuchBreaker(String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::super::golden::Harness;
    use super::super::State;

    #[test]
    fn breakers_in_every_state_survive_a_snapshot() {
        let mut harness = Harness::new(1_700_000_000_000);
        for name in ["closed", "open", "half"] {
            harness.run_line(&format!(
                "BREAKER.CONFIG {name} FAILURES 2 WINDOW 1000 COOLDOWN 100 PROBES 3"
            ));
            harness.run_line(&format!("BREAKER.RECORD {name} FAILURE"));
        }
        harness.run_line("BREAKER.RECORD half FAILURE");
        harness.now += 100;
        harness.run_line("BREAKER.ALLOW half");
        harness.run_line("BREAKER.RECORD open FAILURE");
        let restored = State::decode_snapshot(&harness.state.encode_snapshot());
        let restored = restored.expect("the snapshot decodes");
        assert!(restored == harness.state);
        assert_eq!(restored.coord.breakers.len(), 3);
        assert_eq!(restored.digest(), harness.state.digest());
    }
}
