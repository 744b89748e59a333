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

/// The number of databases (SELECT 0 to 15), as Redis's default. Fixed,
/// so that every replica accepts the same indexes: a script's SELECT runs
/// on each of them.
pub const DATABASES: u32 = 16;

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
    /// An op of a client that SELECTed database `db` (not 0): applies to
    /// that database's keys, waiters and notifications. Database 0's ops
    /// carry no wrapper, so logs and snapshots of one database stay as
    /// they were.
    InDb {
        db: u32,
        op: Box<Op>,
    },
}

impl Op {
    /// `op` in database `db`: unwrapped for database 0.
    pub fn in_db(db: u32, op: Op) -> Op {
        if db == 0 {
            op
        } else {
            Op::InDb {
                db,
                op: Box::new(op),
            }
        }
    }

    /// The ticket of an op that may wait, for the node that takes the
    /// client's request to fill in.
    pub fn ticket_mut(&mut self) -> Option<&mut Ticket> {
        match self {
            Op::InDb { op, .. } | Op::AsUser { op, .. } => op.ticket_mut(),
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
    /// A read in database `db` (not 0); see [`Op::InDb`].
    InDb {
        db: u32,
        query: Box<Query>,
    },
}

impl Query {
    /// The op a read turns into once it reached a write (a read-first
    /// EVALSHA, FCALL or EVAL, [`scripts::ScriptQuery::EvalShaFirst`]);
    /// None for every other query.
    /// `query` in database `db`: unwrapped for database 0.
    pub fn in_db(db: u32, query: Query) -> Query {
        if db == 0 {
            query
        } else {
            Query::InDb {
                db,
                query: Box::new(query),
            }
        }
    }

    pub fn into_op(self) -> Option<Op> {
        match self {
            Query::Script(query) => query.into_op().map(Op::Script),
            Query::InDb { db, query } => query.into_op().map(|op| Op::in_db(db, op)),
            _ => None,
        }
    }

    /// A read that may turn out to be a write: see [`Query::into_op`].
    pub fn may_write(&self) -> bool {
        if let Query::InDb { query, .. } = self {
            return query.may_write();
        }
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
            Query::InDb { query, .. } => query.read_first_script(),
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
            Query::InDb { query, .. } => query.set_seed(value),
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

/// The replicated state: the databases and the clock of the log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// The database ops apply to at the moment: database `current`. Its
    /// waiters are the ones in `coord`; every other database that holds
    /// anything is in `parked`. An op in another database
    /// ([`Op::InDb`]) swaps that one in for its length, so the families
    /// work on `db` and `coord` whatever database they serve.
    db: Db,
    /// The index of `db`: 0 except while an [`Op::InDb`] applies.
    current: u32,
    /// The other databases, by index: only those that hold keys or
    /// waiters (or are part of a snapshot being encoded).
    parked: BTreeMap<u32, Parked>,
    /// The databases a snapshot under way has still to encode, by the
    /// label its capture carries (the index it had when it began), and
    /// whether the first of them has begun.
    snapshot_dbs: Vec<u32>,
    snapshot_db_begun: bool,
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

/// A database other than the current one, with the clients waiting on
/// its keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Parked {
    db: Db,
    waiters: DbWaiters,
}

/// The clients waiting on a database's keys; database 0's are encoded in
/// their old places of [`Coord`], the others' beside their database.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DbWaiters {
    lists: lists::ListWaiters,
    zsets: zsets::Waiters,
    streams: streams::Waiters,
}

impl DbWaiters {
    fn is_empty(&self) -> bool {
        self.lists.is_empty() && self.zsets.is_empty() && self.streams.is_empty()
    }

    fn holds(&self, ticket: Ticket) -> bool {
        self.lists.contains(ticket) || self.zsets.contains(ticket) || self.streams.contains(ticket)
    }
}

/// A parked database's index and keyspace.
fn parked_db<'a>((index, parked): (&u32, &'a Parked)) -> (u32, &'a Db) {
    (*index, &parked.db)
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
        self.serve_waiters(now);
        self.db.settle();
        self.tidy();
        result
    }

    /// Forgets the other databases that hold nothing (no keys, no waiters,
    /// no snapshot encoding them), so equal states have equal maps.
    fn tidy(&mut self) {
        if !self.parked.is_empty() {
            self.parked
                .retain(|_, p| !(p.db.is_empty() && p.waiters.is_empty() && !p.db.capturing()));
        }
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
        if let Op::InDb { db, op } = op {
            return self.in_db(*db, now, |state| state.apply_at(now, op));
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
            Op::Key(keys::KeyOp::Move { key, db }) => self.move_key(now, key, *db),
            Op::Key(keys::KeyOp::SwapDb { a, b }) => self.swap_dbs(now, *a, *b),
            Op::Key(keys::KeyOp::CopyToDb {
                from,
                to,
                db,
                replace,
            }) => self.copy_to_db(now, from, to, *db, *replace),
            Op::Key(keys::KeyOp::FlushAll) => {
                self.flush_all();
                Ok(Outcome::Ok)
            }
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
            Op::Unblock(ticket) => {
                let ticket = *ticket;
                Ok(Outcome::bool(self.in_db_of(ticket, now, |s| {
                    locks::unblock(s, ticket)
                        || queues::unblock(s, ticket)
                        || lists::unblock(s, ticket)
                        || zsets::unblock(s, ticket)
                        || streams::unblock(s, ticket)
                })))
            }
            Op::PubSub(op) => pubsub::apply(self, op),
            Op::Advertise { node, addr } => {
                self.coord.client_addrs.insert(*node, addr.clone());
                Ok(Outcome::Ok)
            }
            Op::Exec(tx) => transactions::apply(self, now, tx),
            Op::Script(op) => scripts::apply(self, now, op),
            Op::Stream(op) => streams::apply(self, now, op),
            Op::Interrupt { ticket, error } => {
                let (ticket, error) = (*ticket, *error);
                Ok(Outcome::bool(
                    self.in_db_of(ticket, now, |s| s.interrupt(ticket, error)),
                ))
            }
            Op::Acl(op) => self.acl.apply(op).map_err(StateError::from),
            Op::InDb { db, op } => self.in_db(*db, now, |state| state.apply_op(now, op)),
            // Reached here inside a transaction (apply_at unwraps the rest).
            Op::AsUser { user, op } => {
                let outer = self.caller.replace(user.clone());
                let result = self.apply_op(now, op);
                self.caller = outer;
                result
            }
        }
    }

    /// Runs `f` with database `db` current, then serves the waiters its
    /// changes readied there and makes the previous database current again.
    fn in_db<R>(&mut self, db: u32, now: u64, f: impl FnOnce(&mut State) -> R) -> R {
        let outer = self.enter(db);
        let result = f(self);
        if outer != db {
            self.serve_waiters(now);
            self.db.settle();
        }
        self.enter(outer);
        result
    }

    /// Makes database `db` current (its keys in `db`, its waiters in
    /// `coord`); returns the index of the one it replaced.
    fn enter(&mut self, db: u32) -> u32 {
        let outer = self.current;
        if db == outer {
            return outer;
        }
        let mut incoming = self
            .parked
            .remove(&db)
            .unwrap_or_else(|| self.empty_database());
        std::mem::swap(&mut self.db, &mut incoming.db);
        self.swap_waiters(&mut incoming.waiters);
        self.db.set_clock(self.clock_ms);
        let outgoing = incoming;
        // An emptied database is forgotten (database 0 never is, nor one
        // a snapshot under way still has to encode).
        let forgotten = outer != 0
            && outgoing.db.is_empty()
            && !outgoing.db.capturing()
            && outgoing.waiters.is_empty();
        if !forgotten {
            self.parked.insert(outer, outgoing);
        }
        self.current = db;
        outer
    }

    /// A database that has never held anything, recording accesses as
    /// this node's others do.
    fn empty_database(&self) -> Parked {
        let mut db = Db::new();
        db.set_access_mode(*self.db.access_mode());
        Parked {
            db,
            waiters: DbWaiters::default(),
        }
    }

    fn swap_waiters(&mut self, waiters: &mut DbWaiters) {
        std::mem::swap(&mut self.coord.list_waiters, &mut waiters.lists);
        std::mem::swap(&mut self.coord.zset_waiters, &mut waiters.zsets);
        std::mem::swap(&mut self.coord.stream_waiters, &mut waiters.streams);
    }

    /// Runs `f` with the database whose key `ticket` waits on current (the
    /// current one if none does).
    fn in_db_of(&mut self, ticket: Ticket, now: u64, f: impl FnOnce(&mut State) -> bool) -> bool {
        let db = self
            .parked
            .iter()
            .find(|(_, parked)| parked.waiters.holds(ticket))
            .map(|(db, _)| *db);
        match db {
            Some(db) => self.in_db(db, now, f),
            None => f(self),
        }
    }

    /// The database at `index`, if it holds anything.
    pub fn database(&self, index: u32) -> Option<&Db> {
        if index == self.current {
            Some(&self.db)
        } else {
            self.parked.get(&index).map(|parked| &parked.db)
        }
    }

    /// Every database that holds keys (or is database 0), by index.
    pub fn databases(&self) -> impl Iterator<Item = (u32, &Db)> {
        let current = self.current;
        let (below, above) = (
            self.parked.range(..current),
            self.parked.range(current + 1..),
        );
        below
            .map(parked_db)
            .chain(std::iter::once((current, &self.db)))
            .chain(above.map(parked_db))
    }

    /// The index of the database ops apply to now.
    pub fn current_db(&self) -> u32 {
        self.current
    }

    /// MOVE: the key goes from the current database to `to` unless it
    /// exists there. Outcome 1 if it moved. The entry itself moves: its
    /// value is not copied.
    fn move_key(&mut self, now: u64, key: &Bytes, to: u32) -> OpResult {
        if to == self.current {
            return Err(StateError::SameObject);
        }
        if self.db.get(key, now).is_none() {
            self.db.purge_if_expired(key, now);
            return Ok(Outcome::Int(0));
        }
        if self
            .database(to)
            .is_some_and(|db| db.peek(key, now).is_some())
        {
            return Ok(Outcome::Int(0));
        }
        let entry = self.db.remove(key).expect("the key is live");
        let deadline = entry.expires_at();
        self.in_db(to, now, |state| {
            state.db.insert(key.clone(), entry.value, deadline);
            lists::mark_ready(state, key);
            notify::arrived(state, key, "move_to", true);
        });
        Ok(Outcome::Int(1))
    }

    /// COPY ... DB: the value and deadline of `from` in the current
    /// database, stored at `to` in database `db`.
    fn copy_to_db(
        &mut self,
        now: u64,
        from: &Bytes,
        to: &Bytes,
        db: u32,
        replace: bool,
    ) -> OpResult {
        if db == self.current && from == to {
            return Err(StateError::SameObject);
        }
        let Some(entry) = self.db.get(from, now) else {
            return Ok(Outcome::Int(0));
        };
        let (value, deadline) = (entry.value.clone(), entry.expires_at());
        let copied = self.in_db(db, now, |state| {
            let existed = state.db.get(to, now).is_some();
            if existed && !replace {
                return false;
            }
            state.db.insert(to.clone(), value, deadline);
            lists::mark_ready(state, to);
            notify::arrived(state, to, "copy_to", !existed);
            true
        });
        Ok(Outcome::bool(copied))
    }

    /// SWAPDB: the keys of databases `a` and `b` change places; the
    /// clients waiting stay with their index and are served from what
    /// their database now holds.
    fn swap_dbs(&mut self, now: u64, a: u32, b: u32) -> OpResult {
        if a == b {
            return Ok(Outcome::Ok);
        }
        self.in_db(a, now, |state| {
            let mut other = state
                .parked
                .remove(&b)
                .unwrap_or_else(|| state.empty_database());
            std::mem::swap(&mut state.db, &mut other.db);
            state.parked.insert(b, other);
            state.ready_waited_lists();
        });
        self.in_db(b, now, State::ready_waited_lists);
        Ok(Outcome::Ok)
    }

    /// Marks every list a client of the current database waits on as
    /// readied (its keys changed wholesale); served with the others.
    fn ready_waited_lists(&mut self) {
        let waited: Vec<Bytes> = self.coord.list_waiters.waited_keys().cloned().collect();
        for key in waited {
            lists::mark_ready(self, &key);
        }
    }

    /// Serves the clients of the current database whose keys the op just
    /// applied readied.
    fn serve_waiters(&mut self, now: u64) {
        lists::serve_waiters(self, now);
        zsets::serve_waiters(self, now);
        streams::serve_waiters(self, now);
    }

    /// FLUSHALL: every database emptied.
    fn flush_all(&mut self) {
        self.db.clear();
        for parked in self.parked.values_mut() {
            parked.db.clear();
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
                Timer::ListWait(ticket) => {
                    self.in_db_of(ticket, now, |s| {
                        lists::give_up(s, ticket);
                        true
                    });
                }
                Timer::ZSetPopWait(ticket) => {
                    self.in_db_of(ticket, now, |s| {
                        zsets::give_up(s, ticket);
                        true
                    });
                }
                Timer::StreamWait(ticket) => {
                    self.in_db_of(ticket, now, |s| {
                        streams::give_up(s, ticket);
                        true
                    });
                }
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
        self.parked.values().any(|p| p.waiters.holds(ticket))
            || locks::is_waiting(self, ticket)
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
        self.read_in(self.current, query, now_ms)
    }

    /// Answers a read in database `index`.
    pub fn read_in(&self, index: u32, query: &Query, now_ms: u64) -> OpResult {
        let now = now_ms.max(self.clock_ms);
        static EMPTY: std::sync::OnceLock<Db> = std::sync::OnceLock::new();
        let db = self
            .database(index)
            .unwrap_or_else(|| EMPTY.get_or_init(Db::default));
        match query {
            Query::InDb { db, query } => self.read_in(*db, query, now_ms),
            Query::String(q) => strings::read(db, now, q),
            Query::Key(q) => keys::read(db, now, q),
            Query::Hash(q) => hashes::read(db, now, q),
            Query::Set(q) => sets::read(db, now, q),
            Query::List(q) => lists::read(db, now, q),
            Query::ZSet(q) => zsets::read(db, now, q),
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
                    .map(|key| Outcome::Int(transactions::fingerprint(db, key, now) as i64))
                    .collect(),
            )),
            Query::Script(q) => scripts::read(self, index, now, q, None),
            Query::AsUser { user, query } => match &**query {
                Query::Script(q) => scripts::read(self, index, now, q, Some(user)),
                Query::InDb { db, query } => self.read_in(
                    *db,
                    &Query::AsUser {
                        user: user.clone(),
                        query: query.clone(),
                    },
                    now_ms,
                ),
                other => self.read_in(index, other, now_ms),
            },
            Query::Stream(q) => streams::read(db, now, q),
            Query::Acl(q) => Ok(self.acl.read(q)),
        }
    }

    /// The dataset's size as every replica computes it: what `maxmemory`
    /// limits (see [`memory`]).
    pub fn dataset_bytes(&self) -> u64 {
        self.databases().map(|(_, db)| db.dataset_bytes()).sum()
    }

    /// Keys in every database.
    pub fn key_count(&self) -> u64 {
        self.databases().map(|(_, db)| db.len() as u64).sum()
    }

    /// Keys this replica deleted by eviction since it started.
    pub fn evicted_keys(&self) -> u64 {
        self.evicted_keys.0
    }

    /// How this node records accesses (its `maxmemory-policy` and LFU
    /// parameters); not replicated.
    pub fn set_access_mode(&mut self, mode: memory::AccessMode) {
        self.db.set_access_mode(mode);
        for parked in self.parked.values_mut() {
            parked.db.set_access_mode(mode);
        }
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
    ) -> Vec<(u32, Bytes)> {
        let now = now_ms.max(self.clock_ms);
        // The largest databases first, each giving what is still needed.
        let mut dbs: Vec<(u32, &Db)> = self.databases().filter(|(_, db)| !db.is_empty()).collect();
        dbs.sort_by_key(|(index, db)| (std::cmp::Reverse(db.dataset_bytes()), *index));
        // The pool keeps good candidates between calls, but names keys of
        // one database: it starts afresh for each when several hold keys.
        let several = dbs.len() > 1;
        let mut left = need;
        let mut out = Vec::new();
        for (index, db) in dbs {
            if left == 0 {
                break;
            }
            if several {
                pool.clear();
            }
            let keys = evict::victims(db, policy, samples, left, now, rng, pool);
            let freed: u64 = keys
                .iter()
                .filter_map(|key| {
                    db.peek(key, now)
                        .map(|entry| memory::entry_cost(key, &entry.value))
                })
                .sum();
            left = left.saturating_sub(freed);
            out.extend(keys.into_iter().map(|key| (index, key)));
        }
        out
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
        // The other databases, so digests of one database stay as they were.
        for (index, parked) in &self.parked {
            if parked.db.is_empty() && parked.waiters.is_empty() {
                continue;
            }
            mix(&index.to_le_bytes());
            for (key, entry) in parked.db.iter() {
                mix(key);
                transactions::mix_entry(entry, &mut mix);
            }
            if !parked.waiters.is_empty() {
                mix(&postcard::to_stdvec(&parked.waiters).expect("waiters serialize"));
            }
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

    /// Up to `limit` keys whose deadline is at or before `now_ms`, with
    /// their database, in database order.
    pub fn expired_keys(&self, now_ms: u64, limit: usize) -> Vec<(u32, Vec<Bytes>)> {
        let mut left = limit;
        let mut out = Vec::new();
        for (index, db) in self.databases() {
            if left == 0 {
                break;
            }
            let keys = db.expired_keys(now_ms, left);
            if !keys.is_empty() {
                left -= keys.len();
                out.push((index, keys));
            }
        }
        out
    }
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod model_tests;
