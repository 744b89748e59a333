//! Work queues through a 3-node cluster of real processes: a dead worker's
//! job redelivered once per lapsed lease and its stale ACK fenced; jobs
//! pushed through one node claimed exactly once by workers on the others;
//! delayed jobs; MAXTRIES and the dead list; a blocking claim on a follower
//! answered by a push through another node, and one whose client leaves.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::Cluster;
use common::{wait_for, Server};
use redis::Value;

/// One claimed job as QUEUE.CLAIM returns it.
#[derive(Clone, Debug, PartialEq)]
struct Job {
    id: i64,
    payload: String,
    attempt: i64,
    token: i64,
}

fn push(c: &mut redis::Connection, queue: &str, payload: &str, options: &[&str]) -> i64 {
    redis::cmd("QUEUE.PUSH")
        .arg(queue)
        .arg(payload)
        .arg(options)
        .query(c)
        .unwrap()
}

fn claim(
    c: &mut redis::Connection,
    queue: &str,
    worker: &str,
    lease_ms: u64,
    options: &[&str],
) -> Vec<Job> {
    let jobs: Vec<(i64, String, i64, i64)> = redis::cmd("QUEUE.CLAIM")
        .arg(queue)
        .arg(worker)
        .arg(lease_ms)
        .arg(options)
        .query(c)
        .unwrap();
    jobs.into_iter()
        .map(|(id, payload, attempt, token)| Job {
            id,
            payload,
            attempt,
            token,
        })
        .collect()
}

/// QUEUE.ACK or QUEUE.NACK: 1 if the token held the claim.
fn finish(c: &mut redis::Connection, verb: &str, queue: &str, job: &Job) -> i64 {
    redis::cmd(verb)
        .arg(queue)
        .arg(job.id)
        .arg(job.token)
        .query(c)
        .unwrap()
}

fn stats(c: &mut redis::Connection, queue: &str) -> BTreeMap<String, i64> {
    let reply: Value = redis::cmd("QUEUE.STATS").arg(queue).query(c).unwrap();
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .chunks(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect(),
        other => panic!("QUEUE.STATS answered {other:?}"),
    };
    pairs
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::BulkString(k), Value::Int(v)) => (String::from_utf8(k).unwrap(), v),
            other => panic!("a QUEUE.STATS field: {other:?}"),
        })
        .collect()
}

#[test]
fn a_dead_workers_job_is_redelivered_once_per_lapsed_lease_and_its_ack_is_fenced() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let others = cluster.followers(leader);
    let mut producer = cluster.client(leader);
    let mut doomed = cluster.client(others[0]);
    let mut survivor = cluster.client(others[1]);

    let id = push(&mut producer, "jobs", "resize image 7", &[]);
    let first = claim(&mut doomed, "jobs", "doomed", 500, &[]);
    assert_eq!(
        first,
        vec![Job {
            id,
            payload: "resize image 7".into(),
            attempt: 1,
            token: first[0].token,
        }]
    );
    // The doomed worker never acks: once its lease lapses the job is
    // delivered again, to another worker, as its second attempt.
    let second = wait_for(
        "the lapsed job to be redelivered",
        Duration::from_secs(20),
        || {
            let jobs = claim(&mut survivor, "jobs", "survivor", 30_000, &[]);
            jobs.into_iter().next()
        },
    );
    assert_eq!((second.id, second.attempt), (id, 2));
    assert!(second.token > first[0].token, "claim tokens grow");
    // While the new lease runs nobody else gets it.
    assert_eq!(claim(&mut doomed, "jobs", "doomed", 500, &[]), vec![]);
    assert_eq!(finish(&mut doomed, "QUEUE.ACK", "jobs", &first[0]), 0);
    assert_eq!(finish(&mut survivor, "QUEUE.ACK", "jobs", &second), 1);
    assert_eq!(finish(&mut survivor, "QUEUE.ACK", "jobs", &second), 0);
    for node in 1..=3 {
        let s = stats(&mut cluster.client(node), "jobs");
        assert_eq!(
            (s["pushed"], s["acked"], s["ready"], s["inflight"]),
            (1, 1, 0, 0),
            "node {node}: {s:?}"
        );
    }
    cluster.converged(&[1, 2, 3]);
}

