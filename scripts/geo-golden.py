#!/usr/bin/env python3
"""Records Redis's exact replies to geo commands for concord's golden test.

Usage: scripts/geo-golden.py [port]   (default 6399; a scratch redis-server,
its data is flushed) > src/state/geo/golden.resp

Each case is a `> command` line (arguments quoted, with \\ escapes) and the
raw reply bytes on the next line, escaped the same way. `resp 3` / `resp 2`
lines switch the protocol (HELLO), as the test does.
"""
import random
import socket
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 6399
sock = socket.create_connection(("127.0.0.1", PORT))
buf = b""


def escape(data: bytes) -> str:
    out = []
    for b in data:
        c = chr(b)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif 0x20 <= b <= 0x7E:
            out.append(c)
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


def read_line() -> bytes:
    global buf
    while b"\r\n" not in buf:
        buf += sock.recv(65536)
    line, buf = buf.split(b"\r\n", 1)
    return line + b"\r\n"


def read_exact(n: int) -> bytes:
    global buf
    while len(buf) < n:
        buf += sock.recv(65536)
    data, buf = buf[:n], buf[n:]
    return data


def read_reply() -> bytes:
    line = read_line()
    kind = line[:1]
    if kind in (b"$", b"="):
        n = int(line[1:-2])
        return line if n < 0 else line + read_exact(n + 2)
    if kind in (b"*", b"~", b">", b"%"):
        n = int(line[1:-2])
        if n < 0:
            return line
        if kind == b"%":
            n *= 2
        return line + b"".join(read_reply() for _ in range(n))
    return line


def send(args) -> bytes:
    args = [a.encode() if isinstance(a, str) else a for a in args]
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    return read_reply()


def case(*args):
    reply = send(args)
    print("> " + " ".join('"%s"' % escape(a.encode()) for a in args))
    print(escape(reply))


def protocol(n):
    send(["HELLO", str(n)])
    print("resp %d" % n)


send(["FLUSHALL"])
print("# Recorded from", send(["INFO", "server"]).split(b"redis_version:")[1].split(b"\r\n")[0].decode())
protocol(2)
rng = random.Random(7)
points = []
for i in range(40):
    lon = rng.uniform(-180, 180)
    lat = rng.uniform(-85.05112878, 85.05112878)
    points.append((repr(lon), repr(lat), "p%d" % i))
# Some near one another, for searches that find several.
for i in range(30):
    lon = 2.35 + rng.uniform(-1.5, 1.5)
    lat = 48.85 + rng.uniform(-1, 1)
    points.append((repr(lon), repr(lat), "paris%d" % i))
edges = [("180", "85.05112878", "ne"), ("-180", "-85.05112878", "sw"), ("0", "0", "origin"),
         ("-0.0000001", "0.0000001", "near0"), ("179.9999", "-85", "corner")]
points += edges
flat = [x for p in points for x in p]
case("GEOADD", "g", *flat)
case("GEOADD", "g", "CH", "2.35", "48.85", "paris0", "2.35", "48.85", "new")
case("GEOADD", "g", "NX", "CH", "2.36", "48.86", "paris0")
case("GEOADD", "g", "XX", "CH", "2.36", "48.86", "paris0", "1", "1", "absent")
case("ZRANGE", "g", "0", "-1", "WITHSCORES")
names = [p[2] for p in points] + ["new", "absent"]
case("GEOPOS", "g", *names)
case("GEOHASH", "g", *names)
for a, b in [("p0", "p1"), ("p2", "p3"), ("paris1", "paris2"), ("ne", "sw"), ("origin", "near0"), ("p5", "p5")]:
    for unit in [[], ["m"], ["km"], ["FT"], ["mi"]]:
        case("GEODIST", "g", a, b, *unit)
for r, unit in [("50", "km"), ("120", "km"), ("5000", "km"), ("30", "mi"), ("200000", "ft"), ("0", "m"), ("20000", "km")]:
    case("GEORADIUS", "g", "2.35", "48.85", r, unit, "WITHDIST", "WITHCOORD", "WITHHASH")
    case("GEORADIUS", "g", "2.35", "48.85", r, unit, "ASC", "WITHDIST")
    case("GEORADIUS", "g", "2.35", "48.85", r, unit, "DESC", "COUNT", "5")
    case("GEORADIUS", "g", "2.35", "48.85", r, unit, "COUNT", "3", "ANY")
for lon, lat, px in [(p[0], p[1], p[2]) for p in points[:12]]:
    case("GEORADIUS", "g", lon, lat, "3000", "km", "WITHDIST")
    case("GEORADIUSBYMEMBER", "g", px, "4000", "km", "ASC", "WITHCOORD")
    case("GEOSEARCH", "g", "FROMMEMBER", px, "BYBOX", "5000", "3000", "km", "DESC", "WITHDIST")
