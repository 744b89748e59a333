//! The deterministic state machine.
//!
//! Every replica applies the same log entries in the same order and must end
//! in the same state, so nothing here reads a clock, draws a random number or
//! touches IO: time comes in with each entry (the leader's stamp) and a read
//! is handed the caller's notion of "now". `apply` is the only way state
//! changes; `read` never changes it.
//!
//! Commands are grouped in families, one file each, each with its own op and
//! query enums; [`Op`] and [`Query`] are the sums of those.

pub mod acl;
pub mod bits;
pub mod breakers;
mod capture;
pub mod checks;
pub mod db;
mod error;
pub mod evict;
pub mod geo;
pub mod glob;
pub mod hashes;
pub mod hll;
pub mod keys;
pub mod lists;
pub mod locks;
pub mod memory;
pub mod mesh;
pub mod notify;
mod outcome;
pub mod packed;
pub mod pubsub;
pub mod queues;
pub mod ratelimit;
pub mod rdb;
pub mod registry;
pub mod scripts;
pub mod sessions;
pub mod sets;
mod slot_index;
mod snapshot;
pub mod sort;
pub mod streams;
pub mod strings;
pub mod timers;
pub mod transactions;
pub mod zsets;

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use db::{Db, Entry, Value};
pub use error::StateError;
pub use outcome::{OpResult, Outcome};
pub use snapshot::SnapshotError;
pub use timers::{Ticket, Wakeup};

/// The longest string value, as Redis's default `proto-max-bulk-len`.
pub const MAX_STRING_LEN: usize = 512 * 1024 * 1024;

/// A write: the unit that goes through the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    String(strings::StringOp),
    Key(keys::KeyOp),
    Hash(hashes::HashOp),
    Set(sets::SetOp),
    List(lists::ListOp),
    ZSet(zsets::ZSetOp),
    /// Deletes keys whose deadline has passed; proposed by the leader's expiry
    /// timer. Each key is re-checked against the entry's time, since it may
    /// have been rewritten after the proposal.
    ExpireKeys(Vec<Bytes>),
    /// Deletes keys the leader chose to evict because the dataset is over
    /// `maxmemory` (see [`evict`]). Outcome: how many were still there.
    Evict(Vec<Bytes>),
    Lock(locks::LockOp),
    Session(sessions::SessionOp),
    Registry(registry::RegistryOp),
    RateLimit(ratelimit::RateLimitOp),
    Breaker(breakers::BreakerOp),
    Queue(queues::QueueOp),
    /// Does nothing itself: applying any op first fires the primitives'
    /// timers due at the entry's time. The leader proposes it when a
    /// deadline passed and nothing else was written.
    Tick,
    /// Proposed by a new leader before anything else: moves every liveness
    /// deadline (sessions, locks, registry instances, queue leases) at
    /// least `ms` past the entry's time, so time without a leader, when
    /// nobody could renew, never ends them.
    Grace {
        ms: u64,
    },
    /// The client behind a waiting ticket went away: drop its place.
    Unblock(Ticket),
    PubSub(pubsub::PubSubOp),
    /// Node `node` serves clients at `addr`.
    Advertise {
        node: u64,
        addr: String,
    },
    /// MULTI … EXEC: the queued commands, applied back to back.
    Exec(transactions::Transaction),
    /// EVAL, EVALSHA, SCRIPT LOAD/FLUSH.
    Script(scripts::ScriptOp),
    Stream(streams::StreamOp),
    /// CLIENT UNBLOCK: the waiting command behind `ticket` is answered now,
    /// as if its timeout had passed, or with an UNBLOCKED error. Outcome:
    /// 1 if it was still waiting, else 0 (it was served or gave up first).
    Interrupt {
        ticket: Ticket,
        error: bool,
    },
    /// ACL SETUSER, DELUSER, LOAD, and the seeding of a new cluster.
    Acl(acl::AclOp),
    /// A script op (EVAL, EVALSHA, FCALL) of a client whose ACL user is
    /// restricted: the commands the script calls are checked against that
    /// user's permissions as the entry applies, the same on every replica.
    AsUser {
        user: String,
        op: Box<Op>,
    },
}

