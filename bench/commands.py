#!/usr/bin/env python3
"""Redis commands that mesh services lean on, on a 3-node concord cluster
against Redis with appendfsync always, in the same run: EVALSHA of
redis-py's Lock scripts, LPUSH/RPOP, ZADD and PUBLISH.

    bench/commands.py                 # 3 rounds, 50k requests per test
    BENCH_QUICK=1 bench/commands.py   # 1 round, 10k requests

The same command goes to both servers (the concord leader, where every
write is fsync'd on a majority before it is acknowledged). The Lock rows
run redis-py's own scripts, loaded with SCRIPT LOAD on both: extend on a
held lock (a write every call) and release with another owner's token (the
script reads and returns 0: Redis writes nothing to its AOF for it). RPOP
pops what the LPUSH row pushed into one list in the same round. PUBLISH has
no subscribers; Redis does not persist pub/sub, concord orders it through
the log. Environment as bench/primitives.py.
"""

import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from primitives import compare  # noqa: E402

# redis-py's Lock scripts, shared with benches/apply.rs.
LUA = Path(__file__).resolve().parent / "lua"
LOCK_RELEASE = (LUA / "redis_py_lock_release.lua").read_text()
LOCK_EXTEND = (LUA / "redis_py_lock_extend.lua").read_text()


def sha(script):
    return hashlib.sha1(script.encode()).hexdigest()


def same(name, command, setup=()):
    return (name, command, command, list(setup), list(setup))


ROWS = [
    same("EVALSHA Lock extend (writes)",
         ["EVALSHA", sha(LOCK_EXTEND), "1", "lock:held", "token", "30000", "1"],
         [["SCRIPT", "LOAD", LOCK_EXTEND], ["SET", "lock:held", "token", "PX", "30000"]]),
    same("EVALSHA Lock release (not owner)",
         ["EVALSHA", sha(LOCK_RELEASE), "1", "lock:__rand_int__", "token"],
         [["SCRIPT", "LOAD", LOCK_RELEASE]]),
    same("LPUSH", ["LPUSH", "queue", "payload"]),
    same("RPOP", ["RPOP", "queue"]),
    same("ZADD", ["ZADD", "board", "__rand_int__", "member:__rand_int__"]),
    same("PUBLISH", ["PUBLISH", "events", "payload"]),
]


if __name__ == "__main__":
    compare(ROWS, "concord Redis-command benchmark", lambda cmd: " ".join(cmd[:1]))