#[test]
fn jobs_pushed_through_one_node_are_claimed_exactly_once_by_workers_on_the_others() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let producer_node = cluster.followers(leader)[0];
    let worker_nodes: Vec<u64> = (1..=3).filter(|id| *id != producer_node).collect();
    let mut producer = cluster.client(producer_node);
    const JOBS: i64 = 300;
    let mut pipe = redis::pipe();
    for i in 1..=JOBS {
        pipe.cmd("QUEUE.PUSH").arg("work").arg(format!("job-{i}"));
    }
    let ids: Vec<i64> = pipe.query(&mut producer).unwrap();
    assert_eq!(ids, (1..=JOBS).collect::<Vec<_>>());

    let done: Arc<Mutex<Vec<Job>>> = Arc::default();
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let url = cluster.url(worker_nodes[w % worker_nodes.len()]);
            let done = done.clone();
            std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let name = format!("worker-{w}");
                loop {
                    // Leases far longer than the test: nothing is redelivered,
                    // so an empty claim means every job is taken.
                    let jobs = claim(&mut c, "work", &name, 600_000, &["COUNT", "7"]);
                    if jobs.is_empty() {
                        return;
                    }
                    for job in jobs {
                        assert_eq!(finish(&mut c, "QUEUE.ACK", "work", &job), 1, "{job:?}");
                        done.lock().unwrap().push(job);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let done = done.lock().unwrap();
    let mut seen: Vec<i64> = done.iter().map(|j| j.id).collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=JOBS).collect::<Vec<_>>(), "every job once");
    for job in done.iter() {
        assert_eq!(job.payload, format!("job-{}", job.id));
        assert_eq!(job.attempt, 1);
    }
    let mut tokens: Vec<i64> = done.iter().map(|j| j.token).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), done.len(), "one token per claim");
    let s = stats(&mut producer, "work");
    assert_eq!((s["pushed"], s["acked"], s["inflight"]), (JOBS, JOBS, 0));
    cluster.converged(&[1, 2, 3]);
}

#[test]
fn a_delayed_job_is_claimable_only_once_its_delay_has_passed() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let follower = cluster.followers(leader)[0];
    let mut producer = cluster.client(leader);
    let mut worker = cluster.client(follower);
    // One job due in a moment and one due far beyond the test: the first
    // becomes claimable through the log's clock, the second never does
    // meanwhile, without the test reading a clock of its own.
    let far = push(&mut producer, "later", "next month", &["DELAY", "3600000"]);
    let id = push(&mut producer, "later", "send reminder", &["DELAY", "1500"]);
    let s = stats(&mut producer, "later");
    assert_eq!((s["ready"], s["delayed"]), (0, 2));
    let job = wait_for("the delayed job", Duration::from_secs(20), || {
        claim(&mut worker, "later", "w", 10_000, &[])
            .into_iter()
            .next()
    });
    assert_eq!((job.id, job.payload.as_str()), (id, "send reminder"));
    assert_ne!(job.id, far);
    let s = stats(&mut worker, "later");
    assert_eq!(
        (s["delayed"], s["inflight"]),
        (1, 1),
        "the far job still waits"
    );
    assert!(claim(&mut worker, "later", "w", 10_000, &[]).is_empty());
    assert_eq!(finish(&mut worker, "QUEUE.ACK", "later", &job), 1);
}

