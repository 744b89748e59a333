//! Writes the seed corpora under `fuzz/corpus/<target>/` from concord's own
//! encoders: WAL segments written by the WAL, snapshots of states built by
//! running commands, frames encoded by the peer wire, DUMP payloads
//! captured from Redis (`tests/rdb/redis-7.0-dumps.txt`).
//!
//! Run from `fuzz/`: `cargo run --example gen_corpus`. Existing files of
//! the same name are overwritten; others (crash inputs kept as regression
//! seeds) are left alone.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use concord::command::{self, Request};
use concord::state::{State, Ticket};
use concord::storage::{Record, Wal, WalOptions};
use concord::transport::wire::{Frame, NONCE, PROOF};
use raft::eraftpb::{Entry, EntryType, HardState};

fn corpus(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).expect("corpus dir");
    dir
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    fs::write(corpus(target).join(name), bytes).expect("write seed");
}

fn resp() {
    let seeds: &[(&str, u8, &[u8])] = &[
        ("ping-inline", 0, b"PING\r\n"),
        (
            "set-multibulk",
            0,
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n",
        ),
        (
            "pipeline",
            0,
            b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n",
        ),
        ("empty-and-null", 0, b"*0\r\n*-1\r\n*1\r\n$0\r\n\r\n"),
        ("inline-quotes", 0, b"SET \"a b\\x41\\n\" 'c\\'d'\r\n"),
        ("inline-unbalanced", 0, b"SET \"abc\r\n"),
        ("inline-lf-only", 0, b"GET k\nGET j\n"),
        ("binary-bulk", 0, b"*2\r\n$3\r\nGET\r\n$4\r\n\0\r\n\xff\r\n"),
        ("partial", 0, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nabc"),
        ("bad-dollar", 0, b"*1\r\n:1\r\n"),
        ("null-bulk", 0, b"*1\r\n$-1\r\n"),
        ("plus-len", 0, b"*1\r\n$+3\r\nabc\r\n"),
        ("leading-zero", 0, b"*01\r\n$3\r\nabc\r\n"),
        ("nested", 0, b"*1\r\n*1\r\n$1\r\na\r\n"),
        ("small-limits-over", 1, b"*5\r\n$9\r\n123456789\r\n"),
        ("small-limits-ok", 1, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
        ("unauth-many", 2, b"*11\r\n$1\r\na\r\n"),
        ("unauth-ok", 2, b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"),
        ("chunked-3", 12, b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n"),
        ("lenient-tail", 0, b"*1\r\n$1\r\naXY*1\r\n$1\r\nb\r\n"),
        ("lenient-header", 0, b"*1\rX$1\rXa\r\n"),
        ("huge-count", 0, b"*99999999999\r\n"),
        ("neg-bulk", 0, b"*1\r\n$-2\r\n"),
    ];
    for (name, config, wire) in seeds {
        let mut data = vec![*config];
        data.extend_from_slice(wire);
        write("resp_parse", name, &data);
    }
}

fn peer_wire() {
    let frames = [
        (
            "hello",
            Frame::Hello {
                cluster: 7,
                from: 1,
                to: 2,
                nonce: [3; NONCE],
            },
        ),
        (
            "challenge",
            Frame::Challenge {
                nonce: [4; NONCE],
                proof: [5; PROOF],
            },
        ),
        ("proof", Frame::Proof([6; PROOF])),
        ("raft", Frame::Raft(Bytes::from_static(b"\x08\x03\x10\x01"))),
        (
            "chunk",
            Frame::Chunk {
                total: 4,
                offset: 0,
                data: Bytes::from_static(b"abcd"),
            },
        ),
        (
            "snapshot-head",
            Frame::SnapshotHead {
                file_len: 1 << 20,
                message: Bytes::from_static(b"msg"),
            },
        ),
        (
            "forward",
            Frame::Forward {
                id: 9,
                body: Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"),
            },
        ),
        (
            "forward-reply",
            Frame::ForwardReply {
                id: 9,
                body: Bytes::from_static(b"+PONG\r\n"),
            },
        ),
    ];
    let mut all = BytesMut::new();
    for (name, frame) in &frames {
        let mut wire = BytesMut::new();
        frame.encode(&mut wire);
        all.extend_from_slice(&wire);
        let mut data = vec![0u8];
        data.extend_from_slice(&wire);
        write("peer_wire", name, &data);
    }
    let mut data = vec![2u8];
    data.extend_from_slice(&all);
    write("peer_wire", "all-frames", &data);
    // A message in three chunks.
    let mut wire = BytesMut::new();
    for (offset, part) in [(0u64, &b"abc"[..]), (3, b"def"), (6, b"gh")] {
        Frame::Chunk {
            total: 8,
            offset,
            data: Bytes::copy_from_slice(part),
        }
        .encode(&mut wire);
    }
    let mut data = vec![0u8];
    data.extend_from_slice(&wire);
    write("peer_wire", "chunks", &data);
    write("peer_wire", "too-large", b"\0GET / HTTP/1.1\r\n\r\n");
}

fn entry(index: u64, term: u64, data: &[u8]) -> Record {
    let mut e = Entry::default();
    e.index = index;
    e.term = term;
    e.data = Bytes::copy_from_slice(data);
    Record::Entry(e)
}

fn hard_state(term: u64, vote: u64, commit: u64) -> Record {
    Record::HardState(HardState {
        term,
        vote,
        commit,
        ..Default::default()
    })
}

/// Runs `f` on a fresh WAL and stores its segments, joined as
/// `wal_recover` reads them, under `name`; `tear` bytes are cut off the
/// last segment.
fn wal_seed(name: &str, opts: WalOptions, tear: usize, f: impl FnOnce(&mut Wal)) {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut wal, _) = Wal::open(dir.path(), opts).expect("open");
        f(&mut wal);
        wal.sync().expect("sync");
    }
    let mut segments: Vec<(String, Vec<u8>)> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).expect("read"))
        })
        .collect();
    segments.sort();
    let first: u64 = segments[0].0[..16].parse().expect("sequence");
    if let Some(last) = segments.last_mut() {
        let keep = last.1.len().saturating_sub(tear);
        last.1.truncate(keep);
    }
    let mut data = vec![if first == 7 { 1 } else { 0 }];
    for (i, (_, bytes)) in segments.iter().enumerate() {
        if i > 0 {
            data.extend_from_slice(b"~SG~");
        }
        data.extend_from_slice(bytes);
    }
    write("wal_recover", name, &data);
    // The same with the target recomputing CRCs (config bit 2), so that
    // mutations reach the record decoder.
    data[0] |= 4;
    write("wal_recover", &format!("{name}-fixcrc"), &data);
}