impl Op {
    /// The ticket of an op that may wait, for the node that takes the
    /// client's request to fill in.
    pub fn ticket_mut(&mut self) -> Option<&mut Ticket> {
        match self {
            Op::Lock(locks::LockOp::Acquire {
                ticket,
                wait_ms: Some(_),
                ..
            }) => Some(ticket),
            Op::Queue(queues::QueueOp::Claim {
                ticket,
                block_ms: Some(_),
                ..
            }) => Some(ticket),
            Op::List(
                lists::ListOp::BlockingPop { ticket, .. }
                | lists::ListOp::BlockingMove { ticket, .. },
            ) => Some(ticket),
            Op::ZSet(zsets::ZSetOp::BlockingPop { ticket, .. }) => Some(ticket),
            Op::Stream(streams::StreamOp::Read { ticket, .. })
            | Op::Stream(streams::StreamOp::ReadGroup {
                ticket,
                block_ms: Some(_),
                ..
            }) => Some(ticket),
            Op::ZSet(zsets::ZSetOp::MultiPop {
                ticket,
                timeout_ms: Some(_),
                ..
            }) => Some(ticket),
            _ => None,
        }
    }
}

/// A read: served after the read barrier of the connection's read mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Query {
    String(strings::StringQuery),
    Key(keys::KeyQuery),
    Hash(hashes::HashQuery),
    Set(sets::SetQuery),
    List(lists::ListQuery),
    ZSet(zsets::ZSetQuery),
    Lock(locks::LockQuery),
    Session(sessions::SessionQuery),
    Registry(registry::RegistryQuery),
    RateLimit(ratelimit::RateLimitQuery),
    Breaker(breakers::BreakerQuery),
    Queue(queues::QueueQuery),
    PubSub(pubsub::PubSubQuery),
    /// The keyspace digest (DEBUG DIGEST), for comparing replicas.
    Digest,
    /// WATCH: the fingerprint of each key (0 for a missing one).
    Fingerprints(Vec<Bytes>),
    Script(scripts::ScriptQuery),
    Stream(streams::StreamQuery),
    /// ACL GETUSER, LIST, USERS.
    Acl(acl::AclQuery),
    /// A read-only script (EVALSHA_RO, FCALL_RO) of a restricted user; see
    /// [`Op::AsUser`].
    AsUser {
        user: String,
        query: Box<Query>,
    },
}

impl Query {
    /// The op a read turns into once it reached a write (a read-first
    /// EVALSHA, FCALL or EVAL, [`scripts::ScriptQuery::EvalShaFirst`]);
    /// None for every other query.
    pub fn into_op(self) -> Option<Op> {
        match self {
            Query::Script(query) => query.into_op().map(Op::Script),
            _ => None,
        }
    }

    /// A read that may turn out to be a write: see [`Query::into_op`].
    pub fn may_write(&self) -> bool {
        matches!(
            self,
            Query::Script(
                scripts::ScriptQuery::EvalShaFirst { .. }
                    | scripts::ScriptQuery::FCallFirst { .. }
                    | scripts::ScriptQuery::EvalFirst { .. }
            )
        )
    }

