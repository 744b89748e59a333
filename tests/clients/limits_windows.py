"""The `limits` library's fixed, moving and sliding windows, with one
limiter per node of a concord cluster sharing each limit: across all of
them, exactly the limit is admitted per window.

Run by tests/clients.rs as `python limits_windows.py URL...`.
"""

import sys

from limits import parse, storage, strategies


def main(*urls):
    limit = parse("10/minute")
    for strategy in (
        strategies.FixedWindowRateLimiter,
        strategies.MovingWindowRateLimiter,
        strategies.SlidingWindowCounterRateLimiter,
    ):
        limiters = [strategy(storage.storage_from_string(url)) for url in urls]
        key = strategy.__name__
        admitted = sum(
            1 for i in range(40) if limiters[i % len(limiters)].hit(limit, "client", key)
        )
        assert admitted == 10, (key, admitted)
        for limiter in limiters:
            assert not limiter.test(limit, "client", key), key
            stats = limiter.get_window_stats(limit, "client", key)
            assert stats.remaining == 0, (key, stats)
        # Another identifier has its own allowance.
        assert limiters[-1].hit(limit, "other", key), key
        limiters[0].clear(limit, "client", key)
        assert limiters[1].hit(limit, "client", key), key
    print("OK", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