for w, h in [("100", "100"), ("300", "50"), ("20", "400")]:
    case("GEOSEARCH", "g", "FROMLONLAT", "2.35", "48.85", "BYBOX", w, h, "km", "WITHDIST", "WITHHASH")
    case("GEOSEARCH", "g", "FROMMEMBER", "paris3", "BYBOX", w, h, "km", "ASC", "COUNT", "4")
case("GEORADIUS", "g", "179.5", "85", "500", "km", "WITHDIST")
case("GEORADIUS", "g", "-179.5", "-85", "500", "km", "WITHDIST")
case("GEORADIUS", "g", "0", "0", "1", "m", "WITHDIST")
case("GEOSEARCHSTORE", "dst", "g", "FROMLONLAT", "2.35", "48.85", "BYRADIUS", "100", "km")
case("ZRANGE", "dst", "0", "-1", "WITHSCORES")
case("GEOSEARCHSTORE", "dst", "g", "FROMLONLAT", "2.35", "48.85", "BYRADIUS", "100", "km", "STOREDIST", "DESC", "COUNT", "3")
case("ZRANGE", "dst", "0", "-1", "WITHSCORES")
case("GEORADIUS", "g", "2.35", "48.85", "100", "km", "STOREDIST", "dst2")
case("ZRANGE", "dst2", "0", "-1", "WITHSCORES")
case("GEORADIUSBYMEMBER", "g", "paris4", "100", "km", "STORE", "dst2", "COUNT", "2")
case("ZRANGE", "dst2", "0", "-1", "WITHSCORES")
case("GEORADIUS", "g", "-100", "0", "1", "km", "STORE", "dst2")
case("EXISTS", "dst2")
case("GEOSEARCHSTORE", "dst", "nokey", "FROMMEMBER", "x", "BYRADIUS", "1", "km")
case("EXISTS", "dst")
# Ties in distance: COUNT cuts a sorted result with Redis's pqsort, whose
# order of equal distances is its own.
dup = []
for i in range(50):
    dup += ["10", "10", "same%02d" % i]
for i in range(25):
    dup += ["10.5", "10", "east%02d" % i, "9.5", "10", "west%02d" % i]
for i in range(7):
    dup += ["10", "10.3", "north%d" % i]
case("GEOADD", "dup", *dup)
for count in ["1", "3", "7", "8", "41", "49", "50", "51", "60", "99", "120", "131", "132"]:
    for order in ["ASC", "DESC"]:
        case("GEORADIUS", "dup", "10", "10", "100", "km", order, "COUNT", count)
    case("GEORADIUS", "dup", "10.2", "10", "100", "km", "COUNT", count, "WITHDIST")
    case("GEOSEARCH", "dup", "FROMMEMBER", "west03", "BYBOX", "300", "300", "km", "DESC", "COUNT", count)