    /// What a read-first script is known by on this node: its sha (for
    /// EVAL and EVALSHA alike), or `fcall:` and the function's name.
    pub fn read_first_script(&self) -> Option<Cow<'_, str>> {
        match self {
            Query::Script(
                scripts::ScriptQuery::EvalShaFirst { sha, .. }
                | scripts::ScriptQuery::EvalFirst { sha, .. },
            ) => Some(Cow::from(sha)),
            Query::Script(scripts::ScriptQuery::FCallFirst { function, .. }) => Some(Cow::from(
                format!("fcall:{}", String::from_utf8_lossy(function)),
            )),
            _ => None,
        }
    }

    /// Replaces the seed of a random read (RANDOMKEY, HRANDFIELD,
    /// SRANDMEMBER, ZRANDMEMBER); other queries are left alone.
    pub fn set_seed(&mut self, value: u64) {
        match self {
            Query::Key(keys::KeyQuery::RandomKey { seed }) => *seed = value,
            Query::Hash(hashes::HashQuery::RandField { seed, .. }) => *seed = value,
            Query::Set(sets::SetQuery::RandMember { seed, .. }) => *seed = value,
            Query::ZSet(zsets::ZSetQuery::RandMember { seed, .. }) => *seed = value,
            Query::Script(
                scripts::ScriptQuery::EvalSha { run, .. }
                | scripts::ScriptQuery::EvalShaFirst { run, .. }
                | scripts::ScriptQuery::FCall { run, .. }
                | scripts::ScriptQuery::FCallFirst { run, .. }
                | scripts::ScriptQuery::EvalFirst { run, .. },
            ) => run.seed = value,
            _ => {}
        }
    }
}

/// The replicated state: database 0 and the clock of the log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    db: Db,
    /// The largest entry time applied so far. Entry times come from whichever
    /// node led when the entry was proposed; taking the running maximum keeps
    /// the state's clock monotonic across leader changes and clock skew.
    clock_ms: u64,
    /// The index of the last applied entry.
    applied_index: u64,
    /// Peer addresses of members added through the log, by node id (the
    /// founding members' addresses come from each node's configuration).
    members: BTreeMap<u64, String>,
    /// The coordination primitives beside the keyspace.
    coord: Coord,
    /// Answers for waiting clients recorded by the last applied op.
    wakeups: Vec<Wakeup>,
    /// Messages for subscribers recorded by the last applied op.
    deliveries: Vec<pubsub::Delivery>,
    /// Keys with waiting list pops that the op being applied left holding
    /// a list; served when the whole op has applied.
    ready_lists: Vec<Bytes>,
    /// The Lua script cache, replicated.
    scripts: scripts::ScriptCache,
    /// Runs scripts at apply time; installed by whoever applies entries.
    script_host: scripts::HostSlot,
    /// The users and their permissions, replicated.
    acl: acl::Acl,
    /// What the mesh primitives did on this replica (`/metrics`); not
    /// replicated, see [`mesh`].
    mesh: mesh::MeshCounters,
    /// Keys evicted on this replica since it started; not replicated.
    evicted_keys: memory::Counter,
    /// The restricted user whose script op is being applied
    /// ([`Op::AsUser`]); None otherwise. Not replicated: it lives for
    /// the length of one op.
    caller: Option<String>,
}

/// The native primitives' state: replicated and snapshotted like the
/// keyspace, in ordered maps so every replica walks them alike.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Coord {
    /// The last fencing token handed out. Lock grants and queue claims
    /// share it, so every token is larger than all before it, across
    /// leader changes. (One entry carries many ops, so the entry's index
    /// alone could not be the token.)
    fence: u64,
    /// Client addresses the nodes advertised, by node id.
    client_addrs: BTreeMap<u64, String>,
    pubsub: pubsub::PubSub,
    timers: timers::Timers,
    locks: locks::Locks,
    sessions: sessions::Sessions,
    registry: registry::Registry,
    limiters: ratelimit::Limiters,
    breakers: breakers::Breakers,
    queues: queues::Queues,
    list_waiters: lists::ListWaiters,
    zset_waiters: zsets::Waiters,
    /// Encoded after the rest of `Coord` and the scripts in a snapshot
    /// (format 3), so format 2 snapshots still decode.
    #[serde(skip)]
    stream_waiters: streams::Waiters,
    /// Encoded after the stream waiters in a snapshot (format 3), for the
    /// same reason; format 4 puts the ACL after it.
    #[serde(skip)]
    ext: CoordExt,
}

