//! Work queues with visibility leases.
//!
//! A job is pushed ready (or delayed until a time) and claimed by a worker
//! for a lease. Each claim hands out a fencing token from the state's one
//! counter (shared with lock grants), so a token names one claim of one job
//! and is larger than every token before it, across leader changes. Only
//! the token of a job's current claim can ACK (finish it), NACK (give it
//! back) or EXTEND its lease: a worker whose lease lapsed, and whose job was
//! redelivered to another, is fenced and hears 0.
//!
//! Delivery is at least once: a job whose lease lapses goes back to the end
//! of the ready line, or to the dead list once it was claimed MAXTRIES
//! times. Ready jobs are claimed in the order they became ready. A claimer
//! that asks to BLOCK while nothing is ready waits in a FIFO line and is
//! answered the moment a job becomes ready (a push, a NACK, a lapsed lease,
//! a delay that ran out), or with an empty array when its wait runs out.
//!
//! A queue's jobs, dead list and waiters are dropped when none is left;
//! only its totals stay (the last job id, which is also the number of jobs
//! ever pushed, and the number acked), so a job id is never handed out
//! twice on the same queue and workers may deduplicate by id.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::timers::{self, Ticket, Timer};
use super::{Coord, OpResult, Outcome, State};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum QueueOp {
    /// Outcome: the new job's id.
    Push {
        queue: Bytes,
        payload: Bytes,
        /// 0: ready at once.
        delay_ms: u64,
        /// How many claims the job gets before it is dead; 0: unlimited.
        max_tries: u64,
    },
    /// Outcome: an array of claimed jobs (maybe empty), or Blocked.
    Claim {
        queue: Bytes,
        worker: Bytes,
        lease_ms: u64,
        count: u64,
        /// None: do not wait. Some(0): wait without a limit.
        block_ms: Option<u64>,
        ticket: Ticket,
    },
    /// Outcome: 1 if `token` held the job's claim (the job is done).
    Ack { queue: Bytes, id: u64, token: u64 },
    /// Outcome: 1 if `token` held the job's claim (the job is given back).
    Nack {
        queue: Bytes,
        id: u64,
        token: u64,
        /// 0: ready at once.
        delay_ms: u64,
    },
    /// Outcome: 1 if `token` holds the job's claim (its lease now ends
    /// `lease_ms` from now).
    Extend {
        queue: Bytes,
        id: u64,
        token: u64,
        lease_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum QueueQuery {
    Stats { queue: Bytes },
    Dead { queue: Bytes, count: u64 },
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Queues {
    /// Queues holding jobs, dead jobs or waiters.
    by_name: BTreeMap<Bytes, Queue>,
    /// Every queue ever pushed to, kept after its contents are gone.
    totals: BTreeMap<Bytes, Totals>,
}

impl Queues {
    /// (queue, ready, in flight, delayed, dead) for every queue with
    /// something in it.
    pub fn counts(&self) -> Vec<(String, u64, u64, u64, u64)> {
        self.by_name
            .iter()
            .map(|(name, q)| {
                (
                    super::mesh::text(name),
                    q.ready.len() as u64,
                    q.claimed,
                    q.delayed,
                    q.dead.len() as u64,
                )
            })
            .collect()
    }

    /// Queues holding anything.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Totals {
    /// The last job id handed out; ids count up from 1.
    last_id: u64,
    acked: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Queue {
    /// Every live job (ready, delayed or claimed) by id.
    jobs: BTreeMap<u64, Job>,
    /// The ready jobs' ids, in the order they became ready.
    ready: VecDeque<u64>,
    delayed: u64,
    claimed: u64,
    /// Jobs that used up their tries, oldest first.
    dead: VecDeque<DeadJob>,
    /// Blocked claimers, first come first served.
    waiters: VecDeque<Waiter>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    payload: Bytes,
    max_tries: u64,
    /// Claims so far.
    attempts: u64,
    stage: Stage,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Stage {
    Ready,
    /// Waiting for its `Timer::JobDelay`.
    Delayed,
    Claimed(Claim),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Claim {
    /// Who claimed it, as the claimer named itself: kept with the claim
    /// so a replica's state shows who holds what.
    worker: Bytes,
    token: u64,
    lease_deadline: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DeadJob {
    id: u64,
    payload: Bytes,
    attempts: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Waiter {
    ticket: Ticket,
    worker: Bytes,
    lease_ms: u64,
    count: u64,
    /// When the waiter gives up; None waits without a limit.
    gives_up: Option<u64>,
}

impl Queue {
    /// Files `job` under its stage.
    fn put(&mut self, id: u64, job: Job) {
        match job.stage {
            Stage::Ready => self.ready.push_back(id),
            Stage::Delayed => self.delayed += 1,
            Stage::Claimed(_) => self.claimed += 1,
        }
        self.jobs.insert(id, job);
    }

    /// Removes job `id`, whatever its stage.
    fn take(&mut self, id: u64) -> Option<Job> {
        let job = self.jobs.remove(&id)?;
        match job.stage {
            Stage::Ready => self.ready.retain(|&ready| ready != id),
            Stage::Delayed => self.delayed -= 1,
            Stage::Claimed(_) => self.claimed -= 1,
        }
        Some(job)
    }

    /// Removes up to `count` jobs from the front of the ready line.
    fn take_ready(&mut self, count: u64) -> Vec<(u64, Job)> {
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        let n = count.min(self.ready.len());
        self.ready
            .drain(..n)
            .filter_map(|id| Some((id, self.jobs.remove(&id)?)))
            .collect()
    }

    /// The claim job `id` is under, if `token` holds it.
    fn claim_mut(&mut self, id: u64, token: u64) -> Option<&mut Claim> {
        match &mut self.jobs.get_mut(&id)?.stage {
            Stage::Claimed(claim) if claim.token == token => Some(claim),
            _ => None,
        }
    }

    fn is_unused(&self) -> bool {
        self.jobs.is_empty() && self.dead.is_empty() && self.waiters.is_empty()
    }
}

pub fn apply(state: &mut State, now: u64, op: &QueueOp) -> OpResult {
    match op {
        QueueOp::Push {
            queue,
            payload,
            delay_ms,
            max_tries,
        } => {
            let totals = state.coord.queues.totals.entry(queue.clone()).or_default();
            totals.last_id += 1;
            let id = totals.last_id;
            let job = Job {
                payload: payload.clone(),
                max_tries: *max_tries,
                attempts: 0,
                stage: Stage::Ready,
            };
            enqueue(state, now, queue, id, job, *delay_ms);
            Ok(Outcome::Int(id as i64))
        }
        QueueOp::Claim {
            queue,
            worker,
            lease_ms,
            count,
            block_ms,
            ticket,
        } => {
            let claimed = claim_ready(&mut state.coord, now, queue, worker, *lease_ms, *count);
            let Some(block_ms) = block_ms.filter(|_| claimed.is_empty() && ticket.is_assigned())
            else {
                return Ok(Outcome::Array(claimed));
            };
            let gives_up = (block_ms > 0).then(|| timers::deadline(now, block_ms));
            let coord = &mut state.coord;
            coord
                .queues
                .by_name
                .entry(queue.clone())
                .or_default()
                .waiters
                .push_back(Waiter {
                    ticket: *ticket,
                    worker: worker.clone(),
                    lease_ms: *lease_ms,
                    count: *count,
                    gives_up,
                });
            if let Some(at) = gives_up {
                coord
                    .timers
                    .schedule(Timer::ClaimWait(queue.clone(), *ticket), at);
            }
            Ok(Outcome::Blocked {
                ticket: *ticket,
                timeout_ms: block_ms,
            })
        }
        QueueOp::Ack { queue, id, token } => {
            if take_claimed(&mut state.coord, queue, *id, *token).is_none() {
                return Ok(Outcome::Int(0));
            }
            if let Some(totals) = state.coord.queues.totals.get_mut(queue) {
                totals.acked += 1;
            }
            remove_if_unused(&mut state.coord, queue);
            Ok(Outcome::Int(1))
        }
        QueueOp::Nack {
            queue,
            id,
            token,
            delay_ms,
        } => {
            let Some(job) = take_claimed(&mut state.coord, queue, *id, *token) else {
                return Ok(Outcome::Int(0));
            };
            redeliver(state, now, queue, *id, job, *delay_ms);
            Ok(Outcome::Int(1))
        }
        QueueOp::Extend {
            queue,
            id,
            token,
            lease_ms,
        } => {
            let coord = &mut state.coord;
            let Some(claim) = coord
                .queues
                .by_name
                .get_mut(queue)
                .and_then(|q| q.claim_mut(*id, *token))
            else {
                return Ok(Outcome::Int(0));
            };
            let old = claim.lease_deadline;
            claim.lease_deadline = timers::deadline(now, *lease_ms);
            coord.timers.reschedule(
                Timer::JobLease(queue.clone(), *id),
                Some(old),
                Some(claim.lease_deadline),
            );
            Ok(Outcome::Int(1))
        }
    }
}

pub fn read(state: &State, query: &QueueQuery) -> OpResult {
    let queues = &state.coord.queues;
    match query {
        QueueQuery::Stats { queue } => {
            let contents = queues.by_name.get(queue);
            let totals = queues.totals.get(queue).cloned().unwrap_or_default();
            let count = |f: fn(&Queue) -> u64| Outcome::Int(contents.map_or(0, f) as i64);
            let field = |name: &'static str| Outcome::Bulk(Bytes::from_static(name.as_bytes()));
            Ok(Outcome::Map(vec![
                (field("ready"), count(|q| q.ready.len() as u64)),
                (field("delayed"), count(|q| q.delayed)),
                (field("inflight"), count(|q| q.claimed)),
                (field("dead"), count(|q| q.dead.len() as u64)),
                (field("pushed"), Outcome::Int(totals.last_id as i64)),
                (field("acked"), Outcome::Int(totals.acked as i64)),
                (field("waiting"), count(|q| q.waiters.len() as u64)),
            ]))
        }
        QueueQuery::Dead { queue, count } => {
            let count = usize::try_from(*count).unwrap_or(usize::MAX);
            let dead = queues
                .by_name
                .get(queue)
                .into_iter()
                .flat_map(|q| q.dead.iter())
                .take(count)
                .map(|job| {
                    Outcome::Array(vec![
                        Outcome::Int(job.id as i64),
                        Outcome::Bulk(job.payload.clone()),
                        Outcome::Int(job.attempts as i64),
                    ])
                })
                .collect();
            Ok(Outcome::Array(dead))
        }
    }
}

/// Claims up to `count` ready jobs of `name` for `worker`: each gets a new
/// token and a lease. Returns the claimed jobs as replies.
fn claim_ready(
    coord: &mut Coord,
    now: u64,
    name: &Bytes,
    worker: &Bytes,
    lease_ms: u64,
    count: u64,
) -> Vec<Outcome> {
    let Some(queue) = coord.queues.by_name.get_mut(name) else {
        return Vec::new();
    };
    let taken = queue.take_ready(count);
    let mut replies = Vec::with_capacity(taken.len());
    let mut claimed = Vec::with_capacity(taken.len());
    let lease_deadline = timers::deadline(now, lease_ms);
    for (id, mut job) in taken {
        let token = coord.next_fence();
        job.attempts = job.attempts.saturating_add(1);
        replies.push(Outcome::Array(vec![
            Outcome::Int(id as i64),
            Outcome::Bulk(job.payload.clone()),
            Outcome::Int(job.attempts as i64),
            Outcome::Int(token as i64),
        ]));
        job.stage = Stage::Claimed(Claim {
            worker: worker.clone(),
            token,
            lease_deadline,
        });
        coord
            .timers
            .schedule(Timer::JobLease(name.clone(), id), lease_deadline);
        claimed.push((id, job));
    }
    if let Some(queue) = coord.queues.by_name.get_mut(name) {
        for (id, job) in claimed {
            queue.put(id, job);
        }
    }
    replies
}

/// Removes job `id` if `token` holds its claim, and cancels its lease.
fn take_claimed(coord: &mut Coord, name: &Bytes, id: u64, token: u64) -> Option<Job> {
    let queue = coord.queues.by_name.get_mut(name)?;
    let deadline = queue.claim_mut(id, token)?.lease_deadline;
    coord
        .timers
        .cancel(Timer::JobLease(name.clone(), id), deadline);
    queue.take(id)
}

/// A claim of `job` ended without an ACK: it is dead if it used up its
/// tries, else ready again after `delay_ms`.
fn redeliver(state: &mut State, now: u64, name: &Bytes, id: u64, job: Job, delay_ms: u64) {
    if job.max_tries > 0 && job.attempts >= job.max_tries {
        let queue = state.coord.queues.by_name.entry(name.clone()).or_default();
        queue.dead.push_back(DeadJob {
            id,
            payload: job.payload,
            attempts: job.attempts,
        });
        return;
    }
    enqueue(state, now, name, id, job, delay_ms);
}

/// Files `job` as delayed by `delay_ms`, or as ready (serving blocked
/// claimers) when that is 0.
fn enqueue(state: &mut State, now: u64, name: &Bytes, id: u64, mut job: Job, delay_ms: u64) {
    let coord = &mut state.coord;
    if delay_ms > 0 {
        let until = timers::deadline(now, delay_ms);
        job.stage = Stage::Delayed;
        coord
            .timers
            .schedule(Timer::JobDelay(name.clone(), id), until);
    } else {
        job.stage = Stage::Ready;
    }
    coord
        .queues
        .by_name
        .entry(name.clone())
        .or_default()
        .put(id, job);
    if delay_ms == 0 {
        serve_waiters(state, now, name);
    }
}

/// Hands ready jobs to blocked claimers, first come first served, while
/// there are both.
fn serve_waiters(state: &mut State, now: u64, name: &Bytes) {
    loop {
        let coord = &mut state.coord;
        let Some(queue) = coord.queues.by_name.get_mut(name) else {
            return;
        };
        if queue.ready.is_empty() {
            return;
        }
        let Some(waiter) = queue.waiters.pop_front() else {
            return;
        };
        if let Some(at) = waiter.gives_up {
            coord
                .timers
                .cancel(Timer::ClaimWait(name.clone(), waiter.ticket), at);
        }
        let claimed = claim_ready(
            coord,
            now,
            name,
            &waiter.worker,
            waiter.lease_ms,
            waiter.count,
        );
        state.wake(waiter.ticket, Outcome::Array(claimed));
    }
}

fn remove_if_unused(coord: &mut Coord, name: &Bytes) {
    if coord.queues.by_name.get(name).is_some_and(Queue::is_unused) {
        coord.queues.by_name.remove(name);
    }
}

/// A claim's lease lapsed (its timer already fired): the job is redelivered.
pub(super) fn lapse(state: &mut State, now: u64, name: &Bytes, id: u64) {
    if let Some(job) = take_job(&mut state.coord, name, id) {
        redeliver(state, now, name, id, job, 0);
    }
}

/// A delayed job's time came (its timer already fired): it is ready.
pub(super) fn ripen(state: &mut State, now: u64, name: &Bytes, id: u64) {
    if let Some(job) = take_job(&mut state.coord, name, id) {
        enqueue(state, now, name, id, job, 0);
    }
}

fn take_job(coord: &mut Coord, name: &Bytes, id: u64) -> Option<Job> {
    coord.queues.by_name.get_mut(name)?.take(id)
}

/// A blocked claimer's wait ran out (its timer already fired): it gets an
/// empty array.
pub(super) fn give_up(state: &mut State, name: &Bytes, ticket: Ticket) {
    if take_waiter(&mut state.coord, name, ticket).is_some() {
        state.wake(ticket, Outcome::Array(Vec::new()));
    }
}

fn take_waiter(coord: &mut Coord, name: &Bytes, ticket: Ticket) -> Option<Waiter> {
    let queue = coord.queues.by_name.get_mut(name)?;
    let at = queue.waiters.iter().position(|w| w.ticket == ticket)?;
    let waiter = queue.waiters.remove(at);
    remove_if_unused(coord, name);
    waiter
}

/// True while `ticket` is a blocked claimer of some queue.
pub(super) fn is_waiting(state: &State, ticket: Ticket) -> bool {
    waiting_on(state, ticket).is_some()
}

/// The queue `ticket` waits on, if it waits.
pub(super) fn waiting_on(state: &State, ticket: Ticket) -> Option<Bytes> {
    state
        .coord
        .queues
        .by_name
        .iter()
        .find(|(_, q)| q.waiters.iter().any(|w| w.ticket == ticket))
        .map(|(name, _)| name.clone())
}

/// The client behind `ticket` left: drop its blocked claim without an
/// answer. True if it was waiting on a queue.
pub(super) fn unblock(state: &mut State, ticket: Ticket) -> bool {
    let Some(name) = waiting_on(state, ticket) else {
        return false;
    };
    let coord = &mut state.coord;
    if let Some(at) = take_waiter(coord, &name, ticket).and_then(|w| w.gives_up) {
        coord.timers.cancel(Timer::ClaimWait(name, ticket), at);
    }
    true
}

/// A new leader's grace: lease deadlines move to at least `ms` past `now`.
/// Delays are not liveness and stay as they are.
pub(super) fn grace(state: &mut State, now: u64, ms: u64) {
    let coord = &mut state.coord;
    for (name, queue) in coord.queues.by_name.iter_mut() {
        for (id, job) in queue.jobs.iter_mut() {
            let Stage::Claimed(claim) = &mut job.stage else {
                continue;
            };
            let old = claim.lease_deadline;
            claim.lease_deadline = old.max(now).saturating_add(ms);
            coord.timers.reschedule(
                Timer::JobLease(name.clone(), *id),
                Some(old),
                Some(claim.lease_deadline),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    //! Random sequences of queue commands (with time passing, leader
    //! grace and dropped waiters) must keep the books straight: every job
    //! ever pushed is live, dead or acked, exactly once; the stage counters
    //! match the jobs; every pending deadline has its timer; no claim token
    //! is handed out twice; a blocked claim is known to be waiting until it
    //! is answered or dropped; and a snapshot restores an equal state.

    use std::collections::BTreeMap;

    use bytes::Bytes;
    use proptest::prelude::*;

    use super::super::golden::Harness;
    use super::super::{Op, State, Ticket};
    use super::{Queue, Stage};
    use crate::resp::Reply;

    const QUEUES: [&str; 2] = ["a", "b"];

    #[derive(Clone, Debug)]
    enum Step {
        Push {
            queue: usize,
            delay_ms: u64,
            max_tries: u64,
        },
        Claim {
            queue: usize,
            count: u64,
            lease_ms: u64,
            block_ms: Option<u64>,
        },
        /// ACK, NACK or EXTEND a claim seen earlier (maybe lapsed since).
        Finish {
            claim: usize,
            verb: usize,
        },
        Advance(u64),
        Tick,
        Grace(u64),
        Unblock(u64),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0..2usize, prop_oneof![Just(0u64), 1..300u64], 0..3u64).prop_map(
                |(queue, delay_ms, max_tries)| Step::Push { queue, delay_ms, max_tries }
            ),
            3 => (
                0..2usize,
                1..4u64,
                1..400u64,
                prop_oneof![Just(None), Just(Some(0u64)), (1..300u64).prop_map(Some)],
            )
                .prop_map(|(queue, count, lease_ms, block_ms)| Step::Claim {
                    queue,
                    count,
                    lease_ms,
                    block_ms
                }),
            3 => (0..64usize, 0..3usize).prop_map(|(claim, verb)| Step::Finish { claim, verb }),
            2 => (0..400u64).prop_map(Step::Advance),
            1 => Just(Step::Tick),
            1 => (0..500u64).prop_map(Step::Grace),
            1 => (1..8u64).prop_map(Step::Unblock),
        ]
    }

    fn argv(words: &[String]) -> Vec<Bytes> {
        words.iter().map(|w| Bytes::from(w.clone())).collect()
    }

    /// The (queue, id, token) of each job in a claim reply.
    fn claims(queue: &str, reply: &Reply) -> Vec<(String, i64, i64)> {
        let Reply::Array(jobs) = reply else {
            return Vec::new();
        };
        jobs.iter()
            .map(|job| match job {
                Reply::Array(fields) => match (&fields[0], &fields[3]) {
                    (Reply::Int(id), Reply::Int(token)) => (queue.to_owned(), *id, *token),
                    other => panic!("a claimed job's id and token: {other:?}"),
                },
                other => panic!("a claimed job: {other:?}"),
            })
            .collect()
    }

    fn check_books(state: &State) -> Result<(), TestCaseError> {
        let queues = &state.coord.queues;
        let mut timers = 0;
        for (name, queue) in &queues.by_name {
            prop_assert!(!queue.is_unused(), "an unused queue {name:?} is kept");
            let stage_count =
                |f: fn(&Stage) -> bool| queue.jobs.values().filter(|j| f(&j.stage)).count() as u64;
            prop_assert_eq!(
                stage_count(|s| matches!(s, Stage::Ready)),
                queue.ready.len() as u64
            );
            prop_assert_eq!(stage_count(|s| matches!(s, Stage::Delayed)), queue.delayed);
            prop_assert_eq!(
                stage_count(|s| matches!(s, Stage::Claimed(_))),
                queue.claimed
            );
            for id in &queue.ready {
                prop_assert!(matches!(queue.jobs[id].stage, Stage::Ready));
            }
            timers += queue.delayed + queue.claimed;
            timers += queue
                .waiters
                .iter()
                .filter(|w| w.gives_up.is_some())
                .count() as u64;
        }
        prop_assert_eq!(
            state.coord.timers.len() as u64,
            timers,
            "one timer per deadline"
        );
        for (name, totals) in &queues.totals {
            let (live, dead) = queues.by_name.get(name).map_or((0, 0), |q: &Queue| {
                (q.jobs.len() as u64, q.dead.len() as u64)
            });
            prop_assert_eq!(
                totals.last_id,
                live + dead + totals.acked,
                "queue {:?}",
                name
            );
        }
        Ok(())
    }

    fn run(steps: &[Step]) -> Result<(), TestCaseError> {
        let mut harness = Harness::new(1_700_000_000_000);
        let mut seen: Vec<(String, i64, i64)> = Vec::new();
        let mut blocked_on: BTreeMap<u64, &str> = BTreeMap::new();
        for step in steps {
            match step {
                Step::Push {
                    queue,
                    delay_ms,
                    max_tries,
                } => {
                    harness.run(&argv(&[
                        "QUEUE.PUSH".into(),
                        QUEUES[*queue].into(),
                        "job".into(),
                        "DELAY".into(),
                        delay_ms.to_string(),
                        "MAXTRIES".into(),
                        max_tries.to_string(),
                    ]));
                }
                Step::Claim {
                    queue,
                    count,
                    lease_ms,
                    block_ms,
                } => {
                    let mut words = vec![
                        "QUEUE.CLAIM".into(),
                        QUEUES[*queue].into(),
                        "w".into(),
                        lease_ms.to_string(),
                        "COUNT".into(),
                        count.to_string(),
                    ];
                    if let Some(ms) = block_ms {
                        words.extend(["BLOCK".into(), ms.to_string()]);
                    }
                    match harness.run(&argv(&words)) {
                        Reply::Simple(blocked) => {
                            let seq = blocked
                                .strip_prefix("(blocked ")
                                .and_then(|s| s.strip_suffix(')'))
                                .and_then(|s| s.parse().ok())
                                .expect("a waiting claim");
                            blocked_on.insert(seq, QUEUES[*queue]);
                        }
                        reply => seen.extend(claims(QUEUES[*queue], &reply)),
                    }
                }
                Step::Finish { claim, verb } if !seen.is_empty() => {
                    let (queue, id, token) = seen[claim % seen.len()].clone();
                    let mut words = vec![queue, id.to_string(), token.to_string()];
                    let verb = ["QUEUE.ACK", "QUEUE.NACK", "QUEUE.EXTEND"][*verb];
                    words.insert(0, verb.into());
                    if verb == "QUEUE.EXTEND" {
                        words.push("200".into());
                    }
                    let reply = harness.run(&argv(&words));
                    prop_assert!(matches!(reply, Reply::Int(0 | 1)), "{verb}: {reply:?}");
                }
                Step::Finish { .. } => {}
                Step::Advance(ms) => harness.now += ms,
                Step::Tick => {
                    harness.apply(&Op::Tick).expect("tick applies");
                }
                Step::Grace(ms) => {
                    harness
                        .apply(&Op::Grace { ms: *ms })
                        .expect("grace applies");
                }
                Step::Unblock(seq) => {
                    harness
                        .apply(&Op::Unblock(Ticket { node: 1, seq: *seq }))
                        .expect("unblock applies");
                    // Timers fired before the unblock may have answered it.
                    if !harness.answered.contains_key(seq) {
                        blocked_on.remove(seq);
                    }
                }
            }
            for (seq, reply) in std::mem::take(&mut harness.answered) {
                let queue = blocked_on.remove(&seq).expect("an answered claim blocked");
                seen.extend(claims(queue, &reply));
                let ticket = Ticket { node: 1, seq };
                prop_assert!(!harness.state.is_waiting(ticket), "claim {seq} answered");
            }
            for seq in blocked_on.keys() {
                let ticket = Ticket { node: 1, seq: *seq };
                prop_assert!(harness.state.is_waiting(ticket), "claim {seq} waits");
            }
            check_books(&harness.state)?;
        }
        let tokens: Vec<i64> = seen.iter().map(|(_, _, token)| *token).collect();
        let mut sorted = tokens.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(sorted.len(), tokens.len(), "a token was handed out twice");
        let restored =
            State::decode_snapshot(&harness.state.encode_snapshot()).expect("the snapshot decodes");
        prop_assert!(restored == harness.state, "restored state differs");
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn queue_books_balance(steps in prop::collection::vec(step(), 1..80)) {
            run(&steps)?;
        }
    }
}
