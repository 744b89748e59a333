"""A mesh service instance coordinating through concord with redis-py.

Two instances of a "checkout" service start against different nodes of a
concord cluster. Each one:

  - opens a session and keeps it alive from a background thread,
  - registers itself in the service registry, bound to the session,
  - picks peers round robin (the cluster decides, so picks are exact),
  - takes a lock with a fencing token and writes under LOCK.GUARD,
  - rate-limits per user,
  - pushes and claims jobs from a leased work queue,
  - reports to a circuit breaker shared by the whole mesh.

Run it against `concord dev` (nodes on 6379-6381 by default):

    pip install redis
    python examples/python/mesh_instance.py
    CONCORD_NODES=127.0.0.1:7000,127.0.0.1:7001 python examples/python/mesh_instance.py

It asserts what it expects at every step and exits non-zero on a surprise,
so it doubles as an end-to-end check (tests/dev.rs runs it).
"""

import os
import threading
import time

import redis

SERVICE = "checkout"


def connect(address):
    host, port = address.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), decode_responses=True)


class Instance:
    def __init__(self, name, address, node):
        self.name = name
        self.address = address
        self.r = connect(node)
        self.session = None
        self.stop = threading.Event()

    def start(self, ttl_ms=6000):
        self.session = self.r.execute_command("SESSION.CREATE", ttl_ms, "NAME", self.name)
        added = self.r.execute_command(
            "REGISTRY.REGISTER", SERVICE, self.name, self.address, 0,
            "META", '{"version":"1.4.2"}', "SESSION", self.session,
        )
        assert added == 1, added
        threading.Thread(target=self.keepalive, args=(ttl_ms,), daemon=True).start()

    def keepalive(self, ttl_ms):
        while not self.stop.wait(ttl_ms / 3000):
            try:
                self.r.execute_command("SESSION.KEEPALIVE", self.session)
            except redis.exceptions.ResponseError as e:
                if str(e).startswith("NOSESSION"):
                    return
            except redis.exceptions.ConnectionError:
                pass

    def shutdown(self):
        self.stop.set()
        assert self.r.execute_command("SESSION.DESTROY", self.session) == 1


def main():
    nodes = os.environ.get(
        "CONCORD_NODES", "127.0.0.1:6379,127.0.0.1:6380,127.0.0.1:6381"
    ).split(",")
    a = Instance("checkout-a", "10.0.0.1:8080", nodes[0])
    b = Instance("checkout-b", "10.0.0.2:8080", nodes[-1])
    a.start()
    b.start()
    r = a.r

    # Service discovery: both instances listed; round robin alternates
    # exactly, whichever node each pick goes through.
    listed = r.execute_command("REGISTRY.LIST", SERVICE)
    assert len(listed) == 2, listed
    picks = [inst.r.execute_command("REGISTRY.PICK", SERVICE, "ROUND_ROBIN")[0]
             for inst in (a, b, a, b)]
    assert sorted(picks) == ["checkout-a", "checkout-a", "checkout-b", "checkout-b"], picks
    print("round robin picks:", picks)

    # A lock with a fencing token; the guarded write only lands while the
    # token holds the lock.
    token = a.r.execute_command("LOCK.ACQUIRE", "inventory", a.name, 5000, "WAIT", 2000)
    assert isinstance(token, int), token
    assert a.r.execute_command("LOCK.GUARD", "inventory", token, "SET", "stock:sku-1", 41) == "OK"
    assert b.r.execute_command("LOCK.ACQUIRE", "inventory", b.name, 5000) is None
    assert a.r.execute_command("LOCK.RELEASE", "inventory", token) == 1
    later = b.r.execute_command("LOCK.ACQUIRE", "inventory", b.name, 5000)
    assert later > token, (token, later)
    try:
        a.r.execute_command("LOCK.GUARD", "inventory", token, "SET", "stock:sku-1", 0)
        raise AssertionError("a stale token wrote")
    except redis.exceptions.ResponseError as e:
        assert str(e).startswith("FENCED"), e
    assert r.get("stock:sku-1") == "41"
    b.r.execute_command("LOCK.RELEASE", "inventory", later)
    print("fencing tokens:", token, "then", later)

    # Rate limit per user: 5 per minute across both instances.
    allowed = 0
    for inst in (a, b) * 4:
        ok, remaining, retry_after, reset_after = inst.r.execute_command(
            "RATELIMIT.ACQUIRE", "user:42", "FIXED", 5, 60000)
        allowed += ok
    assert allowed == 5, allowed
    print("rate limit: 5 of 8 allowed")

    # A leased work queue: a pushes, b claims and acks; a stale token
    # cannot ack.
    for n in range(3):
        a.r.execute_command("QUEUE.PUSH", "receipts", f"order-{n}")
    jobs = b.r.execute_command("QUEUE.CLAIM", "receipts", b.name, 10000, "COUNT", 10)
    assert [j[1] for j in jobs] == ["order-0", "order-1", "order-2"], jobs
    for job_id, payload, attempt, claim in jobs:
        assert attempt == 1
        assert b.r.execute_command("QUEUE.ACK", "receipts", job_id, claim) == 1
        assert b.r.execute_command("QUEUE.ACK", "receipts", job_id, claim) == 0
    stats = r.execute_command("QUEUE.STATS", "receipts")
    print("queue stats:", stats)

    # One circuit breaker for the mesh: failures from both instances add up.
    r.execute_command("BREAKER.CONFIG", "payments", "FAILURES", 3, "WINDOW", 10000,
                      "COOLDOWN", 60000)
    for inst in (a, b, a):
        assert inst.r.execute_command("BREAKER.ALLOW", "payments")[0] == 1
        inst.r.execute_command("BREAKER.RECORD", "payments", "FAILURE")
    allowed, state = b.r.execute_command("BREAKER.ALLOW", "payments")
    assert (allowed, state) == (0, "OPEN"), (allowed, state)
    print("breaker:", state)

    # An instance that leaves takes its registration with it.
    b.shutdown()
    listed = r.execute_command("REGISTRY.LIST", SERVICE)
    assert len(listed) == 1, listed
    a.shutdown()
    print("ok")


if __name__ == "__main__":
    main()