#[test]
fn a_job_claimed_maxtries_times_goes_to_the_dead_list() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let others = cluster.followers(leader);
    let mut producer = cluster.client(others[0]);
    let mut worker = cluster.client(others[1]);

    let poison = push(&mut producer, "mail", "poison", &["MAXTRIES", "2"]);
    let first = claim(&mut worker, "mail", "w", 300, &[]);
    assert_eq!(first[0].id, poison);
    // The first lease lapses; the second claim is its last try.
    let second = wait_for("the second try", Duration::from_secs(20), || {
        claim(&mut worker, "mail", "w", 30_000, &[])
            .into_iter()
            .next()
    });
    assert_eq!((second.id, second.attempt), (poison, 2));
    assert_eq!(finish(&mut worker, "QUEUE.NACK", "mail", &second), 1);

    // A lapsed last lease sends a job to the dead list too.
    let once = push(&mut producer, "mail", "once", &["MAXTRIES", "1"]);
    let claimed = claim(&mut worker, "mail", "w", 300, &[]);
    assert_eq!((claimed[0].id, claimed[0].attempt), (once, 1));
    let dead = wait_for("both jobs dead", Duration::from_secs(20), || {
        let dead: Vec<(i64, String, i64)> = redis::cmd("QUEUE.DEAD")
            .arg("mail")
            .query(&mut producer)
            .unwrap();
        (dead.len() == 2).then_some(dead)
    });
    assert_eq!(
        dead,
        vec![(poison, "poison".into(), 2), (once, "once".into(), 1)]
    );
    assert_eq!(finish(&mut worker, "QUEUE.ACK", "mail", &claimed[0]), 0);
    assert_eq!(claim(&mut worker, "mail", "w", 300, &[]), vec![]);
    let s = stats(&mut worker, "mail");
    assert_eq!(
        (
            s["dead"],
            s["ready"],
            s["inflight"],
            s["pushed"],
            s["acked"]
        ),
        (2, 0, 0, 2, 0)
    );
}

#[test]
fn a_blocked_claim_on_a_follower_is_answered_by_a_push_through_another_node() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader();
    let others = cluster.followers(leader);
    let url = cluster.url(others[0]);
    let claimer = std::thread::spawn(move || {
        let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
        claim(&mut c, "events", "blocked", 30_000, &["BLOCK", "10000"])
    });
    let mut producer = cluster.client(others[1]);
    wait_for("the claimer to wait", Duration::from_secs(10), || {
        (stats(&mut producer, "events")["waiting"] == 1).then_some(())
    });
    let id = push(&mut producer, "events", "wake up", &[]);
    let jobs = claimer.join().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        (jobs[0].id, jobs[0].payload.as_str(), jobs[0].attempt),
        (id, "wake up", 1)
    );
    let s = stats(&mut producer, "events");
    assert_eq!((s["waiting"], s["inflight"]), (0, 1));

    // A wait that runs out answers an empty array.
    let mut c = cluster.client(others[0]);
    assert_eq!(
        claim(&mut c, "events", "w", 1000, &["BLOCK", "300"]),
        vec![]
    );
}

#[test]
fn a_blocked_claimer_that_disconnects_gives_up_its_place() {
    let server = Server::start();
    let mut c = server.client();
    let mut raw = server.raw();
    raw.write_all(b"QUEUE.CLAIM inbox gone 10000 BLOCK 0\r\n")
        .unwrap();
    wait_for("the raw client to wait", Duration::from_secs(10), || {
        (stats(&mut c, "inbox")["waiting"] == 1).then_some(())
    });
    drop(raw);
    wait_for(
        "the departed claimer to leave the line",
        Duration::from_secs(10),
        || (stats(&mut c, "inbox")["waiting"] == 0).then_some(()),
    );
    let id = push(&mut c, "inbox", "for someone still here", &[]);
    let jobs = claim(&mut c, "inbox", "present", 10_000, &[]);
    assert_eq!(
        (jobs[0].id, jobs[0].attempt),
        (id, 1),
        "nobody took it first"
    );
}
