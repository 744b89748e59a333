//! The leader's side of `maxmemory`: when the dataset is over the limit,
//! pick victims and propose their deletion through the log.
//!
//! The dataset's size is the state's own deterministic figure
//! ([`crate::state::State::dataset_bytes`]), so whichever node leads sees
//! the same number. The victims depend on this node's access records and
//! random draws (see [`crate::state::evict`]); that is why only the leader
//! picks, and the replicas apply what it picked. One eviction proposal is
//! in flight at a time: the next is decided from the state it left.

use bytes::Bytes;

use crate::state::db::SeededRng;
use crate::state::evict::{Policy, Pool};
use crate::state::memory::AccessMode;
use crate::state::State;

use super::MemoryLimit;

/// Below the limit by this much (at most [`HEADROOM_MAX`]) once an eviction
/// round is done, so that a stream of writes is met by evictions in batches
/// rather than one per write.
const HEADROOM_FRACTION: u64 = 64;
const HEADROOM_MAX: u64 = 1 << 20;

pub(crate) struct Eviction {
    /// The log index of the eviction proposed and not yet applied.
    pub(crate) in_flight: super::one_in_flight::OneInFlight,
    pool: Pool,
    rng: SeededRng,
    /// The access mode last handed to the state.
    mode: AccessMode,
    policy: Policy,
}

impl Eviction {
    pub(crate) fn new(seed: u64) -> Self {
        Eviction {
            in_flight: Default::default(),
            pool: Pool::default(),
            rng: SeededRng::new(seed),
            mode: AccessMode::default(),
            policy: Policy::NoEviction,
        }
    }

    /// Brings the state's access recording in line with this node's
    /// settings; every turn, on every node (a cheap comparison).
    pub(crate) fn sync(&mut self, limit: &MemoryLimit, state: &mut State) {
        let mode = limit.access_mode();
        if mode != self.mode {
            self.mode = mode;
            state.set_access_mode(mode);
        }
        let policy = limit.policy();
        if policy != self.policy {
            self.policy = policy;
            self.pool.clear();
        }
    }

    /// The state was replaced (a leader's snapshot): its entries carry no
    /// access records of this node, and the pool names keys of the old one.
    pub(crate) fn state_replaced(&mut self, state: &mut State) {
        state.set_access_mode(self.mode);
        self.pool.clear();
    }

    /// The keys to evict now, if the dataset is over the limit and no
    /// eviction is in flight. Only the leader asks.
    pub(crate) fn due(
        &mut self,
        limit: &MemoryLimit,
        state: &State,
        now_ms: u64,
    ) -> Option<Vec<(u32, Bytes)>> {
        if self.in_flight.is_pending() {
            return None;
        }
        let max = limit.max_bytes();
        let used = state.dataset_bytes();
        if max == 0 || used <= max || self.policy == Policy::NoEviction {
            return None;
        }
        let need = used - max + (max / HEADROOM_FRACTION).min(HEADROOM_MAX);
        let keys = state.eviction_victims(
            self.policy,
            limit.samples(),
            need,
            now_ms,
            &mut self.rng,
            &mut self.pool,
        );
        (!keys.is_empty()).then_some(keys)
    }
}