/// Replicated state added after the snapshot layout of [`Coord`] (format
/// 2) was set; a snapshot carries it after the stream waiters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CoordExt {
    /// `notify-keyspace-events` as Redis's flag bits (see `notify`); 0, the
    /// default, turns keyspace notifications off.
    notify: u32,
    /// How many members each waiting BZMPOP takes, by ticket (a waiter
    /// without an entry is a BZPOPMIN/BZPOPMAX).
    zset_pop_counts: BTreeMap<Ticket, u64>,
    /// Health checks of registry instances; a snapshot carries them after
    /// the ACL (format 5).
    #[serde(skip)]
    checks: checks::Checks,
}

impl Coord {
    fn next_fence(&mut self) -> u64 {
        self.fence += 1;
        self.fence
    }
}

impl State {
    pub fn new() -> Self {
        State::default()
    }

    /// Applies one write at log position `index`, stamped `time_ms` by the
    /// leader that proposed it.
    pub fn apply(&mut self, index: u64, time_ms: u64, op: &Op) -> OpResult {
        self.observe(index, time_ms);
        let now = self.clock_ms;
        // A new leader's grace comes before the timers: what lapsed while
        // nobody led must not end before it is applied.
        if !matches!(op, Op::Grace { .. }) {
            self.fire_timers(now);
        }
        self.db.set_clock(now);
        let result = self.apply_at(now, op);
        lists::serve_waiters(self, now);
        zsets::serve_waiters(self, now);
        streams::serve_waiters(self, now);
        self.db.settle();
        result
    }

    /// Applies `op` at `now`, timers already fired (LOCK.GUARD applies its
    /// inner op through here), with its keyspace notifications.
    fn apply_at(&mut self, now: u64, op: &Op) -> OpResult {
        if let Op::AsUser { user, op } = op {
            let outer = self.caller.replace(user.clone());
            let result = self.apply_at(now, op);
            self.caller = outer;
            return result;
        }
        let Some(before) = notify::before(self, now, op) else {
            return self.apply_op(now, op);
        };
        let result = self.apply_op(now, op);
        notify::after(self, now, op, &result, before);
        result
    }

    fn apply_op(&mut self, now: u64, op: &Op) -> OpResult {
        match op {
            Op::String(op) => strings::apply(&mut self.db, now, op),
            Op::Key(op) => {
                let result = keys::apply(&mut self.db, now, op);
                lists::after_key_op(self, op);
                result
            }
            Op::Hash(op) => hashes::apply(&mut self.db, now, op),
            Op::Set(op) => sets::apply(&mut self.db, now, op),
            Op::List(op) => lists::apply(self, now, op),
            Op::ZSet(op) => zsets::apply(self, now, op),
            Op::ExpireKeys(keys) => {
                let removed = keys
                    .iter()
                    .filter(|k| self.db.purge_if_expired(k, now))
                    .count();
                Ok(Outcome::Int(removed as i64))
            }
            Op::Evict(keys) => {
                let removed = keys.iter().filter(|k| self.db.remove(k).is_some()).count();
                self.evicted_keys.0 += removed as u64;
                Ok(Outcome::Int(removed as i64))
            }
            Op::Lock(op) => locks::apply(self, now, op),
            Op::Session(op) => sessions::apply(self, now, op),
            Op::Registry(op) => registry::apply(self, now, op),
            Op::RateLimit(op) => ratelimit::apply(self, now, op),
            Op::Breaker(op) => breakers::apply(self, now, op),
            Op::Queue(op) => queues::apply(self, now, op),
            Op::Tick => Ok(Outcome::Ok),
            Op::Grace { ms } => {
                sessions::grace(self, now, *ms);
                locks::grace(self, now, *ms);
                registry::grace(self, now, *ms);
                queues::grace(self, now, *ms);
                Ok(Outcome::Ok)
            }
            Op::Unblock(ticket) => Ok(Outcome::bool(
                locks::unblock(self, *ticket)
                    || queues::unblock(self, *ticket)
                    || lists::unblock(self, *ticket)
                    || zsets::unblock(self, *ticket)
                    || streams::unblock(self, *ticket),
            )),
            Op::PubSub(op) => pubsub::apply(self, op),
            Op::Advertise { node, addr } => {
                self.coord.client_addrs.insert(*node, addr.clone());
                Ok(Outcome::Ok)
            }
            Op::Exec(tx) => transactions::apply(self, now, tx),
            Op::Script(op) => scripts::apply(self, now, op),
            Op::Stream(op) => streams::apply(self, now, op),
            Op::Interrupt { ticket, error } => Ok(Outcome::bool(self.interrupt(*ticket, *error))),
            Op::Acl(op) => self.acl.apply(op).map_err(StateError::from),
            // Reached here inside a transaction (apply_at unwraps the rest).
            Op::AsUser { user, op } => {
                let outer = self.caller.replace(user.clone());
                let result = self.apply_op(now, op);
                self.caller = outer;
                result
            }
        }
    }

