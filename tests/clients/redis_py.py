"""redis-py 8 (RESP3) against a concord cluster: Lock, pipelines and
transactions, pub/sub across nodes.

Run by tests/clients.rs as `python redis_py.py SCENARIO URL...`; exits
non-zero (an AssertionError's traceback) when concord misbehaves.
"""

import os
import sys
import threading
import time

import redis


def connect(url):
    # rediss:// URLs: the CA and this client's certificate come from the
    # environment the test sets.
    tls = {}
    if url.startswith("rediss://"):
        tls = dict(
            ssl_ca_certs=os.environ["CONCORD_TEST_CA"],
            ssl_certfile=os.environ["CONCORD_TEST_CERT"],
            ssl_keyfile=os.environ["CONCORD_TEST_KEY"],
            ssl_check_hostname=False,
        )
    return redis.Redis.from_url(url, protocol=3, socket_timeout=30, **tls)


def until(what, fn, timeout=30.0):
    """Calls fn until it returns without a retryable error (a node waiting
    for a new leader answers TRYAGAIN or CLUSTERDOWN)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError) as e:
            # redis-py maps TRYAGAIN and CLUSTERDOWN replies to their own
            # exception classes (and drops the prefix from the text).
            retryable = isinstance(
                e,
                (
                    redis.ConnectionError,
                    redis.TimeoutError,
                    redis.exceptions.TryAgainError,
                    redis.exceptions.ClusterDownError,
                ),
            ) or str(e).startswith(("TRYAGAIN", "CLUSTERDOWN"))
            if not retryable or time.monotonic() > deadline:
                raise AssertionError(f"{what}: {e}") from e
            time.sleep(0.05)


def lock(first, second):
    """Holds a redis-py Lock across the kill of the leader: acquire through
    one follower, the test kills the leader, then extend and release
    through the other follower."""
    a, b = connect(first), connect(second)
    held = a.lock("orders", timeout=30, blocking_timeout=5)
    assert held.acquire(), "the lock is free"
    token = held.local.token
    assert b.lock("orders", timeout=30).locked()
    rival = b.lock("orders", timeout=30)
    assert not rival.acquire(blocking=False), "a second holder is refused"
    print("ACQUIRED", flush=True)
    assert sys.stdin.readline().strip() == "KILLED"

    # The same lock, through the other follower, after the election.
    same = b.lock("orders", timeout=30)
    same.local.token = token
    assert until("extend", lambda: same.extend(60, replace_ttl=True))
    ttl = until("pttl", lambda: b.pttl("orders"))
    assert 30_000 < ttl <= 60_000, ttl
    assert until("owned", lambda: same.owned())
    assert not rival.acquire(blocking=False)
    until("release", same.release)
    assert b.get("orders") is None
    assert until("reacquire", lambda: rival.acquire(blocking=False))
    rival.release()
    print("OK", flush=True)


def transactions(*urls):
    """Optimistic increments with WATCH (redis-py's transaction helper) from
    two threads per node, plus plain pipelines."""
    per_thread = 20
    clients = [connect(url) for url in urls for _ in range(2)]
    clients[0].delete("total", "log")

    def add(pipe):
        current = int(pipe.get("total") or 0)
        pipe.multi()
        pipe.set("total", current + 1)
        pipe.rpush("log", current + 1)

    def work(client):
        for _ in range(per_thread):
            client.transaction(add, "total")

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = per_thread * len(clients)
    assert int(clients[0].get("total")) == expected
    # Each successful transaction appended the value it wrote: no two saw
    # the same total.
    log = [int(v) for v in clients[-1].lrange("log", 0, -1)]
    assert log == list(range(1, expected + 1)), log

    pipe = clients[1].pipeline(transaction=False)
    pipe.set("p1", "a").incr("p2").get("p1").lpush("p3", "x", "y").lrange("p3", 0, -1)
    assert pipe.execute() == [True, 1, b"a", 2, [b"y", b"x"]]
    tx = clients[2].pipeline(transaction=True)
    tx.incr("p2").incrby("p2", 10).get("p2")
    assert tx.execute() == [2, 12, b"12"]
    print("OK", flush=True)


def pubsub(*urls):
    """A subscriber on every node receives every message published through
    every node once, in one order per channel."""
    subscribers = []
    for url in urls:
        p = connect(url).pubsub()
        p.subscribe("events")
        p.psubscribe("ev*")
        subscribers.append(p)
    for p in subscribers:
        for _ in range(2):
            message = p.get_message(timeout=10)
            assert message and message["type"] in ("subscribe", "psubscribe"), message
    publishers = [connect(url) for url in urls]
    sent = []
    for i in range(30):
        text = f"m{i}"
        receivers = publishers[i % len(publishers)].publish("events", text)
        assert receivers == 2 * len(subscribers), receivers
        sent.append(text.encode())
    for p in subscribers:
        direct, matched = [], []
        deadline = time.monotonic() + 20
        while len(direct) + len(matched) < 2 * len(sent):
            assert time.monotonic() < deadline, (len(direct), len(matched))
            message = p.get_message(timeout=1)
            if message is None:
                continue
            (direct if message["type"] == "message" else matched).append(message["data"])
        assert direct == sent, direct
        assert matched == sent, matched
        assert p.get_message(timeout=0.2) is None
    numsub = dict(publishers[0].pubsub_numsub("events"))
    assert numsub[b"events"] == len(subscribers), numsub
    print("OK", flush=True)


if __name__ == "__main__":
    scenario, *args = sys.argv[1:]
    {"lock": lock, "transactions": transactions, "pubsub": pubsub}[scenario](*args)