# Scores no GEOADD makes still decode.
case("ZADD", "odd", "-1", "neg", "0", "zero", "4503599627370495", "top", "1e30", "huge", "0.5", "half")
case("GEOPOS", "odd", "neg", "zero", "top", "huge", "half")
case("GEOHASH", "odd", "neg", "zero", "top", "huge", "half")
case("GEODIST", "odd", "neg", "top")
# Errors, in Redis's order.
case("SET", "str", "x")
errors = [
    ["GEOADD", "g", "200", "0", "m"],
    ["GEOADD", "g", "0", "86", "m"],
    ["GEOADD", "g", "inf", "0", "m"],
    ["GEOADD", "g", "abc", "0", "m"],
    ["GEOADD", "g", "1e400", "0", "m"],
    ["GEOADD", "g", "XX", "NX", "1", "1", "m"],
    ["GEOADD", "g", "GT", "1", "1", "m"],
    ["GEOADD", "g", "1", "1", "m", "2"],
    ["GEOADD", "g", "NX", "CH", "XX"],
    ["GEOADD", "str", "1", "1", "m"],
    ["GEOPOS", "str", "a"],
    ["GEOPOS", "nokey", "a", "b"],
    ["GEOPOS", "g"],
    ["GEOHASH", "str", "a"],
    ["GEOHASH", "nokey", "a"],
    ["GEODIST", "str", "a", "b"],
    ["GEODIST", "g", "p1", "p2", "yards"],
    ["GEODIST", "g", "p1", "p2", "km", "x"],
    ["GEODIST", "str", "a", "b", "yards"],
    ["GEORADIUS", "str", "200", "0", "1", "km"],
    ["GEORADIUS", "g", "200", "0", "1", "km"],
    ["GEORADIUS", "g", "0", "0", "-1", "km"],
    ["GEORADIUS", "g", "0", "0", "x", "km"],
    ["GEORADIUS", "g", "0", "0", "1", "lightyears"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "COUNT", "0"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "COUNT", "-3"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "COUNT", "x"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "COUNT"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "ANY"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "STORE"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "d", "WITHDIST"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "WITHHASH", "STOREDIST", "d"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "FROMMEMBER", "p1"],
    ["GEORADIUS", "nokey", "0", "0", "1", "km", "bogus"],
    ["GEORADIUS", "nokey", "0", "0", "1", "km"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "COUNT", "99999999999999999999"],
    ["GEORADIUS", "g", "0", "0", "1", "km", "COUNT", "9223372036854775807"],
    ["GEORADIUS_RO", "g", "0", "0", "1", "km", "STORE", "d"],
    ["GEORADIUSBYMEMBER", "str", "a", "x", "km"],
    ["GEORADIUSBYMEMBER", "g", "nosuch", "x", "km"],
    ["GEORADIUSBYMEMBER", "g", "p1", "x", "km"],
    ["GEORADIUSBYMEMBER", "g", "p1", "1", "parsecs"],
    ["GEORADIUSBYMEMBER", "nokey", "a", "x", "km"],
    ["GEORADIUSBYMEMBER", "nokey", "a", "x", "km", "bogus"],
    ["GEORADIUSBYMEMBER", "nokey", "a", "1", "km", "STORE", "d", "WITHCOORD"],
    ["GEORADIUSBYMEMBER_RO", "g", "p1", "1", "km", "STOREDIST", "d"],
    ["GEOSEARCH", "str", "FROMMEMBER", "a", "BYRADIUS", "1", "km"],
    ["GEOSEARCH", "g", "FROMMEMBER", "nosuch", "BYRADIUS", "x", "km"],
    ["GEOSEARCH", "g", "BYRADIUS", "x", "km", "FROMMEMBER", "nosuch"],
    ["GEOSEARCH", "nokey", "FROMMEMBER", "nosuch", "BYRADIUS", "1", "km"],
    ["GEOSEARCH", "g", "FROMLONLAT", "0", "0", "FROMMEMBER", "p1", "BYRADIUS", "1", "km"],
    ["GEOSEARCH", "g", "FROMMEMBER", "p1", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km"],
    ["GEOSEARCH", "g", "FROMMEMBER", "p1", "BYRADIUS", "1", "km", "BYBOX", "1", "1", "km"],
    ["GEOSEARCH", "g", "FROMMEMBER", "p1", "BYBOX", "-1", "1", "km"],
    ["GEOSEARCH", "g", "FROMMEMBER", "p1", "BYBOX", "x", "1", "km"],
    ["GEOSEARCH", "g", "FROMMEMBER", "p1", "BYBOX", "1", "x", "km"],
    ["GEOSEARCH", "g", "FROMMEMBER", "p1", "BYBOX", "1", "1", "xx"],
    ["GEOSEARCH", "g", "FROMMEMBER", "p1", "WITHDIST", "ASC"],
    ["geoSearch", "g", "BYRADIUS", "1", "km", "WITHDIST"],
    ["GEOSEARCH", "g", "FROMMEMBER", "p1", "BYRADIUS", "1", "km", "STOREDIST"],
    ["GEOSEARCH", "g", "FROMMEMBER", "p1", "BYRADIUS", "1", "km", "STORE", "d"],
    ["GEOSEARCH", "g", "FROMLONLAT", "0", "99", "BYRADIUS", "1", "km"],
    ["GEOSEARCHSTORE", "d", "g", "FROMMEMBER", "p1", "BYRADIUS", "1", "km", "WITHDIST"],
    ["GEOSEARCHSTORE", "d", "g", "FROMMEMBER", "p1", "BYRADIUS", "1", "km", "STORE", "e"],
    ["GEOSEARCHSTORE", "d", "str", "FROMMEMBER", "p1", "BYRADIUS", "1", "km"],
    ["GEOSEARCHSTORE", "d", "g", "FROMLONLAT", "0", "0", "BYRADIUS", "1", "km", "COUNT", "1", "ANY"],
]
for e in errors:
    case(*e)
protocol(3)
case("GEOPOS", "g", "p0", "paris1", "ne", "sw", "origin", "absent")
case("GEORADIUS", "g", "2.35", "48.85", "50", "km", "WITHDIST", "WITHCOORD", "WITHHASH", "COUNT", "3")
case("GEOSEARCH", "g", "FROMLONLAT", "2.35", "48.85", "BYBOX", "60", "60", "km", "WITHCOORD")
case("GEODIST", "g", "p0", "p1", "km")
case("GEODIST", "g", "p0", "nosuch")
case("GEOHASH", "g", "p0", "nosuch")
protocol(2)