    /// Ends the wait of `ticket` (see [`Op::Interrupt`]); false if it was
    /// not waiting.
    fn interrupt(&mut self, ticket: Ticket, error: bool) -> bool {
        if error {
            let waited = locks::unblock(self, ticket)
                || queues::unblock(self, ticket)
                || lists::unblock(self, ticket)
                || zsets::unblock(self, ticket)
                || streams::unblock(self, ticket);
            if waited {
                self.wake(ticket, Outcome::Error(StateError::Unblocked));
            }
            return waited;
        }
        if lists::is_waiting(self, ticket) {
            lists::give_up(self, ticket);
        } else if zsets::is_waiting(self, ticket) {
            zsets::give_up(self, ticket);
        } else if streams::is_waiting(self, ticket) {
            streams::give_up(self, ticket);
        } else if let Some(lock) = locks::waiting_on(self, ticket) {
            locks::give_up(self, &lock, ticket);
        } else if let Some(queue) = queues::waiting_on(self, ticket) {
            queues::give_up(self, &queue, ticket);
        } else {
            return false;
        }
        true
    }

    /// Fires every primitive timer due at `now`, earliest first.
    fn fire_timers(&mut self, now: u64) {
        use timers::Timer;
        while let Some((_, timer)) = self.coord.timers.pop_due(now) {
            match timer {
                Timer::Session(id) => sessions::expire(self, now, id),
                Timer::Lock(name) => locks::expire(self, now, &name),
                Timer::LockWait(name, ticket) => locks::give_up(self, &name, ticket),
                Timer::Instance { service, id } => registry::expire(self, &service, &id),
                Timer::Limiter(key) => ratelimit::forget(self, &key),
                Timer::JobLease(queue, id) => queues::lapse(self, now, &queue, id),
                Timer::JobDelay(queue, id) => queues::ripen(self, now, &queue, id),
                Timer::ClaimWait(queue, ticket) => queues::give_up(self, &queue, ticket),
                Timer::ListWait(ticket) => lists::give_up(self, ticket),
                Timer::ZSetPopWait(ticket) => zsets::give_up(self, ticket),
                Timer::StreamWait(ticket) => streams::give_up(self, ticket),
                Timer::CheckTtl { service, id } => registry::check_lapsed(self, now, &service, &id),
            }
        }
    }

    /// The earliest deadline of a primitive: once it has passed, the leader
    /// proposes an [`Op::Tick`] unless other writes go first.
    pub fn next_timer(&self) -> Option<u64> {
        self.coord.timers.next()
    }

    /// The answers for waiting clients that the ops applied since the last
    /// call granted.
    pub fn take_wakeups(&mut self) -> Vec<Wakeup> {
        std::mem::take(&mut self.wakeups)
    }

