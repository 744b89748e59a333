//! The leader's side of registry health checks: which node probes which
//! check (see `state::checks`).
//!
//! The leader knows which nodes answer it: every message from a peer is
//! noted here, and a peer heard from within two election timeouts is live.
//! Checks whose owner is not live (or that have none yet) are given to live
//! nodes through the log; one assignment is in flight at a time, and the
//! next is decided from the state it left.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::state::State;

pub(crate) struct CheckOwners {
    /// When each peer was last heard from.
    last_heard: HashMap<u64, Instant>,
    /// The log index of the assignment proposed and not yet applied.
    pub(crate) in_flight: super::one_in_flight::OneInFlight,
    /// Not before: assignments are looked at once per tick.
    next_look: Instant,
    /// The term this node last looked as leader in.
    term: u64,
}

impl CheckOwners {
    pub(crate) fn new() -> Self {
        CheckOwners {
            last_heard: HashMap::new(),
            in_flight: Default::default(),
            next_look: Instant::now(),
            term: 0,
        }
    }

    /// A message from `peer` arrived.
    pub(crate) fn heard(&mut self, peer: u64, now: Instant) {
        self.last_heard.insert(peer, now);
    }

    /// The assignments to propose now, if any: `me` and the `voters` heard
    /// from within `live_for` are live. Only the leader asks, in `term`.
    ///
    /// In a term it has just won, a leader has heard as a follower only
    /// from the old leader and from the voters that answered it first:
    /// every voter then starts as heard from now, and one that is really
    /// gone shows it within `live_for`. Without that, every leader change
    /// would move the checks of a node whose vote came late.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn due(
        &mut self,
        state: &State,
        me: u64,
        term: u64,
        voters: &[u64],
        now: Instant,
        live_for: Duration,
        tick: Duration,
    ) -> Option<Vec<(Bytes, Bytes, u64)>> {
        if term != self.term {
            self.term = term;
            for id in voters {
                self.last_heard.insert(*id, now);
            }
        }
        if self.in_flight.is_pending() || now < self.next_look {
            return None;
        }
        self.next_look = now + tick;
        let mut live: Vec<u64> = voters
            .iter()
            .copied()
            .filter(|id| {
                *id == me
                    || self
                        .last_heard
                        .get(id)
                        .is_some_and(|at| now.duration_since(*at) <= live_for)
            })
            .collect();
        if !live.contains(&me) {
            live.push(me);
        }
        let moves = state.check_assignments(&live);
        (!moves.is_empty()).then_some(moves)
    }
}