fn wal() {
    let small = || WalOptions {
        segment_bytes: 256,
        preallocate: false,
    };
    wal_seed("empty", small(), 0, |_| {});
    wal_seed("one-entry", small(), 0, |w| {
        w.append(&[entry(1, 1, b"op")]).unwrap();
    });
    wal_seed("entries-and-state", small(), 0, |w| {
        w.append(&[entry(1, 1, b"a"), entry(2, 1, b"bb"), hard_state(1, 1, 2)])
            .unwrap();
    });
    wal_seed("torn-tail", small(), 5, |w| {
        w.append(&[entry(1, 1, b"a"), entry(2, 1, b"second entry")])
            .unwrap();
    });
    wal_seed("multi-segment", small(), 0, |w| {
        for i in 1..=12 {
            w.append(&[entry(i, 1 + i / 5, &vec![b'x'; 40])]).unwrap();
        }
        w.append(&[hard_state(3, 2, 12)]).unwrap();
    });
    wal_seed("multi-segment-torn", small(), 17, |w| {
        for i in 1..=9 {
            w.append(&[entry(i, 1, &vec![b'y'; 50])]).unwrap();
        }
    });
    wal_seed("overwritten-suffix", small(), 0, |w| {
        w.append(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")])
            .unwrap();
        w.append(&[entry(2, 2, b"B"), hard_state(2, 3, 1)]).unwrap();
    });
    wal_seed("snapshot-mark", small(), 0, |w| {
        for i in 1..=6 {
            w.append(&[entry(i, 1, b"zz")]).unwrap();
        }
        w.append(&[Record::SnapshotMark { index: 4, term: 1 }])
            .unwrap();
        w.append(&[entry(7, 1, b"after")]).unwrap();
    });
    wal_seed("compacted", small(), 0, |w| {
        for i in 1..=15 {
            w.append(&[entry(i, 1, &vec![b'c'; 30])]).unwrap();
        }
        w.append(&[Record::SnapshotMark { index: 10, term: 1 }])
            .unwrap();
        w.compact(10).unwrap();
        w.append(&[entry(16, 2, b"new")]).unwrap();
    });
    wal_seed("context-and-confchange", small(), 0, |w| {
        let mut e = Entry::default();
        e.index = 1;
        e.term = 1;
        e.set_entry_type(EntryType::EntryConfChangeV2);
        e.data = Bytes::from_static(b"\x08\x01");
        e.context = Bytes::from_static(b"ctx");
        w.append(&[Record::Entry(e)]).unwrap();
    });
    wal_seed(
        "preallocated",
        WalOptions {
            segment_bytes: 512,
            preallocate: true,
        },
        0,
        |w| {
            for i in 1..=8 {
                w.append(&[entry(i, 1, &vec![b'p'; 60])]).unwrap();
                w.sync().unwrap();
            }
        },
    );
}

/// A state built by running `lines` (split on spaces) through the command
/// table, writes at increasing indexes.
fn state_of(lines: &[&str]) -> State {
    let mut state = State::new();
    let mut index = 0;
    let now = 1_700_000_000_000;
    for line in lines {
        let argv: Vec<Bytes> = line
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        match command::prepare(&argv) {
            Ok(Request::Write(mut op, _, _)) => {
                if let Some(t) = op.ticket_mut() {
                    *t = Ticket { node: 1, seq: 1 };
                }
                index += 1;
                if let Err(e) = state.apply(index, now, &op) {
                    eprintln!("snapshot seed: {line:?} failed: {e}");
                }
            }
            Ok(_) => eprintln!("snapshot seed: {line:?} is not a write"),
            Err(e) => eprintln!("snapshot seed: {line:?} refused: {e}"),
        }
    }
    state
}

const SCRIPTS: &[(&str, &[&str])] = &[
    ("empty", &[]),
    (
        "strings",
        &[
            "SET a 1",
            "SET b hello PX 5000",
            "INCRBY c 7",
            "APPEND b world",
        ],
    ),
    ("hash", &["HSET h f 1 g 2", "HSET big a 1 b 2 c 3 d 4 e 5"]),
    (
        "set-list-zset",
        &[
            "SADD s a b c 1 2",
            "RPUSH l x y z",
            "ZADD z 1 a 2.5 b -inf c",
        ],
    ),
    (
        "stream",
        &["XADD x 1-1 f v", "XADD x * g w", "XGROUP CREATE x grp 0"],
    ),
    (
        "lock-session",
        &[
            "SESSION.CREATE 10000",
            "LOCK.ACQUIRE lk owner 5000",
            "LOCK.ACQUIRE lk2 owner2 0 SESSION 1",
        ],
    ),
    (
        "mesh",
        &[
            "REGISTRY.REGISTER svc i1 10.0.0.1:80 10000",
            "RATELIMIT.ACQUIRE rl FIXED 10 1000",
            "BREAKER.CONFIG br FAILURES 3 WINDOW 1000 COOLDOWN 500",
            "BREAKER.RECORD br FAILURE",
            "QUEUE.PUSH q job1",
        ],
    ),
    (
        "hll-geo",
        &["PFADD hll a b c", "GEOADD geo 13.36 38.11 palermo"],
    ),
];

fn snapshots() {
    for (name, lines) in SCRIPTS {
        let state = state_of(lines);
        write("snapshot_decode", name, &state.encode_snapshot());
    }
    write("snapshot_decode", "format-only", &[8]);
    write("snapshot_decode", "unknown-format", &[200, 0, 0]);
}

fn rdb() {
    let text = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/rdb/redis-7.0-dumps.txt"),
    )
    .expect("dumps");
    let unhex = |s: &str| -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    };
    for (n, line) in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .enumerate()
    {
        let mut parts = line.split(' ');
        let key = parts.next().expect("key");
        let payload = unhex(parts.nth(1).expect("payload"));
        // Mode 1: the CRC is recomputed by the target, so mutations reach
        // the object decoders.
        let mut data = vec![1u8];
        data.extend_from_slice(&payload[..payload.len() - 8]);
        write("rdb_restore", key, &data);
        if n % 6 == 0 {
            let mut data = vec![0u8];
            data.extend_from_slice(&payload);
            write("rdb_restore", &format!("{key}-with-crc"), &data);
        }
    }
}

