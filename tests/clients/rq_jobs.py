"""An RQ worker connected to one node of a concord cluster processes jobs
enqueued through another node; results, failures and dependencies come
back through a third.

Run by tests/clients.rs as `python rq_jobs.py URL URL URL` with this
directory on PYTHONPATH (RQ imports job functions by name).
"""

import sys

from redis import Redis
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus


def add(a, b):
    return a + b


def fail():
    raise ValueError("as planned")


def main(enqueue_url, worker_url, check_url):
    enqueuer = Redis.from_url(enqueue_url)
    queue = Queue("concord", connection=enqueuer)
    sums = [queue.enqueue("rq_jobs.add", i, i) for i in range(10)]
    failing = queue.enqueue("rq_jobs.fail")
    after = queue.enqueue("rq_jobs.add", 100, 1, depends_on=sums[-1])
    # The dependent job waits in the deferred registry, not the queue.
    assert queue.count == 11, queue.count

    worker_conn = Redis.from_url(worker_url)
    worker = SimpleWorker([Queue("concord", connection=worker_conn)], connection=worker_conn)
    assert worker.work(burst=True)

    checker = Redis.from_url(check_url)
    for i, job in enumerate(sums):
        job = Job.fetch(job.id, connection=checker)
        assert job.get_status() == JobStatus.FINISHED, (i, job.get_status())
        assert job.return_value() == 2 * i, (i, job.return_value())
    assert Job.fetch(after.id, connection=checker).return_value() == 101
    failed = Job.fetch(failing.id, connection=checker)
    assert failed.get_status() == JobStatus.FAILED, failed.get_status()
    assert "as planned" in (failed.latest_result().exc_string or "")
    assert Queue("concord", connection=checker).count == 0
    print("OK", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