    /// True while `ticket` waits in some queue of the state.
    pub fn is_waiting(&self, ticket: Ticket) -> bool {
        locks::is_waiting(self, ticket)
            || queues::is_waiting(self, ticket)
            || lists::is_waiting(self, ticket)
            || zsets::is_waiting(self, ticket)
            || streams::is_waiting(self, ticket)
    }

    /// The messages for subscribers that the ops applied since the last
    /// call published.
    pub fn take_deliveries(&mut self) -> Vec<pubsub::Delivery> {
        std::mem::take(&mut self.deliveries)
    }

    /// The pub/sub registry (subscriptions and node runs).
    pub fn pubsub(&self) -> &pubsub::PubSub {
        &self.coord.pubsub
    }

    /// A node left the cluster: its subscriptions end. Called when the
    /// membership change applies, identically on every replica.
    pub fn forget_subscribers_of(&mut self, node: u64) {
        self.coord.pubsub.forget_node(node);
    }

    fn wake(&mut self, ticket: Ticket, outcome: Outcome) {
        self.wakeups.push(Wakeup { ticket, outcome });
    }

    /// Records that the entry at `index` with time `time_ms` was applied,
    /// for entries that carry no op (leader no-ops, membership changes).
    pub fn observe(&mut self, index: u64, time_ms: u64) {
        self.applied_index = self.applied_index.max(index);
        self.clock_ms = self.clock_ms.max(time_ms);
    }

    /// Answers a read. `now_ms` is the reader's clock; the state never
    /// answers as of a time before the last applied entry.
    pub fn read(&self, query: &Query, now_ms: u64) -> OpResult {
        let now = now_ms.max(self.clock_ms);
        match query {
            Query::String(q) => strings::read(&self.db, now, q),
            Query::Key(q) => keys::read(&self.db, now, q),
            Query::Hash(q) => hashes::read(&self.db, now, q),
            Query::Set(q) => sets::read(&self.db, now, q),
            Query::List(q) => lists::read(&self.db, now, q),
            Query::ZSet(q) => zsets::read(&self.db, now, q),
            Query::Lock(q) => locks::read(self, now, q),
            Query::Session(q) => sessions::read(self, now, q),
            Query::Registry(q) => registry::read(self, now, q),
            Query::RateLimit(q) => ratelimit::read(self, now, q),
            Query::Breaker(q) => breakers::read(self, now, q),
            Query::Queue(q) => queues::read(self, q),
            Query::PubSub(q) => pubsub::read(self, q),
            Query::Digest => Ok(Outcome::Bulk(Bytes::from(format!(
                "{:016x}",
                self.digest()
            )))),
            Query::Fingerprints(keys) => Ok(Outcome::Array(
                keys.iter()
                    .map(|key| Outcome::Int(transactions::fingerprint(self, key, now) as i64))
                    .collect(),
            )),
            Query::Script(q) => scripts::read(self, now, q, None),
            Query::AsUser { user, query } => match &**query {
                Query::Script(q) => scripts::read(self, now, q, Some(user)),
                other => self.read(other, now_ms),
            },
            Query::Stream(q) => streams::read(&self.db, now, q),
            Query::Acl(q) => Ok(self.acl.read(q)),
        }
    }

    /// The dataset's size as every replica computes it: what `maxmemory`
    /// limits (see [`memory`]).
    pub fn dataset_bytes(&self) -> u64 {
        self.db.dataset_bytes()
    }

    /// Keys this replica deleted by eviction since it started.
    pub fn evicted_keys(&self) -> u64 {
        self.evicted_keys.0
    }

    /// How this node records accesses (its `maxmemory-policy` and LFU
    /// parameters); not replicated.
    pub fn set_access_mode(&mut self, mode: memory::AccessMode) {
        self.db.set_access_mode(mode);
    }

