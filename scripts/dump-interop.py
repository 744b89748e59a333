"""concord <-> Redis 7.0 DUMP/RESTORE interop check, run by hand: writes the same values to both, DUMPs each key on one side and RESTOREs it on the other, and compares; then the same for function libraries (FUNCTION DUMP / FUNCTION RESTORE). usage: scripts/dump-interop.py CONCORD_PORT REDIS_PORT (both are FLUSHALLed and FUNCTION FLUSHed)."""
import sys, redis
c = redis.Redis(port=int(sys.argv[1])); r = redis.Redis(port=int(sys.argv[2]))
def fill(x):
    x.flushall()
    x.set("s_small", "12"); x.set("s_neg", "-1234"); x.set("s_i32", "123456789"); x.set("s_i64", "12345678901234")
    x.set("s_raw", "hello world"); x.set("s_long", "abcdefghij" * 500); x.set("s_empty", ""); x.set("s_bin", bytes(range(256)))
    x.set("s_lead0", "007"); x.set("s_big", "x" * 100000)
    x.rpush("l_small", "a", "b", "1234", "-70000", "x" * 100, "12345678901234", "9223372036854775807", "-9223372036854775808")
    x.rpush("l_big", *[("e%d" % i) * (i % 50) or "0" for i in range(5000)])
    x.rpush("l_huge_elems", "y" * 20000, "z" * 9000, "w")
    x.hset("h_small", mapping={"f1": "v1", "f2": "2", "n": "-300"})
    x.hset("h_many", mapping={("f%d" % i): ("v%d" % i) for i in range(600)})
    x.hset("h_long", mapping={"f": "v" * 100, "g": "w"})
    x.sadd("set_int", 1, 2, 3, -5, 100000, 5000000000)
    x.sadd("set_int16", 1, 300)
    x.sadd("set_str", "a", "b", "c")
    x.sadd("set_big", *[("m%d" % i) for i in range(300)])
    x.sadd("set_bigint", *range(1000))
    x.zadd("z_small", {"a": 1.5, "b": -2, "c": 3e10, "12": 7, "d": 0.1, "e": 1e-300, "f": 1e300})
    x.zadd("z_big", {("m%d" % i): i / 3 for i in range(300)})
    x.zadd("z_inf", {"x": float("inf"), "y": float("-inf")})
    x.zadd("z_longmember", {"m" * 100: 1})
def read(x, k):
    t = x.type(k).decode()
    if t == "string": return x.get(k)
    if t == "list": return x.lrange(k, 0, -1)
    if t == "hash": return sorted(x.hgetall(k).items())
    if t == "set": return sorted(x.smembers(k))
    if t == "zset": return x.zrange(k, 0, -1, withscores=True)
    return t
ok = bad = 0
for src, dst, name in ((c, r, "concord -> redis 7.0"), (r, c, "redis 7.0 -> concord")):
    fill(src); dst.flushall()
    for k in sorted(src.keys()):
        payload = src.dump(k)
        try:
            dst.restore(k, 0, payload)
            same = read(src, k) == read(dst, k)
        except Exception as e:
            same = False; print("  ", name, k.decode(), "ERROR", e)
        print("%s %-14s %-6s %s bytes=%d" % (name, k.decode(), src.type(k).decode(), "ok" if same else "MISMATCH", len(payload)))
        ok += same; bad += not same
LIBRARIES = [
    "#!lua name=small\nredis.register_function('small', function(KEYS, ARGV) return 'hello' end)",
    # Long and repetitive: Redis compresses it (LZF).
    "#!lua name=big\n" + "".join("redis.register_function('f%d', function(KEYS, ARGV) return %d end)\n" % (i, i) for i in range(40)),
    "#!lua name=flagged\nredis.register_function{function_name='ro', callback=function(KEYS) return redis.call('get', KEYS[1]) end, flags={'no-writes'}, description='reads'}",
]
def libs(x):
    """FUNCTION LIST WITHCODE, in name order, as comparable tuples."""
    out = []
    for lib in x.execute_command("FUNCTION", "LIST", "WITHCODE"):
        pairs = lambda m: m if isinstance(m, dict) else dict(zip(m[::2], m[1::2]))
        lib = pairs(lib)
        functions = []
        for f in lib[b"functions"]:
            f = pairs(f)
            functions.append((f[b"name"], f[b"description"], sorted(f[b"flags"])))
        out.append((lib[b"library_name"], lib[b"library_code"], sorted(functions)))
    return sorted(out)
for src, dst, name in ((c, r, "concord -> redis 7.0"), (r, c, "redis 7.0 -> concord")):
    for x in (src, dst):
        x.execute_command("FUNCTION", "FLUSH")
    for code in LIBRARIES:
        src.execute_command("FUNCTION", "LOAD", code)
    payload = src.execute_command("FUNCTION", "DUMP")
    dst.execute_command("FUNCTION", "LOAD", LIBRARIES[0])
    try:
        dst.execute_command("FUNCTION", "RESTORE", payload)
        refused = None
    except Exception as e:
        refused = str(e)
    dst.execute_command("FUNCTION", "RESTORE", payload, "REPLACE")
    same = libs(src) == libs(dst) and refused == "Library small already exists" \
        and dst.execute_command("FCALL", "f39", 0) == 39 and dst.execute_command("FUNCTION", "DUMP") is not None
    print("%s %-14s %-6s %s bytes=%d" % (name, "(libraries)", "func", "ok" if same else "MISMATCH %r" % refused, len(payload)))
    ok += same; bad += not same
print("ok", ok, "bad", bad)