fn commands() {
    use concord_fuzz::commands::encode;
    let scripts: &[(&str, &[&str])] = &[
        (
            "strings",
            &[
                "SET a 1",
                "INCRBY a 5",
                "GETRANGE a 0 -1",
                "SETRANGE a 1 xyz",
                "GETDEL a",
            ],
        ),
        (
            "expiry",
            &["SET a v PX 100", "PEXPIRE a 50", "PERSIST a", "TTL a"],
        ),
        (
            "hash",
            &["HSET h f 1 g 2", "HINCRBY h f 3", "HDEL h g", "HGETALL h"],
        ),
        (
            "list",
            &[
                "RPUSH l a b c",
                "LPOP l",
                "LRANGE l 0 -1",
                "LMOVE l l LEFT RIGHT",
            ],
        ),
        (
            "set",
            &["SADD s a b c", "SPOP s", "SINTERSTORE s2 s s", "SMEMBERS s"],
        ),
        (
            "zset",
            &[
                "ZADD z 1 a 2 b",
                "ZINCRBY z 5 a",
                "ZRANGE z 0 -1 WITHSCORES",
                "ZPOPMIN z",
            ],
        ),
        (
            "stream",
            &[
                "XADD x * f v",
                "XGROUP CREATE x g 0",
                "XREADGROUP GROUP g c STREAMS x >",
            ],
        ),
        (
            "keys",
            &["SET a 1", "RENAME a b", "COPY b c", "DEL b", "SCAN 0"],
        ),
        (
            "locks",
            &[
                "LOCK.ACQUIRE l owner 100",
                "LOCK.EXTEND l 1 200",
                "LOCK.RELEASE l 1",
            ],
        ),
        (
            "sessions",
            &[
                "SESSION.CREATE 100",
                "SESSION.KEEPALIVE 1",
                "LOCK.ACQUIRE l a 0 SESSION 1",
                "SESSION.DESTROY 1",
            ],
        ),
        (
            "queue",
            &["QUEUE.PUSH q job", "QUEUE.CLAIM q 1000", "QUEUE.ACK q 1"],
        ),
        (
            "registry",
            &[
                "REGISTRY.REGISTER svc i1 addr 100",
                "REGISTRY.PICK svc round_robin",
            ],
        ),
        (
            "ratelimit",
            &[
                "RATELIMIT.ACQUIRE r FIXED 10 1000",
                "RATELIMIT.ACQUIRE r2 LEAKY 10 1000",
            ],
        ),
        (
            "breaker",
            &[
                "BREAKER.CONFIG b FAILURES 3 WINDOW 1000",
                "BREAKER.RECORD b FAILURE",
                "BREAKER.STATE b",
            ],
        ),
        ("hll", &["PFADD h a b c", "PFCOUNT h", "PFMERGE h2 h"]),
        (
            "bits",
            &["SETBIT b 7 1", "BITCOUNT b", "BITFIELD b INCRBY u8 0 300"],
        ),
        ("blocking", &["BLPOP l 1", "RPUSH l a"]),
    ];
    for (name, lines) in scripts {
        let mut data = Vec::new();
        for line in *lines {
            let argv: Vec<&str> = line.split(' ').collect();
            if let Some(bytes) = encode(&argv) {
                data.extend(bytes);
            } else {
                eprintln!("command_apply seed {name}: {line:?} is not in the table");
            }
        }
        // Then the clock, a sweep, a tick, a snapshot replica and the model.
        data.extend_from_slice(&[0xF1, 3, 0xF4, 0xF5, 0xF9, 0xFA, 0, 0, 19, 0xFA, 1, 0, 0]);
        write("command_apply", name, &data);
    }
    write(
        "command_apply",
        "model",
        &[
            0xFA, 0, 0, 19, 0xFA, 1, 0, 0, 0xFA, 4, 0, 22, 0xFA, 3, 0, 10, 0xFA, 5, 0, 0, 0xFA, 2,
            0, 0, 0xFA, 6, 0, 0, 0xFA, 1, 1, 0,
        ],
    );
}

fn main() {
    resp();
    peer_wire();
    wal();
    snapshots();
    rdb();
    commands();
    for target in [
        "resp_parse",
        "peer_wire",
        "wal_recover",
        "snapshot_decode",
        "rdb_restore",
        "command_apply",
    ] {
        let n = fs::read_dir(corpus(target)).map(|d| d.count()).unwrap_or(0);
        println!("{target}: {n} seeds");
    }
}