    /// The keys the leader proposes to evict to free `need` bytes: see
    /// [`evict::victims`].
    pub fn eviction_victims(
        &self,
        policy: evict::Policy,
        samples: usize,
        need: u64,
        now_ms: u64,
        rng: &mut db::SeededRng,
        pool: &mut evict::Pool,
    ) -> Vec<Bytes> {
        let now = now_ms.max(self.clock_ms);
        evict::victims(&self.db, policy, samples, need, now, rng, pool)
    }

    /// The probed health checks node `owner` owns (see [`checks`]).
    pub fn owned_checks(&self, owner: u64) -> Vec<checks::OwnedCheck> {
        registry::owned_checks(self, owner)
    }

    /// The health checks to give to other nodes, `live` being the nodes
    /// the leader hears from (see [`checks::Checks::assignments`]).
    pub fn check_assignments(&self, live: &[u64]) -> Vec<(Bytes, Bytes, u64)> {
        self.coord.ext.checks.assignments(live)
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The state's clock: the largest entry time applied.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// Records the peer address a membership change gave `id`.
    pub fn set_member(&mut self, id: u64, addr: String) {
        self.members.insert(id, addr);
    }

    pub fn remove_member(&mut self, id: u64) {
        self.members.remove(&id);
    }

    /// Forgets every peer and client address learned through the log: for
    /// a backup restored into a new cluster, whose members come from its
    /// `--initial-cluster` and advertise their client addresses again.
    pub fn forget_members(&mut self) {
        self.members.clear();
        self.coord.client_addrs.clear();
    }

    /// Client addresses advertised through the log, by node id.
    pub fn client_addrs(&self) -> &BTreeMap<u64, String> {
        &self.coord.client_addrs
    }

    /// Peer addresses learned through the log.
    pub fn members(&self) -> &BTreeMap<u64, String> {
        &self.members
    }

    /// A digest of the keyspace (keys, values, deadlines) in scan order and
    /// of the primitives: equal
    /// on replicas that applied the same entries.
    pub fn digest(&self) -> u64 {
        let mut h = db::stable_hash(b"concord-digest");
        let mut mix = |bytes: &[u8]| {
            h = db::stable_hash(&[h.to_le_bytes().as_slice(), bytes].concat());
        };
        for (key, entry) in self.db.iter() {
            mix(key);
            transactions::mix_entry(entry, &mut mix);
        }
        mix(&postcard::to_stdvec(&self.coord).expect("primitives serialize"));
        for (sha, _) in self.scripts.iter() {
            mix(sha.as_bytes());
        }
        if !self.coord.stream_waiters.is_empty() {
            mix(&postcard::to_stdvec(&self.coord.stream_waiters).expect("waiters serialize"));
        }
        // Only a changed user table counts, so digests of states that never
        // touched the ACL stay what they were.
        if self.acl.generation != 0 {
            mix(&postcard::to_stdvec(&self.acl).expect("users serialize"));
        }
        h
    }

    /// Applies an op a script issued (`redis.call`) within the entry being
    /// applied: at the entry's time, its timers already fired.
    pub fn apply_nested(&mut self, now: u64, op: &Op) -> OpResult {
        self.apply_at(now, op)
    }

    /// Installs the host that runs Lua scripts at apply time.
    pub fn set_script_host(&mut self, host: scripts::HostSlot) {
        self.script_host = host;
    }

    pub fn script_host(&self) -> &scripts::HostSlot {
        &self.script_host
    }

    /// The replicated script cache.
    pub fn scripts(&self) -> &scripts::ScriptCache {
        &self.scripts
    }

    /// The user table, for the server to check clients against (a clone
    /// after each change; [`acl::Acl::generation`] tells which).
    /// The restricted user a script runs for, while its op applies.
    pub fn caller(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    pub fn acl(&self) -> &acl::Acl {
        &self.acl
    }

    /// Up to `limit` keys whose deadline is at or before `now_ms`.
    pub fn expired_keys(&self, now_ms: u64, limit: usize) -> Vec<Bytes> {
        self.db.expired_keys(now_ms, limit)
    }
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod model_tests;
